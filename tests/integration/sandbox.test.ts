/**
 * `npm run sandbox` end to end, as a user runs it: a fleet of three hosts
 * (db-1, app-1, mon-1), each its own sshd in private namespaces on its own
 * loopback address, deployed by the real Pulumi engine (`pulumi up`, state and
 * config under the sandbox's folder); every job on every host as its timer
 * would run it, restore tests, the compliance report of the bucket with its
 * screenshot, a summary per host; each host's node_exporter scraped by mon-1's
 * Prometheus; the PITR drill on db-1; a rerun that is an unchanged `pulumi up`
 * (no remote step runs again, by the hosts' own step logs); drift found after
 * hand edits; destroy (`pulumi destroy --exclude-protected`) keeps backups and
 * keys on every host; down removes it all; no tracked file changes.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectDrift } from "../../scripts/drift";
import { openStack, provideEngine, runPulumi, stackOutputs } from "../../scripts/lib/engine";
import { loadStackFromFiles, renderStack } from "../../scripts/render";
import { inspectionRequests } from "../../render/drift";
import { sshExec } from "../../scripts/lib/ssh";
import { readTemplate } from "../../render/template";
import { shellCommand } from "../../render/shell";
import { portFree } from "../../scripts/sandbox/host";
import type { SandboxHostState, SandboxState } from "../../scripts/sandbox";
import type { JobRun } from "../../scripts/sandbox/jobs";
import type { Report } from "../../scripts/report/model";

const ROOT = path.resolve(__dirname, "../..");
const root = process.getuid?.() === 0;
const needed = ["unshare", "ssh", "ssh-keygen", "sshd", "setpriv", "curl", "openssl", "prometheus", "prometheus-node-exporter", "promtool", "redis-server", "psql", "pgbackrest", "aws", "chromium"];
const missing = needed.filter((t) => spawnSync("sh", ["-c", 'command -v "$1" >/dev/null 2>&1 || test -x "/usr/sbin/$1"', "sh", t]).status !== 0);
// Under CI a missing tool or engine fails the run; elsewhere the test is skipped with the reason.
const isCI = process.env.CI === "true";
if (isCI && (!root || missing.length)) throw new Error(`the sandbox test needs root and ${missing.join(", ") || "nothing else"} in CI`);
const engineReady = spawnSync("bash", [path.join(ROOT, "scripts/install-pulumi.sh"), "--check"], { encoding: "utf8" }).status === 0;
const runnable = root && missing.length === 0 && (engineReady || isCI);
if (!runnable) console.warn(`[sandbox test] skipped: ${!root ? "not root" : missing.length ? `missing ${missing.join(", ")}` : "no Pulumi engine yet (bash scripts/install-pulumi.sh builds it)"}`);

const HOSTS = ["db-1", "app-1", "mon-1"];
const dir = mkdtempSync(path.join(tmpdir(), "hx-sandbox-e2e-"));
const env = { ...process.env, HX_SANDBOX_DIR: dir };
// A cold run on a busy two-core machine: generous, and never a timing assertion.
const RUN_TIMEOUT = 2_400_000;
const sandbox = (...args: string[]) => spawnSync("npx", ["tsx", "scripts/sandbox.ts", ...args], { cwd: ROOT, env, encoding: "utf8", timeout: RUN_TIMEOUT, maxBuffer: 256 << 20 });
const state = () => JSON.parse(readFileSync(path.join(dir, "sandbox.json"), "utf8")) as SandboxState;
const host = (name: string) => state().hosts.find((h) => h.name === name)!;
const gitStatus = () => spawnSync("git", ["status", "--porcelain", "--untracked-files=all"], { cwd: ROOT, encoding: "utf8" }).stdout;
/** Names git ignores (test-artifacts/, .engine/, ...): the sandbox and other tests may create them. */
const ignoredByGit = (names: string[]) => new Set(spawnSync("git", ["check-ignore", "--", ...names], { cwd: ROOT, encoding: "utf8" }).stdout.split("\n").filter(Boolean));
/** What pulumi's stack commands would write in the project folder: its Pulumi*.yaml files (by content) and the top-level names git sees. */
const projectFiles = () => {
    const names = readdirSync(ROOT).sort();
    const ignored = ignoredByGit(names);
    return {
        names: names.filter((n) => !ignored.has(n)),
        pulumi: Object.fromEntries(names.filter((n) => /^Pulumi\b.*\.ya?ml$/.test(n)).map((n) => [n, createHash("sha256").update(readFileSync(path.join(ROOT, n))).digest("hex")])),
    };
};
const stepCount = (h: SandboxHostState) => readFileSync(h.stepLog, "utf8").split("\n").filter(Boolean).length;
const lastRuns = () => (JSON.parse(readFileSync(path.join(dir, "last-run.json"), "utf8")) as { runs: JobRun[] }).runs;
const curl = (url: string) => spawnSync("curl", ["-fsS", url], { encoding: "utf8" });

