/**
 * Helpers shared by the unit tests in this folder: a minimal valid raw config,
 * config-error assertions, the stack files, running real tools, and the
 * "missing tool" rule (fail under CI=true, skip with a message otherwise).
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { expect } from "vitest";
import { ConfigValidationError, loadStackConfig, type ConfigProblem, type LoadOptions } from "../../config/load";
import type { StackConfig } from "../../config/types";
import { filesDocument, FILES_DOCUMENT_HEADER, type PlannedFile } from "../../render/step";
import { loadStackFromFiles } from "../../scripts/render";
import { policyFromStack } from "../../scripts/report/policy";
import type { ReportPolicy } from "../../scripts/report/model";

export const PROJECT_DIR = path.resolve(__dirname, "..", "..");
export const STACKS = ["production", "sandbox"] as const;

export const isCI = process.env.CI === "true";
export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** True when `tool` is on PATH. */
export function hasTool(tool: string): boolean {
    return spawnSync("sh", ["-c", 'command -v "$1" >/dev/null 2>&1', "sh", tool]).status === 0;
}

/**
 * Whether tests that need `tools` should be skipped. A missing tool fails the
 * run under CI=true (the tests then run and hit `requireTools`); elsewhere the
 * tests are skipped with a message.
 */
export function skipWithout(...tools: string[]): boolean {
    const missing = tools.filter((t) => !hasTool(t));
    if (missing.length === 0 || isCI) return false;
    console.warn(`[hx-backup unit tests] skipping tests that need ${missing.join(", ")}: not installed (they fail instead when CI=true)`);
    return true;
}

/** Called first in a test that needs real tools: under CI=true a missing tool is a failure. */
export function requireTools(...tools: string[]): void {
    const missing = tools.filter((t) => !hasTool(t));
    if (missing.length) throw new Error(`required tool(s) missing: ${missing.join(", ")} (CI=${process.env.CI ?? ""})`);
}

export function run(cmd: string, args: readonly string[], opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
    const r = spawnSync(cmd, args, { encoding: "utf8", input: opts.input, cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024 });
    if (r.error) throw r.error;
    return r;
}

