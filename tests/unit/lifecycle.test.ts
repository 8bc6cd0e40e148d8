/**
 * config/lifecycle.ts against AWS's documented lifecycle constraints, and the
 * bucket rules and IAM policies built from it in render/storagePolicy.ts.
 */
import { describe, expect, it } from "vitest";
import {
    classLifecycle, derivedExpirationDays, MINIMUM_STORAGE_DAYS, RETENTION_CLASSES, validateLifecycleRule, validateTiers,
    type ClassLifecycle, type RetentionClass, type TierSettings, type Transition, type TransitionStorageClass,
} from "../../config/lifecycle";
import { renderBucketPolicy, renderLifecycleRules, renderWriterPolicy, RETENTION_TAG, type PolicyDocument } from "../../render/storagePolicy";
import { load, stack } from "./helpers";

const rule = (transitions: Array<[number, TransitionStorageClass]>, expirationDays: number, retentionClass: RetentionClass = "monthly"): ClassLifecycle => ({
    retentionClass,
    transitions: transitions.map(([days, storageClass]) => ({ days, storageClass })),
    expirationDays,
});

const SEED_TIERS: TierSettings = { iaDays: 30, glacierDays: 90, glacierClass: "GLACIER_IR", deepArchiveDays: 180 };

describe("validateLifecycleRule: AWS transition constraints", () => {
    it("accepts the full waterfall with AWS's minimums met", () => {
        expect(validateLifecycleRule(rule([[30, "STANDARD_IA"], [60, "GLACIER_IR"], [150, "DEEP_ARCHIVE"]], 330))).toEqual([]);
        expect(validateLifecycleRule(rule([], 1))).toEqual([]);
        expect(validateLifecycleRule(rule([[0, "GLACIER_IR"]], 90))).toEqual([]);
        expect(validateLifecycleRule(rule([[0, "DEEP_ARCHIVE"]], 180))).toEqual([]);
    });

    it.each(["STANDARD_IA", "ONEZONE_IA"] as const)("%s needs at least 30 days in STANDARD", (cls) => {
        expect(validateLifecycleRule(rule([[29, cls]], 100))).toEqual([`${cls} transition at day 29 is too early: AWS requires at least 30 days in STANDARD first`]);
        expect(validateLifecycleRule(rule([[0, cls]], 100))[0]).toMatch(/too early/);
        expect(validateLifecycleRule(rule([[30, cls]], 100))).toEqual([]);
    });

    it.each(["STANDARD_IA", "ONEZONE_IA"] as const)("30 days in %s before the next transition", (cls) => {
        const problems = validateLifecycleRule(rule([[30, cls], [59, "GLACIER"]], 400));
        expect(problems).toEqual([`GLACIER at day 59 leaves ${cls} after 29 days, inside its 30-day minimum storage duration; set it to day 60 or later`]);
        expect(validateLifecycleRule(rule([[30, cls], [60, "GLACIER"]], 400))).toEqual([]);
    });

    it.each([
        ["GLACIER_IR", "STANDARD_IA"],
        ["GLACIER", "GLACIER_IR"],
        ["DEEP_ARCHIVE", "GLACIER"],
        ["ONEZONE_IA", "STANDARD_IA"],
        ["ONEZONE_IA", "INTELLIGENT_TIERING"],
        ["GLACIER_IR", "GLACIER_IR"],
    ] as const)("%s -> %s goes up (or sideways in) the waterfall and is refused", (from, to) => {
        const problems = validateLifecycleRule(rule([[30, from], [400, to]], 1000));
        expect(problems).toContain(`${from} -> ${to} goes up the storage waterfall; AWS only transitions downwards`);
    });

    it.each([
        ["STANDARD_IA", "INTELLIGENT_TIERING"],
        ["STANDARD_IA", "ONEZONE_IA"],
        ["INTELLIGENT_TIERING", "ONEZONE_IA"],
        ["STANDARD_IA", "DEEP_ARCHIVE"],
        ["GLACIER_IR", "GLACIER"],
        ["GLACIER", "DEEP_ARCHIVE"],
    ] as const)("%s -> %s goes down the waterfall and is allowed", (from, to) => {
        expect(validateLifecycleRule(rule([[30, from], [400, to]], 1000))).toEqual([]);
    });

    it("transition days must strictly increase", () => {
        const same = validateLifecycleRule(rule([[90, "GLACIER_IR"], [90, "DEEP_ARCHIVE"]], 1000));
        expect(same).toContain("DEEP_ARCHIVE transition at day 90 must come after GLACIER_IR at day 90");
        const earlier = validateLifecycleRule(rule([[200, "GLACIER_IR"], [100, "DEEP_ARCHIVE"]], 1000));
        expect(earlier).toContain("DEEP_ARCHIVE transition at day 100 must come after GLACIER_IR at day 200");
    });

    it("expiration must come after the last transition", () => {
        expect(validateLifecycleRule(rule([[30, "STANDARD_IA"]], 30))).toEqual(["expiration at day 30 is not after the last transition (STANDARD_IA at day 30)"]);
        expect(validateLifecycleRule(rule([[30, "STANDARD_IA"], [90, "GLACIER_IR"]], 60))).toEqual([
            "expiration at day 60 is not after the last transition (GLACIER_IR at day 90)",
        ]);
    });

    it.each([
        ["GLACIER_IR", 90],
        ["GLACIER", 90],
        ["DEEP_ARCHIVE", 180],
        ["STANDARD_IA", 30],
    ] as const)("%s's %d-day minimum storage duration applies before expiration", (cls, minimum) => {
        const at = cls === "STANDARD_IA" ? 30 : 10;
        const tooSoon = validateLifecycleRule(rule([[at, cls]], at + minimum - 1));
        expect(tooSoon).toEqual([
            `expiration at day ${at + minimum - 1} deletes objects ${minimum - 1} days after their ${cls} transition, inside its ${minimum}-day minimum storage duration; expire at day ${at + minimum} or later, or before day ${at + 1} to skip ${cls}`,
        ]);
        expect(validateLifecycleRule(rule([[at, cls]], at + minimum))).toEqual([]);
        expect(MINIMUM_STORAGE_DAYS[cls]).toBe(minimum);
    });

    it.each([
        ["GLACIER_IR", 90],
        ["GLACIER", 90],
    ] as const)("%s's %d-day minimum applies before the Deep Archive transition", (cls, minimum) => {
        expect(validateLifecycleRule(rule([[30, "STANDARD_IA"], [60, cls], [60 + minimum - 1, "DEEP_ARCHIVE"]], 1000))).toEqual([
            `DEEP_ARCHIVE at day ${60 + minimum - 1} leaves ${cls} after ${minimum - 1} days, inside its ${minimum}-day minimum storage duration; set it to day ${60 + minimum} or later`,
        ]);
        expect(validateLifecycleRule(rule([[30, "STANDARD_IA"], [60, cls], [60 + minimum, "DEEP_ARCHIVE"]], 1000))).toEqual([]);
    });

    it("Intelligent-Tiering has no minimum before the next transition", () => {
        expect(validateLifecycleRule(rule([[0, "INTELLIGENT_TIERING"], [1, "GLACIER"]], 91))).toEqual([]);
    });

    it("malformed days", () => {
        expect(validateLifecycleRule(rule([], 0))).toEqual(["expiration 0 must be a whole number of days >= 1"]);
        expect(validateLifecycleRule(rule([], 1.5))).toEqual(["expiration 1.5 must be a whole number of days >= 1"]);
        expect(validateLifecycleRule(rule([[-1, "GLACIER_IR"]], 100))).toContain("GLACIER_IR transition day -1 must be a whole number >= 0");
        expect(validateLifecycleRule(rule([[30.5, "STANDARD_IA"]], 100))).toContain("STANDARD_IA transition day 30.5 must be a whole number >= 0");
    });

    it("reports every broken constraint of a rule at once", () => {
        const problems = validateLifecycleRule(rule([[10, "STANDARD_IA"], [20, "GLACIER_IR"], [15, "GLACIER"]], 15));
        expect(problems.some((p) => /STANDARD_IA transition at day 10 is too early/.test(p))).toBe(true);
        expect(problems.some((p) => /GLACIER_IR at day 20 leaves STANDARD_IA after 10 days/.test(p))).toBe(true);
        expect(problems.some((p) => /GLACIER transition at day 15 must come after GLACIER_IR at day 20/.test(p))).toBe(true);
        expect(problems.some((p) => /expiration at day 15 is not after the last transition/.test(p))).toBe(true);
    });
});

