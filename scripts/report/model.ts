/**
 * The report model: every fact the report states, in one JSON-able shape.
 * report.json is this object; report.html and report.md are views of it, so
 * the three never disagree.
 */
import type { RetentionClass } from "../../config/lifecycle";
import type { LifecycleRule } from "../../render/storagePolicy";
import type { Job } from "../../render/jobs";

export const REPORT_FORMAT = 1;

/** What the stack says the bucket should hold and how it is governed (config/ and render/ derived). */
export interface ReportPolicy {
    readonly stack: string;
    readonly bucket: { readonly name: string; readonly prefix: string; readonly region: string; readonly endpoint?: string; readonly retentionBy: "prefix" | "tag" };
    readonly retention: Readonly<Record<RetentionClass, number>>;
    /**
     * Zone the report counts days, weeks, months and years in. `local` in the
     * stack means each host's own zone, which the bucket does not record: UTC then.
     */
    readonly timeZone: string;
    readonly timeZoneNote: string;
    readonly encryption: { readonly algorithm: string; readonly currentKeyId: string; readonly keyIds: readonly string[]; readonly rotationDays: number };
    readonly objectLock: { readonly mode: "GOVERNANCE" | "COMPLIANCE"; readonly days: number } | null;
    /** The lifecycle rules the stack applies to the bucket (render/storagePolicy.ts). */
    readonly lifecycleRules: readonly LifecycleRule[];
    readonly expirationDays: Readonly<Record<RetentionClass, number>>;
    /** BackupDelayed's grace (alertOverdueGraceMinutes), which the RPO check adds as the alert does. */
    readonly overdueGraceSeconds: number;
    readonly hosts: readonly ExpectedHost[];
}

export interface ExpectedHost {
    readonly name: string;
    /** false: the host keeps its backups local, and nothing of it is expected in the bucket. */
    readonly remoteSync: boolean;
    readonly sources: readonly ExpectedSource[];
    /** The jobs that restore-test every source of the host (backup-verify.sh --restore-test, on the verification schedule). */
    readonly restoreTestJobs: readonly ExpectedJob[];
    /** The pgBackRest repository the host archives into in the bucket (postgresql.pitr with remoteSync); null otherwise. */
    readonly pitr: ExpectedPitr | null;
}

/** A PITR host's repository as render/pgbackrest.ts configures it, for the current key. */
export interface ExpectedPitr {
    readonly host: string;
    /** stanzaName(host). */
    readonly stanza: string;
    readonly keyId: string;
    /** repo1-path as a key prefix, ending in `/`: `<prefix>/pgbackrest/<host>/<keyId>/`. */
    readonly repository: string;
    /** repo1-retention-full (postgresql.pitr.retentionFull). */
    readonly retentionFull: number;
    readonly fullJob: ExpectedJob;
    /** pitr-full and pitr-differential: the days a backup set is due, and (each archiving its stop segment) the newest WAL's allowed age. */
    readonly backupJobs: readonly ExpectedJob[];
}

/** One backup type a host's roles call for, with the jobs that write it. */
export interface ExpectedSource {
    readonly type: string;
    /** Targets the stack names (PostgreSQL databases); empty when the host decides (every database, the one Redis, ...). */
    readonly targets: readonly ExpectedTarget[];
    readonly jobs: readonly ExpectedJob[];
}

/** A target as the stack names it, and the name the scripts store it under (render/slug.ts, lib/core.sh hx_slug). */
export interface ExpectedTarget {
    readonly configured: string;
    /** The key segment in the bucket; the configured name itself when that is plain. */
    readonly stored: string;
}

/** The schedule facts of one job, as render/jobs.ts gives them. */
export type ExpectedJob = Pick<Job, "name" | "onCalendar" | "description" | "maxIntervalSeconds" | "jitterSeconds">;

/** One object of the bucket listing, with the retention-class tag in tag mode. */
export interface BucketObject {
    readonly key: string;
    readonly size: number;
    readonly lastModified: string;
    readonly retentionTag?: string;
}

/** What was read from the bucket: the listing, each manifest's body and each restore-test record's (undefined: it could not be read). */
export interface BucketSnapshot {
    readonly objects: readonly BucketObject[];
    readonly manifestBodies: ReadonlyMap<string, string | undefined>;
    readonly restoreTestBodies: ReadonlyMap<string, string | undefined>;
    /** The pgBackRest repositories' objects under `<prefix>/pgbackrest/`, without the backups' own files. */
    readonly pitrObjects: readonly BucketObject[];
}

/** keyId -> MAC half of the key, hex. */
export type MacKeyring = ReadonlyMap<string, string>;

export type MacStatus = "verified" | "mismatch" | "malformed" | "key-missing" | "not-checked";
export type ArtifactStatus = "present" | "missing" | "size-differs" | "unknown";

