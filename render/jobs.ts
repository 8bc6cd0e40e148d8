/**
 * The scheduled jobs of a host, derived from its roles. Each job becomes one
 * systemd service + timer pair named `hx-backup-<name>`.
 */
import type { HostSpec, ScheduleKey, StackConfig } from "../config/types";

/** Artifact type; also the `type` label of every metric. */
export type BackupType = "postgresql" | "redis" | "application" | "configuration" | "verification" | "drift";

export interface Job {
    /** Unit stem: `hx-backup-<name>.service` / `.timer`. */
    readonly name: string;
    readonly type: BackupType;
    /** Script file name in the script directory. */
    readonly script: string;
    readonly args: readonly string[];
    readonly scheduleKey: ScheduleKey;
    readonly onCalendar: string;
    readonly description: string;
    readonly maxIntervalSeconds: number;
    /** The timer's RandomizedDelaySec: how late after its scheduled time a run may start. */
    readonly jitterSeconds: number;
}

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
    return TEMPLATES.filter((t) => t.when(host)).map((t) => {
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
        };
    });
}
