/**
 * Field validators. Each returns null when the value fits the field, or the
 * expected form in words, so the loader can report "key: got X, expected Y".
 */

import { RETENTION_CLASSES } from "./lifecycle";

export type Check = (value: string) => string | null;

const CONTROL = /[\u0000-\u001f\u007f]/;

/** The PITR repositories' folder under the bucket prefix; with tag-mode keys (`<prefix>/<host>/...`) a host of that name would share it. */
export const PITR_REPOSITORY_FOLDER = "pgbackrest";

export const hostName: Check = (v) =>
    !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v)
        ? "a host name: lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-'"
        : v === PITR_REPOSITORY_FOLDER
          ? `another host name: "${PITR_REPOSITORY_FOLDER}" is the bucket folder of the PITR repositories`
          : // With retentionBy "prefix" each class is a folder under the prefix; a host's restore-test record (`<prefix>/<host>/...`) under one would fall to its lifecycle rule.
            (RETENTION_CLASSES as readonly string[]).includes(v)
            ? `another host name: "${v}" is the bucket folder of a retention class, whose lifecycle rule would expire the host's restore-test record`
            : null;

export const address: Check = (v) =>
    /^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$/.test(v) ? null : "an IP address or DNS name (letters, digits, '.', ':', '-')";

/** One mailbox, as Alertmanager's `to`/`from` take it: no display name, no template braces. */
export const emailAddress: Check = (v) =>
    /^[A-Za-z0-9.!#$%&'*+/=?^_`|~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/.test(v) && !/\.\.|^\.|\.@/.test(v)
        ? null
        : "an email address such as ops@example.com (no display name, spaces, quotes or braces)";

/** An SMTP relay, `host:port`. */
export const hostPort: Check = (v) =>
    /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?:\d{1,5}$/.test(v) && Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535 ? null : "host:port, such as smtp.example.com:587";

/** A Prometheus/Alertmanager duration such as 30s, 5m, 4h or 1h30m. */
export const duration: Check = (v) => (/^([0-9]+(ms|s|m|h|d|w|y))+$/.test(v) ? null : "a duration such as 30s, 5m or 4h");

/** `local` (the host's zone) or a zone this machine's ICU knows (IANA names such as `Europe/Berlin`, or `UTC`). */
export const timeZone: Check = (v) => {
    const hint = "`local`, `UTC` or an IANA time zone name such as `Europe/Berlin`";
    if (v === "local") return null;
    if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/.test(v)) return hint;
    try {
        new Intl.DateTimeFormat("en", { timeZone: v });
        return null;
    } catch {
        return `${hint} ('${v}' is not a known zone)`;
    }
};

export const unixUser: Check = (v) =>
    /^[a-z_][a-z0-9_-]{0,31}$/.test(v) ? null : "a Unix user name: lowercase letter or '_' first, then lowercase letters, digits, '_' or '-', at most 32 characters";

export const databaseName: Check = (v) =>
    /^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$/.test(v)
        ? null
        : "a database name of letters, digits, '_', '.', '$' or '-' (at most 63 characters); names with spaces, quotes or '=' are refused because they also name files and connection strings";

/** Core directories: they appear in systemd units, sudoers and logrotate, so stay plain. */
export const plainPath: Check = (v) =>
    /^\/[A-Za-z0-9._/-]*$/.test(v) && !/(^|\/)\.\.?(\/|$)/.test(v) && !v.includes("//")
        ? null
        : "an absolute path of letters, digits, '.', '_', '-' and '/', without '..' or '//'";

/** Backup source paths are data only; anything printable goes, except control characters. */
export const sourcePath: Check = (v) =>
    v.startsWith("/") && !CONTROL.test(v) && !/(^|\/)\.\.(\/|$)/.test(v)
        ? null
        : "an absolute path without control characters (newlines, tabs) or '..' segments";

export const pattern: Check = (v) =>
    v !== "" && !CONTROL.test(v) ? null : "a non-empty glob pattern without control characters";

export const bucketName: Check = (v) =>
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) && !/\.\.|^\d+\.\d+\.\d+\.\d+$/.test(v) && !v.startsWith("xn--")
        ? null
        : "an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit";

export const keyPrefix: Check = (v) =>
    /^[A-Za-z0-9!_.*'()-]+(\/[A-Za-z0-9!_.*'()-]+)*$/.test(v) ? null : "an S3 key prefix of safe characters (letters, digits, !_.*'()-) separated by single '/', without leading or trailing '/'";

export const url: Check = (v) =>
    /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~/-]*)?$/.test(v) ? null : "an http(s) URL such as https://s3.example.com:9000";

export const hostKey: Check = (v) =>
    /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,3}( \S+)?$/.test(v) ? null : "an SSH public host key line such as \"ssh-ed25519 AAAA...\"";

export const region: Check = (v) => (/^[a-z]{2}(-[a-z]+)+-\d$/.test(v) ? null : "an AWS region such as eu-central-1");

export const commandLine: Check = (v) =>
    v.trim() !== "" && !CONTROL.test(v) ? null : "a one-line shell command";
