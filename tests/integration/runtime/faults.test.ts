/**
 * Fault injection against a real PostgreSQL: for each fault, the run fails
 * with the cause in the log and metrics, nothing is marked successful, no
 * earlier backup is lost, and the next run succeeds once the fault is gone.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { descendants, isRoot, missingTools, removeDir, run, tempDir, waitFor } from "../../support/env";
import { giveToUser, makeHost, postgresqlSection, type TestHost } from "../../support/host";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../../support/postgres";

const missing = missingTools([...PG_TOOLS, "zstd", "jq", "openssl", "flock"]);

/**
 * Hold ACCESS EXCLUSIVE on the partitioned parent `lockme` (ONLY the parent):
 * the row counts (taken on partitions) pass, but pg_dump blocks at its table
 * locks, so a run can be caught "mid-dump" deterministically.
 */
async function holdDumpLock(pg: PostgresInstance): Promise<() => Promise<void>> {
    const child = spawn("psql", ["-X", "-q", "-h", pg.socketDir, "-p", String(pg.port), "-U", "postgres", "-d", "lockdb", "-v", "ON_ERROR_STOP=1"], {
        stdio: ["pipe", "pipe", "inherit"],
        ...(isRoot ? { uid: pg.owner.uid, gid: pg.owner.gid } : {}),
    });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stdin!.write("BEGIN; LOCK TABLE ONLY lockme IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n");
    await waitFor(() => out.includes("locked"), 120_000, "psql to print 'locked' (the dump lock held)");
    return async () => {
        const gone = new Promise<void>((r) => child.on("exit", () => r()));
        child.stdin!.end("ROLLBACK;\n\\q\n");
        await gone;
    };
}

