/**
 * PITR into the stack's bucket over HTTPS: s3rver with a self-signed
 * certificate that the stack trusts through s3CaFile, and a sandbox host
 * with PostgreSQL 15 and pgBackRest deployed by the real steps. Covers what
 * a local repository cannot: TLS verification, an outage of the repository
 * (archiving fails, PostgreSQL keeps the WAL, the status says so, and the
 * archive catches up), a tampered backup file failing the weekly verification,
 * no secret in any process's argv while a backup and archive-push run, and
 * the compliance report reading the real repository's listing (a WAL segment
 * deleted from the middle is named as exactly that gap).
 */
import { DeleteObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { Agent } from "node:https";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import type { StackConfig } from "../../config/types";
import { planHost } from "../../render/hostPlan";
import { repositoryPassphrase } from "../../render/pgbackrest";
import { renderFacts } from "../../scripts/render";
import { s3ClientFor } from "../../scripts/report/bucket";
import type { Report } from "../../scripts/report/model";
import { walName } from "../../scripts/report/pitr";
import { applySteps } from "../../scripts/sandbox/apply";
import { runJobService } from "../../scripts/sandbox/jobs";
import { loopbackCertificate } from "../../scripts/lib/tls";
import { removeDir, run, tempDir } from "../support/env";
import { metric, PITR_DATA, PITR_SOCKET, pitrHostMissing, pollHost, startPitrHost, type PitrHost } from "../support/pitrHost";
import { startS3, type S3Instance } from "../support/s3";

const root = process.getuid?.() === 0;
const tools = [...pitrHostMissing(), ...(root ? [] : ["root"])];
if (process.env.CI === "true" && tools.length) throw new Error(`PITR S3 test needs ${tools.join(", ")} in CI`);

const KEY = "3c".repeat(64);
const CA_FILE = "/etc/hx-test/s3-ca.pem";
const BUCKET = "hx-pitr";
const STANZA = "db-hx-pitr-pg";
const REPO = path.resolve(__dirname, "../..");

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
    return readdirSync(dir).flatMap((n) => {
        const f = path.join(dir, n);
        return statSync(f).isDirectory() ? filesUnder(f) : [f];
    });
}

