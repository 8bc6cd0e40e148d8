/**
 * Facts from a bucket listing and its manifests, measured against the stack's
 * policy: a pure function of its inputs (no clock, no I/O), so every rule of
 * the report is tested without S3.
 */
import { RETENTION_CLASSES, type RetentionClass } from "../../config/lifecycle";
import { dayFromNumber, dayNumber, dayOf, periodKey, periodsBetween, runsOnDay } from "./calendar";
import { hasLoneSurrogate, macMatches, type Json } from "./canonical";
import { PITR_NOTE, pitrReports, WAL_SEGMENT_NOTE } from "./pitr";
import {
    REPORT_FORMAT,
    type ArtifactStatus,
    type BackupFact,
    type BucketObject,
    type BucketSnapshot,
    type ClassCoverage,
    type ExpectedSource,
    type ExpectedTarget,
    type KeyFact,
    type MacKeyring,
    type MacStatus,
    type MissingSource,
    type Problem,
    type ProblemKind,
    type Report,
    type ReportPolicy,
    type RestoreTestFact,
    type SourceReport,
    type TimelineDay,
} from "./model";

const DAY_SECONDS = 86_400;

export interface ParsedKey {
    readonly retentionClass: RetentionClass | null;
    readonly host: string;
    readonly type: string;
    readonly target: string;
    readonly file: string;
    /** The key up to and including the last `/`: where the manifest's artifact must be (backup-restore.sh). */
    readonly dir: string;
}

/**
 * Where an object sits in the layout lib/remote.sh hx_s3_key writes:
 * `<prefix>/<class>/<host>/<type>/<target>/<file>` (prefix mode) or
 * `<prefix>/<host>/<type>/<target>/<file>` with the retention-class tag (tag mode).
 */
export function parseObjectKey(key: string, bucket: ReportPolicy["bucket"], retentionTag?: string): ParsedKey | null {
    const prefix = bucket.prefix.replace(/\/+$/, "");
    const root = prefix ? `${prefix}/` : "";
    if (!key.startsWith(root)) return null;
    const parts = key.slice(root.length).split("/");
    const isClass = (c: string | undefined): c is RetentionClass => RETENTION_CLASSES.includes(c as RetentionClass);
    let retentionClass: RetentionClass | null;
    let rest: string[];
    if (bucket.retentionBy === "prefix") {
        if (parts.length !== 5 || !isClass(parts[0])) return null;
        retentionClass = parts[0];
        rest = parts.slice(1);
    } else {
        if (parts.length !== 4) return null;
        retentionClass = isClass(retentionTag) ? retentionTag : null;
        rest = parts;
    }
    const [host, type, target, file] = rest;
    if (!host || !type || !target || !file || host.startsWith("_")) return null;
    return { retentionClass, host, type, target, file, dir: key.slice(0, key.length - file.length) };
}

/** The file name of a source's restore-test record in the bucket (backup-sync.sh sync_restore_test). */
export const RESTORE_TEST_FILE = "restore-test.json";

/**
 * Where a restore-test record sits: `<prefix>/<host>/<type>/<target>/restore-test.json`
 * in both layouts (lib/remote.sh hx_s3_source_key), outside the retention classes.
 */
export function parseRestoreTestKey(key: string, bucket: ReportPolicy["bucket"]): SourceKey | null {
    const prefix = bucket.prefix.replace(/\/+$/, "");
    const root = prefix ? `${prefix}/` : "";
    if (!key.startsWith(root)) return null;
    const parts = key.slice(root.length).split("/");
    if (parts.length !== 4 || parts[3] !== RESTORE_TEST_FILE) return null;
    const [host, type, target] = parts;
    if (!host || !type || !target || host.startsWith("_")) return null;
    return { host, type, target };
}

const SAFE_NAME = /^[A-Za-z0-9._-]+$/;
const HEX64 = /^[0-9a-f]{64}$/;

type JsonObject = { [key: string]: Json };
const isObject = (v: Json | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: Json | undefined): string | null => (typeof v === "string" ? v : null);

