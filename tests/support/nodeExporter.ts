/** A throwaway node_exporter serving only a textfile directory, stopped by PID. */
import { spawn } from "node:child_process";
import { freePort, run, waitFor, which } from "./env";

export const NODE_EXPORTER = process.env.HX_NODE_EXPORTER ?? which("prometheus-node-exporter") ?? which("node_exporter") ?? "prometheus-node-exporter";

export interface NodeExporterInstance {
    readonly url: string;
    readonly port: number;
    stop(): Promise<void>;
    readonly pid: number | undefined;
}

export async function startNodeExporter(textfileDir: string): Promise<NodeExporterInstance> {
    const port = await freePort();
    const child = spawn(NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${port}`, "--collector.disable-defaults", "--collector.textfile", `--collector.textfile.directory=${textfileDir}`], {
        stdio: ["ignore", "ignore", "ignore"],
    });
    const url = `http://127.0.0.1:${port}/metrics`;
    await waitFor(async () => (await run("curl", ["--silent", "--fail", url])).code === 0, 60_000, "node_exporter to serve its metrics");
    return {
        url,
        port,
        pid: child.pid,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) {
                const gone = new Promise<void>((r) => child.on("exit", () => r()));
                child.kill("SIGTERM");
                await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
            }
        },
    };
}
