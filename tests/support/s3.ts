/** A throwaway s3rver on a free loopback port (credentials S3RVER/S3RVER). */
import type * as Crypto from "node:crypto";
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

/**
 * s3rver 3.7 seals its ListObjectsV2 continuation tokens with single DES,
 * which Node 20's OpenSSL 3 only has in the legacy provider: every listing of
 * more than 1000 keys failed with InternalError. Three-key DES with K1=K2=K3
 * computes exactly single DES and is in the default provider; the token stays
 * s3rver's own opaque value.
 */
function allowSingleDes(): void {
    // The module object s3rver's require("crypto") sees (an ES import would be a copy).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const c = require("node:crypto") as typeof Crypto & Record<symbol, unknown>;
    const patched = Symbol.for("hx-test.s3rver-des");
    if (c[patched]) return;
    const widen = (algorithm: string, key: Crypto.CipherKey): [string, Crypto.CipherKey] =>
        algorithm.toLowerCase() === "des" && Buffer.isBuffer(key) && key.length === 8 ? ["des-ede3-cbc", Buffer.concat([key, key, key])] : [algorithm, key];
    const { createCipheriv, createDecipheriv } = c;
    const wrap = <T>(f: (...a: never[]) => T) => (algorithm: string, key: Crypto.CipherKey, ...rest: unknown[]): T => (f as unknown as (...a: unknown[]) => T)(...widen(algorithm, key), ...rest);
    Object.assign(c, { createCipheriv: wrap(createCipheriv), createDecipheriv: wrap(createDecipheriv), [patched]: true });
}

/** `tls`: serve HTTPS with this key and certificate (PEM), as pgBackRest needs. */
export async function startS3(buckets: readonly string[] = ["hx-backups"], tls?: { readonly key: string; readonly cert: string }): Promise<S3Instance> {
    allowSingleDes();
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
