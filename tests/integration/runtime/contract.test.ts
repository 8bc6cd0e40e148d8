/**
 * The scripts' side of the backup.json contract: they keep no default of
 * their own, so a field the render did not write is a config error (exit 2)
 * that names the field, in the output, the log and the config-failure
 * metric, and never a silent fallback.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingTools, run } from "../../support/env";
import { makeHost, type TestHost } from "../../support/host";

const missing = missingTools(["jq", "openssl", "flock"]);

/** `config` without the field at `path` (dotted). */
function without(config: unknown, path: string): unknown {
    const copy = structuredClone(config) as Record<string, unknown>;
    const keys = path.split(".");
    let node = copy;
    for (const k of keys.slice(0, -1)) node = node[k] as Record<string, unknown>;
    delete node[keys[keys.length - 1]];
    return copy;
}

describe.skipIf(missing.length > 0)("scripts read only what the render writes", { timeout: 120_000 }, () => {
    let host: TestHost;

    beforeAll(() => {
        host = makeHost({ remote: { enabled: true, bucket: "hx-backups", endpoint: "http://127.0.0.1:9" } });
        host.config.monitoring = { nodeExporterUrl: "http://127.0.0.1:9/metrics" };
        host.writeConfig();
    });

    afterAll(() => host?.cleanup());

    it("runs with the rendered config as it is", async () => {
        const r = await host.runScript("backup-retention.sh");
        expect(r.code, r.stderr).toBe(0);
    });

    // Each field, and a script that reads it before it does anything else.
    const cases: [string, string, string[]][] = [
        // backup-sync.sh used to fall back to 3 retries where the schema's default is 5.
        ["remote.retries", "backup-sync.sh", []],
        ["remote.storageClass", "backup-sync.sh", []],
        ["retention.orphanMinutes", "backup-retention.sh", []],
        ["retention.weekly", "backup-retention.sh", []],
        ["storageQuotaBytes", "backup-retention.sh", []],
        ["drift.manifestDir", "backup-drift-check.sh", []],
        ["monitoring.nodeExporterUrl", "test-monitoring.sh", []],
        ["redis", "redis-backup.sh", []],
        ["encryption.mac", "backup-retention.sh", []],
        ["jobs", "backup-health-check.sh", []],
    ];
    for (const [field, script, args] of cases) {
        it(`${script} without ${field}: exit 2, naming the field`, async () => {
            for (const f of readdirSync(host.config.paths.textfile)) rmSync(join(host.config.paths.textfile, f));
            host.writeConfig(JSON.stringify(without(host.config, field)));
            try {
                const r = await host.runScript(script, args);
                expect(r.code, r.stderr).toBe(2);
                expect(r.stderr).toContain(`has no ${field} (expected`);
                expect(r.stderr).toMatch(/level=error .*event=failed/);
                // The failure is exported, so BackupFailed fires for a broken config too.
                const configStatus = [...host.metrics()].filter(([k]) => k.startsWith("backup_last_run_status{") && k.endsWith('target="_config"}'));
                expect(configStatus.map(([, v]) => v)).toEqual([0]);
            } finally {
                host.writeConfig();
            }
        });
    }

    it("a null where a value belongs is the same error", async () => {
        host.writeConfig(JSON.stringify({ ...host.config, retention: { ...host.config.retention, daily: null } }));
        try {
            const r = await host.runScript("backup-retention.sh");
            expect(r.code).toBe(2);
            expect(r.stderr).toContain("has no retention.daily (expected a value, found null)");
        } finally {
            host.writeConfig();
        }
    });

    it("refuses a config of another format, or an encryption scheme the library does not implement", async () => {
        host.writeConfig(JSON.stringify({ ...host.config, format: 2 }));
        let r = await host.runScript("backup-retention.sh");
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/unsupported format \(want format 1\)/);
        host.writeConfig(JSON.stringify({ ...host.config, encryption: { ...host.config.encryption, cipher: "aes-128-cbc" } }));
        r = await host.runScript("backup-retention.sh");
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("is not what this library implements");
        host.writeConfig();
    });
});

describe.skipIf(missing.length > 0)("the failure cause BackupFailed shows", () => {
    let host: TestHost;
    beforeAll(() => {
        host = makeHost();
        host.writeConfig();
    });
    afterAll(() => host?.cleanup());

    const causeOf = async (cause: string) => {
        const lib = join(host.scriptsDir, "hx-backup-lib.sh");
        const r = await run("bash", ["-c", 'set -Eeuo pipefail; source "$1"; hx_load_config; hx_failure_cause postgresql appdb "$2"', "_", lib, cause], { env: { HX_BACKUP_CONFIG: host.configPath } });
        expect(r.code, r.stderr).toBe(0);
        return /cause="(.*)"\} 1$/m.exec(readFileSync(join(host.config.paths.textfile, "hx_backup_cause-postgresql-appdb.prom"), "utf8"))![1];
    };

    it("keeps a short cause whole, and cuts a long one at a word's end, marked", async () => {
        expect(await causeOf("pg_dump failed: disk full")).toBe("pg_dump failed: disk full");
        const long = `${"connection to server failed: ".repeat(12)}Is the server running locally and accepting connections`;
        const cut = await causeOf(long);
        expect(cut.length).toBeLessThanOrEqual(304);
        expect(cut).toMatch(/ \.\.\.$/);
        expect(long.startsWith(cut.slice(0, -4))).toBe(true);
        expect(long[cut.length - 4]).toBe(" ");
        // Newlines and non-ASCII never reach the label.
        expect(await causeOf('line1\nline2 "quoted" \u00e9')).toBe('line1 line2 \\"quoted\\" ??');
    });
});
