/**
 * --keys DIR: a keyring directory as the hosts keep it (/etc/hx-backup/keys),
 * one `<keyId>.key` file per key. Only the MAC half is kept in memory; a
 * malformed or unreadable file is an error rather than a silently unverified
 * manifest.
 */
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { ReportInputError } from "./bucket";
import { macHalfOfKeyFile } from "./canonical";
import type { MacKeyring } from "./model";

const KEY_FILE = /^([A-Za-z0-9._-]+)\.key$/;

export function readKeyring(dir: string): MacKeyring {
    let names: string[];
    try {
        names = readdirSync(dir);
    } catch (e) {
        throw new ReportInputError(`--keys ${dir}: cannot read the directory (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give the keyring directory holding <keyId>.key files, e.g. a copy of /etc/hx-backup/keys`);
    }
    const keyring = new Map<string, string>();
    for (const name of names.sort()) {
        const id = KEY_FILE.exec(name)?.[1];
        if (!id) continue;
        let text: string;
        try {
            text = readFileSync(path.join(dir, name), "utf8");
        } catch (e) {
            throw new ReportInputError(`--keys ${dir}: cannot read ${name} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); run the report as a user that can read the keyring`);
        }
        const mac = macHalfOfKeyFile(text);
        if (!mac) throw new ReportInputError(`--keys ${dir}: ${name} is not a key file (expected one line of 128 hex characters, as the hosts' keyring holds)`);
        keyring.set(id, mac);
    }
    if (keyring.size === 0) throw new ReportInputError(`--keys ${dir}: no <keyId>.key files in it; give the keyring directory (a copy of /etc/hx-backup/keys), or leave --keys out to skip the MAC check`);
    return keyring;
}
