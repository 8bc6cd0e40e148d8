/** systemd units for a host's jobs, rendered from templates/systemd. */
import type { HostSpec, StackConfig } from "../config/types";
import type { Job } from "./jobs";
import { renderTemplate } from "./template";
import { hostConfigPath, UNIT_DIR } from "./paths";
import { pgbackrestWritablePaths } from "./pgbackrest";
import { PITR_USER } from "./hostConfig";

export { UNIT_DIR };
export const unitName = (job: string, kind: "service" | "timer") => `hx-backup-${job}.${kind}`;
export const VACUUM_UNIT = "hx-backup-postgresql-vacuum-analyze.service";
export const ANALYZE_UNIT = "hx-backup-postgresql-analyze.service";

/** What each backup type needs beyond an unprivileged user, granted as ambient capabilities (the test hosts' jobs get them too). */
export const CAPABILITIES: Record<Job["type"], string> = {
    postgresql: "",
    // Read every file whatever its owner or mode; owners, modes, ACLs and xattrs are read as data.
    redis: "CAP_DAC_READ_SEARCH",
    application: "CAP_DAC_READ_SEARCH",
    // Also read the firewall ruleset over netlink (nft list ruleset / iptables-save).
    configuration: "CAP_DAC_READ_SEARCH CAP_NET_ADMIN",
    // Restore tests list and re-read stored artifacts only.
    verification: "",
    // Stat and hash installed files, some readable by root only (sudoers is 0440).
    drift: "CAP_DAC_READ_SEARCH",
    // pgBackRest runs as postgres, which owns the cluster it backs up.
    pitr: "",
};

/** systemd unit values must be one line, and '%' starts a specifier. */
function unitValue(field: string, value: string): string {
    if (/[\n\r%]/.test(value)) throw new Error(`${field}: ${JSON.stringify(value)} cannot go in a systemd unit (newline or '%')`);
    return value;
}

/** One ExecStart word: systemd expands `$NAME` there, and `$$` is a literal `$`. */
function execWord(word: string): string {
    return unitValue("ExecStart", word).replace(/\$/g, "$$$$");
}

/**
 * The unit's user and what it may write. pgBackRest's jobs run as postgres,
 * in the backup group to read backup.json, and also write pgBackRest's own
 * directories and a local repository.
 */
function runAs(config: StackConfig, host: HostSpec, job: Job) {
    const p = config.paths;
    const common = [p.storageDir, p.logDir, p.textfileDir];
    if (job.runAs === "backup") {
        return { user: config.backupUser, group: config.backupUser, supplementaryGroups: "", readWritePaths: common.map((d) => `-${d}`).join(" "), removeIpc: "yes" };
    }
    const writable = [...common, ...pgbackrestWritablePaths(config, host)];
    // RemoveIPC=no: at the unit's end systemd would remove every IPC object of the user, the live server's shared memory and semaphores with them.
    return { user: PITR_USER, group: PITR_USER, supplementaryGroups: config.backupUser, readWritePaths: writable.map((d) => `-${unitValue("ReadWritePaths", d)}`).join(" "), removeIpc: "no" };
}

export interface RenderedUnit {
    readonly name: string;
    readonly content: string;
}

function wantsMaintenance(setting: "never" | "weekly" | "always", job: Job): boolean {
    return setting === "always" || (setting === "weekly" && job.args.includes("weekly"));
}

export function renderJobUnits(config: StackConfig, host: HostSpec, job: Job): RenderedUnit[] {
    const pg = host.postgresql;
    const vacuum = job.type === "postgresql" && pg !== undefined && wantsMaintenance(pg.vacuumAnalyzeBefore, job);
    const analyze = job.type === "postgresql" && pg !== undefined && wantsMaintenance(pg.analyzeAfter, job);
    const common = { stack: config.stack, host: host.name, job: job.name, description: unitValue("description", job.description) };
    const service = renderTemplate("systemd/hx-backup-job.service", {
        ...common,
        after: vacuum ? ` ${VACUUM_UNIT}` : "",
        wants: [vacuum ? VACUUM_UNIT : "", analyze ? ANALYZE_UNIT : ""].filter(Boolean).map((u) => ` ${u}`).join(""),
        ...runAs(config, host, job),
        configFile: hostConfigPath(config),
        execStart: [`${config.paths.scriptDir}/${job.script}`, ...job.args].map(execWord).join(" "),
        capabilities: CAPABILITIES[job.type],
    });
    const timer = renderTemplate("systemd/hx-backup-job.timer", {
        ...common,
        onCalendar: job.onCalendar,
        randomizedDelaySec: job.jitterSeconds,
    });
    return [
        { name: unitName(job.name, "service"), content: service },
        { name: unitName(job.name, "timer"), content: timer },
    ];
}

/** VACUUM ANALYZE / ANALYZE units, run as postgres and pulled in by the backup jobs. */
export function renderMaintenanceUnits(config: StackConfig, host: HostSpec, jobs: readonly Job[]): RenderedUnit[] {
    const pg = host.postgresql;
    if (!pg) return [];
    const pgJobs = jobs.filter((j) => j.type === "postgresql");
    const target = [`--host=${pg.host}`, `--port=${pg.port}`];
    const execFor = (mode: string) =>
        (pg.databases.length ? pg.databases.map((d) => [`--dbname=${d.name}`]) : [["--all"]])
            .map((dbArgs) => `ExecStart=/usr/bin/vacuumdb ${mode} --quiet ${[...target, ...dbArgs].map(execWord).join(" ")}`)
            .join("\n");
    const units: RenderedUnit[] = [];
    if (pgJobs.some((j) => wantsMaintenance(pg.vacuumAnalyzeBefore, j))) {
        units.push({
            name: VACUUM_UNIT,
            content: renderTemplate("systemd/hx-backup-postgresql-maintenance.service", {
                stack: config.stack, host: host.name, operation: "VACUUM ANALYZE before backup", after: "network-online.target", execStart: execFor("--analyze"),
            }),
        });
    }
    if (pgJobs.some((j) => wantsMaintenance(pg.analyzeAfter, j))) {
        units.push({
            name: ANALYZE_UNIT,
            content: renderTemplate("systemd/hx-backup-postgresql-maintenance.service", {
                stack: config.stack, host: host.name, operation: "ANALYZE after backup",
                after: pgJobs.map((j) => unitName(j.name, "service")).join(" "), execStart: execFor("--analyze-only"),
            }),
        });
    }
    return units;
}
