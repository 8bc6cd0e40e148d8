/**
 * The pgBackRest repositories (postgresql.pitr) as the bucket listing shows
 * them, without decrypting anything: object keys and LastModified are
 * plaintext, the files themselves (repo1-cipher-type aes-256-cbc) are not.
 * A pure function of the listing, the stack's expectations and the clock.
 *
 * Layout under repo1-path (`<prefix>/pgbackrest/<host>/<keyId>`):
 *   backup/<stanza>/backup.info[.copy]
 *   backup/<stanza>/<label>/backup.manifest[.copy]     (label YYYYMMDD-HHMMSSF, <full>_YYYYMMDD-HHMMSSD or ...I)
 *   backup/<stanza>/backup.history/<year>/<label>.manifest.<ext>   (history: kept past expiry, not a backup)
 *   archive/<stanza>/archive.info[.copy]
 *   archive/<stanza>/<pgVersion>-<id>/<TTTTTTTT>.history
 *   archive/<stanza>/<pgVersion>-<id>/<16 hex>/<24 hex WAL name>[.partial]-<40 hex sha1>[.<compression>]
 *   archive/<stanza>/<pgVersion>-<id>/<16 hex>/<24 hex>.<8 hex>.backup[-<sha1>][.<compression>]
 */
import { PITR_REPOSITORY_FOLDER } from "../../config/names";
import { dayFromNumber, dayNumber, dayOf, runsOnDay } from "./calendar";
import type { BucketObject, ExpectedPitr, PitrBackupFact, PitrReport, Problem, TimelineDay, WalTimelineFact } from "./model";

/**
 * The WAL segment size the continuity check assumes: PostgreSQL's default.
 * initdb --wal-segsize (PostgreSQL 11 and later) can change it, and only the
 * encrypted archive.info and backups record the cluster's own size.
 */
export const WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

export const WAL_SEGMENT_NOTE =
    "WAL continuity assumes 16 MiB segments, PostgreSQL's default (the low 8 hex digits of a segment name run 00000000 to 000000FF before the middle 8 increment), as the bucket's plaintext does not record the size. When two or more logs the archive has moved past (each timeline's last excluded) all end at the same lower segment number (0000003F: 64 MiB), the larger initdb --wal-segsize is inferred and named on the page; the same tail missing from every such log would look alike. Names past 000000FF (smaller segments) are named, and their gaps are not reliable.";

export const PITR_NOTE =
    "pgBackRest repositories are judged from object names and upload times only: their files are encrypted (aes-256-cbc), so the report does not check that a backup or WAL segment is complete or decrypts (pgbackrest verify, the pitr-verify job, does), and backup.info may list backups differently than the listing. A backup set counts when its backup.manifest exists (pgBackRest writes it last); its completion time is that object's upload time, as the label is the host's local time. The newest archived WAL segment's age says little within a day: an idle server archives nothing new (archive_timeout switches segments only after new WAL, and the host's WalArchiveLag alert watches the segments waiting), so the report warns only once it is older than the shortest backup schedule's longest gap plus the timer's start delay and the grace, as every full or differential backup archives its stop segment: a stopped archiver shows up here that late, and the host's WalArchiveLag and WalArchiveFailing alerts are the prompt signals.";

const LABEL = /^(\d{8}-\d{6})F(?:_(\d{8}-\d{6})([DI]))?$/;
const ARCHIVE_ID = /^\d+-\d+$/;
const WAL_FILE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?-[0-9a-f]{40}(?:\.[a-z0-9]+)?$/;
const BACKUP_HISTORY_FILE = /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup(?:-[0-9a-f]{40})?(?:\.[a-z0-9]+)?$/;
const TIMELINE_HISTORY_FILE = /^[0-9A-F]{8}\.history(?:-[0-9a-f]{40})?(?:\.[a-z0-9]+)?$/;

export type PitrKey =
    | { readonly kind: "backup-info"; readonly stanza: string }
    | { readonly kind: "manifest"; readonly stanza: string; readonly label: string; readonly copy: boolean }
    | { readonly kind: "backup-file"; readonly stanza: string }
    | { readonly kind: "archive-info"; readonly stanza: string }
    | { readonly kind: "wal"; readonly stanza: string; readonly archiveId: string; readonly timeline: string; readonly log: number; readonly seg: number; readonly name: string; readonly partial: boolean }
    | { readonly kind: "wal-other"; readonly stanza: string; readonly archiveId: string }
    | { readonly kind: "unknown" };

