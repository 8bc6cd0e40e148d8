/**
 * Reading the bucket: the listing under the backup prefix, every manifest's
 * and restore-test record's body, and in tag mode each manifest's
 * retention-class tag.
 *
 * Through @aws-sdk/client-s3 rather than the AWS CLI the hosts use: the report
 * fetches one small object per backup, and one in-process client with a few
 * requests in flight does that in seconds where a CLI process per object
 * would take minutes; it also avoids parsing CLI output and the older `aws`
 * that can shadow /usr/bin/aws on PATH. Credentials come from the SDK's
 * default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE with a
 * 0600 shared credentials file, SSO, instance roles): never from argv, never
 * logged.
 */
import { GetObjectCommand, GetObjectTaggingCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { PITR_REPOSITORY_FOLDER } from "../../config/names";
import { RETENTION_TAG } from "../../render/storagePolicy";
import { parseRestoreTestKey } from "./facts";
import { keepPitrListing } from "./pitr";
import type { BucketObject, BucketSnapshot, ReportPolicy } from "./model";

/** A problem with what the operator gave (stack, flags, credentials): printed as is, exit 2. */
export class ReportInputError extends Error {}

const PARALLEL_REQUESTS = 8;

// On Node.js < 22 the SDK's first client prints a NodeVersionSupportWarning: releases after the
// first week of January 2027 will require Node.js 22. The release installed here supports
// Node.js 20 (tests/unit/dependencies.test.ts holds that), so the notice is about upgrades no run
// can act on. This is the SDK's own opt-out of exactly that notice; an operator's own value wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

export function s3ClientFor(bucket: ReportPolicy["bucket"], overrides: Partial<S3ClientConfig> = {}): S3Client {
    return new S3Client({
        region: bucket.region || "us-east-1",
        ...(bucket.endpoint ? { endpoint: bucket.endpoint, forcePathStyle: true } : {}),
        // Only reads here; checksums only where S3 requires them keeps S3-compatible stores working.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        maxAttempts: 3,
        ...overrides,
    });
}

async function inParallel<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
    const out: R[] = new Array(items.length);
    let next = 0;
    const worker = async () => {
        while (next < items.length) {
            const i = next++;
            out[i] = await work(items[i]);
        }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_REQUESTS, items.length) }, worker));
    return out;
}

/** Turns the SDK's errors into what to fix, naming the stack field or the environment. */
export function explainS3Error(e: unknown, policy: ReportPolicy): Error {
    const err = e as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
    const where = policy.bucket.endpoint ? `endpoint ${policy.bucket.endpoint}` : `AWS region ${policy.bucket.region}`;
    const stackFile = `Pulumi.${policy.stack}.yaml`;
    const name = err.name ?? err.code ?? "";
    if (name === "NoSuchBucket") return new ReportInputError(`bucket "${policy.bucket.name}" does not exist at ${where}: check hx-backup:bucketName (and s3Endpoint) in ${stackFile}, or run pulumi up to create it`);
    if (name === "CredentialsProviderError" || /credential/i.test(err.message ?? "")) {
        return new ReportInputError(`no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, or AWS_PROFILE with a shared credentials file of mode 0600 (${err.message ?? name})`);
    }
    if (["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden"].includes(name) || err.$metadata?.httpStatusCode === 403) {
        return new ReportInputError(`access to bucket "${policy.bucket.name}" at ${where} was refused (${name}): the credentials in the environment need s3:ListBucket and s3:GetObject${policy.bucket.retentionBy === "tag" ? " and s3:GetObjectTagging" : ""} on the backup prefix`);
    }
    if (["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT"].includes(name) || /ECONNREFUSED|ENOTFOUND|getaddrinfo/.test(err.message ?? "")) {
        return new ReportInputError(`cannot reach ${where} (${err.message ?? name}): check hx-backup:s3Endpoint / s3Region in ${stackFile} and the network`);
    }
    return e instanceof Error ? e : new Error(String(e));
}

type Listed = { key: string; size: number; lastModified: string };

/** The objects under `prefix` in key order, after `startAfter` and before `stopAt` (all pages up to there), those `keep` accepts. */
async function listRange(client: S3Client, bucket: string, prefix: string, range: { startAfter?: string; stopAt?: string }, keep: (key: string) => boolean = () => true): Promise<Listed[]> {
    const objects: Listed[] = [];
    let token: string | undefined;
    do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, StartAfter: range.startAfter, ContinuationToken: token }));
        for (const o of page.Contents ?? []) {
            if (!o.Key) continue;
            if (range.stopAt !== undefined && Buffer.compare(Buffer.from(o.Key), Buffer.from(range.stopAt)) >= 0) return objects;
            if (keep(o.Key)) objects.push({ key: o.Key, size: o.Size ?? 0, lastModified: (o.LastModified ?? new Date(0)).toISOString() });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
}

/**
 * The listing under `<prefix>/`, the pgBackRest repositories apart (their
 * WAL can run to millions of objects: only their keys and dates are kept,
 * without each backup's own files), every manifest body and every
 * restore-test record; one that cannot be read is recorded as such, not fatal.
 */
export async function readBucket(client: S3Client, policy: ReportPolicy): Promise<BucketSnapshot> {
    const bucket = policy.bucket.name;
    const prefix = policy.bucket.prefix.replace(/\/+$/, "");
    const root = prefix ? `${prefix}/` : "";
    const listed: Listed[] = [];
    let pitrObjects: Listed[];
    try {
        // S3 lists in UTF-8 byte order: the keys before the repositories' folder, then those after it ("0" follows "/").
        listed.push(...(await listRange(client, bucket, root, { stopAt: `${root}${PITR_REPOSITORY_FOLDER}/` })));
        listed.push(...(await listRange(client, bucket, root, { startAfter: `${root}${PITR_REPOSITORY_FOLDER}0` })));
        pitrObjects = await listRange(client, bucket, `${root}${PITR_REPOSITORY_FOLDER}/`, {}, (key) => keepPitrListing(key, policy.bucket.prefix));
    } catch (e) {
        throw explainS3Error(e, policy);
    }
    const manifests = listed.filter((o) => o.key.endsWith(".manifest.json"));
    const records = listed.filter((o) => parseRestoreTestKey(o.key, policy.bucket) !== null);
    const bodies = await inParallel([...manifests, ...records], async (o) => {
        try {
            const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.key }));
            return (await r.Body?.transformToString("utf8")) ?? undefined;
        } catch (e) {
            const explained = explainS3Error(e, policy);
            if (explained instanceof ReportInputError) throw explained;
            return undefined;
        }
    });
    const tags = new Map<string, string>();
    if (policy.bucket.retentionBy === "tag") {
        // The lifecycle acts on the tag, so the tag (not the upload's metadata) is the class.
        await inParallel(manifests, async (o) => {
            try {
                const r = await client.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: o.key }));
                const value = r.TagSet?.find((t) => t.Key === RETENTION_TAG)?.Value;
                if (value) tags.set(o.key, value);
            } catch (e) {
                throw explainS3Error(e, policy);
            }
        });
    }
    const objects: BucketObject[] = listed.map((o) => ({ ...o, ...(tags.has(o.key) ? { retentionTag: tags.get(o.key)! } : {}) }));
    return {
        objects,
        manifestBodies: new Map(manifests.map((o, i) => [o.key, bodies[i]])),
        restoreTestBodies: new Map(records.map((o, i) => [o.key, bodies[manifests.length + i]])),
        pitrObjects,
    };
}
