/**
 * The deploy's read of a host's install records, during `pulumi preview` and
 * `up`: one SSH session per host, with the connection the steps use (host key
 * pinned when the stack gives one). @pulumi/command 1.2 has no remote invoke,
 * so the program runs OpenSSH itself; the private key reaches it as a 0600 file
 * in a 0700 folder that is removed at once.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { HostSpec, StackConfig } from "../config/types";
import { claimsOf, hostReadRequest, hostReadScript, hostState, parseHostRead, readProblems, type HostRead, type InstallIdentity } from "../render/ownership";
import type { Step } from "../render/step";
import { wrapStep } from "../render/remote";
import { sshExec, type SshTarget } from "../scripts/lib/ssh";
import type { SshConnectionArgs } from "./connection";

export type HostReadResult = { readonly reachable: true; readonly read: HostRead } | { readonly reachable: false; readonly reason: string };

/** Hosts read at once: a fleet's preview must not open hundreds of sessions together. */
const CONCURRENT_READS = 16;
let running = 0;
const waiting: (() => void)[] = [];
async function slot<T>(work: () => Promise<T>): Promise<T> {
    if (running >= CONCURRENT_READS) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
        return await work();
    } finally {
        running--;
        waiting.shift()?.();
    }
}

/** How long a key may stay unknown (a preview never resolves an output another resource will make). */
const KEY_WAIT_MS = 30_000;

/** A secret string's value: config secrets are known in a preview too; a key that stays unknown rejects. */
export const known = (input: pulumi.Input<string> | undefined, waitMs = KEY_WAIT_MS): Promise<string | undefined> =>
    input === undefined
        ? Promise.resolve(undefined)
        : new Promise((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error(`the SSH key is not known yet (after ${waitMs / 1000} s)`)), waitMs);
              pulumi.output(input).apply((v) => {
                  clearTimeout(timer);
                  resolve(v);
              });
          });

type ReadRequest = { resource: string; manifestEntry: string };

/** Reads not started yet, by machine: every component's steps on one machine share one session. */
const batches = new Map<string, { steps: ReadRequest[]; result: Promise<HostReadResult> }>();

/**
 * Reads one host: each step's repair count and drift, and every install record. Never throws for an
 * unreachable host. Calls for one machine in the same turn of the event loop (the components the program
 * builds for it: BackupHost and, on the monitoring host, MonitoringIntegration) share one session.
 */
export function readHost(host: HostSpec, conn: SshConnectionArgs, steps: readonly ReadRequest[]): Promise<HostReadResult> {
    const machine = `${host.address}:${host.port}`;
    const open = batches.get(machine);
    if (open) {
        open.steps.push(...steps);
        return open.result;
    }
    const requested = [...steps];
    const result = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        batches.delete(machine);
        return readSession(host, conn, requested);
    });
    batches.set(machine, { steps: requested, result });
    return result;
}

async function readSession(host: HostSpec, conn: SshConnectionArgs, steps: readonly ReadRequest[]): Promise<HostReadResult> {
    let privateKey: string | undefined;
    let bastionKey: string | undefined;
    try {
        [privateKey, bastionKey] = await Promise.all([known(conn.privateKey), known(conn.bastion?.privateKey)]);
    } catch (e) {
        return { reachable: false, reason: (e as Error).message };
    }
    return slot(async () => {
        const dir = mkdtempSync(path.join(tmpdir(), "hx-read-"));
        try {
            const keyFile = (name: string, key: string | undefined) => {
                if (!key) return undefined;
                const file = path.join(dir, name);
                writeFileSync(file, key.endsWith("\n") ? key : `${key}\n`, { mode: 0o600 });
                return file;
            };
            const targetKey = keyFile("id", privateKey);
            const target: SshTarget = {
                host: host.address,
                port: host.port,
                user: host.sshUser,
                ...(host.hostKey ? { hostKey: host.hostKey } : {}),
                ...(targetKey ? { keyFile: targetKey } : {}),
                ...(conn.agentSocket ? { agentSocket: conn.agentSocket } : {}),
                ...(conn.bastion
                    ? { bastion: { host: conn.bastion.host, port: conn.bastion.port, user: conn.bastion.user, ...(conn.bastion.hostKey ? { hostKey: conn.bastion.hostKey } : {}), keyFile: keyFile("bastion", bastionKey) ?? targetKey } }
                    : {}),
            };
            const r = await sshExec(target, wrapStep(hostReadScript(), conn.sudo ?? false), hostReadRequest(steps), 60_000);
            if (r.code !== 0) {
                const why = (r.stderr || r.stdout).trim().split("\n").slice(-3).join("; ") || "no output";
                return { reachable: false, reason: `ssh ${host.sshUser}@${host.address}:${host.port} exited ${r.code}: ${why}` };
            }
            return { reachable: true, read: parseHostRead(r.stdout) };
        } finally {
            rmSync(dir, { recursive: true, force: true });
        }
    });
}

