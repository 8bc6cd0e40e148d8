/**
 * pgBackRest for a host with `postgresql.pitr`: the stanza, the repository
 * (the stack's bucket under `<prefix>/pgbackrest/<host>/<keyId>`, or a local
 * one under the storage directory), and the two config files. The main file
 * holds no secret; the cipher passphrase and S3 keys go into a 0600 file in
 * pgBackRest's include directory, readable by postgres only.
 *
 * One repository per key version: a rotation starts a new repository with a
 * passphrase derived from the new key, and the old one stays readable with
 * the old key until its backups expire.
 */
import { createHmac } from "node:crypto";
import { PITR_REPOSITORY_FOLDER } from "../config/names";
import type { HostSpec, PitrSettings, StackConfig } from "../config/types";
import { locksDir } from "./paths";
import { sha256 } from "./remote";
import { digestOf, filesStep, secretFilesStep, stepScript, type PlannedSecretFile, type Step } from "./step";

export const PGBACKREST_CONF = "/etc/pgbackrest/pgbackrest.conf";
export const PGBACKREST_SECRETS_CONF = "/etc/pgbackrest/conf.d/hx-backup-secrets.conf";
/** pgBackRest's own directories (Debian's package creates them, owned by postgres). */
export const PGBACKREST_DIRS = { log: "/var/log/pgbackrest", spool: "/var/spool/pgbackrest", lock: "/var/lib/pgbackrest/lock" } as const;

/** The message the repository passphrase is the HMAC of; the host derives the same with hx_hmac_hex. */
export const passphraseMessage = (keyId: string): string => `hx-backup pgbackrest repository ${keyId}`;

/**
 * The repository cipher passphrase: HMAC-SHA256 of passphraseMessage(keyId)
 * under the key's MAC half (bytes 32-63), as 64 hex characters. Only the
 * keyring is needed to rebuild it, on any host.
 */
export function repositoryPassphrase(keyHex: string, keyId: string): string {
    if (!/^[0-9a-f]{128}$/.test(keyHex)) throw new Error(`key ${keyId} is not 64 bytes of hex`);
    return createHmac("sha256", Buffer.from(keyHex.slice(64), "hex")).update(passphraseMessage(keyId)).digest("hex");
}

/** Stanza name: the host and the cluster (the data directory's last two parts, e.g. `db-1-15-main`). */
export function stanzaName(host: HostSpec): string {
    const cluster = host.postgresql!.dataDir.split("/").filter(Boolean).slice(-2).join("-");
    return `${host.name}-${cluster}`.replace(/[^A-Za-z0-9._-]/g, "-");
}

export interface Repository {
    readonly type: "s3" | "posix";
    readonly path: string;
    readonly s3?: {
        readonly bucket: string;
        /** Host name only; the port is `port`. */
        readonly endpoint: string;
        readonly port: number;
        readonly region: string;
        readonly uriStyle: "host" | "path";
        /** s3CaFile, or empty for the system's CAs. */
        readonly caFile: string;
    };
}

/** The bucket when the host syncs to one, else a local repository in the storage directory. */
export function repositoryFor(config: StackConfig, host: HostSpec, keyId: string): Repository {
    const s = config.storage;
    if (host.remoteSync && s.mode !== "none" && s.bucketName) {
        const url = s.endpoint ? new URL(s.endpoint) : undefined;
        return {
            type: "s3",
            path: `/${[s.prefix, PITR_REPOSITORY_FOLDER, host.name, keyId].filter(Boolean).join("/")}`,
            s3: {
                bucket: s.bucketName,
                endpoint: url ? url.hostname.replace(/^\[|\]$/g, "") : `s3.${s.region}.amazonaws.com`,
                port: url?.port ? Number(url.port) : 443,
                region: s.region || "us-east-1",
                uriStyle: url ? "path" : "host",
                caFile: s.caFile,
            },
        };
    }
    return { type: "posix", path: `${localRepositoryRoot(config)}/${keyId}` };
}

