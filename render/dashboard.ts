/**
 * The Grafana dashboard, built as data: panels are listed once with their
 * queries, and the JSON model (schemaVersion 39) is generated from them.
 */

export const DASHBOARD_SCHEMA_VERSION = 39;

type PanelKind = "timeseries" | "stat" | "table" | "state-timeline" | "bargauge";

interface PanelSpec {
    title: string;
    kind: PanelKind;
    unit: string;
    description: string;
    queries: { expr: string; legend: string }[];
    width?: number;
    height?: number;
    thresholds?: { color: string; value: number | null }[];
}

/** Label filter applied to every backup_* series through the template variables. */
const SEL = `instance=~"$host", type=~"$type"`;

export const PANELS: readonly PanelSpec[] = [
    {
        title: "Last run status", kind: "stat", unit: "none", width: 6,
        description: "1 = the last run succeeded, 0 = it failed.",
        queries: [{ expr: `min(backup_last_run_status{${SEL}})`, legend: "worst" }],
        thresholds: [{ color: "red", value: null }, { color: "green", value: 1 }],
    },
    {
        title: "Backup success and failure rate (24h)", kind: "timeseries", unit: "short", width: 9,
        description: "Runs that changed the last-success time (successes) and runs that ended failed, per day.",
        queries: [
            { expr: `sum by (type) (changes(backup_last_success_timestamp{${SEL}}[24h]))`, legend: "{{type}} successes" },
            { expr: `sum by (type) (count_over_time((backup_last_run_status{${SEL}} == 0)[24h:5m])) / 288`, legend: "{{type}} failed share" },
        ],
    },
    {
        title: "Alert status overview", kind: "stat", unit: "short", width: 9,
        description: "Backup alerts currently firing (from Prometheus's ALERTS series).",
        queries: [{ expr: `sum by (alertname) (ALERTS{alertstate="firing", alertname=~"Backup.*|StorageFull|VerificationFailed|RestoreTestFailed|RemoteSync.*|TextfileScrapeError|ConfigDrift"}) or vector(0)`, legend: "{{alertname}}" }],
        thresholds: [{ color: "green", value: null }, { color: "red", value: 1 }],
    },
    {
        title: "Time since last success", kind: "table", unit: "s", width: 12,
        description: "Per job: how long ago the last successful backup finished, against the job's own interval.",
        queries: [
            { expr: `time() - backup_last_success_timestamp{${SEL}}`, legend: "{{instance}} {{type}}/{{target}}" },
            { expr: `backup_expected_interval_seconds{${SEL}}`, legend: "interval {{instance}} {{type}}/{{target}}" },
        ],
    },
    {
        title: "Backup duration", kind: "timeseries", unit: "s", width: 12,
        description: "Duration of the last run per job.",
        queries: [{ expr: `backup_duration_seconds{${SEL}}`, legend: "{{instance}} {{type}}/{{target}}" }],
    },
    {
        title: "Backup size", kind: "timeseries", unit: "bytes", width: 12,
        description: "Size of the newest stored artifact per job.",
        queries: [{ expr: `backup_size_bytes{${SEL}}`, legend: "{{instance}} {{type}}/{{target}}" }],
    },
    {
        title: "Storage utilization", kind: "timeseries", unit: "percentunit", width: 12,
        description: "Used share of the backup filesystem, and bytes held by backups.",
        queries: [
            { expr: `1 - max by (instance) (backup_storage_filesystem_avail_bytes{instance=~"$host"}) / max by (instance) (backup_storage_filesystem_size_bytes{instance=~"$host"})`, legend: "{{instance}} filesystem used" },
        ],
    },
    {
        title: "Verification and restore tests", kind: "state-timeline", unit: "none", width: 12,
        description: "1 = passed, 0 = failed.",
        queries: [
            { expr: `backup_verification_status{${SEL}}`, legend: "verify {{instance}} {{type}}/{{target}}" },
            { expr: `backup_restore_test_status{${SEL}}`, legend: "restore {{instance}} {{type}}/{{target}}" },
        ],
        thresholds: [{ color: "red", value: null }, { color: "green", value: 1 }],
    },
    {
        title: "Remote sync lag", kind: "timeseries", unit: "s", width: 12,
        description: "Time since the newest successful upload to S3, per job.",
        queries: [{ expr: `time() - backup_remote_sync_last_success_timestamp{${SEL}}`, legend: "{{instance}} {{type}}/{{target}}" }],
    },
    {
        title: "Deduplication: bytes saved", kind: "bargauge", unit: "bytes", width: 12,
        description: "Bytes not stored or uploaded again because the content was unchanged.",
        queries: [{ expr: `sum by (instance, type) (backup_dedup_saved_bytes{${SEL}})`, legend: "{{instance}} {{type}}" }],
    },
    {
        title: "System health: textfile collector and drift", kind: "stat", unit: "short", width: 12,
        description: "Textfile scrape errors and drifted paths per host; both should be 0.",
        queries: [
            { expr: `max by (instance) (node_textfile_scrape_error{instance=~"$host"})`, legend: "{{instance}} scrape errors" },
            { expr: `max by (instance) (backup_config_drift{instance=~"$host"})`, legend: "{{instance}} drifted paths" },
        ],
        thresholds: [{ color: "green", value: null }, { color: "red", value: 1 }],
    },
];

