/**
 * The contract between the render and the host scripts: every field a script
 * in templates/ reads from backup.json exists, with the right kind of value,
 * in the rendered config of every host of every stack file that has its data
 * source; and every rendered field is read by some script. Both directions
 * are shown to fail on a planted drift.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { HOST_CONFIG_FORMAT, renderHostConfig, type HostConfigFile } from "../../render/hostConfig";
import { loadStackFromFiles, renderFacts } from "../../scripts/render";
import { PROJECT_DIR, STACKS } from "./helpers";

const TEMPLATES = path.join(PROJECT_DIR, "templates");

/** How a script reads the config: the reader function decides what kind of value it needs. */
type ReadKind = "value" | "boolean" | "section" | "json";
const READERS: Record<string, ReadKind> = { hx_cfg_read: "value", hx_cfg_into: "value", hx_cfg_true: "boolean", hx_cfg_section: "section", hx_cfg_json: "json" };

interface ConfigRead {
    readonly file: string;
    readonly line: number;
    readonly kind: ReadKind;
    /** Dotted path; `[]` is every element of a list. */
    readonly path: string;
}

function shellFiles(dir: string): string[] {
    return readdirSync(dir).flatMap((name) => {
        const full = path.join(dir, name);
        if (statSync(full).isDirectory()) return shellFiles(full);
        return name.endsWith(".sh") ? [full] : [];
    });
}

/** Shell words of one simple command, up to the first operator. Quotes are removed; `$` stays. */
function words(text: string): string[] {
    const out: string[] = [];
    const re = /\s*(?:'([^']*)'|"((?:[^"\\]|\\.)*)"|([^\s;|&)'"]+))/y;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text))) out.push(m[1] ?? m[2] ?? m[3]);
    return out;
}

/** Lines with `\`-continuations joined, each numbered by the line it starts on. */
function logicalLines(source: string): { text: string; line: number }[] {
    const out: { text: string; line: number }[] = [];
    const physical = source.split("\n");
    for (let i = 0; i < physical.length; i++) {
        const start = i;
        let text = physical[i];
        while (text.endsWith("\\") && i + 1 < physical.length) text = `${text.slice(0, -1)} ${physical[++i]}`;
        out.push({ text, line: start + 1 });
    }
    return out;
}

/**
 * Every config read in `source`. A path argument may name a list index by a
 * variable before a further field (`jobs.$i.script`: read as `jobs[].script`), and `"$type"` stands
 * for the data sources that `hx_archive_script` is called with; any other
 * variable is an error, because the read could not be checked.
 */
