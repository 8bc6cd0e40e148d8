/**
 * A job started as root (an operator's hand run without `sudo -u`) refuses
 * with exit 2, one line naming the command to run instead, and writes
 * nothing, so the backup user's next runs are unaffected; the scripts that
 * need root (backup-restore.sh, backup-privileged.sh) still run as root,
 * logging to stderr and syslog but never into the backup user's log folder.
 * Before the refusal a root run left root-owned source folders, artifacts,
 * manifests, .restore-test.json, locks and logs that made the backup user's
 * next backup, sync and restore test fail.
 */
import { chownSync, lstatSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRoot, missingTools } from "../../support/env";
import { makeHost, type TestHost } from "../../support/host";

const missing = missingTools(["tar", "zstd", "jq", "openssl", "setpriv"]);

/** Every path under DIR with its owner, mode, size and mtime: what a run changed. */
function tree(dir: string): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (d: string) => {
        for (const name of readdirSync(d)) {
            const p = join(d, name);
            const s = lstatSync(p);
            out.set(p, `${s.uid}:${s.gid} ${s.mode.toString(8)} ${s.size} ${s.mtimeMs}`);
            if (s.isDirectory()) walk(p);
        }
    };
    walk(dir);
    return out;
}

describe.skipIf(missing.length > 0 || !isRoot)("jobs started as root", { timeout: 180_000 }, () => {
    let host: TestHost;
    let app: string;
    let user: string;

    beforeAll(() => {
        host = makeHost();
        user = host.user!.name;
        app = join(host.root, "app");
        mkdirSync(app);
        writeFileSync(join(app, "owned.txt"), "kept owner\n".repeat(100), { mode: 0o640 });
        chownSync(join(app, "owned.txt"), 1234, 2345);
        host.config.application = { paths: [app], include: [], exclude: [] };
        host.writeConfig();
    });

    afterAll(() => host?.cleanup());

    /** Runs SCRIPT as root and expects the refusal: exit 2, one line saying how to run it, nothing written anywhere on the host. */
    async function refused(script: string, args: string[]): Promise<string> {
        const before = tree(host.root);
        const r = await host.runScript(script, args, { asRoot: true });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stdout).toBe("");
        const lines = r.stderr.trim().split("\n");
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/level=error .*event=run_as_root /);
        expect(lines[0]).toContain(`run it as ${user}, with the same arguments: sudo -u ${user} ${join(host.scriptsDir, script)}"`);
        expect(tree(host.root)).toEqual(before);
        return lines[0];
    }

    it("a backup job, the restore test, verification and sync refuse as root and write nothing", async () => {
        await refused("application-backup.sh", []);
        // Nothing to test yet: still the refusal, not "no backups found".
        await refused("test-restore.sh", []);
        await refused("backup-verify.sh", ["--all", "--type", "application"]);
        await refused("backup-sync.sh", ["--type", "application"]);
        await refused("postgresql-backup.sh", ["daily"]);
        await refused("backup-health-check.sh", []);
        // The arguments stay out of the advice: logged, a quoted hostile one would not paste back as itself.
        const line = await refused("backup-verify.sh", [join(host.root, "x;id $(id).enc")]);
        expect(line).not.toMatch(/x;id|\(id\)/);
    });

    /** With backup.json replaced by TEXT, a root run of SCRIPT is a config error naming CAUSE, and writes nothing. */
    async function configErrorWritesNothing(text: string, script: string, cause: string): Promise<void> {
        host.writeConfig(text);
        try {
            const before = tree(host.root);
            const r = await host.runScript(script, [], { asRoot: true });
            expect(r.code, r.stderr).toBe(2);
            expect(r.stderr).toContain(cause);
            expect(tree(host.root)).toEqual(before);
        } finally {
            host.writeConfig();
        }
    }

    it("the user comes from backup.json: without backupUser a root run is a config error that names it, and still writes nothing", async () => {
        const { backupUser: _, ...stale } = host.config;
        await configErrorWritesNothing(JSON.stringify(stale), "test-restore.sh", "has no backupUser (expected a value, found nothing)");
        // A config that cannot be read at all: the error, and still nothing written (no log folder, log or metric).
        await configErrorWritesNothing("{", "backup-health-check.sh", "config file is corrupt");
    });

    it("a pgBackRest job says to start it through its unit, which runs it as postgres with the backup group", async () => {
        const saved = host.config.pitr;
        host.config.pitr = { stanza: "main", archiveTimeoutSeconds: 60, repository: "posix:/nonexistent", dataDir: "/nonexistent", scratchDir: "/nonexistent", user: "postgres" };
        host.writeConfig();
        try {
            const r = await host.runScript("pitr-backup.sh", ["full"], { asRoot: true });
            expect(r.code, r.stderr).toBe(2);
            expect(r.stderr).toContain("start it through its unit, which runs it as postgres with the backup group: systemctl start hx-backup-pitr-full.service");
        } finally {
            host.config.pitr = saved;
            host.writeConfig();
        }
    });

    it("between refused root runs, the backup user's backup, restore test and verification run and own what they write", async () => {
        let r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        await refused("test-restore.sh", []);
        r = await host.runScript("test-restore.sh", []);
        expect(r.code, r.stderr + r.stdout).toBe(0);
        await refused("application-backup.sh", []);
        await refused("backup-verify.sh", ["--all", "--restore-test"]);
        writeFileSync(join(app, "new.txt"), "changed\n");
        r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        r = await host.runScript("backup-verify.sh", ["--all", "--restore-test"]);
        expect(r.code, r.stderr + r.stdout).toBe(0);
        const record = statSync(join(host.config.paths.storage, "application", "data", ".restore-test.json"));
        expect(record.uid).toBe(host.user!.uid);
        // The jobs' files are all the backup user's: storage, locks, logs and metrics.
        const rootOwned = [...tree(host.root)].filter(([p, v]) => v.startsWith("0:") && [host.config.paths.storage, host.config.paths.logs, host.config.paths.textfile].some((d) => p.startsWith(`${d}/`)));
        expect(rootOwned).toEqual([]);
    });

    it("the scripts that need root still run as root: the restore keeps owners, the privileged helper reads", async () => {
        const [m] = host.manifests("application", "data");
        const out = join(host.root, "restored");
        const logsBefore = tree(host.config.paths.logs);
        let r = await host.runScript("backup-restore.sh", ["--target", out, join(host.config.paths.storage, "application", "data", m!)], { asRoot: true });
        expect(r.code, r.stderr).toBe(0);
        const restored = statSync(join(out, app.replace(/^\//, ""), "owned.txt"));
        expect([restored.uid, restored.gid]).toEqual([1234, 2345]);
        r = await host.runScript("backup-privileged.sh", ["application-archive"], { asRoot: true });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.length).toBeGreaterThan(0);
        // As root they write nothing in the backup user's log folder (a planted link there would aim root's appends anywhere): stderr and syslog.
        expect(tree(host.config.paths.logs)).toEqual(logsBefore);
        expect(r.stderr).toMatch(/level=audit .*event=start .*what="backup-privileged.sh application-archive"/);
        // And the backup user's next backup still runs after them, its helper (with the unit's capability) logging to its file.
        writeFileSync(join(app, "after-restore.txt"), "again\n");
        const logged = host.log("backup-privileged").length;
        r = await host.runScript("application-backup.sh", [], { unit: "application" });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).not.toContain("Permission denied");
        expect(host.log("backup-privileged").length).toBeGreaterThan(logged);
    });
});