describe.skipIf(missing.length > 0)("fault handling", { timeout: 240_000 }, () => {
    let pg: PostgresInstance;
    let host: TestHost;
    let role: string;
    const pgConfig = (databases: string[], extra: Record<string, unknown> = {}) => {
        host.config.postgresql = postgresqlSection(pg, role, databases, extra);
        host.writeConfig();
    };
    const backup = () => host.runScript("postgresql-backup.sh", ["daily"]);
    const committed = (t = "appdb") => host.manifests("postgresql", t);
    const partials = (t = "appdb") => {
        const d = join(host.config.paths.storage, "postgresql", t);
        return existsSync(d) ? readdirSync(d).filter((f) => f.includes("partial")) : [];
    };
    /** Every temp path anywhere a job writes: storage (root and source folders) and the textfile directory. */
    const anyPartials = () =>
        [host.config.paths.storage, host.config.paths.textfile]
            .filter((d) => existsSync(d))
            .flatMap((d) => (readdirSync(d, { recursive: true }) as string[]).filter((f) => f.includes("partial")).map((f) => join(d, f)));
    /** SIGKILL a run and every process under it, as systemd does to a service's cgroup. */
    const killTree = async (job: ReturnType<TestHost["startScript"]>) => {
        const tree = descendants(job.pid);
        job.kill("SIGKILL");
        for (const p of tree) {
            try {
                process.kill(p, "SIGKILL");
            } catch {
                /* already gone */
            }
        }
        await job.exited;
        await waitFor(() => tree.every((p) => !existsSync(`/proc/${p}`)), 120_000, "the killed run's processes to exit");
    };

    beforeAll(async () => {
        pg = await startPostgres();
        host = makeHost();
        role = host.user?.name ?? process.env.USER ?? "root";
        await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB PASSWORD 'right-password'; GRANT pg_read_all_data TO "${role}"; CREATE DATABASE appdb; CREATE DATABASE bigdb; CREATE DATABASE lockdb;`);
        await pg.sql(`CREATE TABLE lockme (id int, v text) PARTITION BY RANGE (id); CREATE TABLE lockme_p1 PARTITION OF lockme FOR VALUES FROM (0) TO (1000000);
            INSERT INTO lockme SELECT g, md5(g::text) FROM generate_series(1, 100) g;`, "lockdb");
        await pg.sql(`CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;`, "appdb");
        await pg.sql(`CREATE TABLE big (id int, v text); INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 60000) g;`, "bigdb");
        pgConfig(["appdb"]);
        const r = await backup();
        expect(r.code, r.stderr).toBe(0);
    });

    afterAll(async () => {
        await pg?.stop();
        host?.cleanup();
    });

    it("1a. database down: failed status with the cause; next run succeeds", async () => {
        const before = committed();
        await pg.halt();
        const r = await backup();
        expect(r.code).toBe(1);
        expect(host.log("postgresql-backup")).toMatch(/level=error .*cannot connect to PostgreSQL/);
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(0);
        expect(committed()).toEqual(before);
        await pg.start();
        const ok = await backup();
        expect(ok.code, ok.stderr).toBe(0);
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(1);
    });

    it("1b. wrong password (pgpass over TCP): failed status with the cause; fixed, succeeds", async () => {
        const pgpass = join(host.root, "etc", "pgpass");
        writeFileSync(pgpass, `127.0.0.1:${pg.port}:*:${role}:wrong-password\n`, { mode: 0o600 });
        giveToUser(host, pgpass);
        pgConfig(["appdb"], { host: "127.0.0.1", auth: "pgpass", pgpassFile: pgpass });
        const r = await backup();
        expect(r.code).toBe(1);
        expect(host.log("postgresql-backup")).toMatch(/cannot connect to PostgreSQL .*password authentication failed/);
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(0);
        writeFileSync(pgpass, `127.0.0.1:${pg.port}:*:${role}:right-password\n`, { mode: 0o600 });
        const ok = await backup();
        expect(ok.code, ok.stderr).toBe(0);
        expect(host.metric("backup_last_run_status", "postgresql", "appdb")).toBe(1);
        pgConfig(["appdb"]);
    });

    it("2. the source dies mid-dump: no artifact, no partial; next run succeeds", async () => {
        pgConfig(["lockdb"]);
        const release = await holdDumpLock(pg);
        const job = host.startScript("postgresql-backup.sh", ["daily"]);
        await waitFor(async () => (await pg.sql(`SELECT count(*) FROM pg_stat_activity WHERE datname = 'lockdb' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'`)) !== "0", 120_000, "pg_dump to block");
        // mid-run, no process has key material on its command line
        const key = readFileSync(host.config.paths.keyFile, "utf8").trim();
        for (const p of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
            let cmd = "";
            try {
                cmd = readFileSync(`/proc/${p}/cmdline`, "utf8");
            } catch {
                continue;
            }
            expect(cmd.includes(key.slice(0, 64)) || cmd.includes(key.slice(64)) || cmd.includes(key.slice(0, 32)), `pid ${p}: ${cmd}`).toBe(false);
        }
        await pg.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'lockdb' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'`);
        const r = await job.done;
        await release();
        expect(r.code).toBe(1);
        expect(host.log("postgresql-backup")).toMatch(/level=error .*pipeline stage 'source' failed.*target="lockdb"/);
        expect(host.metric("backup_last_run_status", "postgresql", "lockdb")).toBe(0);
        expect(committed("lockdb")).toEqual([]);
        expect(partials("lockdb")).toEqual([]);
        const ok = await backup();
        expect(ok.code, ok.stderr).toBe(0);
        expect(committed("lockdb")).toHaveLength(1);
        expect(host.metric("backup_last_run_status", "postgresql", "lockdb")).toBe(1);
    });

    it("2b. parallel format: one part's backend dies: no artifact, no part left behind; next run succeeds", async () => {
        pgConfig(["lockdb"], { format: "parallel" });
        const before = committed("lockdb");
        const release = await holdDumpLock(pg);
        const job = host.startScript("postgresql-backup.sh", ["daily"]);
        const blocked = `SELECT count(*) FROM pg_stat_activity WHERE datname = 'lockdb' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'`;
        await waitFor(async () => (await pg.sql(blocked)) !== "0", 120_000, "a part's pg_dump to block");
        await pg.sql(blocked.replace("count(*)", "pg_terminate_backend(pid)"));
        await release();
        const r = await job.done;
        expect(r.code).toBe(1);
        expect(host.log("postgresql-backup")).toMatch(/level=error .*parallel dump failed: schema\.dump\.zst\.enc: pipeline stage 'source' failed.*target="lockdb"/);
        expect(host.metric("backup_last_run_status", "postgresql", "lockdb")).toBe(0);
        expect(committed("lockdb")).toEqual(before);
        expect(partials("lockdb")).toEqual([]);
        const ok = await backup();
        expect(ok.code, ok.stderr).toBe(0);
        expect(committed("lockdb")).toHaveLength(1);
        const m = host.readManifest("postgresql", "lockdb", committed("lockdb")[0]!) as { content: { format: string } };
        expect(m.content.format).toBe("parallel");
        pgConfig(["lockdb"]);
    });

    it("5+6. a second concurrent run exits 3; kill -9 mid-run, then the rerun succeeds", async () => {
        pgConfig(["lockdb"]);
        const before = committed("lockdb");
        const release = await holdDumpLock(pg);
        const job = host.startScript("postgresql-backup.sh", ["daily"]);
        await waitFor(async () => (await pg.sql(`SELECT count(*) FROM pg_stat_activity WHERE datname = 'lockdb' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'`)) !== "0", 120_000, "pg_dump to block");
        const second = await backup();
        expect(second.code).toBe(3);
        expect(second.stderr).toMatch(/another run of postgresql-backup is in progress/);
        const tree = descendants(job.pid);
        job.kill("SIGKILL");
        await job.exited;
        const attempt = host.metric("backup_last_attempt_timestamp", "postgresql", "lockdb")!;
        expect(attempt).toBeGreaterThanOrEqual(host.metric("backup_last_success_timestamp", "postgresql", "lockdb")!);
        await release();
        const rerun = await backup();
        for (const p of tree) {
            try {
                process.kill(p, "SIGKILL");
            } catch {
                /* already gone */
            }
        }
        expect(rerun.code, rerun.stderr).toBe(0);
        expect(host.log("postgresql-backup")).toMatch(/event=stale_lock .*breaking stale lock left by dead pid/);
        expect(committed("lockdb").length).toBeGreaterThanOrEqual(1);
        for (const m of before) expect(existsSync(join(host.config.paths.storage, "postgresql", "lockdb", m)) || committed("lockdb").length > 0).toBe(true);
        // the killed run's temp paths are removed by the next run, at the storage root too
        expect(partials("lockdb")).toEqual([]);
        expect(anyPartials()).toEqual([]);
        pgConfig(["appdb"]);
    });

    it("4. kill -9 of daily and of test mid-dump: the next normal run leaves nothing of theirs behind", async () => {
        pgConfig(["lockdb"]);
        const blockedDumps = `FROM pg_stat_activity WHERE datname = 'lockdb' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'`;
        const waiting = () => pg.sql(`SELECT count(*) ${blockedDumps}`);
        const killWhenBlocked = async (job: ReturnType<TestHost["startScript"]>) => {
            await waitFor(async () => (await waiting()) !== "0", 120_000, "pg_dump to block");
            await killTree(job);
            // A backend waiting for a lock notices its client is gone only once it gets the lock.
            await pg.sql(`SELECT pg_terminate_backend(pid) ${blockedDumps}`);
            await waitFor(async () => (await waiting()) === "0", 120_000, "the killed pg_dump's backend to go");
        };
        const release = await holdDumpLock(pg);
        await killWhenBlocked(host.startScript("postgresql-backup.sh", ["daily"]));
        await killWhenBlocked(host.startScript("postgresql-backup.sh", ["test"]));
        await release();
        // What the killed runs left: the run folder, the self-test's whole throwaway storage, dump temps.
        const left = anyPartials();
        expect(left.some((p) => /\/\.run\.\d+\.partial$/.test(p)), left.join("\n")).toBe(true);
        expect(left.some((p) => /\/\.selftest\.\d+\.partial$/.test(p)), left.join("\n")).toBe(true);
        const rerun = await backup();
        expect(rerun.code, rerun.stderr).toBe(0);
        expect(anyPartials()).toEqual([]);
        expect(host.log("postgresql-backup")).toMatch(/event=stale_temp .*selftest/);
        pgConfig(["appdb"]);
    });

    it.skipIf(!isRoot)("3. disk full (small tmpfs): fails with ENOSPC cause, earlier backup intact; with space, succeeds", async () => {
        const mnt = tempDir("hx-full-");
        const uid = host.user?.uid ?? 0;
        const gid = host.user?.gid ?? 0;
        const m = await run("mount", ["-t", "tmpfs", "-o", `size=1m,uid=${uid},gid=${gid},mode=0700`, "tmpfs", mnt]);
        expect(m.code, m.stderr).toBe(0);
        const saved = { ...host.config.paths };
        try {
            host.config.paths.storage = mnt;
            host.config.paths.locks = join(mnt, ".locks");
            pgConfig(["appdb"]);
            const first = await backup();
            expect(first.code, first.stderr).toBe(0);
            const before = committed();
            expect(before).toHaveLength(1);
            pgConfig(["appdb", "bigdb"]);
            const r = await backup();
            expect(r.code).toBe(1);
            expect(host.log("postgresql-backup")).toMatch(/level=error .*target="bigdb"/);
            expect(host.log("postgresql-backup")).toMatch(/No space left on device|failed with status/);
            expect(host.metric("backup_last_run_status", "postgresql", "bigdb")).toBe(0);
            expect(committed("bigdb")).toEqual([]);
            expect(partials("bigdb")).toEqual([]);
            expect(committed().length).toBeGreaterThanOrEqual(1);
            const v = await host.runScript("backup-verify.sh", ["--all"]);
            expect(v.code, v.stdout).toBe(0);
            const g = await run("mount", ["-o", "remount,size=64m", mnt]);
            expect(g.code).toBe(0);
            const ok = await backup();
            expect(ok.code, ok.stderr).toBe(0);
            expect(committed("bigdb")).toHaveLength(1);
        } finally {
            await run("umount", [mnt]);
            removeDir(mnt);
            host.config.paths = saved;
            pgConfig(["appdb"]);
        }
    });

    it("9. corrupt config: exit 2, failure logged and in metrics; fixed, succeeds", async () => {
        const logs = tempDir("hx-fallback-log-");
        const textfile = tempDir("hx-fallback-tf-");
        giveToUser(host, logs);
        giveToUser(host, textfile);
        host.writeConfig('{"format": 1, "paths": {');
        const env = { HX_BACKUP_FALLBACK_LOGS: logs, HX_BACKUP_FALLBACK_TEXTFILE: textfile };
        const r = await host.runScript("postgresql-backup.sh", ["daily"], { env });
        expect(r.code).toBe(2);
        expect(readFileSync(join(logs, "postgresql-backup.log"), "utf8")).toMatch(/level=error .*config file is corrupt/);
        expect(readFileSync(join(textfile, "hx_backup-postgresql-_config.prom"), "utf8")).toMatch(/backup_last_run_status\{type="postgresql",target="_config"\} 0/);
        host.writeConfig();
        removeDir(logs);
        removeDir(textfile);
        const ok = await backup();
        expect(ok.code, ok.stderr).toBe(0);
    });
});
