/**
 * The SSH runner every deploy step goes through: a connection that fails
 * before ssh reads its stdin is an exit code and a message, not a crash of
 * the whole deploy (EPIPE on the stdin pipe); a session killed at its time
 * limit says so on stderr.
 */
import { createServer, type Socket } from "node:net";
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

    it("says so when it kills a session at its time limit (no longer an empty stderr)", async () => {
        // A server that accepts and never sends its banner: ssh waits for it (ConnectTimeout, 15 s) until the 1 s limit kills it.
        const sockets: Socket[] = [];
        const server = createServer((s) => sockets.push(s));
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        try {
            const port = (server.address() as { port: number }).port;
            const r = await sshExec({ host: "127.0.0.1", port, user: "nobody" }, "true", "", 1_000);
            expect(r.code).toBe(255);
            expect(r.stderr).toMatch(/^ssh: no result within 1 s: killed$/m);
        } finally {
            for (const s of sockets) s.destroy();
            server.close();
        }
    });
});