export interface ParsedPitrKey {
    readonly host: string;
    readonly keyId: string;
    /** The repository's key prefix, ending in `/`. */
    readonly repository: string;
    readonly entry: PitrKey;
}

export const pitrRoot = (prefix: string): string => {
    const p = prefix.replace(/\/+$/, "");
    return `${p ? `${p}/` : ""}${PITR_REPOSITORY_FOLDER}/`;
};

/** Where a key sits in a repository under `<prefix>/pgbackrest/`; null outside that folder. */
export function parsePitrKey(key: string, prefix: string): ParsedPitrKey | null {
    const root = pitrRoot(prefix);
    if (!key.startsWith(root)) return null;
    const parts = key.slice(root.length).split("/");
    if (parts.length < 3 || !parts[0] || !parts[1]) return null;
    const [host, keyId, area, stanza, ...rest] = parts;
    const repository = `${root}${host}/${keyId}/`;
    const at = (entry: PitrKey): ParsedPitrKey => ({ host, keyId, repository, entry });
    if (!stanza || (area !== "backup" && area !== "archive")) return at({ kind: "unknown" });
    if (area === "backup") {
        if (rest.length === 1 && /^backup\.info(\.copy)?$/.test(rest[0])) return at({ kind: "backup-info", stanza });
        if (rest.length === 2 && LABEL.test(rest[0]) && /^backup\.manifest(\.copy)?$/.test(rest[1])) return at({ kind: "manifest", stanza, label: rest[0], copy: rest[1].endsWith(".copy") });
        // The backup's own files and backup.history: many objects, none a fact of its own.
        if (rest.length >= 2 && (LABEL.test(rest[0]) || rest[0] === "backup.history")) return at({ kind: "backup-file", stanza });
        return at({ kind: "unknown" });
    }
    if (rest.length === 1 && /^archive\.info(\.copy)?$/.test(rest[0])) return at({ kind: "archive-info", stanza });
    const [archiveId, dir, file] = rest;
    if (!archiveId || !ARCHIVE_ID.test(archiveId)) return at({ kind: "unknown" });
    if (rest.length === 2 && TIMELINE_HISTORY_FILE.test(dir)) return at({ kind: "wal-other", stanza, archiveId });
    if (rest.length !== 3 || !/^[0-9A-F]{16}$/.test(dir)) return at({ kind: "unknown" });
    const wal = WAL_FILE.exec(file);
    if (wal && `${wal[1]}${wal[2]}` === dir) {
        return at({ kind: "wal", stanza, archiveId, timeline: wal[1], log: parseInt(wal[2], 16), seg: parseInt(wal[3], 16), name: `${wal[1]}${wal[2]}${wal[3]}`, partial: wal[4] !== undefined });
    }
    if (BACKUP_HISTORY_FILE.test(file) && file.startsWith(dir)) return at({ kind: "wal-other", stanza, archiveId });
    return at({ kind: "unknown" });
}

/** Whether the listing keeps a key: everything but a backup's own files (thousands per backup, nothing the report states). */
export const keepPitrListing = (key: string, prefix: string): boolean => parsePitrKey(key, prefix)?.entry.kind !== "backup-file";

const segmentsPerLog = (segmentBytes: number): number => 0x1_0000_0000 / segmentBytes;
const hex8 = (n: number): string => n.toString(16).toUpperCase().padStart(8, "0");
/** The WAL file name of segment number `n` of a timeline. */
export const walName = (timeline: string, n: number, segmentBytes = WAL_SEGMENT_BYTES): string =>
    `${timeline}${hex8(Math.floor(n / segmentsPerLog(segmentBytes)))}${hex8(n % segmentsPerLog(segmentBytes))}`;

/** pgBackRest's label time is the host's local time without a zone: shown as written, never compared. */
const labelTime = (t: string): string => `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)} ${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}`;

