/**
 * application-backup.sh / configuration-backup.sh through the privileged
 * helper (as their units run them: the test user with the units'
 * capabilities), and backup-restore.sh as root: owners,
 * modes, ACLs and xattrs survive; TLS keys are 0600; include/exclude
 * patterns and hostile path names are data; an unchanged second run stores
 * nothing new.
 */
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRoot, missingTools, run } from "../../support/env";
import { alarmingLines, makeHost, type TestHost } from "../../support/host";
import { CONFIG_LOCATION_NAME } from "../../../render/paths";

const missing = missingTools(["tar", "zstd", "jq", "openssl", "setfacl", "getfacl", "setfattr", "getfattr"]);
const HOSTILE = `we"ird $(touch /tmp/hx-pwned-archive) ; *dir`;

describe.skipIf(missing.length > 0 || !isRoot)("application and configuration backups", { timeout: 180_000 }, () => {
    let host: TestHost;
    let src: string;

    beforeAll(async () => {
        host = makeHost();
        src = join(host.root, "src");
        const app = join(src, "app");
        mkdirSync(join(app, "uploads", "deep"), { recursive: true });
        mkdirSync(join(app, "cache"), { recursive: true });
        mkdirSync(join(app, HOSTILE), { recursive: true });
        writeFileSync(join(app, "uploads", "a.txt"), "alpha\n".repeat(1000), { mode: 0o640 });
        writeFileSync(join(app, "uploads", "deep", "b.bin"), Buffer.alloc(20000, 7), { mode: 0o600 });
        writeFileSync(join(app, "uploads", "skip.tmp"), "temp", { mode: 0o644 });
        writeFileSync(join(app, "cache", "c.dat"), "cache", { mode: 0o644 });
        writeFileSync(join(app, HOSTILE, "file with spaces;$(x).txt"), "hostile", { mode: 0o604 });
        chownSync(join(app, "uploads", "a.txt"), 1234, 2345);
        chownSync(join(app, "uploads", "deep"), 4321, 5432);
        await run("setfacl", ["-m", "u:4444:r--", join(app, "uploads", "a.txt")]);
        await run("setfattr", ["-n", "user.hx", "-v", "xattr-value", join(app, "uploads", "a.txt")]);
        // configuration
        const etc = join(src, "etc");
        const tls = join(src, "tls");
        mkdirSync(etc, { recursive: true });
        mkdirSync(tls, { recursive: true });
        writeFileSync(join(etc, "app.conf"), "setting=1\n", { mode: 0o644 });
        writeFileSync(join(tls, "server.key"), "-----BEGIN PRIVATE KEY-----\nxx\n", { mode: 0o644 });
        writeFileSync(join(tls, "server.crt"), "-----BEGIN CERTIFICATE-----\nxx\n", { mode: 0o644 });
        host.config.application = {
            paths: [app, join(src, "does-not-exist")],
            include: [],
            // hostile patterns are data: matched by find, never evaluated
            exclude: ["*.tmp", "cache", "$(touch /tmp/hx-pwned-archive)", "a;b", '*"q"*', "new\nline", "-delete"],
        };
        host.config.configuration = { paths: [etc], tlsPaths: [tls] };
        host.writeConfig();
    });

    afterAll(() => host?.cleanup());

    it("archives application data with patterns applied and hostile names as data", async () => {
        const r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        expect(existsSync("/tmp/hx-pwned-archive")).toBe(false);
        const ms = host.manifests("application", "data");
        expect(ms).toHaveLength(1);
        const m = host.readManifest("application", "data", ms[0]!) as any;
        expect(m.content.entries).toBeGreaterThan(5);
        expect(host.metric("backup_last_run_status", "application", "data")).toBe(1);
        expect(host.log("backup-privileged")).toMatch(/path does not exist; skipped/);
        // Only that real condition is a warning: the job's own stderr and log are clean.
        expect(alarmingLines(r.stderr)).toEqual([]);
        expect(alarmingLines(host.log("application-backup"))).toEqual([]);
    });

    it("restores owners, modes, ACLs and xattrs exactly, and refuses to overwrite without --force", async () => {
        const [mname] = host.manifests("application", "data");
        const manifest = join(host.config.paths.storage, "application", "data", mname!);
        const out = join(host.root, "restore-app");
        let r = await host.runScript("backup-restore.sh", ["--target", out, manifest], { asRoot: true });
        expect(r.code, r.stderr).toBe(0);
        const app = join(src, "app");
        const rel = app.replace(/^\//, "");
        const ra = join(out, rel);
        for (const p of ["uploads/a.txt", "uploads/deep", "uploads/deep/b.bin", `${HOSTILE}/file with spaces;$(x).txt`]) {
            const a = lstatSync(join(app, p));
            const b = lstatSync(join(ra, p));
            expect({ p, uid: b.uid, gid: b.gid, mode: b.mode, mtime: Math.floor(b.mtimeMs) }).toEqual({ p, uid: a.uid, gid: a.gid, mode: a.mode, mtime: Math.floor(a.mtimeMs) });
        }
        expect(existsSync(join(ra, "uploads", "skip.tmp"))).toBe(false);
        expect(existsSync(join(ra, "cache"))).toBe(false);
        const acl = await run("getfacl", ["--omit-header", "--numeric", join(ra, "uploads", "a.txt")]);
        expect(acl.stdout).toContain("user:4444:r--");
        const xa = await run("getfattr", ["--only-values", "-n", "user.hx", join(ra, "uploads", "a.txt")]);
        expect(xa.stdout).toBe("xattr-value");
        r = await host.runScript("backup-restore.sh", ["--target", out, manifest], { asRoot: true });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("without --force");
        r = await host.runScript("backup-restore.sh", ["--force", "--target", out, manifest], { asRoot: true });
        expect(r.code, r.stderr).toBe(0);
    });

    it("a second unchanged run stores (almost) nothing new", async () => {
        const dir = join(host.config.paths.storage, "application", "data");
        const size = () => readdirSync(dir).filter((f) => !f.startsWith(".")).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
        const before = size();
        const r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        const added = size() - before;
        // retention (restic semantics) keeps the newest of the day: the new
        // manifest, which references the first artifact
        const ms = host.manifests("application", "data");
        expect(ms).toHaveLength(1);
        const m = host.readManifest("application", "data", ms[0]!) as any;
        expect(m.dedup).not.toBeNull();
        expect(existsSync(join(dir, m.artifact))).toBe(true);
        expect(host.metric("backup_dedup_saved_bytes", "application", "data")).toBeGreaterThan(0);
        // only a new manifest was added (the older one was pruned)
        expect(added).toBeLessThan(4096);
    });

    it("never deduplicates onto a corrupt earlier artifact", async () => {
        const dir = join(host.config.paths.storage, "application", "data");
        const [m0] = host.manifests("application", "data");
        const art = (host.readManifest("application", "data", m0!) as any).artifact;
        const bytes = readFileSync(join(dir, art));
        bytes[bytes.length - 20]! ^= 0xff;
        writeFileSync(join(dir, art), bytes);
        const r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        const ms = host.manifests("application", "data");
        const newest = host.readManifest("application", "data", ms[ms.length - 1]!) as any;
        expect(newest.dedup).toBeNull();
        expect(newest.artifact).not.toBe(art);
        const v = await host.runScript("backup-verify.sh", ["--all", "--type", "application"]);
        expect(v.code, v.stdout).toBe(0);
    });

    it("archives configuration with TLS keys at 0600 and a network snapshot", async () => {
        const r = await host.runScript("configuration-backup.sh", [], { unit: "configuration" });
        expect(r.code, r.stderr).toBe(0);
        expect(alarmingLines(r.stderr)).toEqual([]);
        expect(alarmingLines(host.log("configuration-backup"))).toEqual([]);
        const [mname] = host.manifests("configuration", "system");
        const manifest = join(host.config.paths.storage, "configuration", "system", mname!);
        const out = join(host.root, "restore-conf");
        const rr = await host.runScript("backup-restore.sh", ["--target", out, manifest], { asRoot: true });
        expect(rr.code, rr.stderr).toBe(0);
        const tls = join(out, src.replace(/^\//, ""), "tls");
        expect(statSync(join(tls, "server.key")).mode & 0o777).toBe(0o600);
        expect(statSync(join(tls, "server.crt")).mode & 0o777).toBe(0o600);
        expect(statSync(join(out, src.replace(/^\//, ""), "etc", "app.conf")).mode & 0o777).toBe(0o644);
        const snap = readdirSync(join(out, "hx-network-snapshot"));
        expect(snap).toContain("ip-address.txt");
        expect(snap.some((f) => f.endsWith(".rules"))).toBe(true);
        expect(readFileSync(join(out, "hx-network-snapshot", "ip-address.txt"), "utf8")).toMatch(/lo/);
        // the snapshot is deterministic: an unchanged host deduplicates
        const again = await host.runScript("configuration-backup.sh", [], { unit: "configuration" });
        expect(again.code, again.stderr).toBe(0);
        expect(host.metric("backup_dedup_saved_bytes", "configuration", "system")).toBeGreaterThan(0);
    });

    it("restore-tests archives (list, extract, compare)", async () => {
        const r = await host.runScript("backup-verify.sh", ["--all", "--restore-test"]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(host.metric("backup_restore_test_status", "application", "data")).toBe(1);
        expect(host.metric("backup_restore_test_status", "configuration", "system")).toBe(1);
    });

    it("the privileged helper takes exactly one known verb", async () => {
        let r = await host.runScript("backup-privileged.sh", [], { asRoot: true });
        expect(r.code).toBe(2);
        r = await host.runScript("backup-privileged.sh", ["application-archive", "/etc"], { asRoot: true });
        expect(r.code).toBe(2);
        r = await host.runScript("backup-privileged.sh", ["rm-rf"], { asRoot: true });
        expect(r.code).toBe(2);
        r = await host.runScript("backup-privileged.sh", ["application-archive"]);
        expect(r.code).toBe(2); // not root
    });

    it("through sudo, the config comes from lib/config-path beside the scripts; the caller's HX_BACKUP_CONFIG is ignored", async () => {
        const location = join(host.scriptsDir, CONFIG_LOCATION_NAME);
        const planted = join(host.root, "planted.json");
        writeFileSync(planted, "{}\n");
        const asSudo = { asRoot: true, env: { SUDO_USER: "backup", HX_BACKUP_CONFIG: planted } };
        let r = await host.runScript("backup-privileged.sh", ["configuration-archive"], asSudo);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).not.toContain(planted);
        // A run by hand without HX_BACKUP_CONFIG reads the same file.
        r = await host.runScript("backup-health-check.sh", [], { env: { HX_BACKUP_CONFIG: "" } });
        expect(r.stderr).not.toContain("config location");
        const saved = readFileSync(location, "utf8");
        try {
            rmSync(location);
            r = await host.runScript("backup-privileged.sh", ["configuration-archive"], asSudo);
            expect(r.code).toBe(2);
            expect(r.stderr).toContain(`config location unknown: ${location} is missing or empty (the deploy's config-location step writes it: run pulumi up; through sudo HX_BACKUP_CONFIG is ignored)`);
            writeFileSync(location, "etc/backup.json\n");
            r = await host.runScript("backup-privileged.sh", ["configuration-archive"], asSudo);
            expect(r.code).toBe(2);
            expect(r.stderr).toContain("config location is not an absolute path: etc/backup.json");
        } finally {
            writeFileSync(location, saved, { mode: 0o644 });
        }
    });
});
