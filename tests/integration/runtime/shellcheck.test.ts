/**
 * All host scripts pass shellcheck (-x, every severity) with no blanket
 * disables, use strict mode, and source only the shared library. The step
 * script bodies (templates/steps, run by `sh -c`) pass shellcheck as POSIX sh.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { missingTools, run } from "../../support/env";
import { SCRIPTS_SRC } from "../../support/host";
import { scriptTemplates } from "../../../render/template";

const missing = missingTools(["shellcheck"]);
/** Every shipped script, the library's lib/ included. */
const scripts = scriptTemplates();
const STEPS_SRC = resolve(__dirname, "../../../templates/steps");
const stepBodies = readdirSync(STEPS_SRC).filter((f) => f.endsWith(".sh")).sort();
/** The backup runtime (this suite's scope); other files in the directory are only shellchecked. */
const RUNTIME = [
    "hx-backup-lib.sh", "postgresql-backup.sh", "redis-backup.sh", "application-backup.sh", "configuration-backup.sh",
    "backup-verify.sh", "backup-restore.sh", "backup-retention.sh", "backup-sync.sh", "backup-privileged.sh",
    "backup-health-check.sh", "test-remote-storage.sh", "full-backup-test.sh", "test-restore.sh", "test-monitoring.sh",
];

/** Every shellcheck disable names one code, with a reason. */
function expectNoBlanketDisables(text: string, name: string): void {
    for (const m of text.matchAll(/# shellcheck disable=([A-Z0-9,]+)(.*)/g)) {
        expect(m[1], name).toMatch(/^SC\d{4}$/); // one code at a time
        expect(m[2], name).toMatch(/#\s*\S+/); // with a reason
    }
}

describe.skipIf(missing.length > 0)("host scripts: static checks", { timeout: 120_000 }, () => {
    // Every entry script pulls in the whole library (-x), so this is minutes of CPU: split it over the
    // cores, and give it a budget that a busy machine (the other test worker) cannot exhaust.
    it("shellcheck -x is clean for every script", { timeout: 600_000 }, async () => {
        const lanes = Math.max(1, Math.min(4, availableParallelism()));
        const chunks = Array.from({ length: lanes }, (_, lane) => scripts.filter((_, i) => i % lanes === lane)).filter((c) => c.length);
        const results = await Promise.all(
            chunks.map((chunk) => run("shellcheck", ["--external-sources", "--severity=style", "--format=gcc", ...chunk], { cwd: SCRIPTS_SRC, timeoutMs: 590_000 })),
        );
        expect(results.map((r) => r.stdout + r.stderr).join("")).toBe("");
        expect(results.map((r) => r.code)).toEqual(chunks.map(() => 0));
    });

    it("shellcheck --shell=sh is clean for every step script body, with no blanket disables", async () => {
        const r = await run("shellcheck", ["--shell=sh", "--severity=style", "--format=gcc", ...stepBodies], { cwd: STEPS_SRC });
        expect(r.stdout + r.stderr).toBe("");
        expect(r.code).toBe(0);
        for (const name of stepBodies) expectNoBlanketDisables(readFileSync(join(STEPS_SRC, name), "utf8"), name);
    });

    it("every runtime script exists", () => {
        for (const n of RUNTIME) expect(scripts).toContain(n);
    });

    it("the library is a short loader over lib/: no file over 300 lines, one module per data source", () => {
        const lines = (f: string) => readFileSync(join(SCRIPTS_SRC, f), "utf8").split("\n").length;
        expect(lines("hx-backup-lib.sh")).toBeLessThan(100);
        const lib = scripts.filter((f) => f.startsWith("lib/"));
        expect(lib.filter((f) => lines(f) > 300)).toEqual([]);
        // One module per data source (MODULE.sh registers its types), its parts in MODULE-PART.sh.
        const sources = lib.filter((f) => f.startsWith("lib/source/"));
        const modules = sources.filter((f) => !f.includes("-"));
        expect(modules).toEqual(["lib/source/archive.sh", "lib/source/pitr.sh", "lib/source/postgresql.sh", "lib/source/redis.sh"]);
        for (const part of sources.filter((f) => f.includes("-"))) expect(modules, part).toContain(part.replace(/-[a-z]+\.sh$/, ".sh"));
        const sourceText = (module: string) => sources.filter((f) => f === module || f.startsWith(module.replace(/\.sh$/, "-"))).map((f) => readFileSync(join(SCRIPTS_SRC, f), "utf8")).join("\n");
        // PITR's backups live in pgBackRest's repository, not the storage directory: it is no artifact type, and has its own verbs.
        expect(sourceText("lib/source/pitr.sh")).not.toMatch(/^HX_SOURCE_MODULE\[/m);
        for (const verb of ["backup", "status", "restore", "restore_test", "verify"]) expect(sourceText("lib/source/pitr.sh")).toMatch(new RegExp(`^hx_pitr_${verb}\\(\\)`, "m"));
        for (const module of modules.filter((m) => m !== "lib/source/pitr.sh")) {
            const name = module.replace(/^lib\/source\/|\.sh$/g, "");
            expect(readFileSync(join(SCRIPTS_SRC, module), "utf8"), module).toMatch(new RegExp(`^HX_SOURCE_MODULE\\[[a-z]+\\]=${name}$`, "m"));
            for (const verb of ["dump", "content_hasher", "restore_test", "restore"]) {
                expect(sourceText(module), `${module} defines hx_${name}_${verb}`).toMatch(new RegExp(`^hx_${name}_${verb}\\(\\)`, "m"));
            }
        }
        for (const f of lib) {
            const text = readFileSync(join(SCRIPTS_SRC, f), "utf8");
            expectNoBlanketDisables(text, f);
            expect(readFileSync(join(SCRIPTS_SRC, "hx-backup-lib.sh"), "utf8"), `the loader sources ${f}`).toContain(`source "$HX_SCRIPTS_DIR_SELF/${f}"`);
        }
        // The core picks a module by type; only the modules name their types.
        for (const f of lib.filter((f) => !f.startsWith("lib/source/"))) {
            const text = readFileSync(join(SCRIPTS_SRC, f), "utf8");
            expect(text, f).not.toMatch(/(==|\bcase\b.*|\)\s*) *(postgresql|redis|application|configuration)\b(?!-)/);
            // Nor a source's formats or tools: those are the modules' to know.
            expect(text, f).not.toMatch(/\b(pg_dump|pg_restore|psql|redis-cli|redis-check-rdb|parallel|pgcustom|PGDMP)\b/);
        }
    });

    it.each(RUNTIME)("%s: strict mode, shared library, no blanket disables, executable", (name) => {
        const text = readFileSync(join(SCRIPTS_SRC, name), "utf8");
        expect(text.startsWith("#!/usr/bin/env bash\n")).toBe(true);
        expectNoBlanketDisables(text, name);
        if (name !== "hx-backup-lib.sh") {
            expect(text).toContain("set -Eeuo pipefail");
            expect(text).toContain('source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"');
            expect(statSync(join(SCRIPTS_SRC, name)).mode & 0o111).not.toBe(0);
        }
        // no eval, no key material on argv idioms
        expect(text).not.toMatch(/\beval\b/);
        expect(text).not.toMatch(/-hmac\b|enc\b.*\s-K\s|-pass pass:|redis-cli[^\n]*\s-a\s/);
    });
});
