/**
 * The compliance report's pure parts: jq's canonical form and the manifest
 * MAC (against the real bash library and jq), key layouts, the facts and
 * problems built from a synthetic bucket, the calendar, and the HTML and
 * Markdown views.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dayOf, isoWeek, periodsBetween, runsOnDay } from "../../scripts/report/calendar";
import { jqCanonical, jqNumber, macHalfOfKeyFile, macMatches, manifestMac, type Json } from "../../scripts/report/canonical";
import { buildReport, parseObjectKey, parseRestoreTestKey, timelineDays } from "../../scripts/report/facts";
import { esc, renderHtml } from "../../scripts/report/html";
import { readKeyring } from "../../scripts/report/keyring";
import { renderMarkdown } from "../../scripts/report/markdown";
import type { BucketObject, ReportPolicy } from "../../scripts/report/model";
import { parseArgs } from "../../scripts/report";
import { ReportInputError } from "../../scripts/report/bucket";
import { removeDir, reportPolicy, requireTools, run, skipWithout, tempDir } from "./helpers";

const LIB = path.resolve(__dirname, "../../templates/scripts/lib");
const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

/** Edge cases of jq's printer a manifest could carry: escapes, DEL, non-ASCII, astral keys sorting by UTF-8 bytes, numbers. */
const EDGE_BODY: { [k: string]: Json } = {
    format: 1,
    target: 'db "x" \\ / \u0001\u001f\u007f\b\f\n\r\t é ü 😀 \u2028',
    "\uffff": 3,
    "😀": 4,
    é: 2,
    ab: 5,
    "a\u0000": 6,
    nested: [{ y: 1, x: [true, false, null] }, {}, []],
    numbers: [0, 100, 1.1, 0.1, 1e15, 1e16, 1e17, 1e20, 123e15, 0.0001, 0.00001, 1e-7, 1.5e300, 123456789012345680, -2.5, 12345678901234568000000],
};

describe("jq canonical form", () => {
    it("equals jq --compact-output --sort-keys byte for byte", () => {
        if (skipWithout("jq")) return;
        requireTools("jq");
        const input = JSON.stringify(EDGE_BODY);
        const r = run("jq", ["--compact-output", "--sort-keys", "del(.mac)"], { input });
        expect(r.status, r.stderr).toBe(0);
        expect(Buffer.from(`${jqCanonical(JSON.parse(input))}\n`, "utf8").equals(Buffer.from(r.stdout, "utf8"))).toBe(true);
        // JavaScript's own order would put the astral key before U+FFFF; jq orders by UTF-8 bytes.
        expect(r.stdout.indexOf('"\uffff"')).toBeLessThan(r.stdout.indexOf('"😀"'));
    });

    it("prints numbers as jq 1.6 does, including -0 and literals past the largest double", () => {
        if (skipWithout("jq")) return;
        requireTools("jq");
        const literals = ["-0", "2e308", "-2e308", "1e21", "5e-324", "0.000123", "1234567.125"];
        const r = run("jq", ["--compact-output", "."], { input: `[${literals.join(",")}]` });
        expect(r.status, r.stderr).toBe(0);
        const mine = `[${literals.map((l) => jqNumber(Number(l))).join(",")}]\n`;
        expect(mine).toBe(r.stdout);
    });

    it("verifies a manifest signed by the real bash library (hx_manifest_sign), and not a tampered one", () => {
        if (skipWithout("jq", "openssl", "bash")) return;
        requireTools("jq", "openssl", "bash");
        const dir = tempDir("hx-report-mac-");
        dirs.push(dir);
        const keyHex = randomBytes(64).toString("hex");
        // The fields hx_verify_manifest_mac checks, around the edge cases.
        const body = { ...EDGE_BODY, artifact: "x.tar.zst.enc", sizes: { stored: 10 }, sha256: { stored: "a".repeat(64) }, encryption: { cipher: "aes-256-cbc", keyId: "unit-v1" }, createdAt: "2026-01-02T03:04:05Z" };
        writeFileSync(path.join(dir, "body.json"), JSON.stringify(body));
        writeFileSync(path.join(dir, "unit-v1.key"), `${keyHex}\n`, { mode: 0o600 });
        // The library's own signing and verification, as the jobs run them.
        const script = `set -euo pipefail
source "$1/crypto.sh"; source "$1/manifest.sh"; source "$1/verify.sh"
HX_KEYRING=$2; HX_KEY_ID=unit-v1; HX_KEYFILE=""
hx_key_load unit-v1
hx_manifest_sign "$2/body.json" "$2/signed.json"
HX_KEY_LOADED_ID=""; hx_verify_manifest_mac "$2/signed.json"
cat "$2/signed.json"`;
        const r = run("bash", ["-c", script, "sign", LIB, dir]);
        expect(r.status, r.stderr).toBe(0);
        const signed = JSON.parse(r.stdout) as { [k: string]: Json } & { mac: { value: string; keyId: string } };
        expect(signed.mac.keyId).toBe("unit-v1");
        const macKey = macHalfOfKeyFile(`${keyHex}\n`)!;
        expect(manifestMac(signed, macKey)).toBe(signed.mac.value);
        expect(macMatches(signed, macKey, signed.mac.value)).toBe(true);
        const tampered = { ...signed, target: `${signed.target as string}!` };
        expect(macMatches(tampered, macKey, signed.mac.value)).toBe(false);
        expect(macMatches(signed, macHalfOfKeyFile(`${randomBytes(64).toString("hex")}\n`)!, signed.mac.value)).toBe(false);
    });
});

// ----------------------------------------------------------- synthetic bucket

const NOW = new Date("2026-03-20T12:00:00Z");
const KEY_V1 = randomBytes(32).toString("hex");
const KEY_V2 = randomBytes(32).toString("hex");
const KEYRING = new Map([
    ["unit-v1", KEY_V1],
    ["unit-v2", KEY_V2],
]);

