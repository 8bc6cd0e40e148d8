/**
 * A throwaway self-signed certificate for an HTTPS endpoint on 127.0.0.1
 * (s3rver in the sandbox and the tests). pgBackRest 2.45 talks to S3 over
 * HTTPS only and matches the endpoint against the certificate's DNS names,
 * while the AWS CLI and Node match an IP address against IP entries: the
 * certificate carries both. It is its own CA, so the same file is the
 * stack's s3CaFile.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

export interface LoopbackCertificate {
    readonly keyFile: string;
    readonly certFile: string;
    /** PEM of the private key. */
    readonly key: string;
    /** PEM of the certificate, which is also the CA to trust. */
    readonly cert: string;
}

export function loopbackCertificate(dir: string, days = 7): LoopbackCertificate {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keyFile = path.join(dir, "key.pem");
    const certFile = path.join(dir, "cert.pem");
    execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", String(days), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1", "-keyout", keyFile, "-out", certFile],
        { stdio: ["ignore", "ignore", "pipe"] },
    );
    chmodSync(keyFile, 0o600);
    return { keyFile, certFile, key: readFileSync(keyFile, "utf8"), cert: readFileSync(certFile, "utf8") };
}
