/**
 * Operator scripts against real services: backup-health-check.sh,
 * full-backup-test.sh, test-restore.sh, test-remote-storage.sh (s3rver) and
 * test-monitoring.sh (node_exporter serving the textfile metrics).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BackupType } from "../../../render/jobs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingTools, run, sleep, which } from "../../support/env";
import { giveToUser, makeHost, postgresqlSection, renderedConfig, type TestHost } from "../../support/host";
import { NODE_EXPORTER, startNodeExporter, type NodeExporterInstance } from "../../support/nodeExporter";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../../support/postgres";
import { startS3, type S3Instance } from "../../support/s3";

const AWS = which("/usr/bin/aws") ?? "aws";
const missing = missingTools([...PG_TOOLS, AWS, NODE_EXPORTER, "curl", "zstd", "jq", "openssl"]);

const job = (name: string, type: BackupType, script: string, args: string[], maxIntervalSeconds: number) => ({ name, type, script, args, description: name, maxIntervalSeconds, jitterSeconds: 300, target: "" });

describe.skipIf(missing.length > 0)("operator scripts", { timeout: 180_000 }, () => {
    let pg: PostgresInstance;
    let s3: S3Instance;
    let ne: NodeExporterInstance;
    let host: TestHost;

    beforeAll(async () => {
        [pg, s3] = await Promise.all([startPostgres(), startS3(["hx-backups"])]);
        host = makeHost();
        ne = await startNodeExporter(host.config.paths.textfile);
        const role = host.user?.name ?? process.env.USER ?? "root";
        await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB; GRANT pg_read_all_data TO "${role}"; CREATE DATABASE appdb;`);
        await pg.sql(`CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g;`, "appdb");
        const credFile = join(host.root, "etc", "s3-credentials");
        writeFileSync(credFile, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n", { mode: 0o600 });
        giveToUser(host, credFile);
        host.config.postgresql = postgresqlSection(pg, role, ["appdb"]);
        host.config.remote = { ...host.config.remote, enabled: true, bucket: "hx-backups", endpoint: s3.endpoint, credentialsFile: credFile, retries: 0 };
        host.config.monitoring = { nodeExporterUrl: ne.url };
        host.config.jobs = [
            job("postgresql-daily", "postgresql", "postgresql-backup.sh", ["daily"], 90000),
            job("postgresql-weekly", "postgresql", "postgresql-backup.sh", ["weekly"], 700000),
            job("verification-weekly", "verification", "backup-verify.sh", ["--all", "--restore-test"], 700000),
        ];
        host.writeConfig();
    });

    afterAll(async () => {
        await Promise.all([pg?.stop(), s3?.stop(), ne?.stop()]);
        host?.cleanup();
    });

    it("health check reports jobs that never ran and exits non-zero", async () => {
        const r = await host.runScript("backup-health-check.sh");
        expect(r.code).toBe(1);
        expect(r.stdout).toMatch(/PROBLEM +postgresql-daily: no metrics yet/);
        expect(r.stdout).toMatch(/UNHEALTHY/);
    });

    it("full-backup-test runs every job once, verifies and restore-tests", async () => {
        const r = await host.runScript("full-backup-test.sh");
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toMatch(/ok +postgresql-daily/);
        expect(r.stdout).not.toMatch(/postgresql-weekly/);
        expect(r.stdout).toMatch(/OK +postgresql\/appdb restore test/);
        expect(r.stdout).toContain("Full backup test passed.");
        expect(host.metric("backup_remote_sync_status", "postgresql", "appdb")).toBe(1);
    });

    it("health check is green after the backups", async () => {
        const r = await host.runScript("backup-health-check.sh");
        expect(r.code, r.stdout).toBe(0);
        expect(r.stdout).toMatch(/ok +postgresql\/appdb: last success/);
        expect(r.stdout).toMatch(/HEALTHY/);
    });

    it("health check holds storage to the stack's StorageFull percentage (storageAlertPercent), not a number of its own", async () => {
        const used = Number(/(\d+)%/.exec((await run("df", ["--output=pcent", host.config.paths.storage])).stdout)![1]);
        for (const [threshold, healthy] of [[used + 1, true], [Math.max(used, 1), false]] as const) {
            host.config.storageAlertPercent = threshold;
            host.writeConfig();
            const r = await host.runScript("backup-health-check.sh");
            expect(r.stdout).toMatch(healthy ? /ok +storage .*% used/ : new RegExp(`PROBLEM +storage .* is \\d+% full \\(StorageFull at ${threshold}%\\)`));
        }
        host.config.storageAlertPercent = renderedConfig().storageAlertPercent;
        host.writeConfig();
    });

    it("test-restore restore-tests the newest artifact of each source, or of one type; an unknown type is a usage error", async () => {
        let r = await host.runScript("test-restore.sh");
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toMatch(/ok +postgresql\/appdb/);
        expect(r.stdout).toMatch(/All 2 restore test\(s\) passed/);
        r = await host.runScript("test-restore.sh", ["application"]);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain("no backups found to restore-test of type application");
        r = await host.runScript("test-restore.sh", ["postgres"]);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/test-restore\.sh: TYPE needs one of: .*postgresql.* \(got 'postgres'\)/);
        expect(r.stdout).toBe("");
        // Its MAC and checksum step is a verification: a tampered artifact sets 0, repaired 1.
        const dir = join(host.config.paths.storage, "postgresql", "appdb");
        const art = join(dir, (host.readManifest("postgresql", "appdb", host.manifests("postgresql", "appdb").slice(-1)[0]!) as any).artifact);
        const orig = readFileSync(art);
        const bad = Buffer.from(orig);
        bad[Math.floor(bad.length / 2)]! ^= 0x01;
        writeFileSync(art, bad);
        try {
            const failed = await host.runScript("test-restore.sh", ["postgresql"]);
            expect(failed.code).toBe(4);
            expect(failed.stdout).toMatch(/FAIL +postgresql\/appdb +artifact sha256 differs/);
            expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(0);
            expect(host.metric("backup_restore_test_status", "postgresql", "appdb")).toBe(0);
        } finally {
            writeFileSync(art, orig);
        }
        const again = await host.runScript("test-restore.sh", ["postgresql"]);
        expect(again.code, again.stdout + again.stderr).toBe(0);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        expect(host.metric("backup_restore_test_status", "postgresql", "appdb")).toBe(1);
    });

    it("test-remote-storage round-trips a probe object, and fails when S3 is down", async () => {
        let r = await host.runScript("test-remote-storage.sh");
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toContain("Remote storage OK");
        await s3.halt();
        r = await host.runScript("test-remote-storage.sh");
        await s3.start();
        expect(r.code).toBe(1);
        expect(r.stdout).toMatch(/FAIL +upload/);
    });

    it("test-monitoring sees the metrics through node_exporter, and reports stale jobs", async () => {
        let r = await host.runScript("test-monitoring.sh");
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toContain("Monitoring OK");
        host.config.jobs = host.config.jobs.map((j: any) => (j.name === "postgresql-daily" ? { ...j, maxIntervalSeconds: 1 } : j)) as any;
        host.writeConfig();
        await sleep(2100);
        r = await host.runScript("test-monitoring.sh");
        expect(r.code).toBe(1);
        expect(r.stdout).toMatch(/Stale jobs: .*postgresql-daily:appdb/);
        const h = await host.runScript("backup-health-check.sh");
        expect(h.code).toBe(1);
    });

    it("serves exactly the documented metric names with type and target labels", async () => {
        const res = await fetch(ne.url);
        const body = await res.text();
        const names = new Set([...body.matchAll(/^(backup_[a-z_]+)\{/gm)].map((m) => m[1]));
        for (const n of ["backup_last_success_timestamp", "backup_duration_seconds", "backup_size_bytes", "backup_verification_status", "backup_storage_usage_bytes", "backup_last_run_status", "backup_last_attempt_timestamp", "backup_restore_test_status", "backup_remote_sync_status", "backup_remote_sync_last_success_timestamp", "backup_dedup_saved_bytes", "backup_size_check_status", "backup_schedule_jitter_seconds"]) {
            expect(names.has(n), n).toBe(true);
        }
        expect(names.has("backup_expected_interval_seconds")).toBe(true);
        const hostLevel = ["backup_storage_filesystem_size_bytes", "backup_storage_filesystem_avail_bytes", "backup_storage_quota_bytes", "backup_encryption_key_age_seconds"];
        for (const line of body.split("\n").filter((l) => l.startsWith("backup_"))) {
            if (hostLevel.some((n) => line.startsWith(`${n} `))) continue;
            expect(line).toMatch(/^backup_[a-z_]+\{target="[^"]*",type="[^"]*"\} [0-9.e+-]+$/);
        }
        for (const n of hostLevel) expect(body).toMatch(new RegExp(`^${n} [0-9.e+-]+$`, "m"));
        // The key's age counts from its keyring file, written when the key was installed.
        const age = Number(/^backup_encryption_key_age_seconds (\S+)$/m.exec(body)?.[1]);
        expect(age).toBeGreaterThanOrEqual(0);
        expect(age).toBeLessThan(3600);
        expect(body).toMatch(/^node_textfile_scrape_error 0$/m);
    });
});
