import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { ClassLifecycle } from "../config/lifecycle";
import { renderLifecycleRules, renderBucketPolicy, renderWriterPolicy } from "../render/storagePolicy";

export interface BackupStorageArgs {
    /** Bucket name (globally unique). Required. */
    readonly bucketName: string;
    /** Key prefix under which hosts write: `<prefix>/...`. Required. */
    readonly prefix: string;
    /** Region of the bucket; "" uses the AWS provider's region. Default: "". */
    readonly region?: string;
    /** Lifecycle per retention class (from config/lifecycle). Required. */
    readonly lifecycle: readonly ClassLifecycle[];
    /** How objects carry their retention class: key prefix or object tag. Required; the default is config/schema.ts `retentionBy`. */
    readonly retentionBy: "prefix" | "tag";
    /** Days before noncurrent versions expire. Required; the default is config/schema.ts `noncurrentVersionExpireDays`. */
    readonly noncurrentVersionExpireDays: number;
    /** Days before incomplete multipart uploads are aborted. Required; the default is config/schema.ts `abortMultipartDays`. */
    readonly abortMultipartDays: number;
    /** Object Lock default retention; omit to leave Object Lock off. Default: off. */
    readonly objectLock?: { readonly mode: "GOVERNANCE" | "COMPLIANCE"; readonly days: number };
    /** Waiting period before the KMS key is deleted after destroy (7-30). Required; the default is config/schema.ts `kmsDeletionWindowDays`. */
    readonly kmsDeletionWindowDays: number;
    /** Allow destroy to delete a bucket that still holds objects. Required; the default is config/schema.ts `forceDestroyBucket`. */
    readonly forceDestroy: boolean;
}

/**
 * The backup bucket on AWS: versioned, SSE-KMS with a rotating customer key
 * and bucket keys, no public access, TLS-only and encrypted-puts-only policy,
 * optional Object Lock, lifecycle tiers per retention class, and a writer
 * identity that can only read and write the backup prefix.
 */
export class BackupStorage extends pulumi.ComponentResource {
    public readonly bucketName: pulumi.Output<string>;
    public readonly bucketArn: pulumi.Output<string>;
    public readonly region: pulumi.Output<string>;
    public readonly endpoint: pulumi.Output<string>;
    public readonly kmsKeyArn: pulumi.Output<string>;
    /** Writer access key id. */
    public readonly writerAccessKeyId: pulumi.Output<string>;
    /** Writer secret access key. Secret. */
    public readonly writerSecretAccessKey: pulumi.Output<string>;

    constructor(name: string, args: BackupStorageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("hx-backup:storage:BackupStorage", name, {}, opts);
        const child = { parent: this };
        const retentionBy = args.retentionBy;
        const locked = args.objectLock !== undefined;

        const kmsKey = new aws.kms.Key(`${name}-kms`, {
            description: `hx-backup bucket ${args.bucketName}`,
            enableKeyRotation: true,
            deletionWindowInDays: args.kmsDeletionWindowDays,
        }, child);
        new aws.kms.Alias(`${name}-kms-alias`, { name: `alias/hx-backup-${args.bucketName}`, targetKeyId: kmsKey.keyId }, child);

        const bucket = new aws.s3.Bucket(`${name}-bucket`, {
            bucket: args.bucketName,
            objectLockEnabled: locked,
            forceDestroy: args.forceDestroy,
            ...(args.region ? { region: args.region } : {}),
        }, { ...child, protect: !args.forceDestroy });
        const region = bucket.region;

        const ownership = new aws.s3.BucketOwnershipControls(`${name}-ownership`, {
            bucket: bucket.id,
            rule: { objectOwnership: "BucketOwnerEnforced" },
        }, child);
        const publicAccess = new aws.s3.BucketPublicAccessBlock(`${name}-public-access`, {
            bucket: bucket.id,
            blockPublicAcls: true,
            blockPublicPolicy: true,
            ignorePublicAcls: true,
            restrictPublicBuckets: true,
        }, child);
        const versioning = new aws.s3.BucketVersioning(`${name}-versioning`, {
            bucket: bucket.id,
            versioningConfiguration: { status: "Enabled" },
        }, child);
        new aws.s3.BucketServerSideEncryptionConfiguration(`${name}-encryption`, {
            bucket: bucket.id,
            rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: kmsKey.arn }, bucketKeyEnabled: true }],
        }, child);
        new aws.s3.BucketPolicy(`${name}-policy`, {
            bucket: bucket.id,
            policy: pulumi.all([bucket.arn, kmsKey.arn]).apply(([bucketArn, keyArn]) => JSON.stringify(renderBucketPolicy(bucketArn, keyArn))),
        }, { ...child, dependsOn: [publicAccess, ownership] });
        if (args.objectLock) {
            new aws.s3.BucketObjectLockConfiguration(`${name}-object-lock`, {
                bucket: bucket.id,
                objectLockEnabled: "Enabled",
                rule: { defaultRetention: { mode: args.objectLock.mode, days: args.objectLock.days } },
            }, { ...child, dependsOn: [versioning] });
        }
        new aws.s3.BucketLifecycleConfiguration(`${name}-lifecycle`, {
            bucket: bucket.id,
            rules: renderLifecycleRules({
                prefix: args.prefix,
                lifecycle: args.lifecycle,
                retentionBy,
                noncurrentVersionExpireDays: args.noncurrentVersionExpireDays,
                abortMultipartDays: args.abortMultipartDays,
            }),
        }, { ...child, dependsOn: [versioning] });

        const writer = new aws.iam.User(`${name}-writer`, { path: "/hx-backup/", name: `hx-backup-writer-${args.bucketName}`.slice(0, 64) }, child);
        new aws.iam.UserPolicy(`${name}-writer-policy`, {
            user: writer.name,
            policy: pulumi.all([bucket.arn, kmsKey.arn]).apply(([bucketArn, keyArn]) =>
                JSON.stringify(renderWriterPolicy({ bucketArn, kmsKeyArn: keyArn, prefix: args.prefix, tagging: retentionBy === "tag" })),
            ),
        }, child);
        const accessKey = new aws.iam.AccessKey(`${name}-writer-key`, { user: writer.name }, { ...child, additionalSecretOutputs: ["secret"] });

        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.region = region;
        this.endpoint = pulumi.interpolate`https://s3.${region}.amazonaws.com`;
        this.kmsKeyArn = kmsKey.arn;
        this.writerAccessKeyId = accessKey.id;
        this.writerSecretAccessKey = pulumi.secret(accessKey.secret);
        this.registerOutputs({
            bucketName: this.bucketName,
            bucketArn: this.bucketArn,
            region: this.region,
            endpoint: this.endpoint,
            kmsKeyArn: this.kmsKeyArn,
            writerAccessKeyId: this.writerAccessKeyId,
        });
    }
}
