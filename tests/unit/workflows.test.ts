/**
 * The CI workflows in .github/workflows: every file passes action-validator
 * (the GitHub workflow JSON schema), every action is pinned, secrets come only
 * from the repository's secrets store, and the preview, drift and test jobs do
 * what docs/operating.md promises. Each check is also shown to fail on a bad input.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { PROCEDURES } from "../../scripts/lib/engine";

const ROOT = path.resolve(__dirname, "..", "..");
const WORKFLOW_DIR = path.join(ROOT, ".github", "workflows");
const tmp = mkdtempSync(path.join(tmpdir(), "hx-workflows-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The stacks of this project: one Pulumi.<stack>.yaml each. */
const STACKS = readdirSync(ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => !!s)
    .sort();

/** Every secret the workflows may use; each must exist in the repository's secrets store. */
const KNOWN_SECRETS = ["AWS_ROLE_ARN", "GITHUB_TOKEN", "HX_SSH_PRIVATE_KEY", "PULUMI_ACCESS_TOKEN"];

type Dict = Record<string, unknown>;
interface Step {
    name?: string;
    id?: string;
    if?: string;
    uses?: string;
    run?: string;
    with?: Dict;
    env?: Dict;
    "continue-on-error"?: unknown;
}
interface Job {
    name?: string;
    if?: string;
    uses?: string;
    "runs-on"?: unknown;
    strategy?: { "fail-fast"?: boolean; matrix?: Dict };
    env?: Dict;
    steps?: Step[];
}
interface Workflow {
    name?: string;
    on?: unknown;
    permissions?: unknown;
    concurrency?: unknown;
    env?: Dict;
    jobs: Record<string, Job>;
}

const workflowFiles = existsSync(WORKFLOW_DIR)
    ? readdirSync(WORKFLOW_DIR)
          .filter((f) => /\.ya?ml$/.test(f))
          .sort()
    : [];
const readWorkflow = (file: string): { text: string; wf: Workflow } => {
    const text = readFileSync(path.join(WORKFLOW_DIR, file), "utf8");
    return { text, wf: parse(text) as Workflow };
};

// ---------------------------------------------------------------- validator

const validatorCli = createRequire(path.join(ROOT, "package.json")).resolve("@action-validator/cli/cli.mjs");