export interface BackupFact {
    readonly manifestKey: string;
    readonly artifactKey: string | null;
    readonly retentionClass: RetentionClass | null;
    readonly createdAt: string | null;
    readonly startedAt: string | null;
    readonly day: string | null;
    readonly keyId: string | null;
    readonly cipher: string | null;
    /** A deduplicated backup: its artifact is the one an earlier manifest uploaded. */
    readonly dedup: { readonly artifact: string; readonly manifest: string } | null;
    readonly mac: MacStatus;
    readonly artifact: ArtifactStatus;
    /** Every check that could run passed (an unchecked MAC does not count against it). */
    readonly restorable: boolean;
    readonly problems: readonly string[];
}

export type DayState = "ok" | "broken" | "missed" | "not-scheduled" | "before-first" | "beyond-daily-retention" | "today";

export interface TimelineDay {
    readonly date: string;
    readonly scheduled: boolean;
    readonly state: DayState;
    /** Indexes into the source's `backups`. */
    readonly backups: readonly number[];
}

export interface ClassCoverage {
    readonly retentionClass: RetentionClass;
    /** Manifests uploaded under this class. */
    readonly objects: number;
    /** The policy's count (retentionDaily, ...). */
    readonly policy: number;
    /** Distinct days / ISO weeks / months / years with a restorable backup, newest `policy` of them. */
    readonly covered: number;
    /** What the policy can ask for given how long the source has existed in the bucket. */
    readonly required: number;
    readonly expirationDays: number;
    readonly met: boolean;
}

export interface SourceReport {
    readonly host: string;
    readonly type: string;
    /** The name the source is stored under in the bucket. */
    readonly target: string;
    /** The target as the stack names it (a listed database), which may differ from its stored name; null when the stack names none. */
    readonly configuredTarget: string | null;
    /** false: found in the bucket, but the stack no longer expects it (a removed role, database or host). */
    readonly expected: boolean;
    readonly schedule: { readonly jobs: readonly ExpectedJob[]; readonly thresholdSeconds: number | null; readonly rule: string } | null;
    readonly newest: { readonly createdAt: string; readonly ageSeconds: number; readonly rpoMet: boolean | null } | null;
    readonly oldestRestorable: string | null;
    readonly encryption: { readonly cipher: string; readonly kdf: string; readonly digest: string; readonly iter: number | null; readonly keyId: string } | null;
    readonly coverage: readonly ClassCoverage[];
    readonly lastRestoreTest: RestoreTestFact;
    readonly backups: readonly BackupFact[];
    /** Backups older than the timeline's first day (monthly and yearly copies). */
    readonly olderThanTimeline: number;
    readonly timeline: readonly TimelineDay[];
    /** Backups whose manifest gives no usable date: shown beside the timeline, never dropped. */
    readonly undated: readonly number[];
}

/**
 * The source's restore-test record (lib/verify.sh hx_restore_test_record),
 * which backup-sync.sh uploads as `<prefix>/<host>/<type>/<target>/restore-test.json`.
 * state: ok (passed, within the allowed age, MAC verified or not checked),
 * failed, stale, missing (none, and one is due), not-due (none yet, the
 * source is younger than the allowed age), untrusted (MAC fails or the
 * record is malformed), not-expected (the stack schedules no restore test of it).
 */
export interface RestoreTestFact {
    readonly state: "ok" | "failed" | "stale" | "missing" | "not-due" | "untrusted" | "not-expected";
    readonly key: string | null;
    readonly result: "ok" | "failed" | null;
    readonly error: string | null;
    readonly startedAt: string | null;
    readonly finishedAt: string | null;
    readonly ageSeconds: number | null;
    readonly durationMs: number | null;
    /** The manifest (file name) and artifact tested, and whether the bucket holds that manifest for the source. */
    readonly manifest: string | null;
    readonly artifact: string | null;
    readonly manifestInBucket: boolean | null;
    readonly job: string | null;
    readonly keyId: string | null;
    readonly mac: MacStatus;
    /** The age the verification schedule allows, and how it is derived; null without a restore-test schedule. */
    readonly allowedAgeSeconds: number | null;
    readonly rule: string | null;
    readonly problems: readonly string[];
}

export interface KeyFact {
    readonly keyId: string;
    readonly current: boolean;
    readonly firstUsedAt: string | null;
    readonly ageDays: number | null;
    readonly rotationDays: number;
    readonly status: "ok" | "rotation-due" | "retired" | "unused";
    readonly manifests: number;
    /** Whether --keys held it; null without --keys. */
    readonly inKeyring: boolean | null;
}

export type ProblemKind =
    | "missing-source"
    | "artifact-missing"
    | "artifact-size"
    | "mac-mismatch"
    | "manifest-malformed"
    | "key-missing"
    | "rpo-missed"
    | "missed-day"
    | "retention-short"
    | "key-rotation-due"
    | "orphan-artifact"
    | "unexpected-source"
    | "restore-test-failed"
    | "restore-test-stale"
    | "restore-test-missing"
    | "restore-test-mac-mismatch"
    | "restore-test-malformed"
    | "wal-gap"
    | "wal-archive-lag"
    | "retention-exceeded"
    | "pitr-backup-orphan"
    | "pitr-info-missing";