function stackPolicy(raw: Record<string, unknown> = {}): ReportPolicy {
    return reportPolicy(
        [
            { name: "db-1", address: "10.0.0.1", roles: ["postgresql", "configuration"], postgresql: { databases: ["app"] } },
            { name: "cache-1", address: "10.0.0.2", roles: ["redis"] },
        ],
        raw,
    );
}

interface Made {
    objects: BucketObject[];
    bodies: Map<string, string>;
    restoreTests: Map<string, string>;
    /** The pgBackRest repositories' listing. */
    pitr: BucketObject[];
}
const emptyBucket = (): Made => ({ objects: [], bodies: new Map(), restoreTests: new Map(), pitr: [] });

/** One backup as backup-sync.sh leaves it: manifest and artifact under one class directory. */
function addBackup(
    into: Made,
    o: { host: string; type: string; target: string; created: string; cls?: string; key?: string; keyHex?: string; dedupOf?: string; artifactSize?: number; prefix?: string; tagMode?: boolean },
): { manifestKey: string; artifactKey: string } {
    const stamp = o.created.replace(/[-:]/g, "").replace(/\.\d+/, "");
    const artifact = o.dedupOf ?? `${o.target}-${stamp}.tar.zst.enc`;
    const keyId = o.key ?? "unit-v2";
    const body: { [k: string]: Json } = {
        format: 1,
        type: o.type,
        target: o.target,
        host: o.host,
        stack: "unit",
        artifact,
        dedup: o.dedupOf ? { artifact: o.dedupOf, manifest: o.dedupOf.replace(/\.tar\.zst\.enc$/, ".manifest.json") } : null,
        startedAt: new Date(Date.parse(o.created) - 60_000).toISOString().replace(/\.\d+Z$/, "Z"),
        createdAt: o.created,
        encryption: { cipher: "aes-256-cbc", kdf: "pbkdf2", digest: "sha256", iter: 100000, keyId },
        sizes: { plain: 2000, stored: 1000 },
        sha256: { stored: "a".repeat(64), content: "b".repeat(64) },
    };
    body.mac = { alg: "hmac-sha256", keyId, value: manifestMac(body, o.keyHex ?? KEYRING.get(keyId)!) };
    const dir = o.tagMode ? `${o.prefix ?? "hx"}/${o.host}/${o.type}/${o.target}/` : `${o.prefix ?? "hx"}/${o.cls ?? "daily"}/${o.host}/${o.type}/${o.target}/`;
    const manifestKey = `${dir}${o.target}-${stamp}.manifest.json`;
    const artifactKey = `${dir}${artifact}`;
    const tag = o.tagMode ? { retentionTag: o.cls ?? "daily" } : {};
    into.objects.push({ key: manifestKey, size: 500, lastModified: o.created, ...tag });
    into.bodies.set(manifestKey, JSON.stringify(body));
    if (!into.objects.some((x) => x.key === artifactKey)) into.objects.push({ key: artifactKey, size: o.artifactSize ?? 1000, lastModified: o.created, ...tag });
    return { manifestKey, artifactKey };
}

/**
 * A source's restore-test record as lib/verify.sh hx_restore_test_record
 * writes it and backup-sync.sh uploads it (replacing the previous one).
 */
function addRestoreTest(
    into: Made,
    o: { host: string; type: string; target: string; finished: string; manifest?: string; result?: "ok" | "failed"; error?: string; durationMs?: number; key?: string; keyHex?: string; prefix?: string },
): string {
    const durationMs = o.durationMs ?? 90_000;
    const result = o.result ?? "ok";
    const body: { [k: string]: Json } = {
        format: 1,
        kind: "restore-test",
        host: o.host,
        stack: "unit",
        job: "verification-weekly",
        type: o.type,
        target: o.target,
        manifest: o.manifest ?? null,
        manifestSha256: "c".repeat(64),
        artifact: o.manifest ? o.manifest.replace(/\.manifest\.json$/, ".tar.zst.enc") : null,
        manifestCreatedAt: null,
        startedAt: new Date(Date.parse(o.finished) - durationMs).toISOString().replace(/\.\d+Z$/, "Z"),
        finishedAt: o.finished,
        durationMs,
        result,
        error: result === "ok" ? null : (o.error ?? "decrypted content hash differs from the manifest"),
    };
    const keyId = o.key ?? "unit-v2";
    body.mac = { alg: "hmac-sha256", keyId, value: manifestMac(body, o.keyHex ?? KEYRING.get(keyId)!) };
    const key = `${o.prefix ?? "hx"}/${o.host}/${o.type}/${o.target}/restore-test.json`;
    into.objects = into.objects.filter((x) => x.key !== key);
    into.objects.push({ key, size: 600, lastModified: o.finished });
    into.restoreTests.set(key, JSON.stringify(body));
    return key;
}

const SOURCES = [
    { host: "db-1", type: "postgresql", target: "app", at: "02:01:00" },
    { host: "db-1", type: "postgresql", target: "_globals", at: "02:01:00" },
    { host: "db-1", type: "configuration", target: "system", at: "01:31:00" },
    { host: "cache-1", type: "redis", target: "redis-6379", at: "02:02:00" },
] as const;

/**
 * Every expected source of stackPolicy() backed up daily for `days` days up
 * to today, the first one of the run yearly, and (restoreTests) its newest
 * backup restore-tested this morning.
 */
function healthyBucket(days = 10, restoreTests = true): Made {
    const made = emptyBucket();
    for (let d = days - 1; d >= 0; d--) {
        const day = new Date(NOW.getTime() - d * 86_400_000).toISOString().slice(0, 10);
        const cls = d === days - 1 ? "yearly" : "daily";
        for (const s of SOURCES) addBackup(made, { host: s.host, type: s.type, target: s.target, created: `${day}T${s.at}Z`, cls });
    }
    const today = NOW.toISOString().slice(0, 10);
    if (restoreTests) {
        for (const s of SOURCES) addRestoreTest(made, { ...s, finished: `${today}T05:10:00Z`, manifest: `${s.target}-${today.replace(/-/g, "")}T${s.at.replace(/:/g, "")}Z.manifest.json` });
    }
    return made;
}

