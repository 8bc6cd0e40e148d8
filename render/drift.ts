/**
 * Drift detection, as data: what to inspect on a host (every file the stack
 * installs, plus the locations where stray files would be ours), and the
 * comparison of what was found with what the stack would install.
 */
import type { StackConfig } from "../config/types";
import type { PlannedFile, PlannedSecretFile } from "./step";
import { runtimeFiles, watchedLocations } from "./paths";
import { sha256 } from "./remote";

export type DriftKind = "changed" | "missing" | "extra" | "owner" | "mode";

export interface Drift {
    readonly path: string;
    readonly kind: DriftKind;
    readonly expected?: string;
    readonly actual?: string;
}

/** stdin for hx-drift-inspect.sh. */
export function inspectionRequests(config: StackConfig, files: readonly PlannedFile[], secretFiles: readonly PlannedSecretFile[]): string {
    return [
        ...files.map((f) => `F\t${f.path}\thash`),
        ...secretFiles.map((f) => `F\t${f.path}\tnohash`),
        ...watchedLocations(config).map((w) => `W\t${w}`),
    ].map((l) => `${l}\n`).join("");
}

interface Observed {
    owner: string;
    group: string;
    mode: string;
    sha256: string;
}

export function parseInspection(output: string): { files: Map<string, Observed | "MISSING">; watched: Set<string> } {
    const files = new Map<string, Observed | "MISSING">();
    const watched = new Set<string>();
    for (const line of output.split("\n")) {
        if (!line) continue;
        const [kind, p, ...rest] = line.split("\t");
        if (kind === "W") watched.add(p);
        else if (kind === "F" && rest[0] === "MISSING") files.set(p, "MISSING");
        else if (kind === "F" && rest.length === 4) files.set(p, { owner: rest[0], group: rest[1], mode: rest[2], sha256: rest[3] });
        else throw new Error(`unexpected inspection line: ${JSON.stringify(line)}`);
    }
    return { files, watched };
}

/** Every difference between what the stack installs and what the host has. */
export function compareInspection(config: StackConfig, files: readonly PlannedFile[], secretFiles: readonly PlannedSecretFile[], output: string): Drift[] {
    const seen = parseInspection(output);
    const drifts: Drift[] = [];
    const expected = [...files.map((f) => ({ ...f, hash: sha256(f.content) as string | null })), ...secretFiles.map((f) => ({ ...f, hash: null }))];
    for (const f of expected) {
        const o = seen.files.get(f.path);
        if (o === undefined || o === "MISSING") {
            drifts.push({ path: f.path, kind: "missing" });
            continue;
        }
        if (f.hash !== null && o.sha256 !== f.hash) drifts.push({ path: f.path, kind: "changed", expected: f.hash, actual: o.sha256 });
        if (o.owner !== f.owner || o.group !== f.group) drifts.push({ path: f.path, kind: "owner", expected: `${f.owner}:${f.group}`, actual: `${o.owner}:${o.group}` });
        if (parseInt(o.mode, 8) !== parseInt(f.mode, 8)) drifts.push({ path: f.path, kind: "mode", expected: f.mode, actual: o.mode });
    }
    const known = new Set([...expected.map((f) => f.path), ...runtimeFiles(config)]);
    for (const p of [...seen.watched].sort()) if (!known.has(p)) drifts.push({ path: p, kind: "extra" });
    return drifts;
}

export function formatDrift(host: string, drifts: readonly Drift[]): string {
    if (drifts.length === 0) return `${host}: no drift`;
    const lines = drifts.map((d) => `  ${d.kind.padEnd(7)} ${d.path}${d.expected !== undefined ? `  (expected ${d.expected}, found ${d.actual})` : ""}`);
    return [`${host}: ${drifts.length} difference${drifts.length === 1 ? "" : "s"}`, ...lines].join("\n");
}
