/**
 * redis-backup.sh against a real redis-server with AUTH from a file:
 * BGSAVE wait, redis-check-rdb in the pipeline, key count, restore test,
 * restore to a file; password never on argv or in logs.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRoot, missingTools, run, start, waitFor } from "../../support/env";
import { alarmingLines, giveToUser, makeHost, renderedSection, type TestHost } from "../../support/host";
import { startRedis, type RedisInstance } from "../../support/redis";

const missing = missingTools(["redis-server", "redis-cli", "redis-check-rdb", "zstd", "jq", "openssl"]);
const PASSWORD = "s3cret pass'word $(x)";

describe.skipIf(missing.length > 0)("redis-backup.sh", { timeout: 120_000 }, () => {
    let redis: RedisInstance;
    let host: TestHost;

    beforeAll(async () => {
        host = makeHost();
        redis = await startRedis({ password: PASSWORD, ...(host.user ? { user: host.user } : {}) });
        for (let i = 0; i < 200; i++) await redis.cli("SET", `key:${i}`, `value ${i}`);
        await redis.cli("HSET", "h", "a", "1", "b", "2");
        const authFile = join(host.root, "etc", "redis.auth");
        writeFileSync(authFile, `${PASSWORD}\n`, { mode: 0o600 });
        giveToUser(host, authFile);
        chmodSync(redis.dir, 0o755);
        host.config.redis = { ...renderedSection("redis"), host: "127.0.0.1", port: redis.port, rdbPath: redis.rdbPath, authFile };
        host.writeConfig();
    });

    afterAll(async () => {
        await redis?.stop();
        host?.cleanup();
    });

    it("backs up the RDB after BGSAVE, checks it and records the key count", async () => {
        const r = await host.runScript("redis-backup.sh");
        expect(r.code, r.stderr).toBe(0);
        const target = `redis-${redis.port}`;
        const ms = host.manifests("redis", target);
        expect(ms).toHaveLength(1);
        const m = host.readManifest("redis", target, ms[0]!) as any;
        expect(m.content.keys).toBe(201);
        expect(host.metric("backup_last_run_status", "redis", target)).toBe(1);
        expect(host.log("redis-backup")).not.toContain(PASSWORD);
        expect(alarmingLines(r.stderr)).toEqual([]);
        expect(alarmingLines(host.log("redis-backup"))).toEqual([]);
        // The job's retention (run in the job's process) logs as backup-retention.sh --type redis would.
        expect(host.log("backup-retention")).toMatch(/event=finish .*what="backup-retention.sh --type redis" result="ok" exit_code="0"/);
        expect(host.metric("backup_verification_status", "redis", target)).toBe(1);
    });

    it("restore-tests the RDB and restores it to a file", async () => {
        const target = `redis-${redis.port}`;
        const r = await host.runScript("backup-verify.sh", ["--all", "--restore-test"]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(host.metric("backup_restore_test_status", "redis", target)).toBe(1);
        const [m] = host.manifests("redis", target);
        const out = join(host.root, "storage", "restored.rdb");
        const rr = await host.runScript("backup-restore.sh", ["--target", out, join(host.config.paths.storage, "redis", target, m!)]);
        expect(rr.code, rr.stderr).toBe(0);
        const check = await run("redis-check-rdb", [out]);
        expect(check.stdout).toContain("201 keys read");
        const again = await host.runScript("backup-restore.sh", ["--target", out, join(host.config.paths.storage, "redis", target, m!)]);
        expect(again.code).toBe(2);
        expect(readFileSync(out).subarray(0, 5).toString()).toBe("REDIS");
    });

    it("warns (status and metric) when the size leaves the band around the median of earlier backups", async () => {
        const target = `redis-${redis.port}`;
        for (let i = 0; i < 60; i++) await redis.cli("SET", `big:${i}`, randomBytes(1000).toString("hex"));
        const r = await host.runScript("redis-backup.sh");
        expect(r.code, r.stderr).toBe(0);
        expect(host.metric("backup_size_check_status", "redis", target)).toBe(0);
        expect(host.log("redis-backup")).toMatch(/level=warning .*event=size_check .*outside the configured band/);
        // The median is the one the check used, not a placeholder.
        const median = /outside the configured band around the median ([0-9]+)/.exec(host.log("redis-backup"))?.[1];
        expect(median).toMatch(/^[1-9][0-9]*$/);
        for (let i = 0; i < 60; i++) await redis.cli("DEL", `big:${i}`);
    });

    it("rotates keys (old artifacts verify with their key id) and falls back to gzip when configured", async () => {
        const target = `redis-${redis.port}`;
        host.addKey("test-v2", true);
        host.config.compression = { ...host.config.compression, method: "gzip", level: 6 };
        host.writeConfig();
        await redis.cli("SET", "rotated", "1");
        const r = await host.runScript("redis-backup.sh");
        expect(r.code, r.stderr).toBe(0);
        const ms = host.manifests("redis", target);
        const m = host.readManifest("redis", target, ms[ms.length - 1]!) as any;
        expect(m.encryption.keyId).toBe("test-v2");
        expect(m.compression.method).toBe("gzip");
        expect(m.artifact).toMatch(/\.rdb\.gz\.enc$/);
        const v = await host.runScript("backup-verify.sh", ["--all", "--restore-test"]);
        expect(v.code, v.stdout + v.stderr).toBe(0);
        host.config.compression = { ...host.config.compression, method: "auto", level: 1 };
        host.writeConfig();
    });

    it.skipIf(!isRoot)("the privileged helper copies the configured RDB file to stdout", async () => {
        const r = await host.runScript("backup-privileged.sh", ["redis-copy-rdb"], { asRoot: true });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.startsWith("REDIS")).toBe(true);
    });

    it("a retention that cannot run (another run holds its lock) is a warning: the backup is kept and the job succeeds", async () => {
        const target = `redis-${redis.port}`;
        const before = host.manifests("redis", target).length;
        const lock = join(host.config.paths.locks, "backup-retention.lock");
        // A live holder of the lock that names itself in it, as a running backup-retention.sh does.
        const holder = start("bash", ["-c", 'exec 9>>"$1" && flock 9 && printf "%s\\n" "$$" >"$1" && exec sleep 60', "_", lock]);
        try {
            await waitFor(async () => (await run("flock", ["--nonblock", lock, "true"])).code !== 0, 60_000, "the retention lock to be held");
            const r = await host.runScript("redis-backup.sh");
            expect(r.code, r.stderr).toBe(0);
            expect(host.manifests("redis", target)).toHaveLength(before + 1);
            expect(r.stderr).toMatch(/level=warning .*event=retention .*retention failed; all backups kept/);
            expect(host.log("backup-retention")).toMatch(/event=finish .*what="backup-retention.sh --type redis" result="locked" exit_code="3"/);
            expect(host.metric("backup_last_run_status", "redis", target)).toBe(1);
        } finally {
            holder.kill("SIGKILL");
            await holder.done;
        }
        // Once the lock is free, retention prunes the same day's older backup as it would have.
        const again = await host.runScript("backup-retention.sh", ["--type", "redis"]);
        expect(again.code, again.stderr).toBe(0);
        expect(host.manifests("redis", target)).toHaveLength(before);
    });

    it("fails with a clear cause when AUTH is wrong, keeping earlier backups", async () => {
        const target = `redis-${redis.port}`;
        const authFile = host.config.redis!.authFile;
        writeFileSync(authFile, "wrong\n");
        const r = await host.runScript("redis-backup.sh");
        expect(r.code).toBe(1);
        expect(host.log("redis-backup")).toMatch(/level=error .*not reachable or AUTH failed/);
        expect(host.metric("backup_last_run_status", "redis", target)).toBe(0);
        expect(host.manifests("redis", target)).toHaveLength(1);
        writeFileSync(authFile, `${PASSWORD}\n`);
        const ok = await host.runScript("redis-backup.sh");
        expect(ok.code, ok.stderr).toBe(0);
        expect(host.metric("backup_last_run_status", "redis", target)).toBe(1);
    });

    it("streams the RDB while BGSAVE is still writing it (live read), and stores exactly the saved file", async () => {
        const target = `redis-${redis.port}`;
        // 50k keys at 20 µs each keep the save running for about a second.
        await redis.cli("EVAL", "for i = 1, 50000 do redis.call('SET', 'live:' .. i, string.rep('v', 40) .. i) end return 1", "0");
        await redis.cli("CONFIG", "SET", "rdb-key-save-delay", "20");
        try {
            const r = await host.runScript("redis-backup.sh");
            expect(r.code, r.stderr).toBe(0);
            expect(host.log("redis-backup")).toMatch(/event=backup_ok .*read="live"/);
            const ms = host.manifests("redis", target);
            const m = host.readManifest("redis", target, ms[ms.length - 1]!) as any;
            expect(m.content.keys).toBe(Number(await redis.cli("DBSIZE")));
            const out = join(host.root, "storage", "live.rdb");
            const rr = await host.runScript("backup-restore.sh", ["--force", "--target", out, join(host.config.paths.storage, "redis", target, ms[ms.length - 1]!)]);
            expect(rr.code, rr.stderr).toBe(0);
            expect(readFileSync(out).equals(readFileSync(redis.rdbPath))).toBe(true);
        } finally {
            await redis.cli("CONFIG", "SET", "rdb-key-save-delay", "0");
        }
    });

    it("a BGSAVE child killed during the live read fails the run with the cause, keeps earlier backups and leaves no partials", async () => {
        const target = `redis-${redis.port}`;
        const before = host.manifests("redis", target);
        await redis.cli("CONFIG", "SET", "rdb-key-save-delay", "100");
        try {
            const job = host.startScript("redis-backup.sh", []);
            await waitFor(() => readdirSync(redis.dir).some((f) => /^temp-\d+\.rdb$/.test(f)), 60_000, "the BGSAVE temp file");
            await waitFor(async () => (await run("pkill", ["--signal", "KILL", "--full", `^redis-rdb-bgsave 127\\.0\\.0\\.1:${redis.port}`])).code === 0, 60_000, "the BGSAVE child to be killed");
            const r = await job.done;
            expect(r.code).toBe(1);
            expect(host.log("redis-backup")).toMatch(/level=error .*BGSAVE finished with status 'err'/);
            expect(host.metric("backup_last_run_status", "redis", target)).toBe(0);
            expect(host.manifests("redis", target)).toEqual(before);
            expect(readdirSync(join(host.config.paths.storage, "redis", target)).filter((f) => f.includes("partial"))).toEqual([]);
        } finally {
            await redis.cli("CONFIG", "SET", "rdb-key-save-delay", "0");
        }
        const ok = await host.runScript("redis-backup.sh");
        expect(ok.code, ok.stderr).toBe(0);
    });
});
