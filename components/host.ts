import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { HostSpec, StackConfig } from "../config/types";
import { HOST_CONFIG_NAME, type DeployFacts } from "../render/hostConfig";
import { planHost, type HostPlan } from "../render/hostPlan";
import type { Job } from "../render/jobs";
import { PGBACKREST_CONF, renderPgbackrestConf } from "../render/pgbackrest";
import { secretStdin, type SecretValues } from "../render/secrets";
import type { Step } from "../render/step";
import { unitName } from "../render/systemd";
import { installIdentity } from "../render/ownership";
import { sshConnection, type SshConnectionArgs } from "./connection";
import { hostStates } from "./hostRead";
import { registration, remoteStep, stageCopy } from "./steps";

export interface BackupHostArgs {
    /** Validated stack configuration. Required. */
    readonly config: StackConfig;
    /** The host to install. Required. */
    readonly host: HostSpec;
    /** How to reach it. Required. */
    readonly connection: SshConnectionArgs;
    /** Deploy-time facts (key ids, fingerprints); may be outputs of other resources. Required. */
    readonly facts: pulumi.Input<DeployFacts>;
    /** The keyring: key id -> 128 hex digits. Secret. Required. */
    readonly keys: pulumi.Input<Record<string, string>>;
    /** The other secret values (S3 credentials, passwords) for the credential files. Secret. Required. */
    readonly credentials: pulumi.Input<Omit<SecretValues, "keys">>;
}

/** The facts known before any key exists (ids follow from the config), with every fingerprint set to `fingerprint`. */
function shapeFacts(config: StackConfig, fingerprint: string): DeployFacts {
    const ids = Array.from({ length: config.encryption.keyVersion }, (_, i) => `${config.stack}-v${i + 1}`);
    return { currentKeyId: ids[ids.length - 1], keyIds: ids, keyFingerprints: Object.fromEntries(ids.map((id) => [id, fingerprint])) };
}

/** Two plans of one host agree on a step when nothing the step installs or runs differs (its files are in its stdin and digest). */
const sameStep = (a: Step, b: Step) =>
    a.create === b.create && a.delete === b.delete && a.stdin === b.stdin && a.digest === b.digest && JSON.stringify(a.secretFiles) === JSON.stringify(b.secretFiles);

/** Whether a step's secret files are keys, or derive from one (pgBackRest's passphrase). */
const carriesKeys = (step: Step) => step.secretFiles.some((f) => f.secret.kind === "key" || f.secret.kind === "pgbackrest");

/**
 * One target host: the backup user and directories, keyring and credentials,
 * the rendered config, the static scripts, sudoers, logrotate and systemd
 * units, each installed by its own idempotent remote step whose trigger is the
 * digest of what it installs.
 */
export class BackupHost extends pulumi.ComponentResource {
    public readonly hostName: string;
    public readonly jobs: readonly Job[];
    /** Remote steps by name, in creation order. */
    public readonly steps: ReadonlyMap<string, command.remote.Command>;
    /** The copies of static files the steps install from, by the name of the step that installs them (`files`). */
    public readonly stages: ReadonlyMap<string, command.remote.CopyToRemote>;
    /** Paths ops need: config, scripts, logs, metrics, storage. */
    public readonly paths: Record<string, string>;
    /** Settles once the engine has answered every resource of the host (components/steps.ts registration). */
    public readonly registered: Promise<void>;
    /** With postgresql.pitr: the stanza, where its repository is, pgBackRest's config, and the restart the last deploy left pending (the command, or null). */
    public readonly pitr?: { readonly stanza: string; readonly repository: pulumi.Output<string>; readonly configFile: string; readonly restartPending: pulumi.Output<string | null> };

