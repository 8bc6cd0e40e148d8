/**
 * Helpers for the tests that run the program on the real Pulumi engine
 * (tests/integration/engine): a small fleet of sandbox hosts sharing one
 * client key, a stack on a file backend, pulumi runs with their engine events,
 * the plan the program should follow (render/hostPlan.ts), what each host ran
 * (the sandbox's step log), what each host has installed, and a scanner that
 * looks for a secret in any encoding.
 */
import { execFileSync, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import type { DeployFacts } from "../../render/hostConfig";
import { shellCommand } from "../../render/shell";
import { REPO_ROOT, openStack, provideEngine, runPulumi, setConfig, type EngineInfo, type PulumiRun, type Stack } from "../../scripts/lib/engine";
import { runJobService, type JobRun } from "../../scripts/sandbox/jobs";
import { startSandboxHost, type SandboxHost } from "../../scripts/sandbox/host";
import { planFleetData, type PlannedHost } from "./engine-plan";
import { isCI, isRoot, missingTools } from "./env";

export { REPO_ROOT };

/**
 * An engine test's time limit. Beside a CPU hog, one file alone, fleet.test.ts's tests took up
 * to 53 s (an up on three hosts with jobs); two files at once on two cores and other work can
 * double that, and vitest's 120 s would then end a test that is only slow, saying nothing of it.
 */
export const ENGINE_TEST_TIMEOUT_MS = 600_000;

/** What these tests need besides root and the engine (which scripts/install-pulumi.sh provides). */
export const ENGINE_TEST_TOOLS = ["unshare", "ssh", "ssh-keygen", "/usr/sbin/sshd", "setpriv", "visudo", "jq", "openssl", "tar", "base64", "sha256sum", "git"] as const;

/**
 * Why the engine tests cannot run here, or undefined when they can. Under
 * CI=true every missing piece is an error instead (the suite fails, never skips).
 */
export function engineTestsUnavailable(): { reason?: string; engine?: EngineInfo } {
    const missing = missingTools(ENGINE_TEST_TOOLS); // throws under CI
    const problems: string[] = [];
    if (!isRoot) problems.push("root (sandbox hosts use mount namespaces and overlays)");
    if (missing.length) problems.push(`tools: ${missing.join(", ")}`);
    let engine: EngineInfo | undefined;
    if (!problems.length) {
        try {
            engine = provideEngine();
            const absent = engine.plugins.filter((p) => (p.name === "command" || p.name === "random") && p.source === "missing");
            if (absent.length) problems.push(`plugins: ${absent.map((p) => p.name).join(", ")}`);
        } catch (e) {
            problems.push(`the Pulumi engine: ${(e as Error).message.split("\n")[0]}`);
        }
    }
    if (problems.length && isCI) throw new Error(`engine integration tests need, under CI=true: ${problems.join("; ")}`);
    return problems.length ? { reason: problems.join("; ") } : { engine };
}

// ------------------------------------------------------------------ fleet ---

export interface FleetHostSpec {
    readonly name: string;
    /** A loopback address (127.0.0.0/8) of its own. */
    readonly address: string;
    readonly roles: readonly string[];
    /** With the application role: the folders it backs up (created on the host with sample files). */
    readonly appPaths?: readonly string[];
}

export interface FleetHost {
    readonly spec: FleetHostSpec;
    readonly host: SandboxHost;
}

/** Starts every host (stepLog on, one client key shared by all), and the sample application folders. */
export async function startFleet(dir: string, specs: readonly FleetHostSpec[], keyFile: string): Promise<FleetHost[]> {
    const started = await Promise.all(specs.map(async (spec) => ({ spec, host: await startSandboxHost(path.join(dir, spec.name), { address: spec.address, keyFile, stepLog: true }) })));
    for (const { spec, host } of started) {
        for (const p of spec.appPaths ?? []) {
            const r = await host.exec(
                `set -e; mkdir -p ${p}/data ${p}/uploads; printf 'hello from %s\\n' ${spec.name} > ${p}/data/a.txt; head -c 20000 /dev/urandom > ${p}/uploads/blob.bin; printf 'secret-ish\\n' > ${p}/data/private.txt; chmod 0600 ${p}/data/private.txt; chown -R nobody:nogroup ${p}/uploads`,
            );
            if (r.code !== 0) throw new Error(`${spec.name}: creating ${p}: ${r.stderr}`);
        }
    }
    return started;
}

/** A `hx-backup:hosts` entry for a running sandbox host. */
export function hostEntry(spec: FleetHostSpec, host: { address: string; port: number; hostKey: string }): Record<string, unknown> {
    return {
        name: spec.name,
        address: host.address,
        port: host.port,
        hostKey: host.hostKey,
        roles: [...spec.roles],
        remoteSync: false,
        ...(spec.appPaths ? { application: { paths: [...spec.appPaths] } } : {}),
    };
}

/**
 * A stack in `dir` (its backend, config file and passphrase there) for sandbox hosts: no package installs,
 * backup user `hxbackup`, root over SSH with the key in `keyFile`, the hosts' entries. `cwd`: the project
 * (a copyProject copy), default the repository.
 */
export async function sandboxStack(engine: EngineInfo, dir: string, name: string, hosts: readonly FleetHost[], keyFile: string, cwd?: string): Promise<Stack> {
    const configFile = path.join(dir, "stack", `Pulumi.${name}.yaml`);
    const stack = await openStack(engine, { stack: name, backendDir: path.join(dir, "backend"), configFile, passphraseFile: path.join(dir, "passphrase"), ...(cwd ? { cwd } : {}) });
    await setConfig(
        stack,
        { "hx-backup:installPackages": false, "hx-backup:backupUser": "hxbackup", "hx-backup:sshUser": "root", "hx-backup:hosts": hosts.map((f) => hostEntry(f.spec, f.host)) },
        { "hx-backup:sshPrivateKey": readFileSync(keyFile, "utf8") },
    );
    return stack;
}

/** A fresh ed25519 key pair in `file` (and `file.pub`); returns the public key line. */
export function newSshKey(file: string): string {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "hx-engine-test", "-f", file]);
    return readFileSync(`${file}.pub`, "utf8").trim();
}

