/** Shared helpers for the benchmarks: timing, medians, logging, alternation. */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const median = (xs: readonly number[]): number => {
    if (xs.length === 0) return Number.NaN;
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

const T0 = Date.now();
export function log(line: string): void {
    const t = ((Date.now() - T0) / 1000).toFixed(0).padStart(5);
    process.stdout.write(`[bench ${t}s] ${line}\n`);
}

/** Wall-clock seconds of an async action. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
    const t = process.hrtime.bigint();
    const value = await fn();
    return { seconds: Number(process.hrtime.bigint() - t) / 1e9, value };
}

/** Total apparent size of the regular files under a path. */
export function treeBytes(p: string): number {
    let st;
    try {
        st = statSync(p);
    } catch {
        return 0;
    }
    if (st.isFile()) return st.size;
    if (!st.isDirectory()) return 0;
    return readdirSync(p).reduce((s, f) => s + treeBytes(join(p, f)), 0);
}

export const MiB = 1024 * 1024;
export const fmtMiB = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

/** Alternating A/B order per round: A first on even rounds, B first on odd ones. */
export function order<T>(roundIndex: number, items: readonly T[]): T[] {
    const k = roundIndex % items.length;
    return [...items.slice(k), ...items.slice(0, k)];
}
