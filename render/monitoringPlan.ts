/**
 * What the monitoring host receives: the alert rules (gated by promtool, then
 * Prometheus is reloaded), the Grafana dashboard (file provisioning or the
 * HTTP API) and, with notifications, hx-backup's route and receivers in the
 * existing Alertmanager config. Same Step shape as a backup host's plan.
 */
import type { StackConfig } from "../config/types";
import { renderAlertmanagerBlocks, smtpPasswordPath } from "./alertmanager";
import { nodeExporterUrlOf } from "./hostConfig";
import { manifestDir } from "./paths";
import { sha256 } from "./remote";
import { digestOf, filesStep, installSecretFilesScript, removeFilesScript, stepScript, withManifestEntry, type FileCheck, type PlannedSecretFile, type Step } from "./step";
import { readTemplate, renderTemplate } from "./template";

export const RULES_TEMPLATE = "monitoring/backup-alert-rules.yml";
export const DASHBOARD_TEMPLATE = "monitoring/hx-backup-dashboard.json";

/** Alert names, in file order (a stack output). */
export function alertNames(): string[] {
    return [...readTemplate(RULES_TEMPLATE).matchAll(/^\s*- alert: (\S+)/gm)].map((m) => m[1]);
}

export function renderRules(config: StackConfig): string {
    const rotationDays = config.encryption.rotationDays;
    const { storageUsedPercent, overdueGraceSeconds, walArchiveLagTimeouts } = config.alertThresholds;
    return renderTemplate(RULES_TEMPLATE, {
        stack: config.stack,
        runbookBaseUrl: config.monitoring?.runbookBaseUrl ?? "",
        keyRotationDays: String(rotationDays),
        keyRotationSeconds: String(rotationDays * 86400),
        storageUsedPercent: String(storageUsedPercent),
        storageUsedRatio: (storageUsedPercent / 100).toFixed(2),
        overdueGraceSeconds: String(overdueGraceSeconds),
        overdueGraceMinutes: String(overdueGraceSeconds / 60),
        walArchiveLagTimeouts: String(walArchiveLagTimeouts),
    });
}

/** The dashboard file for `dashboardUid` (config.monitoring.dashboardUid; its default is config/schema.ts `dashboardUid`). */
export function renderDashboardFile(dashboardUid: string): string {
    return renderTemplate(DASHBOARD_TEMPLATE, { dashboardUid });
}

/** The seed's monitoring config path. */
export const monitoringConfPath = (config: StackConfig): string => `${config.paths.configDir}/monitoring.conf`;

/**
 * `/etc/hx-backup/monitoring.conf` on the monitoring host: what the monitoring
 * side uses, in one place an operator finds it, rendered from the same stack
 * config as the rules, the Alertmanager blocks and every host's backup.json
 * (so it is never a second source). JSON; no secrets, only where they are.
 */
export function renderMonitoringConf(config: StackConfig): string {
    const m = config.monitoring!;
    const n = config.notifications;
    const conf = {
        comment: `Managed by hx-backup (stack ${config.stack}): what the monitoring side uses. Change the stack config and run pulumi up, not this file.`,
        stack: config.stack,
        monitoringHost: m.host,
        nodeExporterUrl: config.nodeExporterUrl,
        // Each host's own, where a host sets one (hosts.nodeExporterUrl): what its test-monitoring.sh checks.
        nodeExporterUrls: Object.fromEntries(config.hosts.map((h) => [h.name, nodeExporterUrlOf(config, h)])),
        textfileDir: config.paths.textfileDir,
        prometheus: { rulesPath: m.rulesPath, promtool: m.promtool, reloadCommand: m.reloadCommand, alerts: alertNames(), runbookBaseUrl: m.runbookBaseUrl },
        grafana: { mode: m.grafanaMode, dashboardUid: m.dashboardUid, ...(m.grafanaMode === "file" ? { dashboardDir: m.grafanaDashboardDir } : m.grafanaMode === "api" ? { url: m.grafanaUrl } : {}) },
        thresholds: {
            storageUsedPercent: config.alertThresholds.storageUsedPercent,
            overdueGraceSeconds: config.alertThresholds.overdueGraceSeconds,
            walArchiveLagTimeouts: config.alertThresholds.walArchiveLagTimeouts,
            keyRotationDays: config.encryption.rotationDays,
            sizeBandPercent: [config.sizeCheck.lowPercent, config.sizeCheck.highPercent],
            storageQuotaBytes: config.storageQuotaBytes,
        },
        notifications: n
            ? {
                  alertmanagerConfig: n.configPath,
                  to: n.to,
                  from: n.from,
                  smarthost: n.smarthost,
                  requireTls: n.requireTls,
                  authUsername: n.authUsername,
                  ...(n.authUsername ? { authPasswordFile: smtpPasswordPath(config) } : {}),
                  severities: n.severities,
                  routes: n.routes.map((r) => ({ [r.label]: r.value, to: r.to })),
                  groupWait: n.groupWait,
                  groupInterval: n.groupInterval,
                  repeatInterval: n.repeatInterval,
              }
            : null,
    };
    return `${JSON.stringify(conf, null, 2)}\n`;
}

