/**
 * Safe lifecycle on the real Pulumi engine, over real SSH, with two light
 * sandbox hosts: what an ordinary change to a stack does to the hosts.
 *
 *   1. host drift (a script edited, one removed, a unit's mode and the
 *      config's owner changed, a key made readable): preview shows exactly
 *      those steps as updates, up repairs them in place with no delete, and a
 *      host that cannot be reached is said so, without a list of changes;
 *   2. a delete removes only what its own resource installed: a host renamed
 *      (same address) keeps a working install; the same machine twice in one
 *      stack is refused at preview; a second stack aimed at a host fails
 *      clearly and leaves it untouched;
 *   3. renaming the backup user is refused, at preview and (host reads off)
 *      on the host, before anything changes;
 *   4. an up killed mid-step (SIGKILL, as a runner that dies): the rerun, the runbook's commands,
 *      then a clean preview and every job succeeding.
 *
 * The install records (render/ownership.ts, templates/steps/claim.sh and
 * release.sh) and the host read (components/hostRead.ts) are what these prove.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STAGE_ROOT } from "../../../render/paths";
import { openStack, PROCEDURES, setConfig, stackOutputs, type Stack } from "../../../scripts/lib/engine";
import type { SandboxHost } from "../../../scripts/sandbox/host";
import {
    ENGINE_TEST_TIMEOUT_MS,
    changedPaths,
    changes,
    diffOps,
    engineTestsUnavailable,
    expectJobsOk,
    expectOk,
    fileDigests,
    hostEntry,
    hostPlan,
    hostResources,
    namedSteps,
    newSshKey,
    planFleet,
    plannedPaths,
    pulumi,
    runJobs,
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
import { descendants, tempDir } from "../../support/env";
import { timeEachTest } from "../../support/timing";

const available = engineTestsUnavailable();

const STACK = "life";
const SPECS: readonly FleetHostSpec[] = [
    { name: "cfg-1", address: "127.0.0.111", roles: ["configuration"] },
    { name: "cfg-2", address: "127.0.0.112", roles: ["configuration"] },
];
const STORAGE = "/opt/hx-backups";
const KEYRING = "/etc/hx-backup/keys";
const RECORDS = "/var/lib/hx-backup/deploy/owners";
const TOTAL_TIMEOUT = 900_000;

interface HostsOutput {
    [name: string]: { jobs: { timer: string }[] };
}

describe.runIf(!available.reason)("safe lifecycle on the real Pulumi engine: drift, ownership, renames, interrupted deploys", { timeout: ENGINE_TEST_TIMEOUT_MS }, () => {
    const timings = new Timings();
    let dir: string;
    let fleet: FleetHost[];
    let stack: Stack;
    let configFile: string;
    let sshKey: string;
    let keyFile: string;
    /** Stack name of each fleet host (a rename changes it). */
    const names = new Map(SPECS.map((s) => [s.name, s.name]));

    const fleetHost = (spec: string): SandboxHost => {
        const f = fleet.find((x) => x.spec.name === spec);
        if (!f) throw new Error(`no fleet host ${spec}`);
        return f.host;
    };
    const entries = () => fleet.map((f) => hostEntry({ ...f.spec, name: names.get(f.spec.name)! }, f.host));
    const outputs = async () => (await stackOutputs(stack)) as { hosts: HostsOutput; encryption: EncryptionOutput };
    const plan = async () => {
        const out = await outputs();
        return planFleet(configFile, STACK, { currentKeyId: out.encryption.currentKeyId, keyIds: out.encryption.keyIds, keyFingerprints: out.encryption.fingerprints });
    };
    const logLengths = () => new Map(fleet.map((f) => [f.spec.name, stepLog(f.host).length]));
    /** What each fleet host ran since `before`, named by the plan of its stack name. */
    const ranSince = async (before: Map<string, number>) => {
        const p = await plan();
        return Object.fromEntries(fleet.map((f) => [f.spec.name, namedSteps(stepLog(f.host).slice(before.get(f.spec.name)), hostPlan(p, names.get(f.spec.name)!))]));
    };
    const jobsOk = async () => {
        const out = await outputs();
        for (const f of fleet) {
            const n = names.get(f.spec.name)!;
            expectJobsOk(n, await runJobs(f.host, out.hosts[n].jobs.map((j) => j.timer)));
        }
    };
    /** sshd of a host, paused or resumed: a host that does not answer, with its state and files as they were. */
    const pauseSshd = (spec: string, signal: "SIGSTOP" | "SIGCONT") => {
        const pids = execFileSync("pgrep", ["-f", "--", path.join(fleetHost(spec).dir, "sshd_config")], { encoding: "utf8" }).split("\n").filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), signal);
    };

    beforeAll(async () => {
        dir = tempDir("hx-engine-life-");
        keyFile = path.join(dir, "deploy_ed25519");
        newSshKey(keyFile);
        sshKey = readFileSync(keyFile, "utf8");
        fleet = await startFleet(path.join(dir, "hosts"), SPECS, keyFile);
        configFile = path.join(dir, "stack", `Pulumi.${STACK}.yaml`);
        stack = await openStack(available.engine!, { stack: STACK, backendDir: path.join(dir, "backend"), configFile, passphraseFile: path.join(dir, "passphrase") });
        await setConfig(stack, { "hx-backup:installPackages": false, "hx-backup:backupUser": "hxbackup", "hx-backup:sshUser": "root", "hx-backup:hosts": entries() }, { "hx-backup:sshPrivateKey": sshKey });
        const r = await pulumi(stack, PROCEDURES.up);
        expectOk(r);
        timings.add("up, first (2 hosts, host reads on)", r.seconds);
    }, 600_000);

    afterAll(async () => {
        for (const f of fleet ?? []) {
            try {
                pauseSshd(f.spec.name, "SIGCONT");
            } catch {
                /* already stopped */
            }
            await f.host.stop();
        }
        if (dir) rmSync(dir, { recursive: true, force: true });
        timings.print("engine lifecycle timings:");
    }, 300_000);

    timeEachTest(timings);

    it("drift: preview shows exactly the drifted steps as updates (and fails --expect-no-changes), up repairs them in place with no delete, then all is clean", async () => {
        const clean = await pulumi(stack, PROCEDURES.hostDrift);
        expectOk(clean, "an unchanged preview (host reads on)");
        timings.add("preview, unchanged (2 hosts, host reads on)", clean.seconds);

        const p = await plan();
        const cfg1 = hostPlan(p, "cfg-1");
        const stepPaths = (step: string) => {
            const s = cfg1.steps.find((x) => x.name === step);
            if (!s) throw new Error(`no step ${step} on cfg-1`);
            return s.paths;
        };
        const [removed, edited] = stepPaths("files").filter((x) => /\/backup-[a-z-]+\.sh$/.test(x));
        const unitFile = stepPaths("units").find((x) => x.endsWith(".timer"))!;
        const configFile = stepPaths("config")[0];
        const keyFile = stepPaths("keyring").find((x) => x.startsWith(KEYRING))!;
        const driftedSteps = ["config", "files", "keyring", "units"];
        // Only the drifted files are written again (the keyring's secrets, which the host cannot compare, all of them).
        const rewritten = new Set([removed, edited, unitFile, configFile, ...stepPaths("keyring")]);
        const untouched = plannedPaths(cfg1).filter((x) => !rewritten.has(x));
        expect(untouched.length).toBeGreaterThan(30);
        const before = await statPaths(fleetHost("cfg-1"), untouched);

        await sh(fleetHost("cfg-1"), `set -e; printf '# edited by hand\\n' >> ${edited}; rm -f ${removed}; chmod 0666 ${unitFile}; chown nobody ${configFile}; chmod 0644 ${keyFile}`);
        // The files step's stage copy is replaced (its trigger is the step's host state): the repair reads a fresh stage.
        const drifted = [...driftedSteps.map((s) => `~ update cfg-1-${s}`), "+- replace cfg-1-files-stage"].sort();

        const preview = await pulumi(stack, PROCEDURES.hostDrift);
        expect(preview.code, `preview --expect-no-changes must fail on drift; output tail:\n${tail(preview)}`).not.toBe(0);
        expect(diffOps(preview.stdout), `the drifted steps; output tail:\n${tail(preview)}`).toEqual(drifted);
        // The CLI prints the program's warnings on stderr.
        // Drift names each file: the two scripts of the files step, both.
        expect(preview.stderr).toContain(`cfg-1: step files: the host differs from what it installed (missing ${removed}; changed ${edited}); pulumi up installs it again, in place`);
        expect(preview.stderr).toContain(`cfg-1: step units: the host differs from what it installed (owner-or-mode ${unitFile} (root root 666, expected root root 0644))`);
        timings.add("preview, drifted (2 hosts)", preview.seconds);

        const logs = logLengths();
        const up = await pulumi(stack, PROCEDURES.up);
        expectOk(up);
        expect(changes(up.done), "what the up did").toEqual(
            [...drifted.map((d) => d.replace(/^(~|\+-) /, "")), "create-replacement cfg-1-files-stage", "delete-replaced cfg-1-files-stage"].sort(),
        );
        // No step is deleted or replaced; the stage copy's replacement deletes nothing on the host (the plugin leaves a copy).
        expect(up.done.filter((o) => (o.op.includes("delete") || o.op.includes("replace")) && o.name !== "cfg-1-files-stage")).toEqual([]);
        const ran = await ranSince(logs);
        expect(ran["cfg-1"]).toEqual([...driftedSteps].sort());
        expect(ran["cfg-2"]).toEqual([]);
        // Repaired: the drift check finds nothing; what was not drifted kept its inode and mtime.
        expect(changedPaths(before, await statPaths(fleetHost("cfg-1"), untouched))).toEqual([]);
        await jobsOk();
        const after = await pulumi(stack, PROCEDURES.hostDrift);
        expectOk(after, "a preview after the repair");
        const logs2 = logLengths();
        expectOk(await pulumi(stack, PROCEDURES.up));
        expect(await ranSince(logs2)).toEqual({ "cfg-1": [], "cfg-2": [] });
    }, TOTAL_TIMEOUT);

    it("a host that cannot be reached: its preview says so and shows no change for it, the other host's drift still shows", async () => {
        const p = await plan();
        const script = hostPlan(p, "cfg-1").steps.find((s) => s.name === "files")!;
        await sh(fleetHost("cfg-1"), `printf '# again\\n' >> ${script.paths.find((x) => x.endsWith("/backup-verify.sh"))}`);
        pauseSshd("cfg-2", "SIGSTOP");
        let preview;
        try {
            preview = await pulumi(stack, [...PROCEDURES.preview]);
        } finally {
            pauseSshd("cfg-2", "SIGCONT");
        }
        expectOk(preview, "a preview with one host unreachable");
        expect(diffOps(preview.stdout)).toEqual([`+- replace cfg-1-${script.name}-stage`, `~ update cfg-1-${script.name}`]);
        expect(preview.stderr).toMatch(/cfg-2: its install records were not read \(ssh root@127\.0\.0\.112:\d+ exited \d+/);
        timings.add("preview, one host unreachable", preview.seconds);
        expectOk(await pulumi(stack, PROCEDURES.up));
        expectOk(await pulumi(stack, PROCEDURES.hostDrift), "a preview after the repair");
    }, TOTAL_TIMEOUT);

    it("the same machine twice in one stack is refused at preview, naming both entries", async () => {
        const twice = [...entries(), { ...entries()[0], name: "cfg-1-again" }];
        await setConfig(stack, { "hx-backup:hosts": twice });
        try {
            const r = await pulumi(stack, PROCEDURES.preview);
            expect(r.code).not.toBe(0);
            const text = `${r.stdout}\n${r.stderr}`;
            expect(text).toContain("'hosts[2].address'");
            expect(text).toMatch(/an address and port of its own: host cfg-1 is already 127\.0\.0\.111:\d+/);
        } finally {
            await setConfig(stack, { "hx-backup:hosts": entries() });
        }
    }, TOTAL_TIMEOUT);

    it("a host renamed (same address): the new name's steps take over, the old name's deletes leave them, and every job and the drift check pass", async () => {
        await jobsOk(); // backups to keep
        const uid = await sh(fleetHost("cfg-2"), "id -u hxbackup");
        // Backups untouched (content, inode, size); keys the same bytes (the new keyring step writes them again).
        const dataOf = async () => {
            const m = await fileDigests(fleetHost("cfg-2"), [STORAGE]);
            for (const [f, line] of await fileDigests(fleetHost("cfg-2"), [KEYRING])) m.set(f, line.split(" ")[0]);
            return m;
        };
        const data = await dataOf();
        expect(data.size).toBeGreaterThan(1);
        names.set("cfg-2", "cfg-2b");
        await setConfig(stack, { "hx-backup:hosts": entries() });
        const up = await pulumi(stack, PROCEDURES.up);
        expectOk(up);
        const ops = changes(up.done);
        const p = await plan();
        // The old name's component and every one of its steps and stage copies (as many as the new name's).
        expect(ops.filter((o) => o.startsWith("delete ")).length).toBe(1 + hostResources(hostPlan(p, "cfg-2b")).length);
        // The old name's stage went with its files step; the new name's is in its place.
        expect(await sh(fleetHost("cfg-2"), `ls /root/${STAGE_ROOT}/life`)).toBe("cfg-2b\n");
        expect(ops.filter((o) => !/^(create cfg-2b|delete cfg-2)(-|$)/.test(o.split(" ")[0] + " " + o.split(" ")[1]))).toEqual([]);
        // Every planned file is there, recorded for the new name; the user and the data are the ones from before.
        const paths = plannedPaths(hostPlan(p, "cfg-2b"));
        const stats = await statPaths(fleetHost("cfg-2"), paths);
        expect([...stats].filter(([, s]) => s === "missing").map(([f]) => f)).toEqual([]);
        expect(await sh(fleetHost("cfg-2"), "id -u hxbackup")).toBe(uid);
        const records = await sh(fleetHost("cfg-2"), `cat ${RECORDS}/*`);
        expect(records).not.toMatch(/\/cfg-2-/);
        expect(records).toMatch(/hx-backup\/life\/cfg-2b-account\tuser:hxbackup/);
        const now = await dataOf();
        for (const [f, d] of data) expect(now.get(f), f).toBe(d);
        await jobsOk();
        expectOk(await pulumi(stack, PROCEDURES.hostDrift), "a preview after the rename");
    }, TOTAL_TIMEOUT);

    it("renaming the backup user is refused at preview, and on the host when host reads are off, before anything changes", async () => {
        const p = await plan();
        const inventory = async () => new Map([...(await statPaths(fleetHost("cfg-1"), plannedPaths(hostPlan(p, "cfg-1"))))]);
        const before = await inventory();
        const logs = logLengths();
        await setConfig(stack, { "hx-backup:backupUser": "hxbackup2" });
        try {
            const preview = await pulumi(stack, PROCEDURES.preview);
            expect(preview.code).not.toBe(0);
            expect(`${preview.stdout}\n${preview.stderr}`).toContain("backupUser: host cfg-1's backup user is hxbackup (installed by hx-backup/life/cfg-1-account); renaming it to hxbackup2 in place is refused");

            await setConfig(stack, { "hx-backup:hostReads": false });
            const up = await pulumi(stack, PROCEDURES.up);
            expect(up.code).not.toBe(0);
            expect(up.failed.map((o) => o.name).sort()).toEqual(["cfg-1-account", "cfg-2b-account"]);
            expect(up.errors.map((e) => e.message).join("\n")).toContain("backupUser: this host's backup user is hxbackup (installed by hx-backup/life/cfg-1-account); renaming it to hxbackup2 in place is refused");
            expect(await ranSince(logs)).toEqual({ "cfg-1": ["account"], "cfg-2": expect.any(Array) });
            expect(changedPaths(before, await inventory())).toEqual([]);
            expect(await sh(fleetHost("cfg-1"), "getent passwd hxbackup2 || echo none")).toBe("none\n");
        } finally {
            await setConfig(stack, { "hx-backup:backupUser": "hxbackup", "hx-backup:hostReads": true });
        }
        expectOk(await pulumi(stack, PROCEDURES.hostDrift), "a preview with the name set back");
        await jobsOk();
    }, TOTAL_TIMEOUT);

    it("a second stack aimed at a host fails clearly (at preview, and with host reads off on the host) and leaves the first stack's host untouched", async () => {
        const p = await plan();
        const paths = plannedPaths(hostPlan(p, "cfg-1"));
        const before = await statPaths(fleetHost("cfg-1"), paths);
        const logs = logLengths();
        const other = await openStack(available.engine!, {
            stack: "other",
            backendDir: path.join(dir, "backend"),
            configFile: path.join(dir, "stack", "Pulumi.other.yaml"),
            passphraseFile: path.join(dir, "passphrase"),
        });
        await setConfig(other, { "hx-backup:installPackages": false, "hx-backup:backupUser": "hxbackup", "hx-backup:sshUser": "root", "hx-backup:hosts": [entries()[0]] }, { "hx-backup:sshPrivateKey": sshKey });
        const first = await pulumi(other, PROCEDURES.up);
        expect(first.code).not.toBe(0);
        expect(`${first.stdout}\n${first.stderr}`).toContain("host cfg-1 is managed by another stack (hx-backup/life)");

        await setConfig(other, { "hx-backup:hostReads": false });
        const second = await pulumi(other, PROCEDURES.up);
        expect(second.code).not.toBe(0);
        expect(second.failed.map((o) => o.name)).toEqual(["cfg-1-account"]);
        expect(second.errors.map((e) => e.message).join("\n")).toMatch(/user:hxbackup on this host was installed by hx-backup\/life\/cfg-1-account, of another stack; refusing to take it over for hx-backup\/other\/cfg-1-account/);
        expect(changedPaths(before, await statPaths(fleetHost("cfg-1"), paths))).toEqual([]);
        expect((await ranSince(logs))["cfg-1"]).toEqual(["account"]);
        expectOk(await pulumi(stack, PROCEDURES.hostDrift), "the first stack's preview afterwards");
    }, TOTAL_TIMEOUT);

    it("an up killed mid-step (SIGKILL) leaves pending operations; the rerun, then the runbook's refresh --clear-pending-creates and up converge: no pending operation, a clean preview, every job succeeds", async () => {
        const [added] = await startFleet(path.join(dir, "hosts"), [{ name: "cfg-3", address: "127.0.0.113", roles: ["configuration"] }], keyFile);
        fleet.push(added);
        names.set("cfg-3", "cfg-3");
        await setConfig(stack, { "hx-backup:hosts": entries() });
        // The new host's files step (its longest: some thirty files) is the one to interrupt. Two SIGINTs would
        // cancel it (the engine tells the plugin, and the step fails cleanly); a killed CLI leaves it pending.
        const filesDigest = hostPlan(await plan(), "cfg-3").steps.find((s) => s.name === "files")!.digest;
        let interruptedAt = -1;
        const run = await pulumi(stack, PROCEDURES.up, {
            onSpawn: (child) => {
                // The CLI and its plugins killed once that step is under way: they stop at once, mid-operation.
                const timer = setInterval(() => {
                    const log = stepLog(added.host);
                    if (!log.includes(filesDigest) || interruptedAt >= 0) return;
                    interruptedAt = log.length;
                    clearInterval(timer);
                    for (const pid of [child.pid!, ...descendants(child.pid!)]) {
                        try {
                            process.kill(pid, "SIGKILL");
                        } catch {
                            // already gone
                        }
                    }
                }, 20);
                child.on("close", () => clearInterval(timer));
            },
        });
        expect(interruptedAt, `the up ended before it could be interrupted: ${tail(run)}`).toBeGreaterThanOrEqual(2);
        expect(run.code).not.toBe(0);
        const pending = async () => {
            const r = await pulumi(stack, ["stack", "export"], { json: false });
            return ((JSON.parse(r.stdout) as { deployment: { pending_operations?: { type: string; resource: { urn: string } }[] } }).deployment.pending_operations ?? []);
        };
        const left = await pending();
        expect(left.length, "pending operations after the kill").toBeGreaterThan(0);
        expect(left.every((o) => o.type === "creating" && o.resource.urn.includes("cfg-3-")), JSON.stringify(left.map((o) => [o.type, o.resource.urn]))).toBe(true);

        // A killed CLI also leaves the self-managed backend's lock: the rerun refuses, naming the remedy.
        const locked = await pulumi(stack, PROCEDURES.up);
        expect(locked.code).not.toBe(0);
        expect(`${locked.stdout}\n${locked.stderr}`).toMatch(/currently locked by 1 lock\(s\)[\s\S]*pulumi cancel/);
        expectOk(await pulumi(stack, ["cancel", "--yes"]), "pulumi cancel (the runbook's first command after a kill)");

        // The rerun: it finishes the deploy, warns, and leaves the pending operations in the state.
        const rerun = await pulumi(stack, PROCEDURES.up);
        expectOk(rerun, "the rerun after the interrupt");
        expect(`${rerun.stdout}\n${rerun.stderr}`).toMatch(/pending/i);
        expect((await pending()).length).toBe(left.length);

        // The runbook (docs/runbooks.md "An interrupted deploy").
        expectOk(await pulumi(stack, ["refresh", "--clear-pending-creates", "--yes"]), "refresh --clear-pending-creates");
        expect(await pending()).toEqual([]);
        expectOk(await pulumi(stack, PROCEDURES.up), "the up after the refresh");
        expectOk(await pulumi(stack, PROCEDURES.hostDrift), "a preview after the runbook");
        await jobsOk();
    }, TOTAL_TIMEOUT);
});
