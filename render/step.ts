/**
 * The shape every remote step has, for backup hosts and the monitoring host
 * alike, and the pieces steps are built from: a plain file install, the drift
 * manifest entry, the digest whose change re-runs a step, and step scripts rendered
 * from their static bodies in templates/steps.
 */
import type { StackConfig } from "../config/types";
import { manifestDir } from "./paths";
import { sha256, type FileTarget } from "./remote";
import { shellCommand, shellQuote } from "./shell";
import { readTemplate, STEP_TEMPLATE_DIR } from "./template";

export interface PlannedFile extends FileTarget {
    readonly content: string;
}

export type SecretRef =
    | { readonly kind: "key"; readonly keyId: string }
    | { readonly kind: "s3Credentials" }
    | { readonly kind: "redisAuth" }
    | { readonly kind: "pgpass" }
    | { readonly kind: "smtpPassword" }
    /** pgBackRest's include: the repository passphrase derived from key `keyId`, and the S3 keys when the repository is in the bucket. */
    | { readonly kind: "pgbackrest"; readonly keyId: string; readonly s3: boolean };

export interface PlannedSecretFile extends FileTarget {
    readonly secret: SecretRef;
}

export interface Step {
    /** Unique within the host; becomes part of the resource name. */
    readonly name: string;
    /** Step script (unwrapped; see wrapStep). Reads `stdin` when there is one. */
    readonly create: string;
    /** Undo on removal; omitted where removal must keep data (keys). */
    readonly delete?: string;
    /** Plain stdin (file content). Secret stdin is built by the component from `secretFiles`. */
    readonly stdin?: string;
    readonly files: readonly PlannedFile[];
    readonly secretFiles: readonly PlannedSecretFile[];
    /** Names of steps that must finish first. */
    readonly dependsOn: readonly string[];
    /** Non-secret digest of everything the step installs; it goes into the command text (withDigest). */
    readonly digest: string;
    /** What it installs besides its files, as install-record keys (`user:<name>`, `systemd:<timer>`, ...); render/ownership.ts. */
    readonly claims?: readonly string[];
    /** Its install manifest entry (withManifestEntry), against which the host read and the next install look for drift. */
    readonly manifestEntry?: string;
}

export const digestOf = (value: unknown): string => sha256(JSON.stringify(value));

/** The step script with its digest as a first comment line, so that a changed digest changes the command. */
export const withDigest = (script: string, digest: string): string => `# hx-backup step digest ${digest}\n${script}`;

/**
 * A command that gates a file install: it runs with the temp file as its last
 * argument, and the file replaces the target only when it passes
 * (e.g. `["visudo", "-cf"]`).
 */
export type FileCheck = readonly string[];

/** install-files.sh's positional parameters: path, owner, group and mode of each file. */
const fileFields = (targets: readonly FileTarget[]): string[] => targets.flatMap((t) => [t.path, t.owner, t.group, t.mode]);

/** Installs one file from stdin (templates/steps/install-files.sh), gated by `check` when given. */
export function installFileScript(target: FileTarget, check?: FileCheck): string {
    return stepScript("install-files", { from: "stdin", check: check ? shellCommand(...check) : "" }, fileFields([target]));
}

/** Installs several secret files; stdin carries one base64 line per file, in order. */
export function installSecretFilesScript(targets: readonly FileTarget[]): string {
    return stepScript("install-files", { from: "lines", check: "" }, fileFields(targets));
}

export function removeFilesScript(paths: readonly string[]): string {
    return stepScript("remove-files", {}, paths);
}

/** A step that installs one file from stdin; `check` gates the install, `delete` replaces the plain removal. */
export function fileStep(name: string, file: PlannedFile, dependsOn: string[], opts: { check?: FileCheck; delete?: string } = {}): Step {
    return {
        name,
        create: installFileScript(file, opts.check),
        delete: opts.delete ?? removeFilesScript([file.path]),
        stdin: file.content,
        files: [file],
        secretFiles: [],
        dependsOn,
        digest: digestOf({ path: file.path, mode: file.mode, owner: file.owner, group: file.group, content: sha256(file.content), check: opts.check ? shellCommand(...opts.check) : "" }),
    };
}

/**
 * A step that installs secret files from its (secret) stdin and removes them
 * on delete. A changed secret changes the stdin, which re-runs the step by itself.
 */
export function secretFilesStep(name: string, files: readonly PlannedSecretFile[], dependsOn: readonly string[]): Step {
    return {
        name,
        create: installSecretFilesScript(files),
        delete: removeFilesScript(files.map((f) => f.path)),
        files: [],
        secretFiles: files,
        dependsOn: [...dependsOn],
        digest: digestOf({ files }),
    };
}

/**
 * A step script from its static POSIX-sh body, templates/steps/<name>.sh. Only
 * data goes in front of the body: one assignment per value and, for a list, the
 * positional parameters (`set -- ...`), every value through shellQuote.
 */
export function stepScript(name: string, values: Readonly<Record<string, string | number>>, list?: readonly string[]): string {
    const assignments = Object.entries(values).map(([variable, value]) => `${variable}=${shellQuote(value)}\n`);
    // An empty list still sets the positional parameters, so the body never sees its caller's.
    const positional = list ? [`set --${list.map((item) => ` ${shellQuote(item)}`).join("")}\n`] : [];
    return [...assignments, ...positional, readTemplate(`${STEP_TEMPLATE_DIR}/${name}.sh`)].join("");
}

/** One manifest line per file: path, owner, group, mode, sha256 ("-" for secrets: no hash of a secret leaves Pulumi). */
export function manifestLines(files: readonly PlannedFile[], secretFiles: readonly PlannedSecretFile[]): string {
    return [
        ...files.map((f) => [f.path, f.owner, f.group, f.mode, sha256(f.content)].join("\t")),
        ...secretFiles.map((f) => [f.path, f.owner, f.group, f.mode, "-"].join("\t")),
    ].map((l) => `${l}\n`).join("");
}

/**
 * Makes a step also write (and on delete remove) its manifest entry,
 * `<configDir>/manifest.d/<step>.tsv`. The entry is listed among the step's files.
 */
export function withManifestEntry(config: StackConfig, step: Step): Step {
    if (step.files.length === 0 && step.secretFiles.length === 0) return step;
    const entry: PlannedFile = {
        path: `${manifestDir(config)}/${step.name}.tsv`,
        owner: "root",
        group: "root",
        mode: "0644",
        content: manifestLines(step.files, step.secretFiles),
    };
    const write = stepScript("manifest-entry", { manifest_dir: manifestDir(config), manifest_entry: entry.path, manifest_lines: entry.content });
    return {
        ...step,
        create: `${step.create}\n${write}`,
        // Steps without a delete keep their files (the keyring), and so keep their entry.
        ...(step.delete ? { delete: `${step.delete}\n${removeFilesScript([entry.path])}` } : {}),
        files: [...step.files, entry],
        manifestEntry: entry.path,
    };
}
