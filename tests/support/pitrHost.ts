/**
 * A sandbox host (sshd in a private mount namespace) running PostgreSQL 15
 * with archive_mode off and pgBackRest installed, for the PITR tests: shell
 * and SQL over SSH, the textfile metrics, restored copies started on their
 * own socket, and waiting for the archive.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { shellQuote } from "../../render/shell";
import { freePort, removeSandboxDir, startSandboxHost, type SandboxHost } from "../../scripts/sandbox/host";

export const PITR_DATA = "/var/lib/hx-pitr/pg";
export const PITR_SOCKET = "/run/postgresql";
export const TEXTFILE = "/var/lib/prometheus/node-exporter";
export const PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl";
export const PG_WALDUMP = "/usr/lib/postgresql/15/bin/pg_waldump";

/** Tools a PITR host test needs that are missing here. */
export function pitrHostMissing(): string[] {
    return ["unshare", "ssh", "ssh-keygen", "sshd", "pgbackrest", "setfacl", PG_CTL, PG_WALDUMP].filter(
        (t) => spawnSync("bash", ["-c", `PATH=$PATH:/usr/sbin command -v ${t}`]).status !== 0,
    );
}

/** The value of the first series named `name` in a .prom text (NaN if absent). */
export const metric = (text: string, name: string): number => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);

export interface PitrHost {
    readonly host: SandboxHost;
    readonly pgPort: number;
    /** Runs a bash script on the host; its trimmed stdout, or throws with stderr. */
    sh(script: string): Promise<string>;
    /** One query against database appdb as postgres. */
    sql(query: string): Promise<string>;
    postmaster(): Promise<string>;
    /** A textfile metrics file's content. */
    prom(file: string): Promise<string>;
    /** Switches WAL and waits until the archive has the closed segment; its name. */
    archiveNow(): Promise<string>;
    /**
     * Waits until pg_stat_archiver has archived `segment` (a WAL file name) or a later one,
     * polling in short SSH sessions for at most `seconds`; past that it fails with the
     * segment, the archive_command, what waits in pg_wal and what the repository holds.
     */
    archived(segment: string, seconds?: number): Promise<void>;
    /** The archiver's state, what waits in pg_wal/archive_status, the repository's newest segments and pgBackRest's archive-push log: the why of a slow archive. */
    archiveState(): Promise<string>;
    /** Waits until the live server is out of recovery (after startServer on a restored directory). */
    promoted(seconds?: number): Promise<void>;
    /** Starts the live server (after a stop), from its config directory. */
    startServer(): Promise<void>;
    /** Starts a restored copy on its own socket and waits for the end of recovery. */
    startCopy(dir: string): Promise<{ q: (query: string) => Promise<string>; stop: () => Promise<string> }>;
    stop(): Promise<void>;
}

export interface PitrHostOptions {
    /** Start the server with archive_mode on already (no restart at deploy). */
    readonly archiveMode?: boolean;
    /** Environment of the server, so of its archive_command (e.g. PGBACKREST_IO_TIMEOUT). */
    readonly serverEnv?: Readonly<Record<string, string>>;
    /** Keep postgresql.conf, pg_hba.conf and pg_ident.conf here, outside the data directory, as Debian's clusters do. */
    readonly configDir?: string;
}

/**
 * Polls `check` (each call a short SSH session, so no session limit ends the wait) every half
 * second until it holds; after `seconds` it fails with what it waited for and what `explain` sees.
 */
export async function pollHost(what: string, check: () => Promise<boolean>, seconds: number, explain: () => Promise<string>): Promise<void> {
    const started = Date.now();
    while (!(await check())) {
        if (Date.now() - started > seconds * 1000) throw new Error(`waited ${seconds} s for ${what}; now:\n${await explain()}`);
        await new Promise((r) => setTimeout(r, 500));
    }
}

