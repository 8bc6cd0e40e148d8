/**
 * The Grafana dashboard, built as data: panels are listed once with their
 * queries, and Grafana's foundation SDK builds the JSON model from them (classic
 * model, schemaVersion 42) into templates/monitoring/hx-backup-dashboard.json by
 * `npm run gen`. The SDK is used only here, at generation time.
 *
 * Query conventions (checked by tests/unit/dashboard.test.ts):
 *   - every backup_* selector carries `instance=~"$host"`;
 *   - per-job series (type/target labels) also carry `type=~"$type"`, except in
 *     queries marked `perHost`, which total a host's jobs on purpose (quota share);
 *   - per-host series (filesystem, quota, drift) are aggregated `by (instance)`,
 *     since a host may export them once per job file;
 *   - the datasource is always the `${datasource}` template variable.
 */
import * as bargauge from "@grafana/grafana-foundation-sdk/bargauge";
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import * as prometheus from "@grafana/grafana-foundation-sdk/prometheus";
import * as stat from "@grafana/grafana-foundation-sdk/stat";
import * as statetimeline from "@grafana/grafana-foundation-sdk/statetimeline";
import * as table from "@grafana/grafana-foundation-sdk/table";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";
import { alertNames } from "../../render/monitoringPlan";

/** The schema the SDK's dashboard model is written in (its builder sets it). */
export const DASHBOARD_SCHEMA_VERSION = 42;

/** Uid of the datasource on every panel and query: the `datasource` template variable. */
export const DATASOURCE_UID = "${datasource}";

/** Series exported once per host (no type/target of their own); never filtered by `$type`. */
export const PER_HOST_METRICS = [
    "backup_storage_filesystem_size_bytes",
    "backup_storage_filesystem_avail_bytes",
    "backup_storage_quota_bytes",
    "backup_config_drift",
] as const;

type PanelKind = "timeseries" | "stat" | "table" | "state-timeline" | "bargauge";

type Steps = dashboard.Threshold[];

export interface QuerySpec {
    readonly expr: string;
    readonly legend: string;
    /** Unit for this query's fields when it differs from the panel's. */
    readonly unit?: string;
    /** Column name in a table panel. */
    readonly column?: string;
    readonly thresholds?: Steps;
    /** Selects per-job series of the host without `$type` on purpose (a total over all its jobs). */
    readonly perHost?: boolean;
}

export interface PanelSpec {
    readonly title: string;
    readonly kind: PanelKind;
    readonly unit: string;
    readonly description: string;
    readonly queries: readonly QuerySpec[];
    readonly width: number;
    readonly height: number;
    readonly thresholds?: Steps;
    readonly min?: number;
    readonly max?: number;
    /** 0/1 status values shown as words. */
    readonly statusMapping?: { readonly ok: string; readonly failed: string };
}

/** Label filters applied through the template variables. */
const JOB = `instance=~"$host", type=~"$type"`;
const HOST = `instance=~"$host"`;

const OK_RED: Steps = [{ color: "red", value: null }, { color: "green", value: 1 }];
const ZERO_GREEN: Steps = [{ color: "green", value: null }, { color: "red", value: 1 }];

function alertsSelector(): string {
    return `ALERTS{alertstate="firing", alertname=~"${alertNames().join("|")}", ${HOST}}`;
}