/** Runs `action-validator <file>` (the @action-validator/cli bin) as a user would. */
function validate(file: string): { status: number | null; output: string } {
    const r = spawnSync(process.execPath, [validatorCli, file], { encoding: "utf8", timeout: 60_000 });
    return { status: r.status, output: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ""}` };
}

// ---------------------------------------------------------------- checks (each returns problems, empty when fine)

function steps(wf: Workflow): { job: string; step: Step }[] {
    return Object.entries(wf.jobs ?? {}).flatMap(([job, j]) => (j.steps ?? []).map((step) => ({ job, step })));
}

/** Every `uses:` names a version tag (v6, v4.1.2) or a full commit SHA: never a branch like @main. */
function unpinnedUses(wf: Workflow): string[] {
    const uses = [
        ...Object.values(wf.jobs ?? {}).flatMap((j) => (j.uses ? [j.uses] : [])),
        ...steps(wf).flatMap(({ step }) => (step.uses ? [step.uses] : [])),
    ];
    const pinned = /^(?:[\w.-]+\/[\w.-]+(?:\/[\w./-]+)?@(?:v\d+(?:\.\d+){0,2}|[0-9a-f]{40})|\.\/[\w./-]+|docker:\/\/[^@:\s]+(?::(?!latest$)[\w][\w.-]*|@sha256:[0-9a-f]{64}))$/;
    return uses.filter((u) => !pinned.test(u)).map((u) => `uses: ${u} is not pinned to a version tag or commit SHA`);
}

const LITERAL_SECRETS: [string, RegExp][] = [
    ["an AWS access key id", /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/],
    ["an AWS secret access key", /aws[_-]?secret[_-]?access[_-]?key\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}/i],
    ["a PEM or OpenSSH private key", /-----BEGIN/],
    ["a Pulumi access token", /\bpul-[0-9a-f]{40}\b/],
    ["a GitHub token", /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/],
];

/** Literal-looking credentials anywhere in the file, comments included. */
function literalSecrets(text: string): string[] {
    return LITERAL_SECRETS.filter(([, re]) => re.test(text)).map(([what]) => `the file contains what looks like ${what}`);
}

/** Calls `visit` for every mapping key and string value, with its path. */
function walk(node: unknown, visit: (where: string, key: string | undefined, value: unknown) => void, where = ""): void {
    if (Array.isArray(node)) node.forEach((v, i) => walk(v, visit, `${where}[${i}]`));
    else if (node && typeof node === "object")
        for (const [k, v] of Object.entries(node)) {
            visit(`${where}.${k}`, k, v);
            walk(v, visit, `${where}.${k}`);
        }
}

const EXPRESSION = /\$\{\{([\s\S]*?)\}\}/g;
const SECRET_REF = /^\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*$/;
/** Names of inputs and variables that carry credentials. */
const SENSITIVE_NAME = /token|secret|password|passphrase|private[-_]?key|access[-_]?key|credential|role-to-assume|role[-_]arn/i;

/** Names of the secrets a workflow uses, from its `${{ secrets.NAME }}` expressions. */
function secretNames(wf: Workflow): string[] {
    const names = new Set<string>();
    walk(wf, (_where, _key, value) => {
        if (typeof value !== "string") return;
        for (const m of value.matchAll(EXPRESSION)) {
            const ref = SECRET_REF.exec(m[1]!);
            if (ref) names.add(ref[1]!);
        }
    });
    return [...names].sort();
}

/**
 * Secrets are referenced only as `${{ secrets.NAME }}`: never indexed or
 * dumped (`toJSON(secrets)`), never passed wholesale (`secrets: inherit`),
 * never pasted into a `run:` script (they go through `env:`), and every
 * credential-like input or variable takes its value from the secrets store.
 */
function secretProblems(wf: Workflow): string[] {
    const problems: string[] = [];
    walk(wf, (where, key, value) => {
        if (key === "secrets") problems.push(`${where}: secrets are passed wholesale`);
        if (typeof value !== "string") return;
        for (const m of value.matchAll(EXPRESSION))
            if (/\bsecrets\b/.test(m[1]!) && !SECRET_REF.test(m[1]!)) problems.push(`${where}: \${{${m[1]}}} uses secrets other than as secrets.NAME`);
        if (key === "run" && /\$\{\{[^}]*\bsecrets\./.test(value)) problems.push(`${where}: a run script interpolates a secret; pass it through env:`);
    });
    const maps: [string, Dict | undefined][] = [
        ["env", wf.env],
        ...Object.entries(wf.jobs ?? {}).map(([id, j]): [string, Dict | undefined] => [`jobs.${id}.env`, j.env]),
        ...steps(wf).flatMap(({ job, step }, i): [string, Dict | undefined][] => [
            [`jobs.${job}.steps[${i}].env`, step.env],
            [`jobs.${job}.steps[${i}].with`, step.with],
        ]),
    ];
    for (const [where, map] of maps)
        for (const [k, v] of Object.entries(map ?? {}))
            if (SENSITIVE_NAME.test(k) && !(typeof v === "string" && /^\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}$/.test(v)))
                problems.push(`${where}.${k}: a credential must be exactly \${{ secrets.NAME }}, not ${JSON.stringify(v)}`);
    return problems;
}

// ---------------------------------------------------------------- helpers for the job checks

const stepIndex = (list: Step[], pred: (s: Step) => boolean): number => list.findIndex(pred);
const usesAction = (action: string) => (s: Step) => typeof s.uses === "string" && s.uses.startsWith(`${action}@`);
const runs = (re: RegExp) => (s: Step) => typeof s.run === "string" && re.test(s.run);
const triggers = (wf: Workflow): Dict => (typeof wf.on === "string" ? { [wf.on]: null } : Array.isArray(wf.on) ? Object.fromEntries(wf.on.map((t) => [t, null])) : ((wf.on as Dict) ?? {}));
const onlyJob = (wf: Workflow): Job => {
    const jobs = Object.values(wf.jobs ?? {});
    expect(jobs).toHaveLength(1);
    return jobs[0]!;
};

/** Runs a step's `run:` script the way GitHub runs it on Linux (`bash -e -o pipefail`). */
function runScript(script: string, env: Record<string, string>) {
    return spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", script], {
        encoding: "utf8",
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    });
}

function setupNodeProblems(list: Step[]): string[] {
    const setup = list.find(usesAction("actions/setup-node"));
    if (!setup) return ["no actions/setup-node step"];
    const problems: string[] = [];
    if (String(setup.with?.["node-version"]) !== "20") problems.push(`setup-node installs Node ${String(setup.with?.["node-version"])}, not 20`);
    if (setup.with?.cache !== "npm") problems.push("setup-node does not cache npm");
    return problems;
}

/** The test job keeps test-artifacts/: one upload-artifact step after .ci/run that runs even when the tests failed. */
function artifactUploadProblems(list: Step[]): string[] {
    const uploads = list.filter(usesAction("actions/upload-artifact"));
    if (uploads.length !== 1) return [`${uploads.length} actions/upload-artifact steps, not 1`];
    const upload = uploads[0]!;
    const problems: string[] = [];
    if (upload.if !== "always()") problems.push(`the upload runs if: ${String(upload.if)}, not always()`);
    if (String(upload.with?.path).replace(/\/$/, "") !== "test-artifacts") problems.push(`the upload's path is ${String(upload.with?.path)}, not test-artifacts/`);
    const ciRun = list.findIndex(runs(/\bbash \.ci\/run$/));
    if (ciRun < 0) problems.push("no step runs bash .ci/run");
    else if (list.indexOf(upload) < ciRun) problems.push("the upload comes before .ci/run");
    return problems;
}