/** Per (archive id, timeline): the archived segment range and every gap in it. */
export function walTimelines(segments: readonly { archiveId: string; timeline: string; log: number; seg: number }[], segmentBytes = WAL_SEGMENT_BYTES): WalTimelineFact[] {
    const perLog = segmentsPerLog(segmentBytes);
    const groups = new Map<string, { archiveId: string; timeline: string; numbers: Set<number>; beyond: number }>();
    for (const s of segments) {
        const id = `${s.archiveId}\u0000${s.timeline}`;
        let g = groups.get(id);
        if (!g) groups.set(id, (g = { archiveId: s.archiveId, timeline: s.timeline, numbers: new Set(), beyond: 0 }));
        // A segment number past the assumed size's range: the cluster's segments are smaller than assumed.
        if (s.seg >= perLog) g.beyond++;
        g.numbers.add(s.log * perLog + s.seg);
    }
    return [...groups.values()]
        .sort((a, b) => a.archiveId.localeCompare(b.archiveId, "en", { numeric: true }) || a.timeline.localeCompare(b.timeline))
        .map((g) => {
            const numbers = [...g.numbers].sort((a, b) => a - b);
            const gaps: WalTimelineFact["gaps"][number][] = [];
            for (let i = 1; i < numbers.length; i++) {
                if (numbers[i] - numbers[i - 1] > 1) {
                    gaps.push({ first: walName(g.timeline, numbers[i - 1] + 1, segmentBytes), last: walName(g.timeline, numbers[i] - 1, segmentBytes), missing: numbers[i] - numbers[i - 1] - 1 });
                }
            }
            return {
                archiveId: g.archiveId,
                timeline: g.timeline,
                first: walName(g.timeline, numbers[0], segmentBytes),
                last: walName(g.timeline, numbers[numbers.length - 1], segmentBytes),
                segments: numbers.length,
                gaps,
                segmentNumbersBeyondAssumedSize: g.beyond,
            };
        });
}

/**
 * The segment size a larger initdb --wal-segsize gives, read from the names: a
 * log (the middle 8 hex digits) holds 2^32 bytes of WAL, so with 64 MiB
 * segments each log ends at 0000003F. Only logs the archive has moved past
 * (not a timeline's last) show their end, and at least two must, all at the same
 * number, one below a power of two from 4 (1 GiB) to 128 (32 MiB), with no
 * name past it; else null, and the default is assumed.
 */
export function inferSegmentBytes(segments: readonly { archiveId: string; timeline: string; log: number; seg: number }[]): number | null {
    const highest = new Map<string, Map<number, number>>();
    let top = 0;
    for (const s of segments) {
        const id = `${s.archiveId}\u0000${s.timeline}`;
        const logs = highest.get(id) ?? new Map<number, number>();
        logs.set(s.log, Math.max(logs.get(s.log) ?? 0, s.seg));
        highest.set(id, logs);
        top = Math.max(top, s.seg);
    }
    const ends = new Set<number>();
    let finished = 0;
    for (const logs of highest.values()) {
        const last = Math.max(...logs.keys());
        for (const [log, seg] of logs) if (log !== last) (ends.add(seg), finished++);
    }
    // One finished log ending early could as well be a real gap at its tail: that is reported, never explained away.
    if (ends.size !== 1 || finished < 2) return null;
    const [end] = ends;
    const perLog = end + 1;
    if (perLog < 4 || perLog > 128 || (perLog & end) !== 0 || top > end) return null;
    return 0x1_0000_0000 / perLog;
}

interface Repo {
    host: string;
    keyId: string;
    repository: string;
    stanzas: Map<string, BucketObject[]>;
}

/**
 * The newest archived WAL's allowed age. WalArchiveLag (the host's alert) measures
 * the oldest segment waiting to be archived, 0 on an idle server, and
 * archive_timeout switches segments only after new WAL: the bucket's newest
 * segment may be days old on a healthy idle server. Each backup, full or
 * differential, switches the segment and archives its stop segment, so the
 * newest segment is at most the shortest backup schedule's longest gap plus
 * its start delay old, and the grace (BackupDelayed's, as the other checks
 * use) covers the backup's own run, which the listing does not time.
 */
export function walStaleThreshold(jobs: readonly ExpectedPitr["backupJobs"][number][], graceSeconds: number): { seconds: number; rule: string } | null {
    if (!jobs.length) return null;
    const shortest = [...jobs].sort((a, b) => a.maxIntervalSeconds + a.jitterSeconds - (b.maxIntervalSeconds + b.jitterSeconds))[0];
    const seconds = shortest.maxIntervalSeconds + shortest.jitterSeconds + graceSeconds;
    return {
        seconds,
        rule: `each backup archives its stop segment: the longest gap between runs of ${shortest.name} (${shortest.description}), the shortest of ${jobs.map((j) => j.name).join(", ")}, plus the timer's start delay and ${graceSeconds / 60} minutes' grace: ${duration(seconds)}`,
    };
}