/** Runs a command on a host and fails the test, with its output, when it exits non-zero. */
export async function sh(host: SandboxHost, command: string, stdin = ""): Promise<string> {
    const r = await host.exec(command, stdin);
    if (r.code !== 0) throw new Error(`on ${host.address}: ${command.slice(0, 300)}\nexit ${r.code}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-2000)}`);
    return r.stdout;
}

// -------------------------------------------------------------- project ---

const NOT_COPIED = new Set(["node_modules", ".git", ".sandbox", ".engine", "test-artifacts", "out", "report"]);

/**
 * Copies the project (everything but node_modules, .git and the tools' state
 * folders) into `dest`, with node_modules linked: a program the tests may edit,
 * never the repository's own files.
 */
export function copyProject(dest: string): string {
    mkdirSync(dest, { recursive: true });
    for (const entry of readdirSync(REPO_ROOT)) {
        if (NOT_COPIED.has(entry)) continue;
        cpSync(path.join(REPO_ROOT, entry), path.join(dest, entry), { recursive: true, verbatimSymlinks: true });
    }
    symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(dest, "node_modules"));
    return dest;
}

/** Writes a file of a project copy, never of the repository; returns the old content. */
export function writeInCopy(project: string, relative: string, content: string | ((old: string) => string)): string {
    const file = path.resolve(project, relative);
    if (file === REPO_ROOT || file.startsWith(`${REPO_ROOT}${path.sep}`)) throw new Error(`refusing to edit ${file}: edit a copyProject() copy, never the repository's own files`);
    const old = readFileSync(file, "utf8");
    writeFileSync(file, typeof content === "function" ? content(old) : content);
    return old;
}

