/**
 * The whole Pulumi program under mocks: the resource graph of each stack,
 * secrets never in plaintext inputs, argv or outputs, identical inputs on a
 * second evaluation, and config errors before any resource exists.
 */
import { repositoryPassphrase } from "../../render/pgbackrest";
import { readFileSync } from "node:fs";
import { describe, expect, it, beforeAll } from "vitest";
import { planHost } from "../../render/hostPlan";
import { wrapStep } from "../../render/remote";
import { withDigest } from "../../render/step";
import { installIdentity, ownedStep } from "../../render/ownership";
import { loadStackFromFiles, renderFacts } from "../../scripts/render";
import { parseFilesDocument, stdinFile } from "./helpers";
import {
    commands, evaluate, IAM_SECRET, plaintextView, reveal, ROOT, stackConfig, TEST_SECRETS, isSecretWrapped, type Evaluation,
} from "./mockProgram";

const PROD_SECRETS = ["hx-backup:sshPrivateKey"];
const SANDBOX_SECRETS = ["hx-backup:sshPrivateKey", "hx-backup:s3AccessKeyId", "hx-backup:s3SecretAccessKey"];

function withSecrets(stack: string, keys: string[], extra: Record<string, string> = {}) {
    const config = { ...stackConfig(stack), ...extra };
    for (const k of keys) config[k] = TEST_SECRETS[k as keyof typeof TEST_SECRETS];
    return config;
}

const byType = (e: Evaluation, type: string) => e.resources.filter((r) => r.type === type);
const names = (e: Evaluation, type: string) => byType(e, type).map((r) => r.name).sort();

