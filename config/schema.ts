/**
 * The stack configuration schema: every top-level key under the `hx-backup:`
 * namespace, with its type, default and description.
 *
 * This table is the single source of truth. `Pulumi.yaml`'s `config:` block and
 * the README's configuration reference are generated from it
 * (`npm run gen:config`), and a unit test fails when either is out of step.
 *
 * Pulumi's project-level config schema can only type strings, integers,
 * booleans and arrays of those (pulumi/pulumi#11321). Keys are therefore flat
 * scalars wherever possible; `hosts` is the one list of objects, and its fields
 * are described by {@link HOST_FIELDS}.
 */

export type ConfigValueType = "string" | "integer" | "boolean" | "array";

export interface ConfigKeySpec {
    /** Pulumi config type. */
    readonly type: ConfigValueType;
    /** Item type for arrays (`hosts` items are objects and are typed by HOST_FIELDS). */
    readonly items?: "string" | "object";
    /** Default used when the stack does not set the key. */
    readonly default: string | number | boolean | readonly unknown[];
    /** One line for `Pulumi.yaml` and the README. */
    readonly description: string;
    /** Set with `pulumi config set --secret`; never read as plaintext. */
    readonly secret?: boolean;
    /** README section. */
    readonly group: ConfigGroup;
}

export type ConfigGroup =
    | "Hosts and SSH"
    | "Storage (S3)"
    | "Lifecycle"
    | "Schedules"
    | "Retention"
    | "Encryption"
    | "Paths"
    | "Backup behaviour"
    | "Monitoring";

const spec = <T extends ConfigKeySpec>(s: T): T => s;