describe("validateTiers", () => {
    it("accepts the seed's tiers and disabled tiers", () => {
        expect(validateTiers(SEED_TIERS)).toEqual([]);
        expect(validateTiers({ iaDays: 0, glacierDays: 0, glacierClass: "GLACIER", deepArchiveDays: 0 })).toEqual([]);
        expect(validateTiers({ iaDays: 0, glacierDays: 10, glacierClass: "GLACIER", deepArchiveDays: 100 })).toEqual([]);
    });

    it("refuses IA before 30 days and tiers inside a minimum", () => {
        expect(validateTiers({ ...SEED_TIERS, iaDays: 29 })).toEqual(["STANDARD_IA transition at day 29 is too early: AWS requires at least 30 days in STANDARD first"]);
        expect(validateTiers({ ...SEED_TIERS, glacierDays: 59 })[0]).toMatch(/^GLACIER_IR at day 59 leaves STANDARD_IA after 29 days/);
        expect(validateTiers({ ...SEED_TIERS, deepArchiveDays: 179 })[0]).toMatch(/^DEEP_ARCHIVE at day 179 leaves GLACIER_IR after 89 days/);
    });
});

describe("classLifecycle: derived and explicit expirations", () => {
    it("derivedExpirationDays: the class's local retention plus one day", () => {
        expect(derivedExpirationDays("daily", 7)).toBe(8);
        expect(derivedExpirationDays("weekly", 4)).toBe(29);
        expect(derivedExpirationDays("monthly", 12)).toBe(373);
        expect(derivedExpirationDays("yearly", 3)).toBe(1099);
        expect(derivedExpirationDays("yearly", 0)).toBe(1);
    });

    it("the seed's retention gives daily 8 days and weekly 29 days in STANDARD only, monthly IA/GIR/DA, yearly all tiers", () => {
        const rules = RETENTION_CLASSES.map((cls) => classLifecycle(cls, derivedExpirationDays(cls, { daily: 7, weekly: 4, monthly: 12, yearly: 3 }[cls]), false, SEED_TIERS));
        expect(rules).toEqual([
            { retentionClass: "daily", transitions: [], expirationDays: 8 },
            { retentionClass: "weekly", transitions: [], expirationDays: 29 },
            { retentionClass: "monthly", transitions: [{ days: 30, storageClass: "STANDARD_IA" }, { days: 90, storageClass: "GLACIER_IR" }, { days: 180, storageClass: "DEEP_ARCHIVE" }], expirationDays: 373 },
            { retentionClass: "yearly", transitions: [{ days: 30, storageClass: "STANDARD_IA" }, { days: 90, storageClass: "GLACIER_IR" }, { days: 180, storageClass: "DEEP_ARCHIVE" }], expirationDays: 1099 },
        ]);
        for (const r of rules) expect(validateLifecycleRule(r), r.retentionClass).toEqual([]);
    });

    it("the loader builds exactly those rules from the defaults", () => {
        const c = load({ hosts: [] });
        expect(c.storage.lifecycle.map((l) => [l.retentionClass, l.expirationDays, l.transitions.map((t: Transition) => t.storageClass)])).toEqual([
            ["daily", 8, []],
            ["weekly", 29, []],
            ["monthly", 373, ["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"]],
            ["yearly", 1099, ["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"]],
        ]);
    });

    it("a derived expiration drops the tiers it cannot stay in for their full minimum", () => {
        const classes = (days: number) => classLifecycle("monthly", days, false, SEED_TIERS).transitions.map((t) => t.storageClass);
        expect(classes(59)).toEqual([]);
        expect(classes(60)).toEqual(["STANDARD_IA"]);
        expect(classes(179)).toEqual(["STANDARD_IA"]);
        expect(classes(180)).toEqual(["STANDARD_IA", "GLACIER_IR"]);
        expect(classes(359)).toEqual(["STANDARD_IA", "GLACIER_IR"]);
        expect(classes(360)).toEqual(["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"]);
    });

    it("an explicit expiration keeps every tier that starts before it, so a bad value is reported, not reshaped", () => {
        const r = classLifecycle("monthly", 100, true, SEED_TIERS);
        expect(r.transitions.map((t) => t.storageClass)).toEqual(["STANDARD_IA", "GLACIER_IR"]);
        expect(validateLifecycleRule(r)).toHaveLength(1);
        expect(validateLifecycleRule(r)[0]).toMatch(/inside its 90-day minimum/);
        // A tier starting on or after the expiration day is not used at all.
        expect(classLifecycle("monthly", 90, true, SEED_TIERS).transitions.map((t) => t.storageClass)).toEqual(["STANDARD_IA"]);
    });

    it("disabled tiers (0) are left out; the Glacier class is configurable", () => {
        const r = classLifecycle("yearly", 1000, false, { iaDays: 0, glacierDays: 30, glacierClass: "GLACIER", deepArchiveDays: 0 });
        expect(r.transitions).toEqual([{ days: 30, storageClass: "GLACIER" }]);
    });

    it("every derived rule passes validation, for any retention count and any valid tier settings", () => {
        const tierSets: TierSettings[] = [];
        for (const iaDays of [0, 30, 45])
            for (const glacierDays of [0, 60, 90, 120])
                for (const glacierClass of ["GLACIER_IR", "GLACIER"] as const)
                    for (const deepArchiveDays of [0, 150, 180, 365]) {
                        const t = { iaDays, glacierDays, glacierClass, deepArchiveDays };
                        if (validateTiers(t).length === 0) tierSets.push(t);
                    }
        expect(tierSets.length).toBeGreaterThan(20);
        let checked = 0;
        for (const tiers of tierSets)
            for (const cls of RETENTION_CLASSES)
                for (let count = 0; count <= 40; count++) {
                    const r = classLifecycle(cls, derivedExpirationDays(cls, count), false, tiers);
                    expect(validateLifecycleRule(r), JSON.stringify({ tiers, cls, count })).toEqual([]);
                    checked++;
                }
        expect(checked).toBeGreaterThan(1000);
    });
});

