/**
 * The keyring keeps every key out of resource IDs: a key comes from a
 * RandomPassword (ID "none", result secret), never from a RandomBytes, whose
 * ID upstream is the key's base64 in plain text. A stack whose keys 1..N came
 * from RandomBytes keeps them, under their old resources, for restores, and
 * encrypts with a newer one.
 */
import { describe, expect, it } from "vitest";
import { KEY_SECRET_LENGTH, keyFromSecret } from "../../components/keys";
import { commands, evaluate, reveal, stackConfig, TEST_SECRETS, type Evaluation } from "./mockProgram";

const SECRETS = ["hx-backup:sshPrivateKey"];
const production = (extra: Record<string, string> = {}) => ({ ...stackConfig("production"), "hx-backup:sshPrivateKey": TEST_SECRETS["hx-backup:sshPrivateKey"], ...extra });
const randoms = (e: Evaluation) => e.resources.filter((r) => r.type.startsWith("random:")).map((r) => `${r.type.replace(/^random:index\/\w+:/, "")} ${r.name}`).sort();
/** The hex lines of a host's keyring stdin: one base64 line per key file, in the order the step lists them. */
const keyringHexes = (e: Evaluation, host: string) =>
    (reveal(commands(e).find((c) => c.name === `${host}-keyring`)!.inputs.stdin) as string).split("\n").filter(Boolean).map((l) => Buffer.from(l, "base64").toString().trim());

describe("keyFromSecret", () => {
    const secret = "A".repeat(KEY_SECRET_LENGTH);
    it("derives 64 bytes (128 hex digits) the same way every time, and another secret gives another key", () => {
        expect(keyFromSecret(secret)).toMatch(/^[0-9a-f]{128}$/);
        expect(keyFromSecret(secret)).toBe(keyFromSecret(secret));
        expect(keyFromSecret(`${"A".repeat(KEY_SECRET_LENGTH - 1)}B`)).not.toBe(keyFromSecret(secret));
    });
    it("refuses a secret shorter than the keyring asks for", () => {
        expect(() => keyFromSecret("A".repeat(KEY_SECRET_LENGTH - 1))).toThrow(/must have 96 characters, got 95/);
    });
});

describe("the keyring's random resources", () => {
    it("a new stack gets one RandomPassword per key version and no RandomBytes", async () => {
        const e = await evaluate("production", production({ "hx-backup:encryptionKeyVersion": "2" }), SECRETS);
        expect(randoms(e)).toEqual(["RandomPassword keys-production-v1", "RandomPassword keys-production-v2"]);
        const inputs = e.resources.find((r) => r.name === "keys-production-v2")!.inputs;
        expect(inputs).toMatchObject({ length: KEY_SECRET_LENGTH, special: false });
        // Each key is the HKDF of its own secret, and the hosts get exactly those keys.
        expect(e.randomHex["keys-production-v2"]).toBe(keyFromSecret(e.randomSecrets["keys-production-v2"]));
        expect(keyringHexes(e, "db-1")).toEqual([e.randomHex["keys-production-v1"], e.randomHex["keys-production-v2"], e.randomHex["keys-production-v2"]]);
    });

    it("a stack whose key 1 came from RandomBytes keeps it under its old resource and encrypts with key 2 from a RandomPassword", async () => {
        const e = await evaluate("production", production({ "hx-backup:encryptionExposedKeyVersions": "1", "hx-backup:encryptionKeyVersion": "2" }), SECRETS);
        expect(randoms(e)).toEqual(["RandomBytes keys-production-v1", "RandomPassword keys-production-v2"]);
        // The old resource's name and inputs are what the earlier release registered: the engine keeps it, unchanged.
        expect(e.resources.find((r) => r.type === "random:index/randomBytes:RandomBytes")!.inputs).toEqual({ length: 64 });
        const out = e.outputs as { encryption: { keyIds: string[]; currentKeyId: string; fingerprints: Record<string, string> } };
        expect(out.encryption.keyIds).toEqual(["production-v1", "production-v2"]);
        expect(out.encryption.currentKeyId).toBe("production-v2");
        // The old key stays on every host for restores; the current key file holds the new one.
        expect(keyringHexes(e, "db-1")).toEqual([e.randomHex["keys-production-v1"], e.randomHex["keys-production-v2"], e.randomHex["keys-production-v2"]]);
        expect(e.randomHex["keys-production-v2"]).toBe(keyFromSecret(e.randomSecrets["keys-production-v2"]));
    });

    it("refuses to keep encrypting with an exposed key, naming both settings and the fix, before registering anything", async () => {
        let error: (Error & { resources?: unknown[] }) | undefined;
        try {
            await evaluate("production", production({ "hx-backup:encryptionExposedKeyVersions": "1" }), SECRETS);
        } catch (err) {
            error = err as Error & { resources?: unknown[] };
        }
        expect(error?.name).toBe("ConfigValidationError");
        expect(error?.resources).toEqual([]);
        expect(error?.message).toContain("hx-backup:encryptionKeyVersion: got 1; expected a version above encryptionExposedKeyVersions (1)");
        expect(error?.message).toContain("set encryptionKeyVersion to 2");
    });
});
