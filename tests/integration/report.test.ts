/**
 * npm run report against a real S3 (s3rver) holding what the real host
 * scripts uploaded: application and configuration backups (one of them
 * deduplicated) synced by backup-sync.sh, then a restore test
 * (test-restore.sh) whose records the next sync uploads. Then two artifacts
 * are deleted, one manifest and one restore-test record are tampered with,
 * and the report must name exactly those problems plus the source the stack
 * expects and the bucket lacks. The page is then opened in headless
 * Chromium: it renders, with one mark per backup; the screenshot is kept
 * under test-artifacts/. Last, a restore test that fails on the host
 * (backup-verify.sh --all --restore-test, the weekly job) reaches
 * the report through the sync.
 */
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBucket, s3ClientFor } from "../../scripts/report/bucket";
import type { Report, ReportPolicy } from "../../scripts/report/model";
import { CHROMIUM, screenshotPage, withReportPage } from "../../scripts/report/screenshot";
import { isRoot, missingTools, run, tempDir, removeDir, which } from "../support/env";
import { giveToUser, makeHost, type TestHost } from "../support/host";
import { startS3, type S3Instance } from "../support/s3";

const AWS = which("/usr/bin/aws") ?? "aws";
const missing = missingTools([AWS, "tar", "zstd", "jq", "openssl", CHROMIUM]);
const REPO = resolve(__dirname, "../..");
const SCREENSHOT = join(REPO, "test-artifacts", "report.png");
const BUCKET = "hx-backups";
const PREFIX = "backups";