describe("production stack", () => {
    let e: Evaluation;
    beforeAll(async () => {
        e = await evaluate("production", withSecrets("production", PROD_SECRETS), PROD_SECRETS);
    });

    it("composes storage, keys, four hosts and monitoring under hx-backup type tokens", () => {
        expect(names(e, "hx-backup:storage:BackupStorage")).toEqual(["storage"]);
        expect(names(e, "hx-backup:keys:EncryptionKeys")).toEqual(["keys"]);
        expect(names(e, "hx-backup:host:BackupHost")).toEqual(["app-1", "db-1", "db-2", "mon-1"]);
        expect(names(e, "hx-backup:monitoring:MonitoringIntegration")).toEqual(["monitoring"]);
        for (const r of e.resources.filter((x) => x.type.startsWith("hx-backup:"))) expect(r.type).toMatch(/^hx-backup:[a-z]+:[A-Z][A-Za-z]+$/);
    });

    it("creates a hardened AWS bucket: versioning, SSE-KMS with a rotating key and bucket keys, public access blocked, Object Lock", () => {
        const [key] = byType(e, "aws:kms/key:Key");
        expect(key.inputs.enableKeyRotation).toBe(true);
        const [bucket] = byType(e, "aws:s3/bucket:Bucket");
        expect(bucket.inputs.bucket).toBe("hx-backups-production-euc1");
        expect(bucket.inputs.objectLockEnabled).toBe(true);
        expect(bucket.inputs.forceDestroy).toBe(false);
        expect((byType(e, "aws:s3/bucketVersioning:BucketVersioning")[0].inputs.versioningConfiguration as { status: string }).status).toBe("Enabled");
        const sse = byType(e, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0].inputs.rules as Array<Record<string, any>>;
        expect(sse[0].applyServerSideEncryptionByDefault.sseAlgorithm).toBe("aws:kms");
        expect(sse[0].applyServerSideEncryptionByDefault.kmsMasterKeyId).toContain("arn:aws:kms:");
        expect(sse[0].bucketKeyEnabled).toBe(true);
        const pab = byType(e, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0].inputs;
        expect([pab.blockPublicAcls, pab.blockPublicPolicy, pab.ignorePublicAcls, pab.restrictPublicBuckets]).toEqual([true, true, true, true]);
        const lock = byType(e, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")[0].inputs.rule as Record<string, any>;
        expect(lock.defaultRetention).toEqual({ mode: "GOVERNANCE", days: 30 });
    });

    it("bucket policy denies plain HTTP and non-KMS puts", () => {
        const policy = JSON.parse(byType(e, "aws:s3/bucketPolicy:BucketPolicy")[0].inputs.policy as string);
        const sids = policy.Statement.map((s: { Sid: string }) => s.Sid);
        expect(sids).toEqual(expect.arrayContaining(["DenyInsecureTransport", "DenyNonKmsPuts"]));
        const tls = policy.Statement.find((s: { Sid: string }) => s.Sid === "DenyInsecureTransport");
        expect(tls).toMatchObject({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } });
    });

    it("lifecycle rules tier each retention class and clean up versions and multipart uploads", () => {
        const rules = byType(e, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0].inputs.rules as Array<Record<string, any>>;
        const yearly = rules.find((r) => r.id === "hx-backup-yearly")!;
        expect(yearly.filter).toEqual({ prefix: "hx-backup/yearly/" });
        expect(yearly.transitions.map((t: { storageClass: string }) => t.storageClass)).toEqual(["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"]);
        expect(rules.find((r) => r.id === "hx-backup-daily")!.expiration).toEqual({ days: 8 });
        const housekeeping = rules.find((r) => r.id === "hx-backup-housekeeping")!;
        expect(housekeeping.noncurrentVersionExpiration).toEqual({ noncurrentDays: 30 });
        expect(housekeeping.abortIncompleteMultipartUpload).toEqual({ daysAfterInitiation: 7 });
    });

    it("the writer identity can read and write the prefix only, never delete or reconfigure", () => {
        const policy = JSON.parse(byType(e, "aws:iam/userPolicy:UserPolicy")[0].inputs.policy as string);
        const actions: string[] = policy.Statement.flatMap((s: { Action: string | string[] }) => [s.Action].flat());
        expect(actions.filter((a) => /Delete|PutBucket|PutLifecycle|PutEncryption|PutObjectLock|s3:\*/.test(a))).toEqual([]);
        const objects = policy.Statement.find((s: { Sid: string }) => s.Sid === "ReadWriteBackupObjects");
        expect(objects.Resource).toBe("arn:aws:s3:::hx-backups-production-euc1/hx-backup/*");
    });

    it("@pulumi/command replaces a command only for a changed `triggers`, which no step sets", () => {
        const sdk = readFileSync(require.resolve("@pulumi/command/remote/command.js"), "utf8");
        expect([...sdk.matchAll(/replaceOnChanges: (\[.*?\]) \}/g)].map((m) => m[1])).toEqual(['["triggers[*]"]']);
        expect(commands(e).filter((c) => c.inputs.triggers !== undefined).map((c) => c.name)).toEqual([]);
    });

    it("installs every host with steps whose command carries the plan's digest, and no triggers", () => {
        const config = loadStackFromFiles(ROOT, "production");
        for (const host of config.hosts) {
            const plan = planHost(config, host, renderFacts(config));
            const cmds = commands(e).filter((c) => c.name.startsWith(`${host.name}-`));
            expect(cmds.map((c) => c.name.slice(host.name.length + 1)).sort()).toEqual(plan.steps.map((s) => s.name).sort());
            for (const c of cmds) {
                // An update runs `create` again (@pulumi/command's rule when `update` is unset).
                expect(c.inputs.update, `${c.name} update`).toBeUndefined();
                expect(c.inputs.addPreviousOutputInEnv).toBe(false);
                // A changed trigger replaces a command (delete first); a changed create updates it in place.
                expect(c.inputs.triggers, `${c.name} triggers`).toBeUndefined();
                expect(c.inputs.create as string).toMatch(/^(sudo -n )?sh -c 'set -eu\n# hx-backup step digest [0-9a-f]{64}\n/);
            }
            const unitStep = plan.steps.find((s) => s.name === "units")!;
            const cmd = cmds.find((c) => c.name === `${host.name}-units`)!;
            const owned = ownedStep(unitStep, installIdentity("hx-backup", "production", cmd.name));
            expect(cmd.inputs.create).toBe(wrapStep(withDigest(owned.create, unitStep.digest), config.ssh.sudo));
            // The create claims the unit files for this very resource before it installs them.
            expect(owned.create.indexOf("hx_resource='hx-backup/production/")).toBeLessThan(owned.create.indexOf(": \"${from:?}\" \"${check?}\""));
            expect(reveal(cmd.inputs.stdin)).toBe(unitStep.stdin);
        }
    });

    it("ships the static scripts to each host as a copy of templates/scripts (its path and hash in the state, not its bytes); the files step's stdin names each script with its sha256", async () => {
        const config = loadStackFromFiles(ROOT, "production");
        const copies = byType(e, "command:remote:CopyToRemote");
        expect(copies.map((c) => c.name).sort()).toEqual(config.hosts.map((h) => `${h.name}-files-stage`).sort());
        for (const host of config.hosts) {
            const copy = copies.find((c) => c.name === `${host.name}-files-stage`)!;
            expect(await (copy.inputs.source as { path: Promise<string> }).path).toBe("templates/scripts");
            expect(copy.inputs.remotePath).toBe(`.cache/hx-backup/stage/production/${host.name}`);
            expect(reveal(copy.inputs.connection)).toMatchObject({ host: host.address, user: "deploy" });
            // The files step's host state: a drift repair copies the stage again before the step runs.
            expect(copy.inputs.triggers).toEqual([expect.stringMatching(/^repairs \d+$/)]);
            const files = commands(e).find((c) => c.name === `${host.name}-files`)!;
            const stdin = reveal(files.inputs.stdin) as string;
            const scripts = parseFilesDocument(stdin).filter((f) => f.staged !== undefined);
            expect(scripts.length).toBeGreaterThan(10);
            expect(stdin.length).toBeLessThan(16 * 1024);
            expect(stdin).not.toContain("set -Eeuo pipefail");
        }
    });

    it("runs steps through sudo -n for the non-root deploy user and connects via the pinned bastion", () => {
        const cmd = commands(e).find((c) => c.name === "db-1-config")!;
        expect(cmd.inputs.create).toMatch(/^sudo -n sh -c /);
        const conn = reveal(cmd.inputs.connection) as Record<string, any>;
        expect(conn).toMatchObject({ host: "10.20.1.11", user: "deploy", hostKey: expect.stringMatching(/^ssh-ed25519 /) });
        expect(conn.proxy).toMatchObject({ host: "bastion.hx.internal", hostKey: expect.stringMatching(/^ssh-ed25519 /) });
    });

    it("installs alert rules behind a promtool check, then reloads Prometheus; dashboard by file", () => {
        const rules = commands(e).find((c) => c.name === "monitoring-alert-rules")!;
        const create = rules.inputs.create as string;
        expect(create).toContain("promtool check rules");
        // After the install records (claim.sh), the rules' own install (install-files.sh): checked, then moved into place, then reloaded.
        const install = create.slice(create.indexOf(": \"${from:?}\" \"${check?}\""));
        expect(install.indexOf("check rules")).toBeLessThan(install.indexOf("mv -f"));
        expect(install.indexOf("mv -f")).toBeLessThan(install.indexOf("systemctl reload prometheus"));
        expect(reveal(rules.inputs.stdin)).toContain("alert: BackupFailed");
        const dashboard = commands(e).find((c) => c.name === "monitoring-dashboard")!;
        expect(dashboard.inputs.create).toContain("/var/lib/grafana/dashboards/hx-backup.json");
    });

    it("exports where everything is: bucket, KMS key, per-host jobs with schedules and paths, key fingerprints, alerts, dashboard", () => {
        const o = e.outputs as Record<string, any>;
        expect(o.storage).toMatchObject({ bucketName: "hx-backups-production-euc1", region: "eu-central-1", endpoint: "https://s3.eu-central-1.amazonaws.com" });
        expect(o.storage.kmsKeyArn).toMatch(/^arn:aws:kms:/);
        const db1 = o.hosts["db-1"];
        const daily = db1.jobs.find((j: { name: string }) => j.name === "postgresql-daily");
        expect(daily).toMatchObject({ schedule: "*-*-* 02:00:00", description: "every day at 02:00", command: "/var/lib/backup/scripts/postgresql-backup.sh daily" });
        expect(db1.jobs.find((j: { name: string }) => j.name === "postgresql-weekly").description).toBe("every Sunday at 03:00");
        expect(db1.paths).toMatchObject({ config: "/etc/hx-backup/backup.json", scripts: "/var/lib/backup/scripts", logs: "/var/log/hx-backups" });
        expect(db1.pitr).toMatchObject({ stanza: "db-1-15-main", repository: "s3:hx-backups-production-euc1/hx-backup/pgbackrest/db-1/production-v1", configFile: "/etc/pgbackrest/pgbackrest.conf" });
        expect(db1.jobs.map((j: { name: string }) => j.name)).toEqual(expect.arrayContaining(["pitr-full", "pitr-differential", "pitr-archive", "pitr-verify"]));
        expect(o.hosts["db-2"].pitr).toBeUndefined();
        expect(o.encryption.currentKeyId).toBe("production-v1");
        expect(o.encryption.fingerprints["production-v1"]).toMatch(/^sha256:[0-9a-f]{16}$/);
        expect(o.monitoring.alertRules).toEqual(expect.arrayContaining(["BackupFailed", "BackupDelayed", "StorageFull", "VerificationFailed"]));
        expect(o.monitoring.dashboardUid).toBe("hx-backup");
    });

    it("never puts a secret in plaintext inputs, command text (argv) or outputs", () => {
        // The pgBackRest repository passphrases are derived from the keys: as secret as they are.
        const passphrases = Object.entries(e.randomHex).map(([name, hex]) => repositoryPassphrase(hex, name.replace(/^keys-/, "")));
        const secrets = [TEST_SECRETS["hx-backup:sshPrivateKey"], IAM_SECRET, ...Object.values(e.randomHex), ...Object.values(e.randomSecrets), ...passphrases];
        const encoded = secrets.map((s) => Buffer.from(s).toString("base64"));
        const plain = JSON.stringify(e.resources.map((r) => plaintextView(r.inputs)));
        const outputs = JSON.stringify(e.outputs);
        for (const s of [...secrets, ...encoded]) {
            expect(plain.includes(s), "secret in plaintext inputs").toBe(false);
            expect(outputs.includes(s), "secret in outputs").toBe(false);
        }
        for (const c of commands(e)) {
            const argv = [c.inputs.create, c.inputs.update, c.inputs.delete].map((x) => JSON.stringify(reveal(x))).join("\n");
            for (const s of [...secrets, ...encoded]) expect(argv.includes(s), `${c.name} command text`).toBe(false);
        }
        // The secrets do reach the hosts, wrapped: keyring and credentials stdin.
        const keyring = commands(e).find((c) => c.name === "db-1-keyring")!;
        expect(isSecretWrapped(keyring.inputs.stdin)).toBe(true);
        expect(keyring.inputs.logging).toBe("none");
        const line = (reveal(keyring.inputs.stdin) as string).split("\n")[0];
        expect(Buffer.from(line, "base64").toString()).toBe(`${e.randomHex["keys-production-v1"]}\n`);
        const creds = commands(e).find((c) => c.name === "db-1-credentials")!;
        expect(Buffer.from((reveal(creds.inputs.stdin) as string).split("\n")[0], "base64").toString()).toContain(IAM_SECRET);
        expect(isSecretWrapped(creds.inputs.stdin)).toBe(true);
    });
});

