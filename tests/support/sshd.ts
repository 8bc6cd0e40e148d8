/**
 * A bare sshd on 127.0.0.1 for the resource-plugin tests: it logs in
 * one unprivileged user with a throwaway key, accepts the environment
 * variables named HX_* (AcceptEnv) and no others, and logs each session's
 * command. Commands run as that user, so a test can only touch its own files.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { freePort, lookupUser, tempDir, removeDir, type OsUser } from "./env";

/** A user with a login shell (sshd runs commands through it); created once, kept. */
export const SSH_TEST_USER = "hxbplugin";

export function ensureSshUser(): OsUser {
    let u = lookupUser(SSH_TEST_USER);
    if (!u) {
        spawnSync("useradd", ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", SSH_TEST_USER]);
        u = lookupUser(SSH_TEST_USER);
    }
    if (!u) throw new Error(`could not create the user ${SSH_TEST_USER}`);
    // useradd's "!" password locks the account, and sshd refuses locked accounts even for keys; "*" is no password.
    // A home that exists, or sshd prints "Could not chdir to home directory" into every command's stderr.
    spawnSync("usermod", ["--password", "*", "--home", "/tmp", SSH_TEST_USER]);
    return u;
}

export interface TestSshd {
    readonly address: string;
    readonly port: number;
    readonly user: string;
    /** The client's private key (OpenSSH format). */
    readonly privateKey: string;
    /** Another key sshd also accepts. */
    readonly otherPrivateKey: string;
    /** "ssh-ed25519 AAAA...", for pinning. */
    readonly hostKey: string;
    /** A host key that is not this server's. */
    readonly wrongHostKey: string;
    /** A folder the user owns, for the commands' files. */
    readonly work: string;
    stop(): Promise<void>;
}

function keygen(file: string): { privateKey: string; publicKey: string } {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "hx-plugin-test", "-f", file]);
    return { privateKey: readFileSync(file, "utf8"), publicKey: readFileSync(`${file}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ") };
}

export async function startTestSshd(): Promise<TestSshd> {
    const address = "127.0.0.1";
    const user = ensureSshUser();
    const dir = tempDir("hx-sshd-");
    const port = await freePort();
    const client = keygen(path.join(dir, "client"));
    const other = keygen(path.join(dir, "other"));
    const host = keygen(path.join(dir, "host"));
    const wrong = keygen(path.join(dir, "wrong"));
    const work = path.join(dir, "work");
    execFileSync("install", ["-d", "-o", String(user.uid), "-g", String(user.gid), "-m", "0700", work]);
    writeFileSync(path.join(dir, "authorized_keys"), `${client.publicKey}\n${other.publicKey}\n`);
    chmodSync(path.join(dir, "authorized_keys"), 0o644);
    writeFileSync(
        path.join(dir, "sshd_config"),
        [
            `Port ${port}`,
            `ListenAddress ${address}`,
            `HostKey ${path.join(dir, "host")}`,
            `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
            `AllowUsers ${SSH_TEST_USER}`,
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AcceptEnv HX_* PULUMI_COMMAND_*",
            "LogLevel VERBOSE",
            `PidFile ${path.join(dir, "sshd.pid")}`,
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "Subsystem sftp internal-sftp",
        ].join("\n") + "\n",
    );
    // sshd's privilege separation wants this folder; a namespaced test host has its own, the machine may have none yet.
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    const child: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", path.join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr?.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
    const deadline = Date.now() + 90_000;
    for (;;) {
        const probe = spawnSync("ssh", ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", path.join(dir, "client"), "-p", String(port), `${SSH_TEST_USER}@${address}`, "true"]);
        if (probe.status === 0) break;
        if (child.exitCode !== null || Date.now() > deadline) {
            child.kill("SIGKILL");
            throw new Error(`test sshd on ${address}:${port} did not start: ${log}`);
        }
        await new Promise((r) => setTimeout(r, 200));
    }
    return {
        address,
        port,
        user: SSH_TEST_USER,
        privateKey: client.privateKey,
        otherPrivateKey: other.privateKey,
        hostKey: host.publicKey,
        wrongHostKey: wrong.publicKey,
        work,
        async stop() {
            child.kill("SIGTERM");
            await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once("exit", r)));
            removeDir(dir);
        },
    };
}
