/**
 * Upgrading a stack from the release that installed every file with its own
 * step (about 50 per host) to grouped file steps (config, files, units,
 * sudoers), on the real Pulumi engine and one sandbox host.
 *
 * The old release is deployed from a project copy (git archive of that
 * commit), then the copy becomes the current tree and `pulumi up` runs once.
 * The new steps take the old steps' paths over (install records, same
 * stack); the old steps' deletes, which run last, then leave them. So the
 * upgrade removes nothing the new steps install, rewrites no file whose
 * content is the same, every job still succeeds, the host read and the
 * on-host drift check are clean, and a second up runs nothing.
 */
import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shellCommand } from "../../../render/shell";
import { PROCEDURES, stackOutputs, type Stack } from "../../../scripts/lib/engine";
import {
    ENGINE_TEST_TIMEOUT_MS,
    changedPaths,
    changes,
    copyProject,
    diffOps,
    engineTestsUnavailable,
    expectJobsOk,
    expectOk,
    factsOf,
    hostPlan,
    namedSteps,
    newSshKey,
    planFleet,
    plannedPaths,
    pulumi,
    REPO_ROOT,
    runJobs,
    sandboxStack,
    sh,
    startFleet,
    statPaths,
    stepLog,
    tail,
    Timings,
    type EncryptionOutput,
    type FleetHost,
    type FleetHostSpec,
} from "../../support/engine";
import { tempDir } from "../../support/env";
import { timeEachTest } from "../../support/timing";

const available = engineTestsUnavailable();

const STACK = "upg";
const APP = "/srv/hx-app";
const SPEC: FleetHostSpec = { name: "upg-1", address: "127.0.0.121", roles: ["application", "configuration"], appPaths: [APP] };
const TIMEOUT = 900_000;

/** The last release with one step per file: the parent of the commit that brought filesStep into the host plan. */
function perFileRelease(): string {
    const r = spawnSync("git", ["log", "--reverse", "--format=%H", "-S", "filesStep(", "--", "render/hostPlan.ts"], { cwd: REPO_ROOT, encoding: "utf8" });
    const first = r.stdout.split("\n")[0];
    if (r.status !== 0 || !first) throw new Error(`cannot find the commit that brought filesStep into render/hostPlan.ts: ${r.stderr}`);
    return `${first}^`;
}

/** Makes `project` hold exactly the tree of `rev` (git archive), node_modules still linked to the repository's. */
function checkoutInCopy(project: string, rev: string): void {
    for (const entry of readdirSync(project)) if (entry !== "node_modules") rmSync(path.join(project, entry), { recursive: true, force: true });
    const archive = spawnSync("sh", ["-c", 'git -C "$1" archive --format=tar "$2" | tar -x -C "$3"', "sh", REPO_ROOT, rev, project], { encoding: "utf8" });
    if (archive.status !== 0) throw new Error(`git archive ${rev} into ${project} failed: ${archive.stderr}`);
}

/** Makes `project` hold the repository's working tree again (as copyProject does). */
function currentInCopy(project: string): void {
    for (const entry of readdirSync(project)) if (entry !== "node_modules") rmSync(path.join(project, entry), { recursive: true, force: true });
    const fresh = copyProject(`${project}.current`);
    for (const entry of readdirSync(fresh)) if (entry !== "node_modules") cpSync(path.join(fresh, entry), path.join(project, entry), { recursive: true, verbatimSymlinks: true });
    rmSync(fresh, { recursive: true, force: true });
}