// ---------------------------------------------------------------- tests

describe("CI workflows: schema validation (action-validator)", () => {
    it("has the preview, deploy, drift and test workflows", () => {
        expect(workflowFiles).toEqual(expect.arrayContaining(["deploy.yml", "drift.yml", "preview.yml", "test.yml"]));
        expect(STACKS).toEqual(["production", "sandbox"]);
    });

    it.each(workflowFiles)("%s passes action-validator", (file) => {
        const r = validate(path.join(WORKFLOW_DIR, file));
        expect(r.output.trim(), r.output).toBe("");
        expect(r.status, r.output).toBe(0);
    });

    const broken: [string, string][] = [
        ["a step with both uses and run", "name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        run: echo hi\n"],
        ["a job without runs-on (misspelled)", "name: x\non: push\njobs:\n  a:\n    run-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"],
        ["a misspelled trigger", "name: x\non:\n  shedule:\n    - cron: '0 0 * * *'\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"],
        ["invalid YAML", "name: x\non: [push\njobs: {}\n"],
    ];
    it.each(broken)("rejects a broken workflow: %s", (what, text) => {
        const file = path.join(tmp, `${what.replace(/\W+/g, "-")}.yml`);
        writeFileSync(file, text);
        const r = validate(file);
        expect(r.status, r.output).toBe(1);
        expect(r.output).toMatch(/"errors"/);
    });

    it("rejects the real preview workflow with one invalid permission value", () => {
        const { text } = readWorkflow("preview.yml");
        expect(text).toMatch(/pull-requests: write/);
        const file = path.join(tmp, "preview-broken.yml");
        writeFileSync(file, text.replace("pull-requests: write", "pull-requests: writ"));
        const r = validate(file);
        expect(r.status, r.output).toBe(1);
        expect(r.output).toMatch(/permissions/);
    });
});