// ------------------------------------------------------------ pulumi runs ---

/** One resource operation, from the engine's events (`--json` of up, destroy and refresh). */
export interface ResourceOp {
    readonly op: string;
    readonly urn: string;
    readonly type: string;
    readonly name: string;
}

export interface EngineRun extends PulumiRun {
    readonly args: readonly string[];
    /** Operations the engine finished (resOutputsEvent), in order; `same` included. */
    readonly done: ResourceOp[];
    /** Operations that failed (resOpFailedEvent). */
    readonly failed: ResourceOp[];
    /** Error diagnostics: URN (or "") and message. */
    readonly errors: { urn: string; message: string }[];
}

const nameOf = (urn: string) => urn.slice(urn.lastIndexOf("::") + 2);

interface RawMetadata {
    op: string;
    urn: string;
    type: string;
}

/** Parses the engine event lines `pulumi up|destroy --json` streams after its preview document. */
export function parseEngineEvents(stdout: string): Pick<EngineRun, "done" | "failed" | "errors"> {
    const done: ResourceOp[] = [];
    const failed: ResourceOp[] = [];
    const errors: { urn: string; message: string }[] = [];
    for (const line of stdout.split("\n")) {
        if (!line.startsWith('{"sequence"')) continue;
        const e = JSON.parse(line) as {
            resOutputsEvent?: { metadata: RawMetadata };
            resOpFailedEvent?: { metadata: RawMetadata };
            diagnosticEvent?: { urn?: string; message: string; severity: string };
        };
        const op = (m: RawMetadata): ResourceOp => ({ op: m.op, urn: m.urn, type: m.type, name: nameOf(m.urn) });
        if (e.resOutputsEvent) done.push(op(e.resOutputsEvent.metadata));
        if (e.resOpFailedEvent) failed.push(op(e.resOpFailedEvent.metadata));
        if (e.diagnosticEvent?.severity === "error") errors.push({ urn: e.diagnosticEvent.urn ?? "", message: e.diagnosticEvent.message });
    }
    return { done, failed, errors };
}

/**
 * A `--json` run's output without the SDK's debug diagnostics: the @pulumi/pulumi
 * SDK logs each RegisterResource response at debug level (secret outputs in plain
 * text), and `--json` streams every debug diagnostic.
 */
export function withoutDebugEvents(stdout: string): { rest: string; debug: string } {
    const rest: string[] = [];
    const debug: string[] = [];
    for (const line of stdout.split("\n")) (line.startsWith('{"sequence"') && line.includes('"diagnosticEvent"') && line.includes('"severity":"debug"') ? debug : rest).push(line);
    return { rest: rest.join("\n"), debug: debug.join("\n") };
}

/** The last `lines` lines of a run's output, for failure messages. */
export function tail(run: PulumiRun, lines = 60): string {
    const text = `${run.stdout}\n${run.stderr}`.split("\n").filter((l) => !l.startsWith('{"sequence"') || l.includes('"severity":"error"') || l.includes("summaryEvent"));
    return text.slice(-lines).join("\n");
}

/** Every run of a test file, for the secret scan of what pulumi printed. */
export const allRuns: EngineRun[] = [];

/** `pulumi <args>` on the stack; up and destroy get `--json`, so their engine events can be read. */
export async function pulumi(stack: Stack, args: readonly string[], opts: { json?: boolean; input?: string; onSpawn?: (child: ChildProcess) => void } = {}): Promise<EngineRun> {
    const json = opts.json ?? ["up", "destroy"].includes(args[0]);
    const full = json && !args.includes("--json") ? [...args, "--json"] : [...args];
    const r = await runPulumi(stack, full, { input: opts.input, ...(opts.onSpawn ? { onSpawn: opts.onSpawn } : {}) });
    const run: EngineRun = { ...r, args: full, ...(json ? parseEngineEvents(r.stdout) : { done: [], failed: [], errors: [] }) };
    allRuns.push(run);
    return run;
}

