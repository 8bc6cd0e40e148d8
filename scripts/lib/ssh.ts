/**
 * Runs a command on a host with the OpenSSH client, as the deploy does:
 * key from a file or the agent, host key pinned when the stack gives one,
 * optional jump host, optional `sudo -n`. Secrets travel on stdin only.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { shellCommand } from "../../render/shell";

export interface SshTarget {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    /** Pinned host key ("ssh-ed25519 AAAA..."); without it the first key seen is accepted for this run only. */
    readonly hostKey?: string;
    /** Private key file (mode 0600); without it the agent is used. */
    readonly keyFile?: string;
    /** The agent's socket when there is no key file. Default: $SSH_AUTH_SOCK. */
    readonly agentSocket?: string;
    /** Jump host; its own key file, else the target's key (or the agent). */
    readonly bastion?: { readonly host: string; readonly port: number; readonly user: string; readonly hostKey?: string; readonly keyFile?: string };
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
        const options = (hostKey: string | undefined) => [
            "-o", "BatchMode=yes",
            "-o", `StrictHostKeyChecking=${hostKey ? "yes" : "accept-new"}`,
            "-o", `UserKnownHostsFile=${knownHosts}`,
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=15",
            "-o", "LogLevel=ERROR",
        ];
        const identity = (keyFile: string | undefined) => (keyFile ? ["-i", keyFile, "-o", "IdentitiesOnly=yes"] : []);
        const b = target.bastion;
        // -J would reach the jump host without the -i given here (command-line options apply to the target only),
        // so a jump host with a key file gets its own ssh as the ProxyCommand; without one, -J and the agent.
        const jump = !b
            ? []
            : b.keyFile
              ? ["-o", `ProxyCommand=${shellCommand("ssh", ...options(b.hostKey), ...identity(b.keyFile), "-p", String(b.port), "-W", "%h:%p", `${b.user}@${b.host}`)}`]
              : ["-J", `${b.user}@${b.host}:${b.port}`];
        const args = [...options(target.hostKey), "-p", String(target.port), ...identity(target.keyFile), ...jump, `${target.user}@${target.host}`, "--", command];
        return await new Promise<SshResult>((resolve, reject) => {
            const env = target.agentSocket ? { ...process.env, SSH_AUTH_SOCK: target.agentSocket } : process.env;
            const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"], env });
            let stdout = "";
            let stderr = "";
            let killed = false;
            const timer = setTimeout(() => {
                killed = true;
                child.kill("SIGKILL");
            }, timeoutMs);
            child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
            child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            child.on("error", reject);
            // ssh can exit before it reads stdin (a refused or dropped connection): the write
            // then fails with EPIPE, and the exit code and stderr below say what happened.
            child.stdin.on("error", () => undefined);
            child.on("close", (code) => {
                clearTimeout(timer);
                // Killed, ssh says nothing: without this line the caller sees exit 255 and an empty stderr.
                resolve({ code: code ?? 255, stdout, stderr: killed ? `${stderr}ssh: no result within ${timeoutMs / 1000} s: killed\n` : stderr });
            });
            child.stdin.end(stdin);
        });
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}
