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

/** Tools a PITR host test needs that are missing here. */
export function pitrHostMissing(): string[] {
    return ["unshare", "ssh", "ssh-keygen", "sshd", "pgbackrest", "setfacl", PG_CTL].filter(
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
    /** Switches WAL and waits until the archive has the closed segment. */
    archiveNow(): Promise<void>;
    /** Waits until the archive has the segment named `segment`. */
    archived(segment: string, seconds?: number): Promise<void>;
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
    const archived = (segment: string, seconds = 60) =>
        sh(`for i in $(seq 1 ${seconds * 10}); do [ "$(${psql(PITR_SOCKET, pgPort, "postgres", `SELECT coalesce(last_archived_wal, '') >= '${segment}' FROM pg_stat_archiver`)})" = t ] && exit 0; sleep 0.1; done; exit 1`).then(() => undefined);
    const waitPromoted = (socket: string, port: number) =>
        sh(`for i in $(seq 1 600); do [ "$(${psql(socket, port, "postgres", "SELECT pg_is_in_recovery()")} 2>/dev/null)" = f ] && exit 0; sleep 0.2; done; exit 1`);
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
        async archiveNow() {
            await archived(await sql("SELECT pg_walfile_name(pg_switch_wal())"));
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