/** Fails with the command and its output tail unless the run exited 0. */
export function expectOk(run: EngineRun, what = `pulumi ${run.args.join(" ")}`): void {
    if (run.code !== 0) throw new Error(`${what} exited ${run.code}; expected 0. Output tail:\n${tail(run)}`);
}

/** Operations other than `same`, as "op name" lines sorted, for comparisons that show the whole difference. */
export const changes = (ops: readonly ResourceOp[]) => ops.filter((o) => o.op !== "same").map((o) => `${o.op} ${o.name}`).sort();

/**
 * The resources of a `preview --diff` (or `up --diff`) and what happens to each: the header line
 * (`~ command:remote:Command: (update)`) followed by its `[urn=...]` line. Returns
 * "<symbol> <op> <name>" (e.g. "~ update db-1-config"), or with `withType`
 * "<symbol> <op> <type> <name>", for every resource that is not `same`.
 */
export function diffOps(output: string, withType = false): string[] {
    const out: string[] = [];
    const lines = output.split("\n");
    for (let i = 0; i < lines.length; i++) {
        // A secret resource's header ends with a lock: "+ random:index/randomPassword:RandomPassword: (create) 🔒".
        const head = /^\s*(\+-|-\+|\+\+|--|<=|\+|-|~|>|=)?\s*([\w:/.-]+): \(([\w-]+)\)(?:\s.*)?$/.exec(lines[i]);
        if (!head) continue;
        for (let j = i + 1; j < Math.min(lines.length, i + 4); j++) {
            const urn = /\[urn=([^\]]+)\]/.exec(lines[j]);
            if (urn) {
                if (head[3] !== "same") out.push(`${head[1] ?? ""} ${head[3]} ${withType ? `${head[2]} ` : ""}${nameOf(urn[1])}`);
                break;
            }
        }
    }
    return [...new Set(out)].sort();
}

/** The marker of a secret value in a deployment (`{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ...}`). */
const SECRET_SIG = ["4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"] as const;

/** A deployment value with every secret of `--show-secrets` (`plaintext`, JSON) unwrapped; ciphertexts stay as they are. */
export function reveal(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(reveal);
    if (value && typeof value === "object") {
        const o = value as Record<string, unknown>;
        if (o[SECRET_SIG[0]] === SECRET_SIG[1] && typeof o.plaintext === "string") return reveal(JSON.parse(o.plaintext));
        return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, reveal(v)]));
    }
    return value;
}

/** `pulumi stack export` (with `--show-secrets`: the secrets unwrapped in `resources`; `text` is the CLI's output as it is). */
export async function exportState(stack: Stack, showSecrets = false): Promise<{ text: string; resources: StateResource[] }> {
    const r = await pulumi(stack, ["stack", "export", ...(showSecrets ? ["--show-secrets"] : [])], { json: false });
    if (r.code !== 0) throw new Error(`pulumi stack export failed: ${tail(r)}`);
    const doc = JSON.parse(r.stdout) as { deployment: { resources?: StateResource[] } };
    const resources = doc.deployment.resources ?? [];
    return { text: r.stdout, resources: showSecrets ? (reveal(resources) as StateResource[]) : resources };
}

export interface StateResource {
    readonly urn: string;
    readonly type: string;
    readonly id?: string;
    readonly protect?: boolean;
    readonly inputs?: Record<string, unknown>;
    readonly outputs?: Record<string, unknown>;
}

// ------------------------------------------------------------------- plan ---

export interface EncryptionOutput {
    readonly currentKeyId: string;
    readonly keyIds: string[];
    readonly fingerprints: Record<string, string>;
}

export const factsOf = (e: EncryptionOutput): DeployFacts => ({ currentKeyId: e.currentKeyId, keyIds: e.keyIds, keyFingerprints: e.fingerprints });