describe("renderLifecycleRules", () => {
    const lifecycle = load({ hosts: [] }).storage.lifecycle;
    const input = { prefix: "hx-backup", lifecycle, noncurrentVersionExpireDays: 30, abortMultipartDays: 7 };

    it("prefix mode: one rule per class filtered by <prefix>/<class>/, with its transitions and expiration", () => {
        const rules = renderLifecycleRules({ ...input, retentionBy: "prefix" });
        const classRules = rules.filter((r) => /^hx-backup-(daily|weekly|monthly|yearly)$/.test(r.id));
        expect(classRules.map((r) => [r.id, r.filter])).toEqual([
            ["hx-backup-daily", { prefix: "hx-backup/daily/" }],
            ["hx-backup-weekly", { prefix: "hx-backup/weekly/" }],
            ["hx-backup-monthly", { prefix: "hx-backup/monthly/" }],
            ["hx-backup-yearly", { prefix: "hx-backup/yearly/" }],
        ]);
        const daily = classRules[0];
        expect(daily.expiration).toEqual({ days: 8 });
        expect(daily).not.toHaveProperty("transitions");
        expect(classRules[2].transitions).toEqual([
            { days: 30, storageClass: "STANDARD_IA" },
            { days: 90, storageClass: "GLACIER_IR" },
            { days: 180, storageClass: "DEEP_ARCHIVE" },
        ]);
        expect(classRules[2].expiration).toEqual({ days: 373 });
        expect(classRules[3].expiration).toEqual({ days: 1099 });
        expect(rules.every((r) => r.status === "Enabled")).toBe(true);
        expect(new Set(rules.map((r) => r.id)).size).toBe(rules.length);
    });

    it("tag mode: every class rule filters on the common prefix and its retention-class tag", () => {
        const rules = renderLifecycleRules({ ...input, retentionBy: "tag" });
        const classRules = rules.filter((r) => /^hx-backup-(daily|weekly|monthly|yearly)$/.test(r.id));
        expect(RETENTION_TAG).toBe("retention-class");
        expect(classRules.map((r) => r.filter)).toEqual(
            ["daily", "weekly", "monthly", "yearly"].map((cls) => ({ and: { prefix: "hx-backup/", tags: { "retention-class": cls } } })),
        );
        expect(classRules.every((r) => r.filter.prefix === undefined)).toBe(true);
    });

    it("noncurrent versions expire and incomplete multipart uploads are aborted under the prefix", () => {
        for (const retentionBy of ["prefix", "tag"] as const) {
            const rules = renderLifecycleRules({ ...input, noncurrentVersionExpireDays: 14, abortMultipartDays: 3, retentionBy });
            const noncurrent = rules.filter((r) => r.noncurrentVersionExpiration);
            expect(noncurrent).toHaveLength(1);
            expect(noncurrent[0].noncurrentVersionExpiration).toEqual({ noncurrentDays: 14 });
            expect(noncurrent[0].filter).toEqual({ prefix: "hx-backup/" });
            const abort = rules.filter((r) => r.abortIncompleteMultipartUpload);
            expect(abort).toHaveLength(1);
            expect(abort[0].abortIncompleteMultipartUpload).toEqual({ daysAfterInitiation: 3 });
            const markers = rules.filter((r) => r.expiration?.expiredObjectDeleteMarker);
            expect(markers).toHaveLength(1);
            // AWS refuses Days together with ExpiredObjectDeleteMarker in one Expiration.
            expect(markers[0].expiration).toEqual({ expiredObjectDeleteMarker: true });
        }
    });

    it("every class rule of the production stack meets the AWS constraints", () => {
        const c = stack("production");
        const rules = renderLifecycleRules({ ...c.storage, prefix: c.storage.prefix });
        for (const r of rules.filter((x) => x.expiration?.days !== undefined)) {
            const back: ClassLifecycle = {
                retentionClass: r.id.replace("hx-backup-", "") as RetentionClass,
                transitions: (r.transitions ?? []).map((t) => ({ days: t.days, storageClass: t.storageClass as TransitionStorageClass })),
                expirationDays: r.expiration!.days!,
            };
            expect(validateLifecycleRule(back), r.id).toEqual([]);
        }
    });
});

