/**
 * Reads the `hosts` list: one {@link HostSpec} per entry, each field with the
 * default, bounds and allowed values of {@link HOST_FIELDS}.
 */
import * as names from "./names";
import type { Reader } from "./reader";
import { DEFAULT_SYSTEM_CONFIG_PATHS, HOST_FIELDS, httpUrl, ROLE_CONFIG_PATHS } from "./schema";
import { parseSchedule, ScheduleError, type Schedule } from "./schedule";
import type { ApplicationSettings, ConfigurationSettings, DatabaseSpec, HostSpec, PitrSettings, PostgresqlSettings, RedisSettings, Role } from "./types";

const F = HOST_FIELDS;

/** Sub-fields of a section (`postgresql`, `postgresql.pitr`), from the schema's dotted names. */
function sectionFields(section: string): string[] {
    return [...new Set(Object.keys(F).filter((k) => k.startsWith(`${section}.`)).map((k) => k.slice(section.length + 1).split(".")[0]!))];
}

/** A schedule field: parsed, or reported with the parser's reason. */
function readSchedule(r: Reader, path: string, value: unknown, fallback: string): Schedule {
    const source = r.string(path, value, fallback, (v) => {
        try {
            parseSchedule(v);
            return null;
        } catch (e) {
            return `a cron (5 fields) or OnCalendar schedule: ${e instanceof ScheduleError ? e.message : String(e)}`;
        }
    }, false);
    return parseSchedule(source || fallback);
}

function readPitr(r: Reader, path: string, value: unknown): PitrSettings | undefined {
    const s = r.object(path, value, sectionFields("postgresql.pitr"));
    if (!s || !r.boolean(`${path}.enabled`, s.enabled, F["postgresql.pitr.enabled"].default)) return undefined;
    const P = (field: string) => `${path}.${field}`;
    return {
        archiveTimeoutSeconds: r.integer(P("archiveTimeoutSeconds"), s.archiveTimeoutSeconds, F["postgresql.pitr.archiveTimeoutSeconds"].default, F["postgresql.pitr.archiveTimeoutSeconds"].min, F["postgresql.pitr.archiveTimeoutSeconds"].max),
        full: readSchedule(r, P("full"), s.full, F["postgresql.pitr.full"].default),
        differential: readSchedule(r, P("differential"), s.differential, F["postgresql.pitr.differential"].default),
        retentionFull: r.integer(P("retentionFull"), s.retentionFull, F["postgresql.pitr.retentionFull"].default, F["postgresql.pitr.retentionFull"].min, F["postgresql.pitr.retentionFull"].max),
        processMax: r.integer(P("processMax"), s.processMax, F["postgresql.pitr.processMax"].default, F["postgresql.pitr.processMax"].min, F["postgresql.pitr.processMax"].max),
        allowRestart: r.boolean(P("allowRestart"), s.allowRestart, F["postgresql.pitr.allowRestart"].default),
    };
}

function readDatabases(r: Reader, path: string, value: unknown): DatabaseSpec[] {
    if (value === undefined || value === null) return [...F["postgresql.databases"].default];
    if (!Array.isArray(value)) {
        r.problem(path, value, "a list of database names or {name, large} objects");
        return [];
    }
    const out: DatabaseSpec[] = [];
    value.forEach((item, i) => {
        const p = `${path}[${i}]`;
        if (typeof item === "string") {
            const name = r.string(p, item, "", names.databaseName, false);
            if (name) out.push({ name, large: false });
            return;
        }
        const obj = r.object(p, item, ["name", "large"]);
        if (!obj) return;
        if (obj.name === undefined || obj.name === "") return r.problem(`${p}.name`, obj.name, "a database name (required)");
        const name = r.string(`${p}.name`, obj.name, "", names.databaseName, false);
        if (!name) return; // already reported
        out.push({ name, large: r.boolean(`${p}.large`, obj.large, false) });
    });
    const seen = new Set<string>();
    for (const db of out) {
        if (seen.has(db.name)) r.problem(path, db.name, "each database listed once");
        seen.add(db.name);
    }
    return out;
}

