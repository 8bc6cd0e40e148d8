/** Turns a planned Step into the remote command that runs it, and a staged folder into its copy, the same way for every component. */
import * as path from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ownedStep, withHostState, type InstallIdentity } from "../render/ownership";
import { wrapStep } from "../render/remote";
import { withDigest, type StagedFolder, type Step } from "../render/step";

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

/**
 * Keeps `field` (which carries the host state) as the state recorded it when the host was not read: at once when
 * that is known, else through a transform, since it is known only once the host read ends.
 */
function keepRecordedWhen(opts: pulumi.CustomResourceOptions, keep: boolean | Promise<boolean> | undefined, field: string): pulumi.CustomResourceOptions {
    const kept = (o: pulumi.ResourceOptions): pulumi.ResourceOptions => ({ ...o, ignoreChanges: [...(o.ignoreChanges ?? []), field] });
    if (keep === true) return kept(opts);
    if (keep instanceof Promise) return { ...opts, transforms: [async (t) => ((await keep) ? { props: t.props, opts: kept(t.opts) } : undefined)] };
    return opts;
}

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
    const opts = keepRecordedWhen(
        {
            parent: args.parent,
            dependsOn: args.dependsOn,
            ...(args.secret ? { additionalSecretOutputs: ["stdout", "stderr"] } : {}),
            deleteBeforeReplace: true,
        },
        args.hostState?.keepRecorded,
        "delete",
    );
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

export interface StageCopyArgs {
    readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
    /**
     * The host state of the step that installs from the stage (RemoteStepArgs.hostState). The stage is read only for
     * files that differ on the host: a release's changed files (the folder's hash changed, so the copy updates first)
     * and drifted ones, for which the host state changes: it is the copy's trigger, so a drift repair copies the
     * stage afresh before the step runs. Default: none (no trigger).
     */
    readonly hostState?: { readonly state: pulumi.Input<string>; readonly keepRecorded: boolean | Promise<boolean> };
    readonly parent: pulumi.Resource;
}

/**
 * Copies a staged folder to the host over SFTP: the state holds the folder's path and hash, not its bytes. The
 * plugin leaves the copy on delete; the installing step's delete removes it.
 */
export function stageCopy(name: string, stage: StagedFolder, args: StageCopyArgs): command.remote.CopyToRemote {
    // Relative to the program's folder, where the engine and the plugin resolve it, so a checkout elsewhere changes nothing.
    const source = path.relative(process.cwd(), stage.source) || ".";
    return new command.remote.CopyToRemote(
        name,
        {
            connection: args.connection,
            source: new pulumi.asset.FileArchive(source),
            remotePath: stage.remotePath,
            ...(args.hostState ? { triggers: [args.hostState.state] } : {}),
        },
        keepRecordedWhen({ parent: args.parent }, args.hostState?.keepRecorded, "triggers"),
    );
}

/**
 * Settles once the engine has answered the registration of every resource in `resources`: in a preview once each is
 * planned, in an up once each has been created, updated or left alone, whether that worked or not (the SDK reports a
 * failure itself). A URN resolves exactly then. `Output.promise()` is the SDK's own (marked internal): `apply` never
 * runs for a failed registration, so a wait built on it would hang.
 */
export function registration(resources: readonly pulumi.Resource[]): Promise<void> {
    return Promise.all(
        resources.map((r) => {
            const urn = r.urn as unknown as { promise?: () => Promise<string> };
            if (typeof urn.promise !== "function") throw new Error("@pulumi/pulumi: Output.promise() is gone; components/steps.ts registration() needs another way to see a URN settle");
            return urn.promise().then(
                () => undefined,
                () => undefined,
            );
        }),
    ).then(() => undefined);
}

