/**
 * A sandbox host's own services, started inside its mount namespace over SSH,
 * the way they would already run on a real host before a deploy, each bound
 * to the host's loopback address: PostgreSQL with sample data (and
 * archive_mode off, as before PITR) and Redis with sample keys on a database
 * host, an application directory with files of varied owners and modes on an
 * application host, node_exporter on every host, and on the monitoring host
 * Prometheus scraping every host's node_exporter, with the project's rules
 * path in its rule_files.
 */
import { shellQuote } from "../../render/shell";
import type { Exec } from "./apply";
import { pickPort } from "./host";

/** The ports a host's services listen on, all on its own address. */
export interface HostPorts {
    readonly ssh: number;
    readonly nodeExporter: number;
    readonly postgres?: number;
    readonly redis?: number;
    readonly prometheus?: number;
}

export type HostService = "postgres" | "redis" | "application" | "prometheus";

/**
 * Ports on `address` for `services` (node_exporter and sshd always): the
 * stack file's placeholders where they are free on that address, else free
 * ones the kernel picks there.
 */
export async function allocatePorts(address: string, services: readonly HostService[], preferred: Partial<HostPorts> = {}): Promise<HostPorts> {
    const taken: number[] = [];
    const take = async (p: number | undefined) => {
        const port = await pickPort(address, p, taken);
        taken.push(port);
        return port;
    };
    const ssh = await take(preferred.ssh);
    const nodeExporter = await take(preferred.nodeExporter);
    return {
        ssh,
        nodeExporter,
        ...(services.includes("postgres") ? { postgres: await take(preferred.postgres) } : {}),
        ...(services.includes("redis") ? { redis: await take(preferred.redis) } : {}),
        ...(services.includes("prometheus") ? { prometheus: await take(preferred.prometheus) } : {}),
    };
}

export const SANDBOX_VAR = "/var/lib/hx-sandbox";
export const APP_DIR = "/srv/sandbox-app";
export const PG_SOCKET_DIR = "/run/postgresql";
export const RULES_DIR = "/opt/hx-backups/monitoring";
export const TEXTFILE_DIR = "/var/lib/prometheus/node-exporter";
export const SAMPLE_DATABASE = "sandbox_app";

async function must(exec: Exec, what: string, script: string): Promise<string> {
    const r = await exec(`bash -c ${shellQuote(`set -Eeuo pipefail\ncd /\n${script}`)}`);
    if (r.code !== 0) throw new Error(`sandbox: ${what} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
}

/** Starts a daemon detached from the SSH session, recording its PID. */
const daemon = (name: string, user: string, command: string) =>
    `setsid runuser -u ${user} -- bash -c ${shellQuote(`exec ${command}`)} > ${SANDBOX_VAR}/${name}.log 2>&1 < /dev/null & echo $! > ${SANDBOX_VAR}/${name}.pid`;

/** Waits until `url` answers (curl), up to 20 s. */
const ready = (url: string) => `for i in $(seq 1 100); do curl -fsS ${shellQuote(url)} >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS ${shellQuote(url)} >/dev/null`;

/** A node_exporter that another host's Prometheus scrapes: its name and address:port. */
export interface ScrapeTarget {
    readonly host: string;
    readonly target: string;
}

export interface HostServices {
    /** The host's loopback address: every service binds it. */
    readonly address: string;
    readonly ports: HostPorts;
    readonly services: readonly HostService[];
    /** The cluster's data directory, as the stack file's postgresql.dataDir names it (with `postgres`). */
    readonly pgDataDir?: string;
    /** Every host's node_exporter (with `prometheus`). */
    readonly scrape?: readonly ScrapeTarget[];
}

export async function startServices(exec: Exec, host: HostServices): Promise<void> {
    const { address, ports } = host;
    const has = (s: HostService) => host.services.includes(s);
    await must(exec, "preparing directories", `mkdir -p ${SANDBOX_VAR} ${PG_SOCKET_DIR} ${TEXTFILE_DIR}
chown postgres:postgres ${PG_SOCKET_DIR}
chmod 0755 ${TEXTFILE_DIR}`);

    if (has("postgres")) {
        const pgDataDir = host.pgDataDir;
        if (!pgDataDir || !ports.postgres) throw new Error("sandbox: a PostgreSQL host needs postgresql.dataDir and a port");
        // PostgreSQL 15: a fresh cluster in /var (an overlay), socket in the namespace's own /run, TCP on the host's address only.
        await must(exec, "starting PostgreSQL", `PGBIN=/usr/lib/postgresql/15/bin
install -d -o postgres -g postgres -m 0700 ${shellQuote(pgDataDir)}
install -o postgres -g postgres -m 0640 /dev/null ${SANDBOX_VAR}/pg.log
runuser -u postgres -- "$PGBIN/initdb" --pgdata=${shellQuote(pgDataDir)} --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" --pgdata=${shellQuote(pgDataDir)} --log=${SANDBOX_VAR}/pg.log --wait \\
  --options="-c port=${ports.postgres} -c listen_addresses=${address} -c unix_socket_directories=${PG_SOCKET_DIR} -c fsync=off" start >/dev/null
runuser -u postgres -- psql --no-psqlrc --quiet --port=${ports.postgres} --host=${PG_SOCKET_DIR} --set=ON_ERROR_STOP=1 <<'SQL'
CREATE DATABASE ${SAMPLE_DATABASE};
\\c ${SAMPLE_DATABASE}
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(10,2), placed_at timestamptz DEFAULT now());
INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.test' FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, total) SELECT 1 + (g % 500), (g * 7 % 1000) / 3.0 FROM generate_series(1, 5000) g;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 300;
SQL`);
    }

    if (has("redis")) {
        if (!ports.redis) throw new Error("sandbox: a Redis host needs a port");
        const cli = `redis-cli -h ${address} -p ${ports.redis}`;
        await must(exec, "starting Redis", `install -d -o redis -g redis -m 0750 /var/lib/redis
${daemon("redis", "redis", `redis-server --port ${ports.redis} --bind ${address} --dir /var/lib/redis --dbfilename dump.rdb --save '' --appendonly no`)}
for i in $(seq 1 50); do ${cli} ping >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq 1 200); do printf 'SET session:%d user-%d\\r\\n' "$i" "$i"; done | ${cli} --pipe >/dev/null
${cli} HSET config:app name sandbox version 1 >/dev/null`);
    }

    if (has("application")) {
        await must(exec, "creating application data", `install -d -o root -g root -m 0755 ${APP_DIR} ${APP_DIR}/uploads ${APP_DIR}/shared
