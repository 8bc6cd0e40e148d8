/**
 * The Grafana dashboard model (scripts/gen/dashboard.ts, generated into
 * templates/monitoring/hx-backup-dashboard.json): format, template variables,
 * panel layout, that every query is filtered by the `$host`/`$type` variables,
 * and (with promtool) that every query, variables substituted, is valid PromQL.
 * promtool parses each query as a recording rule's expression: an offline parser.
 */
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { loadStackConfig } from "../../config/load";
import {
    DASHBOARD_SCHEMA_VERSION, DATASOURCE_UID, dashboardQueries, PANELS, PER_HOST_METRICS, renderDashboard, serializeDashboard, substituteVariables,
} from "../../scripts/gen/dashboard";
import { alertNames, DASHBOARD_TEMPLATE, renderDashboardFile } from "../../render/monitoringPlan";
import { readTemplate } from "../../render/template";
import { dashboardTemplate } from "../../scripts/gen";
import { PROJECT_DIR, removeDir, requireTools, run, skipWithout, tempDir } from "./helpers";

interface Target {
    refId: string;
    expr: string;
    legendFormat: string;
    datasource: { type: string; uid: string };
    instant?: boolean;
    range?: boolean;
}
interface Panel {
    id: number;
    type: string;
    title: string;
    datasource: { type: string; uid: string };
    gridPos: { x: number; y: number; w: number; h: number };
    fieldConfig: { defaults: { unit: string } & Record<string, unknown>; overrides: unknown[] };
    targets: Target[];
}
interface Variable {
    name: string;
    type: string;
    query: string;
    datasource?: { type: string; uid: string };
    includeAll?: boolean;
    multi?: boolean;
}

/** The JSON model as Grafana receives it. */
const dashboard = JSON.parse(serializeDashboard("hx-test")) as Record<string, unknown>;
const panels = dashboard.panels as Panel[];
const variables = (dashboard.templating as { list: Variable[] }).list;
const queries = dashboardQueries(renderDashboard("hx-test"));

/** Each `backup_*` metric selector in a query: name and its `{...}` matchers ("" when none). */
function backupSelectors(expr: string): { metric: string; matchers: string }[] {
    return [...expr.matchAll(/\b(backup_[a-z_]+)\b(\{[^}]*\})?/g)].map((m) => ({ metric: m[1], matchers: m[2] ?? "" }));
}

const GRAFANA_UNITS = new Set(["none", "short", "s", "bytes", "percentunit"]);

