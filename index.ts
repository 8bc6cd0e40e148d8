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

/**
 * How many hosts may be registering with the engine at once. The program composes a host in milliseconds and the
 * engine takes about a tenth of a second per host, so composing the whole fleet up front queued every resource's
 * inputs in the program, the language host and the engine at once: most of a 200-host preview's memory. Twice the
 * engine's --parallel (which the SDK's runner passes on as PULUMI_NODEJS_PARALLEL), and never under 16, keeps the
 * engine as busy as before.
 */
function hostsInFlight(): number {
    const parallel = Number.parseInt(process.env.PULUMI_NODEJS_PARALLEL ?? "", 10);
    return Math.max(16, Number.isFinite(parallel) ? 2 * parallel : 0);
}

/** Composes the hosts in config order, a new one as soon as fewer than hostsInFlight() are registering. */
async function composeHosts(): Promise<BackupHost[]> {
    const window = hostsInFlight();
    const composed: BackupHost[] = [];
    const registering = new Set<Promise<void>>();
    for (const host of config.hosts) {
        if (registering.size >= window) await Promise.race(registering);
        const backupHost = withoutStackTraces(() => new BackupHost(host.name, { config, host, connection: connectionArgs, facts, keys: keys.keys, credentials }));
        composed.push(backupHost);
        const done: Promise<void> = backupHost.registered.then(() => void registering.delete(done));
        registering.add(done);
    }
    return composed;
}

/**
 * The hosts, then the monitoring integration on its host. It holds the SDK's keep-alive meanwhile: between two hosts
 * no registration may be pending, and the runtime must not take that for the program's end.
 */
async function compose(): Promise<{ hostResources: BackupHost[]; monitoringIntegration?: MonitoringIntegration }> {
    const composing = pulumi.runtime.rpcKeepAlive();
    try {
        const hostResources = await composeHosts();
        if (!config.monitoring) return { hostResources };
        const m = config.monitoring;
        const monitoringIntegration = new MonitoringIntegration("monitoring", {
            config,
            connection: connectionArgs,
            grafanaApiToken: secret("grafanaApiToken"),
            smtpPassword: secret("notifySmtpAuthPassword"),
            dependsOn: hostResources.filter((h) => h.hostName === m.host),
        });
        return { hostResources, monitoringIntegration };
    } finally {
        composing();
    }
}

const composition = compose();

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

export const hosts = pulumi.output(
    composition.then(({ hostResources }) =>
        Object.fromEntries(
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
        ),
    ),
);

export const encryption = {
    algorithm: config.encryption.algorithm,
    currentKeyId: keys.currentKeyId,
    keyIds: keys.keyIds,
    fingerprints: keys.fingerprints,
    keyFile: config.paths.keyFile,
    keyringDir: config.paths.keyringDir,
};

// Exported only with a monitoring host (a stack without one has no `monitoring` output).
export const monitoring = config.monitoring
    ? pulumi.output(
          composition.then(({ monitoringIntegration }) => ({
              host: config.monitoring!.host,
              alertRules: monitoringIntegration!.alertNames,
              rulesPath: monitoringIntegration!.rulesPath,
              dashboardUid: monitoringIntegration!.dashboardUid,
              grafanaMode: config.monitoring!.grafanaMode,
              monitoringConf: monitoringConfPath(config),
              notifications: config.notifications
                  ? { alertmanagerConfig: config.notifications.configPath, to: config.notifications.to, routes: config.notifications.routes.map((r) => `${r.label}=${r.value}: ${r.to.join(", ")}`) }
                  : null,
          })),
      )
    : undefined;