/** The checks lib/verify.sh hx_manifest_load and hx_verify_manifest_mac make before the MAC; null when the manifest passes them. */
export function manifestShapeProblem(m: Json): string | null {
    if (!isObject(m)) return "not a JSON object";
    if (m.format !== 1) return "format is not 1";
    const mac = m.mac;
    if (!isObject(mac) || typeof mac.value !== "string") return "no mac.value";
    if (!SAFE_NAME.test(str(mac.keyId) ?? "")) return "mac.keyId malformed";
    if (!HEX64.test(mac.value)) return "mac.value is not 64 hex characters";
    const sizes = m.sizes;
    if (!isObject(sizes) || !Number.isSafeInteger(sizes.stored) || (sizes.stored as number) < 0) return "sizes.stored is not a whole number";
    if (!isObject(m.sha256) || !HEX64.test(str(m.sha256.stored) ?? "")) return "sha256.stored is not 64 hex characters";
    const artifact = str(m.artifact) ?? "";
    if (!SAFE_NAME.test(artifact) || artifact === "." || artifact === "..") return "artifact name malformed";
    if (!isObject(m.encryption) || m.encryption.keyId !== mac.keyId) return "mac.keyId and encryption.keyId disagree";
    if (str(m.createdAt) === null || Number.isNaN(Date.parse(str(m.createdAt)!))) return "createdAt is not a time";
    if (hasLoneSurrogate(m)) return "holds a lone UTF-16 surrogate, which jq cannot read";
    return null;
}

/** A problem of one manifest, before it is placed in its source. */
interface Issue {
    readonly kind: "manifest-malformed" | "mac-mismatch" | "key-missing" | "artifact-missing" | "artifact-size";
    readonly message: string;
}

interface SourceKey {
    host: string;
    type: string;
    target: string;
}
const sourceId = (s: SourceKey): string => `${s.host}\u0000${s.type}\u0000${s.target}`;

interface Grouped {
    readonly source: SourceKey;
    readonly manifests: { object: BucketObject; parsed: ParsedKey }[];
    readonly artifacts: { object: BucketObject; parsed: ParsedKey }[];
}

function groupObjects(objects: readonly BucketObject[], bucket: ReportPolicy["bucket"]): { groups: Map<string, Grouped>; unrecognized: string[] } {
    const groups = new Map<string, Grouped>();
    const unrecognized: string[] = [];
    for (const object of objects) {
        if (parseRestoreTestKey(object.key, bucket)) continue; // placed by buildReport
        const parsed = parseObjectKey(object.key, bucket, object.retentionTag);
        if (!parsed) {
            unrecognized.push(object.key);
            continue;
        }
        const source = { host: parsed.host, type: parsed.type, target: parsed.target };
        const id = sourceId(source);
        let g = groups.get(id);
        if (!g) groups.set(id, (g = { source, manifests: [], artifacts: [] }));
        (parsed.file.endsWith(".manifest.json") ? g.manifests : g.artifacts).push({ object, parsed });
    }
    return { groups, unrecognized: unrecognized.sort() };
}

function examineManifest(
    entry: { object: BucketObject; parsed: ParsedKey },
    body: string | undefined,
    objectsByKey: ReadonlyMap<string, BucketObject>,
    keyring: MacKeyring | undefined,
    zone: string,
): { fact: BackupFact; manifest: JsonObject | null; issues: Issue[] } {
    const issues: Issue[] = [];
    const problem = (kind: Issue["kind"], message: string) => issues.push({ kind, message });
    let manifest: JsonObject | null = null;
    let mac: MacStatus;
    let shape: string | null;
    if (body === undefined) {
        shape = "could not be read from the bucket";
    } else {
        try {
            const parsed = JSON.parse(body) as Json;
            shape = manifestShapeProblem(parsed);
            if (shape === null) manifest = parsed as JsonObject;
        } catch {
            shape = "is not valid JSON";
        }
    }
    if (!manifest) {
        problem("manifest-malformed", `manifest ${shape}`);
        return {
            manifest: null,
            issues,
            fact: {
                manifestKey: entry.object.key,
                artifactKey: null,
                retentionClass: entry.parsed.retentionClass,
                createdAt: null,
                startedAt: null,
                day: null,
                keyId: null,
                cipher: null,
                dedup: null,
                mac: "malformed",
                artifact: "unknown",
                restorable: false,
                problems: issues.map((i) => i.message),
            },
        };
    }
    const macField = manifest.mac as JsonObject;
    const keyId = macField.keyId as string;
    if (!keyring) mac = "not-checked";
    else {
        const key = keyring.get(keyId);
        if (key === undefined) {
            mac = "key-missing";
            problem("key-missing", `key ${keyId} is not in the keyring given with --keys: MAC not checked`);
        } else if (macMatches(manifest, key, macField.value as string)) mac = "verified";
        else {
            mac = "mismatch";
            problem("mac-mismatch", "MAC does not verify (manifest tampered with, or signed with another key)");
        }
    }
    const artifactName = manifest.artifact as string;
    const artifactKey = `${entry.parsed.dir}${artifactName}`;
    const storedSize = (manifest.sizes as JsonObject).stored as number;
    const object = objectsByKey.get(artifactKey);
    const dedupField = manifest.dedup;
    const dedup = isObject(dedupField) && typeof dedupField.artifact === "string" && typeof dedupField.manifest === "string" ? { artifact: dedupField.artifact, manifest: dedupField.manifest } : null;
    let artifact: ArtifactStatus;
    if (!object) {
        artifact = "missing";
        problem("artifact-missing", `artifact ${artifactKey} is missing${dedup ? ` (deduplicated: the artifact first stored by ${dedup.manifest})` : ""}`);
    } else if (object.size !== storedSize) {
        artifact = "size-differs";
        problem("artifact-size", `artifact ${artifactKey} has ${object.size} bytes, the manifest signs ${storedSize}`);
    } else artifact = "present";
    const createdAt = manifest.createdAt as string;
    const encryption = manifest.encryption as JsonObject;
    return {
        manifest,
        issues,
        fact: {
            manifestKey: entry.object.key,
            artifactKey,
            retentionClass: entry.parsed.retentionClass,
            createdAt,
            startedAt: str(manifest.startedAt),
            day: dayOf(new Date(createdAt), zone),
            keyId,
            cipher: str(encryption.cipher),
            dedup,
            mac,
            artifact,
            restorable: (mac === "verified" || mac === "not-checked" || mac === "key-missing") && artifact === "present",
            problems: issues.map((i) => i.message),
        },
    };
}

