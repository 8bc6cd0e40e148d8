/**
 * Turns raw stack config (key -> parsed value, as in `Pulumi.<stack>.yaml`)
 * into a typed, defaulted, validated {@link StackConfig}.
 *
 * Every flat key is read in one loop with the type, default, bounds and form
 * its schema entry gives; what is left here are the rules that tie keys
 * together. Every problem is collected and reported together, each with its
 * key path, the value seen and the expected form, before any resource exists.
 */
import { classLifecycle, derivedExpirationDays, RETENTION_CLASSES, validateLifecycleRule, validateTiers, type TierSettings } from "./lifecycle";
import { readHosts } from "./hosts";
import * as names from "./names";
import { ConfigValidationError, NAMESPACE, Reader, SECRET_PLACEHOLDER, suggest } from "./reader";
import { parseSchedule, type Schedule } from "./schedule";
import { CONFIG_KEYS, type ConfigKey, type ConfigKeySpec } from "./schema";
import type { HostSpec, NotificationRoute, Notifications, ScheduleKey, StackConfig } from "./types";

export { ConfigValidationError, NAMESPACE, SECRET_PLACEHOLDER, type ConfigProblem } from "./reader";

/** The value type of a flat key, from its schema entry. */
type FlatValue<S> = S extends { readonly allowed: readonly (infer A)[] }
    ? A
    : S extends { readonly type: "integer" }
      ? number
      : S extends { readonly type: "boolean" }
        ? boolean
        : S extends { readonly type: "string" }
          ? string
          : never;
type FlatKey = { [K in ConfigKey]: (typeof CONFIG_KEYS)[K] extends { readonly secret: true } | { readonly type: "array" } ? never : K }[ConfigKey];
export type FlatConfig = { readonly [K in FlatKey]: FlatValue<(typeof CONFIG_KEYS)[K]> };

