/**
 * The compliance report's PITR part: pgBackRest repositories judged from a
 * synthetic bucket listing (keys and upload times only, as the real
 * encrypted repository shows them): backup sets, retention against
 * repo1-retention-full, WAL continuity per timeline, the newest segment's
 * age against the backup schedule, and a repository the stack expects
 * and the bucket lacks.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { buildReport } from "../../scripts/report/facts";
import { esc, renderHtml } from "../../scripts/report/html";
import { renderMarkdown } from "../../scripts/report/markdown";
import type { BucketObject, ReportPolicy } from "../../scripts/report/model";
import { keepPitrListing, parsePitrKey, walName, walTimelines } from "../../scripts/report/pitr";
import { policyFromStack } from "../../scripts/report/policy";
import { load, reportPolicy } from "./helpers";

const NOW = new Date("2026-03-20T12:00:00Z");
const STANZA = "db-1-15-main";
const SHA = "0123456789abcdef0123456789abcdef01234567";

function stackPolicy(pitr: Record<string, unknown> = {}, raw: Record<string, unknown> = {}): ReportPolicy {
    return reportPolicy([{ name: "db-1", address: "10.0.0.1", roles: ["postgresql"], postgresql: { databases: ["app"], pitr: { enabled: true, ...pitr } } }], raw);
}

const repoOf = (policy: ReportPolicy): string => policy.hosts[0].pitr!.repository;
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.000Z$/, ".000Z");
const at = (offsetSeconds: number): string => iso(NOW.getTime() - offsetSeconds * 1000);

interface Repo {
    objects: BucketObject[];
}

/** A backup set as pgBackRest leaves it: backup.manifest (written last) and its .copy, and a few of its own files. */
function addBackupSet(r: Repo, repo: string, label: string, completed: string, o: { copyOnly?: boolean } = {}): void {
    const dir = `${repo}backup/${STANZA}/${label}/`;
    r.objects.push({ key: `${dir}backup.manifest.copy`, size: 9000, lastModified: completed });
    if (!o.copyOnly) r.objects.push({ key: `${dir}backup.manifest`, size: 9000, lastModified: completed });
    r.objects.push({ key: `${dir}pg_data/global/pg_control.zst`, size: 300, lastModified: completed });
}

/** backup.info and archive.info with their copies, as stanza-create writes them. */
function addInfo(r: Repo, repo: string): void {
    for (const key of ["backup/STANZA/backup.info", "backup/STANZA/backup.info.copy", "archive/STANZA/archive.info", "archive/STANZA/archive.info.copy"]) {
        r.objects.push({ key: `${repo}${key.replace("STANZA", STANZA)}`, size: 300, lastModified: at(30 * 86_400) });
    }
}

/** An archived segment as archive-push names it (compress-type zst). */
function addWal(r: Repo, repo: string, name: string, uploaded: string, o: { archiveId?: string; partial?: boolean } = {}): string {
    const key = `${repo}archive/${STANZA}/${o.archiveId ?? "15-1"}/${name.slice(0, 16)}/${name}${o.partial ? ".partial" : ""}-${SHA}.zst`;
    r.objects.push({ key, size: 1_000_000, lastModified: uploaded });
    return key;
}

/**
 * A healthy repository: weekly fulls (Sundays 2026-03-08 and 03-15), a
 * differential every other day, backup.info and archive.info, and WAL of
 * timeline 1 from 00000000000000F0 across the 000000FF -> next log boundary
 * to 0000000100000010, the newest uploaded a minute ago.
 */
function healthyRepo(policy = stackPolicy()): Repo {
    const repo = repoOf(policy);
    const r: Repo = { objects: [] };
    r.objects.push({ key: `${repo}backup/${STANZA}/backup.info`, size: 900, lastModified: at(3600) }, { key: `${repo}backup/${STANZA}/backup.info.copy`, size: 900, lastModified: at(3600) });
    r.objects.push({ key: `${repo}archive/${STANZA}/archive.info`, size: 300, lastModified: at(20 * 86_400) });
    for (const day of ["08", "15"]) addBackupSet(r, repo, `202603${day}-010000F`, `2026-03-${day}T01:20:00.000Z`);
    for (const [full, days] of [["20260308-010000F", ["09", "10", "11", "12", "13", "14"]], ["20260315-010000F", ["16", "17", "18", "19", "20"]]] as const) {
        for (const day of days) addBackupSet(r, repo, `${full}_202603${day}-010000D`, `2026-03-${day}T01:05:00.000Z`);
    }
    const names = [...Array.from({ length: 16 }, (_, i) => walName("00000001", 0xf0 + i)), ...Array.from({ length: 17 }, (_, i) => walName("00000001", 0x100 + i))];
    names.forEach((n, i) => addWal(r, repo, n, at(60 + (names.length - 1 - i) * 600)));
    r.objects.push({ key: `${repo}archive/${STANZA}/15-1/0000000100000000/0000000100000000000000F2.00000028.backup`, size: 300, lastModified: at(20_000) });
    return r;
}

