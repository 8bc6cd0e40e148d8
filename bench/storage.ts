/** Storage: bytes added by a second, unchanged backup of application data and configuration. */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { makeHost } from "../tests/support/host";
import { fmtMiB, log, round } from "./common";

function files(dir: string): Map<string, number> {
    const out = new Map<string, number>();
    const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
            const p = join(d, e.name);
            if (e.isDirectory()) walk(p);
            else if (e.isFile()) out.set(relative(dir, p), statSync(p).size);
        }
    };
    walk(dir);
    return out;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

export interface StorageResult {
    sourceBytes: { application: number; configuration: number };
    perType: Record<string, { firstBytes: number; secondNewFileBytes: number; netGrowthBytes: number; ratio: number }>;
    firstBytes: number;
    secondNewFileBytes: number;
    netGrowthBytes: number;
    ratio: number;
}

/** Application data: text logs, JSON, and binary uploads (some already compressed, i.e. random). */
function generate(root: string): { app: string; etc: string; tls: string; appBytes: number; cfgBytes: number } {
    const app = join(root, "src", "app");
    const etc = join(root, "src", "etc");
    const tls = join(root, "src", "tls");
    let appBytes = 0;
    let cfgBytes = 0;
    for (let d = 0; d < 20; d++) {
        const dir = join(app, "uploads", `d${d}`);
        mkdirSync(dir, { recursive: true });
        for (let f = 0; f < 25; f++) {
            const i = d * 25 + f;
            let body: Buffer;
            if (i % 3 === 0) body = randomBytes(40_000 + ((i * 7919) % 80_000));
            else {
                const lines: string[] = [];
                for (let l = 0; l < 800; l++) lines.push(`2026-11-${String(1 + (l % 28)).padStart(2, "0")} INFO request id=${i}-${l} path=/api/items/${(l * 31) % 977} status=200 ms=${l % 97} ${randomBytes(8).toString("hex")}`);
                body = Buffer.from(lines.join("\n"));
            }
            writeFileSync(join(dir, `file-${i}.${i % 3 === 0 ? "bin" : "log"}`), body);
            appBytes += body.length;
        }
    }
    mkdirSync(join(etc, "conf.d"), { recursive: true });
    mkdirSync(tls, { recursive: true });
    for (let i = 0; i < 40; i++) {
        const body = `# service ${i}\n` + Array.from({ length: 60 }, (_, l) => `option_${l} = value-${(i * l) % 13}`).join("\n") + "\n";
        writeFileSync(join(etc, "conf.d", `svc${i}.conf`), body);
        cfgBytes += body.length;
    }
    for (const n of ["server.key", "server.crt", "ca.crt"]) {
        const body = `-----BEGIN ${n.endsWith("key") ? "PRIVATE KEY" : "CERTIFICATE"}-----\n${randomBytes(1200).toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END-----\n`;
        writeFileSync(join(tls, n), body, { mode: 0o600 });
        cfgBytes += body.length;
    }
    return { app, etc, tls, appBytes, cfgBytes };
}

export async function benchStorage(): Promise<StorageResult> {
    const host = makeHost();
    try {
        const g = generate(host.root);
        host.config.application = { paths: [g.app], include: [], exclude: ["*.tmp"] };
        host.config.configuration = { paths: [g.etc], tlsPaths: [g.tls] };
        host.writeConfig();
        const perType: StorageResult["perType"] = {};
        for (const [type, script] of [["application", "application-backup.sh"], ["configuration", "configuration-backup.sh"]] as const) {
            const dir = join(host.config.paths.storage, type);
            const runOnce = async () => {
                const r = await host.runScript(script, [], { unit: type, timeoutMs: 1_800_000 });
                if (r.code !== 0) throw new Error(`${script} exited ${r.code}: ${r.stderr.slice(-2000)}`);
            };
            await runOnce();
            const first = files(dir);
            await new Promise((r) => setTimeout(r, 1100)); // a new timestamp for the second artifact name
            await runOnce();
            const second = files(dir);
            const newBytes = [...second.entries()].filter(([p, sz]) => first.get(p) !== sz).reduce((a, [, sz]) => a + sz, 0);
            const firstBytes = sum(first);
            perType[type] = { firstBytes, secondNewFileBytes: newBytes, netGrowthBytes: sum(second) - firstBytes, ratio: round(newBytes / firstBytes, 5) };
            log(`  ${type}: first backup ${fmtMiB(firstBytes)} stored, second unchanged backup added ${newBytes} bytes in new files (net ${sum(second) - firstBytes} bytes)`);
        }
        const firstBytes = perType.application!.firstBytes + perType.configuration!.firstBytes;
        const secondNewFileBytes = perType.application!.secondNewFileBytes + perType.configuration!.secondNewFileBytes;
        const netGrowthBytes = perType.application!.netGrowthBytes + perType.configuration!.netGrowthBytes;
        return { sourceBytes: { application: g.appBytes, configuration: g.cfgBytes }, perType, firstBytes, secondNewFileBytes, netGrowthBytes, ratio: round(secondNewFileBytes / firstBytes, 5) };
    } finally {
        host.cleanup();
    }
}
