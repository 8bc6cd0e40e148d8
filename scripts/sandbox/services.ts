/**
 * The sandbox host's own services, started inside its mount namespace over
 * SSH, the way they would already run on a real host before a deploy:
 * PostgreSQL with sample data (and archive_mode off, as before PITR), Redis
 * with sample keys, an application directory with files of varied owners and
 * modes, node_exporter, and Prometheus with the project's rules path in its
 * rule_files.
 */
import { shellQuote } from "../../render/shell";
import type { Exec } from "./apply";
import { freePort } from "./host";

export interface SandboxPorts {
    readonly postgres: number;
    readonly redis: number;
    readonly nodeExporter: number;
    readonly prometheus: number;
    readonly s3: number;
}

export async function allocatePorts(): Promise<SandboxPorts> {
    const ports: number[] = [];
    while (ports.length < 5) {
        const p = await freePort();
        if (!ports.includes(p)) ports.push(p);
    }
    const [postgres, redis, nodeExporter, prometheus, s3] = ports;
    return { postgres, redis, nodeExporter, prometheus, s3 };
}

export const SANDBOX_VAR = "/var/lib/hx-sandbox";
export const APP_DIR = "/srv/sandbox-app";
export const PG_SOCKET_DIR = "/run/postgresql";
export const RULES_DIR = "/opt/hx-backups/monitoring";
export const TEXTFILE_DIR = "/var/lib/prometheus/node-exporter";

async function must(exec: Exec, what: string, script: string): Promise<string> {
    const r = await exec(`bash -c ${shellQuote(`set -Eeuo pipefail\ncd /\n${script}`)}`);
    if (r.code !== 0) throw new Error(`sandbox: ${what} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
}

/** Starts a daemon detached from the SSH session, recording its PID. */
const daemon = (name: string, user: string, command: string) =>
    `setsid runuser -u ${user} -- bash -c ${shellQuote(`exec ${command}`)} > ${SANDBOX_VAR}/${name}.log 2>&1 < /dev/null & echo $! > ${SANDBOX_VAR}/${name}.pid`;

/** `pgDataDir`: the cluster's data directory, as the stack file's postgresql.dataDir names it. */
export async function startServices(exec: Exec, ports: SandboxPorts, pgDataDir: string): Promise<void> {
    await must(exec, "preparing directories", `mkdir -p ${SANDBOX_VAR} ${PG_SOCKET_DIR} ${RULES_DIR} ${TEXTFILE_DIR}
chown postgres:postgres ${PG_SOCKET_DIR}
chmod 0755 ${TEXTFILE_DIR}`);

    // PostgreSQL 15: a fresh cluster in /var (an overlay), socket in the namespace's own /run.
    await must(exec, "starting PostgreSQL", `PGBIN=/usr/lib/postgresql/15/bin
install -d -o postgres -g postgres -m 0700 ${shellQuote(pgDataDir)}
install -o postgres -g postgres -m 0640 /dev/null ${SANDBOX_VAR}/pg.log
runuser -u postgres -- "$PGBIN/initdb" --pgdata=${shellQuote(pgDataDir)} --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" --pgdata=${shellQuote(pgDataDir)} --log=${SANDBOX_VAR}/pg.log --wait \\
  --options="-c port=${ports.postgres} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${PG_SOCKET_DIR} -c fsync=off" start >/dev/null
runuser -u postgres -- psql --no-psqlrc --quiet --port=${ports.postgres} --host=${PG_SOCKET_DIR} --set=ON_ERROR_STOP=1 <<'SQL'
CREATE DATABASE sandbox_app;
\\c sandbox_app
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(10,2), placed_at timestamptz DEFAULT now());
INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.test' FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, total) SELECT 1 + (g % 500), (g * 7 % 1000) / 3.0 FROM generate_series(1, 5000) g;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 300;
SQL`);

    await must(exec, "starting Redis", `install -d -o redis -g redis -m 0750 /var/lib/redis
${daemon("redis", "redis", `redis-server --port ${ports.redis} --bind 127.0.0.1 --dir /var/lib/redis --dbfilename dump.rdb --save '' --appendonly no`)}
for i in $(seq 1 50); do redis-cli -p ${ports.redis} ping >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq 1 200); do printf 'SET session:%d user-%d\\r\\n' "$i" "$i"; done | redis-cli -p ${ports.redis} --pipe >/dev/null
redis-cli -p ${ports.redis} HSET config:app name sandbox version 1 >/dev/null`);

    await must(exec, "creating application data", `install -d -o root -g root -m 0755 ${APP_DIR} ${APP_DIR}/uploads ${APP_DIR}/shared
install -d -o www-data -g www-data -m 0750 ${APP_DIR}/uploads/private
printf 'public upload\\n' > ${APP_DIR}/uploads/readme.txt && chown www-data:www-data ${APP_DIR}/uploads/readme.txt && chmod 0644 ${APP_DIR}/uploads/readme.txt
head -c 200000 /dev/urandom > ${APP_DIR}/uploads/private/photo.bin && chown www-data:www-data ${APP_DIR}/uploads/private/photo.bin && chmod 0600 ${APP_DIR}/uploads/private/photo.bin
printf 'token=sandbox\\n' > ${APP_DIR}/shared/app.env && chown nobody:nogroup ${APP_DIR}/shared/app.env && chmod 0640 ${APP_DIR}/shared/app.env
printf 'scratch\\n' > ${APP_DIR}/uploads/cache.tmp`);

    await must(exec, "starting node_exporter", `install -d -o prometheus -g prometheus ${SANDBOX_VAR}/prometheus
${daemon("node-exporter", "prometheus", `prometheus-node-exporter --web.listen-address=127.0.0.1:${ports.nodeExporter} --collector.textfile.directory=${TEXTFILE_DIR} --no-collector.systemd`)}`);

    await must(exec, "starting Prometheus", `cat > ${SANDBOX_VAR}/prometheus.yml <<'YAML'
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - ${RULES_DIR}/*.yml
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:${ports.nodeExporter}"]
        labels:
          instance: sandbox
YAML
${daemon("prometheus", "prometheus", `prometheus --config.file=${SANDBOX_VAR}/prometheus.yml --storage.tsdb.path=${SANDBOX_VAR}/prometheus --web.listen-address=127.0.0.1:${ports.prometheus} --web.enable-lifecycle`)}
for i in $(seq 1 100); do curl -fsS http://127.0.0.1:${ports.prometheus}/-/ready >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS http://127.0.0.1:${ports.prometheus}/-/ready >/dev/null`);
}