export function panelSpecs(): PanelSpec[] {
    return [
        // --- Overview row -------------------------------------------------------------
        {
            title: "Last run status", kind: "stat", unit: "none", width: 6, height: 6,
            description: "Worst last-run status over the selected jobs: ok when every job's last run succeeded.",
            queries: [{ expr: `min(backup_last_run_status{${JOB}})`, legend: "worst job" }],
            thresholds: OK_RED,
            statusMapping: { ok: "ok", failed: "failed" },
        },
        {
            title: "Alert status overview", kind: "stat", unit: "short", width: 9, height: 6,
            description: "hx-backup alerts firing now for the selected hosts (Prometheus's ALERTS series), in total and per alert.",
            queries: [
                { expr: `count(${alertsSelector()}) or vector(0)`, legend: "firing" },
                { expr: `count by (alertname) (${alertsSelector()})`, legend: "{{alertname}}" },
            ],
            thresholds: ZERO_GREEN,
        },
        {
            title: "System health indicators", kind: "stat", unit: "short", width: 9, height: 6,
            description: "Per host: node_exporter scraped (1 = up), textfile scrape errors and drifted paths (both should be 0).",
            queries: [
                { expr: `min by (instance) (up{${HOST}})`, legend: "{{instance}} node_exporter up", thresholds: OK_RED },
                { expr: `max by (instance) (node_textfile_scrape_error{${HOST}})`, legend: "{{instance}} textfile errors" },
                { expr: `max by (instance) (backup_config_drift{${HOST}})`, legend: "{{instance}} drifted paths" },
            ],
            thresholds: ZERO_GREEN,
        },
        // --- Runs ---------------------------------------------------------------------
        {
            title: "Backup success and failure rate", kind: "timeseries", unit: "percentunit", width: 12, height: 8, min: 0, max: 1,
            description: "Per type: the share of jobs whose last run succeeded, and the share whose last run failed.",
            queries: [
                { expr: `avg by (type) (backup_last_run_status{${JOB}})`, legend: "{{type}} succeeded" },
                { expr: `1 - avg by (type) (backup_last_run_status{${JOB}})`, legend: "{{type}} failed" },
            ],
        },
        {
            title: "Successful backups per day", kind: "timeseries", unit: "short", width: 12, height: 8, min: 0,
            description: "Per type: successful runs in the preceding 24 hours (each success moves the job's last-success time).",
            queries: [{ expr: `sum by (type) (changes(backup_last_success_timestamp{${JOB}}[1d]))`, legend: "{{type}}" }],
        },
        {
            title: "Time since last success per job", kind: "table", unit: "s", width: 12, height: 8,
            description: "Per job: how long ago its last successful run finished, its schedule's interval, and the ratio. BackupDelayed fires a little above 100%: once the next run should have finished (interval, start delay, last duration and 30 minutes' grace).",
            queries: [
                { expr: `time() - backup_last_success_timestamp{${JOB}}`, legend: "since last success", column: "Since last success" },
                // `max without ()` only drops the metric name, so the three results merge into one row per job.
                { expr: `max without () (backup_expected_interval_seconds{${JOB}})`, legend: "schedule interval", column: "Schedule interval" },
                {
                    expr: `(time() - backup_last_success_timestamp{${JOB}}) / backup_expected_interval_seconds{${JOB}}`,
                    legend: "share of interval", column: "Share of interval", unit: "percentunit",
                    thresholds: [{ color: "green", value: null }, { color: "orange", value: 1 }, { color: "red", value: 1.1 }],
                },
            ],
        },
        {
            title: "Backup duration", kind: "timeseries", unit: "s", width: 12, height: 8, min: 0,
            description: "Duration of each job's last run.",
            queries: [{ expr: `backup_duration_seconds{${JOB}}`, legend: "{{instance}} {{type}}/{{target}}" }],
        },
        {
            title: "Backup size", kind: "timeseries", unit: "bytes", width: 12, height: 8, min: 0,
            description: "Size of each job's newest stored artifact.",
            queries: [{ expr: `backup_size_bytes{${JOB}}`, legend: "{{instance}} {{type}}/{{target}}" }],
        },
        // --- Storage ------------------------------------------------------------------
        {
            title: "Storage utilization", kind: "timeseries", unit: "percentunit", width: 12, height: 8, min: 0, max: 1,
            description: "Per host: used share of the backup filesystem (StorageFull fires above 90%), and the backups' share of the storage quota (when one is set).",
            queries: [
                {
                    expr: `max by (instance) (1 - backup_storage_filesystem_avail_bytes{${HOST}} / backup_storage_filesystem_size_bytes{${HOST}})`,
                    legend: "{{instance}} filesystem used",
                },
                {
                    expr: `sum by (instance) (backup_storage_usage_bytes{${HOST}}) / max by (instance) (backup_storage_quota_bytes{${HOST}} > 0)`,
                    legend: "{{instance}} of quota", perHost: true,
                },
            ],
            thresholds: [{ color: "green", value: null }, { color: "red", value: 0.9 }],
        },
        {
            title: "Backup storage used", kind: "timeseries", unit: "bytes", width: 12, height: 8, min: 0,
            description: "Bytes held by each type's local backups per host, and the host's quota when one is set.",
            queries: [
                { expr: `sum by (instance, type) (backup_storage_usage_bytes{${JOB}})`, legend: "{{instance}} {{type}}" },
                { expr: `max by (instance) (backup_storage_quota_bytes{${HOST}} > 0)`, legend: "{{instance}} quota" },
            ],
        },
        // --- Checks and off-site copies -------------------------------------------------
        {
            title: "Verification and restore-test status", kind: "state-timeline", unit: "none", width: 12, height: 8,
            description: "Per job: the newest artifact's integrity check and the last real restore test.",
            queries: [
                { expr: `backup_verification_status{${JOB}}`, legend: "verify {{instance}} {{type}}/{{target}}" },
                { expr: `backup_restore_test_status{${JOB}}`, legend: "restore {{instance}} {{type}}/{{target}}" },
            ],
            thresholds: OK_RED,
            statusMapping: { ok: "passed", failed: "failed" },
        },
        {
            title: "Remote sync lag", kind: "timeseries", unit: "s", width: 12, height: 8, min: 0,
            description: "Per job: time since the newest successful upload to S3 (RemoteSyncStale fires above two schedule intervals).",
            queries: [{ expr: `time() - backup_remote_sync_last_success_timestamp{${JOB}}`, legend: "{{instance}} {{type}}/{{target}}" }],
        },
        {
            title: "Deduplication: bytes saved", kind: "bargauge", unit: "bytes", width: 12, height: 8, min: 0,
            description: "Per host and type: bytes the last runs did not store or upload again because the content was unchanged.",
            queries: [{ expr: `sum by (instance, type) (backup_dedup_saved_bytes{${JOB}})`, legend: "{{instance}} {{type}}" }],
        },
        // --- Point-in-time recovery (pgBackRest) -------------------------------------------
        // Exported by the archive status job (type pitr, target archive) and the pgBackRest full and
        // differential backups (targets full, differential); one cluster per host, so per instance.
        {
            title: "WAL archive lag", kind: "timeseries", unit: "s", width: 12, height: 8, min: 0,
            description: "Per host: age of the oldest WAL segment waiting to be archived (0 when none waits), and the host's archive_timeout. WalArchiveLag fires when the lag stays above alertWalArchiveLagTimeouts (3 by default) archive timeouts for 5 minutes.",
            queries: [
                { expr: `max by (instance) (backup_wal_archive_lag_seconds{${JOB}})`, legend: "{{instance}} lag" },
                { expr: `max by (instance) (backup_wal_archive_timeout_seconds{${JOB}})`, legend: "{{instance}} archive_timeout" },
            ],
        },
        {
            title: "Point-in-time recovery window", kind: "timeseries", unit: "s", width: 12, height: 8, min: 0,
            description: "Per host: the span a restore can reach, from the oldest to the newest restorable point in the pgBackRest repository.",
            queries: [{ expr: `max by (instance) (backup_pitr_window_seconds{${JOB}})`, legend: "{{instance}}" }],
        },
        {
            title: "Time since last full and differential backup", kind: "timeseries", unit: "s", width: 12, height: 8, min: 0,
            description: "Per host: how long ago the last pgBackRest full (weekly by default) and differential (daily) backup succeeded. BackupDelayed fires once the next scheduled one should have finished.",
            queries: [
                { expr: `time() - backup_last_success_timestamp{${JOB}, type="pitr", target=~"full|differential"}`, legend: "{{instance}} {{target}}" },
            ],
        },
        {
            title: "PITR restart pending and archiving failing", kind: "stat", unit: "none", width: 12, height: 8,
            description: "Per host, both should be 0: a PostgreSQL restart pending before WAL archiving starts (PitrRestartPending; postgresql.pitr.allowRestart is false), and the newest WAL archive attempt failed (WalArchiveFailing).",
            queries: [
                { expr: `max by (instance) (backup_pitr_restart_pending{${JOB}})`, legend: "{{instance}} restart pending" },
                { expr: `max by (instance) (backup_wal_archive_failing{${JOB}})`, legend: "{{instance}} archiving failing" },
            ],
            thresholds: ZERO_GREEN,
        },
    ];
}

