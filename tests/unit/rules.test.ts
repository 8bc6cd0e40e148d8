/**
 * The alert rules (templates/monitoring/backup-alert-rules.yml), rendered with real values:
 * every alert carries a severity, a summary, a description and a runbook_url that points to
 * its own `## <Name>` section of docs/runbooks.md; `promtool check rules` accepts the file; and
 * `promtool test rules` passes the unit tests in tests/rules/, which give every alert a firing
 * case with its exact labels and annotations and a near miss that does not fire.
 *
 * Without promtool these tests fail under CI=true and are skipped (with a message) elsewhere.
 */
import { spawn } from "node:child_process";
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadStackConfig } from "../../config/load";
import { alertNames, renderRules } from "../../render/monitoringPlan";
import { headingAnchor, headings } from "../support/markdown";
import { PROJECT_DIR, removeDir, requireTools, run, skipWithout, tempDir } from "./helpers";

const RUNBOOK = "https://example.test/docs/runbooks.md";
const RULES_FILE = "backup-alert-rules.yml";
const TEST_DIR = path.join(PROJECT_DIR, "tests", "rules");
const ALERTS = [
    "BackupFailed", "BackupDelayed", "StorageFull", "VerificationFailed", "RestoreTestFailed",
    "RemoteSyncFailing", "RemoteSyncStale", "BackupMetricsMissing", "TextfileScrapeError", "ConfigDrift",
    "EncryptionKeyRotationDue", "WalArchiveFailing", "WalArchiveLag", "PitrRestartPending",
];

interface AlertRule {
    alert: string;
    expr: string;
    for?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
}

interface ExpAlert {
    exp_labels?: Record<string, string>;
    exp_annotations?: Record<string, string>;
}

interface RuleTestFile {
    rule_files: string[];
    tests: { name?: string; alert_rule_test?: { eval_time: string; alertname: string; exp_alerts?: ExpAlert[] }[] }[];
}

function rulesConfig() {
    return loadStackConfig("rules", {
        hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }],
        monitoringHost: "mon",
        runbookBaseUrl: `${RUNBOOK}`,
    });
}

const rendered = renderRules(rulesConfig());
const rules: AlertRule[] = (parse(rendered) as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);
const testFiles = readdirSync(TEST_DIR).filter((f) => f.endsWith(".yml")).sort();
const ruleTests = testFiles.map((f) => ({ file: f, doc: parse(readFileSync(path.join(TEST_DIR, f), "utf8")) as RuleTestFile }));
const cases = ruleTests.flatMap(({ file, doc }) =>
    doc.tests.flatMap((t) => (t.alert_rule_test ?? []).map((c) => ({ file, test: t.name ?? "", ...c, exp_alerts: c.exp_alerts ?? [] }))),
);

describe("the alert rules, rendered", () => {
    it("are exactly the fourteen alerts, each once, with no {{hx.*}} placeholder left", () => {
        expect(rendered).not.toContain("{{hx.");
        expect(rules.map((r) => r.alert)).toEqual(ALERTS);
        expect(alertNames()).toEqual(ALERTS);
    });

    it("each carry a severity, a summary, a description and a runbook_url to their own section of docs/runbooks.md", () => {
        const sections = headings(readFileSync(path.join(PROJECT_DIR, "docs", "runbooks.md"), "utf8")).filter((h) => h.level === 2).map((h) => h.text);
        for (const r of rules) {
            expect(["critical", "warning"], r.alert).toContain(r.labels?.severity);
            expect(r.annotations?.summary?.trim(), `${r.alert} summary`).toBeTruthy();
            expect(r.annotations?.description?.trim(), `${r.alert} description`).toBeTruthy();
            expect(r.annotations?.runbook_url, r.alert).toBe(`${RUNBOOK}#${r.alert.toLowerCase()}`);
            const heading = sections.find((h) => h === r.alert);
            expect(heading, `docs/runbooks.md needs a "## ${r.alert}" heading`).toBeDefined();
            expect(headingAnchor(heading!)).toBe(r.alert.toLowerCase());
        }
    });

    it("never select the scrape `job` label as if it were ours: jobs are told apart by type and target", () => {
        for (const r of rules) expect(r.expr, r.alert).not.toMatch(/\bjob\s*(=|!=|=~|!~)/);
    });

    it("all carry the label Alertmanager routes on, component: hx-backup", () => {
        for (const r of rules) expect(r.labels?.component, r.alert).toBe("hx-backup");
    });

    it("take their thresholds from the stack config", () => {
        const custom = renderRules(loadStackConfig("unit", { "hx-backup:alertStorageUsedPercent": 80, "hx-backup:alertOverdueGraceMinutes": 10, "hx-backup:keyRotationDays": 30, "hx-backup:alertWalArchiveLagTimeouts": 5 }));
        const byName = Object.fromEntries(((parse(custom) as { groups: { rules: AlertRule[] }[] }).groups[0]!.rules).map((r) => [r.alert, r]));
        expect(byName.StorageFull!.expr).toContain("> 0.80");
        expect(byName.StorageFull!.annotations!.description).toContain("(threshold 80%)");
        expect(byName.BackupDelayed!.expr).toMatch(/\+ 600\s*$/);
        expect(byName.BackupDelayed!.annotations!.description).toContain("10 minutes' grace");
        expect(byName.EncryptionKeyRotationDue!.expr).toContain(`> ${30 * 86400}`);
        expect(byName.WalArchiveLag!.expr).toBe("backup_wal_archive_lag_seconds > 5 * backup_wal_archive_timeout_seconds");
        expect(byName.WalArchiveLag!.annotations!.description).toContain("more than 5 archive timeouts");
        // The default, 3, is what tests/rules/pitr-alerts.yml holds the rule to.
        expect(rules.find((r) => r.alert === "WalArchiveLag")!.expr).toContain("> 3 * backup_wal_archive_timeout_seconds");
    });

    it("keep the seed's severities for its four alerts", () => {
        const severity = Object.fromEntries(rules.map((r) => [r.alert, r.labels?.severity]));
        expect(severity).toMatchObject({ BackupFailed: "critical", BackupDelayed: "warning", StorageFull: "critical", VerificationFailed: "warning" });
    });
});