export type FleetPlan = Map<string, PlannedHost>;

/**
 * What the program should do for each host: render/hostPlan.ts's plan of the
 * stack as its config file holds it, with the deployed facts (key ids and
 * fingerprints from the stack outputs) or render's placeholders. For a project
 * copy, planned by that copy's own code and templates (tests/support/engine-plan.ts run there).
 */
export function planFleet(configFile: string, stack: string, facts?: DeployFacts, project = REPO_ROOT): FleetPlan {
    let hosts: PlannedHost[];
    if (path.resolve(project) === REPO_ROOT) hosts = planFleetData(configFile, stack, facts);
    else {
        const script = path.join(project, "tests", "support", "engine-plan.ts");
        const r = spawnSync(process.execPath, ["--import", "tsx", script, configFile, stack, ...(facts ? [JSON.stringify(facts)] : [])], { cwd: project, encoding: "utf8", maxBuffer: 64 << 20 });
        if (r.status !== 0) throw new Error(`planning in ${project} failed (exit ${r.status}): ${r.stderr}`);
        hosts = JSON.parse(r.stdout) as PlannedHost[];
    }
    return new Map(hosts.map((h) => [h.name, h]));
}

export function hostPlan(plan: FleetPlan, host: string): PlannedHost {
    const p = plan.get(host);
    if (!p) throw new Error(`no host ${host} in the plan (hosts: ${[...plan.keys()].join(", ")})`);
    return p;
}

/** Every resource of one host's plan below its component, by name suffix and type: its steps, then its stage copies. */
export const hostResources = (plan: PlannedHost): { readonly name: string; readonly type: string }[] => [
    ...plan.steps.map((s) => ({ name: s.name, type: "command:remote:Command" })),
    ...(plan.stages ?? []).map((name) => ({ name, type: "command:remote:CopyToRemote" })),
];

/** Step name -> digest, of one host's plan. */
export const stepDigests = (plan: PlannedHost) => new Map(plan.steps.map((s) => [s.name, s.digest]));

/** The steps whose digest differs between two plans of a host (a step only in one of them counts too). */
export function changedSteps(before: PlannedHost, after: PlannedHost): string[] {
    const a = stepDigests(before);
    const b = stepDigests(after);
    return [...new Set([...a.keys(), ...b.keys()])].filter((n) => a.get(n) !== b.get(n)).sort();
}

// ---------------------------------------------------------- what hosts ran ---

/** The step digests a host's sshd saw, in order (one per remote command that carried one). */
export function stepLog(host: SandboxHost): string[] {
    if (!host.stepLog) throw new Error(`host ${host.address} was started without stepLog`);
    return readFileSync(host.stepLog, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => {
            const m = / step ([0-9a-f]{64})$/.exec(l);
            if (!m) throw new Error(`unexpected step log line ${JSON.stringify(l)} in ${host.stepLog}`);
            return m[1];
        });
}

/** Names the digests a host ran by the plan's steps; a digest the plan does not know is shown as `?<digest>`. */
export function namedSteps(digests: readonly string[], plan: PlannedHost): string[] {
    const byDigest = new Map<string, string[]>();
    for (const s of plan.steps) byDigest.set(s.digest, [...(byDigest.get(s.digest) ?? []), s.name]);
    return digests.map((d) => (byDigest.get(d) ?? [`?${d.slice(0, 12)}`]).join("|")).sort();
}

// ------------------------------------------------------- what hosts hold ---

/** path -> "inode mtime size" of each path (or "missing"), as the host sees it. */
export async function statPaths(host: SandboxHost, paths: readonly string[]): Promise<Map<string, string>> {
    const script = 'for f in "$@"; do if [ -e "$f" ] || [ -L "$f" ]; then stat -c "%n	%i %.9Y %s %U:%G %a" -- "$f"; else printf "%s\\tmissing\\n" "$f"; fi; done';
    const out = await sh(host, shellCommand("bash", "-c", script, "stat", ...paths));
    return new Map(out.split("\n").filter(Boolean).map((l) => l.split("\t") as [string, string]));
}