/** The panel specs (a stable list; the alert names come from the rules template). */
export const PANELS: readonly PanelSpec[] = panelSpecs();

const datasource: common.DataSourceRef = { type: "prometheus", uid: DATASOURCE_UID };

const refId = (j: number) => String.fromCharCode(65 + j);

const absolute = (steps: Steps) => new dashboard.ThresholdsConfigBuilder().mode(dashboard.ThresholdsMode.Absolute).steps(steps);

const lastNotNull = () => new common.ReduceDataOptionsBuilder().values(false).calcs(["lastNotNull"]).fields("");

/** A table shows one row per job: the instant queries are merged on their labels. */
function tablePanel(p: PanelSpec): table.PanelBuilder {
    const renameByName: Record<string, string> = {};
    p.queries.forEach((q, j) => {
        if (q.column) renameByName[`Value #${refId(j)}`] = q.column;
    });
    return new table.PanelBuilder()
        .withTransformation({ id: "merge", options: {} })
        .withTransformation({ id: "organize", options: { excludeByName: { Time: true, job: true, __name__: true }, indexByName: {}, renameByName } });
}

/** The builder of the panel's type, with the display options this dashboard uses for that type. */
function visualization(p: PanelSpec) {
    switch (p.kind) {
        case "stat":
            return new stat.PanelBuilder()
                .reduceOptions(lastNotNull())
                .colorMode(common.BigValueColorMode.Background)
                .graphMode(common.BigValueGraphMode.None)
                .textMode(common.BigValueTextMode.ValueAndName);
        case "bargauge":
            return new bargauge.PanelBuilder()
                .reduceOptions(lastNotNull())
                .displayMode(common.BarGaugeDisplayMode.Gradient)
                .orientation(common.VizOrientation.Horizontal)
                .showUnfilled(true);
        case "table":
            return tablePanel(p);
        case "state-timeline":
            return new statetimeline.PanelBuilder().tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Single).sort(common.SortOrder.None));
        case "timeseries": {
            const panel = new timeseries.PanelBuilder()
                .legend(new common.VizLegendOptionsBuilder().showLegend(true))
                .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending));
            return p.thresholds ? panel.thresholdsStyle(new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Line)) : panel;
        }
    }
}

