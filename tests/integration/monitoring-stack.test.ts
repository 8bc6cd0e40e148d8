/**
 * The monitoring stack for real: node_exporter reads the metrics a real
 * backup run wrote, Prometheus scrapes it and evaluates the project's rules,
 * Alertmanager delivers to a webhook sink. Every dashboard query parses and
 * the core panels return the job's series; a failed backup raises
 * BackupFailed at the sink with the right labels, and the next good run
 * resolves it; a tampered artifact checked by its path raises
 * VerificationFailed.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import { dashboardQueries, renderDashboard, substituteVariables } from "../../scripts/gen/dashboard";
import { renderRules } from "../../render/monitoringPlan";
import { isCI, isRoot, missingTools } from "../support/env";
import { makeHost, postgresqlSection, type TestHost } from "../support/host";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../support/postgres";
import { chownR } from "../support/env";
import { MONITORING_TOOLS, startMonitoringStack, type MonitoringStack } from "../harness/monitoringStack";

const missing = missingTools([...MONITORING_TOOLS, ...PG_TOOLS, "zstd", "jq", "openssl"]);
if (isCI && (missing.length || !isRoot)) throw new Error(`monitoring stack test needs root and ${missing.join(", ")} in CI`);

const INSTANCE = "testhost";
/** Panels that must show the job that ran. */
const CORE_PANELS = ["Last run status", "Backup success and failure rate", "Time since last success per job", "Backup duration", "Backup size", "Storage utilization", "Backup storage used", "Verification and restore-test status"];

describe.runIf(missing.length === 0 && isRoot)("alerts and dashboard on a real Prometheus, Alertmanager and node_exporter", { timeout: 300_000 }, () => {
    let stack: MonitoringStack;
    let pg: PostgresInstance;
    let host: TestHost;
    const config = loadStackConfig("mon", {
        hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }],
        monitoringHost: "mon",
        runbookBaseUrl: "https://runbooks.example.test/README.md",
    });

    beforeAll(async () => {
        stack = await startMonitoringStack(renderRules(config), INSTANCE);
        pg = await startPostgres();
        host = makeHost();
        const role = host.user?.name ?? "root";
        await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB; GRANT pg_read_all_data TO "${role}"; CREATE DATABASE shop;`);
        await pg.sql("CREATE TABLE orders (id serial PRIMARY KEY, total numeric); INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) g;", "shop");
        if (host.user) chownR(stack.textfileDir, host.user);
        host.config.paths.textfile = stack.textfileDir;
        host.config.postgresql = postgresqlSection(pg, role, ["shop"], { parallelDumps: 1, jobs: 1 });
        host.config.jobs = [
            { name: "postgresql-daily", type: "postgresql", script: "postgresql-backup.sh", args: ["daily"], description: "every day at 02:00", maxIntervalSeconds: 86400, jitterSeconds: 300 },
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
        expect(firing.annotations.runbook_url).toBe("https://runbooks.example.test/README.md#backupfailed");

        await pg.start();
        const good = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(good.code, good.stderr).toBe(0);
        const resolved = await stack.waitFor(
            "BackupFailed resolved at the webhook sink",
            () => stack.received.find((a) => a.labels.alertname === "BackupFailed" && a.status === "resolved" && a.labels.target === firing.labels.target),
            120_000,
        );
        expect(resolved.labels.type).toBe("postgresql");
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
