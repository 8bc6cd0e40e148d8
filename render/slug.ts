/**
 * The name a source is stored under, as lib/core.sh hx_slug gives it: its
 * storage folder, its bucket key segment and its metrics label. The scripts
 * derive it on the host (they also name databases the stack does not list),
 * so this mirrors the bash function; tests/unit/slug-contract.test.ts runs
 * both over the same hostile names and requires the same bytes.
 */
import { createHash } from "node:crypto";

/** A name stored as it is: plain ASCII, at most 63 bytes, not starting with `.`, `-` or `_` (the scripts' own targets, like `_globals`, do). */
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const KEPT_BYTE = /[A-Za-z0-9._-]/;
const CLEAN_BYTES = 40;
const HASH_HEX = 8;

/**
 * The name itself when it is plain; otherwise each byte of its UTF-8 form
 * outside [A-Za-z0-9._-] turned into `_` (the library runs with LC_ALL=C, so
 * bytes, not characters), cut to 40, then `-` and the first 8 hex digits of
 * the name's sha256.
 */
export function slug(name: string): string {
    if (PLAIN_NAME.test(name)) return name;
    const bytes = Buffer.from(name, "utf8");
    const clean = [...bytes]
        .map((b) => String.fromCharCode(b))
        .map((c) => (KEPT_BYTE.test(c) ? c : "_"))
        .join("")
        .slice(0, CLEAN_BYTES);
    const hash = createHash("sha256").update(bytes).digest("hex").slice(0, HASH_HEX);
    return `${clean || "x"}-${hash}`;
}
