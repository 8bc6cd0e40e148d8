/**
 * render/ownership.ts: what a step claims, how its create and delete carry the
 * install records, the host read's answer and what it turns into (a step's host
 * state, and the errors that stop a deploy). The scripts themselves run on real
 * hosts in tests/integration/engine/lifecycle.test.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { known, readHost } from "../../components/hostRead";
import { planHost } from "../../render/hostPlan";
import { claimsOf, hostReadRequest, hostState, installIdentity, ownedStep, parseHostRead, readProblems, withHostState } from "../../render/ownership";
import { INSTALL_RECORDS_DIR } from "../../render/paths";
import { renderFacts } from "../../scripts/render";
import { stack } from "./helpers";

const config = stack("production");
const host = config.hosts[0];
const plan = planHost(config, host, renderFacts(config));
const step = (name: string) => {
    const s = plan.steps.find((x) => x.name === name);
    if (!s) throw new Error(`no step ${name}: ${plan.steps.map((x) => x.name).join(", ")}`);
    return s;
};
const id = installIdentity("hx-backup", "prod", `${host.name}-config`);

describe("claims and the owned create and delete", () => {
    it("a file step claims its files and its manifest entry; the account its user; the timers each timer", () => {
        expect(claimsOf(step("config"))).toEqual([`${config.paths.configDir}/backup.json`, `${config.paths.scriptDir}/lib/config-path`, `${config.paths.configDir}/manifest.d/config.tsv`]);
        expect(claimsOf(step("account"))).toEqual([`user:${config.backupUser}`]);
        expect(claimsOf(step("timers")).every((k) => /^systemd:hx-backup-.+\.timer$/.test(k))).toBe(true);
        expect(claimsOf(step("keyring"))).toContain(config.paths.keyFile);
    });

    it("create claims before the step's own script; delete releases first and leaves everything when another resource claimed it", () => {
        const owned = ownedStep(step("config"), id);
        expect(owned.create.startsWith(`hx_records=${INSTALL_RECORDS_DIR}\n`)).toBe(true);
        expect(owned.create).toContain("hx_resource=hx-backup/prod/");
        expect(owned.create).toContain("hx_stack_id=hx-backup/prod\n");
        expect(owned.create.indexOf("refusing to take it over")).toBeLessThan(owned.create.indexOf(": \"${from:?}\" \"${check?}\""));
        expect(owned.create.endsWith(step("config").create)).toBe(true);
        expect(owned.delete!.indexOf("leaving what another install now owns")).toBeLessThan(owned.delete!.indexOf(step("config").delete!));
    });

    it("the keyring, which keeps its keys, gets a delete that only releases its records", () => {
        expect(step("keyring").delete).toBeUndefined();
        const owned = ownedStep(step("keyring"), id);
        expect(owned.delete).toBeDefined();
        expect(owned.delete).not.toMatch(/rm -f -- /);
    });

    it("a step that claims nothing is left as it is", () => {
        const bare = { ...step("config"), files: [], secretFiles: [], claims: [] };
        expect(ownedStep(bare, id)).toEqual({ create: bare.create, delete: bare.delete });
    });

    it("the host state is a comment line ahead of the delete script", () => {
        expect(withHostState("rm -f x", "repairs 3")).toBe("# hx-backup host state: repairs 3\nrm -f x");
    });
});

describe("the host read", () => {
    const answer = [
        "R\thx-backup/prod/db-1-config\t2\t",
        "R\thx-backup/prod/db-1-script-x\t0\tchanged /x.sh",
        "R\thx-backup/prod/db-1-new\t-\t",
        "O\thx-backup/prod/db-1-account\tuser:backup",
        "O\thx-backup/other/db-1-config\t/etc/hx-backup/backup.json",
        "",
    ].join("\n");

    it("asks for each step's manifest entry, one line each", () => {
        expect(hostReadRequest([{ resource: "a", manifestEntry: "/m/a.tsv" }, { resource: "b", manifestEntry: "/m/b.tsv" }])).toBe("a\t/m/a.tsv\nb\t/m/b.tsv\n");
    });

    it("a clean step keeps its repair count, a drifted one moves to the next, one never installed starts at 0", () => {
        const read = parseHostRead(answer);
        expect(hostState(read, "hx-backup/prod/db-1-config")).toEqual({ state: "repairs 2" });
        expect(hostState(read, "hx-backup/prod/db-1-script-x")).toEqual({ state: "repairs 1", drift: "changed /x.sh" });
        expect(hostState(read, "hx-backup/prod/db-1-new")).toEqual({ state: "repairs 0" });
        expect(hostState(read, "hx-backup/prod/db-1-unknown")).toEqual({ state: "repairs 0" });
    });

    it("refuses what another stack installed, and a backup user this stack installed under another name", () => {
        const read = parseHostRead(answer);
        const claims = new Set(["/etc/hx-backup/backup.json", "user:backup"]);
        expect(readProblems(read, "db-1", "hx-backup/prod", claims, "backup")).toEqual([expect.stringMatching(/^host db-1 is managed by another stack \(hx-backup\/other\): 1 of what this stack would install there is recorded for it, e\.g\. \/etc\/hx-backup\/backup\.json/)]);
        const renamed = readProblems(parseHostRead(answer.replace("O\thx-backup/other/db-1-config\t/etc/hx-backup/backup.json\n", "")), "db-1", "hx-backup/prod", claims, "backup2");
        expect(renamed).toEqual([expect.stringMatching(/^backupUser: host db-1's backup user is backup \(installed by hx-backup\/prod\/db-1-account\); renaming it to backup2 in place is refused/)]);
        // The monitoring steps beside a BackupHost do not check the user.
        expect(readProblems(parseHostRead("O\thx-backup/prod/db-1-account\tuser:backup\n"), "db-1", "hx-backup/prod", claims, undefined)).toEqual([]);
    });

    it("an answer it does not understand is an error, not a guess", () => {
        expect(() => parseHostRead("R\tx\tmany\t\n")).toThrow(/unexpected repair count/);
        expect(() => parseHostRead("Z\tx\n")).toThrow(/unexpected line from the host read/);
    });
});

describe("the SSH key for the read", () => {
    it("a known secret is read; one that never becomes known (another resource's output in a preview) gives up, so the host counts as unread", async () => {
        await expect(known(pulumi.secret("key-text"))).resolves.toBe("key-text");
        await expect(known(undefined)).resolves.toBeUndefined();
        await expect(known(pulumi.output(new Promise<string>(() => undefined)), 50)).rejects.toThrow(/the SSH key is not known yet/);
    });
});

describe("one read per machine", () => {
    it("the calls for one machine in one turn (BackupHost and MonitoringIntegration on the monitoring host) share one session; a later call opens its own", async () => {
        // Port 1 on loopback: nothing listens, so the session fails fast and the host counts as unread.
        const nowhere = { ...host, address: "127.0.0.1", port: 1, hostKey: undefined };
        const first = readHost(nowhere, {}, [{ resource: "a", manifestEntry: "/m/a.tsv" }]);
        const second = readHost(nowhere, {}, [{ resource: "b", manifestEntry: "/m/b.tsv" }]);
        expect(second).toBe(first);
        const r = await first;
        expect(r.reachable).toBe(false);
        expect(r.reachable ? "" : r.reason).toMatch(/^ssh .*@127\.0\.0\.1:1 exited 255/);
        expect(readHost(nowhere, {}, [])).not.toBe(first);
    });
});
