/**
 * npm run bench [-- --quick] [-- --only pg,format,pitr,redis,storage,deploy,fleet,fleet-sandbox,host-reads]
 *
 * Side-by-side benchmarks on throwaway servers (not part of npm test). Every
 * pair alternates A/B at least 3 times in one run; the median ratio is
 * reported. Prints a table and writes bench/results.json, where a section run
 * with --only replaces that section's results and keeps the others' (each
 * with its date).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isRoot } from "../tests/support/env";
import { PG_BIN } from "../tests/support/postgres";
import { log, MiB, round } from "./common";
import { benchDeploy, type DeployBench } from "./deploy";
import { benchFleetDeploy, benchSandboxDeploy, type FleetDeployBench, type Run, type SandboxDeployBench } from "./fleetDeploy";
import { benchHostReads, type HostReadsBench, type HostReadsRound } from "./hostReads";
import { BIG_DB, benchPgBackup, benchPgMemory, benchPgRestore, profilePgRestore, setupPostgres, teardownPostgres, type PgSetup } from "./postgres";
import { benchFormatThreshold } from "./format";
import { benchPitr } from "./pitr";
import { benchRedis, setupRedis, teardownRedis, type RedisSetup } from "./redis";
import { benchStorage } from "./storage";

const ROOT = path.resolve(__dirname, "..");
const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const onlyArg = argv.find((a) => a.startsWith("--only"));
const SECTIONS = ["pg", "format", "pitr", "redis", "storage", "deploy", "fleet", "fleet-sandbox", "host-reads"];
const only = onlyArg ? (onlyArg.includes("=") ? onlyArg.split("=")[1]! : argv[argv.indexOf(onlyArg) + 1]!).split(",") : SECTIONS;
const ROUNDS = Math.max(3, Number(process.env.HX_BENCH_ROUNDS ?? 5));
/** The format sweep finds a threshold, not a ratio to a goal: fewer rounds per size. */
const FORMAT_ROUNDS = 3;
const FORMAT_SCALES = quick ? [1, 2] : [2, 6, 20];
const PG_SCALE = quick ? 4 : Number(process.env.HX_BENCH_PG_SCALE ?? 50);
const PG_SMALL_SCALE = quick ? 1 : Number(process.env.HX_BENCH_PG_SMALL_SCALE ?? 10);
const REDIS_KEYS = quick ? 100_000 : Number(process.env.HX_BENCH_REDIS_KEYS ?? 1_000_000);

const tool = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return (r.stdout || r.stderr || "").split("\n")[0]!.trim();
};

const RESULTS_FILE = path.join(ROOT, "bench", "results.json");
/** The previous run's results: the sections this run does not measure keep theirs. */
const previous: Record<string, unknown> = onlyArg && existsSync(RESULTS_FILE) ? (JSON.parse(readFileSync(RESULTS_FILE, "utf8")) as Record<string, unknown>) : {};

const results: Record<string, unknown> = {
    ...previous,
    date: new Date().toISOString(),
    machine: {
        cores: os.cpus().length,
        cpu: os.cpus()[0]?.model ?? "",
        memoryGiB: round(os.totalmem() / 1024 ** 3, 1),
        kernel: os.release(),
        tools: {
            postgres: tool(`${PG_BIN}/postgres`, ["--version"]),
            zstd: tool("zstd", ["--version"]),
            openssl: tool("openssl", ["version"]),
            redis: tool("redis-server", ["--version"]),
            node: process.version,
        },
    },
    params: { rounds: ROUNDS, pgScale: PG_SCALE, pgSmallScale: PG_SMALL_SCALE, redisKeys: REDIS_KEYS, quick },
    errors: {} as Record<string, string>,
};
results.errors = {};
const errors = results.errors as Record<string, string>;

interface Row {
    measure: string;
    a: string;
    b: string;
    value: string;
    goal: string;
    met: boolean | null;
}
/** The table's rows by section, with the date each section last ran. */
const sectionRows = ((results.sections as Record<string, { date: string; rows: Row[] }> | undefined) ?? {}) as Record<string, { date: string; rows: Row[] }>;
results.sections = sectionRows;
let rows: Row[] = [];

