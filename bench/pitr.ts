/**
 * PITR benchmarks on the same database as the dump benchmarks: a pgBackRest
 * full backup (the config hx-backup renders, a local encrypted repository)
 * vs postgresql-backup.sh's dump pipeline, time and size; a differential
 * after 1 % of the rows change; and the RTO of both restore paths: a PITR
 * restore to the latest point, started until it accepts writes, vs
 * backup-restore.sh of the newest dump into a new database.
 */
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadStackConfig } from "../config/load";
import { archiveCommand, renderPgbackrestConf, renderPgbackrestSecrets, repositoryPassphrase } from "../render/pgbackrest";
import { chownR, freePort, run, waitFor, type RunResult } from "../tests/support/env";
import { PG_BIN } from "../tests/support/postgres";
import { log, median, order, round, timed, treeBytes } from "./common";
import { BIG_DB, keepLatest, runPipeline, setFormat, type PgSetup } from "./postgres";

const KEY_ID = "bench-v1";
const KEY = "5e".repeat(64);

export interface PitrBenchResult {
    rounds: { fullSeconds: number; dumpSeconds: number; fullBytes: number; dumpBytes: number; pitrRestoreSeconds: number; dumpRestoreSeconds: number }[];
    fullVsDumpSeconds: number;
    fullVsDumpBytes: number;
    differential: { changedRows: number; seconds: number; bytes: number };
    rtoPitrVsDump: number;
}

const ok = (what: string, r: RunResult): RunResult => {
    if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${(r.stderr + r.stdout).slice(-2000)}`);
    return r;
};

interface Repo {
    env: Record<string, string>;
    stanza: string;
    dir: string;
}

/** The rendered pgBackRest config, pointed at a local repository in the bench's folder; archiving on (one restart). */
async function setupRepo(s: PgSetup): Promise<Repo> {
    const dir = join(s.plainDir, "pitr");
    for (const d of ["conf/conf.d", "log", "lock", "spool", "storage"]) mkdirSync(join(dir, d), { recursive: true });
    const env = {
        PGBACKREST_CONFIG: join(dir, "conf", "pgbackrest.conf"),
        PGBACKREST_CONFIG_INCLUDE_PATH: join(dir, "conf", "conf.d"),
        PGBACKREST_LOG_PATH: join(dir, "log"),
        PGBACKREST_LOCK_PATH: join(dir, "lock"),
        PGBACKREST_SPOOL_PATH: join(dir, "spool"),
    };
    const config = loadStackConfig("bench", {
        hosts: [{ name: "bench", address: "127.0.0.1", roles: ["postgresql"], remoteSync: false, postgresql: { host: s.pg.socketDir, port: s.pg.port, dataDir: join(s.pg.dir, "data"), pitr: { enabled: true } } }],
        storageDir: join(dir, "storage"),
    });
    const conf = renderPgbackrestConf(config, config.hosts[0]!, KEY_ID);
    writeFileSync(env.PGBACKREST_CONFIG, conf.main);
    writeFileSync(join(env.PGBACKREST_CONFIG_INCLUDE_PATH, "hx-backup-secrets.conf"), renderPgbackrestSecrets(repositoryPassphrase(KEY, KEY_ID)), { mode: 0o600 });
    // The server's archive_command needs the bench's config paths in front (pgbackrest check wants its name in the command).
    const wrapper = join(dir, "pgbackrest-archive-push.sh");
    writeFileSync(wrapper, `exec env ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ")} ${archiveCommand(conf.stanza).replace("%p", '"$1"')}\n`);
    chownR(dir, s.pg.owner);
    await s.pg.sql(`ALTER SYSTEM SET wal_level = replica; ALTER SYSTEM SET archive_mode = on; ALTER SYSTEM SET archive_command = 'sh ${wrapper} %p'; ALTER SYSTEM SET archive_timeout = 60;`);
    await s.pg.halt();
    await s.pg.start();
    const repo = { env, stanza: conf.stanza, dir };
    ok("stanza-create", await pgbackrest(s, repo, ["stanza-create"]));
    ok("check", await pgbackrest(s, repo, ["check"]));
    return repo;
}

const pgbackrest = (s: PgSetup, repo: Repo, args: string[]) =>
    run("pgbackrest", [`--stanza=${repo.stanza}`, ...args], { user: s.pg.owner, env: repo.env, timeoutMs: 3_600_000 });

async function newestBackup(s: PgSetup, repo: Repo): Promise<{ label: string; repoBytes: number }> {
    const info = JSON.parse(ok("info", await pgbackrest(s, repo, ["--output=json", "info"])).stdout)[0];
    const b = info.backup[info.backup.length - 1];
    return { label: b.label, repoBytes: b.info.repository.delta };
}

