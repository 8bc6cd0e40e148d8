/**
 * The contract between render/slug.ts and lib/core.sh hx_slug: the report
 * finds a configured database in the bucket under the name the scripts store
 * it under, so the two must give the same bytes for every name. The bash
 * side runs as the jobs run it: the library sourced whole, from a UTF-8
 * locale (the library itself switches to LC_ALL=C).
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { databaseName } from "../../config/names";
import { slug } from "../../render/slug";
import { PROJECT_DIR, requireTools, run, skipWithout } from "./helpers";

const LIBRARY = path.join(PROJECT_DIR, "templates", "scripts", "hx-backup-lib.sh");

/** hx_slug of each name, one bash run for all: names in and slugs out NUL-separated, so any byte but NUL survives. */
function bashSlugs(inputs: readonly string[]): string[] {
    const script = `set -Eeuo pipefail
source "$1"
while IFS= read -r -d '' name; do
    hx_slug "$name"
    printf '\\0'
done`;
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" };
    const r = run("bash", ["-c", script, "slug-contract", LIBRARY], { input: inputs.map((n) => `${n}\0`).join(""), env });
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout.split("\0");
    expect(out.pop()).toBe("");
    return out;
}

/** A fixed pseudo-random sequence (mulberry32), so every run checks the same names. */
function seeded(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const HOSTILE = [
    // Plain: stored as they are.
    "app", "sandbox_app", "hx_analytics", "A1.b-c", "a".repeat(63),
    // The name, and what the config accepts but the slug does not keep.
    "Odd.Db-$HOME$1_x", "_globals", "_x", "db$", "$", "$$$",
    // Not plain for the slug, whatever the config says.
    "", ".", "..", ".hidden", "-dash", "a".repeat(64), "b".repeat(200), `${"c".repeat(39)}$${"d".repeat(30)}`,
    "with space", " lead", "trail ", "it's", 'say "hi"', "back\\slash", "tab\there", "new\nline", "trailing\n", "\r\n",
    "$(rm -rf /)", "`id`", "${PATH}", "*", "?", "[a-z]", "a/b", "a=b", "%s%n", "-- -x", "\u0001\u007f",
    // Non-ASCII: the library counts and replaces bytes, not characters.
    "é", "café", "日本語", "😀", "e\u0301", "\ufb01", "\u00a0", "Ä".repeat(30), `${"z".repeat(39)}é`, "\u2028", "\uffff",
];

/** `count` names of 1 to `maxLength` characters from `alphabet`, the same ones every run. */
function generated(seed: number, count: number, maxLength: number, alphabet: readonly string[]): string[] {
    const random = seeded(seed);
    const pick = () => alphabet[Math.floor(random() * alphabet.length)];
    return Array.from({ length: count }, () => Array.from({ length: 1 + Math.floor(random() * maxLength) }, pick).join(""));
}

/** What postgresql.databases accepts (config/names.ts databaseName), weighted towards `$` and a leading `_`, which the slug does not keep. */
const CONFIG_NAMES = generated(20260308, 300, 63, [..."AZaz09bcXY5.-", ..."$$$___"]).filter((n) => databaseName(n) === null);
/** Any name a host's server may hold (backups without postgresql.databases dump every database). */
const SERVER_NAMES = generated(20260309, 300, 90, [..."AZaz09_.$-bcXY5", " ", "'", '"', "\\", "\t", "/", "é", "ß", "😀", "日", "\u0301"]);

describe("safe storage names: render/slug.ts and lib/core.sh hx_slug", () => {
    it("give the same name, byte for byte, for hostile names and for names the config accepts", () => {
        if (skipWithout("bash", "openssl")) return;
        requireTools("bash", "openssl");
        const inputs = [...HOSTILE, ...CONFIG_NAMES, ...SERVER_NAMES];
        expect(CONFIG_NAMES.length).toBeGreaterThan(200);
        expect(CONFIG_NAMES.filter((n) => slug(n) !== n).length).toBeGreaterThan(100);
        const fromBash = bashSlugs(inputs);
        expect(fromBash).toHaveLength(inputs.length);
        const differing = inputs.flatMap((name, i) => (slug(name) === fromBash[i] ? [] : [{ name, bash: fromBash[i], typescript: slug(name) }]));
        expect(differing).toEqual([]);
    });

    it("keeps a plain name, and stores any other under a safe one that names its hash", () => {
        expect(slug("Odd.Db-$HOME$1_x")).toBe("Odd.Db-_HOME_1_x-d99b6abf");
        expect(slug("sandbox_app")).toBe("sandbox_app");
        expect(slug("_globals")).toMatch(/^_globals-[0-9a-f]{8}$/);
        expect(slug("")).toBe("x-e3b0c442");
        expect(slug("é")).toMatch(/^__-[0-9a-f]{8}$/);
        for (const name of [...HOSTILE, ...CONFIG_NAMES, ...SERVER_NAMES]) expect(slug(name)).toMatch(/^[A-Za-z0-9._-]{1,63}$/);
    });
});