export function readHost(r: Reader, path: string, value: unknown, defaults: { sshUser: string; backupUser: string }): HostSpec | undefined {
    const obj = r.object(path, value, [...new Set(Object.keys(F).map((k) => k.split(".")[0]))]);
    if (!obj) {
        if (value === undefined || value === null) r.problem(path, value, "a host object with at least name and address");
        return undefined;
    }
    const name = r.string(`${path}.name`, obj.name, "", names.hostName, false);
    if (!obj.name) r.problem(`${path}.name`, obj.name, "a host name (required)");
    const address = r.string(`${path}.address`, obj.address, "", names.address, false);
    if (!obj.address) r.problem(`${path}.address`, obj.address, "an address to connect to (required)");
    const roles = r.stringList(`${path}.roles`, obj.roles, F.roles.default, (v) =>
        (F.roles.allowed as readonly string[]).includes(v) ? null : `one of ${F.roles.allowed.join(", ")}`,
    ) as Role[];
    const has = (role: Role) => roles.includes(role);
    const section = (key: Role) => {
        const s = r.object(`${path}.${key}`, obj[key], sectionFields(key));
        if (s && !has(key)) r.problem(`${path}.${key}`, "(set)", `the "${key}" role in ${path}.roles, or no ${key} section`);
        return s ?? {};
    };

    let postgresql: PostgresqlSettings | undefined;
    const pg = section("postgresql");
    if (has("postgresql")) {
        const p = `${path}.postgresql`;
        postgresql = {
            databases: readDatabases(r, `${p}.databases`, pg.databases),
            host: r.string(`${p}.host`, pg.host, F["postgresql.host"].default, (v) => (v.startsWith("/") ? names.plainPath(v) : names.address(v))),
            port: r.integer(`${p}.port`, pg.port, F["postgresql.port"].default, F["postgresql.port"].min, F["postgresql.port"].max),
            user: r.string(`${p}.user`, pg.user, defaults.backupUser, names.unixUser, false),
            auth: r.oneOf(`${p}.auth`, pg.auth, F["postgresql.auth"].default, F["postgresql.auth"].allowed),
            format: pg.format === "directory"
                ? (r.problem(`${p}.format`, pg.format, `"parallel" (the directory format wrote plaintext table files to disk; parallel dumps the same way, encrypted on the fly) or "custom"`), F["postgresql.format"].default)
                : r.oneOf(`${p}.format`, pg.format, F["postgresql.format"].default, F["postgresql.format"].allowed),
            parallelThresholdMiB: r.integer(`${p}.parallelThresholdMiB`, pg.parallelThresholdMiB, F["postgresql.parallelThresholdMiB"].default, F["postgresql.parallelThresholdMiB"].min, F["postgresql.parallelThresholdMiB"].max),
            vacuumAnalyzeBefore: r.oneOf(`${p}.vacuumAnalyzeBefore`, pg.vacuumAnalyzeBefore, F["postgresql.vacuumAnalyzeBefore"].default, F["postgresql.vacuumAnalyzeBefore"].allowed),
            analyzeAfter: r.oneOf(`${p}.analyzeAfter`, pg.analyzeAfter, F["postgresql.analyzeAfter"].default, F["postgresql.analyzeAfter"].allowed),
            dataDir: r.string(`${p}.dataDir`, pg.dataDir, F["postgresql.dataDir"].default, names.plainPath, false),
        };
        const pitr = readPitr(r, `${p}.pitr`, pg.pitr);
        if (pitr) postgresql = { ...postgresql, pitr };
    }

    let redis: RedisSettings | undefined;
    const rd = section("redis");
    if (has("redis")) {
        const p = `${path}.redis`;
        redis = {
            host: r.string(`${p}.host`, rd.host, F["redis.host"].default, names.address, false),
            port: r.integer(`${p}.port`, rd.port, F["redis.port"].default, F["redis.port"].min, F["redis.port"].max),
            rdbPath: r.string(`${p}.rdbPath`, rd.rdbPath, F["redis.rdbPath"].default, names.plainPath, false),
            auth: r.boolean(`${p}.auth`, rd.auth, F["redis.auth"].default),
        };
    }

    let application: ApplicationSettings | undefined;
    const app = section("application");
    if (has("application")) {
        const p = `${path}.application`;
        const paths = r.stringList(`${p}.paths`, app.paths, [], names.sourcePath);
        if (paths.length === 0) r.problem(`${p}.paths`, app.paths, "at least one directory to back up for the application role");
        application = {
            paths,
            include: r.stringList(`${p}.include`, app.include, F["application.include"].default, names.pattern),
            exclude: r.stringList(`${p}.exclude`, app.exclude, F["application.exclude"].default, names.pattern),
        };
    }

    let configuration: ConfigurationSettings | undefined;
    const conf = section("configuration");
    if (has("configuration")) {
        const p = `${path}.configuration`;
        const rolePaths = roles.flatMap((role) => (role in ROLE_CONFIG_PATHS ? ROLE_CONFIG_PATHS[role as keyof typeof ROLE_CONFIG_PATHS] : []));
        configuration = {
            paths: r.stringList(`${p}.paths`, conf.paths, [...DEFAULT_SYSTEM_CONFIG_PATHS, ...rolePaths], names.sourcePath),
            tlsPaths: r.stringList(`${p}.tlsPaths`, conf.tlsPaths, F["configuration.tlsPaths"].default, names.sourcePath),
        };
    }

    const hostKey = r.string(`${path}.hostKey`, obj.hostKey, F.hostKey.default, names.hostKey);
    // Unset (or empty) means the stack's nodeExporterUrl; kept absent so the stack key stays the one default.
    const nodeExporterUrl = r.string(`${path}.nodeExporterUrl`, obj.nodeExporterUrl, "", httpUrl);
    return {
        name,
        address,
        port: r.integer(`${path}.port`, obj.port, F.port.default, F.port.min, F.port.max),
        sshUser: r.string(`${path}.sshUser`, obj.sshUser, defaults.sshUser, names.unixUser, false),
        ...(hostKey ? { hostKey } : {}),
        roles,
        remoteSync: r.boolean(`${path}.remoteSync`, obj.remoteSync, F.remoteSync.default),
        ...(nodeExporterUrl ? { nodeExporterUrl } : {}),
        postgresql,
        redis,
        application,
        configuration,
    };
}

/** Reads the `hosts` list; names, and address with port, must be unique. */
export function readHosts(r: Reader, value: unknown, defaults: { sshUser: string; backupUser: string }): HostSpec[] {
    const hosts: HostSpec[] = [];
    if (value !== undefined && !Array.isArray(value)) r.problem("hosts", value, "a list of host objects");
    else
        (value as unknown[] | undefined)?.forEach((h, i) => {
            const host = readHost(r, `hosts[${i}]`, h, defaults);
            if (host) hosts.push(host);
        });
    const seen = new Set<string>();
    const machines = new Map<string, string>();
    hosts.forEach((h, i) => {
        if (h.name && seen.has(h.name)) r.problem(`hosts[${i}].name`, h.name, "a name not used by another host");
        seen.add(h.name);
        // Two entries for one machine would install the same paths twice, and each one's delete would remove the other's.
        const machine = `${h.address}:${h.port}`;
        const first = machines.get(machine);
        if (first !== undefined && h.address) {
            r.problem(`hosts[${i}].address`, machine, `an address and port of its own: host ${first} is already ${machine}, and one machine takes one entry (to rename a host, change its name and keep one entry)`);
        } else machines.set(machine, h.name);
    });
    return hosts;
}
