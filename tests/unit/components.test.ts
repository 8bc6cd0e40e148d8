/**
 * The components take every setting from the stack config: their args state
 * no defaults of their own (config/schema.ts is the one home), so a stack
 * value that differs from every schema default reaches the resources as is.
 */
import { describe, expect, it } from "vitest";
import { commands, evaluate, stackConfig, TEST_SECRETS, type Evaluation } from "./mockProgram";
import { stdinFile } from "./helpers";

const SECRETS = ["hx-backup:sshPrivateKey"];
const byType = (e: Evaluation, type: string) => e.resources.filter((r) => r.type === type);

describe("components get the schema-loaded values from index.ts, none of their own", () => {
    it("storage, keys and the dashboard carry non-default stack values", async () => {
        const config: Record<string, string> = {
            ...stackConfig("production"),
            "hx-backup:retentionBy": "tag",
            "hx-backup:noncurrentVersionExpireDays": "45",
            "hx-backup:abortMultipartDays": "3",
            "hx-backup:kmsDeletionWindowDays": "9",
            "hx-backup:forceDestroyBucket": "true",
            "hx-backup:encryptionKeyVersion": "3",
            "hx-backup:dashboardUid": "hx-uid-test",
            "hx-backup:sshPrivateKey": TEST_SECRETS["hx-backup:sshPrivateKey"],
        };
        const e = await evaluate("production", config, SECRETS);
        expect(byType(e, "aws:kms/key:Key")[0].inputs.deletionWindowInDays).toBe(9);
        expect(byType(e, "aws:s3/bucket:Bucket")[0].inputs.forceDestroy).toBe(true);
        const rules = byType(e, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0].inputs.rules as Array<Record<string, any>>;
        const housekeeping = rules.find((r) => r.id === "hx-backup-housekeeping")!;
        expect(housekeeping.noncurrentVersionExpiration).toEqual({ noncurrentDays: 45 });
        expect(housekeeping.abortIncompleteMultipartUpload).toEqual({ daysAfterInitiation: 3 });
        // Tag mode: each class's rule filters on the retention tag under the common prefix.
        expect(rules.find((r) => r.id === "hx-backup-daily")!.filter.and.tags).toBeDefined();
        expect(byType(e, "random:index/randomPassword:RandomPassword").map((r) => r.name).sort()).toEqual(["keys-production-v1", "keys-production-v2", "keys-production-v3"]);
        expect(byType(e, "random:index/randomBytes:RandomBytes")).toEqual([]);
        const dashboard = commands(e).find((c) => c.name === "monitoring-dashboard")!;
        expect(JSON.parse(stdinFile(dashboard.inputs as { stdin: string }, "/var/lib/grafana/dashboards/hx-uid-test.json")).uid).toBe("hx-uid-test");
    });
});
