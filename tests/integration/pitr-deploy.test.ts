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
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import type { StackConfig } from "../../config/types";
import { planHost } from "../../render/hostPlan";
import { repositoryPassphrase } from "../../render/pgbackrest";
import { wrapStep } from "../../render/remote";
import { shellQuote } from "../../render/shell";
import type { Step } from "../../render/step";
import { renderFacts } from "../../scripts/render";
import { applySteps, destroySteps, type StepRun } from "../../scripts/sandbox/apply";
import { runJobService } from "../../scripts/sandbox/jobs";
import { alarmingLines } from "../support/host";
import { metric, PG_CTL, PG_WALDUMP as WALDUMP, PITR_DATA as DATA, PITR_SOCKET as SOCKET, pitrHostMissing, startPitrHost, TEXTFILE, type PitrHost } from "../support/pitrHost";

const root = process.getuid?.() === 0;
const tools = pitrHostMissing();
if (process.env.CI === "true" && (!root || tools.length)) throw new Error(`PITR deploy test needs root and ${tools.join(", ")} in CI`);

const KEY = "5a".repeat(64);

describe.runIf(root && tools.length === 0)("PITR deploy steps and jobs on a real host", { timeout: 180_000 }, () => {
    let box: PitrHost;
    const secrets = { keys: { "pitr-v1": KEY } };
    const passphrase = repositoryPassphrase(KEY, "pitr-v1");

    const configFor = (allowRestart: boolean): StackConfig =>
        loadStackConfig("pitr", {
            backupUser: "hxpitr",
            installPackages: false,
            hosts: [{
                name: "db", address: "127.0.0.1", port: box.host.port, hostKey: box.host.hostKey, roles: ["postgresql"], remoteSync: false,
                postgresql: { host: SOCKET, port: box.pgPort, dataDir: DATA, databases: ["appdb"], pitr: { enabled: true, archiveTimeoutSeconds: 10, allowRestart } },
            }],
        });
    const plan = (c: StackConfig) => planHost(c, c.hosts[0], renderFacts(c));
    const stepOf = (steps: readonly Step[], name: string) => steps.find((s) => s.name === name)!;
    const sh = (script: string) => box.sh(script);
    const sql = (query: string) => box.sql(query);
    const postmaster = () => box.postmaster();
    const prom = (file: string) => box.prom(file);
    const outputs: string[] = [];
    const restoreScript = (args: string) => box.host.exec(`bash /var/lib/backup/scripts/backup-restore.sh --pitr ${args}`);

    beforeAll(async () => {
        // The cluster keeps its config in /etc, as Debian's do: restored copies must still start.
        box = await startPitrHost("pitr-deploy", { configDir: "/etc/postgresql/15/hx-pitr" });
        await sql("CREATE TABLE marker (id serial PRIMARY KEY, note text NOT NULL)");
    });

    afterAll(async () => box?.stop());

    it("without allowRestart: archiving is configured, the restart is pending (stdout, metric with the command) and PostgreSQL keeps running", async () => {
        expect(await sql("SHOW archive_mode")).toBe("off");
        const before = await postmaster();
        const runs = await applySteps(box.host.exec, plan(configFor(false)).steps, secrets, configFor(false).hosts[0]);
        outputs.push(...runs.map((r) => r.stdout));
        const archiving = runs.find((r: StepRun) => r.step === "pitr-archiving")!;
        // A Debian cluster (its config in /etc/postgresql/<version>/<name>) restarts through its wrapper.
        expect(archiving.stdout).toMatch(/restart_pending=1 command="pg_ctlcluster 15 hx-pitr restart"/);
        expect(await postmaster()).toBe(before);
        expect(await sql("SHOW archive_mode")).toBe("off");
        expect(await sql("SELECT setting || ' ' || pending_restart FROM pg_settings WHERE name = 'archive_mode'")).toBe("off true");
        // SHOW says "(disabled)" while archive_mode is off: read what ALTER SYSTEM wrote.
        expect(await sh(`grep ^archive_ ${DATA}/postgresql.auto.conf`)).toBe("archive_mode = 'on'\narchive_command = 'pgbackrest --stanza=db-hx-pitr-pg archive-push %p'\narchive_timeout = '10'");
        const restart = await prom("hx_backup_pitr_restart.prom");
        expect(metric(restart, "backup_pitr_restart_pending")).toBe(1);
        expect(restart).toMatch(/^backup_pitr_restart_command_info\{type="pitr",target="archive",command="pg_ctlcluster 15 hx-pitr restart"\} 1$/m);
        // The archive status job sees the same state, and keeps the command.
        const [status] = (await runJobService(box.host.exec, "hx-backup-pitr-archive.service")).slice(-1);
        expect(status.code, status.stderr).toBe(0);
        outputs.push(status.stdout, status.stderr);
        expect(await prom("hx_backup_pitr_restart.prom")).toBe(restart);
        expect(await sh(`stat -c %U:%a /etc/pgbackrest/pgbackrest.conf /etc/pgbackrest/conf.d/hx-backup-secrets.conf`)).toBe("postgres:600\npostgres:600");
        // No first full backup while archiving waits for the restart: it would fail.
        expect(runs.find((r) => r.step === "pitr-first-full")!.stdout).toMatch(/event=pitr_first_full stanza=db-hx-pitr-pg started=0 reason=restart_pending/);
        const health = await box.host.exec("cd / && runuser -u hxpitr -- bash /var/lib/backup/scripts/backup-health-check.sh");
        expect(health.code).toBe(1);
        expect(health.stdout).toMatch(/PROBLEM {2}pitr\/archive: archiving starts after a PostgreSQL restart; run: pg_ctlcluster 15 hx-pitr restart/);
    });

    it("with allowRestart: one restart, archiving works (check), the pending state clears; a second run restarts nothing", async () => {
        const before = await postmaster();
        const pending = plan(configFor(false));
        const allowed = plan(configFor(true));
        const changed = allowed.steps.filter((s) => s.digest !== stepOf(pending.steps, s.name).digest).map((s) => s.name);
        // The first-full step follows archiving's digest: it checks again after any change there.
        expect(changed).toEqual(["pitr-archiving", "pitr-first-full"]);
        const [first] = await applySteps(box.host.exec, [stepOf(allowed.steps, "pitr-archiving")], secrets, allowed.host);
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
        const [second] = await applySteps(box.host.exec, [stepOf(allowed.steps, "pitr-archiving")], secrets, allowed.host);
        expect(second.stdout).not.toMatch(/event=pitr_restart /);
        expect(await postmaster()).toBe(after);
    });

    it("a repository without a full backup gets one started through the full job's unit (systemd), or says how without systemd", async () => {
        const firstFull = stepOf(plan(configFor(true)).steps, "pitr-first-full");
        expect(firstFull.dependsOn).toEqual(["pitr-archiving", "timers"]);
        const plain = await box.host.exec(wrapStep(firstFull.create, false));
        expect(plain.code, plain.stderr).toBe(0);
        expect(plain.stdout).toMatch(/event=pitr_first_full stanza=db-hx-pitr-pg started=0 reason=no_systemd/);
        expect(plain.stderr).toMatch(/no full backup yet and systemd is not running here; start hx-backup-pitr-full\.service/);
        // On a systemd host: a stand-in systemctl records what the step asks of it.
        const shim = "/var/lib/hx-pitr/shim";
        await sh(`mkdir -p ${shim} /run/systemd/system && printf '#!/bin/sh\necho "$*" >> ${shim}/calls\n' > ${shim}/systemctl && chmod 0755 ${shim}/systemctl`);
        try {
            const r = await box.host.exec(`PATH=${shim}:$PATH ${wrapStep(firstFull.create, false)}`);
            expect(r.code, r.stderr).toBe(0);
            expect(r.stdout).toMatch(/event=pitr_first_full stanza=db-hx-pitr-pg started=1 unit=hx-backup-pitr-full\.service/);
            expect(await sh(`cat ${shim}/calls`)).toBe("start --no-block hx-backup-pitr-full.service");
        } finally {
            await sh(`rm -rf ${shim} /run/systemd`);
        }
    });

    /** What the PITR jobs' logs gained since `sizes` (from logSizes()). */
    const PITR_LOGS = ["pitr-backup", "pitr-status", "pitr-verify"].map((n) => `/var/log/hx-backups/${n}.log`);
    const logSizes = async () => (await sh(`for f in ${PITR_LOGS.join(" ")}; do stat -c %s "$f" 2>/dev/null || echo 0; done`)).split("\n").map(Number);
    const logsSince = async (sizes: number[]) => (await Promise.all(PITR_LOGS.map((f, i) => sh(`tail -c +${sizes[i]! + 1} ${f} 2>/dev/null || true`)))).join("\n");

    it("full and differential backups run as postgres from their units; the status job reports the window, no lag and no failure", async () => {
        await sql("INSERT INTO marker (note) VALUES ('before full')");
        const logsBefore = await logSizes();
        const [full] = (await runJobService(box.host.exec, "hx-backup-pitr-full.service")).slice(-1);
        outputs.push(full.stdout, full.stderr);
        expect(full.code, full.stderr).toBe(0);
        const fullProm = await prom("hx_backup-pitr-full.prom");
        expect(metric(fullProm, "backup_last_run_status")).toBe(1);
        expect(metric(fullProm, "backup_size_bytes")).toBeGreaterThan(0);
        expect(metric(fullProm, "backup_expected_interval_seconds")).toBe(604800);
        await new Promise((r) => setTimeout(r, 1100));
        await sql("INSERT INTO marker (note) SELECT 'row ' || g FROM generate_series(1, 1000) g");
        const [diff] = (await runJobService(box.host.exec, "hx-backup-pitr-differential.service")).slice(-1);
        outputs.push(diff.stdout, diff.stderr);
        expect(diff.code, diff.stderr).toBe(0);
        const diffProm = await prom("hx_backup-pitr-differential.prom");
        expect(metric(diffProm, "backup_last_run_status")).toBe(1);
        // Monday to Saturday: the longest gap is Saturday to Monday.
        expect(metric(diffProm, "backup_expected_interval_seconds")).toBe(172800);
        const info = JSON.parse(await sh("runuser -u postgres -- pgbackrest --stanza=db-hx-pitr-pg --output=json info"));
        expect(info[0].backup.map((b: { type: string }) => b.type)).toEqual(["full", "diff"]);
        const [again] = await applySteps(box.host.exec, [stepOf(plan(configFor(true)).steps, "pitr-first-full")], secrets, configFor(true).hosts[0]);
        expect(again.stdout).toMatch(/started=0 reason=has_backups backups=2/);

        const switchedAt = Math.floor(Date.now() / 1000);
        await box.archiveNow();
        const [status] = (await runJobService(box.host.exec, "hx-backup-pitr-archive.service")).slice(-1);
        outputs.push(status.stdout, status.stderr);
        expect(status.code, status.stderr).toBe(0);
        const archive = await prom("hx_backup-pitr-archive.prom");
        expect(metric(archive, "backup_wal_archive_failing")).toBe(0);
        expect(metric(archive, "backup_wal_archive_lag_seconds")).toBe(0);
        expect(metric(archive, "backup_wal_archive_timeout_seconds")).toBe(10);
        expect(metric(archive, "backup_pitr_window_seconds")).toBeGreaterThanOrEqual(1);
        // Archived after the switch (the metric rounds to seconds), however long the job took.
        expect(metric(archive, "backup_wal_last_archived_timestamp")).toBeGreaterThanOrEqual(switchedAt - 1);
        expect(metric(archive, "backup_wal_last_archived_timestamp")).toBeLessThanOrEqual(Date.now() / 1000 + 1);
        expect(metric(archive, "backup_expected_interval_seconds")).toBe(300);
        // The jobs ran as postgres: their logs are postgres's.
        expect(await sh("stat -c %U /var/log/hx-backups/pitr-backup.log /var/log/hx-backups/pitr-status.log")).toBe("postgres\npostgres");
        // Good runs say nothing alarming, on stderr or in their logs.
        expect(alarmingLines([full.stderr, diff.stderr, status.stderr].join("\n"))).toEqual([]);
        expect(alarmingLines(await logsSince(logsBefore))).toEqual([]);
    });

    it("the weekly verification checks the repository and restores the latest point with a canary (status and restore seconds)", async () => {
        const logsBefore = await logSizes();
        const [verify] = (await runJobService(box.host.exec, "hx-backup-pitr-verify.service")).slice(-1);
        outputs.push(verify.stdout, verify.stderr);
        expect(verify.code, verify.stderr).toBe(0);
        expect(alarmingLines(verify.stderr)).toEqual([]);
        expect(alarmingLines(await logsSince(logsBefore))).toEqual([]);
        const m = await prom("hx_backup-pitr-verify.prom");
        expect(metric(m, "backup_verification_status")).toBe(1);
        expect(metric(m, "backup_restore_test_status")).toBe(1);
        expect(metric(m, "backup_pitr_restore_seconds")).toBeGreaterThanOrEqual(0);
        expect(metric(m, "backup_last_run_status")).toBe(1);
        // The scratch cluster is stopped and gone; the canary is on the live server.
        expect(await sh("ls -A /opt/hx-backups/.pitr-scratch")).toBe("");
        expect(await sh("pgrep -u postgres -f pitr-scratch || true")).toBe("");
        expect(await sh(`runuser -u postgres -- psql -At -h ${SOCKET} -p ${box.pgPort} -d postgres -c 'SELECT count(*) FROM hx_backup.pitr_canary'`)).toBe("1");
        // The health check sees each PITR job's own target, and nothing wrong with archiving.
        const health = await box.host.exec("cd / && runuser -u hxpitr -- bash /var/lib/backup/scripts/backup-health-check.sh");
        for (const target of ["full", "differential", "archive", "verify"]) expect(health.stdout).toMatch(new RegExp(`ok {7}pitr/${target}: last success`));
        expect(health.stdout).not.toMatch(/PROBLEM {2}pitr/);
    });

    it("a tampered WAL file in the repository fails pgbackrest verify: status 0 and the cause; repaired, it passes", async () => {
        const wal = await sh("find /opt/hx-backups/pgbackrest/pitr-v1/archive -type f -name '0000*.zst' | sort | head -n 1");
        await sh(`cp -p ${wal} /var/tmp/wal.orig && printf 'XXXX' | dd of=${wal} bs=1 seek=100 conv=notrunc status=none`);
        try {
            const [bad] = (await runJobService(box.host.exec, "hx-backup-pitr-verify.service")).slice(-1);
            expect(bad.code).not.toBe(0);
            expect(metric(await prom("hx_backup-pitr-verify.prom"), "backup_verification_status")).toBe(0);
            // Corrupt data stops verify (exit 29); a file that decodes to the wrong content is reported as invalid.
            expect(await prom("hx_backup_cause-pitr-verify.prom")).toMatch(/pgbackrest verify failed \(exit 29\).*[Cc]orrupt|pgbackrest verify found invalid files: .*checksum invalid: 1/);
        } finally {
            await sh(`cp -p /var/tmp/wal.orig ${wal}`);
        }
        const [good] = (await runJobService(box.host.exec, "hx-backup-pitr-verify.service")).slice(-1);
        expect(good.code, good.stderr).toBe(0);
        expect(metric(await prom("hx_backup-pitr-verify.prom"), "backup_verification_status")).toBe(1);
    });

    it("backup-restore.sh --pitr restores to a time and to the latest point into new directories, and refuses the live one", async () => {
        await sql("CREATE TABLE points (name text PRIMARY KEY)");
        await sql("INSERT INTO points VALUES ('A')");
        await new Promise((r) => setTimeout(r, 1100));
        const T = await sql("SELECT clock_timestamp()");
        await new Promise((r) => setTimeout(r, 1100));
        await sql("INSERT INTO points VALUES ('B')");
        await box.archiveNow();

        const atT = await restoreScript(`--target-time ${shellQuote(T)} --target /var/lib/hx-pitr/at-t`);
        outputs.push(atT.stdout, atT.stderr);
        expect(atT.code, atT.stderr).toBe(0);
        expect(atT.stdout).toContain(`to ${T} in /var/lib/hx-pitr/at-t`);
        // The live config is in /etc: the copy gets a minimal one, and says so.
        expect(atT.stderr).toMatch(/level=warning .*event=restore_config .*configuration is outside its data directory: wrote a minimal postgresql.conf/);
        let copy = await box.startCopy("/var/lib/hx-pitr/at-t");
        try {
            expect(await copy.q("SELECT string_agg(name, ',' ORDER BY name) FROM points")).toBe("A");
            expect(await copy.q("SHOW archive_mode")).toBe("off");
        } finally {
            await copy.stop();
        }
        const latest = await restoreScript("--latest --target /var/lib/hx-pitr/latest");
        expect(latest.code, latest.stderr).toBe(0);
        copy = await box.startCopy("/var/lib/hx-pitr/latest");
        try {
            expect(await copy.q("SELECT string_agg(name, ',' ORDER BY name) FROM points")).toBe("A,B");
        } finally {
            await copy.stop();
        }

        const live = await restoreScript(`--target ${DATA}`);
        expect(live.code).toBe(2);
        expect(live.stderr).toMatch(/is the live data directory: stop PostgreSQL and pass --force/);
        const running = await restoreScript(`--force --target ${DATA}`);
        expect(running.code).toBe(2);
        expect(running.stderr).toMatch(/PostgreSQL is running from/);
        const taken = await restoreScript("--target /var/lib/hx-pitr/latest");
        expect(taken.code).toBe(2);
        expect(taken.stderr).toMatch(/is not empty: choose a new directory, or pass --force/);
        const badTime = await restoreScript("--target-time yesterday-ish --target /var/lib/hx-pitr/x");
        expect(badTime.code).toBe(2);
        expect(badTime.stderr).toMatch(/--target-time 'yesterday-ish' is not a timestamp/);
    });

    it("a wrong repository passphrase fails the deploy with the host, the stanza and pgBackRest's message", async () => {
        const c = configFor(true);
        const archiving = stepOf(plan(c).steps, "pitr-archiving");
        const secretsFile = "/etc/pgbackrest/conf.d/hx-backup-secrets.conf";
        const good = await sh(`cat ${secretsFile}`);
        await sh(`sed -i 's/^repo1-cipher-pass=.*/repo1-cipher-pass=not-the-key/' ${secretsFile}`);
        try {
            await expect(applySteps(box.host.exec, [archiving], secrets, c.hosts[0])).rejects.toThrow(
                /PITR on host=db stanza=db-hx-pitr-pg: pgbackrest stanza-create failed: ERROR: \[\d+\]: .*does not decode with this passphrase/,
            );
        } finally {
            await box.host.exec(`cat > ${secretsFile}`, `${good}\n`);
        }
        const [again] = await applySteps(box.host.exec, [archiving], secrets, c.hosts[0]);
        expect(again.stdout).toMatch(/event=pitr_ok/);
    });

    it("keeps the passphrase out of step output, job output, logs and metrics", async () => {
        const logs = await sh(`cat /var/log/hx-backups/*.log /var/log/pgbackrest/*.log ${TEXTFILE}/*.prom`);
        for (const text of [...outputs, logs]) expect(text).not.toContain(passphrase);
        expect(logs).toContain("db-hx-pitr-pg");
    });

    it("RPO: archive_timeout alone archives a commit's segment (closed by a WAL switch); after the data directory is lost, a restore to latest has it", { timeout: 900_000 }, async () => {
        // PostgreSQL 15's checkpointer, which enforces archive_timeout, sets its first sleep while the
        // server starts, to checkpoint_timeout (5 min): a checkpoint wakes it. Then an idle archiver.
        await sql("CHECKPOINT");
        await box.archiveNow();
        const before = await box.archiveState();
        const committed = Date.now();
        // One session: the transaction's id and the WAL insert position before its commit, then the position after it.
        // -q keeps psql's command tags (INSERT 0 1) out of the values.
        const positions = await sh(`runuser -u postgres -- psql --no-psqlrc -qAt -v ON_ERROR_STOP=1 -h ${SOCKET} -p ${box.pgPort} -d appdb \\
  -c BEGIN -c "INSERT INTO points VALUES ('before the loss')" -c "SELECT pg_current_xact_id() || ' ' || pg_current_wal_insert_lsn()" -c COMMIT -c "SELECT pg_current_wal_insert_lsn()"`);
        const [, xid, from, to] = /^(\d+) ([0-9A-F]+\/[0-9A-F]+)\n([0-9A-F]+\/[0-9A-F]+)$/.exec(positions) ?? [];
        if (!xid) expect.fail(`psql printed ${JSON.stringify(positions)}, not "xid lsn\nlsn"`);
        // The commit record, read from pg_wal between the two positions; its segment is the one holding its last byte.
        const dump = await box.host.exec(`cd / && runuser -u postgres -- ${WALDUMP} --path=${DATA}/pg_wal --start=${from} --end=${to} --rmgr=Transaction --xid=${xid}`);
        const [, commitLength, commitLsn] = /len \(rec\/tot\): +\d+\/ *(\d+), tx: +\d+, lsn: ([0-9A-F]+\/[0-9A-F]+), .*desc: COMMIT/.exec(dump.stdout) ?? [];
        if (!commitLsn) expect.fail(`no COMMIT of transaction ${xid} between ${from} and ${to} in pg_wal: ${dump.stdout}${dump.stderr}`);
        const segment = await sql(`SELECT pg_walfile_name('${commitLsn}'::pg_lsn + ${commitLength})`);
        // No switch by hand and no other writes: archive_timeout (10 s here) has to close the segment.
        await box.archived(segment, 300);
        const rpoSeconds = (Date.now() - committed) / 1000;
        // What the repository holds: the commit, and a WAL switch as the segment's last record (not a full segment).
        const archivedRecords = await sh(`install -d -o postgres -m 0700 /var/tmp/rpo-wal && runuser -u postgres -- pgbackrest --stanza=db-hx-pitr-pg archive-get ${segment} /var/tmp/rpo-wal/${segment} >/dev/null
runuser -u postgres -- ${WALDUMP} /var/tmp/rpo-wal/${segment}`);
        const records = archivedRecords.split("\n").filter((l) => l.startsWith("rmgr:"));
        const why = `commit of transaction ${xid} at ${commitLsn}, segment ${segment}; archiver before the commit:\n${before}\nsegment's last records:\n${records.slice(-5).join("\n")}`;
        expect(records.some((l) => new RegExp(`tx: +${xid}, lsn: ${commitLsn.replace("/", "\\/")}, .*desc: COMMIT`).test(l)), why).toBe(true);
        expect(records.at(-1), why).toMatch(/rmgr: XLOG .*desc: SWITCH/);
        // The loss: the server stops and its data directory is gone.
        await sh(`runuser -u postgres -- ${PG_CTL} stop --pgdata=${DATA} --mode=immediate --wait --silent; rm -rf ${DATA}`);
        const started = Date.now();
        const r = await restoreScript(`--force --latest --target ${DATA}`);
        expect(r.code, r.stderr).toBe(0);
        await box.startServer();
        await box.promoted();
        const rtoSeconds = (Date.now() - started) / 1000;
        expect(await sql("SELECT count(*) FROM points WHERE name = 'before the loss'")).toBe("1");
        // The restored live cluster archives again (archive_mode preserved).
        expect(await sql("SHOW archive_mode")).toBe("on");
        // Observations, not bounds: on a busy machine both are late, and the figures are the bench's to measure.
        mkdirSync(path.join(process.cwd(), "test-artifacts"), { recursive: true });
        writeFileSync(path.join(process.cwd(), "test-artifacts", "pitr-rpo.json"), JSON.stringify({ archiveTimeoutSeconds: 10, rpoSeconds, rtoSeconds, segment, archiverBefore: before }, null, 2));
        console.log(`PITR: commit archived after ${rpoSeconds.toFixed(1)} s (archive_timeout 10 s); lost-cluster restore and recovery ${rtoSeconds.toFixed(1)} s`);
    });

    it("destroy stops archiving without a restart (archive_command /bin/true) and keeps the repository", async () => {
        const c = configFor(true);
        const before = await postmaster();
        await destroySteps(box.host.exec, plan(c).steps);
        expect(await sql("SHOW archive_command")).toBe("/bin/true");
        expect(await sql("SHOW archive_timeout")).toBe("0");
        expect(await postmaster()).toBe(before);
        expect(await sh("ls /opt/hx-backups/pgbackrest/pitr-v1")).toMatch(/archive\nbackup/);
        expect(await sh("ls /etc/pgbackrest")).toBe("conf.d");
        expect(await sh(`ls ${TEXTFILE}`)).not.toMatch(/pitr/);
    });
});