export function tempDir(prefix = "hx-unit-"): string {
    return mkdtempSync(path.join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
}

/** The smallest raw config that loads: one configuration host syncing to an AWS bucket. */
export function baseRaw(): Record<string, unknown> {
    return {
        bucketName: "hx-unit-bucket",
        s3Region: "eu-central-1",
        hosts: [{ name: "h1", address: "10.0.0.1" }],
    };
}

export function load(raw: Record<string, unknown>, options: LoadOptions = {}): StackConfig {
    return loadStackConfig("unit", raw, options);
}

/** Loads `raw` (over baseRaw) and returns the validation error it must throw. */
export function configError(overrides: Record<string, unknown>, options: LoadOptions = {}): ConfigValidationError {
    try {
        load({ ...baseRaw(), ...overrides }, options);
    } catch (e) {
        if (e instanceof ConfigValidationError) return e;
        throw e;
    }
    throw new Error(`expected a ConfigValidationError for ${JSON.stringify(overrides)}`);
}

/**
 * Asserts one problem at `path` with exactly `value`, an expected form matching
 * `expected`, and the matching line in the error message
 * (`hx-backup:<path>: got <value>; expected <form>`).
 */
export function expectProblem(err: ConfigValidationError, path: string, value: unknown, expected: RegExp): ConfigProblem {
    const atPath = err.problems.filter((p) => p.path === path);
    expect(atPath, `problems at ${path} in:\n${err.message}`).not.toHaveLength(0);
    const hit = atPath.find((p) => expected.test(p.expected));
    expect(hit, `a problem at ${path} expecting ${expected} in:\n${err.message}`).toBeDefined();
    expect(hit!.value).toEqual(value);
    const text = JSON.stringify(value);
    const shown = value === undefined ? "nothing" : text.length > 120 ? `${text.slice(0, 117)}...` : text;
    const line = `  - hx-backup:${path}: got ${shown}; expected ${hit!.expected}`;
    expect(err.message.split("\n"), `message line for ${path} in:\n${err.message}`).toContain(line);
    return hit!;
}

const stackCache = new Map<string, StackConfig>();

/** A stack file loaded the way the render command loads it (secrets assumed set). */
export function stack(name: (typeof STACKS)[number]): StackConfig {
    let c = stackCache.get(name);
    if (!c) {
        c = loadStackFromFiles(PROJECT_DIR, name);
        stackCache.set(name, c);
    }
    return c;
}

/** Parses a systemd unit into section -> key -> values (keys may repeat). */
export function parseUnit(text: string): Map<string, Map<string, string[]>> {
    const sections = new Map<string, Map<string, string[]>>();
    let current: Map<string, string[]> | undefined;
    for (const raw of text.split("\n")) {
        const line = raw.trim();
        if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
        const sec = /^\[(.+)\]$/.exec(line);
        if (sec) {
            current = sections.get(sec[1]) ?? new Map();
            sections.set(sec[1], current);
            continue;
        }
        const eq = line.indexOf("=");
        if (!current || eq < 0) throw new Error(`unparsable unit line: ${raw}`);
        const key = line.slice(0, eq).trim();
        current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
    }
    return sections;
}

/** The single value of `section.key`, failing when it is missing or repeated. */
export function unitValue(unit: Map<string, Map<string, string[]>>, section: string, key: string): string {
    const values = unit.get(section)?.get(key);
    expect(values, `[${section}] ${key}`).toBeDefined();
    expect(values, `[${section}] ${key} set once`).toHaveLength(1);
    return values![0];
}

/** The rendered rules with BackupFailed's expression cut short, so promtool must refuse them. */
export function breakRules(rules: string): string {
    const broken = rules.replace("expr: backup_last_run_status == 0", "expr: backup_last_run_status == (");
    if (broken === rules) throw new Error("breakRules: BackupFailed's expression changed; update the test");
    return broken;
}

/** The report's policy for a unit stack (bucket hx-unit-bucket, prefix hx, UTC, key version 2) with these hosts. */
export function reportPolicy(hosts: readonly Record<string, unknown>[], raw: Record<string, unknown> = {}): ReportPolicy {
    return policyFromStack(
        load({ bucketName: "hx-unit-bucket", s3Region: "eu-central-1", bucketPrefix: "hx", retentionTimeZone: "UTC", encryptionKeyVersion: 2, hosts, ...raw }),
    );
}

/**
 * A file step's stdin (render/step.ts filesDocument) read back into its files. A staged file's bytes are not in
 * the stdin: it comes back with `staged` and its `sha256`, and no `content`.
 */
export function parseFilesDocument(text: string): PlannedFile[] {
    const [first, ...lines] = text.split("\n");
    expect(first).toBe(FILES_DOCUMENT_HEADER);
    expect(lines.pop()).toBe("");
    const files: { file: Omit<PlannedFile, "content">; sha256: string; lines: string[]; finalNewline: boolean }[] = [];
    for (const line of lines) {
        if (line.startsWith("@file\t")) {
            const [, p, owner, group, mode, sha, newline, checked, staged, ...rest] = line.split("\t");
            expect(rest, line).toEqual([]);
            if (staged !== undefined) expect(staged, line).toMatch(/^staged:./);
            files.push({
                file: { path: p!, owner: owner!, group: group!, mode: mode!, ...(checked === "unchecked" ? { unchecked: true } : {}), ...(staged !== undefined ? { staged: staged.slice("staged:".length) } : {}) },
                sha256: sha!,
                lines: [],
                finalNewline: newline === "1",
            });
        } else {
            expect(line.startsWith("|"), line).toBe(true);
            expect(files.at(-1)!.file.staged, `a staged file has no lines: ${line}`).toBeUndefined();
            files.at(-1)!.lines.push(line.slice(1));
        }
    }
    return files.map(({ file, sha256, lines: body, finalNewline }) =>
        file.staged !== undefined ? ({ ...file, sha256 } as unknown as PlannedFile) : { ...file, content: body.length ? `${body.join("\n")}${finalNewline ? "\n" : ""}` : "" },
    );
}

/** A file step's stdin with one file's content replaced, as a deploy of that content would send. */
export function stdinWith(step: { readonly stdin?: string }, filePath: string, content: string): string {
    const files = parseFilesDocument(step.stdin ?? "");
    if (!files.some((f) => f.path === filePath)) throw new Error(`no file ${filePath} in the step's stdin`);
    return filesDocument(files.map((f) => (f.path === filePath ? { ...f, content } : f)));
}

/** The content a file step's stdin carries for one path (not for a staged file, whose bytes it does not carry). */
export function stdinFile(step: { readonly stdin?: string }, filePath: string): string {
    const file = parseFilesDocument(step.stdin ?? "").find((f) => f.path === filePath);
    if (!file) throw new Error(`no file ${filePath} in the step's stdin`);
    if (file.staged !== undefined) throw new Error(`${filePath} is staged: the step's stdin carries its sha256, not its content`);
    return file.content;
}
