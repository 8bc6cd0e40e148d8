/**
 * scripts/install-pulumi.sh chooses each resource plugin: upstream's on PATH,
 * then upstream's under the user's PULUMI_HOME, then the stand-in; it logs
 * the choice, installs only into the checkout's engine home, and refuses a
 * stand-in when HX_PULUMI_PLUGINS=upstream. Runs the real script against the
 * engine npm test's setup built (warm: no build happens here).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parsePluginEvents, REPO_ROOT } from "../../scripts/lib/engine";
import { isCI, removeDir, tempDir } from "../support/env";

const SCRIPT = path.join(REPO_ROOT, "scripts", "install-pulumi.sh");
const ready = spawnSync("bash", [SCRIPT, "--check"], { encoding: "utf8" }).status === 0;
if (isCI && !ready) throw new Error("install-pulumi.sh --check fails under CI=true: npm test's setup should have built the engine");

/** The real cache: a HOME of the test's own must not send the script to build the CLI again. */
const CACHE = process.env.HX_PULUMI_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "hx-backup");

/** PATH without any folder that holds a plugin of ours: each test decides what is on PATH. */
const PATH_WITHOUT_PLUGINS = (process.env.PATH ?? "")
    .split(":")
    .filter((d) => !["command", "random", "aws"].some((n) => existsSync(path.join(d, `pulumi-resource-${n}`))))
    .join(":");

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

/** Runs the script with its own engine home, user PULUMI_HOME and HOME, and PATH with `extraPath` first. */
function install(opts: { extraPath?: string; env?: Record<string, string> } = {}) {
    const dir = tempDir("hx-install-pulumi-");
    dirs.push(dir);
    const engineHome = path.join(dir, "engine-home");
    const userHome = path.join(dir, "user-pulumi");
    const home = path.join(dir, "home");
    mkdirSync(home);
    const r = spawnSync("bash", [SCRIPT], {
        encoding: "utf8",
        env: {
            ...process.env,
            HOME: home,
            HX_ENGINE_HOME: engineHome,
            HX_USER_PULUMI_HOME: userHome,
            PATH: `${opts.extraPath ? `${opts.extraPath}:` : ""}${PATH_WITHOUT_PLUGINS}`,
            HX_PULUMI_CACHE: CACHE,
            HX_PULUMI_PLUGINS: "",
            ...opts.env,
        },
    });
    const plugins = (name: string) => (existsSync(path.join(engineHome, "plugins")) ? readdirSync(path.join(engineHome, "plugins")).filter((d) => d.startsWith(`resource-${name}-`)) : []);
    return { r, dir, engineHome, userHome, home, plugins, events: parsePluginEvents(r.stderr) };
}

/** A folder with an executable `pulumi-resource-<name>` that is not a stand-in. */
function fakePlugin(dir: string, name: string): string {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `pulumi-resource-${name}`), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    return dir;
}

describe.runIf(ready)("install-pulumi.sh", () => {
    it("without upstream plugins installs the stand-ins into the engine home only, named <release>+hx-standin, and prints bin= and home=", () => {
        const { r, engineHome, home, plugins, events } = install();
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^bin=/.+\\nhome=${engineHome}\\n$`));
        expect(events.filter((e) => e.name !== "aws")).toEqual([
            { name: "command", source: "standin", version: "1.2.1+hx-standin" },
            { name: "random", source: "standin", version: "4.21.2+hx-standin" },
        ]);
        expect(plugins("command")).toEqual(["resource-command-v1.2.1+hx-standin"]);
        expect(plugins("random")).toEqual(["resource-random-v4.21.2+hx-standin"]);
        // Nothing where a pulumi of the user's would look: not ~/.pulumi, not PATH.
        expect(existsSync(path.join(home, ".pulumi"))).toBe(false);
        expect(spawnSync("bash", ["-c", "command -v pulumi-resource-command"], { env: { ...process.env, PATH: PATH_WITHOUT_PLUGINS } }).status).not.toBe(0);
        // The engine lists the stand-in under its own version.
        const bin = /^bin=(.+)$/m.exec(r.stdout)![1];
        const ls = spawnSync(path.join(bin, "pulumi"), ["plugin", "ls", "--json"], { encoding: "utf8", env: { ...process.env, PULUMI_HOME: engineHome, PULUMI_SKIP_UPDATE_CHECK: "true" } });
        expect(ls.status, ls.stderr).toBe(0);
        expect((JSON.parse(ls.stdout) as { name: string; version: string }[]).map((p) => `${p.name} ${p.version}`).sort()).toEqual(["command 1.2.1+hx-standin", "random 4.21.2+hx-standin"]);
    });

    it("prefers an upstream plugin under the user's PULUMI_HOME (linked in, replacing the stand-in) and one on PATH over that", () => {
        const first = install();
        expect(first.plugins("command")).toEqual(["resource-command-v1.2.1+hx-standin"]);
        fakePlugin(path.join(first.userHome, "plugins", "resource-command-v1.2.1"), "command");
        const again = spawnSync("bash", [SCRIPT], {
            encoding: "utf8",
            env: { ...process.env, PATH: PATH_WITHOUT_PLUGINS, HOME: first.home, HX_PULUMI_CACHE: CACHE, HX_ENGINE_HOME: first.engineHome, HX_USER_PULUMI_HOME: first.userHome, HX_PULUMI_PLUGINS: "" },
        });
        expect(again.status, again.stderr).toBe(0);
        expect(parsePluginEvents(again.stderr).find((e) => e.name === "command")).toEqual({ name: "command", source: "upstream", version: "1.2.1" });
        expect(first.plugins("command")).toEqual(["resource-command-v1.2.1"]);
        expect(readlinkSync(path.join(first.engineHome, "plugins", "resource-command-v1.2.1", "pulumi-resource-command"))).toBe(path.join(first.userHome, "plugins", "resource-command-v1.2.1", "pulumi-resource-command"));
        expect(again.stderr).toMatch(/event=plugin name=random source=standin/);

        const onPath = install({ extraPath: fakePlugin(path.join(first.dir, "path-bin"), "random") });
        expect(onPath.r.status, onPath.r.stderr).toBe(0);
        expect(onPath.r.stderr).toMatch(/event=plugin name=random source=upstream how=path path=\S+\/path-bin\/pulumi-resource-random/);
        expect(onPath.plugins("random")).toEqual([]);
    });

    it("with HX_PULUMI_PLUGINS=upstream, a missing upstream plugin is an error (exit 3) that names it, not a stand-in", () => {
        const { r, plugins } = install({ env: { HX_PULUMI_PLUGINS: "upstream" } });
        expect(r.status).toBe(3);
        expect(r.stderr).toContain("HX_PULUMI_PLUGINS=upstream, but no upstream pulumi-resource-command 1.2.* is on PATH");
        expect(r.stdout).toBe("");
        expect(plugins("command")).toEqual([]);
    });

    it("names the one command that installs the aws plugin at the version package-lock.json asks for", () => {
        const { r, engineHome } = install();
        const lock = JSON.parse(spawnSync("cat", [path.join(REPO_ROOT, "package-lock.json")], { encoding: "utf8" }).stdout) as { packages: Record<string, { version: string }> };
        const aws = lock.packages["node_modules/@pulumi/aws"].version;
        expect(r.stderr).toContain(`event=plugin name=aws source=missing needed_by=stacks-with-aws-resources install="PULUMI_HOME=${engineHome} `);
        expect(r.stderr).toContain(`pulumi plugin install resource aws ${aws}"`);
    });
});
