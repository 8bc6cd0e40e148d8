/**
 * Deploy benchmarks under mocks: program evaluation time for 10 vs 200 hosts,
 * inputs that change between two unchanged evaluations, and the steps a
 * one-script change re-runs. Each evaluation runs in its own process. The real
 * engine's figures are bench/fleetDeploy.ts's.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parse } from "yaml";

const ROOT = path.resolve(__dirname, "..");

interface Evaluation {
    seconds: number;
    commands: { name: string; create: string; delete?: string; stdin: string }[];
}

/** Production's config with `hosts` replaced by n hosts cycling through production's host shapes. */
export function configWithHosts(n: number): { stack: string; config: Record<string, string>; secretKeys: string[] } {
    const doc = parse(readFileSync(path.join(ROOT, "Pulumi.production.yaml"), "utf8")) as { config: Record<string, unknown> };
    const shapes = doc.config["hx-backup:hosts"] as Record<string, unknown>[];
    const hosts = Array.from({ length: n }, (_, i) => ({ ...shapes[i % shapes.length], name: `host-${String(i + 1).padStart(3, "0")}`, address: `10.30.${Math.floor(i / 250)}.${(i % 250) + 1}` }));
    const config: Record<string, string> = {};
    for (const [k, v] of Object.entries(doc.config)) config[k] = typeof v === "string" ? v : JSON.stringify(v);
    config["hx-backup:hosts"] = JSON.stringify(hosts);
    config["hx-backup:monitoringHost"] = "host-004";
    config["hx-backup:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nbench\n-----END OPENSSH PRIVATE KEY-----\n";
    return { stack: "production", config, secretKeys: ["hx-backup:sshPrivateKey"] };
}

export function evaluate(input: ReturnType<typeof configWithHosts>, env: NodeJS.ProcessEnv = {}): Evaluation {
    const dir = mkdtempSync(path.join(tmpdir(), "hx-bench-eval-"));
    try {
        const file = path.join(dir, "config.json");
        writeFileSync(file, JSON.stringify(input));
        const r = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), [path.join(ROOT, "bench/evaluate.ts"), file], { cwd: ROOT, env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 1 << 30 });
        if (r.status !== 0) throw new Error(`evaluation failed: ${r.stderr}`);
        return JSON.parse(r.stdout) as Evaluation;
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

const key = (c: Evaluation["commands"][number]) => JSON.stringify([c.create, c.delete, c.stdin]);

/** Names of commands whose inputs differ between two evaluations (added or removed ones included). */
export function changedCommands(a: Evaluation, b: Evaluation): string[] {
    const ma = new Map(a.commands.map((c) => [c.name, key(c)]));
    const mb = new Map(b.commands.map((c) => [c.name, key(c)]));
    return [...new Set([...ma.keys(), ...mb.keys()])].filter((n) => ma.get(n) !== mb.get(n)).sort();
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

export interface DeployBench {
    evalSeconds10: number[];
    evalSeconds200: number[];
    evalRatio: number;
    commands200: number;
    unchangedChanges: number;
    scriptChange: { script: string; changed: string[]; expected: string[] };
}

export function benchDeploy(rounds = 3, log: (s: string) => void = () => {}): DeployBench {
    const small = configWithHosts(10);
    const large = configWithHosts(200);
    const s10: number[] = [];
    const s200: number[] = [];
    const ratios: number[] = [];
    let last200: Evaluation | undefined;
    for (let i = 0; i < rounds; i++) {
        const a = evaluate(small);
        const b = evaluate(large);
        s10.push(a.seconds);
        s200.push(b.seconds);
        ratios.push(b.seconds / a.seconds);
        last200 = b;
        log(`  evaluation round ${i + 1}: 10 hosts ${a.seconds.toFixed(2)} s, 200 hosts ${b.seconds.toFixed(2)} s`);
    }
    const first = evaluate(small);
    const second = evaluate(small);
    const unchangedChanges = changedCommands(first, second).length;

    const script = "redis-backup.sh";
    const templates = mkdtempSync(path.join(tmpdir(), "hx-bench-templates-"));
    try {
        cpSync(path.join(ROOT, "templates"), templates, { recursive: true });
        appendFileSync(path.join(templates, "scripts", script), "# benchmark edit\n");
        const edited = evaluate(small, { HX_TEMPLATES_DIR: templates });
        const changed = changedCommands(first, edited);
        // Scripts travel in each host's files step.
        const expected = first.commands.filter((c) => c.name.endsWith("-files")).map((c) => c.name).sort();
        return { evalSeconds10: s10, evalSeconds200: s200, evalRatio: median(ratios), commands200: last200!.commands.length, unchangedChanges, scriptChange: { script, changed, expected } };
    } finally {
        rmSync(templates, { recursive: true, force: true });
    }
}
