/**
 * PostgreSQL benchmarks: plain `pg_dump -Fc` vs postgresql-backup.sh's full
 * pipeline in custom and in parallel format (and `pg_dump -Fd -j 2`), plain
 * `pg_restore -j 2` vs backup-restore.sh of both artifacts, and the
 * pipeline's peak RSS at two database sizes.
 */
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { chownR, run, type RunResult } from "../tests/support/env";
import { makeHost, postgresqlSection, type TestHost } from "../tests/support/host";
import { startPostgres, type PostgresInstance } from "../tests/support/postgres";
import { fmtMiB, log, median, order, round, timed, treeBytes } from "./common";
import { TreeSampler, type TreeSample } from "./memory";

export const BIG_DB = "benchdb";
export const SMALL_DB = "bench10";

export interface PgSetup {
    pg: PostgresInstance;
    host: TestHost;
    role: string;
    plainDir: string;
    sizes: Record<string, { scale: number; docsRows: number; bytesOnDisk: number }>;
}

const ok = (what: string, r: RunResult): RunResult => {
    if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    return r;
};

/** Realistic, not trivially compressible rows: words, numbers, hex text and random bytea. */
const docsSql = (rows: number) => `
CREATE TABLE docs (id bigint PRIMARY KEY, created timestamptz NOT NULL, kind text NOT NULL, title text, body text, payload bytea);
INSERT INTO docs
SELECT g,
       timestamptz '2026-01-01' + (g * interval '7 seconds'),
       (ARRAY['invoice','order','refund','shipment','ticket','note'])[1 + g % 6],
       (ARRAY['Invoice','Order','Refund','Shipment','Ticket','Note'])[1 + g % 6] || ' #' || g || ' for customer ' || (random() * 100000)::int,
       'customer ' || (random() * 100000)::int || ' wrote on ' || to_char(timestamptz '2026-01-01' + (g * interval '7 seconds'), 'YYYY-MM-DD HH24:MI') ||
         ': ' || (ARRAY['please check','thanks for','where is','cancel','update on','refund for'])[1 + (random() * 5)::int] || ' item ' ||
         md5(random()::text) || ' ref ' || substr(md5(random()::text), 1, 12) || ' status=' || (ARRAY['open','closed','pending'])[1 + (random() * 2)::int],
       decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex')
FROM generate_series(1, ${rows}) g;
CREATE INDEX docs_created ON docs (created);
`;

