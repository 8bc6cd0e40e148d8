/**
 * Migrating a stack whose keys came from `random.RandomBytes` (releases before
 * the switch to RandomPassword + HKDF), on the real Pulumi engine and one
 * sandbox host: deploy the old release from a project copy, take a backup,
 * switch the copy to the current program with `encryptionExposedKeyVersions: 1`
 * and `encryptionKeyVersion: 2`. The old key keeps its resource (no replace, no
 * delete), v2 is a RandomPassword; the old backup restores, a new one uses v2,
 * and v2 is nowhere in the state while v1 is, by design (its resource ID is the
 * key in base64: why the migration exists).
 *
 * This file also gives the one-host timings (preview, first up, unchanged up).
 */
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyFingerprint } from "../../../components/keys";
import { PROCEDURES, setConfig, stackOutputs, type Stack } from "../../../scripts/lib/engine";
import {
    ENGINE_TEST_TIMEOUT_MS,
    changedSteps,
    changes,
    copyProject,
    diffOps,
    engineTestsUnavailable,
    expectJobsOk,
    expectOk,
    exportState,
    factsOf,
    findSecrets,
    gitShow,
    hostPlan,
    namedSteps,
    newestManifest,
    newSshKey,
    planFleet,
    pulumi,
    readTree,
    REPO_ROOT,
    runJobs,
    sandboxStack,
    sh,
    startFleet,
    stepLog,
    tail,
    Timings,
    writeInCopy,
    type EncryptionOutput,
    type FleetHost,
    type FleetHostSpec,
    type Secret,
} from "../../support/engine";
import { tempDir } from "../../support/env";
import { timeEachTest } from "../../support/timing";

const available = engineTestsUnavailable();

const STACK = "mig";
const APP = "/srv/hx-app";
const SPEC: FleetHostSpec = { name: "mig-1", address: "127.0.0.111", roles: ["application", "configuration"], appPaths: [APP] };
const STORAGE = "/opt/hx-backups";
const KEYRING = "/etc/hx-backup/keys";
const TIMEOUT = 900_000;
const V1 = `${STACK}-v1`;
const V2 = `${STACK}-v2`;
const BYTES_TYPE = "random:index/randomBytes:RandomBytes";
const PASSWORD_TYPE = "random:index/randomPassword:RandomPassword";

/** The last release whose components/keys.ts made keys with RandomBytes: the parent of the commit that brought RandomPassword in. */
function randomBytesRelease(): string {
    const r = spawnSync("git", ["log", "--reverse", "--format=%H", "-S", "random.RandomPassword", "--", "components/keys.ts"], { cwd: REPO_ROOT, encoding: "utf8" });
    const first = r.stdout.split("\n")[0];
    if (r.status !== 0 || !first) throw new Error(`cannot find the commit that introduced RandomPassword in components/keys.ts: ${r.stderr}`);
    return `${first}^`;
}

