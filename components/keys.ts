import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { createHash } from "node:crypto";

export interface EncryptionKeysArgs {
    /** Prefix of every key id (`<prefix>-v<N>`). Required; the stack name is a good choice. */
    readonly keyIdPrefix: string;
    /** Current key version. Versions 1..N are all generated and kept, so older backups stay restorable. Required; the default is config/schema.ts `encryptionKeyVersion`. */
    readonly version: number;
    /** Refuse to delete keys on `pulumi destroy`. Default: true. */
    readonly protectKeys?: boolean;
}

/** Non-secret identifier of a key: the first 16 hex digits of its SHA-256. */
export function keyFingerprint(hex: string): string {
    return `sha256:${createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex").slice(0, 16)}`;
}

/**
 * The stack's encryption keyring: 64 random bytes per key version (32 for
 * AES-256-CBC, 32 for HMAC-SHA256), secret end to end.
 */
export class EncryptionKeys extends pulumi.ComponentResource {
    /** All key ids, oldest first. */
    public readonly keyIds: readonly string[];
    /** The key new backups are encrypted with. */
    public readonly currentKeyId: string;
    /** Key id -> 128 hex characters. Secret. */
    public readonly keys: pulumi.Output<Record<string, string>>;
    /** Key id -> `sha256:<16 hex>`. Not secret. */
    public readonly fingerprints: pulumi.Output<Record<string, string>>;

    constructor(name: string, args: EncryptionKeysArgs, opts?: pulumi.ComponentResourceOptions) {
        super("hx-backup:keys:EncryptionKeys", name, {}, opts);
        const version = args.version;
        if (!Number.isInteger(version) || version < 1) throw new Error(`EncryptionKeys: version must be a whole number >= 1, got ${version}`);
        this.keyIds = Array.from({ length: version }, (_, i) => `${args.keyIdPrefix}-v${i + 1}`);
        this.currentKeyId = this.keyIds[this.keyIds.length - 1];
        const material = this.keyIds.map(
            (id) => [id, new random.RandomBytes(`${name}-${id}`, { length: 64 }, { parent: this, protect: args.protectKeys ?? true }).hex] as const,
        );
        this.keys = pulumi.secret(pulumi.all(material.map(([, hex]) => hex)).apply((hexes) => Object.fromEntries(hexes.map((h, i) => [material[i][0], h]))));
        this.fingerprints = pulumi.unsecret(this.keys.apply((keys) => Object.fromEntries(Object.entries(keys).map(([id, hex]) => [id, keyFingerprint(hex)]))));
        this.registerOutputs({ keyIds: this.keyIds, currentKeyId: this.currentKeyId, fingerprints: this.fingerprints });
    }
}
