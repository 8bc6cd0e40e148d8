/** Redis: BGSAVE + a copy of the RDB vs redis-backup.sh, on >= 1M keys. */
import { chmodSync, copyFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { run, sleep } from "../tests/support/env";
import { makeHost, renderedSection, type TestHost } from "../tests/support/host";
import { startRedis, type RedisInstance } from "../tests/support/redis";
import { fmtMiB, log, median, order, round, timed } from "./common";
import { TreeSampler } from "./memory";

export interface RedisSetup {
    redis: RedisInstance;
    host: TestHost;
    keys: number;
}

/** RESP for `SET`/`HSET` commands: strings of mixed text and hashes, like a cache and session store. */
function resp(args: string[]): string {
    let s = `*${args.length}\r\n`;
    for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    return s;
}

export async function setupRedis(keys: number): Promise<RedisSetup> {
    const host = makeHost();
    const redis = await startRedis(host.user ? { user: host.user } : {});
    chmodSync(redis.dir, 0o755);
    const t = await timed(async () => {
        const batch = 100_000;
        for (let start = 0; start < keys; start += batch) {
            const parts: string[] = [];
            for (let i = start; i < Math.min(keys, start + batch); i++) {
                const r = Math.random().toString(36).slice(2);
                if (i % 10 === 0) parts.push(resp(["HSET", `session:${i}`, "user", `u${(i * 7919) % 100000}`, "token", r + r, "ip", `10.${i % 250}.${(i >> 8) % 250}.${i % 200}`, "seen", String(1_700_000_000 + i)]));
                else parts.push(resp(["SET", `cache:page:${i}`, `{"id":${i},"title":"item ${i}","price":${(i % 997) / 10},"tag":"${r}","body":"${r.repeat(3)}"}`]));
            }
            const res = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(redis.port), "--pipe"], { input: parts.join(""), timeoutMs: 600_000 });
            if (res.code !== 0) throw new Error(`redis-cli --pipe: ${res.stderr}`);
        }
    });
    const n = Number(await redis.cli("DBSIZE"));
    log(`  loaded ${n} Redis keys in ${t.seconds.toFixed(0)} s`);
    host.config.redis = { ...renderedSection("redis"), host: "127.0.0.1", port: redis.port, rdbPath: redis.rdbPath, authFile: "" };
    host.writeConfig();
    return { redis, host, keys: n };
}

const field = (info: string, name: string) => new RegExp(`^${name}:(\\S+)`, "m").exec(info)?.[1];

/** BGSAVE, wait for it (polled every 50 ms), copy the RDB and fsync the copy. */
async function plainBgsaveCopy(s: RedisSetup, dest: string): Promise<void> {
    const before = Number(field(await s.redis.cli("INFO", "persistence"), "rdb_saves"));
    const out = await s.redis.cli("BGSAVE");
    if (!/started/.test(out)) throw new Error(`BGSAVE: ${out}`);
    for (;;) {
        const info = await s.redis.cli("INFO", "persistence");
        if (field(info, "rdb_bgsave_in_progress") === "0" && Number(field(info, "rdb_saves")) > before) {
            if (field(info, "rdb_last_bgsave_status") !== "ok") throw new Error("BGSAVE failed");
            break;
        }
        await sleep(50);
    }
    copyFileSync(s.redis.rdbPath, dest);
    await run("sync", ["--data", dest]);
}

export interface RedisResult {
    keys: number;
    rdbBytes: number;
    artifactBytes: number;
    rounds: { plainSeconds: number; pipelineSeconds: number; ratio: number }[];
    ratio: number;
    /** Median of the per-round pipeline - plain seconds: the job's cost beyond the save and copy. */
    fixedSeconds: number;
    profile: { seconds: number; cpuByComm: Record<string, number>; peakRssBytes: number };
}

export async function benchRedis(s: RedisSetup, rounds: number): Promise<RedisResult> {
    const dest = join(s.host.root, "plain-copy.rdb");
    const storage = join(s.host.config.paths.storage, "redis");
    const out: RedisResult["rounds"] = [];
    const pipeline = async () => {
        rmSync(storage, { recursive: true, force: true });
        const r = await s.host.runScript("redis-backup.sh", [], { timeoutMs: 1_800_000 });
        if (r.code !== 0) throw new Error(`redis-backup.sh exited ${r.code}: ${r.stderr.slice(-2000)}`);
    };
    for (let i = 0; i < rounds; i++) {
        const t: Record<string, number> = {};
        for (const item of order(i, ["plain", "hx"] as const)) {
            if (item === "plain") {
                rmSync(dest, { force: true });
                t.plain = (await timed(() => plainBgsaveCopy(s, dest))).seconds;
            } else {
                t.hx = (await timed(pipeline)).seconds;
            }
        }
        const row = { plainSeconds: round(t.plain!), pipelineSeconds: round(t.hx!), ratio: round(t.hx! / t.plain!, 3) };
        out.push(row);
        log(`  redis round ${i + 1}: BGSAVE + copy ${row.plainSeconds} s, redis-backup.sh ${row.pipelineSeconds} s (ratio ${row.ratio})`);
    }
    const target = `redis-${s.redis.port}`;
    const [mname] = s.host.manifests("redis", target);
    const m = s.host.readManifest("redis", target, mname!) as { sizes: { stored: number } };
    // One sampled run: CPU by process.
    rmSync(storage, { recursive: true, force: true });
    const t0 = process.hrtime.bigint();
    const child = s.host.startScript("redis-backup.sh", [], { timeoutMs: 1_800_000 });
    const sampler = new TreeSampler(child.pid).start();
    const r = await child.done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const smp = sampler.stop();
    if (r.code !== 0) throw new Error(`redis-backup.sh exited ${r.code}`);
    log(`  redis profile: ${seconds.toFixed(1)} s, peak RSS ${fmtMiB(smp.peakRssBytes)}; CPU s by process: ${JSON.stringify(smp.cpuByComm)}`);
    return {
        keys: s.keys,
        rdbBytes: statSync(dest).size,
        artifactBytes: m.sizes.stored,
        rounds: out,
        ratio: round(median(out.map((x) => x.ratio)), 3),
        fixedSeconds: round(median(out.map((x) => x.pipelineSeconds - x.plainSeconds))),
        profile: { seconds: round(seconds), cpuByComm: smp.cpuByComm, peakRssBytes: smp.peakRssBytes },
    };
}

export async function teardownRedis(s: RedisSetup | undefined): Promise<void> {
    await s?.redis.stop();
    s?.host.cleanup();
}