describe("sandbox stack", () => {
    let e: Evaluation;
    beforeAll(async () => {
        e = await evaluate("sandbox", withSecrets("sandbox", SANDBOX_SECRETS), SANDBOX_SECRETS);
    });

    it("manages no AWS resource and hands the custom endpoint and credentials to the host", () => {
        expect(e.resources.filter((r) => r.type.startsWith("aws:"))).toEqual([]);
        const config = JSON.parse(stdinFile({ stdin: reveal(commands(e).find((c) => c.name === "db-1-config")!.inputs.stdin) as string }, "/etc/hx-backup/backup.json"));
        expect(config.remote).toMatchObject({ enabled: true, endpoint: "https://127.0.0.1:4569", caFile: "/etc/hx-sandbox/s3-ca.pem", bucket: "hx-backup-sandbox", region: "us-east-1" });
        const creds = commands(e).find((c) => c.name === "db-1-credentials")!;
        expect(isSecretWrapped(creds.inputs.stdin)).toBe(true);
        const file = Buffer.from((reveal(creds.inputs.stdin) as string).split("\n")[0], "base64").toString();
        expect(file).toBe(`[default]\naws_access_key_id = ${TEST_SECRETS["hx-backup:s3AccessKeyId"]}\naws_secret_access_key = ${TEST_SECRETS["hx-backup:s3SecretAccessKey"]}\n`);
        const plain = JSON.stringify(e.resources.map((r) => plaintextView(r.inputs)));
        expect(plain.includes(TEST_SECRETS["hx-backup:s3SecretAccessKey"])).toBe(false);
    });

    it("gives each host of the fleet the units of its roles, and the monitoring steps run on mon-1's address", () => {
        const units = (host: string) => parseFilesDocument(reveal(commands(e).find((c) => c.name === `${host}-units`)!.inputs.stdin) as string).map((f) => f.path.replace(/^.*\//, ""));
        const expected: Record<string, string[]> = {
            "db-1": ["postgresql-daily", "postgresql-weekly", "redis-daily", "configuration-daily", "verification-weekly"],
            "app-1": ["application-daily", "configuration-daily", "verification-weekly"],
            "mon-1": ["configuration-daily", "verification-weekly"],
        };
        for (const [host, jobs] of Object.entries(expected)) {
            for (const job of jobs) {
                expect(units(host)).toContain(`hx-backup-${job}.service`);
                expect(units(host)).toContain(`hx-backup-${job}.timer`);
            }
        }
        expect(units("app-1").some((u) => /postgresql|redis/.test(u))).toBe(false);
        const rules = commands(e).find((c) => c.name === "monitoring-alert-rules")!;
        expect((reveal(rules.inputs.connection) as { host: string }).host).toBe("127.0.0.4");
        expect(commands(e).map((c) => c.name)).not.toContain("monitoring-dashboard");
    });
});

describe("Grafana through the HTTP API", () => {
    it("sends the token on secret stdin only, never in the command, logs or plaintext state", async () => {
        const keys = [...PROD_SECRETS, "hx-backup:grafanaApiToken"];
        const e = await evaluate("production", withSecrets("production", keys, { "hx-backup:grafanaMode": "api", "hx-backup:grafanaUrl": "https://grafana.hx.internal" }), keys);
        const token = TEST_SECRETS["hx-backup:grafanaApiToken"];
        const push = commands(e).find((c) => c.name === "monitoring-dashboard")!;
        expect(push.inputs.create).toContain("https://grafana.hx.internal/api/dashboards/db");
        expect(push.inputs.create).toContain('--header @"$hdr"');
        expect(JSON.stringify(push.inputs.create)).not.toContain(token);
        expect(isSecretWrapped(push.inputs.stdin)).toBe(true);
        expect((reveal(push.inputs.stdin) as string).split("\n")[0]).toBe(token);
        expect(push.inputs.logging).toBe("none");
        expect(JSON.stringify(e.resources.map((r) => plaintextView(r.inputs)))).not.toContain(token);
        expect(JSON.stringify(e.outputs)).not.toContain(token);
    });
});

describe("email notifications through the existing Alertmanager", () => {
    it("installs the SMTP password as a file from secret stdin, then hx-backup's blocks behind amtool; destroy takes out only the blocks", async () => {
        const keys = [...PROD_SECRETS, "hx-backup:notifySmtpAuthPassword"];
        const settings = {
            "hx-backup:notifyEmailTo": JSON.stringify(["ops@example.com"]),
            "hx-backup:notifyEmailFrom": "hx-backup@example.com",
            "hx-backup:notifySmtpSmarthost": "smtp.example.com:587",
            "hx-backup:notifySmtpAuthUsername": "hx-backup",
        };
        const e = await evaluate("production", withSecrets("production", keys, settings), keys);
        const password = TEST_SECRETS["hx-backup:notifySmtpAuthPassword"];
        const file = commands(e).find((c) => c.name === "monitoring-alertmanager-smtp-password")!;
        const route = commands(e).find((c) => c.name === "monitoring-alertmanager-route")!;
        expect(isSecretWrapped(file.inputs.stdin)).toBe(true);
        expect(Buffer.from((reveal(file.inputs.stdin) as string).split("\n")[0]!, "base64").toString()).toBe(password);
        expect(file.inputs.create).toContain("/etc/prometheus/hx-backup-production-smtp-password");
        expect(file.inputs.create).toMatch(/chmod 0640|0640/);
        expect(route.inputs.create).toContain("check-config");
        expect(route.inputs.create).toMatch(/action=\W*install/);
        expect(route.inputs.delete).toMatch(/action=\W*remove/);
        expect(route.inputs.create).toContain("auth_password_file");
        for (const r of e.resources) expect(JSON.stringify(plaintextView(r.inputs))).not.toContain(password);
        expect(JSON.stringify(e.outputs)).not.toContain(password);
    });
});

describe("idempotence", () => {
    const view = (e: Evaluation) => commands(e).map((c) => ({ name: c.name, create: c.inputs.create, update: c.inputs.update, delete: c.inputs.delete, stdin: reveal(c.inputs.stdin) }));

    it("two evaluations give identical commands and stdin", async () => {
        const config = withSecrets("production", PROD_SECRETS);
        const a = await evaluate("production", config, PROD_SECRETS);
        const b = await evaluate("production", config, PROD_SECRETS);
        expect(view(a).length).toBeGreaterThan(40);
        expect(view(b)).toEqual(view(a));
    });

    it("with email notifications (per-host and per-type routes, a severity filter, SMTP AUTH), two evaluations give identical Alertmanager steps", async () => {
        const keys = [...PROD_SECRETS, "hx-backup:notifySmtpAuthPassword"];
        const config = withSecrets("production", keys, {
            "hx-backup:notifyEmailTo": JSON.stringify(["ops@example.com"]),
            "hx-backup:notifyEmailFrom": "hx-backup@example.com",
            "hx-backup:notifySmtpSmarthost": "smtp.example.com:587",
            "hx-backup:notifySmtpAuthUsername": "hx-backup",
            "hx-backup:notifyRoutes": JSON.stringify(["host=db-1: dba@example.com", "type=redis: cache@example.com, oncall@example.com"]),
            "hx-backup:notifySeverities": JSON.stringify(["critical"]),
        });
        const a = await evaluate("production", config, keys);
        const b = await evaluate("production", config, keys);
        const alertmanager = view(a).filter((c) => c.name.startsWith("monitoring-alertmanager-"));
        expect(alertmanager.map((c) => c.name).sort()).toEqual(["monitoring-alertmanager-route", "monitoring-alertmanager-smtp-password"]);
        // The settings reached the route step, so its stability is not that of an empty block.
        const route = alertmanager.find((c) => c.name === "monitoring-alertmanager-route")!.create as string;
        for (const s of ["dba@example.com", "cache@example.com, oncall@example.com", 'severity=~\\"critical\\"']) expect(route).toContain(s);
        expect(view(b)).toEqual(view(a));
    });

    it("bumping the key version adds a key and changes only the keyring and config steps (and pgBackRest's, whose repository follows the key and gets a first full backup)", async () => {
        const base = withSecrets("production", PROD_SECRETS);
        const a = await evaluate("production", base, PROD_SECRETS);
        const b = await evaluate("production", { ...base, "hx-backup:encryptionKeyVersion": "2" }, PROD_SECRETS);
        expect(Object.keys(b.randomHex).sort()).toEqual(["keys-production-v1", "keys-production-v2"]);
        expect(b.randomHex["keys-production-v1"]).toBe(a.randomHex["keys-production-v1"]);
        const digest = (e: Evaluation) => new Map(commands(e).map((c) => [c.name, JSON.stringify([c.inputs.create, reveal(c.inputs.stdin) ?? null])]));
        const [da, db] = [digest(a), digest(b)];
        const changed = [...da.keys()].filter((k) => da.get(k) !== db.get(k)).map((k) => k.replace(/^[a-z0-9-]+?-(?=keyring|config$|pgbackrest-|pitr-)/, "")).sort();
        expect(new Set(changed)).toEqual(new Set(["keyring", "config", "pgbackrest-config", "pgbackrest-secrets", "pitr-archiving", "pitr-first-full"]));
        const out = b.outputs as Record<string, any>;
        expect(out.encryption.keyIds).toEqual(["production-v1", "production-v2"]);
        expect(out.encryption.currentKeyId).toBe("production-v2");
    });
});

describe("config errors", () => {
    it("fail before any resource exists, all reported together", async () => {
        const config = {
            ...withSecrets("production", PROD_SECRETS),
            "hx-backup:retentionDialy": "7",
            "hx-backup:scheduleDatabaseDaily": "0 25 * * *",
            "hx-backup:lifecycleIaDays": "10",
        };
        let error: (Error & { resources?: unknown[] }) | undefined;
        try {
            await evaluate("production", config, PROD_SECRETS);
        } catch (err) {
            error = err as Error & { resources?: unknown[] };
        }
        expect(error?.name).toBe("ConfigValidationError");
        expect(error?.resources).toEqual([]);
        expect(error?.message).toContain('hx-backup:retentionDialy: got "7"; expected a known key (did you mean "retentionDaily"?)');
        expect(error?.message).toContain("hx-backup:scheduleDatabaseDaily");
        expect(error?.message).toContain("hour 25 is outside 0-23");
        expect(error?.message).toContain("hx-backup:lifecycleIaDays");
        expect(error?.message).toMatch(/3 configuration problems/);
    });
});

describe("a fleet's composition", () => {
    /** Production's hosts repeated to `n`, names made unique; the monitoring host stays mon-1. */
    function fleetConfig(n: number): Record<string, string> {
        const config = withSecrets("production", PROD_SECRETS);
        const shapes = JSON.parse(config["hx-backup:hosts"]!) as Record<string, unknown>[];
        const hosts = Array.from({ length: n }, (_, i) => (i < shapes.length ? shapes[i]! : { ...shapes[i % shapes.length]!, name: `extra-${i}`, address: `10.30.0.${i}` }));
        return { ...config, "hx-backup:hosts": JSON.stringify(hosts) };
    }

    it("keeps at most 16 hosts registering at once (twice --parallel when that is more), composing the next as one finishes; monitoring comes last", async () => {
        const hostCount = 40;
        const config = fleetConfig(hostCount);
        const hostNames = (JSON.parse(config["hx-backup:hosts"]!) as { name: string }[]).map((h) => h.name);
        const hostOf = (resource: string) => hostNames.find((h) => resource.startsWith(`${h}-`) && !hostNames.some((o) => o.length > h.length && resource.startsWith(`${o}-`)));
        const events: { event: "registered" | "answered"; host: string | undefined; name: string }[] = [];
        const e = await evaluate("production", config, PROD_SECRETS, { answerDelayMs: 2, onEvent: (event, name) => events.push({ event, host: hostOf(name), name }) });

        // A host registers from its first resource to the answer to its last.
        const first = new Map<string, number>();
        const last = new Map<string, number>();
        events.forEach((ev, i) => {
            if (!ev.host) return;
            if (ev.event === "registered" && !first.has(ev.host)) first.set(ev.host, i);
            if (ev.event === "answered") last.set(ev.host, i);
        });
        expect(first.size).toBe(hostCount);
        const busyAt = (i: number) => hostNames.filter((h) => first.get(h)! <= i && last.get(h)! > i).length;
        const peak = Math.max(...events.map((_, i) => busyAt(i)));
        // Without the window all 40 would start at once; with it the window fills, and never overflows.
        expect(peak).toBe(16);
        // Hosts start in config order.
        expect([...first.entries()].sort((a, b) => a[1] - b[1]).map(([h]) => h)).toEqual(hostNames);
        // Every host is composed, and the monitoring integration after the last of them.
        expect(names(e, "hx-backup:host:BackupHost")).toHaveLength(hostCount);
        const firstMonitoring = events.findIndex((ev) => ev.name.startsWith("monitoring"));
        expect(firstMonitoring).toBeGreaterThan(events.findIndex((ev) => ev.name === hostNames[hostCount - 1]));
        expect(Object.keys(e.outputs.hosts as Record<string, unknown>)).toEqual(hostNames);
        expect((e.outputs.monitoring as { host: string }).host).toBe("mon-1");
    });
});
