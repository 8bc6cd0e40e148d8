/** Fixed install locations on a host, shared by the plan, the host config and drift detection. */
import * as path from "node:path";
import type { StackConfig } from "../config/types";
import { scriptTemplates } from "./template";

export const UNIT_DIR = "/etc/systemd/system";
export const SUDOERS_PATH = "/etc/sudoers.d/hx-backup";
export const LOGROTATE_PATH = "/etc/logrotate.d/hx-backup";
export const HOST_CONFIG_NAME = "backup.json";
/** Beside the library, root-owned like it: the config's path, for runs with no HX_BACKUP_CONFIG (by hand, through sudo). */
export const CONFIG_LOCATION_NAME = "lib/config-path";

export const hostConfigPath = (config: StackConfig) => `${config.paths.configDir}/${HOST_CONFIG_NAME}`;
export const configLocationPath = (config: StackConfig) => `${config.paths.scriptDir}/${CONFIG_LOCATION_NAME}`;

/** The jobs' lock files (HostConfigFile paths.locks): created by the account step, so every job user finds it. */
export const locksDir = (config: StackConfig) => `${config.paths.storageDir}/.locks`;

/**
 * Which resource installed each path (or user, unit, setting) on a host, and each resource's repair count:
 * one fixed place, whatever a stack's configDir, so that every stack and every release finds every other's.
 */
export const INSTALL_RECORDS_DIR = "/var/lib/hx-backup/deploy";

/** Where the static scripts wait on a host (render/hostPlan.ts scriptStage), relative to the SSH user's home: one folder per stack and host below it. */
export const STAGE_ROOT = ".cache/hx-backup/stage";

/** Where each install step records what it installed. */
export const manifestDir = (config: StackConfig) => `${config.paths.configDir}/manifest.d`;

/** Locations where every file is ours: anything there the stack does not install is drift ("extra"). */
export function watchedLocations(config: StackConfig): string[] {
    const p = config.paths;
    // Each folder the scripts ship into (the script folder, the library's lib/ and lib/source/).
    const scriptDirs = [...new Set(scriptTemplates().map((s) => path.posix.dirname(s)))].map((d) => (d === "." ? p.scriptDir : `${p.scriptDir}/${d}`));
    return [...scriptDirs, p.keyringDir, manifestDir(config), `${p.configDir}/*`, `${UNIT_DIR}/hx-backup-*`, `${SUDOERS_PATH}*`, `${LOGROTATE_PATH}*`];
}

/** Marker recording that this tool created the backup user (the account step), so destroy never deletes a pre-existing account. */
export const createdUserMarker = (config: StackConfig) => `${config.paths.configDir}/.created-user`;

/** Files in watched locations that the running system writes, not a deploy. */
export const runtimeFiles = (config: StackConfig) => [createdUserMarker(config)];
