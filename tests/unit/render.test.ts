/**
 * What each host receives, checked by the real tools: `systemd-analyze verify`
 * on the units, `visudo -cf` on the sudoers drop-in (and the install step
 * refusing a broken one), `promtool check rules` on the alert rules. Hostile
 * config values stay data; identical inputs give identical steps, and a change
 * re-runs only the steps it touches.
 */
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigValidationError, loadStackConfig } from "../../config/load";
import { rawFromFiles } from "../../config/raw";
import type { StackConfig } from "../../config/types";
import { serializeHostConfig } from "../../render/hostConfig";
import { planHost, scriptTemplates, SCRIPT_TEMPLATE_DIR, type HostPlan } from "../../render/hostPlan";
import { planMonitoring, renderRules } from "../../render/monitoringPlan";
import { sha256, wrapStep } from "../../render/remote";
import { shellQuote } from "../../render/shell";
import { filesDocument, filesStep, installFilesScript, withDigest, type Step } from "../../render/step";
import { PRIVILEGED_HELPER, SUDOERS_PATH } from "../../render/sudoers";
import { UNIT_DIR } from "../../render/systemd";
import { readTemplate, TEMPLATE_ROOT } from "../../render/template";
import { renderFacts, renderStack, writeTree } from "../../scripts/render";
import { baseRaw, breakRules, isRoot, load, parseUnit, PROJECT_DIR, removeDir, requireTools, run, skipWithout, stack, STACKS, parseFilesDocument, stdinFile, stdinWith, tempDir, unitValue } from "./helpers";

// Lets a test change one script template's content, as an edited file in templates/scripts would.
const templateOverrides = vi.hoisted(() => new Map<string, string>());
vi.mock("../../render/template", async (importOriginal) => {
    const original = await importOriginal<typeof import("../../render/template")>();
    return { ...original, readTemplate: (relative: string) => templateOverrides.get(relative) ?? original.readTemplate(relative) };
});

const out = tempDir("hx-render-");
afterAll(() => removeDir(out));

interface RenderedRoot {
    readonly stackName: string;
    readonly config: StackConfig;
    readonly host: string;
    readonly root: string;
    readonly plan: HostPlan;
    /** Executables referenced by units that the plan does not ship (stubbed so verify can run). */
    readonly stubbed: string[];
}

/** The executable of an ExecStart value (after systemd's prefix characters). */
const execPath = (value: string) => value.replace(/^[-@:+!]+/, "").split(/\s+/)[0];

function unitFiles(root: string, ext: ".service" | ".timer" | ""): string[] {
    const dir = path.join(root, UNIT_DIR);
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(ext) && f.startsWith("hx-backup")).sort().map((f) => path.join(dir, f)) : [];
}

const roots: RenderedRoot[] = [];

