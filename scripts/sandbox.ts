/**
 * npm run sandbox [-- --down | --destroy]
 *
 * The one-machine demo and end-to-end test. Starts an isolated host (its own
 * sshd in a private mount namespace with overlays, so the machine's real /etc
 * is never touched) with PostgreSQL, Redis, application data, node_exporter
 * and Prometheus, plus an S3-compatible endpoint (s3rver). Deploys the
 * `sandbox` stack with the real program over real SSH, runs every job the way
 * its timer would, then a restore test and the sync that uploads its
 * records, writes the compliance report of the sandbox's bucket (the code of
 * `npm run report`) with a screenshot of it into test-artifacts/sandbox-report/,
 * and prints a summary.
 *
 * A second run against a running sandbox redeploys (every step runs again)
 * and runs the jobs again. `--destroy` runs the delete commands in reverse
 * order, like `pulumi destroy`; `--down` stops everything and removes it.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { Agent } from "node:https";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { shellCommand } from "../render/shell";
import { deployWithMocks, destroyWithState, type DeployReport } from "./sandbox/deploy";
import { namespaceMembers, removeSandboxDir, startSandboxHost, stopNamespace } from "./sandbox/host";
import { runAsUnit, runJobService, scriptDirOf, type JobRun } from "./sandbox/jobs";
import { allocatePorts, PG_SOCKET_DIR, startServices, type SandboxPorts } from "./sandbox/services";
import { sshExec, type SshTarget } from "./lib/ssh";
import { loopbackCertificate } from "./lib/tls";
import { loadStackFromFiles } from "./render";
import { produceReport, writeReport } from "./report";
import { screenshotReport } from "./report/screenshot";

const ROOT = path.resolve(__dirname, "..");
export const SANDBOX_DIR = process.env.HX_SANDBOX_DIR ?? path.join(ROOT, ".sandbox");
const STATE = path.join(SANDBOX_DIR, "sandbox.json");
const DEPLOY_STATE = path.join(SANDBOX_DIR, "deploy-state.json");
const S3_KEY = "S3RVER";
/** Where each run leaves the compliance report of the sandbox's bucket and its screenshot (git-ignored). */
export const SANDBOX_REPORT_DIR = path.join(ROOT, "test-artifacts", "sandbox-report");

export interface SandboxState {
    readonly pid: number;
    readonly nsLink: string;
    readonly sshPort: number;
    readonly hostKey: string;
    readonly keyFile: string;
    readonly ports: SandboxPorts;
    readonly s3Pid: number;
    /** s3rver's self-signed certificate on this machine (the CA for the AWS CLI and the report). */
    readonly s3CaFile: string;
}

const log = (line: string) => console.log(line);

function loadState(): SandboxState | undefined {
    if (!existsSync(STATE)) return undefined;
    return JSON.parse(readFileSync(STATE, "utf8")) as SandboxState;
}

function alive(state: SandboxState | undefined): state is SandboxState {
    if (!state) return false;
    try {
        return readlinkSync(`/proc/${state.pid}/ns/mnt`) === state.nsLink;
    } catch {
        return false;
    }
}

const targetOf = (state: SandboxState): SshTarget => ({ host: "127.0.0.1", port: state.sshPort, user: "root", hostKey: state.hostKey, keyFile: state.keyFile });
const execOn = (state: SandboxState) => (command: string, stdin = "") => sshExec(targetOf(state), command, stdin, 600_000);