describe.runIf(tools.length === 0)("PITR into the bucket over HTTPS (s3rver)", { timeout: 300_000 }, () => {
    let box: PitrHost;
    let s3: S3Instance;
    let config: StackConfig;
    let raw: Record<string, unknown>;
    let caFile: string;
    const dirs: string[] = [];
    const secrets = { keys: { "pitr-v1": KEY }, s3: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } };
    const passphrase = repositoryPassphrase(KEY, "pitr-v1");
    const job = async (unit: string) => (await runJobService(box.host.exec, unit)).slice(-1)[0]!;

    beforeAll(async () => {
        // archive-push is the server's child: a short I/O timeout makes it give up on a dead repository in seconds, not minutes.
        box = await startPitrHost("pitr-s3", { archiveMode: true, serverEnv: { PGBACKREST_IO_TIMEOUT: "2" } });
        const tls = loopbackCertificate(tempDir("hx-s3-tls-"));
        await box.host.exec(`mkdir -p ${path.dirname(CA_FILE)} && cat > ${CA_FILE}`, tls.cert);
        s3 = await startS3([BUCKET], tls);
        caFile = tls.certFile;
        raw = {
            backupUser: "hxpitr",
            installPackages: false,
            s3Endpoint: s3.endpoint,
            s3CaFile: CA_FILE,
            bucketName: BUCKET,
            hosts: [{
                name: "db", address: "127.0.0.1", port: box.host.port, hostKey: box.host.hostKey, roles: ["postgresql"],
                postgresql: { host: PITR_SOCKET, port: box.pgPort, dataDir: PITR_DATA, databases: ["appdb"], pitr: { enabled: true, archiveTimeoutSeconds: 10, allowRestart: true } },
            }],
        };
        config = loadStackConfig("pitr", raw, { assumeSecretsSet: true });
        // stanza-create and check over HTTPS are part of the deploy: it fails if either does.
        await applySteps(box.host.exec, planHost(config, config.hosts[0], renderFacts(config)).steps, secrets, config.hosts[0]);
        await box.sql("CREATE TABLE points (name text PRIMARY KEY)");
    });

    afterAll(async () => {
        await box?.stop();
        await s3?.stop();
        dirs.forEach(removeDir);
    });

    it("backs up into <prefix>/pgbackrest/<host>/<keyId>/ in the bucket, trusting only the configured CA, with no secret in any argv", async () => {
        // Sample every process's argv while a full backup and an archive-push run.
        const sampler = await box.sh("(for i in $(seq 1 2000); do ps -eo args; sleep 0.01; done > /var/tmp/ps-samples 2>&1) >/dev/null 2>&1 & echo $!");
        const full = await job("hx-backup-pitr-full.service");
        expect(full.code, full.stderr).toBe(0);
        await box.sql("INSERT INTO points VALUES ('after full')");
        await box.archiveNow();
        await box.sh(`kill ${sampler} 2>/dev/null || true; sleep 0.2`);
        const samples = await box.sh("cat /var/tmp/ps-samples");
        expect(samples).toMatch(/pgbackrest .*(backup|archive-push)/);
        expect(samples).not.toContain(passphrase);
        expect(samples).not.toContain("S3RVER");

        const keys = filesUnder(path.join(s3.dir, "data", BUCKET)).map((f) => path.relative(path.join(s3.dir, "data", BUCKET), f));
        expect(keys.some((k) => k.startsWith(`hx-backup/pgbackrest/db/pitr-v1/backup/${STANZA}/backup.info`))).toBe(true);
        expect(keys.some((k) => k.startsWith(`hx-backup/pgbackrest/db/pitr-v1/archive/${STANZA}/15-1/`))).toBe(true);
        // The system's CAs do not sign s3rver's certificate: TLS is verified, not skipped.
        const untrusted = await box.host.exec(`cd / && runuser -u postgres -- pgbackrest --stanza=${STANZA} --repo1-storage-ca-file=/etc/ssl/certs/ca-certificates.crt --io-timeout=2 repo-ls`);
        expect(untrusted.code).not.toBe(0);
        expect(untrusted.stdout + untrusted.stderr).toMatch(/certificate verify failed|unable to verify|TLS/i);
    });

    it("an unreachable repository: archive-push fails, WAL stays in pg_wal, the status says failing; after it returns the archive catches up and latest restores", async () => {
        await s3.halt();
        let segment: string;
        try {
            await box.sql("INSERT INTO points VALUES ('during the outage')");
            segment = await box.sql("SELECT pg_walfile_name(pg_switch_wal())");
            await pollHost(`a failed archive of ${segment} while the repository is down`, async () => (await box.sql("SELECT failed_count > 0 FROM pg_stat_archiver")) === "t", 300, box.archiveState);
            // The status job still reports the failing archiver, then fails on the repository (BackupFailed, with the cause).
            const status = await job("hx-backup-pitr-archive.service");
            expect(status.code).not.toBe(0);
            const m = await box.prom("hx_backup-pitr-archive.prom");
            expect(metric(m, "backup_wal_archive_failing")).toBe(1);
            expect(metric(m, "backup_wal_archive_failures_total")).toBeGreaterThan(0);
            expect(metric(m, "backup_last_run_status")).toBe(0);
            const cause = await box.prom("hx_backup_cause-pitr-archive.prom");
            expect(cause).toMatch(/pgbackrest info: stanza db-hx-pitr-pg status 99: other \(repo1: .*unable to connect/);
            // PostgreSQL keeps the segment until it is archived.
            expect(await box.sh(`ls ${PITR_DATA}/pg_wal/archive_status`)).toContain(`${segment}.ready`);
            expect(await box.sh(`ls ${PITR_DATA}/pg_wal`)).toContain(segment);
        } finally {
            await s3.start();
        }
        await box.sql("INSERT INTO points VALUES ('after the outage')");
        await box.archiveNow();
        await box.archived(segment!);
        const status = await job("hx-backup-pitr-archive.service");
        expect(status.code, status.stderr).toBe(0);
        const m = await box.prom("hx_backup-pitr-archive.prom");
        expect(metric(m, "backup_wal_archive_failing")).toBe(0);
        expect(metric(m, "backup_wal_archive_failures_total")).toBeGreaterThan(0);
        expect(metric(m, "backup_wal_archive_lag_seconds")).toBe(0);
        const restored = await box.host.exec("bash /var/lib/backup/scripts/backup-restore.sh --pitr --latest --target /var/lib/hx-pitr/after-outage");
        expect(restored.code, restored.stderr).toBe(0);
        const copy = await box.startCopy("/var/lib/hx-pitr/after-outage");
        try {
            expect(await copy.q("SELECT string_agg(name, ',' ORDER BY name) FROM points")).toBe("after full,after the outage,during the outage");
        } finally {
            await copy.stop();
        }
    });

    it("a tampered backup file fails the weekly verification, with status 0 and the cause", async () => {
        const ok = await job("hx-backup-pitr-verify.service");
        expect(ok.code, ok.stderr).toBe(0);
        expect(metric(await box.prom("hx_backup-pitr-verify.prom"), "backup_verification_status")).toBe(1);
        // The newest backup's pg_control: every restore needs it.
        const controls = filesUnder(path.join(s3.dir, "data", BUCKET)).filter((f) => /\/backup\/.*\/pg_data\/global\/pg_control\.zst\._S3rver_object$/.test(f)).sort();
        expect(controls.length).toBeGreaterThan(0);
        const victim = controls[controls.length - 1]!;
        const original = readFileSync(victim);
        const tampered = Buffer.from(original);
        tampered[Math.floor(tampered.length / 2)] ^= 0xff;
        writeFileSync(victim, tampered);
        try {
            const bad = await job("hx-backup-pitr-verify.service");
            expect(bad.code, `${victim}\n${bad.stderr}\n${await box.sh("tail -n 30 /var/log/pgbackrest/*verify*.log")}`).not.toBe(0);
            const m = await box.prom("hx_backup-pitr-verify.prom");
            expect(metric(m, "backup_last_run_status")).toBe(0);
            expect(metric(m, "backup_verification_status")).toBe(0);
            expect(await box.prom("hx_backup_cause-pitr-verify.prom")).toMatch(/pgbackrest verify found invalid files: .*backup: \d{8}-\d{6}F, status: invalid.*checksum invalid: 1/);
        } finally {
            writeFileSync(victim, original);
        }
    });

    it("the compliance report finds the stanza's backups and newest WAL in the real repository, and names a segment deleted from the middle as exactly that gap", async () => {
        // The stack as a file for npm run report (JSON values are YAML), its S3 keys as placeholders: the report reads them from the environment.
        const stackDir = tempDir("hx-pitr-report-");
        dirs.push(stackDir);
        writeFileSync(
            path.join(stackDir, "Pulumi.pitr.yaml"),
            ["config:", ...Object.entries(raw).map(([k, v]) => `  hx-backup:${k}: ${JSON.stringify(v)}`), "  hx-backup:s3AccessKeyId: { secure: x }", "  hx-backup:s3SecretAccessKey: { secure: x }", ""].join("\n"),
        );
        const env = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_EC2_METADATA_DISABLED: "true", AWS_CONFIG_FILE: "/dev/null", HOME: stackDir, NODE_EXTRA_CA_CERTS: caFile };
        const report = async (name: string): Promise<Report> => {
            // A fresh segment first, archived just now: the report must name it as the newest, with its real upload time.
            await box.sql(`INSERT INTO points VALUES ('report ${name}')`);
            await box.archiveNow();
            const out = path.join(stackDir, name);
            const r = await run(path.join(REPO, "node_modules/.bin/tsx"), [path.join(REPO, "scripts/report.ts"), "--stack", "pitr", "--stack-dir", stackDir, "--out", out], { cwd: REPO, env, timeoutMs: 120_000 });
            expect(existsSync(path.join(out, "report.json")), `exit ${r.code}\n${r.stderr}\n${r.stdout}`).toBe(true);
            // The database dumps of the postgresql role are never run here: that missing source makes it exit 1.
            expect(r.code, r.stderr + r.stdout).toBe(1);
            return JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")) as Report;
        };
        const named = (rep: Report) => rep.problems.map((p) => [p.kind, p.host, p.type, p.target, p.key]);

        const before = Date.now();
        const intact = await report("intact");
        const after = Date.now();
        expect(named(intact)).toEqual([["missing-source", "db", "postgresql", "appdb", null]]);
        // Every key the real repository holds fits the layout the report reads.
        expect(intact.unrecognizedObjects).toEqual([]);
        const repo = `hx-backup/pgbackrest/db/pitr-v1/`;
        expect(intact.pitr.map((p) => [p.host, p.target, p.repository, p.expected, p.backupInfo, p.archiveInfo])).toEqual([["db", STANZA, repo, true, true, true]]);
        const p = intact.pitr[0];
        expect(p.backups.length).toBeGreaterThan(0);
        expect(p.backups.every((b) => /^\d{8}-\d{6}F$/.test(b.label) && b.type === "full" && b.manifestCopy)).toBe(true);
        expect(p.oldestRestorable).toBe(p.backups[0].completedAt);
        expect(p.retention).toMatchObject({ retentionFull: 2, met: true });
        const lastArchived = await box.sh(`runuser -u postgres -- psql -At -h ${PITR_SOCKET} -p ${box.pgPort} -d postgres -c 'SELECT last_archived_wal FROM pg_stat_archiver'`);
        // The allowed age is the default differential schedule's longest gap (Saturday to Monday) plus randomizedDelaySec and the grace, not archive_timeout's 10 s:
        // a 2-day allowance would pass any recent segment, so the segment's upload time is pinned to this run.
        expect(p.newestWal).toMatchObject({ name: lastArchived, archiveId: "15-1", thresholdSeconds: 2 * 86_400 + 300 + 1800, lagMet: true });
        const archivedAt = Date.parse(p.newestWal!.archivedAt);
        expect(archivedAt).toBeGreaterThanOrEqual(before - 2000);
        expect(archivedAt).toBeLessThanOrEqual(after + 2000);
        expect(p.newestWal!.ageSeconds).toBeLessThanOrEqual(Math.ceil((after - before) / 1000) + 2);
        expect(p.timelines.every((t) => t.gaps.length === 0)).toBe(true);
        expect(readFileSync(path.join(stackDir, "intact", "report.md"), "utf8")).toContain(`| db | ${STANZA} | pitr-v1 |`);

        // One archived segment deleted from the middle of a timeline.
        const timeline = p.timelines.find((t) => t.segments >= 3)!;
        const number = (name: string) => parseInt(name.slice(8, 16), 16) * 0x100 + parseInt(name.slice(16), 16);
        const middle = walName(timeline.timeline, number(timeline.first) + 1);
        const dir = `${repo}archive/${STANZA}/${timeline.archiveId}/${middle.slice(0, 16)}/`;
        const client = s3ClientFor({ name: BUCKET, prefix: "hx-backup", region: "us-east-1", endpoint: s3.endpoint, retentionBy: "prefix" }, {
            credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
            requestHandler: { httpsAgent: new Agent({ ca: readFileSync(caFile) }) },
        });
        try {
            const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${dir}${middle}-` }));
            expect(listed.Contents?.map((o) => o.Key)).toHaveLength(1);
            await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: listed.Contents![0].Key! }));
        } finally {
            client.destroy();
        }
        const broken = await report("broken");
        expect(named(broken)).toEqual([
            ["wal-gap", "db", "pitr", STANZA, `${dir}${middle}`],
            ["missing-source", "db", "postgresql", "appdb", null],
        ]);
        expect(broken.problems[0].message).toContain(`WAL chain broken in timeline ${timeline.timeline} (${timeline.archiveId}): ${middle} missing between ${timeline.first} and `);
        expect(broken.pitr[0].timelines.find((t) => t.timeline === timeline.timeline)?.gaps).toEqual([{ first: middle, last: middle, missing: 1 }]);
    });
});