const BUCKET = "arn:aws:s3:::hx-backups-production-euc1";
const KMS = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

function actions(doc: PolicyDocument, effect: "Allow" | "Deny"): string[] {
    return doc.Statement.filter((s) => s.Effect === effect).flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
}

describe("renderBucketPolicy", () => {
    const doc = renderBucketPolicy(BUCKET, KMS);

    it("only denies; grants nothing", () => {
        expect(doc.Version).toBe("2012-10-17");
        expect(actions(doc, "Allow")).toEqual([]);
        expect(doc.Statement.every((s) => s.Principal === "*")).toBe(true);
    });

    it("denies every request without TLS on the bucket and its objects", () => {
        const tls = doc.Statement.find((s) => s.Condition?.Bool?.["aws:SecureTransport"] === "false");
        expect(tls).toMatchObject({ Effect: "Deny", Action: "s3:*" });
        expect(tls!.Resource).toEqual([BUCKET, `${BUCKET}/*`]);
    });

    it("denies puts that ask for anything but SSE-KMS, and SSE-KMS with another key", () => {
        const sse = doc.Statement.find((s) => s.Condition?.StringNotEqualsIfExists?.["s3:x-amz-server-side-encryption"] !== undefined);
        expect(sse).toMatchObject({ Effect: "Deny", Action: "s3:PutObject", Resource: `${BUCKET}/*` });
        expect(sse!.Condition!.StringNotEqualsIfExists["s3:x-amz-server-side-encryption"]).toBe("aws:kms");
        const key = doc.Statement.find((s) => s.Condition?.StringNotEqualsIfExists?.["s3:x-amz-server-side-encryption-aws-kms-key-id"] !== undefined);
        expect(key).toMatchObject({ Effect: "Deny", Action: "s3:PutObject", Resource: `${BUCKET}/*` });
        expect(key!.Condition!.StringNotEqualsIfExists["s3:x-amz-server-side-encryption-aws-kms-key-id"]).toBe(KMS);
    });

    it("statement ids are unique", () => {
        expect(new Set(doc.Statement.map((s) => s.Sid)).size).toBe(doc.Statement.length);
    });
});

