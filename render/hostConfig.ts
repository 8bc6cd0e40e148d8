/**
 * The one config file each host's scripts read (`<configDir>/backup.json`).
 * Pure data: the scripts parse it with jq and never evaluate it.
 *
 * This interface is the contract between the Pulumi program and the static
 * scripts in `templates/scripts`: the render writes every field, the scripts
 * read only these fields and keep no defaults of their own (a missing field
 * is a config error on the host), and tests/unit/contract.test.ts checks both
 * directions. Bump `format` (and HX_CONFIG_FORMAT in the library) on any
 * incompatible change.
 */
import type { HostSpec, StackConfig } from "../config/types";
import { hostJobs, type Job } from "./jobs";
import { pitrScratchDir, renderPgbackrestConf } from "./pgbackrest";

/** What the scripts know of a job: the schedule itself lives in the job's timer unit. */
export type HostJob = Pick<Job, "name" | "type" | "script" | "args" | "description" | "maxIntervalSeconds" | "jitterSeconds" | "target">;

export const HOST_CONFIG_FORMAT = 1;
import { HOST_CONFIG_NAME, INSTALL_RECORDS_DIR, locksDir, manifestDir, runtimeFiles, watchedLocations } from "./paths";

export { HOST_CONFIG_NAME };
export const S3_CREDENTIALS_NAME = "s3-credentials";
export const REDIS_AUTH_NAME = "redis.auth";
export const PGPASS_NAME = "pgpass";
/** pgBackRest's jobs run as postgres, which owns the cluster (render/systemd.ts). */
export const PITR_USER = "postgres";

/** Stack-wide values that come from resources, not config (known at deploy time). */
export interface DeployFacts {
    /** Key id of the current encryption key, e.g. "production-v2". */
    readonly currentKeyId: string;
    /** All key ids installed in the keyring, oldest first. */
    readonly keyIds: readonly string[];
    /** Non-secret fingerprint per key id (changes when a key is replaced). */
    readonly keyFingerprints: Readonly<Record<string, string>>;
}

