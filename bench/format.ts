/**
 * Where `format: auto` should switch from custom to parallel format: backup
 * and restore time of both formats at several database sizes, alternating,
 * through postgresql-backup.sh and backup-restore.sh (postgresqlJobs 2).
 */
import { fmtMiB, log, median, order, round, timed } from "./common";
import { dropDb, generate, keepLatest, runPipeline, setFormat, settle, type PgSetup } from "./postgres";

export interface FormatSizeResult {
    database: string;
    bytesOnDisk: number;
    rounds: { customBackupSeconds: number; parallelBackupSeconds: number; customRestoreSeconds: number; parallelRestoreSeconds: number }[];
    /** Medians of parallel ÷ custom. */
    backupRatio: number;
    restoreRatio: number;
}

const ok = (what: string, r: { code: number | null; stderr: string }) => {
    if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr.slice(-2000)}`);
};

/** `scales`: pgbench scales of the extra databases to generate (the setup's own databases are measured too). */
export async function benchFormatThreshold(s: PgSetup, scales: readonly number[], rounds: number): Promise<FormatSizeResult[]> {
    for (const scale of scales) s.sizes[`fmt${scale}`] = await generate(s.pg, `fmt${scale}`, scale);
    const dbs = Object.entries(s.sizes).sort((a, b) => a[1].bytesOnDisk - b[1].bytesOnDisk).map(([db]) => db);
    const out: FormatSizeResult[] = [];
    for (const db of dbs) {
        const rows: FormatSizeResult["rounds"] = [];
        for (let i = 0; i < rounds; i++) {
            const t: Record<string, number> = {};
            const kept: Record<string, string> = {};
            for (const fmt of order(i, ["custom", "parallel"] as const)) {
                setFormat(s, db, fmt === "parallel");
                await settle(s);
                t[`${fmt}Backup`] = (await runPipeline(s)).seconds;
                kept[fmt] = keepLatest(s, `keep-format-${fmt}`, db);
            }
            for (const fmt of order(i, ["custom", "parallel"] as const)) {
                await dropDb(s, "restore_fmt");
                await settle(s);
                t[`${fmt}Restore`] = (await timed(async () => ok("backup-restore.sh", await s.host.runScript("backup-restore.sh", ["--target", "restore_fmt", kept[fmt]!], { timeoutMs: 3_600_000 })))).seconds;
                await dropDb(s, "restore_fmt");
            }
            const row = { customBackupSeconds: round(t.customBackup!), parallelBackupSeconds: round(t.parallelBackup!), customRestoreSeconds: round(t.customRestore!), parallelRestoreSeconds: round(t.parallelRestore!) };
            rows.push(row);
            log(`  format ${db} (${fmtMiB(s.sizes[db]!.bytesOnDisk)}) round ${i + 1}: backup custom ${row.customBackupSeconds} s, parallel ${row.parallelBackupSeconds} s; restore custom ${row.customRestoreSeconds} s, parallel ${row.parallelRestoreSeconds} s`);
        }
        out.push({
            database: db,
            bytesOnDisk: s.sizes[db]!.bytesOnDisk,
            rounds: rows,
            backupRatio: round(median(rows.map((r) => r.parallelBackupSeconds / r.customBackupSeconds)), 3),
            restoreRatio: round(median(rows.map((r) => r.parallelRestoreSeconds / r.customRestoreSeconds)), 3),
        });
    }
    setFormat(s, dbs[dbs.length - 1]!, false);
    return out;
}
