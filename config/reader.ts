/**
 * Reads raw config values into typed ones, collecting every problem with its
 * key path, the value seen and the expected form, so that all of them are
 * reported together before any resource exists.
 */
import type * as names from "./names";

export const NAMESPACE = "hx-backup";

export interface ConfigProblem {
    readonly path: string;
    readonly value: unknown;
    readonly expected: string;
}

export class ConfigValidationError extends Error {
    constructor(readonly stack: string, readonly problems: readonly ConfigProblem[]) {
        super(
            `Stack "${stack}" has ${problems.length} configuration problem${problems.length === 1 ? "" : "s"}:\n` +
                problems.map((p) => `  - ${NAMESPACE}:${p.path}: got ${show(p.value)}; expected ${p.expected}`).join("\n"),
        );
        this.name = "ConfigValidationError";
    }
}

function show(value: unknown): string {
    if (value === undefined) return "nothing";
    const text = JSON.stringify(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** Placeholder the caller puts where a secret value was: the loader only needs to know it is set. */
export const SECRET_PLACEHOLDER = "[secret]";

function levenshtein(a: string, b: string): number {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++)
        for (let j = 1; j <= b.length; j++)
            d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length][b.length];
}

export function suggest(key: string, known: readonly string[]): string {
    const best = known.map((k) => [k, levenshtein(key.toLowerCase(), k.toLowerCase())] as const).sort((x, y) => x[1] - y[1])[0];
    return best && best[1] <= Math.max(2, Math.floor(key.length / 3)) ? `a known key (did you mean "${best[0]}"?)` : `one of the known keys: ${known.join(", ")}`;
}

/** Reads raw values with one problem list; each getter returns a usable fallback so checking goes on. */
export class Reader {
    readonly problems: ConfigProblem[] = [];

    problem(path: string, value: unknown, expected: string): void {
        this.problems.push({ path, value, expected });
    }

    string(path: string, value: unknown, fallback: string, check?: names.Check, allowEmpty = true): string {
        if (value === undefined || value === null) return fallback;
        if (typeof value !== "string") {
            this.problem(path, value, "a string");
            return fallback;
        }
        if (value === "" && allowEmpty) return value;
        const err = check?.(value);
        if (err) {
            this.problem(path, value, err);
            return fallback;
        }
        return value;
    }

    integer(path: string, value: unknown, fallback: number, min: number, max: number): number {
        if (value === undefined || value === null) return fallback;
        const n = typeof value === "string" && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
        if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
            this.problem(path, value, `a whole number from ${min} to ${max}`);
            return fallback;
        }
        return n;
    }

    boolean(path: string, value: unknown, fallback: boolean): boolean {
        if (value === undefined || value === null) return fallback;
        if (value === true || value === "true") return true;
        if (value === false || value === "false") return false;
        this.problem(path, value, "true or false");
        return fallback;
    }

    oneOf<T extends string>(path: string, value: unknown, fallback: T, allowed: readonly T[]): T {
        if (value === undefined || value === null) return fallback;
        if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
        this.problem(path, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
        return fallback;
    }

    stringList(path: string, value: unknown, fallback: readonly string[], check: names.Check): string[] {
        if (value === undefined || value === null) return [...fallback];
        if (!Array.isArray(value)) {
            this.problem(path, value, "a list of strings");
            return [...fallback];
        }
        const out: string[] = [];
        value.forEach((item, i) => {
            if (typeof item !== "string") return this.problem(`${path}[${i}]`, item, "a string");
            const err = check(item);
            if (err) return this.problem(`${path}[${i}]`, item, err);
            out.push(item);
        });
        return out;
    }

    object(path: string, value: unknown, known: readonly string[]): Record<string, unknown> | undefined {
        if (value === undefined || value === null) return undefined;
        if (typeof value !== "object" || Array.isArray(value)) {
            this.problem(path, value, "an object");
            return undefined;
        }
        const obj = value as Record<string, unknown>;
        for (const k of Object.keys(obj)) if (!known.includes(k)) this.problem(`${path}.${k}`, obj[k], suggest(k, known));
        return obj;
    }
}

