/**
 * Raw stack config from the two places it can come from: the Pulumi runtime
 * (during `pulumi up` and mock tests) or the stack YAML files (render and
 * drift tools, which run without Pulumi). Secret values are replaced by a
 * placeholder here; they are only ever read as Pulumi secrets.
 */
import { readFileSync, existsSync } from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { CONFIG_KEYS } from "./schema";
import { NAMESPACE, SECRET_PLACEHOLDER } from "./load";

const isSecretKey = (key: string) => {
    const spec = (CONFIG_KEYS as Record<string, { secret?: boolean }>)[key];
    return spec?.secret === true;
};

/**
 * Whether the engine marked a key secret (`pulumi config set --secret`). The SDK
 * keeps its reader internal, so it is looked up defensively.
 */
function runtimeIsSecret(fullKey: string): boolean {
    const isConfigSecret = (pulumi.runtime as unknown as { isConfigSecret?: (k: string) => boolean }).isConfigSecret;
    if (typeof isConfigSecret !== "function") throw new Error("@pulumi/pulumi no longer provides runtime.isConfigSecret; update config/raw.ts");
    return isConfigSecret(fullKey);
}

/**
 * From `pulumi.runtime.allConfig()`: values are strings, structured ones
 * JSON-encoded, secrets decrypted. Every secret (known key or not, e.g. a typo
 * set with --secret) becomes a placeholder, so no error message can show it.
 */
export function rawFromRuntime(all: Record<string, string>, isSecret: (fullKey: string) => boolean = runtimeIsSecret): Record<string, unknown> {
    const raw: Record<string, unknown> = {};
    for (const [fullKey, value] of Object.entries(all)) {
        const [ns, key] = fullKey.split(":", 2);
        if (ns !== NAMESPACE || key === undefined) continue;
        if (isSecretKey(key) || isSecret(fullKey)) raw[key] = value === "" ? "" : SECRET_PLACEHOLDER;
        else raw[key] = /^\s*[[{]/.test(value) ? JSON.parse(value) : value;
    }
    return raw;
}

export interface StackFiles {
    /** Raw hx-backup values: project defaults overlaid by the stack file. */
    readonly raw: Record<string, unknown>;
    /** Other namespaces' values (e.g. aws:region). */
    readonly other: Record<string, unknown>;
}

/** From `Pulumi.yaml` (project defaults) and `Pulumi.<stack>.yaml`. */
export function rawFromFiles(projectDir: string, stack: string): StackFiles {
    const stackFile = path.join(projectDir, `Pulumi.${stack}.yaml`);
    if (!existsSync(stackFile)) throw new Error(`no stack file ${stackFile}; known stacks are the Pulumi.<stack>.yaml files in ${projectDir}`);
    const stackConfig = (parse(readFileSync(stackFile, "utf8"))?.config ?? {}) as Record<string, unknown>;
    const raw: Record<string, unknown> = {};
    const other: Record<string, unknown> = {};
    for (const [fullKey, value] of Object.entries(stackConfig)) {
        const [ns, key] = fullKey.includes(":") ? fullKey.split(":", 2) : [NAMESPACE, fullKey];
        if (ns !== NAMESPACE) {
            other[fullKey] = value;
            continue;
        }
        const secure = typeof value === "object" && value !== null && "secure" in value;
        if (isSecretKey(key) && !secure && value !== "" && value !== undefined && value !== null) {
            throw new Error(`${stackFile}: ${NAMESPACE}:${key} is stored in plaintext; remove it and run: pulumi config set --secret ${key} --stack ${stack}`);
        }
        raw[key] = isSecretKey(key) || secure ? (value === "" ? "" : SECRET_PLACEHOLDER) : value;
    }
    return { raw, other };
}
