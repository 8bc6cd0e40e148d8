/**
 * Contents of the secret files a host receives. Called only inside Pulumi
 * `apply` on secret outputs; the results travel to the host on stdin.
 */
import type { PlannedSecretFile, SecretRef } from "./step";
import type { HostSpec } from "../config/types";
import { renderPgbackrestSecrets, repositoryPassphrase } from "./pgbackrest";

export interface SecretValues {
    /** Key id -> 128 hex characters. */
    readonly keys: Readonly<Record<string, string>>;
    readonly s3?: { readonly accessKeyId: string; readonly secretAccessKey: string };
    readonly redisPassword?: string;
    readonly postgresqlPassword?: string;
    readonly smtpPassword?: string;
}

/** .pgpass fields escape ':' and '\\'. */
const pgpassField = (v: string) => v.replace(/[\\:]/g, "\\$&");

function oneLine(what: string, value: string): string {
    if (/[\r\n\0]/.test(value)) throw new Error(`${what} must be a single line (it contains a newline or NUL)`);
    return value;
}

export function renderSecretContent(ref: SecretRef, values: SecretValues, host: HostSpec): string {
    switch (ref.kind) {
        case "key": {
            const hex = values.keys[ref.keyId];
            if (!hex || !/^[0-9a-f]{128}$/.test(hex)) throw new Error(`encryption key ${ref.keyId} is missing or not 64 bytes of hex`);
            return `${hex}\n`;
        }
        case "s3Credentials": {
            if (!values.s3) throw new Error("S3 credentials are required for a host with remoteSync");
            return `[default]\naws_access_key_id = ${oneLine("s3AccessKeyId", values.s3.accessKeyId)}\naws_secret_access_key = ${oneLine("s3SecretAccessKey", values.s3.secretAccessKey)}\n`;
        }
        case "redisAuth":
            if (!values.redisPassword) throw new Error("redisPassword is required for redis.auth");
            return oneLine("redisPassword", values.redisPassword);
        case "smtpPassword":
            if (!values.smtpPassword) throw new Error("notifySmtpAuthPassword is required with notifySmtpAuthUsername");
            return oneLine("notifySmtpAuthPassword", values.smtpPassword);
        case "pgbackrest": {
            const hex = values.keys[ref.keyId];
            if (!hex) throw new Error(`encryption key ${ref.keyId} is missing (the pgBackRest passphrase derives from it)`);
            if (ref.s3 && !values.s3) throw new Error("S3 credentials are required for a PITR repository in the bucket");
            return renderPgbackrestSecrets(repositoryPassphrase(hex, ref.keyId), ref.s3 ? values.s3 : undefined);
        }
        case "pgpass": {
            const pg = host.postgresql;
            if (!pg || !values.postgresqlPassword) throw new Error("postgresqlPassword is required for postgresql.auth: pgpass");
            return `${pgpassField(pg.host)}:${pg.port}:*:${pgpassField(pg.user)}:${pgpassField(oneLine("postgresqlPassword", values.postgresqlPassword))}\n`;
        }
    }
}

/** stdin for installSecretFilesScript: one base64 line per file, in order. */
export function secretStdin(files: readonly PlannedSecretFile[], values: SecretValues, host: HostSpec): string {
    return files.map((f) => Buffer.from(renderSecretContent(f.secret, values, host)).toString("base64")).join("\n") + "\n";
}