describe.runIf(!available.reason)("upgrade from one step per file to grouped file steps, on the real Pulumi engine", { timeout: ENGINE_TEST_TIMEOUT_MS }, () => {
    const timings = new Timings();
    let dir: string;
    let fleet: FleetHost[];
    let stack: Stack;
    let project: string;
    let configFile: string;
    const h = () => fleet[0].host;
    const outputs = async () => (await stackOutputs(stack)) as { encryption: EncryptionOutput; hosts: Record<string, { jobs: { timer: string }[] } > };

    beforeAll(async () => {
        dir = tempDir("hx-engine-upgrade-");
        const keyFile = path.join(dir, "deploy_ed25519");
        newSshKey(keyFile);
        fleet = await startFleet(path.join(dir, "hosts"), [SPEC], keyFile);
        project = copyProject(path.join(dir, "project"));
        checkoutInCopy(project, perFileRelease());
        // The release really is the per-file one, or this test would upgrade nothing.
        expect(readFileSync(path.join(project, "render/hostPlan.ts"), "utf8")).toContain('const name = `script-${slug(script.replace(/\\.sh$/, ""))}`;');
        configFile = path.join(dir, "stack", `Pulumi.${STACK}.yaml`);
        stack = await sandboxStack(available.engine!, dir, STACK, fleet, keyFile, project);
    }, 300_000);

    afterAll(async () => {
        for (const f of fleet ?? []) await f.host.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
        timings.print("engine upgrade (1 host) timings:");
    }, 300_000);

    timeEachTest(timings);

    let oldSteps: number;
    let before: Map<string, string>;
    let shared: string[];
    let contentBefore: Map<string, string>;
    /** path -> sha256 of its content on the host. */
    const contentOf = async (paths: readonly string[]) =>
        new Map(
            (await sh(h(), shellCommand("sha256sum", "--", ...paths)))
                .split("\n")
                .filter(Boolean)
                .map((l) => [l.slice(66), l.slice(0, 64)] as const),
        );

    it("deploys the per-file release; its jobs succeed", async () => {
        const up = await pulumi(stack, PROCEDURES.up);
        expectOk(up);
        timings.add("up, first, per-file release (1 host)", up.seconds);
        const out = await outputs();
        const p = planFleet(configFile, STACK, factsOf(out.encryption), project);
        oldSteps = hostPlan(p, SPEC.name).steps.length;
        expect(oldSteps).toBeGreaterThan(30);
        expect(namedSteps(stepLog(h()), hostPlan(p, SPEC.name))).toEqual(hostPlan(p, SPEC.name).steps.map((s) => s.name).sort());
        expectJobsOk(SPEC.name, await runJobs(h(), out.hosts[SPEC.name].jobs.map((j) => j.timer)));
    }, TIMEOUT);

    it("the upgrade's up creates the grouped steps, deletes the per-file ones, replaces nothing, and removes or rewrites no file the new steps install", async () => {
        const out = await outputs();
        const oldPlan = hostPlan(planFleet(configFile, STACK, factsOf(out.encryption), project), SPEC.name);
        currentInCopy(project);
        const newPlan = hostPlan(planFleet(configFile, STACK, factsOf(out.encryption), project), SPEC.name);
        expect(newPlan.steps.length).toBeLessThan(oldPlan.steps.length / 3);
        // Paths both releases install, but for the manifest entries (which the new steps name after themselves).
        const newPaths = new Set(plannedPaths(newPlan));
        shared = plannedPaths(oldPlan).filter((p) => newPaths.has(p) && !p.includes("/manifest.d/"));
        expect(shared.length).toBeGreaterThan(25);
        before = await statPaths(h(), shared);
        contentBefore = await contentOf(shared);

        const preview = await pulumi(stack, PROCEDURES.preview);
        expectOk(preview);
        timings.add("preview, the upgrade (1 host)", preview.seconds);
        const ops = diffOps(preview.stdout);
        expect(ops.filter((o) => !/^(\+ create|~ update|- delete) /.test(o)), `nothing replaced; tail:\n${tail(preview)}`).toEqual([]);
        const oldNames = new Set(oldPlan.steps.map((s) => s.name));
        const newNames = new Set(newPlan.steps.map((s) => s.name));
        expect(ops.filter((o) => o.startsWith("- delete ")).sort()).toEqual(oldPlan.steps.filter((s) => !newNames.has(s.name)).map((s) => `- delete ${SPEC.name}-${s.name}`).sort());
        expect(ops.filter((o) => o.startsWith("+ create ")).sort()).toEqual(
            [...newPlan.steps.filter((s) => !oldNames.has(s.name)).map((s) => s.name), ...(newPlan.stages ?? [])].map((n) => `+ create ${SPEC.name}-${n}`).sort(),
        );
        expect(newPlan.stages).toEqual(["files-stage"]);

        const up = await pulumi(stack, PROCEDURES.up);
        expectOk(up);
        timings.add("up, the upgrade (1 host)", up.seconds);
        expect(up.done.filter((o) => o.op.includes("replace"))).toEqual([]);
        expect(changes(up.done).filter((c) => c.startsWith("delete ")).length).toBe(oldPlan.steps.filter((s) => !newNames.has(s.name)).length);
        // The old steps' deletes said why they left the files.
        expect(`${up.stdout}\n${up.stderr}`).toContain("leaving what it installed, which another install now owns");

        const after = await statPaths(h(), shared);
        expect([...after.entries()].filter(([, v]) => v === "missing"), "files the new steps install, missing after the upgrade").toEqual([]);
        // A file whose content the new release does not change is not even rewritten: inode and mtime kept.
        const contentAfter = await contentOf(shared);
        const sameContent = shared.filter((p) => contentBefore.get(p) === contentAfter.get(p));
        expect(sameContent.length).toBeGreaterThan(20);
        expect(changedPaths(before, after).filter((p) => sameContent.includes(p)), "files rewritten by the upgrade although their content did not change").toEqual([]);
    }, TIMEOUT);

    it("after the upgrade: every job succeeds (the on-host drift check among them), the host read finds no drift, and a second up runs nothing", async () => {
        const out = await outputs();
        const runs = await runJobs(h(), out.hosts[SPEC.name].jobs.map((j) => j.timer));
        expectJobsOk(SPEC.name, runs);
        expect(runs.map((r) => r.unit)).toEqual(expect.arrayContaining([expect.stringMatching(/drift/)]));
        // What the old steps left behind: manifest entries no install record names, which the drift check skips.
        const entries = (await sh(h(), "ls /etc/hx-backup/manifest.d")).split("\n").filter(Boolean);
        expect(entries).toEqual(expect.arrayContaining(["files.tsv", "units.tsv", "config.tsv", "sudoers.tsv"]));

        const clean = await pulumi(stack, PROCEDURES.hostDrift);
        expectOk(clean, "preview --expect-no-changes after the upgrade");
        const ran = stepLog(h()).length;
        const again = await pulumi(stack, PROCEDURES.up);
        expectOk(again);
        expect(changes(again.done)).toEqual([]);
        expect(stepLog(h()).length - ran, "remote steps a second up ran").toBe(0);
    }, TIMEOUT);
});
