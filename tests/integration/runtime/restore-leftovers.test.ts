/**
 * A restore leaves nothing behind, whatever its outcome. A source's restore
 * verb runs in a command substitution (backup-restore.sh: TARGET=$(hx_source
 * ... restore ...)), a subshell that runs none of the job's exit trap: the
 * temp paths it registers (lib/core.sh hx_tmp_register) must be removed by
 * the subshell itself. Checked on the library's registration directly, then
 * on real PostgreSQL restores (a database and the globals' file) that
 * succeed, are refused, or fail half-way.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chownR, missingTools, removeDir, run, tempDir } from "../../support/env";
import { makeHost, postgresqlSection, SCRIPTS_SRC, type TestHost } from "../../support/host";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../../support/postgres";

describe.skipIf(missingTools(["bash", "jq", "openssl"]).length > 0)("hx_tmp_register in a subshell", () => {
    let dir: string;
    beforeAll(() => {
        dir = tempDir("hx-tmp-register-");
    });
    afterAll(() => removeDir(dir));

    it("removes what a subshell registered when that subshell exits, and leaves the parent's list alone", async () => {
        const r = await run("bash", ["-c", `set -Eeuo pipefail; source "$1"; d=$2
            made() { : >"$1"; hx_tmp_register "$1"; printf '%s\\n' "$1"; }
            dies() { : >"$1"; hx_tmp_register "$1"; exit 3; }
            [[ $(made "$d/returned") == "$d/returned" ]]
            out=$(dies "$d/exited") || [[ $? == 3 ]]
            (dies "$d/parenthesised") || true
            made "$d/pipeline-stage" | cat >/dev/null
            made "$d/background" >/dev/null & wait "$!"
            # The shell's own path is its exit trap's (none here): still there.
            made "$d/parent" >/dev/null
            # A subshell with an exit trap of its own keeps it (hx_tmp_scope).
            (
                hx_tmp_scope
                trap 'printf "%s\\n" "\${HX_TMP_PATHS[@]}" >"$d/own-trap"; hx_tmp_cleanup' EXIT
                made "$d/scoped" >/dev/null
            )
            printf '%s\\n' "\${HX_TMP_PATHS[@]}"`, "_", join(SCRIPTS_SRC, "hx-backup-lib.sh"), dir]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toBe(`${dir}/parent\n`);
        expect(readdirSync(dir).sort()).toEqual(["own-trap", "parent"]);
        expect(readFileSync(join(dir, "own-trap"), "utf8")).toBe(`${dir}/scoped\n`);
    });
});

const missing = missingTools([...PG_TOOLS, "zstd", "jq", "openssl", "flock"]);

describe.skipIf(missing.length > 0)("backup-restore.sh leaves nothing behind", { timeout: 300_000 }, () => {
    let pg: PostgresInstance;
    let host: TestHost;
    /** The restore's TMPDIR, and where the globals are restored to: each must hold only what a restore made on purpose. */
    let tmp: string;
    let out: string;
    let manifest: string;
    let globals: string;

    /** Every path, dotfiles included, under the places a restore may write. */
    const everything = () =>
        [host.config.paths.storage, host.config.paths.textfile, tmp, out]
            .flatMap((d) => (readdirSync(d, { recursive: true }) as string[]).map((f) => join(d, f)))
            .sort();
    const restore = (args: string[]) => host.runScript("backup-restore.sh", args, { env: { TMPDIR: tmp } });

    /** A copy of MANIFEST's source whose manifest, re-signed, has the wrong PBKDF2 iteration count: it verifies, and its artifact cannot be decrypted. */
    const undecryptable = async (m: string, name: string): Promise<string> => {
        const sub = join(host.root, name);
        mkdirSync(sub);
        const parsed = JSON.parse(readFileSync(m, "utf8"));
        writeFileSync(join(sub, "unsigned.json"), JSON.stringify({ ...parsed, encryption: { ...parsed.encryption, iter: parsed.encryption.iter + 1 } }));
        writeFileSync(join(sub, parsed.artifact), readFileSync(join(m, "..", parsed.artifact)));
        if (host.user) chownR(sub, host.user);
        const forged = join(sub, "forged.manifest.json");
        const sign = await run("bash", ["-c", 'set -Eeuo pipefail; source "$1"; hx_load_config; hx_key_load "$HX_KEY_ID"; hx_manifest_sign "$2" "$3"', "_", join(host.scriptsDir, "hx-backup-lib.sh"), join(sub, "unsigned.json"), forged], {
            env: { HX_BACKUP_CONFIG: host.configPath },
            user: host.user,
        });
        expect(sign.code, sign.stderr).toBe(0);
        return forged;
    };

    beforeAll(async () => {
        pg = await startPostgres();
        host = makeHost();
        const role = host.user?.name ?? process.env.USER ?? "root";
        await pg.sql(`CREATE ROLE "${role}" LOGIN CREATEDB; GRANT pg_read_all_data TO "${role}"; CREATE DATABASE leftdb;`);
        await pg.sql("CREATE TABLE t (id int PRIMARY KEY, note text); CREATE INDEX t_note ON t (note); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g;", "leftdb");
        host.config.postgresql = postgresqlSection(pg, role, ["leftdb"]);
        host.writeConfig();
        tmp = join(host.root, "tmp");
        out = join(host.root, "out");
        mkdirSync(tmp);
        mkdirSync(out);
        if (host.user) {
            chownR(tmp, host.user);
            chownR(out, host.user);
        }
        const r = await host.runScript("postgresql-backup.sh", ["daily"]);
        expect(r.code, r.stderr).toBe(0);
        manifest = join(host.config.paths.storage, "postgresql", "leftdb", host.manifests("postgresql", "leftdb")[0]!);
        globals = join(host.config.paths.storage, "postgresql", "_globals", host.manifests("postgresql", "_globals")[0]!);
    });

    afterAll(async () => {
        await pg?.stop();
        host?.cleanup();
    });

    it("into a database: restored, refused (target exists), failed half-way (undecryptable), refused (tampered)", async () => {
        const forged = await undecryptable(manifest, "forged-leftdb");
        const before = everything();
        let r = await restore(["--target", "leftdb_copy", manifest]);
        expect(r.code, r.stderr).toBe(0);
        expect(await pg.sql("SELECT count(*) FROM t", "leftdb_copy")).toBe("500");
        expect(everything()).toEqual(before);

        r = await restore(["--target", "leftdb_copy", manifest]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("without --force");
        expect(everything()).toEqual(before);

        // Past the database's creation and into pg_restore, whose lists folder is made by then.
        r = await restore(["--target", "leftdb_forged", forged]);
        expect(r.code).toBe(1);
        expect(host.log("backup-restore")).toMatch(/pg_restore failed/);
        expect(everything()).toEqual(before);

        const art = join(host.config.paths.storage, "postgresql", "leftdb", (JSON.parse(readFileSync(manifest, "utf8")) as { artifact: string }).artifact);
        const orig = readFileSync(art);
        const bad = Buffer.from(orig);
        bad[bad.length - 5]! ^= 0x10;
        writeFileSync(art, bad);
        r = await restore(["--target", "leftdb_tampered", manifest]);
        writeFileSync(art, orig);
        expect(r.code).toBe(4);
        expect(everything()).toEqual(before);
    });

    it("into a file (the globals): restored, refused (file exists), failed half-way (undecryptable)", async () => {
        const forged = await undecryptable(globals, "forged-globals");
        const file = join(out, "globals.sql");
        const before = everything();
        let r = await restore(["--target", file, globals]);
        expect(r.code, r.stderr).toBe(0);
        expect(readFileSync(file, "utf8")).toMatch(/CREATE ROLE/);
        expect(everything()).toEqual([...before, file].sort());

        r = await restore(["--target", file, globals]);
        expect(r.code).toBe(2);
        expect(everything()).toEqual([...before, file].sort());

        // Decryption fails once the file's .partial is open.
        const other = join(out, "forged.sql");
        r = await restore(["--target", other, forged]);
        expect(r.code).toBe(1);
        expect(host.log("backup-restore")).toMatch(/decryption failed/);
        expect(existsSync(other)).toBe(false);
        expect(everything()).toEqual([...before, file].sort());
    });

    it("the restore test of the newest backup", async () => {
        const before = everything();
        const r = await host.runScript("test-restore.sh", ["postgresql"], { env: { TMPDIR: tmp } });
        expect(r.code, r.stdout + r.stderr).toBe(0);
        // Its record, beside the source's backups, is what it writes on purpose.
        const records = ["leftdb", "_globals"].map((t) => join(host.config.paths.storage, "postgresql", t, ".restore-test.json"));
        expect(everything()).toEqual([...new Set([...before, ...records])].sort());
    });
});