export async function generate(pg: PostgresInstance, db: string, scale: number): Promise<{ scale: number; docsRows: number; bytesOnDisk: number }> {
    const docsRows = 40_000 * scale;
    await pg.sql(`CREATE DATABASE ${db}`);
    const t = await timed(async () => {
        ok("pgbench -i", await run("pgbench", ["-i", "-q", "-s", String(scale), "-h", pg.socketDir, "-p", String(pg.port), "-U", "postgres", db], { user: pg.owner, timeoutMs: 1_800_000 }));
        ok("docs", await run("psql", ["-X", "-q", "-h", pg.socketDir, "-p", String(pg.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-f", "-"], { user: pg.owner, input: docsSql(docsRows), timeoutMs: 1_800_000 }));
        await pg.sql("VACUUM ANALYZE; CHECKPOINT;", db);
    });
    const bytesOnDisk = Number(await pg.sql(`SELECT pg_database_size('${db}')`));
    log(`  generated ${db}: pgbench scale ${scale} + ${docsRows} docs rows, ${fmtMiB(bytesOnDisk)} on disk, in ${t.seconds.toFixed(0)} s`);
    return { scale, docsRows, bytesOnDisk };
}

export async function setupPostgres(bigScale: number, smallScale: number): Promise<PgSetup> {
    const pg = await startPostgres({
        settings: {
            shared_buffers: "'512MB'",
            maintenance_work_mem: "'256MB'",
            max_wal_size: "'8GB'",
            checkpoint_timeout: "'30min'",
            autovacuum: "off",
        },
    });
    const host = makeHost();
    const role = host.user?.name ?? process.env.USER ?? "root";
    await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB; GRANT pg_read_all_data TO "${role}";`);
    const sizes: PgSetup["sizes"] = {};
    sizes[BIG_DB] = await generate(pg, BIG_DB, bigScale);
    sizes[SMALL_DB] = await generate(pg, SMALL_DB, smallScale);
    const plainDir = join(host.root, "plain");
    mkdirSync(plainDir, { recursive: true });
    if (host.user) chownR(plainDir, host.user);
    host.config.postgresql = postgresqlSection(pg, role, [BIG_DB]);
    host.writeConfig();
    return { pg, host, role, plainDir, sizes };
}

/** Run a client tool as the backup role's OS user over the socket. */
function client(s: PgSetup, tool: string, args: string[]): Promise<RunResult> {
    return run(tool, args, {
        user: s.host.user,
        env: { PGHOST: s.pg.socketDir, PGPORT: String(s.pg.port), PGUSER: s.role },
        timeoutMs: 3_600_000,
    });
}

function clearPgStorage(s: PgSetup): void {
    rmSync(join(s.host.config.paths.storage, "postgresql"), { recursive: true, force: true });
}

function latestManifest(s: PgSetup, db: string): { path: string; m: Record<string, any> } {
    const names = s.host.manifests("postgresql", db);
    if (names.length === 0) throw new Error(`no manifest for ${db}`);
    const name = names[names.length - 1]!;
    return { path: join(s.host.config.paths.storage, "postgresql", db, name), m: s.host.readManifest("postgresql", db, name) };
}

/** The one database of the next pipeline run, in custom (format custom) or parallel (`large: true`) format. */
export function setFormat(s: PgSetup, db: string, large: boolean): void {
    s.host.config.postgresql!.databases = [{ name: db, large }];
    s.host.config.postgresql!.format = "custom";
    s.host.writeConfig();
}

/** Copy the newest manifest and its artifact of `db` out of storage, so a later run's retention cannot remove them. */
export function keepLatest(s: PgSetup, name: string, db = BIG_DB): string {
    const { path: manifest, m } = latestManifest(s, db);
    const dir = join(s.plainDir, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    copyFileSync(manifest, join(dir, "artifact.manifest.json"));
    copyFileSync(join(s.host.config.paths.storage, "postgresql", db, m.artifact), join(dir, m.artifact));
    if (s.host.user) chownR(dir, s.host.user);
    return join(dir, "artifact.manifest.json");
}

export async function runPipeline(s: PgSetup, sample = false): Promise<{ seconds: number; stored: number; plain: number; sample?: TreeSample; serverCpu?: Record<string, number> }> {
    clearPgStorage(s);
    const t0 = process.hrtime.bigint();
    const child = s.host.startScript("postgresql-backup.sh", ["daily"], { timeoutMs: 3_600_000 });
    const sampler = sample ? new TreeSampler(child.pid).start() : undefined;
    const server = sample ? new TreeSampler(s.pg.pid()!, 250).start() : undefined;
    const r = await child.done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const smp = sampler?.stop();
    const srv = server?.stop();
    ok("postgresql-backup.sh", r);
    const { m } = latestManifest(s, s.host.config.postgresql!.databases[0]!.name);
    return { seconds, stored: m.sizes.stored, plain: m.sizes.plain, ...(smp ? { sample: smp } : {}), ...(srv ? { serverCpu: srv.cpuByComm } : {}) };
}

export interface PgBackupResult {
    database: string;
    bytesOnDisk: number;
    rounds: { plainFcSeconds: number; pipelineSeconds: number; parallelSeconds: number; dirJ2Seconds: number; ratio: number; parallelRatio: number; dirRatio: number }[];
    ratio: number;
    parallelRatio: number;
    dirRatio: number;
    plainFcBytes: number;
    dirJ2Bytes: number;
    artifactBytes: number;
    parallelArtifactBytes: number;
    pipelinePlainBytes: number;
    artifactVsFc: number;
}

export async function benchPgBackup(s: PgSetup, rounds: number): Promise<PgBackupResult> {
    const fcFile = join(s.plainDir, "bench.dump");
    const fdDir = join(s.plainDir, "bench.dir");
    const out: PgBackupResult["rounds"] = [];
    let artifactBytes = 0;
    let parallelArtifactBytes = 0;
    let pipelinePlainBytes = 0;
    for (let i = 0; i < rounds; i++) {
        const t: Record<string, number> = {};
        for (const item of order(i, ["fc", "hx", "fd", "par"] as const)) {
            await settle(s);
            if (item === "fc") {
                rmSync(fcFile, { force: true });
                t.fc = (await timed(async () => ok("pg_dump -Fc", await client(s, "pg_dump", ["-Fc", "-f", fcFile, BIG_DB])))).seconds;
            } else if (item === "fd") {
                rmSync(fdDir, { recursive: true, force: true });
                t.fd = (await timed(async () => ok("pg_dump -Fd -j 2", await client(s, "pg_dump", ["-Fd", "-j", "2", "-f", fdDir, BIG_DB])))).seconds;
            } else if (item === "par") {
                setFormat(s, BIG_DB, true);
                const r = await runPipeline(s);
                t.par = r.seconds;
                parallelArtifactBytes = r.stored;
                keepLatest(s, "keep-parallel");
            } else {
                setFormat(s, BIG_DB, false);
                const r = await runPipeline(s);
                t.hx = r.seconds;
                artifactBytes = r.stored;
                pipelinePlainBytes = r.plain;
                keepLatest(s, "keep-custom");
            }
        }
        setFormat(s, BIG_DB, false);
        const row = {
            plainFcSeconds: round(t.fc!), pipelineSeconds: round(t.hx!), parallelSeconds: round(t.par!), dirJ2Seconds: round(t.fd!),
            ratio: round(t.hx! / t.fc!, 3), parallelRatio: round(t.par! / t.fc!, 3), dirRatio: round(t.fd! / t.fc!, 3),
        };
        out.push(row);
        log(`  backup round ${i + 1}: pg_dump -Fc ${row.plainFcSeconds} s, pipeline ${row.pipelineSeconds} s (ratio ${row.ratio}), parallel format ${row.parallelSeconds} s (ratio ${row.parallelRatio}), -Fd -j 2 ${row.dirJ2Seconds} s (ratio ${row.dirRatio})`);
    }
    const plainFcBytes = statSync(fcFile).size;
    return {
        database: BIG_DB,
        bytesOnDisk: s.sizes[BIG_DB]!.bytesOnDisk,
        rounds: out,
        ratio: round(median(out.map((r) => r.ratio)), 3),
        parallelRatio: round(median(out.map((r) => r.parallelRatio)), 3),
        dirRatio: round(median(out.map((r) => r.dirRatio)), 3),
        plainFcBytes,
        dirJ2Bytes: treeBytes(fdDir),
        artifactBytes,
        parallelArtifactBytes,
        pipelinePlainBytes,
        artifactVsFc: round(artifactBytes / plainFcBytes, 3),
    };
}

export interface PgRestoreResult {
    rounds: { plainSeconds: number; pipelineSeconds: number; parallelSeconds: number; ratio: number; parallelRatio: number }[];
    ratio: number;
    parallelRatio: number;
}

export async function dropDb(s: PgSetup, db: string): Promise<void> {
    await s.pg.sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
}

/** Flush the previous run's WAL and dirty pages, so no timed run pays for the one before it. */
export async function settle(s: PgSetup): Promise<void> {
    await s.pg.sql("CHECKPOINT");
}

/** Restore the last plain -Fc dump and the last artifacts of both formats (from benchPgBackup). */
export async function benchPgRestore(s: PgSetup, rounds: number): Promise<PgRestoreResult> {
    const fcFile = join(s.plainDir, "bench.dump");
    const manifests = { hx: join(s.plainDir, "keep-custom", "artifact.manifest.json"), par: join(s.plainDir, "keep-parallel", "artifact.manifest.json") };
    if (!existsSync(fcFile) || !existsSync(manifests.hx) || !existsSync(manifests.par)) throw new Error("run benchPgBackup first");
    const out: PgRestoreResult["rounds"] = [];
    for (let i = 0; i < rounds; i++) {
        const t: Record<string, number> = {};
        for (const item of order(i, ["plain", "hx", "par"] as const)) {
            if (item === "plain") {
                await dropDb(s, "restore_plain");
                await settle(s);
                t.plain = (
                    await timed(async () => {
                        ok("createdb", await client(s, "createdb", ["restore_plain"]));
                        ok("pg_restore -j 2", await client(s, "pg_restore", ["-j", "2", "--no-owner", "--no-privileges", "-d", "restore_plain", fcFile]));
                    })
                ).seconds;
                await dropDb(s, "restore_plain");
            } else {
                await dropDb(s, "restore_hx");
                await settle(s);
                t[item] = (await timed(async () => ok("backup-restore.sh", await s.host.runScript("backup-restore.sh", ["--target", "restore_hx", manifests[item]], { timeoutMs: 3_600_000 })))).seconds;
                await dropDb(s, "restore_hx");
            }
        }
        const row = { plainSeconds: round(t.plain!), pipelineSeconds: round(t.hx!), parallelSeconds: round(t.par!), ratio: round(t.hx! / t.plain!, 3), parallelRatio: round(t.par! / t.plain!, 3) };
        out.push(row);
        log(`  restore round ${i + 1}: pg_restore -j 2 ${row.plainSeconds} s, backup-restore.sh ${row.pipelineSeconds} s (ratio ${row.ratio}), parallel format ${row.parallelSeconds} s (ratio ${row.parallelRatio})`);
    }
    return { rounds: out, ratio: round(median(out.map((r) => r.ratio)), 3), parallelRatio: round(median(out.map((r) => r.parallelRatio)), 3) };
}

export interface PgMemoryResult {
    sizes: { database: string; scale: number; bytesOnDisk: number; seconds: number; peakRssBytes: number; peakProcesses: number; peakTop: TreeSample["peakTop"]; cpuByComm: Record<string, number>; serverCpu: Record<string, number> }[];
    growth: number;
}

/** One sampled pipeline run per database size: peak RSS of the script's process tree, and a CPU profile. */
export async function benchPgMemory(s: PgSetup): Promise<PgMemoryResult> {
    const saved = s.host.config.postgresql!.databases;
    const sizes: PgMemoryResult["sizes"] = [];
    try {
        for (const db of [SMALL_DB, BIG_DB]) {
            setFormat(s, db, false);
            const r = await runPipeline(s, true);
            const smp = r.sample!;
            sizes.push({ database: db, scale: s.sizes[db]!.scale, bytesOnDisk: s.sizes[db]!.bytesOnDisk, seconds: round(r.seconds), peakRssBytes: smp.peakRssBytes, peakProcesses: smp.peakProcesses, peakTop: smp.peakTop, cpuByComm: smp.cpuByComm, serverCpu: r.serverCpu ?? {} });
            log(`  memory ${db}: peak RSS ${fmtMiB(smp.peakRssBytes)} over ${smp.peakProcesses} processes (${r.seconds.toFixed(1)} s); CPU s by process: ${JSON.stringify(smp.cpuByComm)}; server: ${JSON.stringify(r.serverCpu)}`);
        }
    } finally {
        s.host.config.postgresql!.databases = saved;
        s.host.config.postgresql!.format = "auto";
        s.host.writeConfig();
    }
    return { sizes, growth: round(sizes[1]!.peakRssBytes / sizes[0]!.peakRssBytes, 3) };
}

/** A sampled restore: CPU by process of the script's tree and of the server. */
export async function profilePgRestore(s: PgSetup): Promise<{ seconds: number; cpuByComm: Record<string, number>; serverCpu: Record<string, number>; peakRssBytes: number }> {
    const manifest = join(s.plainDir, "keep-custom", "artifact.manifest.json");
    await dropDb(s, "restore_hx");
    const t0 = process.hrtime.bigint();
    const child = s.host.startScript("backup-restore.sh", ["--target", "restore_hx", manifest], { timeoutMs: 3_600_000 });
    const sampler = new TreeSampler(child.pid).start();
    const server = new TreeSampler(s.pg.pid()!, 250).start();
    const r = await child.done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const smp = sampler.stop();
    const srv = server.stop();
    ok("backup-restore.sh", r);
    await dropDb(s, "restore_hx");
    log(`  restore profile: ${seconds.toFixed(1)} s; CPU s by process: ${JSON.stringify(smp.cpuByComm)}; server: ${JSON.stringify(srv.cpuByComm)}`);
    return { seconds: round(seconds), cpuByComm: smp.cpuByComm, serverCpu: srv.cpuByComm, peakRssBytes: smp.peakRssBytes };
}

export async function teardownPostgres(s: PgSetup | undefined): Promise<void> {
    await s?.pg.stop();
    s?.host.cleanup();
}