export interface HostConfigFile {
    readonly format: number;
    readonly stack: string;
    readonly host: string;
    /** The user the backup jobs run as (their units' User=): a job started as root refuses and names it. */
    readonly backupUser: string;
    readonly paths: {
        readonly scripts: string;
        readonly storage: string;
        readonly logs: string;
        readonly textfile: string;
        /** The current key (a copy of keyring/<currentKeyId>.key). */
        readonly keyFile: string;
        /** One `<keyId>.key` per key id: 64 random bytes as 128 hex characters; bytes 0-31 encrypt, 32-63 authenticate. */
        readonly keyring: string;
        /** flock files, one per job. */
        readonly locks: string;
    };
    readonly encryption: { readonly cipher: "aes-256-cbc"; readonly mac: "hmac-sha256"; readonly currentKeyId: string; readonly keyIds: readonly string[] };
    /** `threads`: zstd workers. */
    readonly compression: { readonly method: "auto" | "zstd" | "gzip"; readonly level: number; readonly threads: number };
    /** GFS counts; artifacts no manifest references are removed after `orphanMinutes`. */
    readonly retention: { readonly daily: number; readonly weekly: number; readonly monthly: number; readonly yearly: number; readonly orphanMinutes: number; readonly timeZone: string };
    readonly sizeCheck: { readonly history: number; readonly lowPercent: number; readonly highPercent: number };
    /** `format`: `keyvalue` or `json` (ECS field names). */
    readonly logging: { readonly format: "keyvalue" | "json" };
    /** Local storage quota in bytes, exported as backup_storage_quota_bytes; 0 = none. */
    readonly storageQuotaBytes: number;
    /** The health check's storage problem threshold: StorageFull's percentage (alertStorageUsedPercent). */
    readonly storageAlertPercent: number;
    readonly remote: {
        readonly enabled: boolean;
        readonly bucket: string;
        /** Keys: `<prefix>/<class>/<host>/<type>/<target>/<file>` with retentionBy "prefix", `<prefix>/<host>/<type>/<target>/<file>` plus tag `retention-class=<class>` with "tag". */
        readonly prefix: string;
        readonly region: string;
        /** Empty for AWS S3. */
        readonly endpoint: string;
        /** CA bundle for the endpoint's certificate (the AWS CLI's --ca-bundle); empty: the system's. */
        readonly caFile: string;
        /**
         * AWS shared-credentials file (profile "default"), 0600, owned by the backup user.
         * Uploads send no SSE headers: the bucket's default SSE-KMS key applies (a bare
         * `--sse aws:kms` would pick the AWS-managed key instead, and the policy denies it).
         */
        readonly credentialsFile: string;
        readonly retentionBy: "prefix" | "tag";
        readonly storageClass: "STANDARD" | "STANDARD_IA" | "INTELLIGENT_TIERING";
        /** Retries of a failed upload, so up to `retries + 1` attempts. */
        readonly retries: number;
        /** Base of the exponential backoff between upload attempts. */
        readonly retryDelaySeconds: number;
    };
    readonly postgresql: null | {
        readonly databases: readonly { readonly name: string; readonly large: boolean }[];
        readonly host: string;
        readonly port: number;
        readonly user: string;
        readonly auth: "peer" | "pgpass";
        /** `.pgpass` file (0600) when auth is "pgpass", else empty. */
        readonly pgpassFile: string;
        readonly format: "auto" | "custom" | "parallel";
        /** With format auto: pg_database_size from which a database is dumped in parallel format. */
        readonly parallelThresholdMiB: number;
        readonly parallelDumps: number;
        readonly jobs: number;
        /** pg_dump --lock-wait-timeout. */
        readonly lockWaitTimeoutSeconds: number;
    };
    /** Point-in-time recovery with pgBackRest (postgresql.pitr); its jobs run as postgres. */
    readonly pitr: null | {
        /** pgBackRest stanza (the cluster). */
        readonly stanza: string;
        /** `archive_timeout`, exported for WalArchiveLag. */
        readonly archiveTimeoutSeconds: number;
        /** Where the repository is, for logs: `s3:<bucket><path>` or `posix:<path>`. */
        readonly repository: string;
        /** The live cluster's data directory: a restore over it needs --force and a stopped server. */
        readonly dataDir: string;
        /** postgres's folder for the restore test's scratch cluster. */
        readonly scratchDir: string;
        /** The user pgBackRest's jobs run as (their units' User=): a job started as root refuses and names it. */
        readonly user: string;
    };
    readonly redis: null | {
        readonly host: string;
        readonly port: number;
        readonly rdbPath: string;
        /** File holding the AUTH password (0600), or empty for no AUTH. */
        readonly authFile: string;
        /** How long to wait for BGSAVE. */
        readonly bgsaveTimeoutSeconds: number;
    };
    readonly application: null | { readonly paths: readonly string[]; readonly include: readonly string[]; readonly exclude: readonly string[] };
    readonly configuration: null | { readonly paths: readonly string[]; readonly tlsPaths: readonly string[] };
    /** For test-monitoring.sh. */
    readonly monitoring: { readonly nodeExporterUrl: string };
    /**
     * For backup-drift-check.sh: the install manifest, where stray files would be ours, and the install records
     * (an entry no record names was left by a step that another has taken over: it describes nothing).
     */
    readonly drift: { readonly manifestDir: string; readonly recordsDir: string; readonly watch: readonly string[]; readonly ignore: readonly string[] };
    readonly jobs: readonly HostJob[];
}

/** The node_exporter a host's test-monitoring.sh checks: its own `nodeExporterUrl`, else the stack's. */
export function nodeExporterUrlOf(config: StackConfig, host: HostSpec): string {
    return host.nodeExporterUrl ?? config.nodeExporterUrl;
}

