/**
 * PITR's deploy steps and jobs on a real host over SSH: a sandbox sshd in a
 * private mount namespace, with PostgreSQL 15 running with archive_mode off
 * and pgBackRest installed. The restart rules (pending without allowRestart,
 * one restart with it, nothing on a second run), stanza-create and check,
 * the full, differential and archive-status jobs run as their units say (as
 * postgres, in the backup group), a wrong passphrase failing the deploy with
 * host, stanza and pgBackRest's message, and destroy stopping archiving
 * without a restart while the repository stays.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import type { StackConfig } from "../../config/types";
import { planHost } from "../../render/hostPlan";
import { repositoryPassphrase } from "../../render/pgbackrest";
import type { Step } from "../../render/step";
import { renderFacts } from "../../scripts/render";
import { applySteps, destroySteps, type StepRun } from "../../scripts/sandbox/apply";
import { freePort, removeSandboxDir, startSandboxHost, type SandboxHost } from "../../scripts/sandbox/host";
import { runJobService } from "../../scripts/sandbox/jobs";
import { shellQuote } from "../../render/shell";

const root = process.getuid?.() === 0;
const tools = ["unshare", "ssh", "ssh-keygen", "sshd", "pgbackrest", "setfacl", "/usr/lib/postgresql/15/bin/pg_ctl"].filter(
    (t) => spawnSync("bash", ["-c", `PATH=$PATH:/usr/sbin command -v ${t}`]).status !== 0,
);
if (process.env.CI === "true" && (!root || tools.length)) throw new Error(`PITR deploy test needs root and ${tools.join(", ")} in CI`);

const DATA = "/var/lib/hx-pitr/pg";
const SOCKET = "/run/postgresql";
const KEY = "5a".repeat(64);
const TEXTFILE = "/var/lib/prometheus/node-exporter";

describe.runIf(root && tools.length === 0)("PITR deploy steps and jobs on a real host", { timeout: 180_000 }, () => {
    let host: SandboxHost;
    let pgPort: number;
    const secrets = { keys: { "pitr-v1": KEY } };
    const passphrase = repositoryPassphrase(KEY, "pitr-v1");

    const configFor = (allowRestart: boolean): StackConfig =>
        loadStackConfig("pitr", {
            backupUser: "hxpitr",
            installPackages: false,
            hosts: [{
                name: "db", address: "127.0.0.1", port: host.port, hostKey: host.hostKey, roles: ["postgresql"], remoteSync: false,
                postgresql: { host: SOCKET, port: pgPort, dataDir: DATA, databases: ["appdb"], pitr: { enabled: true, archiveTimeoutSeconds: 10, allowRestart } },
            }],
        });
    const plan = (c: StackConfig) => planHost(c, c.hosts[0], renderFacts(c));
    const stepOf = (steps: readonly Step[], name: string) => steps.find((s) => s.name === name)!;
    const sh = async (script: string) => {
        const r = await host.exec(`bash -c ${shellQuote(`set -Eeuo pipefail\n${script}`)}`);
        if (r.code !== 0) throw new Error(`${script}: exit ${r.code}: ${r.stderr}`);
        return r.stdout.trim();
    };
    const sql = (query: string) => sh(`runuser -u postgres -- psql --no-psqlrc -At -h ${SOCKET} -p ${pgPort} -d appdb -c ${shellQuote(query)}`);
    const postmaster = () => sh(`head -n 1 ${DATA}/postmaster.pid`);
    const prom = (file: string) => sh(`cat ${TEXTFILE}/${file}`);
    const metric = (text: string, name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);
    const outputs: string[] = [];

    beforeAll(async () => {
        host = await startSandboxHost(mkdtempSync(path.join(tmpdir(), "hx-pitr-deploy-")));
        pgPort = await freePort();
        await sh(`install -d -o postgres -g postgres -m 0755 ${SOCKET}
install -d -o postgres -g postgres -m 0700 ${DATA}
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb --pgdata=${DATA} --auth-local=peer --encoding=UTF8 --locale=C.UTF-8 --no-sync >/dev/null
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl --pgdata=${DATA} --log=${DATA}/server.log --wait --silent \\
  --options="-c port=${pgPort} -c listen_addresses='' -c unix_socket_directories=${SOCKET} -c fsync=off -c wal_level=replica" start
runuser -u postgres -- psql --no-psqlrc -q -h ${SOCKET} -p ${pgPort} -c 'CREATE DATABASE appdb'`);
        await sql("CREATE TABLE marker (id serial PRIMARY KEY, note text NOT NULL)");
    });

    afterAll(async () => {
        await host?.stop();
        if (host) removeSandboxDir(host.dir);
    });

    it("without allowRestart: archiving is configured, the restart is pending (stdout, metric with the command) and PostgreSQL keeps running", async () => {
        expect(await sql("SHOW archive_mode")).toBe("off");
        const before = await postmaster();
        const runs = await applySteps(host.exec, plan(configFor(false)).steps, secrets, configFor(false).hosts[0]);
        outputs.push(...runs.map((r) => r.stdout));
        const archiving = runs.find((r: StepRun) => r.step === "pitr-archiving")!;
        expect(archiving.stdout).toMatch(/restart_pending=1 command="runuser -u postgres -- \/usr\/lib\/postgresql\/15\/bin\/pg_ctl restart --pgdata=\/var\/lib\/hx-pitr\/pg /);
        expect(await postmaster()).toBe(before);
        expect(await sql("SHOW archive_mode")).toBe("off");
        expect(await sql("SELECT setting || ' ' || pending_restart FROM pg_settings WHERE name = 'archive_mode'")).toBe("off true");
        // SHOW says "(disabled)" while archive_mode is off: read what ALTER SYSTEM wrote.
        expect(await sh(`grep ^archive_ ${DATA}/postgresql.auto.conf`)).toBe("archive_mode = 'on'\narchive_command = 'pgbackrest --stanza=db-hx-pitr-pg archive-push %p'\narchive_timeout = '10'");
        const restart = await prom("hx_backup_pitr_restart.prom");
        expect(metric(restart, "backup_pitr_restart_pending")).toBe(1);
        expect(restart).toMatch(/^backup_pitr_restart_command_info\{type="pitr",target="archive",command="runuser -u postgres -- .*pg_ctl restart .*"\} 1$/m);
        // The archive status job sees the same state, and keeps the command.
        const [status] = (await runJobService(host.exec, "hx-backup-pitr-archive.service")).slice(-1);
        expect(status.code, status.stderr).toBe(0);
        outputs.push(status.stdout, status.stderr);
        expect(await prom("hx_backup_pitr_restart.prom")).toBe(restart);
        expect(await sh(`stat -c %U:%a /etc/pgbackrest/pgbackrest.conf /etc/pgbackrest/conf.d/hx-backup-secrets.conf`)).toBe("postgres:600\npostgres:600");
    });

    it("with allowRestart: one restart, archiving works (check), the pending state clears; a second run restarts nothing", async () => {
        const before = await postmaster();
        const pending = plan(configFor(false));
        const allowed = plan(configFor(true));
        const changed = allowed.steps.filter((s) => s.digest !== stepOf(pending.steps, s.name).digest).map((s) => s.name);
        expect(changed).toEqual(["pitr-archiving"]);
        const [first] = await applySteps(host.exec, [stepOf(allowed.steps, "pitr-archiving")], secrets, allowed.host);
        outputs.push(first.stdout);
        expect(first.stdout).toMatch(/event=pitr_restart /);
        expect(first.stdout).toMatch(/event=pitr_ok .*restart_pending=0/);
        const after = await postmaster();
        expect(after).not.toBe(before);
        expect(await sql("SHOW archive_mode")).toBe("on");
        const restart = await prom("hx_backup_pitr_restart.prom");
        expect(metric(restart, "backup_pitr_restart_pending")).toBe(0);
        expect(restart).not.toMatch(/command_info/);
        // An unchanged deploy re-runs nothing (same digests); run by hand, the step is idempotent.
        expect(plan(configFor(true)).steps.map((s) => s.digest)).toEqual(allowed.steps.map((s) => s.digest));
        const [second] = await applySteps(host.exec, [stepOf(allowed.steps, "pitr-archiving")], secrets, allowed.host);
        expect(second.stdout).not.toMatch(/event=pitr_restart /);
        expect(await postmaster()).toBe(after);
    });

    it("full and differential backups run as postgres from their units; the status job reports the window, no lag and no failure", async () => {
        await sql("INSERT INTO marker (note) VALUES ('before full')");
        const [full] = (await runJobService(host.exec, "hx-backup-pitr-full.service")).slice(-1);
        outputs.push(full.stdout, full.stderr);
        expect(full.code, full.stderr).toBe(0);
        const fullProm = await prom("hx_backup-pitr-full.prom");
        expect(metric(fullProm, "backup_last_run_status")).toBe(1);
        expect(metric(fullProm, "backup_size_bytes")).toBeGreaterThan(0);
        expect(metric(fullProm, "backup_expected_interval_seconds")).toBe(604800);
        await new Promise((r) => setTimeout(r, 1100));
        await sql("INSERT INTO marker (note) SELECT 'row ' || g FROM generate_series(1, 1000) g");
        const [diff] = (await runJobService(host.exec, "hx-backup-pitr-differential.service")).slice(-1);
        outputs.push(diff.stdout, diff.stderr);
        expect(diff.code, diff.stderr).toBe(0);
        const diffProm = await prom("hx_backup-pitr-differential.prom");
        expect(metric(diffProm, "backup_last_run_status")).toBe(1);
        // Monday to Saturday: the longest gap is Saturday to Monday.
        expect(metric(diffProm, "backup_expected_interval_seconds")).toBe(172800);
        const info = JSON.parse(await sh("runuser -u postgres -- pgbackrest --stanza=db-hx-pitr-pg --output=json info"));
        expect(info[0].backup.map((b: { type: string }) => b.type)).toEqual(["full", "diff"]);

        await sql("SELECT pg_switch_wal()");
        await sh(`for i in $(seq 1 100); do [ -z "$(ls ${DATA}/pg_wal/archive_status | grep ready)" ] && exit 0; sleep 0.1; done; exit 1`);
        const [status] = (await runJobService(host.exec, "hx-backup-pitr-archive.service")).slice(-1);
        outputs.push(status.stdout, status.stderr);
        expect(status.code, status.stderr).toBe(0);
        const archive = await prom("hx_backup-pitr-archive.prom");
        expect(metric(archive, "backup_wal_archive_failing")).toBe(0);
        expect(metric(archive, "backup_wal_archive_lag_seconds")).toBe(0);
        expect(metric(archive, "backup_wal_archive_timeout_seconds")).toBe(10);
        expect(metric(archive, "backup_pitr_window_seconds")).toBeGreaterThanOrEqual(1);
        expect(metric(archive, "backup_wal_last_archived_timestamp")).toBeGreaterThan(Date.now() / 1000 - 120);
        expect(metric(archive, "backup_expected_interval_seconds")).toBe(300);
        // The jobs ran as postgres: their logs are postgres's.
        expect(await sh("stat -c %U /var/log/hx-backups/pitr-backup.log /var/log/hx-backups/pitr-status.log")).toBe("postgres\npostgres");
    });

    it("a wrong repository passphrase fails the deploy with the host, the stanza and pgBackRest's message", async () => {
        const c = configFor(true);
        const archiving = stepOf(plan(c).steps, "pitr-archiving");
        const secretsFile = "/etc/pgbackrest/conf.d/hx-backup-secrets.conf";
        const good = await sh(`cat ${secretsFile}`);
        await sh(`sed -i 's/^repo1-cipher-pass=.*/repo1-cipher-pass=not-the-key/' ${secretsFile}`);
        try {
            await expect(applySteps(host.exec, [archiving], secrets, c.hosts[0])).rejects.toThrow(
                /PITR on host=db stanza=db-hx-pitr-pg: pgbackrest stanza-create failed: .*FormatError.*does not decode with this passphrase/,
            );
        } finally {
            await host.exec(`cat > ${secretsFile}`, `${good}\n`);
        }
        const [again] = await applySteps(host.exec, [archiving], secrets, c.hosts[0]);
        expect(again.stdout).toMatch(/event=pitr_ok/);
    });

    it("keeps the passphrase out of step output, job output, logs and metrics", async () => {
        const logs = await sh(`cat /var/log/hx-backups/*.log /var/log/pgbackrest/*.log ${TEXTFILE}/*.prom`);
        for (const text of [...outputs, logs]) expect(text).not.toContain(passphrase);
        expect(logs).toContain("db-hx-pitr-pg");
    });

    it("destroy stops archiving without a restart (archive_command /bin/true) and keeps the repository", async () => {
        const c = configFor(true);
        const before = await postmaster();
        await destroySteps(host.exec, plan(c).steps);
        expect(await sql("SHOW archive_command")).toBe("/bin/true");
        expect(await sql("SHOW archive_timeout")).toBe("0");
        expect(await postmaster()).toBe(before);
        expect(await sh("ls /opt/hx-backups/pgbackrest/pitr-v1")).toMatch(/archive\nbackup/);
        expect(await sh("ls /etc/pgbackrest")).toBe("conf.d");
        expect(await sh(`ls ${TEXTFILE}`)).not.toMatch(/pitr/);
    });
});
