/**
 * The monitoring host's steps, run for real: the promtool gate in front of the
 * live rules file and the reload after it, and the Grafana API push with the
 * token read from stdin.
 */
import { spawn, spawnSync } from "node:child_process";
import { createServer, type IncomingMessage } from "node:http";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import { planMonitoring } from "../../render/monitoringPlan";
import { wrapStep } from "../../render/remote";
import { breakRules } from "../unit/helpers";

const hasPromtool = spawnSync("promtool", ["--version"]).status === 0;
const hasCurl = spawnSync("curl", ["--version"]).status === 0;
const hasJq = spawnSync("jq", ["--version"]).status === 0;
if (process.env.CI === "true" && !(hasPromtool && hasCurl && hasJq)) throw new Error("monitoring-install test needs promtool, curl and jq in CI");

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
        expect(readFileSync(`${dir}/rules/backup-alert-rules.yml`, "utf8")).toBe(step.stdin);
        expect(existsSync(`${dir}/reloaded`)).toBe(true);
    });

    it("never lets a file that fails promtool replace the live one, and does not reload", () => {
        const [step] = planMonitoring(monitoringConfig({}));
        rmSync(`${dir}/reloaded`, { force: true });
        const live = readFileSync(`${dir}/rules/backup-alert-rules.yml`, "utf8");
        const broken = breakRules(step.stdin!);
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

