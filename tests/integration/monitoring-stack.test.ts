/**
 * The monitoring stack for real: node_exporter reads the metrics a real
 * backup run wrote, Prometheus scrapes it and evaluates the project's rules,
 * Alertmanager delivers to a webhook sink. Every dashboard query parses and
 * the core panels return the job's series; a failed backup raises
 * BackupFailed at the sink with the right labels, and the next good run
 * resolves it; a tampered artifact checked by its path raises
 * VerificationFailed.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import { dashboardQueries, renderDashboard, substituteVariables } from "../../scripts/gen/dashboard";
import { planMonitoring, renderRules } from "../../render/monitoringPlan";
import { wrapStep } from "../../render/remote";
import { secretStdin } from "../../render/secrets";
import type { StackConfig } from "../../config/types";
import { PROJECT_DIR } from "../unit/helpers";
import { startSmtpSink, type SmtpSink } from "../harness/smtpSink";
import { isCI, isRoot, missingTools, run as runCommand } from "../support/env";
import { makeHost, postgresqlSection, type TestHost } from "../support/host";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../support/postgres";
import { chownR } from "../support/env";
import { MONITORING_TOOLS, startMonitoringStack, type MonitoringStack } from "../harness/monitoringStack";

const missing = missingTools([...MONITORING_TOOLS, ...PG_TOOLS, "amtool", "curl", "zstd", "jq", "openssl"]);
const SMTP_PASSWORD = "smtp-test-password-5e1f";
/** Where the delivered emails (firing, then resolved) are kept for the closing note and for reading (gitignored; CI uploads them). */
const EMAIL_ARTIFACT = join(PROJECT_DIR, "test-artifacts", "notification-email.eml");
const RESOLVED_EMAIL_ARTIFACT = join(PROJECT_DIR, "test-artifacts", "notification-email-resolved.eml");
if (isCI && (missing.length || !isRoot)) throw new Error(`monitoring stack test needs root and ${missing.join(", ")} in CI`);

const INSTANCE = "testhost";
/** Panels that must show the job that ran. */
const CORE_PANELS = ["Last run status", "Backup success and failure rate", "Time since last success per job", "Backup duration", "Backup size", "Storage utilization", "Backup storage used", "Verification and restore-test status"];

