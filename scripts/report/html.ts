/**
 * report.html: one self-contained page (inline CSS, no scripts, no external
 * assets; the Content-Security-Policy forbids loading anything), so it can be
 * mailed or archived as evidence and opened offline. Every value from the
 * bucket is escaped: object keys and manifest fields are untrusted text.
 */
import { formatDuration, problemTargetLabels, targetLabel } from "./facts";
import type { BackupFact, PitrBackupFact, PitrReport, Problem, Report, RestoreTestFact, SourceReport, TimelineDay } from "./model";

export const esc = (value: unknown): string =>
    String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const CSS = `
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#6e7781;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1200px;margin:0 auto;padding:24px}h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:0}.muted{color:var(--muted)}code{font:12px ui-monospace,monospace;background:var(--bg);padding:1px 4px;border-radius:4px;word-break:break-all}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:150px}.card b{display:block;font-size:22px}
.card.bad{border-color:var(--bad);background:#ffebe9}.card.good{border-color:var(--ok);background:#dafbe1}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}th{background:var(--bg);font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;border:1px solid}.b-ok{color:var(--ok);border-color:var(--ok)}.b-bad{color:#fff;background:var(--bad);border-color:var(--bad)}.b-warn{color:var(--warn);border-color:var(--warn)}.b-muted{color:var(--muted);border-color:var(--line)}
.problems{border:2px solid var(--bad);background:#ffebe9;border-radius:8px;padding:8px 14px}.problems li{margin:2px 0}.noproblems{border:2px solid var(--ok);background:#dafbe1;border-radius:8px;padding:8px 14px}
.sev-error{color:var(--bad);font-weight:700}.sev-warning{color:var(--warn);font-weight:700}
.source{border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:12px 0}.source.broken{border:2px solid var(--bad)}.source.missing{border:2px dashed var(--bad);background:#fff8f8}
.source header{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.timeline{display:flex;gap:2px;align-items:flex-end;overflow-x:auto;padding:4px 0 2px;margin:6px 0}
.day{width:18px;min-height:34px;display:flex;flex-direction:column-reverse;align-items:center;gap:2px;padding:2px 0;border-radius:3px;background:var(--bg);position:relative}
.day.weekstart{margin-left:6px}.day[data-state=missed]{background:#ffebe9;outline:2px dashed var(--bad)}.day[data-state=missed]::after{content:"\\00d7";color:var(--bad);font-weight:700;line-height:1}
.day[data-state=not-scheduled],.day[data-state=before-first],.day[data-state=beyond-daily-retention]{background:repeating-linear-gradient(45deg,#fff,#fff 3px,var(--bg) 3px,var(--bg) 6px)}
.day[data-state=today]{outline:1px solid var(--muted)}
.mark{display:block;width:12px;height:8px;border-radius:2px}.mark.ok{background:var(--ok)}.mark.dedup{background:#fff;border:2px solid var(--ok)}.mark.broken{background:var(--bad)}
.mark.pitr.full{background:#0969da}.mark.pitr.diff,.mark.pitr.incr{background:#fff;border:2px solid #0969da}
.axis{display:flex;gap:2px;font-size:10px;color:var(--muted)}.axis span{width:18px;white-space:nowrap;overflow:visible}.axis span.weekstart{margin-left:6px}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:var(--muted);margin:6px 0}.legend .day{min-height:14px;width:14px;display:inline-flex;vertical-align:middle}
details summary{cursor:pointer;color:var(--muted)}
`;

function badge(text: string, kind: "ok" | "bad" | "warn" | "muted"): string {
    return `<span class="badge b-${kind}">${esc(text)}</span>`;
}