/** The checks a restore-test record must pass before its MAC (the fields hx_restore_test_record writes); null when it passes them. */
export function restoreTestShapeProblem(r: Json, source: SourceKey): string | null {
    if (!isObject(r)) return "not a JSON object";
    if (r.format !== 1 || r.kind !== "restore-test") return "not a restore-test record of format 1";
    const mac = r.mac;
    if (!isObject(mac) || !SAFE_NAME.test(str(mac.keyId) ?? "") || !HEX64.test(str(mac.value) ?? "")) return "no well-formed mac";
    if (r.result !== "ok" && r.result !== "failed") return "result is neither ok nor failed";
    if (str(r.finishedAt) === null || Number.isNaN(Date.parse(str(r.finishedAt)!))) return "finishedAt is not a time";
    // The MAC covers these: a record copied beside another source would otherwise vouch for it.
    if (r.host !== source.host || r.type !== source.type || r.target !== source.target) {
        return `names ${String(r.host)}/${String(r.type)}/${String(r.target)}, not the source it sits beside`;
    }
    if (hasLoneSurrogate(r)) return "holds a lone UTF-16 surrogate, which jq cannot read";
    return null;
}

interface RestoreTestContext {
    readonly source: SourceKey;
    readonly key: string | undefined;
    readonly body: string | undefined;
    readonly keyring: MacKeyring | undefined;
    readonly now: Date;
    /** File names of the source's manifests in the bucket. */
    readonly manifests: ReadonlySet<string>;
    /** Without restore-test jobs or backup jobs for the source, nothing is expected. */
    readonly restoreTestJobs: readonly ExpectedSource["jobs"][number][];
    readonly backupJobs: readonly ExpectedSource["jobs"][number][] | undefined;
    readonly graceSeconds: number;
    /** createdAt of the source's oldest dated manifest: a missing record is due once the source is older than the allowed age. */
    readonly oldestBackup: string | null;
}

/** The restore-test rule: the verification schedule's gap, the upload's delay (the source's next backup syncs the record), the test's duration and the grace. */
function restoreTestAllowance(c: RestoreTestContext, durationSeconds: number): { seconds: number; rule: string } | null {
    if (!c.backupJobs || c.backupJobs.length === 0 || c.restoreTestJobs.length === 0) return null;
    const gap = (jobs: RestoreTestContext["restoreTestJobs"]) => Math.min(...jobs.map((j) => j.maxIntervalSeconds + j.jitterSeconds));
    const test = gap(c.restoreTestJobs);
    const upload = gap(c.backupJobs);
    const seconds = test + upload + Math.ceil(durationSeconds) + c.graceSeconds;
    return {
        seconds,
        rule: `the longest gap between runs of ${c.restoreTestJobs.map((j) => j.name).join(", ")} plus the timer's start delay (${duration(test)}), the longest gap between the source's backups plus the start delay (${duration(upload)}: the next backup's sync uploads the record), the test's own duration and ${c.graceSeconds / 60} minutes' grace: ${duration(seconds)}`,
    };
}

