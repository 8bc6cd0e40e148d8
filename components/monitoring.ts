import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "../config/types";
import { alertNames, planMonitoring } from "../render/monitoringPlan";
import { installIdentity } from "../render/ownership";
import { secretStdin } from "../render/secrets";
import { sshConnection, type SshConnectionArgs } from "./connection";
import { hostStates } from "./hostRead";
import { remoteStep } from "./steps";

export interface MonitoringIntegrationArgs {
    /** Validated stack configuration; `config.monitoring` must be set. Required. */
    readonly config: StackConfig;
    /** How to reach the monitoring host (the same settings as every BackupHost's; `sudo` included). Required. */
    readonly connection: SshConnectionArgs;
    /** Grafana token for `grafanaMode: api`; secret. Default: none. */
    readonly grafanaApiToken?: pulumi.Input<string>;
    /** SMTP AUTH password for the alert emails (with `notifySmtpAuthUsername`); secret. Default: none. */
    readonly smtpPassword?: pulumi.Input<string>;
    /** Resources that must exist first (e.g. the monitoring host's own BackupHost). Default: none. */
    readonly dependsOn?: pulumi.Input<pulumi.Resource>[];
}

/**
 * Wires hx-backup into the existing monitoring stack: alert rules checked by
 * promtool before they replace the live file, a Prometheus reload, the
 * Grafana dashboard by file provisioning or the HTTP API, and email
 * notifications through the existing Alertmanager.
 */
export class MonitoringIntegration extends pulumi.ComponentResource {
    public readonly alertNames: readonly string[];
    public readonly dashboardUid: string;
    public readonly rulesPath: string;
    public readonly steps: ReadonlyMap<string, command.remote.Command>;

    constructor(name: string, args: MonitoringIntegrationArgs, opts?: pulumi.ComponentResourceOptions) {
        super("hx-backup:monitoring:MonitoringIntegration", name, {}, opts);
        const m = args.config.monitoring;
        if (!m) throw new Error("MonitoringIntegration: config.monitoring is not set (set monitoringHost)");
        const monitoringHost = args.config.hosts.find((h) => h.name === m.host)!;
        const planned = planMonitoring(args.config).map((step) => ({ step, identity: installIdentity(pulumi.getProject(), pulumi.getStack(), `${name}-${step.name}`) }));
        const stateOf = hostStates({ config: args.config, host: monitoringHost, connection: args.connection, steps: planned, checkBackupUser: false, parent: this, label: `monitoring on ${monitoringHost.name}` });
        const connection = sshConnection(monitoringHost, args.connection);
        const steps = new Map<string, command.remote.Command>();
        for (const { step, identity } of planned) {
            const usesToken = step.name === "dashboard" && m.grafanaMode === "api";
            if (usesToken && args.grafanaApiToken === undefined) throw new Error("MonitoringIntegration: grafanaMode api needs grafanaApiToken");
            const usesPassword = step.secretFiles.length > 0;
            if (usesPassword && args.smtpPassword === undefined) throw new Error("MonitoringIntegration: notifySmtpAuthUsername needs smtpPassword");
            const stdin = usesToken
                ? pulumi.secret(pulumi.all([args.grafanaApiToken!]).apply(([token]) => {
                      if (/[\r\n]/.test(token)) throw new Error("grafanaApiToken must be one line");
                      return `${token}\n${step.stdin ?? ""}`;
                  }))
                : usesPassword
                  ? pulumi.secret(pulumi.all([args.smtpPassword!]).apply(([smtpPassword]) => secretStdin(step.secretFiles, { keys: {}, smtpPassword }, monitoringHost)))
                  : step.stdin;
            const hostState = stateOf(step);
            steps.set(step.name, remoteStep(`${name}-${step.name}`, step, {
                connection,
                sudo: args.connection.sudo ?? false,
                stdin,
                digest: step.digest,
                secret: usesToken || usesPassword,
                identity,
                ...(hostState ? { hostState } : {}),
                dependsOn: [...(args.dependsOn ?? []), ...step.dependsOn.map((d) => steps.get(d)!)],
                parent: this,
            }));
        }
        this.alertNames = alertNames();
        this.dashboardUid = m.dashboardUid;
        this.rulesPath = m.rulesPath;
        this.steps = steps;
        this.registerOutputs({ alertNames: this.alertNames, dashboardUid: this.dashboardUid, rulesPath: this.rulesPath });
    }
}