/** The sandbox stack file's config, as written. */
function stackFileConfig(): Record<string, unknown> {
    return (parse(readFileSync(path.join(ROOT, "Pulumi.sandbox.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
}

/** s3rver over HTTPS (pgBackRest speaks only HTTPS to S3), with a certificate made for this sandbox. */
async function startS3(ports: SandboxPorts, bucket: string, tls: { keyFile: string; certFile: string }): Promise<number> {
    const dir = path.join(SANDBOX_DIR, "s3");
    mkdirSync(dir, { recursive: true });
    // s3rver's ListObjectsV2 continuation tokens use DES, which OpenSSL 3 keeps in its legacy
    // provider: without it every listing longer than a page (a pgBackRest repository) fails.
    const child = spawn(
        process.execPath,
        ["--openssl-legacy-provider", path.join(ROOT, "node_modules/s3rver/bin/s3rver.js"), "-d", dir, "-a", "127.0.0.1", "-p", String(ports.s3), "--silent", "--key", tls.keyFile, "--cert", tls.certFile, "--configure-bucket", bucket],
        { detached: true, stdio: "ignore" },
    );
    child.unref();
    for (let i = 0; i < 100; i++) {
        const r = spawnSync("curl", ["-s", "-o", "/dev/null", "--cacert", tls.certFile, `https://127.0.0.1:${ports.s3}/`]);
        if (r.status === 0) return child.pid!;
        await new Promise((r2) => setTimeout(r2, 100));
    }
    throw new Error("s3rver did not start");
}

/** The sandbox stack file with this sandbox's ports, host key and secrets filled in. */
function sandboxConfig(state: SandboxState): { config: Record<string, string>; secretKeys: string[] } {
    const raw = { ...stackFileConfig() };
    const hosts = (raw["hx-backup:hosts"] as Record<string, any>[]).map((h) => ({
        ...h,
        port: state.sshPort,
        hostKey: state.hostKey,
        postgresql: { ...(h.postgresql ?? {}), host: PG_SOCKET_DIR, port: state.ports.postgres },
        redis: { ...(h.redis ?? {}), port: state.ports.redis },
    }));
    raw["hx-backup:hosts"] = hosts;
    raw["hx-backup:s3Endpoint"] = `https://127.0.0.1:${state.ports.s3}`;
    raw["hx-backup:prometheusReloadCommand"] = `curl -fsS -X POST http://127.0.0.1:${state.ports.prometheus}/-/reload`;
    const secrets: Record<string, string> = {
        "hx-backup:sshPrivateKey": readFileSync(state.keyFile, "utf8"),
        "hx-backup:s3AccessKeyId": S3_KEY,
        "hx-backup:s3SecretAccessKey": S3_KEY,
    };
    const config = Object.fromEntries(Object.entries({ ...raw, ...secrets }).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
    return { config, secretKeys: Object.keys(secrets) };
}

/** The effective stack file (ports, host key; no secrets), for `npm run drift -- --stack sandbox --stack-dir .sandbox/stack`. */
export function writeEffectiveStack(config: Record<string, string>, secretKeys: readonly string[]): string {
    const dir = path.join(SANDBOX_DIR, "stack");
    mkdirSync(dir, { recursive: true });
    const plain = Object.fromEntries(Object.entries(config).filter(([k]) => !secretKeys.includes(k)).map(([k, v]) => [k, /^[[{]/.test(v) ? JSON.parse(v) : v]));
    writeFileSync(path.join(dir, "Pulumi.sandbox.yaml"), stringify({ config: plain }));
    return dir;
}

async function start(): Promise<SandboxState> {
    log("Starting the sandbox host (sshd in a private mount namespace)...");
    const hostDir = path.join(SANDBOX_DIR, "host");
    removeSandboxDir(hostDir);
    const host = await startSandboxHost(hostDir);
    const ports = await allocatePorts();
    const stack = stackFileConfig();
    const [sandboxHost] = stack["hx-backup:hosts"] as { postgresql: { dataDir: string } }[];
    const tls = loopbackCertificate(path.join(SANDBOX_DIR, "s3-tls"));
    const hostCaFile = String(stack["hx-backup:s3CaFile"]);
    log("Starting PostgreSQL, Redis, node_exporter and Prometheus inside it...");
    try {
        await startServices(host.exec, ports, sandboxHost.postgresql.dataDir);
        const ca = await host.exec(shellCommand("bash", "-c", 'install -D -m 0644 /dev/stdin "$1"', "install-ca", hostCaFile), tls.cert);
        if (ca.code !== 0) throw new Error(`sandbox: installing the S3 CA at ${hostCaFile} failed: ${ca.stderr.trim()}`);
    } catch (err) {
        await host.stop(); // leave nothing running behind a failed start
        throw err;
    }
    const bucket = String(stack["hx-backup:bucketName"]);
    log(`Starting s3rver on https://127.0.0.1:${ports.s3} (bucket ${bucket})...`);
    const s3Pid = await startS3(ports, bucket, tls);
    const state: SandboxState = {
        pid: host.pid, nsLink: readlinkSync(`/proc/${host.pid}/ns/mnt`), sshPort: host.port, hostKey: host.hostKey, keyFile: host.keyFile, ports, s3Pid, s3CaFile: tls.certFile,
    };
    writeFileSync(STATE, JSON.stringify(state, null, 2));
    return state;
}

/** The value of the first sample of `name`, e.g. `backup_pitr_window_seconds{...} 42`. */
function metricValue(metrics: string, name: string): number | undefined {
    const m = new RegExp(`^${name}\\{[^}]*\\}\\s+(\\S+)$`, "m").exec(metrics);
    return m ? Number(m[1]) : undefined;
}

/** What point-in-time recovery covers right now, from the archive status job's metrics. */
export function pitrSummary(metrics: string, stanza: string): string {
    const window = metricValue(metrics, "backup_pitr_window_seconds");
    const oldest = metricValue(metrics, "backup_pitr_oldest_restorable_timestamp");
    const newest = metricValue(metrics, "backup_pitr_newest_restorable_timestamp");
    const lag = metricValue(metrics, "backup_wal_archive_lag_seconds");
    const pending = metricValue(metrics, "backup_pitr_restart_pending");
    if (window === undefined || !oldest || !newest) return `PITR (stanza ${stanza}): no recovery window yet (no full backup in the repository)`;
    const at = (t: number) => new Date(t * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    return `PITR (stanza ${stanza}): recovery window ${window.toFixed(0)} s, ${at(oldest)} .. ${at(newest)}; WAL archive lag ${lag === undefined ? "-" : `${lag.toFixed(0)} s`}; restart pending: ${pending ? "yes" : "no"}`;
}

function metricsTable(metrics: string): string[] {
    const rows = new Map<string, Record<string, string>>();
    for (const line of metrics.split("\n")) {
        const m = /^(backup_[a-z_]+)\{([^}]*)\}\s+(\S+)$/.exec(line);
        if (!m) continue;
        const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        if (!labels.type || !labels.target) continue;
        const key = `${labels.type}/${labels.target}`;
        rows.set(key, { ...(rows.get(key) ?? {}), [m[1]]: m[3] });
    }
    const status = (v?: string) => (v === undefined ? "-" : v === "1" ? "ok" : "FAILED");
    const size = (v?: string) => (v === undefined ? "-" : `${(Number(v) / 1024).toFixed(1)} KiB`);
    const header = ["job (type/target)", "status", "artifact", "duration", "verification", "remote sync"];
    const body = [...rows.entries()].sort().map(([k, r]) => [
        k,
        status(r.backup_last_run_status),
        size(r.backup_size_bytes),
        r.backup_duration_seconds ? `${Number(r.backup_duration_seconds).toFixed(1)} s` : "-",
        status(r.backup_verification_status),
        status(r.backup_remote_sync_status),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
    return [fmt(header), fmt(widths.map((w) => "-".repeat(w))), ...body.map(fmt)];
}

async function up(): Promise<number> {
    mkdirSync(SANDBOX_DIR, { recursive: true });
    let state = loadState();
    const redeploy = alive(state);
    if (!redeploy) {
        if (state) await down(true);
        state = await start();
    } else log(`Sandbox already running (sshd pid ${state!.pid}); redeploying.`);
    const s = state!;
    const exec = execOn(s);

    log(`${redeploy ? "Redeploying" : "Deploying"} the sandbox stack with the real program (remote steps over SSH)...`);
    const { config, secretKeys } = sandboxConfig(s);
    const stackDir = writeEffectiveStack(config, secretKeys);
    const report: DeployReport = await deployWithMocks({
        stack: "sandbox",
        config,
        secretKeys,
        stateFile: DEPLOY_STATE,
        targetFor: () => targetOf(s),
        log,
    });
    const bytes = report.steps.reduce((a, st) => a + st.stdinBytes, 0);
    log(`Deployed: ${report.steps.length} remote steps, ${(bytes / 1024).toFixed(1)} KiB copied, ${report.seconds.toFixed(1)} s.`);

    const hosts = report.outputs.hosts as Record<string, { jobs: { name: string; timer: string }[]; pitr?: { stanza: string } }>;
    const jobs = hosts.sandbox.jobs.filter((j) => !j.name.startsWith("verification"));
    const verification = hosts.sandbox.jobs.filter((j) => j.name.startsWith("verification"));
    const runs: JobRun[] = [];
    for (const job of [...jobs, ...verification]) {
        const service = job.timer.replace(/\.timer$/, ".service");
        log(`Running ${service} as its timer would...`);
        const results = await runJobService(exec, service);
        runs.push(...results);
        for (const r of results) log(`  ${r.unit}: exit ${r.code} in ${r.seconds.toFixed(1)} s${r.code ? `\n${r.stderr.trim().split("\n").slice(-5).join("\n")}` : ""}`);
    }
    // On a host the restore-test records reach the bucket with each source's next backup (its sync); here, right away.
    const weekly = verification.find((j) => j.name === "verification-weekly");
    if (weekly) {
        const service = weekly.timer.replace(/\.timer$/, ".service");
        log("Running backup-sync.sh as the verification job's user, as the next backup's sync would (uploads the restore-test records)...");
        const sync = await runAsUnit(exec, service, "backup-sync.sh", [`${await scriptDirOf(exec, service)}/backup-sync.sh`]);
        runs.push(sync);
        log(`  ${sync.unit}: exit ${sync.code} in ${sync.seconds.toFixed(1)} s${sync.code ? `\n${sync.stderr.trim().split("\n").slice(-5).join("\n")}` : ""}`);
    }

    log("Writing the compliance report of the bucket (npm run report's code) and its screenshot...");
    let reportSummary: { files: string[]; line: string } | undefined;
    try {
        reportSummary = await sandboxReport(s, stackDir, exec);
    } catch (err) {
        log(`  the report failed: ${err instanceof Error ? err.message : String(err)}`);
    }

    const metrics = spawnSync("curl", ["-fsS", `http://127.0.0.1:${s.ports.nodeExporter}/metrics`], { encoding: "utf8" });
    log("");
    log("Summary (from node_exporter's textfile metrics):");
    for (const line of metricsTable(metrics.stdout ?? "")) log(`  ${line}`);
    const pitr = hosts.sandbox.pitr;
    if (pitr) log(`  ${pitrSummary(metrics.stdout ?? "", pitr.stanza)}`);
    log("");
    if (reportSummary) {
        log(`Compliance report: ${reportSummary.line}`);
        for (const f of reportSummary.files) log(`  ${path.relative(process.cwd(), f) || f}`);
        log("");
    }
    log(`node_exporter: http://127.0.0.1:${s.ports.nodeExporter}/metrics`);
    log(`Prometheus:    http://127.0.0.1:${s.ports.prometheus}/  (alerts: /alerts, rules: /rules)`);
    log(`S3 (s3rver):   https://127.0.0.1:${s.ports.s3}/  (S3RVER / S3RVER; CA ${s.s3CaFile})`);
    log("Look around:");
    log(`  ssh -i ${s.keyFile} -p ${s.sshPort} -o StrictHostKeyChecking=no root@127.0.0.1`);
    log("    ls -l /opt/hx-backups/*/*; tail /var/log/hx-backups/*.log; cat /etc/hx-backup/backup.json");
    log(`  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER aws --endpoint-url https://127.0.0.1:${s.ports.s3} --ca-bundle ${s.s3CaFile} s3 ls --recursive s3://hx-backup-sandbox/`);
    const stackArgs = `--stack sandbox --stack-dir ${path.relative(process.cwd(), stackDir) || "."}`;
    log(`  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER NODE_EXTRA_CA_CERTS=${s.s3CaFile} npm run report -- ${stackArgs}`);
    log(`  HX_SSH_KEY_FILE=${s.keyFile} npm run drift -- ${stackArgs}`);
    log("  npm run sandbox -- --destroy   # run the delete steps, like pulumi destroy");
    log("  npm run sandbox -- --down      # stop and remove everything");
    const failed = runs.filter((r) => r.code !== 0);
    writeFileSync(path.join(SANDBOX_DIR, "last-run.json"), JSON.stringify({ deploy: { steps: report.steps.length, bytes, seconds: report.seconds }, runs }, null, 2));
    return failed.length || !reportSummary ? 1 : 0;
}

/**
 * The compliance report of the sandbox's bucket, by the code `npm run report`
 * runs (produceReport, writeReport), over HTTPS with the sandbox's CA and
 * with the MACs checked against the host's keyring (copied for the run into
 * a private directory, removed after); then a full-page screenshot.
 */
async function sandboxReport(s: SandboxState, stackDir: string, exec: ReturnType<typeof execOn>): Promise<{ files: string[]; line: string }> {
    const keyringDir = loadStackFromFiles(stackDir, "sandbox").paths.keyringDir;
    const keys = await exec(shellCommand("bash", "-c", 'set -euo pipefail; cd -- "$1"; for f in *.key; do printf "%s %s\\n" "$f" "$(head -n 1 -- "$f")"; done', "keys", keyringDir));
    if (keys.code !== 0) throw new Error(`sandbox report: reading the host's keyring ${keyringDir} failed: ${keys.stderr.trim()}`);
    const keysDir = mkdtempSync(path.join(SANDBOX_DIR, "report-keys-"));
    try {
        for (const line of keys.stdout.split("\n").filter(Boolean)) {
            const [name, hex] = line.split(" ");
            if (!/^[A-Za-z0-9._-]+\.key$/.test(name) || !/^[0-9a-fA-F]{128}$/.test(hex ?? "")) throw new Error(`sandbox report: ${keyringDir} holds a file that is not a key (${name})`);
            writeFileSync(path.join(keysDir, name), `${hex}\n`, { mode: 0o600 });
        }
        const report = await produceReport({
            stack: "sandbox",
            stackDir,
            keysDir,
            s3: { credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY }, requestHandler: { httpsAgent: new Agent({ ca: readFileSync(s.s3CaFile) }) } },
        });
        rmSync(SANDBOX_REPORT_DIR, { recursive: true, force: true });
        const files = writeReport(report, SANDBOX_REPORT_DIR);
        const png = path.join(SANDBOX_REPORT_DIR, "report.png");
        await screenshotReport(path.join(SANDBOX_REPORT_DIR, "report.html"), png);
        const errors = report.problems.filter((p) => p.severity === "error").length;
        const tested = report.sources.filter((x) => x.lastRestoreTest.state === "ok").length;
        const line = `${report.sources.length} sources, ${report.totals.manifests} backups (${report.totals.broken} broken), ${report.missingSources.length} missing sources, ${tested} of ${report.sources.length} with a passed restore test; ${errors} errors, ${report.problems.length - errors} warnings; MACs checked with the host's keyring`;
        return { files: [...files, png], line };
    } finally {
        rmSync(keysDir, { recursive: true, force: true });
    }
}

/** TERM, wait up to 5 s, then KILL. */
async function stopProcess(pid: number): Promise<void> {
    const alive = () => {
        try {
            process.kill(pid, 0);
            return true;
        } catch {
            return false;
        }
    };
    if (!alive()) return;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
    if (alive()) process.kill(pid, "SIGKILL");
}

async function down(quiet = false): Promise<number> {
    const state = loadState();
    if (state) {
        if (namespaceMembers(state.nsLink).length) await stopNamespace(state.nsLink);
        await stopProcess(state.s3Pid);
    }
    removeSandboxDir(SANDBOX_DIR);
    if (!quiet) log("Sandbox stopped and removed.");
    return 0;
}

async function destroy(): Promise<number> {
    const state = loadState();
    if (!alive(state)) {
        console.error("No running sandbox; start one with npm run sandbox.");
        return 1;
    }
    log("Running the delete commands in reverse order (as pulumi destroy would)...");
    const count = await destroyWithState(DEPLOY_STATE, () => targetOf(state), log);
    const check = await execOn(state)(
        shellCommand("bash", "-c", "ls /etc/systemd/system/hx-backup-* /var/lib/backup/scripts/*.sh /etc/sudoers.d/hx-backup 2>/dev/null | wc -l; ls /opt/hx-backups | wc -l; ls /etc/hx-backup/keys | wc -l; getent passwd hxbackup >/dev/null && echo user || echo no-user"),
    );
    const [automation, data, keys, user] = check.stdout.trim().split("\n");
    log(`Destroyed: ${count} delete steps ran. Left behind: ${automation} automation files, user: ${user === "user" ? "still present" : "removed"}; kept: ${data} backup folders, ${keys} key files.`);
    return 0;
}

async function main(): Promise<number> {
    const deps = spawnSync("bash", [path.join(ROOT, "scripts/install-system-deps.sh")], { stdio: "inherit" });
    if (deps.status !== 0) return 1;
    if (process.getuid?.() !== 0) {
        console.error("The sandbox needs root (mount namespaces, overlays, its own sshd). Run: sudo npm run sandbox");
        return 1;
    }
    if (process.argv.includes("--down")) return down();
    if (process.argv.includes("--destroy")) return destroy();
    return up();
}

if (require.main === module) {
    main().then(
        (code) => process.exit(code),
        (err) => {
            console.error(err instanceof Error ? err.message : err);
            process.exit(1);
        },
    );
}
