/**
 * Process-tree sampler: every 100 ms, the summed VmRSS of a process and all
 * its descendants (peak over the run), plus CPU seconds per command name
 * (utime + stime from /proc/<pid>/stat, last value seen per pid) as a
 * coarse profile: a stage whose CPU time is close to the wall time is the
 * single-threaded bottleneck the other stages wait on.
 */
import { readdirSync, readFileSync } from "node:fs";

const CLK_TCK = 100;

interface ProcInfo {
    pid: number;
    ppid: number;
    comm: string;
    cpu: number;
}

function readStat(pid: number): ProcInfo | undefined {
    try {
        const s = readFileSync(`/proc/${pid}/stat`, "utf8");
        const open = s.indexOf("(");
        const close = s.lastIndexOf(")");
        const comm = s.slice(open + 1, close);
        const f = s.slice(close + 2).split(" ");
        // f[0] = state, f[1] = ppid, f[11] = utime, f[12] = stime
        return { pid, ppid: Number(f[1]), comm, cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK };
    } catch {
        return undefined;
    }
}

function rssKiB(pid: number): number {
    try {
        const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        return m ? Number(m[1]) : 0;
    } catch {
        return 0;
    }
}

export interface TreeSample {
    /** Peak of the summed RSS over the tree, in bytes. */
    peakRssBytes: number;
    /** Process count at the peak sample. */
    peakProcesses: number;
    /** Command names of the biggest processes at the peak (KiB). */
    peakTop: { comm: string; rssKiB: number }[];
    samples: number;
    /** CPU seconds per command name over the run (processes seen by the sampler). */
    cpuByComm: Record<string, number>;
}

export class TreeSampler {
    private timer: NodeJS.Timeout | undefined;
    private peak = 0;
    private peakProcs = 0;
    private peakTop: { comm: string; rssKiB: number }[] = [];
    private samples = 0;
    private readonly cpu = new Map<number, { comm: string; cpu: number }>();

    constructor(private readonly rootPid: number, private readonly intervalMs = 100) {}

    start(): this {
        this.sample();
        this.timer = setInterval(() => this.sample(), this.intervalMs);
        return this;
    }

    private sample(): void {
        const all: ProcInfo[] = [];
        for (const d of readdirSync("/proc")) {
            if (!/^\d+$/.test(d)) continue;
            const p = readStat(Number(d));
            if (p) all.push(p);
        }
        const children = new Map<number, ProcInfo[]>();
        for (const p of all) {
            const l = children.get(p.ppid) ?? [];
            l.push(p);
            children.set(p.ppid, l);
        }
        const root = all.find((p) => p.pid === this.rootPid);
        if (!root) return;
        const tree: ProcInfo[] = [];
        const stack = [root];
        while (stack.length > 0) {
            const p = stack.pop()!;
            tree.push(p);
            stack.push(...(children.get(p.pid) ?? []));
        }
        let sum = 0;
        const sizes: { comm: string; rssKiB: number }[] = [];
        for (const p of tree) {
            const r = rssKiB(p.pid);
            sum += r;
            sizes.push({ comm: p.comm, rssKiB: r });
            this.cpu.set(p.pid, { comm: p.comm, cpu: p.cpu });
        }
        this.samples++;
        if (sum * 1024 > this.peak) {
            this.peak = sum * 1024;
            this.peakProcs = tree.length;
            this.peakTop = sizes.sort((a, b) => b.rssKiB - a.rssKiB).slice(0, 6);
        }
    }

    stop(): TreeSample {
        if (this.timer) clearInterval(this.timer);
        const cpuByComm: Record<string, number> = {};
        for (const { comm, cpu } of this.cpu.values()) cpuByComm[comm] = Number(((cpuByComm[comm] ?? 0) + cpu).toFixed(2));
        return { peakRssBytes: this.peak, peakProcesses: this.peakProcs, peakTop: this.peakTop, samples: this.samples, cpuByComm };
    }
}

/** CPU seconds of one process (for a server backend or redis-server outside the tree). */
export function processCpuSeconds(pid: number): number {
    return readStat(pid)?.cpu ?? 0;
}

export { descendants } from "../tests/support/env";
