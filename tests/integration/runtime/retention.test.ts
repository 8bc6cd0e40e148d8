/**
 * backup-retention.sh: GFS with restic semantics on signed manifests with
 * chosen timestamps; dry-run lists what and why; the newest verified backup
 * and artifacts referenced by kept (deduplicated) manifests are never deleted.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { missingTools, run } from "../../support/env";
import { alarmingLines, giveToUser, makeHost, type TestHost } from "../../support/host";

const missing = missingTools(["jq", "openssl"]);

const STAMPS = ["2026-01-10T02:00:00Z", "2026-02-20T02:00:00Z", "2026-03-05T02:00:00Z", "2026-03-06T10:00:00Z", "2026-03-06T12:00:00Z", "2026-03-09T02:00:00Z", "2026-03-10T02:00:00Z"];
const name = (iso: string) => `db-${iso.replace(/[-:]/g, "")}`;

async function fabricate(host: TestHost, dedup: Record<string, string> = {}, stamps: readonly string[] = STAMPS): Promise<string> {
    const dir = join(host.config.paths.storage, "postgresql", "db");
    mkdirSync(dir, { recursive: true });
    const old = new Date(Date.now() - 3 * 3600_000);
    for (const iso of stamps) {
        const base = name(iso);
        const refIso = dedup[iso];
        const artifact = refIso ? `${name(refIso)}.dump.zst.enc` : `${base}.dump.zst.enc`;
        if (!refIso) {
            const bytes = randomBytes(100);
            writeFileSync(join(dir, artifact), bytes);
            utimesSync(join(dir, artifact), old, old);
        }
        const { readFileSync } = await import("node:fs");
        const bytes = readFileSync(join(dir, artifact));
        const body = {
            format: 1, type: "postgresql", target: "db", source: { database: "db" }, content: { format: "custom", tables: [] },
            artifact, dedup: refIso ? { artifact, manifest: `${name(refIso)}.manifest.json` } : null, createdAt: iso, startedAt: iso,
            encryption: { cipher: "aes-256-cbc", kdf: "pbkdf2", digest: "sha256", iter: 10000, keyId: host.config.encryption.currentKeyId },
            compression: { method: "zstd", level: 3 }, sizes: { plain: 1000, stored: bytes.length },
            sha256: { stored: createHash("sha256").update(bytes).digest("hex"), content: "0".repeat(64) }, tools: {},
        };
        writeFileSync(join(dir, `.${base}.body`), JSON.stringify(body));
        const lib = join(host.scriptsDir, "hx-backup-lib.sh");
        const r = await run("bash", ["-c", `set -e; source "$1"; hx_load_config; hx_key_load "$HX_KEY_ID"; hx_manifest_sign "$2" "$3"; rm -f "$2"`, "_", lib, join(dir, `.${base}.body`), join(dir, `${base}.manifest.json`)], { env: { HX_BACKUP_CONFIG: host.configPath } });
        if (r.code !== 0) throw new Error(r.stderr);
    }
    giveToUser(host, host.config.paths.storage);
    return dir;
}

describe.skipIf(missing.length > 0)("backup-retention.sh", { timeout: 60_000 }, () => {
    let host: TestHost;
    beforeEach(() => {
        host = makeHost();
        host.config.retention = { ...host.config.retention, daily: 3, weekly: 2, monthly: 2, yearly: 1 };
        host.writeConfig();
    });
    afterEach(() => host.cleanup());

    it("keeps the newest backup per day/week/month/year until each count is used (restic semantics)", async () => {
        const dir = await fabricate(host, { "2026-03-09T02:00:00Z": "2026-03-05T02:00:00Z" });
        const dry = await host.runScript("backup-retention.sh", ["--dry-run"]);
        expect(dry.code, dry.stderr).toBe(0);
        expect(dry.stdout).toContain(`keep   postgresql/db/${name("2026-03-10T02:00:00Z")}.manifest.json (daily 2026-03-10, weekly 2026-W11, monthly 2026-03, yearly 2026, newest verified)`);
        expect(dry.stdout).toContain(`keep   postgresql/db/${name("2026-03-06T12:00:00Z")}.manifest.json (daily 2026-03-06, weekly 2026-W10)`);
        expect(dry.stdout).toContain(`keep   postgresql/db/${name("2026-02-20T02:00:00Z")}.manifest.json (monthly 2026-02)`);
        expect(dry.stdout).toContain(`delete postgresql/db/${name("2026-03-06T10:00:00Z")}.manifest.json (not the newest backup of any kept day, week, month or year)`);
        // dry run changes nothing
        expect(host.manifests("postgresql", "db")).toHaveLength(7);
        const r = await host.runScript("backup-retention.sh", []);
        expect(r.code, r.stderr).toBe(0);
        // A good run says nothing alarming; its check of the newest backup records status 1.
        expect(alarmingLines(dry.stderr + r.stderr)).toEqual([]);
        expect(alarmingLines(host.log("backup-retention"))).toEqual([]);
        expect(host.metric("backup_verification_status", "postgresql", "db")).toBe(1);
        expect(host.manifests("postgresql", "db")).toEqual(["2026-02-20T02:00:00Z", "2026-03-06T12:00:00Z", "2026-03-09T02:00:00Z", "2026-03-10T02:00:00Z"].map((s) => `${name(s)}.manifest.json`));
        // 03-05's manifest is gone, but its artifact is still referenced by 03-09
        expect(existsSync(join(dir, `${name("2026-03-05T02:00:00Z")}.dump.zst.enc`))).toBe(true);
        expect(existsSync(join(dir, `${name("2026-01-10T02:00:00Z")}.dump.zst.enc`))).toBe(false);
        expect(existsSync(join(dir, `${name("2026-03-06T10:00:00Z")}.dump.zst.enc`))).toBe(false);
        expect(host.log("backup-retention")).toMatch(/event=pruned .*manifest="db-20260110T020000Z.manifest.json"/);
    });

    describe("counts days, weeks, months and years in retention.timeZone", () => {
        // Berlin: A is 2025-12-31 23:30 CET, B 2026-01-01 00:30 CET (a new day and year), C
        // 2026-03-29 23:30 CEST (the day clocks went forward), D 2026-03-30 00:30 CEST. In UTC, A
        // and B share 2025-12-31 and C and D share 2026-03-29.
        const [A, B, C, D] = ["2025-12-31T22:30:00Z", "2025-12-31T23:30:00Z", "2026-03-29T21:30:00Z", "2026-03-29T22:30:00Z"];
        const setup = async (timeZone: string) => {
            host.config.retention = { ...host.config.retention, daily: 3, weekly: 0, monthly: 0, yearly: 2, timeZone };
            host.writeConfig();
            await fabricate(host, {}, [A!, B!, C!, D!]);
        };
        const line = (verb: "keep  " | "delete", iso: string, why: string) => `${verb} postgresql/db/${name(iso)}.manifest.json (${why})`;
        const berlin = (out: string) => {
            expect(out).toContain(line("keep  ", D!, "daily 2026-03-30, yearly 2026, newest verified"));
            expect(out).toContain(line("keep  ", C!, "daily 2026-03-29"));
            expect(out).toContain(line("keep  ", B!, "daily 2026-01-01"));
            expect(out).toContain(line("keep  ", A!, "yearly 2025"));
        };

        it("Europe/Berlin: the local day across a DST change and a year boundary", async () => {
            await setup("Europe/Berlin");
            const dry = await host.runScript("backup-retention.sh", ["--dry-run"]);
            expect(dry.code, dry.stderr).toBe(0);
            berlin(dry.stdout);
        });

        it("local is the host's zone (here TZ=Europe/Berlin), the default", async () => {
            await setup("local");
            const dry = await host.runScript("backup-retention.sh", ["--dry-run"], { env: { TZ: "Europe/Berlin" } });
            expect(dry.code, dry.stderr).toBe(0);
            berlin(dry.stdout);
        });

        it("a zone missing from the host's time zone database (which date(1) would take as UTC without a word) is refused with exit 2 by retention and sync, naming retentionTimeZone and the fix", async () => {
            await setup("Bogus/Zone");
            const dry = await host.runScript("backup-retention.sh", ["--dry-run"]);
            expect(dry.code, dry.stdout + dry.stderr).toBe(2);
            expect(dry.stdout).toBe("");
            expect(dry.stderr).toMatch(/retention\.timeZone \(retentionTimeZone\) 'Bogus\/Zone' is not in this host's time zone database \(no \/usr\/share\/zoneinfo\/Bogus\/Zone\): install or update the tzdata package/);
            expect(host.log("backup-retention")).toMatch(/level=error .*retentionTimeZone\) 'Bogus\/Zone'/);
            host.config.remote = { ...host.config.remote, enabled: true };
            host.writeConfig();
            const sync = await host.runScript("backup-sync.sh");
            expect(sync.code, sync.stderr).toBe(2);
            expect(sync.stderr).toMatch(/retentionTimeZone\) 'Bogus\/Zone' is not in this host's time zone database/);
            expect(host.metric("backup_remote_sync_status", "postgresql", "db")).toBe(0);
        });

        it("UTC: the same backups fall into fewer days", async () => {
            await setup("UTC");
            const dry = await host.runScript("backup-retention.sh", ["--dry-run"], { env: { TZ: "Europe/Berlin" } });
            expect(dry.code, dry.stderr).toBe(0);
            expect(dry.stdout).toContain(line("keep  ", D!, "daily 2026-03-29, yearly 2026, newest verified"));
            expect(dry.stdout).toContain(line("keep  ", B!, "daily 2025-12-31, yearly 2025"));
            expect(dry.stdout).toMatch(new RegExp(`delete postgresql/db/${name(C!)}\\.manifest\\.json`));
            expect(dry.stdout).toMatch(new RegExp(`delete postgresql/db/${name(A!)}\\.manifest\\.json`));
        });
    });

    it("deletes the artifact of a manifest it prunes at once, but keeps a young artifact no manifest names (a run may be committing it) until orphanMinutes", async () => {
        const dir = await fabricate(host);
        // Both just written, as on the day of a same-day daily and weekly run.
        const pruned = join(dir, `${name("2026-03-06T10:00:00Z")}.dump.zst.enc`);
        const now = new Date();
        utimesSync(pruned, now, now);
        const young = join(dir, "db-20260311T020000Z.dump.zst.enc");
        writeFileSync(young, randomBytes(100));
        giveToUser(host, young);
        const dry = await host.runScript("backup-retention.sh", ["--dry-run"]);
        expect(dry.stdout).toContain(`delete postgresql/db/${name("2026-03-06T10:00:00Z")}.dump.zst.enc (artifact not referenced by any kept manifest)`);
        expect(dry.stdout).not.toContain("db-20260311T020000Z");
        const r = await host.runScript("backup-retention.sh", []);
        expect(r.code, r.stderr).toBe(0);
        expect(host.manifests("postgresql", "db")).not.toContain(`${name("2026-03-06T10:00:00Z")}.manifest.json`);
        expect(existsSync(pruned)).toBe(false);
        expect(existsSync(young)).toBe(true);
        // So verification reports only the real orphan, not the pruned backup's artifact.
        const v = await host.runScript("backup-verify.sh", ["--all"]);
        expect(v.code, v.stdout + v.stderr).toBe(0);
        expect(alarmingLines(v.stderr)).toEqual([expect.stringMatching(/event=orphan .*db-20260311T020000Z/)]);
    });

    it("never deletes the newest verified backup", async () => {
        host.config.retention = { ...host.config.retention, daily: 0, weekly: 0, monthly: 0, yearly: 1 };
        host.writeConfig();
        const dir = await fabricate(host);
        // the newest artifact is corrupt: the newest verified one is 03-09
        writeFileSync(join(dir, `${name("2026-03-10T02:00:00Z")}.dump.zst.enc`), randomBytes(100));
        const r = await host.runScript("backup-retention.sh", []);
        expect(r.code, r.stderr).toBe(0);
        expect(host.manifests("postgresql", "db")).toEqual([`${name("2026-03-09T02:00:00Z")}.manifest.json`, `${name("2026-03-10T02:00:00Z")}.manifest.json`]);
        expect(readdirSync(dir).filter((f) => f.endsWith(".enc"))).toHaveLength(2);
        // The failed check of the newest is recorded and logged with its cause.
        expect(host.metric("backup_verification_status", "postgresql", "db")).toBe(0);
        expect(host.log("backup-retention")).toMatch(new RegExp(`level=error .*event=verify_failed .*sha256 differs.*${name("2026-03-10T02:00:00Z")}`));
        // The corrupt backup removed, the next check passes and restores 1.
        rmSync(join(dir, `${name("2026-03-10T02:00:00Z")}.manifest.json`));
        const again = await host.runScript("backup-retention.sh", ["--dry-run"]);
        expect(again.code, again.stderr).toBe(0);
        expect(host.metric("backup_verification_status", "postgresql", "db")).toBe(1);
    });
});
