/**
 * npm run sandbox [-- --hosts N | --destroy | --down | --drift | --pulumi ARGS...]
 *
 * The one-machine demo and end-to-end test. Starts a fleet shaped like
 * production's (db-1: PostgreSQL with PITR and Redis; app-1: application data;
 * mon-1: Prometheus scraping every host), each host its own sshd in private
 * mount and PID namespaces with overlays (the machine's real /etc is never
 * touched) on its own loopback address, plus an S3-compatible endpoint
 * (s3rver). Deploys the `sandbox` stack with the real Pulumi engine
 * (`pulumi up`, state and config under .sandbox/), runs every job on every
 * host the way its timer would, then the restore tests and the sync that
 * uploads their records, writes the compliance report of the bucket (the code
 * of `npm run report`) with a screenshot into test-artifacts/sandbox-report/,
 * and prints a summary per host.
 *
 * A second run against a running sandbox is a real `pulumi up` (which runs
 * nothing when nothing changed) and runs the jobs again. `--destroy` is
 * `pulumi destroy --yes --exclude-protected` (the keys are protected);
 * `--down` stops everything by PID and removes .sandbox/. `--pulumi ARGS...`
 * runs the Pulumi CLI on the sandbox's stack (its engine, state, config and
 * passphrase), and `--drift` compares every host with the stack
 * (`npm run drift` with the sandbox's key and stack file): the CI workflows'
 * drift and preview checks use both.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { Agent } from "node:https";
import * as path from "node:path";
import { parse } from "yaml";
import { shellCommand } from "../render/shell";
import { openStack, PROCEDURES, provideEngine, runPulumi, setConfig, stackOutputs, type Stack } from "./lib/engine";
import { sshExec, type SshTarget } from "./lib/ssh";
import { loopbackCertificate } from "./lib/tls";
import { loadStackFromFiles } from "./render";
import { produceReport, writeReport } from "./report";
import { screenshotReport } from "./report/screenshot";
import { effectiveConfig, fleetFor, type Fleet } from "./sandbox/fleet";
import { namespaceMembers, pickPort, removeSandboxDir, startSandboxHost, stopNamespace } from "./sandbox/host";
import { runAsUnit, runJobService, scriptDirOf, type JobRun } from "./sandbox/jobs";
import { allocatePorts, startServices, type HostPorts } from "./sandbox/services";

const ROOT = path.resolve(__dirname, "..");
export const SANDBOX_DIR = process.env.HX_SANDBOX_DIR ?? path.join(ROOT, ".sandbox");
const STATE = path.join(SANDBOX_DIR, "sandbox.json");
/** The effective stack file (`npm run drift -- --stack-dir`, `npm run report -- --stack-dir`): pulumi's --config-file. */
export const STACK_DIR = path.join(SANDBOX_DIR, "stack");
const STACK = "sandbox";
const S3_KEY = "S3RVER";
/** Where each run leaves the compliance report of the sandbox's bucket and its screenshot (git-ignored). */
export const SANDBOX_REPORT_DIR = path.join(ROOT, "test-artifacts", "sandbox-report");

export interface SandboxHostState {
    readonly name: string;
    readonly address: string;
    readonly roles: readonly string[];
    /** The namespace's first process (unshare) and its mount namespace, to tell it is still ours. */
    readonly pid: number;
    readonly nsLink: string;
    readonly hostKey: string;
    /** sshd, node_exporter and the host's services, all on `address`. */
    readonly ports: HostPorts;
    /** One line per deploy step that ran on the host (see startSandboxHost's stepLog). */
    readonly stepLog: string;
}

export interface SandboxState {
    /** The client key every host lets in as root (the stack's sshPrivateKey). */
    readonly keyFile: string;
    readonly hosts: readonly SandboxHostState[];
    readonly s3?: {
        readonly pid: number;
        readonly port: number;
        /** s3rver's self-signed certificate on this machine (the CA for the AWS CLI and the report). */
        readonly caFile: string;
    };
}

const log = (line: string) => console.log(line);

function loadState(): SandboxState | undefined {
    if (!existsSync(STATE)) return undefined;
    return JSON.parse(readFileSync(STATE, "utf8")) as SandboxState;
}

