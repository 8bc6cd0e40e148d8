/**
 * The resource plugins the engine runs this project with, observed from the
 * outside, on the real engine: `command:remote:Command` and `CopyToRemote`
 * over real SSH, and
 * the random resources the keyring uses. These are the behaviours the program
 * relies on. They run against whatever scripts/install-pulumi.sh provided:
 * upstream's plugins where present, the stand-ins otherwise
 * (HX_PULUMI_PLUGINS=upstream refuses the stand-ins), so the same file checks
 * a stand-in against upstream, test by test.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStack, provideEngine, REPO_ROOT, runCli, runPulumi, setConfig, type EngineInfo, type PulumiRun, type Stack } from "../../../scripts/lib/engine";
import { isCI, isRoot, missingTools, removeDir, tempDir } from "../../support/env";
import { startTestSshd, type TestSshd } from "../../support/sshd";

const missing = missingTools(["sshd", "ssh", "ssh-keygen", "go"].map((t) => (t === "sshd" ? "/usr/sbin/sshd" : t === "go" ? "/usr/local/go/bin/go" : t)));
if (isCI && !isRoot) throw new Error("the plugin tests need root in CI (their sshd logs in a test user)");

/** Everything a plugin reported, for failure messages. */
const show = (r: PulumiRun) => `exit ${r.code}\n--- stdout\n${r.stdout.slice(-6000)}\n--- stderr\n${r.stderr.slice(-3000)}`;