beforeAll(() => {
    for (const stackName of STACKS) {
        const config = stack(stackName);
        const facts = renderFacts(config);
        for (const rendered of renderStack(config, facts)) {
            const dir = path.join(out, stackName);
            writeTree(dir, rendered);
            const root = path.join(dir, rendered.host);
            // systemd-analyze verify --root resolves the units ours refer to (timers.target, network-online.target) inside the root.
            const systemUnits = ["/usr/lib/systemd/system", "/lib/systemd/system"].find((d) => existsSync(d));
            if (systemUnits) {
                mkdirSync(path.join(root, "usr/lib/systemd"), { recursive: true });
                cpSync(systemUnits, path.join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
            }
            const stubbed: string[] = [];
            for (const unit of unitFiles(root, ".service")) {
                for (const exec of parseUnit(readFileSync(unit, "utf8")).get("Service")?.get("ExecStart") ?? []) {
                    const p = execPath(exec);
                    const target = path.join(root, p);
                    if (existsSync(target)) continue;
                    mkdirSync(path.dirname(target), { recursive: true });
                    writeFileSync(target, "#!/bin/sh\nexit 0\n");
                    chmodSync(target, 0o755);
                    stubbed.push(p);
                }
            }
            const host = config.hosts.find((h) => h.name === rendered.host)!;
            roots.push({ stackName, config, host: rendered.host, root, plan: planHost(config, host, facts), stubbed });
        }
    }
});

describe("the rendered tree", () => {
    it("covers every host of both stacks", () => {
        expect(roots.map((r) => `${r.stackName}/${r.host}`)).toEqual(["production/db-1", "production/db-2", "production/app-1", "production/mon-1", "sandbox/db-1", "sandbox/app-1", "sandbox/mon-1"]);
    });

    it("holds exactly the planned files, with their content and mode, and never a secret file", () => {
        for (const r of roots) {
            const rendered = renderStack(r.config).find((h) => h.host === r.host)!;
            for (const f of rendered.files) {
                const onDisk = path.join(r.root, f.path);
                expect(readFileSync(onDisk, "utf8"), f.path).toBe(f.content);
                expect((statSync(onDisk).mode & 0o777).toString(8).padStart(4, "0"), f.path).toBe(f.mode);
            }
            for (const s of rendered.secretFiles) expect(existsSync(path.join(r.root, s.path)), s.path).toBe(false);
            const manifest = readFileSync(path.join(r.root, "MANIFEST.tsv"), "utf8");
            for (const f of rendered.files) expect(manifest).toContain(`${f.path}\t${f.owner}\t${f.group}\t${f.mode}\t${sha256(f.content)}\n`);
            for (const s of rendered.secretFiles) expect(manifest).toContain(`${s.path}\t${s.owner}\t${s.group}\t${s.mode}\t(secret: written at deploy, never rendered)`);
        }
    });

    it("ships every script a unit or the sudoers drop-in runs (templates/scripts)", () => {
        const shipped = new Set(scriptTemplates());
        const missing = new Set<string>();
        for (const r of roots) {
            for (const job of r.plan.jobs) if (!shipped.has(job.script)) missing.add(job.script);
            if (r.plan.host.roles.some((role) => role !== "monitoring") && !shipped.has(PRIVILEGED_HELPER)) missing.add(PRIVILEGED_HELPER);
        }
        expect([...missing].sort(), `referenced but not in templates/${SCRIPT_TEMPLATE_DIR}`).toEqual([]);
    });
});

const noSystemd = skipWithout("systemd-analyze");

describe.skipIf(noSystemd)("the real systemd-analyze verify", () => {
    const BAD = /Unknown key|Unknown section|Unknown lvalue|Failed to parse|Invalid|not executable|is not absolute|Missing/i;

    it("passes every .service and .timer of every host, with no warnings", () => {
        requireTools("systemd-analyze");
        for (const r of roots) {
            expect(existsSync(path.join(r.root, "usr/lib/systemd/system/timers.target")), "system units copied into the root").toBe(true);
            const units = [...unitFiles(r.root, ".service"), ...unitFiles(r.root, ".timer")];
            expect(units.length, r.host).toBeGreaterThanOrEqual(4);
            const res = run("systemd-analyze", ["verify", `--root=${r.root}`, ...units], { env: { ...process.env, SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "" } });
            expect(res.stderr, `${r.stackName}/${r.host}`).not.toMatch(BAD);
            expect(res.status, `${r.stackName}/${r.host}: ${res.stderr}`).toBe(0);
        }
    });

    it("the harness notices an unknown key and a missing ExecStart binary", () => {
        requireTools("systemd-analyze");
        const r = roots[0];
        const bad = path.join(r.root, UNIT_DIR, "hx-backup-zz-broken.timer");
        const service = unitFiles(r.root, ".service")[0];
        writeFileSync(bad, `${readFileSync(unitFiles(r.root, ".timer")[0], "utf8")}\n[Timer]\nPersistant=true\n`);
        const missing = path.join(r.root, UNIT_DIR, "hx-backup-zz-missing.service");
        writeFileSync(missing, readFileSync(service, "utf8").replace(/^ExecStart=.*$/m, "ExecStart=/nonexistent/hx-backup-nothing.sh"));
        try {
            const res = run("systemd-analyze", ["verify", `--root=${r.root}`, bad, missing]);
            expect(res.stderr).toMatch(/Unknown key 'Persistant' in section \[Timer\]/);
            expect(res.stderr).toMatch(/nonexistent\/hx-backup-nothing\.sh.*not executable/);
            expect(res.status).not.toBe(0);
        } finally {
            removeDir(bad);
            removeDir(missing);
        }
    });
});

describe("unit contents", () => {
    it("one service and one timer per job; timers Persistent with RandomizedDelaySec and the job's OnCalendar", () => {
        for (const r of roots) {
            expect(r.plan.jobs.length, r.host).toBeGreaterThan(0);
            for (const job of r.plan.jobs) {
                const timer = parseUnit(readFileSync(path.join(r.root, UNIT_DIR, `hx-backup-${job.name}.timer`), "utf8"));
                expect(unitValue(timer, "Timer", "OnCalendar")).toBe(job.onCalendar);
                if (job.scheduleKey !== "host") expect(job.onCalendar).toBe(r.config.schedules[job.scheduleKey].onCalendar);
                expect(unitValue(timer, "Timer", "Persistent")).toBe("true");
                expect(unitValue(timer, "Timer", "RandomizedDelaySec")).toBe(String(job.jitterSeconds));
                expect(unitValue(timer, "Timer", "Unit")).toBe(`hx-backup-${job.name}.service`);
                expect(unitValue(timer, "Install", "WantedBy")).toBe("timers.target");
                expect(unitValue(timer, "Unit", "Description")).toContain(job.description);
                expect(existsSync(path.join(r.root, UNIT_DIR, `hx-backup-${job.name}.service`))).toBe(true);
            }
            expect(unitFiles(r.root, ".timer")).toHaveLength(r.plan.jobs.length);
        }
        expect(stack("production").randomizedDelaySec).toBe(300);
    });

    it("job services run as the backup user (pgBackRest's as postgres, in the backup group), hardened, writing only to storage, logs and metrics (and pgBackRest's directories)", () => {
        let pitrJobs = 0;
        for (const r of roots) {
            const p = r.config.paths;
            for (const job of r.plan.jobs) {
                const s = parseUnit(readFileSync(path.join(r.root, UNIT_DIR, `hx-backup-${job.name}.service`), "utf8"));
                const pgbackrest = job.type === "pitr" ? ["/var/log/pgbackrest", "/var/spool/pgbackrest", "/var/lib/pgbackrest/lock"] : [];
                if (job.type === "pitr") {
                    pitrJobs++;
                    expect(unitValue(s, "Service", "User")).toBe("postgres");
                    expect(unitValue(s, "Service", "Group")).toBe("postgres");
                    expect(unitValue(s, "Service", "SupplementaryGroups")).toBe(r.config.backupUser);
                    // RemoveIPC would take the live server's shared memory with it when the job ends.
                    expect(unitValue(s, "Service", "RemoveIPC")).toBe("no");
                } else {
                    expect(unitValue(s, "Service", "RemoveIPC")).toBe("yes");
                    expect(unitValue(s, "Service", "User")).toBe(r.config.backupUser);
                    expect(unitValue(s, "Service", "Group")).toBe(r.config.backupUser);
                    expect(unitValue(s, "Service", "SupplementaryGroups")).toBe("");
                }
                expect(unitValue(s, "Service", "Type")).toBe("oneshot");
                expect(unitValue(s, "Service", "NoNewPrivileges")).toBe("yes");
                expect(unitValue(s, "Service", "ProtectSystem")).toBe("strict");
                expect(unitValue(s, "Service", "PrivateTmp")).toBe("yes");
                expect(unitValue(s, "Service", "ProtectHome")).toMatch(/^(yes|read-only|tmpfs)$/);
                expect(unitValue(s, "Service", "PrivateDevices")).toBe("yes");
                expect(unitValue(s, "Service", "RestrictSUIDSGID")).toBe("yes");
                expect(unitValue(s, "Service", "ReadWritePaths").split(/\s+/).sort()).toEqual([p.logDir, p.storageDir, p.textfileDir, ...pgbackrest].map((d) => `-${d}`).sort());
                expect(unitValue(s, "Service", "ExecStart")).toBe([`${p.scriptDir}/${job.script}`, ...job.args].join(" "));
                expect(s.get("Service")!.get("Environment")).toContain(`HX_BACKUP_CONFIG=${p.configDir}/backup.json`);
                const caps = unitValue(s, "Service", "CapabilityBoundingSet");
                expect(unitValue(s, "Service", "AmbientCapabilities")).toBe(caps);
                expect(caps).not.toMatch(/CAP_SYS_ADMIN|CAP_SETUID|CAP_DAC_OVERRIDE|CAP_CHOWN|CAP_FOWNER/);
            }
        }
        expect(pitrJobs).toBeGreaterThan(0);
    });

    it("runs by hand and through sudo find the config the units name: the config step writes its location beside the library, for any configDir", () => {
        for (const configDir of ["/etc/hx-backup", "/opt/hx/etc"]) {
            const config = load({ ...baseRaw(), configDir });
            const plan = planHost(config, config.hosts[0], renderFacts(config));
            const step = plan.steps.find((s) => s.name === "config")!;
            expect(step.files).toContainEqual(expect.objectContaining({ path: `${config.paths.scriptDir}/lib/config-path`, owner: "root", group: "root", mode: "0644", content: `${configDir}/backup.json\n` }));
            const units = plan.steps.find((s) => s.name === "units")!;
            const service = units.files.find((f) => /\/hx-backup-.*\.service$/.test(f.path))!;
            expect(service.content).toContain(`Environment=HX_BACKUP_CONFIG=${configDir}/backup.json`);
            // Scripts after the config they read; sudoers and units (what runs them) after the scripts and the location.
            expect(plan.steps.find((s) => s.name === "files")!.dependsOn).toContain("config");
            for (const s of plan.steps.filter((x) => x.name === "sudoers" || x.name === "units")) expect(s.dependsOn, s.name).toEqual(expect.arrayContaining(["config", "files"]));
        }
    });

    it("PostgreSQL maintenance services are hardened too", () => {
        const maintenance = roots.flatMap((r) => unitFiles(r.root, ".service").filter((f) => /postgresql-(vacuum-)?analyze\.service$/.test(f)));
        expect(maintenance.length).toBeGreaterThan(0);
        for (const f of maintenance) {
            const s = parseUnit(readFileSync(f, "utf8"));
            expect(unitValue(s, "Service", "User")).toBe("postgres");
            expect(unitValue(s, "Service", "NoNewPrivileges")).toBe("yes");
            expect(unitValue(s, "Service", "ProtectSystem")).toBe("strict");
            expect(unitValue(s, "Service", "PrivateTmp")).toBe("yes");
            for (const exec of s.get("Service")!.get("ExecStart")!) expect(exec).toMatch(/^\/usr\/bin\/vacuumdb --analyze(-only)? --quiet --host=\S+ --port=\d+ (--dbname=\S+|--all)$/);
        }
    });
});

describe("systemd command-line escaping", () => {
    /** What systemd passes on for one ExecStart word without ${...}: "$$" is a literal "$" (systemd.service(5), "Command lines"). */
    const systemdArgument = (word: string) => word.replace(/\$\$/g, "$");

    it("a database name with '$' (which the name check allows) reaches vacuumdb unchanged", () => {
        const { raw } = rawFromFiles(PROJECT_DIR, "production");
        const hosts = (raw.hosts as Record<string, unknown>[]).map((h, i) => (i === 0 ? { ...h, postgresql: { databases: ["hx$$app", "hx$app"], vacuumAnalyzeBefore: "weekly" } } : h));
        const config = loadStackConfig("production", { ...raw, hosts }, { awsRegion: "eu-central-1", assumeSecretsSet: true });
        expect(config.hosts[0].postgresql!.databases.map((d) => d.name)).toEqual(["hx$$app", "hx$app"]);
        const units = planHost(config, config.hosts[0], renderFacts(config)).steps.find((s) => s.name === "units")!;
        const execs = parseUnit(stdinFile(units, "/etc/systemd/system/hx-backup-postgresql-vacuum-analyze.service")).get("Service")!.get("ExecStart")!;
        const dbnames = execs.map((e) => systemdArgument(e.split(" ").find((w) => w.startsWith("--dbname="))!));
        expect(dbnames).toEqual(["--dbname=hx$$app", "--dbname=hx$app"]);
    });
});

const noVisudo = skipWithout("visudo");

describe.skipIf(noVisudo)("the real visudo", () => {
    it("accepts every rendered sudoers drop-in", () => {
        requireTools("visudo");
        for (const r of roots) {
            const file = path.join(r.root, SUDOERS_PATH);
            const res = run("visudo", ["-cf", file]);
            expect(res.status, `${r.host}: ${res.stdout}${res.stderr}`).toBe(0);
            // One fixed verb per rule: a command without arguments would allow any arguments.
            const rules = readFileSync(file, "utf8").split("\n").filter((l) => / NOPASSWD: /.test(l));
            for (const rule of rules) expect(rule).toMatch(new RegExp(`^${r.config.backupUser} ALL=\\(root\\) NOPASSWD: ${r.config.paths.scriptDir}/${PRIVILEGED_HELPER} [a-z-]+$`));
        }
    });

    it("accepts a drop-in for a non-default user and script directory", () => {
        requireTools("visudo");
        const raw = rawFromFiles(PROJECT_DIR, "production").raw;
        const config = loadStackConfig("production", { ...raw, backupUser: "hx-backup_2", scriptDir: "/usr/local/lib/hx-backup.d/bin" }, { awsRegion: "eu-central-1", assumeSecretsSet: true });
        const dir = tempDir("hx-sudoers-");
        try {
            for (const host of config.hosts) {
                const step = planHost(config, host, renderFacts(config)).steps.find((s) => s.name === "sudoers")!;
                const file = path.join(dir, host.name);
                writeFileSync(file, stdinFile(step, SUDOERS_PATH));
                expect(step.files[0].content).toContain("hx-backup_2 ALL=(root) NOPASSWD: /usr/local/lib/hx-backup.d/bin/");
                const res = run("visudo", ["-cf", file]);
                expect(res.status, res.stderr).toBe(0);
            }
        } finally {
            removeDir(dir);
        }
    });

    describe("the install step never installs a broken drop-in", () => {
        const me = userInfo().username;
        const group = run("id", ["-gn"]).stdout.trim();
        const check = ["visudo", "-cf"];
        const GOOD = "Defaults:backup !requiretty, env_reset\nbackup ALL=(root) NOPASSWD: /var/lib/backup/scripts/backup-privileged.sh redis-copy-rdb\n";
        const BROKEN = "backup ALL=(root NOPASSWD /var/lib/backup/scripts/backup-privileged.sh\n";

        it("the plan's sudoers step is installFilesScript gated by visudo -cf", () => {
            for (const r of roots) {
                const step = r.plan.steps.find((s) => s.name === "sudoers")!;
                // The sudoers file, then the step's drift-manifest entry.
                expect(step.files.map((f) => f.path)).toEqual([SUDOERS_PATH, "/etc/hx-backup/manifest.d/sudoers.tsv"]);
                expect(step.files[0]).toMatchObject({ path: SUDOERS_PATH, owner: "root", group: "root", mode: "0440" });
                expect(step.create).toBe(installFilesScript(check));
                expect(stdinFile(step, SUDOERS_PATH)).toBe(step.files[0].content);
            }
        });

        it("a broken file is refused: non-zero exit, the live file unchanged, no temp file left", () => {
            requireTools("visudo");
            const dir = tempDir("hx-sudoers-");
            try {
                const target = path.join(dir, "sudoers.d", "hx-backup");
                mkdirSync(path.dirname(target));
                writeFileSync(target, GOOD, { mode: 0o440 });
                const script = installFilesScript(check);
                const res = run("sh", ["-c", wrapStep(script, false)], { input: filesDocument([{ path: target, owner: me, group, mode: "0440", content: BROKEN }]) });
                expect(res.status).not.toBe(0);
                expect(res.stderr).toMatch(/hx-backup: refusing to install .*hx-backup: check failed: visudo -cf "\$tmp"/);
                expect(readFileSync(target, "utf8")).toBe(GOOD);
                expect(readdirSync(path.dirname(target))).toEqual(["hx-backup"]);
            } finally {
                removeDir(dir);
            }
        });

        it("a good file installs with its mode, replacing the old one, and leaves no temp file", () => {
            requireTools("visudo");
            const dir = tempDir("hx-sudoers-");
            try {
                const target = path.join(dir, "sudoers.d", "hx-backup");
                const script = installFilesScript(check);
                const sudoers = (content: string) => filesDocument([{ path: target, owner: me, group, mode: "0440", content }]);
                const first = run("sh", ["-c", wrapStep(script, false)], { input: sudoers(GOOD) });
                expect(first.status, first.stderr).toBe(0);
                const updated = GOOD.replace("redis-copy-rdb", "application-archive");
                const second = run("sh", ["-c", wrapStep(script, false)], { input: sudoers(updated) });
                expect(second.status, second.stderr).toBe(0);
                expect(readFileSync(target, "utf8")).toBe(updated);
                expect(statSync(target).mode & 0o777).toBe(0o440);
                expect(readdirSync(path.dirname(target))).toEqual(["hx-backup"]);
            } finally {
                removeDir(dir);
            }
        });
    });
});

const noPromtool = skipWithout("promtool");

describe.skipIf(noPromtool)("the real promtool", () => {
    it("accepts the rendered alert rules of every stack", () => {
        requireTools("promtool");
        for (const name of STACKS) {
            const config = stack(name);
            const file = path.join(out, `${name}-rules.yml`);
            writeFileSync(file, renderRules(config));
            const res = run("promtool", ["check", "rules", file]);
            expect(res.status, res.stdout + res.stderr).toBe(0);
            expect(res.stdout).toMatch(/SUCCESS: \d+ rules found/);
            expect(renderRules(config)).not.toContain("{{hx.");
        }
    });

    it("the monitoring host receives exactly those rules at prometheusRulesPath", () => {
        for (const r of roots.filter((x) => x.config.monitoring?.host === x.host)) {
            expect(readFileSync(path.join(r.root, r.config.monitoring!.rulesPath), "utf8")).toBe(renderRules(r.config));
        }
        expect(roots.filter((x) => x.config.monitoring?.host === x.host).map((x) => `${x.stackName}/${x.host}`)).toEqual(["production/mon-1", "sandbox/mon-1"]);
    });

    it("installs the seed's /etc/hx-backup/monitoring.conf on the monitoring host, from the same config as the rules and the Alertmanager blocks", () => {
        const config = loadStackConfig("production", {
            ...rawFromFiles(PROJECT_DIR, "production").raw,
            notifyEmailTo: ["ops@example.com"], notifyEmailFrom: "hx@example.com", notifySmtpSmarthost: "smtp.example.com:587", notifySmtpAuthUsername: "hx",
            alertStorageUsedPercent: 85,
        }, { awsRegion: "eu-central-1", assumeSecretsSet: true });
        const step = planMonitoring(config).find((s) => s.name === "monitoring-conf")!;
        expect(step.files[0]!.path).toBe("/etc/hx-backup/monitoring.conf");
        const conf = JSON.parse(step.files[0].content);
        expect(conf).toMatchObject({
            stack: "production",
            nodeExporterUrl: config.nodeExporterUrl,
            textfileDir: config.paths.textfileDir,
            prometheus: { rulesPath: config.monitoring!.rulesPath },
            thresholds: { storageUsedPercent: 85, overdueGraceSeconds: 1800, walArchiveLagTimeouts: 3, keyRotationDays: 90 },
            notifications: { alertmanagerConfig: "/etc/prometheus/alertmanager.yml", to: ["ops@example.com"], authPasswordFile: "/etc/prometheus/hx-backup-production-smtp-password" },
        });
        expect(renderRules(config)).toContain("> 0.85");
        expect(step.files[0].content).not.toMatch(/password"\s*:/i);
    });

    it("the harness notices a broken rules file", () => {
        requireTools("promtool");
        const file = path.join(out, "broken-rules.yml");
        writeFileSync(file, breakRules(renderRules(stack("production"))));
        const res = run("promtool", ["check", "rules", file]);
        expect(res.status).not.toBe(0);
    });

    it.skipIf(!isRoot)("the alert-rules step installs a checked file and reloads; a failing file never replaces the live one", () => {
        requireTools("promtool");
        const dir = tempDir("hx-rules-");
        try {
            const rulesPath = path.join(dir, "rules", "backup-alert-rules.yml");
            const reloaded = path.join(dir, "reloaded");
            const raw = rawFromFiles(PROJECT_DIR, "production").raw;
            const config = loadStackConfig("production", { ...raw, configDir: path.join(dir, "etc-hx"), prometheusRulesPath: rulesPath, prometheusReloadCommand: `touch ${reloaded}` }, { awsRegion: "eu-central-1", assumeSecretsSet: true });
            const step = planMonitoring(config).find((s) => s.name === "alert-rules")!;
            const good = step.stdin!;

            const bad = run("sh", ["-c", wrapStep(step.create, false)], { input: stdinWith(step, rulesPath, breakRules(step.files[0].content)) });
            expect(bad.status).not.toBe(0);
            expect(existsSync(rulesPath)).toBe(false);
            expect(existsSync(reloaded)).toBe(false);

            const ok = run("sh", ["-c", wrapStep(step.create, false)], { input: good });
            expect(ok.status, ok.stderr).toBe(0);
            const rules = step.files[0].content;
            expect(readFileSync(rulesPath, "utf8")).toBe(rules);
            expect(existsSync(reloaded)).toBe(true);
            removeDir(reloaded);

            const again = run("sh", ["-c", wrapStep(step.create, false)], { input: stdinWith(step, rulesPath, `${rules}\n  - this is: [not, rules`) });
            expect(again.status).not.toBe(0);
            expect(readFileSync(rulesPath, "utf8")).toBe(rules);
            expect(existsSync(reloaded)).toBe(false);
            expect(readdirSync(path.dirname(rulesPath))).toEqual(["backup-alert-rules.yml"]);
        } finally {
            removeDir(dir);
        }
    });
});

describe("hostile values", () => {
    const dir = tempDir("hx-hostile-");
    const marker = path.join(dir, "pwned");
    afterAll(() => removeDir(dir));

    // Each value carries "hxq" so it can be told apart from anything a template happens to contain.
    const hostilePaths = [
        `/srv/hxq it's "quoted"`,
        `/srv/hxq$(touch ${marker})`,
        `/srv/hxq\`touch ${marker}\``,
        `/srv/hxq; touch ${marker}`,
        `/srv/hxq && touch ${marker} | cat > ${marker}`,
        "/srv/hxq*/glob?/[abc]/{x,y}",
        "/srv/hxq~user/$HOME/${PATH}",
        "/srv/hxq\\back\\slash",
        "/srv/hxq unicode ✓ 日本",
        "/srv/hxq %h %n",
    ];
    const hostilePatterns = [`*.hxq'; touch ${marker}; '`, "$(reboot hxq)", "**/hxq/**", `"hxq*"`, "-rf hxq", "--exclude=/hxq"];

    function hostileConfig(extra: Record<string, unknown> = {}): StackConfig {
        return loadStackConfig("hostile", {
            bucketName: "hx-unit-bucket",
            s3Region: "eu-central-1",
            ...extra,
            hosts: [
                {
                    name: "app-1",
                    address: "10.0.0.1",
                    roles: ["application", "configuration"],
                    application: { paths: hostilePaths, include: hostilePatterns, exclude: [...hostilePatterns].reverse() },
                    configuration: { paths: hostilePaths.slice(0, 4), tlsPaths: hostilePaths.slice(4) },
                },
            ],
        });
    }

    it("names that reach commands are refused with a clear error", () => {
        let err: unknown;
        try {
            loadStackConfig("hostile", {
                bucketName: "hx-unit-bucket",
                s3Region: "eu-central-1",
                scriptDir: "/var/lib/backup scripts",
                storageDir: `/opt/$(touch ${marker})`,
                hosts: [
                    { name: "db-1", address: "10.0.0.1", roles: ["postgresql", "application"], postgresql: { databases: [`x'; DROP TABLE y; --`, "a$(id)"] }, application: { paths: ["/srv/a\nb"], exclude: ["*\n*"] } },
                ],
            });
        } catch (e) {
            err = e;
        }
        expect(err).toBeInstanceOf(ConfigValidationError);
        const paths = (err as ConfigValidationError).problems.map((p) => p.path);
        expect(paths).toEqual(expect.arrayContaining([
            "scriptDir", "storageDir", "hosts[0].postgresql.databases[0]", "hosts[0].postgresql.databases[1]", "hosts[0].application.paths[0]", "hosts[0].application.exclude[0]",
        ]));
        expect(existsSync(marker)).toBe(false);
    });

    it("application and configuration paths and patterns are carried into backup.json as exact data", () => {
        const config = hostileConfig();
        const plan = planHost(config, config.hosts[0], renderFacts(config));
        const step = plan.steps.find((s) => s.name === "config")!;
        const json = JSON.parse(step.files[0].content);
        expect(json.application).toEqual({ paths: hostilePaths, include: hostilePatterns, exclude: [...hostilePatterns].reverse() });
        expect(json.configuration).toEqual({ paths: hostilePaths.slice(0, 4), tlsPaths: hostilePaths.slice(4) });
        expect(serializeHostConfig(json)).toBe(step.files[0].content);
        expect(stdinFile(step, step.files[0].path)).toBe(step.files[0].content);
    });

    it("the hostile strings appear in no step script and in no other file", () => {
        const config = hostileConfig();
        const plan = planHost(config, config.hosts[0], renderFacts(config));
        for (const s of plan.steps) {
            for (const h of [...hostilePaths, ...hostilePatterns]) {
                expect(s.create, s.name).not.toContain(h);
                expect(s.delete ?? "", s.name).not.toContain(h);
                if (s.name !== "config") for (const f of s.files) expect(f.content, `${s.name} ${f.path}`).not.toContain(h);
            }
        }
    });

    it("every step script of every host parses as sh, raw and wrapped, and nothing ran", () => {
        const hostile = hostileConfig();
        const plans = [planHost(hostile, hostile.hosts[0], renderFacts(hostile)), ...roots.map((r) => r.plan)];
        const monitoring = STACKS.flatMap((n) => planMonitoring(stack(n)));
        const steps: Step[] = [...plans.flatMap((p) => p.steps), ...monitoring];
        expect(steps.length).toBeGreaterThan(50);
        for (const s of steps) {
            for (const [what, text] of [["create", s.create], ["delete", s.delete]] as const) {
                if (text === undefined) continue;
                const raw = run("sh", ["-n"], { input: `set -eu\n${text}\n`, cwd: dir });
                expect(raw.status, `${s.name} ${what}: ${raw.stderr}`).toBe(0);
                // As the login shell on the host sees it: `sudo -n sh -c '<quoted script>'`.
                const wrapped = run("sh", ["-n", "-c", wrapStep(text, true)], { cwd: dir });
                expect(wrapped.status, `${s.name} ${what} wrapped: ${wrapped.stderr}`).toBe(0);
            }
        }
        expect(existsSync(marker)).toBe(false);
    });

    it.skipIf(!isRoot)("running the config step for real writes exactly the JSON and executes nothing", () => {
        const configDir = path.join(dir, "etc-hx");
        const config = hostileConfig({ configDir, scriptDir: path.join(dir, "scripts"), backupUser: "root" });
        const step = planHost(config, config.hosts[0], renderFacts(config)).steps.find((s) => s.name === "config")!;
        const res = run("sh", ["-c", wrapStep(step.create, false)], { input: step.stdin, cwd: dir });
        expect(res.status, res.stderr).toBe(0);
        const written = readFileSync(path.join(configDir, "backup.json"), "utf8");
        expect(written).toBe(step.files[0].content);
        expect(JSON.parse(written).application.paths).toEqual(hostilePaths);
        expect(statSync(path.join(configDir, "backup.json")).mode & 0o777).toBe(0o640);
        expect(readdirSync(configDir)).toEqual(["backup.json", "manifest.d"]);
        expect(readFileSync(path.join(configDir, "manifest.d", "config.tsv"), "utf8")).toBe(step.files.at(-1)!.content);
        expect(existsSync(marker)).toBe(false);
    });

    it("installFilesScript with a hostile target path writes exactly that path", () => {
        const me = userInfo().username;
        const group = run("id", ["-gn"]).stdout.trim();
        // A file name cannot hold '/', so these touch the marker relative to the working directory.
        const sub = path.join(dir, "sub dir 'q' $(touch pwned)");
        const name = "it's \"x\" $(touch pwned); `touch pwned` *.json";
        const target = path.join(sub, name);
        const content = `content with $(touch ${marker}) and 'quotes'\n`;
        const script = installFilesScript(["test", "-s"]);
        expect(script).not.toContain("touch");
        const res = run("sh", ["-c", wrapStep(script, false)], { input: filesDocument([{ path: target, owner: me, group, mode: "0600", content }]), cwd: dir });
        expect(res.status, res.stderr).toBe(0);
        expect(readdirSync(sub)).toEqual([name]);
        expect(readFileSync(target, "utf8")).toBe(content);
        expect(statSync(target).mode & 0o777).toBe(0o600);
        expect(existsSync(marker)).toBe(false);
        expect(shellQuote(target)).not.toBe(target);
    });

    it("a file step refuses a path its document could not carry exactly (a control character), naming it", () => {
        for (const bad of ["/etc/x\nline2", "/etc/x\ty", "/etc/x\u007fy", "relative/x"]) {
            expect(() => filesStep("files", [{ path: bad, owner: "root", group: "root", mode: "0644", content: "" }], []), bad).toThrow(/step files: cannot install .*a path must be absolute/);
        }
    });
});

describe("idempotence: identical inputs give identical steps; a change re-runs only what it touches", () => {
    const facts = (c: StackConfig) => renderFacts(c);
    const shape = (s: Step) => ({ name: s.name, create: s.create, delete: s.delete, stdin: s.stdin, digest: s.digest, dependsOn: s.dependsOn, files: s.files, secretFiles: s.secretFiles });

    function production(overrides: Record<string, unknown> = {}): StackConfig {
        const { raw, other } = rawFromFiles(PROJECT_DIR, "production");
        return loadStackConfig("production", { ...raw, ...overrides }, { awsRegion: other["aws:region"] as string, assumeSecretsSet: true });
    }

    /** What the engine compares to decide whether a step re-runs: its command text (with its digest), delete and stdin. */
    const inputs = (s: Step) => sha256(JSON.stringify([withDigest(s.create, s.digest), s.delete ?? null, s.stdin ?? null]));

    function digests(config: StackConfig): Map<string, Map<string, string>> {
        return new Map(config.hosts.map((h) => [h.name, new Map(planHost(config, h, facts(config)).steps.map((s) => [s.name, inputs(s)]))]));
    }

    /** host -> names of steps whose inputs differ (or that appear or disappear). */
    function changed(a: StackConfig, b: StackConfig): Record<string, string[]> {
        return changedDigests(digests(a), digests(b));
    }

    function changedDigests(da: Map<string, Map<string, string>>, db: Map<string, Map<string, string>>): Record<string, string[]> {
        const out: Record<string, string[]> = {};
        for (const [host, steps] of da) {
            const other = db.get(host)!;
            const names = new Set([...steps.keys(), ...other.keys()]);
            out[host] = [...names].filter((n) => steps.get(n) !== other.get(n)).sort();
        }
        return out;
    }

    it("planning twice gives identical steps (create, stdin, digest, everything)", () => {
        for (const name of STACKS) {
            const a = stack(name);
            const b = loadStackConfig(name, rawFromFiles(PROJECT_DIR, name).raw, { awsRegion: "eu-central-1", assumeSecretsSet: true });
            for (const h of a.hosts) {
                const first = planHost(a, h, facts(a)).steps.map(shape);
                const second = planHost(a, h, facts(a)).steps.map(shape);
                const fresh = planHost(b, b.hosts.find((x) => x.name === h.name)!, facts(b)).steps.map(shape);
                expect(second).toEqual(first);
                expect(fresh).toEqual(first);
                expect(new Set(first.map((s) => s.name)).size).toBe(first.length);
            }
            expect(renderStack(a)).toEqual(renderStack(a));
        }
    });

    it("every step has a digest, and a file step's stdin carries each file it installs with its sha256", () => {
        for (const r of roots) {
            for (const s of r.plan.steps) {
                expect(s.digest, s.name).toMatch(/^[0-9a-f]{64}$/);
                if (s.stdin === undefined || s.secretFiles.length > 0) continue;
                // A staged file's header carries its sha256 and its place in the stage; the others carry their content.
                expect(parseFilesDocument(s.stdin), s.name).toEqual(s.files.map(({ content, ...f }) => (f.staged !== undefined ? { ...f, sha256: sha256(content) } : { ...f, content })));
                expect(s.stdin.split("\n").filter((l) => l.startsWith("@file\t")).map((l) => l.split("\t")[5]), s.name).toEqual(s.files.map((f) => sha256(f.content)));
                // Only the step's manifest entry, its last file, skips the step's check.
                expect(s.files.map((f) => Boolean(f.unchecked)), s.name).toEqual(s.files.map((_, i) => i === s.files.length - 1));
            }
            expect(new Set(r.plan.steps.map(inputs)).size).toBe(r.plan.steps.length);
        }
    });

    it("no change, no re-run", () => {
        expect(changed(production(), production())).toEqual({ "db-1": [], "db-2": [], "app-1": [], "mon-1": [] });
    });

    it("changing retentionDaily changes only the config step", () => {
        expect(changed(production(), production({ retentionDaily: 10 }))).toEqual({ "db-1": ["config"], "db-2": ["config"], "app-1": ["config"], "mon-1": ["config"] });
    });

    it("changing the application schedule touches only that job's units, the timers step and config, on the application host", () => {
        // The service changes too: its Description carries the schedule in words.
        expect(changed(production(), production({ scheduleApplicationDaily: "0 4 * * *" }))).toEqual({
            "db-1": [],
            "db-2": [],
            "app-1": ["config", "timers", "units"],
            "mon-1": [],
        });
    });

    it("the same schedule spelled differently changes nothing", () => {
        expect(changed(production(), production({ scheduleApplicationDaily: "*-*-* 01:00", scheduleDatabaseWeekly: "Sun 03:00:00" }))).toEqual({ "db-1": [], "db-2": [], "app-1": [], "mon-1": [] });
    });

    it("changing the database schedule touches the PostgreSQL and Redis daily units on the database hosts", () => {
        const dbSteps = ["config", "timers", "units"];
        expect(changed(production(), production({ scheduleDatabaseDaily: "15 2 * * *" }))).toEqual({ "db-1": dbSteps, "db-2": dbSteps, "app-1": [], "mon-1": [] });
    });

    it("rotating the key changes only the keyring and config steps, and on a PITR host pgBackRest's (a new repository per key) and the first full backup of the new one", () => {
        const c = changed(production(), production({ encryptionKeyVersion: 2 }));
        expect(c["db-1"]).toEqual(["config", "keyring", "pgbackrest-config", "pgbackrest-secrets", "pitr-archiving", "pitr-first-full"]);
        for (const host of ["db-2", "app-1", "mon-1"]) expect(c[host], host).toEqual(["config", "keyring"]);
    });

    it.each([scriptTemplates()[0], "lib/source/redis.sh", "lib/core.sh"])("a changed script template re-runs only the files step, which carries it: %s", (script) => {
        expect(scriptTemplates()).toContain(script);
        const stepName = "files";
        const before = production();
        const beforePlans = before.hosts.map((h) => planHost(before, h, facts(before)));
        const beforeDigests = digests(before);
        const relative = `${SCRIPT_TEMPLATE_DIR}/${script}`;
        const edited = `${readTemplate(relative)}\n# edited\n`;
        templateOverrides.set(relative, edited);
        try {
            const after = production();
            expect(changedDigests(beforeDigests, digests(after))).toEqual({ "db-1": [stepName], "db-2": [stepName], "app-1": [stepName], "mon-1": [stepName] });
            const afterPlan = planHost(after, after.hosts[0], facts(after));
            const step = afterPlan.steps.find((s) => s.name === stepName)!;
            const installed = `${after.paths.scriptDir}/${script}`;
            // The content waits in the stage (the host's copy of templates/scripts); the stdin names the file with its new sha256.
            const header = parseFilesDocument(step.stdin!).find((f) => f.path === installed) as unknown as { sha256: string; staged: string };
            expect(header).toMatchObject({ sha256: sha256(edited), staged: `scripts/${script}` });
            expect(step.files.find((f) => f.path === installed)!.content).toBe(edited);
            expect(step.stage!.source).toBe(path.join(TEMPLATE_ROOT, SCRIPT_TEMPLATE_DIR));
            // The script text (argv on the host) changes only in its digest line.
            const oldStep = beforePlans[0].steps.find((s) => s.name === stepName)!;
            expect(step.create).toBe(oldStep.create);
            expect(step.digest).not.toBe(oldStep.digest);
        } finally {
            templateOverrides.delete(relative);
        }
        expect(changedDigests(beforeDigests, digests(production()))).toEqual({ "db-1": [], "db-2": [], "app-1": [], "mon-1": [] });
    });
});
