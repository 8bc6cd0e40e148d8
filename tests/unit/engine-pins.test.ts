/**
 * The engine that scripts/install-pulumi.sh builds matches the SDKs in
 * package-lock.json: the CLI is the release of @pulumi/pulumi, and the plugins
 * it asks for are the releases of @pulumi/command and @pulumi/random.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..", "..");
const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");
const lock = JSON.parse(read("package-lock.json")) as { packages: Record<string, { version: string }> };
const npmVersion = (name: string) => lock.packages[`node_modules/${name}`].version;
const script = read("scripts/install-pulumi.sh");

function scriptConstant(name: string): string {
    const m = new RegExp(`^readonly ${name}="([^"]+)"$`, "m").exec(script);
    if (!m) throw new Error(`install-pulumi.sh has no readonly ${name}`);
    return m[1];
}

/** The version a wrapper go.mod requires of a module. */
function goRequire(goMod: string, module: string): string {
    const m = new RegExp(`^\\s*(?:require\\s+)?${module.replace(/[.]/g, "\\.")} (v\\S+)`, "m").exec(read(goMod));
    if (!m) throw new Error(`${goMod} does not require ${module}`);
    return m[1];
}

describe("engine pins", () => {
    it("builds the CLI of the @pulumi/pulumi release in package-lock.json", () => {
        const sdk = `v${npmVersion("@pulumi/pulumi")}`;
        expect(scriptConstant("CLI_VERSION")).toBe(sdk);
        expect(goRequire("scripts/pulumi-engine/cli/go.mod", "github.com/pulumi/pulumi/pkg/v3")).toBe(sdk);
        expect(goRequire("scripts/pulumi-engine/cli/go.mod", "github.com/pulumi/pulumi/sdk/v3")).toBe(sdk);
    });

    it("stamps the language host with the SDK release its module commit belongs to", () => {
        const host = scriptConstant("LANGUAGE_HOST_VERSION");
        const goMod = "scripts/pulumi-engine/language-nodejs/go.mod";
        expect(goRequire(goMod, "github.com/pulumi/pulumi/sdk/v3")).toBe(host);
        expect(goRequire(goMod, "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3")).toMatch(/^v3\.0\.0-\d{14}-[0-9a-f]{12}$/);
    });

    it("the stand-ins report the releases of @pulumi/command and @pulumi/random they stand in for, and build on the CLI's SDK", () => {
        for (const name of ["command", "random"]) {
            const main = read(`scripts/pulumi-engine/standin/cmd/pulumi-resource-${name}/main.go`);
            expect(/UpstreamVersion: "([^"]+)"/.exec(main)?.[1], name).toBe(npmVersion(`@pulumi/${name}`));
        }
        expect(goRequire("scripts/pulumi-engine/standin/go.mod", "github.com/pulumi/pulumi/sdk/v3")).toBe(`v${npmVersion("@pulumi/pulumi")}`);
    });

    it("asks for the plugin releases of @pulumi/command and @pulumi/random", () => {
        const plugins = /^readonly PLUGINS=\((.*)\)$/m.exec(script)?.[1];
        const entries = [...(plugins ?? "").matchAll(/"(\S+) (\S+) (\S+)"/g)].map(([, name, prefix, wanted]) => ({ name, prefix, wanted }));
        expect(entries.map((e) => e.name)).toEqual(["command", "random"]);
        for (const e of entries) {
            const npm = npmVersion(`@pulumi/${e.name}`);
            expect(e.wanted).toBe(npm);
            expect(npm.startsWith(e.prefix)).toBe(true);
        }
    });
});
