/**
 * A throwaway PostgreSQL cluster: initdb into a temp dir, run as the
 * `postgres` OS user on a free loopback port with its socket in the temp dir,
 * stopped by PID.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chownR, freePort, isRoot, lookupUser, removeDir, run, runOk, tempDir, waitFor, type OsUser, type RunResult } from "./env";

export const PG_BIN = process.env.HX_PG_BIN ?? "/usr/lib/postgresql/15/bin";
export const PG_TOOLS = [`${PG_BIN}/initdb`, `${PG_BIN}/postgres`, "pg_dump", "pg_restore", "psql", "pg_dumpall"];

export interface PostgresInstance {
    readonly dir: string;
    readonly socketDir: string;
    readonly port: number;
    readonly owner: OsUser;
    /** Run SQL as the superuser; returns stdout (tuples only, unaligned). */
    sql(sql: string, db?: string): Promise<string>;
    sqlResult(sql: string, db?: string): Promise<RunResult>;
    stop(): Promise<void>;
    /** Stop without removing the data directory; `start()` brings it back. */
    halt(): Promise<void>;
    start(): Promise<void>;
    readonly pid: () => number | undefined;
}

export interface PostgresOptions {
    /** Extra lines for pg_hba.conf (placed first). */
    readonly hba?: readonly string[];
    readonly settings?: Record<string, string>;
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresInstance> {
    const owner = isRoot ? lookupUser("postgres") : lookupUser(process.env.USER ?? "");
    if (!owner) throw new Error("no postgres OS user");
    const dir = tempDir("hx-pg-");
    const data = join(dir, "data");
    const socketDir = join(dir, "sock");
    mkdirSync(socketDir);
    chownR(dir, owner);
    const port = await freePort();
    const as = isRoot ? { user: owner } : {};
    await runOk(`${PG_BIN}/initdb`, ["--pgdata", data, "--username", "postgres", "--auth-local", "peer", "--auth-host", "scram-sha-256", "--no-sync", "--encoding", "UTF8", "--locale", "C"], as);
    const hba = [...(opts.hba ?? []), "local all postgres peer", "local all all peer", "host all all 127.0.0.1/32 scram-sha-256"].join("\n");
    writeFileSync(join(data, "pg_hba.conf"), `${hba}\n`);
    const settings: Record<string, string> = {
        listen_addresses: "'127.0.0.1'",
        port: String(port),
        unix_socket_directories: `'${socketDir}'`,
        fsync: "off",
        synchronous_commit: "off",
        full_page_writes: "off",
        max_connections: "40",
        shared_buffers: "64MB",
        ...(opts.settings ?? {}),
    };
    appendFileSync(join(data, "postgresql.conf"), Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n");
    chownR(dir, owner);
    let child: ChildProcess | undefined;
    const startServer = async () => {
        const c = spawn(`${PG_BIN}/postgres`, ["-D", data], {
            stdio: ["ignore", "ignore", "pipe"],
            ...(isRoot ? { uid: owner.uid, gid: owner.gid } : {}),
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" },
        });
        let log = "";
        c.stderr?.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
        child = c;
        let exited = false;
        c.on("exit", () => (exited = true));
        await waitFor(async () => {
            if (exited) throw new Error(`postgres exited during start: ${log}`);
            const r = await run("psql", ["-h", socketDir, "-p", String(port), "-U", "postgres", "-d", "postgres", "-Atc", "select 1"], as);
            return r.code === 0;
        }, 120_000, "postgres to accept connections"); // generous: CI runs two test files at once on two cores
    };
    const halt = async () => {
        const c = child;
        if (!c || c.exitCode !== null || c.signalCode !== null) return;
        const gone = new Promise<void>((r) => c.on("exit", () => r()));
        c.kill("SIGINT"); // fast shutdown
        await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
        if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
        child = undefined;
    };
    await startServer();
    const sqlResult = (sql: string, db = "postgres") =>
        run("psql", ["-X", "-q", "-h", socketDir, "-p", String(port), "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"], { ...as, input: sql });
    return {
        dir,
        socketDir,
        port,
        owner,
        sqlResult,
        async sql(sql: string, db = "postgres") {
            const r = await sqlResult(sql, db);
            if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
            return r.stdout.trim();
        },
        halt,
        start: startServer,
        pid: () => child?.pid,
        async stop() {
            await halt();
            if (existsSync(dir)) removeDir(dir);
        },
    };
}
