/**
 * npm run drift -- --stack <name> [--host <name>] [--json] [--stack-dir <dir>]
 *
 * Read-only: connects to each host over SSH and compares every file the stack
 * would install (content, owner, group, mode) and the locations where stray
 * hx-backup files would be, with what is there. Prints each difference
 * (changed, missing, extra, owner, mode).
 *
 * SSH key: the file in $HX_SSH_KEY_FILE, else the ssh-agent. Host keys are
 * pinned from the stack's `hostKey` fields.
 *
 * Exit codes: 0 no drift, 1 drift found, 2 usage or config error, 3 a host
 * could not be inspected.
 */
import * as path from "node:path";
import { compareInspection, formatDrift, inspectionRequests, type Drift } from "../render/drift";
import { shellCommand } from "../render/shell";
import { readTemplate } from "../render/template";
import type { StackConfig } from "../config/types";
import { loadStackFromFiles, renderStack } from "./render";
import { sshExec, type SshTarget } from "./lib/ssh";

export const INSPECT_SCRIPT = "scripts/hx-drift-inspect.sh";

export interface HostDrift {
    readonly host: string;
    readonly drifts: readonly Drift[];
    readonly error?: string;
}

export function sshTargetFor(config: StackConfig, hostName: string, keyFile?: string): SshTarget {
    const host = config.hosts.find((h) => h.name === hostName)!;
    const b = config.ssh.bastion;
    return {
        host: host.address,
        port: host.port,
        user: host.sshUser,
        ...(host.hostKey ? { hostKey: host.hostKey } : {}),
        ...(keyFile ? { keyFile } : {}),
        ...(b ? { bastion: { host: b.host, port: b.port, user: b.user, ...(b.hostKey ? { hostKey: b.hostKey } : {}) } } : {}),
    };
}

/** The remote command: the inspection script itself, run by bash (through sudo for a non-root user). */
export function inspectCommand(config: StackConfig): string {
    const argv = ["bash", "-c", readTemplate(INSPECT_SCRIPT), "hx-drift-inspect"];
    return shellCommand(...(config.ssh.sudo ? ["sudo", "-n", ...argv] : argv));
}

export async function detectDrift(config: StackConfig, options: { host?: string; keyFile?: string } = {}): Promise<HostDrift[]> {
    const rendered = renderStack(config).filter((h) => !options.host || h.host === options.host);
    return Promise.all(
        rendered.map(async (h): Promise<HostDrift> => {
            const result = await sshExec(sshTargetFor(config, h.host, options.keyFile), inspectCommand(config), inspectionRequests(config, h.files, h.secretFiles));
            if (result.code !== 0) return { host: h.host, drifts: [], error: `inspection failed (exit ${result.code}): ${result.stderr.trim()}` };
            return { host: h.host, drifts: compareInspection(config, h.files, h.secretFiles, result.stdout) };
        }),
    );
}

function arg(name: string): string | undefined {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
    const stack = arg("stack");
    if (!stack) {
        console.error("usage: npm run drift -- --stack <name> [--host <name>] [--json] [--stack-dir <dir with Pulumi.<stack>.yaml>]");
        return 2;
    }
    let config: StackConfig;
    try {
        config = loadStackFromFiles(path.resolve(arg("stack-dir") ?? path.join(__dirname, "..")), stack);
    } catch (e) {
        console.error((e as Error).message);
        return 2;
    }
    const only = arg("host");
    if (only && !config.hosts.some((h) => h.name === only)) {
        console.error(`no host "${only}" in stack ${stack} (hosts: ${config.hosts.map((h) => h.name).join(", ")})`);
        return 2;
    }
    const results = await detectDrift(config, { host: only, keyFile: process.env.HX_SSH_KEY_FILE || undefined });
    if (process.argv.includes("--json")) console.log(JSON.stringify(results, null, 2));
    else for (const r of results) console.log(r.error ? `${r.host}: ERROR ${r.error}` : formatDrift(r.host, r.drifts));
    if (results.some((r) => r.error)) return 3;
    return results.some((r) => r.drifts.length) ? 1 : 0;
}

if (require.main === module) main().then((code) => process.exit(code));