    constructor(name: string, args: BackupHostArgs, opts?: pulumi.ComponentResourceOptions) {
        super("hx-backup:host:BackupHost", name, {}, opts);
        const { config, host } = args;
        // Only the steps that carry key facts wait for the keys (unknown in the preview of a new key): the rest are
        // planned from the config alone, so a key rotation's preview shows just the keyring, config and pgBackRest.
        const shape = planHost(config, host, shapeFacts(config, "sha256:0000000000000000"));
        const probe = planHost(config, host, shapeFacts(config, "sha256:ffffffffffffffff"));
        const plan: pulumi.Output<HostPlan> = pulumi.output(args.facts).apply((facts) => planHost(config, host, facts));

        const conn = args.connection;
        const connection = sshConnection(host, conn);
        const identityOf = (step: Step) => installIdentity(pulumi.getProject(), pulumi.getStack(), `${name}-${step.name}`);
        // The host's install records, read once: drift becomes an update of the drifted steps.
        const stateOf = hostStates({ config, host, connection: conn, steps: shape.steps.map((step) => ({ step, identity: identityOf(step) })), checkBackupUser: true, parent: this, label: host.name });

        const steps = new Map<string, command.remote.Command>();
        const stages = new Map<string, command.remote.CopyToRemote>();
        shape.steps.forEach((step, index) => {
            const secret = step.secretFiles.length > 0;
            const usesFacts = !sameStep(step, probe.steps[index]);
            // The command text is planned once, from the config: only a step's digest and stdin may follow the keys.
            if (step.create !== probe.steps[index].create || step.delete !== probe.steps[index].delete) {
                throw new Error(`BackupHost ${host.name}: step ${step.name}'s command text depends on key fingerprints; carry them in its stdin or digest`);
            }
            const stepPlan: pulumi.Input<Step> = usesFacts ? plan.apply((p) => p.steps[index]) : step;
            const stdin: pulumi.Input<string> | undefined = secret
                ? carriesKeys(step)
                    ? pulumi.secret(pulumi.all([stepPlan, args.keys, args.credentials]).apply(([s, keys, other]) => secretStdin(s.secretFiles, { ...other, keys }, host)))
                    : pulumi.secret(pulumi.all([stepPlan, args.credentials]).apply(([s, other]) => secretStdin(s.secretFiles, { ...other, keys: {} }, host)))
                : step.stdin !== undefined
                  ? pulumi.output(stepPlan).apply((s) => s.stdin ?? "")
                  : undefined;
            const dependsOn: pulumi.Resource[] = step.dependsOn.map((d) => {
                const dep = steps.get(d);
                if (!dep) throw new Error(`BackupHost ${host.name}: step ${step.name} depends on unknown step ${d}`);
                return dep;
            });
            const hostState = stateOf(step);
            const digest = pulumi.output(stepPlan).apply((s) => s.digest);
            if (step.stage) {
                if (secret || stdin === undefined) throw new Error(`BackupHost ${host.name}: step ${step.name} stages files but has no plain stdin`);
                const copy = stageCopy(`${name}-${step.name}-stage`, step.stage, { connection, ...(hostState ? { hostState } : {}), parent: this });
                stages.set(step.name, copy);
                dependsOn.push(copy);
            }
            steps.set(step.name, remoteStep(`${name}-${step.name}`, step, {
                connection,
                sudo: conn.sudo ?? false,
                stdin,
                digest,
                secret,
                identity: identityOf(step),
                ...(hostState ? { hostState } : {}),
                dependsOn,
                parent: this,
            }));
        });

        const archiving = steps.get("pitr-archiving");
        if (host.postgresql?.pitr && archiving) {
            const conf = renderPgbackrestConf(config, host, shape.config.encryption.currentKeyId);
            this.pitr = {
                stanza: conf.stanza,
                repository: plan.apply((p) => p.config.pitr!.repository),
                configFile: PGBACKREST_CONF,
                // The step prints `restart_pending=1 command="..."` when it left the restart to the operator.
                restartPending: archiving.stdout.apply((out) => /restart_pending=1 command="([^"]*)"/.exec(out ?? "")?.[1] ?? null),
            };
        }

        this.hostName = host.name;
        this.registered = registration([...stages.values(), ...steps.values()]);
        this.jobs = shape.jobs;
        this.steps = steps;
        this.stages = stages;
        this.paths = {
            config: `${config.paths.configDir}/${HOST_CONFIG_NAME}`,
            scripts: shape.config.paths.scripts,
            storage: shape.config.paths.storage,
            logs: shape.config.paths.logs,
            metrics: `${shape.config.paths.textfile}/hx_backup-*.prom`,
            keyring: shape.config.paths.keyring,
        };
        this.registerOutputs({
            hostName: this.hostName,
            jobs: this.jobs.map((j) => ({ name: j.name, timer: unitName(j.name, "timer"), onCalendar: j.onCalendar })),
            paths: this.paths,
            ...(this.pitr ? { pitr: this.pitr } : {}),
        });
    }
}
