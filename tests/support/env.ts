/**
 * Shared helpers for integration tests that run real tools: tool checks,
 * temp dirs, free ports, unprivileged users, running commands.
 */
import { spawn, spawnSync, type SpawnOptions } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const isCI = process.env.CI === "true";

/** Returns the path of a tool, or undefined. */
export function which(tool: string): string | undefined {
    if (tool.startsWith("/")) {
        return spawnSync("test", ["-x", tool]).status === 0 ? tool : undefined;
    }
    const r = spawnSync("bash", ["-c", 'command -v -- "$1"', "_", tool], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * Which of the tools are missing. Under CI=true a missing tool is an error
 * (throws), so the suite fails instead of silently skipping.
 */
export function missingTools(tools: readonly string[]): string[] {
    const missing = tools.filter((t) => which(t) === undefined);
    if (missing.length > 0 && isCI) {
        throw new Error(`required tools missing under CI=true: ${missing.join(", ")}`);
    }
    return missing;
}

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

export function tempDir(prefix = "hx-test-"): string {
    const d = mkdtempSync(join(tmpdir(), prefix));
    chmodSync(d, 0o755);
    return d;
}

export function removeDir(d: string): void {
    rmSync(d, { recursive: true, force: true });
}

/** One free-port finder for the whole repo: the sandbox's. */
export { freePort } from "../../scripts/sandbox/host";

export interface OsUser {
    readonly name: string;
    readonly uid: number;
    readonly gid: number;
}

export function lookupUser(name: string): OsUser | undefined {
    const r = spawnSync("id", ["-u", name], { encoding: "utf8" });
    if (r.status !== 0) return undefined;
    const g = spawnSync("id", ["-g", name], { encoding: "utf8" });
    return { name, uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** The dedicated unprivileged user the scripts run as in tests (created when root). */
export const TEST_USER = "hxbtest";

export function ensureTestUser(): OsUser | undefined {
    let u = lookupUser(TEST_USER);
    if (!u && isRoot) {
        spawnSync("useradd", ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", TEST_USER]);
        u = lookupUser(TEST_USER);
    }
    return u;
}

export function chownR(path: string, user: OsUser): void {
    spawnSync("chown", ["-R", `${user.uid}:${user.gid}`, "--", path]);
}

export function chown(path: string, user: OsUser): void {
    chownSync(path, user.uid, user.gid);
}

export interface RunResult {
    readonly code: number | null;
    readonly signal: NodeJS.Signals | null;
    readonly stdout: string;
    readonly stderr: string;
}

export interface RunOptions {
    readonly user?: OsUser;
    readonly env?: Record<string, string | undefined>;
    readonly cwd?: string;
    readonly input?: string;
    readonly timeoutMs?: number;
}

const BASE_ENV = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    LANG: "C.UTF-8",
};

/** Spawn a command; returns the child (for kill tests) and a promise of its result. */
export function start(
    cmd: string,
    args: readonly string[],
    opts: RunOptions = {},
): { pid: number; done: Promise<RunResult>; exited: Promise<number | null>; kill: (sig?: NodeJS.Signals) => void } {
    const env: Record<string, string> = { ...BASE_ENV, HOME: opts.user ? "/nonexistent" : (process.env.HOME ?? "/root") };
    for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;
    const so: SpawnOptions = { env, cwd: opts.cwd ?? "/", stdio: ["pipe", "pipe", "pipe"], detached: false };
    if (opts.user && isRoot) {
        so.uid = opts.user.uid;
        so.gid = opts.user.gid;
    }
    const child = spawn(cmd, args, so);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<RunResult>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", (code, signal) => {
            if (timer) clearTimeout(timer);
            resolve({ code, signal, stdout, stderr });
        });
    });
    /** Resolves when the process itself exits (orphaned children may keep its pipes open). */
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    if (opts.timeoutMs) timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    return { pid: child.pid ?? -1, done, exited, kill: (sig: NodeJS.Signals = "SIGTERM") => child.kill(sig) };
}

export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return start(cmd, args, { timeoutMs: 300_000, ...opts }).done;
}

/** Run and throw with the output when the exit code is not 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const r = await run(cmd, args, opts);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
}

export async function sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
        if (await check()) return;
        await sleep(100);
    }
    throw new Error(`waited ${timeoutMs / 1000} s for ${what}`);
}

/** The PIDs below a process, its children's children included (from /proc). */
export function descendants(pid: number): number[] {
    const children = new Map<number, number[]>();
    for (const d of readdirSync("/proc")) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const stat = readFileSync(`/proc/${d}/stat`, "utf8");
            const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
            children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
        } catch {
            // gone meanwhile
        }
    }
    const out: number[] = [];
    const stack = [pid];
    while (stack.length > 0) {
        for (const c of children.get(stack.pop()!) ?? []) {
            out.push(c);
            stack.push(c);
        }
    }
    return out;
}