describe("the dashboard model", () => {
    it("is a classic JSON model with a current schemaVersion and a stable uid", () => {
        expect(dashboard.schemaVersion).toBe(DASHBOARD_SCHEMA_VERSION);
        expect(DASHBOARD_SCHEMA_VERSION).toBeGreaterThanOrEqual(41);
        expect(dashboard.uid).toBe("hx-test");
        expect(typeof dashboard.refresh).toBe("string");
        // Same input, same bytes: installs and digests are stable.
        expect(serializeDashboard("hx-test")).toBe(serializeDashboard("hx-test"));
    });

    it("the template file is the generated one, with the uid placeholder filled per stack", () => {
        const template = readFileSync(path.join(PROJECT_DIR, "templates", DASHBOARD_TEMPLATE), "utf8");
        expect(template).toBe(dashboardTemplate());
        expect(JSON.parse(template).uid).toBe("{{hx.dashboardUid}}");
        const config = loadStackConfig("dash", {
            hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }],
            monitoringHost: "mon",
            dashboardUid: "hx-backup-prod",
        });
        const installed = JSON.parse(renderDashboardFile(config.monitoring!.dashboardUid));
        expect(installed.uid).toBe("hx-backup-prod");
        expect(installed).toEqual(renderDashboard("hx-backup-prod"));
        expect(readTemplate(DASHBOARD_TEMPLATE)).not.toMatch(/\{\{hx\.(?!dashboardUid\}\})/);
    });

    it("takes the datasource, host and type as template variables", () => {
        expect(variables.map((v) => v.name)).toEqual(["datasource", "host", "type"]);
        const [ds, host, type] = variables;
        expect(ds).toMatchObject({ type: "datasource", query: "prometheus" });
        for (const v of [host, type]) {
            expect(v).toMatchObject({ type: "query", includeAll: true, multi: true });
            expect(v.datasource?.uid).toBe(DATASOURCE_UID);
        }
        expect(host.query).toMatch(/^label_values\(.*backup_.*, instance\)$/);
        expect(type.query).toMatch(/^label_values\(.*instance=~"\$host".*, type\)$/);
    });

    it("uses the datasource variable on every panel and query", () => {
        expect(DATASOURCE_UID).toBe("${datasource}");
        for (const p of panels) {
            expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
            for (const t of p.targets) expect(t.datasource, `${p.title} ${t.refId}`).toEqual({ type: "prometheus", uid: "${datasource}" });
        }
    });

    it("has the required panels", () => {
        const titles = panels.map((p) => p.title);
        for (const wanted of [
            /success and failure rate/i, /duration/i, /storage utilization/i, /alert status/i, /system health/i,
            /time since last success per job/i, /verification and restore-test/i, /remote sync lag/i, /dedup.*bytes saved/i,
            /wal archive lag/i, /recovery window/i, /last full and differential backup/i, /restart pending/i,
        ]) {
            expect(titles.some((t) => wanted.test(t)), `a panel matching ${wanted} in ${titles.join(", ")}`).toBe(true);
        }
    });

    it("has a point-in-time recovery row on the archive job's and the pgBackRest backups' series", () => {
        const exprsOf = (title: RegExp) => panels.filter((p) => title.test(p.title)).flatMap((p) => p.targets.map((t) => t.expr));
        expect(exprsOf(/wal archive lag/i).join("\n")).toMatch(/^max by \(instance\) \(backup_wal_archive_lag_seconds\{/m);
        expect(exprsOf(/recovery window/i).join("\n")).toContain("backup_pitr_window_seconds{");
        expect(exprsOf(/last full and differential/i)).toEqual([
            'time() - backup_last_success_timestamp{instance=~"$host", type=~"$type", type="pitr", target=~"full|differential"}',
        ]);
        expect(exprsOf(/restart pending/i).join("\n")).toContain("backup_pitr_restart_pending{");
    });

    it("gives every panel a unique id, a known unit and targets with a non-empty expr and unique refIds", () => {
        expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
        expect(panels.length).toBe(PANELS.length);
        for (const p of panels) {
            expect(GRAFANA_UNITS.has(p.fieldConfig.defaults.unit), `${p.title}: unit ${p.fieldConfig.defaults.unit}`).toBe(true);
            expect(p.targets.length, p.title).toBeGreaterThan(0);
            expect(new Set(p.targets.map((t) => t.refId)).size, p.title).toBe(p.targets.length);
            for (const t of p.targets) {
                expect(t.expr.trim(), `${p.title} ${t.refId}`).not.toBe("");
                expect(t.legendFormat, `${p.title} ${t.refId}`).toBeTruthy();
                expect(Boolean(t.instant) !== Boolean(t.range), `${p.title} ${t.refId}: instant or range`).toBe(true);
            }
        }
    });

    it("lays the panels out within 24 columns without overlaps", () => {
        for (const p of panels) {
            const g = p.gridPos;
            expect(Number.isInteger(g.x) && Number.isInteger(g.y) && Number.isInteger(g.w) && Number.isInteger(g.h), p.title).toBe(true);
            expect(g.x, p.title).toBeGreaterThanOrEqual(0);
            expect(g.y, p.title).toBeGreaterThanOrEqual(0);
            expect(g.w, p.title).toBeGreaterThan(0);
            expect(g.h, p.title).toBeGreaterThan(0);
            expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
        }
        for (let i = 0; i < panels.length; i++) {
            for (let j = i + 1; j < panels.length; j++) {
                const a = panels[i].gridPos;
                const b = panels[j].gridPos;
                const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
                expect(overlap, `"${panels[i].title}" and "${panels[j].title}" overlap`).toBe(false);
            }
        }
    });

    it("filters every backup_* selector by $host, and per-job series by $type", () => {
        const specs = PANELS.flatMap((p) => p.queries.map((q) => ({ title: p.title, ...q })));
        expect(specs.map((q) => q.expr)).toEqual(queries.map((q) => q.expr));
        let selectors = 0;
        for (const q of specs) {
            for (const s of backupSelectors(q.expr)) {
                selectors++;
                const where = `${q.title}: ${s.metric}${s.matchers} in ${q.expr}`;
                expect(s.matchers, where).toContain('instance=~"$host"');
                const perHostMetric = (PER_HOST_METRICS as readonly string[]).includes(s.metric);
                if (perHostMetric) expect(s.matchers, `${where}: a per-host series has no type`).not.toContain("type=");
                else if (!q.perHost) expect(s.matchers, where).toContain('type=~"$type"');
            }
        }
        expect(selectors).toBeGreaterThan(15);
        // Non-backup series are filtered by host too.
        for (const q of queries.filter((x) => /\b(up|node_textfile_scrape_error|ALERTS)\{/.test(x.expr))) expect(q.expr, q.title).toContain('instance=~"$host"');
    });

    it("shows the rules' own alerts in the alert overview", () => {
        const overview = queries.filter((q) => /alert status/i.test(q.title));
        expect(overview.length).toBeGreaterThan(0);
        for (const q of overview) expect(q.expr).toContain(`alertname=~"${alertNames().join("|")}"`);
    });

    it("substitutes the variables as Grafana's All does for a query", () => {
        expect(substituteVariables('backup_size_bytes{instance=~"$host", type=~"$type"}')).toBe('backup_size_bytes{instance=~".*", type=~".*"}');
        expect(substituteVariables('x{instance=~"$host"}', { host: "db-1:9100" })).toBe('x{instance=~"db-1:9100"}');
        for (const q of queries) expect(substituteVariables(q.expr), q.title).not.toMatch(/\$(host|type)\b/);
    });
});

const noPromtool = skipWithout("promtool");

describe.skipIf(noPromtool)("every dashboard query is valid PromQL (promtool as a parser)", () => {
    const dir = tempDir("hx-dashboard-");
    afterAll(() => removeDir(dir));

    function checkExprs(file: string, exprs: string[]) {
        const rules = { groups: [{ name: "dashboard-queries", rules: exprs.map((expr, i) => ({ record: `hx_dashboard:query_${i + 1}`, expr })) }] };
        writeFileSync(path.join(dir, file), stringify(rules, { lineWidth: 0 }));
        return run("promtool", ["check", "rules", file], { cwd: dir });
    }

    it("parses each panel query with $host and $type as .*", () => {
        requireTools("promtool");
        const exprs = queries.map((q) => substituteVariables(q.expr));
        const res = checkExprs("dashboard-queries.yml", exprs);
        expect(res.status, res.stdout + res.stderr).toBe(0);
        expect(res.stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
    });

    it("parses the variables' series selectors", () => {
        requireTools("promtool");
        const selectors = variables.filter((v) => v.type === "query").map((v) => substituteVariables(/^label_values\((.*), \w+\)$/.exec(v.query)![1]));
        const res = checkExprs("variable-selectors.yml", selectors);
        expect(res.status, res.stdout + res.stderr).toBe(0);
    });

    it("and the check notices an invalid query", () => {
        requireTools("promtool");
        const res = checkExprs("broken.yml", ['sum by (type) (backup_size_bytes{instance=~".*"}']);
        expect(res.status).not.toBe(0);
    });
});
