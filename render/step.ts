/**
 * The shape every remote step has, for backup hosts and the monitoring host
 * alike, and the pieces steps are built from: a group of files installed from
 * one document on stdin, secret files, the drift manifest entry, the digest
 * whose change re-runs a step, and step scripts rendered from their static
 * bodies in templates/steps.
 */
import type { StackConfig } from "../config/types";
import { manifestDir, UNIT_DIR } from "./paths";
import { sha256, type FileTarget } from "./remote";
import { shellCommand, shellQuote } from "./shell";
import { stepTemplate } from "./template";

export interface PlannedFile extends FileTarget {
    readonly content: string;
    /** Installed without its step's check (the step's manifest entry, which is not, say, sudoers). Default: checked. */
    readonly unchecked?: boolean;
    /**
     * Where the host already has the file's bytes: its path inside the host's stage (a copy of a release folder, see
     * `StagedFolder`). Its content then stays out of the step's stdin, which carries only its header and sha256.
     * Default: none (the content travels in the stdin).
     */
    readonly staged?: string;
}

/**
 * A local folder of static files that a host receives as a copy (the host component's CopyToRemote), so that
 * a step's stdin and the state carry their digests instead of their bytes.
 */
export interface StagedFolder {
    /** The local folder (absolute); the host gets it as `<remotePath>/<its name>/...`. */
    readonly source: string;
    /** Where on the host, relative to the SSH user's home (as SFTP resolves it). */
    readonly remotePath: string;
    /** The SSH user, whose home the install step looks the stage up in. */
    readonly user: string;
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
    /**
     * Removes the installed paths named by its positional parameters (templates/steps/remove-files.sh): what an
     * update no longer installs, and, when another resource has taken some of the step's paths over, the rest.
     * Omitted where files must stay (keys).
     */
    readonly remove?: string;
    /** Plain stdin: for a step with `files`, their document (filesDocument). Secret stdin is built by the component from `secretFiles`. */
    readonly stdin?: string;
    /** Plain files, installed from the document on stdin (filesDocument) by templates/steps/install-files.sh (only those that differ are rewritten); a secret step's one plain file is its manifest entry, which its script writes. */
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
    /** The folder the host must hold before the step runs: the bytes of its staged files. Default: none. */
    readonly stage?: StagedFolder;
    /** Runs first on delete, before the install records decide what is still the step's own: what only this step uses (its stage). Default: none. */
    readonly cleanup?: string;
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

/** install-files.sh's positional parameters for secrets: path, owner, group and mode of each file. */
const fileFields = (targets: readonly FileTarget[]): string[] => targets.flatMap((t) => [t.path, t.owner, t.group, t.mode]);

/** Installs several secret files; stdin carries one base64 line per file, in order. */
export function installSecretFilesScript(targets: readonly FileTarget[]): string {
    return stepScript("install-files", { from: "lines", check: "", stage_user: "", stage_dir: "" }, fileFields(targets));
}

/**
 * Installs the files of the document on stdin (filesDocument), each gated by `check` when given; a staged file's
 * bytes come from `stage`. The document carries every byte or digest, so the script text is the same whatever the files hold.
 */
export function installFilesScript(check?: FileCheck, stage?: StagedFolder): string {
    return stepScript("install-files", { from: "document", check: check ? shellCommand(...check) : "", stage_user: stage?.user ?? "", stage_dir: stage?.remotePath ?? "" });
}

/** Removes the paths named by its positional parameters, or by `paths`; a systemd unit is stopped and disabled first. */
export function removeFilesScript(paths?: readonly string[]): string {
    return stepScript("remove-files", { unit_dir: UNIT_DIR }, paths);
}

/** `compute(content)`, once per distinct large content in a run: the static scripts repeat on every host. */
function perContent(cache: Map<string, string>, content: string, compute: (content: string) => string): string {
    let value = cache.get(content);
    if (value === undefined) {
        value = compute(content);
        if (content.length > 256) cache.set(content, value);
    }
    return value;
}

const digests = new Map<string, string>();
/** sha256 of a file's content. */
export const contentSha256 = (content: string): string => perContent(digests, content, sha256);

/** The first line of a files document: an `@` line, which no JSON or YAML reader takes for a document of its own. */
export const FILES_DOCUMENT_HEADER = "@hx-backup files 1";

/**
 * The stdin of a step with files, a text that `pulumi preview --diff` shows as a line diff: per file, a header
 * line `@file<TAB>path<TAB>owner<TAB>group<TAB>mode<TAB>sha256<TAB>final newline (1 or 0)<TAB>checked|unchecked`,
 * then each line of its content behind a `|`. A staged file's header ends in `<TAB>staged:<its path in the stage>`,
 * and no lines follow it. A changed file shows as its changed header (path and new sha256) and its changed lines.
 */
export function filesDocument(files: readonly PlannedFile[]): string {
    const parts = [`${FILES_DOCUMENT_HEADER}\n`];
    for (const f of files) {
        const finalNewline = f.content.endsWith("\n");
        const header = `@file\t${f.path}\t${f.owner}\t${f.group}\t${f.mode}\t${contentSha256(f.content)}\t${finalNewline ? 1 : 0}\t${f.unchecked ? "unchecked" : "checked"}`;
        parts.push(f.staged === undefined ? `${header}\n` : `${header}\tstaged:${f.staged}\n`, f.staged === undefined ? documentLines(f.content) : "");
    }
    return parts.join("");
}

const documentLinesOf = new Map<string, string>();
/** A content's lines behind "|" (its final newline is in the header). */
function documentLines(content: string): string {
    if (content === "") return "";
    return perContent(documentLinesOf, content, (c) => `|${(c.endsWith("\n") ? c.slice(0, -1) : c).split("\n").join("\n|")}\n`);
}

/**
 * A step that installs a group of files from its stdin (filesDocument), rewriting only those that differ from the host;
 * `check` gates each file, `after` runs once they are in place, `delete` replaces the plain removal.
 */
export function filesStep(name: string, files: readonly PlannedFile[], dependsOn: readonly string[], opts: { check?: FileCheck; after?: string; delete?: string; stage?: StagedFolder } = {}): Step {
    const paths = files.map((f) => f.path);
    if (new Set(paths).size !== paths.length) throw new Error(`step ${name}: a path is listed twice: ${paths.join(", ")}`);
    // The files document's header lines are tab-separated.
    const unlistable = files.find((f) => [f.path, f.owner, f.group, f.mode, f.staged ?? ""].some((v) => /[\u0000-\u001f\u007f]/.test(v)) || !f.path.startsWith("/"));
    if (unlistable) throw new Error(`step ${name}: cannot install ${JSON.stringify(unlistable.path)}: a path must be absolute, and no path, owner, group, mode or staged path may hold a control character`);
    const unstaged = files.find((f) => f.staged !== undefined && (opts.stage === undefined || f.staged.startsWith("/") || f.staged.split("/").includes("..")));
    if (unstaged) throw new Error(`step ${name}: ${unstaged.path} is staged at ${JSON.stringify(unstaged.staged)}, which needs the step's stage and a path inside it`);
    if (opts.stage && (/^\/|(^|\/)\.\.(\/|$)/.test(opts.stage.remotePath) || /[\u0000-\u001f\u007f]/.test(opts.stage.remotePath))) {
        throw new Error(`step ${name}: the stage ${JSON.stringify(opts.stage.remotePath)} must be a path inside the SSH user's home (relative, without "..")`);
    }
    const stage = files.some((f) => f.staged !== undefined) ? opts.stage : undefined;
    const install = installFilesScript(opts.check, stage);
    return {
        name,
        create: opts.after ? `${install}\n${opts.after}` : install,
        delete: opts.delete ?? removeFilesScript(paths),
        remove: removeFilesScript(),
        stdin: filesDocument(files),
        files,
        secretFiles: [],
        dependsOn: [...dependsOn],
        ...(stage ? { stage, cleanup: stepScript("stage-remove", { stage_user: stage.user, stage_dir: stage.remotePath }) } : {}),
        // Names what the step installs (the step log of the engine tests tells steps and their versions apart by it).
        digest: digestOf({ files: files.map((f) => [f.path, f.owner, f.group, f.mode, contentSha256(f.content)]), check: opts.check ?? [], after: opts.after ?? "" }),
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
        remove: removeFilesScript(),
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
    return [...assignments, ...positional, stepTemplate(name)].join("");
}

/** One manifest line per file: path, owner, group, mode, sha256 ("-" for secrets: no hash of a secret leaves Pulumi). */
export function manifestLines(files: readonly PlannedFile[], secretFiles: readonly PlannedSecretFile[]): string {
    return [
        ...files.map((f) => [f.path, f.owner, f.group, f.mode, contentSha256(f.content)].join("\t")),
        ...secretFiles.map((f) => [f.path, f.owner, f.group, f.mode, "-"].join("\t")),
    ].map((l) => `${l}\n`).join("");
}

/**
 * Makes a step also write (and on delete remove) its manifest entry,
 * `<configDir>/manifest.d/<step>.tsv`. The entry is listed among the step's
 * files: a step with files installs it from its stdin, after them; a step
 * with secret files only writes it with templates/steps/manifest-entry.sh.
 */
export function withManifestEntry(config: StackConfig, step: Step): Step {
    if (step.files.length === 0 && step.secretFiles.length === 0) return step;
    const entry: PlannedFile = {
        path: `${manifestDir(config)}/${step.name}.tsv`,
        owner: "root",
        group: "root",
        mode: "0644",
        content: manifestLines(step.files, step.secretFiles),
        unchecked: true,
    };
    if (step.files.length > 0) {
        if (step.stdin === undefined) throw new Error(`step ${step.name}: files without their document on stdin`);
        const files = [...step.files, entry];
        return {
            ...step,
            // Steps without a delete keep their files, and so keep their entry.
            ...(step.delete ? { delete: `${step.delete}\n${removeFilesScript([entry.path])}` } : {}),
            stdin: filesDocument(files),
            files,
            manifestEntry: entry.path,
        };
    }
    const write = stepScript("manifest-entry", { manifest_dir: manifestDir(config), manifest_entry: entry.path, manifest_lines: entry.content });
    return {
        ...step,
        create: `${step.create}\n${write}`,
        ...(step.delete ? { delete: `${step.delete}\n${removeFilesScript([entry.path])}` } : {}),
        files: [entry],
        manifestEntry: entry.path,
    };
}
