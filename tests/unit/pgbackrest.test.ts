/**
 * The pgBackRest render for PITR: the repository per key version (bucket or
 * local), a main config without secrets, and a passphrase the host can
 * rebuild from its keyring with the library's own HMAC.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import { passphraseMessage, renderPgbackrestConf, renderPgbackrestSecrets, repositoryPassphrase } from "../../render/pgbackrest";
import { planHost } from "../../render/hostPlan";
import { renderFacts } from "../../scripts/render";
import { PROJECT_DIR } from "./helpers";

const PG = { postgresql: { pitr: { enabled: true, retentionFull: 3, processMax: 4 } } };
const KEY = "0f".repeat(32) + "a5".repeat(32);

describe("pgBackRest config for PITR", () => {
    it("puts the repository in the stack's bucket under <prefix>/pgbackrest/<host>/<keyId>, with no secret in the main file", () => {
        const config = loadStackConfig("unit", {
            s3Endpoint: "https://s3.example.com:9000", bucketName: "hx-unit", s3Region: "eu-central-1", bucketPrefix: "hx",
            hosts: [{ name: "db-1", address: "10.0.0.2", roles: ["postgresql"], ...PG }],
        }, { assumeSecretsSet: true });
        const conf = renderPgbackrestConf(config, config.hosts[0]!, "unit-v2");
        expect(conf.stanza).toBe("db-1-15-main");
        expect(conf.repository).toEqual({ type: "s3", path: "/hx/pgbackrest/db-1/unit-v2", s3: { bucket: "hx-unit", endpoint: "s3.example.com", port: 9000, region: "eu-central-1", uriStyle: "path", caFile: "" } });
        expect(conf.main).toContain("repo1-s3-endpoint=s3.example.com\nrepo1-storage-port=9000\n");
        expect(conf.main).not.toContain("repo1-storage-ca-file");
        expect(conf.main).toContain("[db-1-15-main]\npg1-path=/var/lib/postgresql/15/main\npg1-port=5432\npg1-socket-path=/var/run/postgresql\n");
        expect(conf.main).toMatch(/^repo1-cipher-type=aes-256-cbc$/m);
        expect(conf.main).toMatch(/^repo1-retention-full=3$/m);
        expect(conf.main).not.toMatch(/cipher-pass|s3-key/);
    });

    it("trusts s3CaFile for a private CA, and refuses PITR to a plain-HTTP endpoint at preview, naming the host's field and the fix", () => {
        const raw = { s3Endpoint: "https://127.0.0.1:4443", s3CaFile: "/etc/ssl/hx/s3-ca.pem", bucketName: "hx-unit", hosts: [{ name: "db-1", address: "10.0.0.2", roles: ["postgresql"], ...PG }] };
        const config = loadStackConfig("unit", raw, { assumeSecretsSet: true });
        const conf = renderPgbackrestConf(config, config.hosts[0]!, "unit-v1");
        expect(conf.main).toContain("repo1-s3-endpoint=127.0.0.1\nrepo1-storage-port=4443\n");
        expect(conf.main).toMatch(/^repo1-storage-ca-file=\/etc\/ssl\/hx\/s3-ca.pem$/m);
        expect(conf.main).not.toMatch(/verify-tls/);
        expect(() => loadStackConfig("unit", { ...raw, s3Endpoint: "http://127.0.0.1:4569", s3CaFile: "" }, { assumeSecretsSet: true })).toThrow(
            /hosts\[0\]\.postgresql\.pitr\.enabled.*https:\/\/ s3Endpoint.*remoteSync: false on db-1/s,
        );
        expect(() => loadStackConfig("unit", { ...raw, s3Endpoint: "" }, { assumeSecretsSet: true })).toThrow(/s3CaFile.*empty without s3Endpoint/s);
    });

    it("the jobs' lock folder is the backup user's from the account step, whichever job user (backup or postgres) runs first", () => {
        const config = loadStackConfig("unit", { hosts: [{ name: "db-1", address: "10.0.0.2", roles: ["postgresql"], remoteSync: false, ...PG }] });
        const plan = planHost(config, config.hosts[0]!, renderFacts(config));
        const account = plan.steps.find((st) => st.name === "account")!;
        expect(account.create).toContain(` ${plan.config.paths.locks} ${config.backupUser} ${config.backupUser} 0750`);
        // pitr-archiving only grants postgres its ACL on the folder; it never creates it (it would be root's).
        const archiving = plan.steps.find((st) => st.name === "pitr-archiving")!;
        expect(archiving.dependsOn).toContain("pgbackrest-config");
        expect(archiving.create).not.toMatch(/install -d[^\n]*"\$lock_dir"/);
    });

    it("keeps a host without sync in a local repository under the storage directory", () => {
        const config = loadStackConfig("unit", { hosts: [{ name: "db-1", address: "10.0.0.2", roles: ["postgresql"], remoteSync: false, ...PG }] });
        expect(renderPgbackrestConf(config, config.hosts[0]!, "unit-v1").repository).toEqual({ type: "posix", path: `${config.paths.storageDir}/pgbackrest/unit-v1` });
    });

    it("derives the passphrase from the key's MAC half as the host library's HMAC does, and refuses multi-line secrets", () => {
        const ours = repositoryPassphrase(KEY, "unit-v1");
        expect(ours).toMatch(/^[0-9a-f]{64}$/);
        expect(repositoryPassphrase(KEY, "unit-v2")).not.toBe(ours);
        const lib = path.join(PROJECT_DIR, "templates", "scripts", "lib", "crypto.sh");
        const bash = spawnSync("bash", ["-c", 'source "$1"; printf "%s" "$2" | hx_hmac_hex "$3"', "_", lib, passphraseMessage("unit-v1"), KEY.slice(64)], { encoding: "utf8" });
        expect(bash.status, bash.stderr).toBe(0);
        expect(bash.stdout.trim()).toBe(ours);
        expect(renderPgbackrestSecrets(ours, { accessKeyId: "AK", secretAccessKey: "SK" })).toBe(`[global]\nrepo1-cipher-pass=${ours}\nrepo1-s3-key=AK\nrepo1-s3-key-secret=SK\n`);
        expect(() => renderPgbackrestSecrets("a\nrepo1-path=/tmp")).toThrow(/one line/);
    });
});
