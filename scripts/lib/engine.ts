/**
 * The real Pulumi engine for this project's tools and tests: the CLI and
 * plugins that scripts/install-pulumi.sh provides, a file backend, the
 * passphrase secrets provider, and a stack whose config lives in a file of
 * the caller's choosing (never the tracked Pulumi.<stack>.yaml).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
const INSTALL = path.join(REPO_ROOT, "scripts", "install-pulumi.sh");

export interface EnginePlugin {
    readonly name: string;
    readonly source: "upstream" | "standin" | "missing";
    readonly version: string;
}

export interface EngineInfo {
    /** Put first on PATH: `pulumi` and `pulumi-language-nodejs`. */
    readonly binDir: string;
    /** PULUMI_HOME holding the plugins install-pulumi.sh chose. */
    readonly home: string;
    readonly plugins: readonly EnginePlugin[];
}

/** The `event=plugin` lines of install-pulumi.sh's log. */
export function parsePluginEvents(log: string): EnginePlugin[] {
    return [...log.matchAll(/^hx-install-pulumi event=plugin name=(\S+) source=(\S+)(?:.*? version=(\S+))?/gm)].map(([, name, source, version]) => ({
        name,
        source: source as EnginePlugin["source"],
        version: version ?? "",
    }));
}

/** Builds or finds the CLI and plugins (scripts/install-pulumi.sh); throws with its message when it cannot. */
export function provideEngine(log?: (line: string) => void): EngineInfo {
    // stderr is both shown (a cold build takes minutes) and kept for the plugin lines.
    const r = spawnSync("bash", [INSTALL], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
    for (const line of (r.stderr ?? "").split("\n").filter((l) => l.startsWith("hx-install-pulumi "))) log?.(line);
    if (r.status !== 0) throw new Error(`scripts/install-pulumi.sh failed (exit ${r.status}):\n${(r.stderr ?? "").trim()}`);
    const value = (key: string) => new RegExp(`^${key}=(.+)$`, "m").exec(r.stdout)?.[1];
    const binDir = value("bin");
    const home = value("home");
    if (!binDir || !home) throw new Error(`scripts/install-pulumi.sh printed no bin= and home= lines:\n${r.stdout}`);
    return { binDir, home, plugins: parsePluginEvents(r.stderr ?? "") };
}

export interface StackOptions {
    readonly stack: string;
    /** The file backend's folder (`file://<backendDir>`). */
    readonly backendDir: string;
    /** The stack's config file (`--config-file`); it holds the secrets provider's salt. */
    readonly configFile: string;
    /** The passphrase, in a 0600 file (PULUMI_CONFIG_PASSPHRASE_FILE); created with a random one when missing. */
    readonly passphraseFile: string;
    /** The project folder (Pulumi.yaml). Default: the repository root. */
    readonly cwd?: string;
    /** More environment for every pulumi run (e.g. PULUMI_PARALLEL). */
    readonly extraEnv?: Readonly<Record<string, string>>;
}

export interface Stack extends StackOptions {
    readonly cwd: string;
    readonly env: NodeJS.ProcessEnv;
    readonly engine: EngineInfo;
}

export interface PulumiRun {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
    readonly seconds: number;
}

/** The environment every pulumi run of a stack gets. */
export function engineEnv(engine: EngineInfo, options: StackOptions): NodeJS.ProcessEnv {
    return {
        ...process.env,
        PATH: `${engine.binDir}:${process.env.PATH ?? ""}`,
        PULUMI_HOME: engine.home,
        PULUMI_BACKEND_URL: `file://${options.backendDir}`,
        PULUMI_CONFIG_PASSPHRASE_FILE: options.passphraseFile,
        PULUMI_CONFIG_PASSPHRASE: undefined,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
        // Plain output for logs and tests: no colours.
        NO_COLOR: "1",
        ...(options.extraEnv ?? {}),
    };
}

/** Runs the CLI in `cwd` with `env`; `onOutput` sees stdout and stderr as they come. */
export function runCli(
    args: readonly string[],
    opts: { cwd: string; env: NodeJS.ProcessEnv; input?: string; onOutput?: (chunk: string) => void; timeoutMs?: number; onSpawn?: (child: ChildProcess) => void },
): Promise<PulumiRun> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
        const child = spawn("pulumi", [...args], { cwd: opts.cwd, env: opts.env, stdio: ["pipe", "pipe", "pipe"] });
        opts.onSpawn?.(child);
        let stdout = "";
        let stderr = "";
        const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGINT"), opts.timeoutMs) : undefined;
        child.stdout.on("data", (d: Buffer) => {
            stdout += d.toString();
            opts.onOutput?.(d.toString());
        });
        child.stderr.on("data", (d: Buffer) => {
            stderr += d.toString();
            opts.onOutput?.(d.toString());
        });
        child.on("error", reject);
        child.stdin.on("error", () => undefined);
        child.on("close", (code) => {
            if (timer) clearTimeout(timer);
            resolve({ code: code ?? 1, stdout, stderr, seconds: (Date.now() - started) / 1000 });
        });
        child.stdin.end(opts.input ?? "");
    });
}

