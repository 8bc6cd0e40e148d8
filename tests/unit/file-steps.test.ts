/**
 * File steps on a real shell, with the install records in a temp folder:
 * a group of files installed from one document rewrites only what differs,
 * an update removes what the plan no longer installs, and a delete removes only
 * what is still the resource's own. The same scripts run on sandbox hosts under
 * the real engine in tests/integration/engine/lifecycle.test.ts.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { installIdentity, ownedStep } from "../../render/ownership";
import { INSTALL_RECORDS_DIR } from "../../render/paths";
import { wrapStep } from "../../render/remote";
import { filesStep, secretFilesStep, type PlannedFile, type StagedFolder, type Step } from "../../render/step";
import { shellQuote } from "../../render/shell";
import { stepTemplate, TEMPLATE_ROOT } from "../../render/template";
import { removeDir, run, stdinWith, tempDir } from "./helpers";

const dir = tempDir("hx-file-steps-");
afterAll(() => removeDir(dir));
const records = path.join(dir, "records");
const me = userInfo().username;
const group = run("id", ["-gn"]).stdout.trim();

const file = (name: string, content: string, mode = "0644"): PlannedFile => ({ path: path.join(dir, "etc", name), owner: me, group, mode, content });

/** Runs a step's owned create (or delete) for `resource`, with the records in the temp folder. */
function runOwned(step: Step, resource: string, action: "create" | "delete", stdin = step.stdin ?? "") {
    const owned = ownedStep(step, installIdentity("hx-backup", "unit", resource));
    const script = (action === "create" ? owned.create : owned.delete!).replace(`hx_records=${INSTALL_RECORDS_DIR}\n`, `hx_records=${records}\n`);
    expect(script).toContain(`hx_records=${records}\n`);
    // getent answers for the stage's user with a home in the temp folder.
    return spawnSync("sh", ["-c", wrapStep(script, false)], { input: stdin, encoding: "utf8", env: { ...process.env, PATH: `${fakeBin}:${process.env.PATH}` } });
}

const home = path.join(dir, "home");
const fakeBin = path.join(dir, "bin");
mkdirSync(fakeBin, { recursive: true });
writeFileSync(path.join(fakeBin, "getent"), `#!/bin/sh\n[ "$1 $2" = "passwd stager" ] && echo 'stager:x:990:990::${home}:/bin/sh'\n`, { mode: 0o755 });

const identity = (p: string) => {
    const st = statSync(p);
    return { ino: st.ino, mtimeMs: st.mtimeMs };
};