/** Restore the latest point into a new directory, start it and wait until it accepts writes; the seconds of all that. */
async function pitrRestore(s: PgSetup, repo: Repo, name: string): Promise<number> {
    const data = join(repo.dir, name);
    rmSync(data, { recursive: true, force: true });
    const port = await freePort();
    const sock = join(repo.dir, `sock-${port}`);
    mkdirSync(sock, { recursive: true });
    chownR(sock, s.pg.owner);
    const t = await timed(async () => {
        ok("restore", await pgbackrest(s, repo, [`--pg1-path=${data}`, "--archive-mode=off", "restore"]));
        const child = spawn(`${PG_BIN}/postgres`, ["-D", data, "-c", `port=${port}`, "-c", `unix_socket_directories=${sock}`, "-c", "listen_addresses="], {
            stdio: "ignore", uid: s.pg.owner.uid, gid: s.pg.owner.gid, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...repo.env },
        });
        const q = () => run("psql", ["-X", "-h", sock, "-p", String(port), "-U", "postgres", "-d", BIG_DB, "-Atc", "SELECT NOT pg_is_in_recovery() AND count(*) > 0 FROM pgbench_branches"], { user: s.pg.owner });
        try {
            await waitFor(async () => (await q()).stdout.trim() === "t", 3_600_000, "the restored cluster to accept writes");
        } finally {
            const gone = new Promise<void>((r) => child.on("exit", () => r()));
            child.kill("SIGINT");
            await gone;
        }
    });
    rmSync(data, { recursive: true, force: true });
    return t.seconds;
}

export async function benchPitr(s: PgSetup, rounds: number): Promise<PitrBenchResult> {
    const repo = await setupRepo(s);
    // Against the custom-format dump, as in the earlier runs (auto would pick parallel at this size).
    setFormat(s, BIG_DB, false);
    const out: PitrBenchResult["rounds"] = [];
    for (let i = 0; i < rounds; i++) {
        const t: Record<string, number> = {};
        let fullBytes = 0;
        let dumpBytes = 0;
        for (const item of order(i, ["full", "dump"] as const)) {
            await s.pg.sql("CHECKPOINT");
            if (item === "full") {
                t.full = (await timed(async () => ok("pgbackrest full", await pgbackrest(s, repo, ["--type=full", "backup"])))).seconds;
                fullBytes = (await newestBackup(s, repo)).repoBytes;
            } else {
                const r = await runPipeline(s);
                t.dump = r.seconds;
                dumpBytes = r.stored;
            }
        }
        const manifest = keepLatest(s, "keep-pitr");
        for (const item of order(i, ["pitr", "dump"] as const)) {
            await s.pg.sql("CHECKPOINT");
            if (item === "pitr") t.pitrRestore = await pitrRestore(s, repo, `restore-${i}`);
            else {
                await s.pg.sql("DROP DATABASE IF EXISTS restore_hx WITH (FORCE)");
                t.dumpRestore = (await timed(async () => ok("backup-restore.sh", await s.host.runScript("backup-restore.sh", ["--target", "restore_hx", manifest], { timeoutMs: 3_600_000 })))).seconds;
                await s.pg.sql("DROP DATABASE IF EXISTS restore_hx WITH (FORCE)");
            }
        }
        const row = { fullSeconds: round(t.full!), dumpSeconds: round(t.dump!), fullBytes, dumpBytes, pitrRestoreSeconds: round(t.pitrRestore!), dumpRestoreSeconds: round(t.dumpRestore!) };
        out.push(row);
        log(`  pitr round ${i + 1}: pgbackrest full ${row.fullSeconds} s (${(fullBytes / 2 ** 20).toFixed(0)} MiB), dump pipeline ${row.dumpSeconds} s (${(dumpBytes / 2 ** 20).toFixed(0)} MiB); restore to latest ${row.pitrRestoreSeconds} s, logical restore ${row.dumpRestoreSeconds} s`);
    }
    // A differential after 1 % of the rows change.
    const changed = Number(await s.pg.sql("WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0 RETURNING 1) SELECT count(*) FROM u", BIG_DB))
        + Number(await s.pg.sql("WITH u AS (UPDATE docs SET title = title || ' (edited)' WHERE id % 100 = 0 RETURNING 1) SELECT count(*) FROM u", BIG_DB));
    await s.pg.sql("CHECKPOINT");
    const diff = await timed(async () => ok("pgbackrest diff", await pgbackrest(s, repo, ["--type=diff", "backup"])));
    const differential = { changedRows: changed, seconds: round(diff.seconds), bytes: (await newestBackup(s, repo)).repoBytes };
    log(`  pitr differential after ${changed} changed rows: ${differential.seconds} s, ${(differential.bytes / 2 ** 20).toFixed(1)} MiB; repository ${(treeBytes(join(repo.dir, "storage")) / 2 ** 20).toFixed(0)} MiB`);
    const med = (f: (r: PitrBenchResult["rounds"][number]) => number) => median(out.map(f));
    return {
        rounds: out,
        fullVsDumpSeconds: round(med((r) => r.fullSeconds / r.dumpSeconds), 3),
        fullVsDumpBytes: round(med((r) => r.fullBytes / r.dumpBytes), 3),
        differential,
        rtoPitrVsDump: round(med((r) => r.pitrRestoreSeconds / r.dumpRestoreSeconds), 3),
    };
}
