/**
 * Runs the real Pulumi program (index.ts) under pulumi.runtime.setMocks and
 * records every resource it registers, with its raw inputs (secrets stay
 * wrapped, as the engine would see them).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { vi } from "vitest";
import { keyFromSecret } from "../../components/keys";

export const ROOT = path.resolve(__dirname, "..", "..");
/** Pulumi's marker for a secret value on the wire. */
export const SECRET_SIG = "4dabf18193072939515e22adb298388d";

export interface RecordedResource {
    readonly type: string;
    readonly name: string;
    readonly inputs: Record<string, unknown>;
}

export interface Evaluation {
    readonly resources: RecordedResource[];
    readonly outputs: Record<string, unknown>;
    /** Each key's hex, by its random resource's name (deterministic fakes). */
    readonly randomHex: Record<string, string>;
    /** RandomPassword results handed out by the mock, by resource name. */
    readonly randomSecrets: Record<string, string>;
}

/** The stack file's config as the CLI would pass it: every value a string, structured ones JSON. */
export function stackConfig(stack: string): Record<string, string> {
    const doc = parse(readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
    return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

export const TEST_SECRETS = {
    "hx-backup:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTKEY-c2VjcmV0LXNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\n",
    "hx-backup:s3AccessKeyId": "AKIATESTACCESSKEY01",
    "hx-backup:s3SecretAccessKey": "test/secret+access=key-0123456789",
    "hx-backup:redisPassword": "redis-test-password-x9",
    "hx-backup:postgresqlPassword": "pg:test\\password",
    "hx-backup:grafanaApiToken": "glsa_testtoken_0123456789abcdef",
    "hx-backup:notifySmtpAuthPassword": "mock-smtp-password-9f8e7d6c",
};
export const IAM_SECRET = "mock-iam-secret-access-key-ABCDEF0123456789";

export interface EvaluateOptions {
    /** The engine's answer to each registration comes this much later (default 0: at once). */
    readonly answerDelayMs?: number;
    /** Sees each registration as it reaches the engine and as it is answered, in order. */
    readonly onEvent?: (event: "registered" | "answered", name: string) => void;
}

/**
 * Evaluates the program for `stack` with `config` (full keys such as
 * "hx-backup:retentionDaily") and `secretKeys` marked secret.
 */
export async function evaluate(stack: string, config: Record<string, string>, secretKeys: string[] = [], options: EvaluateOptions = {}): Promise<Evaluation> {
    vi.resetModules();
    const pulumi = await import("@pulumi/pulumi");
    const resources: RecordedResource[] = [];
    const randomHex: Record<string, string> = {};
    const randomSecrets: Record<string, string> = {};
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                options.onEvent?.("registered", args.name);
                const result = answer(args);
                if (!options.answerDelayMs) {
                    options.onEvent?.("answered", args.name);
                    return result;
                }
                return new Promise((resolve) =>
                    setTimeout(() => {
                        options.onEvent?.("answered", args.name);
                        resolve(result);
                    }, options.answerDelayMs),
                );
            },
            call(args) {
                return args.inputs;
            },
        },
        "hx-backup",
        stack,
        false,
    );
    function answer(args: import("@pulumi/pulumi").runtime.MockResourceArgs): import("@pulumi/pulumi").runtime.MockResourceResult {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs });
        const state: Record<string, unknown> = { ...args.inputs };
        switch (args.type) {
            case "random:index/randomBytes:RandomBytes": {
                const hex = createHash("sha512").update(`random:${args.name}`).digest("hex");
                randomHex[args.name] = hex;
                state.hex = hex;
                state.base64 = Buffer.from(hex, "hex").toString("base64");
                // Upstream's ID is the bytes' base64: the plain-text key the state must no longer hold.
                return { id: state.base64 as string, state };
            }
            case "random:index/randomPassword:RandomPassword": {
                const result = mockPassword(args.name, Number(args.inputs.length));
                randomSecrets[args.name] = result;
                randomHex[args.name] = keyFromSecret(result);
                state.result = result;
                state.bcryptHash = `$2a$10$${createHash("sha256").update(result).digest("base64").slice(0, 53)}`;
                return { id: "none", state };
            }
            case "aws:s3/bucket:Bucket":
                state.arn = `arn:aws:s3:::${args.inputs.bucket}`;
                state.region = args.inputs.region ?? "eu-central-1";
                break;
            case "aws:kms/key:Key":
                state.arn = `arn:aws:kms:eu-central-1:123456789012:key/${args.name}`;
                state.keyId = args.name;
                break;
            case "aws:iam/user:User":
                state.arn = `arn:aws:iam::123456789012:user/${args.inputs.name}`;
                break;
            case "aws:iam/accessKey:AccessKey":
                state.secret = IAM_SECRET;
                return { id: "AKIAMOCKWRITER000001", state };
            case "command:remote:Command":
                state.stdout = "";
                state.stderr = "";
                break;
        }
        return { id: `${args.name}-id`, state };
    }
    // Under mocks there are no hosts to read (hostReads): a test that wants reads sets it.
    pulumi.runtime.setAllConfig({ "hx-backup:hostReads": "false", ...config }, secretKeys);
    let program: Record<string, unknown>;
    try {
        program = (await import("../../index")) as Record<string, unknown>;
    } catch (err) {
        // Let callers check that nothing was registered before the failure.
        throw Object.assign(err as Error, { resources });
    }
    const outputs: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(program)) outputs[key] = await resolveDeep(pulumi, value);
    // Settle every pending registration before returning.
    await new Promise((r) => setTimeout(r, 50));
    return { resources, outputs, randomHex, randomSecrets };
}

/** A deterministic stand-in for RandomPassword's result: `length` characters of [A-Za-z0-9]. */
function mockPassword(name: string, length: number): string {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let out = "";
    for (let block = 0; out.length < length; block++) {
        for (const byte of createHash("sha512").update(`random:${name}:${block}`).digest()) out += alphabet[byte % alphabet.length];
    }
    return out.slice(0, length);
}

/** Resolves Outputs nested in plain objects and arrays. */
async function resolveDeep(pulumi: typeof import("@pulumi/pulumi"), value: unknown): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) {
        const inner = await new Promise((r) => (value as import("@pulumi/pulumi").Output<unknown>).apply((v) => r(v)));
        return resolveDeep(pulumi, inner);
    }
    if (Array.isArray(value)) return Promise.all(value.map((v) => resolveDeep(pulumi, v)));
    if (value && typeof value === "object") {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) out[k] = await resolveDeep(pulumi, v);
        return out;
    }
    return value;
}

export function isSecretWrapped(value: unknown): value is { value: unknown } {
    return !!value && typeof value === "object" && (value as Record<string, unknown>)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270";
}

/** The inputs with every secret-wrapped subtree replaced by "[secret]": what plaintext state would hold. */
export function plaintextView(value: unknown): unknown {
    if (isSecretWrapped(value)) return "[secret]";
    if (Array.isArray(value)) return value.map(plaintextView);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plaintextView(v)]));
    return value;
}

/** Unwraps secrets, for reading values. */
export function reveal(value: unknown): unknown {
    if (isSecretWrapped(value)) return reveal(value.value);
    if (Array.isArray(value)) return value.map(reveal);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reveal(v)]));
    return value;
}

export function commands(e: Evaluation): RecordedResource[] {
    return e.resources.filter((r) => r.type === "command:remote:Command");
}
