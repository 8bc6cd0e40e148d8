/** Turns a planned Step into the remote command that runs it, the same way for every component. */
import * as command from "@pulumi/command";
import type * as pulumi from "@pulumi/pulumi";
import { wrapStep } from "../render/remote";
import type { Step } from "../render/step";

export interface RemoteStepArgs {
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** Run the step through `sudo -n` (non-root SSH user). */
    readonly sudo: boolean;
    /** What the step reads on stdin; nothing when omitted. */
    readonly stdin?: pulumi.Input<string>;
    /** Re-runs the step when it changes. */
    readonly digest: pulumi.Input<string>;
    /** The step handles a secret: none of its output may reach logs or state. */
    readonly secret: boolean;
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
    readonly parent: pulumi.Resource;
}

export function remoteStep(name: string, step: Step, args: RemoteStepArgs): command.remote.Command {
    const create = wrapStep(step.create, args.sudo);
    return new command.remote.Command(
        name,
        {
            connection: args.connection,
            create,
            // Changed inputs re-run the install in place; a replacement would run the old delete after the new create.
            update: create,
            ...(step.delete ? { delete: wrapStep(step.delete, args.sudo) } : {}),
            ...(args.stdin !== undefined ? { stdin: args.stdin } : {}),
            triggers: [args.digest],
            // Step scripts echo nothing secret, but never let a secret step's output reach logs or state.
            logging: args.secret ? "none" : "stdoutAndStderr",
            addPreviousOutputInEnv: false,
        },
        {
            parent: args.parent,
            dependsOn: args.dependsOn,
            ...(args.secret ? { additionalSecretOutputs: ["stdout", "stderr"] } : {}),
            deleteBeforeReplace: true,
        },
    );
}
