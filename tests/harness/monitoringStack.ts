/**
 * A real monitoring stack on loopback for tests: node_exporter reading a
 * textfile directory, Prometheus scraping it and evaluating the given rules
 * every second, and Alertmanager delivering to a local webhook sink. Each
 * runs in a temp dir on a free port and is stopped by PID.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { freePort } from "../../scripts/sandbox/host";

export interface WebhookAlert {
    readonly status: "firing" | "resolved";
    readonly labels: Record<string, string>;
    readonly annotations: Record<string, string>;
}

export interface MonitoringStack {
    readonly textfileDir: string;
    readonly prometheus: string;
    readonly nodeExporter: string;
    readonly alertmanager: string;
    /** The live Alertmanager config: an operator's routes, inhibit rules and receivers; the root receiver is the webhook sink. */
    readonly alertmanagerConfig: string;
    /** Every alert the webhook sink received, in order. */
    readonly received: WebhookAlert[];
    query(expr: string): Promise<{ status: string; data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }; error?: string }>;
    waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs?: number): Promise<T>;
    stop(): Promise<void>;
}

export const MONITORING_TOOLS = ["prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "promtool"];

function start(cmd: string, args: string[], log: string): ChildProcess {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", () => {}); // drain
    void log;
    return child;
}

async function waitHttp(url: string, timeoutMs = 120_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
        try {
            const r = await fetch(url);
            if (r.ok) return;
        } catch {
            /* not up yet */
        }
        if (Date.now() > until) throw new Error(`${url} did not become ready within ${timeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 200));
    }
}

export async function startMonitoringStack(rules: string, instance = "testhost"): Promise<MonitoringStack> {
    const dir = mkdtempSync(path.join(tmpdir(), "hx-monitoring-"));
    chmodSync(dir, 0o755); // the backup jobs run as an unprivileged user and write into textfile/
    const textfileDir = path.join(dir, "textfile");
    mkdirSync(textfileDir);
    writeFileSync(path.join(dir, "rules.yml"), rules);
    const [nePort, promPort, amPort, sinkPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);

    const received: WebhookAlert[] = [];
    const sink: Server = createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
            try {
                for (const a of JSON.parse(body).alerts ?? []) received.push({ status: a.status, labels: a.labels, annotations: a.annotations });
            } catch {
                /* ignore malformed */
            }
            res.writeHead(200).end();
        });
    });
    await new Promise<void>((r) => sink.listen(sinkPort, "127.0.0.1", r));

    writeFileSync(
        path.join(dir, "alertmanager.yml"),
        // As an operator's config looks: comments, blank lines, child routes
        // in both matcher syntaxes, inhibit rules, receivers that are not ours.
        // None of its routes takes an hx-backup alert, so those reach the sink.
        [
            "# Managed by the monitoring team.",
            "global:",
            "  resolve_timeout: 5m",
            "",
            "route:",
            "  receiver: sink # the default",
            "  group_by: [alertname, instance, type, target]",
            "  group_wait: 1s",
            "  group_interval: 1s",
            "  repeat_interval: 1h",
            "  routes:",
            "    - matchers: ['team=\"db\"', 'severity=~\"critical|warning\"']",
            "      receiver: team-db",
            "      group_by: [alertname, cluster]",
            "    # Billing still uses the old syntax.",
            "    - match:",
            "        service: billing",
            "      match_re:",
            "        env: prod|staging",
            "      receiver: blackhole",
            "      continue: true",
            "",
            "inhibit_rules:",
            "  - source_matchers: ['alertname=\"NodeDown\"']",
            "    target_matchers: ['severity=\"warning\"']",
            "    equal: [instance]",
            "  - source_match:",
            "      severity: critical",
            "    target_match:",
            "      severity: warning",
            "    equal: [alertname, cluster]",
            "",
            "receivers:",
            "  - name: sink",
            "    webhook_configs:",
            `      - url: http://127.0.0.1:${sinkPort}/`,
            "        send_resolved: true",
            "  - name: team-db",
            "    webhook_configs:",
            "      - url: http://127.0.0.1:9/",
            "  - name: blackhole # drops what it gets",
        ].join("\n") + "\n",
    );
    writeFileSync(
        path.join(dir, "prometheus.yml"),
        [
            "global:",
            "  scrape_interval: 1s",
            "  evaluation_interval: 1s",
            "rule_files:",
            `  - ${path.join(dir, "rules.yml")}`,
            "alerting:",
            "  alertmanagers:",
            "    - static_configs:",
            `        - targets: ["127.0.0.1:${amPort}"]`,
            "scrape_configs:",
            "  - job_name: node",
            "    static_configs:",
            `      - targets: ["127.0.0.1:${nePort}"]`,
            "        labels:",
            `          instance: ${instance}`,
        ].join("\n") + "\n",
    );
    const children = [
        start("prometheus-node-exporter", [`--web.listen-address=127.0.0.1:${nePort}`, `--collector.textfile.directory=${textfileDir}`, "--no-collector.systemd"], "node-exporter"),
        start("prometheus-alertmanager", [`--config.file=${path.join(dir, "alertmanager.yml")}`, `--storage.path=${path.join(dir, "am")}`, `--web.listen-address=127.0.0.1:${amPort}`, "--cluster.listen-address="], "alertmanager"),
        start("prometheus", [`--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "tsdb")}`, `--web.listen-address=127.0.0.1:${promPort}`], "prometheus"),
    ];
    const prometheus = `http://127.0.0.1:${promPort}`;
    const stop = async () => {
        for (const c of children) c.kill("SIGTERM");
        await Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once("exit", r)))));
        await new Promise((r) => sink.close(r));
        rmSync(dir, { recursive: true, force: true });
    };
    try {
        await Promise.all([waitHttp(`http://127.0.0.1:${nePort}/metrics`), waitHttp(`${prometheus}/-/ready`), waitHttp(`http://127.0.0.1:${amPort}/-/ready`)]);
    } catch (err) {
        await stop();
        throw err;
    }
    const waitFor = async <T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> => {
        const until = Date.now() + timeoutMs;
        for (;;) {
            const v = await check();
            if (v !== undefined && v !== false) return v;
            if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
            await new Promise((r) => setTimeout(r, 500));
        }
    };
    return {
        textfileDir,
        prometheus,
        nodeExporter: `http://127.0.0.1:${nePort}`,
        alertmanager: `http://127.0.0.1:${amPort}`,
        alertmanagerConfig: path.join(dir, "alertmanager.yml"),
        received,
        async query(expr: string) {
            const r = await fetch(`${prometheus}/api/v1/query?${new URLSearchParams({ query: expr })}`);
            return (await r.json()) as Awaited<ReturnType<MonitoringStack["query"]>>;
        },
        waitFor,
        stop,
    };
}