export type StepHostState = NonNullable<import("./steps").RemoteStepArgs["hostState"]>;

export interface HostStatesArgs {
    readonly config: StackConfig;
    readonly host: HostSpec;
    readonly connection: SshConnectionArgs;
    /** Every step this component runs on the host, with who runs it. */
    readonly steps: readonly { readonly step: Step; readonly identity: InstallIdentity }[];
    /** Refuse a backup user this stack installed under another name (the host's BackupHost; not the monitoring steps beside it). */
    readonly checkBackupUser: boolean;
    /** Where warnings go, and what they are called. */
    readonly parent: pulumi.Resource;
    readonly label: string;
}

/**
 * Reads the host once (unless the stack turns reads off) and gives each step with a
 * manifest entry its host state. A host that cannot be reached keeps every step's
 * recorded state and says so; what the records refuse (another stack's install, a
 * renamed backup user) fails the run, naming the fix.
 */
export function hostStates(args: HostStatesArgs): (step: Step) => StepHostState | undefined {
    const { config, host, parent, label } = args;
    const readable = args.steps.filter((s) => s.step.manifestEntry);
    const resourceOf = new Map(args.steps.map((s) => [s.step.name, s.identity.resource]));
    if (!config.hostReads) return (step) => (step.manifestEntry ? { state: "repairs 0", keepRecorded: true } : undefined);
    const stackId = args.steps[0]?.identity.stackId ?? "";
    const claims = new Set(args.steps.flatMap((s) => claimsOf(s.step)));
    const checked: Promise<HostReadResult> = readHost(host, args.connection, readable.map((s) => ({ resource: s.identity.resource, manifestEntry: s.step.manifestEntry! }))).then((r) => {
        if (!r.reachable) {
            pulumi.log.warn(`${label}: its install records were not read (${r.reason}). Drift on this host is not shown in this run, and its steps keep the host state they recorded.`, parent);
            return r;
        }
        const problems = readProblems(r.read, host.name, stackId, claims, args.checkBackupUser ? config.backupUser : undefined);
        if (problems.length) throw new Error(problems.join("\n"));
        for (const s of readable) {
            const drift = hostState(r.read, s.identity.resource).drift;
            if (drift) pulumi.log.warn(`${label}: step ${s.step.name}: the host differs from what it installed (${drift}); pulumi up installs it again, in place`, parent);
        }
        return r;
    });
    // One failure is reported once, by the run; the other steps' waits on it must not add their own.
    checked.catch(() => undefined);
    return (step) => {
        if (!step.manifestEntry) return undefined;
        const resource = resourceOf.get(step.name)!;
        return {
            // A promise of the string, not pulumi.output(checked): output() would unwrap the read's Map.
            state: pulumi.output(checked.then((r) => (r.reachable ? hostState(r.read, resource).state : "repairs 0"))),
            keepRecorded: checked.then((r) => !r.reachable),
        };
    };
}