function examineRestoreTest(c: RestoreTestContext): { fact: RestoreTestFact; issues: { kind: ProblemKind; severity: Problem["severity"]; message: string }[] } {
    const issues: { kind: ProblemKind; severity: Problem["severity"]; message: string }[] = [];
    const empty = { key: c.key ?? null, result: null, error: null, startedAt: null, finishedAt: null, ageSeconds: null, durationMs: null, manifest: null, artifact: null, manifestInBucket: null, job: null, keyId: null };
    if (c.key === undefined) {
        const allowance = restoreTestAllowance(c, 0);
        if (!allowance) return { issues, fact: { ...empty, state: "not-expected", mac: "not-checked", allowedAgeSeconds: null, rule: null, problems: [] } };
        const sourceAge = c.oldestBackup ? (c.now.getTime() - Date.parse(c.oldestBackup)) / 1000 : 0;
        if (sourceAge <= allowance.seconds) {
            return { issues, fact: { ...empty, state: "not-due", mac: "not-checked", allowedAgeSeconds: allowance.seconds, rule: allowance.rule, problems: [] } };
        }
        const message = `no restore-test record in the bucket, and the source's oldest backup is ${duration(Math.round(sourceAge))} old, past the ${duration(allowance.seconds)} the verification schedule allows`;
        issues.push({ kind: "restore-test-missing", severity: "error", message });
        return { issues, fact: { ...empty, state: "missing", mac: "not-checked", allowedAgeSeconds: allowance.seconds, rule: allowance.rule, problems: [message] } };
    }
    let record: JsonObject | null = null;
    let shape: string | null;
    if (c.body === undefined) shape = "could not be read from the bucket";
    else {
        try {
            const parsed = JSON.parse(c.body) as Json;
            shape = restoreTestShapeProblem(parsed, c.source);
            if (shape === null) record = parsed as JsonObject;
        } catch {
            shape = "is not valid JSON";
        }
    }
    if (!record) {
        const allowance = restoreTestAllowance(c, 0);
        const message = `restore-test record ${shape}`;
        issues.push({ kind: "restore-test-malformed", severity: "error", message });
        return { issues, fact: { ...empty, state: "untrusted", mac: "malformed", allowedAgeSeconds: allowance?.seconds ?? null, rule: allowance?.rule ?? null, problems: [message] } };
    }
    const macField = record.mac as JsonObject;
    const keyId = macField.keyId as string;
    let mac: MacStatus;
    if (!c.keyring) mac = "not-checked";
    else {
        const macKey = c.keyring.get(keyId);
        if (macKey === undefined) {
            mac = "key-missing";
            issues.push({ kind: "key-missing", severity: "warning", message: `key ${keyId} is not in the keyring given with --keys: the restore-test record's MAC is not checked` });
        } else if (macMatches(record, macKey, macField.value as string)) mac = "verified";
        else {
            mac = "mismatch";
            issues.push({ kind: "restore-test-mac-mismatch", severity: "error", message: "the restore-test record's MAC does not verify (tampered with, or signed with another key): its result cannot be trusted" });
        }
    }
    const finishedAt = record.finishedAt as string;
    const durationMs = typeof record.durationMs === "number" && record.durationMs >= 0 ? record.durationMs : null;
    const ageSeconds = Math.max(0, Math.round((c.now.getTime() - Date.parse(finishedAt)) / 1000));
    const allowance = restoreTestAllowance(c, (durationMs ?? 0) / 1000);
    const result = record.result as "ok" | "failed";
    const manifest = str(record.manifest);
    const error = str(record.error);
    const stale = allowance !== null && ageSeconds > allowance.seconds;
    // A record whose MAC fails says nothing trustworthy: its result and age are not judged.
    if (mac !== "mismatch") {
        if (result === "failed") issues.push({ kind: "restore-test-failed", severity: "error", message: `the last restore test (${finishedAt}${manifest ? `, of ${manifest}` : ""}) failed: ${error ?? "no cause recorded"}` });
        if (stale) issues.push({ kind: "restore-test-stale", severity: "error", message: `the last restore test is ${duration(ageSeconds)} old, past the ${duration(allowance.seconds)} the verification schedule allows` });
    }
    const state: RestoreTestFact["state"] = mac === "mismatch" ? "untrusted" : result === "failed" ? "failed" : stale ? "stale" : "ok";
    return {
        issues,
        fact: {
            state,
            key: c.key,
            result,
            error,
            startedAt: str(record.startedAt),
            finishedAt,
            ageSeconds,
            durationMs,
            manifest,
            artifact: str(record.artifact),
            manifestInBucket: manifest === null ? null : c.manifests.has(manifest),
            job: str(record.job),
            keyId,
            mac,
            allowedAgeSeconds: allowance?.seconds ?? null,
            rule: allowance?.rule ?? null,
            problems: issues.map((i) => i.message),
        },
    };
}

