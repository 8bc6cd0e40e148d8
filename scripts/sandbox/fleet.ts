/**
 * The sandbox fleet: which hosts the `sandbox` stack has (the tracked
 * Pulumi.sandbox.yaml's, plus database and application hosts for `--hosts N`),
 * what each one runs, and the effective stack config once the sandbox knows
 * the ports it found free and the host keys it generated.
 */
import { isLoopback } from "./host";
import type { HostPorts, HostService } from "./services";
import { PG_SOCKET_DIR } from "./services";

type RawHost = Record<string, unknown> & { name: string; address: string; roles: string[] };

/** What the sandbox needs to know of one host to start it. */
export interface FleetHost {
    readonly name: string;
    readonly address: string;
    readonly roles: readonly string[];
    readonly services: readonly HostService[];
    /** The stack file's ports, tried first on the host's address. */
    readonly preferred: Partial<HostPorts>;
    readonly pgDataDir?: string;
}

export interface Fleet {
    readonly hosts: readonly FleetHost[];
    /** The stack file's host entries, with the extra hosts appended. */
    readonly rawHosts: readonly RawHost[];
}

export const MIN_HOSTS = 3;
/** 127.0.0.2 .. 127.0.0.41: enough for a demo, far from anything a machine binds on its own. */
export const MAX_HOSTS = 40;

const portOf = (url: unknown): number | undefined => {
    const m = typeof url === "string" ? /^\w+:\/\/[^/:]+:(\d+)/.exec(url) : null;
    return m ? Number(m[1]) : undefined;
};

/** The host entries of the tracked stack file (its `hx-backup:hosts`), checked for what the sandbox relies on. */
function trackedHosts(config: Record<string, unknown>): RawHost[] {
    const hosts = config["hx-backup:hosts"];
    if (!Array.isArray(hosts) || hosts.length === 0) throw new Error("Pulumi.sandbox.yaml: hx-backup:hosts must list the sandbox's hosts");
    const seen = new Set<string>();
    return hosts.map((h, i) => {
        const host = h as RawHost;
        if (typeof host.name !== "string" || typeof host.address !== "string" || !Array.isArray(host.roles)) {
            throw new Error(`Pulumi.sandbox.yaml: hx-backup:hosts[${i}] needs name, address and roles`);
        }
        if (!isLoopback(host.address) || host.address === "127.0.0.1") {
            throw new Error(`Pulumi.sandbox.yaml: hx-backup:hosts[${i}].address is ${JSON.stringify(host.address)}; a sandbox host needs a loopback address of its own (127.0.0.2, 127.0.0.3, ...): the sandbox deploys as root and targets nothing outside 127.0.0.0/8, and 127.0.0.1 is the machine's (and s3rver's)`);
        }
        if (seen.has(host.address)) throw new Error(`Pulumi.sandbox.yaml: hx-backup:hosts[${i}].address ${host.address} is used by another host; give each host its own`);
        seen.add(host.address);
        return host;
    });
}

/**
 * The fleet for `count` hosts: the stack file's, then db-2, app-2, db-3, ...
 * copied from its first database and application hosts (the extra database
 * hosts without PITR, like production's db-2), each on the next loopback address.
 */