describe("renderWriterPolicy: least privilege for the hosts", () => {
    for (const tagging of [false, true]) {
        describe(`tagging ${tagging}`, () => {
            const doc = renderWriterPolicy({ bucketArn: BUCKET, kmsKeyArn: KMS, prefix: "hx-backup", tagging });
            const allowed = actions(doc, "Allow");

            it("grants no delete and no bucket-configuration rights", () => {
                expect(allowed.length).toBeGreaterThan(0);
                for (const a of allowed) {
                    expect(a).not.toMatch(/^s3:Delete/i);
                    expect(a).not.toMatch(/^s3:PutBucket/i);
                    expect(a).not.toMatch(/^s3:PutLifecycle/i);
                    expect(a).not.toMatch(/^s3:PutBucketPolicy$/i);
                    expect(a).not.toMatch(/^s3:PutEncryptionConfiguration$/i);
                    expect(a).not.toMatch(/Retention|LegalHold|BypassGovernance/i);
                    expect(a).not.toMatch(/^s3:PutObjectAcl$/i);
                    expect(a).not.toMatch(/\*/);
                }
                expect(actions(doc, "Deny")).toEqual([]);
            });

            it("object actions are limited to objects under the prefix", () => {
                const objectStatements = doc.Statement.filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).some((a) => /^s3:.*Object|Multipart(Upload|UploadParts)$/.test(a) && a !== "s3:ListBucketMultipartUploads"));
                expect(objectStatements.length).toBeGreaterThan(0);
                for (const s of objectStatements) expect(s.Resource).toBe(`${BUCKET}/hx-backup/*`);
                expect(allowed).toEqual(expect.arrayContaining(["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]));
                expect(allowed.includes("s3:PutObjectTagging")).toBe(tagging);
            });

            it("ListBucket is limited to the prefix by condition", () => {
                const list = doc.Statement.filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes("s3:ListBucket"));
                expect(list).toHaveLength(1);
                expect(list[0].Resource).toBe(BUCKET);
                expect(list[0].Condition).toEqual({ StringLike: { "s3:prefix": ["hx-backup/*", "hx-backup/"] } });
            });

            it("no statement applies to every resource; KMS use is limited to the bucket key", () => {
                for (const s of doc.Statement) {
                    const resources = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
                    expect(resources).not.toContain("*");
                    expect(resources).not.toContain(`${BUCKET}/*`);
                }
                const kms = doc.Statement.filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).some((a) => a.startsWith("kms:")));
                expect(kms).toHaveLength(1);
                expect(kms[0].Resource).toBe(KMS);
                expect([...(kms[0].Action as string[])].sort()).toEqual(["kms:Decrypt", "kms:GenerateDataKey"]);
            });
        });
    }
});