/** Every scalar, non-secret key, read with its schema entry's default, bounds, allowed values and form. */
function readFlatKeys(r: Reader, raw: Record<string, unknown>): FlatConfig {
    const out: Record<string, unknown> = {};
    for (const [key, s] of Object.entries(CONFIG_KEYS) as [ConfigKey, ConfigKeySpec][]) {
        if (s.secret || s.type === "array") continue; // secrets are only known to be set; hosts are read by readHosts
        const value = raw[key];
        if (s.type === "integer") out[key] = r.integer(key, value, s.default as number, s.min ?? Number.MIN_SAFE_INTEGER, s.max ?? Number.MAX_SAFE_INTEGER);
        else if (s.type === "boolean") out[key] = r.boolean(key, value, s.default as boolean);
        else if (s.allowed) out[key] = r.oneOf(key, value, s.default as string, s.allowed);
        else out[key] = r.string(key, value, s.default as string, s.check, !s.required);
    }
    return out as FlatConfig;
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
    const flat = readFlatKeys(r, raw);

    const secretsSet = new Set<string>();
    for (const [key, s] of Object.entries(CONFIG_KEYS)) {
        if (!("secret" in s && s.secret)) continue;
        const v = raw[key];
        if (options.assumeSecretsSet || (v !== undefined && v !== null && v !== "")) secretsSet.add(key);
    }

    const { backupUser, sshUser } = flat;
    const hosts = readHosts(r, get("hosts"), { sshUser, backupUser });

    // Paths
    const keyFile = flat.encryptionKeyFile;
    const paths = {
        configDir: flat.configDir,
        scriptDir: flat.scriptDir,
        storageDir: flat.storageDir,
        logDir: flat.logDir,
        textfileDir: flat.textfileDir,
        keyFile,
        keyringDir: `${keyFile.replace(/\/[^/]*$/, "") || "/"}/keys`.replace("//", "/"),
    };
    for (const [k, v] of Object.entries(paths)) if (v === "/") r.problem(k, v, "a directory below /");

    if (flat.encryptionExposedKeyVersions >= flat.encryptionKeyVersion) {
        const n = flat.encryptionExposedKeyVersions;
        r.problem("encryptionKeyVersion", flat.encryptionKeyVersion, `a version above encryptionExposedKeyVersions (${n}): keys 1..${n} are in plain text in the state's resource IDs, so new backups need a new key; set encryptionKeyVersion to ${n + 1}`);
    }

    // Schedules (each value is valid, or its default after a reported problem)
    const schedules: Record<ScheduleKey, Schedule> = {
        databaseDaily: parseSchedule(flat.scheduleDatabaseDaily),
        databaseWeekly: parseSchedule(flat.scheduleDatabaseWeekly),
        applicationDaily: parseSchedule(flat.scheduleApplicationDaily),
        configurationDaily: parseSchedule(flat.scheduleConfigurationDaily),
        verification: parseSchedule(flat.scheduleVerification),
        driftCheck: parseSchedule(flat.scheduleDriftCheck),
    };

    // Retention (0 is allowed: that tier keeps nothing)
    const retention = { daily: flat.retentionDaily, weekly: flat.retentionWeekly, monthly: flat.retentionMonthly, yearly: flat.retentionYearly };
    if (retention.daily + retention.weekly + retention.monthly + retention.yearly === 0) {
        r.problem("retentionDaily", 0, "at least one retention count above 0; with all four at 0 every backup would be pruned");
    }

    // Storage
    const endpoint = flat.s3Endpoint;
    const bucketName = flat.bucketName;
    const anySync = hosts.some((h) => h.remoteSync);
    const mode: StackConfig["storage"]["mode"] = endpoint ? "custom" : anySync || bucketName ? "aws" : "none";
    if (anySync && !bucketName) r.problem("bucketName", get("bucketName"), "a bucket name, because at least one host has remoteSync (or set remoteSync: false on every host)");
    if (endpoint) {
        const local = /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:|\/|$)/.test(endpoint);
        if (endpoint.startsWith("http://") && !local) r.problem("s3Endpoint", endpoint, "an https:// URL; plain http is only allowed on loopback");
        for (const key of ["s3AccessKeyId", "s3SecretAccessKey"] as const)
            if (!secretsSet.has(key)) r.problem(key, undefined, `a secret (pulumi config set --secret ${key} ...), required with s3Endpoint`);
    }
    if (flat.s3CaFile && !endpoint) r.problem("s3CaFile", flat.s3CaFile, "empty without s3Endpoint: AWS S3's certificates chain to the system's CAs");
    // pgBackRest 2.45 talks to S3 over TLS only.
    hosts.forEach((h, i) => {
        if (h.postgresql?.pitr && h.remoteSync && endpoint?.startsWith("http://")) {
            r.problem(`hosts[${i}].postgresql.pitr.enabled`, true, `an https:// s3Endpoint (pgBackRest has no plain HTTP), or remoteSync: false on ${h.name} for a local PITR repository`);
        }
    });
    const region = flat.s3Region || (mode === "custom" ? "us-east-1" : options.awsRegion ?? "");
    if (mode === "aws" && !region) r.problem("s3Region", "", "a region: set s3Region, or aws:region (pulumi config set aws:region eu-central-1)");
    const lockMode = flat.objectLockMode;
    if (lockMode && mode !== "aws") r.problem("objectLockMode", lockMode, "empty: Object Lock is only managed on an AWS bucket");

    const tiers: TierSettings = {
        iaDays: flat.lifecycleIaDays,
        glacierDays: flat.lifecycleGlacierDays,
        glacierClass: flat.lifecycleGlacierClass,
        deepArchiveDays: flat.lifecycleDeepArchiveDays,
    };
    const tierProblems = validateTiers(tiers);
    for (const p of tierProblems) {
        const key = /^STANDARD_IA/.test(p) ? "lifecycleIaDays" : /^DEEP_ARCHIVE/.test(p) ? "lifecycleDeepArchiveDays" : "lifecycleGlacierDays";
        r.problem(key, get(key as ConfigKey) ?? def(key as ConfigKey), p);
    }
    const expireKeys = { daily: "lifecycleExpireDaily", weekly: "lifecycleExpireWeekly", monthly: "lifecycleExpireMonthly", yearly: "lifecycleExpireYearly" } as const;
    const lifecycle = RETENTION_CLASSES.map((cls) => {
        const explicitDays = flat[expireKeys[cls]];
        const days = explicitDays || derivedExpirationDays(cls, retention[cls]);
        const rule = classLifecycle(cls, days, explicitDays > 0, tiers);
        if (tierProblems.length === 0) for (const p of validateLifecycleRule(rule)) r.problem(expireKeys[cls], explicitDays, p);
        return rule;
    });

    const compression = { method: flat.compression, level: flat.compressionLevel, threads: flat.compressionThreads };
    if (compression.method !== "zstd" && compression.level > 9) {
        r.problem("compressionLevel", compression.level, `1-9, because gzip${compression.method === "auto" ? " (the fallback when zstd is missing)" : ""} has no higher levels; or set compression: zstd`);
    }

    // SSH. Neither key nor socket is valid: the command provider then uses $SSH_AUTH_SOCK at deploy time.
    const { sshAgentSocket: agentSocket, bastionHost, bastionHostKey } = flat;

    // Monitoring
    const { monitoringHost, grafanaMode } = flat;
    if (monitoringHost && !hosts.some((h) => h.name === monitoringHost)) r.problem("monitoringHost", monitoringHost, `the name of a host in hosts (${hosts.map((h) => h.name).join(", ") || "none"})`);
    if (monitoringHost && !hosts.find((h) => h.name === monitoringHost)?.roles.includes("monitoring")) {
        if (hosts.some((h) => h.name === monitoringHost)) r.problem("monitoringHost", monitoringHost, `a host with the "monitoring" role`);
    }
    if (monitoringHost && grafanaMode === "api" && !secretsSet.has("grafanaApiToken")) r.problem("grafanaApiToken", undefined, "a secret token (pulumi config set --secret grafanaApiToken ...), required with grafanaMode: api");

    const notifications = readNotifications(r, raw, flat, hosts, secretsSet);

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
            sudo: flat.sshSudo,
            ...(agentSocket ? { agentSocket } : {}),
            usesPrivateKey: secretsSet.has("sshPrivateKey"),
            ...(bastionHost
                ? {
                      bastion: {
                          host: bastionHost,
                          user: flat.bastionUser || sshUser,
                          port: flat.bastionPort,
                          ...(bastionHostKey ? { hostKey: bastionHostKey } : {}),
                          usesPrivateKey: secretsSet.has("bastionPrivateKey") || secretsSet.has("sshPrivateKey"),
                      },
                  }
                : {}),
        },
        installPackages: flat.installPackages,
        hostReads: flat.hostReads,
        storage: {
            mode,
            bucketName,
            prefix: flat.bucketPrefix,
            region,
            ...(endpoint ? { endpoint } : {}),
            caFile: flat.s3CaFile,
            retentionBy: flat.retentionBy,
            ...(lockMode ? { objectLock: { mode: lockMode, days: flat.objectLockDays } } : {}),
            kmsDeletionWindowDays: flat.kmsDeletionWindowDays,
            forceDestroy: flat.forceDestroyBucket,
            lifecycle,
            noncurrentVersionExpireDays: flat.noncurrentVersionExpireDays,
            abortMultipartDays: flat.abortMultipartDays,
            uploadRetries: flat.uploadRetries,
        },
        schedules,
        randomizedDelaySec: flat.timerRandomizedDelaySec,
        retention,
        retentionTimeZone: flat.retentionTimeZone,
        logFormat: flat.logFormat,
        encryption: { algorithm: flat.encryptionAlgorithm, keyVersion: flat.encryptionKeyVersion, exposedVersions: flat.encryptionExposedKeyVersions, rotationDays: flat.keyRotationDays },
        paths,
        backupUser,
        compression,
        uploadStorageClass: flat.uploadStorageClass,
        nodeExporterUrl: flat.nodeExporterUrl,
        postgresqlParallelDumps: flat.postgresqlParallelDumps,
        postgresqlJobs: flat.postgresqlJobs,
        sizeCheck: { history: flat.sizeCheckHistory, lowPercent: flat.sizeBandLowPercent, highPercent: flat.sizeBandHighPercent },
        storageQuotaBytes: flat.storageQuotaGiB * 1024 ** 3,
        alertThresholds: { storageUsedPercent: flat.alertStorageUsedPercent, overdueGraceSeconds: flat.alertOverdueGraceMinutes * 60, walArchiveLagTimeouts: flat.alertWalArchiveLagTimeouts },
        ...(notifications ? { notifications } : {}),
        ...(monitoringHost
            ? {
                  monitoring: {
                      host: monitoringHost,
                      rulesPath: flat.prometheusRulesPath,
                      promtool: flat.promtoolPath,
                      reloadCommand: flat.prometheusReloadCommand,
                      grafanaMode,
                      grafanaDashboardDir: flat.grafanaDashboardDir,
                      grafanaUrl: flat.grafanaUrl,
                      runbookBaseUrl: flat.runbookBaseUrl,
                      dashboardUid: flat.dashboardUid,
                  },
              }
            : {}),
        secretsSet,
    };
    if (r.problems.length) throw new ConfigValidationError(stack, r.problems);
    return config;
}

