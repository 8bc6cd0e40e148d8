/** The validated, defaulted stack configuration the program is built from. */
import type { ClassLifecycle, RetentionClass } from "./lifecycle";
import type { Schedule } from "./schedule";

export type Role = "postgresql" | "redis" | "application" | "configuration" | "monitoring";
export const ROLES: readonly Role[] = ["postgresql", "redis", "application", "configuration", "monitoring"];

/** When an optional PostgreSQL maintenance step runs. */
export type Maintenance = "never" | "weekly" | "always";

export interface DatabaseSpec {
    readonly name: string;
    /** Always dumped in `parallel` format, whatever its size. */
    readonly large: boolean;
}

export interface PostgresqlSettings {
    /** Empty: every non-template database. */
    readonly databases: readonly DatabaseSpec[];
    readonly host: string;
    readonly port: number;
    readonly user: string;
    readonly auth: "peer" | "pgpass";
    /** `auto`: parallel format from `parallelThresholdMiB` (pg_database_size at dump time), custom below. */
    readonly format: "auto" | "custom" | "parallel";
    readonly parallelThresholdMiB: number;
    readonly vacuumAnalyzeBefore: Maintenance;
    readonly analyzeAfter: Maintenance;
    /** The cluster's data directory. */
    readonly dataDir: string;
    /** Point-in-time recovery with pgBackRest; absent when off. */
    readonly pitr?: PitrSettings;
}

export interface PitrSettings {
    readonly archiveTimeoutSeconds: number;
    readonly full: Schedule;
    readonly differential: Schedule;
    readonly retentionFull: number;
    readonly processMax: number;
    readonly allowRestart: boolean;
}

export interface RedisSettings {
    readonly host: string;
    readonly port: number;
    readonly rdbPath: string;
    readonly auth: boolean;
}

export interface ApplicationSettings {
    readonly paths: readonly string[];
    readonly include: readonly string[];
    readonly exclude: readonly string[];
}

export interface ConfigurationSettings {
    readonly paths: readonly string[];
    readonly tlsPaths: readonly string[];
}

export interface HostSpec {
    readonly name: string;
    readonly address: string;
    readonly port: number;
    readonly sshUser: string;
    readonly hostKey?: string;
    readonly roles: readonly Role[];
    readonly remoteSync: boolean;
    /** The host's own node_exporter metrics URL, when it sets one; otherwise the stack's `nodeExporterUrl` (render/hostConfig.ts nodeExporterUrlOf). */
    readonly nodeExporterUrl?: string;
    readonly postgresql?: PostgresqlSettings;
    readonly redis?: RedisSettings;
    readonly application?: ApplicationSettings;
    readonly configuration?: ConfigurationSettings;
}

export type ScheduleKey = "databaseDaily" | "databaseWeekly" | "applicationDaily" | "configurationDaily" | "verification" | "driftCheck";

export interface PathSettings {
    readonly configDir: string;
    readonly scriptDir: string;
    readonly storageDir: string;
    readonly logDir: string;
    readonly textfileDir: string;
    readonly keyFile: string;
    readonly keyringDir: string;
}