/** The local repositories' folder, one repository per key id in it. */
export const localRepositoryRoot = (config: StackConfig): string => `${config.paths.storageDir}/${PITR_REPOSITORY_FOLDER}`;

export interface PgbackrestConf {
    readonly stanza: string;
    readonly repository: Repository;
    /** /etc/pgbackrest/pgbackrest.conf: no secrets. */
    readonly main: string;
}

/** The main config file. Every value is ours or validated; pgBackRest reads `key=value` to the end of the line. */
export function renderPgbackrestConf(config: StackConfig, host: HostSpec, keyId: string): PgbackrestConf {
    const pg = host.postgresql;
    const pitr: PitrSettings | undefined = pg?.pitr;
    if (!pg || !pitr) throw new Error(`host ${host.name} has no postgresql.pitr`);
    const stanza = stanzaName(host);
    const repository = repositoryFor(config, host, keyId);
    const line = (k: string, v: string | number) => {
        const value = String(v);
        if (/[\r\n]/.test(value)) throw new Error(`pgbackrest.conf ${k}: a value on one line`);
        return `${k}=${value}`;
    };
    const global = [
        line("repo1-type", repository.type),
        line("repo1-path", repository.path),
        ...(repository.s3
            ? [
                  line("repo1-s3-bucket", repository.s3.bucket),
                  line("repo1-s3-endpoint", repository.s3.endpoint),
                  line("repo1-storage-port", repository.s3.port),
                  line("repo1-s3-region", repository.s3.region),
                  line("repo1-s3-uri-style", repository.s3.uriStyle),
                  ...(repository.s3.caFile ? [line("repo1-storage-ca-file", repository.s3.caFile)] : []),
              ]
            : []),
        line("repo1-cipher-type", "aes-256-cbc"),
        line("repo1-retention-full", pitr.retentionFull),
        line("process-max", pitr.processMax),
        line("compress-type", "zst"),
        line("start-fast", "y"),
        line("log-level-console", "warn"),
        line("log-level-file", "info"),
        line("log-path", PGBACKREST_DIRS.log),
        line("spool-path", PGBACKREST_DIRS.spool),
        // Not /tmp: the jobs' units have a private /tmp, and the server's archive-push and the deploy's check must see their locks.
        line("lock-path", PGBACKREST_DIRS.lock),
    ];
    // pgBackRest reaches the local cluster through its socket; a TCP postgresql.host keeps the default socket directory.
    const cluster = [line("pg1-path", pg.dataDir), line("pg1-port", pg.port), ...(pg.host.startsWith("/") ? [line("pg1-socket-path", pg.host)] : [])];
    const main = [
        `# Managed by hx-backup (stack ${config.stack}, key ${keyId}). Secrets: ${PGBACKREST_SECRETS_CONF}.`,
        "[global]",
        ...global,
        "",
        `[${stanza}]`,
        ...cluster,
        "",
    ].join("\n");
    return { stanza, repository, main };
}

/** The 0600 include file: the repository passphrase and, for S3, the credentials. */
export function renderPgbackrestSecrets(passphrase: string, s3?: { readonly accessKeyId: string; readonly secretAccessKey: string }): string {
    for (const [what, v] of [["passphrase", passphrase], ["s3 key", s3?.accessKeyId ?? ""], ["s3 secret", s3?.secretAccessKey ?? ""]] as const) {
        if (/[\r\n]/.test(v)) throw new Error(`pgBackRest ${what} must be one line`);
    }
    return ["[global]", `repo1-cipher-pass=${passphrase}`, ...(s3 ? [`repo1-s3-key=${s3.accessKeyId}`, `repo1-s3-key-secret=${s3.secretAccessKey}`] : []), ""].join("\n");
}

/** The archive_command ALTER SYSTEM sets (the stanza is ours: letters, digits, '.', '_' and '-'). */
export const archiveCommand = (stanza: string): string => `pgbackrest --stanza=${stanza} archive-push %p`;