export function renderHostConfig(config: StackConfig, host: HostSpec, facts: DeployFacts): HostConfigFile {
    const { paths } = config;
    const file = (name: string) => `${paths.configDir}/${name}`;
    const remoteEnabled = host.remoteSync && config.storage.mode !== "none";
    return {
        format: HOST_CONFIG_FORMAT,
        stack: config.stack,
        host: host.name,
        backupUser: config.backupUser,
        paths: {
            scripts: paths.scriptDir,
            storage: paths.storageDir,
            logs: paths.logDir,
            textfile: paths.textfileDir,
            keyFile: paths.keyFile,
            keyring: paths.keyringDir,
            locks: locksDir(config),
        },
        encryption: { cipher: "aes-256-cbc", mac: "hmac-sha256", currentKeyId: facts.currentKeyId, keyIds: facts.keyIds },
        compression: config.compression,
        retention: { ...config.retention, orphanMinutes: 60, timeZone: config.retentionTimeZone },
        sizeCheck: config.sizeCheck,
        logging: { format: config.logFormat },
        storageQuotaBytes: config.storageQuotaBytes,
        storageAlertPercent: config.alertThresholds.storageUsedPercent,
        remote: {
            enabled: remoteEnabled,
            bucket: remoteEnabled ? config.storage.bucketName : "",
            prefix: config.storage.prefix,
            region: config.storage.region,
            endpoint: config.storage.endpoint ?? "",
            caFile: config.storage.caFile,
            credentialsFile: remoteEnabled ? file(S3_CREDENTIALS_NAME) : "",
            retentionBy: config.storage.retentionBy,
            storageClass: config.uploadStorageClass,
            retries: config.storage.uploadRetries,
            retryDelaySeconds: 2,
        },
        postgresql: host.postgresql
            ? {
                  databases: host.postgresql.databases,
                  host: host.postgresql.host,
                  port: host.postgresql.port,
                  user: host.postgresql.user,
                  auth: host.postgresql.auth,
                  pgpassFile: host.postgresql.auth === "pgpass" ? file(PGPASS_NAME) : "",
                  format: host.postgresql.format,
                  parallelThresholdMiB: host.postgresql.parallelThresholdMiB,
                  parallelDumps: config.postgresqlParallelDumps,
                  jobs: config.postgresqlJobs,
                  lockWaitTimeoutSeconds: 600,
              }
            : null,
        pitr: host.postgresql?.pitr ? pitrSection(config, host, facts.currentKeyId) : null,
        redis: host.redis
            ? { host: host.redis.host, port: host.redis.port, rdbPath: host.redis.rdbPath, authFile: host.redis.auth ? file(REDIS_AUTH_NAME) : "", bgsaveTimeoutSeconds: 3600 }
            : null,
        application: host.application ?? null,
        configuration: host.configuration ?? null,
        monitoring: { nodeExporterUrl: nodeExporterUrlOf(config, host) },
        drift: { manifestDir: manifestDir(config), recordsDir: INSTALL_RECORDS_DIR, watch: watchedLocations(config), ignore: runtimeFiles(config) },
        jobs: hostJobs(config, host).map(({ name, type, script, args, description, maxIntervalSeconds, jitterSeconds, target }) => ({ name, type, script, args, description, maxIntervalSeconds, jitterSeconds, target })),
    };
}

function pitrSection(config: StackConfig, host: HostSpec, keyId: string): NonNullable<HostConfigFile["pitr"]> {
    const { stanza, repository } = renderPgbackrestConf(config, host, keyId);
    const where = repository.s3 ? `s3:${repository.s3.bucket}${repository.path}` : `posix:${repository.path}`;
    return { stanza, archiveTimeoutSeconds: host.postgresql!.pitr!.archiveTimeoutSeconds, repository: where, dataDir: host.postgresql!.dataDir, scratchDir: pitrScratchDir(config), user: PITR_USER };
}

/** Stable serialisation: same input, same bytes, same hash. */
export function serializeHostConfig(file: HostConfigFile): string {
    return `${JSON.stringify(file, null, 2)}\n`;
}
