/**
 * backup-sync.sh against s3rver: key layout and retention classes, size and
 * checksum checks, dedup without re-upload, S3 outage (partial success, then
 * catch-up), restore from an s3:// key, tag layout, TLS required for
 * non-loopback endpoints.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRoot, missingTools, run, which } from "../../support/env";
import { alarmingLines, giveToUser, makeHost, type TestHost } from "../../support/host";
import { startS3, type S3Instance } from "../../support/s3";

const AWS = which("/usr/bin/aws") ?? "aws";
const missing = missingTools([AWS, "tar", "zstd", "jq", "openssl"]);

describe.skipIf(missing.length > 0 || !isRoot)("backup-sync.sh", { timeout: 180_000 }, () => {
    let s3: S3Instance;
    let host: TestHost;
    let credFile: string;

    const aws = async (...args: string[]) => {
        const r = await run(AWS, ["--endpoint-url", s3.endpoint, "--output", "json", ...args], {
            env: { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_DEFAULT_REGION: "us-east-1", AWS_CONFIG_FILE: "/dev/null" },
        });
        if (r.code !== 0) throw new Error(r.stderr);
        return r.stdout;
    };
    const keys = async (): Promise<string[]> => {
        const out = await aws("s3api", "list-objects-v2", "--bucket", "hx-backups");
        return out.trim() ? (JSON.parse(out).Contents ?? []).map((o: { Key: string }) => o.Key).sort() : [];
    };

    beforeAll(async () => {
        s3 = await startS3(["hx-backups"]);
        host = makeHost();
        credFile = join(host.root, "etc", "s3-credentials");
        writeFileSync(credFile, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n", { mode: 0o600 });
        giveToUser(host, credFile);
        const app = join(host.root, "app");
        mkdirSync(app);
        writeFileSync(join(app, "f.txt"), "data ".repeat(5000));
        host.config.application = { paths: [app], include: [], exclude: [] };
        host.config.remote = {
            ...host.config.remote,
            enabled: true,
            bucket: "hx-backups",
            prefix: "backups",
            endpoint: s3.endpoint,
            credentialsFile: credFile,
            retries: 1,
            retryDelaySeconds: 1,
        };
        host.writeConfig();
    });

    afterAll(async () => {
        await s3?.stop();
        host?.cleanup();
    });

    it("uploads artifact and manifest under the retention class prefix, checked", async () => {
        const r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        const k = await keys();
        expect(k).toHaveLength(2);
        expect(k[0]).toMatch(/^backups\/yearly\/testhost\/application\/data\/data-\d{8}T\d{6}Z\.manifest\.json$/);
        expect(k[1]).toMatch(/^backups\/yearly\/testhost\/application\/data\/data-\d{8}T\d{6}Z\.tar\.zst\.enc$/);
        const head = JSON.parse(await aws("s3api", "head-object", "--bucket", "hx-backups", "--key", k[1]!));
        const [m] = host.manifests("application", "data");
        const man = host.readManifest("application", "data", m!) as any;
        expect(head.Metadata.sha256).toBe(man.sha256.stored);
        expect(head.ContentLength).toBe(man.sizes.stored);
        expect(host.metric("backup_remote_sync_status", "application", "data")).toBe(1);
        expect(host.metric("backup_remote_sync_last_success_timestamp", "application", "data")).toBeGreaterThan(1e9);
    });

    it("a deduplicated backup uploads no artifact bytes (server-side copy into its class)", async () => {
        const r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        const k = await keys();
        const daily = k.filter((x) => x.startsWith("backups/daily/"));
        expect(daily).toHaveLength(2);
        expect(host.log("backup-sync")).toMatch(/event=sync_dedup/);
        // A further unchanged backup in the same class refreshes the object's
        // age (copy onto itself with REPLACE). Real S3 updates LastModified;
        // s3rver keeps the file's mtime, so the test checks the request.
        const art = daily.find((x) => x.endsWith(".enc"))!;
        const again = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(again.code, again.stderr).toBe(0);
        expect(host.log("backup-sync")).toMatch(/event=sync_refresh .*existing object copied onto itself/);
        const head = JSON.parse(await aws("s3api", "head-object", "--bucket", "hx-backups", "--key", art));
        const [m] = host.manifests("application", "data");
        expect(head.Metadata.sha256).toBe((host.readManifest("application", "data", m!) as any).sha256.stored);
    });

    it("an S3 outage is a partial success: local backup kept, sync status 0, caught up later", async () => {
        await s3.halt();
        writeFileSync(join(host.root, "app", "g.txt"), "new file");
        const r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code).toBe(5);
        expect(host.metric("backup_last_run_status", "application", "data")).toBe(1);
        expect(host.metric("backup_remote_sync_status", "application", "data")).toBe(0);
        expect(host.log("backup-sync")).toMatch(/level=error .*event=sync_failed .*upload failed/);
        const local = host.manifests("application", "data");
        expect(local.length).toBeGreaterThan(0);
        await s3.start();
        const s = await host.runScript("backup-sync.sh", []);
        expect(s.code, s.stderr).toBe(0);
        expect(host.metric("backup_remote_sync_status", "application", "data")).toBe(1);
        const k = await keys();
        const newest = local[local.length - 1]!;
        expect(k.some((x) => x.endsWith(newest))).toBe(true);
    });

    it("an artifact that fails verification is not uploaded and sets backup_verification_status 0; repaired, the next sync uploads it, restores 1 and says nothing alarming", async () => {
        const dir = join(host.config.paths.storage, "application", "data");
        const newest = host.manifests("application", "data").slice(-1)[0]!;
        const art = join(dir, (host.readManifest("application", "data", newest) as any).artifact);
        // Not synced yet, as after an outage.
        rmSync(join(dir, `.${newest}.synced`));
        const orig = readFileSync(art);
        const bad = Buffer.from(orig);
        bad[Math.floor(bad.length / 2)]! ^= 0x01;
        writeFileSync(art, bad);
        expect(host.metric("backup_verification_status", "application", "data")).toBe(1);
        const s = await host.runScript("backup-sync.sh", []);
        expect(s.code).toBe(1);
        expect(host.log("backup-sync")).toMatch(/level=error .*event=sync_skip .*sha256 differs/);
        expect(host.metric("backup_verification_status", "application", "data")).toBe(0);
        expect(host.metric("backup_remote_sync_status", "application", "data")).toBe(0);
        writeFileSync(art, orig);
        const logBefore = host.log("backup-sync").length;
        const good = await host.runScript("backup-sync.sh", []);
        expect(good.code, good.stderr).toBe(0);
        expect(existsSync(join(dir, `.${newest}.synced`))).toBe(true);
        expect(host.metric("backup_verification_status", "application", "data")).toBe(1);
        expect(host.metric("backup_remote_sync_status", "application", "data")).toBe(1);
        expect(existsSync(join(dir, ".sync-unverified"))).toBe(false);
        expect(alarmingLines(good.stderr)).toEqual([]);
        expect(alarmingLines(host.log("backup-sync").slice(logBefore))).toEqual([]);

        // Again, with a backup job after it: the job's sync finds the old backup failing, then its retention
        // checks newest first and the job's new backup passes; the status stays 0 all the same.
        const second = host.manifests("application", "data").slice(-1)[0]!;
        const art2 = join(dir, (host.readManifest("application", "data", second) as any).artifact);
        const orig2 = readFileSync(art2);
        rmSync(join(dir, `.${second}.synced`));
        const bad2 = Buffer.from(orig2);
        bad2[Math.floor(bad2.length / 2)]! ^= 0x01;
        writeFileSync(art2, bad2);
        const job = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(job.code, job.stderr).toBe(5);
        expect(host.manifests("application", "data").slice(-1)[0]).not.toBe(second);
        expect(host.metric("backup_verification_status", "application", "data")).toBe(0);
        expect(host.log("backup-retention")).toMatch(/level=warning .*event=verify_failed .*the last sync checked failed verification/);
        // Retention pruned the older same-day backup: the next sync finds it gone, clears its mark and sets 1.
        expect(host.manifests("application", "data")).not.toContain(second);
        const after = await host.runScript("backup-sync.sh", []);
        expect(after.code, after.stderr).toBe(0);
        expect(existsSync(join(dir, ".sync-unverified"))).toBe(false);
        expect(host.metric("backup_verification_status", "application", "data")).toBe(1);
    });

    it("restores from an s3:// key after verifying it", async () => {
        const k = (await keys()).filter((x) => x.endsWith(".tar.zst.enc"));
        const out = join(host.root, "restored");
        const r = await host.runScript("backup-restore.sh", ["--target", out, `s3://hx-backups/${k[k.length - 1]}`], { asRoot: true });
        expect(r.code, r.stderr).toBe(0);
        const t = await run("bash", ["-c", `find "${out}" -name f.txt | wc -l`]);
        expect(t.stdout.trim()).toBe("1");
    });

    it("with retentionBy tag, keys have no class prefix and objects carry the retention-class tag", async () => {
        host.config.remote.retentionBy = "tag";
        host.config.remote.prefix = "tagged";
        host.writeConfig();
        try {
            writeFileSync(join(host.root, "app", "h.txt"), "tag mode");
            const r = await host.runScript("application-backup.sh", [], { unit: "application" });
            expect(r.code, r.stderr).toBe(0);
            const k = (await keys()).filter((x) => x.startsWith("tagged/"));
            const art = k.find((x) => x.endsWith(".enc"))!;
            expect(art).toMatch(/^tagged\/testhost\/application\/data\/data-\d{8}T\d{6}Z\.tar\.zst\.enc$/);
            const tags = JSON.parse(await aws("s3api", "get-object-tagging", "--bucket", "hx-backups", "--key", art));
            expect(tags.TagSet).toEqual([{ Key: "retention-class", Value: "daily" }]);
        } finally {
            host.config.remote.retentionBy = "prefix";
            host.config.remote.prefix = "backups";
            host.writeConfig();
        }
    });

    it("refuses a plain-HTTP endpoint that is not loopback", async () => {
        const saved = host.config.remote.endpoint;
        host.config.remote.endpoint = "http://s3.example.com:9000";
        host.writeConfig();
        const r = await host.runScript("backup-sync.sh", []);
        expect(r.code).toBe(2);
        expect(host.log("backup-sync")).toMatch(/TLS is required/);
        host.config.remote.endpoint = saved;
        host.writeConfig();
    });
});