/** Every file a host's plan installs (plain and secret), for inventories. */
export const plannedPaths = (plan: PlannedHost) => [...new Set(plan.steps.flatMap((s) => s.paths))].sort();

/** The paths whose stat line differs between two inventories. */
export function changedPaths(before: Map<string, string>, after: Map<string, string>): string[] {
    return [...new Set([...before.keys(), ...after.keys()])].filter((p) => before.get(p) !== after.get(p)).sort();
}

/** path -> sha256 of every file under the folders (backups, keys), with inode and size. */
export async function fileDigests(host: SandboxHost, dirs: readonly string[]): Promise<Map<string, string>> {
    const script = 'for d in "$@"; do [ -d "$d" ] && find "$d" -type f -print0; done | sort -z | while IFS= read -r -d "" f; do printf "%s\\t%s %s\\n" "$f" "$(sha256sum < "$f" | cut -c1-64)" "$(stat -c "%i %s" -- "$f")"; done';
    const out = await sh(host, shellCommand("bash", "-c", script, "digests", ...dirs));
    return new Map(out.split("\n").filter(Boolean).map((l) => l.split("\t") as [string, string]));
}

/** Runs every job of a host as its timer would (backups first, then verification and drift check); returns each run. */
export async function runJobs(host: SandboxHost, timers: readonly string[]): Promise<JobRun[]> {
    const late = (t: string) => (/verification|drift/.test(t) ? 1 : 0);
    const ordered = [...timers].sort((a, b) => late(a) - late(b));
    const runs: JobRun[] = [];
    for (const timer of ordered) runs.push(...(await runJobService(host.exec, timer.replace(/\.timer$/, ".service"))));
    return runs;
}

/** Fails with the unit's output unless every run exited 0. */
export function expectJobsOk(hostName: string, runs: readonly JobRun[]): void {
    if (runs.length === 0) throw new Error(`${hostName}: no job ran`);
    for (const r of runs) if (r.code !== 0) throw new Error(`${hostName}: ${r.unit} exited ${r.code}; expected 0\nstdout: ${r.stdout.slice(-1500)}\nstderr: ${r.stderr.slice(-3000)}`);
}

/** The newest committed manifest of one source on a host (storage/<type>/<target>/*.manifest.json). */
export async function newestManifest(host: SandboxHost, storage: string, type: string): Promise<{ path: string; doc: { encryption?: { keyId?: string }; mac?: { keyId?: string }; artifact?: string } }> {
    const out = await sh(host, `ls -1t ${storage}/${type}/*/*.manifest.json | head -1`);
    const p = out.trim();
    if (!p) throw new Error(`no ${type} manifest under ${storage} on ${host.address}`);
    return { path: p, doc: JSON.parse(await sh(host, shellCommand("cat", p))) };
}

// --------------------------------------------------------------- secrets ---

export interface Secret {
    readonly label: string;
    readonly value: string;
}

/** base64 of `bytes` wherever they sit in a longer base64 text: the part that does not depend on the bytes around them, for each of the three alignments. */
function alignedBase64(bytes: Buffer, url: boolean): string[] {
    const out: string[] = [];
    for (let k = 0; k < 3; k++) {
        let enc = Buffer.concat([Buffer.alloc(k), bytes]).toString(url ? "base64url" : "base64").replace(/=+$/, "");
        enc = enc.slice(k === 0 ? 0 : 4);
        enc = enc.slice(0, Math.max(0, enc.length - 4));
        if (enc.length >= 16) out.push(enc);
    }
    return out;
}

const PEM = /-----BEGIN [A-Z ]+-----\n([\s\S]+?)\n-----END/;

