/**
 * File steps on a real shell, with the install records in a temp folder:
 * a group of files installed from one document rewrites only what differs,
 * an update removes what the plan no longer installs, and a delete removes only
 * what is still the resource's own. The same scripts run on sandbox hosts under
 * the real engine in tests/integration/engine/lifecycle.test.ts.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { userInfo } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { installIdentity, ownedStep } from "../../render/ownership";
import { INSTALL_RECORDS_DIR } from "../../render/paths";
import { wrapStep } from "../../render/remote";
import { filesStep, secretFilesStep, type PlannedFile, type Step } from "../../render/step";
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
    return spawnSync("sh", ["-c", wrapStep(script, false)], { input: stdin, encoding: "utf8" });
}

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