export async function startPitrHost(name: string, options: PitrHostOptions = {}): Promise<PitrHost> {
    const host = await startSandboxHost(mkdtempSync(path.join(tmpdir(), `hx-${name}-`)));
    const pgPort = await freePort();
    const sh = async (script: string) => {
        const r = await host.exec(`bash -c ${shellQuote(`set -Eeuo pipefail\ncd /\n${script}`)}`);
        if (r.code !== 0) throw new Error(`${script}: exit ${r.code}: ${r.stderr}`);
        return r.stdout.trim();
    };
    const psql = (socket: string, port: number, db: string, query: string) =>
        `runuser -u postgres -- psql --no-psqlrc -At -h ${socket} -p ${port} -d ${db} -c ${shellQuote(query)}`;
    const sql = (query: string) => sh(psql(PITR_SOCKET, pgPort, "appdb", query));
    const archiveState = async () => {
        const stanzaOf = `${psql(PITR_SOCKET, pgPort, "postgres", "SHOW archive_command")} | sed -n 's/.*--stanza=\\([^ ]*\\).*/\\1/p'`;
        const r = await host.exec(`bash -c ${shellQuote(`cd /
echo "pg_stat_archiver (archived_count last_archived_wal last_archived_time failed_count last_failed_wal last_failed_time): $(${psql(PITR_SOCKET, pgPort, "postgres", "SELECT concat_ws(' ', archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time) FROM pg_stat_archiver")} 2>&1)"
echo "archive_command: $(${psql(PITR_SOCKET, pgPort, "postgres", "SHOW archive_command")} 2>&1)"
echo "waiting in pg_wal/archive_status: $(ls ${PITR_DATA}/pg_wal/archive_status 2>&1 | tr '\n' ' ')"
stanza=$(${stanzaOf})
echo "newest segments in the repository (archive/$stanza):"
timeout 60 runuser -u postgres -- pgbackrest --stanza="$stanza" --io-timeout=10 repo-ls --recurse "archive/$stanza" 2>&1 | grep --extended-regexp '/[0-9A-F]{24}|ERROR' | sort | tail -n 5
shopt -s nullglob
logs=(/var/log/pgbackrest/*archive-push*.log)
if ((\${#logs[@]})); then echo "pgBackRest's archive-push log:"; tail -n 20 "\${logs[@]}" 2>&1; else echo "no archive-push log in /var/log/pgbackrest"; fi`)}`);
        return `${r.stdout}${r.stderr}${r.code === 0 ? "" : `(exit ${r.code})`}`;
    };
    const archived = async (segment: string, seconds = 300) => {
        if (!/^[0-9A-F]{24}$/.test(segment)) throw new Error(`not a WAL file name: ${JSON.stringify(segment)}`);
        const query = psql(PITR_SOCKET, pgPort, "postgres", `SELECT coalesce(last_archived_wal, '') >= '${segment}' FROM pg_stat_archiver`);
        await pollHost(`WAL segment ${segment} to be archived`, async () => (await sh(query)) === "t", seconds, archiveState);
    };
    const waitPromoted = (socket: string, port: number, seconds = 300) =>
        pollHost(`the server on ${socket} to finish recovery`, async () => (await sh(psql(socket, port, "postgres", "SELECT pg_is_in_recovery()")).catch(() => "")) === "f", seconds, () =>
            sh(`${psql(socket, port, "postgres", "SELECT pg_is_in_recovery()")} 2>&1 || true; tail -n 20 /var/lib/hx-pitr/server.log ${socket === PITR_SOCKET ? "" : `${path.dirname(socket)}/copy.log`} 2>&1 || true`),
        );
    const configDir = options.configDir;
    const settings = [`port = ${pgPort}`, "listen_addresses = ''", `unix_socket_directories = '${PITR_SOCKET}'`, "fsync = off", "wal_level = replica", ...(options.archiveMode ? ["archive_mode = on"] : [])];
    // With a config directory the settings live in its postgresql.conf, so Debian's pg_ctlcluster starts the cluster as it is.
    const startServer = () =>
        sh(`runuser -u postgres -- env ${Object.entries(options.serverEnv ?? {}).map(([k, v]) => `${k}=${shellQuote(v)}`).join(" ")} ${PG_CTL} --pgdata=${configDir ?? PITR_DATA} --log=/var/lib/hx-pitr/server.log --wait --silent \\
  ${configDir ? "" : `--options=${shellQuote(settings.map((x) => `-c ${x.replace(/ = /, "=")}`).join(" "))}`} start`).then(() => undefined);
    await sh(`install -d -o postgres -g postgres -m 0755 ${PITR_SOCKET}
install -d -o postgres -g postgres -m 0700 ${PITR_DATA}
install -o postgres -g postgres -m 0640 /dev/null /var/lib/hx-pitr/server.log
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb --pgdata=${PITR_DATA} --auth-local=peer --encoding=UTF8 --locale=C.UTF-8 --no-sync >/dev/null
${configDir ? `install -d -o postgres -g postgres -m 0755 ${configDir}
mv ${PITR_DATA}/postgresql.conf ${PITR_DATA}/pg_hba.conf ${PITR_DATA}/pg_ident.conf ${configDir}/
printf '%s\\n' ${[`data_directory = '${PITR_DATA}'`, `hba_file = '${configDir}/pg_hba.conf'`, `ident_file = '${configDir}/pg_ident.conf'`, ...settings].map(shellQuote).join(" ")} >> ${configDir}/postgresql.conf` : ""}`);
    await startServer();
    await sh(`runuser -u postgres -- psql --no-psqlrc -q -h ${PITR_SOCKET} -p ${pgPort} -c 'CREATE DATABASE appdb'`);
    return {
        host,
        pgPort,
        sh,
        sql,
        postmaster: () => sh(`head -n 1 ${PITR_DATA}/postmaster.pid`),
        prom: (file: string) => sh(`cat ${TEXTFILE}/${file}`),
        archived,
        startServer,
        archiveState,
        promoted: (seconds?: number) => waitPromoted(PITR_SOCKET, pgPort, seconds),
        async archiveNow() {
            const segment = await sql("SELECT pg_walfile_name(pg_switch_wal())");
            await archived(segment);
            return segment;
        },
        async startCopy(dir: string) {
            const sock = `${dir}/.sock`;
            await sh(`install -d -o postgres -g postgres -m 0700 ${sock}
runuser -u postgres -- ${PG_CTL} start --pgdata=${dir} --wait --silent --log=${dir}/copy.log --options="-c port=5499 -c listen_addresses='' -c unix_socket_directories=${sock}"`);
            await waitPromoted(sock, 5499);
            return { q: (query: string) => sh(psql(sock, 5499, "appdb", query)), stop: () => sh(`runuser -u postgres -- ${PG_CTL} stop --pgdata=${dir} --mode=fast --wait --silent`) };
        },
        async stop() {
            await host.stop();
            removeSandboxDir(host.dir);
        },
    };
}