describe.runIf(missing.length === 0 && isRoot)("alerts and dashboard on a real Prometheus, Alertmanager and node_exporter", { timeout: 300_000 }, () => {
    let stack: MonitoringStack;
    let pg: PostgresInstance;
    let host: TestHost;
    let smtp: SmtpSink;
    let notifying: StackConfig;
    let originalAlertmanagerConfig: string;
    /** Runs the monitoring plan's Alertmanager steps on this machine, as the deploy would over SSH (create or delete). */
    const runAlertmanagerSteps = async (phase: "create" | "delete") => {
        const steps = planMonitoring(notifying).filter((st) => st.name.startsWith("alertmanager-"));
        for (const st of phase === "create" ? steps : [...steps].reverse()) {
            const script = phase === "create" ? st.create : st.delete!;
            const input = st.secretFiles.length ? secretStdin(st.secretFiles, { keys: {}, smtpPassword: SMTP_PASSWORD }, notifying.hosts[0]!) : "";
            const r = await runCommand("sh", ["-c", wrapStep(script, false)], { input });
            expect(r.code, `${st.name} ${phase}: ${r.stderr}`).toBe(0);
            expect(r.stdout + r.stderr, `${st.name} ${phase} output`).not.toContain(SMTP_PASSWORD);
        }
    };
    const config = loadStackConfig("mon", {
        hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }],
        monitoringHost: "mon",
        runbookBaseUrl: "https://runbooks.example.test/docs/runbooks.md",
    });

    beforeAll(async () => {
        stack = await startMonitoringStack(renderRules(config), INSTANCE);
        smtp = await startSmtpSink();
        // Email notifications into the stack's existing Alertmanager config (its own routes, inhibit rules and webhook receiver).
        notifying = loadStackConfig("mon", {
            hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }],
            monitoringHost: "mon",
            runbookBaseUrl: "https://runbooks.example.test/docs/runbooks.md",
            notifyEmailTo: ["backup-alerts@example.test"],
            notifyEmailFrom: "hx-backup@example.test",
            notifySmtpSmarthost: `127.0.0.1:${smtp.port}`,
            notifySmtpRequireTls: false,
            notifySmtpAuthUsername: "hx-alerts",
            notifySmtpAuthPassword: "[secret]",
            notifyGroupWait: "1s",
            notifyGroupInterval: "1s",
            alertmanagerConfigPath: stack.alertmanagerConfig,
            configDir: join(stack.alertmanagerConfig, "..", "etc-hx-backup"),
            alertmanagerReloadCommand: `curl --fail --silent --show-error --request POST ${stack.alertmanager}/-/reload`,
        });
        originalAlertmanagerConfig = readFileSync(stack.alertmanagerConfig, "utf8");
        await runAlertmanagerSteps("create");
        pg = await startPostgres();
        host = makeHost();
        const role = host.user?.name ?? "root";
        await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB; GRANT pg_read_all_data TO "${role}"; CREATE DATABASE shop;`);
        await pg.sql("CREATE TABLE orders (id serial PRIMARY KEY, total numeric); INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) g;", "shop");
        if (host.user) chownR(stack.textfileDir, host.user);
        host.config.paths.textfile = stack.textfileDir;
        host.config.postgresql = postgresqlSection(pg, role, ["shop"], { parallelDumps: 1, jobs: 1 });
        host.config.jobs = [
            { name: "postgresql-daily", type: "postgresql", script: "postgresql-backup.sh", args: ["daily"], description: "every day at 02:00", maxIntervalSeconds: 86400, jitterSeconds: 300, target: "" },
        ];
        host.writeConfig();
        const run = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(run.code, run.stderr).toBe(0);
        await stack
            .waitFor("the backup metrics in Prometheus", async () => {
                const r = await stack.query(`backup_last_success_timestamp{type="postgresql",target="shop",instance="${INSTANCE}"}`);
                return r.data.result.length > 0 ? true : undefined;
            })
            .catch(async (err: Error) => {
                const exported = (await (await fetch(`${stack.nodeExporter}/metrics`)).text()).split("\n").filter((l) => /backup_|textfile_scrape_error/.test(l));
                throw new Error(`${err.message}; node_exporter exports:\n${exported.join("\n")}`);
            });
    });

    afterAll(async () => {
        await smtp?.stop();
        await stack?.stop();
        await pg?.stop();
        host?.cleanup();
    });

    it("every dashboard query parses, and the core panels return series for the job that ran", async () => {
        const queries = dashboardQueries(renderDashboard("hx-backup"));
        expect(queries.length).toBeGreaterThan(10);
        for (const q of queries) {
            const all = await stack.query(substituteVariables(q.expr));
            expect(all.status, `${q.title} ${q.refId}: ${all.error ?? ""}`).toBe("success");
            const filtered = await stack.query(substituteVariables(q.expr, { host: INSTANCE, type: "postgresql" }));
            expect(filtered.status, `${q.title} ${q.refId} (host/type set): ${filtered.error ?? ""}`).toBe("success");
        }
        for (const title of CORE_PANELS) {
            const panelQueries = queries.filter((q) => q.title === title);
            expect(panelQueries.length, title).toBeGreaterThan(0);
            // Metrics from one run land in several textfiles; give the next scrapes a moment.
            const hasSeries = await stack
                .waitFor(`${title} series`, async () => {
                    const results = await Promise.all(panelQueries.map((q) => stack.query(substituteVariables(q.expr, { host: INSTANCE, type: "postgresql" }))));
                    return results.some((r) => r.data.result.length > 0) || undefined;
                }, 20_000)
                .catch(() => false);
            expect(hasSeries, `${title} returns series`).toBe(true);
        }
    });

    it("a failed backup raises BackupFailed at the webhook with its labels and annotations, and the next good run resolves it", async () => {
        await pg.halt();
        const bad = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(bad.code).not.toBe(0);
        const firing = await stack.waitFor("BackupFailed at the webhook sink", () => stack.received.find((a) => a.labels.alertname === "BackupFailed" && a.status === "firing"), 90_000);
        expect(firing.labels).toMatchObject({ alertname: "BackupFailed", severity: "critical", type: "postgresql", instance: INSTANCE });
        expect(firing.annotations.summary).toContain(`failed on ${INSTANCE}`);
        expect(firing.annotations.runbook_url).toBe("https://runbooks.example.test/docs/runbooks.md#backupfailed");

        await pg.start();
        const good = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(good.code, good.stderr).toBe(0);
        const resolved = await stack.waitFor(
            "BackupFailed resolved at the webhook sink",
            () => stack.received.find((a) => a.labels.alertname === "BackupFailed" && a.status === "resolved" && a.labels.target === firing.labels.target),
            120_000,
        );
        expect(resolved.labels.type).toBe("postgresql");

        // The same alert, by email through hx-backup's route, with the SMTP password from its file.
        const mail = await stack.waitFor("the BackupFailed email", () => smtp.received.find((m) => m.parsed.subject === `[FIRING] BackupFailed on ${INSTANCE}: postgresql/${firing.labels.target}`), 60_000);
        expect(mail.parsed.subject).toBe(`[FIRING] BackupFailed on ${INSTANCE}: postgresql/${firing.labels.target}`);
        expect(mail.parsed.to && "text" in mail.parsed.to ? mail.parsed.to.text : "").toBe("backup-alerts@example.test");
        expect(mail.parsed.from?.text).toBe("hx-backup@example.test");
        expect(mail.parsed.text).toContain(firing.annotations.description!);
        // The cause the job recorded, not only a pointer to the log.
        expect(firing.annotations.description).toMatch(/ failed: cannot connect to PostgreSQL as /);
        expect(firing.labels.cause).toBeUndefined();
        expect(mail.parsed.text).toContain("Runbook: https://runbooks.example.test/docs/runbooks.md#backupfailed");
        expect(mail.auth).toEqual({ username: "hx-alerts", password: SMTP_PASSWORD });
        expect(mail.raw).not.toContain(SMTP_PASSWORD);
        mkdirSync(join(PROJECT_DIR, "test-artifacts"), { recursive: true });
        writeFileSync(EMAIL_ARTIFACT, mail.raw);
        const resolvedMail = await stack.waitFor("the resolved email", () => smtp.received.find((m) => m.parsed.subject === `[RESOLVED] BackupFailed on ${INSTANCE}: postgresql/${firing.labels.target}`), 120_000);
        expect(resolvedMail.parsed.text).toContain("resolved:");
        expect(resolvedMail.raw).not.toContain(SMTP_PASSWORD);
        writeFileSync(RESOLVED_EMAIL_ARTIFACT, resolvedMail.raw);
    });

    it("leaves the existing Alertmanager config byte-identical outside hx-backup's blocks, re-runs as a no-op, and destroy restores it exactly", async () => {
        const live = readFileSync(stack.alertmanagerConfig, "utf8");
        expect(live).not.toBe(originalAlertmanagerConfig);
        // The operator's config has routes of its own, so hx-backup adds no routes: key: outside the blocks nothing is new.
        expect(originalAlertmanagerConfig).toMatch(/^  routes:\n[\s\S]*^    - match:\n[\s\S]*^inhibit_rules:\n/m);
        const outsideBlocks = live.replace(/^[ \t]*# >>> hx-backup managed block[^\n]*\n[\s\S]*?^[ \t]*# <<< hx-backup managed block <<<\n/gm, "");
        expect(outsideBlocks).toBe(originalAlertmanagerConfig);
        expect((await runCommand("amtool", ["check-config", stack.alertmanagerConfig])).code).toBe(0);
        const password = join(stack.alertmanagerConfig, "..", "hx-backup-mon-smtp-password");
        expect((await runCommand("stat", ["--format=%a %U %G", password])).stdout.trim()).toBe("640 root prometheus");
        await runAlertmanagerSteps("create");
        expect(readFileSync(stack.alertmanagerConfig, "utf8")).toBe(live);

        // Drift covers the blocks: the install recorded their hash; a hand edit inside them is drift.
        const manifestDir = join(notifying.paths.configDir, "manifest.d");
        const entry = readFileSync(join(manifestDir, "alertmanager-route.tsv"), "utf8");
        expect(entry).toMatch(new RegExp(`^${stack.alertmanagerConfig.replace(/[.]/g, "\\.")}\t@block\t-\t-\t[0-9a-f]{64}\n$`));
        const savedDrift = host.config.drift;
        const savedStack = host.config.stack;
        host.config.drift = { manifestDir, recordsDir: join(manifestDir, "no-install-records"), watch: [], ignore: [] };
        host.config.stack = notifying.stack; // the monitoring host's own backup.json names the stack whose blocks it checks
        host.writeConfig();
        try {
            const clean = await host.runScript("backup-drift-check.sh", [], { unit: "drift" });
            expect(clean.code, clean.stderr).toBe(0);
            writeFileSync(stack.alertmanagerConfig, live.replace('receiver: "hx-backup-mon-email"', 'receiver: "someone-else"'));
            const edited = await host.runScript("backup-drift-check.sh", [], { unit: "drift" });
            expect(edited.code).toBe(1);
            expect(edited.stderr).toMatch(/hx-backup's managed block changed: .*alertmanager\.yml/);
            writeFileSync(stack.alertmanagerConfig, originalAlertmanagerConfig);
            const removed = await host.runScript("backup-drift-check.sh", [], { unit: "drift" });
            expect(removed.stderr).toMatch(/hx-backup's managed block missing/);
        } finally {
            writeFileSync(stack.alertmanagerConfig, live);
            host.config.drift = savedDrift;
            host.config.stack = savedStack;
            host.writeConfig();
        }

        // A config amtool rejects never replaces the live one.
        const broken = { ...notifying, notifications: { ...notifying.notifications!, repeatInterval: "0s" } } as StackConfig;
        const [, route] = planMonitoring(broken).filter((st) => st.name.startsWith("alertmanager-"));
        const refused = await runCommand("sh", ["-c", wrapStep(route!.create, false)]);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toContain("was not changed");
        expect(readFileSync(stack.alertmanagerConfig, "utf8")).toBe(live);
        await runAlertmanagerSteps("delete");
        expect(readFileSync(stack.alertmanagerConfig, "utf8")).toBe(originalAlertmanagerConfig);
        expect((await runCommand("test", ["-e", join(manifestDir, "alertmanager-route.tsv")])).code).toBe(1);
        expect((await runCommand("test", ["-e", password])).code).toBe(1);
    });

    it("a tampered artifact verified by its path sets its verification status to 0 and raises VerificationFailed; an intact check sets 1", async () => {
        const [name] = host.manifests("postgresql", "shop").slice(-1);
        const manifest = host.readManifest("postgresql", "shop", name!) as { artifact: string };
        const artifact = join(host.config.paths.storage, "postgresql", "shop", manifest.artifact);
        const intact = readFileSync(artifact);
        const tampered = Buffer.from(intact);
        tampered[tampered.length - 1]! ^= 0xff;
        writeFileSync(artifact, tampered);
        try {
            const bad = await host.runScript("backup-verify.sh", [artifact]);
            expect(bad.code, bad.stderr).toBe(4);
            expect(host.metric("backup_verification_status", "postgresql", "shop")).toBe(0);
            const firing = await stack.waitFor("VerificationFailed at the webhook sink", () => stack.received.find((a) => a.labels.alertname === "VerificationFailed" && a.status === "firing"), 90_000);
            expect(firing.labels).toMatchObject({ severity: "warning", type: "postgresql", target: "shop", instance: INSTANCE });
        } finally {
            writeFileSync(artifact, intact);
        }
        const good = await host.runScript("backup-verify.sh", [artifact]);
        expect(good.code, good.stderr).toBe(0);
        expect(host.metric("backup_verification_status", "postgresql", "shop")).toBe(1);
    });
});
