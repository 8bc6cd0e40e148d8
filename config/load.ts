/**
 * Turns raw stack config (key -> parsed value, as in `Pulumi.<stack>.yaml`)
 * into a typed, defaulted, validated {@link StackConfig}.
 *
 * Every problem is collected and reported together, each with its key path,
 * the value seen and the expected form, before any resource exists.
 */
import { CONFIG_KEYS, type ConfigKey } from "./schema";
import * as names from "./names";
import { classLifecycle, derivedExpirationDays, RETENTION_CLASSES, validateLifecycleRule, validateTiers, type TierSettings } from "./lifecycle";
import { parseSchedule, ScheduleError, type Schedule } from "./schedule";
import type {
    ApplicationSettings, ConfigurationSettings, DatabaseSpec, HostSpec, Maintenance, PostgresqlSettings, RedisSettings, Role, ScheduleKey, StackConfig,
} from "./types";
import { ROLES } from "./types";

export const NAMESPACE = "hx-backup";

export interface ConfigProblem {
    readonly path: string;
    readonly value: unknown;
    readonly expected: string;
}

export class ConfigValidationError extends Error {
    constructor(readonly stack: string, readonly problems: readonly ConfigProblem[]) {
        super(
            `Stack "${stack}" has ${problems.length} configuration problem${problems.length === 1 ? "" : "s"}:\n` +
                problems.map((p) => `  - ${NAMESPACE}:${p.path}: got ${show(p.value)}; expected ${p.expected}`).join("\n"),
        );
        this.name = "ConfigValidationError";
    }
}

function show(value: unknown): string {
    if (value === undefined) return "nothing";
    const text = JSON.stringify(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** Placeholder the caller puts where a secret value was: the loader only needs to know it is set. */
export const SECRET_PLACEHOLDER = "[secret]";

export const DEFAULT_SYSTEM_CONFIG_PATHS = [
    "/etc/hostname", "/etc/hosts", "/etc/fstab", "/etc/passwd", "/etc/group", "/etc/sudoers", "/etc/sudoers.d",
    "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d", "/etc/systemd/system", "/etc/crontab", "/etc/cron.d",
    "/etc/network", "/etc/netplan", "/etc/nftables.conf", "/etc/iptables", "/etc/sysctl.conf", "/etc/sysctl.d",
    "/etc/security/limits.conf", "/etc/logrotate.d", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
];
const ROLE_CONFIG_PATHS: Partial<Record<Role, string[]>> = {
    postgresql: ["/etc/postgresql"],
    redis: ["/etc/redis"],
    monitoring: ["/etc/prometheus", "/etc/grafana"],
};
export const DEFAULT_TLS_PATHS = ["/etc/ssl/private", "/etc/ssl/certs/local", "/etc/letsencrypt"];

function levenshtein(a: string, b: string): number {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++)
        for (let j = 1; j <= b.length; j++)
            d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length][b.length];
}

function suggest(key: string, known: readonly string[]): string {
    const best = known.map((k) => [k, levenshtein(key.toLowerCase(), k.toLowerCase())] as const).sort((x, y) => x[1] - y[1])[0];
    return best && best[1] <= Math.max(2, Math.floor(key.length / 3)) ? `a known key (did you mean "${best[0]}"?)` : `one of the known keys: ${known.join(", ")}`;
}

/** Reads raw values with one problem list; each getter returns a usable fallback so checking goes on. */
class Reader {
    readonly problems: ConfigProblem[] = [];

    problem(path: string, value: unknown, expected: string): void {
        this.problems.push({ path, value, expected });
    }

    string(path: string, value: unknown, fallback: string, check?: names.Check, allowEmpty = true): string {
        if (value === undefined || value === null) return fallback;
        if (typeof value !== "string") {
            this.problem(path, value, "a string");
            return fallback;
        }
        if (value === "" && allowEmpty) return value;
        const err = check?.(value);
        if (err) {
            this.problem(path, value, err);
            return fallback;
        }
        return value;
    }