async function section(name: string, fn: () => Promise<void>): Promise<void> {
    if (!only.includes(name)) return;
    const t = Date.now();
    log(`== ${name}`);
    rows = [];
    sectionRows[name] = { date: new Date().toISOString(), rows };
    try {
        await fn();
    } catch (err) {
        errors[name] = String((err as Error).stack ?? err);
        log(`  ${name} FAILED: ${(err as Error).message}`);
    }
    log(`== ${name} done in ${((Date.now() - t) / 1000).toFixed(0)} s`);
    writeResults();
}

function sandboxDeploy(): { remoteSteps: number; hosts: string; seconds: number } | { skipped: string } {
    if (!isRoot) return { skipped: "not root: the sandbox harness needs root (mount namespaces, its own sshd)" };
    const dir = mkdtempSync(path.join(os.tmpdir(), "hx-bench-sandbox-"));
    const tsx = path.join(ROOT, "node_modules/.bin/tsx");
    const env = { ...process.env, HX_SANDBOX_DIR: dir };
    try {
        const r = spawnSync(tsx, [path.join(ROOT, "scripts/sandbox.ts")], { cwd: ROOT, env, encoding: "utf8", maxBuffer: 1 << 28, timeout: 1_200_000 });
        const m = /Deployed with pulumi up in ([\d.]+) s: (\d+) remote steps ran \(([^)]*)\)/.exec(r.stdout ?? "");
        if (!m) return { skipped: `sandbox printed no "Deployed with pulumi up" line (exit ${r.status}): ${(r.stderr ?? "").slice(-500)}` };
        return { seconds: Number(m[1]), remoteSteps: Number(m[2]), hosts: m[3] };
    } finally {
        spawnSync(tsx, [path.join(ROOT, "scripts/sandbox.ts"), "--down"], { cwd: ROOT, env, encoding: "utf8", timeout: 300_000 });
        rmSync(dir, { recursive: true, force: true });
    }
}

function writeResults(): void {
    writeFileSync(RESULTS_FILE, `${JSON.stringify(results, null, 2)}\n`);
}

