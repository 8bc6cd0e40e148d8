/** SSH connection settings shared by the host and monitoring components. */
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { HostSpec } from "../config/types";

export interface SshConnectionArgs {
    /** SSH private key; secret. Default: none (use `agentSocket`). */
    readonly privateKey?: pulumi.Input<string>;
    /** ssh-agent socket path when no private key is given. Default: none (the provider then uses $SSH_AUTH_SOCK). */
    readonly agentSocket?: string;
    /** Run every step through `sudo -n` (non-root SSH user). Default: false. */
    readonly sudo?: boolean;
    /** Jump host. Default: none (connect directly). */
    readonly bastion?: {
        readonly host: string;
        readonly port: number;
        readonly user: string;
        readonly hostKey?: string;
        /** Default: the host's private key, else the agent. */
        readonly privateKey?: pulumi.Input<string>;
    };
}

export function sshConnection(host: HostSpec, conn: SshConnectionArgs): command.types.input.remote.ConnectionArgs {
    const auth = (key: pulumi.Input<string> | undefined) =>
        key !== undefined ? { privateKey: pulumi.secret(key) } : conn.agentSocket ? { agentSocketPath: conn.agentSocket } : {};
    return {
        host: host.address,
        port: host.port,
        user: host.sshUser,
        ...auth(conn.privateKey),
        ...(host.hostKey ? { hostKey: host.hostKey } : {}),
        ...(conn.bastion
            ? {
                  proxy: {
                      host: conn.bastion.host,
                      port: conn.bastion.port,
                      user: conn.bastion.user,
                      ...(conn.bastion.hostKey ? { hostKey: conn.bastion.hostKey } : {}),
                      ...auth(conn.bastion.privateKey ?? conn.privateKey),
                  },
              }
            : {}),
        dialErrorLimit: 10,
        perDialTimeout: 30,
    };
}
