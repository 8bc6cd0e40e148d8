/**
 * Deploys a stack with the real program (index.ts) under
 * pulumi.runtime.setMocks, where every `command:remote:Command` is really run
 * over SSH and `@pulumi/random` gets real random bytes. The mock's
 * newResource is async and returns only when the remote step has finished,
 * so each step runs after everything it depends on, as the engine would order
 * it. Random values and the created commands are kept in a state file, as
 * Pulumi state would keep them, so a redeploy reuses the keys and a destroy
 * can run the delete commands in reverse order.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { SshTarget } from "../lib/ssh";
import { sshExec } from "../lib/ssh";

export interface RecordedCommand {
    readonly name: string;
    readonly host: string;
    readonly port: number;
    readonly delete?: string;
}

export interface DeployState {
    /** Resource name -> hex, like Pulumi state keeps @pulumi/random results. */
    random: Record<string, string>;
    /** Remote commands in creation order. */
    commands: RecordedCommand[];
}

export interface DeployReport {
    readonly steps: { name: string; seconds: number; stdinBytes: number }[];
    readonly outputs: Record<string, unknown>;
    readonly seconds: number;
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function unwrap(value: unknown): unknown {
    if (value && typeof value === "object" && (value as Record<string, unknown>)[SECRET_SIG]) return unwrap((value as { value: unknown }).value);
    if (Array.isArray(value)) return value.map(unwrap);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrap(v)]));
    return value;
}

export function readState(file: string): DeployState {
    return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as DeployState) : { random: {}, commands: [] };
}

export function writeState(file: string, state: DeployState): void {
    writeFileSync(file, JSON.stringify(state, null, 2), { mode: 0o600 });
}

/**
 * Runs the program once in this process. `targetFor` maps a connection's
 * host and port to an SSH target (key file and pinned host key).
 */
export async function deployWithMocks(opts: {
    stack: string;
    config: Record<string, string>;
    secretKeys: string[];
    stateFile: string;
    targetFor: (host: string, port: number) => SshTarget;
    log?: (line: string) => void;
}): Promise<DeployReport> {
    const pulumi = await import("@pulumi/pulumi");
    const state = readState(opts.stateFile);
    const commands: RecordedCommand[] = [];
    const steps: DeployReport["steps"] = [];
    const failures: Error[] = [];
    const started = Date.now();
    await pulumi.runtime.setMocks(
        {
            async newResource(args) {
                const outputs: Record<string, unknown> = { ...args.inputs };
                if (args.type === "random:index/randomBytes:RandomBytes") {
                    const hex = (state.random[args.name] ??= randomBytes(Number(args.inputs.length)).toString("hex"));
                    outputs.hex = hex;
                    outputs.base64 = Buffer.from(hex, "hex").toString("base64");
                } else if (args.type === "command:remote:Command") {
                    const inputs = unwrap(args.inputs) as { create: string; delete?: string; stdin?: string; connection: { host: string; port?: number } };
                    const port = inputs.connection.port ?? 22;
                    const t0 = Date.now();
                    const result = await sshExec(opts.targetFor(inputs.connection.host, port), inputs.create, inputs.stdin ?? "", 600_000);
                    if (result.code !== 0) {
                        const error = new Error(`remote step ${args.name} failed (exit ${result.code}): ${result.stderr.trim()}`);
                        failures.push(error);
                        throw error;
                    }
                    const seconds = (Date.now() - t0) / 1000;
                    steps.push({ name: args.name, seconds, stdinBytes: Buffer.byteLength(inputs.stdin ?? "") });
                    commands.push({ name: args.name, host: inputs.connection.host, port, ...(inputs.delete ? { delete: inputs.delete } : {}) });
                    opts.log?.(`  ran ${args.name} (${seconds.toFixed(2)} s)${result.stdout.trim() ? `: ${result.stdout.trim()}` : ""}`);
                    outputs.stdout = result.stdout;
                    outputs.stderr = result.stderr;
                }
                return { id: `${args.name}-id`, state: outputs };
            },
            call(args) {
                return args.inputs;
            },
        },
        "hx-backup",
        opts.stack,
        false,
    );
    pulumi.runtime.setAllConfig(opts.config, opts.secretKeys);
    const program = (await import("../../index")) as Record<string, unknown>;
    // Wait until every registration (and so every remote step) has finished, as the engine would.
    await pulumi.runtime.disconnect();
    writeState(opts.stateFile, { random: state.random, commands });
    if (failures.length) throw failures[0];
    const outputs: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(program)) outputs[key] = await resolve(pulumi, value);
    return { steps, outputs, seconds: (Date.now() - started) / 1000 };
}

async function resolve(pulumi: typeof import("@pulumi/pulumi"), value: unknown): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) return resolve(pulumi, await new Promise((r) => (value as import("@pulumi/pulumi").Output<unknown>).apply((v) => r(v))));
    if (Array.isArray(value)) return Promise.all(value.map((v) => resolve(pulumi, v)));
    if (value && typeof value === "object") return Object.fromEntries(await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await resolve(pulumi, v)])));
    return value;
}

/** `pulumi destroy` for the remote commands: their delete scripts in reverse creation order. */
export async function destroyWithState(stateFile: string, targetFor: (host: string, port: number) => SshTarget, log?: (line: string) => void): Promise<number> {
    const state = readState(stateFile);
    let ran = 0;
    for (const c of [...state.commands].reverse()) {
        if (!c.delete) continue;
        const r = await sshExec(targetFor(c.host, c.port), c.delete, "", 600_000);
        if (r.code !== 0) throw new Error(`delete of ${c.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
        log?.(`  deleted ${c.name}`);
        ran++;
    }
    writeState(stateFile, { random: state.random, commands: [] });
    return ran;
}
