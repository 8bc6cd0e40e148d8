/**
 * A throwaway "host" on this machine: its own sshd on a loopback address and
 * port, inside a private mount and PID namespace whose /etc, /var, /opt and
 * /srv are overlays on the real ones, whose /run is its own tmpfs, and whose
 * root has the shell start-up files of a fresh Debian install.
 * Everything a deploy or a job writes there vanishes on stop; the machine's
 * real /etc is never touched. Needs root and unshare(1).
 *
 * The network namespace is the machine's: hosts of one fleet are told apart by
 * their loopback address (127.0.0.2, 127.0.0.3, ...), and each of their
 * services binds that address.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import * as path from "node:path";
import { STAGE_ROOT } from "../../render/paths";
import { shellQuote } from "../../render/shell";
import { sshExec, type SshResult, type SshTarget } from "../lib/ssh";

export const OVERLAID = ["etc", "var", "opt", "srv"] as const;
/** Root's shell start-up files, each seen inside a host as base-files' default (or empty). */
const ROOT_DOTFILES = [".bashrc", ".profile"] as const;

export interface SandboxHost {
    readonly dir: string;
    /** The loopback address its sshd (and its services) listen on. */
    readonly address: string;
    readonly port: number;
    readonly pid: number;
    /** Private key that logs in as root. */
    readonly keyFile: string;
    /** The sandbox sshd's host key ("ssh-ed25519 AAAA..."), for pinning. */
    readonly hostKey: string;
    /** One line per deploy step run over SSH (time and step digest), with `stepLog`; otherwise undefined. */
    readonly stepLog?: string;
    readonly target: SshTarget;
    exec(command: string, stdin?: string): Promise<SshResult>;
    /** Stops every process inside the namespace (sshd and whatever it started); the overlays vanish with them. */
    stop(): Promise<void>;
}

export interface SandboxHostOptions {
    /** sshd's port; default: a free one on `address`. */
    readonly port?: number;
    /** A loopback address (127.0.0.0/8) for sshd; default 127.0.0.1. */
    readonly address?: string;
    /** The client key allowed to log in as root (created when missing); default `<dir>/id_ed25519`. Hosts of one fleet share one. */
    readonly keyFile?: string;
    /**
     * Record each deploy step that runs (sshd's ForceCommand notes the step digest the command text starts
     * with, never the command) in `<dir>/steps.log`: how a test tells that an unchanged deploy ran nothing.
     */
    readonly stepLog?: boolean;
}

/** An IPv4 address inside 127.0.0.0/8: the sandbox binds and targets nothing else. */
export function isLoopback(address: string): boolean {
    const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
    return !!m && m.slice(1).every((o) => Number(o) <= 255);
}

function requireLoopback(address: string, what: string): void {
    if (!isLoopback(address)) throw new Error(`${what}: ${JSON.stringify(address)} is not a loopback address; the sandbox uses only 127.0.0.0/8 (e.g. 127.0.0.2)`);
}

/** A port that is free on `address` right now (the kernel picks it). */
export async function freePort(address = "127.0.0.1"): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = createServer();
        server.unref();
        server.on("error", reject);
        server.listen(0, address, () => {
            const { port } = server.address() as { port: number };
            server.close(() => resolve(port));
        });
    });
}

/** Whether `port` can be bound on `address` now (nothing listens on it there, nor on 0.0.0.0). */
export async function portFree(address: string, port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const server = createServer();
        server.unref();
        server.once("error", () => resolve(false));
        server.listen({ port, host: address, exclusive: true }, () => server.close(() => resolve(true)));
    });
}

/** `preferred` when it is free on `address` and not in `taken`, else a free one the kernel picks there. */
export async function pickPort(address: string, preferred: number | undefined, taken: readonly number[] = []): Promise<number> {
    requireLoopback(address, "pickPort");
    if (preferred && !taken.includes(preferred) && (await portFree(address, preferred))) return preferred;
    for (;;) {
        const p = await freePort(address);
        if (!taken.includes(p)) return p;
    }
}

