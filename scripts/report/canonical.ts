/**
 * The manifest MAC, computed as the host library computes it
 * (lib/manifest.sh hx_manifest_sign, lib/verify.sh hx_verify_manifest_mac):
 * HMAC-SHA256, keyed with the MAC half of the key, over the output of
 * `jq --compact-output --sort-keys 'del(.mac)'`, trailing newline included.
 *
 * The hosts run jq 1.6, so the canonical form here is jq 1.6's printer byte
 * for byte: keys sorted by their UTF-8 bytes (not JavaScript's UTF-16 order),
 * numbers as doubles in jq's dtoa format, jq's string escapes.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** jq clamps infinities (a too-large literal) to the largest double. */
const DBL_MAX = 1.7976931348623157e308;

/** jq 1.6's jvp_dtoa_fmt: shortest round-trip digits, exponent form outside [1e-4, 1e(digits+15)). */
export function jqNumber(value: number): string {
    if (Number.isNaN(value)) return "null";
    const x = Math.max(-DBL_MAX, Math.min(DBL_MAX, value));
    if (x === 0) return Object.is(x, -0) ? "-0" : "0";
    const sign = x < 0 ? "-" : "";
    // toExponential() without digits gives the shortest digits that round-trip, as dtoa mode 0 does.
    const [mantissa, exponent] = Math.abs(x).toExponential().split("e");
    const digits = mantissa.replace(".", "");
    const decpt = Number(exponent) + 1;
    if (decpt <= -4 || decpt > digits.length + 15) {
        const e = decpt - 1;
        const rest = digits.slice(1);
        return `${sign}${digits[0]}${rest ? `.${rest}` : ""}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
    }
    if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`;
    if (decpt >= digits.length) return `${sign}${digits}${"0".repeat(decpt - digits.length)}`;
    return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}

const NAMED_ESCAPES: Record<string, string> = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** jq's string printer: named escapes, \u00xx for other control characters and DEL, everything else as UTF-8. */
export function jqString(value: string): string {
    // eslint-disable-next-line no-control-regex
    return `"${value.replace(/["\\\u0000-\u001f\u007f]/g, (c) => NAMED_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

const utf8Order = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

/** `jq --compact-output --sort-keys` of a parsed value (without the newline jq prints after it). */
export function jqCanonical(value: Json): string {
    if (value === null) return "null";
    if (typeof value === "boolean") return value ? "true" : "false";
    if (typeof value === "number") return jqNumber(value);
    if (typeof value === "string") return jqString(value);
    if (Array.isArray(value)) return `[${value.map(jqCanonical).join(",")}]`;
    const keys = Object.keys(value).sort(utf8Order);
    return `{${keys.map((k) => `${jqString(k)}:${jqCanonical(value[k])}`).join(",")}}`;
}

/** jq 1.6 refuses a lone surrogate escape; a manifest holding one is unreadable on the hosts too. */
export function hasLoneSurrogate(value: Json): boolean {
    if (typeof value === "string") return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value);
    if (Array.isArray(value)) return value.some(hasLoneSurrogate);
    if (value && typeof value === "object") return Object.entries(value).some(([k, v]) => hasLoneSurrogate(k) || hasLoneSurrogate(v));
    return false;
}

/** The signed bytes: the manifest without its `mac`, canonical, newline-terminated (jq's output line). */
export function manifestSignedText(manifest: { [key: string]: Json }): string {
    const { mac: _mac, ...body } = manifest;
    return `${jqCanonical(body)}\n`;
}

/** HMAC-SHA256 of the signed bytes with the key's MAC half (hex), as hex. */
export function manifestMac(manifest: { [key: string]: Json }, macKeyHex: string): string {
    return createHmac("sha256", Buffer.from(macKeyHex, "hex")).update(manifestSignedText(manifest), "utf8").digest("hex");
}

export function macMatches(manifest: { [key: string]: Json }, macKeyHex: string, expectedHex: string): boolean {
    const got = Buffer.from(manifestMac(manifest, macKeyHex), "hex");
    const want = Buffer.from(expectedHex, "hex");
    return got.length === want.length && timingSafeEqual(got, want);
}

/** A key file's line: 128 hex characters, the encryption half then the MAC half (lib/crypto.sh hx_key_load). */
export function macHalfOfKeyFile(text: string): string | undefined {
    const line = (text.split("\n", 1)[0] ?? "").replace(/\r$/, "");
    return /^[0-9a-fA-F]{128}$/.test(line) ? line.slice(64).toLowerCase() : undefined;
}