/** Where pgBackRest writes on the host: its own directories, and a local repository. */
export function pgbackrestWritablePaths(config: StackConfig, host: HostSpec): string[] {
    const local = repositoryFor(config, host, "any").type === "posix";
    return [...Object.values(PGBACKREST_DIRS), ...(local ? [localRepositoryRoot(config)] : [])];
}

/** postgres's folder in the storage directory for the restore test's scratch cluster. */
export const pitrScratchDir = (config: StackConfig): string => `${config.paths.storageDir}/.pitr-scratch`;

/**
 * The deploy steps of PITR: pgBackRest's main config (refusing to replace one
 * that is not ours), its 0600 secret include, and archiving (settings, the
 * restart rule, stanza-create and check). Only for a host with postgresql.pitr.
 */
export function planPitrSteps(config: StackConfig, host: HostSpec, currentKeyId: string, after: readonly string[]): Step[] {
    const pg = host.postgresql;
    const pitr = pg?.pitr;
    if (!pg || !pitr) return [];
    const conf = renderPgbackrestConf(config, host, currentKeyId);
    const notOurs = stepScript("pgbackrest-config-guard", { host: host.name, conf: PGBACKREST_CONF });
    const configStep = filesStep("pgbackrest-config", [{ path: PGBACKREST_CONF, owner: "postgres", group: "postgres", mode: "0600", content: conf.main }], after);
    const secretFiles: PlannedSecretFile[] = [
        { path: PGBACKREST_SECRETS_CONF, owner: "postgres", group: "postgres", mode: "0600", secret: { kind: "pgbackrest", keyId: currentKeyId, s3: conf.repository.type === "s3" } },
    ];
    const p = config.paths;
    const values = {
        host: host.name,
        stanza: conf.stanza,
        data_dir: pg.dataDir,
        pg_host: pg.host,
        pg_port: pg.port,
        archive_command: archiveCommand(conf.stanza),
        archive_timeout: pitr.archiveTimeoutSeconds,
        allow_restart: pitr.allowRestart ? 1 : 0,
        repo_dir: conf.repository.type === "posix" ? conf.repository.path : "",
        scratch_dir: pitrScratchDir(config),
        storage_dir: p.storageDir,
        lock_dir: locksDir(config),
        log_dir: p.logDir,
        textfile_dir: p.textfileDir,
        pgbackrest_dirs: Object.values(PGBACKREST_DIRS).join(" "),
    };
    const removeValues = { stanza: conf.stanza, pg_host: pg.host, pg_port: pg.port, storage_dir: p.storageDir, lock_dir: values.lock_dir, log_dir: p.logDir, textfile_dir: p.textfileDir };
    return [
        { ...configStep, create: `${notOurs}\n${configStep.create}` },
        secretFilesStep("pgbackrest-secrets", secretFiles, after),
        {
            name: "pitr-archiving",
            create: stepScript("pitr-archiving", values),
            delete: stepScript("pitr-archiving-remove", removeValues),
            files: [],
            secretFiles: [],
            claims: [`postgresql:${host.postgresql!.host}:${host.postgresql!.port}:archive_command`],
            dependsOn: ["pgbackrest-config", "pgbackrest-secrets"],
            digest: digestOf({ values, conf: sha256(conf.main) }),
        },
    ];
}

/**
 * Starts the first full backup of a repository (first deploy, and after a key
 * rotation opens a new one) through the full job's unit, once the timers are
 * in place. It re-runs whenever archiving's step does: that step's digest
 * covers the repository and the restart rule.
 */
export function pitrFirstFullStep(host: HostSpec, archiving: Step, fullServiceUnit: string, after: readonly string[]): Step {
    const pg = host.postgresql!;
    const values = { host: host.name, stanza: stanzaName(host), unit: fullServiceUnit, pg_host: pg.host, pg_port: pg.port };
    return {
        name: "pitr-first-full",
        create: stepScript("pitr-first-full", values),
        files: [],
        secretFiles: [],
        dependsOn: [archiving.name, ...after],
        digest: digestOf({ values, archiving: archiving.digest }),
    };
}