describe("CI workflows: pinned actions and secrets", () => {
    it.each(workflowFiles)("%s pins every action to a version tag or commit SHA", (file) => {
        const { wf } = readWorkflow(file);
        expect(unpinnedUses(wf)).toEqual([]);
        expect(steps(wf).length).toBeGreaterThan(0);
    });

    it.each(workflowFiles)("%s contains no literal credential and takes secrets only as ${{ secrets.NAME }}", (file) => {
        const { text, wf } = readWorkflow(file);
        expect(literalSecrets(text)).toEqual([]);
        expect(secretProblems(wf)).toEqual([]);
        expect(secretNames(wf).filter((n) => !KNOWN_SECRETS.includes(n))).toEqual([]);
        expect(typeof wf.permissions, "an explicit least-privilege permissions block").toBe("object");
    });

    it("uses exactly the documented secrets in each workflow", () => {
        expect(secretNames(readWorkflow("preview.yml").wf)).toEqual(["AWS_ROLE_ARN", "GITHUB_TOKEN", "PULUMI_ACCESS_TOKEN"]);
        expect(secretNames(readWorkflow("drift.yml").wf)).toEqual(["AWS_ROLE_ARN", "HX_SSH_PRIVATE_KEY", "PULUMI_ACCESS_TOKEN"]);
        expect(secretNames(readWorkflow("test.yml").wf)).toEqual([]);
    });

    it("flags unpinned actions", () => {
        const wf = parse(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n" +
                "      - uses: actions/checkout@main\n      - uses: pulumi/actions@master\n      - uses: actions/setup-node\n" +
                "      - uses: docker://alpine:latest\n      - uses: actions/cache@v4\n      - uses: actions/checkout@" + "a".repeat(40) + "\n",
        ) as Workflow;
        expect(unpinnedUses(wf)).toEqual([
            "uses: actions/checkout@main is not pinned to a version tag or commit SHA",
            "uses: pulumi/actions@master is not pinned to a version tag or commit SHA",
            "uses: actions/setup-node is not pinned to a version tag or commit SHA",
            "uses: docker://alpine:latest is not pinned to a version tag or commit SHA",
        ]);
    });

    it("flags literal credentials", () => {
        // Built at run time so that this file holds no credential-shaped string itself.
        const samples = [
            `env:\n  AWS_ACCESS_KEY_ID: AKIA${"Q".repeat(16)}\n`,
            `# ${"-".repeat(5)}BEGIN OPENSSH PRIVATE KEY${"-".repeat(5)}\n`,
            `env:\n  PULUMI_ACCESS_TOKEN: pul-${"0a".repeat(20)}\n`,
            `with:\n  github-token: ghp_${"x".repeat(36)}\n`,
            `env:\n  AWS_SECRET_ACCESS_KEY: ${"k".repeat(40)}\n`,
        ];
        for (const s of samples) expect(literalSecrets(s), s).toHaveLength(1);
        expect(literalSecrets("env:\n  PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n")).toEqual([]);
    });

    it("flags secrets used other than as ${{ secrets.NAME }}", () => {
        const wf = parse(
            [
                "on: push",
                "jobs:",
                "  a:",
                "    runs-on: ubuntu-latest",
                "    env:",
                "      ALL: ${{ toJSON(secrets) }}",
                "    steps:",
                "      - run: echo ${{ secrets.PULUMI_ACCESS_TOKEN }}",
                "      - uses: pulumi/actions@v6",
                "        with:",
                "          github-token: not-from-the-store",
                "        env:",
                "          PULUMI_ACCESS_TOKEN: ${{ secrets['PULUMI_ACCESS_TOKEN'] }}",
                "  b:",
                "    uses: ./.github/workflows/other.yml",
                "    secrets: inherit",
            ].join("\n"),
        ) as Workflow;
        const problems = secretProblems(wf);
        expect(problems.join("\n")).toMatch(/jobs\.a\.env\.ALL: .*toJSON\(secrets\)/);
        expect(problems.join("\n")).toMatch(/run script interpolates a secret/);
        expect(problems.join("\n")).toMatch(/with\.github-token: a credential must be exactly/);
        expect(problems.join("\n")).toMatch(/env\.PULUMI_ACCESS_TOKEN: .*secrets\['PULUMI_ACCESS_TOKEN'\]/);
        expect(problems.join("\n")).toMatch(/jobs\.b\.secrets: secrets are passed wholesale/);
    });
});