    integer(path: string, value: unknown, fallback: number, min: number, max: number): number {
        if (value === undefined || value === null) return fallback;
        const n = typeof value === "string" && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
        if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
            this.problem(path, value, `a whole number from ${min} to ${max}`);
            return fallback;
        }
        return n;
    }

    boolean(path: string, value: unknown, fallback: boolean): boolean {
        if (value === undefined || value === null) return fallback;
        if (value === true || value === "true") return true;
        if (value === false || value === "false") return false;
        this.problem(path, value, "true or false");
        return fallback;
    }

    oneOf<T extends string>(path: string, value: unknown, fallback: T, allowed: readonly T[]): T {
        if (value === undefined || value === null) return fallback;
        if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
        this.problem(path, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
        return fallback;
    }

    stringList(path: string, value: unknown, fallback: readonly string[], check: names.Check): string[] {
        if (value === undefined || value === null) return [...fallback];
        if (!Array.isArray(value)) {
            this.problem(path, value, "a list of strings");
            return [...fallback];
        }
        const out: string[] = [];
        value.forEach((item, i) => {
            if (typeof item !== "string") return this.problem(`${path}[${i}]`, item, "a string");
            const err = check(item);
            if (err) return this.problem(`${path}[${i}]`, item, err);
            out.push(item);
        });
        return out;
    }

    object(path: string, value: unknown, known: readonly string[]): Record<string, unknown> | undefined {
        if (value === undefined || value === null) return undefined;
        if (typeof value !== "object" || Array.isArray(value)) {
            this.problem(path, value, "an object");
            return undefined;
        }
        const obj = value as Record<string, unknown>;
        for (const k of Object.keys(obj)) if (!known.includes(k)) this.problem(`${path}.${k}`, obj[k], suggest(k, known));
        return obj;
    }

    schedule(path: string, value: unknown, fallback: string): Schedule {
        const text = this.string(path, value, fallback);
        try {
            return parseSchedule(text);
        } catch (e) {
            if (!(e instanceof ScheduleError)) throw e;
            this.problem(path, text, `a cron expression ("0 2 * * *") or systemd OnCalendar ("Sun *-*-* 03:00:00"): ${e.message}`);
            return parseSchedule(fallback);
        }
    }
}

const PORT = [1, 65535] as const;