function extractReads(file: string, source: string, archiveTypes: readonly string[]): ConfigRead[] {
    const reads: ConfigRead[] = [];
    logicalLines(source).forEach(({ text, line }) => {
        const i = line - 1;
        if (/^\s*#/.test(text)) return;
        // The loader's own look-ups before the readers can be used (it checks the format first).
        for (const m of text.matchAll(/\bHX_CFG(?:_TYPE)?\[([A-Za-z0-9_.]+)\]/g)) reads.push({ file, line: i + 1, kind: "json", path: m[1] });
        for (const m of text.matchAll(/(?:^|[\s;&|({!])(hx_cfg_(?:read|into|true|section|json))(?=\s)/g)) {
            const reader = m[1];
            const argv = words(text.slice(m.index! + m[0].length));
            const paths = reader === "hx_cfg_read" ? argv.slice(1, 2) : reader === "hx_cfg_into" ? argv.slice(1) : argv.slice(0, 1);
            for (const raw of paths) {
                const expanded = raw === "$type" ? archiveTypes : [raw.replace(/\.\$\{?[A-Za-z_]+\}?(?=\.)/g, "[]")];
                for (const p of expanded) {
                    if (p.includes("$")) throw new Error(`${file}:${i + 1}: ${reader} ${raw}: a config path built at run time cannot be checked; name the field`);
                    reads.push({ file, line: i + 1, kind: READERS[reader], path: p });
                }
            }
        }
    });
    return reads;
}

function allReads(): ConfigRead[] {
    const files = shellFiles(TEMPLATES);
    const sources = files.map((f) => [path.relative(PROJECT_DIR, f), readFileSync(f, "utf8")] as const);
    const archiveTypes = [...new Set(sources.flatMap(([, s]) => [...s.matchAll(/^hx_archive_script (\w+)/gm)].map((m) => m[1])))];
    return sources.flatMap(([file, s]) => extractReads(file, s, archiveTypes));
}

/** The values at `p` (`[]` fans out); `undefined` marks a missing field, and a null data-source section stops the walk. */
function lookup(config: unknown, p: string): { values: unknown[]; sectionAbsent: boolean } {
    let nodes: unknown[] = [config];
    const segments = p.replace(/\[\]/g, ".[]").split(".");
    for (const [i, seg] of segments.entries()) {
        const next: unknown[] = [];
        for (const node of nodes) {
            if (seg === "[]") {
                if (Array.isArray(node)) next.push(...node);
                else next.push(undefined);
            } else if (node !== null && typeof node === "object" && !Array.isArray(node) && seg in node) {
                next.push((node as Record<string, unknown>)[seg]);
            } else next.push(undefined);
        }
        // A host without a data source renders its section as null, and the scripts check it first.
        if (i === 0 && next[0] === null) return { values: [], sectionAbsent: true };
        nodes = next;
    }
    return { values: nodes, sectionAbsent: false };
}

function kindProblem(kind: ReadKind, value: unknown): string | undefined {
    if (value === undefined) return "missing";
    switch (kind) {
        case "value":
            return ["string", "number", "boolean"].includes(typeof value) ? undefined : `not a value but ${JSON.stringify(value)}`;
        case "boolean":
            return typeof value === "boolean" ? undefined : `not true or false but ${JSON.stringify(value)}`;
        case "section":
            return value === null || (typeof value === "object" && !Array.isArray(value)) ? undefined : `not an object or null but ${JSON.stringify(value)}`;
        case "json":
            return value === null ? "null" : undefined;
    }
}

interface Rendered {
    readonly where: string;
    readonly config: HostConfigFile;
}

/** Every stack file in the project, not a list that a new one could miss. */
const STACK_FILES = readdirSync(PROJECT_DIR).flatMap((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1] ?? []);

function renderedConfigs(): Rendered[] {
    return STACK_FILES.flatMap((name) => {
        const config = loadStackFromFiles(PROJECT_DIR, name);
        return config.hosts.map((host) => ({ where: `${name}/${host.name}`, config: renderHostConfig(config, host, renderFacts(config)) }));
    });
}

/** Reads whose field is missing (or of the wrong kind) on a host that has the data source, or on every host. */
function brokenReads(reads: readonly ConfigRead[], rendered: readonly Rendered[]): string[] {
    const problems: string[] = [];
    for (const read of reads) {
        let found = false;
        for (const { where, config } of rendered) {
            const { values, sectionAbsent } = lookup(config, read.path);
            if (sectionAbsent) continue;
            // An empty list has no elements to read: nothing is missing.
            if (values.length === 0) {
                found = true;
                continue;
            }
            const bad = values.map((v) => kindProblem(read.kind, v)).find(Boolean);
            if (bad) problems.push(`${read.file}:${read.line} reads ${read.path}: ${bad} in ${where}`);
            else found = true;
        }
        if (!found) problems.push(`${read.file}:${read.line} reads ${read.path}: no host of any stack renders it`);
    }
    return [...new Set(problems)];
}

/** Leaf fields of a rendered config, list indexes as `[]`; an empty list or null section is a leaf. */
function leaves(value: unknown, prefix = ""): string[] {
    if (Array.isArray(value)) return value.length ? value.flatMap((v) => leaves(v, `${prefix}[]`)) : [prefix];
    if (value !== null && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
    return [prefix];
}

/** Rendered fields no read covers. A read covers its own path; a JSON read also covers everything below it. */
function unreadFields(reads: readonly ConfigRead[], rendered: readonly Rendered[]): string[] {
    const covers = (read: ConfigRead, leaf: string) =>
        read.path === leaf || read.path === `${leaf}[]` || (read.kind === "json" && (leaf.startsWith(`${read.path}.`) || leaf.startsWith(`${read.path}[]`)));
    const all = new Set(rendered.flatMap(({ config }) => leaves(config)));
    return [...all].filter((leaf) => !reads.some((r) => covers(r, leaf))).sort();
}

/** The config format the host library accepts: `readonly HX_CONFIG_FORMAT=<n>` in lib/core.sh. */
function libraryConfigFormat(coreSh: string): number {
    const found = [...coreSh.matchAll(/^readonly HX_CONFIG_FORMAT=(\d+)$/gm)];
    if (found.length !== 1) throw new Error(`lib/core.sh: expected one "readonly HX_CONFIG_FORMAT=<n>" line, found ${found.length}`);
    return Number(found[0][1]);
}

describe("the backup.json format", () => {
    const coreSh = readFileSync(path.join(TEMPLATES, "scripts", "lib", "core.sh"), "utf8");

    it("the library reads the format the render writes (HX_CONFIG_FORMAT = HOST_CONFIG_FORMAT)", () => {
        expect(libraryConfigFormat(coreSh)).toBe(HOST_CONFIG_FORMAT);
        for (const { config } of renderedConfigs()) expect(config.format).toBe(HOST_CONFIG_FORMAT);
    });

    it("catches a library that was bumped alone, and a constant it cannot find", () => {
        const bumped = coreSh.replace(/^readonly HX_CONFIG_FORMAT=\d+$/m, `readonly HX_CONFIG_FORMAT=${HOST_CONFIG_FORMAT + 1}`);
        expect(libraryConfigFormat(bumped)).not.toBe(HOST_CONFIG_FORMAT);
        expect(() => libraryConfigFormat(coreSh.replace(/^readonly HX_CONFIG_FORMAT=/m, "HX_CONFIG_FORMAT="))).toThrow(/found 0/);
    });
});

describe("the backup.json contract", () => {
    const reads = allReads();
    const rendered = renderedConfigs();

    it("checks every stack file, and knows every reader the library defines", () => {
        expect([...STACK_FILES].sort()).toEqual([...STACKS].sort());
        const defined = [...readFileSync(path.join(TEMPLATES, "scripts", "lib", "config.sh"), "utf8").matchAll(/^(hx_cfg_\w+)\(\)/gm)].map((m) => m[1]);
        expect(defined.sort()).toEqual(Object.keys(READERS).sort());
    });

    it("numbers a read by its own line, after a continued line", () => {
        const planted = extractReads("planted.sh", "x=1 \\\n  y=2\nhx_cfg_read v \\\n  remote.bucket\n", []);
        expect(planted).toEqual([{ file: "planted.sh", line: 3, kind: "value", path: "remote.bucket" }]);
    });

    it("finds the reads of every script and library file", () => {
        const files = new Set(reads.map((r) => r.file));
        for (const f of ["templates/scripts/lib/config.sh", "templates/scripts/lib/remote.sh", "templates/scripts/lib/source/archive.sh", "templates/scripts/lib/source/redis.sh", "templates/scripts/lib/source/postgresql.sh", "templates/scripts/backup-sync.sh", "templates/scripts/postgresql-backup.sh"]) {
            expect(files, f).toContain(f);
        }
        expect(reads.length).toBeGreaterThan(40);
    });

    it("every field a script reads is rendered for every host that has its data source", () => {
        expect(brokenReads(reads, rendered)).toEqual([]);
    });

    it("every rendered field is read by a script", () => {
        expect(unreadFields(reads, rendered)).toEqual([]);
    });

    it("reads no config any other way than through the readers", () => {
        const stray = shellFiles(TEMPLATES).flatMap((f) =>
            readFileSync(f, "utf8")
                .split("\n")
                .map((line, i) => ({ where: `${path.relative(PROJECT_DIR, f)}:${i + 1}`, line }))
                .filter(({ line }) => !/^\s*#/.test(line))
                // The config file by any name, outside the loader and the readers (config.sh), is a stray read.
                .filter(({ where, line }) => /HX_CONFIG_FILE|HX_BACKUP_CONFIG|backup\.json|config-path/.test(line) && !where.startsWith("templates/scripts/lib/config.sh:"))
                // Declared empty in core.sh; only printed by the health check.
                .filter(({ line }) => !/^HX_CONFIG_FILE=""$|^echo "Config: \$HX_CONFIG_FILE"$/.test(line.trim()))
                .map(({ where, line }) => `${where}: ${line.trim()}`),
        );
        expect(stray).toEqual([]);
    });

    it("catches a script reading a field that is never rendered", () => {
        // The drift this test was written for: the library read .remote.kmsKeyArn, which the render never wrote.
        const planted = extractReads("planted.sh", "hx_cfg_into cfgv remote.bucket remote.kmsKeyArn\n", []);
        expect(brokenReads(planted, rendered)).toContain("planted.sh:1 reads remote.kmsKeyArn: no host of any stack renders it");
    });

    it("catches a field missing on one host, and a read of the wrong kind", () => {
        const planted = extractReads("planted.sh", "hx_cfg_read retries remote.retries\nhx_cfg_true remote.bucket\n", []);
        const withoutRetries = rendered.map((r, i) => (i === 0 ? { ...r, config: { ...r.config, remote: { ...r.config.remote, retries: undefined } } as unknown as HostConfigFile } : r));
        const problems = brokenReads(planted, withoutRetries);
        expect(problems).toContain(`planted.sh:1 reads remote.retries: missing in ${rendered[0].where}`);
        expect(problems.some((p) => p.startsWith("planted.sh:2 reads remote.bucket: not true or false"))).toBe(true);
    });

    it("catches a rendered field that nothing reads", () => {
        const planted = rendered.map((r) => ({ ...r, config: { ...r.config, remote: { ...r.config.remote, kmsKeyArn: "arn:aws:kms:..." } } as unknown as HostConfigFile }));
        expect(unreadFields(reads, planted)).toEqual(["remote.kmsKeyArn"]);
    });

    it("VACUUM and ANALYZE have one path: the rendered maintenance units, decided in TypeScript", () => {
        const scripts = shellFiles(path.join(TEMPLATES, "scripts")).filter((f) => /\b(vacuumdb|VACUUM|ANALYZE|maintenance)\b/.test(readFileSync(f, "utf8").replace(/^\s*#.*$/gm, "")));
        expect(scripts.map((f) => path.relative(PROJECT_DIR, f))).toEqual([]);
        expect(readFileSync(path.join(TEMPLATES, "systemd", "hx-backup-job.service"), "utf8")).not.toMatch(/MAINTENANCE/);
    });

    it("refuses a config path built at run time", () => {
        expect(() => extractReads("planted.sh", 'hx_cfg_read v "remote.$field"\n', [])).toThrow(/built at run time/);
    });
});

describe("temp paths the scripts create", () => {
    // The pattern hx_clean_dead_temps removes when the run whose PID it
    // carries is gone; read from the library so the two cannot drift.
    const core = readFileSync(path.join(TEMPLATES, "scripts", "lib", "core.sh"), "utf8");
    const cleanPattern = new RegExp(/\[\[ \$name =~ (\S+) \]\]/.exec(core)![1]);
    // Each quoted name with ".partial" in it, and each name derived from a
    // variable holding one ("$part.body" is a temp path the cleaner misses).
    const tempNames = shellFiles(path.join(TEMPLATES, "scripts")).flatMap((file) => {
        const text = readFileSync(file, "utf8").replace(/^\s*#.*$/gm, "");
        const where = path.relative(TEMPLATES, file);
        const literal = [...text.matchAll(/"([^"\s]*\.partial[^"\s]*)"/g)].map((m) => m[1]);
        const holders = [...text.matchAll(/\b(\w+)="[^"\s]*\.partial"/g)].map((m) => m[1]);
        const derived = holders.flatMap((v) => [...text.matchAll(new RegExp(`"\\$\\{?${v}\\}?(\\.[^"\\s]+)"`, "g"))].map((m) => `x.4242.partial${m[1]}`));
        return [...literal, ...derived].filter((name) => !name.startsWith("${HX_OUT[partial]}")).map((name) => ({ file: where, name }));
    });

    it("every one is named so hx_clean_dead_temps finds it after a kill -9", () => {
        expect(tempNames.length).toBeGreaterThan(15);
        // Stand a PID in for $$ / $BASHPID and six characters for mktemp's X's.
        const strays = tempNames.filter((t) => !cleanPattern.test(t.name.replace(/\$\$|\$BASHPID/g, "4242").replace(/XXXXXX/g, "a1B2c3")));
        expect(strays).toEqual([]);
    });

    it("the check itself catches a name the cleaner would miss", () => {
        expect(cleanPattern.test(".x.manifest.json.4242.partial.body")).toBe(false);
        expect(cleanPattern.test(".x.manifest.json.4242.partial")).toBe(true);
    });
});
