/**
 * Point-in-time recovery with pgBackRest and the config hx-backup renders:
 * a real PostgreSQL 15 archiving WAL into an encrypted local repository, a
 * full backup, then restores to a timestamp and to the latest point, each
 * started as a throwaway cluster and checked for the markers written before
 * and after that point.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../../config/load";
import { archiveCommand, renderPgbackrestConf, renderPgbackrestSecrets, repositoryPassphrase } from "../../../render/pgbackrest";
import { chownR, freePort, isCI, isRoot, missingTools, run, sleep, tempDir, waitFor } from "../../support/env";
import { PG_BIN, PG_TOOLS, startPostgres, type PostgresInstance } from "../../support/postgres";

const missing = missingTools([...PG_TOOLS, "pgbackrest"]);
if (isCI && missing.length) throw new Error(`the PITR test needs ${missing.join(", ")} in CI`);

const KEY_ID = "pitr-v1";
const KEY = "ab".repeat(32) + "cd".repeat(32);

describe.skipIf(missing.length > 0)("point-in-time recovery with pgBackRest", { timeout: 300_000 }, () => {
    let pg: PostgresInstance;
    let dir: string;
    let env: Record<string, string>;
    let stanza: string;
    const as = () => (isRoot ? { user: pg.owner } : {});
    const pgbackrest = (args: string[]) => run("pgbackrest", args, { ...as(), env });

    beforeAll(async () => {
        dir = tempDir("hx-pitr-");
        const confDir = join(dir, "conf");
        mkdirSync(join(confDir, "conf.d"), { recursive: true });
        mkdirSync(join(dir, "log"));
        mkdirSync(join(dir, "lock"));
        env = {
            PGBACKREST_CONFIG: join(confDir, "pgbackrest.conf"),
            PGBACKREST_CONFIG_INCLUDE_PATH: join(confDir, "conf.d"),
            PGBACKREST_LOG_PATH: join(dir, "log"),
            PGBACKREST_LOCK_PATH: join(dir, "lock"),
        };
        // The stanza name comes from the data directory, which exists only once the cluster does: the
        // archive_command calls a wrapper written below, with the test's config paths in front.
        const wrapper = join(dir, "pgbackrest-archive-push.sh"); // pgbackrest check wants its name in archive_command
        pg = await startPostgres({
            settings: { wal_level: "replica", archive_mode: "on", archive_timeout: "60", archive_command: `'sh ${wrapper} %p'` },
        });
        const config = loadStackConfig("pitr", {
            hosts: [{ name: "db-pitr", address: "127.0.0.1", roles: ["postgresql"], remoteSync: false, postgresql: { host: pg.socketDir, port: pg.port, dataDir: join(pg.dir, "data"), pitr: { enabled: true, processMax: 2 } } }],
            storageDir: join(dir, "storage"),
        });
        const host = config.hosts[0]!;
        const conf = renderPgbackrestConf(config, host, KEY_ID);
        stanza = conf.stanza;
        expect(stanza).toMatch(/^db-pitr-hx-pg-[A-Za-z0-9]+-data$/);
        const envPrefix = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ");
        writeFileSync(wrapper, `exec env ${envPrefix} ${archiveCommand(stanza).replace("%p", '"$1"')}\n`);
        expect(conf.repository).toEqual({ type: "posix", path: `${join(dir, "storage")}/pgbackrest/${KEY_ID}` });
        writeFileSync(env.PGBACKREST_CONFIG!, conf.main);
        writeFileSync(join(confDir, "conf.d", "hx-backup-secrets.conf"), renderPgbackrestSecrets(repositoryPassphrase(KEY, KEY_ID)), { mode: 0o600 });
        mkdirSync(join(dir, "storage"));
        if (isRoot) chownR(dir, pg.owner);
        const created = await pgbackrest([`--stanza=${stanza}`, "stanza-create"]);
        expect(created.code, created.stderr + created.stdout).toBe(0);
        const checked = await pgbackrest([`--stanza=${stanza}`, "check"]);
        expect(checked.code, checked.stderr + checked.stdout).toBe(0);
        const full = await pgbackrest([`--stanza=${stanza}`, "--type=full", "backup"]);
        expect(full.code, full.stderr + full.stdout).toBe(0);
    });

    afterAll(async () => {
        await pg?.stop();
    });

    /** Restores into a new data directory and runs it on a free port without archiving; returns a SQL runner and a stop. */
    async function restoreAndStart(target: string[]): Promise<{ sql: (q: string) => Promise<string>; stop: () => Promise<void> }> {
        const data = join(dir, `restore-${Date.now()}`);
        const restored = await pgbackrest([`--stanza=${stanza}`, `--pg1-path=${data}`, ...target, "restore"]);
        expect(restored.code, restored.stderr + restored.stdout).toBe(0);
        const port = await freePort();
        const sock = join(dir, `sock-${port}`);
        mkdirSync(sock);
        if (isRoot) chownR(sock, pg.owner);
        const child = spawn(`${PG_BIN}/postgres`, ["-D", data, "-c", `port=${port}`, "-c", `unix_socket_directories=${sock}`, "-c", "listen_addresses=", "-c", "archive_mode=off"], {
            stdio: ["ignore", "ignore", "pipe"],
            ...(isRoot ? { uid: pg.owner.uid, gid: pg.owner.gid } : {}),
            // restore_command (pgbackrest archive-get) finds the test's config through these.
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8", ...env },
        });
        let log = "";
        child.stderr?.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
        const sql = async (q: string) => {
            const r = await run("psql", ["-X", "-h", sock, "-p", String(port), "-U", "postgres", "-d", "postgres", "-Atc", q], as());
            if (r.code !== 0) throw new Error(`${r.stderr}\n${log}`);
            return r.stdout.trim();
        };
        // Recovery replays WAL, then promotes: wait until it accepts writes.
        await waitFor(async () => (await sql("SELECT NOT pg_is_in_recovery()").catch(() => "f")) === "t", 120_000, "the restored cluster to finish recovery").catch((err: Error) => {
            child.kill("SIGKILL");
            throw new Error(`${err.message}; its log: ${log}`);
        });
        return {
            sql,
            stop: async () => {
                const gone = new Promise<void>((r) => child.on("exit", () => r()));
                child.kill("SIGINT");
                await gone;
            },
        };
    }

    it("restores to a timestamp: the marker written before it is there, the one after it is not; latest has both", async () => {
        await pg.sql("CREATE TABLE markers (name text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())");
        await pg.sql("INSERT INTO markers (name) VALUES ('A')");
        await sleep(1100);
        const T = await pg.sql("SELECT clock_timestamp()");
        await sleep(1100);
        await pg.sql("INSERT INTO markers (name) VALUES ('B')");
        // Close the segment and wait until the archive has it.
        const segment = await pg.sql("SELECT pg_walfile_name(pg_switch_wal())");
        await waitFor(async () => (await pg.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")) >= segment, 180_000, `WAL ${segment} to be archived`);

        const atT = await restoreAndStart(["--type=time", `--target=${T}`, "--target-action=promote"]);
        try {
            expect(await atT.sql("SELECT string_agg(name, ',' ORDER BY name) FROM markers")).toBe("A");
        } finally {
            await atT.stop();
        }
        const latest = await restoreAndStart([]);
        try {
            expect(await latest.sql("SELECT string_agg(name, ',' ORDER BY name) FROM markers")).toBe("A,B");
        } finally {
            await latest.stop();
        }
    });

    it("the repository is encrypted: the wrong passphrase is a clear failure, and no passphrase is in the main config", async () => {
        const secrets = join(env.PGBACKREST_CONFIG_INCLUDE_PATH!, "hx-backup-secrets.conf");
        const right = readFileSync(secrets, "utf8");
        expect(readFileSync(env.PGBACKREST_CONFIG!, "utf8")).not.toContain(repositoryPassphrase(KEY, KEY_ID));
        writeFileSync(secrets, renderPgbackrestSecrets(repositoryPassphrase("ef".repeat(64), KEY_ID)));
        try {
            const info = await pgbackrest([`--stanza=${stanza}`, "info"]);
            expect(info.stdout + info.stderr).toMatch(/unable to|passphrase|cipher|decrypt/i);
        } finally {
            writeFileSync(secrets, right);
        }
        const ok = await pgbackrest([`--stanza=${stanza}`, "--output=json", "info"]);
        expect(JSON.parse(ok.stdout)[0].status.message).toBe("ok");
    });
});