function panelBuilder(p: PanelSpec, id: number) {
    const panel = visualization(p).id(id).title(p.title).description(p.description).datasource(datasource).span(p.width).height(p.height).unit(p.unit);
    if (p.min !== undefined) panel.min(p.min);
    if (p.max !== undefined) panel.max(p.max);
    if (p.thresholds) panel.thresholds(absolute(p.thresholds));
    if (p.statusMapping) {
        panel.mappings([{
            type: dashboard.MappingType.ValueToText,
            options: {
                "0": { text: p.statusMapping.failed, color: "red", index: 0 },
                "1": { text: p.statusMapping.ok, color: "green", index: 1 },
            },
        }]);
    }
    p.queries.forEach((q, j) => {
        const query = new prometheus.DataqueryBuilder().refId(refId(j)).datasource(datasource).expr(q.expr).legendFormat(q.legend);
        // Current values for stat, table and bar gauge panels; history for the others.
        if (p.kind === "table") query.instant().format(prometheus.PromQueryFormat.Table);
        else if (p.kind === "stat" || p.kind === "bargauge") query.instant();
        else query.range();
        panel.withTarget(query);
        const properties: dashboard.DynamicConfigValue[] = [];
        if (q.unit) properties.push({ id: "unit", value: q.unit });
        if (q.thresholds) properties.push({ id: "thresholds", value: absolute(q.thresholds).build() });
        if (p.kind === "table" && q.thresholds) properties.push({ id: "custom.cellOptions", value: { type: common.TableCellDisplayMode.ColorText } });
        if (properties.length) panel.overrideByQuery(refId(j), properties);
    });
    return panel;
}