function saveState(state: SandboxState): void {
    mkdirSync(SANDBOX_DIR, { recursive: true });
    writeFileSync(STATE, JSON.stringify(state, null, 2));
}

const processAlive = (pid: number) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
};

function hostAlive(h: SandboxHostState): boolean {
    try {
        return readlinkSync(`/proc/${h.pid}/ns/mnt`) === h.nsLink;
    } catch {
        return false;
    }
}

/** Every host's namespace and s3rver still running. */
function alive(state: SandboxState | undefined): state is SandboxState {
    return !!state?.s3 && state.hosts.length > 0 && state.hosts.every(hostAlive) && processAlive(state.s3.pid);
}

export const targetOf = (state: SandboxState, h: SandboxHostState): SshTarget => ({ host: h.address, port: h.ports.ssh, user: "root", hostKey: h.hostKey, keyFile: state.keyFile });
const execOn = (state: SandboxState, h: SandboxHostState) => (command: string, stdin = "") => sshExec(targetOf(state, h), command, stdin, 600_000);

/** The tracked stack file's config, as written. */
function stackFileConfig(): Record<string, unknown> {
    return (parse(readFileSync(path.join(ROOT, "Pulumi.sandbox.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
}

/** s3rver over HTTPS (pgBackRest speaks only HTTPS to S3) on 127.0.0.1, with a certificate made for this sandbox. */
async function startS3(port: number, bucket: string, tls: { keyFile: string; certFile: string }): Promise<number> {
    const dir = path.join(SANDBOX_DIR, "s3");
    mkdirSync(dir, { recursive: true });
    // s3rver's ListObjectsV2 continuation tokens use DES, which OpenSSL 3 keeps in its legacy
    // provider: without it every listing longer than a page (a pgBackRest repository) fails.
    const child = spawn(
        process.execPath,
        ["--openssl-legacy-provider", path.join(ROOT, "node_modules/s3rver/bin/s3rver.js"), "-d", dir, "-a", "127.0.0.1", "-p", String(port), "--silent", "--key", tls.keyFile, "--cert", tls.certFile, "--configure-bucket", bucket],
        { detached: true, stdio: "ignore" },
    );
    child.unref();
    for (let i = 0; i < 100; i++) {
        const r = spawnSync("curl", ["-s", "-o", "/dev/null", "--cacert", tls.certFile, `https://127.0.0.1:${port}/`]);
        if (r.status === 0) return child.pid!;
        await new Promise((r2) => setTimeout(r2, 100));
    }
    throw new Error(`s3rver did not start on https://127.0.0.1:${port}`);
}

/** Starts every host of the fleet, its services, the CA it trusts, and s3rver; on failure stops what it started. */
async function start(fleet: Fleet): Promise<SandboxState> {
    const config = stackFileConfig();
    const keyFile = path.join(SANDBOX_DIR, "id_ed25519");
    let state: SandboxState = { keyFile, hosts: [] };
    try {
        const ports = new Map<string, HostPorts>();
        for (const h of fleet.hosts) ports.set(h.name, await allocatePorts(h.address, h.services, h.preferred));
        for (const h of fleet.hosts) {
            const p = ports.get(h.name)!;
            log(`Starting host ${h.name} on ${h.address}:${p.ssh} (sshd in private mount and PID namespaces; ${h.roles.join(", ")})...`);
            const host = await startSandboxHost(path.join(SANDBOX_DIR, "hosts", h.name), { address: h.address, port: p.ssh, keyFile, stepLog: true });
            state = {
                ...state,
                hosts: [...state.hosts, { name: h.name, address: h.address, roles: h.roles, pid: host.pid, nsLink: readlinkSync(`/proc/${host.pid}/ns/mnt`), hostKey: host.hostKey, ports: p, stepLog: host.stepLog! }],
            };
            saveState(state); // so --down finds what started even if a later step fails
        }
        const scrape = state.hosts.map((h) => ({ host: h.name, target: `${h.address}:${h.ports.nodeExporter}` }));
        const tls = loopbackCertificate(path.join(SANDBOX_DIR, "s3-tls"));
        const hostCaFile = String(config["hx-backup:s3CaFile"]);
        log(`Starting each host's services on its own address (${fleet.hosts.map((h) => `${h.name}: ${[...h.services.filter((s) => s !== "application"), "node_exporter"].join(", ")}`).join("; ")})...`);
        await Promise.all(
            fleet.hosts.map(async (h) => {
                const s = state.hosts.find((x) => x.name === h.name)!;
                const exec = execOn(state, s);
                await startServices(exec, { address: h.address, ports: s.ports, services: h.services, ...(h.pgDataDir ? { pgDataDir: h.pgDataDir } : {}), scrape });
                const ca = await exec(shellCommand("bash", "-c", 'install -D -m 0644 /dev/stdin "$1"', "install-ca", hostCaFile), tls.cert);
                if (ca.code !== 0) throw new Error(`sandbox: installing the S3 CA at ${hostCaFile} on ${h.name} failed: ${ca.stderr.trim()}`);
            }),
        );
        const bucket = String(config["hx-backup:bucketName"]);
        const s3Port = await pickPort("127.0.0.1", Number(/:(\d+)$/.exec(String(config["hx-backup:s3Endpoint"]))?.[1]) || undefined);
        log(`Starting s3rver on https://127.0.0.1:${s3Port} (bucket ${bucket})...`);
        const s3Pid = await startS3(s3Port, bucket, tls);
        state = { ...state, s3: { pid: s3Pid, port: s3Port, caFile: tls.certFile } };
        saveState(state);
        return state;
    } catch (err) {
        await stopAll(state); // leave nothing running behind a failed start
        throw err;
    }
}

/** The engine and the sandbox stack: file backend, config file and passphrase, all under .sandbox/. */
async function sandboxStack(): Promise<Stack> {
    const engine = provideEngine((line) => log(`  ${line}`));
    log(`Pulumi engine: ${engine.binDir}/pulumi; plugins: ${engine.plugins.map((p) => `${p.name} ${p.version} (${p.source})`).join(", ")}`);
    mkdirSync(STACK_DIR, { recursive: true });
    // openStack makes a random passphrase on first use; it only guards this throwaway stack's secrets and never leaves .sandbox/.
    return openStack(engine, {
        stack: STACK,
        backendDir: path.join(SANDBOX_DIR, "state"),
        configFile: path.join(STACK_DIR, `Pulumi.${STACK}.yaml`),
        passphraseFile: path.join(SANDBOX_DIR, "passphrase"),
        cwd: ROOT,
    });
}

const stepLines = (h: SandboxHostState) => (existsSync(h.stepLog) ? readFileSync(h.stepLog, "utf8").split("\n").filter(Boolean).length : 0);

/** Sets the effective config (secrets on stdin) and runs `pulumi up --yes` with its progress on the terminal. */
async function deploy(stack: Stack, state: SandboxState, fleet: Fleet): Promise<{ outputs: Record<string, unknown>; seconds: number; configSeconds: number; ran: Record<string, number> }> {
    const t0 = Date.now();
    const plain = effectiveConfig(stackFileConfig(), fleet, state.hosts, state.s3!.port);
    await setConfig(stack, plain, {
        "hx-backup:sshPrivateKey": readFileSync(state.keyFile, "utf8"),
        "hx-backup:s3AccessKeyId": S3_KEY,
        "hx-backup:s3SecretAccessKey": S3_KEY,
    });
    log(`Stack config set (${Object.keys(plain).length} values, 3 secrets on stdin) in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${path.relative(process.cwd(), stack.configFile)}`);
    const before = Object.fromEntries(state.hosts.map((h) => [h.name, stepLines(h)]));
    // The outputs (every host's jobs) come after, from `pulumi stack output --json`; here they would fill screens.
    const args = [...PROCEDURES.up, "--suppress-outputs"];
    log(`$ pulumi ${args.join(" ")} --stack ${STACK} --config-file ${path.relative(process.cwd(), stack.configFile)}`);
    const run = await runPulumi(stack, args, { onOutput: (chunk) => process.stdout.write(chunk), timeoutMs: 3_600_000 });
    if (run.code !== 0) throw new Error(`pulumi up failed (exit ${run.code}); its output is above`);
    const ran = Object.fromEntries(state.hosts.map((h) => [h.name, stepLines(h) - before[h.name]]));
    const total = Object.values(ran).reduce((a, b) => a + b, 0);
    log(`Deployed with pulumi up in ${run.seconds.toFixed(1)} s: ${total} remote steps ran (${state.hosts.map((h) => `${h.name} ${ran[h.name]}`).join(", ")}).`);
    return { outputs: await stackOutputs(stack), seconds: run.seconds, ran, configSeconds: (Date.now() - t0) / 1000 - run.seconds };
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

type HostOutputs = Record<string, { jobs: { name: string; timer: string }[]; pitr?: { stanza: string } | null }>;

/** Every job of one host as its timer would run it, the verification jobs last, then the sync that uploads their records. */
async function runHostJobs(state: SandboxState, h: SandboxHostState, out: HostOutputs[string]): Promise<JobRun[]> {
    const exec = execOn(state, h);
    const say = (r: JobRun) => log(`  [${h.name}] ${r.unit}: exit ${r.code} in ${r.seconds.toFixed(1)} s${r.code ? `\n${r.stderr.trim().split("\n").slice(-5).map((l) => `    [${h.name}] ${l}`).join("\n")}` : ""}`);
    const jobs = out.jobs.filter((j) => !j.name.startsWith("verification"));
    const verification = out.jobs.filter((j) => j.name.startsWith("verification"));
    const runs: JobRun[] = [];
    for (const job of [...jobs, ...verification]) {
        const results = await runJobService(exec, job.timer.replace(/\.timer$/, ".service"));
        runs.push(...results);
        results.forEach(say);
    }
    // On a host the restore-test records reach the bucket with each source's next backup (its sync); here, right away.
    const weekly = verification.find((j) => j.name === "verification-weekly");
    if (weekly) {
        const service = weekly.timer.replace(/\.timer$/, ".service");
        const sync = await runAsUnit(exec, service, "backup-sync.sh (uploads the restore-test records)", [`${await scriptDirOf(exec, service)}/backup-sync.sh`]);
        runs.push(sync);
        say(sync);
    }
    return runs;
}

function parseHostCount(): number | undefined {
    const i = process.argv.indexOf("--hosts");
    if (i < 0) return undefined;
    const v = process.argv[i + 1];
    if (v === undefined || !/^\d+$/.test(v)) throw new Error(`--hosts ${v ?? ""}: give the number of hosts, e.g. --hosts 5`);
    return Number(v);
}

async function up(): Promise<number> {
    const times: Record<string, number> = {};
    let mark = Date.now();
    const phase = (name: string) => {
        times[name] = (Date.now() - mark) / 1000;
        mark = Date.now();
    };
    const requested = parseHostCount();
    let state = loadState();
    const running = alive(state);
    if (running && requested !== undefined && requested !== state!.hosts.length) {
        console.error(`The running sandbox has ${state!.hosts.length} hosts; --hosts ${requested} needs a fresh one: npm run sandbox -- --down, then npm run sandbox -- --hosts ${requested}`);
        return 2;
    }
    const fleet = fleetFor(stackFileConfig(), running ? state!.hosts.length : requested);
    // A fleet that is gone takes its Pulumi state along: a new fleet has new host keys and starts from an empty stack.
    if (!running) await down(true);
    // The engine first: without it (no Go to build it, no upstream plugins) nothing is started for nothing.
    const stack = await sandboxStack();
    if (!running) {
        state = await start(fleet);
    } else log(`Sandbox already running (${state!.hosts.map((h) => `${h.name} ${h.address}`).join(", ")}); pulumi up applies what changed.`);
    const s = state!;
    phase("start");

    log(`${running ? "Updating" : "Deploying"} the sandbox stack with the Pulumi engine (remote steps over SSH)...`);
    const deployed = await deploy(stack, s, fleet);
    const hosts = deployed.outputs.hosts as HostOutputs | undefined;
    if (!hosts) throw new Error("pulumi stack output has no `hosts`; the program's outputs changed");
    phase("deploy");

    log("Running every job on every host as its timer would (hosts in parallel), then the restore tests and their sync...");
    const perHost = await Promise.all(s.hosts.map((h) => (hosts[h.name] ? runHostJobs(s, h, hosts[h.name]) : Promise.reject(new Error(`pulumi stack output has no host ${h.name}`)))));
    const runs = perHost.flat();
    phase("jobs");

    log("Writing the compliance report of the bucket (npm run report's code) and its screenshot...");
    let reportSummary: { files: string[]; line: string } | undefined;
    try {
        reportSummary = await sandboxReport(s);
    } catch (err) {
        log(`  the report failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    phase("report");

    log("");
    for (const h of s.hosts) {
        const metrics = spawnSync("curl", ["-fsS", `http://${h.address}:${h.ports.nodeExporter}/metrics`], { encoding: "utf8" }).stdout ?? "";
        log(`Summary of ${h.name} (${h.roles.join(", ")}), from its node_exporter's textfile metrics:`);
        for (const line of metricsTable(metrics)) log(`  ${line}`);
        const pitr = hosts[h.name]?.pitr;
        if (pitr) log(`  ${pitrSummary(metrics, pitr.stanza)}`);
        log("");
    }
    if (reportSummary) {
        log(`Compliance report: ${reportSummary.line}`);
        for (const f of reportSummary.files) log(`  ${path.relative(process.cwd(), f) || f}`);
        log("");
    }
    const mon = s.hosts.find((h) => h.ports.prometheus);
    for (const h of s.hosts) log(`node_exporter ${h.name.padEnd(6)} http://${h.address}:${h.ports.nodeExporter}/metrics`);
    if (mon) log(`Prometheus (${mon.name}): http://${mon.address}:${mon.ports.prometheus}/  (targets: /targets, alerts: /alerts, rules: /rules)`);
    log(`S3 (s3rver):      https://127.0.0.1:${s.s3!.port}/  (S3RVER / S3RVER; CA ${s.s3!.caFile})`);
    log("Look around:");
    for (const h of s.hosts) log(`  ssh -i ${s.keyFile} -p ${h.ports.ssh} -o StrictHostKeyChecking=no root@${h.address}   # ${h.name}`);
    log("    ls -l /opt/hx-backups/*/*; tail /var/log/hx-backups/*.log; cat /etc/hx-backup/backup.json");
    log(`  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER aws --endpoint-url https://127.0.0.1:${s.s3!.port} --ca-bundle ${s.s3!.caFile} s3 ls --recursive s3://hx-backup-sandbox/`);
    const stackArgs = `--stack ${STACK} --stack-dir ${path.relative(process.cwd(), STACK_DIR) || "."}`;
    log(`  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER NODE_EXTRA_CA_CERTS=${s.s3!.caFile} npm run report -- ${stackArgs}`);
    log(`  HX_SSH_KEY_FILE=${s.keyFile} npm run drift -- ${stackArgs}`);
    log(`  ${path.relative(process.cwd(), stack.configFile)} is the stack's config (pulumi --config-file); its state is in ${path.relative(process.cwd(), path.join(SANDBOX_DIR, "state")) || "."}`);
    log("  npm run sandbox                # again: pulumi up (nothing runs when nothing changed), then the jobs");
    log("  npm run sandbox -- --pulumi preview --diff   # any pulumi command on the sandbox's stack");
    log("  npm run sandbox -- --drift     # every host against the stack (npm run drift)");
    log("  npm run sandbox -- --destroy   # pulumi destroy --yes --exclude-protected");
    log("  npm run sandbox -- --down      # stop and remove everything");
    const failed = runs.filter((r) => r.code !== 0);
    const total = Object.values(times).reduce((a, b) => a + b, 0);
    log(`Times: ${running ? "reused the running fleet" : `fleet and services started in ${times.start.toFixed(0)} s`}, config ${deployed.configSeconds.toFixed(0)} s, pulumi up ${deployed.seconds.toFixed(0)} s, jobs ${times.jobs.toFixed(0)} s, report ${times.report.toFixed(0)} s; ${total.toFixed(0)} s in all.`);
    writeFileSync(path.join(SANDBOX_DIR, "last-run.json"), JSON.stringify({ deploy: { seconds: deployed.seconds, configSeconds: deployed.configSeconds, stepsRan: deployed.ran }, times, runs }, null, 2));
    if (failed.length) log(`${failed.length} job run(s) failed: ${failed.map((r) => r.unit).join(", ")}`);
    return failed.length || !reportSummary ? 1 : 0;
}

/**
 * The compliance report of the sandbox's bucket, by the code `npm run report`
 * runs (produceReport, writeReport), over HTTPS with the sandbox's CA and
 * with the MACs checked against the keyring of the first host (every host
 * holds the same keys), copied for the run into a private directory and
 * removed after; then a full-page screenshot.
 */
async function sandboxReport(s: SandboxState): Promise<{ files: string[]; line: string }> {
    const keyringDir = loadStackFromFiles(STACK_DIR, STACK).paths.keyringDir;
    const first = s.hosts[0];
    const keys = await execOn(s, first)(shellCommand("bash", "-c", 'set -euo pipefail; cd -- "$1"; for f in *.key; do printf "%s %s\\n" "$f" "$(head -n 1 -- "$f")"; done', "keys", keyringDir));
    if (keys.code !== 0) throw new Error(`sandbox report: reading ${first.name}'s keyring ${keyringDir} failed: ${keys.stderr.trim()}`);
    const keysDir = mkdtempSync(path.join(SANDBOX_DIR, "report-keys-"));
    try {
        for (const line of keys.stdout.split("\n").filter(Boolean)) {
            const [name, hex] = line.split(" ");
            if (!/^[A-Za-z0-9._-]+\.key$/.test(name) || !/^[0-9a-fA-F]{128}$/.test(hex ?? "")) throw new Error(`sandbox report: ${keyringDir} on ${first.name} holds a file that is not a key (${name})`);
            writeFileSync(path.join(keysDir, name), `${hex}\n`, { mode: 0o600 });
        }
        const report = await produceReport({
            stack: STACK,
            stackDir: STACK_DIR,
            keysDir,
            s3: { credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY }, requestHandler: { httpsAgent: new Agent({ ca: readFileSync(s.s3!.caFile) }) } },
        });
        rmSync(SANDBOX_REPORT_DIR, { recursive: true, force: true });
        const files = writeReport(report, SANDBOX_REPORT_DIR);
        const png = path.join(SANDBOX_REPORT_DIR, "report.png");
        await screenshotReport(path.join(SANDBOX_REPORT_DIR, "report.html"), png);
        const errors = report.problems.filter((p) => p.severity === "error").length;
        const tested = report.sources.filter((x) => x.lastRestoreTest.state === "ok").length;
        const hostCount = new Set(report.sources.map((x) => x.host)).size;
        const line = `${report.sources.length} sources on ${hostCount} hosts, ${report.totals.manifests} backups (${report.totals.broken} broken), ${report.missingSources.length} missing sources, ${tested} of ${report.sources.length} with a passed restore test; ${errors} errors, ${report.problems.length - errors} warnings; MACs checked with the hosts' keyring`;
        return { files: [...files, png], line };
    } finally {
        rmSync(keysDir, { recursive: true, force: true });
    }
}

/** TERM, wait up to 5 s, then KILL. */
async function stopProcess(pid: number): Promise<void> {
    if (!processAlive(pid)) return;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 50 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (processAlive(pid)) process.kill(pid, "SIGKILL");
}

/** Every host's namespace (each of its processes by PID) and s3rver. */
async function stopAll(state: SandboxState): Promise<void> {
    for (const h of state.hosts) if (namespaceMembers(h.nsLink).length) await stopNamespace(h.nsLink);
    if (state.s3) await stopProcess(state.s3.pid);
}

async function down(quiet = false): Promise<number> {
    const state = loadState();
    if (state) await stopAll(state);
    removeSandboxDir(SANDBOX_DIR);
    if (!quiet) log(`Sandbox stopped (${state ? `${state.hosts.length} hosts${state.s3 ? " and s3rver" : ""}` : "nothing was running"}) and ${path.relative(process.cwd(), SANDBOX_DIR) || SANDBOX_DIR} removed.`);
    return 0;
}

async function destroy(): Promise<number> {
    const state = loadState();
    if (!alive(state)) {
        console.error("No running sandbox; start one with npm run sandbox.");
        return 1;
    }
    const stack = await sandboxStack();
    // The keys are `protect`ed so that no destroy loses the only copy: leave them (and what depends on nothing else) in the state.
    const args = [...PROCEDURES.destroy, "--suppress-outputs"];
    log(`$ pulumi ${args.join(" ")} --stack ${STACK} --config-file ${path.relative(process.cwd(), stack.configFile)}`);
    const run = await runPulumi(stack, args, { onOutput: (chunk) => process.stdout.write(chunk), timeoutMs: 3_600_000 });
    if (run.code !== 0) throw new Error(`pulumi destroy failed (exit ${run.code}); its output is above`);
    const config = loadStackFromFiles(STACK_DIR, STACK);
    const script = [
        "set -uo pipefail",
        // Automation this tool installs: units, scripts, sudoers drop-in, the config.
        'ls -d /etc/systemd/system/hx-backup-* "$1"/*.sh /etc/sudoers.d/hx-backup "$2"/backup.json 2>/dev/null | wc -l',
        'find "$3" -mindepth 2 -maxdepth 2 -type d 2>/dev/null | wc -l',
        'ls "$4" 2>/dev/null | wc -l',
        'getent passwd "$5" >/dev/null && echo user || echo no-user',
    ].join("\n");
    log(`Destroyed with pulumi destroy --exclude-protected in ${run.seconds.toFixed(1)} s.`);
    for (const h of state.hosts) {
        const r = await execOn(state, h)(shellCommand("bash", "-c", script, "check", config.paths.scriptDir, config.paths.configDir, config.paths.storageDir, config.paths.keyringDir, config.backupUser));
        if (r.code !== 0) throw new Error(`checking ${h.name} after destroy failed: ${r.stderr.trim()}`);
        const [automation, data, keys, user] = r.stdout.trim().split("\n");
        log(`  ${h.name}: left behind: ${automation} automation files, user: ${user === "user" ? "still present" : "removed"}; kept: ${data} backup folders, ${keys} key files.`);
    }
    return 0;
}

/** `--pulumi ARGS...`: the Pulumi CLI on the sandbox's stack; its exit status is the command's. */
async function pulumiOnSandbox(args: readonly string[]): Promise<number> {
    if (!alive(loadState())) {
        console.error("No running sandbox; start one with npm run sandbox.");
        return 1;
    }
    if (args.length === 0) {
        console.error("--pulumi needs the command to run, e.g. npm run sandbox -- --pulumi preview --diff");
        return 2;
    }
    const stack = await sandboxStack();
    log(`$ pulumi ${args.join(" ")} --stack ${STACK}${["up", "preview", "refresh", "destroy", "config", "import"].includes(args[0]) ? ` --config-file ${path.relative(process.cwd(), stack.configFile)}` : ""}`);
    const run = await runPulumi(stack, args, { onOutput: (chunk) => process.stdout.write(chunk), timeoutMs: 3_600_000 });
    return run.code;
}

/** `--drift`: every host against the stack, as `npm run drift` compares them; exit 1 on drift. */
async function driftOfSandbox(): Promise<number> {
    const state = loadState();
    if (!alive(state)) {
        console.error("No running sandbox; start one with npm run sandbox.");
        return 1;
    }
    const args = ["tsx", path.join(ROOT, "scripts/drift.ts"), "--stack", STACK, "--stack-dir", STACK_DIR];
    log(`$ HX_SSH_KEY_FILE=${path.relative(process.cwd(), state.keyFile)} npm run drift -- --stack ${STACK} --stack-dir ${path.relative(process.cwd(), STACK_DIR)}`);
    const r = spawnSync("npx", args, { cwd: ROOT, stdio: "inherit", env: { ...process.env, HX_SSH_KEY_FILE: state.keyFile } });
    return r.status ?? 1;
}

async function main(): Promise<number> {
    const deps = spawnSync("bash", [path.join(ROOT, "scripts/install-system-deps.sh")], { stdio: "inherit" });
    if (deps.status !== 0) return 1;
    if (process.getuid?.() !== 0) {
        console.error("The sandbox needs root (mount namespaces, overlays, its own sshd per host). Run: sudo npm run sandbox");
        return 1;
    }
    const passthrough = process.argv.indexOf("--pulumi");
    if (passthrough >= 0) return pulumiOnSandbox(process.argv.slice(passthrough + 1));
    if (process.argv.includes("--down")) return down();
    if (process.argv.includes("--destroy")) return destroy();
    if (process.argv.includes("--drift")) return driftOfSandbox();
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