const when = (iso: string | null): string => (iso ? esc(iso.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")) : "–");

function markTitle(b: BackupFact): string {
    const lines = [b.createdAt ?? "no date", `class ${b.retentionClass ?? "untagged"}`, `MAC ${b.mac}`, `artifact ${b.artifact}`, ...(b.dedup ? [`deduplicated: artifact of ${b.dedup.manifest}`] : []), ...b.problems];
    return esc(lines.join("\n"));
}

function mark(b: BackupFact, index: number): string {
    const kind = !b.restorable ? "broken" : b.dedup ? "dedup" : "ok";
    return `<span class="mark backup ${kind}" data-backup="${index}" data-manifest="${esc(b.manifestKey)}" title="${markTitle(b)}"></span>`;
}

const isMonday = (day: string): boolean => new Date(`${day}T00:00:00Z`).getUTCDay() === 1;

const DAY_WORDS: Record<TimelineDay["state"], string> = {
    ok: "backed up",
    broken: "a backup of this day is broken",
    missed: "scheduled, but no backup in the bucket",
    "not-scheduled": "not scheduled",
    "before-first": "before the first backup in the bucket",
    "beyond-daily-retention": "older than daily retention: only weekly, monthly and yearly copies are kept",
    today: "today (the run may still be ahead)",
};

/** The day columns and their axis; `markOf` draws the mark of the backup with that index. */
function dayColumns(timeline: readonly TimelineDay[], markOf: (index: number) => string): { days: string; axis: string } {
    const days = timeline
        .map((d, i) => {
            const cls = `day${i > 0 && isMonday(d.date) ? " weekstart" : ""}`;
            const title = esc(`${d.date}: ${DAY_WORDS[d.state]}${d.backups.length ? ` (${d.backups.length} backup${d.backups.length > 1 ? "s" : ""})` : ""}`);
            return `<div class="${cls}" data-date="${d.date}" data-state="${d.state}" title="${title}">${d.backups.map(markOf).join("")}</div>`;
        })
        .join("");
    // The first day, each Monday and today, but no label within two days of the first or of today: an MM-DD is wider than a day.
    const last = timeline.length - 1;
    const labelled = (d: TimelineDay, i: number) => i === 0 || i === last || (isMonday(d.date) && i > 2 && last - i > 2);
    const axis = timeline.map((d, i) => `<span class="${i > 0 && isMonday(d.date) ? "weekstart" : ""}">${labelled(d, i) ? esc(d.date.slice(5)) : ""}</span>`).join("");
    return { days, axis };
}

function timelineHtml(s: SourceReport): string {
    const { days, axis } = dayColumns(s.timeline, (i) => mark(s.backups[i], i));
    const undated = s.undated.length ? `<div class="day" data-date="undated" data-state="broken" title="manifests without a usable date">${s.undated.map((i) => mark(s.backups[i], i)).join("")}</div>` : "";
    const older = s.olderThanTimeline ? `<p class="muted">${s.olderThanTimeline} older backup(s) before this window (weekly, monthly and yearly copies), listed below.</p>` : "";
    return `<div class="timeline" data-source="${esc(`${s.host}/${s.type}/${s.target}`)}">${days}${undated}</div><div class="axis">${axis}</div>${older}`;
}

function pitrMark(b: PitrBackupFact, index: number): string {
    const title = esc([`${b.type} backup ${b.label}`, `completed ${b.completedAt}`, ...(b.full ? [`depends on ${b.full}`] : [])].join("\n"));
    return `<span class="mark pitr ${b.type}" data-pitr-backup="${index}" title="${title}"></span>`;
}

const bytes = (n: number): string => (n % (1024 * 1024) === 0 ? `${n / 1024 / 1024} MiB` : `${n} bytes`);

function pitrHtml(p: PitrReport, problems: readonly Problem[]): string {
    // By repository too: an older key's repository has the same host and stanza as the current one, and none of its problems.
    const mine = problems.filter((x) => x.type === "pitr" && x.repository === p.repository && x.host === p.host && x.target === p.target);
    const gaps = p.timelines.reduce((n, t) => n + t.gaps.length, 0);
    const badges = [
        p.walSegments === 0 ? badge("no WAL", "bad") : gaps ? badge(`WAL gap${gaps > 1 ? `s: ${gaps}` : ""}`, "bad") : badge("WAL continuous", "ok"),
        p.newestWal?.lagMet === false ? badge("WAL older than the backup schedule", "warn") : "",
        p.retention ? (p.retention.met ? badge(`${p.retention.fullBackups} of ${p.retention.retentionFull} full backups`, "ok") : badge(`${p.retention.fullBackups} full backups, policy ${p.retention.retentionFull}`, "warn")) : "",
        p.expected ? "" : p.olderKey ? badge("older key's repository", "muted") : badge("not expected by the stack", "warn"),
    ].join(" ");
    const { days, axis } = dayColumns(p.timeline, (i) => pitrMark(p.backups[i], i));
    const newest = p.newestWal
        ? `<code>${esc(p.newestWal.name)}</code> (${esc(p.newestWal.archiveId)}), uploaded ${when(p.newestWal.archivedAt)} — ${esc(formatDuration(p.newestWal.ageSeconds))} old${p.newestWal.thresholdSeconds !== null ? `, allowed ${esc(formatDuration(p.newestWal.thresholdSeconds))}` : ""}${p.newestWal.rule ? `<br><span class="muted">${esc(p.newestWal.rule)}</span>` : ""}`
        : "none archived";
    const timelines = p.timelines
        .map((t) => `<tr><td>${esc(t.archiveId)}</td><td><code>${esc(t.timeline)}</code></td><td><code>${esc(t.first)}</code></td><td><code>${esc(t.last)}</code></td><td>${t.segments}</td><td>${t.gaps.length ? t.gaps.map((g) => `<span class="sev-error">WAL gap: <code>${esc(g.first)}</code>${g.missing > 1 ? ` to <code>${esc(g.last)}</code> (${g.missing})` : ""}</span>`).join("<br>") : badge("continuous", "ok")}</td></tr>`)
        .join("");
    const sets = [...p.backups]
        .reverse()
        .map((b) => `<tr><td><code>${esc(b.label)}</code></td><td>${esc(b.type)}</td><td>${when(b.completedAt)}</td><td>${esc(b.labelTime)}</td><td>${b.full ? `<code>${esc(b.full)}</code>` : ""}</td></tr>`)
        .join("");
    return `<section class="source${mine.some((x) => x.severity === "error") ? " broken" : ""}" data-pitr="${esc(`${p.host}/${p.target}`)}" data-pitr-repository="${esc(p.repository)}">
<header><h3>${esc(p.host)} / pitr / ${esc(p.target)}</h3>${badges}</header>
<div class="timeline" data-pitr-timeline="${esc(`${p.host}/${p.target}`)}">${days}</div><div class="axis">${axis}</div>
<table><tbody>
<tr><th>Repository</th><td><code>${esc(p.repository)}</code> (key <code>${esc(p.keyId)}</code>)${p.backupInfo ? "" : ` <span class="sev-error">no backup.info</span>`}${p.archiveInfo ? "" : ` <span class="sev-error">no archive.info</span>`}</td></tr>
<tr><th>Oldest restorable point</th><td>${when(p.oldestRestorable)} <span class="muted">(completion of the oldest full backup)</span></td></tr>
<tr><th>Full backups</th><td>${p.retention ? `${p.retention.fullBackups}, repo1-retention-full ${p.retention.retentionFull}${p.retention.required < p.retention.retentionFull ? ` (${p.retention.required} due so far)` : ""}` : `${p.backups.filter((b) => b.type === "full").length}`}${p.incomplete.length ? `<br><span class="muted">running or aborted (only backup.manifest.copy): ${p.incomplete.map((l) => `<code>${esc(l)}</code>`).join(", ")}</span>` : ""}</td></tr>
<tr><th>Newest archived WAL</th><td>${newest}</td></tr>
</tbody></table>
<table><thead><tr><th>Archive</th><th>Timeline</th><th>First segment</th><th>Last segment</th><th>Segments</th><th>Continuity (${esc(bytes(p.walSegmentBytes))} segments ${p.walSegmentBytesInferred ? "inferred: every finished log ends at the same segment" : "assumed"})</th></tr></thead><tbody>${timelines}</tbody></table>
${mine.length ? `<ul>${mine.map((x) => `<li class="sev-${x.severity}">${esc(x.message)}</li>`).join("")}</ul>` : ""}
<details><summary>${p.backups.length} backup set(s) in the repository</summary><table><thead><tr><th>Label</th><th>Type</th><th>Completed (backup.manifest uploaded)</th><th>Label time (host's local time)</th><th>Depends on</th></tr></thead><tbody>${sets}</tbody></table></details>
</section>`;
}

const RESTORE_TEST_BADGES: Record<RestoreTestFact["state"], [string, "ok" | "bad" | "warn" | "muted"]> = {
    ok: ["passed", "ok"],
    failed: ["FAILED", "bad"],
    stale: ["too old", "bad"],
    missing: ["MISSING", "bad"],
    "not-due": ["none yet, not due", "muted"],
    untrusted: ["record not trustworthy", "bad"],
    "not-expected": ["not scheduled", "muted"],
};

function macBadge(mac: BackupFact["mac"]): string {
    return mac === "verified" ? badge("verified", "ok") : mac === "not-checked" ? badge("not checked", "muted") : mac === "key-missing" ? badge("no key", "warn") : badge(mac, "bad");
}

function restoreTestHtml(t: RestoreTestFact): string {
    const [text, kind] = RESTORE_TEST_BADGES[t.state];
    const head = `<span class="restore-test" data-state="${esc(t.state)}">${badge(text, kind)}</span>`;
    const rule = t.rule ? `<br><span class="muted">allowed age: ${esc(t.rule)}</span>` : "";
    if (!t.finishedAt) return `${head} ${t.problems.map((p) => `<span class="sev-error">${esc(p)}</span>`).join(" ")}${t.key ? ` <code>${esc(t.key)}</code>` : ""}${rule}`;
    const age = t.ageSeconds !== null ? ` — ${esc(formatDuration(t.ageSeconds))} old${t.allowedAgeSeconds !== null ? `, allowed ${esc(formatDuration(t.allowedAgeSeconds))}` : ""}` : "";
    const tested = t.manifest ? `<br>tested <code>${esc(t.manifest)}</code>${t.manifestInBucket === false ? ` <span class="muted">(not, or no longer, in the bucket)</span>` : ""}${t.durationMs !== null ? `, took ${esc((t.durationMs / 1000).toFixed(1))} s` : ""}${t.job ? ` <span class="muted">(${esc(t.job)})</span>` : ""}` : "";
    const error = t.error ? `<br><span class="sev-error">${esc(t.error)}</span>` : "";
    return `${head} ${when(t.finishedAt)}${age}; MAC ${macBadge(t.mac)}${tested}${error}${t.problems.filter((p) => !t.error || !p.includes(t.error)).map((p) => `<br><span class="sev-error">${esc(p)}</span>`).join("")}${rule}`;
}

function sourceHtml(s: SourceReport, problems: readonly Problem[]): string {
    const mine = problems.filter((p) => p.host === s.host && p.type === s.type && p.target === s.target);
    const broken = s.backups.filter((b) => !b.restorable).length;
    const rpo = s.newest?.rpoMet === true ? badge("RPO met", "ok") : s.newest?.rpoMet === false || (s.expected && !s.newest) ? badge("RPO missed", "bad") : badge("no schedule", "muted");
    const rt = s.lastRestoreTest.state;
    const rtBadge = rt === "ok" ? badge("restore test passed", "ok") : rt === "not-expected" || rt === "not-due" ? "" : badge(`restore test ${RESTORE_TEST_BADGES[rt][0]}`, "bad");
    const badges = [rpo, broken ? badge(`${broken} broken`, "bad") : badge("chain intact", "ok"), rtBadge, s.expected ? "" : badge("not expected by the stack", "warn")].join(" ");
    const newest = s.newest
        ? `${when(s.newest.createdAt)} — ${esc(formatDuration(s.newest.ageSeconds))} old${s.schedule?.thresholdSeconds ? `, allowed ${esc(formatDuration(s.schedule.thresholdSeconds))}` : ""}`
        : "no restorable backup";
    const enc = s.encryption ? `${esc(s.encryption.cipher)} (${esc(s.encryption.kdf)}, ${esc(s.encryption.digest)}, ${esc(s.encryption.iter ?? "?")} iterations), key <code>${esc(s.encryption.keyId)}</code>` : "–";
    const coverage = s.coverage
        .map((c) => `<tr><td>${esc(c.retentionClass)}</td><td>${c.objects}</td><td>${c.covered} of ${c.policy}${c.required < c.policy ? ` (${c.required} due so far)` : ""}</td><td>${c.expirationDays} days</td><td>${c.met ? badge("met", "ok") : badge("short", "bad")}</td></tr>`)
        .join("");
    const rows = [...s.backups]
        .map((b, i) => ({ b, i }))
        .reverse()
        .map(
            ({ b }) =>
                `<tr><td>${when(b.createdAt)}</td><td>${esc(b.retentionClass ?? "untagged")}</td><td>${macBadge(b.mac)}</td><td>${b.artifact === "present" ? badge("present", "ok") : badge(b.artifact, "bad")}${b.dedup ? ` <span class="muted">dedup of ${esc(b.dedup.manifest)}</span>` : ""}</td><td><code>${esc(b.manifestKey)}</code>${b.problems.map((p) => `<br><span class="sev-error">${esc(p)}</span>`).join("")}</td></tr>`,
        )
        .join("");
    return `<section class="source${broken || mine.some((p) => p.severity === "error") ? " broken" : ""}" data-source="${esc(`${s.host}/${s.type}/${s.target}`)}">
<header><h3>${esc(s.host)} / ${esc(s.type)} / ${esc(targetLabel(s.target, s.configuredTarget))}</h3>${badges}</header>
${timelineHtml(s)}
<table><tbody>
<tr><th>Newest restorable backup</th><td>${newest}${s.schedule ? `<br><span class="muted">${esc(s.schedule.rule)}; ${esc(s.schedule.jobs.map((j) => `${j.name}: ${j.description}`).join("; "))}</span>` : ""}</td></tr>
<tr><th>Oldest restorable point</th><td>${when(s.oldestRestorable)}</td></tr>
<tr><th>Encryption (newest)</th><td>${enc}</td></tr>
<tr><th>Last restore test</th><td>${restoreTestHtml(s.lastRestoreTest)}</td></tr>
</tbody></table>
<table><thead><tr><th>Retention class</th><th>Manifests uploaded in class</th><th>Periods with a restorable backup</th><th>Lifecycle expiry</th><th></th></tr></thead><tbody>${coverage}</tbody></table>
<details><summary>${s.backups.length} backup(s) in the bucket</summary><table><thead><tr><th>Created</th><th>Class</th><th>MAC</th><th>Artifact</th><th>Manifest</th></tr></thead><tbody>${rows}</tbody></table></details>
</section>`;
}

function problemItem(p: Problem, target: string | null): string {
    const where = p.host ? `${p.host} / ${p.type}${target ? ` / ${target}` : ""}` : "stack";
    return `<li data-kind="${esc(p.kind)}"><span class="sev-${p.severity}">${esc(p.severity)}</span> <b>${esc(p.kind)}</b> ${esc(where)}: ${esc(p.message)}${p.key ? ` <code>${esc(p.key)}</code>` : ""}</li>`;
}

export function renderHtml(report: Report): string {
    const errors = report.problems.filter((p) => p.severity === "error").length;
    const warnings = report.problems.length - errors;
    const problemTarget = problemTargetLabels(report);
    const hosts = [...new Set([...report.sources.map((s) => s.host), ...report.pitr.map((p) => p.host), ...report.missingSources.map((m) => m.host)])].sort();
    const hostSections = hosts
        .map((h) => {
            const missing = report.missingSources
                .filter((m) => m.host === h)
                .map((m) => `<section class="source missing" data-missing="${esc(`${m.host}/${m.type}/${m.target ?? ""}`)}"><header><h3>${esc(m.host)} / ${esc(m.type)}${m.target ? ` / ${esc(targetLabel(m.target, m.configuredTarget))}` : ""}</h3>${badge("MISSING: nothing in the bucket", "bad")}</header><p>${m.type === "pitr" ? "The stack archives this stanza into the bucket (postgresql.pitr), and the bucket holds no pgBackRest repository of it for the current key." : "The stack expects this source from the host's roles, and the bucket holds no backup of it."}</p></section>`)
                .join("");
            const pitr = report.pitr.filter((p) => p.host === h).map((p) => pitrHtml(p, report.problems)).join("");
            return `<h2>Host ${esc(h)}</h2>${missing}${report.sources.filter((s) => s.host === h).map((s) => sourceHtml(s, report.problems)).join("")}${pitr}`;
        })
        .join("");
    const keys = report.keys
        .map((k) => `<tr><td><code>${esc(k.keyId)}</code>${k.current ? " " + badge("current", "ok") : ""}</td><td>${when(k.firstUsedAt)}</td><td>${k.ageDays ?? "–"}</td><td>${k.rotationDays}</td><td>${k.status === "rotation-due" ? badge("rotation due", "bad") : k.status === "ok" ? badge("within policy", "ok") : badge(k.status, "muted")}</td><td>${k.manifests}</td><td>${k.inKeyring === null ? "not given" : k.inKeyring ? "yes" : badge("no", "warn")}</td></tr>`)
        .join("");
    const lifecycle = report.lifecycleRules
        .map((r) => {
            const filter = r.filter.prefix !== undefined ? `prefix ${r.filter.prefix}` : `prefix ${r.filter.and?.prefix} + tag ${Object.entries(r.filter.and?.tags ?? {}).map(([k, v]) => `${k}=${v}`).join(",")}`;
            const actions = [
                ...(r.transitions ?? []).map((t) => `${t.storageClass} at day ${t.days}`),
                ...(r.expiration?.days ? [`expire at day ${r.expiration.days}`] : []),
                ...(r.expiration?.expiredObjectDeleteMarker ? ["remove expired delete markers"] : []),
                ...(r.noncurrentVersionExpiration ? [`noncurrent versions expire after ${r.noncurrentVersionExpiration.noncurrentDays} days`] : []),
                ...(r.abortIncompleteMultipartUpload ? [`abort incomplete uploads after ${r.abortIncompleteMultipartUpload.daysAfterInitiation} days`] : []),
            ];
            return `<tr><td><code>${esc(r.id)}</code></td><td><code>${esc(filter)}</code></td><td>${esc(actions.join("; "))}</td></tr>`;
        })
        .join("");
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Backup compliance report: ${esc(report.stack)}</title><style>${CSS}</style></head>
<body><main>
<h1>Backup compliance report: stack ${esc(report.stack)}</h1>
<p class="muted">Bucket <code>${esc(report.bucket.name)}</code> (prefix <code>${esc(report.bucket.prefix)}</code>, retention marked by ${esc(report.bucket.retentionBy)}${report.bucket.endpoint ? `, endpoint <code>${esc(report.bucket.endpoint)}</code>` : `, region ${esc(report.bucket.region)}`}) read at ${when(report.generatedAt)}. ${esc(report.timeZoneNote)}. MACs ${report.macCheck === "keyring" ? "checked with the keyring given" : "<b>not checked</b> (no --keys)"}.</p>
<div class="cards">
<div class="card"><span class="muted">Sources</span><b>${report.sources.length}</b></div>
<div class="card${report.missingSources.length ? " bad" : ""}"><span class="muted">Missing sources</span><b>${report.missingSources.length}</b></div>
<div class="card"><span class="muted">Backups (manifests)</span><b>${report.totals.manifests}</b></div>
${report.pitr.length ? `<div class="card"><span class="muted">PITR stanzas (pgBackRest)</span><b>${report.pitr.length}</b></div>` : ""}
<div class="card${report.totals.broken ? " bad" : " good"}"><span class="muted">Broken</span><b>${report.totals.broken}</b></div>
<div class="card${errors ? " bad" : " good"}"><span class="muted">Problems</span><b>${errors} errors, ${warnings} warnings</b></div>
</div>
<h2>Problems</h2>
${report.problems.length ? `<ul class="problems">${report.problems.map((p) => problemItem(p, problemTarget(p))).join("")}</ul>` : `<p class="noproblems">No problems found in what the bucket can show (see "What this report cannot know").</p>`}
<div class="legend"><span><span class="mark ok" style="display:inline-block"></span> backup</span><span><span class="mark dedup" style="display:inline-block"></span> deduplicated backup</span><span><span class="mark broken" style="display:inline-block"></span> broken (artifact missing or MAC fails)</span>${report.pitr.length ? `<span><span class="mark pitr full" style="display:inline-block"></span> pgBackRest full</span><span><span class="mark pitr diff" style="display:inline-block"></span> pgBackRest differential or incremental</span>` : ""}<span><span class="day" data-state="missed"></span> scheduled day without a backup</span><span><span class="day" data-state="not-scheduled"></span> nothing expected (not scheduled, before the first backup, or past daily retention)</span></div>
${hostSections}
<h2>Encryption keys</h2>
<p class="muted">Cipher ${esc(report.sources.find((s) => s.encryption)?.encryption?.cipher ?? "–")}. A key's age is derived from the oldest manifest createdAt that used it.</p>
<table><thead><tr><th>Key</th><th>First used</th><th>Age (days)</th><th>Rotation policy (days)</th><th>Status</th><th>Manifests</th><th>In keyring</th></tr></thead><tbody>${keys}</tbody></table>
<h2>Storage governance (as the stack configures it)</h2>
<p>Object Lock: ${report.objectLock ? `${esc(report.objectLock.mode)}, ${report.objectLock.days} days default retention` : "off (objectLockMode empty)"}.</p>
<p>Retention policy: daily ${report.retention.daily}, weekly ${report.retention.weekly}, monthly ${report.retention.monthly}, yearly ${report.retention.yearly}.</p>
<table><thead><tr><th>Lifecycle rule</th><th>Filter</th><th>Actions</th></tr></thead><tbody>${lifecycle}</tbody></table>
${report.unrecognizedObjects.length ? `<h2>Other objects under the prefix</h2><p class="muted">Not in the backup layout; not counted.</p><ul>${report.unrecognizedObjects.map((k) => `<li><code>${esc(k)}</code></li>`).join("")}</ul>` : ""}
<h2>What this report cannot know</h2>
<ul>${report.cannotKnow.map((c) => `<li>${esc(c)}</li>`).join("")}</ul>
</main></body></html>
`;
}
