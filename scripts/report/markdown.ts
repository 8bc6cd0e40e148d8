/** report.md: the short summary for a ticket or a mail; the page has the detail. */
import { formatDuration, problemTargetLabels, targetLabel } from "./facts";
import type { Report, RestoreTestFact } from "./model";

/** Table cells carry untrusted text: pipes and newlines would break the table, backticks the code spans. */
const cell = (value: unknown): string => String(value ?? "").replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/`/g, "'").replace(/\r?\n/g, " ");

const RESTORE_TEST_WORDS: Record<RestoreTestFact["state"], string> = {
    ok: "passed",
    failed: "**failed**",
    stale: "**too old**",
    missing: "**missing**",
    "not-due": "none yet (not due)",
    untrusted: "**record not trustworthy**",
    "not-expected": "not scheduled",
};

function restoreTestCell(t: RestoreTestFact): string {
    const words = RESTORE_TEST_WORDS[t.state];
    if (!t.finishedAt) return words;
    const age = t.ageSeconds !== null ? ` (${formatDuration(t.ageSeconds)}${t.allowedAgeSeconds !== null ? ` / ${formatDuration(t.allowedAgeSeconds)}` : ""})` : "";
    return `${words} ${cell(t.finishedAt)}${age}, MAC ${t.mac}`;
}

export function renderMarkdown(report: Report): string {
    const errors = report.problems.filter((p) => p.severity === "error");
    const warnings = report.problems.filter((p) => p.severity === "warning");
    const problemTarget = problemTargetLabels(report);
    const lines = [
        `# Backup compliance report: stack ${cell(report.stack)}`,
        "",
        `Bucket \`${cell(report.bucket.name)}\`, prefix \`${cell(report.bucket.prefix)}\`, read at ${report.generatedAt}. ${report.timeZoneNote}.`,
        `MACs ${report.macCheck === "keyring" ? "checked with the keyring given" : "**not checked** (no --keys)"}.`,
        "",
        `**${report.sources.length} sources${report.pitr.length ? ` and ${report.pitr.length} PITR stanza(s)` : ""}, ${report.missingSources.length} missing; ${report.totals.manifests} backups, ${report.totals.broken} broken; ${errors.length} errors, ${warnings.length} warnings.**`,
        "",
        "## Problems",
        "",
        ...(report.problems.length
            ? report.problems.map((p) => `- **${p.severity}** ${p.kind} ${p.host ? `${cell(p.host)}/${cell(p.type)}${p.target ? `/${cell(problemTarget(p))}` : ""}` : "stack"}: ${cell(p.message)}${p.key ? ` (\`${cell(p.key)}\`)` : ""}`)
            : ["None found in what the bucket can show."]),
        "",
        "## Sources",
        "",
        "| Host | Type | Target | Newest restorable | Age / allowed | RPO | Restorable / backups | Oldest restorable | Key | Last restore test |",
        "|---|---|---|---|---|---|---|---|---|---|",
        ...report.missingSources.map((m) => `| ${cell(m.host)} | ${cell(m.type)} | ${cell(m.target === null ? "" : targetLabel(m.target, m.configuredTarget))} | **missing** | | missed | 0 / 0 | | | |`),
        ...report.sources.map((s) => {
            const ok = s.backups.filter((b) => b.restorable).length;
            const age = s.newest ? `${formatDuration(s.newest.ageSeconds)} / ${s.schedule?.thresholdSeconds ? formatDuration(s.schedule.thresholdSeconds) : "–"}` : "";
            const rpo = s.newest?.rpoMet === true ? "met" : s.newest?.rpoMet === false || (s.expected && !s.newest) ? "**missed**" : "–";
            return `| ${cell(s.host)} | ${cell(s.type)} | ${cell(targetLabel(s.target, s.configuredTarget))} | ${cell(s.newest?.createdAt ?? "none")} | ${age} | ${rpo} | ${ok} / ${s.backups.length} | ${cell(s.oldestRestorable ?? "")} | ${cell(s.encryption?.keyId ?? "")} | ${restoreTestCell(s.lastRestoreTest)} |`;
        }),
        "",
        ...(report.pitr.length
            ? [
                  "## Point-in-time recovery (pgBackRest)",
                  "",
                  "| Host | Stanza | Key | Full backups / retention | Backup sets | Oldest restorable | Newest WAL (age / allowed) | WAL continuity |",
                  "|---|---|---|---|---|---|---|---|",
                  ...report.pitr.map((p) => {
                      const gaps = p.timelines.reduce((n, t) => n + t.gaps.length, 0);
                      const full = p.backups.filter((b) => b.type === "full").length;
                      const retention = p.retention ? `${full} / ${p.retention.retentionFull}${p.retention.met ? "" : " **!**"}` : `${full} / –`;
                      const wal = p.newestWal ? `${cell(p.newestWal.name)} (${formatDuration(p.newestWal.ageSeconds)} / ${p.newestWal.thresholdSeconds !== null ? formatDuration(p.newestWal.thresholdSeconds) : "–"})${p.newestWal.lagMet === false ? " **stale**" : ""}` : "**none**";
                      const continuity = p.walSegments === 0 ? "**no WAL**" : gaps ? `**${gaps} gap(s)**` : `continuous (${p.timelines.length} timeline(s))`;
                      return `| ${cell(p.host)} | ${cell(p.target)} | ${cell(p.keyId)}${p.expected ? "" : p.olderKey ? " (older key)" : " (not expected)"} | ${retention} | ${p.backups.length} | ${cell(p.oldestRestorable ?? "")} | ${wal} | ${continuity} |`;
                  }),
                  "",
              ]
            : []),
        "## Keys",
        "",
        ...report.keys.map((k) => `- \`${cell(k.keyId)}\`${k.current ? " (current)" : ""}: ${k.status}, first used ${k.firstUsedAt ?? "never"}${k.ageDays !== null ? ` (${k.ageDays} days; policy ${k.rotationDays})` : ""}`),
        "",
        "## Storage",
        "",
        `- Object Lock: ${report.objectLock ? `${report.objectLock.mode}, ${report.objectLock.days} days` : "off"}`,
        `- Retention: daily ${report.retention.daily}, weekly ${report.retention.weekly}, monthly ${report.retention.monthly}, yearly ${report.retention.yearly}; lifecycle rules: ${report.lifecycleRules.map((r) => r.id).join(", ")}`,
        "",
        "## What this report cannot know",
        "",
        ...report.cannotKnow.map((c) => `- ${c}`),
        "",
    ];
    return lines.join("\n");
}
