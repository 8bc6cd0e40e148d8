/**
 * hx-backup: reads the stack config, composes the storage, keys, hosts and
 * monitoring components, and exports what ops need to find everything.
 */
import * as pulumi from "@pulumi/pulumi";
import { loadStackConfig } from "./config/load";
import { rawFromRuntime } from "./config/raw";
import { BackupHost } from "./components/host";
import { EncryptionKeys } from "./components/keys";
import { MonitoringIntegration } from "./components/monitoring";
import { monitoringConfPath } from "./render/monitoringPlan";
import { BackupStorage } from "./components/storage";
import type { SshConnectionArgs } from "./components/connection";
import type { DeployFacts } from "./render/hostConfig";
import type { SecretValues } from "./render/secrets";
import { unitName } from "./render/systemd";

const stack = pulumi.getStack();
const cfg = new pulumi.Config();
const config = loadStackConfig(stack, rawFromRuntime(pulumi.runtime.allConfig()), { awsRegion: new pulumi.Config("aws").get("region") });
const secret = (key: string) => (config.secretsSet.has(key) ? cfg.requireSecret(key) : undefined);

const keys = new EncryptionKeys("keys", { keyIdPrefix: stack, version: config.encryption.keyVersion, exposedVersions: config.encryption.exposedVersions });

let region: pulumi.Output<string> = pulumi.output(config.storage.region);
let kmsKeyArn: pulumi.Output<string> = pulumi.output("");
let bucketArn: pulumi.Output<string> = pulumi.output("");
let endpoint: pulumi.Output<string> = pulumi.output(config.storage.endpoint ?? "");
let s3: pulumi.Output<SecretValues["s3"]> = pulumi.output(undefined);
if (config.storage.mode === "aws") {
    const storage = new BackupStorage("storage", {
        bucketName: config.storage.bucketName,
        prefix: config.storage.prefix,
        region: config.storage.region,
        lifecycle: config.storage.lifecycle,
        retentionBy: config.storage.retentionBy,
        noncurrentVersionExpireDays: config.storage.noncurrentVersionExpireDays,
        abortMultipartDays: config.storage.abortMultipartDays,
        objectLock: config.storage.objectLock,
        kmsDeletionWindowDays: config.storage.kmsDeletionWindowDays,
        forceDestroy: config.storage.forceDestroy,
    });
    region = storage.region;
    kmsKeyArn = storage.kmsKeyArn;
    bucketArn = storage.bucketArn;
    endpoint = storage.endpoint;
    s3 = pulumi.secret(pulumi.all([storage.writerAccessKeyId, storage.writerSecretAccessKey]).apply(([accessKeyId, secretAccessKey]) => ({ accessKeyId, secretAccessKey })));
} else if (config.storage.mode === "custom") {
    s3 = pulumi.secret(pulumi.all([cfg.requireSecret("s3AccessKeyId"), cfg.requireSecret("s3SecretAccessKey")]).apply(([accessKeyId, secretAccessKey]) => ({ accessKeyId, secretAccessKey })));
}

const facts: pulumi.Output<DeployFacts> = keys.fingerprints.apply((fingerprints) => ({
    currentKeyId: keys.currentKeyId,
    keyIds: keys.keyIds,
    keyFingerprints: fingerprints,
}));
// Apart from the keys: a step that needs no key must not wait for one (unknown while a new key is previewed).
const credentials: pulumi.Output<Omit<SecretValues, "keys">> = pulumi.secret(
    pulumi.all([s3, secret("redisPassword"), secret("postgresqlPassword")]).apply(([s, redisPassword, postgresqlPassword]) => ({
        ...(s ? { s3: s } : {}),
        ...(redisPassword ? { redisPassword } : {}),
        ...(postgresqlPassword ? { postgresqlPassword } : {}),
    })),
);

const connectionArgs: SshConnectionArgs = {
    privateKey: secret("sshPrivateKey"),
    agentSocket: config.ssh.agentSocket,
    sudo: config.ssh.sudo,
    ...(config.ssh.bastion
        ? { bastion: { host: config.ssh.bastion.host, port: config.ssh.bastion.port, user: config.ssh.bastion.user, hostKey: config.ssh.bastion.hostKey, privateKey: secret("bastionPrivateKey") } }
        : {}),
};

/**
 * Composes resources with V8's stack traces off. @pulumi/pulumi records a stack trace for every promise it makes
 * (for its leak report, runtime/debuggable.ts): for a fleet, most of the program's time (200 hosts under mocks:
 * 16 s with them, 7 s without). Resource source positions keep theirs (Resource.callsites sets its own limit);
 * an error thrown here keeps its message.
 */
function withoutStackTraces<T>(compose: () => T): T {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
        return compose();
    } finally {
        Error.stackTraceLimit = limit;
    }
}

const hostResources = withoutStackTraces(() => config.hosts.map((host) => new BackupHost(host.name, { config, host, connection: connectionArgs, facts, keys: keys.keys, credentials })));

let monitoringIntegration: MonitoringIntegration | undefined;
if (config.monitoring) {
    const m = config.monitoring;
    const host = config.hosts.find((h) => h.name === m.host)!;
    monitoringIntegration = new MonitoringIntegration("monitoring", {
        config,
        connection: connectionArgs,
        grafanaApiToken: secret("grafanaApiToken"),
        smtpPassword: secret("notifySmtpAuthPassword"),
        dependsOn: hostResources.filter((h) => h.hostName === host.name),
    });
}

export const storage = {
    mode: config.storage.mode,
    bucketName: config.storage.bucketName,
    bucketArn,
    prefix: config.storage.prefix,
    region,
    endpoint,
    kmsKeyArn,
    retentionBy: config.storage.retentionBy,
};

export const hosts = Object.fromEntries(
    hostResources.map((h) => {
        const spec = config.hosts.find((x) => x.name === h.hostName)!;
        return [
            h.hostName,
            {
                address: spec.address,
                roles: spec.roles,
                jobs: h.jobs.map((j) => ({
                    name: j.name,
                    type: j.type,
                    schedule: j.onCalendar,
                    description: j.description,
                    command: [`${config.paths.scriptDir}/${j.script}`, ...j.args].join(" "),
                    timer: unitName(j.name, "timer"),
                    log: `${config.paths.logDir}/${j.script.replace(/\.sh$/, "")}.log`,
                })),
                paths: h.paths,
                ...(h.pitr ? { pitr: h.pitr } : {}),
            },
        ];
    }),
);

export const encryption = {
    algorithm: config.encryption.algorithm,
    currentKeyId: keys.currentKeyId,
    keyIds: keys.keyIds,
    fingerprints: keys.fingerprints,
    keyFile: config.paths.keyFile,
    keyringDir: config.paths.keyringDir,
};

export const monitoring = monitoringIntegration
    ? {
          host: config.monitoring!.host,
          alertRules: monitoringIntegration.alertNames,
          rulesPath: monitoringIntegration.rulesPath,
          dashboardUid: monitoringIntegration.dashboardUid,
          grafanaMode: config.monitoring!.grafanaMode,
          monitoringConf: monitoringConfPath(config),
          notifications: config.notifications
              ? { alertmanagerConfig: config.notifications.configPath, to: config.notifications.to, routes: config.notifications.routes.map((r) => `${r.label}=${r.value}: ${r.to.join(", ")}`) }
              : null,
      }
    : undefined;
