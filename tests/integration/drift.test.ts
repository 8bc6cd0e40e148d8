/**
 * Drift detection against a real host over SSH: a sandbox sshd in a private
 * mount namespace gets a plan applied, then hand edits are made and found.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { stringify } from "yaml";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import type { StackConfig } from "../../config/types";
import { planHost } from "../../render/hostPlan";
import { detectDrift } from "../../scripts/drift";
import { renderFacts } from "../../scripts/render";
import { applySteps } from "../../scripts/sandbox/apply";
import { removeSandboxDir, startSandboxHost, type SandboxHost } from "../../scripts/sandbox/host";
import { runJobService } from "../../scripts/sandbox/jobs";
import { unitName } from "../../render/systemd";

const root = process.getuid?.() === 0;
const tools = ["unshare", "ssh", "ssh-keygen", "sshd"].filter((t) => spawnSync("bash", ["-c", `PATH=$PATH:/usr/sbin command -v ${t}`]).status !== 0);
if (process.env.CI === "true" && (!root || tools.length)) throw new Error(`drift test needs root and ${tools.join(", ")} in CI`);

const RAW = (port: number, hostKey: string) => ({
    backupUser: "hxdrift",
    installPackages: false,
    hosts: [{ name: "box", address: "127.0.0.1", port, hostKey, roles: ["application", "configuration"], remoteSync: false, application: { paths: ["/srv/app"] } }],
});

describe.runIf(root && tools.length === 0)("npm run drift against a real host over SSH", () => {
    let host: SandboxHost;
    let config: StackConfig;
    const secrets = { keys: { "box-v1": "cd".repeat(64) } };

    beforeAll(async () => {
        host = await startSandboxHost(mkdtempSync(path.join(tmpdir(), "hx-drift-")));
        config = loadStackConfig("box", RAW(host.port, host.hostKey));
        await applySteps(host.exec, planHost(config, config.hosts[0], renderFacts(config)).steps, secrets, config.hosts[0]);
    });

    afterAll(async () => {
        await host?.stop();
        if (host) removeSandboxDir(host.dir);
    });

    /** Runs the on-host check as its timer's service would (its unit's user and capabilities) and reads its metric. */
    const onHostCheck = async () => {
        const run = (await runJobService(host.exec, unitName("drift-check", "service"))).at(-1)!;
        const prom = await host.exec("cat /var/lib/prometheus/node-exporter/hx_backup-drift-files.prom");
        const value = /^backup_config_drift\{[^}]*\} (\d+)$/m.exec(prom.stdout)?.[1];
        return { code: run.code, drifted: value === undefined ? undefined : Number(value), log: run.stdout + run.stderr };
    };

    it("finds no drift right after a deploy, from the repo and on the host", async () => {
        const [r] = await detectDrift(config, { keyFile: host.keyFile });
        expect(r.error).toBeUndefined();
        expect(r.drifts).toEqual([]);
        const check = await onHostCheck();
        expect(check, check.log).toMatchObject({ code: 0, drifted: 0 });
    });

    it("reports a hand-edited script, a chmod-ed key, a removed unit and a stray file, each by kind; the library's lib/ and lib/source/ too", async () => {
        const edit = await host.exec(
            "echo '# hand edit' >> /var/lib/backup/scripts/application-backup.sh && echo '# hand edit' >> /var/lib/backup/scripts/lib/source/redis.sh && echo '# hand edit' >> /var/lib/backup/scripts/lib/config-path && touch /var/lib/backup/scripts/lib/source/stray.sh && chmod 0644 /etc/hx-backup/keys/box-v1.key && rm /etc/systemd/system/hx-backup-application-daily.timer && touch /etc/systemd/system/hx-backup-stray.service && chown root /etc/hx-backup/backup.json && chgrp root /etc/hx-backup/backup.json",
        );
        expect(edit.code, edit.stderr).toBe(0);
        const [r] = await detectDrift(config, { keyFile: host.keyFile });
        const found = r.drifts.map((d) => `${d.kind} ${d.path}`).sort();
        expect(found).toEqual([
            "changed /var/lib/backup/scripts/application-backup.sh",
            "changed /var/lib/backup/scripts/lib/config-path",
            "changed /var/lib/backup/scripts/lib/source/redis.sh",
            "extra /etc/systemd/system/hx-backup-stray.service",
            "extra /var/lib/backup/scripts/lib/source/stray.sh",
            "missing /etc/systemd/system/hx-backup-application-daily.timer",
            "mode /etc/hx-backup/keys/box-v1.key",
            "owner /etc/hx-backup/backup.json",
        ]);
        expect(r.drifts.find((d) => d.kind === "mode")).toMatchObject({ expected: "0600", actual: "0644" });
        const check = await onHostCheck();
        expect(check, check.log).toMatchObject({ code: 1, drifted: 8 });
    });

    it("npm run drift exits 1 and prints each difference; after a redeploy only the stray file it does not own remains", async () => {
        const stackDir = mkdtempSync(path.join(tmpdir(), "hx-drift-stack-"));
        writeFileSync(path.join(stackDir, "Pulumi.box.yaml"), stringify({ config: Object.fromEntries(Object.entries(RAW(host.port, host.hostKey)).map(([k, v]) => [`hx-backup:${k}`, v])) }));
        const cli = () => spawnSync("npx", ["tsx", "scripts/drift.ts", "--stack", "box", "--stack-dir", stackDir], { cwd: path.resolve(__dirname, "../.."), encoding: "utf8", env: { ...process.env, HX_SSH_KEY_FILE: host.keyFile } });
        const before = cli();
        expect(before.status, before.stderr).toBe(1);
        expect(before.stdout).toMatch(/^box: 8 differences$/m);
        expect(before.stdout).toMatch(/^ {2}mode {4}\/etc\/hx-backup\/keys\/box-v1\.key {2}\(expected 0600, found 0644\)$/m);
        await applySteps(host.exec, planHost(config, config.hosts[0], renderFacts(config)).steps, secrets, config.hosts[0]);
        const [r] = await detectDrift(config, { keyFile: host.keyFile });
        expect(r.drifts.map((d) => `${d.kind} ${d.path}`).sort()).toEqual(["extra /etc/systemd/system/hx-backup-stray.service", "extra /var/lib/backup/scripts/lib/source/stray.sh"]);
        const after = cli();
        expect(after.status).toBe(1);
        await host.exec("rm /etc/systemd/system/hx-backup-stray.service /var/lib/backup/scripts/lib/source/stray.sh");
        const clean = cli();
        expect(clean.status, clean.stdout + clean.stderr).toBe(0);
        expect(clean.stdout.trim()).toBe("box: no drift");
    });
});
