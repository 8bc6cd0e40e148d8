/**
 * What the stack promises about its bucket, taken from the same functions the
 * deploy uses (hostJobs for schedules, renderLifecycleRules for the
 * lifecycle), so the report measures the bucket against the deployed policy
 * and not a copy of it.
 */
import { RETENTION_CLASSES, type RetentionClass } from "../../config/lifecycle";
import type { StackConfig } from "../../config/types";
import { hostJobs, type Job } from "../../render/jobs";
import { repositoryFor, stanzaName } from "../../render/pgbackrest";
import { slug } from "../../render/slug";
import { renderLifecycleRules } from "../../render/storagePolicy";
import { renderFacts } from "../render";
import type { ExpectedHost, ExpectedJob, ExpectedPitr, ExpectedSource, ReportPolicy } from "./model";

/** Job types that write backups into the bucket (verification and drift write none). */
export const BACKUP_TYPES = ["postgresql", "redis", "application", "configuration"] as const;

export function reportZone(retentionTimeZone: string): { zone: string; note: string } {
    if (retentionTimeZone === "local") {
        return {
            zone: "UTC",
            note: "retentionTimeZone is local (each host's own zone), which the bucket does not record: days, weeks, months and years are counted in UTC here, so a backup near midnight may fall on a neighbouring day",
        };
    }
    return { zone: retentionTimeZone, note: `days, weeks, months and years are counted in ${retentionTimeZone} (retentionTimeZone), as retention and sync count them` };
}

/** What the report knows of a job: its schedule, in words and in seconds. */
const expectedJob = (j: Job): ExpectedJob => ({ name: j.name, onCalendar: j.onCalendar, description: j.description, maxIntervalSeconds: j.maxIntervalSeconds, jitterSeconds: j.jitterSeconds });

function expectedSources(config: StackConfig, host: StackConfig["hosts"][number]): ExpectedSource[] {
    const jobs = hostJobs(config, host);
    return BACKUP_TYPES.flatMap((type) => {
        const typeJobs = jobs.filter((j) => j.type === type);
        if (typeJobs.length === 0) return [];
        const targets = type === "postgresql" ? (host.postgresql?.databases ?? []).map((d) => ({ configured: d.name, stored: slug(d.name) })) : [];
        return [
            {
                type,
                targets,
                jobs: typeJobs.map(expectedJob),
            },
        ];
    });
}

/** The jobs whose runs restore-test every source of the host and write the records the bucket holds. */
function restoreTestJobs(config: StackConfig, host: StackConfig["hosts"][number]): ExpectedJob[] {
    return hostJobs(config, host)
        .filter((j) => j.script === "backup-verify.sh" && j.args.includes("--restore-test"))
        .map(expectedJob);
}

/** The host's pgBackRest repository in the bucket for the current key (render/pgbackrest.ts), or null when it keeps a local one or has no PITR. */
function expectedPitr(config: StackConfig, host: StackConfig["hosts"][number], currentKeyId: string): ExpectedPitr | null {
    const pitr = host.postgresql?.pitr;
    if (!pitr) return null;
    const repo = repositoryFor(config, host, currentKeyId);
    if (repo.type !== "s3") return null;
    const jobs = hostJobs(config, host).map(expectedJob);
    const full = jobs.find((j) => j.name === "pitr-full")!;
    return {
        host: host.name,
        stanza: stanzaName(host),
        keyId: currentKeyId,
        repository: `${repo.path.replace(/^\/+/, "")}/`,
        retentionFull: pitr.retentionFull,
        fullJob: full,
        backupJobs: jobs.filter((j) => j.name === "pitr-full" || j.name === "pitr-differential"),
    };
}

export function policyFromStack(config: StackConfig): ReportPolicy {
    const { zone, note } = reportZone(config.retentionTimeZone);
    const facts = renderFacts(config);
    const expirationDays = Object.fromEntries(
        RETENTION_CLASSES.map((c) => [c, config.storage.lifecycle.find((l) => l.retentionClass === c)?.expirationDays ?? 0]),
    ) as Record<RetentionClass, number>;
    const hosts: ExpectedHost[] = config.hosts.map((h) => ({ name: h.name, remoteSync: h.remoteSync, sources: expectedSources(config, h), restoreTestJobs: restoreTestJobs(config, h), pitr: expectedPitr(config, h, facts.currentKeyId) }));
    return {
        stack: config.stack,
        bucket: {
            name: config.storage.bucketName,
            prefix: config.storage.prefix,
            region: config.storage.region,
            ...(config.storage.endpoint ? { endpoint: config.storage.endpoint } : {}),
            retentionBy: config.storage.retentionBy,
        },
        retention: config.retention,
        timeZone: zone,
        timeZoneNote: note,
        encryption: { algorithm: config.encryption.algorithm, currentKeyId: facts.currentKeyId, keyIds: facts.keyIds, rotationDays: config.encryption.rotationDays },
        objectLock: config.storage.objectLock ?? null,
        overdueGraceSeconds: config.alertThresholds.overdueGraceSeconds,
        lifecycleRules: renderLifecycleRules({
            prefix: config.storage.prefix,
            lifecycle: config.storage.lifecycle,
            retentionBy: config.storage.retentionBy,
            noncurrentVersionExpireDays: config.storage.noncurrentVersionExpireDays,
            abortMultipartDays: config.storage.abortMultipartDays,
        }),
        expirationDays,
        hosts,
    };
}
