/**
 * Pure builders for the bucket's lifecycle rules and IAM policies, tested
 * apart from Pulumi.
 */
import type { ClassLifecycle, RetentionClass } from "../config/lifecycle";

export const RETENTION_TAG = "retention-class";

/** Where an object of a class lives: the key prefix (prefix mode) or the common prefix plus tag (tag mode). */
export function classKeyPrefix(prefix: string, retentionClass: RetentionClass, retentionBy: "prefix" | "tag"): string {
    return retentionBy === "prefix" ? `${prefix}/${retentionClass}/` : `${prefix}/`;
}

export interface LifecycleRuleInput {
    readonly prefix: string;
    readonly lifecycle: readonly ClassLifecycle[];
    readonly retentionBy: "prefix" | "tag";
    readonly noncurrentVersionExpireDays: number;
    readonly abortMultipartDays: number;
}

export interface LifecycleRule {
    id: string;
    status: "Enabled";
    filter: { prefix?: string; and?: { prefix: string; tags: Record<string, string> } };
    transitions?: { days: number; storageClass: string }[];
    expiration?: { days?: number; expiredObjectDeleteMarker?: boolean };
    noncurrentVersionExpiration?: { noncurrentDays: number };
    abortIncompleteMultipartUpload?: { daysAfterInitiation: number };
}

export function renderLifecycleRules(input: LifecycleRuleInput): LifecycleRule[] {
    const rules: LifecycleRule[] = input.lifecycle.map((cls) => ({
        id: `hx-backup-${cls.retentionClass}`,
        status: "Enabled",
        filter:
            input.retentionBy === "prefix"
                ? { prefix: classKeyPrefix(input.prefix, cls.retentionClass, "prefix") }
                : { and: { prefix: `${input.prefix}/`, tags: { [RETENTION_TAG]: cls.retentionClass } } },
        ...(cls.transitions.length ? { transitions: cls.transitions.map((t) => ({ days: t.days, storageClass: t.storageClass })) } : {}),
        expiration: { days: cls.expirationDays },
    }));
    rules.push({
        id: "hx-backup-housekeeping",
        status: "Enabled",
        filter: { prefix: `${input.prefix}/` },
        // Versioning keeps overwritten and expired objects as noncurrent versions; drop them after a grace period.
        noncurrentVersionExpiration: { noncurrentDays: input.noncurrentVersionExpireDays },
        abortIncompleteMultipartUpload: { daysAfterInitiation: input.abortMultipartDays },
    });
    rules.push({
        id: "hx-backup-delete-markers",
        status: "Enabled",
        filter: { prefix: `${input.prefix}/` },
        expiration: { expiredObjectDeleteMarker: true },
    });
    return rules;
}

interface Statement {
    Sid: string;
    Effect: "Allow" | "Deny";
    Principal?: "*" | Record<string, string>;
    Action: string | string[];
    Resource: string | string[];
    Condition?: Record<string, Record<string, string | string[] | boolean>>;
}

export interface PolicyDocument {
    Version: "2012-10-17";
    Statement: Statement[];
}

export function renderBucketPolicy(bucketArn: string, kmsKeyArn: string): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "DenyInsecureTransport",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:*",
                Resource: [bucketArn, `${bucketArn}/*`],
                Condition: { Bool: { "aws:SecureTransport": "false" } },
            },
            {
                // Requests that name an encryption must name SSE-KMS; requests without the header
                // (UploadPart carries none) get the bucket default, which is SSE-KMS with our key.
                Sid: "DenyNonKmsPuts",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:PutObject",
                Resource: `${bucketArn}/*`,
                Condition: { StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption": "aws:kms" } },
            },
            {
                // `--sse aws:kms` without a key id would use the AWS-managed aws/s3 key, not ours.
                Sid: "DenyKmsWithoutKeyId",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:PutObject",
                Resource: `${bucketArn}/*`,
                Condition: { StringEquals: { "s3:x-amz-server-side-encryption": "aws:kms" }, Null: { "s3:x-amz-server-side-encryption-aws-kms-key-id": "true" } },
            },
            {
                Sid: "DenyOtherKmsKeys",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:PutObject",
                Resource: `${bucketArn}/*`,
                Condition: { StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption-aws-kms-key-id": kmsKeyArn } },
            },
        ],
    };
}

export interface WriterPolicyInput {
    readonly bucketArn: string;
    readonly kmsKeyArn: string;
    readonly prefix: string;
    /** Object tagging for retentionBy "tag". */
    readonly tagging: boolean;
}

/**
 * The hosts' identity: read and write under the backup prefix, nothing else.
 * No delete (remote retention is the lifecycle's job, and a compromised host
 * must not be able to erase backups) and no bucket-configuration actions.
 */
export function renderWriterPolicy(input: WriterPolicyInput): PolicyDocument {
    const objects = `${input.bucketArn}/${input.prefix}/*`;
    const objectActions = ["s3:PutObject", "s3:GetObject", "s3:GetObjectAttributes", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"];
    if (input.tagging) objectActions.push("s3:PutObjectTagging", "s3:GetObjectTagging");
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "ListBackupPrefix",
                Effect: "Allow",
                Action: ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                Resource: input.bucketArn,
                Condition: { StringLike: { "s3:prefix": [`${input.prefix}/*`, `${input.prefix}/`] } },
            },
            { Sid: "ReadWriteBackupObjects", Effect: "Allow", Action: objectActions, Resource: objects },
            { Sid: "UseBucketKmsKey", Effect: "Allow", Action: ["kms:GenerateDataKey", "kms:Decrypt"], Resource: input.kmsKeyArn },
        ],
    };
}
