/** Turns a planned Step into the remote command that runs it, the same way for every component. */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ownedStep, withHostState, type InstallIdentity } from "../render/ownership";
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
    /** Whose install records the step writes and honours (render/ownership.ts). */
    readonly identity: InstallIdentity;
    /**
     * For a step with an install manifest entry: its host state from the host read (a change re-runs the step in
     * place), and whether to keep the state it recorded instead (the host was not read: reads off, or unreachable).
     * Default: none (the step has no manifest entry).
     */
    readonly hostState?: { readonly state: pulumi.Input<string>; readonly keepRecorded: boolean | Promise<boolean> };
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
    readonly parent: pulumi.Resource;
}

/** Keeps the delete (which carries the host state) as the state recorded it. */
const keepRecordedState = (opts: pulumi.ResourceOptions): pulumi.ResourceOptions => ({ ...opts, ignoreChanges: [...(opts.ignoreChanges ?? []), "delete"] });

export function remoteStep(name: string, step: Step, args: RemoteStepArgs): command.remote.Command {
    // The digest rides in the command text, not in `triggers`: @pulumi/command replaces a command whose
    // triggers change, and with deleteBeforeReplace that runs the old step's delete first (for `account`,
    // userdel). A changed create is an update, which runs the create again in place (`update` is unset: @pulumi/command
    // then runs `create`, and the state keeps one copy of the script, not two).
    // The host state rides in the delete text for the same reason: a change is an update, and on an update
    // the delete text is only stored, never run.
    const owned = ownedStep(step, args.identity);
    const create = pulumi.output(args.digest).apply((digest) => wrapStep(withDigest(owned.create, digest), args.sudo));
    const deleteScript = owned.delete;
    const del =
        deleteScript === undefined ? undefined : args.hostState ? pulumi.output(args.hostState.state).apply((s) => wrapStep(withHostState(deleteScript, s), args.sudo)) : wrapStep(deleteScript, args.sudo);
    const keep = args.hostState?.keepRecorded;
    let opts: pulumi.CustomResourceOptions = {
        parent: args.parent,
        dependsOn: args.dependsOn,
        ...(args.secret ? { additionalSecretOutputs: ["stdout", "stderr"] } : {}),
        deleteBeforeReplace: true,
    };
    if (keep === true) opts = keepRecordedState(opts);
    else if (keep instanceof Promise) {
        // Known only once the host read ends, which is why it is a transform and not a plain option.
        opts.transforms = [async (t) => ((await keep) ? { props: t.props, opts: keepRecordedState(t.opts) } : undefined)];
    }
    return new command.remote.Command(
        name,
        {
            connection: args.connection,
            create,
            ...(del !== undefined ? { delete: del } : {}),
            ...(args.stdin !== undefined ? { stdin: args.stdin } : {}),
            // Step scripts echo nothing secret, but never let a secret step's output reach logs or state.
            logging: args.secret ? "none" : "stdoutAndStderr",
            addPreviousOutputInEnv: false,
        },
        opts,
    );
}
