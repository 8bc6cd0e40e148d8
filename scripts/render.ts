/**
 * npm run render -- --stack <name> [--host <name>] --out <dir>
 *
 * Writes the exact file tree each host would receive, at the paths where it
 * would be installed (<dir>/<host>/<path>), plus <dir>/<host>/MANIFEST.tsv with
 * owner, group, mode and sha256 of every file. Needs neither Pulumi nor SSH.
 * Secret files (keys, credentials) are listed in the manifest, never written;
 * values only known after deploy (the KMS key ARN) appear as placeholders.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { loadStackConfig, ConfigValidationError, SECRET_PLACEHOLDER } from "../config/load";
import { rawFromFiles } from "../config/raw";
import type { StackConfig } from "../config/types";
import type { DeployFacts } from "../render/hostConfig";
import { planHost } from "../render/hostPlan";
import type { PlannedFile, PlannedSecretFile } from "../render/step";
import { planMonitoring } from "../render/monitoringPlan";
import { sha256 } from "../render/remote";

export const DEPLOY_TIME = "(assigned at deploy)";

/**
 * A stack file as the render, drift and report tools read it: the tracked
 * Pulumi.<stack>.yaml as written by hand, or one the CLI wrote (`pulumi config
 * set`, e.g. the sandbox's .sandbox/stack/): `secure:` values are secrets set
 * (their value never read), `encryptionsalt` is not config, and a list or
 * object the CLI stored as JSON text is read as the program reads it from the
 * engine (config/raw.ts rawFromRuntime).
 */
export function loadStackFromFiles(projectDir: string, stack: string): StackConfig {
    const { raw, other } = rawFromFiles(projectDir, stack);
    const awsRegion = typeof other["aws:region"] === "string" ? (other["aws:region"] as string) : undefined;
    const structured = Object.fromEntries(Object.entries(raw).map(([key, value]) => [key, typeof value === "string" && value !== SECRET_PLACEHOLDER && /^\s*[[{]/.test(value) ? parseJsonValue(projectDir, stack, key, value) : value]));
    return loadStackConfig(stack, structured, { awsRegion, assumeSecretsSet: true });
}

function parseJsonValue(projectDir: string, stack: string, key: string, value: string): unknown {
    try {
        return JSON.parse(value);
    } catch (e) {
        throw new Error(`${path.join(projectDir, `Pulumi.${stack}.yaml`)}: hx-backup:${key} starts like JSON but is not (${(e as Error).message}); set it again with pulumi config set ${key} --stack ${stack}`);
    }
}

export function renderFacts(config: StackConfig): DeployFacts {
    const keyIds = Array.from({ length: config.encryption.keyVersion }, (_, i) => `${config.stack}-v${i + 1}`);
    return {
        currentKeyId: keyIds[keyIds.length - 1],
        keyIds,
        keyFingerprints: Object.fromEntries(keyIds.map((id) => [id, DEPLOY_TIME])),
    };
}

export interface RenderedHost {
    readonly host: string;
    readonly files: readonly PlannedFile[];
    readonly secretFiles: readonly PlannedSecretFile[];
}

/** Every file each host receives, monitoring files included on the monitoring host. */
export function renderStack(config: StackConfig, facts: DeployFacts = renderFacts(config)): RenderedHost[] {
    return config.hosts.map((host) => {
        const plan = planHost(config, host, facts);
        const steps = [...plan.steps, ...(config.monitoring?.host === host.name ? planMonitoring(config) : [])];
        return { host: host.name, files: steps.flatMap((s) => s.files), secretFiles: steps.flatMap((s) => s.secretFiles) };
    });
}

export function writeTree(out: string, rendered: RenderedHost): void {
    const root = path.join(out, rendered.host);
    rmSync(root, { recursive: true, force: true });
    const manifest = ["# path\towner\tgroup\tmode\tsha256"];
    for (const f of rendered.files) {
        const target = path.join(root, f.path);
        mkdirSync(path.dirname(target), { recursive: true });
        writeFileSync(target, f.content);
        chmodSync(target, parseInt(f.mode, 8));
        manifest.push([f.path, f.owner, f.group, f.mode, sha256(f.content)].join("\t"));
    }
    for (const f of rendered.secretFiles) manifest.push([f.path, f.owner, f.group, f.mode, "(secret: written at deploy, never rendered)"].join("\t"));
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, "MANIFEST.tsv"), `${manifest.join("\n")}\n`);
}

function arg(name: string): string | undefined {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
}

function main(): void {
    const stack = arg("stack");
    const out = arg("out");
    const only = arg("host");
    if (!stack || !out) {
        console.error("usage: npm run render -- --stack <name> [--host <name>] --out <dir>");
        process.exit(2);
    }
    let config: StackConfig;
    try {
        config = loadStackFromFiles(path.resolve(__dirname, ".."), stack);
    } catch (e) {
        console.error(e instanceof ConfigValidationError || e instanceof Error ? e.message : e);
        process.exit(1);
    }
    const hosts = renderStack(config).filter((h) => !only || h.host === only);
    if (only && hosts.length === 0) {
        console.error(`no host "${only}" in stack ${stack} (hosts: ${config.hosts.map((h) => h.name).join(", ")})`);
        process.exit(2);
    }
    for (const h of hosts) {
        writeTree(path.resolve(out), h);
        console.log(`${h.host}: ${h.files.length} files, ${h.secretFiles.length} secret files -> ${path.join(path.resolve(out), h.host)}`);
    }
}

if (require.main === module) main();
