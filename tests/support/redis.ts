/** A throwaway redis-server on a free loopback port, stopped by PID. */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { chownR, freePort, isRoot, lookupUser, removeDir, run, tempDir, waitFor, type OsUser } from "./env";

export interface RedisInstance {
    readonly dir: string;
    readonly port: number;
    readonly rdbPath: string;
    readonly password: string | undefined;
    cli(...args: string[]): Promise<string>;
    stop(): Promise<void>;
    readonly pid: () => number | undefined;
}

export async function startRedis(opts: { password?: string; user?: OsUser } = {}): Promise<RedisInstance> {
    const owner = opts.user ?? (isRoot ? lookupUser("redis") : undefined);
    const dir = tempDir("hx-redis-");
    const port = await freePort();
    const conf = [`port ${port}`, "bind 127.0.0.1", `dir ${dir}`, "dbfilename dump.rdb", "save \"\"", "appendonly no", "daemonize no", "protected-mode yes"];
    if (opts.password) conf.push(`requirepass "${opts.password}"`);
    writeFileSync(join(dir, "redis.conf"), conf.join("\n") + "\n", { mode: 0o600 });
    if (owner) chownR(dir, owner);
    const child: ChildProcess = spawn("redis-server", [join(dir, "redis.conf")], {
        stdio: ["ignore", "ignore", "ignore"],
        ...(owner && isRoot ? { uid: owner.uid, gid: owner.gid } : {}),
    });
    const env: Record<string, string> = opts.password ? { REDISCLI_AUTH: opts.password } : {};
    const cli = async (...args: string[]) => {
        const r = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { env });
        if (r.code !== 0) throw new Error(`redis-cli ${args.join(" ")}: ${r.stderr}`);
        return r.stdout.trim();
    };
    await waitFor(async () => (await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "ping"], { env })).stdout.includes("PONG"), 60_000, "redis to answer PING");
    return {
        dir,
        port,
        rdbPath: join(dir, "dump.rdb"),
        password: opts.password,
        cli,
        pid: () => child.pid,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) {
                const gone = new Promise<void>((r) => child.on("exit", () => r()));
                child.kill("SIGTERM");
                await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
                if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
            }
            removeDir(dir);
        },
    };
}