describe("CI workflows: pull request previews", () => {
    const { wf } = readWorkflow("preview.yml");
    const job = onlyJob(wf);
    const list = job.steps ?? [];

    it("runs on pull requests with the permissions to comment and to get an OIDC token", () => {
        expect(Object.keys(triggers(wf))).toEqual(["pull_request"]);
        expect(wf.permissions).toEqual({ contents: "read", "pull-requests": "write", "id-token": "write" });
    });

    it("previews production with pulumi/actions, commenting on the PR", () => {
        expect((job.strategy?.matrix?.stack as string[]).slice().sort()).toEqual(STACKS);
        expect(job.strategy?.["fail-fast"]).toBe(false);
        const pulumi = list.filter(usesAction("pulumi/actions"));
        expect(pulumi).toHaveLength(1);
        expect(pulumi[0]!.uses).toMatch(/^pulumi\/actions@v\d+$/);
        expect(pulumi[0]!.if).toBe("matrix.stack == 'production'");
        expect(pulumi[0]!.with).toMatchObject({
            command: "preview",
            "stack-name": "${{ matrix.stack }}",
            "github-token": "${{ secrets.GITHUB_TOKEN }}",
        });
        expect(String(pulumi[0]!.with?.["comment-on-pr"])).toBe("true");
        expect(pulumi[0]!.env).toEqual({ PULUMI_ACCESS_TOKEN: "${{ secrets.PULUMI_ACCESS_TOKEN }}" });
    });

    it("deploys the sandbox afresh on the runner as root, previews it expecting no changes, and always tears it down", () => {
        const sandbox = (re: RegExp) => {
            const at = stepIndex(list, runs(re));
            expect(list[at]!.if, String(re)).toMatch(/matrix\.stack == 'sandbox'$/);
            return at;
        };
        const deploy = sandbox(/^sudo -E env "PATH=\$PATH" npm run sandbox$/);
        const preview = sandbox(new RegExp(`^sudo -E env "PATH=\\$PATH" npm run sandbox -- --pulumi ${PROCEDURES.preview.join(" ")} --expect-no-changes$`));
        const down = sandbox(/^sudo -E env "PATH=\$PATH" npm run sandbox -- --down$/);
        expect(list[down]!.if).toBe("always() && matrix.stack == 'sandbox'");
        expect(deploy).toBeLessThan(preview);
        expect(preview).toBeLessThan(down);
        expect(down).toBe(list.length - 1);
    });

    it("installs Node 20 and the dependencies (the program runs under node --import tsx) before the preview", () => {
        expect(setupNodeProblems(list)).toEqual([]);
        const setup = stepIndex(list, usesAction("actions/setup-node"));
        const install = stepIndex(list, runs(/^npm ci\b/));
        const preview = stepIndex(list, usesAction("pulumi/actions"));
        expect(stepIndex(list, usesAction("actions/checkout"))).toBe(0);
        expect(setup).toBeGreaterThan(0);
        expect(install).toBeGreaterThan(setup);
        expect(preview).toBeGreaterThan(install);
        expect(readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")).toMatch(/nodeargs: --import tsx/);
    });

    it("runs the program with node flags this Node accepts (a V8 flag dropped by a Node upgrade would fail every deploy)", () => {
        const project = parse(readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as { runtime: { options: { nodeargs: string } } };
        const args = project.runtime.options.nodeargs.split(" ");
        expect(args).toContain("--heap-growing-percent=50");
        const run = spawnSync(process.execPath, [...args, "--eval", "process.stdout.write('ran')"], { cwd: ROOT, encoding: "utf8" });
        expect(run.stderr).toBe("");
        expect(run.stdout).toBe("ran");
    });

    it("gets AWS credentials through OIDC for production only, in the stack's region", () => {
        const aws = list.filter(usesAction("aws-actions/configure-aws-credentials"));
        expect(aws).toHaveLength(1);
        expect(aws[0]!.if).toBe("matrix.stack == 'production'");
        const region = (parse(readFileSync(path.join(ROOT, "Pulumi.production.yaml"), "utf8")) as { config: Dict }).config["aws:region"];
        expect(aws[0]!.with).toMatchObject({ "role-to-assume": "${{ secrets.AWS_ROLE_ARN }}", "aws-region": region });
        expect(stepIndex(list, usesAction("aws-actions/configure-aws-credentials"))).toBeLessThan(stepIndex(list, usesAction("pulumi/actions")));
    });
});

describe("CI workflows: scheduled drift detection", () => {
    const { wf } = readWorkflow("drift.yml");
    const job = onlyJob(wf);
    const list = job.steps ?? [];
    const named = (re: RegExp): Step => {
        const s = list.find((x) => re.test(x.name ?? ""));
        expect(s, `a step named ${re}`).toBeDefined();
        return s!;
    };

    it("runs on a schedule and on demand, never two runs at once", () => {
        const on = triggers(wf);
        expect(Object.keys(on).sort()).toEqual(["schedule", "workflow_dispatch"]);
        const crons = (on.schedule as { cron: string }[]).map((s) => s.cron);
        expect(crons.length).toBeGreaterThan(0);
        for (const c of crons) expect(c.split(/\s+/).map((f) => /^[\d*/,-]+$/.test(f))).toEqual([true, true, true, true, true]);
        expect(wf.concurrency).toMatchObject({ "cancel-in-progress": false });
        expect((wf.concurrency as Dict).group).toBeTruthy();
        expect(wf.permissions).toEqual({ contents: "read", "id-token": "write" });
    });

    it("checks every stack", () => {
        expect((job.strategy?.matrix?.stack as string[]).slice().sort()).toEqual(STACKS);
        expect(job.strategy?.["fail-fast"]).toBe(false);
    });

    it("refreshes the cloud resources as a preview that expects no changes, with the CLI pulumi/actions installs", () => {
        const cloud = list.filter(runs(/\bpulumi refresh\b/));
        expect(cloud).toHaveLength(1);
        const run = cloud[0]!.run!;
        for (const flag of ["--preview-only", "--expect-no-changes", "--non-interactive", '--stack "$STACK"']) expect(run).toContain(flag);
        expect(cloud[0]!.env).toMatchObject({ PULUMI_ACCESS_TOKEN: "${{ secrets.PULUMI_ACCESS_TOKEN }}", STACK: "${{ matrix.stack }}" });
        const install = list.findIndex(usesAction("pulumi/actions"));
        expect(list[install]!.uses).toMatch(/^pulumi\/actions@v\d+$/);
        expect(list[install]!.with?.command, "install only: the action's refresh command would write the state").toBeUndefined();
        expect(install).toBeLessThan(list.indexOf(cloud[0]!));
        const aws = list.findIndex(usesAction("aws-actions/configure-aws-credentials"));
        expect(list[aws]!.if).toBe("matrix.stack == 'production'");
        expect(list[aws]!.with).toMatchObject({ "role-to-assume": "${{ secrets.AWS_ROLE_ARN }}" });
        expect(aws).toBeLessThan(list.indexOf(cloud[0]!));
    });

    it("checks the hosts with npm run drift, after the dependencies and the SSH key", () => {
        expect(setupNodeProblems(list)).toEqual([]);
        const hosts = list.filter(runs(/\bnpm run drift -- --stack "\$STACK"/));
        expect(hosts).toHaveLength(1);
        expect(hosts[0]!.env).toMatchObject({ STACK: "${{ matrix.stack }}" });
        const at = list.indexOf(hosts[0]!);
        expect(stepIndex(list, runs(/^npm ci\b/))).toBeLessThan(at);
        expect(list.indexOf(named(/^SSH key/))).toBeLessThan(at);
        expect(list.indexOf(named(/^Start the sandbox/))).toBeLessThan(at);
        expect(list.indexOf(named(/^Start the sandbox/)), "the sandbox's refresh needs its fleet").toBeLessThan(stepIndex(list, runs(/\bpulumi refresh\b/)));
        const down = named(/^Tear down the sandbox/);
        expect(down.if).toMatch(/^always\(\) && matrix\.stack == 'sandbox'$/);
        expect(down.run).toMatch(/npm run sandbox -- --down/);
        expect(list.indexOf(down)).toBeGreaterThan(at);
    });

    it("runs npm run drift for the stack (as root for the sandbox) and pulumi refresh, and a check's failure fails its step", () => {
        // Stand-ins for npm, pulumi and sudo that log their arguments and exit with $FAKE_STATUS.
        const bin = mkdtempSync(path.join(tmp, "bin-"));
        const log = path.join(bin, "calls.log");
        for (const tool of ["npm", "pulumi"]) writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> "${log}"\nexit "\${FAKE_STATUS:-0}"\n`, { mode: 0o755 });
        writeFileSync(path.join(bin, "sudo"), `#!/bin/sh\necho "sudo" >> "${log}"\n[ "$1" = -E ] && shift\nexec "$@"\n`, { mode: 0o755 });
        const hosts = list.find(runs(/\bnpm run drift\b/))!;
        const cloud = list.find(runs(/\bpulumi refresh\b/))!;
        const deploy = list.find(runs(/\bpulumi preview\b/))!;
        const call = (step: Step, STACK: string, FAKE_STATUS = "0") => {
            writeFileSync(log, "");
            const r = runScript(step.run!, { PATH: `${bin}:${process.env.PATH}`, STACK, FAKE_STATUS });
            return { status: r.status, calls: readFileSync(log, "utf8").trim().split("\n") };
        };
        expect(call(hosts, "production")).toEqual({ status: 0, calls: ["npm run drift -- --stack production"] });
        expect(call(hosts, "sandbox")).toEqual({ status: 0, calls: ["sudo", "npm run sandbox -- --drift"] });
        expect(call(hosts, "production", "1").status).toBe(1);
        expect(call(hosts, "sandbox", "1").status).toBe(1);
        expect(call(cloud, "production")).toEqual({ status: 0, calls: [`pulumi refresh --stack production --preview-only --expect-no-changes --diff --non-interactive`] });
        expect(call(cloud, "sandbox")).toEqual({ status: 0, calls: ["sudo", `npm run sandbox -- --pulumi ${PROCEDURES.drift.join(" ")}`] });
        for (const stack of STACKS) expect(call(cloud, stack, "255").status).toBe(255);
        expect(call(deploy, "production")).toEqual({ status: 0, calls: [`pulumi ${PROCEDURES.hostDrift[0]} --stack production ${PROCEDURES.hostDrift.slice(1).join(" ")} --non-interactive`] });
        expect(call(deploy, "sandbox")).toEqual({ status: 0, calls: ["sudo", `npm run sandbox -- --pulumi ${PROCEDURES.hostDrift.join(" ")}`] });
        for (const stack of STACKS) expect(call(deploy, stack, "255").status).toBe(255);
    });

    it("writes the SSH key from the secret to a 0600 file under $RUNNER_TEMP and passes its path as HX_SSH_KEY_FILE, without printing it", () => {
        const step = named(/^SSH key/);
        expect(step.env).toEqual({ HX_SSH_PRIVATE_KEY: "${{ secrets.HX_SSH_PRIVATE_KEY }}" });
        expect(step.run).toMatch(/^\s*umask 077$/m);
        expect(step.run).not.toMatch(/set -x|echo\s+"?\$\{?HX_SSH_PRIVATE_KEY/);

        const runnerTemp = mkdtempSync(path.join(tmp, "runner-"));
        const githubEnv = path.join(runnerTemp, "github-env");
        writeFileSync(githubEnv, "");
        const key = "fake-key-line-1\nfake-key-line-2";
        const r = runScript(step.run!, { HX_SSH_PRIVATE_KEY: key, RUNNER_TEMP: runnerTemp, GITHUB_ENV: githubEnv });
        expect(r.status, r.stderr).toBe(0);
        expect(`${r.stdout}${r.stderr}`).not.toContain("fake-key");
        const exported = /^HX_SSH_KEY_FILE=(.+)$/m.exec(readFileSync(githubEnv, "utf8"))?.[1];
        expect(exported).toBe(path.join(runnerTemp, "hx-ssh-key"));
        expect(statSync(exported!).mode & 0o777).toBe(0o600);
        expect(readFileSync(exported!, "utf8")).toBe(`${key}\n`);

        const empty = runScript(step.run!, { HX_SSH_PRIVATE_KEY: "", RUNNER_TEMP: runnerTemp, GITHUB_ENV: githubEnv });
        expect(empty.status).not.toBe(0);
        expect(empty.stdout).toMatch(/HX_SSH_PRIVATE_KEY is not set/);

        const cleanup = list.find(runs(/rm -f "\$RUNNER_TEMP\/hx-ssh-key"/));
        expect(cleanup?.if).toBe("always()");
    });

    it("runs all three checks, then fails the job when any found drift", () => {
        const cloud = list.find(runs(/\bpulumi refresh\b/))!;
        const deploy = list.find(runs(/\bpulumi preview\b/))!;
        const hosts = list.find(runs(/\bnpm run drift\b/))!;
        expect([cloud.id, deploy.id, hosts.id]).toEqual(["cloud", "deploy", "hosts"]);
        expect([cloud["continue-on-error"], deploy["continue-on-error"], hosts["continue-on-error"]]).toEqual([true, true, true]);
        const fail = named(/^Fail on drift/);
        expect(list.indexOf(fail)).toBe(list.length - 1);
        expect(fail.if).toBe("always()");
        expect(fail.env).toMatchObject({ CLOUD: "${{ steps.cloud.outcome }}", DEPLOY: "${{ steps.deploy.outcome }}", HOSTS: "${{ steps.hosts.outcome }}" });

        const summary = path.join(tmp, "step-summary");
        const outcome = (CLOUD: string, DEPLOY: string, HOSTS: string) => runScript(fail.run!, { STACK: "production", CLOUD, DEPLOY, HOSTS, GITHUB_STEP_SUMMARY: summary }).status;
        expect(outcome("success", "success", "success")).toBe(0);
        expect(outcome("failure", "success", "success")).not.toBe(0);
        expect(outcome("success", "failure", "success")).not.toBe(0);
        expect(outcome("success", "success", "failure")).not.toBe(0);
        expect(outcome("skipped", "skipped", "skipped")).not.toBe(0);
        expect(readFileSync(summary, "utf8")).toMatch(/cloud resources: failure, deploy preview: success, hosts: success/);
    });
});

describe("CI workflows: on-demand deploy", () => {
    const { wf } = readWorkflow("deploy.yml");
    const job = onlyJob(wf) as Job & { environment?: unknown };
    const list = job.steps ?? [];

    it("runs only when dispatched, for a stack with a Pulumi Cloud state, in that stack's GitHub environment, one at a time", () => {
        const on = triggers(wf);
        expect(Object.keys(on)).toEqual(["workflow_dispatch"]);
        const input = (on.workflow_dispatch as { inputs: { stack: { options: string[] } } }).inputs.stack;
        // The sandbox's state lives where the sandbox runs (npm run sandbox), never in CI.
        expect(input.options).toEqual(STACKS.filter((s) => s !== "sandbox"));
        expect(job.environment).toBe("${{ inputs.stack }}");
        expect(wf.concurrency).toMatchObject({ group: "${{ github.workflow }}-${{ inputs.stack }}", "cancel-in-progress": false });
        expect(wf.permissions).toEqual({ contents: "read", "id-token": "write" });
    });

    it("installs Node 20 and the dependencies, gets AWS credentials by OIDC, then runs pulumi up", () => {
        expect(setupNodeProblems(list)).toEqual([]);
        const up = stepIndex(list, usesAction("pulumi/actions"));
        expect(list[up]!.with).toMatchObject({ command: "up", "stack-name": "${{ inputs.stack }}" });
        expect(list[up]!.env).toEqual({ PULUMI_ACCESS_TOKEN: "${{ secrets.PULUMI_ACCESS_TOKEN }}" });
        expect(stepIndex(list, runs(/^npm ci\b/))).toBeLessThan(up);
        expect(stepIndex(list, usesAction("aws-actions/configure-aws-credentials"))).toBeLessThan(up);
    });
});

describe("CI workflows run the procedures the engine tests and the sandbox run", () => {
    /** The pulumi arguments a pulumi/actions step amounts to: its command, and --diff when asked. */
    const actionArgs = (step: Step) => [String(step.with?.command), ...(String(step.with?.diff) === "true" ? ["--diff"] : []), ...(step.with?.command === "up" ? ["--yes"] : [])];
    const actionOf = (file: string) => (onlyJob(readWorkflow(file).wf).steps ?? []).find(usesAction("pulumi/actions"))!;

    it("preview: pulumi preview --diff", () => {
        expect(actionArgs(actionOf("preview.yml"))).toEqual([...PROCEDURES.preview]);
    });

    it("up: pulumi up --yes (the action never prompts)", () => {
        expect(actionArgs(actionOf("deploy.yml"))).toEqual([...PROCEDURES.up]);
    });

    it("drift: pulumi refresh --preview-only --expect-no-changes --diff, for the cloud stack and the sandbox alike", () => {
        const cloud = (onlyJob(readWorkflow("drift.yml").wf).steps ?? []).find(runs(/\bpulumi refresh\b/))!;
        const lines = cloud.run!.split("\n").filter((l) => /refresh/.test(l));
        expect(lines).toHaveLength(2);
        for (const line of lines) expect(line).toContain(PROCEDURES.drift.join(" ").replace("refresh ", ""));
    });

    it("the procedures themselves: a preview and a drift check that change nothing, an up that never prompts, a destroy that keeps the protected keys", () => {
        expect(PROCEDURES).toEqual({
            preview: ["preview", "--diff"],
            up: ["up", "--yes"],
            drift: ["refresh", "--preview-only", "--expect-no-changes", "--diff"],
            hostDrift: ["preview", "--diff", "--expect-no-changes"],
            destroy: ["destroy", "--yes", "--exclude-protected"],
        });
    });
});

describe("CI workflows: the project's own tests", () => {
    const { wf } = readWorkflow("test.yml");
    const list = onlyJob(wf).steps ?? [];

    it("runs on pushes to main and on pull requests", () => {
        const on = triggers(wf);
        expect(Object.keys(on).sort()).toEqual(["pull_request", "push"]);
        expect((on.push as { branches: string[] }).branches).toEqual(["main"]);
    });

    it("runs .ci/run as root with CI=true, on Node 20", () => {
        expect(setupNodeProblems(list)).toEqual([]);
        const ci = list.filter(runs(/^sudo -E (env "PATH=\$PATH" )?bash \.ci\/run$/));
        expect(ci).toHaveLength(1);
        expect(ci[0]!.env).toEqual({ CI: "true" });
        expect(existsSync(path.join(ROOT, ".ci", "run"))).toBe(true);
        expect(list.some(runs(/^npm ci\b/)), ".ci/run runs npm ci itself").toBe(false);
    });

    it("uploads test-artifacts/ after .ci/run, also when the tests failed", () => {
        expect(artifactUploadProblems(list)).toEqual([]);
    });

    it("flags an artifact upload that is missing, skipped on failure, of another path, or before the tests", () => {
        const upload = list.find(usesAction("actions/upload-artifact"))!;
        const others = list.filter((s) => s !== upload);
        expect(artifactUploadProblems(others)).toEqual(["0 actions/upload-artifact steps, not 1"]);
        expect(artifactUploadProblems([...others, { ...upload, if: undefined }])).toEqual(["the upload runs if: undefined, not always()"]);
        expect(artifactUploadProblems([...others, { ...upload, with: { ...upload.with, path: "artifacts/" } }])).toEqual(["the upload's path is artifacts/, not test-artifacts/"]);
        expect(artifactUploadProblems([upload, ...others])).toEqual(["the upload comes before .ci/run"]);
    });
});