export const CONFIG_KEYS = {
    // --- Hosts and SSH -----------------------------------------------------
    hosts: spec({
        type: "array", items: "object", default: [], group: "Hosts and SSH",
        description: "Target hosts; each entry is an object with the fields listed under \"Host fields\".",
    }),
    sshUser: spec({
        type: "string", default: "root", group: "Hosts and SSH",
        description: "SSH login user on every host (a host's `sshUser` overrides it). Non-root users need passwordless sudo and `sshSudo: true`.",
    }),
    sshSudo: spec({
        type: "boolean", default: false, group: "Hosts and SSH",
        description: "Run every remote step through `sudo -n` (for a non-root `sshUser`).",
    }),
    sshPrivateKey: spec({
        type: "string", default: "", secret: true, group: "Hosts and SSH",
        description: "SSH private key (PEM/OpenSSH). Leave unset to use the ssh-agent socket in `sshAgentSocket`.",
    }),
    sshAgentSocket: spec({
        type: "string", default: "", group: "Hosts and SSH",
        description: "ssh-agent socket path used when `sshPrivateKey` is unset (for example the value of `$SSH_AUTH_SOCK`).",
    }),
    bastionHost: spec({
        type: "string", default: "", group: "Hosts and SSH",
        description: "Optional bastion (jump) host; empty connects directly.",
    }),
    bastionUser: spec({
        type: "string", default: "", group: "Hosts and SSH",
        description: "Bastion login user; empty uses `sshUser`.",
    }),
    bastionPort: spec({
        type: "integer", default: 22, group: "Hosts and SSH",
        description: "Bastion SSH port.",
    }),
    bastionHostKey: spec({
        type: "string", default: "", group: "Hosts and SSH",
        description: "Pinned bastion host key (`ssh-ed25519 AAAA...`); empty accepts any key.",
    }),
    bastionPrivateKey: spec({
        type: "string", default: "", secret: true, group: "Hosts and SSH",
        description: "Bastion private key; empty reuses `sshPrivateKey` or the agent.",
    }),
    installPackages: spec({
        type: "boolean", default: true, group: "Hosts and SSH",
        description: "Install the packages the jobs need (apt or dnf) during deploy.",
    }),

    // --- Storage (S3) ------------------------------------------------------
    bucketName: spec({
        type: "string", default: "", group: "Storage (S3)",
        description: "Backup bucket name (3-63 chars, lowercase, digits, dots, hyphens). Required when any host syncs remotely.",
    }),
    bucketPrefix: spec({
        type: "string", default: "hx-backup", group: "Storage (S3)",
        description: "Key prefix for all backups: `<prefix>/<class>/<host>/<source>/...`.",
    }),
    s3Region: spec({
        type: "string", default: "", group: "Storage (S3)",
        description: "Bucket region; empty uses `aws:region`, or `us-east-1` for a custom endpoint.",
    }),
    s3Endpoint: spec({
        type: "string", default: "", group: "Storage (S3)",
        description: "S3-compatible endpoint URL (MinIO, Ceph, ...). When set, Pulumi manages no AWS resources and hosts use `s3AccessKeyId`/`s3SecretAccessKey`.",
    }),
    s3AccessKeyId: spec({
        type: "string", default: "", secret: true, group: "Storage (S3)",
        description: "Access key id for `s3Endpoint` (AWS mode creates its own writer key).",
    }),
    s3SecretAccessKey: spec({
        type: "string", default: "", secret: true, group: "Storage (S3)",
        description: "Secret access key for `s3Endpoint`.",
    }),
    retentionBy: spec({
        type: "string", default: "prefix", group: "Storage (S3)",
        description: "How an uploaded object's retention class is marked for the lifecycle: `prefix` or `tag`.",
    }),
    objectLockMode: spec({
        type: "string", default: "", group: "Storage (S3)",
        description: "Object Lock default retention mode: empty (off), `GOVERNANCE` or `COMPLIANCE`. Only at bucket creation.",
    }),
    objectLockDays: spec({
        type: "integer", default: 30, group: "Storage (S3)",
        description: "Object Lock default retention in days (with `objectLockMode`).",
    }),
    kmsDeletionWindowDays: spec({
        type: "integer", default: 30, group: "Storage (S3)",
        description: "Waiting period (7-30 days) before the bucket's KMS key is deleted after `pulumi destroy`.",
    }),
    forceDestroyBucket: spec({
        type: "boolean", default: false, group: "Storage (S3)",
        description: "Let `pulumi destroy` delete a bucket that still holds backups. Keep false in production.",
    }),

    // --- Lifecycle ---------------------------------------------------------
    lifecycleIaDays: spec({
        type: "integer", default: 30, group: "Lifecycle",
        description: "Days after upload before moving to STANDARD_IA (AWS minimum 30; 0 disables).",
    }),
    lifecycleGlacierDays: spec({
        type: "integer", default: 90, group: "Lifecycle",
        description: "Days after upload before moving to `lifecycleGlacierClass` (0 disables).",
    }),
    lifecycleGlacierClass: spec({
        type: "string", default: "GLACIER_IR", group: "Lifecycle",
        description: "Glacier tier: `GLACIER_IR` (Instant Retrieval) or `GLACIER` (Flexible Retrieval).",
    }),
    lifecycleDeepArchiveDays: spec({
        type: "integer", default: 180, group: "Lifecycle",
        description: "Days after upload before moving to DEEP_ARCHIVE (0 disables).",
    }),
    lifecycleExpireDaily: spec({
        type: "integer", default: 0, group: "Lifecycle",
        description: "Days before `daily` objects expire; 0 derives it from `retentionDaily`.",
    }),
    lifecycleExpireWeekly: spec({
        type: "integer", default: 0, group: "Lifecycle",
        description: "Days before `weekly` objects expire; 0 derives it from `retentionWeekly` (x7).",
    }),
    lifecycleExpireMonthly: spec({
        type: "integer", default: 0, group: "Lifecycle",
        description: "Days before `monthly` objects expire; 0 derives it from `retentionMonthly` (x31).",
    }),
    lifecycleExpireYearly: spec({
        type: "integer", default: 0, group: "Lifecycle",
        description: "Days before `yearly` objects expire; 0 derives it from `retentionYearly` (x366).",
    }),
    noncurrentVersionExpireDays: spec({
        type: "integer", default: 30, group: "Lifecycle",
        description: "Days before noncurrent (overwritten or deleted) object versions expire.",
    }),
    abortMultipartDays: spec({
        type: "integer", default: 7, group: "Lifecycle",
        description: "Days before incomplete multipart uploads are aborted.",
    }),

    // --- Schedules ---------------------------------------------------------
    scheduleDatabaseDaily: spec({
        type: "string", default: "0 2 * * *", group: "Schedules",
        description: "Daily PostgreSQL and Redis backups. Cron (5 fields) or systemd OnCalendar.",
    }),
    scheduleDatabaseWeekly: spec({
        type: "string", default: "0 3 * * 0", group: "Schedules",
        description: "Weekly PostgreSQL run: VACUUM ANALYZE, backup, then a restore test.",
    }),
    scheduleApplicationDaily: spec({
        type: "string", default: "0 1 * * *", group: "Schedules",
        description: "Daily application data backup.",
    }),
    scheduleConfigurationDaily: spec({
        type: "string", default: "30 1 * * *", group: "Schedules",
        description: "Daily configuration backup (system, app, TLS, firewall and network).",
    }),
    scheduleVerification: spec({
        type: "string", default: "0 5 * * 0", group: "Schedules",
        description: "Weekly verification of every stored artifact plus restore tests of the newest ones.",
    }),
    scheduleDriftCheck: spec({
        type: "string", default: "hourly", group: "Schedules",
        description: "On-host drift check: compares installed files with the install manifest and exports backup_config_drift.",
    }),
    timerRandomizedDelaySec: spec({
        type: "integer", default: 300, group: "Schedules",
        description: "`RandomizedDelaySec` of every timer, to spread load across a fleet.",
    }),

    // --- Retention ---------------------------------------------------------
    retentionDaily: spec({
        type: "integer", default: 7, group: "Retention",
        description: "Newest backups kept, one per day.",
    }),
    retentionWeekly: spec({
        type: "integer", default: 4, group: "Retention",
        description: "Newest backups kept, one per ISO week.",
    }),
    retentionMonthly: spec({
        type: "integer", default: 12, group: "Retention",
        description: "Newest backups kept, one per month.",
    }),
    retentionYearly: spec({
        type: "integer", default: 3, group: "Retention",
        description: "Newest backups kept, one per year.",
    }),

    // --- Encryption --------------------------------------------------------
    encryptionAlgorithm: spec({
        type: "string", default: "AES-256-CBC", group: "Encryption",
        description: "Artifact cipher. Only `AES-256-CBC` (with HMAC-SHA256, encrypt-then-MAC) is supported.",
    }),
    encryptionKeyFile: spec({
        type: "string", default: "/etc/hx-backup/encryption.key", group: "Encryption",
        description: "The current key on each host; older keys stay in `keys/` beside it, by key id.",
    }),
    encryptionKeyVersion: spec({
        type: "integer", default: 1, group: "Encryption",
        description: "Current key version. Bump it to rotate: a new key is generated, older ones stay installed for restores.",
    }),

    // --- Paths -------------------------------------------------------------
    configDir: spec({
        type: "string", default: "/etc/hx-backup", group: "Paths",
        description: "Rendered host config, credentials and keyring.",
    }),
    scriptDir: spec({
        type: "string", default: "/var/lib/backup/scripts", group: "Paths",
        description: "Installed backup scripts.",
    }),
    storageDir: spec({
        type: "string", default: "/opt/hx-backups", group: "Paths",
        description: "Local backup storage.",
    }),
    logDir: spec({
        type: "string", default: "/var/log/hx-backups", group: "Paths",
        description: "Job logs (`<job>.log`), rotated by logrotate.",
    }),
    textfileDir: spec({
        type: "string", default: "/var/lib/prometheus/node-exporter", group: "Paths",
        description: "node_exporter textfile collector directory.",
    }),
    backupUser: spec({
        type: "string", default: "backup", group: "Paths",
        description: "System user the jobs run as (no login shell, no password).",
    }),

    // --- Backup behaviour --------------------------------------------------
    compression: spec({
        type: "string", default: "auto", group: "Backup behaviour",
        description: "`auto` (zstd if present, else gzip), `zstd` or `gzip`.",
    }),
    compressionLevel: spec({
        type: "integer", default: 1, group: "Backup behaviour",
        description: "Compression level (zstd 1-19, gzip 1-9). zstd -1 keeps the pipeline faster than the source on two cores and still beats `pg_dump -Fc` on size; raise it to trade CPU for storage.",
    }),
    compressionThreads: spec({
        type: "integer", default: 2, group: "Backup behaviour",
        description: "zstd worker threads.",
    }),
    postgresqlParallelDumps: spec({
        type: "integer", default: 2, group: "Backup behaviour",
        description: "Databases dumped at once.",
    }),
    postgresqlJobs: spec({
        type: "integer", default: 2, group: "Backup behaviour",
        description: "Concurrent pg_dump streams (data parts) for databases dumped in `parallel` format, and concurrent pg_restore streams on restore.",
    }),
    sizeCheckHistory: spec({
        type: "integer", default: 7, group: "Backup behaviour",
        description: "Earlier backups of the same source whose median size the new one is compared with.",
    }),
    sizeBandLowPercent: spec({
        type: "integer", default: 50, group: "Backup behaviour",
        description: "Warn when a backup is smaller than this percentage of that median.",
    }),
    sizeBandHighPercent: spec({
        type: "integer", default: 200, group: "Backup behaviour",
        description: "Warn when a backup is larger than this percentage of that median.",
    }),
    postgresqlPassword: spec({
        type: "string", default: "", secret: true, group: "Backup behaviour",
        description: "Password of the dump role on hosts with `postgresql.auth: pgpass`.",
    }),
    redisPassword: spec({
        type: "string", default: "", secret: true, group: "Backup behaviour",
        description: "Redis AUTH password for hosts with `redis.auth: true`.",
    }),
    storageQuotaGiB: spec({
        type: "integer", default: 0, group: "Backup behaviour",
        description: "Local backup storage quota per host in GiB for the StorageFull alert; 0 disables the quota check.",
    }),
    uploadStorageClass: spec({
        type: "string", default: "STANDARD", group: "Backup behaviour",
        description: "S3 storage class objects are uploaded with (the lifecycle moves them on): STANDARD, STANDARD_IA or INTELLIGENT_TIERING.",
    }),
    nodeExporterUrl: spec({
        type: "string", default: "http://127.0.0.1:9100/metrics", group: "Monitoring",
        description: "node_exporter metrics URL on each host, checked by test-monitoring.sh.",
    }),
    uploadRetries: spec({
        type: "integer", default: 5, group: "Backup behaviour",
        description: "Upload attempts per object, with exponential backoff.",
    }),

    // --- Monitoring --------------------------------------------------------
    monitoringHost: spec({
        type: "string", default: "", group: "Monitoring",
        description: "Name of the host (from `hosts`) running Prometheus and Grafana; empty skips the monitoring install.",
    }),
    prometheusRulesPath: spec({
        type: "string", default: "/opt/hx-backups/monitoring/backup-alert-rules.yml", group: "Monitoring",
        description: "Where the alert rules are installed; Prometheus must load this file (`rule_files`).",
    }),
    promtoolPath: spec({
        type: "string", default: "promtool", group: "Monitoring",
        description: "promtool on the monitoring host, used to check rules before they go live.",
    }),
    prometheusReloadCommand: spec({
        type: "string", default: "systemctl reload prometheus", group: "Monitoring",
        description: "Command that makes Prometheus re-read its rules.",
    }),
    grafanaMode: spec({
        type: "string", default: "file", group: "Monitoring",
        description: "Dashboard delivery: `file` (provisioning folder), `api` (HTTP API) or `none`.",
    }),
    grafanaDashboardDir: spec({
        type: "string", default: "/var/lib/grafana/dashboards", group: "Monitoring",
        description: "Folder watched by a Grafana dashboard provider (`grafanaMode: file`).",
    }),
    grafanaUrl: spec({
        type: "string", default: "http://127.0.0.1:3000", group: "Monitoring",
        description: "Grafana base URL, reached from the monitoring host (`grafanaMode: api`).",
    }),
    grafanaApiToken: spec({
        type: "string", default: "", secret: true, group: "Monitoring",
        description: "Grafana service-account token (`grafanaMode: api`).",
    }),
    runbookBaseUrl: spec({
        type: "string", default: "https://github.com/hx-infra/hx-backup/blob/main/README.md", group: "Monitoring",
        description: "Base of every alert's runbook_url; each alert links to its section (#backupfailed, ...).",
    }),
    dashboardUid: spec({
        type: "string", default: "hx-backup", group: "Monitoring",
        description: "Stable Grafana dashboard uid.",
    }),
} as const satisfies Record<string, ConfigKeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;

