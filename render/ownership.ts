/**
 * Install records: every step claims what it installs on a host (its files, and
 * keys such as `user:<name>` for what is not a file) for the resource that runs
 * it, and its delete removes only what is still recorded for that resource. The
 * deploy's host read (templates/steps/host-read.sh) reports each step's repair
 * count and drift, which become the step's host state: a drifted step's host
 * state moves to the next repair, so preview shows it as an update and up runs
 * its install again, in place.
 */
import { INSTALL_RECORDS_DIR } from "./paths";
import { stepScript, type Step } from "./step";

/** Who runs a step: the stack (`<project>/<stack>`) and the resource (`<project>/<stack>/<resource name>`). */
export interface InstallIdentity {
    readonly stackId: string;
    readonly resource: string;
}

export const installIdentity = (project: string, stack: string, resourceName: string): InstallIdentity => ({
    stackId: `${project}/${stack}`,
    resource: `${project}/${stack}/${resourceName}`,
});

/** The record keys a step claims: its files' paths and its other claims. */
export function claimsOf(step: Step): string[] {
    return [...new Set([...step.files.map((f) => f.path), ...step.secretFiles.map((f) => f.path), ...(step.claims ?? [])])];
}

const records = () => stepScript("records", { hx_records: INSTALL_RECORDS_DIR });

/** `hx_step_remove PATH...`: the step's own removal of some of its paths (Step.remove), or nothing for a step whose files stay. */
const removalFunction = (step: Step) => `hx_step_remove() {\n${step.remove ?? ":\n"}}\n`;

/**
 * The step's create and delete with its install records: create claims its keys
 * first, and removes what the resource installed before but no longer does
 * (a dropped script or job); delete releases them, removes what is still its
 * own, and leaves the rest when another resource has claimed any of them since.
 * A step that claims something always has a delete, if only to release its
 * records (the keyring's keys stay).
 */
export function ownedStep(step: Step, id: InstallIdentity): { create: string; delete?: string } {
    const keys = claimsOf(step);
    const cleanup = step.cleanup ?? "";
    if (keys.length === 0) return { create: step.create, ...(step.delete || cleanup ? { delete: `${cleanup}${step.delete ?? ""}` } : {}) };
    const prelude = `${records()}${removalFunction(step)}`;
    const create = `${prelude}${stepScript("claim", { hx_resource: id.resource, hx_stack_id: id.stackId, hx_manifest_entry: step.manifestEntry ?? "" }, keys)}${step.create}`;
    const release = `${cleanup}${prelude}${stepScript("release", { hx_resource: id.resource }, keys)}`;
    return { create, delete: step.delete ? `${release}${step.delete}` : release };
}

/** The host state line a step's delete carries: it changes when, and only when, the host read finds drift to repair. */
export const withHostState = (script: string, state: string): string => `# hx-backup host state: ${state}\n${script}`;

// ------------------------------------------------------------- host read ---

/** The read script, run on the host with the request on stdin. */
export const hostReadScript = (): string => `${records()}${stepScript("host-read", {})}`;

/** One line per step that has a manifest entry: resource, tab, entry. */
export function hostReadRequest(steps: readonly { resource: string; manifestEntry: string }[]): string {
    return steps.map((s) => `${s.resource}\t${s.manifestEntry}\n`).join("");
}

export interface HostRead {
    /** By resource: its repair count (null before its first install) and how the host differs (empty when it does not). */
    readonly steps: ReadonlyMap<string, { readonly repairs: number | null; readonly drift: string }>;
    /** Every install record on the host. */
    readonly owners: readonly { readonly resource: string; readonly key: string }[];
}

export function parseHostRead(output: string): HostRead {
    const steps = new Map<string, { repairs: number | null; drift: string }>();
    const owners: { resource: string; key: string }[] = [];
    for (const line of output.split("\n")) {
        if (!line) continue;
        const [kind, ...f] = line.split("\t");
        if (kind === "R" && f.length >= 2) steps.set(f[0], { repairs: f[1] === "-" ? null : Number.parseInt(f[1], 10), drift: f.slice(2).join("\t") });
        else if (kind === "O" && f.length >= 2) owners.push({ resource: f[0], key: f.slice(1).join("\t") });
        else throw new Error(`unexpected line from the host read: ${JSON.stringify(line.slice(0, 200))}`);
        if (kind === "R" && f[1] !== "-" && !/^\d+$/.test(f[1])) throw new Error(`unexpected repair count from the host read: ${JSON.stringify(line.slice(0, 200))}`);
    }
    return { steps, owners };
}

/** A step's host state from the read: its repair count, or the next one when the host drifted (with what drifted). */
export function hostState(read: HostRead, resource: string): { state: string; drift?: string } {
    const s = read.steps.get(resource);
    if (!s || s.repairs === null) return { state: "repairs 0" };
    if (s.drift) return { state: `repairs ${s.repairs + 1}`, drift: s.drift };
    return { state: `repairs ${s.repairs}` };
}

/**
 * What the records say against this deploy, as errors that name the fix: keys
 * another stack installed (one machine, one stack), and a backup user this stack
 * installed under another name than `backupUser` (when given).
 */
export function readProblems(read: HostRead, hostName: string, stackId: string, claims: ReadonlySet<string>, backupUser: string | undefined): string[] {
    const problems: string[] = [];
    const foreign = read.owners.filter((o) => claims.has(o.key) && !o.resource.startsWith(`${stackId}/`));
    if (foreign.length) {
        const stacks = [...new Set(foreign.map((o) => o.resource.split("/").slice(0, 2).join("/")))];
        problems.push(
            `host ${hostName} is managed by another stack (${stacks.join(", ")}): ${foreign.length} of what this stack would install there is recorded for it, e.g. ${foreign[0].key} (${foreign[0].resource}). One machine is managed by one stack: remove the host from one of them (its pulumi up removes that install), then deploy the other.`,
        );
    }
    const users = backupUser === undefined ? [] : read.owners.filter((o) => o.key.startsWith("user:") && o.key !== `user:${backupUser}` && o.resource.startsWith(`${stackId}/`));
    for (const u of users) {
        const old = u.key.slice("user:".length);
        problems.push(
            `backupUser: host ${hostName}'s backup user is ${old} (installed by ${u.resource}); renaming it to ${backupUser} in place is refused, because its backups, keys, locks and logs belong to ${old}. Set backupUser back to ${old}, or rename as docs/operating.md "Changing a stack safely" says.`,
        );
    }
    return problems;
}