export function planMonitoring(config: StackConfig): Step[] {
    const m = config.monitoring;
    if (!m) return [];
    const rules = renderRules(config);
    const rulesFile = { path: m.rulesPath, owner: "root", group: "root", mode: "0644", content: rules };
    const check: FileCheck = [m.promtool, "check", "rules"];
    // Every folder above the rules file: Prometheus, its own user, needs to pass through them.
    const ancestors = m.rulesPath.split("/").slice(1, -1).map((_, i, parts) => `/${parts.slice(0, i + 1).join("/")}`);
    const steps: Step[] = [
        // A file that fails promtool never replaces the live one; Prometheus re-reads only a checked file.
        filesStep("alert-rules", [rulesFile], [], {
            check,
            after: stepScript("prometheus-rules", { action: "install", reload: m.reloadCommand }, ancestors),
            delete: `${removeFilesScript([m.rulesPath])}\n${stepScript("prometheus-rules", { action: "remove", reload: m.reloadCommand })}`,
        }),
        filesStep("monitoring-conf", [{ path: monitoringConfPath(config), owner: "root", group: "root", mode: "0644", content: renderMonitoringConf(config) }], []),
    ];
    steps.push(...planAlertmanager(config));
    const dashboard = renderDashboardFile(m.dashboardUid);
    if (m.grafanaMode === "file") {
        steps.push(filesStep("dashboard", [{ path: `${m.grafanaDashboardDir}/${m.dashboardUid}.json`, owner: "root", group: "root", mode: "0644", content: dashboard }], []));
    } else if (m.grafanaMode === "api") {
        steps.push({
            name: "dashboard",
            create: stepScript("grafana-dashboard-api", { dashboards_api: `${m.grafanaUrl}/api/dashboards/db` }),
            // No delete: the token is only on create's stdin, and a leftover dashboard harms nothing.
            // stdin: first line the token (added by the component as a secret), then the dashboard.
            stdin: dashboard,
            files: [],
            secretFiles: [],
            dependsOn: [],
            digest: digestOf({ url: m.grafanaUrl, content: sha256(dashboard) }),
        });
    }
    return steps.map((s) => withManifestEntry(config, s));
}

/**
 * Email notifications: the SMTP password as a file only root and
 * Alertmanager's group read, then hx-backup's blocks in the live config
 * (checked by amtool before they replace it). Destroy takes out only the blocks.
 */
function planAlertmanager(config: StackConfig): Step[] {
    const n = config.notifications;
    const blocks = renderAlertmanagerBlocks(config);
    if (!n || !blocks) return [];
    const steps: Step[] = [];
    if (n.authUsername) {
        const passwordFile: PlannedSecretFile = { path: smtpPasswordPath(config), owner: "root", group: n.group, mode: "0640", secret: { kind: "smtpPassword" } };
        steps.push({
            name: "alertmanager-smtp-password",
            create: installSecretFilesScript([passwordFile]),
            delete: removeFilesScript([passwordFile.path]),
            remove: removeFilesScript(),
            files: [],
            secretFiles: [passwordFile],
            dependsOn: [],
            digest: digestOf({ path: passwordFile.path, owner: passwordFile.owner, group: passwordFile.group, mode: passwordFile.mode }),
        });
    }
    const values = (action: "install" | "remove") => ({
        am_config: n.configPath, amtool: n.amtool, reload: n.reloadCommand, stack: config.stack, action, route_block: blocks.route, receivers_block: blocks.receivers,
        manifest_entry: `${manifestDir(config)}/alertmanager-route.tsv`,
    });
    steps.push({
        name: "alertmanager-route",
        create: stepScript("alertmanager-block", values("install")),
        delete: stepScript("alertmanager-block", values("remove")),
        files: [],
        secretFiles: [],
        claims: [`alertmanager:${n.configPath}#${config.stack}`],
        dependsOn: n.authUsername ? ["alertmanager-smtp-password"] : [],
        digest: digestOf({ path: n.configPath, amtool: n.amtool, reload: n.reloadCommand, blocks }),
    });
    return steps;
}