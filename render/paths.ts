/** Fixed install locations on a host, shared by the plan, the host config and drift detection. */
import type { StackConfig } from "../config/types";

export const UNIT_DIR = "/etc/systemd/system";
export const SUDOERS_PATH = "/etc/sudoers.d/hx-backup";
export const LOGROTATE_PATH = "/etc/logrotate.d/hx-backup";
export const HOST_CONFIG_NAME = "backup.json";

/** Where each install step records what it installed. */
export const manifestDir = (config: StackConfig) => `${config.paths.configDir}/manifest.d`;

/** Locations where every file is ours: anything there the stack does not install is drift ("extra"). */
export function watchedLocations(config: StackConfig): string[] {
    const p = config.paths;
    return [p.scriptDir, p.keyringDir, manifestDir(config), `${p.configDir}/*`, `${UNIT_DIR}/hx-backup-*`, `${SUDOERS_PATH}*`, `${LOGROTATE_PATH}*`];
}

/** Files in watched locations that the running system writes, not a deploy. */
export const runtimeFiles = (config: StackConfig) => [`${config.paths.configDir}/.created-user`];
