/**
 * A stack file written by `pulumi config set` (the sandbox's effective stack,
 * .sandbox/stack/Pulumi.sandbox.yaml) reads in the render, drift and report
 * tools as the program reads the same config from the engine: the salt is
 * not config, `secure:` values are secrets set, scalars are strings and lists
 * are JSON text.
 */
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadStackFromFiles } from "../../scripts/render";
import { removeDir, tempDir } from "./helpers";

const dir = tempDir("hx-cli-stack-");
afterAll(() => removeDir(dir));

const hosts = [
    { name: "db-1", address: "127.0.0.2", port: 40022, roles: ["postgresql", "configuration"], nodeExporterUrl: "http://127.0.0.2:41000/metrics", postgresql: { databases: ["app"], port: 40543 } },
    { name: "mon-1", address: "127.0.0.4", roles: ["monitoring", "configuration"] },
];

function write(name: string, body: string): void {
    writeFileSync(path.join(dir, `Pulumi.${name}.yaml`), body);
}

describe("a stack file the Pulumi CLI wrote", () => {
    it("reads lists set as JSON text, string scalars and secure secrets; the salt is ignored", () => {
        write(
            "cli",
            [
                "encryptionsalt: v1:ufA1OgRxxws=:v1:eCwcnIgKrhOVQ2RB:STuK/+6wRlckjI9hD/V1nLpk8Pdw3Q==",
                "config:",
                "  hx-backup:bucketName: hx-unit-bucket",
                "  hx-backup:s3Endpoint: https://127.0.0.1:4569",
                "  hx-backup:s3Region: us-east-1",
                '  hx-backup:installPackages: "false"',
                '  hx-backup:timerRandomizedDelaySec: "0"',
                "  hx-backup:monitoringHost: mon-1",
                `  hx-backup:hosts: '${JSON.stringify(hosts)}'`,
                "  hx-backup:sshPrivateKey:",
                "    secure: v1:lKhrkDEnD9OmbWho:rY0FdNzDqC7S0DKqgVaAac0tdaauOf8sx6kYzYZVrraw",
                "  hx-backup:s3AccessKeyId:",
                "    secure: v1:9ZP9PkvI0IrQhnLx:GrgfqfowkU2XA+ITPS7/xjzqsXJf1g==",
                "  hx-backup:s3SecretAccessKey:",
                "    secure: v1:n/adAXu6jMce+2Il:i+VKa5vPettJFLXCnNlEbJciCtjQ7Q==",
                "",
            ].join("\n"),
        );
        const c = loadStackFromFiles(dir, "cli");
        expect(c.hosts.map((h) => [h.name, h.address, h.port])).toEqual([["db-1", "127.0.0.2", 40022], ["mon-1", "127.0.0.4", 22]]);
        expect(c.hosts[0].nodeExporterUrl).toBe("http://127.0.0.2:41000/metrics");
        expect(c.hosts[0].postgresql?.port).toBe(40543);
        expect(c.installPackages).toBe(false);
        expect(c.randomizedDelaySec).toBe(0);
        expect(c.ssh.usesPrivateKey).toBe(true);
        expect(c.storage).toMatchObject({ mode: "custom", endpoint: "https://127.0.0.1:4569" });
        expect(JSON.stringify(c)).not.toContain("v1:");
    });

    it("a value that starts like JSON but is not names the file, the key and the fix", () => {
        write("broken", ["config:", "  hx-backup:bucketName: b", "  hx-backup:s3Region: us-east-1", "  hx-backup:hosts: '[{\"name\": \"h1\",'", ""].join("\n"));
        expect(() => loadStackFromFiles(dir, "broken")).toThrow(/Pulumi\.broken\.yaml: hx-backup:hosts starts like JSON but is not .*pulumi config set hosts --stack broken/);
    });

    it("a secret still refuses to be read in plaintext", () => {
        write("plain", ["config:", "  hx-backup:bucketName: b", "  hx-backup:s3Region: us-east-1", `  hx-backup:hosts: '${JSON.stringify(hosts)}'`, "  hx-backup:sshPrivateKey: '[not-a-secret]'", ""].join("\n"));
        expect(() => loadStackFromFiles(dir, "plain")).toThrow(/hx-backup:sshPrivateKey is stored in plaintext/);
    });
});
