/**
 * The scheduled jobs of a host, derived from its roles. Each job becomes one
 * systemd service + timer pair named `hx-backup-<name>`.
 */
import { parseSchedule, type Schedule } from "../config/schedule";
import type { HostSpec, ScheduleKey, StackConfig } from "../config/types";

/** Artifact type; also the `type` label of every metric. */
export type BackupType = "postgresql" | "redis" | "application" | "configuration" | "verification" | "drift" | "pitr";

export interface Job {
    /** Unit stem: `hx-backup-<name>.service` / `.timer`. */
    readonly name: string;
    readonly type: BackupType;
    /** Script file name in the script directory. */
    readonly script: string;
    readonly args: readonly string[];
    /** The stack schedule it follows, or `host` for a per-host one (postgresql.pitr). */
    readonly scheduleKey: ScheduleKey | "host";
    readonly onCalendar: string;
    readonly description: string;
    readonly maxIntervalSeconds: number;
    /** The timer's RandomizedDelaySec: how late after its scheduled time a run may start. */
    readonly jitterSeconds: number;
    /** The system user the unit runs as: the backup user, or postgres for pgBackRest (PITR). */
    readonly runAs: "backup" | "postgres";
    /** The one metrics target the job writes (PITR's jobs share a type); empty: one per source of its type. */
    readonly target: string;
}

/** How often the archive status job samples pg_stat_archiver and the recovery window. */
export const PITR_STATUS_SCHEDULE = "*/5 * * * *";

interface JobTemplate {
    name: string;
    type: BackupType;
    script: string;
    args: string[];
    scheduleKey: ScheduleKey;
    when: (h: HostSpec) => boolean;
}

const TEMPLATES: readonly JobTemplate[] = [
    { name: "postgresql-daily", type: "postgresql", script: "postgresql-backup.sh", args: ["daily"], scheduleKey: "databaseDaily", when: (h) => h.roles.includes("postgresql") },
    { name: "postgresql-weekly", type: "postgresql", script: "postgresql-backup.sh", args: ["weekly"], scheduleKey: "databaseWeekly", when: (h) => h.roles.includes("postgresql") },
    { name: "redis-daily", type: "redis", script: "redis-backup.sh", args: [], scheduleKey: "databaseDaily", when: (h) => h.roles.includes("redis") },
    { name: "application-daily", type: "application", script: "application-backup.sh", args: [], scheduleKey: "applicationDaily", when: (h) => h.roles.includes("application") },
    { name: "configuration-daily", type: "configuration", script: "configuration-backup.sh", args: [], scheduleKey: "configurationDaily", when: (h) => h.roles.includes("configuration") },
    { name: "verification-weekly", type: "verification", script: "backup-verify.sh", args: ["--all", "--restore-test"], scheduleKey: "verification", when: (h) => h.roles.some((r) => r !== "monitoring") },
    { name: "drift-check", type: "drift", script: "backup-drift-check.sh", args: [], scheduleKey: "driftCheck", when: () => true },
];

export function hostJobs(config: StackConfig, host: HostSpec): Job[] {
    const stackJobs = TEMPLATES.filter((t) => t.when(host)).map((t): Job => {
        const schedule = config.schedules[t.scheduleKey];
        return {
            name: t.name,
            type: t.type,
            script: t.script,
            args: t.args,
            scheduleKey: t.scheduleKey,
            onCalendar: schedule.onCalendar,
            description: schedule.description,
            maxIntervalSeconds: schedule.maxIntervalSeconds,
            jitterSeconds: config.randomizedDelaySec,
            runAs: "backup",
            target: "",
        };
    });
    return [...stackJobs, ...pitrJobs(config, host)];
}

/** pgBackRest's jobs, run as postgres: full and differential backups on the host's schedules, and the archive status. */
function pitrJobs(config: StackConfig, host: HostSpec): Job[] {
    const pitr = host.postgresql?.pitr;
    if (!pitr) return [];
    const job = (name: string, script: string, args: string[], schedule: Schedule, jitterSeconds: number): Job => ({
        name, type: "pitr", script, args, scheduleKey: "host",
        onCalendar: schedule.onCalendar, description: schedule.description, maxIntervalSeconds: schedule.maxIntervalSeconds,
        jitterSeconds, runAs: "postgres", target: name.replace(/^pitr-/, ""),
    });
    return [
        job("pitr-full", "pitr-backup.sh", ["full"], pitr.full, config.randomizedDelaySec),
        job("pitr-differential", "pitr-backup.sh", ["diff"], pitr.differential, config.randomizedDelaySec),
        // A sample, not a backup: on time, with no start delay.
        job("pitr-archive", "pitr-status.sh", [], parseSchedule(PITR_STATUS_SCHEDULE), 0),
        // pgbackrest verify and a restore test, on the stack's verification schedule.
        { ...job("pitr-verify", "pitr-verify.sh", [], config.schedules.verification, config.randomizedDelaySec), scheduleKey: "verification" },
    ];
}