/** One pgBackRest backup set: a label whose backup.manifest exists. */
export interface PitrBackupFact {
    readonly label: string;
    readonly type: "full" | "diff" | "incr";
    /** backup.manifest's LastModified: pgBackRest writes it when the backup completes. */
    readonly completedAt: string;
    /** The label's time, the host's local time without a zone: shown, never compared. */
    readonly labelTime: string;
    /** The full backup a diff or incr depends on. */
    readonly full: string | null;
    readonly manifestKey: string;
    readonly manifestCopy: boolean;
}

/** The archived segments of one timeline of one archive id (`<pgVersion>-<id>`). */
export interface WalTimelineFact {
    readonly archiveId: string;
    readonly timeline: string;
    readonly first: string;
    readonly last: string;
    readonly segments: number;
    /** Runs of segment names missing between first and last. */
    readonly gaps: readonly { readonly first: string; readonly last: string; readonly missing: number }[];
    /** Segment names whose low 8 hex digits exceed what the assumed segment size allows. */
    readonly segmentNumbersBeyondAssumedSize: number;
}

/** One stanza in one pgBackRest repository of the bucket. */
export interface PitrReport {
    readonly host: string;
    readonly type: "pitr";
    /** The stanza. */
    readonly target: string;
    readonly keyId: string;
    readonly repository: string;
    /** The stack's repository for the host's current key: the one retention, schedule and archive lag are measured in. */
    readonly expected: boolean;
    /** A repository of the stanza under an older key (before a rotation): kept, not written to, not measured against the schedule. */
    readonly olderKey: boolean;
    readonly backupInfo: boolean;
    readonly archiveInfo: boolean;
    readonly backups: readonly PitrBackupFact[];
    /** Labels with only backup.manifest.copy: a backup running or aborted. */
    readonly incomplete: readonly string[];
    /** Full backups against repo1-retention-full; null for a repository the stack does not expect. */
    readonly retention: { readonly fullBackups: number; readonly retentionFull: number; readonly required: number; readonly met: boolean } | null;
    /** Completion of the oldest full backup. */
    readonly oldestRestorable: string | null;
    /**
     * thresholdSeconds: the age past which archiving (or the backups) must have
     * stopped: every backup archives its stop segment, so the shortest backup
     * schedule's longest gap, its start delay and the grace; rule says so.
     */
    readonly newestWal: { readonly name: string; readonly archiveId: string; readonly key: string; readonly archivedAt: string; readonly ageSeconds: number; readonly thresholdSeconds: number | null; readonly rule: string | null; readonly lagMet: boolean | null } | null;
    readonly walSegments: number;
    readonly timelines: readonly WalTimelineFact[];
    /** The segment size the continuity check assumes. */
    readonly walSegmentBytes: number;
    /** true: read from the names (every finished log ends at the same lower segment number), not PostgreSQL's default. */
    readonly walSegmentBytesInferred: boolean;
    /** Days with a completed backup set (indexes into `backups`), as the sources' timeline. */
    readonly timeline: readonly TimelineDay[];
    readonly problems: readonly string[];
}

export interface Problem {
    readonly kind: ProblemKind;
    readonly severity: "error" | "warning";
    /** null for stack-wide problems (a key due for rotation). */
    readonly host: string | null;
    readonly type: string | null;
    readonly target: string | null;
    /** The object the problem is about, when there is one. */
    readonly key: string | null;
    /**
     * A PITR problem's pgBackRest repository (`PitrReport.repository`): after a
     * key rotation two repositories share host, type and stanza.
     */
    readonly repository?: string;
    readonly message: string;
}

/** A source the stack expects and the bucket holds nothing of. */
export interface MissingSource {
    readonly host: string;
    readonly type: string;
    /** The name the scripts would store it under; null when the host decides (the one Redis, every database, ...). */
    readonly target: string | null;
    /** The target as the stack names it; null when the stack names none. */
    readonly configuredTarget: string | null;
}

export interface Report {
    readonly format: typeof REPORT_FORMAT;
    readonly generatedAt: string;
    readonly stack: string;
    readonly bucket: ReportPolicy["bucket"];
    readonly timeZone: string;
    readonly timeZoneNote: string;
    readonly macCheck: "keyring" | "not-checked";
    readonly retention: ReportPolicy["retention"];
    readonly objectLock: ReportPolicy["objectLock"];
    readonly lifecycleRules: ReportPolicy["lifecycleRules"];
    readonly keys: readonly KeyFact[];
    readonly sources: readonly SourceReport[];
    /** The pgBackRest repositories (postgresql.pitr), from the listing alone. */
    readonly pitr: readonly PitrReport[];
    readonly missingSources: readonly MissingSource[];
    readonly problems: readonly Problem[];
    readonly unrecognizedObjects: readonly string[];
    readonly totals: { readonly objects: number; readonly manifests: number; readonly restorable: number; readonly broken: number };
    /** What the bucket cannot tell, said plainly. */
    readonly cannotKnow: readonly string[];
}
