/**
 * Runs plan steps over SSH the way the Host component's remote commands do:
 * the same wrapped command line, the same stdin, one session per step, in
 * plan order (which respects every step's dependencies).
 */
import type { Step } from "../../render/step";
import { wrapStep } from "../../render/remote";
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

export async function applySteps(exec: Exec, steps: readonly Step[], secrets: SecretValues, host: HostSpec, sudo = false): Promise<StepRun[]> {
    const runs: StepRun[] = [];
    for (const step of steps) {
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
        if (!step.delete) continue;
        const r = await exec(wrapStep(step.delete, sudo));
        if (r.code !== 0) throw new Error(`delete of ${step.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
}