describe.runIf(isRoot && missing.length === 0)("resource plugins on the real engine", () => {
    let engine: EngineInfo;
    let sshd: TestSshd;
    let dir: string;
    let stack: Stack;
    const plugin = (name: string) => engine.plugins.find((p) => p.name === name)!;

    /** A program of one file; `resources` is JavaScript run with `pulumi`, `command`, `random`, `conn` and `cfg` in scope. */
    const program = (resources: string) =>
        writeFileSync(
            path.join(dir, "index.js"),
            [
                'const pulumi = require("@pulumi/pulumi");',
                'const command = require("@pulumi/command");',
                'const random = require("@pulumi/random");',
                "const cfg = new pulumi.Config();",
                'const conn = { host: cfg.require("address"), port: cfg.requireNumber("port"), user: cfg.require("user"), privateKey: cfg.requireSecret("key"), hostKey: cfg.require("hostKey"), dialErrorLimit: 2, perDialTimeout: 5 };',
                resources,
            ].join("\n"),
        );
    const up = (...args: string[]) => runPulumi(stack, ["up", "--yes", "--skip-preview", ...args]);
    const preview = (...args: string[]) => runPulumi(stack, ["preview", "--diff", ...args]);
    const outputs = async (): Promise<Record<string, any>> => JSON.parse((await runPulumi(stack, ["stack", "output", "--json", "--show-secrets"])).stdout);
    const exported = async (showSecrets = false) => (await runPulumi(stack, ["stack", "export", ...(showSecrets ? ["--show-secrets"] : [])])).stdout;
    const workLog = () => {
        try {
            return readFileSync(path.join(sshd.work, "log"), "utf8");
        } catch {
            return "";
        }
    };
    /** The diagnostics of one run that a plugin sent about its resources (not the program's debug lines), from the event log. */
    const diagnostics = (file: string) =>
        readFileSync(file, "utf8")
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { diagnosticEvent?: { urn?: string; message: string; ephemeral?: boolean; severity: string } })
            .flatMap((e) => (e.diagnosticEvent && e.diagnosticEvent.severity !== "debug" && /::command:remote:Command::/.test(e.diagnosticEvent.urn ?? "") ? [e.diagnosticEvent] : []));

    beforeAll(async () => {
        engine = provideEngine();
        sshd = await startTestSshd();
        dir = tempDir("hx-plugins-");
        writeFileSync(path.join(dir, "Pulumi.yaml"), "name: hx-plugins\nruntime: nodejs\nmain: index.js\n");
        writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "hx-plugins", main: "index.js" }));
        symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
        program("");
        stack = await openStack(engine, { stack: "plugins", cwd: dir, backendDir: path.join(dir, "backend"), configFile: path.join(dir, "config", "Pulumi.plugins.yaml"), passphraseFile: path.join(dir, "passphrase") });
        await setConfig(stack, { "hx-plugins:address": sshd.address, "hx-plugins:port": sshd.port, "hx-plugins:user": sshd.user, "hx-plugins:hostKey": sshd.hostKey, "hx-plugins:work": sshd.work }, { "hx-plugins:key": sshd.privateKey });
    }, 900_000);

    afterAll(async () => {
        await sshd?.stop();
        if (dir) removeDir(dir);
    });

    it("reports which plugin served each package, and a stand-in's version says so", () => {
        for (const name of ["command", "random"]) {
            const p = plugin(name);
            expect(["upstream", "standin"]).toContain(p.source);
            if (p.source === "standin") expect(p.version).toMatch(/\+hx-standin$/);
        }
        if (process.env.HX_PULUMI_PLUGINS === "upstream") expect(engine.plugins.filter((p) => p.name !== "aws").map((p) => p.source)).toEqual(["upstream", "upstream"]);
    });

    it("create runs over SSH with stdin and an accepted environment; stdout and stderr each lose one trailing newline", async () => {
        program(`const c = new command.remote.Command("c", { connection: conn, create: "printf '%s|%s\\\\n\\\\n' \\"$HX_A\\" \\"$(cat)\\"; printf 'err\\\\n\\\\n' >&2", stdin: "in", environment: { HX_A: "a" } });
exports.stdout = c.stdout; exports.stderr = c.stderr; exports.id = c.id;`);
        const r = await up();
        expect(r.code, show(r)).toBe(0);
        const o = await outputs();
        expect(o.stdout).toBe("a|in\n");
        expect(o.stderr).toBe("err\n");
        expect(o.id).toMatch(/^c[0-9a-f]{8}$/);
    });

    it("a preview runs nothing and shows stdout as unknown; refresh changes nothing", async () => {
        program('new command.remote.Command("p", { connection: conn, create: `echo ran >> ${cfg.require("work")}/log` });');
        const p = await preview();
        expect(p.code, show(p)).toBe(0);
        expect(p.stdout).toMatch(/\+\s*command:remote:Command: \(create\)/);
        expect(workLog()).toBe("");
        const r = await up();
        expect(r.code, show(r)).toBe(0);
        expect(workLog()).toBe("ran\n");
        const refresh = await runPulumi(stack, ["refresh", "--preview-only", "--expect-no-changes"]);
        expect(refresh.code, show(refresh)).toBe(0);
        expect(workLog()).toBe("ran\n");
    });

    it("a changed create updates in place (create runs again, no delete); update runs instead when set, with the previous stdout in PULUMI_COMMAND_STDOUT", async () => {
        const res = (create: string, update?: string, extra = "") =>
            `const w = cfg.require("work"); const c = new command.remote.Command("u", { connection: conn, create: \`${create}\`, ${update ? `update: \`${update}\`, ` : ""}delete: \`echo deleted >> \${w}/log\`${extra} });
exports.stdout = c.stdout;`;
        program(res("echo one; echo created >> ${w}/log"));
        expect((await up()).code).toBe(0);
        program(res("echo one; echo created >> ${w}/log # changed"));
        const p = await preview();
        expect(p.stdout, show(p)).toMatch(/~\s*command:remote:Command: \(update\)\s*\n\s*\[id=u[0-9a-f]{8}\]/);
        expect(p.stdout).toMatch(/~ create: /);
        const r = await up();
        expect(r.code, show(r)).toBe(0);
        expect(workLog().match(/created|deleted/g)).toEqual(["created", "created"]);
        program(res("echo one # changed again", 'echo "was:$PULUMI_COMMAND_STDOUT"'));
        expect((await up()).code).toBe(0);
        expect((await outputs()).stdout).toBe("was:one");
        program(res("echo one # changed a third time", 'echo "was:$PULUMI_COMMAND_STDOUT"', ", addPreviousOutputInEnv: false"));
        expect((await up()).code).toBe(0);
        expect((await outputs()).stdout).toBe("was:");
        expect(workLog()).not.toContain("deleted");
    });

    it("changed triggers replace the command (the new one is created, then the old one deleted); removing it runs delete with its last stdout", async () => {
        const res = (trigger: string) =>
            `const w = cfg.require("work"); new command.remote.Command("t", { connection: conn, triggers: ["${trigger}"], create: \`echo made-${trigger}; echo create-${trigger} >> \${w}/tlog\`, delete: \`echo "delete-$PULUMI_COMMAND_STDOUT" >> \${w}/tlog\` });`;
        const tlog = () => readFileSync(path.join(sshd.work, "tlog"), "utf8").trim().split("\n");
        program(res("a"));
        expect((await up()).code).toBe(0);
        program(res("b"));
        const p = await preview();
        expect(p.stdout, show(p)).toMatch(/\+-\s*command:remote:Command: \(replace\)/);
        const r = await up();
        expect(r.code, show(r)).toBe(0);
        expect(tlog()).toEqual(["create-a", "create-b", "delete-made-a"]);
        program("");
        expect((await up()).code).toBe(0);
        expect(tlog()).toEqual(["create-a", "create-b", "delete-made-a", "delete-made-b"]);
    });

    it("a failing command fails the up with the exit status, the command, and the combined output", async () => {
        program(`new command.remote.Command("f", { connection: conn, create: "echo to-out; sleep 0.2; echo to-err >&2; exit 3" });`);
        const r = await up();
        expect(r.code).not.toBe(0);
        expect(r.stdout).toContain('Process exited with status 3: running "echo to-out; sleep 0.2; echo to-err >&2; exit 3":');
        expect(r.stdout).toMatch(/to-out\n\s*to-err/);
        program("");
        expect((await up()).code).toBe(0);
    });

    it("an environment variable the server does not accept fails the command before it runs", async () => {
        program('new command.remote.Command("e", { connection: conn, create: `echo env-ran >> ${cfg.require("work")}/elog`, environment: { NOT_ACCEPTED: "x" } });');
        const r = await up();
        expect(r.code).not.toBe(0);
        expect(r.stdout).toContain('could not set environment variable "NOT_ACCEPTED": ssh: setenv failed');
        expect(() => readFileSync(path.join(sshd.work, "elog"))).toThrow();
        program("");
        expect((await up()).code).toBe(0);
    });

    it("logging decides which output lines reach the engine's diagnostics", async () => {
        const events = path.join(dir, "events.json");
        program(`new command.remote.Command("l1", { connection: conn, create: "echo OUT-none; echo ERR-none >&2", logging: "none" });
new command.remote.Command("l2", { connection: conn, create: "echo OUT-stdout; echo ERR-stdout >&2", logging: "stdout" });
new command.remote.Command("l3", { connection: conn, create: "echo OUT-both; echo ERR-both >&2" });`);
        // The event log is a hidden flag of the CLI (the Automation API's); PULUMI_DEBUG_COMMANDS shows it.
        const r = await runCli(["up", "--yes", "--skip-preview", "--event-log", events, "--stack", stack.stack, "--config-file", stack.configFile, "--non-interactive"], {
            cwd: stack.cwd,
            env: { ...stack.env, PULUMI_DEBUG_COMMANDS: "true" },
        });
        expect(r.code, show(r)).toBe(0);
        const seen = diagnostics(events).map((d) => `${d.urn?.replace(/.*::/, "")}: ${d.message}`).join("\n");
        // Each line from its own command, so that a line attributed to the wrong resource fails too.
        for (const line of ["l2: OUT-stdout", "l3: OUT-both", "l3: ERR-both"]) expect(seen).toContain(line);
        for (const line of ["OUT-none", "ERR-none", "ERR-stdout"]) expect(seen).not.toContain(line);
        program("");
        expect((await up()).code).toBe(0);
    });

    it("the connection is secret, and a new private key is an update in place, not a replacement", async () => {
        const res = (key: string) => `const w = cfg.require("work"); new command.remote.Command("k", { connection: { ...conn, privateKey: cfg.requireSecret("${key}") }, create: \`echo k >> \${w}/klog\`, delete: \`echo k-deleted >> \${w}/klog\` });`;
        program(res("key"));
        expect((await up()).code).toBe(0);
        await setConfig(stack, {}, { "hx-plugins:key2": sshd.otherPrivateKey });
        program(res("key2"));
        const p = await preview();
        expect(p.stdout, show(p)).toMatch(/~\s*command:remote:Command: \(update\)/);
        expect(p.stdout).toMatch(/~ connection: \[secret\]/);
        expect((await up()).code).toBe(0);
        expect(readFileSync(path.join(sshd.work, "klog"), "utf8")).toBe("k\nk\n");
        const state = await exported();
        for (const key of [sshd.privateKey, sshd.otherPrivateKey]) {
            const body = key.split("\n")[1];
            expect(state.includes(body), "a private key in plain text in the state").toBe(false);
        }
        program("");
        expect((await up()).code).toBe(0);
    });

    it("a pinned host key is checked strictly; dial errors are retried dialErrorLimit times and named", async () => {
        program(`new command.remote.Command("h", { connection: { ...conn, hostKey: "${sshd.wrongHostKey}", dialErrorLimit: 1 }, create: "true" });`);
        const wrong = await up();
        expect(wrong.code).not.toBe(0);
        expect(wrong.stdout).toContain("after 1 failed attempts: ssh: handshake failed: ssh: host key mismatch");
        program(`new command.remote.Command("h", { connection: { ...conn, port: 1, dialErrorLimit: 2 }, create: "true" });`);
        const refused = await up();
        expect(refused.code).not.toBe(0);
        expect(refused.stdout).toContain(`after 2 failed attempts: dial tcp ${sshd.address}:1: connect: connection refused`);
        program(`new command.remote.Command("h", { connection: { ...conn, hostKey: undefined }, create: "true" });`);
        const unpinned = await up();
        expect(unpinned.code, show(unpinned)).toBe(0);
        program("");
        expect((await up()).code).toBe(0);
    });

    it("a stand-in refuses an input it does not implement, naming it (upstream's implements them all)", async ({ skip }) => {
        if (plugin("command").source !== "standin") skip();
        program(`new command.remote.Command("n", { connection: { ...conn, password: "pw" }, create: "true" });`);
        const r = await up();
        expect(r.code).not.toBe(0);
        expect(r.stdout).toContain('does not implement "connection.password"');
        program("");
        expect((await up()).code).toBe(0);
    });

    it("CopyToRemote copies a folder archive into the remote path over SFTP; the state keeps its hash, not its files; a changed file is an update, changed triggers a replacement; a delete leaves the copy", async () => {
        const src = path.join(dir, "stage-src");
        mkdirSync(path.join(src, "sub"), { recursive: true });
        writeFileSync(path.join(src, "a.sh"), "echo copy-marker-one\n");
        writeFileSync(path.join(src, "sub", "b.txt"), "b\n");
        const res = (trigger: string) =>
            `const c = new command.remote.CopyToRemote("cp", { connection: conn, source: new pulumi.asset.FileArchive("stage-src"), remotePath: \`\${cfg.require("work")}/dest\`, triggers: ["${trigger}"] });
new command.remote.CopyToRemote("txt", { connection: conn, source: new pulumi.asset.StringAsset("text-asset\\n"), remotePath: \`\${cfg.require("work")}/text/t.txt\` });
exports.id = c.id;`;
        const copied = (rel: string) => readFileSync(path.join(sshd.work, "dest", "stage-src", rel), "utf8");
        program(res("a"));
        const p = await preview();
        expect(p.code, show(p)).toBe(0);
        expect(p.stdout).toMatch(/\+\s*command:remote:CopyToRemote: \(create\)/);
        expect(existsSync(path.join(sshd.work, "dest"))).toBe(false);
        const r = await up();
        expect(r.code, show(r)).toBe(0);
        expect(copied("a.sh")).toBe("echo copy-marker-one\n");
        expect(copied("sub/b.txt")).toBe("b\n");
        expect(readFileSync(path.join(sshd.work, "text", "t.txt"), "utf8")).toBe("text-asset\n");
        expect((await outputs()).id).toMatch(/^[0-9a-f]{8}$/);
        const state = await exported(true);
        expect(state).not.toContain("copy-marker");
        expect(state).toMatch(/"path": "stage-src"/);
        expect((await preview("--expect-no-changes")).code).toBe(0);

        writeFileSync(path.join(src, "a.sh"), "echo copy-marker-two\n");
        const changed = await preview();
        expect(changed.stdout, show(changed)).toMatch(/~\s*command:remote:CopyToRemote: \(update\)/);
        expect((await up()).code).toBe(0);
        expect(copied("a.sh")).toBe("echo copy-marker-two\n");

        // A copy into an existing folder overwrites; files it no longer has stay.
        writeFileSync(path.join(sshd.work, "dest", "stage-src", "sub", "b.txt"), "tampered\n");
        program(res("b"));
        const replaced = await preview();
        expect(replaced.stdout, show(replaced)).toMatch(/\+-\s*command:remote:CopyToRemote: \(replace\)/);
        expect((await up()).code).toBe(0);
        expect(copied("sub/b.txt")).toBe("b\n");

        program("");
        expect((await up()).code).toBe(0);
        expect(copied("a.sh")).toBe("echo copy-marker-two\n");
    });

    it("RandomPassword: ID none, a secret result of the asked length and classes; a changed input replaces it", async () => {
        const res = (length: number) => `const p = new random.RandomPassword("pw", { length: ${length}, special: false }); exports.result = p.result; exports.id = p.id;`;
        program(res(96));
        expect((await up()).code).toBe(0);
        const o = await outputs();
        expect(o.id).toBe("none");
        expect(o.result).toMatch(/^[A-Za-z0-9]{96}$/);
        expect(await exported()).not.toContain(o.result);
        expect(await exported(true)).toContain(o.result);
        program(res(97));
        const p = await preview();
        expect(p.stdout, show(p)).toMatch(/\+-\s*random:index\/randomPassword:RandomPassword: \(replace\)/);
        expect((await up()).code).toBe(0);
        expect((await outputs()).result).toMatch(/^[A-Za-z0-9]{97}$/);
        program("");
        expect((await up()).code).toBe(0);
    });

    it("RandomBytes: its ID is the base64 of its bytes, in plain text in the state (why the keyring left it)", async () => {
        program(`const b = new random.RandomBytes("b", { length: 64 }); exports.base64 = b.base64; exports.id = b.id;`);
        expect((await up()).code).toBe(0);
        const o = await outputs();
        expect(Buffer.from(o.base64, "base64")).toHaveLength(64);
        expect(o.id).toBe(o.base64);
        expect(await exported()).toContain(o.base64);
        program("");
        expect((await up()).code).toBe(0);
    });
});