export interface StackConfig {
    readonly stack: string;
    readonly hosts: readonly HostSpec[];
    readonly ssh: {
        readonly sudo: boolean;
        readonly agentSocket?: string;
        readonly usesPrivateKey: boolean;
        readonly bastion?: { readonly host: string; readonly user: string; readonly port: number; readonly hostKey?: string; readonly usesPrivateKey: boolean };
    };
    readonly installPackages: boolean;
    /** Read hosts' install records during preview and up (drift shows as updates). */
    readonly hostReads: boolean;
    readonly storage: {
        /** "aws": Pulumi manages the bucket; "custom": an S3-compatible endpoint managed elsewhere; "none": no host syncs. */
        readonly mode: "aws" | "custom" | "none";
        readonly bucketName: string;
        readonly prefix: string;
        /** Empty in AWS mode means "the provider's region". */
        readonly region: string;
        readonly endpoint?: string;
        /** CA bundle on the hosts for `endpoint` (s3CaFile); empty: the system's. */
        readonly caFile: string;
        readonly retentionBy: "prefix" | "tag";
        readonly objectLock?: { readonly mode: "GOVERNANCE" | "COMPLIANCE"; readonly days: number };
        readonly kmsDeletionWindowDays: number;
        readonly forceDestroy: boolean;
        readonly lifecycle: readonly ClassLifecycle[];
        readonly noncurrentVersionExpireDays: number;
        readonly abortMultipartDays: number;
        readonly uploadRetries: number;
    };
    readonly schedules: Readonly<Record<ScheduleKey, Schedule>>;
    readonly randomizedDelaySec: number;
    readonly retention: Readonly<Record<RetentionClass, number>>;
    /** Zone of retention's periods: `local` (the host's) or a zone name. */
    readonly retentionTimeZone: string;
    readonly encryption: {
        readonly algorithm: "AES-256-CBC";
        readonly keyVersion: number;
        /** Versions 1..N are the older RandomBytes keys, kept for restores (encryptionExposedKeyVersions). */
        readonly exposedVersions: number;
        readonly rotationDays: number;
    };
    readonly paths: PathSettings;
    readonly backupUser: string;
    readonly compression: { readonly method: "auto" | "zstd" | "gzip"; readonly level: number; readonly threads: number };
    readonly uploadStorageClass: "STANDARD" | "STANDARD_IA" | "INTELLIGENT_TIERING";
    readonly nodeExporterUrl: string;
    readonly postgresqlParallelDumps: number;
    readonly postgresqlJobs: number;
    readonly sizeCheck: { readonly history: number; readonly lowPercent: number; readonly highPercent: number };
    /** 0 = no quota. */
    readonly storageQuotaBytes: number;
    /** Job log line format. */
    readonly logFormat: "keyvalue" | "json";
    readonly monitoring?: {
        readonly host: string;
        readonly rulesPath: string;
        readonly promtool: string;
        readonly reloadCommand: string;
        readonly grafanaMode: "file" | "api" | "none";
        readonly grafanaDashboardDir: string;
        readonly grafanaUrl: string;
        readonly dashboardUid: string;
        readonly runbookBaseUrl: string;
    };
    /** Thresholds rendered into the alert rules. */
    readonly alertThresholds: {
        readonly storageUsedPercent: number;
        readonly overdueGraceSeconds: number;
        /** WalArchiveLag's threshold, in archive timeouts (the host's archive_timeout). */
        readonly walArchiveLagTimeouts: number;
    };
    /** Email through the monitoring host's Alertmanager; absent when notifyEmailTo is empty. */
    readonly notifications?: Notifications;
    /** Secret keys the stack sets (values are read as secrets, never here). */
    readonly secretsSet: ReadonlySet<string>;
}

/** One `notifyRoutes` entry: alerts of one host or one type go to other recipients. */
export interface NotificationRoute {
    readonly label: "host" | "type";
    readonly value: string;
    /** For `host`: the name and the address, which a scrape's `instance` label starts with. */
    readonly instances: readonly string[];
    readonly to: readonly string[];
}

export interface Notifications {
    readonly to: readonly string[];
    readonly from: string;
    readonly smarthost: string;
    readonly requireTls: boolean;
    /** Empty: no SMTP AUTH. With a user, the password comes from the secret notifySmtpAuthPassword. */
    readonly authUsername: string;
    readonly severities: readonly ("critical" | "warning")[];
    readonly routes: readonly NotificationRoute[];
    readonly groupWait: string;
    readonly groupInterval: string;
    readonly repeatInterval: string;
    readonly configPath: string;
    readonly amtool: string;
    readonly reloadCommand: string;
    readonly group: string;
}
