/**
 * A throwaway "host" laid out like an installed one, in a temp dir: the
 * scripts (root-owned copy of templates/scripts), a keyring, storage, logs,
 * textfile dir, and a HostConfigFile JSON the scripts read through
 * HX_BACKUP_CONFIG.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { loadStackConfig } from "../../config/load";
import { renderHostConfig, type HostConfigFile } from "../../render/hostConfig";
import { isLibrary, scriptTemplates } from "../../render/template";
import { CONFIG_LOCATION_NAME } from "../../render/paths";
import type { BackupType } from "../../render/jobs";
import { CAPABILITIES } from "../../render/systemd";
import { chown, chownR, ensureTestUser, isRoot, run, start, tempDir, removeDir, type OsUser, type RunOptions, type RunResult } from "./env";

export const SCRIPTS_SRC = resolve(__dirname, "../../templates/scripts");

type DeepMutable<T> = T extends readonly (infer U)[] ? DeepMutable<U>[] : T extends object ? { -readonly [K in keyof T]: DeepMutable<T[K]> } : T;
export type HostConfig = DeepMutable<HostConfigFile>;

export interface TestHost {
    readonly root: string;
    readonly user: OsUser | undefined;
    readonly configPath: string;
    readonly scriptsDir: string;
    config: HostConfig;
    /** Write `config` (or raw text) to configPath. */
    writeConfig(raw?: string): void;
    /** Add a key to the keyring; returns its hex. `current` also makes it the current key. */
    addKey(id: string, current?: boolean): string;
    /** Run a script as the unprivileged test user (or as root with asRoot, or as a job type's unit with unit). */
    runScript(name: string, args?: readonly string[], opts?: ScriptOptions): Promise<RunResult>;
    startScript(name: string, args?: readonly string[], opts?: ScriptOptions): ReturnType<typeof start>;
    /** Parsed metrics: key `name{type="..",target=".."}` -> value. */
    metrics(): Map<string, number>;
    metric(name: string, type: string, target: string): number | undefined;
    log(stem: string): string;
    /** Committed manifests (relative to storage) of one source. */
    manifests(type: string, target: string): string[];
    readManifest(type: string, target: string, name: string): Record<string, unknown>;
    cleanup(): void;
}

export interface ScriptOptions extends RunOptions {
    readonly asRoot?: boolean;
    /**
     * Run as that job type's unit does: as the test user holding the unit's
     * AmbientCapabilities, so its privileged reads run the helper directly.
     * Jobs refuse to run as root (lib/core.sh hx_refuse_root).
     */
    readonly unit?: BackupType;
}