describe.skipIf(missing.length > 0 || !isRoot)("npm run report against the bucket", { timeout: 300_000 }, () => {
    let s3: S3Instance;
    let host: TestHost;
    let client: S3Client;
    let work: string;
    let stackDir: string;
    const uploaded: { application: string[]; configuration: string[] } = { application: [], configuration: [] };

    const s3Env = () => ({ AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_EC2_METADATA_DISABLED: "true", AWS_CONFIG_FILE: "/dev/null" });
    const report = (args: string[]) => run(join(REPO, "node_modules/.bin/tsx"), [join(REPO, "scripts/report.ts"), ...args], { cwd: REPO, env: { ...s3Env(), HOME: work }, timeoutMs: 120_000 });
    const writeStack = (name: string, bucket: string) =>
        writeFileSync(
            join(stackDir, `Pulumi.${name}.yaml`),
            [
                "config:",
                `  hx-backup:s3Endpoint: ${s3.endpoint}`,
                "  hx-backup:s3Region: us-east-1",
                `  hx-backup:bucketName: ${bucket}`,
                `  hx-backup:bucketPrefix: ${PREFIX}`,
                "  hx-backup:s3AccessKeyId: { secure: x }",
                "  hx-backup:s3SecretAccessKey: { secure: x }",
                "  hx-backup:hosts:",
                "    - name: testhost",
                "      address: 127.0.0.1",
                "      roles: [application, configuration, redis]",
                "      application:",
                "        paths: [/srv/app]",
                "",
            ].join("\n"),
        );
    const manifestKeys = (type: string) => uploaded[type as keyof typeof uploaded];

    /** Runs one backup job and returns the S3 key of the manifest it uploaded (from the sync marker). */
    async function backup(script: string, type: "application" | "configuration", target: string): Promise<void> {
        const r = await host.runScript(script, [], { unit: type });
        expect(r.code, r.stderr).toBe(0);
        const newest = host.manifests(type, target).at(-1)!;
        const marker = readFileSync(join(host.config.paths.storage, type, target, `.${newest}.synced`), "utf8");
        uploaded[type].push(/^manifest (.+)$/m.exec(marker)![1]);
    }

    beforeAll(async () => {
        work = tempDir("hx-report-it-");
        stackDir = join(work, "stacks");
        mkdirSync(stackDir);
        s3 = await startS3([BUCKET]);
        client = s3ClientFor({ name: BUCKET, prefix: PREFIX, region: "us-east-1", endpoint: s3.endpoint, retentionBy: "prefix" }, { credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } });
        host = makeHost();
        const credFile = join(host.root, "etc", "s3-credentials");
        writeFileSync(credFile, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n", { mode: 0o600 });
        giveToUser(host, credFile);
        const app = join(host.root, "app");
        const etc = join(host.root, "conf");
        mkdirSync(app);
        mkdirSync(etc);
        host.config.application = { paths: [app], include: [], exclude: [] };
        host.config.configuration = { paths: [etc], tlsPaths: [] };
        host.config.remote = { ...host.config.remote, enabled: true, bucket: BUCKET, prefix: PREFIX, endpoint: s3.endpoint, credentialsFile: credFile, retries: 1, retryDelaySeconds: 1 };
        host.writeConfig();
        writeStack("test", BUCKET);
        // application: a first backup (yearly class), a changed one, an unchanged one (deduplicated), a changed one.
        writeFileSync(join(app, "a.txt"), "first ".repeat(2000));
        await backup("application-backup.sh", "application", "data");
        writeFileSync(join(app, "b.txt"), "second");
        await backup("application-backup.sh", "application", "data");
        await backup("application-backup.sh", "application", "data");
        writeFileSync(join(app, "c.txt"), "third");
        await backup("application-backup.sh", "application", "data");
        // configuration: three changed backups.
        for (const n of [1, 2, 3]) {
            writeFileSync(join(etc, "app.conf"), `setting=${n}\n`);
            await backup("configuration-backup.sh", "configuration", "system");
        }
        // The weekly restore test, then the sync that uploads its records (the next backup's, on a host).
        const tested = await host.runScript("test-restore.sh", []);
        expect(tested.code, tested.stderr + tested.stdout).toBe(0);
        const synced = await host.runScript("backup-sync.sh", []);
        expect(synced.code, synced.stderr).toBe(0);
        // A PITR repository shares the prefix (see the listing test below).
        for (const name of ["backup/testhost-15-main/backup.info", "backup/testhost-15-main/decoy.manifest.json", "archive/testhost-15-main/archive.info"]) {
            await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/pgbackrest/testhost/test-v1/${name}`, Body: "not ours" }));
        }
    });

    afterAll(async () => {
        client?.destroy();
        await s3?.stop();
        host?.cleanup();
        if (work) removeDir(work);
    });

    async function readJson(key: string): Promise<Record<string, unknown>> {
        const r = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        return JSON.parse(await r.Body!.transformToString("utf8"));
    }
    const artifactKeyOf = async (manifestKey: string) => `${manifestKey.slice(0, manifestKey.lastIndexOf("/") + 1)}${(await readJson(manifestKey)).artifact as string}`;

    it("lists the pgBackRest repositories (which can hold millions of WAL files) apart, and everything on both sides of them", async () => {
        const policy = { stack: "test", bucket: { name: BUCKET, prefix: PREFIX, region: "us-east-1", endpoint: s3.endpoint, retentionBy: "prefix" } } as unknown as ReportPolicy;
        const snapshot = await readBucket(client, policy);
        const keys = snapshot.objects.map((o) => o.key);
        expect(keys.filter((k) => k.includes("/pgbackrest/"))).toEqual([]);
        expect(snapshot.pitrObjects.map((o) => o.key).sort()).toEqual(
            ["archive/testhost-15-main/archive.info", "backup/testhost-15-main/backup.info", "backup/testhost-15-main/decoy.manifest.json"].map((k) => `${PREFIX}/pgbackrest/testhost/test-v1/${k}`),
        );
        expect(snapshot.manifestBodies.size).toBe(7);
        // daily/ sorts before pgbackrest/, yearly/ after it.
        expect(keys.some((k) => k.startsWith(`${PREFIX}/daily/`))).toBe(true);
        expect(keys.some((k) => k.startsWith(`${PREFIX}/yearly/`))).toBe(true);
        expect(keys).toHaveLength(new Set(keys).size);
    });

    it("reports an intact bucket with only the source it lacks, and the decoy PITR repository as one the stack does not expect", async () => {
        const out = join(work, "intact");
        const r = await report(["--stack", "test", "--stack-dir", stackDir, "--out", out, "--keys", join(host.root, "etc", "keys")]);
        expect(r.code, r.stderr + r.stdout).toBe(1);
        const rep = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
        // The decoy repository above: the stack gives testhost no postgresql.pitr.
        expect(rep.problems.map((p) => [p.kind, p.host, p.type, p.target])).toEqual([["missing-source", "testhost", "redis", null], ["unexpected-source", "testhost", "pitr", "testhost-15-main"]]);
        expect(rep.unrecognizedObjects).toEqual([`${PREFIX}/pgbackrest/testhost/test-v1/backup/testhost-15-main/decoy.manifest.json`]);
        expect(rep.totals).toMatchObject({ manifests: 7, restorable: 7, broken: 0 });
        const app = rep.sources.find((s) => s.type === "application")!;
        expect(app.backups.map((b) => b.manifestKey)).toEqual(manifestKeys("application"));
        expect(app.backups.map((b) => b.retentionClass)).toEqual(["yearly", "daily", "daily", "daily"]);
        expect(app.backups.map((b) => b.dedup !== null)).toEqual([false, false, true, false]);
        expect(app.backups.every((b) => b.mac === "verified" && b.artifact === "present")).toBe(true);
        expect(app.newest?.rpoMet).toBe(true);
        expect(rep.keys).toMatchObject([{ keyId: "test-v1", current: true, status: "ok", manifests: 7, inKeyring: true }]);
        expect(readFileSync(join(out, "report.md"), "utf8")).toMatch(/missing-source testhost\/redis/);
        // The restore test each source's newest backup had on the host, as its record in the bucket says, signed with the host's key.
        for (const [type, target] of [["application", "data"], ["configuration", "system"]] as const) {
            const s = rep.sources.find((x) => x.type === type)!;
            expect(s.lastRestoreTest).toMatchObject({ state: "ok", result: "ok", mac: "verified", keyId: "test-v1", job: "test-restore", manifest: host.manifests(type, target).at(-1), manifestInBucket: true, key: `${PREFIX}/testhost/${type}/${target}/restore-test.json` });
            expect(s.lastRestoreTest.ageSeconds).toBeLessThan(600);
            expect(s.lastRestoreTest.durationMs).toBeGreaterThan(0);
            expect(existsSync(join(host.config.paths.storage, type, target, ".restore-test.json"))).toBe(true);
        }
        expect(readFileSync(join(out, "report.md"), "utf8")).toMatch(/\| testhost \| application \| data \|.*\| passed \S+Z \(\d+m \/ \d+d \d+h \d+m\), MAC verified \|/);
    });

    it("after two artifacts are deleted and one manifest is tampered with, names exactly those problems", async () => {
        const [, appSecond, appDedup] = manifestKeys("application");
        const [confFirst, confSecond] = manifestKeys("configuration");
        // The second application artifact is also the deduplicated third backup's (the same object, refreshed in place).
        const appArtifact = await artifactKeyOf(appSecond);
        expect(await artifactKeyOf(appDedup)).toBe(appArtifact);
        const confArtifact = await artifactKeyOf(confFirst);
        await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: appArtifact }));
        await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: confArtifact }));
        const tampered = await readJson(confSecond);
        (tampered.sizes as { plain: number }).plain += 1;
        await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: confSecond, Body: `${JSON.stringify(tampered, null, 2)}\n` }));
        // A restore-test record made to vouch for another manifest, without the key.
        const confRecord = `${PREFIX}/testhost/configuration/system/restore-test.json`;
        const forged = await readJson(confRecord);
        forged.manifest = manifestKeys("configuration")[0].split("/").pop();
        await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: confRecord, Body: `${JSON.stringify(forged, null, 2)}\n` }));

        const out = join(work, "damaged");
        const r = await report(["--stack", "test", "--stack-dir", stackDir, "--out", out, "--keys", join(host.root, "etc", "keys")]);
        expect(r.code, r.stderr + r.stdout).toBe(1);
        const rep = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
        const named = (problems: readonly Pick<Report["problems"][number], "kind" | "host" | "type" | "key">[]) => problems.map((p) => JSON.stringify([p.kind, p.host, p.type, p.key])).sort();
        expect(named(rep.problems)).toEqual(
            named([
                { kind: "artifact-missing", host: "testhost", type: "application", key: appSecond },
                { kind: "artifact-missing", host: "testhost", type: "application", key: appDedup },
                { kind: "artifact-missing", host: "testhost", type: "configuration", key: confFirst },
                { kind: "mac-mismatch", host: "testhost", type: "configuration", key: confSecond },
                { kind: "restore-test-mac-mismatch", host: "testhost", type: "configuration", key: confRecord },
                { kind: "missing-source", host: "testhost", type: "redis", key: null },
                { kind: "unexpected-source", host: "testhost", type: "pitr", key: null },
            ]),
        );
        expect(rep.problems.find((p) => p.key === appDedup)?.message).toMatch(/deduplicated: the artifact first stored by/);
        expect(rep.problems.find((p) => p.key === appSecond)?.message).not.toMatch(/deduplicated/);
        expect(rep.totals).toMatchObject({ manifests: 7, restorable: 3, broken: 4 });
        // The newest backups still meet the recovery point; the oldest restorable points moved.
        for (const s of rep.sources) expect(s.newest?.rpoMet).toBe(true);
        const conf = rep.sources.find((s) => s.type === "configuration")!;
        expect(conf.oldestRestorable).toBe(conf.backups[2].createdAt);

        // Without the keyring the tampered manifest cannot be told from a good one, and the report says so.
        const blind = join(work, "blind");
        expect((await report(["--stack", "test", "--stack-dir", stackDir, "--out", blind])).code).toBe(1);
        const unkeyed = JSON.parse(readFileSync(join(blind, "report.json"), "utf8")) as Report;
        expect(unkeyed.macCheck).toBe("not-checked");
        expect(unkeyed.problems.map((p) => p.kind)).toEqual(["artifact-missing", "artifact-missing", "artifact-missing", "missing-source", "unexpected-source"]);

        // In headless Chromium: the page renders, with exactly one mark per backup.
        await withReportPage(join(out, "report.html"), async (page, requests) => {
            expect(await page.title()).toBe("Backup compliance report: test");
            expect(requests).toEqual([pathToFileURL(join(out, "report.html")).href]);
            expect(await page.locator(".timeline .mark.backup").count()).toBe(rep.totals.manifests);
            for (const s of rep.sources) {
                expect(await page.locator(`.timeline[data-source="${s.host}/${s.type}/${s.target}"] .mark.backup`).count()).toBe(s.backups.length);
            }
            expect(await page.locator(".timeline .mark.backup.broken").count()).toBe(rep.totals.broken);
            expect(await page.locator('[data-missing="testhost/redis/"]').count()).toBe(1);
            expect(await page.locator("ul.problems > li").count()).toBe(rep.problems.length);
            const box = await page.locator(".timeline .mark.backup").first().boundingBox();
            expect(box && box.width >= 10 && box.height >= 6).toBe(true);
            expect(await page.locator('[data-source="testhost/application/data"] .restore-test[data-state="ok"]').count()).toBe(1);
            expect(await page.locator('[data-source="testhost/configuration/system"] .restore-test[data-state="untrusted"]').count()).toBe(1);
            await screenshotPage(page, SCREENSHOT);
            console.log(`report screenshot: ${SCREENSHOT}`);
        });
    });

    it("a restore test that fails on the host reaches the report with its cause, through the next sync", async () => {
        // One flipped byte in the newest local application artifact (the bucket's copy is not read by the test).
        const dir = join(host.config.paths.storage, "application", "data");
        const newest = host.readManifest("application", "data", host.manifests("application", "data").at(-1)!) as { artifact: string };
        const fd = openSync(join(dir, newest.artifact), "r+");
        const byte = Buffer.alloc(1);
        readSync(fd, byte, 0, 1, 100);
        writeSync(fd, Buffer.from([byte[0] ^ 0xff]), 0, 1, 100);
        closeSync(fd);
        // The weekly verification job: the newest artifact fails verification, so its restore test is recorded as failed.
        const tested = await host.runScript("backup-verify.sh", ["--all", "--restore-test", "--type", "application"]);
        expect(tested.code, tested.stdout).toBe(4);
        const local = JSON.parse(readFileSync(join(dir, ".restore-test.json"), "utf8")) as Record<string, unknown>;
        expect(local).toMatchObject({ result: "failed", type: "application", target: "data", job: "verification", manifest: host.manifests("application", "data").at(-1) });
        expect(local.error).toMatch(/sha256 differs/);
        const synced = await host.runScript("backup-sync.sh", ["--type", "application"]);
        expect(synced.code, synced.stderr).toBe(0);
        const out = join(work, "failed-restore");
        const r = await report(["--stack", "test", "--stack-dir", stackDir, "--out", out, "--keys", join(host.root, "etc", "keys")]);
        expect(r.code).toBe(1);
        const rep = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
        const failed = rep.problems.filter((p) => p.kind === "restore-test-failed");
        expect(failed.map((p) => [p.host, p.type, p.target, p.key])).toEqual([["testhost", "application", "data", `${PREFIX}/testhost/application/data/restore-test.json`]]);
        expect(failed[0].message).toMatch(/^the last restore test \(\S+Z, of data-\S+\.manifest\.json\) failed: artifact sha256 differs/);
        expect(rep.sources.find((s) => s.type === "application")!.lastRestoreTest).toMatchObject({ state: "failed", mac: "verified" });
        expect(readFileSync(join(out, "report.md"), "utf8")).toMatch(/\| testhost \| application \| data \|.*\| \*\*failed\*\* /);
    });

    it("bad input is an exit 2 naming the flag or field and the fix", async () => {
        const unknown = await report(["--stack", "nope", "--stack-dir", stackDir]);
        expect(unknown.code).toBe(2);
        expect(unknown.stderr).toMatch(/--stack nope: no stack file .*Pulumi\.nope\.yaml/);
        writeStack("nobucket", "no-such-bucket");
        const noBucket = await report(["--stack", "nobucket", "--stack-dir", stackDir, "--out", join(work, "x")]);
        expect(noBucket.code).toBe(2);
        expect(noBucket.stderr).toMatch(/bucket "no-such-bucket" does not exist at endpoint .*: check hx-backup:bucketName/);
        const noKeys = await report(["--stack", "test", "--stack-dir", stackDir, "--keys", join(work, "no-keys")]);
        expect(noKeys.code).toBe(2);
        expect(noKeys.stderr).toMatch(/--keys .*no-keys: cannot read the directory/);
        const noFlag = await report([]);
        expect(noFlag.code).toBe(2);
        expect(noFlag.stderr).toMatch(/--stack is required/);
        // Credentials stay out of what the tool prints.
        for (const r of [unknown, noBucket, noKeys]) expect(r.stdout + r.stderr).not.toContain("S3RVER");
    });
});