/** Fields of one `hosts` entry. */
export interface HostFieldSpec {
    readonly type: string;
    readonly default: string;
    readonly description: string;
}

export const HOST_FIELDS: Record<string, HostFieldSpec> = {
    name: { type: "string", default: "(required)", description: "Host name: letters, digits, `-`; unique in the stack. Used in unit names, S3 keys and metric labels." },
    address: { type: "string", default: "(required)", description: "IP address or DNS name to connect to." },
    port: { type: "integer", default: "22", description: "SSH port." },
    sshUser: { type: "string", default: "`sshUser`", description: "SSH user for this host." },
    hostKey: { type: "string", default: "(none)", description: "Pinned host key (`ssh-ed25519 AAAA...`); the connection fails if the host presents another." },
    roles: { type: "array<string>", default: "[configuration]", description: "Any of `postgresql`, `redis`, `application`, `configuration`, `monitoring`." },
    remoteSync: { type: "boolean", default: "true", description: "Upload this host's backups to the bucket." },
    "postgresql.databases": { type: "array", default: "[] (all non-template databases)", description: "Database names, or objects `{name, large}`; `large` ones are dumped in `parallel` format." },
    "postgresql.host": { type: "string", default: "/var/run/postgresql", description: "Socket directory or TCP host." },
    "postgresql.port": { type: "integer", default: "5432", description: "Server port." },
    "postgresql.user": { type: "string", default: "`backupUser`", description: "Database role used for dumps (needs `pg_read_all_data`)." },
    "postgresql.auth": { type: "string", default: "peer", description: "`peer` (local socket) or `pgpass` (password from secret `postgresqlPassword`, in a 0600 `.pgpass`)." },
    "postgresql.format": { type: "string", default: "custom", description: "`custom` (one `pg_dump -Fc` stream) or `parallel` for every database: `postgresqlJobs` concurrent `pg_dump -Fc` streams over the tables, all in one exported snapshot, each encrypted on the fly and packed into one artifact. (`pg_dump -Fd -j` would write plaintext table files to disk.)" },
    "postgresql.vacuumAnalyzeBefore": { type: "string", default: "weekly", description: "`never`, `weekly` or `always`: VACUUM ANALYZE before the dump." },
    "postgresql.analyzeAfter": { type: "string", default: "never", description: "`never`, `weekly` or `always`: ANALYZE after the dump." },
    "redis.host": { type: "string", default: "127.0.0.1", description: "Redis host." },
    "redis.port": { type: "integer", default: "6379", description: "Redis port." },
    "redis.rdbPath": { type: "string", default: "/var/lib/redis/dump.rdb", description: "The server's RDB file." },
    "redis.auth": { type: "boolean", default: "false", description: "Authenticate with the secret `redisPassword` (from a 0600 file)." },
    "application.paths": { type: "array<string>", default: "(required for the role)", description: "Directories to back up." },
    "application.include": { type: "array<string>", default: "[]", description: "Glob patterns to include (empty includes everything)." },
    "application.exclude": { type: "array<string>", default: "[]", description: "Glob patterns to exclude." },
    "configuration.paths": { type: "array<string>", default: "system defaults", description: "System and application config files and folders." },
    "configuration.tlsPaths": { type: "array<string>", default: "[/etc/ssl/private, /etc/letsencrypt]", description: "TLS certificates and keys (kept at 0600)." },
};

