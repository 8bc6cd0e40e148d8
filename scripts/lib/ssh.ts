/**
 * Runs a command on a host with the OpenSSH client, as the deploy does:
 * key from a file or the agent, host key pinned when the stack gives one,
 * optional jump host, optional `sudo -n`. Secrets travel on stdin only.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

export interface SshTarget {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    /** Pinned host key ("ssh-ed25519 AAAA..."); without it the first key seen is accepted for this run only. */
    readonly hostKey?: string;
    /** Private key file (mode 0600); without it the agent ($SSH_AUTH_SOCK) is used. */
    readonly keyFile?: string;
    readonly bastion?: { readonly host: string; readonly port: number; readonly user: string; readonly hostKey?: string };
}

export interface SshResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

const knownHostsLine = (host: string, port: number, key: string) => `${port === 22 ? host : `[${host}]:${port}`} ${key}`;

export async function sshExec(target: SshTarget, command: string, stdin = "", timeoutMs = 120_000): Promise<SshResult> {
    const dir = mkdtempSync(path.join(tmpdir(), "hx-ssh-"));
    try {
        const knownHosts = path.join(dir, "known_hosts");
        const pinned = [target.hostKey && knownHostsLine(target.host, target.port, target.hostKey), target.bastion?.hostKey && knownHostsLine(target.bastion.host, target.bastion.port, target.bastion.hostKey)].filter(Boolean);
        writeFileSync(knownHosts, pinned.map((l) => `${l}\n`).join(""), { mode: 0o600 });
        const strict = target.hostKey ? "yes" : "accept-new";
        const args = [
            "-o", "BatchMode=yes",
            "-o", `StrictHostKeyChecking=${strict}`,
            "-o", `UserKnownHostsFile=${knownHosts}`,
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=15",
            "-o", "LogLevel=ERROR",
            "-p", String(target.port),
            ...(target.keyFile ? ["-i", target.keyFile, "-o", "IdentitiesOnly=yes"] : []),
            ...(target.bastion ? ["-J", `${target.bastion.user}@${target.bastion.host}:${target.bastion.port}`] : []),
            `${target.user}@${target.host}`,
            "--",
            command,
        ];
        return await new Promise<SshResult>((resolve, reject) => {
            const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
            let stdout = "";
            let stderr = "";
            const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
            child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
            child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            child.on("error", reject);
            // ssh can exit before it reads stdin (a refused or dropped connection): the write
            // then fails with EPIPE, and the exit code and stderr below say what happened.
            child.stdin.on("error", () => undefined);
            child.on("close", (code) => {
                clearTimeout(timer);
                resolve({ code: code ?? 255, stdout, stderr });
            });
            child.stdin.end(stdin);
        });
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}