const byCreated = (a: BackupFact, b: BackupFact): number => (a.createdAt ?? "").localeCompare(b.createdAt ?? "") || a.manifestKey.localeCompare(b.manifestKey);

/** The BackupDelayed rule (docs/runbooks.md "BackupDelayed"), with the stack's grace. */
function rpoThreshold(jobs: ExpectedSource["jobs"], durationSeconds: number, graceSeconds: number): number {
    return Math.min(...jobs.map((j) => j.maxIntervalSeconds + j.jitterSeconds)) + durationSeconds + graceSeconds;
}

function coverage(restorable: readonly BackupFact[], objects: readonly BackupFact[], policy: ReportPolicy, today: string): ClassCoverage[] {
    const days = restorable.map((b) => b.day!).sort();
    const first = days[0];
    // Today's run may still be ahead: until it lands, the newest period the policy can ask for is yesterday's.
    const lastDue = days.includes(today) ? today : dayFromNumber(dayNumber(today) - 1);
    return RETENTION_CLASSES.map((c) => {
        const keep = policy.retention[c];
        const periods = new Set(days.map((d) => periodKey(d, c)));
        const covered = Math.min(keep, periods.size);
        const required = first === undefined ? 0 : Math.min(keep, Math.max(0, periodsBetween(first, lastDue, c)));
        return {
            retentionClass: c,
            objects: objects.filter((b) => b.retentionClass === c).length,
            policy: keep,
            covered,
            required,
            expirationDays: policy.expirationDays[c],
            met: covered >= required,
        };
    });
}

/** Days shown per source: what the bucket's daily and weekly classes can still hold, at least two weeks. */
export function timelineDays(policy: ReportPolicy): number {
    return Math.max(14, policy.retention.daily, 7 * policy.retention.weekly);
}

function timeline(backups: readonly BackupFact[], expected: ExpectedSource | undefined, policy: ReportPolicy, today: string): TimelineDay[] {
    const todayN = dayNumber(today);
    const firstN = Math.min(...backups.filter((b) => b.day).map((b) => dayNumber(b.day!)));
    const out: TimelineDay[] = [];
    for (let n = todayN - timelineDays(policy) + 1; n <= todayN; n++) {
        const date = dayFromNumber(n);
        const indexes = backups.flatMap((b, i) => (b.day === date ? [i] : []));
        const scheduled = expected ? expected.jobs.some((j) => runsOnDay(j.onCalendar, date)) : false;
        let state: TimelineDay["state"];
        if (indexes.length) state = indexes.every((i) => backups[i].restorable) ? "ok" : "broken";
        else if (n === todayN) state = "today";
        else if (!scheduled) state = "not-scheduled";
        else if (n < firstN) state = "before-first";
        else if (n < todayN - policy.retention.daily) state = "beyond-daily-retention";
        else state = "missed";
        out.push({ date, scheduled, state, backups: indexes });
    }
    return out;
}

const problemOrder = (a: Problem, b: Problem): number =>
    (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1) ||
    (a.host ?? "").localeCompare(b.host ?? "") ||
    (a.type ?? "").localeCompare(b.type ?? "") ||
    (a.target ?? "").localeCompare(b.target ?? "") ||
    (a.key ?? "").localeCompare(b.key ?? "") ||
    a.kind.localeCompare(b.kind);