install -d -o www-data -g www-data -m 0750 ${APP_DIR}/uploads/private
printf 'public upload\\n' > ${APP_DIR}/uploads/readme.txt && chown www-data:www-data ${APP_DIR}/uploads/readme.txt && chmod 0644 ${APP_DIR}/uploads/readme.txt
head -c 200000 /dev/urandom > ${APP_DIR}/uploads/private/photo.bin && chown www-data:www-data ${APP_DIR}/uploads/private/photo.bin && chmod 0600 ${APP_DIR}/uploads/private/photo.bin
printf 'token=sandbox\\n' > ${APP_DIR}/shared/app.env && chown nobody:nogroup ${APP_DIR}/shared/app.env && chmod 0640 ${APP_DIR}/shared/app.env
printf 'scratch\\n' > ${APP_DIR}/uploads/cache.tmp`);
    }

    // Every host's own node_exporter on its own address: 127.0.0.1:9100 would be the machine's (the network is shared).
    await must(exec, "starting node_exporter", `install -d -o prometheus -g prometheus ${SANDBOX_VAR}/prometheus
${daemon("node-exporter", "prometheus", `prometheus-node-exporter --web.listen-address=${address}:${ports.nodeExporter} --collector.textfile.directory=${TEXTFILE_DIR} --no-collector.systemd`)}
${ready(`http://${address}:${ports.nodeExporter}/metrics`)}`);

    if (has("prometheus")) {
        if (!ports.prometheus || !host.scrape?.length) throw new Error("sandbox: the monitoring host needs a Prometheus port and the node_exporters to scrape");
        const targets = host.scrape.map((t) => `      - targets: ["${t.target}"]\n        labels:\n          instance: ${t.host}`).join("\n");
        await must(exec, "starting Prometheus", `mkdir -p ${RULES_DIR}
cat > ${SANDBOX_VAR}/prometheus.yml <<'YAML'
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - ${RULES_DIR}/*.yml
scrape_configs:
  - job_name: node
    static_configs:
${targets}
YAML
${daemon("prometheus", "prometheus", `prometheus --config.file=${SANDBOX_VAR}/prometheus.yml --storage.tsdb.path=${SANDBOX_VAR}/prometheus --web.listen-address=${address}:${ports.prometheus} --web.enable-lifecycle`)}
${ready(`http://${address}:${ports.prometheus}/-/ready`)}`);
    }
}
