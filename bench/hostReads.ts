/**
 * What the deploy's host reads cost (components/hostRead.ts): an unchanged
 * `pulumi preview` and `pulumi up` of a deployed light stack (configuration
 * hosts, real engine, real SSH), with `hostReads` on and off, alternating, for
 * 1 and 3 hosts. The cost per host is the difference of the medians divided by
 * the hosts.
 */
import { rmSync } from "node:fs";
import * as path from "node:path";
import { PROCEDURES, setConfig, type EngineInfo } from "../scripts/lib/engine";
import { engineTestsUnavailable, expectOk, newSshKey, pulumi, sandboxStack, startFleet, type FleetHost } from "../tests/support/engine";
import { tempDir } from "../tests/support/env";
import { log } from "./common";

export interface HostReadsRound {
    readonly previewOn: number;
    readonly previewOff: number;
    readonly upOn: number;
    readonly upOff: number;
}

export interface HostReadsBench {
    readonly plugins: string;
    readonly byHosts: { readonly hosts: number; readonly rounds: HostReadsRound[] }[];
}

async function measure(engine: EngineInfo, hosts: number, rounds: number): Promise<HostReadsRound[]> {
    const dir = tempDir("hx-bench-reads-");
    let fleet: FleetHost[] = [];
    try {
        const keyFile = path.join(dir, "deploy_ed25519");
        newSshKey(keyFile);
        const specs = Array.from({ length: hosts }, (_, i) => ({ name: `cfg-${i + 1}`, address: `127.0.0.${121 + i}`, roles: ["configuration"] }));
        fleet = await startFleet(path.join(dir, "hosts"), specs, keyFile);
        const stack = await sandboxStack(engine, dir, "reads", fleet, keyFile);
        expectOk(await pulumi(stack, PROCEDURES.up));
        const timed = async (args: readonly string[], reads: boolean) => {
            await setConfig(stack, { "hx-backup:hostReads": reads });
            const r = await pulumi(stack, args);
            expectOk(r);
            return r.seconds;
        };
        const out: HostReadsRound[] = [];
        for (let i = 0; i < rounds; i++) {
            // Alternate which goes first, so that neither always runs on a warmer cache.
            const order = i % 2 === 0 ? [true, false] : [false, true];
            const preview: Record<string, number> = {};
            const up: Record<string, number> = {};
            for (const reads of order) preview[String(reads)] = await timed(PROCEDURES.hostDrift, reads);
            for (const reads of order) up[String(reads)] = await timed(PROCEDURES.up, reads);
            out.push({ previewOn: preview.true, previewOff: preview.false, upOn: up.true, upOff: up.false });
            log(`  host reads, ${hosts} host(s), round ${i + 1}: preview ${preview.true.toFixed(1)} s on / ${preview.false.toFixed(1)} s off; up ${up.true.toFixed(1)} s on / ${up.false.toFixed(1)} s off`);
        }
        return out;
    } finally {
        for (const f of fleet) await f.host.stop();
        rmSync(dir, { recursive: true, force: true });
    }
}

export async function benchHostReads(rounds: number): Promise<HostReadsBench> {
    const available = engineTestsUnavailable();
    if (available.reason) throw new Error(`the host-reads bench needs the engine and root: ${available.reason}`);
    const engine = available.engine!;
    const plugins = engine.plugins.map((p) => `${p.name} ${p.source}`).join(", ");
    const byHosts = [];
    for (const hosts of [1, 3]) byHosts.push({ hosts, rounds: await measure(engine, hosts, rounds) });
    return { plugins, byHosts };
}
