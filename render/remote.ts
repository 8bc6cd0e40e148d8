/**
 * Remote step scripts: POSIX sh, run through `sh -c` (or `sudo -n sh -c`) so
 * the login shell does not matter. Content and secrets arrive on stdin; the
 * script text itself carries only paths, modes and names, each through
 * shellQuote, so argv on the host never holds a secret. The scripts' bodies
 * are templates/steps (see stepScript in step.ts).
 */
import { createHash } from "node:crypto";
import { shellCommand } from "./shell";
import { stepTemplate } from "./template";

export function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}

/**
 * Wraps a step script so it runs under sh (and sudo when the SSH user is not
 * root), after templates/steps/prelude.sh (set -eu).
 */
export function wrapStep(script: string, sudo: boolean): string {
    const body = `${stepTemplate("prelude")}${script}`;
    return sudo ? shellCommand("sudo", "-n", "sh", "-c", body) : shellCommand("sh", "-c", body);
}

export interface FileTarget {
    readonly path: string;
    readonly mode: string;
    readonly owner: string;
    readonly group: string;
}