function keygen(file: string): string {
    if (!existsSync(file)) execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "hx-sandbox", "-f", file]);
    return readFileSync(`${file}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
}

/** PIDs of every process sharing `pid`'s mount namespace. */
export function namespaceMembers(nsLink: string): number[] {
    const members: number[] = [];
    for (const entry of readdirSync("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        try {
            if (readlinkSync(`/proc/${entry}/ns/mnt`) === nsLink) members.push(Number(entry));
        } catch {
            /* process gone */
        }
    }
    return members;
}

export async function startSandboxHost(dir: string, options: SandboxHostOptions = {}): Promise<SandboxHost> {
    if (process.getuid?.() !== 0) throw new Error("the sandbox host needs root (mount namespaces and overlays)");
    const address = options.address ?? "127.0.0.1";
    requireLoopback(address, "sandbox host address");
    mkdirSync(dir, { recursive: true });
    const sshPort = options.port ?? (await freePort(address));
    const keyFile = options.keyFile ?? path.join(dir, "id_ed25519");
    const clientKey = keygen(keyFile);
    const hostKey = keygen(path.join(dir, "ssh_host_ed25519_key"));
    writeFileSync(path.join(dir, "authorized_keys"), `${clientKey}\n`, { mode: 0o600 });
    const stepLog = options.stepLog ? path.join(dir, "steps.log") : undefined;
    if (stepLog) {
        writeFileSync(stepLog, "", { mode: 0o600 });
        // Runs each session's command as sshd would (root's shell is bash), after noting the step digest, if any.
        writeFileSync(
            path.join(dir, "session.sh"),
            [
                "#!/bin/bash",
                "digest='# hx-backup step digest ([0-9a-f]{64})'",
                'if [[ "${SSH_ORIGINAL_COMMAND-}" =~ $digest ]]; then',
                `    printf '%s step %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "\${BASH_REMATCH[1]}" >> ${shellQuote(stepLog)}`,
                "fi",
                'if [[ -z "${SSH_ORIGINAL_COMMAND+set}" ]]; then exec bash -l; fi',
                // Under ForceCommand, sshd hands a subsystem's command here instead of running it.
                'if [[ "$SSH_ORIGINAL_COMMAND" == internal-sftp ]]; then exec /usr/lib/openssh/sftp-server; fi',
                'exec bash -c "$SSH_ORIGINAL_COMMAND"',
            ].join("\n") + "\n",
            { mode: 0o700 },
        );
    }
    writeFileSync(
        path.join(dir, "sshd_config"),
        [
            `Port ${sshPort}`,
            `ListenAddress ${address}`,
            `HostKey ${path.join(dir, "ssh_host_ed25519_key")}`,
            `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            `PidFile ${path.join(dir, "sshd.pid")}`,
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "Subsystem sftp internal-sftp",
            ...(stepLog ? [`ForceCommand ${path.join(dir, "session.sh")}`] : []),
        ].join("\n") + "\n",
    );
    const mounts = OVERLAID.map((d) => {
        const up = path.join(dir, "overlay", `${d}-upper`);
        const work = path.join(dir, "overlay", `${d}-work`);
        return `mkdir -p '${up}' '${work}' && mount -t overlay overlay -o 'lowerdir=/${d},upperdir=${up},workdir=${work}' /${d}`;
    });
    mkdirSync(path.join(dir, "root-dotfiles"), { recursive: true });
    for (const f of ROOT_DOTFILES) {
        const fresh = `/usr/share/base-files/dot${f}`;
        writeFileSync(path.join(dir, "root-dotfiles", f), existsSync(fresh) ? readFileSync(fresh) : "", { mode: 0o644 });
    }
    writeFileSync(
        path.join(dir, "namespace-init.sh"),
        [
            "set -eu",
            ...mounts,
            // The deploy user's (root's) stage of the static scripts is the host's own. Only that folder: an overlay of
            // all of /root would freeze whatever lock file the machine held at that moment (pyenv's, for one).
            `mkdir -p '${path.join(dir, "stage")}' ${shellQuote(`/root/${STAGE_ROOT}`)} && mount --bind '${path.join(dir, "stage")}' ${shellQuote(`/root/${STAGE_ROOT}`)}`,
            // Root's shell start-up files as a fresh Debian host has them (base-files'), not this machine's: sshd's
            // bash reads ~/.bashrc in every session, and a workstation's (pyenv's init, say) costs 0.1 s of CPU each.
            // Copies, mounted read-only: a write in the host reaches neither the machine's files nor base-files'.
            ...ROOT_DOTFILES.map((f) => `if [ -f ${shellQuote(`/root/${f}`)} ]; then mount --bind -o ro ${shellQuote(path.join(dir, "root-dotfiles", f))} ${shellQuote(`/root/${f}`)}; fi`),
            // A private /run: sockets and PID files of the sandbox's services vanish with it.
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/sshd",
            `exec /usr/sbin/sshd -D -e -f '${path.join(dir, "sshd_config")}'`,
        ].join("\n") + "\n",
    );
    // Its own PID namespace and /proc as well: the host's userdel, pgrep and dead-PID checks see only its
    // own processes, not another test host's user that the same UID was given in a separate overlay.
    const child = spawn("unshare", ["--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "bash", path.join(dir, "namespace-init.sh")], {
        stdio: ["ignore", "ignore", "pipe"],
        detached: true,
    });
    let log = "";
    child.stderr?.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    child.unref();
    const pid = child.pid!;
    const target: SshTarget = { host: address, port: sshPort, user: "root", hostKey, keyFile };
    const exec = (command: string, stdin = "") => sshExec(target, command, stdin);
    const deadline = Date.now() + 20_000;
    for (;;) {
        const r = await exec("true").catch(() => undefined);
        if (r?.code === 0) break;
        if (child.exitCode !== null) throw new Error(`sandbox sshd exited: ${log}`);
        if (Date.now() > deadline) throw new Error(`sandbox sshd did not accept logins on ${address}:${sshPort}: ${r?.stderr ?? ""} ${log}`);
        await new Promise((r2) => setTimeout(r2, 200));
    }
    const nsLink = readlinkSync(`/proc/${pid}/ns/mnt`);
    writeFileSync(path.join(dir, "state.json"), JSON.stringify({ pid, address, port: sshPort, nsLink }));
    return {
        dir,
        address,
        port: sshPort,
        pid,
        keyFile,
        hostKey,
        ...(stepLog ? { stepLog } : {}),
        target,
        exec,
        stop: () => stopNamespace(nsLink),
    };
}

/** Kills every process in the namespace (TERM, then KILL) and waits for them. */
export async function stopNamespace(nsLink: string): Promise<void> {
    if (nsLink === readlinkSync("/proc/self/ns/mnt")) throw new Error("refusing to stop the machine's own mount namespace");
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        for (const p of namespaceMembers(nsLink)) {
            try {
                process.kill(p, signal);
            } catch {
                /* already gone */
            }
        }
        const until = Date.now() + 10_000;
        while (namespaceMembers(nsLink).length && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
        if (!namespaceMembers(nsLink).length) return;
    }
}

export function removeSandboxDir(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
}