function readDatabases(r: Reader, path: string, value: unknown): DatabaseSpec[] {
    if (value === undefined || value === null) return [];
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

const MAINTENANCE: readonly Maintenance[] = ["never", "weekly", "always"];

function readHost(r: Reader, path: string, value: unknown, defaults: { sshUser: string; backupUser: string }): HostSpec | undefined {
    const knownTop = ["name", "address", "port", "sshUser", "hostKey", "roles", "remoteSync", "postgresql", "redis", "application", "configuration"];
    const obj = r.object(path, value, knownTop);
    if (!obj) {
        if (value === undefined || value === null) r.problem(path, value, "a host object with at least name and address");
        return undefined;
    }
    const name = r.string(`${path}.name`, obj.name, "", names.hostName, false);
    if (!obj.name) r.problem(`${path}.name`, obj.name, "a host name (required)");
    const address = r.string(`${path}.address`, obj.address, "", names.address, false);
    if (!obj.address) r.problem(`${path}.address`, obj.address, "an address to connect to (required)");
    const roles = r.stringList(`${path}.roles`, obj.roles, ["configuration"], (v) =>
        (ROLES as readonly string[]).includes(v) ? null : `one of ${ROLES.join(", ")}`,
    ) as Role[];
    const has = (role: Role) => roles.includes(role);
    const section = (key: string, fields: string[]) => {
        const s = r.object(`${path}.${key}`, obj[key], fields);
        if (s && !has(key as Role)) r.problem(`${path}.${key}`, "(set)", `the "${key}" role in ${path}.roles, or no ${key} section`);
        return s ?? {};
    };

    let postgresql: PostgresqlSettings | undefined;
    const pg = section("postgresql", ["databases", "host", "port", "user", "auth", "format", "vacuumAnalyzeBefore", "analyzeAfter"]);
    if (has("postgresql")) {
        const p = `${path}.postgresql`;
        postgresql = {
            databases: readDatabases(r, `${p}.databases`, pg.databases),
            host: r.string(`${p}.host`, pg.host, "/var/run/postgresql", (v) => (v.startsWith("/") ? names.plainPath(v) : names.address(v))),
            port: r.integer(`${p}.port`, pg.port, 5432, ...PORT),
            user: r.string(`${p}.user`, pg.user, defaults.backupUser, names.unixUser, false),
            auth: r.oneOf(`${p}.auth`, pg.auth, "peer", ["peer", "pgpass"] as const),
            format: pg.format === "directory"
                ? (r.problem(`${p}.format`, pg.format, `"parallel" (the directory format wrote plaintext table files to disk; parallel dumps the same way, encrypted on the fly) or "custom"`), "custom")
                : r.oneOf(`${p}.format`, pg.format, "custom", ["custom", "parallel"] as const),
            vacuumAnalyzeBefore: r.oneOf(`${p}.vacuumAnalyzeBefore`, pg.vacuumAnalyzeBefore, "weekly", MAINTENANCE),
            analyzeAfter: r.oneOf(`${p}.analyzeAfter`, pg.analyzeAfter, "never", MAINTENANCE),
        };
    }

    let redis: RedisSettings | undefined;
    const rd = section("redis", ["host", "port", "rdbPath", "auth"]);
    if (has("redis")) {
        const p = `${path}.redis`;
        redis = {
            host: r.string(`${p}.host`, rd.host, "127.0.0.1", names.address, false),
            port: r.integer(`${p}.port`, rd.port, 6379, ...PORT),
            rdbPath: r.string(`${p}.rdbPath`, rd.rdbPath, "/var/lib/redis/dump.rdb", names.plainPath, false),
            auth: r.boolean(`${p}.auth`, rd.auth, false),
        };
    }

    let application: ApplicationSettings | undefined;
    const app = section("application", ["paths", "include", "exclude"]);
    if (has("application")) {
        const p = `${path}.application`;
        const paths = r.stringList(`${p}.paths`, app.paths, [], names.sourcePath);
        if (paths.length === 0) r.problem(`${p}.paths`, app.paths, "at least one directory to back up for the application role");
        application = {
            paths,
            include: r.stringList(`${p}.include`, app.include, [], names.pattern),
            exclude: r.stringList(`${p}.exclude`, app.exclude, [], names.pattern),
        };
    }

    let configuration: ConfigurationSettings | undefined;
    const conf = section("configuration", ["paths", "tlsPaths"]);
    if (has("configuration")) {
        const p = `${path}.configuration`;
        const rolePaths = roles.flatMap((role) => ROLE_CONFIG_PATHS[role] ?? []);
        configuration = {
            paths: r.stringList(`${p}.paths`, conf.paths, [...DEFAULT_SYSTEM_CONFIG_PATHS, ...rolePaths], names.sourcePath),
            tlsPaths: r.stringList(`${p}.tlsPaths`, conf.tlsPaths, DEFAULT_TLS_PATHS, names.sourcePath),
        };
    }

    const hostKey = r.string(`${path}.hostKey`, obj.hostKey, "", names.hostKey);
    return {
        name,
        address,
        port: r.integer(`${path}.port`, obj.port, 22, ...PORT),
        sshUser: r.string(`${path}.sshUser`, obj.sshUser, defaults.sshUser, names.unixUser, false),
        ...(hostKey ? { hostKey } : {}),
        roles,
        remoteSync: r.boolean(`${path}.remoteSync`, obj.remoteSync, true),
        postgresql,
        redis,
        application,
        configuration,
    };
}

/**
 * Validates raw config. `raw` maps keys without the namespace (or with
 * `hx-backup:`) to parsed values; secret keys hold any non-empty value.
 */
export interface LoadOptions {
    /** `aws:region` from the stack, used when s3Region is empty. */
    readonly awsRegion?: string;
    /** Treat every secret key as set (render and drift run without access to secrets). */
    readonly assumeSecretsSet?: boolean;
}

export function loadStackConfig(stack: string, rawInput: Record<string, unknown>, options: LoadOptions = {}): StackConfig {
    const r = new Reader();
    const known = Object.keys(CONFIG_KEYS);
    const raw: Record<string, unknown> = {};
    for (const [fullKey, value] of Object.entries(rawInput)) {
        const [ns, key] = fullKey.includes(":") ? (fullKey.split(":", 2) as [string, string]) : [NAMESPACE, fullKey];
        if (ns !== NAMESPACE) continue; // other namespaces (aws:, pulumi:) belong to their providers
        if (!known.includes(key)) r.problem(key, value, suggest(key, known));
        else raw[key] = value;
    }
    const get = (key: ConfigKey): unknown => raw[key];
    const def = <K extends ConfigKey>(key: K) => CONFIG_KEYS[key].default;

    const secretsSet = new Set<string>();
    for (const [key, s] of Object.entries(CONFIG_KEYS)) {
        if (!("secret" in s && s.secret)) continue;
        const v = raw[key];
        if (options.assumeSecretsSet || (v !== undefined && v !== null && v !== "")) secretsSet.add(key);
    }

    const str = (key: ConfigKey, check?: names.Check) => r.string(key, get(key), def(key) as string, check);
    const int = (key: ConfigKey, min: number, max: number) => r.integer(key, get(key), def(key) as number, min, max);
    const bool = (key: ConfigKey) => r.boolean(key, get(key), def(key) as boolean);

    const backupUser = r.string("backupUser", get("backupUser"), "backup", names.unixUser, false);
    const sshUser = r.string("sshUser", get("sshUser"), "root", names.unixUser, false);

    // Hosts
    const hosts: HostSpec[] = [];
    const rawHosts = get("hosts");
    if (rawHosts !== undefined && !Array.isArray(rawHosts)) r.problem("hosts", rawHosts, "a list of host objects");
    else
        (rawHosts as unknown[] | undefined)?.forEach((h, i) => {
            const host = readHost(r, `hosts[${i}]`, h, { sshUser, backupUser });
            if (host) hosts.push(host);
        });
    const seenHosts = new Set<string>();
    hosts.forEach((h, i) => {
        if (h.name && seenHosts.has(h.name)) r.problem(`hosts[${i}].name`, h.name, "a name not used by another host");
        seenHosts.add(h.name);
    });

    // Paths
    const configDir = str("configDir", names.plainPath);
    const keyFile = str("encryptionKeyFile", names.plainPath);
    const paths = {
        configDir,
        scriptDir: str("scriptDir", names.plainPath),
        storageDir: str("storageDir", names.plainPath),
        logDir: str("logDir", names.plainPath),
        textfileDir: str("textfileDir", names.plainPath),
        keyFile,
        keyringDir: `${keyFile.replace(/\/[^/]*$/, "") || "/"}/keys`.replace("//", "/"),
    };
    for (const [k, v] of Object.entries(paths)) if (v === "" || v === "/") r.problem(k, v, "a directory below /");

    // Schedules
    const schedules: Record<ScheduleKey, Schedule> = {
        databaseDaily: r.schedule("scheduleDatabaseDaily", get("scheduleDatabaseDaily"), def("scheduleDatabaseDaily") as string),
        databaseWeekly: r.schedule("scheduleDatabaseWeekly", get("scheduleDatabaseWeekly"), def("scheduleDatabaseWeekly") as string),
        applicationDaily: r.schedule("scheduleApplicationDaily", get("scheduleApplicationDaily"), def("scheduleApplicationDaily") as string),
        configurationDaily: r.schedule("scheduleConfigurationDaily", get("scheduleConfigurationDaily"), def("scheduleConfigurationDaily") as string),
        verification: r.schedule("scheduleVerification", get("scheduleVerification"), def("scheduleVerification") as string),
        driftCheck: r.schedule("scheduleDriftCheck", get("scheduleDriftCheck"), def("scheduleDriftCheck") as string),
    };

    // Retention (0 is allowed: that tier keeps nothing)
    const retention = {
        daily: int("retentionDaily", 0, 3660),
        weekly: int("retentionWeekly", 0, 520),
        monthly: int("retentionMonthly", 0, 1200),
        yearly: int("retentionYearly", 0, 100),
    };
    if (retention.daily + retention.weekly + retention.monthly + retention.yearly === 0) {
        r.problem("retentionDaily", 0, "at least one retention count above 0; with all four at 0 every backup would be pruned");
    }

    // Storage
    const endpoint = str("s3Endpoint", names.url);
    const bucketName = str("bucketName", names.bucketName);
    const anySync = hosts.some((h) => h.remoteSync);
    const mode: StackConfig["storage"]["mode"] = endpoint ? "custom" : anySync || bucketName ? "aws" : "none";
    if (anySync && !bucketName) r.problem("bucketName", get("bucketName"), "a bucket name, because at least one host has remoteSync (or set remoteSync: false on every host)");
    if (endpoint) {
        const local = /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:|\/|$)/.test(endpoint);
        if (endpoint.startsWith("http://") && !local) r.problem("s3Endpoint", endpoint, "an https:// URL; plain http is only allowed on loopback");
        for (const key of ["s3AccessKeyId", "s3SecretAccessKey"] as const)
            if (!secretsSet.has(key)) r.problem(key, undefined, `a secret (pulumi config set --secret ${key} ...), required with s3Endpoint`);
    }
    const region = str("s3Region", names.region) || (mode === "custom" ? "us-east-1" : options.awsRegion ?? "");
    if (mode === "aws" && !region) r.problem("s3Region", "", "a region: set s3Region, or aws:region (pulumi config set aws:region eu-central-1)");
    const lockMode = r.oneOf("objectLockMode", get("objectLockMode"), "", ["", "GOVERNANCE", "COMPLIANCE"] as const);
    const lockDays = int("objectLockDays", 1, 36500);
    if (lockMode && mode !== "aws") r.problem("objectLockMode", lockMode, "empty: Object Lock is only managed on an AWS bucket");

    const tiers: TierSettings = {
        iaDays: int("lifecycleIaDays", 0, 36500),
        glacierDays: int("lifecycleGlacierDays", 0, 36500),
        glacierClass: r.oneOf("lifecycleGlacierClass", get("lifecycleGlacierClass"), "GLACIER_IR", ["GLACIER_IR", "GLACIER"] as const),
        deepArchiveDays: int("lifecycleDeepArchiveDays", 0, 36500),
    };
    const tierProblems = validateTiers(tiers);
    for (const p of tierProblems) {
        const key = /^STANDARD_IA/.test(p) ? "lifecycleIaDays" : /^DEEP_ARCHIVE/.test(p) ? "lifecycleDeepArchiveDays" : "lifecycleGlacierDays";
        r.problem(key, get(key as ConfigKey) ?? def(key as ConfigKey), p);
    }
    const expireKeys = { daily: "lifecycleExpireDaily", weekly: "lifecycleExpireWeekly", monthly: "lifecycleExpireMonthly", yearly: "lifecycleExpireYearly" } as const;
    const lifecycle = RETENTION_CLASSES.map((cls) => {
        const explicitDays = int(expireKeys[cls], 0, 36500);
        const days = explicitDays || derivedExpirationDays(cls, retention[cls]);
        const rule = classLifecycle(cls, days, explicitDays > 0, tiers);
        if (tierProblems.length === 0) for (const p of validateLifecycleRule(rule)) r.problem(expireKeys[cls], explicitDays, p);
        return rule;
    });

    // Encryption
    const algorithm = r.oneOf("encryptionAlgorithm", get("encryptionAlgorithm"), "AES-256-CBC", ["AES-256-CBC"] as const);
    const keyVersion = int("encryptionKeyVersion", 1, 1000);

    const compression = {
        method: r.oneOf("compression", get("compression"), "auto", ["auto", "zstd", "gzip"] as const),
        level: int("compressionLevel", 1, 19),
        threads: int("compressionThreads", 1, 64),
    };
    if (compression.method !== "zstd" && compression.level > 9) {
        r.problem("compressionLevel", compression.level, `1-9, because gzip${compression.method === "auto" ? " (the fallback when zstd is missing)" : ""} has no higher levels; or set compression: zstd`);
    }

    // SSH
    const agentSocket = str("sshAgentSocket", names.plainPath);
    // Neither key nor socket is valid: the command provider then uses $SSH_AUTH_SOCK at deploy time.
    const bastionHost = str("bastionHost", names.address);
    const bastionHostKey = str("bastionHostKey", names.hostKey);

    // Monitoring
    const monitoringHost = str("monitoringHost", names.hostName);
    if (monitoringHost && !hosts.some((h) => h.name === monitoringHost)) r.problem("monitoringHost", monitoringHost, `the name of a host in hosts (${hosts.map((h) => h.name).join(", ") || "none"})`);
    if (monitoringHost && !hosts.find((h) => h.name === monitoringHost)?.roles.includes("monitoring")) {
        if (hosts.some((h) => h.name === monitoringHost)) r.problem("monitoringHost", monitoringHost, `a host with the "monitoring" role`);
    }
    const grafanaMode = r.oneOf("grafanaMode", get("grafanaMode"), "file", ["file", "api", "none"] as const);
    if (monitoringHost && grafanaMode === "api" && !secretsSet.has("grafanaApiToken")) r.problem("grafanaApiToken", undefined, "a secret token (pulumi config set --secret grafanaApiToken ...), required with grafanaMode: api");

    for (const h of hosts) {
        if (h.postgresql?.auth === "pgpass" && !secretsSet.has("postgresqlPassword")) {
            r.problem(`hosts[${hosts.indexOf(h)}].postgresql.auth`, "pgpass", "a secret postgresqlPassword (pulumi config set --secret postgresqlPassword ...), or auth: peer");
        }
        if (h.redis?.auth && !secretsSet.has("redisPassword")) {
            r.problem(`hosts[${hosts.indexOf(h)}].redis.auth`, true, "a secret redisPassword (pulumi config set --secret redisPassword ...), or auth: false");
        }
    }

    const config: StackConfig = {
        stack,
        hosts,
        ssh: {
            sudo: bool("sshSudo"),
            ...(agentSocket ? { agentSocket } : {}),
            usesPrivateKey: secretsSet.has("sshPrivateKey"),
            ...(bastionHost
                ? {
                      bastion: {
                          host: bastionHost,
                          user: r.string("bastionUser", get("bastionUser"), "", names.unixUser) || sshUser,
                          port: int("bastionPort", ...PORT),
                          ...(bastionHostKey ? { hostKey: bastionHostKey } : {}),
                          usesPrivateKey: secretsSet.has("bastionPrivateKey") || secretsSet.has("sshPrivateKey"),
                      },
                  }
                : {}),
        },
        installPackages: bool("installPackages"),
        storage: {
            mode,
            bucketName,
            prefix: str("bucketPrefix", names.keyPrefix),
            region,
            ...(endpoint ? { endpoint } : {}),
            retentionBy: r.oneOf("retentionBy", get("retentionBy"), "prefix", ["prefix", "tag"] as const),
            ...(lockMode ? { objectLock: { mode: lockMode, days: lockDays } } : {}),
            kmsDeletionWindowDays: int("kmsDeletionWindowDays", 7, 30),
            forceDestroy: bool("forceDestroyBucket"),
            lifecycle,
            noncurrentVersionExpireDays: int("noncurrentVersionExpireDays", 1, 36500),
            abortMultipartDays: int("abortMultipartDays", 1, 365),
            uploadRetries: int("uploadRetries", 1, 20),
        },
        schedules,
        randomizedDelaySec: int("timerRandomizedDelaySec", 0, 86400),
        retention,
        encryption: { algorithm, keyVersion },
        paths,
        backupUser,
        compression,
        uploadStorageClass: r.oneOf("uploadStorageClass", get("uploadStorageClass"), "STANDARD", ["STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING"] as const),
        nodeExporterUrl: str("nodeExporterUrl", (v) => (/^https?:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~/-]*)?$/.test(v) ? null : "an http(s) URL such as http://127.0.0.1:9100/metrics")),
        postgresqlParallelDumps: int("postgresqlParallelDumps", 1, 64),
        postgresqlJobs: int("postgresqlJobs", 1, 64),
        sizeCheck: {
            history: int("sizeCheckHistory", 1, 100),
            lowPercent: int("sizeBandLowPercent", 1, 100),
            highPercent: int("sizeBandHighPercent", 100, 10000),
        },
        storageQuotaBytes: int("storageQuotaGiB", 0, 1_000_000) * 1024 ** 3,
        ...(monitoringHost
            ? {
                  monitoring: {
                      host: monitoringHost,
                      rulesPath: str("prometheusRulesPath", names.plainPath),
                      promtool: str("promtoolPath", (v) => (v.includes("/") ? names.plainPath(v) : /^[A-Za-z0-9._-]+$/.test(v) ? null : "a command name or absolute path")),
                      reloadCommand: str("prometheusReloadCommand", names.commandLine),
                      grafanaMode,
                      grafanaDashboardDir: str("grafanaDashboardDir", names.plainPath),
                      grafanaUrl: str("grafanaUrl", names.url),
                      runbookBaseUrl: str("runbookBaseUrl", (v) => (/^https?:\/\/[^\s"#]+$/.test(v) ? null : "an http(s) URL without '#', quotes or spaces")),
                      dashboardUid: str("dashboardUid", (v) => (/^[A-Za-z0-9_-]{1,40}$/.test(v) ? null : "1-40 letters, digits, '_' or '-'")),
                  },
              }
            : {}),
        secretsSet,
    };
    if (r.problems.length) throw new ConfigValidationError(stack, r.problems);
    return config;
}
