/**
 * The plan (render/hostPlan.ts) of every host of a stack whose config is in
 * `configFile`, reduced to what the engine tests compare: each step's name,
 * digest and installed paths, and the host's timers. Run as a script
 * (`node --import tsx <project>/tests/support/engine-plan.ts CONFIG STACK [FACTS]`)
 * it plans with that project copy's own code and templates, and prints JSON.
 */
import * as path from "node:path";
import type { DeployFacts } from "../../render/hostConfig";
import { planHost } from "../../render/hostPlan";
import { unitName } from "../../render/systemd";
import { loadStackFromFiles, renderFacts } from "../../scripts/render";

export interface PlannedStep {
    readonly name: string;
    readonly digest: string;
    /** Files it installs (plain and secret), its manifest entry included. */
    readonly paths: readonly string[];
    /** Whether it has a delete (steps without one, the keyring, leave their files on removal). */
    readonly deletes: boolean;
}

export interface PlannedHost {
    readonly name: string;
    readonly steps: readonly PlannedStep[];
    /** The host's stage copies (command:remote:CopyToRemote), by resource suffix (`files-stage`); a release from before them has none. */
    readonly stages?: readonly string[];
    readonly timers: readonly string[];
}

export function planFleetData(configFile: string, stack: string, facts?: DeployFacts): PlannedHost[] {
    const config = loadStackFromFiles(path.dirname(configFile), stack);
    const f = facts ?? renderFacts(config);
    return config.hosts.map((host) => {
        const plan = planHost(config, host, f);
        return {
            name: host.name,
            steps: plan.steps.map((s) => ({ name: s.name, digest: s.digest, paths: [...s.files.map((x) => x.path), ...s.secretFiles.map((x) => x.path)], deletes: s.delete !== undefined })),
            stages: plan.steps.filter((s) => s.stage).map((s) => `${s.name}-stage`),
            timers: plan.jobs.map((j) => unitName(j.name, "timer")),
        };
    });
}

if (require.main === module) {
    const [configFile, stack, facts] = process.argv.slice(2);
    if (!configFile || !stack) {
        console.error("usage: engine-plan.ts CONFIG_FILE STACK [FACTS_JSON]");
        process.exit(2);
    }
    process.stdout.write(JSON.stringify(planFleetData(configFile, stack, facts ? (JSON.parse(facts) as DeployFacts) : undefined)));
}