/** Days of the window with the backup sets completed on each; a scheduled day without one after the first is missed. */
export function pitrTimeline(backups: readonly PitrBackupFact[], jobs: readonly ExpectedPitr["backupJobs"][number][], o: { readonly today: string; readonly days: number; readonly zone: string }): TimelineDay[] {
    const dayOfBackup = backups.map((b) => dayOf(new Date(b.completedAt), o.zone));
    const todayN = dayNumber(o.today);
    const firstN = Math.min(...dayOfBackup.map(dayNumber));
    const out: TimelineDay[] = [];
    for (let n = todayN - o.days + 1; n <= todayN; n++) {
        const date = dayFromNumber(n);
        const indexes = dayOfBackup.flatMap((d, i) => (d === date ? [i] : []));
        const scheduled = jobs.some((j) => runsOnDay(j.onCalendar, date));
        const state: TimelineDay["state"] = indexes.length ? "ok" : n === todayN ? "today" : !scheduled ? "not-scheduled" : n < firstN ? "before-first" : "missed";
        out.push({ date, scheduled, state, backups: indexes });
    }
    return out;
}

const duration = (seconds: number): string => {
    const d = Math.floor(seconds / 86_400);
    const h = Math.floor((seconds % 86_400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    return d ? `${d}d ${h}h${m ? ` ${m}m` : ""}` : h ? `${h}h ${m}m` : `${m}m`;
};

/**
 * Every repository and stanza the listing holds, measured against the PITR
 * hosts the stack expects to archive into the bucket; a stack repository
 * with nothing in the bucket is a missing source.
 */
export function pitrReports(
    expected: readonly ExpectedPitr[],
    objects: readonly BucketObject[],
    options: { readonly prefix: string; readonly now: Date; readonly graceSeconds: number; readonly zone: string; readonly timelineDays: number; readonly segmentBytes?: number },
): { reports: PitrReport[]; problems: Problem[]; missing: { host: string; type: "pitr"; target: string }[]; unrecognized: string[] } {
    const repos = new Map<string, Repo>();
    const unrecognized: string[] = [];
    for (const o of objects) {
        const parsed = parsePitrKey(o.key, options.prefix);
        if (!parsed || parsed.entry.kind === "unknown") {
            unrecognized.push(o.key);
            continue;
        }
        if (parsed.entry.kind === "backup-file") continue;
        let repo = repos.get(parsed.repository);
        if (!repo) repos.set(parsed.repository, (repo = { host: parsed.host, keyId: parsed.keyId, repository: parsed.repository, stanzas: new Map() }));
        const list = repo.stanzas.get(parsed.entry.stanza) ?? [];
        list.push(o);
        repo.stanzas.set(parsed.entry.stanza, list);
    }

    const reports: PitrReport[] = [];
    const problems: Problem[] = [];
    const now = options.now.getTime();
    for (const repo of [...repos.values()].sort((a, b) => a.repository.localeCompare(b.repository))) {
        for (const [stanza, list] of [...repo.stanzas.entries()].sort(([a], [b]) => a.localeCompare(b))) {
            // Only the current key's repository is written to: an older key's keeps its backups, and ages with no schedule.
            const exp = expected.find((e) => e.repository === repo.repository && e.stanza === stanza);
            const olderKey = !exp && expected.some((e) => e.host === repo.host && e.stanza === stanza);
            const at = { host: repo.host, type: "pitr" as const, target: stanza };
            const mine: Problem[] = [];
            const add = (p: Omit<Problem, "host" | "type" | "target" | "repository">) => mine.push({ ...at, repository: repo.repository, ...p });
            const parsedList = list.map((o) => ({ o, e: parsePitrKey(o.key, options.prefix)!.entry }));

            // pgBackRest reads each info file or, failing that, its .copy: without either the stanza cannot be restored, or archived into.
            const backupInfo = parsedList.some(({ e }) => e.kind === "backup-info");
            const archiveInfo = parsedList.some(({ e }) => e.kind === "archive-info");
            if (!backupInfo) {
                add({ kind: "pitr-info-missing", severity: "error", key: `${repo.repository}backup/${stanza}/backup.info`, message: "no backup.info (nor backup.info.copy) in the repository: pgbackrest restore finds its backup sets through it, so none can be restored with pgBackRest as the bucket stands" });
            }
            if (!archiveInfo) {
                add({ kind: "pitr-info-missing", severity: "error", key: `${repo.repository}archive/${stanza}/archive.info`, message: "no archive.info (nor archive.info.copy) in the repository: archive-push cannot archive WAL into the stanza, and archive-get cannot fetch the archived WAL a restore replays" });
            }

            // Backup sets: a label counts once its backup.manifest exists (pgBackRest writes it at the end).
            const byLabel = new Map<string, { manifest?: BucketObject; copy?: BucketObject }>();
            for (const { o, e } of parsedList) {
                if (e.kind !== "manifest") continue;
                const entry = byLabel.get(e.label) ?? {};
                if (e.copy) entry.copy = o;
                else entry.manifest = o;
                byLabel.set(e.label, entry);
            }
            const backups: PitrBackupFact[] = [];
            const incomplete: string[] = [];
            for (const [label, entry] of byLabel) {
                const m = LABEL.exec(label)!;
                if (!entry.manifest) {
                    incomplete.push(label);
                    continue;
                }
                backups.push({
                    label,
                    type: m[3] === "D" ? "diff" : m[3] === "I" ? "incr" : "full",
                    completedAt: entry.manifest.lastModified,
                    labelTime: labelTime(m[2] ?? m[1]),
                    full: m[2] ? `${m[1]}F` : null,
                    manifestKey: entry.manifest.key,
                    manifestCopy: entry.copy !== undefined,
                });
            }
            backups.sort((a, b) => a.completedAt.localeCompare(b.completedAt) || a.label.localeCompare(b.label));
            incomplete.sort();
            const fulls = backups.filter((b) => b.type === "full");
            for (const b of backups.filter((x) => x.full !== null && !fulls.some((f) => f.label === x.full))) {
                add({ kind: "pitr-backup-orphan", severity: "error", key: b.manifestKey, message: `${b.type} backup ${b.label} depends on full backup ${b.full}, which the repository does not hold: it cannot be restored` });
            }

            // Retention: repo1-retention-full full backups, as many as the repository's age allows so far.
            let retention: PitrReport["retention"] = null;
            if (exp) {
                const oldest = fulls[0] ? Date.parse(fulls[0].completedAt) : now;
                const interval = exp.fullJob.maxIntervalSeconds + exp.fullJob.jitterSeconds + options.graceSeconds;
                const required = fulls.length ? Math.min(exp.retentionFull, 1 + Math.floor(Math.max(0, now - oldest) / 1000 / interval)) : 1;
                retention = { fullBackups: fulls.length, retentionFull: exp.retentionFull, required, met: fulls.length >= required && fulls.length <= exp.retentionFull };
                if (fulls.length === 0) add({ kind: "rpo-missed", severity: "error", key: null, message: "no completed pgBackRest full backup in the repository: WAL alone restores nothing" });
                else if (fulls.length < required) {
                    add({ kind: "retention-short", severity: "warning", key: null, message: `${fulls.length} full backup(s) in the repository; the oldest completed ${fulls[0].completedAt}, so with ${exp.fullJob.name} (${exp.fullJob.description}) ${required} of the ${exp.retentionFull} repo1-retention-full (postgresql.pitr.retentionFull) are due by now` });
                }
                if (fulls.length > exp.retentionFull) {
                    add({ kind: "retention-exceeded", severity: "warning", key: null, message: `${fulls.length} full backups in the repository, more than repo1-retention-full ${exp.retentionFull} (postgresql.pitr.retentionFull): pgbackrest expire has not removed the oldest` });
                }
            }

            // WAL: continuity per timeline, and the newest segment's age.
            const wal = parsedList.flatMap(({ o, e }) => (e.kind === "wal" ? [{ o, e }] : []));
            // A 64 MiB cluster would otherwise show segments 40 to FF of every log as gaps.
            const inferred = options.segmentBytes === undefined ? inferSegmentBytes(wal.map((w) => w.e)) : null;
            const segmentBytes = options.segmentBytes ?? inferred ?? WAL_SEGMENT_BYTES;
            const timelines = walTimelines(wal.map((w) => w.e), segmentBytes);
            for (const t of timelines) {
                for (const g of t.gaps) {
                    const range = g.missing === 1 ? g.first : `${g.first} to ${g.last} (${g.missing} segments)`;
                    add({
                        kind: "wal-gap",
                        severity: "error",
                        key: `${repo.repository}archive/${stanza}/${t.archiveId}/${g.first.slice(0, 16)}/${g.first}`,
                        message: `WAL chain broken in timeline ${t.timeline} (${t.archiveId}): ${range} missing between ${t.first} and ${t.last}: no point-in-time recovery from an earlier backup across it`,
                    });
                }
                if (t.segmentNumbersBeyondAssumedSize) {
                    add({ kind: "wal-gap", severity: "warning", key: null, message: `timeline ${t.timeline} (${t.archiveId}) has ${t.segmentNumbersBeyondAssumedSize} segment name(s) past 000000FF: the cluster's WAL segments are smaller than the 16 MiB the continuity check assumes, so its gaps are not reliable` });
                }
            }
            const newestObj = wal.reduce<(typeof wal)[number] | undefined>((best, w) => (!best || w.o.lastModified > best.o.lastModified || (w.o.lastModified === best.o.lastModified && w.e.name > best.e.name) ? w : best), undefined);
            let newestWal: PitrReport["newestWal"] = null;
            if (newestObj) {
                const ageSeconds = Math.max(0, Math.round((now - Date.parse(newestObj.o.lastModified)) / 1000));
                const stale = exp ? walStaleThreshold(exp.backupJobs, options.graceSeconds) : null;
                const threshold = stale?.seconds ?? null;
                newestWal = { name: newestObj.e.name, archiveId: newestObj.e.archiveId, key: newestObj.o.key, archivedAt: newestObj.o.lastModified, ageSeconds, thresholdSeconds: threshold, rule: stale?.rule ?? null, lagMet: threshold === null ? null : ageSeconds <= threshold };
                if (stale && ageSeconds > stale.seconds) {
                    add({ kind: "wal-archive-lag", severity: "warning", key: newestObj.o.key, message: `newest archived WAL segment ${newestObj.e.name} was uploaded ${duration(ageSeconds)} ago, longer than ${duration(stale.seconds)} (${stale.rule}): every pgBackRest backup archives its stop segment, so even an idle server's archiving, or its backups, have stopped since` });
                }
            } else if (exp) {
                add({ kind: "wal-archive-lag", severity: "error", key: null, message: "no archived WAL segment in the repository: no point-in-time recovery is possible" });
            }
            const days = pitrTimeline(backups, exp?.backupJobs ?? [], { today: dayOf(options.now, options.zone), days: options.timelineDays, zone: options.zone });
            for (const d of days.filter((x) => x.state === "missed")) add({ kind: "missed-day", severity: "warning", key: null, message: `${d.date}: a pgBackRest backup is scheduled (${exp!.backupJobs.map((j) => j.name).join(", ")}), and none completed in the repository` });
            if (!exp && !olderKey) {
                add({ kind: "unexpected-source", severity: "warning", key: null, message: `the stack expects no pgBackRest repository for stanza ${stanza} of ${repo.host} at ${repo.repository} (host removed, postgresql.pitr off, remoteSync off): only the lifecycle governs it` });
            }
            problems.push(...mine);
            reports.push({
                ...at,
                keyId: repo.keyId,
                repository: repo.repository,
                expected: exp !== undefined,
                olderKey,
                backupInfo,
                archiveInfo,
                backups,
                incomplete,
                retention,
                oldestRestorable: fulls[0]?.completedAt ?? null,
                newestWal,
                walSegments: wal.length,
                timelines,
                walSegmentBytes: segmentBytes,
                walSegmentBytesInferred: inferred !== null,
                timeline: days,
                problems: mine.map((p) => p.message),
            });
        }
    }

    const missing: { host: string; type: "pitr"; target: string }[] = [];
    for (const e of expected) {
        if (reports.some((r) => r.repository === e.repository && r.target === e.stanza)) continue;
        missing.push({ host: e.host, type: "pitr", target: e.stanza });
        const older = reports.filter((r) => r.host === e.host && r.target === e.stanza);
        problems.push({
            kind: "missing-source",
            severity: "error",
            host: e.host,
            type: "pitr",
            target: e.stanza,
            key: null,
            repository: e.repository,
            message: `the stack expects pgBackRest backups and WAL of stanza ${e.stanza} from ${e.host} (postgresql.pitr) under ${e.repository}, and the bucket holds none${older.length ? ` (only repositories of older keys: ${older.map((r) => r.keyId).join(", ")})` : ""}`,
        });
    }
    return { reports, problems: problems, missing, unrecognized: unrecognized.sort() };
}
