/**
 * The monitoring host's steps, run for real: the promtool gate in front of the
 * live rules file and the reload after it, and the Grafana API push with the
 * token read from stdin.
 */
import { spawn, spawnSync } from "node:child_process";
import { createServer, type IncomingMessage } from "node:http";
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadStackConfig } from "../../config/load";
import { planMonitoring } from "../../render/monitoringPlan";
import { wrapStep } from "../../render/remote";
import { breakRules, stdinWith } from "../unit/helpers";

const hasPromtool = spawnSync("promtool", ["--version"]).status === 0;
const hasCurl = spawnSync("curl", ["--version"]).status === 0;
const hasJq = spawnSync("jq", ["--version"]).status === 0;
const hasAmtool = spawnSync("amtool", ["--version"]).status === 0;
if (process.env.CI === "true" && !(hasPromtool && hasCurl && hasJq && hasAmtool)) throw new Error("monitoring-install test needs promtool, curl, jq and amtool in CI");

let dir: string;
beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "hx-mon-install-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function monitoringConfig(extra: Record<string, unknown>) {
    return loadStackConfig("itest", {
        hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }],
        monitoringHost: "mon",
        // Keep every write (the drift-manifest entry too) inside the temp dir.
        configDir: `${dir}/etc-hx`,
        prometheusRulesPath: `${dir}/rules/backup-alert-rules.yml`,
        prometheusReloadCommand: `touch ${dir}/reloaded`,
        grafanaMode: "none",
        ...extra,
    });
}

function run(script: string, stdin: string) {
    return spawnSync("bash", ["-c", wrapStep(script, false)], { input: stdin, encoding: "utf8" });
}

describe.runIf(hasPromtool)("alert rules step", () => {
    it("installs rules that pass promtool and then reloads Prometheus", () => {
        const [step] = planMonitoring(monitoringConfig({}));
        const result = run(step.create, step.stdin!);
        expect(result.status, result.stderr).toBe(0);
        expect(readFileSync(`${dir}/rules/backup-alert-rules.yml`, "utf8")).toBe(step.files[0]!.content);
        expect(existsSync(`${dir}/reloaded`)).toBe(true);
    });

    it("never lets a file that fails promtool replace the live one, and does not reload", () => {
        const [step] = planMonitoring(monitoringConfig({}));
        rmSync(`${dir}/reloaded`, { force: true });
        const live = readFileSync(`${dir}/rules/backup-alert-rules.yml`, "utf8");
        const broken = stdinWith(step, step.files[0]!.path, breakRules(step.files[0]!.content));
        const result = run(step.create, broken);
        expect(result.status).not.toBe(0);
        expect(result.stderr).toMatch(/refusing to install .*backup-alert-rules\.yml: check failed/);
        expect(readFileSync(`${dir}/rules/backup-alert-rules.yml`, "utf8")).toBe(live);
        expect(existsSync(`${dir}/reloaded`)).toBe(false);
        expect(readdirSync(`${dir}/rules`)).toEqual(["backup-alert-rules.yml"]);
    });
});

describe.runIf(hasCurl && hasJq)("Grafana API step", () => {
    it("pushes the dashboard with the token from stdin as a Bearer header", async () => {
        const seen: { headers: IncomingMessage["headers"]; url?: string; body: string }[] = [];
        const server = createServer((req, res) => {
            let body = "";
            req.on("data", (c) => (body += c));
            req.on("end", () => {
                seen.push({ headers: req.headers, url: req.url, body });
                res.writeHead(200, { "content-type": "application/json" }).end('{"status":"success"}');
            });
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        const port = (server.address() as AddressInfo).port;
        try {
            const steps = planMonitoring(monitoringConfig({ grafanaMode: "api", grafanaUrl: `http://127.0.0.1:${port}`, grafanaApiToken: "[secret]" }));
            const push = steps.find((s) => s.name === "dashboard")!;
            const token = "glsa_itest_token";
            const result = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
                const child = spawn("bash", ["-c", wrapStep(push.create, false)], { stdio: ["pipe", "ignore", "pipe"] });
                let stderr = "";
                child.stderr.on("data", (c: Buffer) => (stderr += c));
                child.on("close", (status: number | null) => resolve({ status, stderr }));
                child.stdin.end(`${token}\n${push.stdin}`);
            });
            expect(result.status, result.stderr).toBe(0);
            expect(seen).toHaveLength(1);
            expect(seen[0].url).toBe("/api/dashboards/db");
            expect(seen[0].headers.authorization).toBe(`Bearer ${token}`);
            const body = JSON.parse(seen[0].body);
            expect(body.overwrite).toBe(true);
            expect(body.dashboard.uid).toBe("hx-backup");
            expect(push.create).not.toContain(token);
        } finally {
            server.close();
        }
    });
});

