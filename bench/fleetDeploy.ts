/**
 * Fleet deploys on the real Pulumi engine, with whatever plugins
 * install-pulumi.sh provides (reported): generated stacks of 1 to 200 hosts,
 * production's four host shapes repeated, with an S3 endpoint in place of AWS
 * (the aws plugin cannot be had here) and host reads off.
 *
 * - `pulumi preview` of a new stack connects to no host: the engine and the
 *   program alone, with the peak RSS of the CLI's process tree.
 * - A first `pulumi up` and unchanged ones need hosts: bench/stub-sshd, one
 *   SSH server on a loopback port per host that answers every command with
 *   exit 0 and no output. The figures are the engine's, the program's and
 *   the plugin's, without the hosts' own work. The file backend writes the
 *   whole state after every operation, so a first up grows with the square of
 *   the fleet: it is measured at 10 and 50 hosts, and the 200-host state for
 *   the unchanged runs is made with PULUMI_SKIP_CHECKPOINTS.
 * - `--parallel`: first ups of a stub fleet whose every command takes a fixed
 *   time, as a host's work would (without intermediate checkpoints, which
 *   add the same quadratic term whatever the setting).
 *
 * benchSandboxDeploy, a section of its own (`--only fleet-sandbox`): the first
 * deploy of 4 real sandbox hosts against 1 (sshd in namespaces, the steps
 * really run).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { openStack, PROCEDURES, setConfig, type EngineInfo, type Stack } from "../scripts/lib/engine";
import { engineTestsUnavailable, expectOk, newSshKey, pulumi, sandboxStack, startFleet, type FleetHost } from "../tests/support/engine";
import { tempDir } from "../tests/support/env";
import { log } from "./common";
import { TreeSampler } from "./memory";

const ROOT = path.resolve(__dirname, "..");
const STUB_DIR = path.join(ROOT, "bench", "stub-sshd");

export interface Run {
    readonly seconds: number;
    readonly peakRssBytes: number;
    /** At the peak: the biggest processes of the tree, by command name (KiB). */
    readonly peakTop?: readonly { readonly comm: string; readonly rssKiB: number }[];
}

export interface FleetDeployBench {
    readonly plugins: string;
    /** `pulumi preview` of a new stack, by host count. */
    readonly previewNew: { readonly hosts: number; readonly resources: number; readonly rounds: Run[] }[];
    /** First ups of stub fleets as an operator runs them (a state checkpoint after every operation), with the state's size. */
    readonly firstUps: { readonly hosts: number; readonly run: Run; readonly commands: number; readonly stateBytes: number }[];
    /** The largest stub fleet: a first up without intermediate checkpoints (PULUMI_SKIP_CHECKPOINTS: it only makes the state), then unchanged runs. */
    readonly stub: { readonly hosts: number; readonly firstUp: Run; readonly commands: number; readonly unchangedUp: Run[]; readonly unchangedPreview: Run[]; readonly stateBytes: number };
    /** First up of a stub fleet whose commands each take `delaySeconds`, by --parallel ("default": the CLI's, 4 × CPUs). */
    readonly parallel: { readonly hosts: number; readonly delaySeconds: number; readonly runs: { readonly parallel: string; readonly run: Run }[] };
}

/** First up of real sandbox hosts, 1 and 4, per round (alternating which goes first). */
export interface SandboxDeployBench {
    readonly one: number[];
    readonly four: number[];
}

// ------------------------------------------------------------ stub hosts ---