const SEVERITIES = ["critical", "warning"] as const;
/** Types a route can pick: the per-host alerts (StorageFull, ConfigDrift, ...) carry no type. */
const ROUTE_TYPES: readonly string[] = ["postgresql", "redis", "application", "configuration", "verification"];

/** The notification keys, checked together: a route or sender without recipients is as wrong as recipients without a relay. */
function readNotifications(r: Reader, raw: Record<string, unknown>, flat: FlatConfig, hosts: readonly HostSpec[], secretsSet: ReadonlySet<string>): Notifications | undefined {
    const to = r.stringList("notifyEmailTo", raw.notifyEmailTo, [], names.emailAddress);
    const severities = r.stringList("notifySeverities", raw.notifySeverities, CONFIG_KEYS.notifySeverities.default, (v) =>
        (SEVERITIES as readonly string[]).includes(v) ? null : `one of ${SEVERITIES.join(", ")}`,
    ) as Notifications["severities"][number][];
    const routes: NotificationRoute[] = [];
    r.stringList("notifyRoutes", raw.notifyRoutes, [], (v) => {
        const m = /^(host|type)=([A-Za-z0-9_-]+):\s*(.+)$/.exec(v);
        if (!m) return "`host=<name>: <address>[, <address>]` or `type=<type>: <address>[, ...]`";
        const [, label, value, list] = m as unknown as [string, "host" | "type", string, string];
        const host = hosts.find((h) => h.name === value);
        if (label === "host" && !host) return `a host of this stack after host= (${hosts.map((h) => h.name).join(", ") || "none"})`;
        if (label === "type" && !ROUTE_TYPES.includes(value)) return `a type after type= (${ROUTE_TYPES.join(", ")})`;
        const addresses = list.split(",").map((a) => a.trim());
        const bad = addresses.find((a) => names.emailAddress(a) !== null);
        if (bad !== undefined) return `email addresses after the colon; "${bad}" is not one`;
        routes.push({ label, value, instances: label === "host" ? [...new Set([host!.name, host!.address])] : [], to: addresses });
        return null;
    });
    const wanted = to.length > 0;
    if (!wanted) {
        if (routes.length) r.problem("notifyRoutes", raw.notifyRoutes, "no routes without notifyEmailTo: set the default recipients first");
        return undefined;
    }
    if (!flat.monitoringHost) r.problem("notifyEmailTo", raw.notifyEmailTo, "a monitoringHost as well: alerts are emailed by its Alertmanager");
    if (!flat.notifyEmailFrom) r.problem("notifyEmailFrom", "", "a sender address (required with notifyEmailTo)");
    if (!flat.notifySmtpSmarthost) r.problem("notifySmtpSmarthost", "", "the SMTP relay as host:port (required with notifyEmailTo)");
    if (severities.length === 0) r.problem("notifySeverities", raw.notifySeverities, "at least one of critical, warning (or clear notifyEmailTo to send nothing)");
    const hasPassword = secretsSet.has("notifySmtpAuthPassword");
    if (flat.notifySmtpAuthUsername && !hasPassword) r.problem("notifySmtpAuthUsername", flat.notifySmtpAuthUsername, "a secret notifySmtpAuthPassword as well (pulumi config set --secret notifySmtpAuthPassword ...)");
    if (!flat.notifySmtpAuthUsername && hasPassword) r.problem("notifySmtpAuthPassword", SECRET_PLACEHOLDER, "a notifySmtpAuthUsername as well, or no password");
    return {
        to,
        from: flat.notifyEmailFrom,
        smarthost: flat.notifySmtpSmarthost,
        requireTls: flat.notifySmtpRequireTls,
        authUsername: flat.notifySmtpAuthUsername,
        severities,
        routes,
        groupWait: flat.notifyGroupWait,
        groupInterval: flat.notifyGroupInterval,
        repeatInterval: flat.notifyRepeatInterval,
        configPath: flat.alertmanagerConfigPath,
        amtool: flat.amtoolPath,
        reloadCommand: flat.alertmanagerReloadCommand,
        group: flat.alertmanagerGroup,
    };
}