const duration = (seconds: number): string => {
    const d = Math.floor(seconds / DAY_SECONDS);
    const h = Math.floor((seconds % DAY_SECONDS) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    return d ? `${d}d ${h}h${m ? ` ${m}m` : ""}` : h ? `${h}h ${m}m` : `${m}m`;
};
export { duration as formatDuration };

/** A target as the views name it: the stack's name, and beside it the name the scripts store it under when that differs (render/slug.ts). */
export function targetLabel(target: string, configuredTarget: string | null): string {
    return configuredTarget === null || configuredTarget === target ? target : `${configuredTarget} (stored as ${target})`;
}

/** The label of a problem's target (problems carry the stored name): as its source's or missing source's. */
export function problemTargetLabels(report: Pick<Report, "sources" | "missingSources">): (p: Problem) => string | null {
    const configured = new Map<string, string>();
    for (const s of [...report.sources, ...report.missingSources]) {
        if (s.target !== null && s.configuredTarget !== null) configured.set(sourceId({ host: s.host, type: s.type, target: s.target }), s.configuredTarget);
    }
    return (p) => (p.target === null ? null : targetLabel(p.target, configured.get(sourceId({ host: p.host ?? "", type: p.type ?? "", target: p.target })) ?? null));
}

export const RESTORE_TEST_NOTE =
    "A restore-test record is the host's own statement, signed with the backup key: the host restored its local copy of the newest backup, not the bucket's. Only the latest record of each source is kept, and it reaches the bucket with the source's next sync, so a failure may show up to one backup interval late (the RestoreTestFailed alert fires at once). The PITR restore test (pitr-verify) uploads no record: see its metrics.";

export interface BuildOptions {
    /** The MAC halves of the keys given with --keys; undefined: MACs are not checked. */
    readonly keyring?: MacKeyring;
    readonly now: Date;
}

export function buildReport(policy: ReportPolicy, snapshot: BucketSnapshot, options: BuildOptions): Report {
    const { keyring, now } = options;
    const zone = policy.timeZone;
    const today = dayOf(now, zone);
    const { groups, unrecognized } = groupObjects(snapshot.objects, policy.bucket);
    const objectsByKey = new Map(snapshot.objects.map((o) => [o.key, o]));
    const problems: Problem[] = [];
    const keyUse = new Map<string, { first: string; count: number }>();
    const sources: SourceReport[] = [];

    const expectedFor = (host: string, type: string): ExpectedSource | undefined =>
        policy.hosts.find((h) => h.name === host && h.remoteSync)?.sources.find((s) => s.type === type);
    const restoreTests = new Map<string, string>();
    for (const o of snapshot.objects) {
        const source = parseRestoreTestKey(o.key, policy.bucket);
        if (source) restoreTests.set(sourceId(source), o.key);
    }
    const placedRestoreTests = new Set<string>();

    for (const group of [...groups.values()].sort((a, b) => sourceId(a.source).localeCompare(sourceId(b.source)))) {
        const { host, type, target } = group.source;
        const at = { host, type, target };
        const examined = group.manifests.map((entry) => examineManifest(entry, snapshot.manifestBodies.get(entry.object.key), objectsByKey, keyring, zone));
        const backups = examined.map((e) => e.fact).sort(byCreated);
        for (const e of examined) {
            for (const { kind, message } of e.issues) problems.push({ kind, severity: kind === "key-missing" ? "warning" : "error", ...at, key: e.fact.manifestKey, message });
        }
        for (const b of backups) {
            // A key's age counts only manifests whose dates can be trusted: verified ones when a keyring is given.
            if (b.keyId && b.createdAt && (b.mac === "verified" || b.mac === "not-checked")) {
                const use = keyUse.get(b.keyId) ?? { first: b.createdAt, count: 0 };
                keyUse.set(b.keyId, { first: b.createdAt < use.first ? b.createdAt : use.first, count: use.count + 1 });
            }
        }
        const named = new Set(backups.map((b) => b.artifactKey));
        for (const a of group.artifacts) {
            if (!named.has(a.object.key)) {
                problems.push({ kind: "orphan-artifact", severity: "warning", ...at, key: a.object.key, message: `artifact ${a.object.key} has no manifest beside it: it cannot be verified or restored with the scripts` });
            }
        }
        const expected = expectedFor(host, type);
        const configuredTarget = expected?.targets.find((t) => t.stored === target)?.configured ?? null;
        if (!expected) {
            problems.push({ kind: "unexpected-source", severity: "warning", ...at, key: null, message: `the stack expects no ${type} backups from ${host} in the bucket (host removed, remoteSync off, or role removed): only the lifecycle governs these ${backups.length} backup(s)` });
        }
        const restorable = backups.filter((b) => b.restorable);
        const newestOk = restorable[restorable.length - 1];
        const newestManifest = newestOk ? examined.find((e) => e.fact === newestOk)?.manifest : undefined;
        let newest: SourceReport["newest"] = null;
        let schedule: SourceReport["schedule"] = null;
        if (expected) {
            const durationSeconds = newestOk?.startedAt ? Math.max(0, (Date.parse(newestOk.createdAt!) - Date.parse(newestOk.startedAt)) / 1000) : 0;
            const threshold = rpoThreshold(expected.jobs, durationSeconds, policy.overdueGraceSeconds);
            schedule = {
                jobs: expected.jobs,
                thresholdSeconds: threshold,
                rule: `the shortest longest gap between runs of ${expected.jobs.map((j) => j.name).join(", ")}, plus the timer's start delay, the newest backup's own duration and ${policy.overdueGraceSeconds / 60} minutes' grace (the BackupDelayed rule): ${duration(threshold)}`,
            };
        }
        if (newestOk) {
            const ageSeconds = Math.max(0, Math.round((now.getTime() - Date.parse(newestOk.createdAt!)) / 1000));
            const rpoMet = schedule ? ageSeconds <= schedule.thresholdSeconds! : null;
            newest = { createdAt: newestOk.createdAt!, ageSeconds, rpoMet };
            if (rpoMet === false) problems.push({ kind: "rpo-missed", severity: "error", ...at, key: newestOk.manifestKey, message: `newest restorable backup is ${duration(ageSeconds)} old, past the schedule's ${duration(schedule!.thresholdSeconds!)}` });
        } else if (expected) {
            problems.push({ kind: "rpo-missed", severity: "error", ...at, key: null, message: "no restorable backup in the bucket" });
        }
        const days = timeline(backups, expected, policy, today);
        for (const d of days.filter((x) => x.state === "missed")) {
            problems.push({ kind: "missed-day", severity: "warning", ...at, key: null, message: `${d.date}: scheduled, no backup in the bucket` });
        }
        const classCoverage = coverage(restorable, backups, policy, today);
        for (const c of classCoverage.filter((x) => !x.met)) {
            problems.push({ kind: "retention-short", severity: "warning", ...at, key: null, message: `${c.retentionClass}: restorable backups cover ${c.covered} of the ${c.required} ${c.retentionClass} period(s) the policy keeps by now` });
        }
        const restoreTestKey = restoreTests.get(sourceId(group.source));
        if (restoreTestKey) placedRestoreTests.add(restoreTestKey);
        const dated = backups.filter((b) => b.createdAt !== null);
        const restoreTest = examineRestoreTest({
            source: group.source,
            key: restoreTestKey,
            body: restoreTestKey === undefined ? undefined : snapshot.restoreTestBodies.get(restoreTestKey),
            keyring,
            now,
            manifests: new Set(group.manifests.map((m) => m.parsed.file)),
            restoreTestJobs: expected ? (policy.hosts.find((h) => h.name === host)?.restoreTestJobs ?? []) : [],
            backupJobs: expected?.jobs,
            graceSeconds: policy.overdueGraceSeconds,
            oldestBackup: dated[0]?.createdAt ?? null,
        });
        for (const { kind, severity, message } of restoreTest.issues) problems.push({ kind, severity, ...at, key: restoreTestKey ?? null, message });
        const enc = newestManifest?.encryption as JsonObject | undefined;
        const firstDay = timelineDays(policy);
        sources.push({
            ...at,
            configuredTarget,
            expected: expected !== undefined,
            schedule,
            newest,
            oldestRestorable: restorable[0]?.createdAt ?? null,
            encryption: enc
                ? { cipher: str(enc.cipher) ?? "?", kdf: str(enc.kdf) ?? "?", digest: str(enc.digest) ?? "?", iter: typeof enc.iter === "number" ? enc.iter : null, keyId: str(enc.keyId) ?? "?" }
                : null,
            coverage: classCoverage,
            lastRestoreTest: restoreTest.fact,
            backups,
            olderThanTimeline: backups.filter((b) => b.day !== null && dayNumber(b.day) <= dayNumber(today) - firstDay).length,
            timeline: days,
            undated: backups.flatMap((b, i) => (b.day === null ? [i] : [])),
        });
    }

    const missingSources: MissingSource[] = [];
    for (const h of policy.hosts.filter((x) => x.remoteSync)) {
        for (const s of h.sources) {
            const present = sources.filter((x) => x.host === h.name && x.type === s.type);
            // A listed target is found under the name the scripts store it under, not the name the stack gives it.
            const missing: (ExpectedTarget | null)[] = s.targets.length ? s.targets.filter((t) => !present.some((x) => x.target === t.stored)) : present.length ? [] : [null];
            for (const t of missing) {
                missingSources.push({ host: h.name, type: s.type, target: t?.stored ?? null, configuredTarget: t?.configured ?? null });
                problems.push({
                    kind: "missing-source",
                    severity: "error",
                    host: h.name,
                    type: s.type,
                    target: t?.stored ?? null,
                    key: null,
                    message: `the stack expects ${s.type} backups${t ? ` of ${targetLabel(t.stored, t.configured)}` : ""} from ${h.name} (roles), and the bucket holds none`,
                });
            }
        }
    }

    const pitr = pitrReports(policy.hosts.flatMap((h) => (h.pitr ? [h.pitr] : [])), snapshot.pitrObjects, {
        prefix: policy.bucket.prefix,
        now,
        graceSeconds: policy.overdueGraceSeconds,
        zone,
        timelineDays: timelineDays(policy),
    });
    problems.push(...pitr.problems);
    missingSources.push(...pitr.missing.map((m) => ({ ...m, configuredTarget: null })));

    const keyIds = [...new Set([...policy.encryption.keyIds, ...keyUse.keys()])].sort();
    const keys: KeyFact[] = keyIds.map((keyId) => {
        const use = keyUse.get(keyId);
        const current = keyId === policy.encryption.currentKeyId;
        const ageDays = use ? Math.floor((now.getTime() - Date.parse(use.first)) / 1000 / DAY_SECONDS) : null;
        const status: KeyFact["status"] = !use ? "unused" : !current ? "retired" : ageDays! > policy.encryption.rotationDays ? "rotation-due" : "ok";
        if (status === "rotation-due") {
            problems.push({ kind: "key-rotation-due", severity: "warning", host: null, type: null, target: null, key: null, message: `current key ${keyId} signed backups since ${use!.first} (${ageDays} days), past the ${policy.encryption.rotationDays}-day rotation policy (keyRotationDays): bump encryptionKeyVersion` });
        }
        return { keyId, current, firstUsedAt: use?.first ?? null, ageDays, rotationDays: policy.encryption.rotationDays, status, manifests: use?.count ?? 0, inKeyring: keyring ? keyring.has(keyId) : null };
    });

    const all = sources.flatMap((s) => s.backups);
    return {
        format: REPORT_FORMAT,
        generatedAt: now.toISOString(),
        stack: policy.stack,
        bucket: policy.bucket,
        timeZone: zone,
        timeZoneNote: policy.timeZoneNote,
        macCheck: keyring ? "keyring" : "not-checked",
        retention: policy.retention,
        objectLock: policy.objectLock,
        lifecycleRules: policy.lifecycleRules,
        keys,
        sources,
        pitr: pitr.reports,
        missingSources,
        problems: problems.sort(problemOrder),
        // A record beside no backup of its source (all expired, or a stray upload) belongs to no source shown.
        unrecognizedObjects: [...unrecognized, ...pitr.unrecognized, ...[...restoreTests.values()].filter((k) => !placedRestoreTests.has(k))].sort(),
        totals: { objects: snapshot.objects.length, manifests: all.length, restorable: all.filter((b) => b.restorable).length, broken: all.filter((b) => !b.restorable).length },
        cannotKnow: [...cannotKnow(keyring !== undefined), ...(pitr.reports.length || pitr.missing.length ? [PITR_NOTE, WAL_SEGMENT_NOTE] : [])],
    };
}

function cannotKnow(keysGiven: boolean): string[] {
    return [
        RESTORE_TEST_NOTE,
        "Artifacts are listed, not downloaded: the report checks that each artifact a manifest names exists beside it with the size the manifest signs, not its sha256 or that it decrypts. backup-restore.sh s3://... verifies one fully.",
        keysGiven
            ? "A key's age is the age of the oldest verified manifest that names it: the key may be older than its first backup, and manifests the lifecycle expired no longer count."
            : "MACs were not checked (no --keys): a tampered manifest looks like a good one here. A key's age is the age of the oldest manifest that names it: the key may be older, and manifests the lifecycle expired no longer count.",
        "Backups that never reached the bucket (hosts with remoteSync off, uploads still pending after a failed sync) are not seen; a day without a backup may be a job that did not run, a run that failed, or a sync that has not caught up, and the bucket does not say which.",
        "Object Lock and lifecycle are shown as the stack configures them; the report does not read the bucket's own configuration (pulumi refresh and the drift workflow compare that).",
    ];
}
