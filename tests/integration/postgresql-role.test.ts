/**
 * The `postgresql-role` install step against a real PostgreSQL 15: creates the
 * dump role with LOGIN, CREATEDB and pg_read_all_data, and is idempotent.
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import { planHost } from "../../render/hostPlan";
import { wrapStep } from "../../render/remote";
import { isCI, isRoot, missingTools } from "../support/env";
import { PG_TOOLS, startPostgres, type PostgresInstance } from "../support/postgres";

const missing = [...missingTools(PG_TOOLS), ...missingTools(["runuser"])];
if (isCI && (missing.length || !isRoot)) throw new Error(`postgresql-role test needs root and ${missing.join(", ")} in CI`);

describe.runIf(missing.length === 0 && isRoot)("postgresql-role step", () => {
    let pg: PostgresInstance;
    beforeAll(async () => {
        pg = await startPostgres();
    });
    afterAll(async () => pg?.stop());

    it("creates the dump role with least privilege, and a second run changes nothing", async () => {
        const config = loadStackConfig("itest", {
            backupUser: "hxdump",
            hosts: [{ name: "db", address: "127.0.0.1", roles: ["postgresql"], remoteSync: false, postgresql: { host: pg.socketDir, port: pg.port } }],
        });
        const facts = { currentKeyId: "itest-v1", keyIds: ["itest-v1"], keyFingerprints: {} };
        const step = planHost(config, config.hosts[0], facts).steps.find((s) => s.name === "postgresql-role")!;
        for (let i = 0; i < 2; i++) {
            const r = spawnSync("bash", ["-c", wrapStep(step.create, false)], { encoding: "utf8" });
            expect(r.status, r.stderr).toBe(0);
        }
        const role = await pg.sql("SELECT rolcanlogin, rolcreatedb, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'hxdump'");
        expect(role).toBe("t|t|f|f");
        const member = await pg.sql("SELECT pg_has_role('hxdump', 'pg_read_all_data', 'MEMBER')");
        expect(member).toBe("t");
        expect(await pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'hxdump'")).toBe("1");
    });
});
