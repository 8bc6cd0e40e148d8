/**
 * Remote step scripts: POSIX sh, run through `sh -c` (or `sudo -n sh -c`) so
 * the login shell does not matter. Content and secrets arrive on stdin; the
 * script text itself carries only paths, modes and names, each through
 * shellQuote, so argv on the host never holds a secret.
 */
import { createHash } from "node:crypto";
import { shellQuote, shellCommand } from "./shell";

export function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}

/** Wraps a step script so it runs under sh (and sudo when the SSH user is not root). */
export function wrapStep(script: string, sudo: boolean): string {
    const body = `set -eu\n${script}`;
    return sudo ? shellCommand("sudo", "-n", "sh", "-c", body) : shellCommand("sh", "-c", body);
}

export interface FileTarget {
    readonly path: string;
    readonly mode: string;
    readonly owner: string;
    readonly group: string;
}

function dirOf(path: string): string {
    return path.replace(/\/[^/]+$/, "") || "/";
}

/** Shell lines that write stdin's remaining bytes to `target` atomically, optionally gated by `check` (run on the temp file as "$tmp"). */
function writeAtomically(target: FileTarget, source: string, check?: string): string {
    const dir = dirOf(target.path);
    const lines = [
        `target=${shellQuote(target.path)}`,
        `mkdir -p ${shellQuote(dir)}`,
        `tmp=$(mktemp ${shellQuote(`${dir}/.hx-backup.XXXXXX`)})`,
        `trap 'rm -f "$tmp"' EXIT`,
        `${source} > "$tmp"`,
        `chown ${shellQuote(`${target.owner}:${target.group}`)} "$tmp"`,
        `chmod ${shellQuote(target.mode)} "$tmp"`,
    ];
    if (check) {
        lines.push(`if ! ${check} >&2; then echo "hx-backup: refusing to install $target: check failed: ${check.replace(/["$`\\]/g, "\\$&")}" >&2; exit 1; fi`);
    }
    lines.push(`mv -f "$tmp" "$target"`, `trap - EXIT`);
    return lines.join("\n");
}

/** Installs one file from stdin. `check` gates the install (e.g. `visudo -cf "$tmp"`). */
export function installFileScript(target: FileTarget, check?: string): string {
    return writeAtomically(target, "cat", check);
}

/** Installs several secret files; stdin carries one base64 line per file, in order. */
export function installSecretFilesScript(targets: readonly FileTarget[]): string {
    return targets
        .map((t) => `IFS= read -r line || { echo "hx-backup: missing secret for ${t.path}" >&2; exit 1; }\n${writeAtomically(t, `printf '%s' "$line" | base64 -d`)}`)
        .join("\n");
}

export function removeFilesScript(paths: readonly string[]): string {
    return paths.length ? `rm -f -- ${paths.map(shellQuote).join(" ")}` : "true";
}
