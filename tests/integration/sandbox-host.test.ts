/**
 * What a sandbox host's sessions see of this machine's root: the shell start-up
 * files a fresh Debian install has, not the machine's own, which sshd's bash
 * would read in every session (a workstation's pyenv init costs 0.1 s of CPU
 * each, and every deploy step is a session).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeSandboxDir, startSandboxHost, type SandboxHost } from "../../scripts/sandbox/host";

const root = process.getuid?.() === 0;
const tools = ["unshare", "ssh", "ssh-keygen", "sshd"].filter((t) => spawnSync("bash", ["-c", `PATH=$PATH:/usr/sbin command -v ${t}`]).status !== 0);
if (process.env.CI === "true" && (!root || tools.length)) throw new Error(`the sandbox host test needs root and ${tools.join(", ")} in CI`);

const DEFAULT_BASHRC = "/usr/share/base-files/dot.bashrc";

describe.runIf(root && tools.length === 0)("a sandbox host's root", () => {
    let host: SandboxHost;
    const machineBashrc = existsSync("/root/.bashrc") ? { text: readFileSync("/root/.bashrc", "utf8"), mtimeMs: statSync("/root/.bashrc").mtimeMs } : undefined;

    beforeAll(async () => {
        host = await startSandboxHost(mkdtempSync(path.join(tmpdir(), "hx-sandbox-host-")));
    });

    afterAll(async () => {
        await host?.stop();
        if (host) removeSandboxDir(host.dir);
    });

    it.runIf(machineBashrc !== undefined)("has a fresh Debian install's .bashrc in its sessions, and the machine's own is left as it was", async () => {
        const seen = await host.exec("cat /root/.bashrc");
        expect(seen.code).toBe(0);
        expect(seen.stdout).toBe(existsSync(DEFAULT_BASHRC) ? readFileSync(DEFAULT_BASHRC, "utf8") : "");
        // Writing through the mount would change the machine's file: the host cannot.
        const write = await host.exec("echo 'export HX_SANDBOX_TOUCHED=1' >> /root/.bashrc");
        expect(write.code).not.toBe(0);
        expect(readFileSync("/root/.bashrc", "utf8")).toBe(machineBashrc!.text);
        expect(statSync("/root/.bashrc").mtimeMs).toBe(machineBashrc!.mtimeMs);
    });
});