describe("the promtool unit tests in tests/rules", () => {
    it("all load the rendered rules file", () => {
        expect(testFiles.length).toBeGreaterThan(0);
        for (const { file, doc } of ruleTests) expect(doc.rule_files, file).toEqual([RULES_FILE]);
    });

    it("give every alert a firing case with exact labels and annotations, and a near miss", () => {
        for (const name of ALERTS) {
            const mine = cases.filter((c) => c.alertname === name);
            const firing = mine.filter((c) => c.exp_alerts.length > 0);
            expect(firing.length, `${name}: a case where it fires`).toBeGreaterThan(0);
            expect(mine.filter((c) => c.exp_alerts.length === 0).length, `${name}: a near miss (exp_alerts: [])`).toBeGreaterThan(0);
            const rule = rules.find((r) => r.alert === name)!;
            for (const c of firing) {
                for (const a of c.exp_alerts) {
                    expect(a.exp_labels?.severity, `${c.file} "${c.test}" at ${c.eval_time}`).toBe(rule.labels?.severity);
                    expect(a.exp_labels?.instance, `${c.file} "${c.test}": instance label`).toBeTruthy();
                    expect(Object.keys(a.exp_annotations ?? {}).sort(), `${c.file} "${c.test}" at ${c.eval_time}`).toEqual(Object.keys(rule.annotations ?? {}).sort());
                }
            }
        }
        expect(new Set(cases.map((c) => c.alertname))).toEqual(new Set(ALERTS));
    });
});

const noPromtool = skipWithout("promtool");

function promtool(args: string[], cwd: string): Promise<{ status: number | null; output: string }> {
    return new Promise((resolve, reject) => {
        const child = spawn("promtool", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
        let output = "";
        child.stdout.on("data", (d) => (output += d));
        child.stderr.on("data", (d) => (output += d));
        child.on("error", reject);
        child.on("close", (status) => resolve({ status, output }));
    });
}

describe.skipIf(noPromtool)("promtool on the rendered rules", () => {
    let dir = "";
    beforeAll(() => {
        dir = tempDir("hx-rules-");
        writeFileSync(path.join(dir, RULES_FILE), rendered);
        for (const f of testFiles) copyFileSync(path.join(TEST_DIR, f), path.join(dir, f));
    });
    afterAll(() => removeDir(dir));

    it("check rules accepts them", () => {
        requireTools("promtool");
        const res = run("promtool", ["check", "rules", RULES_FILE], { cwd: dir });
        expect(res.status, res.stdout + res.stderr).toBe(0);
        expect(res.stdout).toContain(`SUCCESS: ${ALERTS.length} rules found`);
    });

    it(`test rules passes every case (${cases.length} evaluations in ${testFiles.length} files)`, async () => {
        requireTools("promtool");
        // One promtool per file, in parallel: the weeks-long cases take a few seconds each.
        const results = await Promise.all(testFiles.map((f) => promtool(["test", "rules", f], dir)));
        results.forEach((res, i) => {
            expect(res.status, `${testFiles[i]}:\n${res.output}`).toBe(0);
            expect(res.output, testFiles[i]).toContain("SUCCESS");
            // promtool only warns when a rule file is missing; that must not pass quietly.
            expect(res.output, testFiles[i]).not.toMatch(/WARNING/);
        });
    });

    it("the harness notices a wrong expectation and a missing rules file", async () => {
        requireTools("promtool");
        const original = readFileSync(path.join(dir, "status-alerts.yml"), "utf8");
        expect(original).toContain("severity: critical");
        writeFileSync(path.join(dir, "wrong-expectation.yml"), original.replace("severity: critical", "severity: warning"));
        const wrong = await promtool(["test", "rules", "wrong-expectation.yml"], dir);
        expect(wrong.status, wrong.output).not.toBe(0);
        expect(wrong.output).toContain("FAILED");
        writeFileSync(path.join(dir, "no-rules.yml"), original.replace(`- ${RULES_FILE}`, "- missing-rules.yml"));
        const missing = await promtool(["test", "rules", "no-rules.yml"], dir);
        expect(missing.output).toMatch(/WARNING|FAILED/);
    });
});
