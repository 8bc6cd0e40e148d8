/**
 * The stack configuration schema: every top-level key under the `hx-backup:`
 * namespace, with its type, default and description.
 *
 * This table is the single source of truth. `Pulumi.yaml`'s `config:` block and
 * the configuration reference (docs/configuration.md) are generated from it
 * (`npm run gen:config`), and a unit test fails when either is out of step.
 *
 * Pulumi's project-level config schema can only type strings, integers,
 * booleans and arrays of those (pulumi/pulumi#11321). Keys are therefore flat
 * scalars wherever possible; `hosts` is the one list of objects, and its fields
 * are described by {@link HOST_FIELDS}.
 *
 * Bounds (`min`, `max`), allowed values and the form of strings (`check`) live
 * here too: config/load.ts applies them to every flat key in one loop, so a
 * setting's type, default, bounds and meaning have this one home.
 */
import * as names from "./names";
import type { Check } from "./names";
import { parseSchedule, ScheduleError } from "./schedule";

export type ConfigValueType = "string" | "integer" | "boolean" | "array";

export interface ConfigKeySpec {
    /** Pulumi config type. */
    readonly type: ConfigValueType;
    /** Item type for arrays (`hosts` items are objects and are typed by HOST_FIELDS). */
    readonly items?: "string" | "object";
    /** Default used when the stack does not set the key. */
    readonly default: string | number | boolean | readonly unknown[];
    /** One line for `Pulumi.yaml` and the configuration reference. */
    readonly description: string;
    /** Set with `pulumi config set --secret`; never read as plaintext. */
    readonly secret?: boolean;
    /** Section of the configuration reference. */
    readonly group: ConfigGroup;
    /** Integers: the smallest and largest value accepted. */
    readonly min?: number;
    readonly max?: number;
    /** Strings: the only values accepted. */
    readonly allowed?: readonly string[];
    /** Strings: the form a non-empty value must have. */
    readonly check?: Check;
    /** Strings: the empty string is refused (elsewhere it means "not set"). */
    readonly required?: boolean;
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
    | "Monitoring"
    | "Notifications";

const spec = <const T extends ConfigKeySpec>(s: T): T => s;

/** Schedules: a cron expression or a systemd OnCalendar expression. */
const schedule: Check = (v) => {
    try {
        parseSchedule(v);
        return null;
    } catch (e) {
        if (!(e instanceof ScheduleError)) throw e;
        return `a cron expression ("0 2 * * *") or systemd OnCalendar ("Sun *-*-* 03:00:00"): ${e.message}`;
    }
};
export const httpUrl = (v: string) => (/^https?:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~/-]*)?$/.test(v) ? null : "an http(s) URL such as http://127.0.0.1:9100/metrics");
const commandOrPath: Check = (v) => (v.includes("/") ? names.plainPath(v) : /^[A-Za-z0-9._-]+$/.test(v) ? null : "a command name or absolute path");
const runbookUrl: Check = (v) => (/^https?:\/\/[^\s"#]+$/.test(v) ? null : "an http(s) URL without '#', quotes or spaces");
const grafanaUid: Check = (v) => (/^[A-Za-z0-9_-]{1,40}$/.test(v) ? null : "1-40 letters, digits, '_' or '-'");
const PORT = { min: 1, max: 65535 } as const;
const DAYS = { min: 0, max: 36500 } as const;

export const CONFIG_KEYS = {
    // --- Hosts and SSH -----------------------------------------------------
    hosts: spec({
        type: "array", items: "object", default: [], group: "Hosts and SSH",
        description: "Target hosts; each entry is an object with the fields listed under \"Host fields\".",
    }),
    sshUser: spec({
        type: "string", default: "root", check: names.unixUser, required: true, group: "Hosts and SSH",
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
        type: "string", default: "", check: names.plainPath, group: "Hosts and SSH",
        description: "ssh-agent socket path used when `sshPrivateKey` is unset (for example the value of `$SSH_AUTH_SOCK`).",
    }),
    bastionHost: spec({
        type: "string", default: "", check: names.address, group: "Hosts and SSH",
        description: "Optional bastion (jump) host; empty connects directly.",
    }),
    bastionUser: spec({
        type: "string", default: "", check: names.unixUser, group: "Hosts and SSH",
        description: "Bastion login user; empty uses `sshUser`.",
    }),
    bastionPort: spec({
        type: "integer", default: 22, ...PORT, group: "Hosts and SSH",
        description: "Bastion SSH port.",
    }),
    bastionHostKey: spec({
        type: "string", default: "", check: names.hostKey, group: "Hosts and SSH",
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
    hostReads: spec({
        type: "boolean", default: true, group: "Hosts and SSH",
        description: "Read each host's install records over SSH during `pulumi preview` and `up` (one session per host), so that a file edited, removed or re-owned on a host shows as an update and `up` repairs it. `false` for a preview that cannot reach the hosts: drift is then not seen, and every step keeps the host state it recorded.",
    }),

    // --- Storage (S3) ------------------------------------------------------
    bucketName: spec({
        type: "string", default: "", check: names.bucketName, group: "Storage (S3)",
        description: "Backup bucket name (3-63 chars, lowercase, digits, dots, hyphens). Required when any host syncs remotely.",
    }),
    bucketPrefix: spec({
        type: "string", default: "hx-backup", check: names.keyPrefix, group: "Storage (S3)",
        description: "Key prefix for all backups: `<prefix>/<class>/<host>/<source>/...`.",
    }),
    s3Region: spec({
        type: "string", default: "", check: names.region, group: "Storage (S3)",
        description: "Bucket region; empty uses `aws:region`, or `us-east-1` for a custom endpoint.",
    }),
    s3Endpoint: spec({
        type: "string", default: "", check: names.url, group: "Storage (S3)",
        description: "S3-compatible endpoint URL (MinIO, Ceph, ...). When set, Pulumi manages no AWS resources and hosts use `s3AccessKeyId`/`s3SecretAccessKey`.",
    }),
    s3CaFile: spec({
        type: "string", default: "", check: names.plainPath, group: "Storage (S3)",
        description: "CA bundle on the hosts that signs `s3Endpoint`'s certificate (a private CA): the AWS CLI's `--ca-bundle` and pgBackRest's `repo1-storage-ca-file`. Empty: the system's CAs.",
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
        type: "string", default: "prefix", allowed: ["prefix", "tag"], group: "Storage (S3)",
        description: "How an uploaded object's retention class is marked for the lifecycle: `prefix` or `tag`.",
    }),
    objectLockMode: spec({
        type: "string", default: "", allowed: ["", "GOVERNANCE", "COMPLIANCE"], group: "Storage (S3)",
        description: "Object Lock default retention mode: empty (off), `GOVERNANCE` or `COMPLIANCE`. Only at bucket creation.",
    }),
    objectLockDays: spec({
        type: "integer", default: 30, min: 1, max: 36500, group: "Storage (S3)",
        description: "Object Lock default retention in days (with `objectLockMode`).",
    }),
    kmsDeletionWindowDays: spec({
        type: "integer", default: 30, min: 7, max: 30, group: "Storage (S3)",
        description: "Waiting period (7-30 days) before the bucket's KMS key is deleted after `pulumi destroy`.",
    }),
    forceDestroyBucket: spec({
        type: "boolean", default: false, group: "Storage (S3)",
        description: "Let `pulumi destroy` delete a bucket that still holds backups. Keep false in production.",
    }),

    // --- Lifecycle ---------------------------------------------------------
    lifecycleIaDays: spec({
        type: "integer", default: 30, ...DAYS, group: "Lifecycle",
        description: "Days after upload before moving to STANDARD_IA (AWS minimum 30; 0 disables).",
    }),
    lifecycleGlacierDays: spec({
        type: "integer", default: 90, ...DAYS, group: "Lifecycle",
        description: "Days after upload before moving to `lifecycleGlacierClass` (0 disables).",
    }),
    lifecycleGlacierClass: spec({
        type: "string", default: "GLACIER_IR", allowed: ["GLACIER_IR", "GLACIER"], group: "Lifecycle",
        description: "Glacier tier: `GLACIER_IR` (Instant Retrieval) or `GLACIER` (Flexible Retrieval).",
    }),
    lifecycleDeepArchiveDays: spec({
        type: "integer", default: 180, ...DAYS, group: "Lifecycle",
        description: "Days after upload before moving to DEEP_ARCHIVE (0 disables).",
    }),
    lifecycleExpireDaily: spec({
        type: "integer", default: 0, ...DAYS, group: "Lifecycle",
        description: "Days before `daily` objects expire; 0 derives it from `retentionDaily`.",
    }),
    lifecycleExpireWeekly: spec({
        type: "integer", default: 0, ...DAYS, group: "Lifecycle",
        description: "Days before `weekly` objects expire; 0 derives it from `retentionWeekly` (x7).",
    }),
    lifecycleExpireMonthly: spec({
        type: "integer", default: 0, ...DAYS, group: "Lifecycle",
        description: "Days before `monthly` objects expire; 0 derives it from `retentionMonthly` (x31).",
    }),
    lifecycleExpireYearly: spec({
        type: "integer", default: 0, ...DAYS, group: "Lifecycle",
        description: "Days before `yearly` objects expire; 0 derives it from `retentionYearly` (x366).",
    }),
    noncurrentVersionExpireDays: spec({
        type: "integer", default: 30, min: 1, max: 36500, group: "Lifecycle",
        description: "Days before noncurrent (overwritten or deleted) object versions expire.",
    }),
    abortMultipartDays: spec({
        type: "integer", default: 7, min: 1, max: 365, group: "Lifecycle",
        description: "Days before incomplete multipart uploads are aborted.",
    }),

    // --- Schedules ---------------------------------------------------------
    scheduleDatabaseDaily: spec({
        type: "string", default: "0 2 * * *", check: schedule, required: true, group: "Schedules",
        description: "Daily PostgreSQL and Redis backups. Cron (5 fields) or systemd OnCalendar.",
    }),
    scheduleDatabaseWeekly: spec({
        type: "string", default: "0 3 * * 0", check: schedule, required: true, group: "Schedules",
        description: "Weekly PostgreSQL run: VACUUM ANALYZE (postgresql.vacuumAnalyzeBefore), then a backup kept in the weekly class. Restore tests run with the verification job (scheduleVerification).",
    }),
    scheduleApplicationDaily: spec({
        type: "string", default: "0 1 * * *", check: schedule, required: true, group: "Schedules",
        description: "Daily application data backup.",
    }),
    scheduleConfigurationDaily: spec({
        type: "string", default: "30 1 * * *", check: schedule, required: true, group: "Schedules",
        description: "Daily configuration backup (system, app, TLS, firewall and network).",
    }),
    scheduleVerification: spec({
        type: "string", default: "0 5 * * 0", check: schedule, required: true, group: "Schedules",
        description: "Weekly verification of every stored artifact plus restore tests of the newest ones.",
    }),
    scheduleDriftCheck: spec({
        type: "string", default: "hourly", check: schedule, required: true, group: "Schedules",
        description: "On-host drift check: compares installed files with the install manifest and exports backup_config_drift.",
    }),
    timerRandomizedDelaySec: spec({
        type: "integer", default: 300, min: 0, max: 86400, group: "Schedules",
        description: "`RandomizedDelaySec` of every timer, to spread load across a fleet.",
    }),

    // --- Retention ---------------------------------------------------------
    retentionDaily: spec({
        type: "integer", default: 7, min: 0, max: 3660, group: "Retention",
        description: "Newest backups kept, one per day.",
    }),
    retentionWeekly: spec({
        type: "integer", default: 4, min: 0, max: 520, group: "Retention",
        description: "Newest backups kept, one per ISO week.",
    }),
    retentionMonthly: spec({
        type: "integer", default: 12, min: 0, max: 1200, group: "Retention",
        description: "Newest backups kept, one per month.",
    }),
    retentionYearly: spec({
        type: "integer", default: 3, min: 0, max: 100, group: "Retention",
        description: "Newest backups kept, one per year.",
    }),
    retentionTimeZone: spec({
        type: "string", default: "local", check: names.timeZone, required: true, group: "Retention",
        description: "Zone in which retention counts days, ISO weeks, months and years (and marks uploads' retention class): `local` (the host's zone, as restic and borg do), `UTC`, or an IANA name such as `Europe/Berlin`, which the host's time zone database (`/usr/share/zoneinfo`, package tzdata) must have: retention and sync refuse to run (exit 2) rather than count UTC days, as `date` would.",
    }),

    // --- Encryption --------------------------------------------------------
    encryptionAlgorithm: spec({
        type: "string", default: "AES-256-CBC", allowed: ["AES-256-CBC"], group: "Encryption",
        description: "Artifact cipher. Only `AES-256-CBC` (with HMAC-SHA256, encrypt-then-MAC) is supported.",
    }),
    encryptionKeyFile: spec({
        type: "string", default: "/etc/hx-backup/encryption.key", check: names.plainPath, required: true, group: "Encryption",
        description: "The current key on each host; older keys stay in `keys/` beside it, by key id.",
    }),
    encryptionKeyVersion: spec({
        type: "integer", default: 1, min: 1, max: 1000, group: "Encryption",
        description: "Current key version. Bump it to rotate: a new key is generated, older ones stay installed for restores.",
    }),
    encryptionExposedKeyVersions: spec({
        type: "integer", default: 0, min: 0, max: 999, group: "Encryption",
        description: "Key versions 1..N that a release before 2026-12 generated with `random.RandomBytes`, whose resource ID is the key in plain text in the state (docs/architecture.md: Keys exposed in the state). They are kept for restores and never encrypt again: `encryptionKeyVersion` must be above N. 0 for a stack created since.",
    }),
    keyRotationDays: spec({
        type: "integer", default: 90, min: 1, max: 3650, group: "Encryption",
        description: "Rotation policy: the current key's age, in days, past which EncryptionKeyRotationDue fires (quarterly by default).",
    }),

    // --- Paths -------------------------------------------------------------
    configDir: spec({
        type: "string", default: "/etc/hx-backup", check: names.plainPath, required: true, group: "Paths",
        description: "Rendered host config, credentials and keyring.",
    }),
    scriptDir: spec({
        type: "string", default: "/var/lib/backup/scripts", check: names.plainPath, required: true, group: "Paths",
        description: "Installed backup scripts.",
    }),
    storageDir: spec({
        type: "string", default: "/opt/hx-backups", check: names.plainPath, required: true, group: "Paths",
        description: "Local backup storage.",
    }),
    logDir: spec({
        type: "string", default: "/var/log/hx-backups", check: names.plainPath, required: true, group: "Paths",
        description: "Job logs (`<job>.log`), rotated by logrotate.",
    }),
    textfileDir: spec({
        type: "string", default: "/var/lib/prometheus/node-exporter", check: names.plainPath, required: true, group: "Paths",
        description: "node_exporter textfile collector directory.",
    }),
    backupUser: spec({
        type: "string", default: "backup", check: names.unixUser, required: true, group: "Paths",
        description: "System user the jobs run as (no login shell, no password).",
    }),

    // --- Backup behaviour --------------------------------------------------
    logFormat: spec({
        type: "string", default: "keyvalue", allowed: ["keyvalue", "json"], group: "Backup behaviour",
        description: "Job log lines (log files, stderr, syslog): `keyvalue` (`ts=… level=… event=…`) or `json` (one JSON object per line with ECS field names, for Filebeat/Elasticsearch).",
    }),
    compression: spec({
        type: "string", default: "auto", allowed: ["auto", "zstd", "gzip"], group: "Backup behaviour",
        description: "`auto` (zstd if present, else gzip), `zstd` or `gzip`.",
    }),
    compressionLevel: spec({
        type: "integer", default: 1, min: 1, max: 19, group: "Backup behaviour",
        description: "Compression level (zstd 1-19, gzip 1-9). zstd -1 keeps the pipeline faster than the source on two cores and still beats `pg_dump -Fc` on size; raise it to trade CPU for storage.",
    }),
    compressionThreads: spec({
        type: "integer", default: 2, min: 1, max: 64, group: "Backup behaviour",
        description: "zstd worker threads.",
    }),
    postgresqlParallelDumps: spec({
        type: "integer", default: 2, min: 1, max: 64, group: "Backup behaviour",
        description: "Databases dumped at once.",
    }),
    postgresqlJobs: spec({
        type: "integer", default: 2, min: 1, max: 64, group: "Backup behaviour",
        description: "Concurrent pg_dump streams (data parts) for databases dumped in `parallel` format, and concurrent pg_restore streams on restore.",
    }),
    sizeCheckHistory: spec({
        type: "integer", default: 7, min: 1, max: 100, group: "Backup behaviour",
        description: "Earlier backups of the same source whose median size the new one is compared with.",
    }),
    sizeBandLowPercent: spec({
        type: "integer", default: 50, min: 1, max: 100, group: "Backup behaviour",
        description: "Warn when a backup is smaller than this percentage of that median.",
    }),
    sizeBandHighPercent: spec({
        type: "integer", default: 200, min: 100, max: 10000, group: "Backup behaviour",
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
        type: "integer", default: 0, min: 0, max: 1_000_000, group: "Backup behaviour",
        description: "Local backup storage quota per host in GiB for the StorageFull alert; 0 disables the quota check.",
    }),
    uploadStorageClass: spec({
        type: "string", default: "STANDARD", allowed: ["STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING"], group: "Backup behaviour",
        description: "S3 storage class objects are uploaded with (the lifecycle moves them on): STANDARD, STANDARD_IA or INTELLIGENT_TIERING.",
    }),
    nodeExporterUrl: spec({
        type: "string", default: "http://127.0.0.1:9100/metrics", check: httpUrl, required: true, group: "Monitoring",
        description: "node_exporter metrics URL on each host, checked by test-monitoring.sh; a host's own `nodeExporterUrl` overrides it.",
    }),
    uploadRetries: spec({
        type: "integer", default: 5, min: 1, max: 20, group: "Backup behaviour",
        description: "Retries of a failed upload per object (up to this many more attempts), with exponential backoff between them.",
    }),

    // --- Monitoring --------------------------------------------------------
    monitoringHost: spec({
        type: "string", default: "", check: names.hostName, group: "Monitoring",
        description: "Name of the host (from `hosts`) running Prometheus and Grafana; empty skips the monitoring install.",
    }),
    prometheusRulesPath: spec({
        type: "string", default: "/opt/hx-backups/monitoring/backup-alert-rules.yml", check: names.plainPath, required: true, group: "Monitoring",
        description: "Where the alert rules are installed; Prometheus must load this file (`rule_files`).",
    }),
    promtoolPath: spec({
        type: "string", default: "promtool", check: commandOrPath, required: true, group: "Monitoring",
        description: "promtool on the monitoring host, used to check rules before they go live.",
    }),
    prometheusReloadCommand: spec({
        type: "string", default: "systemctl reload prometheus", check: names.commandLine, required: true, group: "Monitoring",
        description: "Command that makes Prometheus re-read its rules.",
    }),
    grafanaMode: spec({
        type: "string", default: "file", allowed: ["file", "api", "none"], group: "Monitoring",
        description: "Dashboard delivery: `file` (provisioning folder), `api` (HTTP API) or `none`.",
    }),
    grafanaDashboardDir: spec({
        type: "string", default: "/var/lib/grafana/dashboards", check: names.plainPath, required: true, group: "Monitoring",
        description: "Folder watched by a Grafana dashboard provider (`grafanaMode: file`).",
    }),
    grafanaUrl: spec({
        type: "string", default: "http://127.0.0.1:3000", check: names.url, required: true, group: "Monitoring",
        description: "Grafana base URL, reached from the monitoring host (`grafanaMode: api`).",
    }),
    grafanaApiToken: spec({
        type: "string", default: "", secret: true, group: "Monitoring",
        description: "Grafana service-account token (`grafanaMode: api`).",
    }),
    runbookBaseUrl: spec({
        type: "string", default: "https://github.com/hx-infra/hx-backup/blob/main/docs/runbooks.md", check: runbookUrl, required: true, group: "Monitoring",
        description: "Base of every alert's runbook_url; each alert links to its section (#backupfailed, ...).",
    }),
    dashboardUid: spec({
        type: "string", default: "hx-backup", check: grafanaUid, required: true, group: "Monitoring",
        description: "Stable Grafana dashboard uid.",
    }),
    alertStorageUsedPercent: spec({
        type: "integer", default: 90, min: 50, max: 99, group: "Monitoring",
        description: "StorageFull fires when the backup filesystem is used beyond this percentage; the health check reports a problem from it on.",
    }),
    alertOverdueGraceMinutes: spec({
        type: "integer", default: 30, min: 0, max: 1440, group: "Monitoring",
        description: "BackupDelayed's grace after a job's next run should have finished (interval + start delay + last duration).",
    }),
    alertWalArchiveLagTimeouts: spec({
        type: "integer", default: 3, min: 1, max: 1000, group: "Monitoring",
        description: "WalArchiveLag fires when the oldest WAL segment waiting to be archived is older than this many archive timeouts.",
    }),

    // --- Notifications -----------------------------------------------------
    notifyEmailTo: spec({
        type: "array", items: "string", default: [], group: "Notifications",
        description: "Addresses that get hx-backup alerts by email, through the monitoring host's Alertmanager; empty sends none.",
    }),
    notifyEmailFrom: spec({
        type: "string", default: "", check: names.emailAddress, group: "Notifications",
        description: "Sender of the alert emails (required with `notifyEmailTo`).",
    }),
    notifySmtpSmarthost: spec({
        type: "string", default: "", check: names.hostPort, group: "Notifications",
        description: "SMTP relay as `host:port` (required with `notifyEmailTo`).",
    }),
    notifySmtpRequireTls: spec({
        type: "boolean", default: true, group: "Notifications",
        description: "Send only over STARTTLS.",
    }),
    notifySmtpAuthUsername: spec({
        type: "string", default: "", check: names.commandLine, group: "Notifications",
        description: "SMTP AUTH user; empty sends without AUTH. Needs `notifySmtpAuthPassword`.",
    }),
    notifySmtpAuthPassword: spec({
        type: "string", default: "", secret: true, group: "Notifications",
        description: "SMTP AUTH password; installed as a file only Alertmanager's group can read (`auth_password_file`).",
    }),
    notifySeverities: spec({
        type: "array", items: "string", default: ["critical", "warning"], group: "Notifications",
        description: "Severities that notify: `critical`, `warning`.",
    }),
    notifyRoutes: spec({
        type: "array", items: "string", default: [], group: "Notifications",
        description: "Other recipients for one host or one type, instead of `notifyEmailTo`: `host=<name>: <address>[, <address>]` or `type=<type>: ...`; the first that matches wins.",
    }),
    notifyGroupWait: spec({
        type: "string", default: "30s", check: names.duration, required: true, group: "Notifications",
        description: "How long Alertmanager waits to group the first alerts of a group into one email.",
    }),
    notifyGroupInterval: spec({
        type: "string", default: "5m", check: names.duration, required: true, group: "Notifications",
        description: "How long it waits before emailing alerts added to a group already notified.",
    }),
    notifyRepeatInterval: spec({
        type: "string", default: "4h", check: names.duration, required: true, group: "Notifications",
        description: "How often a still-firing group is emailed again.",
    }),
    alertmanagerConfigPath: spec({
        type: "string", default: "/etc/prometheus/alertmanager.yml", check: names.plainPath, required: true, group: "Notifications",
        description: "The monitoring host's Alertmanager config; hx-backup edits only its own marked blocks in it.",
    }),
    amtoolPath: spec({
        type: "string", default: "amtool", check: commandOrPath, required: true, group: "Notifications",
        description: "amtool on the monitoring host, used to check the edited config before it replaces the live one.",
    }),
    alertmanagerReloadCommand: spec({
        type: "string", default: "systemctl reload prometheus-alertmanager", check: names.commandLine, required: true, group: "Notifications",
        description: "Command that makes Alertmanager re-read its config.",
    }),
    alertmanagerGroup: spec({
        type: "string", default: "prometheus", check: names.unixUser, required: true, group: "Notifications",
        description: "Group Alertmanager runs as: the only one, besides root, that may read the SMTP password file.",
    }),
} as const satisfies Record<string, ConfigKeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;

/** Fields of one `hosts` entry. config/hosts.ts reads each with the default, bounds and values given here. */
export interface HostFieldSpec {
    /** Type as shown in the configuration reference. */
    readonly type: string;
    /** The default; absent where the field is required or its default comes from another key (see `defaultText`). */
    readonly default?: string | number | boolean | readonly string[];
    /** The configuration reference's default column where `default` is absent or needs words. */
    readonly defaultText?: string;
    readonly min?: number;
    readonly max?: number;
    readonly allowed?: readonly string[];
    readonly description: string;
}

/** The system configuration a `configuration` host backs up unless `configuration.paths` is set. */
export const DEFAULT_SYSTEM_CONFIG_PATHS = [
    "/etc/hostname", "/etc/hosts", "/etc/fstab", "/etc/passwd", "/etc/group", "/etc/sudoers", "/etc/sudoers.d",
    "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d", "/etc/systemd/system", "/etc/crontab", "/etc/cron.d",
    "/etc/network", "/etc/netplan", "/etc/nftables.conf", "/etc/iptables", "/etc/sysctl.conf", "/etc/sysctl.d",
    "/etc/security/limits.conf", "/etc/logrotate.d", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
] as const;
/** Added to the default configuration paths for each further role of the host. */
export const ROLE_CONFIG_PATHS = {
    postgresql: ["/etc/postgresql"],
    redis: ["/etc/redis"],
    monitoring: ["/etc/prometheus", "/etc/grafana"],
} as const;

const MAINTENANCE = ["never", "weekly", "always"] as const;

export const HOST_FIELDS = {
    name: { type: "string", defaultText: "(required)", description: "Host name: lowercase letters, digits, `-`; unique in the stack; not `pgbackrest` (the bucket folder of the PITR repositories) nor a retention class (`daily`, `weekly`, `monthly`, `yearly`: their bucket folders). Used in unit names, S3 keys and metric labels." },
    address: { type: "string", defaultText: "(required)", description: "IP address or DNS name to connect to." },
    port: { type: "integer", default: 22, ...PORT, description: "SSH port." },
    sshUser: { type: "string", defaultText: "`sshUser`", description: "SSH user for this host." },
    hostKey: { type: "string", default: "", defaultText: "(none)", description: "Pinned host key (`ssh-ed25519 AAAA...`); the connection fails if the host presents another." },
    roles: { type: "array<string>", default: ["configuration"], allowed: ["postgresql", "redis", "application", "configuration", "monitoring"], description: "Any of `postgresql`, `redis`, `application`, `configuration`, `monitoring`." },
    remoteSync: { type: "boolean", default: true, description: "Upload this host's backups to the bucket." },
    nodeExporterUrl: { type: "string", defaultText: "`nodeExporterUrl`", description: "This host's node_exporter metrics URL, checked by its test-monitoring.sh, where it differs from the stack's `nodeExporterUrl` (a node_exporter on another address or port)." },
    "postgresql.databases": { type: "array", default: [], defaultText: "[] (all non-template databases)", description: "Database names, or objects `{name, large}`; `large` ones are always dumped in `parallel` format." },
    "postgresql.host": { type: "string", default: "/var/run/postgresql", description: "Socket directory or TCP host." },
    "postgresql.port": { type: "integer", default: 5432, ...PORT, description: "Server port." },
    "postgresql.user": { type: "string", defaultText: "`backupUser`", description: "Database role used for dumps (needs `pg_read_all_data`)." },
    "postgresql.auth": { type: "string", default: "peer", allowed: ["peer", "pgpass"], description: "`peer` (local socket) or `pgpass` (password from secret `postgresqlPassword`, in a 0600 `.pgpass`)." },
    "postgresql.format": { type: "string", default: "auto", allowed: ["auto", "custom", "parallel"], description: "`auto`: each database by its size when the dump starts (`pg_database_size`), `parallel` from `parallelThresholdMiB` on and `custom` below. `custom`: one `pg_dump -Fc` stream. `parallel`: `postgresqlJobs` concurrent `pg_dump -Fc` streams over the tables, all in one exported snapshot, each encrypted on the fly and packed into one artifact, which also restores concurrently. (`pg_dump -Fd -j` would write plaintext table files to disk.)" },
    "postgresql.parallelThresholdMiB": { type: "integer", default: 512, min: 1, max: 16777216, description: "With `format: auto`, the database size (MiB, `pg_database_size` at dump time) from which a database is dumped in `parallel` format. See \"Choosing the dump format\"." },
    "postgresql.vacuumAnalyzeBefore": { type: "string", default: "weekly", allowed: MAINTENANCE, description: "`never`, `weekly` or `always`: VACUUM ANALYZE (its own unit, as `postgres`) before the dump." },
    "postgresql.dataDir": { type: "string", default: "/var/lib/postgresql/15/main", description: "The cluster's data directory (pgBackRest's `pg1-path`, with `pitr`)." },
    "postgresql.pitr.enabled": { type: "boolean", default: false, description: "Point-in-time recovery with pgBackRest: WAL archiving to the stack's bucket (or a local repository), full and differential backups. See \"Point-in-time recovery\"." },
    "postgresql.pitr.archiveTimeoutSeconds": { type: "integer", default: 60, min: 10, max: 3600, description: "`archive_timeout`: the most seconds of committed writes not yet archived (the RPO of an idle server)." },
    "postgresql.pitr.full": { type: "string", default: "0 1 * * 0", description: "Schedule of the full backups (cron or OnCalendar)." },
    "postgresql.pitr.differential": { type: "string", default: "0 1 * * 1-6", description: "Schedule of the differential backups (cron or OnCalendar)." },
    "postgresql.pitr.retentionFull": { type: "integer", default: 2, min: 1, max: 100, description: "Full backups kept (`repo1-retention-full`); the WAL they need is kept with them." },
    "postgresql.pitr.processMax": { type: "integer", default: 2, min: 1, max: 32, description: "pgBackRest `process-max`: parallel compression and transfer." },
    "postgresql.pitr.allowRestart": { type: "boolean", default: false, description: "Let the deploy restart PostgreSQL once when `archive_mode` was off; otherwise it reports the restart as pending." },
    "postgresql.analyzeAfter": { type: "string", default: "never", allowed: MAINTENANCE, description: "`never`, `weekly` or `always`: ANALYZE (its own unit, as `postgres`) after the dump." },
    "redis.host": { type: "string", default: "127.0.0.1", description: "Redis host." },
    "redis.port": { type: "integer", default: 6379, ...PORT, description: "Redis port." },
    "redis.rdbPath": { type: "string", default: "/var/lib/redis/dump.rdb", description: "The server's RDB file." },
    "redis.auth": { type: "boolean", default: false, description: "Authenticate with the secret `redisPassword` (from a 0600 file)." },
    "application.paths": { type: "array<string>", defaultText: "(required for the role)", description: "Directories to back up." },
    "application.include": { type: "array<string>", default: [], description: "Glob patterns to include (empty includes everything)." },
    "application.exclude": { type: "array<string>", default: [], description: "Glob patterns to exclude." },
    "configuration.paths": { type: "array<string>", default: DEFAULT_SYSTEM_CONFIG_PATHS, defaultText: "system defaults, plus `/etc/postgresql`, `/etc/redis` or `/etc/prometheus` and `/etc/grafana` for the host's other roles", description: "System and application config files and folders." },
    "configuration.tlsPaths": { type: "array<string>", default: ["/etc/ssl/private", "/etc/ssl/certs/local", "/etc/letsencrypt"], description: "TLS certificates and keys (kept at 0600)." },
} as const satisfies Record<string, HostFieldSpec>;

export type HostField = keyof typeof HOST_FIELDS;