export function fleetFor(config: Record<string, unknown>, count: number | undefined): Fleet {
    const tracked = trackedHosts(config);
    const want = count ?? tracked.length;
    if (!Number.isInteger(want) || want < Math.max(MIN_HOSTS, tracked.length) || want > MAX_HOSTS) {
        throw new Error(`--hosts ${count}: a whole number from ${Math.max(MIN_HOSTS, tracked.length)} (the hosts of Pulumi.sandbox.yaml) to ${MAX_HOSTS}, e.g. --hosts 5`);
    }
    const db = tracked.find((h) => h.roles.includes("postgresql"));
    const app = tracked.find((h) => h.roles.includes("application"));
    const rawHosts = [...tracked];
    const lastOctet = Math.max(...tracked.map((h) => Number(h.address.split(".")[3])));
    for (let k = 0; rawHosts.length < want; k++) {
        const template = k % 2 === 0 ? db : app;
        if (!template) throw new Error("Pulumi.sandbox.yaml: --hosts adds copies of its first postgresql and application hosts; it has none to copy");
        const name = `${k % 2 === 0 ? "db" : "app"}-${Math.floor(k / 2) + 2}`;
        const address = `127.0.0.${lastOctet + 1 + k}`;
        if (!isLoopback(address)) throw new Error(`--hosts ${want}: no loopback address left after ${tracked.at(-1)!.address}`);
        if (rawHosts.some((h) => h.name === name)) throw new Error(`--hosts ${want}: Pulumi.sandbox.yaml already has a host named ${name}`);
        const copy: RawHost = JSON.parse(JSON.stringify(template));
        copy.name = name;
        copy.address = address;
        copy.nodeExporterUrl = `http://${address}:${portOf(template.nodeExporterUrl) ?? 9100}/metrics`;
        if (copy.redis) (copy.redis as Record<string, unknown>).host = address;
        if (copy.postgresql) delete (copy.postgresql as Record<string, unknown>).pitr;
        rawHosts.push(copy);
    }
    const monitoringHost = config["hx-backup:monitoringHost"];
    const hosts = rawHosts.map((h): FleetHost => {
        const pg = h.postgresql as { port?: number; dataDir?: string } | undefined;
        const redis = h.redis as { port?: number } | undefined;
        const services: HostService[] = [
            ...(h.roles.includes("postgresql") ? (["postgres"] as const) : []),
            ...(h.roles.includes("redis") ? (["redis"] as const) : []),
            ...(h.roles.includes("application") ? (["application"] as const) : []),
            ...(h.name === monitoringHost ? (["prometheus"] as const) : []),
        ];
        if (services.includes("postgres") && !pg?.dataDir) throw new Error(`Pulumi.sandbox.yaml: host ${h.name} needs postgresql.dataDir (the sandbox creates its cluster there)`);
        return {
            name: h.name,
            address: h.address,
            roles: h.roles,
            services,
            preferred: {
                ssh: typeof h.port === "number" ? h.port : undefined,
                nodeExporter: portOf(h.nodeExporterUrl) ?? 9100,
                postgres: pg?.port ?? 5432,
                redis: redis?.port ?? 6379,
                prometheus: portOf(/https?:\/\/\S+/.exec(String(config["hx-backup:prometheusReloadCommand"] ?? ""))?.[0]) ?? 9090,
            },
            ...(pg?.dataDir ? { pgDataDir: pg.dataDir } : {}),
        };
    });
    return { hosts, rawHosts };
}

/** One running host, as the effective config needs it. */
export interface RunningHost {
    readonly name: string;
    readonly address: string;
    readonly hostKey: string;
    readonly ports: HostPorts;
}

/**
 * The stack config the sandbox deploys: the tracked file's values with each
 * host's real ports, host key and node_exporter URL, the extra hosts, s3rver's
 * endpoint and mon-1's Prometheus reload. No secrets (they go in encrypted).
 */
export function effectiveConfig(config: Record<string, unknown>, fleet: Fleet, running: readonly RunningHost[], s3Port: number): Record<string, unknown> {
    const byName = new Map(running.map((h) => [h.name, h]));
    const hosts = fleet.rawHosts.map((h) => {
        const r = byName.get(h.name);
        if (!r) throw new Error(`sandbox: host ${h.name} is not running`);
        return {
            ...h,
            port: r.ports.ssh,
            hostKey: r.hostKey,
            nodeExporterUrl: `http://${r.address}:${r.ports.nodeExporter}/metrics`,
            ...(h.postgresql ? { postgresql: { ...(h.postgresql as object), host: PG_SOCKET_DIR, port: r.ports.postgres } } : {}),
            ...(h.redis ? { redis: { ...(h.redis as object), host: r.address, port: r.ports.redis } } : {}),
        };
    });
    const monitoring = running.find((h) => h.ports.prometheus);
    return {
        ...config,
        "hx-backup:hosts": hosts,
        "hx-backup:s3Endpoint": `https://127.0.0.1:${s3Port}`,
        ...(monitoring ? { "hx-backup:prometheusReloadCommand": `curl -fsS -X POST http://${monitoring.address}:${monitoring.ports.prometheus}/-/reload` } : {}),
    };
}
