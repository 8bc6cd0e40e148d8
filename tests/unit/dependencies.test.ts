/**
 * What package.json and package-lock.json promise a clean `npm ci` and a run
 * on the Node.js the project declares: every install script reviewed in
 * allowScripts, and an AWS SDK that still supports that Node.js (the report
 * silences the SDK's notice about future releases on that ground).
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/engine";

interface LockEntry {
    version?: string;
    resolved?: string;
    hasInstallScript?: boolean;
    engines?: { node?: string };
}

const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
    engines: { node: string };
    allowScripts?: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync(path.join(REPO_ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };

/** The installed packages, by name (the part after the last node_modules/). */
const installed = Object.entries(lock.packages)
    .filter(([where]) => where.includes("node_modules/"))
    .map(([where, entry]) => ({ name: where.slice(where.lastIndexOf("node_modules/") + "node_modules/".length), ...entry }));

/** The major of a `>=N[.x.y]` range; anything else is a form this check does not know. */
function lowestMajor(range: string): number {
    const m = /^>=\s*(\d+)(\.\d+){0,2}$/.exec(range.trim());
    if (!m) throw new Error(`engines.node "${range}" is not of the form >=N.x.y`);
    return Number(m[1]);
}

describe("dependencies", () => {
    it("every dependency with install scripts is allowed or denied in allowScripts, so npm ci warns about none", () => {
        const policy = manifest.allowScripts ?? {};
        // npm matches a pinned key (name@1.2.3 || 1.2.4) only against the lock entry's resolved URL,
        // which a lockfile written with omit-lockfile-registry-resolved lacks: then only the name counts.
        const covered = (p: (typeof installed)[number]) =>
            Object.keys(policy).some((key) => {
                if (key === p.name) return true;
                if (!p.resolved || !key.startsWith(`${p.name}@`)) return false;
                return key.slice(p.name.length + 1).split("||").map((v) => v.trim()).includes(p.version ?? "");
            });
        const withScripts = installed.filter((p) => p.hasInstallScript);
        expect(withScripts.length).toBeGreaterThan(0);
        expect(withScripts.filter((p) => !covered(p)).map((p) => `${p.name}@${p.version}`)).toEqual([]);
        expect(Object.values(policy).every((v) => typeof v === "boolean")).toBe(true);
    });

    it("every installed @aws-sdk and @smithy package supports the Node.js major package.json declares", () => {
        const declared = lowestMajor(manifest.engines.node);
        const sdk = installed.filter((p) => /^@(aws-sdk|smithy)\//.test(p.name));
        expect(sdk.map((p) => p.name)).toContain("@aws-sdk/core");
        const unsupported = sdk.filter((p) => lowestMajor(p.engines?.node ?? ">=0") > declared).map((p) => `${p.name}@${p.version} (${p.engines?.node})`);
        expect(unsupported).toEqual([]);
    });
});
