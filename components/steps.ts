/** Turns a planned Step into the remote command that runs it, the same way for every component. */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { wrapStep } from "../render/remote";
import { withDigest, type Step } from "../render/step";

export interface RemoteStepArgs {
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /** Run the step through `sudo -n` (non-root SSH user). */
    readonly sudo: boolean;
    /** What the step reads on stdin; nothing when omitted. */
    readonly stdin?: pulumi.Input<string>;
    /** Re-runs the step, in place, when it changes. */
    readonly digest: pulumi.Input<string>;
    /** The step handles a secret: none of its output may reach logs or state. */
    readonly secret: boolean;
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
    readonly parent: pulumi.Resource;
}

export function remoteStep(name: string, step: Step, args: RemoteStepArgs): command.remote.Command {
    // The digest rides in the command text, not in `triggers`: @pulumi/command replaces a command whose
    // triggers change, and with deleteBeforeReplace that runs the old step's delete first (for `account`,
    // userdel). A changed create is an update, which runs `update` (the same script) in place.
    const create = pulumi.output(args.digest).apply((digest) => wrapStep(withDigest(step.create, digest), args.sudo));
    return new command.remote.Command(
        name,
        {
            connection: args.connection,
            create,
            update: create,
            ...(step.delete ? { delete: wrapStep(step.delete, args.sudo) } : {}),
            ...(args.stdin !== undefined ? { stdin: args.stdin } : {}),
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