describe("a group of files from one document", () => {
    it("rewrites only what differs: an unchanged file keeps its inode and mtime, a changed one is replaced, a changed mode is put back", () => {
        const a = file("a.sh", "echo a\n", "0755");
        const b = file("b.conf", "b=1\n");
        const first = runOwned(filesStep("files", [a, b], []), "h-files", "create");
        expect(first.status, first.stderr).toBe(0);
        expect(first.stdout).toContain(`installed ${a.path}`);
        const before = identity(a.path);

        const second = runOwned(filesStep("files", [a, { ...b, content: "b=2\n" }], []), "h-files", "create");
        expect(second.status, second.stderr).toBe(0);
        expect(second.stdout).not.toContain(`installed ${a.path}`);
        expect(second.stdout).toContain(`installed ${b.path}`);
        expect(identity(a.path)).toEqual(before);
        expect(readFileSync(b.path, "utf8")).toBe("b=2\n");

        chmodSync(a.path, 0o600);
        const repaired = runOwned(filesStep("files", [a, { ...b, content: "b=2\n" }], []), "h-files", "create");
        expect(repaired.status, repaired.stderr).toBe(0);
        expect(statSync(a.path).mode & 0o777).toBe(0o755);
        expect(repaired.stdout).toContain(`installed ${a.path}`);
        expect(repaired.stdout).not.toContain(`installed ${b.path}`);
    });

    it("refuses content that arrived other than the deploy sent it, naming the file, and leaves the live file", () => {
        const c = file("c.conf", "c=1\n");
        const step = filesStep("damaged", [c], []);
        expect(runOwned(step, "h-damaged", "create").status).toBe(0);
        const sent = stdinWith(step, c.path, "c=2\n");
        const tampered = sent.replace("|c=2\n", "|c=3\n");
        expect(tampered).not.toBe(sent);
        const res = runOwned(filesStep("damaged", [{ ...c, content: "c=2\n" }], []), "h-damaged", "create", tampered);
        expect(res.status).not.toBe(0);
        expect(res.stderr).toContain(`refusing to install ${c.path}: its content arrived as sha256`);
        expect(readFileSync(c.path, "utf8")).toBe("c=1\n");
        expect(readdirSync(path.dirname(c.path)).filter((n) => n.startsWith(".hx-backup."))).toEqual([]);
    });

    it("an update that no longer installs a file removes it and forgets it; the rest stay as they were", () => {
        const keep = file("keep.sh", "keep\n");
        const drop = file("drop.sh", "drop\n");
        expect(runOwned(filesStep("group", [keep, drop], []), "h-group", "create").status).toBe(0);
        const before = identity(keep.path);
        const res = runOwned(filesStep("group", [keep], []), "h-group", "create");
        expect(res.status, res.stderr).toBe(0);
        expect(res.stdout).toContain(`no longer installs: ${drop.path}`);
        expect(existsSync(drop.path)).toBe(false);
        expect(identity(keep.path)).toEqual(before);
        // Forgotten: a later delete does not name it, and another step may install it afresh.
        const again = runOwned(filesStep("group", [keep], []), "h-group", "create");
        expect(again.stdout).not.toContain("no longer installs");
    });

    it("a step whose files stay (the keyring) keeps a file the plan drops", () => {
        const key = file("v1.key", "secret-ish\n", "0600");
        const keyring = (files: PlannedFile[]): Step => ({ ...filesStep("keys", files, []), remove: undefined, delete: undefined });
        expect(runOwned(keyring([key, file("v2.key", "v2\n", "0600")]), "h-keys", "create").status).toBe(0);
        const res = runOwned(keyring([file("v2.key", "v2\n", "0600")]), "h-keys", "create");
        expect(res.status, res.stderr).toBe(0);
        expect(readFileSync(key.path, "utf8")).toBe("secret-ish\n");
    });

    it("a delete removes what is still its own and leaves what another resource has taken over (a regrouped or renamed step)", () => {
        const shared = file("shared.sh", "shared\n");
        const own = file("own.sh", "own\n");
        expect(runOwned(filesStep("old", [shared, own], []), "h-old", "create").status).toBe(0);
        const takeover = runOwned(filesStep("new", [shared], []), "h-new", "create");
        expect(takeover.status, takeover.stderr).toBe(0);
        expect(takeover.stdout).toContain(`${shared.path}: taking it over from hx-backup/unit/h-old (same stack)`);
        const before = identity(shared.path);
        const del = runOwned(filesStep("old", [shared, own], []), "h-old", "delete");
        expect(del.status, del.stderr).toBe(0);
        expect(del.stdout).toContain("leaving what another install now owns");
        expect(del.stdout).toContain(`removing what is still its own: ${own.path}`);
        expect(existsSync(own.path)).toBe(false);
        expect(identity(shared.path)).toEqual(before);
        // All its own: the delete removes everything.
        const gone = runOwned(filesStep("new", [shared], []), "h-new", "delete");
        expect(gone.status, gone.stderr).toBe(0);
        expect(existsSync(shared.path)).toBe(false);
    });

    it("files of every shape arrive exactly: empty, a lone newline, no final newline, blank lines, lines that look like headers, a tab", () => {
        const odd = ["", "\n", "no final newline", "a\n\n\nb\n", "@file\tnot a header\n|not a prefix\n", "tab\there\r\n", "ünïcödé ✓\n"].map((content, i) => file(`odd-${i}`, content));
        const res = runOwned(filesStep("odd", odd, []), "h-odd", "create");
        expect(res.status, res.stderr).toBe(0);
        for (const f of odd) expect(readFileSync(f.path, "utf8"), JSON.stringify(f.content)).toBe(f.content);
    });

    it("installs across folders (one made anew) and modes in one pass, leaving no temp behind; a file its check refuses leaves every live file as it was", () => {
        const spread = [file("top.sh", "top\n", "0755"), { ...file("x", "deep\n", "0640"), path: path.join(dir, "etc", "new dir", "sub", "deep.conf") }, file("with\\backslash", "bs\n", "0600"), file("plain.conf", "ok\n")];
        const first = runOwned(filesStep("spread", spread, []), "h-spread", "create");
        expect(first.status, first.stderr).toBe(0);
        for (const f of spread) {
            expect(readFileSync(f.path, "utf8")).toBe(f.content);
            expect((statSync(f.path).mode & 0o777).toString(8).padStart(4, "0")).toBe(f.mode);
            expect(first.stdout).toContain(`installed ${f.path}`);
        }
        const leftovers = () => [path.join(dir, "etc"), path.join(dir, "etc", "new dir", "sub")].flatMap((d) => readdirSync(d).filter((n) => n.startsWith(".hx-backup.")));
        expect(leftovers()).toEqual([]);

        // Every changed file must contain "ok": the check runs on each before any goes live, so one refusal changes nothing.
        const before = spread.map((f) => identity(f.path));
        const changed = spread.map((f) => ({ ...f, content: f === spread[2] ? "no good\n" : `ok ${f.content}` }));
        const refused = runOwned(filesStep("spread", changed, [], { check: ["grep", "--quiet", "ok"] }), "h-spread", "create");
        expect(refused.status).not.toBe(0);
        expect(refused.stderr).toContain(`refusing to install ${spread[2]!.path}: check failed`);
        expect(spread.map((f) => identity(f.path))).toEqual(before);
        expect(spread.map((f) => readFileSync(f.path, "utf8"))).toEqual(spread.map((f) => f.content));
        expect(leftovers()).toEqual([]);
    });

    it("secret files (one base64 line each on stdin) are compared on the host: the same secret keeps its inode and mtime, another replaces it", () => {
        const key = { path: path.join(dir, "etc", "secret.key"), owner: me, group, mode: "0600" };
        const step = secretFilesStep("secrets", [{ ...key, secret: { kind: "redisAuth" } }], []);
        const line = (text: string) => `${Buffer.from(text).toString("base64")}\n`;
        expect(runOwned(step, "h-secrets", "create", line("one\n")).status).toBe(0);
        const before = identity(key.path);
        const same = runOwned(step, "h-secrets", "create", line("one\n"));
        expect(same.status, same.stderr).toBe(0);
        expect(identity(key.path)).toEqual(before);
        expect(runOwned(step, "h-secrets", "create", line("two\n")).status).toBe(0);
        expect(readFileSync(key.path, "utf8")).toBe("two\n");
        expect(statSync(key.path).mode & 0o777).toBe(0o600);
        expect(readdirSync(path.dirname(key.path)).filter((n) => n.startsWith(".hx-backup."))).toEqual([]);
    });

    it("a document from another release is refused before anything changes", () => {
        const e = file("e.conf", "e\n");
        const res = runOwned(filesStep("other", [e], []), "h-other", "create", `{"files": {}}`);
        expect(res.status).not.toBe(0);
        expect(res.stderr).toContain("not a files document this release reads");
        expect(existsSync(e.path)).toBe(false);
    });

    it("step bodies reach the command text without their comment lines, here-documents untouched", () => {
        for (const name of ["claim", "install-files", "alertmanager-block", "pitr-archiving"]) {
            const raw = readFileSync(path.join(TEMPLATE_ROOT, "steps", `${name}.sh`), "utf8");
            const body = stepTemplate(name);
            expect(body.length, name).toBeLessThan(raw.length);
            // Every line kept is one of the template's, in order; every here-document is whole.
            const rawLines = raw.split("\n");
            let at = 0;
            for (const line of body.trimEnd().split("\n")) {
                at = rawLines.indexOf(line, at);
                expect(at, `${name}: ${line}`).toBeGreaterThanOrEqual(0);
            }
            for (const doc of raw.matchAll(/<<-?\s*'?([A-Z_]+)'?[^\n]*\n([\s\S]*?)\n\1\n/g)) expect(body, `${name} here-document ${doc[1]}`).toContain(doc[2]);
            expect(body.split("\n").filter((l) => /^\s*#/.test(l) && !raw.includes(`<<`)), name).toEqual([]);
        }
    });
});

describe("install records on a real shell", () => {
    const shell = (body: string) => spawnSync("sh", ["-c", `set -eu\nhx_records=${records}\n${stepTemplate("records")}${body}`], { encoding: "utf8" });

    it("hx_drift names every file that differs from the manifest entry, however its name is spelt, in one hashing pass", () => {
        const d = path.join(dir, "drift");
        mkdirSync(d, { recursive: true });
        const names = ["same.sh", "edited.sh", "with space.sh", "back\\slash.sh", "moded.sh", "secret.key", "gone.sh"];
        for (const n of names.slice(0, -1)) writeFileSync(path.join(d, n), `${n}\n`, { mode: 0o644 });
        chmodSync(path.join(d, "moded.sh"), 0o600);
        const sha = (t: string) => createHash("sha256").update(t).digest("hex");
        const line = (n: string, hash = sha(`${n}\n`)) => [path.join(d, n), me, group, "0644", hash].join("\t");
        const entry = path.join(d, "entry.tsv");
        writeFileSync(entry, [...names.filter((n) => n !== "secret.key").map((n) => line(n)), line("secret.key", "-"), `${path.join(d, "block")}\t@block\t-\t-\t-`].join("\n") + "\n");
        writeFileSync(path.join(d, "edited.sh"), "edited by hand\n");
        writeFileSync(path.join(d, "with space.sh"), "edited too\n");
        const r = shell(`hx_drift ${shellQuote(entry)}`);
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout.split("; ")).toEqual([
            `owner-or-mode ${path.join(d, "moded.sh")} (${me} ${group} 600, expected ${me} ${group} 0644)`,
            `missing ${path.join(d, "gone.sh")}`,
            `changed ${path.join(d, "edited.sh")}`,
            `changed ${path.join(d, "with space.sh")}`,
        ]);
        writeFileSync(path.join(d, "edited.sh"), "edited.sh\n");
        writeFileSync(path.join(d, "with space.sh"), "with space.sh\n");
        writeFileSync(path.join(d, "back\\slash.sh"), "changed\n");
        chmodSync(path.join(d, "moded.sh"), 0o644);
        writeFileSync(path.join(d, "gone.sh"), "gone.sh\n");
        expect(shell(`hx_drift ${shellQuote(entry)}`).stdout).toBe(`changed ${path.join(d, "back\\slash.sh")}`);
        expect(shell(`hx_drift ${shellQuote(path.join(d, "no-entry.tsv"))}`).stdout).toBe(`missing ${path.join(d, "no-entry.tsv")}`);
    });

    it("hx_shas hashes every key in one run, in order, whatever the key holds", () => {
        const keys = ["/etc/a b", "user:hxbackup", "/x/back\\slash", "systemd:hx-backup-x.timer", "/tab-free/*?[glob]"];
        const r = shell(`hx_shas ${keys.map((k) => shellQuote(k)).join(" ")}`);
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toBe(keys.map((k) => `${createHash("sha256").update(k).digest("hex")}\t${k}\n`).join(""));
        expect(shell("hx_shas").stdout).toBe("");
    });
});

describe("staged files: the bytes wait on the host, the stdin names them", () => {
    const stage: StagedFolder = { source: "/unused", remotePath: ".cache/hx-backup/stage/unit/h1", user: "stager" };
    const stageRoot = path.join(home, stage.remotePath);
    const put = (rel: string, content: string) => {
        mkdirSync(path.dirname(path.join(stageRoot, rel)), { recursive: true });
        writeFileSync(path.join(stageRoot, rel), content);
    };
    const staged = (name: string, content: string): PlannedFile => ({ ...file(`staged-${name}`, content, "0755"), staged: `scripts/${name}` });

    it("installs a staged file from the stage, checked against the sha256 its header carries; an unchanged one keeps its inode", () => {
        put("scripts/run.sh", "echo staged-bytes\n");
        const s = staged("run.sh", "echo staged-bytes\n");
        const step = filesStep("staged", [s, file("inline.conf", "x=1\n")], [], { stage });
        expect(step.stdin).not.toContain("staged-bytes");
        expect(step.stdin).toContain("\tstaged:scripts/run.sh\n");
        const r = runOwned(step, "h-staged", "create");
        expect(r.status, r.stderr).toBe(0);
        expect(readFileSync(s.path, "utf8")).toBe("echo staged-bytes\n");
        expect(statSync(s.path).mode & 0o777).toBe(0o755);
        const before = identity(s.path);
        expect(runOwned(step, "h-staged", "create").status).toBe(0);
        expect(identity(s.path)).toEqual(before);
    });

    it("refuses a stage whose bytes differ from what the deploy sent, or that is gone, naming the file; the live file stays", () => {
        const live = "echo v1\n";
        put("scripts/v.sh", live);
        const v1 = staged("v.sh", live);
        expect(runOwned(filesStep("v", [v1], [], { stage }), "h-v", "create").status).toBe(0);
        put("scripts/v.sh", "echo changed on the host\n");
        const v2 = filesStep("v", [{ ...v1, content: "echo v2\n" }], [], { stage });
        const differs = runOwned(v2, "h-v", "create");
        expect(differs.status).not.toBe(0);
        expect(differs.stderr).toContain(`refusing to install ${v1.path}: its content arrived as sha256`);
        expect(differs.stderr).toContain(`(from the stage: ${stageRoot})`);
        rmSync(path.join(stageRoot, "scripts", "v.sh"));
        const gone = runOwned(v2, "h-v", "create");
        expect(gone.status).not.toBe(0);
        expect(gone.stderr).toContain(`refusing to install ${v1.path}: its staged copy ${stageRoot}/scripts/v.sh is missing (the deploy copies the stage`);
        expect(readFileSync(v1.path, "utf8")).toBe(live);
        expect(readdirSync(path.dirname(v1.path)).filter((n) => n.startsWith(".hx-backup."))).toEqual([]);
    });

    it("a delete removes its stage and the parents it leaves empty, never .cache; another install's stage stays", () => {
        put("scripts/d.sh", "echo d\n");
        const other = path.join(home, ".cache/hx-backup/stage/unit/h2/scripts");
        mkdirSync(other, { recursive: true });
        const step = filesStep("d", [staged("d.sh", "echo d\n")], [], { stage });
        expect(runOwned(step, "h-d", "create").status).toBe(0);
        const del = runOwned(step, "h-d", "delete");
        expect(del.status, del.stderr).toBe(0);
        expect(existsSync(stageRoot)).toBe(false);
        expect(existsSync(other)).toBe(true);
        rmSync(path.join(home, ".cache/hx-backup/stage/unit/h2"), { recursive: true });
        put("scripts/d.sh", "echo d\n");
        expect(runOwned(step, "h-d", "create").status).toBe(0);
        expect(runOwned(step, "h-d", "delete").status).toBe(0);
        expect(readdirSync(path.join(home, ".cache"))).toEqual([]);
    });

    it("a stage must be a path inside the home, and a staged file needs one", () => {
        expect(() => filesStep("x", [staged("x.sh", "x\n")], [], { stage: { ...stage, remotePath: "/tmp/stage" } })).toThrow(/must be a path inside the SSH user's home/);
        expect(() => filesStep("x", [staged("x.sh", "x\n")], [], { stage: { ...stage, remotePath: ".cache/../../etc" } })).toThrow(/without "\.\."/);
        expect(() => filesStep("x", [staged("x.sh", "x\n")], [])).toThrow(/needs the step's stage/);
        expect(() => filesStep("x", [{ ...staged("x.sh", "x\n"), staged: "../x.sh" }], [], { stage })).toThrow(/a path inside it/);
    });
});