describe.runIf(hasAmtool)("Alertmanager block step on configs as operators write them", () => {
    const SAMPLE = ["route:", "  receiver: default # the team's", "  group_by: [alertname]", "receivers:", "- name: default", "  webhook_configs:", "  - url: http://127.0.0.1:9/"].join("\n");
    const steps = (amConfig: string, extra: Record<string, unknown> = {}) => {
        const config = monitoringConfig({
            alertmanagerConfigPath: amConfig,
            alertmanagerReloadCommand: `echo reload >> ${dir}/am-reloads`,
            notifyEmailTo: ["ops@example.com"], notifyEmailFrom: "hx@example.com", notifySmtpSmarthost: "127.0.0.1:25", notifySmtpRequireTls: false,
            ...extra,
        });
        const route = planMonitoring(config).find((st) => st.name === "alertmanager-route")!;
        return { install: () => run(route.create, ""), remove: () => run(route.delete!, "") };
    };
    const amtoolOk = (file: string) => spawnSync("amtool", ["check-config", file], { encoding: "utf8" }).status === 0;

    it("without a final newline and without routes: installs a checked config, re-installs the same bytes, removes back to the original", () => {
        const file = path.join(dir, "am-nonl.yml");
        writeFileSync(file, SAMPLE); // no final newline
        const { install, remove } = steps(file);
        expect(install().status).toBe(0);
        const installed = readFileSync(file, "utf8");
        expect(installed).toContain("routes: # added by hx-backup");
        expect(amtoolOk(file)).toBe(true);
        expect(install().status).toBe(0);
        expect(readFileSync(file, "utf8")).toBe(installed);
        expect(remove().status).toBe(0);
        expect(readFileSync(file, "utf8")).toBe(SAMPLE);
    });

    it("a route the operator adds after ours keeps the routes: key hx-backup added, through re-install and removal", () => {
        const file = path.join(dir, "am-own-route.yml");
        writeFileSync(file, `${SAMPLE}\n`);
        const { install, remove } = steps(file);
        expect(install().status).toBe(0);
        const withOwn = readFileSync(file, "utf8").replace("  receiver: default # the team's", "  receiver: default # the team's").replace(/(# <<< hx-backup managed block <<<\n)(  receiver: default)/, "$1  - matchers: ['team=\"db\"']\n    receiver: default\n$2");
        writeFileSync(file, withOwn);
        expect(amtoolOk(file)).toBe(true);
        expect(install().status, "re-install keeps the operator's route").toBe(0);
        expect(readFileSync(file, "utf8")).toContain("team=\"db\"");
        expect(remove().status).toBe(0);
        const after = readFileSync(file, "utf8");
        expect(after).toContain("routes: # added by hx-backup");
        expect(after).toContain("team=\"db\"");
        expect(after).not.toContain("hx-backup managed block");
        expect(amtoolOk(file)).toBe(true);
    });

    it("routes by host, by type and by severity as configured, and the operator's own routes keep their alerts", () => {
        const file = path.join(dir, "am-routing.yml");
        const operatorConfig = [
            "route:",
            "  receiver: default",
            "  group_by: [alertname]",
            "  routes:",
            "    - matchers: ['team=\"db\"']",
            "      receiver: team-db",
            "    - match:",
            "        service: billing",
            "      receiver: billing",
            "receivers:",
            "- name: default",
            "- name: team-db",
            "- name: billing",
        ].join("\n") + "\n";
        writeFileSync(file, operatorConfig);
        const { install } = steps(file, {
            hosts: [
                { name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false },
                { name: "db-1", address: "10.0.0.11", remoteSync: false },
            ],
            notifyRoutes: ["host=db-1: dba@example.com", "type=redis: cache@example.com"],
            notifySeverities: ["critical"],
        });
        const installed = install();
        expect(installed.status, installed.stderr).toBe(0);
        // A receiver is named by its email recipients, the operator's (which send no email) by their names.
        const receivers = (parse(readFileSync(file, "utf8")) as { receivers: { name: string; email_configs?: { to: string }[] }[] }).receivers;
        const recipientsOf = (name: string) => receivers.find((r) => r.name === name)?.email_configs?.[0]?.to ?? name;
        const reaches = (labels: Record<string, string>) => {
            const r = spawnSync("amtool", ["config", "routes", "test", `--config.file=${file}`, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)], { encoding: "utf8" });
            expect(r.status, r.stderr).toBe(0);
            return r.stdout.trim().split(",").map(recipientsOf);
        };
        const backup = { component: "hx-backup", alertname: "BackupFailed", severity: "critical" };
        expect(reaches({ ...backup, instance: "db-1:9100", type: "postgresql" })).toEqual(["dba@example.com", "default"]);
        expect(reaches({ ...backup, instance: "10.0.0.11:9100", type: "postgresql" }), "the host's address").toEqual(["dba@example.com", "default"]);
        expect(reaches({ ...backup, instance: "db-10:9100", type: "postgresql" }), "a host whose name starts with db-1").toEqual(["ops@example.com", "default"]);
        expect(reaches({ ...backup, instance: "mon:9100", type: "redis" })).toEqual(["cache@example.com", "default"]);
        expect(reaches({ ...backup, instance: "db-1:9100", type: "redis" }), "the first notifyRoutes entry wins").toEqual(["dba@example.com", "default"]);
        expect(reaches({ ...backup, instance: "mon:9100", type: "configuration" })).toEqual(["ops@example.com", "default"]);
        for (const severity of ["warning", "info"]) {
            expect(reaches({ ...backup, severity, instance: "db-1:9100", type: "redis" }), `severity=${severity} is not emailed`).toEqual(["default"]);
        }
        expect(reaches({ alertname: "PostgresDown", severity: "critical", team: "db", instance: "db-1:9100" }), "the operator's team=db route").toEqual(["team-db"]);
        expect(reaches({ alertname: "InvoiceRunFailed", severity: "critical", service: "billing" }), "the operator's legacy match: route").toEqual(["billing"]);
        expect(reaches({ ...backup, team: "db", instance: "mon:9100", type: "postgresql" }), "hx-backup's route continues to the operator's").toEqual(["ops@example.com", "team-db"]);
    });

    it("edits the file a symlinked config points to, and leaves the link", () => {
        const real = path.join(dir, "am-real.yml");
        const link = path.join(dir, "am-link.yml");
        writeFileSync(real, `${SAMPLE}\n`);
        symlinkSync(real, link);
        const { install } = steps(link);
        expect(install().status).toBe(0);
        expect(readlinkSync(link)).toBe(real);
        expect(readFileSync(real, "utf8")).toContain("hx-backup managed block (stack itest)");
    });

    it("a reload that failed is retried by the next run, though the file is already as wanted", () => {
        const file = path.join(dir, "am-reload.yml");
        writeFileSync(file, `${SAMPLE}\n`);
        rmSync(`${dir}/am-reloads`, { force: true });
        const { install } = steps(file);
        install();
        install();
        expect(readFileSync(`${dir}/am-reloads`, "utf8").trim().split("\n")).toHaveLength(2);
    });
});
