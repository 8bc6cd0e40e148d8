/**
 * npm run report -- --stack <name> [--out DIR] [--keys DIR] [--stack-dir DIR]
 *
 * The compliance report for auditors, from the bucket (the off-site truth):
 * writes DIR/report.html (self-contained), DIR/report.json and DIR/report.md,
 * DIR defaulting to report/<stack>. Read-only: it lists and reads objects,
 * never writes to the bucket.
 *
 * S3 credentials come from the environment (AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a 0600 shared credentials file);
 * --keys DIR is a keyring directory of <keyId>.key files for the MAC check.
 *
 * Exit codes: 0 written, no errors found; 1 written, errors found (broken
 * chains, WAL gaps, missing sources, recovery point missed); 2 usage or
 * input error.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import type { S3ClientConfig } from "@aws-sdk/client-s3";
import type { StackConfig } from "../config/types";
import { loadStackFromFiles } from "./render";
import { readBucket, ReportInputError, s3ClientFor } from "./report/bucket";
import { buildReport } from "./report/facts";
import { renderHtml } from "./report/html";
import { readKeyring } from "./report/keyring";
import { renderMarkdown } from "./report/markdown";
import type { Report } from "./report/model";
import { policyFromStack } from "./report/policy";

export const USAGE = "usage: npm run report -- --stack <name> [--out DIR] [--keys DIR] [--stack-dir DIR with Pulumi.<stack>.yaml]";

export interface ReportRun {
    readonly stack: string;
    readonly stackDir: string;
    readonly keysDir?: string;
    readonly now?: Date;
    readonly s3?: Partial<S3ClientConfig>;
}

function loadStack(stackDir: string, stack: string): StackConfig {
    try {
        return loadStackFromFiles(stackDir, stack);
    } catch (e) {
        throw new ReportInputError(`--stack ${stack}: ${(e as Error).message}`);
    }
}

/** Reads the stack, the keyring and the bucket, and builds the report. */
export async function produceReport(run: ReportRun): Promise<Report> {
    const config = loadStack(run.stackDir, run.stack);
    if (config.storage.mode === "none" || !config.storage.bucketName) {
        throw new ReportInputError(`--stack ${run.stack}: the stack has no bucket (hx-backup:bucketName is empty and no host syncs remotely), so there is nothing off site to report on`);
    }
    const keyring = run.keysDir === undefined ? undefined : readKeyring(run.keysDir);
    const policy = policyFromStack(config);
    const client = s3ClientFor(policy.bucket, run.s3);
    try {
        const snapshot = await readBucket(client, policy);
        return buildReport(policy, snapshot, { keyring, now: run.now ?? new Date() });
    } finally {
        client.destroy();
    }
}

export function writeReport(report: Report, outDir: string): string[] {
    mkdirSync(outDir, { recursive: true });
    const files: [string, string][] = [
        ["report.html", renderHtml(report)],
        ["report.json", `${JSON.stringify(report, null, 2)}\n`],
        ["report.md", renderMarkdown(report)],
    ];
    return files.map(([name, content]) => {
        const file = path.join(outDir, name);
        writeFileSync(file, content);
        return file;
    });
}

interface Args {
    stack?: string;
    out?: string;
    keys?: string;
    "stack-dir"?: string;
}

/** Flags as `--name value`; an unknown flag or a flag without its value is a usage error naming it. */
export function parseArgs(argv: readonly string[]): Args {
    const known = new Set(["stack", "out", "keys", "stack-dir"]);
    const args: Record<string, string> = {};
    for (let i = 0; i < argv.length; i++) {
        const name = argv[i].replace(/^--/, "");
        if (!argv[i].startsWith("--") || !known.has(name)) throw new ReportInputError(`unknown argument ${argv[i]}\n${USAGE}`);
        const value = argv[i + 1];
        if (value === undefined || value.startsWith("--")) throw new ReportInputError(`--${name} needs a value\n${USAGE}`);
        args[name] = value;
        i++;
    }
    return args;
}

async function main(): Promise<number> {
    try {
        const args = parseArgs(process.argv.slice(2));
        if (!args.stack) throw new ReportInputError(`--stack is required\n${USAGE}`);
        const report = await produceReport({ stack: args.stack, stackDir: path.resolve(args["stack-dir"] ?? path.join(__dirname, "..")), keysDir: args.keys });
        const files = writeReport(report, path.resolve(args.out ?? path.join("report", args.stack)));
        const errors = report.problems.filter((p) => p.severity === "error").length;
        console.log(`${report.sources.length} sources${report.pitr.length ? `, ${report.pitr.length} PITR stanzas` : ""}, ${report.totals.manifests} backups (${report.totals.broken} broken), ${report.missingSources.length} missing sources; ${errors} errors, ${report.problems.length - errors} warnings${report.macCheck === "not-checked" ? "; MACs not checked (no --keys)" : ""}`);
        for (const f of files) console.log(f);
        return errors ? 1 : 0;
    } catch (e) {
        if (e instanceof ReportInputError) {
            console.error(e.message);
            return 2;
        }
        throw e;
    }
}

if (require.main === module) main().then((code) => process.exit(code));
