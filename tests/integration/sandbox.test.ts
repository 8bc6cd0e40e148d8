/**
 * `npm run sandbox` end to end, as a user runs it: deploy over real SSH, run
 * every job as its timer would, restore test, the compliance report of the
 * bucket with its screenshot, summary; drift found and
 * repaired by a redeploy that leaves the installed files byte-identical;
 * destroy removes the automation and keeps backups and keys; down removes it all.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectDrift } from "../../scripts/drift";
import { loadStackFromFiles, renderStack } from "../../scripts/render";
import { inspectionRequests } from "../../render/drift";
import { sshExec } from "../../scripts/lib/ssh";
import { readTemplate } from "../../render/template";
import { shellCommand } from "../../render/shell";
import type { SandboxState } from "../../scripts/sandbox";
import type { Report } from "../../scripts/report/model";

const ROOT = path.resolve(__dirname, "../..");
const root = process.getuid?.() === 0;
const needed = ["unshare", "ssh", "ssh-keygen", "setpriv", "curl", "prometheus", "prometheus-node-exporter", "redis-server", "psql"];
const missing = needed.filter((t) => spawnSync("which", [t]).status !== 0);
if (process.env.CI === "true" && (!root || missing.length)) throw new Error(`sandbox test needs root and ${missing.join(", ")} in CI`);

const dir = mkdtempSync(path.join(tmpdir(), "hx-sandbox-e2e-"));
const env = { ...process.env, HX_SANDBOX_DIR: dir };
const sandbox = (...args: string[]) => spawnSync("npx", ["tsx", "scripts/sandbox.ts", ...args], { cwd: ROOT, env, encoding: "utf8", timeout: 900_000 });
const state = () => JSON.parse(readFileSync(path.join(dir, "sandbox.json"), "utf8")) as SandboxState;

describe.runIf(root && missing.length === 0)("npm run sandbox, end to end", () => {
    let first: ReturnType<typeof sandbox>;
    const exec = (command: string) => {
        const s = state();
        return sshExec({ host: "127.0.0.1", port: s.sshPort, user: "root", hostKey: s.hostKey, keyFile: s.keyFile }, command);
    };
    const effective = () => loadStackFromFiles(path.join(dir, "stack"), "sandbox");
    /** owner, group, mode and sha256 of every installed file, as the host reports them. */
    const inventory = async () => {
        const config = effective();
        const [h] = renderStack(config);
        const stdin = inspectionRequests(config, h.files, h.secretFiles);
        const s = state();
        const out = await sshExec({ host: "127.0.0.1", port: s.sshPort, user: "root", hostKey: s.hostKey, keyFile: s.keyFile }, shellCommand("bash", "-c", readTemplate("scripts/hx-drift-inspect.sh"), "inspect"), stdin);
        expect(out.code, out.stderr).toBe(0);
        return out.stdout;
    };

    let startedAt: number;
    beforeAll(() => {
        startedAt = Date.now();
        first = sandbox();
    }, 900_000);

    afterAll(() => {
        sandbox("--down");
    }, 120_000);

    it("deploys, runs every job successfully as its timer would, and prints the summary", () => {
        expect(first.status, `${first.stdout}\n${first.stderr}`).toBe(0);
        expect(first.stdout).toMatch(/Deployed: \d+ remote steps, [\d.]+ KiB copied/);
        for (const type of ["postgresql/sandbox_app", "redis/", "application/", "configuration/"]) {
            const row = first.stdout.split("\n").find((l) => l.trim().startsWith(type));
            expect(row, `${type} row in summary`).toBeDefined();
            expect(row).toMatch(/\sok\s+[\d.]+ KiB\s+[\d.]+ s\s+ok\s+ok\s*$/);
        }
        // The database host's PITR, into the bucket over HTTPS: after the one restart the deploy was allowed.
        expect(first.stdout).toMatch(/event=pitr_restart stanza=sandbox-hx-sandbox-pg command="runuser -u postgres -- \/usr\/lib\/postgresql\/15\/bin\/pg_ctl restart /);
        for (const target of ["full", "differential", "archive"]) expect(first.stdout).toMatch(new RegExp(`^ +pitr/${target} +ok `, "m"));
        expect(first.stdout).toMatch(/^ +pitr\/verify +ok +- +[\d.]+ s +ok /m);
        expect(first.stdout).toMatch(/PITR \(stanza sandbox-hx-sandbox-pg\): recovery window \d+ s, \S+Z \.\. \S+Z; WAL archive lag \d+ s; restart pending: no/);
        expect(first.stdout).toMatch(/node_exporter: http:\/\/127\.0\.0\.1:\d+\/metrics/);
        expect(first.stdout).toMatch(/Prometheus: +http:\/\/127\.0\.0\.1:\d+\//);
    });

    it("leaves the compliance report of its bucket (npm run report's code) and a full-page screenshot of it, and prints their paths", () => {
        const out = path.join(ROOT, "test-artifacts", "sandbox-report");
        expect(first.stdout).toMatch(/^Compliance report: \d+ sources, \d+ backups \(0 broken\), 0 missing sources, (\d+) of \1 with a passed restore test; 0 errors, \d+ warnings; MACs checked with the host's keyring$/m);
        for (const name of ["report.html", "report.json", "report.md", "report.png"]) {
            expect(first.stdout).toContain(`  test-artifacts/sandbox-report/${name}\n`);
            expect(existsSync(path.join(out, name)), name).toBe(true);
        }
        const report = JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")) as Report;
        // This run's report, not one left by an earlier run.
        expect(Date.parse(report.generatedAt)).toBeGreaterThanOrEqual(startedAt - 1000);
        expect(report).toMatchObject({ stack: "sandbox", macCheck: "keyring", missingSources: [] });
        const sources = report.sources.map((x) => `${x.host}/${x.type}/${x.target}`);
        expect([...new Set(report.sources.map((x) => `${x.host}/${x.type}`))].sort()).toEqual(["sandbox/application", "sandbox/configuration", "sandbox/postgresql", "sandbox/redis"]);
        expect(sources).toContain("sandbox/postgresql/sandbox_app");
        for (const x of report.sources) {
            expect(x.backups.every((b) => b.mac === "verified" && b.artifact === "present"), `${x.type}/${x.target}`).toBe(true);
            expect(x.lastRestoreTest, `${x.type}/${x.target}`).toMatchObject({ state: "ok", result: "ok", mac: "verified", manifestInBucket: true });
        }
        expect(readFileSync(path.join(out, "report.md"), "utf8")).toContain("| sandbox | postgresql | sandbox_app |");
        // A PNG (signature, then the IHDR chunk's width and height) of the whole page: the viewport's width, taller than one screen.
        const png = readFileSync(path.join(out, "report.png"));
        expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
        expect(png.subarray(12, 16).toString("ascii")).toBe("IHDR");
        expect(png.readUInt32BE(16)).toBe(1280);
        expect(png.readUInt32BE(20)).toBeGreaterThan(900);
        expect(png.length).toBeGreaterThan(50_000);
    });

    it("node_exporter serves the backup metrics and Prometheus loaded the project's rules", () => {
        const s = state();
        const metrics = spawnSync("curl", ["-fsS", `http://127.0.0.1:${s.ports.nodeExporter}/metrics`], { encoding: "utf8" }).stdout;
        expect(metrics).toMatch(/^backup_last_success_timestamp\{.*type="postgresql".*\} \d/m);
        const rules = JSON.parse(spawnSync("curl", ["-fsS", `http://127.0.0.1:${s.ports.prometheus}/api/v1/rules`], { encoding: "utf8" }).stdout);
        const names = rules.data.groups.flatMap((g: { rules: { name: string }[] }) => g.rules.map((r) => r.name));
        expect(names).toEqual(expect.arrayContaining(["BackupFailed", "BackupDelayed", "StorageFull", "VerificationFailed"]));
    });

    it("the PITR repository is in the bucket, and a restore to the latest point into a new directory starts with the sample data", async () => {
        const s = state();
        const listing = spawnSync("/usr/bin/aws", ["--endpoint-url", `https://127.0.0.1:${s.ports.s3}`, "--ca-bundle", s.s3CaFile, "s3", "ls", "--recursive", "s3://hx-backup-sandbox/"], {
            env: { ...process.env, AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_DEFAULT_REGION: "us-east-1" },
            encoding: "utf8",
        });
        expect(listing.status, listing.stderr).toBe(0);
        expect(listing.stdout).toMatch(/pgbackrest\/sandbox\/sandbox-v1\/backup\/sandbox-hx-sandbox-pg\/backup\.info/);
        const drill = "/var/lib/hx-sandbox/pitr-drill";
        const restore = await exec(`/var/lib/backup/scripts/backup-restore.sh --pitr --latest --target ${drill}`);
        expect(restore.code, restore.stderr).toBe(0);
        const pg = `runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl --pgdata=${drill} --wait --silent`;
        const count = await exec(`cd / && ${pg} --log=${drill}/drill.log --options="-c port=5499 -c listen_addresses='' -c unix_socket_directories=${drill}" start \
  && runuser -u postgres -- psql --no-psqlrc -At --host=${drill} --port=5499 --dbname=sandbox_app --command='SELECT count(*) FROM orders'; rc=$?; ${pg} stop; rm -rf ${drill}; exit $rc`);
        expect(count.code, count.stderr).toBe(0);
        expect(count.stdout.trim()).toBe("5000");
    });

    it("finds drift after hand edits, and a redeploy repairs it with byte-identical files while the jobs keep working", async () => {
        const before = await inventory();
        expect((await detectDrift(effective(), { keyFile: state().keyFile }))[0].drifts).toEqual([]);
        const edit = await exec("echo '# hand edit' >> /var/lib/backup/scripts/redis-backup.sh && chmod 0644 /etc/hx-backup/encryption.key");
        expect(edit.code).toBe(0);
        const drifted = (await detectDrift(effective(), { keyFile: state().keyFile }))[0].drifts.map((d) => `${d.kind} ${d.path}`);
        expect(drifted.sort()).toEqual(["changed /var/lib/backup/scripts/redis-backup.sh", "mode /etc/hx-backup/encryption.key"]);
        const cli = spawnSync("npx", ["tsx", "scripts/drift.ts", "--stack", "sandbox", "--stack-dir", path.join(dir, "stack")], { cwd: ROOT, env: { ...env, HX_SSH_KEY_FILE: state().keyFile }, encoding: "utf8" });
        expect(cli.status).toBe(1);

        const second = sandbox();
        expect(second.status, `${second.stdout}\n${second.stderr}`).toBe(0);
        expect(second.stdout).toContain("Sandbox already running");
        expect((await detectDrift(effective(), { keyFile: state().keyFile }))[0].drifts).toEqual([]);
        expect(await inventory()).toBe(before);
    }, 900_000);

    it("destroy removes timers, units, scripts, sudoers and the user, and keeps backups and keys", async () => {
        const r = sandbox("--destroy");
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/Left behind: 0 automation files, user: removed; kept: [1-9]\d* backup folders, [1-9]\d* key files/);
        const left = await exec("ls /opt/hx-backups/postgresql/*/ | grep -c '\\.enc$' ; test -s /etc/hx-backup/encryption.key && echo key");
        expect(left.stdout).toMatch(/^[1-9]\d*\nkey$/m);
    }, 300_000);

    it("down stops every sandbox process and removes its files", () => {
        const s = state();
        const r = sandbox("--down");
        expect(r.status).toBe(0);
        expect(existsSync(dir)).toBe(false);
        expect(spawnSync("kill", ["-0", String(s.pid)]).status).not.toBe(0);
        expect(spawnSync("kill", ["-0", String(s.s3Pid)]).status).not.toBe(0);
    }, 120_000);
});