export function renderDashboard(uid: string, title = "hx-backup"): Record<string, unknown> {
    let x = 0;
    let y = 0;
    const panels = PANELS.map((p, i) => {
        const w = p.width ?? 12;
        const h = p.height ?? 8;
        if (x + w > 24) {
            x = 0;
            y += h;
        }
        const gridPos = { x, y, w, h };
        x += w;
        return {
            id: i + 1,
            type: p.kind,
            title: p.title,
            description: p.description,
            datasource: { type: "prometheus", uid: "${datasource}" },
            gridPos,
            fieldConfig: {
                defaults: {
                    unit: p.unit,
                    ...(p.thresholds ? { thresholds: { mode: "absolute", steps: p.thresholds } } : {}),
                },
                overrides: [],
            },
            options: {},
            targets: p.queries.map((q, j) => ({
                refId: String.fromCharCode(65 + j),
                datasource: { type: "prometheus", uid: "${datasource}" },
                expr: q.expr,
                legendFormat: q.legend,
                ...(p.kind === "table" || p.kind === "stat" ? { instant: true } : { range: true }),
            })),
        };
    });
    const labelVar = (name: string, label: string, query: string) => ({
        name,
        label,
        type: "query",
        datasource: { type: "prometheus", uid: "${datasource}" },
        query: { query, refId: `${name}-var` },
        definition: query,
        refresh: 2,
        includeAll: true,
        multi: true,
        allValue: ".*",
        current: { text: "All", value: "$__all" },
        sort: 1,
    });
    return {
        uid,
        title,
        tags: ["hx-backup", "backup"],
        timezone: "browser",
        editable: false,
        schemaVersion: DASHBOARD_SCHEMA_VERSION,
        version: 1,
        refresh: "1m",
        time: { from: "now-7d", to: "now" },
        templating: {
            list: [
                { name: "datasource", label: "Data source", type: "datasource", query: "prometheus", current: {}, refresh: 1 },
                labelVar("host", "Host", "label_values(backup_last_attempt_timestamp, instance)"),
                labelVar("type", "Type", "label_values(backup_last_attempt_timestamp{instance=~\"$host\"}, type)"),
            ],
        },
        annotations: { list: [] },
        panels,
    };
}

/** Stable JSON for installing and hashing. */
export function serializeDashboard(uid: string): string {
    return `${JSON.stringify(renderDashboard(uid), null, 2)}\n`;
}