/** Grafana's query variable over a label of the backup series, every value selected. */
function labelVariable(name: string, label: string, query: string): dashboard.QueryVariableBuilder {
    return new dashboard.QueryVariableBuilder(name)
        .label(label)
        .datasource(datasource)
        .query(query)
        .definition(query)
        .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
        .sort(dashboard.VariableSort.AlphabeticalAsc)
        .includeAll(true)
        .multi(true)
        // No custom "All" value: Grafana then sends the alternation of the listed values, so
        // "All hosts" means the hosts that export backup metrics (not every target's `up`).
        .current({ selected: true, text: ["All"], value: ["$__all"] });
}

/**
 * The dashboard's JSON model. DashboardBuilder lays the panels out left to right, starting a
 * new row once 24 columns are filled; the JSON round trip drops the SDK's marker method on queries.
 */
export function renderDashboard(uid: string, title = "hx-backup"): dashboard.Dashboard {
    const builder = new dashboard.DashboardBuilder(title)
        .uid(uid)
        .description("hx-backup: backup runs, schedules, storage, verification, restore tests, off-site copies and point-in-time recovery per host and job.")
        .tags(["hx-backup", "backup"])
        .readonly()
        .tooltip(dashboard.DashboardCursorSync.Crosshair)
        .version(1)
        .refresh("1m")
        .time({ from: "now-7d", to: "now" })
        .annotations([])
        .withVariable(new dashboard.DatasourceVariableBuilder("datasource").label("Data source").type("prometheus"))
        .withVariable(labelVariable("host", "Host", `label_values({__name__=~"backup_.+"}, instance)`))
        .withVariable(labelVariable("type", "Type", `label_values({__name__=~"backup_.+", instance=~"$host"}, type)`));
    PANELS.forEach((p, i) => builder.withPanel(panelBuilder(p, i + 1)));
    return JSON.parse(JSON.stringify(builder.build())) as dashboard.Dashboard;
}

/** Every panel query of a rendered dashboard, with its panel. */
export function dashboardQueries(model: dashboard.Dashboard): { panelId: number; title: string; refId: string; expr: string }[] {
    return (model.panels ?? []).flatMap((p) => {
        const queries = ("targets" in p ? (p.targets ?? []) : []) as prometheus.Dataquery[];
        return queries.map((q) => ({ panelId: p.id!, title: p.title!, refId: q.refId!, expr: q.expr }));
    });
}

/**
 * A query as Grafana sends it to Prometheus for the given variable values
 * (regular expressions; ".*" is "All").
 */
export function substituteVariables(expr: string, values: { host?: string; type?: string } = {}): string {
    return expr.replace(/\$host\b/g, values.host ?? ".*").replace(/\$type\b/g, values.type ?? ".*");
}

/** Stable JSON for installing and hashing. */
export function serializeDashboard(uid: string): string {
    return `${JSON.stringify(renderDashboard(uid), null, 2)}\n`;
}
