/**
 * All host scripts pass shellcheck (-x, every severity) with no blanket
 * disables, use strict mode, and source only the shared library.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { missingTools, run } from "../../support/env";
import { SCRIPTS_SRC } from "../../support/host";

const missing = missingTools(["shellcheck"]);
const scripts = readdirSync(SCRIPTS_SRC).filter((f) => f.endsWith(".sh")).sort();
/** The backup runtime (this suite's scope); other files in the directory are only shellchecked. */
const RUNTIME = [
    "hx-backup-lib.sh", "postgresql-backup.sh", "redis-backup.sh", "application-backup.sh", "configuration-backup.sh",
    "backup-verify.sh", "backup-restore.sh", "backup-retention.sh", "backup-sync.sh", "backup-privileged.sh",
    "backup-health-check.sh", "test-remote-storage.sh", "full-backup-test.sh", "test-restore.sh", "test-monitoring.sh",
];

describe.skipIf(missing.length > 0)("host scripts: static checks", { timeout: 120_000 }, () => {
    it("shellcheck -x is clean for every script", async () => {
        const r = await run("shellcheck", ["--external-sources", "--severity=style", "--format=gcc", ...scripts], { cwd: SCRIPTS_SRC });
        expect(r.stdout + r.stderr).toBe("");
        expect(r.code).toBe(0);
    });

    it("every runtime script exists", () => {
        for (const n of RUNTIME) expect(scripts).toContain(n);
    });

    it.each(RUNTIME)("%s: strict mode, shared library, no blanket disables, executable", (name) => {
        const text = readFileSync(join(SCRIPTS_SRC, name), "utf8");
        expect(text.startsWith("#!/usr/bin/env bash\n")).toBe(true);
        for (const m of text.matchAll(/# shellcheck disable=([A-Z0-9,]+)(.*)/g)) {
            expect(m[1]).toMatch(/^SC\d{4}$/); // one code at a time
            expect(m[2]).toMatch(/#\s*\S+/); // with a reason
        }
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
