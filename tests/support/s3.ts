/** A throwaway s3rver on a free loopback port (credentials S3RVER/S3RVER). */
import { join } from "node:path";
import { freePort, removeDir, tempDir } from "./env";

export interface S3Instance {
    readonly endpoint: string;
    readonly port: number;
    readonly dir: string;
    readonly accessKeyId: string;
    readonly secretAccessKey: string;
    stop(): Promise<void>;
    /** Stop the server but keep the data (to simulate an outage); `start()` resumes. */
    halt(): Promise<void>;
    start(): Promise<void>;
}

/** `tls`: serve HTTPS with this key and certificate (PEM), as pgBackRest needs. */
export async function startS3(buckets: readonly string[] = ["hx-backups"], tls?: { readonly key: string; readonly cert: string }): Promise<S3Instance> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const S3rver = require("s3rver");
    const dir = tempDir("hx-s3-");
    const port = await freePort();
    let server: { run(): Promise<unknown>; close(): Promise<void> } | undefined;
    const start = async () => {
        server = new S3rver({
            port,
            address: "127.0.0.1",
            silent: true,
            directory: join(dir, "data"),
            configureBuckets: buckets.map((name) => ({ name })),
            ...(tls ? { key: tls.key, cert: tls.cert } : {}),
        });
        await server!.run();
    };
    const halt = async () => {
        if (server) await server.close();
        server = undefined;
    };
    await start();
    return {
        endpoint: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
        port,
        dir,
        accessKeyId: "S3RVER",
        secretAccessKey: "S3RVER",
        halt,
        start,
        async stop() {
            await halt();
            removeDir(dir);
        },
    };
}