/** keyring null: as without --keys. */
const build = (made: Made, policy = stackPolicy(), keyring: ReadonlyMap<string, string> | null = KEYRING, now = NOW) =>
    buildReport(policy, { objects: made.objects, manifestBodies: made.bodies, restoreTestBodies: made.restoreTests, pitrObjects: made.pitr }, { keyring: keyring ?? undefined, now });


describe("report facts", () => {
    it("a healthy bucket has no problems: every RPO met, chains intact, retention covered, one timeline entry per backup", () => {
        const report = build(healthyBucket());
        expect(report.problems).toEqual([]);
        expect(report.sources.map((s) => `${s.host}/${s.type}/${s.target}`)).toEqual(["cache-1/redis/redis-6379", "db-1/configuration/system", "db-1/postgresql/_globals", "db-1/postgresql/app"]);
        for (const s of report.sources) {
            expect(s.newest?.rpoMet).toBe(true);
            expect(s.backups.every((b) => b.mac === "verified" && b.artifact === "present")).toBe(true);
            expect(s.coverage.every((c) => c.met)).toBe(true);
            expect(s.timeline.flatMap((d) => d.backups)).toHaveLength(s.backups.length);
            expect(s.oldestRestorable).toBe(s.backups[0].createdAt);
        }
        expect(report.totals).toEqual({ objects: 84, manifests: 40, restorable: 40, broken: 0 });
        const app = report.sources.find((s) => s.target === "app")!;
        expect(app.coverage.find((c) => c.retentionClass === "daily")).toMatchObject({ objects: 9, covered: 7, required: 7, policy: 7, expirationDays: 8 });
        expect(app.coverage.find((c) => c.retentionClass === "yearly")).toMatchObject({ objects: 1, covered: 1, required: 1 });
        expect(app.encryption).toEqual({ cipher: "aes-256-cbc", kdf: "pbkdf2", digest: "sha256", iter: 100000, keyId: "unit-v2" });
        expect(app.lastRestoreTest).toMatchObject({ state: "ok", result: "ok", mac: "verified", manifest: "app-20260320T020100Z.manifest.json", manifestInBucket: true, finishedAt: "2026-03-20T05:10:00Z" });
        expect(report.unrecognizedObjects).toEqual([]);
        expect(report.cannotKnow.join(" ")).toMatch(/restore-test record is the host's own statement/i);
    });

    it("names a missing artifact, a deduplicated manifest left without its artifact, and a size that differs", () => {
        const made = healthyBucket(3);
        const first = addBackup(made, { host: "db-1", type: "configuration", target: "extra", created: "2026-03-19T01:00:00Z" });
        const dedup = addBackup(made, { host: "db-1", type: "configuration", target: "extra", created: "2026-03-20T01:00:00Z", dedupOf: first.artifactKey.split("/").pop() });
        made.objects.splice(made.objects.findIndex((o) => o.key === first.artifactKey), 1);
        const sized = addBackup(made, { host: "db-1", type: "configuration", target: "sized", created: "2026-03-20T01:00:00Z", artifactSize: 999 });
        const report = build(made);
        const problems = report.problems.filter((p) => p.kind.startsWith("artifact"));
        expect(problems.map((p) => [p.kind, p.key])).toEqual([
            ["artifact-missing", first.manifestKey],
            ["artifact-missing", dedup.manifestKey],
            ["artifact-size", sized.manifestKey],
        ]);
        expect(problems[1].message).toMatch(/deduplicated: the artifact first stored by/);
        // Both manifests of the broken chain are broken; no restorable backup is left, so its RPO is missed too.
        expect(report.problems.filter((p) => p.target === "extra").map((p) => p.kind).sort()).toEqual(["artifact-missing", "artifact-missing", "rpo-missed"]);
    });

    it("a tampered manifest fails its MAC with the keyring; without it the MAC is reported as not checked", () => {
        const made = healthyBucket(3);
        const key = [...made.bodies.keys()].find((k) => k.includes("/redis/"))!;
        made.bodies.set(key, made.bodies.get(key)!.replace('"plain":2000', '"plain":2001'));
        const withKeys = build(made);
        expect(withKeys.problems.map((p) => [p.kind, p.key])).toEqual([["mac-mismatch", key]]);
        const without = build(made, stackPolicy(), null);
        expect(without.problems).toEqual([]);
        expect(without.macCheck).toBe("not-checked");
        expect(without.sources.flatMap((s) => s.backups).every((b) => b.mac === "not-checked")).toBe(true);
        expect(without.cannotKnow.join(" ")).toMatch(/MACs were not checked/);
    });

    it("names a missing source: a role or listed database with nothing in the bucket, never hosts that do not sync", () => {
        const made = healthyBucket(3);
        made.objects = made.objects.filter((o) => !o.key.includes("/redis/") && !o.key.includes("/postgresql/app/"));
        const report = build(made);
        expect(report.missingSources).toEqual([
            { host: "db-1", type: "postgresql", target: "app", configuredTarget: "app" },
            { host: "cache-1", type: "redis", target: null, configuredTarget: null },
        ]);
        expect(report.problems.map((p) => p.kind)).toEqual(["missing-source", "missing-source"]);
        const localOnly = stackPolicy({ hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }, { name: "cache-1", address: "10.0.0.2", roles: ["redis"], remoteSync: false }] });
        const onlyConfig = emptyBucket();
        addBackup(onlyConfig, { host: "db-1", type: "configuration", target: "system", created: "2026-03-20T01:31:00Z" });
        expect(build(onlyConfig, localOnly).missingSources).toEqual([]);
    });

    describe("a listed database stored under a safe name (lib/core.sh hx_slug)", () => {
        const CONFIGURED = "Odd.Db-$HOME$1_x";
        // As the scripts store it: the contract test (slug-contract.test.ts) ties render/slug.ts to hx_slug.
        const STORED = "Odd.Db-_HOME_1_x-d99b6abf";
        const LABEL = `${CONFIGURED} (stored as ${STORED})`;
        const oddPolicy = () =>
            stackPolicy({ hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["postgresql", "configuration"], postgresql: { databases: ["app", CONFIGURED] } }, { name: "cache-1", address: "10.0.0.2", roles: ["redis"] }] });
        const withOddDatabase = (): Made => {
            const made = healthyBucket(10);
            for (let d = 9; d >= 0; d--) {
                const day = new Date(NOW.getTime() - d * 86_400_000).toISOString().slice(0, 10);
                addBackup(made, { host: "db-1", type: "postgresql", target: STORED, created: `${day}T02:01:00Z`, cls: d === 9 ? "yearly" : "daily" });
            }
            addRestoreTest(made, { host: "db-1", type: "postgresql", target: STORED, finished: "2026-03-20T05:10:00Z", manifest: `${STORED}-20260320T020100Z.manifest.json` });
            return made;
        };

        it("is one healthy source, found under its stored name and shown with both names in the JSON, the page and the summary", () => {
            const report = build(withOddDatabase(), oddPolicy());
            expect(report.problems).toEqual([]);
            expect(report.missingSources).toEqual([]);
            const odd = report.sources.filter((s) => s.host === "db-1" && s.type === "postgresql" && s.target !== "_globals" && s.target !== "app");
            expect(odd.map((s) => [s.target, s.configuredTarget, s.expected, s.newest?.rpoMet, s.lastRestoreTest.state])).toEqual([[STORED, CONFIGURED, true, true, "ok"]]);
            expect(report.sources.find((s) => s.target === "app")?.configuredTarget).toBe("app");
            expect(report.sources.find((s) => s.target === "_globals")?.configuredTarget).toBeNull();
            const json = JSON.parse(JSON.stringify(report)) as typeof report;
            expect(json.sources.find((s) => s.target === STORED)).toMatchObject({ target: STORED, configuredTarget: CONFIGURED });
            const md = renderMarkdown(report);
            expect(md).toContain(`| db-1 | postgresql | ${LABEL} | 2026-03-20T02:01:00Z |`);
            expect(md).toContain("**5 sources, 0 missing;");
            expect(md).not.toMatch(/missing-source|\*\*missing\*\*/);
            const html = renderHtml(report);
            expect(html).toContain(`<h3>db-1 / postgresql / ${esc(LABEL)}</h3>`);
            expect(html).toContain(`data-source="${esc(`db-1/postgresql/${STORED}`)}"`);
            expect(html).not.toContain("data-missing=");
        });

        it("with nothing in the bucket is one missing source, named by both names", () => {
            const made = withOddDatabase();
            made.objects = made.objects.filter((o) => !o.key.includes(`/${STORED}/`));
            const report = build(made, oddPolicy());
            expect(report.missingSources).toEqual([{ host: "db-1", type: "postgresql", target: STORED, configuredTarget: CONFIGURED }]);
            expect(report.problems.map((p) => [p.kind, p.target, p.message])).toEqual([["missing-source", STORED, `the stack expects postgresql backups of ${LABEL} from db-1 (roles), and the bucket holds none`]]);
            const md = renderMarkdown(report);
            expect(md).toContain(`- **error** missing-source db-1/postgresql/${LABEL}: `);
            expect(md).toContain(`| db-1 | postgresql | ${LABEL} | **missing** |`);
            const html = renderHtml(report);
            expect(html).toContain(`<h3>db-1 / postgresql / ${esc(LABEL)}</h3><span class="badge b-bad">MISSING: nothing in the bucket</span>`);
            expect(html).toContain(`<b>missing-source</b> ${esc(`db-1 / postgresql / ${LABEL}`)}: `);
        });

        it("a problem of the source names it by both names too", () => {
            const made = withOddDatabase();
            const artifact = made.objects.find((o) => o.key.includes(`/${STORED}/`) && o.key.endsWith(".tar.zst.enc"))!;
            made.objects = made.objects.filter((o) => o !== artifact);
            const report = build(made, oddPolicy());
            expect(report.problems.map((p) => [p.kind, p.target])).toEqual([["artifact-missing", STORED]]);
            expect(renderMarkdown(report)).toContain(`- **error** artifact-missing db-1/postgresql/${LABEL}: `);
            expect(renderHtml(report)).toContain(`<b>artifact-missing</b> ${esc(`db-1 / postgresql / ${LABEL}`)}: `);
        });
    });

    it("marks a scheduled day without a backup as missed, but not days before the first backup or past daily retention", () => {
        const made = emptyBucket();
        for (const day of ["2026-03-02", "2026-03-10", "2026-03-14", "2026-03-15", "2026-03-17", "2026-03-18", "2026-03-19", "2026-03-20"]) {
            addBackup(made, { host: "db-1", type: "configuration", target: "system", created: `${day}T01:31:00Z` });
        }
        const policy = stackPolicy({ hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] });
        const s = build(made, policy).sources[0];
        const state = (d: string) => s.timeline.find((x) => x.date === d)?.state;
        expect(state("2026-03-16")).toBe("missed");
        expect(state("2026-03-13")).toBe("missed");
        expect(state("2026-03-12")).toBe("beyond-daily-retention");
        expect(state("2026-03-01")).toBe("before-first");
        expect(state("2026-03-20")).toBe("ok");
        expect(s.timeline).toHaveLength(timelineDays(policy));
        expect(build(made, policy).problems.filter((p) => p.kind === "missed-day").map((p) => p.message)).toEqual(["2026-03-13: scheduled, no backup in the bucket", "2026-03-16: scheduled, no backup in the bucket"]);
        // A weekly schedule expects nothing on the other days.
        const weekly = stackPolicy({ scheduleConfigurationDaily: "0 3 * * 0", hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] });
        const w = build(made, weekly).sources[0];
        expect(w.timeline.find((x) => x.date === "2026-03-16")?.state).toBe("not-scheduled");
        expect(w.timeline.find((x) => x.date === "2026-03-16")?.scheduled).toBe(false);
    });

    it("measures the recovery point against the schedule's longest gap plus the timer delay, the run's duration and 30 minutes", () => {
        const made = emptyBucket();
        addBackup(made, { host: "db-1", type: "configuration", target: "system", created: "2026-03-19T11:30:00Z" });
        const policy = stackPolicy({ timerRandomizedDelaySec: 300, hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] });
        // 24 h + 5 min start delay + the 1-minute run + 30 min: 24 h 36 min.
        const s = build(made, policy).sources[0];
        expect(s.schedule?.thresholdSeconds).toBe(86_400 + 300 + 60 + 1800);
        expect(s.newest).toEqual({ createdAt: "2026-03-19T11:30:00Z", ageSeconds: 24.5 * 3600, rpoMet: true });
        const late = build(made, policy, KEYRING, new Date("2026-03-20T12:07:00Z"));
        expect(late.sources[0].newest?.rpoMet).toBe(false);
        expect(late.problems.filter((p) => p.kind === "rpo-missed").map((p) => p.message)).toEqual(["newest restorable backup is 1d 0h 37m old, past the schedule's 1d 0h 36m"]);
    });

    it("derives each key's age from the oldest manifest that used it, flags the current key past the rotation policy, and calls older keys retired", () => {
        const made = emptyBucket();
        addBackup(made, { host: "db-1", type: "configuration", target: "system", created: "2025-10-01T01:31:00Z", cls: "monthly", key: "unit-v1" });
        addBackup(made, { host: "db-1", type: "configuration", target: "system", created: "2025-12-01T01:31:00Z", cls: "monthly", key: "unit-v2" });
        addBackup(made, { host: "db-1", type: "configuration", target: "system", created: "2026-03-20T01:31:00Z", key: "unit-v2" });
        const policy = stackPolicy({ hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] });
        const report = build(made, policy);
        expect(report.keys).toEqual([
            { keyId: "unit-v1", current: false, firstUsedAt: "2025-10-01T01:31:00Z", ageDays: 170, rotationDays: 90, status: "retired", manifests: 1, inKeyring: true },
            { keyId: "unit-v2", current: true, firstUsedAt: "2025-12-01T01:31:00Z", ageDays: 109, rotationDays: 90, status: "rotation-due", manifests: 2, inKeyring: true },
        ]);
        expect(report.problems.filter((p) => p.kind === "key-rotation-due").map((p) => p.message)).toEqual([
            "current key unit-v2 signed backups since 2025-12-01T01:31:00Z (109 days), past the 90-day rotation policy (keyRotationDays): bump encryptionKeyVersion",
        ]);
        expect(build(made, stackPolicy({ keyRotationDays: 120, hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] })).keys[1].status).toBe("ok");
        // A key the keyring lacks leaves those manifests unchecked, said as a warning.
        const partial = build(made, policy, new Map([["unit-v2", KEY_V2]]));
        expect(partial.problems.filter((p) => p.kind === "key-missing")).toHaveLength(1);
        expect(partial.keys[0].inKeyring).toBe(false);
    });

    it("names orphan artifacts, malformed manifests, sources the stack does not expect, and lists objects outside the layout", () => {
        const made = healthyBucket(2);
        made.objects.push({ key: "hx/daily/db-1/configuration/system/stray.tar.zst.enc", size: 5, lastModified: NOW.toISOString() });
        made.objects.push({ key: "hx/daily/db-1/configuration/system/broken.manifest.json", size: 5, lastModified: NOW.toISOString() });
        made.bodies.set("hx/daily/db-1/configuration/system/broken.manifest.json", "{not json");
        addBackup(made, { host: "old-host", type: "application", target: "data", created: "2026-03-20T01:00:00Z" });
        made.objects.push({ key: "hx/_hx-remote-test/db-1/probe-20260320T000000Z-1", size: 4096, lastModified: NOW.toISOString() });
        const report = build(made);
        expect(report.problems.map((p) => [p.kind, p.key])).toEqual([
            ["manifest-malformed", "hx/daily/db-1/configuration/system/broken.manifest.json"],
            ["orphan-artifact", "hx/daily/db-1/configuration/system/stray.tar.zst.enc"],
            ["unexpected-source", null],
        ]);
        expect(report.unrecognizedObjects).toEqual(["hx/_hx-remote-test/db-1/probe-20260320T000000Z-1"]);
        const system = report.sources.find((s) => s.target === "system")!;
        expect(system.undated).toHaveLength(1);
    });

    it("reads both key layouts: the class as a prefix, or as the retention-class tag", () => {
        const bucket = { name: "b", prefix: "hx", region: "r", retentionBy: "prefix" as const };
        expect(parseObjectKey("hx/weekly/h/postgresql/app/app-1.manifest.json", bucket)).toEqual({ retentionClass: "weekly", host: "h", type: "postgresql", target: "app", file: "app-1.manifest.json", dir: "hx/weekly/h/postgresql/app/" });
        expect(parseObjectKey("hx/h/postgresql/app/app-1.manifest.json", bucket)).toBeNull();
        const tagged = { ...bucket, retentionBy: "tag" as const };
        expect(parseObjectKey("hx/h/postgresql/app/app-1.manifest.json", tagged, "monthly")).toMatchObject({ retentionClass: "monthly", host: "h", dir: "hx/h/postgresql/app/" });
        const made = emptyBucket();
        addBackup(made, { host: "db-1", type: "configuration", target: "system", created: "2026-03-20T01:31:00Z", cls: "yearly", tagMode: true });
        const report = build(made, stackPolicy({ retentionBy: "tag", hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] }));
        expect(report.problems).toEqual([]);
        expect(report.sources[0].backups[0].retentionClass).toBe("yearly");
    });

    it("takes Object Lock and the lifecycle from the stack", () => {
        const report = build(healthyBucket(1), stackPolicy({ objectLockMode: "COMPLIANCE", objectLockDays: 45 }));
        expect(report.objectLock).toEqual({ mode: "COMPLIANCE", days: 45 });
        expect(report.lifecycleRules.map((r) => r.id)).toEqual(["hx-backup-daily", "hx-backup-weekly", "hx-backup-monthly", "hx-backup-yearly", "hx-backup-housekeeping", "hx-backup-delete-markers"]);
        expect(build(healthyBucket(1)).objectLock).toBeNull();
    });
});

