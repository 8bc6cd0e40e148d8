/**
 * A host's own node_exporter URL (hosts[].nodeExporterUrl): several hosts that
 * share one network (the sandbox's loopback fleet) each run node_exporter on
 * their own address, so each host's test-monitoring.sh must check its own.
 */
import { describe, expect, it } from "vitest";
import { renderHostConfig } from "../../render/hostConfig";
import { renderMonitoringConf } from "../../render/monitoringPlan";
import { renderFacts } from "../../scripts/render";
import { baseRaw, configError, expectProblem, load } from "./helpers";

const raw = (hosts: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({ ...baseRaw(), hosts, ...extra });

describe("hosts[].nodeExporterUrl", () => {
    it("defaults to the stack's nodeExporterUrl, and a host's own wins in its backup.json", () => {
        const config = load(raw(
            [
                { name: "h1", address: "10.0.0.1", roles: ["configuration", "monitoring"] },
                { name: "h2", address: "10.0.0.2", nodeExporterUrl: "http://127.0.0.3:9101/metrics" },
            ],
            { nodeExporterUrl: "http://127.0.0.1:9200/metrics", monitoringHost: "h1" },
        ));
        expect(config.hosts[0].nodeExporterUrl).toBeUndefined();
        expect(config.hosts[1].nodeExporterUrl).toBe("http://127.0.0.3:9101/metrics");
        const rendered = config.hosts.map((h) => renderHostConfig(config, h, renderFacts(config)).monitoring.nodeExporterUrl);
        expect(rendered).toEqual(["http://127.0.0.1:9200/metrics", "http://127.0.0.3:9101/metrics"]);
        // monitoring.conf keeps the stack's default and lists what each host checks.
        const conf = JSON.parse(renderMonitoringConf(config));
        expect(conf.nodeExporterUrl).toBe("http://127.0.0.1:9200/metrics");
        expect(conf.nodeExporterUrls).toEqual({ h1: "http://127.0.0.1:9200/metrics", h2: "http://127.0.0.3:9101/metrics" });
    });

    it("an empty value is the stack's default", () => {
        const config = load(raw([{ name: "h1", address: "10.0.0.1", nodeExporterUrl: "" }]));
        expect(renderHostConfig(config, config.hosts[0], renderFacts(config)).monitoring.nodeExporterUrl).toBe("http://127.0.0.1:9100/metrics");
    });

    it("a value that is not an http(s) URL is reported with the host's path", () => {
        const err = configError({ hosts: [{ name: "h1", address: "10.0.0.1" }, { name: "h2", address: "10.0.0.2", nodeExporterUrl: "127.0.0.3:9100" }] });
        expectProblem(err, "hosts[1].nodeExporterUrl", "127.0.0.3:9100", /an http\(s\) URL/);
        const quoted = configError({ hosts: [{ name: "h1", address: "10.0.0.1", nodeExporterUrl: "http://x/$(id)" }] });
        expectProblem(quoted, "hosts[0].nodeExporterUrl", "http://x/$(id)", /an http\(s\) URL/);
    });
});
