/**
 * The SSH runner every deploy step goes through: a connection that fails
 * before ssh reads its stdin is an exit code and a message, not a crash of
 * the whole deploy (EPIPE on the stdin pipe).
 */
import { describe, expect, it } from "vitest";
import { sshExec } from "../../scripts/lib/ssh";
import { freePort, isCI, missingTools } from "../support/env";

const missing = missingTools(["ssh"]);
if (isCI && missing.length) throw new Error(`ssh test needs ${missing.join(", ")} in CI`);

describe.runIf(missing.length === 0)("sshExec", () => {
    it("reports a refused connection with its exit code, even with stdin larger than a pipe holds", async () => {
        const port = await freePort();
        // 4 MiB: far more than the pipe buffer, so the write is still going when ssh exits.
        const r = await sshExec({ host: "127.0.0.1", port, user: "nobody" }, "true", "x".repeat(4 * 1024 * 1024), 30_000);
        expect(r.code).toBe(255);
        expect(r.stderr).toMatch(/Connection refused|connect to host/);
    });
});