describe("report facts: the last restore test", () => {
    // No start delay: the allowed age is the weekly verification gap, the daily backup gap (its sync uploads the record), the test's 90 s and 30 minutes.
    const policy = () => stackPolicy({ timerRandomizedDelaySec: 0 });
    const ALLOWED = 7 * 86_400 + 86_400 + 90 + 1800;
    const at = (host: string, type: string, target: string) => (r: ReturnType<typeof build>) => r.sources.find((s) => s.host === host && s.type === type && s.target === target)!.lastRestoreTest;
    const app = at("db-1", "postgresql", "app");
    const restoreProblems = (r: ReturnType<typeof build>) => r.problems.filter((p) => p.kind.startsWith("restore-test") || p.kind === "key-missing").map((p) => [p.kind, p.severity, `${p.host}/${p.type}/${p.target}`, p.key]);

    it("a fresh passed test is ok, its allowed age derived from the verification schedule and the source's backup schedule", () => {
        const r = build(healthyBucket(), policy());
        expect(r.problems).toEqual([]);
        expect(app(r)).toMatchObject({ state: "ok", ageSeconds: 6 * 3600 + 50 * 60, durationMs: 90_000, allowedAgeSeconds: ALLOWED, job: "verification-weekly", keyId: "unit-v2" });
        expect(app(r).rule).toMatch(/verification-weekly .*\(7d 0h\).*\(1d 0h: the next backup's sync uploads the record\).*30 minutes' grace: 8d 0h 31m$/);
        // A slower verification schedule allows more: monthly.
        const monthly = build(healthyBucket(), stackPolicy({ timerRandomizedDelaySec: 0, scheduleVerification: "0 5 1 * *" }));
        expect(app(monthly).allowedAgeSeconds).toBe(31 * 86_400 + 86_400 + 90 + 1800);
    });

    it("the timeline's date labels never crowd: none within two days of the first or of today", () => {
        // Today a Tuesday: the Monday before it goes unlabelled, as does one just after the first day.
        for (const now of [new Date("2026-12-01T12:00:00Z"), new Date("2026-12-07T12:00:00Z"), NOW]) {
            const html = renderHtml(build(healthyBucket(), policy(), KEYRING, now));
            for (const axis of html.match(/<div class="axis">.*?<\/div>/g)!) {
                const labels = [...axis.matchAll(/<span[^>]*>([^<]*)<\/span>/g)].map((m, i) => [i, m[1]] as const).filter(([, text]) => text);
                const last = [...axis.matchAll(/<span/g)].length - 1;
                expect(labels[0][0]).toBe(0);
                expect(labels[labels.length - 1][0]).toBe(last);
                for (let k = 1; k < labels.length; k++) expect(labels[k][0] - labels[k - 1][0], axis).toBeGreaterThan(2);
            }
        }
    });

    it("a failed test is an error naming the manifest and the cause, and the page and summary say so", () => {
        const made = healthyBucket();
        const key = addRestoreTest(made, { host: "db-1", type: "postgresql", target: "app", finished: "2026-03-20T05:10:00Z", manifest: "app-20260320T020100Z.manifest.json", result: "failed", error: "table orders: 4999 rows restored, the manifest recorded 5000" });
        const r = build(made, policy());
        expect(restoreProblems(r)).toEqual([["restore-test-failed", "error", "db-1/postgresql/app", key]]);
        expect(r.problems.find((p) => p.kind === "restore-test-failed")?.message).toBe("the last restore test (2026-03-20T05:10:00Z, of app-20260320T020100Z.manifest.json) failed: table orders: 4999 rows restored, the manifest recorded 5000");
        expect(app(r)).toMatchObject({ state: "failed", result: "failed", mac: "verified" });
        const html = renderHtml(r);
        expect(html).toMatch(/<span class="restore-test" data-state="failed"><span class="badge b-bad">FAILED<\/span>/);
        expect(html).toContain("4999 rows restored");
        expect(renderMarkdown(r)).toMatch(/\| db-1 \| postgresql \| app \|.*\| \*\*failed\*\* 2026-03-20T05:10:00Z \(6h 50m \/ 8d 0h 31m\), MAC verified \|/);
    });

    it("a passed test older than the schedule allows is stale, one second past it and not at it", () => {
        const made = healthyBucket();
        const finished = new Date(NOW.getTime() - ALLOWED * 1000).toISOString().replace(/\.\d+Z$/, "Z");
        const key = addRestoreTest(made, { host: "db-1", type: "postgresql", target: "app", finished, manifest: "app-20260301T020100Z.manifest.json" });
        const atLimit = build(made, policy());
        expect(app(atLimit)).toMatchObject({ state: "ok", ageSeconds: ALLOWED });
        expect(restoreProblems(atLimit)).toEqual([]);
        const later = build(made, policy(), KEYRING, new Date(NOW.getTime() + 1000));
        expect(restoreProblems(later)).toEqual([["restore-test-stale", "error", "db-1/postgresql/app", key]]);
        expect(later.problems.find((p) => p.kind === "restore-test-stale")?.message).toBe("the last restore test is 8d 0h 31m old, past the 8d 0h 31m the verification schedule allows");
        expect(app(later).state).toBe("stale");
        // The tested manifest has since left the bucket (retention): said, not a problem.
        expect(app(later).manifestInBucket).toBe(false);
    });

    it("no record is an error once the source is older than the allowed age, and not before", () => {
        const r = build(healthyBucket(10, false), policy());
        expect(restoreProblems(r)).toEqual(
            [...SOURCES].sort((a, b) => a.host.localeCompare(b.host) || a.type.localeCompare(b.type) || a.target.localeCompare(b.target)).map((s) => ["restore-test-missing", "error", `${s.host}/${s.type}/${s.target}`, null]),
        );
        expect(app(r)).toMatchObject({ state: "missing", key: null, finishedAt: null, allowedAgeSeconds: 7 * 86_400 + 86_400 + 1800 });
        expect(r.problems.find((p) => p.kind === "restore-test-missing")?.message).toMatch(/^no restore-test record in the bucket, and the source's oldest backup is 9d \d+h \d+m old, past the 8d 0h 30m the verification schedule allows$/);
        expect(renderHtml(r)).toContain('data-state="missing"');
        // A source backed up for three days only: its first restore test is not due yet.
        const young = build(healthyBucket(3, false), policy());
        expect(restoreProblems(young)).toEqual([]);
        expect(app(young).state).toBe("not-due");
        // A source the stack does not expect has no schedule to measure against.
        const stray = emptyBucket();
        addBackup(stray, { host: "old-host", type: "application", target: "data", created: "2026-03-01T01:00:00Z" });
        expect(at("old-host", "application", "data")(build(stray, policy())).state).toBe("not-expected");
    });

    it("a record whose MAC does not verify is an error and not trusted; without --keys it is not checked; an unknown key is a warning", () => {
        const made = healthyBucket();
        const key = addRestoreTest(made, { host: "db-1", type: "postgresql", target: "app", finished: "2026-03-20T05:10:00Z", result: "failed" });
        // Turned into a pass by someone without the key: the MAC no longer matches.
        const forged = made.restoreTests.get(key)!.replace('"result":"failed"', '"result":"ok"');
        expect(forged).not.toBe(made.restoreTests.get(key));
        made.restoreTests.set(key, forged);
        const r = build(made, policy());
        expect(restoreProblems(r)).toEqual([["restore-test-mac-mismatch", "error", "db-1/postgresql/app", key]]);
        expect(app(r)).toMatchObject({ state: "untrusted", mac: "mismatch", result: "ok" });
        expect(renderHtml(r)).toMatch(/data-state="untrusted".*MAC <span class="badge b-bad">mismatch<\/span>/s);
        const blind = build(made, policy(), null);
        expect(restoreProblems(blind)).toEqual([]);
        expect(app(blind)).toMatchObject({ state: "ok", mac: "not-checked" });
        // Signed with a key the keyring lacks.
        const other = healthyBucket();
        const k3 = addRestoreTest(other, { host: "db-1", type: "postgresql", target: "app", finished: "2026-03-20T05:10:00Z", key: "unit-v3", keyHex: randomBytes(32).toString("hex") });
        expect(restoreProblems(build(other, policy()))).toEqual([["key-missing", "warning", "db-1/postgresql/app", k3]]);
    });

    it("a malformed record, or one copied beside another source, is an error", () => {
        const made = healthyBucket();
        const broken = addRestoreTest(made, { host: "db-1", type: "postgresql", target: "app", finished: "2026-03-20T05:10:00Z" });
        made.restoreTests.set(broken, "{not json");
        // The redis source's record, signed as it is, copied beside the configuration source.
        const copied = "hx/db-1/configuration/system/restore-test.json";
        made.restoreTests.set(copied, made.restoreTests.get("hx/cache-1/redis/redis-6379/restore-test.json")!);
        const r = build(made, policy());
        expect(restoreProblems(r)).toEqual([
            ["restore-test-malformed", "error", "db-1/configuration/system", copied],
            ["restore-test-malformed", "error", "db-1/postgresql/app", broken],
        ]);
        expect(r.problems.find((p) => p.key === copied)?.message).toBe("restore-test record names cache-1/redis/redis-6379, not the source it sits beside");
        expect(app(r)).toMatchObject({ state: "untrusted", mac: "malformed" });
    });

    it("in tag mode the record sits beside the source's objects, untagged, and is no orphan artifact", () => {
        const made = emptyBucket();
        addBackup(made, { host: "db-1", type: "configuration", target: "system", created: "2026-03-20T01:31:00Z", cls: "yearly", tagMode: true });
        addRestoreTest(made, { host: "db-1", type: "configuration", target: "system", finished: "2026-03-20T05:10:00Z", manifest: "system-20260320T013100Z.manifest.json" });
        const r = build(made, stackPolicy({ retentionBy: "tag", hosts: [{ name: "db-1", address: "10.0.0.1", roles: ["configuration"] }] }));
        expect(r.problems).toEqual([]);
        expect(r.sources[0].lastRestoreTest).toMatchObject({ state: "ok", manifestInBucket: true });
        const bucket = { name: "b", prefix: "hx", region: "r", retentionBy: "prefix" as const };
        expect(parseRestoreTestKey("hx/db-1/configuration/system/restore-test.json", bucket)).toEqual({ host: "db-1", type: "configuration", target: "system" });
        expect(parseRestoreTestKey("hx/daily/db-1/configuration/system/restore-test.json", bucket)).toBeNull();
        // A record beside no backup of its source is listed, not dropped.
        const alone = emptyBucket();
        addRestoreTest(alone, { host: "gone", type: "redis", target: "redis-6379", finished: "2026-03-20T05:10:00Z" });
        expect(build(alone, policy()).unrecognizedObjects).toEqual(["hx/gone/redis/redis-6379/restore-test.json"]);
    });
});

describe("calendar", () => {
    it("counts ISO weeks across a year boundary, periods, zones and schedule days", () => {
        expect(isoWeek("2027-01-01")).toBe("2026-W53");
        expect(isoWeek("2026-12-28")).toBe("2026-W53");
        expect(isoWeek("2026-01-01")).toBe("2026-W01");
        expect(periodsBetween("2026-03-01", "2026-03-20", "daily")).toBe(20);
        expect(periodsBetween("2026-03-01", "2026-03-20", "weekly")).toBe(4);
        expect(periodsBetween("2025-12-31", "2026-01-01", "monthly")).toBe(2);
        expect(dayOf(new Date("2026-03-19T23:30:00Z"), "Europe/Berlin")).toBe("2026-03-20");
        expect(dayOf(new Date("2026-03-19T23:30:00Z"), "UTC")).toBe("2026-03-19");
        expect(runsOnDay("Sun *-*-* 03:00:00", "2026-03-22")).toBe(true);
        expect(runsOnDay("Sun *-*-* 03:00:00", "2026-03-23")).toBe(false);
        expect(runsOnDay("*-01,07-01 00:00:00", "2026-07-01")).toBe(true);
        expect(runsOnDay("*-01,07-01 00:00:00", "2026-07-02")).toBe(false);
        expect(() => runsOnDay("daily", "2026-07-02")).toThrow(/canonical/);
    });

    it("counts in UTC for retentionTimeZone local, and says so", () => {
        const p = stackPolicy({ retentionTimeZone: "local" });
        expect(p.timeZone).toBe("UTC");
        expect(p.timeZoneNote).toMatch(/does not record/);
        expect(stackPolicy({ retentionTimeZone: "Europe/Berlin" }).timeZone).toBe("Europe/Berlin");
    });
});

describe("report views", () => {
    it("the page is self-contained, escapes bucket text, and draws one mark per backup and a marked missed day", () => {
        const made = healthyBucket(10);
        // A hostile target name (valid in S3 keys), and a gap on a scheduled day.
        addBackup(made, { host: "db-1", type: "configuration", target: '<img src=x onerror="alert(1)">', created: "2026-03-20T01:00:00Z" });
        made.objects = made.objects.filter((o) => !o.key.includes("/redis/redis-6379/redis-6379-20260317"));
        const report = build(made);
        const html = renderHtml(report);
        expect(html).not.toMatch(/<(script|link|img|iframe|object|embed)\b/i);
        // No attribute that loads anything (attribute values, which hold escaped bucket text, set aside).
        const tags = html.replace(/"[^"]*"/g, '""').match(/<[a-z][^>]*>/gi) ?? [];
        expect(tags.length).toBeGreaterThan(100);
        expect(tags.filter((t) => /\s(src|href|srcset|action)\s*=/i.test(t))).toEqual([]);
        expect(html).not.toMatch(/url\(/i);
        expect(html).toContain("default-src 'none'");
        expect(html).toContain(esc('<img src=x onerror="alert(1)">'));
        const marks = html.match(/class="mark backup /g) ?? [];
        expect(marks).toHaveLength(report.totals.manifests);
        expect(report.totals.manifests).toBe(4 * 10 + 1 - 1);
        expect(html.match(/data-state="missed"/g)?.length).toBe(1 + 1); // the day, and the legend's sample
        expect(report.problems.map((p) => p.kind)).toContain("missed-day");
    });

    it("the summary escapes table cells and lists the problems and what it cannot know", () => {
        const made = healthyBucket(2);
        addBackup(made, { host: "db-1", type: "configuration", target: "a|b", created: "2026-03-20T01:00:00Z" });
        made.objects = made.objects.filter((o) => !o.key.includes("/redis/"));
        const md = renderMarkdown(build(made));
        expect(md).toContain("a\\|b");
        expect(md).toMatch(/- \*\*error\*\* missing-source cache-1\/redis: /);
        expect(md).toContain("## What this report cannot know");
    });
});

describe("report inputs", () => {
    it("rejects unknown flags and flags without a value, naming them", () => {
        expect(() => parseArgs(["--stack"])).toThrow(/--stack needs a value/);
        expect(() => parseArgs(["--stak", "x"])).toThrow(/unknown argument --stak/);
        expect(parseArgs(["--stack", "production", "--out", "o"])).toEqual({ stack: "production", out: "o" });
    });

    it("reads a keyring's MAC halves, and names the flag and file for an unreadable or malformed one", () => {
        const dir = tempDir("hx-report-keys-");
        dirs.push(dir);
        const hex = randomBytes(64).toString("hex");
        writeFileSync(path.join(dir, "s-v1.key"), `${hex}\r\n`);
        writeFileSync(path.join(dir, "README"), "not a key");
        expect(readKeyring(dir)).toEqual(new Map([["s-v1", hex.slice(64)]]));
        expect(() => readKeyring(path.join(dir, "nope"))).toThrow(/--keys .*nope: cannot read the directory \(ENOENT\)/);
        const bad = path.join(dir, "bad");
        mkdirSync(bad);
        writeFileSync(path.join(bad, "s-v2.key"), "abc\n");
        expect(() => readKeyring(bad)).toThrow(ReportInputError);
        expect(() => readKeyring(bad)).toThrow(/s-v2.key is not a key file/);
        const empty = path.join(dir, "empty");
        mkdirSync(empty);
        expect(() => readKeyring(empty)).toThrow(/no <keyId>.key files/);
        if (process.getuid?.() !== 0) {
            chmodSync(path.join(dir, "s-v1.key"), 0o000);
            expect(() => readKeyring(dir)).toThrow(/cannot read s-v1.key/);
        }
    });
});

describe("report's S3 client", () => {
    const OPT_OUT = "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED";
    /** A fresh process that makes the report's first S3 client; this worker's env has the opt-out already. */
    const firstClient = (optOut?: string) => {
        const env: NodeJS.ProcessEnv = { ...process.env };
        delete env[OPT_OUT];
        if (optOut !== undefined) env[OPT_OUT] = optOut;
        const code = 'require("./scripts/report/bucket").s3ClientFor({ name: "b", region: "us-east-1" }); console.log("client made");';
        return spawnSync(path.resolve(__dirname, "../../node_modules/.bin/tsx"), ["-e", code], { cwd: path.resolve(__dirname, "../.."), encoding: "utf8", env });
    };

    it("prints no NodeVersionSupportWarning, whose releases-to-come notice no run can act on; an operator's own opt-out value wins", () => {
        const quiet = firstClient();
        expect(quiet.status, quiet.stderr).toBe(0);
        expect(quiet.stdout).toBe("client made\n");
        expect(quiet.stderr).toBe("");
        // The SDK warns only below Node.js 22, as on the Node.js 20 the README asks for.
        if (Number(process.versions.node.split(".")[0]) < 22) {
            expect(firstClient("false").stderr).toContain("NodeVersionSupportWarning");
        }
    });
});
