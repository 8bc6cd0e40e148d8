/**
 * postgresql-backup.sh against a real throwaway PostgreSQL, run as an
 * unprivileged OS user with peer auth over the socket: artifacts, manifests,
 * MAC, metrics, dedup, verification, restore test and restore.
 */
import { chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chownR, isRoot, missingTools, run, waitFor } from "../../support/env";
import { alarmingLines, makeHost, postgresqlSection, type TestHost } from "../../support/host";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../../support/postgres";
import { loadStackConfig } from "../../../config/load";
import { hostJobs } from "../../../render/jobs";
import { slug } from "../../../render/slug";
import { ANALYZE_UNIT, renderMaintenanceUnits, VACUUM_UNIT } from "../../../render/systemd";
import { parseUnit, runUnit } from "../../../scripts/sandbox/jobs";

const missing = missingTools([...PG_TOOLS, "zstd", "jq", "openssl", "flock"]);
const HOSTILE_DB = `we"ird $(touch /tmp/hx-pwned) ; db *\nline2`;

describe.skipIf(missing.length > 0)("postgresql-backup.sh", { timeout: 180_000 }, () => {
    let pg: PostgresInstance;
    let host: TestHost;
    let role: string;

    beforeAll(async () => {
        pg = await startPostgres();
        host = makeHost();
        role = host.user?.name ?? process.env.USER ?? "root";
        await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB; GRANT pg_read_all_data TO "${role}";
            CREATE DATABASE appdb; CREATE DATABASE "${HOSTILE_DB.replace(/"/g, '""')}";`);
        await pg.sql(`CREATE TABLE items (id serial PRIMARY KEY, name text, payload bytea);
            INSERT INTO items (name, payload) SELECT 'item ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 5000) g;
            CREATE SCHEMA "odd schema"; CREATE TABLE "odd schema"."t;1" (x int); INSERT INTO "odd schema"."t;1" VALUES (1), (2), (3);
            CREATE TABLE empty_t (x int);`, "appdb");
        await pg.sql(`CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10);`, HOSTILE_DB);
        host.config.postgresql = postgresqlSection(pg, role, ["appdb", HOSTILE_DB]);
        host.writeConfig();
    });

    afterAll(async () => {
        await pg?.stop();
        host?.cleanup();
    });

    it("backs up every configured database and the globals, verified, with manifests and metrics", async () => {
        const r = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(r.code, r.stderr).toBe(0);
        const ms = host.manifests("postgresql", "appdb");
        expect(ms).toHaveLength(1);
        const m = host.readManifest("postgresql", "appdb", ms[0]!) as any;
        expect(m.format).toBe(1);
        expect(m.type).toBe("postgresql");
        expect(m.source.database).toBe("appdb");
        expect(m.encryption.keyId).toBe("test-v1");
        expect(m.mac.alg).toBe("hmac-sha256");
        expect(m.sha256.stored).toMatch(/^[0-9a-f]{64}$/);
        expect(m.tools.pg_dump).toContain("pg_dump");
        const tables = Object.fromEntries(m.content.tables.map((t: any) => [t.table, t.rows]));
        expect(tables["public.items"]).toBe(5000);
        expect(tables['"odd schema"."t;1"']).toBe(3);
        expect(tables["public.empty_t"]).toBe(0);
        expect(m.artifact).toMatch(/^appdb-\d{8}T\d{6}Z\.dump\.zst\.enc$/);
        expect(existsSync(join(host.config.paths.storage, "postgresql", "appdb", m.artifact))).toBe(true);
        // hostile name handled as data
        expect(existsSync("/tmp/hx-pwned")).toBe(false);
        const dirs = readdirSync(join(host.config.paths.storage, "postgresql"));
        const hostileDir = dirs.find((d) => d.startsWith("we_ird"))!;
        expect(hostileDir).toMatch(/^[A-Za-z0-9._-]+$/);
        // The name the compliance report looks for in the bucket (render/slug.ts).
        expect(hostileDir).toBe(slug(HOSTILE_DB));
        const hm = host.readManifest("postgresql", hostileDir, host.manifests("postgresql", hostileDir)[0]!) as any;
        expect(hm.source.database).toBe(HOSTILE_DB);
        expect(host.manifests("postgresql", "_globals")).toHaveLength(1);
        // metrics
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(1);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        expect(host.metric("backup_size_bytes", "postgresql", "appdb")).toBeGreaterThan(0);
        expect(host.metric("backup_last_success_timestamp", "postgresql", "appdb")).toBeGreaterThan(1e9);
        expect(host.metric("backup_last_run_status", "postgresql", hostileDir)).toBe(1);
        // no plaintext, no partials left
        const all = readdirSync(join(host.config.paths.storage, "postgresql", "appdb"));
        expect(all.filter((f) => f.includes("partial"))).toEqual([]);
        const bytes = readFileSync(join(host.config.paths.storage, "postgresql", "appdb", m.artifact));
        expect(bytes.subarray(0, 8).toString()).toBe("Salted__");
        expect(bytes.includes(Buffer.from("item 4999"))).toBe(false);
        // log lines are structured
        const log = host.log("postgresql-backup");
        expect(log).toMatch(/ts=\S+ level=audit job=postgresql-daily event=start/);
        expect(log).toMatch(/event=backup_ok .*target="appdb"/);
        // A good run says nothing alarming: an operator who greps for "error" finds only real ones.
        expect(alarmingLines(r.stderr)).toEqual([]);
        expect(alarmingLines(log)).toEqual([]);
    });

    it("deduplicates an unchanged database", async () => {
        const [firstName] = host.manifests("postgresql", "appdb");
        const first = host.readManifest("postgresql", "appdb", firstName!) as any;
        const r = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(r.code, r.stderr).toBe(0);
        // retention keeps the newest of the day; it references the first artifact
        const ms = host.manifests("postgresql", "appdb");
        expect(ms).toHaveLength(1);
        const second = host.readManifest("postgresql", "appdb", ms[0]!) as any;
        expect(second.dedup).toEqual({ artifact: first.artifact, manifest: firstName });
        expect(second.artifact).toBe(first.artifact);
        expect(host.metric("backup_dedup_saved_bytes", "postgresql", "appdb")).toBeGreaterThan(0);
        const files = readdirSync(join(host.config.paths.storage, "postgresql", "appdb")).filter((f) => f.endsWith(".enc"));
        expect(files).toHaveLength(1);
    });

    it("verifies and restores by artifact path after a same-day daily and weekly run, through the newest valid manifest that describes it", async () => {
        const dir = join(host.config.paths.storage, "postgresql", "appdb");
        const w = await host.runScript("postgresql-backup.sh", ["weekly"]);
        expect(w.code, w.stderr).toBe(0);
        // Retention kept only the newest manifest of the day: a dedup reference to an artifact
        // whose own manifest is gone.
        const ms = host.manifests("postgresql", "appdb");
        expect(ms).toHaveLength(1);
        const newest = host.readManifest("postgresql", "appdb", ms[0]!) as any;
        expect(newest.dedup).not.toBeNull();
        expect(ms.some((m) => m.startsWith(newest.artifact.replace(/\.dump\..*$/, "")))).toBe(false);
        const art = join(dir, newest.artifact);
        const v = await host.runScript("backup-verify.sh", [art]);
        expect(v.code, v.stderr + v.stdout).toBe(0);
        expect(v.stdout).toContain(`OK   ${join(dir, ms[0]!)}`);
        expect(host.log("backup-verify")).toMatch(new RegExp(`event=manifest_found .*manifest="?${join(dir, ms[0]!).replace(/[.]/g, "\\.")}`));
        const rr = await host.runScript("backup-restore.sh", ["--target", "hx_by_artifact", art]);
        expect(rr.code, rr.stderr).toBe(0);
        expect(await pg.sql("SELECT count(*) FROM items", "hx_by_artifact")).toBe("5000");
        await pg.sql("DROP DATABASE hx_by_artifact");
        // An artifact no manifest describes is still refused, naming it; like an orphan in --all
        // it is no backup, so the source's verification status is left as it was.
        const stray = join(dir, "stray-20250101T000000Z.dump.zst.enc");
        writeFileSync(stray, "x");
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        const none = await host.runScript("backup-verify.sh", [stray]);
        expect(none.code).toBe(4);
        expect(none.stderr).toContain(`no manifest found for ${stray}`);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        const noneRestore = await host.runScript("backup-restore.sh", ["--target", "hx_never_restored", stray]);
        expect(noneRestore.code).toBe(4);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        rmSync(stray);
    });

    it("with several manifests of one artifact and the newest one's MAC broken, verify and restore by artifact path use the newest valid one and say which", async () => {
        const dir = join(host.config.paths.storage, "postgresql", "appdb");
        const savedRetention = host.config.retention;
        // Retention off: two more unchanged runs add two deduplicated manifests of the same artifact.
        host.config.retention = { ...savedRetention, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
        host.writeConfig();
        try {
            for (let i = 0; i < 2; i++) {
                const r = await host.runScript("postgresql-backup.sh", ["daily"]);
                expect(r.code, r.stderr).toBe(0);
            }
            const ms = host.manifests("postgresql", "appdb");
            expect(ms).toHaveLength(3);
            const arts = new Set(ms.map((m) => (host.readManifest("postgresql", "appdb", m) as any).artifact));
            expect(arts.size).toBe(1);
            const art = join(dir, [...arts][0]!);
            const [, older, newest] = ms.map((m) => join(dir, m));
            // The newest manifest's MAC no longer matches its body.
            writeFileSync(newest!, readFileSync(newest!, "utf8").replace(/"job": "postgresql-daily"/, '"job": "postgresql-forged"'));
            const logBefore = host.log("backup-verify").length;
            const v = await host.runScript("backup-verify.sh", [art]);
            expect(v.code, v.stderr + v.stdout).toBe(0);
            expect(v.stdout).toContain(`OK   ${older}`);
            const vlog = host.log("backup-verify").slice(logBefore);
            expect(vlog).toMatch(new RegExp(`level=warning .*event=manifest_skipped .*MAC mismatch.*manifest="${newest!.replace(/[.]/g, "\\.")}"`));
            expect(vlog).toMatch(new RegExp(`event=manifest_found .*msg="using the newest valid of 3 manifest\\(s\\) that describe the artifact" .*manifest="${older!.replace(/[.]/g, "\\.")}" manifests="3"`));
            expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
            const rr = await host.runScript("backup-restore.sh", ["--target", "hx_by_older_manifest", art]);
            expect(rr.code, rr.stderr).toBe(0);
            expect(rr.stdout).toContain(`Using manifest ${older} (the newest valid of 3 that describe the artifact)`);
            expect(host.log("backup-restore")).toMatch(new RegExp(`event=restore_start .*manifest="${older!.replace(/[.]/g, "\\.")}"`));
            expect(await pg.sql("SELECT count(*) FROM items", "hx_by_older_manifest")).toBe("5000");
            await pg.sql("DROP DATABASE hx_by_older_manifest");
            rmSync(newest!);
            // The restore-test record speaks for the newest backup: a test of an older one leaves it alone.
            const record = join(dir, ".restore-test.json");
            const recorded = () => (JSON.parse(readFileSync(record, "utf8")) as { manifest: string }).manifest;
            let t = await host.runScript("backup-verify.sh", ["--restore-test", older!]);
            expect(t.code, t.stderr + t.stdout).toBe(0);
            expect(recorded()).toBe(basename(older!));
            t = await host.runScript("backup-verify.sh", ["--restore-test", join(dir, ms[0]!)]);
            expect(t.code, t.stderr + t.stdout).toBe(0);
            expect(recorded()).toBe(basename(older!));
            expect(host.log("backup-verify")).toMatch(/event=restore_test_record .*not replaced: not the source's newest backup/);
        } finally {
            host.config.retention = savedRetention;
            host.writeConfig();
        }
        // Retention back on: one manifest of the day again, as the later tests expect.
        const ret = await host.runScript("backup-retention.sh", []);
        expect(ret.code, ret.stderr).toBe(0);
        expect(host.manifests("postgresql", "appdb")).toHaveLength(1);
    });

    it("test mode checks connectivity, dumps, verifies and leaves nothing behind", async () => {
        const before = readdirSync(join(host.config.paths.storage, "postgresql", "appdb")).sort();
        const logBefore = host.log("postgresql-backup").length;
        const r = await host.runScript("postgresql-backup.sh", ["test"]);
        expect(r.code, r.stderr).toBe(0);
        expect(alarmingLines(r.stderr)).toEqual([]);
        expect(alarmingLines(host.log("postgresql-backup").slice(logBefore))).toEqual([]);
        expect(r.stdout).toContain("Self-test passed");
        expect(r.stdout).toMatch(/appdb\s+OK/);
        expect(readdirSync(join(host.config.paths.storage, "postgresql", "appdb")).sort()).toEqual(before);
        expect(readdirSync(host.config.paths.storage).filter((f) => f.includes("selftest"))).toEqual([]);
    });

    it("verifies everything and restore-tests the newest artifact of each source", async () => {
        const logBefore = host.log("backup-verify").length;
        const r = await host.runScript("backup-verify.sh", ["--all", "--restore-test"]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(alarmingLines(r.stderr)).toEqual([]);
        expect(alarmingLines(host.log("backup-verify").slice(logBefore))).toEqual([]);
        expect(r.stdout).toMatch(/OK\s+postgresql\/appdb restore test/);
        expect(host.metric("backup_restore_test_status", "postgresql", "appdb")).toBe(1);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        expect(host.metric("backup_last_run_status", "verification", "all")).toBe(1);
        // the scratch database is gone
        expect(await pg.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'hx_restore_test_%'")).toBe("0");
    });

    it("detects a flipped byte in an artifact or a manifest before decrypting", async () => {
        const dir = join(host.config.paths.storage, "postgresql", "appdb");
        const [m0] = host.manifests("postgresql", "appdb");
        const man = host.readManifest("postgresql", "appdb", m0!) as any;
        const art = join(dir, man.artifact);
        const orig = readFileSync(art);
        const bad = Buffer.from(orig);
        bad[Math.floor(bad.length / 2)]! ^= 0x01;
        writeFileSync(art, bad);
        let r = await host.runScript("backup-verify.sh", ["--all"]);
        expect(r.code).toBe(4);
        expect(r.stdout).toContain("sha256 differs");
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(0);
        expect(host.metric("backup_last_run_status", "verification", "all")).toBe(0);
        expect(host.log("backup-verify")).toMatch(/level=error .*event=verify_failed/);
        // Every check records its outcome: a good --all, then the tampered artifact by path
        // (0), then a restore refused for it (0), then the intact artifact by path (1).
        writeFileSync(art, orig);
        expect((await host.runScript("backup-verify.sh", ["--all"])).code).toBe(0);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        writeFileSync(art, bad);
        r = await host.runScript("backup-verify.sh", [art]);
        expect(r.code).toBe(4);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(0);
        writeFileSync(art, orig);
        expect((await host.runScript("backup-verify.sh", [art])).code).toBe(0);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        writeFileSync(art, bad);
        r = await host.runScript("backup-restore.sh", ["--target", "hx_never_restored", art]);
        expect(r.code).toBe(4);
        expect(r.stderr).toMatch(/verification failed, nothing restored/);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(0);
        writeFileSync(art, orig);
        // manifest: change one digit of a size
        const mp = join(dir, m0!);
        const mtext = readFileSync(mp, "utf8");
        writeFileSync(mp, mtext.replace(/"plain": (\d)/, (_s, d) => `"plain": ${(Number(d) + 1) % 10}`));
        r = await host.runScript("backup-verify.sh", [mp]);
        expect(r.code).toBe(4);
        expect(r.stdout).toContain("MAC mismatch");
        writeFileSync(mp, mtext);
        r = await host.runScript("backup-verify.sh", ["--all"]);
        expect(r.code, r.stdout).toBe(0);
        expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
    });

    it("detects a wrong key and a missing key", async () => {
        const keyPath = join(host.config.paths.keyring, "test-v1.key");
        const orig = readFileSync(keyPath);
        writeFileSync(keyPath, "ab".repeat(64) + "\n");
        let r = await host.runScript("backup-verify.sh", ["--all"]);
        expect(r.code).toBe(4);
        expect(r.stdout).toContain("MAC mismatch");
        const keyFile = readFileSync(host.config.paths.keyFile);
        const { unlinkSync } = await import("node:fs");
        unlinkSync(keyPath);
        unlinkSync(host.config.paths.keyFile);
        r = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(r.code).toBe(2);
        expect(host.log("postgresql-backup")).toMatch(/encryption key: key 'test-v1' not found/);
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(0);
        writeFileSync(keyPath, orig, { mode: 0o600 });
        writeFileSync(host.config.paths.keyFile, keyFile, { mode: 0o600 });
        if (host.user) {
            const { chownSync } = await import("node:fs");
            chownSync(keyPath, host.user.uid, host.user.gid);
            chownSync(host.config.paths.keyFile, host.user.uid, host.user.gid);
        }
        r = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(r.code, r.stderr).toBe(0);
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(1);
    });

    it("records each index's table and size in the manifest, restores by them, and restores an artifact without them (the previous dump code) as before", async () => {
        await pg.sql("CREATE DATABASE sizedb");
        await pg.sql(`CREATE TABLE big (id int PRIMARY KEY, note text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE INDEX big_note ON big (note);
            CREATE TABLE small (id int PRIMARY KEY, big_id int REFERENCES big (id)); INSERT INTO small SELECT g, g FROM generate_series(1, 10) g;
            CREATE TABLE parted (x int) PARTITION BY RANGE (x);
            CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100); CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
            INSERT INTO parted SELECT generate_series(0, 199); CREATE INDEX parted_x ON parted (x);`, "sizedb");
        const saved = host.config.postgresql;
        const dir = join(host.root, "older-artifact");
        try {
            host.config.postgresql = postgresqlSection(pg, role, [], { databases: [{ name: "sizedb", large: false }], format: "custom" });
            host.writeConfig();
            let r = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(r.code, r.stderr).toBe(0);
            const mname = host.manifests("postgresql", "sizedb").slice(-1)[0]!;
            const manifest = join(host.config.paths.storage, "postgresql", "sizedb", mname);
            const man = host.readManifest("postgresql", "sizedb", mname) as any;
            expect(man.content.format).toBe("custom");
            // Keyed as pg_restore --list names the entry: the constraint of a key, else the index.
            const want = await pg.sql(`SELECT string_agg(concat_ws(' ', k, t::regclass::text, t::oid, pg_relation_size(t), pg_relation_size(i)), '|' ORDER BY k) FROM (VALUES
                ('2606 ' || (SELECT oid FROM pg_constraint WHERE conname = 'big_pkey'), 'big'::regclass, 'big_pkey'::regclass),
                ('1259 ' || 'big_note'::regclass::oid, 'big'::regclass, 'big_note'::regclass),
                ('2606 ' || (SELECT oid FROM pg_constraint WHERE conname = 'small_pkey'), 'small'::regclass, 'small_pkey'::regclass),
                ('1259 ' || 'parted_1_x_idx'::regclass::oid, 'parted_1'::regclass, 'parted_1_x_idx'::regclass),
                ('1259 ' || 'parted_2_x_idx'::regclass::oid, 'parted_2'::regclass, 'parted_2_x_idx'::regclass)) v(k, t, i)`, "sizedb");
            const got = (man.content.postData as any[])
                .map((e) => [e.toc, e.table.replace(/^public\./, ""), e.tableOid, e.tableBytes, e.indexBytes].join(" "))
                .sort()
                .join("|");
            expect(got).toBe(want);
            expect(man.content.postData.find((e: any) => e.table === "public.big" && e.indexBytes > 0)).toBeTruthy();
            // The manifest's MAC covers them: a changed size is refused before anything is restored.
            const forged = join(host.root, "forged.manifest.json");
            writeFileSync(forged, JSON.stringify({ ...man, content: { ...man.content, postData: man.content.postData.map((e: any) => ({ ...e, indexBytes: 1 })) } }));
            r = await host.runScript("backup-restore.sh", ["--target", "sizedb_forged", forged]);
            expect(r.code).toBe(4);
            expect(r.stderr).toMatch(/verification failed, nothing restored/);
            const restored = async (db: string) => {
                expect(await pg.sql("SELECT count(*) FROM big", db)).toBe("20000");
                expect(await pg.sql("SELECT count(*) FROM pg_indexes WHERE indexname IN ('big_pkey', 'big_note', 'small_pkey', 'parted_x', 'parted_1_x_idx', 'parted_2_x_idx')", db)).toBe("6");
                expect(await pg.sql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'parted_x'::regclass", db)).toBe("2");
                expect(await pg.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'small'::regclass", db)).toBe("1");
            };
            const logBefore = host.log("backup-restore").length;
            r = await host.runScript("backup-restore.sh", ["--target", "sizedb_restored", manifest]);
            expect(r.code, r.stderr).toBe(0);
            await restored("sizedb_restored");
            const phases = [...host.log("backup-restore").slice(logBefore).matchAll(/event=restore_phase .*phase="([a-z-]+)"/g)].map((x) => x[1]);
            expect(phases).toEqual(["pre-data", "data", "indexes", "post-data"]);
            // The same artifacts, custom and parallel, with a manifest as the previous dump code
            // wrote it (no postData, signed with the key): the builds go round-robin after the data.
            const lib = join(host.scriptsDir, "hx-backup-lib.sh");
            const restoreOlder = async (m: any, from: string, db: string) => {
                const sub = join(dir, db);
                mkdirSync(sub, { recursive: true });
                const older = join(sub, "older.manifest.json");
                writeFileSync(join(sub, "stripped.json"), JSON.stringify({ ...m, content: { ...m.content, postData: undefined } }));
                copyFileSync(join(from, m.artifact), join(sub, m.artifact));
                if (host.user) chownR(dir, host.user);
                const sign = await run("bash", ["-c", 'set -Eeuo pipefail; source "$1"; hx_load_config; hx_key_load "$HX_KEY_ID"; hx_manifest_sign "$2" "$3"', "_", lib, join(sub, "stripped.json"), older], {
                    env: { HX_BACKUP_CONFIG: host.configPath },
                    user: host.user,
                });
                expect(sign.code, sign.stderr).toBe(0);
                expect((JSON.parse(readFileSync(older, "utf8")) as any).content.postData).toBeUndefined();
                const rr = await host.runScript("backup-restore.sh", ["--target", db, older]);
                expect(rr.code, rr.stderr).toBe(0);
                await restored(db);
            };
            const from = join(host.config.paths.storage, "postgresql", "sizedb");
            await restoreOlder(man, from, "sizedb_older");
            host.config.postgresql.databases = [{ name: "sizedb", large: true }];
            host.writeConfig();
            r = await host.runScript("postgresql-backup.sh", ["weekly"]);
            expect(r.code, r.stderr).toBe(0);
            const par = host.readManifest("postgresql", "sizedb", host.manifests("postgresql", "sizedb").slice(-1)[0]!) as any;
            expect(par.content.format).toBe("parallel");
            expect(par.content.postData).toHaveLength(5);
            await restoreOlder(par, from, "sizedb_older_parallel");
        } finally {
            host.config.postgresql = saved;
            host.writeConfig();
            rmSync(dir, { recursive: true, force: true });
        }
    });

    it("restores into a new database, refuses to overwrite without --force, and refuses a tampered artifact", async () => {
        const [mname] = host.manifests("postgresql", "appdb");
        const manifest = join(host.config.paths.storage, "postgresql", "appdb", mname!);
        let r = await host.runScript("backup-restore.sh", ["--target", "appdb_copy", manifest]);
        expect(r.code, r.stderr).toBe(0);
        expect(await pg.sql("SELECT count(*) FROM items", "appdb_copy")).toBe("5000");
        r = await host.runScript("backup-restore.sh", ["--target", "appdb_copy", manifest]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("without --force");
        await pg.sql("DELETE FROM items WHERE id > 10", "appdb_copy");
        r = await host.runScript("backup-restore.sh", ["--force", "--target", "appdb_copy", manifest]);
        expect(r.code, r.stderr).toBe(0);
        expect(await pg.sql("SELECT count(*) FROM items", "appdb_copy")).toBe("5000");
        // tampered: nothing is restored
        const man = host.readManifest("postgresql", "appdb", mname!) as any;
        const art = join(host.config.paths.storage, "postgresql", "appdb", man.artifact);
        const orig = readFileSync(art);
        const bad = Buffer.from(orig);
        bad[bad.length - 5]! ^= 0x10;
        writeFileSync(art, bad);
        r = await host.runScript("backup-restore.sh", ["--target", "appdb_tampered", manifest]);
        writeFileSync(art, orig);
        expect(r.code).toBe(4);
        expect(host.log("backup-restore")).toMatch(/verification failed, nothing restored/);
        expect(await pg.sql("SELECT count(*) FROM pg_database WHERE datname = 'appdb_tampered'")).toBe("0");
        // restore of the globals goes to a file
        const [g] = host.manifests("postgresql", "_globals");
        const out = join(host.config.paths.storage, "globals.sql");
        r = await host.runScript("backup-restore.sh", ["--target", out, join(host.config.paths.storage, "postgresql", "_globals", g!)]);
        expect(r.code, r.stderr).toBe(0);
        expect(readFileSync(out, "utf8")).toMatch(new RegExp(`CREATE ROLE ${role}`));
    });

    it("dumps a database marked large as parallel encrypted parts in one snapshot, with no plaintext on disk, and restores it whole", async () => {
        const weird = `we"ird.*?[x]\nname`;
        const q = (n: string) => `"${n.replace(/"/g, '""')}"`;
        await pg.sql("CREATE DATABASE bigone");
        await pg.sql(`CREATE TABLE a (id serial PRIMARY KEY, note text); INSERT INTO a (note) SELECT 'PLAINTEXT-MARKER-' || g FROM generate_series(1, 30000) g;
            CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id), y text); INSERT INTO b SELECT g, g, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE INDEX b_y ON b (y);
            CREATE TABLE ${q(weird)} (x int); INSERT INTO ${q(weird)} SELECT generate_series(1, 7000);
            CREATE TABLE "we""ird" (x int); INSERT INTO "we""ird" VALUES (1);
            CREATE TABLE empty_t (x int);
            CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM a;
            SELECT lo_from_bytea(424242, 'large object bytes');
            GRANT SELECT ON LARGE OBJECT 424242 TO "${role}";`, "bigone");
        const saved = host.config.postgresql!.databases;
        host.config.postgresql!.databases = [{ name: "bigone", large: true }];
        host.writeConfig();
        const storage = join(host.config.paths.storage, "postgresql", "bigone");
        try {
            let r = await host.runScript("postgresql-backup.sh", ["weekly"]);
            expect(r.code, r.stderr).toBe(0);
            const [m] = host.manifests("postgresql", "bigone");
            const man = host.readManifest("postgresql", "bigone", m!) as any;
            expect(man.content.format).toBe("parallel");
            expect(man.artifact).toMatch(/^bigone-\d{8}T\d{6}Z\.dump\.zst\.enc\.tar$/);
            // A schema part and one data part per job, the big tables split between them.
            const parts = man.content.parts as any[];
            expect(parts.map((p) => p.role)).toEqual(["schema", "data", "data"]);
            const inData = parts.filter((p) => p.role === "data").flatMap((p) => p.tables);
            expect(inData).toEqual(expect.arrayContaining(["public.a", "public.b", `public.${q(weird)}`]));
            expect(inData).not.toContain("public.empty_t");
            expect(parts.reduce((n, p) => n + p.sizes.plain, 0)).toBe(man.sizes.plain);
            // The artifact is a tar of ciphertext parts; nothing readable is left in storage.
            const art = join(storage, man.artifact);
            const members = await run("tar", ["--list", "--file", art]);
            expect(members.stdout.trim().split("\n").sort()).toEqual(parts.map((p) => p.name).sort());
            expect(readFileSync(art).includes("PLAINTEXT-MARKER")).toBe(false);
            expect(readFileSync(art).includes("PGDMP")).toBe(false);
            expect(readdirSync(storage).filter((f) => f.startsWith("."))).toEqual([]);
            // Verified and restore-tested in a scratch database.
            let v = await host.runScript("backup-verify.sh", ["--restore-test", join(storage, m!)]);
            expect(v.code, v.stdout + v.stderr).toBe(0);
            expect(v.stdout).toContain("OK   restore test");
            // A real restore brings back data, keys, indexes, sequences, large objects and views.
            r = await host.runScript("backup-restore.sh", ["--target", "bigone_restored", join(storage, m!)]);
            expect(r.code, r.stderr).toBe(0);
            expect(await pg.sql(`SELECT count(*) FROM ${q(weird)}`, "bigone_restored")).toBe("7000");
            expect(await pg.sql("SELECT nextval('a_id_seq')", "bigone_restored")).toBe("30001");
            expect(await pg.sql("SELECT count(*) FROM pg_indexes WHERE indexname IN ('a_pkey', 'b_pkey', 'b_y')", "bigone_restored")).toBe("3");
            expect(await pg.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'b'::regclass", "bigone_restored")).toBe("1");
            expect(await pg.sql("SELECT convert_from(lo_get(424242), 'UTF8')", "bigone_restored")).toBe("large object bytes");
            expect(await pg.sql("SELECT n FROM mv", "bigone_restored")).toBe("30000");
            // Unchanged: the second run stores nothing new (retention keeps the newest of the day).
            r = await host.runScript("postgresql-backup.sh", ["weekly"]);
            expect(r.code, r.stderr).toBe(0);
            const ms = host.manifests("postgresql", "bigone");
            expect(ms).toHaveLength(1);
            const second = host.readManifest("postgresql", "bigone", ms[0]!) as any;
            expect(second.dedup).toEqual({ artifact: man.artifact, manifest: m });
            expect(readdirSync(storage).filter((f) => f.endsWith(".enc.tar"))).toEqual([man.artifact]);
            // One flipped byte inside a part is caught before any decryption.
            const bytes = readFileSync(art);
            bytes[Math.floor(bytes.length / 2)] ^= 0x01;
            writeFileSync(art, bytes);
            v = await host.runScript("backup-verify.sh", [join(storage, ms[0]!)]);
            expect(v.code).toBe(4);
            expect(v.stdout).toMatch(/sha256 differs/);
        } finally {
            host.config.postgresql!.databases = saved;
            host.writeConfig();
        }
    });

    it.skipIf(!isRoot)("VACUUM ANALYZE and ANALYZE run from their rendered units, as the postgres OS user, and from nowhere else", async () => {
        const config = loadStackConfig("test", {
            hosts: [{ name: "db", address: "127.0.0.1", remoteSync: false, roles: ["postgresql"], postgresql: { host: pg.socketDir, port: pg.port, databases: ["appdb"], vacuumAnalyzeBefore: "always", analyzeAfter: "always" } }],
        });
        const dbHost = config.hosts[0]!;
        const units = renderMaintenanceUnits(config, dbHost, hostJobs(config, dbHost)).map((u) => parseUnit(u.name, u.content));
        expect(units.map((u) => [u.name, u.user])).toEqual([[VACUUM_UNIT, "postgres"], [ANALYZE_UNIT, "postgres"]]);
        const exec = async (command: string) => {
            const r = await run("bash", ["-c", command]);
            return { ...r, code: r.code ?? 1 };
        };
        const vacuumed = "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'items' AND last_vacuum IS NOT NULL";
        const lastAnalyze = "SELECT coalesce(extract(epoch FROM last_analyze), 0) FROM pg_stat_user_tables WHERE relname = 'items'";
        // A backup job by hand runs no maintenance: the units are the one path.
        expect((await host.runScript("postgresql-backup.sh", ["weekly"])).code).toBe(0);
        expect(await pg.sql(vacuumed, "appdb")).toBe("0");
        const vacuum = await runUnit(exec, units[0]!);
        expect(vacuum.code, vacuum.stderr).toBe(0);
        await waitFor(async () => (await pg.sql(vacuumed, "appdb")) === "1", 60_000, "pg_stat_user_tables to show the vacuum of items");
        const analyzedByVacuum = Number(await pg.sql(lastAnalyze, "appdb"));
        const analyze = await runUnit(exec, units[1]!);
        expect(analyze.code, analyze.stderr).toBe(0);
        await waitFor(async () => Number(await pg.sql(lastAnalyze, "appdb")) > analyzedByVacuum, 60_000, "pg_stat_user_tables to show a newer analyze of items");
    });

    it("with no databases configured, backs up every non-template database (names NUL-separated)", async () => {
        const saved = host.config.postgresql!.databases;
        host.config.postgresql!.databases = [];
        host.writeConfig();
        try {
            const r = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(r.code, r.stderr).toBe(0);
            const dirs = readdirSync(join(host.config.paths.storage, "postgresql"));
            for (const d of ["appdb", "postgres", "_globals"]) expect(dirs).toContain(d);
            expect(dirs.some((d) => d.startsWith("we_ird"))).toBe(true);
            expect(dirs).not.toContain("template0");
            expect(dirs).not.toContain("template1");
        } finally {
            host.config.postgresql!.databases = saved;
            host.writeConfig();
        }
    });

    it("rejects a bad mode with exit code 2", async () => {
        const r = await host.runScript("postgresql-backup.sh", ["hourly"]);
        expect(r.code).toBe(2);
    });

    it("a multi-megabyte dump, custom and parallel, succeeds with nothing alarming on stderr or in the log (SIGPIPE ignored, as under systemd)", async () => {
        // Several MB of incompressible rows: far more than the pipes between decrypt, decompress
        // and pg_restore --list hold, so a structure check that stops reading early would make
        // the writers report EPIPE ("error writing output file").
        await pg.sql("CREATE DATABASE bulkdb");
        await pg.sql("CREATE TABLE blobs (id int PRIMARY KEY, data bytea); INSERT INTO blobs SELECT g, decode(string_agg(md5(g::text || ':' || s::text), ''), 'hex') FROM generate_series(1, 4000) g, generate_series(1, 64) s GROUP BY g;", "bulkdb");
        const saved = host.config.postgresql;
        try {
            for (const large of [false, true]) {
                host.config.postgresql = postgresqlSection(pg, role, ["bulkdb"], { databases: [{ name: "bulkdb", large }] });
                host.writeConfig();
                const logBefore = host.log("postgresql-backup").length;
                const r = await host.runScript("postgresql-backup.sh", ["daily"]);
                expect(r.code, r.stderr).toBe(0);
                const m = host.readManifest("postgresql", "bulkdb", host.manifests("postgresql", "bulkdb").slice(-1)[0]!) as any;
                expect(m.sizes.plain).toBeGreaterThan(4_000_000);
                expect(m.content.format).toBe(large ? "parallel" : "custom");
                expect(alarmingLines(r.stderr), `large=${large}`).toEqual([]);
                expect(alarmingLines(host.log("postgresql-backup").slice(logBefore)), `large=${large}`).toEqual([]);
            }
        } finally {
            host.config.postgresql = saved;
            host.writeConfig();
        }
    });

    it("a stream that fails to decrypt in the structure check fails the backup (exit 4) with the decryptor's own error as the cause, custom and parallel", async () => {
        // openssl's decryption, and only it, reads the ciphertext without its last 32 bytes, as from a
        // truncated file: pg_restore --list still gets the whole TOC, so only the decryptor's status
        // and stderr tell. (An exported function: the scripts put the system PATH first.)
        // And a status of 0 moved into place while its target's cause is not there yet.
        const movesLog = join(host.root, "moves.log");
        writeFileSync(movesLog, "");
        chownSync(movesLog, host.user!.uid, host.user!.gid);
        const env = {
            "BASH_FUNC_openssl%%": '() { if [[ ${1:-} == enc && " $* " == *" -d "* ]]; then head -c -32 | command openssl "$@"; return "${PIPESTATUS[1]}"; fi; command openssl "$@"; }',
            "BASH_FUNC_mv%%": `() { local arg src="" dst=""; for arg in "$@"; do src=$dst; dst=$arg; done; if [[ \${dst##*/} == hx_backup-*.prom ]] && grep --quiet --extended-regexp '^backup_last_run_status\\{.*\\} 0$' -- "$src" 2>/dev/null && [[ ! -e \${dst%/*}/hx_backup_cause-\${dst##*/hx_backup-} ]]; then printf 'status 0 without its cause: %s\\n' "\${dst##*/}" >> ${movesLog}; fi; command mv "$@"; }`,
        };
        const causeFile = join(host.config.paths.textfile, "hx_backup_cause-postgresql-appdb.prom");
        const saved = host.config.postgresql;
        try {
            // From a passing state, with no cause file: the first failure must write its cause before its status.
            const passing = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(passing.code, passing.stderr).toBe(0);
            expect(existsSync(causeFile)).toBe(false);
            for (const large of [false, true]) {
                host.config.postgresql = postgresqlSection(pg, role, ["appdb"], { databases: [{ name: "appdb", large }] });
                host.writeConfig();
                const before = host.manifests("postgresql", "appdb");
                const r = await host.runScript("postgresql-backup.sh", ["daily"], { env });
                expect(r.code, `large=${large}: ${r.stderr}`).toBe(4);
                expect(readFileSync(causeFile, "utf8"), `large=${large}`).toMatch(/cause="structure check: decryption of the new artifact failed \(status 1\): bad decrypt/);
                // The cause is in place before the status says 0: a scrape in between would fire BackupFailed without it.
                expect(readFileSync(movesLog, "utf8")).toBe("");
                expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(0);
                expect(host.manifests("postgresql", "appdb")).toEqual(before);
            }
            // Without the fault the same backup passes and the cause is cleared.
            const ok = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(ok.code, ok.stderr).toBe(0);
            expect(existsSync(causeFile)).toBe(false);
            expect(host.metric("backup_verification_status", "postgresql", "appdb")).toBe(1);
        } finally {
            host.config.postgresql = saved;
            host.writeConfig();
        }
    });

    it("format auto dumps each database by its size at dump time: parallel from parallelThresholdMiB, custom below, large always parallel", async () => {
        await pg.sql("CREATE DATABASE tinydb");
        const bytes = async (db: string) => Number(await pg.sql(`SELECT pg_database_size('${db}')`));
        const [bulk, tiny] = [await bytes("bulkdb"), await bytes("tinydb")];
        expect(bulk).toBeGreaterThan(tiny + 2 * 1048576);
        const threshold = Math.ceil((tiny + 1048576) / 1048576);
        const saved = host.config.postgresql;
        try {
            host.config.postgresql = postgresqlSection(pg, role, [], {
                databases: [{ name: "bulkdb", large: false }, { name: "tinydb", large: false }, { name: "appdb", large: true }],
                format: "auto",
                parallelThresholdMiB: threshold,
            });
            host.writeConfig();
            const logBefore = host.log("postgresql-backup").length;
            const r = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(r.code, r.stderr).toBe(0);
            const format = (db: string) => (host.readManifest("postgresql", db, host.manifests("postgresql", db).slice(-1)[0]!) as any).content.format;
            expect([format("bulkdb"), format("tinydb"), format("appdb")]).toEqual(["parallel", "custom", "parallel"]);
            const chosen = host.log("postgresql-backup").slice(logBefore).split("\n").filter((l) => l.includes("event=dump_format"));
            const from = threshold * 1048576;
            // The size is the snapshot's (a new database grows a little on its first connections).
            const sizeIn = (target: string, fmt: string) => {
                const line = chosen.find((l) => l.includes(`target="${target}"`)) ?? "";
                expect(line).toMatch(new RegExp(`format="${fmt}" reason="size" database_bytes="\\d+" parallel_from_bytes="${from}"`));
                return Number(/database_bytes="(\d+)"/.exec(line)![1]);
            };
            expect(sizeIn("bulkdb", "parallel")).toBeGreaterThanOrEqual(from);
            expect(sizeIn("tinydb", "custom")).toBeLessThan(from);
            expect(chosen.find((l) => l.includes('target="appdb"'))).toContain('format="parallel" reason="large"');
            // Restores read the format from the manifest, whichever was chosen.
            for (const db of ["bulkdb", "tinydb"]) {
                const manifest = join(host.config.paths.storage, "postgresql", db, host.manifests("postgresql", db).slice(-1)[0]!);
                const restore = await host.runScript("backup-restore.sh", ["--target", `${db}_auto_restored`, manifest]);
                expect(restore.code, restore.stderr).toBe(0);
            }
            expect(await pg.sql("SELECT count(*) FROM blobs", "bulkdb_auto_restored")).toBe("4000");
        } finally {
            host.config.postgresql = saved;
            host.writeConfig();
        }
    });

    it("logging.format json: every line a job writes is one ECS JSON object, hostile values included", async () => {
        const logFile = join(host.config.paths.logs, "postgresql-backup.log");
        const verifyLog = join(host.config.paths.logs, "backup-verify.log");
        const before = { pg: host.log("postgresql-backup").length, verify: host.log("backup-verify").length };
        host.config.logging = { format: "json" };
        host.writeConfig();
        try {
            const ok = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(ok.code, ok.stderr).toBe(0);
            const bad = await host.runScript("backup-verify.sh", [join(host.root, "no-such.manifest.json")]);
            expect(bad.code).toBe(2);
            // A value that is not valid UTF-8 still gives valid JSON.
            const lib = join(host.scriptsDir, "hx-backup-lib.sh");
            const probe = await run("bash", ["-c", 'source "$1"; hx_load_config; hx__open_log; hx_warn probe "odd bytes" "raw=$(printf "a\\xff\\xfeb")" "quote=$QUOTE" "newline=$NEWLINE"', "_", lib], {
                env: { HX_BACKUP_CONFIG: host.configPath, HX_JOB: "probe", QUOTE: '"x" \\ $(id)', NEWLINE: "l1\nl2" },
                user: host.user,
            });
            expect(probe.code, probe.stderr).toBe(0);
            const lines = [
                ...readFileSync(logFile, "utf8").slice(before.pg).split("\n"),
                ...readFileSync(verifyLog, "utf8").slice(before.verify).split("\n"),
                ...ok.stderr.split("\n"),
                ...bad.stderr.split("\n"),
                ...probe.stderr.split("\n"),
            ].filter(Boolean);
            expect(lines.length).toBeGreaterThan(10);
            const events = lines.map((l) => {
                const e = JSON.parse(l);
                expect(e["@timestamp"], l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
                expect(["info", "warning", "error", "audit"], l).toContain(e.log.level);
                expect(e.event.action, l).toMatch(/^[a-z_]+$/);
                expect(["success", "failure", "unknown"], l).toContain(e.event.outcome);
                expect(e.host.name, l).toBe(host.config.host);
                expect(e.service.name, l).toBe("hx-backup");
                expect(typeof e.message, l).toBe("string");
                expect(typeof e.hx.job, l).toBe("string");
                return e;
            });
            expect(events.find((e) => e.hx.database === HOSTILE_DB)?.event.action).toBe("dump_start");
            expect(events.some((e) => e.event.action === "backup_ok" && e.event.outcome === "success")).toBe(true);
            expect(events.find((e) => e.hx.job === "verification" && e.log.level === "error")?.event.outcome).toBe("failure");
            const odd = events.find((e) => e.event.action === "probe")!;
            expect(odd.hx.quote).toBe('"x" \\ $(id)');
            expect(odd.hx.newline).toBe("l1\nl2");
            expect(odd.hx.raw).toMatch(/^a.*b$/);
            expect(existsSync("/tmp/hx-pwned")).toBe(false);
        } finally {
            host.config.logging = { format: "keyvalue" };
            host.writeConfig();
        }
    });

    it("keeps the key out of argv: no key hex in the manifest or log", async () => {
        const key = readFileSync(host.config.paths.keyFile, "utf8").trim();
        const log = host.log("postgresql-backup");
        expect(log.includes(key.slice(0, 64))).toBe(false);
        expect(log.includes(key.slice(64))).toBe(false);
        writeFileSync(join(host.root, "noop"), "");
    });

    it("an index that pg_restore cannot rebuild fails the restore test and the restore, naming the table and pg_restore's error; the rows alone would pass", async () => {
        // The function resolves `lookup` through the search_path, which pg_restore empties: the classic index that dumps but does not restore.
        await pg.sql("CREATE DATABASE brokenidx");
        await pg.sql(`CREATE TABLE lookup (k int); INSERT INTO lookup VALUES (1);
            CREATE FUNCTION plus_lookup(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + (SELECT count(*)::int FROM lookup)';
            CREATE TABLE data (x int PRIMARY KEY); INSERT INTO data SELECT generate_series(1, 100);
            CREATE INDEX data_expr ON data (plus_lookup(x));`, "brokenidx");
        const saved = host.config.postgresql;
        const sourceDir = join(host.config.paths.storage, "postgresql", "brokenidx");
        try {
            host.config.postgresql = postgresqlSection(pg, role, [], { databases: [{ name: "brokenidx", large: false }], format: "custom" });
            host.writeConfig();
            let r = await host.runScript("postgresql-backup.sh", ["daily"]);
            expect(r.code, r.stderr).toBe(0);
            const manifest = join(sourceDir, host.manifests("postgresql", "brokenidx").slice(-1)[0]!);
            expect(((host.readManifest("postgresql", "brokenidx", basename(manifest)) as any).content.postData as unknown[]).length).toBe(2);

            r = await host.runScript("backup-verify.sh", ["--restore-test", manifest]);
            expect(r.code, r.stdout + r.stderr).toBe(4);
            const said = r.stdout + r.stderr + host.log("backup-verify");
            expect(said).toContain("public.data has 1 of its 2");
            expect(said).toMatch(/relation "lookup" does not exist/);
            expect(host.metric("backup_restore_test_status", "postgresql", "brokenidx")).toBe(0);
            expect(await pg.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'hx_restore_test_%'")).toBe("0");

            r = await host.runScript("backup-restore.sh", ["--target", "brokenidx_restored", manifest]);
            expect(r.code).toBe(1);
            expect(r.stderr).toContain("restored database 'brokenidx_restored' holds every row but not every index");
            expect(r.stderr).toContain("public.data has 1 of its 2");
            // The rows are there: what the restore said is all that was missing.
            expect(await pg.sql("SELECT count(*) FROM data", "brokenidx_restored")).toBe("100");
        } finally {
            host.config.postgresql = saved;
            host.writeConfig();
            rmSync(sourceDir, { recursive: true, force: true });
        }
    });
});
