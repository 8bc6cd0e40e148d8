/**
 * Runs plan steps over SSH the way the Host component's remote commands do:
 * the same wrapped command line, the same stdin, one session per step, in
 * plan order (which respects every step's dependencies), after copying a
 * step's staged files as the component's CopyToRemote would.
 */
import type { Step } from "../../render/step";
import { wrapStep } from "../../render/remote";
import { shellQuote } from "../../render/shell";
import { secretStdin, type SecretValues } from "../../render/secrets";
import type { HostSpec } from "../../config/types";
import type { SshResult } from "../lib/ssh";

export type Exec = (command: string, stdin?: string) => Promise<SshResult>;

export interface StepRun {
    readonly step: string;
    readonly seconds: number;
    readonly stdinBytes: number;
    readonly stdout: string;
}

export function stepStdin(step: Step, secrets: SecretValues, host: HostSpec): string {
    return step.secretFiles.length ? secretStdin(step.secretFiles, secrets, host) : step.stdin ?? "";
}

/** Puts a step's staged files where its install reads them, as the host component's CopyToRemote does (as the SSH user, into its home). */
async function stageFiles(exec: Exec, step: Step): Promise<void> {
    const stage = step.stage;
    if (!stage) return;
    for (const f of step.files) {
        if (f.staged === undefined) continue;
        const target = `${stage.remotePath}/${f.staged}`;
        const r = await exec(`t="$(getent passwd "$(id -un)" | cut -d: -f6)"/${shellQuote(target)} && mkdir -p "\${t%/*}" && cat >"$t"`, f.content);
        if (r.code !== 0) throw new Error(`staging ${target} for step ${step.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
}

export async function applySteps(exec: Exec, steps: readonly Step[], secrets: SecretValues, host: HostSpec, sudo = false): Promise<StepRun[]> {
    const runs: StepRun[] = [];
    for (const step of steps) {
        await stageFiles(exec, step);
        const stdin = stepStdin(step, secrets, host);
        const started = Date.now();
        const r = await exec(wrapStep(step.create, sudo), stdin);
        if (r.code !== 0) throw new Error(`step ${step.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
        runs.push({ step: step.name, seconds: (Date.now() - started) / 1000, stdinBytes: Buffer.byteLength(stdin), stdout: r.stdout });
    }
    return runs;
}

/** Runs the delete commands in reverse order, as `pulumi destroy` would. */
export async function destroySteps(exec: Exec, steps: readonly Step[], sudo = false): Promise<void> {
    for (const step of [...steps].reverse()) {
        const del = `${step.cleanup ?? ""}${step.delete ?? ""}`;
        if (!del) continue;
        const r = await exec(wrapStep(del, sudo));
        if (r.code !== 0) throw new Error(`delete of ${step.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
}