function goBinary(): string {
    const onPath = spawnSync("sh", ["-c", "command -v go"], { encoding: "utf8" }).stdout.trim();
    if (onPath) return onPath;
    if (existsSync("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
    throw new Error("the fleet deploy bench builds bench/stub-sshd and needs Go (go on PATH, or /usr/local/go)");
}

/** Builds bench/stub-sshd once per source version, into the user's cache. */
export function stubBinary(): string {
    const digest = createHash("sha256");
    for (const f of readdirSync(STUB_DIR).sort()) digest.update(f).update(readFileSync(path.join(STUB_DIR, f)));
    const out = path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "hx-backup", "bench", `stub-sshd-${digest.digest("hex").slice(0, 16)}`);
    if (existsSync(out)) return out;
    mkdirSync(path.dirname(out), { recursive: true });
    const r = spawnSync(goBinary(), ["build", "-trimpath", "-o", out, "."], { cwd: STUB_DIR, encoding: "utf8", env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-mod=readonly" } });
    if (r.status !== 0) throw new Error(`go build bench/stub-sshd failed: ${r.stderr}`);
    return out;
}

interface Stub {
    readonly ports: number[];
    /** Stops it; resolves to the commands it answered. */
    stop(): Promise<number>;
}

async function startStub(ports: number, delaySeconds = 0): Promise<Stub> {
    const child: ChildProcess = spawn(stubBinary(), ["-address", "127.0.0.1", "-ports", String(ports), "-delay", `${Math.round(delaySeconds * 1000)}ms`], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const listening = await new Promise<number[]>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stub-sshd did not listen within 30 s: ${out}`)), 30_000);
        child.on("exit", (code) => reject(new Error(`stub-sshd exited ${code}: ${out}`)));
        child.stdout!.on("data", () => {
            const line = out.split("\n")[0];
            if (out.includes("\n")) {
                clearTimeout(timer);
                resolve((JSON.parse(line!) as { ports: number[] }).ports);
            }
        });
    });
    return {
        ports: listening,
        stop: () =>
            new Promise<number>((resolve) => {
                child.removeAllListeners("exit");
                child.on("exit", () => {
                    const last = out.trim().split("\n").pop() ?? "{}";
                    resolve((JSON.parse(last) as { commands?: number }).commands ?? -1);
                });
                child.stdin!.end();
            }),
    };
}

// ---------------------------------------------------------------- stacks ---

/** Production's config with n hosts (its four shapes in turn) at the given loopback ports, an S3 endpoint, no bastion, host reads off. */
export function fleetStackConfig(n: number, ports: readonly number[] = []): { plain: Record<string, unknown>; secrets: Record<string, string> } {
    const doc = parse(readFileSync(path.join(ROOT, "Pulumi.production.yaml"), "utf8")) as { config: Record<string, unknown> };
    const shapes = doc.config["hx-backup:hosts"] as Record<string, unknown>[];
    const hosts = Array.from({ length: n }, (_, i) => {
        const { hostKey: _hostKey, ...shape } = shapes[i % shapes.length]!;
        return { ...shape, name: `host-${String(i + 1).padStart(3, "0")}`, address: "127.0.0.1", port: ports[i] ?? 20_000 + i };
    });
    const plain: Record<string, unknown> = {};
    // Object Lock is an AWS bucket's; the bastion is production's network.
    const dropped = /^hx-backup:(bastion|objectLock)/;
    for (const [k, v] of Object.entries(doc.config)) if (k.startsWith("hx-backup:") && !dropped.test(k)) plain[k] = v;
    Object.assign(plain, {
        "hx-backup:hosts": hosts,
        // The fourth shape is the monitoring host.
        "hx-backup:monitoringHost": n >= 4 ? hosts[3]!.name : "",
        "hx-backup:sshUser": "root",
        "hx-backup:sshSudo": false,
        "hx-backup:hostReads": false,
        "hx-backup:s3Endpoint": "https://127.0.0.1:4569",
        "hx-backup:s3Region": "us-east-1",
    });
    return { plain, secrets: { "hx-backup:s3AccessKeyId": "BENCHKEY", "hx-backup:s3SecretAccessKey": "bench-secret", "hx-backup:sshPrivateKey": "" } };
}

async function fleetStack(engine: EngineInfo, dir: string, name: string, n: number, keyFile: string, ports: readonly number[] = []): Promise<Stack> {
    const configFile = path.join(dir, "stack", `Pulumi.${name}.yaml`);
    const stack = await openStack(engine, { stack: name, backendDir: path.join(dir, "backend"), configFile, passphraseFile: path.join(dir, "passphrase") });
    const { plain, secrets } = fleetStackConfig(n, ports);
    await setConfig(stack, plain, { ...secrets, "hx-backup:sshPrivateKey": readFileSync(keyFile, "utf8") });
    return stack;
}

/** One pulumi run, timed, with the peak RSS of its process tree. */
async function measured(stack: Stack, args: readonly string[]): Promise<Run & { stdout: string }> {
    let sampler: TreeSampler | undefined;
    const r = await pulumi(stack, args, { json: false, onSpawn: (child) => (sampler = new TreeSampler(child.pid!, 250).start()) });
    const sample = sampler?.stop();
    expectOk(r);
    return { seconds: r.seconds, peakRssBytes: sample?.peakRssBytes ?? 0, peakTop: sample?.peakTop.slice(0, 4) ?? [], stdout: r.stdout };
}

const resourcesIn = (previewOut: string) => Number(/\+ (\d+) to create/.exec(previewOut)?.[1] ?? Number.NaN);

function stateBytes(backendDir: string, stack: string): number {
    const found = spawnSync("find", [backendDir, "-path", `*/stacks/*/${stack}.json`, "-type", "f"], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
    if (found.length !== 1) throw new Error(`the state file of ${stack} under ${backendDir}: found ${found.length}`);
    return statSync(found[0]!).size;
}

// ------------------------------------------------------------- measures ---

export async function benchFleetDeploy(rounds: number, quick = false): Promise<FleetDeployBench> {
    const available = engineTestsUnavailable();
    if (available.reason) throw new Error(`the fleet deploy bench needs the engine and root: ${available.reason}`);
    const engine = available.engine!;
    const plugins = engine.plugins.map((p) => `${p.name} ${p.source}`).join(", ");
    const dir = tempDir("hx-bench-fleet-");
    const keyFile = path.join(dir, "deploy_ed25519");
    newSshKey(keyFile);
    try {
        const sizes = quick ? [1, 10] : [1, 10, 50, 200];
        const previewNew: FleetDeployBench["previewNew"][number][] = [];
        for (const n of sizes) {
            const stack = await fleetStack(engine, dir, `new${n}`, n, keyFile);
            const runs: Run[] = [];
            let resources = Number.NaN;
            for (let i = 0; i < rounds; i++) {
                const r = await measured(stack, ["preview"]);
                resources = resourcesIn(r.stdout);
                runs.push({ seconds: r.seconds, peakRssBytes: r.peakRssBytes, peakTop: r.peakTop });
                log(`  preview of a new ${n}-host stack, round ${i + 1}: ${r.seconds.toFixed(1)} s, peak RSS ${(r.peakRssBytes / 2 ** 30).toFixed(2)} GiB, ${resources} resources`);
            }
            previewNew.push({ hosts: n, resources, rounds: runs });
        }

        const firstUps: FleetDeployBench["firstUps"][number][] = [];
        for (const n of quick ? [10] : [10, 50]) {
            const fleet = await startStub(n);
            try {
                const stack = await fleetStack(engine, dir, `first${n}`, n, keyFile, fleet.ports);
                const r = await measured(stack, PROCEDURES.up);
                const bytes = stateBytes(path.join(dir, "backend"), `first${n}`);
                firstUps.push({ hosts: n, run: { seconds: r.seconds, peakRssBytes: r.peakRssBytes }, commands: await fleet.stop(), stateBytes: bytes });
                log(`  first up of ${n} stub hosts: ${r.seconds.toFixed(1)} s, state ${(bytes / 2 ** 20).toFixed(1)} MiB`);
            } catch (err) {
                await fleet.stop();
                throw err;
            }
        }

        const big = sizes[sizes.length - 1]!;
        const stub = await startStub(big);
        let stubResult: FleetDeployBench["stub"];
        try {
            const stack = await fleetStack(engine, dir, `stub${big}`, big, keyFile, stub.ports);
            // Only to make the state: with a checkpoint per operation a first up grows with the square of the fleet (firstUps).
            const first = await measured({ ...stack, env: { ...stack.env, PULUMI_SKIP_CHECKPOINTS: "true" } }, PROCEDURES.up);
            log(`  first up of ${big} stub hosts: ${first.seconds.toFixed(1)} s, peak RSS ${(first.peakRssBytes / 2 ** 30).toFixed(2)} GiB`);
            const unchangedUp: Run[] = [];
            const unchangedPreview: Run[] = [];
            for (let i = 0; i < rounds; i++) {
                const p = await measured(stack, PROCEDURES.hostDrift);
                unchangedPreview.push({ seconds: p.seconds, peakRssBytes: p.peakRssBytes });
                const u = await measured(stack, PROCEDURES.up);
                if (!/\b\d+ unchanged\b/.test(u.stdout) || /\d+ (updated|created|deleted)/.test(u.stdout)) throw new Error(`an unchanged up of ${big} stub hosts changed something:\n${u.stdout.slice(-2000)}`);
                unchangedUp.push({ seconds: u.seconds, peakRssBytes: u.peakRssBytes });
                log(`  unchanged ${big} stub hosts, round ${i + 1}: preview ${p.seconds.toFixed(1)} s, up ${u.seconds.toFixed(1)} s`);
            }
            const commands = await stub.stop();
            stubResult = { hosts: big, firstUp: { seconds: first.seconds, peakRssBytes: first.peakRssBytes }, commands, unchangedUp, unchangedPreview, stateBytes: stateBytes(path.join(dir, "backend"), `stub${big}`) };
        } catch (err) {
            await stub.stop();
            throw err;
        }

        const parallelHosts = quick ? 10 : 50;
        const delaySeconds = 0.3;
        const parallelRuns: { parallel: string; run: Run }[] = [];
        for (const parallel of ["default", "32", "128"]) {
            const slow = await startStub(parallelHosts, delaySeconds);
            try {
                const stack = await fleetStack(engine, dir, `par${parallel}`, parallelHosts, keyFile, slow.ports);
                // Without intermediate checkpoints: what the engine's concurrency does to steps that wait on hosts.
                const r = await measured({ ...stack, env: { ...stack.env, PULUMI_SKIP_CHECKPOINTS: "true" } }, parallel === "default" ? PROCEDURES.up : [...PROCEDURES.up, "--parallel", parallel]);
                parallelRuns.push({ parallel, run: { seconds: r.seconds, peakRssBytes: r.peakRssBytes } });
                log(`  first up of ${parallelHosts} stub hosts (${delaySeconds} s per command), --parallel ${parallel}: ${r.seconds.toFixed(1)} s`);
            } finally {
                await slow.stop();
            }
        }

        return { plugins, previewNew, firstUps, stub: stubResult, parallel: { hosts: parallelHosts, delaySeconds, runs: parallelRuns }, };
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

export async function benchSandboxDeploy(rounds: number): Promise<SandboxDeployBench> {
    const available = engineTestsUnavailable();
    if (available.reason) throw new Error(`the sandbox deploy bench needs the engine and root: ${available.reason}`);
    const one: number[] = [];
    const four: number[] = [];
    for (let i = 0; i < rounds; i++) {
        for (const n of i % 2 === 0 ? [1, 4] : [4, 1]) {
            const seconds = await sandboxFirstDeploy(available.engine!, n, i);
            (n === 1 ? one : four).push(seconds);
            log(`  first deploy of ${n} sandbox host(s), round ${i + 1}: ${seconds.toFixed(1)} s`);
        }
    }
    return { one, four };
}

/** The first `pulumi up` of n light sandbox hosts (application and configuration), real steps on real sshd. */
async function sandboxFirstDeploy(engine: EngineInfo, n: number, round: number): Promise<number> {
    const dir = tempDir("hx-bench-sandbox-deploy-");
    let fleet: FleetHost[] = [];
    try {
        const keyFile = path.join(dir, "deploy_ed25519");
        newSshKey(keyFile);
        const specs = Array.from({ length: n }, (_, i) => ({ name: `sb-${round}-${i + 1}`, address: `127.0.0.${131 + i}`, roles: ["application", "configuration"], appPaths: ["/srv/hx-app"] }));
        fleet = await startFleet(path.join(dir, "hosts"), specs, keyFile);
        const stack = await sandboxStack(engine, dir, "sandbox-deploy", fleet, keyFile);
        const r = await pulumi(stack, PROCEDURES.up);
        expectOk(r);
        return r.seconds;
    } finally {
        for (const f of fleet) await f.host.stop();
        rmSync(dir, { recursive: true, force: true });
    }
}