/** The lines of the summary of one host (from its heading to the next blank line). */
function summaryOf(stdout: string, name: string): string[] {
    const lines = stdout.split("\n");
    const start = lines.findIndex((l) => l.startsWith(`Summary of ${name} (`));
    expect(start, `summary of ${name}`).toBeGreaterThanOrEqual(0);
    const end = lines.findIndex((l, i) => i > start && l.trim() === "");
    return lines.slice(start + 1, end);
}

async function waitFor<T>(what: string, probe: () => T | undefined, deadlineMs = 120_000): Promise<T> {
    const until = Date.now() + deadlineMs;
    for (;;) {
        const v = probe();
        if (v !== undefined) return v;
        if (Date.now() > until) throw new Error(`waited for ${what}`);
        await new Promise((r) => setTimeout(r, 1000));
    }
}

describe.runIf(runnable)("npm run sandbox: a three-host fleet deployed by the Pulumi engine, end to end", () => {
    let first: ReturnType<typeof sandbox>;
    let gitBefore: string;
    let filesBefore: ReturnType<typeof projectFiles>;
    const exec = (name: string, command: string, stdin = "") => {
        const s = state();
        const h = host(name);
        return sshExec({ host: h.address, port: h.ports.ssh, user: "root", hostKey: h.hostKey, keyFile: s.keyFile }, command, stdin, 300_000);
    };
    const effective = () => loadStackFromFiles(path.join(dir, "stack"), "sandbox");
    /** owner, group, mode and sha256 of every file installed on each host, as the hosts report them. */
    const inventory = async () => {
        const config = effective();
        const out: Record<string, string> = {};
        for (const h of renderStack(config)) {
            const r = await exec(h.host, shellCommand("bash", "-c", readTemplate("scripts/hx-drift-inspect.sh"), "inspect"), inspectionRequests(config, h.files, h.secretFiles));
            expect(r.code, r.stderr).toBe(0);
            out[h.host] = r.stdout;
        }
        return out;
    };

    let startedAt: number;
    beforeAll(() => {
        gitBefore = gitStatus();
        filesBefore = projectFiles();
        startedAt = Date.now();
        first = sandbox();
    }, RUN_TIMEOUT);

    afterAll(() => {
        sandbox("--down");
    }, 300_000);

    it("deploys with pulumi up (its progress streamed), runs every job of every host successfully as its timer would, and prints a summary per host", async () => {
        expect(first.status, `${first.stdout}\n${first.stderr}`).toBe(0);
        expect(state().hosts.map((h) => [h.name, h.address])).toEqual([["db-1", "127.0.0.2"], ["app-1", "127.0.0.3"], ["mon-1", "127.0.0.4"]]);
        // Pulumi's own output, as it went: each remote command as it is created, then its summary.
        expect(first.stdout).toContain("$ pulumi up --yes --suppress-outputs --stack sandbox --config-file ");
        expect(first.stdout).toMatch(/^ \+ +command:remote:Command db-1-account created/m);
        expect(first.stdout).toMatch(/^ \+ +command:remote:Command monitoring-alert-rules created .*\n/m);
        expect(first.stdout).toMatch(/^Resources:\n +\+ \d+ created\n/m);
        const deployed = /^Deployed with pulumi up in [\d.]+ s: (\d+) remote steps ran \(db-1 (\d+), app-1 (\d+), mon-1 (\d+)\)\.$/m.exec(first.stdout);
        expect(deployed, "the Deployed line").not.toBeNull();
        for (const n of deployed!.slice(2)) expect(Number(n)).toBeGreaterThan(0);
        for (const h of state().hosts) expect(stepCount(h), h.name).toBeGreaterThan(0);

        // The job list comes from the stack's outputs in Pulumi's state: every job of every host ran, and succeeded.
        const stack = await openStack(provideEngine(), { stack: "sandbox", backendDir: path.join(dir, "state"), configFile: path.join(dir, "stack", "Pulumi.sandbox.yaml"), passphraseFile: path.join(dir, "passphrase") });
        const outputs = (await stackOutputs(stack)).hosts as Record<string, { jobs: { name: string; timer: string }[]; pitr: { stanza: string } | null }>;
        expect(Object.keys(outputs).sort()).toEqual([...HOSTS].sort());
        const runs = lastRuns();
        for (const r of runs) expect(r.code, `${r.unit}: ${r.stderr.slice(-2000)}`).toBe(0);
        const units = new Set(runs.map((r) => r.unit));
        for (const [name, out] of Object.entries(outputs)) for (const job of out.jobs) expect(units.has(job.timer.replace(/\.timer$/, ".service")), `${name} ${job.name}`).toBe(true);
        expect(outputs["db-1"].pitr?.stanza).toBe("db-1-hx-sandbox-pg");
        expect(outputs["app-1"].pitr ?? null).toBeNull();

        const row = /\sok\s+[\d.]+ KiB\s+[\d.]+ s\s+ok\s+ok\s*$/;
        const expected: Record<string, string[]> = {
            "db-1": ["postgresql/sandbox_app", "postgresql/_globals", "redis/", "configuration/"],
            "app-1": ["application/", "configuration/"],
            "mon-1": ["configuration/"],
        };
        for (const [name, types] of Object.entries(expected)) {
            const summary = summaryOf(first.stdout, name);
            for (const type of types) expect(summary.find((l) => l.trim().startsWith(type)), `${name}: ${type} row`).toMatch(row);
            for (const other of ["postgresql/", "redis/", "application/"].filter((t) => !types.some((x) => x.startsWith(t)))) {
                expect(summary.some((l) => l.trim().startsWith(other)), `${name} has no ${other} row`).toBe(false);
            }
        }
        // The database host's PITR, into the bucket over HTTPS: after the one restart the deploy was allowed (the step's output, through Pulumi).
        expect(first.stdout).toMatch(/db-1-pitr-archiving .*event=pitr_restart stanza=db-1-hx-sandbox-pg command="runuser -u postgres -- \/usr\/lib\/postgresql\/15\/bin\/pg_ctl restart /);
        const db = summaryOf(first.stdout, "db-1");
        for (const target of ["full", "differential", "archive"]) expect(db.some((l) => new RegExp(`^ +pitr/${target} +ok `).test(l)), `pitr/${target}`).toBe(true);
        expect(db.some((l) => /^ +pitr\/verify +ok +- +[\d.]+ s +ok /.test(l))).toBe(true);
        expect(db.join("\n")).toMatch(/PITR \(stanza db-1-hx-sandbox-pg\): recovery window \d+ s, \S+Z \.\. \S+Z; WAL archive lag \d+ s; restart pending: no/);
        for (const [name, address] of [["db-1", "127.0.0.2"], ["app-1", "127.0.0.3"], ["mon-1", "127.0.0.4"]]) {
            expect(first.stdout).toMatch(new RegExp(`^node_exporter ${name} +http://${address.replace(/\./g, "\\.")}:\\d+/metrics$`, "m"));
        }
        expect(first.stdout).toMatch(/^Prometheus \(mon-1\): http:\/\/127\.0\.0\.4:\d+\//m);
    });

    it("keeps every secret out of its output, the effective stack file and Pulumi's state", () => {
        const s = state();
        const keyBody = readFileSync(s.keyFile, "utf8").split("\n").filter((l) => l && !l.startsWith("-----")).join("");
        expect(keyBody.length).toBeGreaterThan(100);
        const pieces = [keyBody.slice(0, 40), keyBody.slice(-40)];
        const stackFile = readFileSync(path.join(dir, "stack", "Pulumi.sandbox.yaml"), "utf8");
        expect(stackFile).toMatch(/^ +hx-backup:sshPrivateKey:\n +secure: v1:/m);
        const stateFiles = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(path.join(d, n)).isDirectory() ? stateFiles(path.join(d, n)) : [path.join(d, n)]));
        const stateText = stateFiles(path.join(dir, "state")).map((f) => readFileSync(f, "utf8")).join("\n");
        expect(stateText).toContain("db-1-keyring");
        for (const p of pieces) {
            for (const [where, text] of [["stdout", first.stdout], ["stderr", first.stderr], ["stack file", stackFile], ["state", stateText]] as const) {
                expect(text.includes(p), `the SSH key in ${where}`).toBe(false);
            }
        }
    });

    it("leaves the compliance report of its bucket, covering every host's sources, and a full-page screenshot of it", () => {
        const out = path.join(ROOT, "test-artifacts", "sandbox-report");
        expect(first.stdout).toMatch(/^Compliance report: \d+ sources on 3 hosts, \d+ backups \(0 broken\), 0 missing sources, (\d+) of \1 with a passed restore test; 0 errors, \d+ warnings; MACs checked with the hosts' keyring$/m);
        for (const name of ["report.html", "report.json", "report.md", "report.png"]) {
            expect(first.stdout).toContain(`  test-artifacts/sandbox-report/${name}\n`);
            expect(existsSync(path.join(out, name)), name).toBe(true);
        }
        const report = JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")) as Report;
        // This run's report, not one left by an earlier run.
        expect(Date.parse(report.generatedAt)).toBeGreaterThanOrEqual(startedAt - 1000);
        expect(report).toMatchObject({ stack: "sandbox", macCheck: "keyring", missingSources: [] });
        expect([...new Set(report.sources.map((x) => `${x.host}/${x.type}`))].sort()).toEqual([
            "app-1/application", "app-1/configuration", "db-1/configuration", "db-1/postgresql", "db-1/redis", "mon-1/configuration",
        ]);
        expect(report.sources.map((x) => `${x.host}/${x.type}/${x.target}`)).toContain("db-1/postgresql/sandbox_app");
        for (const x of report.sources) {
            expect(x.backups.every((b) => b.mac === "verified" && b.artifact === "present"), `${x.host}/${x.type}/${x.target}`).toBe(true);
            expect(x.lastRestoreTest, `${x.host}/${x.type}/${x.target}`).toMatchObject({ state: "ok", result: "ok", mac: "verified", manifestInBucket: true });
        }
        expect(report.pitr.map((p) => `${p.host}/${p.target}`)).toEqual(["db-1/db-1-hx-sandbox-pg"]);
        const md = readFileSync(path.join(out, "report.md"), "utf8");
        for (const line of ["| db-1 | postgresql | sandbox_app |", "| app-1 | application |", "| mon-1 | configuration |"]) expect(md).toContain(line);
        // A PNG (signature, then the IHDR chunk's width and height) of the whole page: the viewport's width, taller than one screen.
        const png = readFileSync(path.join(out, "report.png"));
        expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
        expect(png.subarray(12, 16).toString("ascii")).toBe("IHDR");
        expect(png.readUInt32BE(16)).toBe(1280);
        expect(png.readUInt32BE(20)).toBeGreaterThan(900);
        expect(png.length).toBeGreaterThan(50_000);
    });

    it("each host's node_exporter serves its own backup metrics on its own address, and mon-1's Prometheus loaded the rules and scrapes every host", async () => {
        const types: Record<string, string[]> = { "db-1": ["postgresql", "redis", "pitr", "configuration"], "app-1": ["application", "configuration"], "mon-1": ["configuration"] };
        for (const h of state().hosts) {
            const metrics = curl(`http://${h.address}:${h.ports.nodeExporter}/metrics`);
            expect(metrics.status, `${h.name} node_exporter`).toBe(0);
            const seen = new Set([...metrics.stdout.matchAll(/^backup_last_success_timestamp\{[^}]*type="([^"]+)"/gm)].map((m) => m[1]));
            for (const t of types[h.name]) expect(seen.has(t), `${h.name} reports ${t}`).toBe(true);
            for (const t of ["postgresql", "redis", "application"].filter((x) => !types[h.name].includes(x))) expect(seen.has(t), `${h.name} does not report ${t}`).toBe(false);
            // Its test-monitoring.sh checks this very URL (the per-host nodeExporterUrl).
            const conf = await exec(h.name, "cat /etc/hx-backup/backup.json");
            expect(JSON.parse(conf.stdout).monitoring.nodeExporterUrl).toBe(`http://${h.address}:${h.ports.nodeExporter}/metrics`);
        }
        const mon = host("mon-1");
        const prom = `http://${mon.address}:${mon.ports.prometheus}`;
        const rules = JSON.parse(curl(`${prom}/api/v1/rules`).stdout);
        const names = rules.data.groups.flatMap((g: { rules: { name: string }[] }) => g.rules.map((r) => r.name));
        expect(names).toEqual(expect.arrayContaining(["BackupFailed", "BackupDelayed", "StorageFull", "VerificationFailed", "WalArchiveLag"]));
        // Prometheus scrapes every 5 s: wait for a scrape of every host that shows its backup metrics.
        const instances = await waitFor("backup metrics of every host in Prometheus", () => {
            const r = JSON.parse(curl(`${prom}/api/v1/query?query=${encodeURIComponent("count by (instance) (backup_last_success_timestamp)")}`).stdout || "{}");
            const found = (r.data?.result ?? []).map((x: { metric: { instance: string } }) => x.metric.instance).sort();
            return found.length === HOSTS.length ? found : undefined;
        });
        expect(instances).toEqual([...HOSTS].sort());
        const targets = JSON.parse(curl(`${prom}/api/v1/targets`).stdout).data.activeTargets as { labels: { instance: string }; scrapeUrl: string; health: string }[];
        expect(targets.map((t) => `${t.labels.instance} ${t.health}`).sort()).toEqual(HOSTS.map((h) => `${h} up`).sort());
        for (const t of targets) expect(t.scrapeUrl).toBe(`http://${host(t.labels.instance).address}:${host(t.labels.instance).ports.nodeExporter}/metrics`);
    });

    it("db-1's PITR repository is in the bucket, and a restore to the latest point into a new directory starts with the sample data", async () => {
        const s = state();
        const listing = spawnSync("aws", ["--endpoint-url", `https://127.0.0.1:${s.s3!.port}`, "--ca-bundle", s.s3!.caFile, "s3", "ls", "--recursive", "s3://hx-backup-sandbox/"], {
            env: { ...process.env, AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_DEFAULT_REGION: "us-east-1" },
            encoding: "utf8",
        });
        expect(listing.status, listing.stderr).toBe(0);
        expect(listing.stdout).toMatch(/pgbackrest\/db-1\/sandbox-v1\/backup\/db-1-hx-sandbox-pg\/backup\.info/);
        const drill = "/var/lib/hx-sandbox/pitr-drill";
        const restore = await exec("db-1", `/var/lib/backup/scripts/backup-restore.sh --pitr --latest --target ${drill}`);
        expect(restore.code, restore.stderr).toBe(0);
        const pg = `runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl --pgdata=${drill} --wait --silent`;
        const count = await exec("db-1", `cd / && ${pg} --log=${drill}/drill.log --options="-c port=5499 -c listen_addresses='' -c unix_socket_directories=${drill}" start \
  && runuser -u postgres -- psql --no-psqlrc -At --host=${drill} --port=5499 --dbname=sandbox_app --command='SELECT count(*) FROM orders'; rc=$?; ${pg} stop; rm -rf ${drill}; exit $rc`);
        expect(count.code, count.stderr).toBe(0);
        expect(count.stdout.trim()).toBe("5000");
    });

    it("a rerun is a pulumi up with no changes: no remote step runs again, the installed files stay byte-identical, and the jobs keep working", async () => {
        const before = await inventory();
        const steps = Object.fromEntries(state().hosts.map((h) => [h.name, stepCount(h)]));
        const second = sandbox();
        expect(second.status, `${second.stdout}\n${second.stderr}`).toBe(0);
        expect(second.stdout).toContain("Sandbox already running");
        // Pulumi's own summary: everything unchanged, nothing created, updated, replaced or deleted.
        const summaries = [...second.stdout.matchAll(/^Resources:\n((?: {4}.+\n)+)/gm)].map((m) => m[1]);
        expect(summaries.length).toBeGreaterThan(0);
        for (const s of summaries) expect(s.trim()).toMatch(/^\d+ unchanged$/);
        expect(second.stdout).not.toMatch(/^ [+~-] +command:remote:Command /m);
        expect(second.stdout).toMatch(/^Deployed with pulumi up in [\d.]+ s: 0 remote steps ran \(db-1 0, app-1 0, mon-1 0\)\.$/m);
        // The hosts' own count (sshd notes every step command it runs), not only Pulumi's word.
        for (const h of state().hosts) expect(stepCount(h), h.name).toBe(steps[h.name]);
        expect(await inventory()).toEqual(before);
        for (const r of lastRuns()) expect(r.code, `${r.unit}: ${r.stderr.slice(-2000)}`).toBe(0);
    }, RUN_TIMEOUT);

    it("drift finds hand edits on the host where they were made, through the effective stack file", async () => {
        expect((await detectDrift(effective(), { keyFile: state().keyFile })).map((d) => [d.host, d.drifts, d.error])).toEqual(HOSTS.map((h) => [h, [], undefined]));
        const edit = await exec("app-1", "cp -p /var/lib/backup/scripts/backup-sync.sh /root/sync.orig && echo '# hand edit' >> /var/lib/backup/scripts/backup-sync.sh && chmod 0644 /etc/hx-backup/encryption.key");
        expect(edit.code, edit.stderr).toBe(0);
        const drifted = await detectDrift(effective(), { keyFile: state().keyFile });
        expect(drifted.filter((d) => d.host !== "app-1").every((d) => d.drifts.length === 0)).toBe(true);
        expect(drifted.find((d) => d.host === "app-1")!.drifts.map((d) => `${d.kind} ${d.path}`).sort()).toEqual(["changed /var/lib/backup/scripts/backup-sync.sh", "mode /etc/hx-backup/encryption.key"]);
        const cli = spawnSync("npx", ["tsx", "scripts/drift.ts", "--stack", "sandbox", "--stack-dir", path.join(dir, "stack")], { cwd: ROOT, env: { ...env, HX_SSH_KEY_FILE: state().keyFile }, encoding: "utf8" });
        expect(cli.status, cli.stderr).toBe(1);
        expect(cli.stdout).toMatch(/app-1/);
        // Put them back: an unchanged pulumi up does not look at the hosts (that is what drift is for).
        const undo = await exec("app-1", "mv /root/sync.orig /var/lib/backup/scripts/backup-sync.sh && chmod 0600 /etc/hx-backup/encryption.key");
        expect(undo.code, undo.stderr).toBe(0);
        expect((await detectDrift(effective(), { keyFile: state().keyFile })).every((d) => d.drifts.length === 0 && !d.error)).toBe(true);
    }, 300_000);

    it("destroy is pulumi destroy --exclude-protected: on every host the automation and the user go, backups and keys stay", async () => {
        const r = sandbox("--destroy");
        expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
        expect(r.stdout).toContain("$ pulumi destroy --yes --exclude-protected --suppress-outputs --stack sandbox --config-file ");
        expect(r.stdout).toMatch(/^ - +command:remote:Command db-1-account deleted/m);
        expect(r.stdout).toMatch(/There are still \d+ protected resources/);
        for (const name of HOSTS) {
            expect(r.stdout).toMatch(new RegExp(`^  ${name}: left behind: 0 automation files, user: removed; kept: [1-9]\\d* backup folders, [1-9]\\d* key files\\.$`, "m"));
            const left = await exec(name, "find /opt/hx-backups -name '*.enc' | grep -c . ; test -s /etc/hx-backup/encryption.key && ls /etc/hx-backup/keys/*.key >/dev/null && echo key");
            expect(left.stdout, name).toMatch(/^[1-9]\d*\nkey$/m);
        }
        // The keys stay in Pulumi's state too (protected): a later pulumi up reuses them; no remote command is left.
        const stack = await openStack(provideEngine(), { stack: "sandbox", backendDir: path.join(dir, "state"), configFile: path.join(dir, "stack", "Pulumi.sandbox.yaml"), passphraseFile: path.join(dir, "passphrase") });
        const exported = await runPulumi(stack, ["stack", "export"]);
        expect(exported.code, exported.stderr).toBe(0);
        const resources = (JSON.parse(exported.stdout) as { deployment: { resources?: { type: string; urn: string; protect?: boolean }[] } }).deployment.resources ?? [];
        expect(resources.filter((x) => x.type === "random:index/randomPassword:RandomPassword").map((x) => [x.urn.split("::").pop(), x.protect])).toEqual([["keys-sandbox-v1", true]]);
        expect(resources.filter((x) => x.type === "command:remote:Command")).toEqual([]);
    }, RUN_TIMEOUT);

    it("down stops every process of every host and s3rver, frees their addresses' ports and removes the folder; no tracked file changed", async () => {
        const s = state();
        const r = sandbox("--down");
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toContain("Sandbox stopped (3 hosts and s3rver)");
        expect(existsSync(dir)).toBe(false);
        for (const h of s.hosts) {
            expect(spawnSync("kill", ["-0", String(h.pid)]).status, `${h.name} namespace`).not.toBe(0);
            expect(await portFree(h.address, h.ports.ssh), `${h.name} sshd port`).toBe(true);
            expect(await portFree(h.address, h.ports.nodeExporter), `${h.name} node_exporter port`).toBe(true);
        }
        expect(spawnSync("kill", ["-0", String(s.s3!.pid)]).status).not.toBe(0);
        // pulumi's stack commands wrote only under the sandbox's folder: not Pulumi.sandbox.yaml, not Pulumi.yaml, nothing new.
        expect(projectFiles()).toEqual(filesBefore);
        // The whole `git status` too where nobody else works in the checkout meanwhile (CI's clean clone).
        if (isCI) expect(gitStatus()).toBe(gitBefore);
    }, 300_000);
});