export function makeHost(opts: { remote?: Partial<HostConfig["remote"]> } = {}): TestHost {
    const user = isRoot ? ensureTestUser() : undefined;
    const root = tempDir("hx-host-");
    const etc = join(root, "etc");
    const keyring = join(etc, "keys");
    const scriptsDir = join(root, "scripts");
    const storage = join(root, "storage");
    const logs = join(root, "logs");
    const textfile = join(root, "textfile");
    for (const d of [etc, keyring, scriptsDir, storage, logs, textfile]) mkdirSync(d, { recursive: true });
    // As the host plan ships them: the scripts and the library's lib/, each folder 0755.
    for (const f of scriptTemplates()) {
        mkdirSync(dirname(join(scriptsDir, f)), { recursive: true, mode: 0o755 });
        copyFileSync(join(SCRIPTS_SRC, f), join(scriptsDir, f));
        chmodSync(join(scriptsDir, f), isLibrary(f) ? 0o644 : 0o755);
    }
    chmodSync(scriptsDir, 0o755);
    const configPath = join(etc, "backup.json");
    // As the config-location step writes it: what runs by hand and through sudo read.
    writeFileSync(join(scriptsDir, CONFIG_LOCATION_NAME), `${configPath}\n`, { mode: 0o644 });
    // The render's own output for this layout: every field the scripts read, with the stack defaults.
    const config: HostConfig = {
        ...renderedConfig({ configDir: etc, scriptDir: scriptsDir, storageDir: storage, logDir: logs, textfileDir: textfile, encryptionKeyFile: join(etc, "encryption.key"), backupUser: user?.name ?? "backup" }),
        postgresql: null,
        redis: null,
        application: null,
        configuration: null,
        drift: { manifestDir: "", recordsDir: "", watch: [], ignore: [] },
        jobs: [],
    };
    config.remote = { ...config.remote, prefix: "backups", region: "us-east-1", retries: 2, ...(opts.remote ?? {}) };
    const host: TestHost = {
        root,
        user,
        configPath,
        scriptsDir,
        config,
        writeConfig(raw?: string) {
            writeFileSync(configPath, raw ?? `${JSON.stringify(host.config, null, 2)}\n`, { mode: 0o644 });
        },
        addKey(id: string, current = false) {
            const hex = randomBytes(64).toString("hex");
            const p = join(keyring, `${id}.key`);
            writeFileSync(p, `${hex}\n`, { mode: 0o600 });
            if (user) chown(p, user);
            if (current) {
                writeFileSync(config.paths.keyFile, `${hex}\n`, { mode: 0o600 });
                if (user) chown(config.paths.keyFile, user);
                config.encryption.currentKeyId = id;
            }
            if (!config.encryption.keyIds.includes(id)) config.encryption.keyIds.push(id);
            return hex;
        },
        startScript(name, args = [], o = {}) {
            // Where a script logs when it cannot read its config: this host's dirs, never the machine's.
            const env = { HX_BACKUP_CONFIG: configPath, HX_BACKUP_FALLBACK_LOGS: logs, HX_BACKUP_FALLBACK_TEXTFILE: textfile, ...(o.env ?? {}) };
            // SIGPIPE ignored, as systemd starts every service (IgnoreSIGPIPE=yes): a reader that
            // stops early then shows as EPIPE errors on the writer's stderr, as it would on a host.
            const argv = ["--ignore-signal=PIPE", join(scriptsDir, name), ...args];
            const timeoutMs = o.timeoutMs ?? 300_000;
            if (o.unit) {
                if (!user || o.asRoot) throw new Error("unit: runs as the test user, which needs the tests to run as root");
                const caps = CAPABILITIES[o.unit].split(/\s+/).filter(Boolean).map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`).join(",");
                const as = [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", ...(caps ? [`--inh-caps=${caps}`, `--ambient-caps=${caps}`] : [])];
                return start("setpriv", [...as, "--", "env", ...argv], { ...o, env: { HOME: "/nonexistent", ...env }, user: undefined, timeoutMs });
            }
            return start("env", argv, { ...o, env, user: o.asRoot ? undefined : (o.user ?? user), timeoutMs });
        },
        runScript(name, args = [], o = {}) {
            return host.startScript(name, args, o).done;
        },
        metrics() {
            const m = new Map<string, number>();
            const tf = config.paths.textfile;
            if (!existsSync(tf)) return m;
            for (const f of readdirSync(tf)) {
                if (!f.endsWith(".prom")) continue;
                for (const line of readFileSync(join(tf, f), "utf8").split("\n")) {
                    if (!line || line.startsWith("#")) continue;
                    const i = line.lastIndexOf(" ");
                    m.set(line.slice(0, i), Number(line.slice(i + 1)));
                }
            }
            return m;
        },
        metric(name, type, target) {
            return host.metrics().get(`${name}{type="${type}",target="${target}"}`);
        },
        log(stem) {
            const p = join(config.paths.logs, `${stem}.log`);
            return existsSync(p) ? readFileSync(p, "utf8") : "";
        },
        manifests(type, target) {
            const d = join(config.paths.storage, type, target);
            if (!existsSync(d)) return [];
            return readdirSync(d).filter((f) => f.endsWith(".manifest.json") && !f.startsWith(".")).sort();
        },
        readManifest(type, target, name) {
            return JSON.parse(readFileSync(join(config.paths.storage, type, target, name), "utf8"));
        },
        cleanup() {
            removeDir(root);
        },
    };
    host.addKey("test-v1", true);
    if (user) {
        for (const d of [etc, keyring, storage, logs, textfile]) chownR(d, user);
    }
    chmodSync(etc, 0o755);
    host.writeConfig();
    return host;
}

/** Give a path (and its contents) to the test user. */
/**
 * The lines of a job's stderr or log that an operator grepping for trouble
 * would stop at: any "error" or "warning" word, and log lines above info.
 */
export function alarmingLines(text: string): string[] {
    return text.split("\n").filter((l) => /\b(error|errors|warn|warning|fatal|failed)\b/i.test(l) || /\blevel=(warning|error)\b/.test(l));
}

export function giveToUser(host: TestHost, path: string): void {
    if (host.user) chownR(path, host.user);
}

export async function shell(cmd: string, opts: RunOptions = {}): Promise<RunResult> {
    return run("bash", ["-c", cmd], opts);
}

/**
 * backup.json as the render writes it for a host with every data source and
 * the given stack settings (paths, user), in stack "test" with key test-v1.
 */
export function renderedConfig(settings: Record<string, unknown> = {}): HostConfig {
    const stack = loadStackConfig("test", {
        hosts: [{ name: "testhost", address: "127.0.0.1", remoteSync: false, roles: ["postgresql", "redis", "application", "configuration"], application: { paths: ["/srv"] } }],
        ...settings,
    });
    return structuredClone(renderHostConfig(stack, stack.hosts[0], { currentKeyId: "test-v1", keyIds: ["test-v1"], keyFingerprints: {} })) as HostConfig;
}

/** A data-source section as rendered with the stack defaults, to override for a test. */
export function renderedSection<K extends "postgresql" | "redis">(name: K): NonNullable<HostConfig[K]> {
    return renderedConfig()[name]!;
}

/** The postgresql section for a throwaway cluster: peer auth as `role` over the cluster's socket, the stack defaults otherwise (format auto: test databases are far below its threshold, so custom). */
export function postgresqlSection(pg: { socketDir: string; port: number }, role: string, databases: readonly string[], extra: Partial<NonNullable<HostConfig["postgresql"]>> = {}): NonNullable<HostConfig["postgresql"]> {
    return {
        ...renderedSection("postgresql"),
        databases: databases.map((name) => ({ name, large: false })),
        host: pg.socketDir,
        port: pg.port,
        user: role,
        ...extra,
    };
}