/** The byte strings a secret may be stored as: its text, and for a hex key or an OpenSSH key also the bytes it encodes. */
function byteForms(value: string): { form: string; bytes: Buffer }[] {
    const forms = [{ form: "text", bytes: Buffer.from(value, "utf8") }];
    if (/^[0-9a-fA-F]+$/.test(value) && value.length % 2 === 0) forms.push({ form: "bytes", bytes: Buffer.from(value, "hex") });
    const pem = PEM.exec(value);
    if (pem) forms.push({ form: "key bytes", bytes: Buffer.from(pem[1].replace(/\s+/g, ""), "base64") });
    return forms;
}

export interface Needle {
    /** How the secret is encoded in it, e.g. "base64 of its bytes": what a report may say (never the text itself). */
    readonly encoding: string;
    readonly text: string;
}

/** Every text the secret would show as: raw, JSON-escaped, each line of a PEM body, hex (both cases), base64 and base64url of each byte form. */
export function secretNeedles(value: string): Needle[] {
    const needles: Needle[] = [
        { encoding: "raw", text: value },
        { encoding: "raw, JSON-escaped", text: JSON.stringify(value).slice(1, -1) },
        { encoding: "raw, without its last newline", text: value.replace(/\n$/, "") },
    ];
    const pem = PEM.exec(value);
    if (pem) for (const [i, line] of pem[1].split("\n").entries()) if (line.length >= 16) needles.push({ encoding: `line ${i + 1} of its PEM body`, text: line });
    for (const { form, bytes } of byteForms(value)) {
        needles.push({ encoding: `hex of its ${form}`, text: bytes.toString("hex") }, { encoding: `HEX of its ${form}`, text: bytes.toString("hex").toUpperCase() });
        for (const text of alignedBase64(bytes, false)) needles.push({ encoding: `base64 of its ${form}`, text });
        for (const text of alignedBase64(bytes, true)) needles.push({ encoding: `base64url of its ${form}`, text });
    }
    const seen = new Set<string>();
    return needles.filter((n) => n.text.length >= 16 && !seen.has(n.text) && seen.add(n.text));
}

/** The secrets found in `text`, as "label (as <encoding>)"; no part of a secret is ever in the answer. */
export function findSecrets(text: string, secrets: readonly Secret[]): string[] {
    const found: string[] = [];
    for (const s of secrets) {
        const hit = secretNeedles(s.value).find((n) => text.includes(n.text));
        if (hit) found.push(`${s.label} (as ${hit.encoding})`);
    }
    return found;
}

/** Every file under `dir` as text (gzip files unpacked), path -> content. */
export function readTree(dir: string): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (d: string) => {
        for (const entry of readdirSync(d)) {
            const p = path.join(d, entry);
            const st = statSync(p);
            if (st.isDirectory()) walk(p);
            else if (st.isFile()) {
                const raw = readFileSync(p);
                out.set(p, (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString("latin1"));
            }
        }
    };
    if (existsSync(dir)) walk(dir);
    return out;
}

/** Timings of a test file's runs, printed by its afterAll (tests/support/timing.ts adds each test's). */
export class Timings {

    readonly rows: { what: string; seconds: number }[] = [];
    add(what: string, seconds: number): void {
        this.rows.push({ what, seconds: Math.round(seconds * 10) / 10 });
    }
    print(title: string): void {
        console.log(`${title}\n${this.rows.map((r) => `  ${r.seconds.toFixed(1).padStart(7)} s  ${r.what}`).join("\n")}`);
    }
}

/** git show <rev>:<path> of the repository. */
export function gitShow(rev: string, file: string): string {
    const r = spawnSync("git", ["show", `${rev}:${file}`], { cwd: REPO_ROOT, encoding: "utf8", maxBuffer: 16 << 20 });
    if (r.status !== 0) throw new Error(`git show ${rev}:${file}: ${r.stderr}`);
    return r.stdout;
}
