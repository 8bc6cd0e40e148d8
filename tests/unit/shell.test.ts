/**
 * render/shell.ts: whatever shellQuote returns, a real POSIX shell reads back
 * as exactly the input, with no expansion, splitting or globbing.
 */
import { existsSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { wrapStep } from "../../render/remote";
import { shellCommand, shellQuote } from "../../render/shell";
import { hasTool, removeDir, run, tempDir } from "./helpers";

const dir = tempDir("hx-shell-");
const marker = path.join(dir, "pwned");
// Files a stray glob would match in the working directory.
for (const f of ["a.txt", "b.txt", "-n", "x y"]) writeFileSync(path.join(dir, f), "");
afterAll(() => removeDir(dir));

const HOSTILE: readonly string[] = [
    "",
    " ",
    "plain",
    "two words",
    "  leading and trailing  ",
    "it's",
    "'",
    "''",
    "'''",
    `"double"`,
    `mixed 'single' and "double"`,
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    "${HOME}",
    "$HOME",
    "$0 $1 $@ $* $# $? $$ $!",
    `; touch ${marker}`,
    `&& touch ${marker} || touch ${marker}`,
    `| touch ${marker}`,
    `> ${marker}`,
    `< /etc/passwd`,
    "*",
    "*.txt",
    "?.txt",
    "[ab].txt",
    "{a,b}.txt",
    "~",
    "~root",
    "line one\nline two",
    "\n",
    "trailing newline\n",
    "tab\there",
    "\r\n",
    "back\\slash \\n \\\\",
    "#not a comment",
    "-n",
    "--help",
    "=",
    "a=b",
    "%s %d %%",
    "!bang !!",
    "unicode: héllo ✓ 日本語 🚀",
    "\u0001\u0007\u001b[31mred\u001b[0m\u007f",
    "x".repeat(10_000),
    `'$(touch ${marker})'"\`touch ${marker}\`"; touch ${marker} #`,
];

const shells = ["sh", "bash", "dash"].filter(hasTool);

describe("shellQuote", () => {
    it("leaves plain words alone and quotes everything else", () => {
        expect(shellQuote("abc")).toBe("abc");
        expect(shellQuote("/var/lib/backup/scripts/x.sh")).toBe("/var/lib/backup/scripts/x.sh");
        expect(shellQuote("user@host:1,a=b+c%")).toBe("user@host:1,a=b+c%");
        expect(shellQuote(42)).toBe("42");
        expect(shellQuote("")).toBe("''");
        expect(shellQuote("a b")).toBe("'a b'");
        expect(shellQuote("it's")).toBe(`'it'\\''s'`);
        expect(shellQuote("$(x)")).toBe("'$(x)'");
        expect(shellQuote("*")).toBe("'*'");
        expect(shellQuote("~")).toBe("'~'");
    });

    it("refuses NUL, which no shell can carry", () => {
        expect(() => shellQuote("a\0b")).toThrow(/NUL/);
        expect(() => shellQuote("\0")).toThrow(/NUL/);
        expect(() => shellCommand("echo", "ok", "bad\0")).toThrow(/NUL/);
    });

    it.each(shells)("round-trips every hostile string through a real %s", (shell) => {
        expect(shells.length).toBeGreaterThan(0);
        for (const value of HOSTILE) {
            const r = run(shell, ["-c", `printf %s ${shellQuote(value)}`], { cwd: dir });
            expect(r.status, `${shell} on ${JSON.stringify(value)}: ${r.stderr}`).toBe(0);
            expect(r.stdout, `${shell} on ${JSON.stringify(value)}`).toBe(value);
        }
        expect(existsSync(marker)).toBe(false);
    });

    it("keeps each value one argument (no word splitting, no globbing)", () => {
        const script = `printf '[%s]\\n' ${HOSTILE.filter((v) => !v.includes("\n")).map(shellQuote).join(" ")}`;
        const r = run("sh", ["-c", script], { cwd: dir });
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toBe(HOSTILE.filter((v) => !v.includes("\n")).map((v) => `[${v}]\n`).join(""));
        expect(existsSync(marker)).toBe(false);
    });

    it("the harness would notice an unquoted value", () => {
        const r = run("sh", ["-c", `printf %s ${"*.txt"}`], { cwd: dir });
        expect(r.stdout).not.toBe("*.txt");
    });
});

describe("shellCommand", () => {
    it("passes each argument through unchanged, in order", () => {
        const args = ["it's", "$(id)", "a b", "", "*", "line\nbreak", "-n"];
        const r = run("sh", ["-c", shellCommand("printf", "<%s>", ...args)], { cwd: dir });
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toBe(args.map((a) => `<${a}>`).join(""));
    });
});

describe("wrapStep", () => {
    it("runs the step under sh with set -eu, quoting the whole script as one argument", () => {
        const script = [`printf '%s' ${shellQuote("it's $(not run)")}`, "false", `touch ${shellQuote(marker)}`].join("\n");
        const r = run("sh", ["-c", wrapStep(script, false)], { cwd: dir });
        expect(r.stdout).toBe("it's $(not run)");
        expect(r.status).not.toBe(0);
        expect(existsSync(marker)).toBe(false);
    });

    it("refuses unset variables", () => {
        const r = run("sh", ["-c", wrapStep('printf %s "$hx_surely_unset_variable"', false)]);
        expect(r.status).not.toBe(0);
    });

    it("with sudo, the script is an argument of sudo -n sh -c", () => {
        expect(wrapStep("true", true)).toBe(`sudo -n sh -c 'set -eu\ntrue'`);
        expect(wrapStep("true", false)).toBe(`sh -c 'set -eu\ntrue'`);
    });
});