/**
 * Creates the stack if the backend lacks it and returns a handle. `pulumi
 * stack init` writes the secrets provider's salt into the project folder's
 * Pulumi.<stack>.yaml, so it runs in a scratch project beside the config
 * file, whose salt then moves into `configFile`: no tracked file is touched.
 */
export async function openStack(engine: EngineInfo, options: StackOptions): Promise<Stack> {
    const cwd = options.cwd ?? REPO_ROOT;
    mkdirSync(options.backendDir, { recursive: true });
    mkdirSync(path.dirname(options.configFile), { recursive: true });
    if (!existsSync(options.passphraseFile)) {
        mkdirSync(path.dirname(options.passphraseFile), { recursive: true });
        writeFileSync(options.passphraseFile, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
    }
    const env = engineEnv(engine, options);
    const stack: Stack = { ...options, cwd, env, engine };
    const listed = await runCli(["stack", "ls", "--json"], { cwd, env });
    if (listed.code !== 0) throw new Error(`pulumi stack ls failed: ${listed.stderr.trim()}`);
    const exists = (JSON.parse(listed.stdout || "[]") as { name: string }[]).some((s) => s.name === options.stack || s.name.endsWith(`/${options.stack}`));
    if (!exists) {
        const scratch = path.join(path.dirname(options.configFile), `.init-${options.stack}`);
        mkdirSync(scratch, { recursive: true });
        copyFileSync(path.join(cwd, "Pulumi.yaml"), path.join(scratch, "Pulumi.yaml"));
        const init = await runCli(["stack", "init", options.stack, "--secrets-provider", "passphrase", "--no-select", "--non-interactive"], { cwd: scratch, env });
        if (init.code !== 0) throw new Error(`pulumi stack init ${options.stack} failed: ${init.stderr.trim() || init.stdout.trim()}`);
        const created = readFileSync(path.join(scratch, `Pulumi.${options.stack}.yaml`), "utf8");
        const salt = /^encryptionsalt: .+$/m.exec(created)?.[0];
        if (!salt) throw new Error(`pulumi stack init ${options.stack} wrote no encryptionsalt`);
        const existing = existsSync(options.configFile) ? readFileSync(options.configFile, "utf8").replace(/^encryptionsalt: .+\n?/m, "") : "";
        writeFileSync(options.configFile, `${salt}\n${existing}`);
        rmSync(scratch, { recursive: true, force: true });
    }
    return stack;
}

/**
 * The Pulumi commands of this project's procedures, one definition for the
 * sandbox, the engine tests and the CI workflows (tests/unit/workflows.test.ts
 * holds the workflows to them): a preview with the diff, an up, the drift
 * check of the state against the providers, and the destroy that works while
 * the keys are protected.
 */
export const PROCEDURES = {
    preview: ["preview", "--diff"],
    up: ["up", "--yes"],
    drift: ["refresh", "--preview-only", "--expect-no-changes", "--diff"],
    /** Host drift (the program reads every host's install records) and any other pending change. */
    hostDrift: ["preview", "--diff", "--expect-no-changes"],
    destroy: ["destroy", "--yes", "--exclude-protected"],
} as const satisfies Record<string, readonly string[]>;

/** The commands that read the stack's config, and so take `--config-file`. */
const READS_CONFIG = new Set(["up", "preview", "refresh", "destroy", "config", "import"]);

/** `pulumi <args> --stack <stack> [--config-file <file>] --non-interactive`. */
export function runPulumi(
    stack: Stack,
    args: readonly string[],
    options: { onOutput?: (chunk: string) => void; input?: string; timeoutMs?: number; onSpawn?: (child: ChildProcess) => void } = {},
): Promise<PulumiRun> {
    const configFile = READS_CONFIG.has(args[0]) ? ["--config-file", stack.configFile] : [];
    return runCli([...args, "--stack", stack.stack, ...configFile, "--non-interactive"], { cwd: stack.cwd, env: stack.env, ...options });
}

async function must(stack: Stack, args: readonly string[], input?: string): Promise<PulumiRun> {
    const r = await runPulumi(stack, args, { input });
    // The command line names only keys; values (secret ones above all) go on stdin.
    if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    return r;
}

/**
 * Writes plain config values (objects and arrays as JSON, set with --path
 * off) and secret ones into the stack's config file. Every value goes on
 * stdin, never on the command line.
 */
export async function setConfig(stack: Stack, plain: Record<string, unknown>, secrets: Record<string, string> = {}): Promise<void> {
    for (const [key, value] of Object.entries(plain)) {
        const text = typeof value === "string" ? value : JSON.stringify(value);
        await must(stack, ["config", "set", key, "--plaintext"], text);
    }
    for (const [key, value] of Object.entries(secrets)) await must(stack, ["config", "set", key, "--secret"], value);
}

/** `pulumi stack output --json`, parsed (secrets stay "[secret]"). */
export async function stackOutputs(stack: Stack): Promise<Record<string, unknown>> {
    const r = await must(stack, ["stack", "output", "--json"]);
    return JSON.parse(r.stdout) as Record<string, unknown>;
}
