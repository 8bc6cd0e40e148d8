/** `npm run render` as an operator runs it: the file tree, the manifest, and clear errors. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./mockProgram";

const out = mkdtempSync(path.join(tmpdir(), "hx-render-cli-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const render = (...args: string[]) => spawnSync("npx", ["tsx", "scripts/render.ts", ...args], { cwd: ROOT, encoding: "utf8" });

describe("npm run render", () => {
    it("writes one host's files at their install paths, with modes, and a manifest that lists secrets without content", () => {
        const r = render("--stack", "production", "--host", "db-1", "--out", out);
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^db-1: \d+ files, 4 secret files/);
        expect(existsSync(path.join(out, "app-1"))).toBe(false);
        const config = JSON.parse(readFileSync(path.join(out, "db-1/etc/hx-backup/backup.json"), "utf8"));
        expect(config).toMatchObject({ host: "db-1", stack: "production", paths: { storage: "/opt/hx-backups" } });
        expect(statSync(path.join(out, "db-1/etc/sudoers.d/hx-backup")).mode & 0o777).toBe(0o440);
        expect(statSync(path.join(out, "db-1/var/lib/backup/scripts/postgresql-backup.sh")).mode & 0o777).toBe(0o755);
        const manifest = readFileSync(path.join(out, "db-1/MANIFEST.tsv"), "utf8");
        expect(manifest).toMatch(/^\/etc\/hx-backup\/backup\.json\troot\tbackup\t0640\t[0-9a-f]{64}$/m);
        expect(manifest).toMatch(/^\/etc\/hx-backup\/keys\/production-v1\.key\tbackup\tbackup\t0600\t\(secret/m);
        expect(existsSync(path.join(out, "db-1/etc/hx-backup/keys/production-v1.key"))).toBe(false);
    });

    it("puts the monitoring files on the monitoring host", () => {
        const r = render("--stack", "production", "--out", out);
        expect(r.status, r.stderr).toBe(0);
        expect(readFileSync(path.join(out, "mon-1/opt/hx-backups/monitoring/backup-alert-rules.yml"), "utf8")).toContain("alert: BackupFailed");
        expect(JSON.parse(readFileSync(path.join(out, "mon-1/var/lib/grafana/dashboards/hx-backup.json"), "utf8")).uid).toBe("hx-backup");
    });

    it("names the problem for an unknown stack or host, and for missing arguments", () => {
        expect(render("--stack", "nope", "--out", out).stderr).toMatch(/no stack file .*Pulumi\.nope\.yaml/);
        const badHost = render("--stack", "production", "--host", "db-9", "--out", out);
        expect(badHost.status).toBe(2);
        expect(badHost.stderr).toContain('no host "db-9" in stack production (hosts: db-1, db-2, app-1, mon-1)');
        expect(render("--stack", "production").stderr).toContain("usage: npm run render");
    });
});