const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
const s = (x: number) => `${x.toFixed(1)} s`;
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
    log(`machine: ${JSON.stringify(results.machine)}; params: ${JSON.stringify(results.params)}`);
    let pg: PgSetup | undefined;
    await section("pg", async () => {
        try {
            log(`  generating PostgreSQL data (scale ${PG_SCALE} and ${PG_SMALL_SCALE})`);
            pg = await setupPostgres(PG_SCALE, PG_SMALL_SCALE);
            const b = await benchPgBackup(pg, ROUNDS);
            results.pgBackup = b;
            const fc = med(b.rounds.map((r) => r.plainFcSeconds));
            const range = <T>(xs: readonly T[], f: (x: T) => number, digits = 1) => `${Math.min(...xs.map(f)).toFixed(digits)}–${Math.max(...xs.map(f)).toFixed(digits)}`;
            rows.push({
                measure: `PG backup, ${mib(b.bytesOnDisk)} DB: pipeline (custom format) vs pg_dump -Fc`,
                a: `${s(fc)} (${range(b.rounds, (r) => r.plainFcSeconds)} s)`,
                b: `${s(med(b.rounds.map((r) => r.pipelineSeconds)))} (${range(b.rounds, (r) => r.pipelineSeconds)} s)`,
                value: `${b.ratio}× (${range(b.rounds, (r) => r.ratio, 3)}×)`,
                goal: "≤ 0.45×",
                met: b.ratio <= 0.45,
            });
            rows.push({ measure: "PG backup: artifact size vs pg_dump -Fc", a: mib(b.plainFcBytes), b: mib(b.artifactBytes), value: `${b.artifactVsFc}×`, goal: "≤ 1.0×", met: b.artifactVsFc <= 1 });
            rows.push({ measure: "PG backup, parallel format (the default, auto, at this size) vs pg_dump -Fc", a: s(fc), b: `${s(med(b.rounds.map((r) => r.parallelSeconds)))} (${range(b.rounds, (r) => r.parallelSeconds)} s)`, value: `${b.parallelRatio}× (${range(b.rounds, (r) => r.parallelRatio, 3)}×)`, goal: "≤ 0.45×", met: b.parallelRatio <= 0.45 });
            rows.push({ measure: "PG backup: parallel-format artifact size vs pg_dump -Fc", a: mib(b.plainFcBytes), b: mib(b.parallelArtifactBytes), value: `${round(b.parallelArtifactBytes / b.plainFcBytes, 3)}×`, goal: "(report)", met: null });
            rows.push({ measure: "PG backup: pg_dump -Fd -j 2 vs -Fc", a: s(fc), b: s(med(b.rounds.map((r) => r.dirJ2Seconds))), value: `${b.dirRatio}×`, goal: "(report)", met: null });
            const r = await benchPgRestore(pg, ROUNDS);
            results.pgRestore = r;
            const plainRestore = `${s(med(r.rounds.map((x) => x.plainSeconds)))} (${range(r.rounds, (x) => x.plainSeconds)} s)`;
            rows.push({ measure: "PG restore, custom format: backup-restore.sh vs pg_restore -j 2", a: plainRestore, b: `${s(med(r.rounds.map((x) => x.pipelineSeconds)))} (${range(r.rounds, (x) => x.pipelineSeconds)} s)`, value: `${r.ratio}× (${range(r.rounds, (x) => x.ratio, 3)}×)`, goal: "≤ 1.20×", met: r.ratio <= 1.2 });
            rows.push({ measure: "PG restore, parallel format (the default at this size): backup-restore.sh vs pg_restore -j 2", a: plainRestore, b: `${s(med(r.rounds.map((x) => x.parallelSeconds)))} (${range(r.rounds, (x) => x.parallelSeconds)} s)`, value: `${r.parallelRatio}× (${range(r.rounds, (x) => x.parallelRatio, 3)}×)`, goal: "≤ 1.10×", met: r.parallelRatio <= 1.1 });
            const m = await benchPgMemory(pg);
            results.pgMemory = m;
            const [small, big] = m.sizes;
            rows.push({ measure: `Peak RSS of the pipeline, ${mib(small!.bytesOnDisk)} vs ${mib(big!.bytesOnDisk)} DB`, a: mib(small!.peakRssBytes), b: mib(big!.peakRssBytes), value: `${m.growth}×`, goal: "flat (≤ 1.1×)", met: m.growth <= 1.1 });
            results.pgRestoreProfile = await profilePgRestore(pg);
        } finally {
            await teardownPostgres(pg);
        }
    });
    let formatPg: PgSetup | undefined;
    await section("format", async () => {
        try {
            log(`  generating PostgreSQL data (scales ${FORMAT_SCALES.join(", ")}) for the format threshold`);
            const [first, second, ...rest] = FORMAT_SCALES;
            formatPg = await setupPostgres(first!, second!);
            const sizes = await benchFormatThreshold(formatPg, rest, FORMAT_ROUNDS);
            results.formatThreshold = sizes;
            for (const x of sizes) {
                const spreadOf = (f: (r: (typeof x.rounds)[number]) => number) => `${s(med(x.rounds.map(f)))} (${s(Math.min(...x.rounds.map(f)))}–${s(Math.max(...x.rounds.map(f)))})`;
                rows.push({ measure: `Parallel vs custom format, ${mib(x.bytesOnDisk)} DB: backup`, a: spreadOf((r) => r.customBackupSeconds), b: spreadOf((r) => r.parallelBackupSeconds), value: `${x.backupRatio}×`, goal: "(report)", met: null });
                rows.push({ measure: `Parallel vs custom format, ${mib(x.bytesOnDisk)} DB: restore`, a: spreadOf((r) => r.customRestoreSeconds), b: spreadOf((r) => r.parallelRestoreSeconds), value: `${x.restoreRatio}×`, goal: "(report)", met: null });
            }
        } finally {
            await teardownPostgres(formatPg);
        }
    });
    let pitrPg: PgSetup | undefined;
    await section("pitr", async () => {
        try {
            log(`  generating PostgreSQL data (scale ${PG_SCALE}) for PITR`);
            pitrPg = await setupPostgres(PG_SCALE, 1);
            const p = await benchPitr(pitrPg, ROUNDS);
            results.pitr = p;
            const r = p.rounds;
            const spread = (f: (x: (typeof r)[number]) => number) => `${s(Math.min(...r.map(f)))}–${s(Math.max(...r.map(f)))}`;
            rows.push({ measure: `PITR full backup (pgBackRest) vs dump pipeline, ${mib(pitrPg.sizes[BIG_DB]!.bytesOnDisk)} DB`, a: s(med(r.map((x) => x.dumpSeconds))), b: `${s(med(r.map((x) => x.fullSeconds)))} (${spread((x) => x.fullSeconds)})`, value: `${p.fullVsDumpSeconds}×`, goal: "(report)", met: null });
            rows.push({ measure: "PITR full backup size vs dump artifact", a: mib(med(r.map((x) => x.dumpBytes))), b: mib(med(r.map((x) => x.fullBytes))), value: `${p.fullVsDumpBytes}×`, goal: "(report)", met: null });
            rows.push({ measure: `PITR differential after ${p.differential.changedRows} changed rows (1 %)`, a: "", b: s(p.differential.seconds), value: mib(p.differential.bytes), goal: "(report)", met: null });
            rows.push({ measure: "RTO: PITR restore to latest (until it accepts writes) vs logical restore", a: `${s(med(r.map((x) => x.dumpRestoreSeconds)))} (${spread((x) => x.dumpRestoreSeconds)})`, b: `${s(med(r.map((x) => x.pitrRestoreSeconds)))} (${spread((x) => x.pitrRestoreSeconds)})`, value: `${p.rtoPitrVsDump}×`, goal: "(report)", met: null });
        } finally {
            await teardownPostgres(pitrPg);
        }
    });
    let redis: RedisSetup | undefined;
    await section("redis", async () => {
        try {
            redis = await setupRedis(REDIS_KEYS);
            const r = await benchRedis(redis, ROUNDS);
            results.redis = r;
            const spreadOf = (f: (x: (typeof r.rounds)[number]) => number, unit = " s") => `${Math.min(...r.rounds.map(f)).toFixed(unit ? 1 : 3)}–${Math.max(...r.rounds.map(f)).toFixed(unit ? 1 : 3)}${unit}`;
            rows.push({
                measure: `Redis, ${(r.keys / 1e6).toFixed(2)}M keys (${mib(r.rdbBytes)} RDB): redis-backup.sh vs BGSAVE + copy`,
                a: `${s(med(r.rounds.map((x) => x.plainSeconds)))} (${spreadOf((x) => x.plainSeconds)})`,
                b: `${s(med(r.rounds.map((x) => x.pipelineSeconds)))} (${spreadOf((x) => x.pipelineSeconds)})`,
                value: `${r.ratio}× (${spreadOf((x) => x.ratio, "")}×)`,
                goal: "≤ 1.25×",
                met: r.ratio <= 1.25,
            });
            rows.push({ measure: "Redis: fixed cost beyond BGSAVE + copy (pipeline − plain, per round)", a: "", b: "", value: `${s(r.fixedSeconds)} (${spreadOf((x) => x.pipelineSeconds - x.plainSeconds)})`, goal: "(report)", met: null });
        } finally {
            await teardownRedis(redis);
        }
    });
    await section("storage", async () => {
        const r = await benchStorage();
        results.storage = r;
        rows.push({ measure: "Storage added by a 2nd unchanged app + config backup", a: `${(r.firstBytes / 1024).toFixed(0)} KiB`, b: `${r.secondNewFileBytes} B`, value: `${(r.ratio * 100).toFixed(3)} %`, goal: "≤ 1 %", met: r.ratio <= 0.01 });
    });
    await section("deploy", async () => {
        const d: DeployBench = benchDeploy(ROUNDS, log);
        const sb = sandboxDeploy();
        results.deploy = { ...d, sandbox: sb };
        if ("skipped" in sb) log(`  sandbox first deploy skipped: ${sb.skipped}`);
        else log(`  sandbox first deploy (pulumi up): ${sb.remoteSteps} remote steps (${sb.hosts}) in ${sb.seconds} s`);
        rows.push({ measure: "Remote steps (SSH sessions), first pulumi up of the sandbox fleet", a: "", b: "", value: "skipped" in sb ? "skipped (not root)" : `${sb.remoteSteps} steps (${sb.hosts}), ${sb.seconds} s`, goal: "(report)", met: null });
        rows.push({ measure: "Inputs changed between two unchanged evaluations", a: "", b: "", value: String(d.unchangedChanges), goal: "0", met: d.unchangedChanges === 0 });
        const exact = JSON.stringify(d.scriptChange.changed) === JSON.stringify(d.scriptChange.expected);
        rows.push({ measure: `Steps changed by editing ${d.scriptChange.script} (10 hosts)`, a: `${d.scriptChange.expected.length} install steps`, b: `${d.scriptChange.changed.length} changed`, value: exact ? "exactly the install steps" : `differs: ${d.scriptChange.changed.join(", ")}`, goal: "exactly its install steps", met: exact });
        const spread = (xs: number[]) => `${s(med(xs))} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)} s)`;
        rows.push({ measure: `Program evaluation under mocks, 200 hosts (${d.commands200} remote steps), vs 10 hosts`, a: spread(d.evalSeconds10), b: spread(d.evalSeconds200), value: `${s(med(d.evalSeconds200))}, ${round(d.evalRatio, 1)}×`, goal: "≤ 10 s (moonshot ≤ 5 s)", met: med(d.evalSeconds200) <= 10 });
    });
    await section("fleet", async () => {
        const f: FleetDeployBench = await benchFleetDeploy(quick ? 1 : 3, quick);
        results.fleet = f;
        const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
        const runs = (xs: readonly Run[]) => `${s(med(xs.map((x) => x.seconds)))} (${Math.min(...xs.map((x) => x.seconds)).toFixed(1)}–${Math.max(...xs.map((x) => x.seconds)).toFixed(1)} s)`;
        for (const p of f.previewNew) {
            rows.push({ measure: `pulumi preview of a new ${p.hosts}-host stack (${p.resources} resources; ${f.plugins})`, a: "", b: `peak RSS ${gib(med(p.rounds.map((r) => r.peakRssBytes)))}`, value: runs(p.rounds), goal: p.hosts === 200 ? "≤ 60 s (moonshot ≤ 30 s)" : "(report)", met: p.hosts === 200 ? med(p.rounds.map((r) => r.seconds)) <= 60 : null });
        }
        const largest = f.previewNew[f.previewNew.length - 1]!;
        const ten = f.previewNew.find((p) => p.hosts === 10);
        if (largest.hosts === 200) {
            const byProcess = (r: Run) => (r.peakTop ?? []).slice(0, 3).map((p) => `${p.comm} ${(p.rssKiB / 1024).toFixed(0)} MiB`).join(", ");
            const medianRound = [...largest.rounds].sort((x, y) => x.peakRssBytes - y.peakRssBytes)[Math.floor(largest.rounds.length / 2)]!;
            rows.push({ measure: "Peak RSS of that 200-host preview (the CLI's process tree)", a: "", b: byProcess(medianRound), value: gib(med(largest.rounds.map((r) => r.peakRssBytes))), goal: "≤ 1.5 GB (moonshot ≤ 1 GB)", met: med(largest.rounds.map((r) => r.peakRssBytes)) <= 1.5e9 });
            if (ten) {
                const growth = med(largest.rounds.map((r) => r.seconds)) / med(ten.rounds.map((r) => r.seconds));
                rows.push({ measure: "Growth of the new-stack preview, 200 hosts vs 10", a: runs(ten.rounds), b: runs(largest.rounds), value: `${round(growth, 1)}×`, goal: "≤ 20×", met: growth <= 20 });
            }
        }
        for (const u of f.firstUps) {
            rows.push({ measure: `First pulumi up of ${u.hosts} stub hosts (engine, program and plugin; a state checkpoint per operation)`, a: "", b: `${u.commands} commands, state ${(u.stateBytes / MiB).toFixed(1)} MiB`, value: s(u.run.seconds), goal: "(report)", met: null });
        }
        const st = f.stub;
        rows.push({ measure: `First pulumi up of ${st.hosts} stub hosts with PULUMI_SKIP_CHECKPOINTS (makes the state for the next rows)`, a: "", b: `${st.commands} commands`, value: s(st.firstUp.seconds), goal: "(report)", met: null });
        rows.push({ measure: `Unchanged pulumi up of ${st.hosts} hosts (state from that first up, host reads off)`, a: "", b: `peak RSS ${gib(med(st.unchangedUp.map((r) => r.peakRssBytes)))}`, value: runs(st.unchangedUp), goal: st.hosts === 200 ? "≤ 90 s (moonshot ≤ 45 s)" : "(report)", met: st.hosts === 200 ? med(st.unchangedUp.map((r) => r.seconds)) <= 90 : null });
        rows.push({ measure: `Unchanged pulumi preview --diff of ${st.hosts} hosts (host reads off)`, a: "", b: "", value: runs(st.unchangedPreview), goal: "(report)", met: null });
        rows.push({ measure: `State file, ${st.hosts} hosts`, a: "", b: "", value: `${(st.stateBytes / MiB).toFixed(1)} MiB`, goal: "(report)", met: null });
        const base = f.parallel.runs.find((r) => r.parallel === "default")!.run.seconds;
        for (const r of f.parallel.runs) {
            rows.push({ measure: `First up (no intermediate checkpoints) of ${f.parallel.hosts} stub hosts whose commands take ${f.parallel.delaySeconds} s each, --parallel ${r.parallel === "default" ? "default (4 × CPUs)" : r.parallel}`, a: s(base), b: "", value: s(r.run.seconds), goal: "(report)", met: null });
        }
    });
    await section("fleet-sandbox", async () => {
        const sb: SandboxDeployBench = await benchSandboxDeploy(quick ? 1 : ROUNDS);
        results.fleetSandbox = sb;
        const ratio = med(sb.four) / med(sb.one);
        rows.push({ measure: "First deploy of 4 sandbox hosts vs 1 (real steps on real sshd)", a: `${s(med(sb.one))} (${Math.min(...sb.one).toFixed(1)}–${Math.max(...sb.one).toFixed(1)} s)`, b: `${s(med(sb.four))} (${Math.min(...sb.four).toFixed(1)}–${Math.max(...sb.four).toFixed(1)} s)`, value: `${round(ratio, 2)}×`, goal: "≤ 1.5× (moonshot ≤ 1.2×)", met: ratio <= 1.5 });
    });
    await section("host-reads", async () => {
        const r: HostReadsBench = await benchHostReads(quick ? 3 : ROUNDS);
        results.hostReads = r;
        for (const { hosts, rounds } of r.byHosts) {
            const range = (f: (x: HostReadsRound) => number) => `${Math.min(...rounds.map(f)).toFixed(1)}–${Math.max(...rounds.map(f)).toFixed(1)} s`;
            for (const [what, on, off] of [["preview", (x: HostReadsRound) => x.previewOn, (x: HostReadsRound) => x.previewOff], ["up", (x: HostReadsRound) => x.upOn, (x: HostReadsRound) => x.upOff]] as const) {
                const perHost = (med(rounds.map(on)) - med(rounds.map(off))) / hosts;
                rows.push({
                    measure: `Host reads: unchanged pulumi ${what}, ${hosts} light host${hosts > 1 ? "s" : ""}, hostReads off vs on (${r.plugins})`,
                    a: `${s(med(rounds.map(off)))} (${range(off)})`,
                    b: `${s(med(rounds.map(on)))} (${range(on)})`,
                    value: `${perHost.toFixed(2)} s per host`,
                    goal: "(report)",
                    met: null,
                });
            }
        }
    });
    writeResults();
    const header = ["Measure", "A (baseline)", "B (hx-backup)", "Result (median)", "Goal", "Met"];
    const all = SECTIONS.flatMap((name) => (sectionRows[name]?.rows ?? []).map((r) => ({ ...r, measure: only.includes(name) ? r.measure : `${r.measure} (run ${sectionRows[name]!.date.slice(0, 10)})` })));
    const lines = [
        `| ${header.join(" | ")} |`,
        `|${header.map(() => "---").join("|")}|`,
        ...all.map((r) => `| ${r.measure} | ${r.a} | ${r.b} | ${r.value} | ${r.goal} | ${r.met === null ? "–" : r.met ? "yes" : "**no**"} |`),
    ];
    const m = results.machine as { cores: number; memoryGiB: number; cpu: string };
    const table = `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB RAM; ${ROUNDS} alternating rounds per pair.\n\n${lines.join("\n")}\n`;
    results.tableMarkdown = table;
    writeResults();
    process.stdout.write(`\n${table}\n`);
    if (Object.keys(errors).length > 0) {
        process.stdout.write(`Sections that failed: ${Object.keys(errors).join(", ")} (see bench/results.json)\n`);
        process.exitCode = 1;
    }
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
