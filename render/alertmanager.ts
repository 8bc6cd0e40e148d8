/**
 * hx-backup's part of the monitoring host's Alertmanager config: one route
 * (alerts with `component: hx-backup`, first among the root route's children,
 * with `continue: true` so the operator's own routes still see them) and its
 * email receivers. The host step (templates/steps/alertmanager-block.sh) puts
 * each fragment between marker comments in the live file and leaves every
 * other line as it was.
 *
 * Every scalar is written as a JSON string, which YAML reads as a
 * double-quoted scalar: a value is data, whatever it contains.
 */
import * as path from "node:path";
import type { StackConfig } from "../config/types";

/** The stack's receiver (names carry the stack: two stacks may share one Alertmanager). */
export const receiverName = (stack: string, i = 0): string => `hx-backup-${stack}-email${i === 0 ? "" : `-${i}`}`;

/** Where the SMTP password lives: beside the config, readable by root and Alertmanager's group only. */
export const smtpPasswordPath = (config: StackConfig): string =>
    path.posix.join(path.posix.dirname(config.notifications!.configPath), `hx-backup-${config.stack}-smtp-password`);

const q = (v: string): string => JSON.stringify(v);
/** A regex-escaped literal inside a quoted matcher value: the backslash itself doubled, which both matcher parsers read as one. */
const regexEscape = (v: string): string => v.replace(/[.*+?^${}()|[\]\\]/g, "\\\\$&");

/** Subject and body of every email: which alert, host and job, then each alert's cause and runbook. */
const SUBJECT = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} on {{ .CommonLabels.instance }}{{ with .CommonLabels.type }}: {{ . }}/{{ $.CommonLabels.target }}{{ end }}";
const TEXT = [
    "{{ range .Alerts }}{{ .Annotations.summary }}",
    "",
    "{{ .Annotations.description }}",
    "",
    "Runbook: {{ .Annotations.runbook_url }}",
    "Started: {{ .StartsAt }}{{ if eq .Status \"resolved\" }}, resolved: {{ .EndsAt }}{{ end }}",
    "Labels: {{ range .Labels.SortedPairs }}{{ .Name }}={{ .Value }} {{ end }}",
    "",
    "{{ end }}",
].join("\n");

export interface AlertmanagerBlocks {
    /** One item of `route.routes` (unindented YAML lines). */
    readonly route: string;
    /** Items of `receivers` (unindented YAML lines). */
    readonly receivers: string;
}

export function renderAlertmanagerBlocks(config: StackConfig): AlertmanagerBlocks | undefined {
    const n = config.notifications;
    if (!n) return undefined;
    const receiver0 = receiverName(config.stack);
    const route = [
        "- matchers:",
        `    - ${q('component="hx-backup"')}`,
        `    - ${q(`severity=~"${n.severities.join("|")}"`)}`,
        `  receiver: ${q(receiver0)}`,
        "  group_by: [alertname, instance, type, target]",
        `  group_wait: ${q(n.groupWait)}`,
        `  group_interval: ${q(n.groupInterval)}`,
        `  repeat_interval: ${q(n.repeatInterval)}`,
        "  continue: true",
        ...(n.routes.length
            ? [
                  "  routes:",
                  ...n.routes.flatMap((r, i) => [
                      "    - matchers:",
                      r.label === "host"
                          ? `        - ${q(`instance=~"(${r.instances.map(regexEscape).join("|")})(:[0-9]+)?"`)}`
                          : `        - ${q(`type="${r.value}"`)}`,
                      `      receiver: ${q(receiverName(config.stack, i + 1))}`,
                  ]),
              ]
            : []),
    ];
    const receiver = (name: string, to: readonly string[]) => [
        `- name: ${q(name)}`,
        "  email_configs:",
        `    - to: ${q(to.join(", "))}`,
        `      from: ${q(n.from)}`,
        `      smarthost: ${q(n.smarthost)}`,
        `      require_tls: ${n.requireTls}`,
        ...(n.authUsername ? [`      auth_username: ${q(n.authUsername)}`, `      auth_password_file: ${q(smtpPasswordPath(config))}`] : []),
        "      send_resolved: true",
        "      headers:",
        `        Subject: ${q(SUBJECT)}`,
        `      text: ${q(TEXT)}`,
    ];
    const receivers = [receiver(receiver0, n.to), ...n.routes.map((r, i) => receiver(receiverName(config.stack, i + 1), r.to))].flat();
    return { route: `${route.join("\n")}\n`, receivers: `${receivers.join("\n")}\n` };
}
