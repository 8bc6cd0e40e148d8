/**
 * The sandbox fleet from the tracked Pulumi.sandbox.yaml: three hosts shaped
 * like production's by default, more database and application hosts with
 * `--hosts N`, each on its own loopback address, and the effective config the
 * sandbox deploys once it knows each host's ports and host key. Nothing
 * outside 127.0.0.0/8 is ever a sandbox host.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadStackConfig } from "../../config/load";
import { effectiveConfig, fleetFor, type RunningHost } from "../../scripts/sandbox/fleet";
import { isLoopback } from "../../scripts/sandbox/host";
import { PROJECT_DIR } from "./helpers";

const tracked = () => (parse(readFileSync(path.join(PROJECT_DIR, "Pulumi.sandbox.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
const withHosts = (hosts: unknown) => ({ ...tracked(), "hx-backup:hosts": hosts });

describe("the sandbox fleet", () => {
    it("is the stack file's three hosts by default, with the services each one runs", () => {
        const fleet = fleetFor(tracked(), undefined);
        expect(fleet.hosts.map((h) => [h.name, h.address, h.services])).toEqual([
            ["db-1", "127.0.0.2", ["postgres", "redis"]],
            ["app-1", "127.0.0.3", ["application"]],
            ["mon-1", "127.0.0.4", ["prometheus"]],
        ]);
        // The stack file's ports are the ones tried first, each on the host's own address.
        expect(fleet.hosts[0].preferred).toMatchObject({ ssh: 2222, nodeExporter: 9100, postgres: 5432, redis: 6379 });
        expect(fleet.hosts[2].preferred).toMatchObject({ prometheus: 9090 });
        expect(fleet.hosts[0].pgDataDir).toBe("/var/lib/hx-sandbox/pg");
    });

    it("--hosts 6 adds db-2, app-2 and db-3 on the next addresses; the extra database hosts have no PITR, like production's db-2", () => {
        const fleet = fleetFor(tracked(), 6);
        expect(fleet.hosts.map((h) => `${h.name}@${h.address}`)).toEqual(["db-1@127.0.0.2", "app-1@127.0.0.3", "mon-1@127.0.0.4", "db-2@127.0.0.5", "app-2@127.0.0.6", "db-3@127.0.0.7"]);
        const db2 = fleet.rawHosts[3] as unknown as { postgresql: Record<string, unknown>; redis: { host: string }; nodeExporterUrl: string };
        expect(db2.postgresql.pitr).toBeUndefined();
        expect(db2.redis.host).toBe("127.0.0.5");
        expect(db2.nodeExporterUrl).toBe("http://127.0.0.5:9100/metrics");
        // The tracked host keeps its PITR: the copy did not reach into it.
        expect((fleet.rawHosts[0] as unknown as { postgresql: Record<string, unknown> }).postgresql.pitr).toEqual({ enabled: true, allowRestart: true });
    });

    it("refuses a host count it cannot build, naming the flag and the range", () => {
        expect(() => fleetFor(tracked(), 2)).toThrow(/--hosts 2: a whole number from 3 .* to 40, e\.g\. --hosts 5/);
        expect(() => fleetFor(tracked(), 41)).toThrow(/--hosts 41: a whole number from 3/);
    });

    it("refuses a host address outside 127.0.0.0/8, 127.0.0.1 itself, and an address used twice", () => {
        const [db, app, mon] = tracked()["hx-backup:hosts"] as Record<string, unknown>[];
        expect(() => fleetFor(withHosts([db, { ...app, address: "10.20.2.21" }, mon]), undefined)).toThrow(/hosts\[1\]\.address is "10\.20\.2\.21"; a sandbox host needs a loopback address of its own .*nothing outside 127\.0\.0\.0\/8/);
        expect(() => fleetFor(withHosts([db, { ...app, address: "app.example.com" }, mon]), undefined)).toThrow(/hosts\[1\]\.address/);
        expect(() => fleetFor(withHosts([{ ...db, address: "127.0.0.1" }, app, mon]), undefined)).toThrow(/hosts\[0\]\.address is "127\.0\.0\.1"/);
        expect(() => fleetFor(withHosts([db, { ...app, address: "127.0.0.2" }, mon]), undefined)).toThrow(/hosts\[1\]\.address 127\.0\.0\.2 is used by another host/);
        expect(isLoopback("127.255.255.255")).toBe(true);
        for (const bad of ["127.0.0.256", "128.0.0.1", "127.0.0", " 127.0.0.2", "::1"]) expect(isLoopback(bad), bad).toBe(false);
    });

    it("the effective config fills in each host's ports, host key and node_exporter URL, s3rver's port and mon-1's reload, and loads", () => {
        const fleet = fleetFor(tracked(), undefined);
        const running: RunningHost[] = fleet.hosts.map((h, i) => ({
            name: h.name,
            address: h.address,
            hostKey: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${"x".repeat(42)}${i}`,
            ports: { ssh: 40000 + i, nodeExporter: 41000 + i, ...(h.services.includes("postgres") ? { postgres: 42000, redis: 43000 } : {}), ...(h.services.includes("prometheus") ? { prometheus: 44000 } : {}) },
        }));
        const config = effectiveConfig(tracked(), fleet, running, 45000);
        const loaded = loadStackConfig("sandbox", config, { assumeSecretsSet: true });
        expect(loaded.hosts.map((h) => [h.name, h.address, h.port, h.nodeExporterUrl])).toEqual([
            ["db-1", "127.0.0.2", 40000, "http://127.0.0.2:41000/metrics"],
            ["app-1", "127.0.0.3", 40001, "http://127.0.0.3:41001/metrics"],
            ["mon-1", "127.0.0.4", 40002, "http://127.0.0.4:41002/metrics"],
        ]);
        expect(loaded.hosts.map((h) => h.hostKey)).toEqual(running.map((h) => h.hostKey));
        expect(loaded.hosts[0].postgresql).toMatchObject({ host: "/run/postgresql", port: 42000, pitr: { allowRestart: true } });
        expect(loaded.hosts[0].redis).toMatchObject({ host: "127.0.0.2", port: 43000 });
        expect(loaded.storage.endpoint).toBe("https://127.0.0.1:45000");
        expect(loaded.monitoring?.reloadCommand).toBe("curl -fsS -X POST http://127.0.0.4:44000/-/reload");
        // Every address the stack will target is loopback.
        expect(loaded.hosts.every((h) => isLoopback(h.address))).toBe(true);
        expect(() => effectiveConfig(tracked(), fleet, running.slice(1), 45000)).toThrow(/host db-1 is not running/);
    });
});
