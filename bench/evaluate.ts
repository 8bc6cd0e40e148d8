/**
 * One evaluation of the real program under mocks, in its own process (fresh
 * module state), for the deploy benchmarks. Reads the config from the JSON
 * file in argv[2]; prints JSON: evaluation seconds and every remote command's
 * inputs (create, delete, sha256 of stdin).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const unwrap = (v: unknown): unknown =>
    v && typeof v === "object" && (v as Record<string, unknown>)[SECRET_SIG] ? unwrap((v as { value: unknown }).value)
    : Array.isArray(v) ? v.map(unwrap)
    : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrap(x)]))
    : v;

async function main(): Promise<void> {
    const { stack, config, secretKeys } = JSON.parse(readFileSync(process.argv[2], "utf8")) as { stack: string; config: Record<string, string>; secretKeys: string[] };
    const commands: Record<string, unknown>[] = [];
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                const state: Record<string, unknown> = { ...args.inputs };
                if (args.type === "random:index/randomPassword:RandomPassword") state.result = createHash("sha512").update(args.name).digest("hex");
                if (args.type === "aws:iam/accessKey:AccessKey") state.secret = "bench-secret";
                if (args.type === "aws:s3/bucket:Bucket") {
                    state.arn = `arn:aws:s3:::${args.inputs.bucket}`;
                    state.region = "eu-central-1";
                }
                if (args.type === "aws:kms/key:Key") state.arn = `arn:aws:kms:eu-central-1:1:key/${args.name}`;
                if (args.type === "command:remote:Command") {
                    const i = unwrap(args.inputs) as Record<string, unknown>;
                    commands.push({ name: args.name, create: i.create, delete: i.delete, stdin: createHash("sha256").update(String(i.stdin ?? "")).digest("hex") });
                }
                return { id: `${args.name}-id`, state };
            },
            call: (args) => args.inputs,
        },
        "hx-backup",
        stack,
        false,
    );
    // The program alone: no host reads (hostReads), as in a preview that cannot reach the hosts.
    pulumi.runtime.setAllConfig({ "hx-backup:hostReads": "false", ...config }, secretKeys);
    const started = process.hrtime.bigint();
    await import("../index");
    await pulumi.runtime.disconnect();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stdout.write(JSON.stringify({ seconds, commands }));
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