describe.runIf(!available.reason)("migration from RandomBytes keys to RandomPassword keys, on the real Pulumi engine", { timeout: ENGINE_TEST_TIMEOUT_MS }, () => {
    const timings = new Timings();
    let dir: string;
    let fleet: FleetHost[];
    let stack: Stack;
    let project: string;
    let configFile: string;
    let oldRelease: string;
    let v1Hex: string;
    let v1Id: string;
    let oldBackup: string;
    const h = () => fleet[0].host;
    const outputs = async () => (await stackOutputs(stack)) as { encryption: EncryptionOutput; hosts: Record<string, { jobs: { timer: string }[] }> };

    beforeAll(async () => {
        dir = tempDir("hx-engine-migration-");
        const keyFile = path.join(dir, "deploy_ed25519");
        newSshKey(keyFile);
        fleet = await startFleet(path.join(dir, "hosts"), [SPEC], keyFile);
        project = copyProject(path.join(dir, "project"));
        oldRelease = randomBytesRelease();
        const oldKeys = gitShow(oldRelease, "components/keys.ts");
        // The release really is the RandomBytes one, or this test would migrate nothing.
        expect(oldKeys).toContain("new random.RandomBytes(");
        expect(oldKeys).not.toContain("RandomPassword");
        writeInCopy(project, "components/keys.ts", oldKeys);
        // Its EncryptionKeys took no exposedVersions: index.ts's call as that release had it.
        const oldCall = `new EncryptionKeys("keys", { keyIdPrefix: stack, version: config.encryption.keyVersion });`;
        expect(gitShow(oldRelease, "index.ts")).toContain(oldCall);
        writeInCopy(project, "index.ts", (text) => {
            const current = /new EncryptionKeys\("keys", \{[^}]*\}\);/.exec(text)?.[0];
            if (!current) throw new Error("index.ts: no EncryptionKeys call to put back");
            return text.replace(current, oldCall);
        });
        configFile = path.join(dir, "stack", `Pulumi.${STACK}.yaml`);
        stack = await sandboxStack(available.engine!, dir, STACK, fleet, keyFile, project);
    }, 300_000);

    afterAll(async () => {
        for (const f of fleet ?? []) await f.host.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
        timings.print("engine migration (1 host) timings:");
    }, 300_000);

    timeEachTest(timings);

    it("deploys the RandomBytes release, whose key v1 is in the state in plain text (its resource ID), and takes a backup with it", async () => {
        const preview = await pulumi(stack, PROCEDURES.preview, { json: false });
        expectOk(preview);
        timings.add("preview, first (1 host)", preview.seconds);
        expect(diffOps(preview.stdout, true), tail(preview)).toContain(`+ create ${BYTES_TYPE} keys-${V1}`);
        const up = await pulumi(stack, PROCEDURES.up);
        expectOk(up);
        timings.add("up, first (1 host)", up.seconds);
        const p = planFleet(configFile, STACK, factsOf((await outputs()).encryption), project);
        expect(namedSteps(stepLog(h()), hostPlan(p, SPEC.name))).toEqual(hostPlan(p, SPEC.name).steps.map((s) => s.name).sort());
        const unchangedPreview = await pulumi(stack, [...PROCEDURES.preview, "--expect-no-changes"], { json: false });
        expectOk(unchangedPreview);
        timings.add("preview --expect-no-changes, unchanged (1 host)", unchangedPreview.seconds);
        const ran = stepLog(h()).length;
        const again = await pulumi(stack, PROCEDURES.up);
        expectOk(again);
        timings.add("up, unchanged (1 host)", again.seconds);
        expect(changes(again.done)).toEqual([]);
        expect(stepLog(h()).length - ran, "remote steps an unchanged up ran").toBe(0);

        const state = await exportState(stack);
        const bytes = state.resources.filter((r) => r.type === BYTES_TYPE);
        expect(bytes.map((r) => r.urn)).toEqual([`urn:pulumi:${STACK}::hx-backup::hx-backup:keys:EncryptionKeys$${BYTES_TYPE}::keys-${V1}`]);
        expect(bytes[0].protect).toBe(true);
        v1Id = bytes[0].id!;
        v1Hex = (await sh(h(), `cat ${KEYRING}/${V1}.key`)).trim();
        expect(v1Hex).toMatch(/^[0-9a-f]{128}$/);
        // By design of RandomBytes: its ID is the key, base64; so the plain export and --show-ids hold it.
        expect(Buffer.from(v1Id, "base64").toString("hex")).toBe(v1Hex);
        expect(findSecrets(state.text, [{ label: "v1", value: v1Hex }])).toHaveLength(1);
        const ids = await pulumi(stack, ["stack", "--show-ids"], { json: false });
        expect(findSecrets(ids.stdout, [{ label: "v1", value: v1Hex }])).toHaveLength(1);

        const out = await outputs();
        expect(keyFingerprint(v1Hex)).toBe(out.encryption.fingerprints[V1]);
        expectJobsOk(SPEC.name, await runJobs(h(), out.hosts[SPEC.name].jobs.map((j) => j.timer)));
        const m = await newestManifest(h(), STORAGE, "application");
        expect(m.doc.encryption?.keyId).toBe(V1);
        oldBackup = m.path;
    }, TIMEOUT);

    it("the current program without encryptionExposedKeyVersions would replace the old key: the preview refuses, the key being protected", async () => {
        for (const file of ["components/keys.ts", "index.ts"]) writeInCopy(project, file, readFileSync(path.join(REPO_ROOT, file), "utf8"));
        const r = await pulumi(stack, PROCEDURES.preview, { json: false });
        expect(r.code, tail(r)).not.toBe(0);
        expect(`${r.stdout}\n${r.stderr}`, tail(r)).toMatch(new RegExp(`resource "urn:pulumi:${STACK}::hx-backup::hx-backup:keys:EncryptionKeys\\$${BYTES_TYPE}::keys-${V1}" cannot be deleted\\s+because it is protected`));
    }, TIMEOUT);

    it("with encryptionExposedKeyVersions 1 and encryptionKeyVersion 2: the RandomBytes key stays as it is, a RandomPassword v2 is created, only key-carrying steps update", async () => {
        const before = await outputs();
        const deployed = planFleet(configFile, STACK, factsOf(before.encryption), project);
        await setConfig(stack, { "hx-backup:encryptionExposedKeyVersions": 1, "hx-backup:encryptionKeyVersion": 2 });
        const expectedPlan = planFleet(configFile, STACK, { currentKeyId: V2, keyIds: [V1, V2], keyFingerprints: { ...before.encryption.fingerprints, [V2]: "sha256:pending" } }, project);
        const keySteps = changedSteps(hostPlan(deployed, SPEC.name), hostPlan(expectedPlan, SPEC.name));
        expect(keySteps).toEqual(expect.arrayContaining(["keyring", "config"]));

        const preview = await pulumi(stack, PROCEDURES.preview, { json: false });
        expectOk(preview);
        const listed = diffOps(preview.stdout);
        expect(listed, tail(preview, 30)).toContain(`+ create keys-${V2}`);
        expect(listed.filter((l) => l.endsWith(`keys-${V1}`) || !/^(~ update|\+ create) /.test(l)), "the RandomBytes key untouched; nothing replaced or deleted").toEqual([]);
        // Only the steps that carry keys wait for the new key.
        expect(diffOps(preview.stdout), `preview --diff should list only the new key and the steps carrying keys; tail:\n${tail(preview, 30)}`).toEqual([`+ create keys-${V2}`, ...keySteps.map((n) => `~ update ${SPEC.name}-${n}`)].sort());
        expect(preview.stdout).not.toMatch(/to replace|to delete/);

        const ran = stepLog(h()).length;
        const up = await pulumi(stack, PROCEDURES.up);
        expectOk(up);
        expect(changes(up.done)).toEqual([`create keys-${V2}`, ...keySteps.map((n) => `update ${SPEC.name}-${n}`)].sort());
        const after = await outputs();
        expect(after.encryption).toMatchObject({ currentKeyId: V2, keyIds: [V1, V2] });
        expect(after.encryption.fingerprints[V1]).toBe(before.encryption.fingerprints[V1]);
        const p = planFleet(configFile, STACK, factsOf(after.encryption), project);
        expect(namedSteps(stepLog(h()).slice(ran), hostPlan(p, SPEC.name))).toEqual(keySteps);

        const state = await exportState(stack);
        const keys = state.resources.filter((r) => r.type === BYTES_TYPE || r.type === PASSWORD_TYPE).map((r) => `${r.type} ${r.urn.split("::").pop()} ${r.type === BYTES_TYPE ? (r.id === v1Id ? "same id" : "NEW id") : r.id} ${r.protect ? "protected" : ""}`);
        expect(keys.sort()).toEqual([`${BYTES_TYPE} keys-${V1} same id protected`, `${PASSWORD_TYPE} keys-${V2} none protected`]);
        expect((await sh(h(), `cat ${KEYRING}/${V1}.key`)).trim()).toBe(v1Hex);
    }, TIMEOUT);

    it("the backup taken with the RandomBytes key restores, and a new backup is encrypted with v2", async () => {
        await sh(h(), `/var/lib/backup/scripts/backup-restore.sh --target /srv/restore-v1 ${oldBackup}`);
        expect(await sh(h(), `diff -r ${APP} /srv/restore-v1${APP} && echo same || true`)).toBe("same\n");
        await sh(h(), `echo "after migration" > ${APP}/data/b.txt`);
        const out = await outputs();
        expectJobsOk(SPEC.name, await runJobs(h(), out.hosts[SPEC.name].jobs.map((j) => j.timer)));
        const m = await newestManifest(h(), STORAGE, "application");
        expect(m.path).not.toBe(oldBackup);
        expect(m.doc.encryption?.keyId).toBe(V2);
        expect(m.doc.mac?.keyId).toBe(V2);
        expect((await sh(h(), "cat /etc/hx-backup/encryption.key")).trim()).toBe((await sh(h(), `cat ${KEYRING}/${V2}.key`)).trim());
        await sh(h(), `/var/lib/backup/scripts/backup-restore.sh --target /srv/restore-v2 ${m.path}`);
        expect(await sh(h(), `diff -r ${APP} /srv/restore-v2${APP} && echo same || true`)).toBe("same\n");
    }, TIMEOUT);

    it("the v2 key is nowhere in the state in any encoding, while v1 is (by design: the reason for the migration)", async () => {
        const v2Hex = (await sh(h(), `cat ${KEYRING}/${V2}.key`)).trim();
        expect(v2Hex).toMatch(/^[0-9a-f]{128}$/);
        const withSecrets = await exportState(stack, true);
        const v2Secret = withSecrets.resources.find((r) => r.type === PASSWORD_TYPE)?.outputs?.result as string;
        expect(typeof v2Secret).toBe("string");
        const v2: Secret[] = [
            { label: "key v2 (hex)", value: v2Hex },
            { label: "key v2 secret (RandomPassword result)", value: v2Secret },
        ];
        const v1: Secret[] = [{ label: "key v1 (hex)", value: v1Hex }];
        // The scanner finds what is there: --show-secrets reveals the RandomPassword result and the keyring step's stdin.
        expect(findSecrets(withSecrets.text, v2).map((s) => s.replace(/ \(as .*/, ""))).toEqual(["key v2 (hex)", "key v2 secret (RandomPassword result)"]);

        const plain = await exportState(stack);
        const ids = await pulumi(stack, ["stack", "--show-ids"], { json: false });
        const backend = readTree(path.join(dir, "backend"));
        const haystacks = new Map<string, string>([["pulumi stack export", plain.text], ["pulumi stack --show-ids", ids.stdout], ...backend]);
        expect([...haystacks].flatMap(([where, text]) => findSecrets(text, v2).map((s) => `${s} in ${where}`))).toEqual([]);
        // v1 is there: in the export and --show-ids (the RandomBytes ID) and in the backend's checkpoint files.
        for (const where of ["pulumi stack export", "pulumi stack --show-ids"]) expect(findSecrets(haystacks.get(where)!, v1), where).toHaveLength(1);
        expect([...backend].filter(([, text]) => findSecrets(text, v1).length > 0).length, "backend files holding v1").toBeGreaterThan(0);
    }, TIMEOUT);
});

// Outside CI only (under CI=true a missing piece throws): say why nothing ran.
if (available.reason) console.warn(`${path.basename(__filename)}: not run, it needs ${available.reason}`);
