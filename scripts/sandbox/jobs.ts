/**
 * Runs a job on the sandbox host the way systemd would start its timer's
 * service: the unit's ExecStart as its User and Group, in the user's groups
 * plus SupplementaryGroups, with its Environment,
 * UMask, NoNewPrivileges, ambient capabilities (through setpriv) and SIGPIPE
 * ignored unless IgnoreSIGPIPE=no (systemd's default), after
 * the maintenance units it Wants and orders itself after, and before the
 * ones ordered after it.
 */
import { shellCommand, shellQuote } from "../../render/shell";
import type { Exec } from "./apply";

export interface UnitInfo {
    readonly name: string;
    readonly user: string;
    readonly group: string;
    readonly supplementaryGroups: string[];
    readonly environment: Record<string, string>;
    readonly execStart: string[][];
    readonly capabilities: string[];
    readonly wants: string[];
    readonly after: string[];
    readonly umask: string;
    readonly ignoreSigpipe: boolean;
}

/** Parses the directives this runner honours. Values are ours, so words split on spaces and `$$` means `$`. */
export function parseUnit(name: string, text: string): UnitInfo {
    const get = (key: string) => text.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1).trim());
    const words = (v: string) => v.split(/\s+/).filter(Boolean).map((w) => w.replace(/\$\$/g, "$"));
    return {
        name,
        user: get("User")[0] ?? "root",
        group: get("Group")[0] || (get("User")[0] ?? "root"),
        supplementaryGroups: get("SupplementaryGroups").flatMap(words),
        environment: Object.fromEntries(get("Environment").map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)])),
        execStart: get("ExecStart").map(words),
        capabilities: get("AmbientCapabilities").flatMap(words),
        wants: get("Wants").flatMap(words),
        after: get("After").flatMap(words),
        umask: get("UMask")[0] ?? "0022",
        ignoreSigpipe: !/^(no|false|off|0)$/.test(get("IgnoreSIGPIPE")[0] ?? "yes"),
    };
}

export interface JobRun {
    readonly unit: string;
    readonly code: number;
    readonly seconds: number;
    readonly stdout: string;
    readonly stderr: string;
}

function commandFor(unit: UnitInfo, argv: string[]): string {
    const caps = unit.capabilities.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`).join(",");
    // The user's own groups (systemd's initgroups) plus the unit's SupplementaryGroups.
    const groups = `groups=$(id -G -- ${shellQuote(unit.user)} | tr ' ' ,)${unit.supplementaryGroups.map((g) => `,$(getent group ${shellQuote(g)} | cut -d: -f3)`).join("")}`;
    const rest = [
        "--no-new-privs",
        ...(caps ? [`--inh-caps=${caps}`, `--ambient-caps=${caps}`] : []),
        "--", "env", "-i", ...(unit.ignoreSigpipe ? ["--ignore-signal=PIPE"] : []), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
        ...Object.entries(unit.environment).map(([k, v]) => `${k}=${v}`),
        ...argv,
    ];
    const identity = `setpriv --reuid=${shellQuote(unit.user)} --regid=${shellQuote(unit.group)} --groups="$groups"`;
    return `bash -c ${shellQuote(`umask ${unit.umask}; cd /; ${groups}; exec ${identity} ${shellCommand(...rest)}`)}`;
}

async function readUnit(exec: Exec, name: string): Promise<UnitInfo> {
    const r = await exec(shellCommand("cat", `/etc/systemd/system/${name}`));
    if (r.code !== 0) throw new Error(`unit ${name} is not installed: ${r.stderr.trim()}`);
    return parseUnit(name, r.stdout);
}

/** Runs one unit's ExecStart lines in order, as systemd would. */
export async function runUnit(exec: Exec, unit: UnitInfo): Promise<JobRun> {
    const started = Date.now();
    let stdout = "";
    let stderr = "";
    let code = 0;
    for (const argv of unit.execStart) {
        const r = await exec(commandFor(unit, argv));
        stdout += r.stdout;
        stderr += r.stderr;
        code = r.code;
        if (code !== 0) break; // systemd stops at the first failing ExecStart
    }
    return { unit: unit.name, code, seconds: (Date.now() - started) / 1000, stdout, stderr };
}

/**
 * Runs `argv` the way `service`'s ExecStart runs (its user, groups,
 * environment, umask and capabilities), in place of its own command: a
 * script a job runs itself (backup-sync.sh after a backup), as that job would.
 */
export async function runAsUnit(exec: Exec, service: string, name: string, argv: string[]): Promise<JobRun> {
    const unit = await readUnit(exec, service);
    return runUnit(exec, { ...unit, name, wants: [], execStart: [argv] });
}

/** The directory of the script `service` runs (its first ExecStart's command). */
export async function scriptDirOf(exec: Exec, service: string): Promise<string> {
    const command = (await readUnit(exec, service)).execStart[0]?.[0];
    if (!command?.includes("/")) throw new Error(`unit ${service} has no ExecStart with a script path`);
    return command.slice(0, command.lastIndexOf("/"));
}

/** Runs `hx-backup-<job>.service` with the units it pulls in, in systemd's order. Returns the job's own run last. */
export async function runJobService(exec: Exec, service: string): Promise<JobRun[]> {
    const unit = await readUnit(exec, service);
    const pulled = await Promise.all(unit.wants.filter((w) => w.startsWith("hx-backup-")).map((w) => readUnit(exec, w)));
    const before = pulled.filter((p) => unit.after.includes(p.name));
    const after = pulled.filter((p) => !unit.after.includes(p.name));
    const runs: JobRun[] = [];
    for (const p of before) runs.push(await runUnit(exec, p)); // Wants= does not stop the job when these fail
    const own = await runUnit(exec, unit);
    for (const p of after) runs.push(await runUnit(exec, p));
    runs.push(own);
    return runs;
}
