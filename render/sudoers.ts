/** The sudoers drop-in: one fixed privileged-helper verb per line, for the roles the host has. */
import type { HostSpec, StackConfig } from "../config/types";
import { renderTemplate } from "./template";

import { SUDOERS_PATH } from "./paths";

export { SUDOERS_PATH };
export const PRIVILEGED_HELPER = "backup-privileged.sh";

export function privilegedVerbs(host: HostSpec): string[] {
    const verbs: string[] = [];
    if (host.roles.includes("redis")) verbs.push("redis-copy-rdb");
    if (host.roles.includes("application")) verbs.push("application-archive");
    if (host.roles.includes("configuration")) verbs.push("configuration-archive");
    return verbs;
}

export function renderSudoers(config: StackConfig, host: HostSpec): string {
    const helper = `${config.paths.scriptDir}/${PRIVILEGED_HELPER}`;
    // A command listed without arguments would allow any arguments; each line names its one verb.
    const rules = privilegedVerbs(host).map((verb) => `${config.backupUser} ALL=(root) NOPASSWD: ${helper} ${verb}`);
    return renderTemplate("sudoers/hx-backup", {
        stack: config.stack,
        host: host.name,
        user: config.backupUser,
        scriptDir: config.paths.scriptDir,
        rules: rules.length ? rules.join("\n") : "# (no privileged verbs for this host's roles)",
    });
}