const build = (r: Repo, policy = stackPolicy(), now = NOW) => buildReport(policy, { objects: [], manifestBodies: new Map(), restoreTestBodies: new Map(), pitrObjects: r.objects.filter((o) => keepPitrListing(o.key, policy.bucket.prefix)) }, { now });
const pitrProblems = (report: ReturnType<typeof build>) => report.problems.filter((p) => p.type === "pitr");
const pitrMissing = (report: ReturnType<typeof build>) => report.missingSources.filter((m) => m.type === "pitr");

describe("report: PITR repositories from the listing", () => {
    it("a healthy repository has no problems: backup sets by manifest upload time, retention met, one WAL run across the 000000FF -> next log boundary", () => {
        const policy = stackPolicy();
        expect(policy.hosts[0].pitr).toMatchObject({ stanza: STANZA, repository: "hx/pgbackrest/db-1/unit-v2/", retentionFull: 2 });
        const report = build(healthyRepo(policy), policy);
        expect(pitrProblems(report)).toEqual([]);
        // The dumps of the postgresql role are another source, missing from this bucket.
        expect(report.problems.map((p) => [p.kind, p.type])).toEqual([["missing-source", "postgresql"]]);
        expect(report.pitr).toHaveLength(1);
        const p = report.pitr[0];
        expect(p).toMatchObject({ host: "db-1", type: "pitr", target: STANZA, keyId: "unit-v2", expected: true, backupInfo: true, archiveInfo: true, incomplete: [] });
        expect(p.backups).toHaveLength(13);
        expect(p.backups[0]).toEqual({ label: "20260308-010000F", type: "full", completedAt: "2026-03-08T01:20:00.000Z", labelTime: "2026-03-08 01:00:00", full: null, manifestKey: `hx/pgbackrest/db-1/unit-v2/backup/${STANZA}/20260308-010000F/backup.manifest`, manifestCopy: true });
        expect(p.backups[1]).toMatchObject({ label: "20260308-010000F_20260309-010000D", type: "diff", full: "20260308-010000F" });
        expect(p.retention).toEqual({ fullBackups: 2, retentionFull: 2, required: 2, met: true });
        expect(p.oldestRestorable).toBe("2026-03-08T01:20:00.000Z");
        expect(p.timelines).toEqual([{ archiveId: "15-1", timeline: "00000001", first: "0000000100000000000000F0", last: "000000010000000100000010", segments: 33, gaps: [], segmentNumbersBeyondAssumedSize: 0 }]);
        expect(p.newestWal).toMatchObject({ name: "000000010000000100000010", archiveId: "15-1", ageSeconds: 60, thresholdSeconds: 2 * 86_400 + 300 + 1800, lagMet: true });
        // A day per timeline column, with the day's backup set on it; days before the first full expect nothing.
        expect(p.timeline.flatMap((d) => d.backups)).toHaveLength(13);
        expect(p.timeline.filter((d) => d.state === "missed")).toEqual([]);
        expect(p.timeline[0].state).toBe("before-first");
        expect(report.cannotKnow.join(" ")).toMatch(/16 MiB/);
        expect(report.cannotKnow.join(" ")).toMatch(/pitr-verify\) uploads no record/);
    });

    it("names a gap in a timeline's segments as a broken WAL chain, with the missing segment's name", () => {
        const policy = stackPolicy();
        const r = healthyRepo(policy);
        const victim = r.objects.find((o) => o.key.includes("/000000010000000100000005-"))!;
        r.objects.splice(r.objects.indexOf(victim), 1);
        // A run of three missing just before the log boundary.
        r.objects = r.objects.filter((o) => !/\/0000000100000000000000F[9AB]-/.test(o.key));
        const report = build(r, policy);
        expect(pitrProblems(report).map((p) => [p.kind, p.severity, p.target, p.key])).toEqual([
            ["wal-gap", "error", STANZA, "hx/pgbackrest/db-1/unit-v2/archive/db-1-15-main/15-1/0000000100000000/0000000100000000000000F9"],
            ["wal-gap", "error", STANZA, "hx/pgbackrest/db-1/unit-v2/archive/db-1-15-main/15-1/0000000100000001/000000010000000100000005"],
        ]);
        const [run, one] = pitrProblems(report);
        expect(run.message).toMatch(/timeline 00000001 \(15-1\): 0000000100000000000000F9 to 0000000100000000000000FB \(3 segments\) missing/);
        expect(one.message).toMatch(/: 000000010000000100000005 missing between 0000000100000000000000F0 and 000000010000000100000010/);
        expect(report.pitr[0].timelines[0].gaps).toEqual([
            { first: "0000000100000000000000F9", last: "0000000100000000000000FB", missing: 3 },
            { first: "000000010000000100000005", last: "000000010000000100000005", missing: 1 },
        ]);
        expect(renderMarkdown(report)).toMatch(/- \*\*error\*\* wal-gap db-1\/pitr\/db-1-15-main: WAL chain broken/);
    });

    it("a promotion starts a new timeline: each timeline is continuous on its own, the old one ending in a .partial segment", () => {
        const policy = stackPolicy();
        const r = healthyRepo(policy);
        const repo = repoOf(policy);
        // Timeline 1 ended within 000000010000000100000010; timeline 2 continues from that segment number.
        addWal(r, repo, "000000010000000100000011", at(50), { partial: true });
        r.objects.push({ key: `${repo}archive/${STANZA}/15-1/00000002.history`, size: 42, lastModified: at(45) });
        for (let n = 0x111; n <= 0x114; n++) addWal(r, repo, walName("00000002", n), at(40 - (n - 0x111)));
        const report = build(r, policy);
        expect(pitrProblems(report)).toEqual([]);
        expect(report.pitr[0].timelines.map((t) => [t.timeline, t.first, t.last, t.segments, t.gaps.length])).toEqual([
            ["00000001", "0000000100000000000000F0", "000000010000000100000011", 34, 0],
            ["00000002", "000000020000000100000011", "000000020000000100000014", 4, 0],
        ]);
        expect(report.pitr[0].newestWal?.name).toBe("000000020000000100000014");
        expect(report.unrecognizedObjects).toEqual([]);
    });

    it("counts full backups against repo1-retention-full: short once the schedule allows more, over when expire has not run", () => {
        const policy = stackPolicy({ retentionFull: 2 });
        const repo = repoOf(policy);
        // One full two days old: only one is due yet.
        const young: Repo = { objects: [] };
        addInfo(young, repo);
        addBackupSet(young, repo, "20260318-010000F", "2026-03-18T01:20:00.000Z");
        addWal(young, repo, walName("00000001", 5), at(30));
        addBackupSet(young, repo, "20260318-010000F_20260319-010000D", "2026-03-19T01:05:00.000Z");
        addBackupSet(young, repo, "20260318-010000F_20260320-010000D", "2026-03-20T01:05:00.000Z");
        const fine = build(young, policy);
        expect(fine.pitr[0].retention).toEqual({ fullBackups: 1, retentionFull: 2, required: 1, met: true });
        expect(pitrProblems(fine)).toEqual([]);
        // One full twelve days old and its differentials: the weekly full should have made a second by now.
        const short: Repo = { objects: [] };
        addInfo(short, repo);
        addBackupSet(short, repo, "20260308-010000F", "2026-03-08T01:20:00.000Z");
        addWal(short, repo, walName("00000001", 5), at(30));
        for (const d of ["09", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20"]) addBackupSet(short, repo, `20260308-010000F_202603${d}-010000D`, `2026-03-${d}T01:05:00.000Z`);
        const s = build(short, policy);
        expect(s.pitr[0].retention).toEqual({ fullBackups: 1, retentionFull: 2, required: 2, met: false });
        expect(pitrProblems(s).map((p) => [p.kind, p.severity])).toEqual([["retention-short", "warning"]]);
        expect(pitrProblems(s)[0].message).toMatch(/1 full backup\(s\) .* 2 of the 2 repo1-retention-full \(postgresql\.pitr\.retentionFull\) are due by now/);
        // Three fulls with a retention of two: expire did not remove the oldest.
        const over = healthyRepo(policy);
        addBackupSet(over, repo, "20260301-010000F", "2026-03-01T01:20:00.000Z");
        for (const d of ["02", "03", "04", "05", "06", "07"]) addBackupSet(over, repo, `20260301-010000F_202603${d}-010000D`, `2026-03-${d}T01:05:00.000Z`);
        const o = build(over, policy);
        expect(o.pitr[0].retention).toMatchObject({ fullBackups: 3, met: false });
        expect(pitrProblems(o).map((p) => p.kind)).toEqual(["retention-exceeded"]);
        expect(o.pitr[0].oldestRestorable).toBe("2026-03-01T01:20:00.000Z");
        // With retentionFull 3 the same repository is within policy.
        expect(pitrProblems(build(over, stackPolicy({ retentionFull: 3 })))).toEqual([]);
    });

    it("a PITR host with no repository in the bucket is a missing source; one with only an older key's repository says so", () => {
        const policy = stackPolicy();
        const none = build({ objects: [] }, policy);
        expect(pitrMissing(none)).toEqual([{ host: "db-1", type: "pitr", target: STANZA, configuredTarget: null }]);
        expect(pitrProblems(none).map((p) => [p.kind, p.severity, p.host, p.type, p.target])).toEqual([["missing-source", "error", "db-1", "pitr", STANZA]]);
        expect(pitrProblems(none)[0].message).toBe(`the stack expects pgBackRest backups and WAL of stanza ${STANZA} from db-1 (postgresql.pitr) under hx/pgbackrest/db-1/unit-v2/, and the bucket holds none`);
        expect(renderMarkdown(none)).toMatch(/\| db-1 \| pitr \| db-1-15-main \| \*\*missing\*\* /);
        expect(renderHtml(none)).toContain(`data-missing="db-1/pitr/${STANZA}"`);
        // The key was rotated, and the new repository has not been written: the old one is reported, not expected.
        const old = healthyRepo(policy);
        for (const o of old.objects) (o as { key: string }).key = o.key.replace("/unit-v2/", "/unit-v1/");
        const rotated = build(old, policy);
        expect(pitrMissing(rotated)).toEqual([{ host: "db-1", type: "pitr", target: STANZA, configuredTarget: null }]);
        expect(pitrProblems(rotated).find((p) => p.kind === "missing-source")?.message).toMatch(/\(only repositories of older keys: unit-v1\)$/);
        // An older key's repository is not written to: no schedule, retention or archive lag is measured in it, and it is no unexpected source.
        expect(rotated.pitr.map((p) => [p.keyId, p.expected, p.olderKey, p.retention, p.newestWal?.lagMet])).toEqual([["unit-v1", false, true, null, null]]);
        expect(pitrProblems(rotated).map((p) => p.kind)).toEqual(["missing-source"]);
        const aged = build(old, policy, new Date(NOW.getTime() + 30 * 86_400_000));
        expect(pitrProblems(aged).map((p) => p.kind)).toEqual(["missing-source"]);
        expect(renderMarkdown(rotated)).toContain("| db-1 | db-1-15-main | unit-v1 (older key) |");
        expect(renderHtml(rotated)).toContain(`<span class="badge b-muted">older key&#39;s repository</span>`);
        // The report's page in docs/ says the same: the badge, and no unexpected source for an older key's repository.
        const readme = readFileSync(path.join(__dirname, "../../docs/compliance-report.md"), "utf8");
        const paragraph = readme.slice(readme.indexOf("A PITR host whose repository for the current key"), readme.indexOf("keeps none of them; it keeps one entry per WAL segment"));
        expect(paragraph).toMatch(/An older key's\s+repository of the same host and stanza[\s\S]*is no unexpected source: it is shown with a muted "older key's\s+repository" badge/);
        // A host without PITR, or one that keeps a local repository, expects nothing in the bucket.
        expect(pitrMissing(build({ objects: [] }, stackPolicy({ enabled: false })))).toEqual([]);
        const local = policyFromStack(load({ bucketName: "hx-unit-bucket", s3Region: "eu-central-1", bucketPrefix: "hx", hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["postgresql"], remoteSync: false, postgresql: { databases: ["app"], pitr: { enabled: true } } }] }));
        expect(local.hosts[0].pitr).toBeNull();
    });

    it("a healthy idle server archives nothing new: the newest WAL may be as old as the shortest backup schedule's gap plus its start delay and the grace, as each backup archives its stop segment", () => {
        // Defaults: pitr-differential Mon-Sat 01:00 (longest gap 2 days, Sat to Mon), full Sundays (7 days); 300 s start delay, 30 min grace.
        const policy = stackPolicy({ archiveTimeoutSeconds: 60 }, { alertWalArchiveLagTimeouts: 5 });
        const allowed = 2 * 86_400 + 300 + 1800;
        const r = healthyRepo(policy);
        // An hour without new WAL is far past alertWalArchiveLagTimeouts x archive_timeout (300 s), and no sign of trouble.
        const idle = build(r, policy, new Date(NOW.getTime() + 3600_000));
        expect(idle.pitr[0].newestWal).toMatchObject({ ageSeconds: 3660, thresholdSeconds: allowed, lagMet: true });
        expect(idle.pitr[0].newestWal?.rule).toMatch(/pitr-differential .*the shortest of pitr-full, pitr-differential, plus the timer's start delay and 30 minutes' grace: 2d 0h 35m$/);
        expect(pitrProblems(idle)).toEqual([]);
        // The newest segment was uploaded 60 s before NOW.
        const atLimit = build(r, policy, new Date(NOW.getTime() + (allowed - 60) * 1000));
        expect(atLimit.pitr[0].newestWal).toMatchObject({ ageSeconds: allowed, lagMet: true });
        expect(pitrProblems(atLimit).filter((p) => p.kind === "wal-archive-lag")).toEqual([]);
        const past = build(r, policy, new Date(NOW.getTime() + (allowed - 59) * 1000));
        expect(past.pitr[0].newestWal).toMatchObject({ ageSeconds: allowed + 1, lagMet: false });
        expect(pitrProblems(past).filter((p) => p.kind === "wal-archive-lag").map((p) => [p.severity, p.key])).toEqual([["warning", past.pitr[0].newestWal!.key]]);
        expect(pitrProblems(past).find((p) => p.kind === "wal-archive-lag")!.message).toMatch(/^newest archived WAL segment 000000010000000100000010 was uploaded 2d 0h 35m ago, longer than 2d 0h 35m \(each backup archives its stop segment: .*\): every pgBackRest backup archives its stop segment, so even an idle server's archiving, or its backups, have stopped since$/);
        expect(renderHtml(past)).toContain("WAL older than the backup schedule");
        // The page's caveat says what the check can and cannot tell, as docs/compliance-report.md does.
        expect(past.cannotKnow.join(" ")).toMatch(/an idle server archives nothing new .* older than the shortest backup schedule's longest gap .* WalArchiveLag and WalArchiveFailing alerts are the prompt signals/);
        // A daily differential tightens it to a day; the full job's week never decides while a shorter schedule runs.
        const daily = stackPolicy({ differential: "0 1 * * *" });
        const tight = build(r, daily, new Date(NOW.getTime() + (86_400 + 300 + 1800) * 1000));
        expect(tight.pitr[0].newestWal).toMatchObject({ thresholdSeconds: 86_400 + 300 + 1800, lagMet: false });
        // No archived segment at all is an error: the backups cannot be brought to any point.
        const noWal = { objects: r.objects.filter((o) => !o.key.includes("/archive/") || o.key.endsWith("/archive.info")) };
        expect(pitrProblems(build(noWal, policy)).map((p) => [p.kind, p.severity])).toEqual([["wal-archive-lag", "error"]]);
    });

    it("a backup with only backup.manifest.copy is incomplete, a differential without its full cannot be restored, and no full backup at all is an error", () => {
        const policy = stackPolicy();
        const repo = repoOf(policy);
        const r = healthyRepo(policy);
        addBackupSet(r, repo, "20260315-010000F_20260320-110000D", "2026-03-20T11:00:00.000Z", { copyOnly: true });
        addBackupSet(r, repo, "20260201-010000F_20260320-020000I", "2026-03-20T02:05:00.000Z");
        const report = build(r, policy);
        expect(report.pitr[0].incomplete).toEqual(["20260315-010000F_20260320-110000D"]);
        expect(report.pitr[0].backups.map((b) => b.label)).not.toContain("20260315-010000F_20260320-110000D");
        expect(pitrProblems(report).map((p) => [p.kind, p.key])).toEqual([["pitr-backup-orphan", `${repo}backup/${STANZA}/20260201-010000F_20260320-020000I/backup.manifest`]]);
        expect(report.pitr[0].backups.find((b) => b.label.endsWith("I"))?.type).toBe("incr");
        const noFull = { objects: r.objects.filter((o) => !/-010000F\/backup\.manifest$/.test(o.key)) };
        expect(pitrProblems(build(noFull, policy)).map((p) => p.kind)).toContain("rpo-missed");
    });

    it("a repository without backup.info or archive.info (nor its .copy) is an error: pgBackRest cannot restore from it, or archive into it", () => {
        const policy = stackPolicy();
        const repo = repoOf(policy);
        const without = (re: RegExp) => build({ objects: healthyRepo(policy).objects.filter((o) => !re.test(o.key)) }, policy);
        // pgBackRest falls back to the .copy: one of the two is enough.
        expect(pitrProblems(without(/\/backup\.info$/))).toEqual([]);
        const noBackupInfo = without(/\/backup\.info(\.copy)?$/);
        expect(pitrProblems(noBackupInfo).map((p) => [p.kind, p.severity, p.key])).toEqual([["pitr-info-missing", "error", `${repo}backup/${STANZA}/backup.info`]]);
        expect(pitrProblems(noBackupInfo)[0].message).toMatch(/^no backup\.info \(nor backup\.info\.copy\) in the repository: pgbackrest restore finds its backup sets through it/);
        expect(noBackupInfo.pitr[0].backupInfo).toBe(false);
        const noArchiveInfo = without(/\/archive\.info(\.copy)?$/);
        expect(pitrProblems(noArchiveInfo).map((p) => [p.kind, p.severity, p.key])).toEqual([["pitr-info-missing", "error", `${repo}archive/${STANZA}/archive.info`]]);
        expect(pitrProblems(noArchiveInfo)[0].message).toMatch(/archive-push cannot archive WAL into the stanza/);
        // The red mark on the page now has its problem: in the Problems list, and the section is broken.
        const html = renderHtml(noArchiveInfo);
        expect(html).toContain(`<span class="sev-error">no archive.info</span>`);
        expect(html).toMatch(/<li data-kind="pitr-info-missing"><span class="sev-error">error<\/span>/);
        expect(html).toContain(`<section class="source broken" data-pitr="db-1/${STANZA}"`);
        expect(renderMarkdown(noArchiveInfo)).toMatch(/- \*\*error\*\* pitr-info-missing db-1\/pitr\/db-1-15-main: no archive\.info/);
    });

    it("reads the real layout's keys, keeps no backup file of its own from the listing, and lists keys outside it", () => {
        const root = "hx/pgbackrest/db-1/unit-v2/";
        expect(parsePitrKey(`${root}archive/${STANZA}/15-1/0000000100000000/000000010000000000000003-${SHA}.zst`, "hx")?.entry).toEqual({ kind: "wal", stanza: STANZA, archiveId: "15-1", timeline: "00000001", log: 0, seg: 3, name: "000000010000000000000003", partial: false });
        expect(parsePitrKey(`${root}archive/${STANZA}/15-1/0000000100000000/000000010000000000000003-${SHA}`, "hx")?.entry.kind).toBe("wal");
        // A WAL file in the wrong directory is not taken as a segment.
        expect(parsePitrKey(`${root}archive/${STANZA}/15-1/0000000100000001/000000010000000000000003-${SHA}.zst`, "hx")?.entry.kind).toBe("unknown");
        expect(parsePitrKey(`${root}backup/${STANZA}/backup.history/2026/20260308-010000F.manifest.gz`, "hx")?.entry.kind).toBe("backup-file");
        expect(parsePitrKey("hx/daily/db-1/x/y/z", "hx")).toBeNull();
        expect(keepPitrListing(`${root}backup/${STANZA}/20260308-010000F/pg_data/base/1/1259.zst`, "hx")).toBe(false);
        expect(keepPitrListing(`${root}backup/${STANZA}/20260308-010000F/backup.manifest`, "hx")).toBe(true);
        const policy = stackPolicy();
        const r = healthyRepo(policy);
        r.objects.push({ key: `${root}archive/${STANZA}/15-1/stray.txt`, size: 1, lastModified: at(10) });
        r.objects.push({ key: `hx/pgbackrest/db-9/unit-v2/backup/db-9-15-main/backup.info`, size: 1, lastModified: at(10) });
        const report = build(r, policy);
        expect(report.unrecognizedObjects).toEqual([`${root}archive/${STANZA}/15-1/stray.txt`]);
        // db-9's repository holds only backup.info: archive.info is missing, whether or not the stack expects it.
        expect(pitrProblems(report).map((p) => [p.kind, p.host, p.target])).toEqual([["pitr-info-missing", "db-9", "db-9-15-main"], ["unexpected-source", "db-9", "db-9-15-main"]]);
        expect(report.pitr.map((p) => [p.host, p.expected, p.retention])).toEqual([["db-1", true, { fullBackups: 2, retentionFull: 2, required: 2, met: true }], ["db-9", false, null]]);
    });

    it("segment numbers past 000000FF are named: the cluster's segments are smaller than the 16 MiB assumed", () => {
        const t = walTimelines([{ archiveId: "15-1", timeline: "00000001", log: 0, seg: 0x1ff }, { archiveId: "15-1", timeline: "00000001", log: 0, seg: 0x200 }]);
        expect(t[0].segmentNumbersBeyondAssumedSize).toBe(2);
        // With 1 MiB segments the same names are consecutive in one log.
        expect(walName("00000001", 0xfff, 1024 * 1024)).toBe("000000010000000000000FFF");
        expect(walName("00000001", 0x1000, 1024 * 1024)).toBe("000000010000000100000000");
    });
});

describe("report: PITR, a cluster with larger WAL segments", () => {
    const MiB = 1024 * 1024;
    /** The healthy repository with its WAL replaced by `names`, uploaded a minute apart up to a minute ago. */
    const withWal = (names: readonly string[]) => {
        const policy = stackPolicy();
        const r = healthyRepo(policy);
        r.objects = r.objects.filter((o) => !/\/[0-9A-F]{24}-[0-9a-f]{40}/.test(o.key));
        names.forEach((n, i) => addWal(r, repoOf(policy), n, at(60 * (names.length - i))));
        return build(r, policy);
    };
    // initdb --wal-segsize=64: a log holds 64 segments, 00000000 to 0000003F.
    const sixtyFour = (logs: number, tail: number) => Array.from({ length: logs * 64 + tail }, (_, n) => walName("00000001", n, 64 * MiB));

    it("every finished log ending at 0000003F is a 64 MiB cluster: no false gaps for 40 to FF, and the page says the size was inferred", () => {
        const report = withWal(sixtyFour(3, 17));
        expect(report.pitr[0].timelines.map((t) => [t.first, t.last, t.segments, t.gaps])).toEqual([["000000010000000000000000", "000000010000000300000010", 3 * 64 + 17, []]]);
        expect(report.pitr[0]).toMatchObject({ walSegmentBytes: 64 * MiB, walSegmentBytesInferred: true });
        expect(pitrProblems(report)).toEqual([]);
        expect(renderHtml(report)).toContain("Continuity (64 MiB segments inferred: every finished log ends at the same segment)");
        // A real gap in it is still named, in 64 MiB numbering.
        const names = sixtyFour(3, 17).filter((n) => n !== "000000010000000100000020");
        const gap = withWal(names);
        expect(pitrProblems(gap).map((p) => [p.kind, p.severity])).toEqual([["wal-gap", "error"]]);
        expect(gap.pitr[0].timelines[0].gaps).toEqual([{ first: "000000010000000100000020", last: "000000010000000100000020", missing: 1 }]);
    });

    it("infers nothing when finished logs end at different numbers, at 000000FF, or before any log is finished", () => {
        // Log 0 ends at 3F, log 1 at 7F: no segment size does that, so 16 MiB is assumed and both tails are gaps.
        const mixed = withWal([...Array.from({ length: 64 }, (_, n) => walName("00000001", n)), ...Array.from({ length: 128 }, (_, n) => walName("00000001", 0x100 + n)), walName("00000001", 0x200)]);
        expect(mixed.pitr[0]).toMatchObject({ walSegmentBytes: 16 * MiB, walSegmentBytesInferred: false });
        expect(mixed.pitr[0].timelines[0].gaps.map((g) => [g.first, g.missing])).toEqual([["000000010000000000000040", 192], ["000000010000000100000080", 128]]);
        // The default: the healthy repository's log 0 ends at 000000FF.
        expect(build(healthyRepo()).pitr[0]).toMatchObject({ walSegmentBytes: 16 * MiB, walSegmentBytesInferred: false });
        // Within the first log nothing shows where it ends.
        expect(withWal(sixtyFour(0, 40)).pitr[0]).toMatchObject({ walSegmentBytes: 16 * MiB, walSegmentBytesInferred: false });
        // One finished log ending at 3F: as likely a real gap of 40 to FF at its tail, so it is reported as one.
        const one = withWal(sixtyFour(1, 17));
        expect(one.pitr[0]).toMatchObject({ walSegmentBytes: 16 * MiB, walSegmentBytesInferred: false });
        expect(pitrProblems(one).map((p) => p.kind)).toContain("wal-gap");
    });
});

describe("report views: PITR", () => {
    it("after a key rotation each repository's section shows its own problems: the healthy older key's none of the broken current one's", () => {
        const policy = stackPolicy();
        const current = repoOf(policy);
        const old = healthyRepo(policy);
        for (const o of old.objects) (o as { key: string }).key = o.key.replace("/unit-v2/", "/unit-v1/");
        // The current key's repository: WAL with a gap, and no full backup yet.
        addWal(old, current, walName("00000001", 0x200), at(30));
        addWal(old, current, walName("00000001", 0x202), at(20));
        const report = build(old, policy);
        expect(report.pitr.map((p) => [p.keyId, p.olderKey])).toEqual([["unit-v1", true], ["unit-v2", false]]);
        const currentProblems = pitrProblems(report).filter((p) => p.kind !== "missing-source");
        expect(currentProblems.map((p) => [p.kind, p.repository])).toEqual([["rpo-missed", current], ["wal-gap", current], ["pitr-info-missing", current], ["pitr-info-missing", current]]);
        const html = renderHtml(report);
        const section = (repository: string) => {
            const m = new RegExp(`<section class="([^"]*)" data-pitr="db-1/${STANZA}" data-pitr-repository="${repository}">([\\s\\S]*?)</section>`).exec(html);
            expect(m, repository).not.toBeNull();
            return { cls: m![1], body: m![2] };
        };
        const older = section("hx/pgbackrest/db-1/unit-v1/");
        expect(older.cls).toBe("source");
        for (const p of currentProblems) expect(older.body).not.toContain(esc(p.message));
        expect(older.body).not.toMatch(/class="sev-error"|class="sev-warning"/);
        const now = section(current);
        expect(now.cls).toBe("source broken");
        for (const p of currentProblems) expect(now.body).toContain(esc(p.message));
    });

    it("the page has a PITR section per stanza with its backup sets, WAL run and a timeline row; the summary a table row", () => {
        const policy = stackPolicy();
        const r = healthyRepo(policy);
        r.objects = r.objects.filter((o) => !o.key.includes("/000000010000000100000005-"));
        const report = build(r, policy);
        const html = renderHtml(report);
        expect(html).toContain(`data-pitr="db-1/${STANZA}"`);
        expect(html.match(/ data-pitr-backup="/g)).toHaveLength(13);
        // Backup marks of the sources stay one per manifest.
        expect(html.match(/class="mark backup /g)).toBeNull();
        expect(html).toMatch(/WAL gap/);
        expect(html).toContain("000000010000000100000005");
        expect(html).toContain("20260315-010000F");
        const md = renderMarkdown(report);
        expect(md).toContain("## Point-in-time recovery (pgBackRest)");
        expect(md).toMatch(/\| db-1 \| db-1-15-main \| unit-v2 \| 2 \/ 2 \| 13 \| 2026-03-08T01:20:00.000Z \| 000000010000000100000010 \(1m \/ 2d 0h 35m\) \| \*\*1 gap\(s\)\*\* \|/);
    });
});
