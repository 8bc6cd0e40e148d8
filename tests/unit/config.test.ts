/**
 * config/load.ts: defaults reproduce the seed, every invalid value is reported
 * with its key path, the value seen and the expected form, all problems
 * together; the stack files load; plaintext secrets in a stack file are refused.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigValidationError, loadStackConfig } from "../../config/load";
import * as pulumi from "@pulumi/pulumi";
import { rawFromFiles, rawFromRuntime } from "../../config/raw";
import { CONFIG_KEYS, HOST_FIELDS, type ConfigKeySpec, type HostFieldSpec } from "../../config/schema";
import { loadStackFromFiles } from "../../scripts/render";
import { baseRaw, configError, expectProblem, load, PROJECT_DIR, removeDir, stack, tempDir } from "./helpers";

describe("defaults reproduce the seed document", () => {
    const c = load({ hosts: [] });

    it("retention daily 7, weekly 4, monthly 12, yearly 3", () => {
        expect(c.retention).toEqual({ daily: 7, weekly: 4, monthly: 12, yearly: 3 });
    });

    it("database backups daily at 02:00 and weekly on Sunday at 03:00", () => {
        expect(c.schedules.databaseDaily.onCalendar).toBe("*-*-* 02:00:00");
        expect(c.schedules.databaseDaily.description).toBe("every day at 02:00");
        expect(c.schedules.databaseWeekly.onCalendar).toBe("Sun *-*-* 03:00:00");
        expect(c.schedules.databaseWeekly.description).toBe("every Sunday at 03:00");
    });

    it("application backups daily at 01:00", () => {
        expect(c.schedules.applicationDaily.onCalendar).toBe("*-*-* 01:00:00");
        expect(c.schedules.applicationDaily.description).toBe("every day at 01:00");
    });

    it("AES-256-CBC with the key file /etc/hx-backup/encryption.key and a keyring beside it, rotated quarterly", () => {
        expect(c.encryption).toEqual({ algorithm: "AES-256-CBC", keyVersion: 1, exposedVersions: 0, rotationDays: 90 });
        expect(c.paths.keyFile).toBe("/etc/hx-backup/encryption.key");
        expect(c.paths.keyringDir).toBe("/etc/hx-backup/keys");
    });

    it("logs, scripts, local storage and node_exporter's textfile directory", () => {
        expect(c.paths).toMatchObject({
            logDir: "/var/log/hx-backups",
            scriptDir: "/var/lib/backup/scripts",
            storageDir: "/opt/hx-backups",
            textfileDir: "/var/lib/prometheus/node-exporter",
            configDir: "/etc/hx-backup",
        });
        expect(c.backupUser).toBe("backup");
    });

    it("the schema table carries the same defaults the loader applies", () => {
        expect(CONFIG_KEYS.retentionDaily.default).toBe(c.retention.daily);
        expect(CONFIG_KEYS.scheduleDatabaseWeekly.default).toBe(c.schedules.databaseWeekly.source);
        expect(CONFIG_KEYS.logDir.default).toBe(c.paths.logDir);
        expect(CONFIG_KEYS.encryptionKeyFile.default).toBe(c.paths.keyFile);
    });

    it("with no host syncing there is no bucket and no storage mode", () => {
        expect(c.storage.mode).toBe("none");
        expect(c.monitoring).toBeUndefined();
    });

    it("a host gets the documented field defaults", () => {
        const h = load(baseRaw()).hosts[0];
        expect(h).toMatchObject({ name: "h1", address: "10.0.0.1", port: 22, sshUser: "root", roles: ["configuration"], remoteSync: true });
        expect(h.configuration?.tlsPaths).toContain("/etc/ssl/private");
        expect(h.configuration?.paths).toContain("/etc/fstab");
        const pg = load({ ...baseRaw(), hosts: [{ name: "h1", address: "x", roles: ["postgresql"] }] }).hosts[0].postgresql;
        expect(pg).toEqual({
            databases: [], host: "/var/run/postgresql", port: 5432, user: "backup", auth: "peer", format: "auto", parallelThresholdMiB: 512, vacuumAnalyzeBefore: "weekly", analyzeAfter: "never", dataDir: "/var/lib/postgresql/15/main",
        });
    });

    it("accepts namespaced keys and ignores other providers' namespaces", () => {
        const n = loadStackConfig("unit", { "hx-backup:retentionDaily": 9, "aws:region": "eu-west-1", "pulumi:template": "x" }, {});
        expect(n.retention.daily).toBe(9);
    });
});

describe("each invalid value is reported with key path, value seen and expected form", () => {
    it("unknown key (typo) suggests the known key", () => {
        const err = configError({ retentionDialy: 3 });
        expect(err).toBeInstanceOf(ConfigValidationError);
        expect(err.problems).toHaveLength(1);
        expectProblem(err, "retentionDialy", 3, /did you mean "retentionDaily"\?/);
    });

    it("retentionTimeZone: an unknown zone or a shell-looking value names the key and the forms accepted", () => {
        expectProblem(configError({ retentionTimeZone: "Mars/Olympus_Mons" }), "retentionTimeZone", "Mars/Olympus_Mons", /`local`, `UTC` or an IANA time zone name .*not a known zone/);
        expectProblem(configError({ retentionTimeZone: "UTC; reboot" }), "retentionTimeZone", "UTC; reboot", /`local`, `UTC` or an IANA time zone name such as `Europe\/Berlin`/);
        for (const ok of ["local", "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"]) {
            expect(loadStackConfig("unit", { "hx-backup:retentionTimeZone": ok }, {}).retentionTimeZone).toBe(ok);
        }
    });

    describe("postgresql.pitr", () => {
        const pgHost = (pitr: unknown) => ({ hosts: [{ name: "db", address: "10.0.0.2", roles: ["postgresql"], postgresql: { pitr } }] });

        it("is off by default; enabled, it takes its defaults and parses its schedules", () => {
            expect(load({ ...baseRaw(), ...pgHost(undefined) }).hosts[0]!.postgresql!.pitr).toBeUndefined();
            expect(load({ ...baseRaw(), ...pgHost({ enabled: false, processMax: 4 }) }).hosts[0]!.postgresql!.pitr).toBeUndefined();
            const pitr = load({ ...baseRaw(), ...pgHost({ enabled: true }) }).hosts[0]!.postgresql!.pitr!;
            expect(pitr).toMatchObject({ archiveTimeoutSeconds: 60, retentionFull: 2, processMax: 2, allowRestart: false });
            expect(pitr.full.onCalendar).toBe("Sun *-*-* 01:00:00");
            expect(pitr.differential.description).toMatch(/Mon/);
        });

        it("each bad field is named with the accepted form, all at once", () => {
            const err = configError(pgHost({ enabled: true, archiveTimeoutSeconds: 1, full: "every tuesday", retentionFull: 0, restartAllowed: true }));
            expectProblem(err, "hosts[0].postgresql.pitr.archiveTimeoutSeconds", 1, /a whole number from 10 to 3600/);
            expectProblem(err, "hosts[0].postgresql.pitr.full", "every tuesday", /a cron \(5 fields\) or OnCalendar schedule/);
            expectProblem(err, "hosts[0].postgresql.pitr.retentionFull", 0, /a whole number from 1 to 100/);
            expect(err.problems.some((p) => p.path === "hosts[0].postgresql.pitr.restartAllowed")).toBe(true);
        });
    });

    describe("notifications", () => {
        const monitored = { hosts: [{ name: "h1", address: "10.0.0.1" }, { name: "mon", address: "10.0.0.9", roles: ["monitoring"] }], monitoringHost: "mon" };
        const good = { ...monitored, notifyEmailTo: ["ops@example.com"], notifyEmailFrom: "hx@example.com", notifySmtpSmarthost: "smtp.example.com:587" };

        it("a broken recipient address is refused at preview, naming the entry and the form", () => {
            const err = configError({ ...good, notifyEmailTo: ["ops@example.com", "Ops Team <ops@example.com>", "{{ .x }}@example.com"] });
            expectProblem(err, "notifyEmailTo[1]", "Ops Team <ops@example.com>", /an email address such as ops@example.com/);
            expectProblem(err, "notifyEmailTo[2]", "{{ .x }}@example.com", /no display name, spaces, quotes or braces/);
        });

        it("recipients need a sender, a relay and a monitoring host; AUTH needs both halves", () => {
            const err = configError({ hosts: monitored.hosts, notifyEmailTo: ["ops@example.com"], notifySmtpAuthUsername: "hx" });
            expectProblem(err, "notifyEmailFrom", "", /a sender address/);
            expectProblem(err, "notifySmtpSmarthost", "", /host:port/);
            expectProblem(err, "notifyEmailTo", ["ops@example.com"], /a monitoringHost as well/);
            expectProblem(err, "notifySmtpAuthUsername", "hx", /a secret notifySmtpAuthPassword/);
            expectProblem(configError({ ...good, notifySmtpSmarthost: "smtp.example.com" }), "notifySmtpSmarthost", "smtp.example.com", /host:port/);
        });

        it("routes name a host of the stack or a type, then addresses", () => {
            const err = configError({ ...good, notifyRoutes: ["host=db-9: dba@example.com", "type=mysql: dba@example.com", "type=redis: not-an-address", "redis: a@example.com"] });
            expectProblem(err, "notifyRoutes[0]", "host=db-9: dba@example.com", /a host of this stack after host= \(h1, mon\)/);
            expectProblem(err, "notifyRoutes[1]", "type=mysql: dba@example.com", /a type after type=/);
            expectProblem(err, "notifyRoutes[2]", "type=redis: not-an-address", /"not-an-address" is not one/);
            expectProblem(err, "notifyRoutes[3]", "redis: a@example.com", /`host=<name>: <address>/);
        });

        it("a valid setting gives the notifications the monitoring plan renders; none without recipients", () => {
            const n = load({ ...baseRaw(), ...good, notifyRoutes: ["host=h1: dba@example.com, dba2@example.com"] }).notifications!;
            expect(n).toMatchObject({ to: ["ops@example.com"], from: "hx@example.com", smarthost: "smtp.example.com:587", requireTls: true, severities: ["critical", "warning"], groupWait: "30s" });
            expect(n.routes).toEqual([{ label: "host", value: "h1", instances: ["h1", "10.0.0.1"], to: ["dba@example.com", "dba2@example.com"] }]);
            expect(load({ ...baseRaw(), ...monitored }).notifications).toBeUndefined();
        });
    });

    it("unknown key far from any known key lists the known keys", () => {
        const err = configError({ zzzzzzzzzz: true });
        expectProblem(err, "zzzzzzzzzz", true, /one of the known keys: hosts, sshUser/);
    });

    it("unknown host field, and unknown field in a host section", () => {
        const err = configError({
            hosts: [{ name: "h1", address: "10.0.0.1", nmae: "x", roles: ["postgresql"], postgresql: { databses: ["a"] } }],
        });
        expectProblem(err, "hosts[0].nmae", "x", /did you mean "name"\?/);
        expectProblem(err, "hosts[0].postgresql.databses", ["a"], /did you mean "databases"\?/);
    });

    it("a host section without its role", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["configuration"], redis: { port: 6380 } }] });
        expectProblem(err, "hosts[0].redis", "(set)", /the "redis" role/);
    });

    it.each([
        ["0 25 * * *", /hour 25 is outside 0-23/],
        ["61 2 * * *", /minute 61 is outside 0-59/],
        ["every day", /OnCalendar|date/],
        ["0 2 * * *; reboot", /characters outside cron\/OnCalendar syntax/],
    ])("bad schedule %j", (value, reason) => {
        const err = configError({ scheduleDatabaseDaily: value });
        const p = expectProblem(err, "scheduleDatabaseDaily", value, reason);
        expect(p.expected).toMatch(/^a cron expression \("0 2 \* \* \*"\) or systemd OnCalendar/);
    });

    it("cron with both day fields is refused (cron ORs them, systemd ANDs them)", () => {
        const err = configError({ scheduleVerification: "0 5 1 * 0" });
        expectProblem(err, "scheduleVerification", "0 5 1 * 0", /both day-of-month and day-of-week/);
    });

    it("a schedule that is not a string", () => {
        const err = configError({ scheduleApplicationDaily: 5 });
        expectProblem(err, "scheduleApplicationDaily", 5, /^a string$/);
    });

    it.each(["retentionDaily", "retentionWeekly", "retentionMonthly", "retentionYearly"])("%s below 0", (key) => {
        const err = configError({ [key]: -1 });
        expectProblem(err, key, -1, /^a whole number from 0 to \d+$/);
    });

    it("retention of 0 is allowed for one class but not for all four", () => {
        expect(load({ ...baseRaw(), retentionYearly: 0 }).retention.yearly).toBe(0);
        const err = configError({ retentionDaily: 0, retentionWeekly: 0, retentionMonthly: 0, retentionYearly: 0 });
        expectProblem(err, "retentionDaily", 0, /at least one retention count above 0/);
    });

    it("non-integer and non-numeric counts", () => {
        expectProblem(configError({ retentionWeekly: 2.5 }), "retentionWeekly", 2.5, /whole number/);
        expectProblem(configError({ retentionWeekly: "four" }), "retentionWeekly", "four", /whole number/);
        expect(load({ ...baseRaw(), retentionWeekly: "5" }).retention.weekly).toBe(5);
    });

    it("STANDARD_IA before 30 days", () => {
        const err = configError({ lifecycleIaDays: 20 });
        expectProblem(err, "lifecycleIaDays", 20, /STANDARD_IA transition at day 20 is too early: AWS requires at least 30 days/);
    });

    it("Glacier too soon after IA (30 days in IA first)", () => {
        const err = configError({ lifecycleGlacierDays: 45 });
        expectProblem(err, "lifecycleGlacierDays", 45, /GLACIER_IR at day 45 leaves STANDARD_IA after 15 days, inside its 30-day minimum.*day 60 or later/);
    });

    it("Deep Archive inside the Glacier Instant Retrieval 90-day minimum", () => {
        const err = configError({ lifecycleDeepArchiveDays: 120 });
        expectProblem(err, "lifecycleDeepArchiveDays", 120, /DEEP_ARCHIVE at day 120 leaves GLACIER_IR after 30 days, inside its 90-day minimum.*day 180 or later/);
    });

    it("Deep Archive before Glacier is reported on the deep archive key", () => {
        const err = configError({ lifecycleDeepArchiveDays: 60 });
        expectProblem(err, "lifecycleDeepArchiveDays", 60, /DEEP_ARCHIVE transition at day 60 must come after GLACIER_IR at day 90/);
    });

    it("explicit expiration inside the Glacier IR minimum storage duration", () => {
        const err = configError({ lifecycleExpireMonthly: 100 });
        expectProblem(err, "lifecycleExpireMonthly", 100, /expiration at day 100 deletes objects 10 days after their GLACIER_IR transition, inside its 90-day minimum/);
    });

    it("explicit expiration inside the Deep Archive 180-day minimum", () => {
        const err = configError({ lifecycleExpireYearly: 200 });
        expectProblem(err, "lifecycleExpireYearly", 200, /20 days after their DEEP_ARCHIVE transition, inside its 180-day minimum.*day 360 or later/);
    });

    it("explicit expiration too soon after the IA transition", () => {
        const err = configError({ lifecycleExpireWeekly: 45 });
        expectProblem(err, "lifecycleExpireWeekly", 45, /15 days after their STANDARD_IA transition, inside its 30-day minimum/);
    });

    it("explicit expirations that respect the minimums are accepted", () => {
        const c = load({ ...baseRaw(), lifecycleExpireWeekly: 60, lifecycleExpireMonthly: 180, lifecycleExpireYearly: 360, lifecycleExpireDaily: 3 });
        const byClass = Object.fromEntries(c.storage.lifecycle.map((l) => [l.retentionClass, l]));
        expect(byClass.daily).toEqual({ retentionClass: "daily", transitions: [], expirationDays: 3 });
        expect(byClass.weekly.transitions.map((t) => t.storageClass)).toEqual(["STANDARD_IA"]);
        expect(byClass.monthly.transitions.map((t) => t.storageClass)).toEqual(["STANDARD_IA", "GLACIER_IR"]);
        expect(byClass.yearly.transitions.map((t) => t.storageClass)).toEqual(["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"]);
    });

    it.each(["DB_1", "-db", "db-", "db.example", "Db1", "a".repeat(64), "db 1"])("bad host name %j", (name) => {
        const err = configError({ hosts: [{ name, address: "10.0.0.1" }] });
        expectProblem(err, "hosts[0].name", name, /a host name: lowercase letters, digits and '-'/);
    });

    it.each(["daily", "weekly", "monthly", "yearly"])("a host named like a retention class's bucket folder is refused: %s", (name) => {
        const err = configError({ hosts: [{ name, address: "10.0.0.1" }] });
        expectProblem(err, "hosts[0].name", name, new RegExp(`another host name: "${name}" is the bucket folder of a retention class`));
    });

    it("a host named like the bucket folder of the PITR repositories is refused", () => {
        const err = configError({ hosts: [{ name: "pgbackrest", address: "10.0.0.1" }] });
        expectProblem(err, "hosts[0].name", "pgbackrest", /another host name: "pgbackrest" is the bucket folder of the PITR repositories/);
    });

    it("missing host name and address", () => {
        const err = configError({ hosts: [{ roles: ["configuration"] }] });
        expectProblem(err, "hosts[0].name", undefined, /host name \(required\)/);
        expectProblem(err, "hosts[0].address", undefined, /address to connect to \(required\)/);
    });

    it("bad host address", () => {
        const err = configError({ hosts: [{ name: "h1", address: "10.0.0.1; rm -rf /" }] });
        expectProblem(err, "hosts[0].address", "10.0.0.1; rm -rf /", /an IP address or DNS name/);
    });

    it.each([
        ["backupUser", "Backup"],
        ["backupUser", "back up"],
        ["sshUser", "root;id"],
        ["sshUser", "$(id)"],
        ["sshUser", "1abc"],
        ["backupUser", "a".repeat(33)],
    ])("bad user name %s=%j", (key, value) => {
        const err = configError({ [key]: value });
        expectProblem(err, key, value, /a Unix user name/);
    });

    it("bad user names inside a host", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", sshUser: "Ad min", roles: ["postgresql"], postgresql: { user: "pg'user" } }] });
        expectProblem(err, "hosts[0].sshUser", "Ad min", /a Unix user name/);
        expectProblem(err, "hosts[0].postgresql.user", "pg'user", /a Unix user name/);
    });

    it.each([`it's`, `"quoted"`, "two words", "a=b", "$(touch /tmp/pwned)", "db;drop", "`id`", "-lead", "x\ny", ""])("bad database name %j", (name) => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["postgresql"], postgresql: { databases: ["ok_db", name] } }] });
        expectProblem(err, "hosts[0].postgresql.databases[1]", name, /a database name of letters, digits.*refused because they also name files and connection strings/);
    });

    it("the retired directory format points at parallel", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["postgresql"], postgresql: { format: "directory" } }] });
        expectProblem(err, "hosts[0].postgresql.format", "directory", /"parallel" \(the directory format wrote plaintext table files to disk/);
        const pg = load({ ...baseRaw(), hosts: [{ name: "h1", address: "x", roles: ["postgresql"], postgresql: { format: "parallel" } }] }).hosts[0].postgresql;
        expect(pg?.format).toBe("parallel");
    });

    it("bad database name in the {name, large} form", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["postgresql"], postgresql: { databases: [{ name: "a b", large: true }] } }] });
        expectProblem(err, "hosts[0].postgresql.databases[0].name", "a b", /a database name of letters/);
    });

    it("a bad database name is reported once, not twice", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["postgresql"], postgresql: { databases: [{ name: "a b" }] } }] });
        expect(err.problems.filter((p) => p.path === "hosts[0].postgresql.databases[0].name")).toHaveLength(1);
    });

    it("a database listed twice", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["postgresql"], postgresql: { databases: ["a", { name: "a", large: true }] } }] });
        expectProblem(err, "hosts[0].postgresql.databases", "a", /each database listed once/);
    });

    it.each([
        ["scriptDir", "var/lib/backup/scripts"],
        ["storageDir", "/opt/../etc"],
        ["logDir", "/var/log/my logs"],
        ["configDir", "/etc//hx"],
        ["textfileDir", "/var/lib/node-exporter/."],
        ["encryptionKeyFile", "/etc/hx-backup/$(id).key"],
        ["storageDir", "/opt/hx\nbackups"],
    ])("bad core path %s=%j", (key, value) => {
        const err = configError({ [key]: value });
        expectProblem(err, key, value, /an absolute path of letters, digits, '\.', '_', '-' and '\/', without '\.\.' or '\/\/'/);
    });

    it("core path '/' is refused", () => {
        const err = configError({ storageDir: "/" });
        expectProblem(err, "storageDir", "/", /a directory below \//);
    });

    it.each(["/srv/a\nb", "/srv/tab\there", "srv/relative", "/srv/../etc/shadow", "/srv/\u007f"])("bad source path %j", (p) => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["application"], application: { paths: ["/srv/ok", p] } }] });
        expectProblem(err, "hosts[0].application.paths[1]", p, /an absolute path without control characters \(newlines, tabs\) or '\.\.' segments/);
    });

    it("bad configuration path", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", configuration: { tlsPaths: ["/etc/ssl\n/private"] } }] });
        expectProblem(err, "hosts[0].configuration.tlsPaths[0]", "/etc/ssl\n/private", /without control characters/);
    });

    it.each(["*.tmp\u0001", "*\n*", ""])("bad pattern %j", (pat) => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["application"], application: { paths: ["/srv"], exclude: ["*.log", pat] } }] });
        expectProblem(err, "hosts[0].application.exclude[1]", pat, /a non-empty glob pattern without control characters/);
    });

    it("application role without paths", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["application"] }] });
        expectProblem(err, "hosts[0].application.paths", undefined, /at least one directory to back up/);
    });

    it("an unknown role", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["database"] }] });
        expectProblem(err, "hosts[0].roles[0]", "database", /one of postgresql, redis, application, configuration, monitoring/);
    });

    it("duplicate host names", () => {
        const err = configError({ hosts: [{ name: "h1", address: "10.0.0.1" }, { name: "h2", address: "10.0.0.2" }, { name: "h1", address: "10.0.0.3" }] });
        expect(err.problems).toHaveLength(1);
        expectProblem(err, "hosts[2].name", "h1", /a name not used by another host/);
    });

    it("one machine twice (same address and port): refused, naming the first entry; another port is another machine", () => {
        const err = configError({ hosts: [{ name: "h1", address: "10.0.0.1" }, { name: "h2", address: "10.0.0.2" }, { name: "h1-again", address: "10.0.0.1" }] });
        expect(err.problems).toHaveLength(1);
        expectProblem(err, "hosts[2].address", "10.0.0.1:22", /an address and port of its own: host h1 is already 10\.0\.0\.1:22/);
        expect(() => load({ ...baseRaw(), hosts: [{ name: "h1", address: "10.0.0.1", remoteSync: false }, { name: "h2", address: "10.0.0.1", port: 2222, remoteSync: false }] })).not.toThrow();
    });

    it("missing bucket while a host has remoteSync", () => {
        const err = configError({ bucketName: undefined });
        expectProblem(err, "bucketName", undefined, /a bucket name, because at least one host has remoteSync/);
        // With remoteSync off everywhere no bucket is needed.
        expect(load({ hosts: [{ name: "h1", address: "x", remoteSync: false }] }).storage.mode).toBe("none");
    });

    it("bad bucket name", () => {
        expectProblem(configError({ bucketName: "Bad_Bucket" }), "bucketName", "Bad_Bucket", /an S3 bucket name/);
    });

    it("AWS mode without any region", () => {
        const err = configError({ s3Region: undefined });
        expectProblem(err, "s3Region", "", /a region: set s3Region, or aws:region/);
        expect(load({ ...baseRaw(), s3Region: undefined }, { awsRegion: "eu-west-1" }).storage.region).toBe("eu-west-1");
    });

    it.each(["http://s3.example.com", "http://127.0.0.1.nip.io:9000", "http://localhost.evil.com"])("http endpoint %j not on loopback", (url) => {
        const err = configError({ s3Endpoint: url }, { assumeSecretsSet: true });
        expectProblem(err, "s3Endpoint", url, /an https:\/\/ URL; plain http is only allowed on loopback/);
    });

    it("http on loopback and https anywhere are accepted", () => {
        for (const url of ["http://127.0.0.1:4569", "http://localhost:9000", "https://s3.example.com"]) {
            const c = load({ ...baseRaw(), s3Endpoint: url }, { assumeSecretsSet: true });
            expect(c.storage).toMatchObject({ mode: "custom", endpoint: url });
        }
    });

    it("missing secrets for s3Endpoint", () => {
        const err = configError({ s3Endpoint: "https://s3.example.com" });
        expectProblem(err, "s3AccessKeyId", undefined, /a secret \(pulumi config set --secret s3AccessKeyId \.\.\.\), required with s3Endpoint/);
        expectProblem(err, "s3SecretAccessKey", undefined, /pulumi config set --secret s3SecretAccessKey/);
        // Set (as the placeholder the raw readers use), they are accepted.
        expect(load({ ...baseRaw(), s3Endpoint: "https://s3.example.com", s3AccessKeyId: "[secret]", s3SecretAccessKey: "[secret]" }).secretsSet.has("s3AccessKeyId")).toBe(true);
    });

    it("missing secrets for pgpass and redis auth", () => {
        const err = configError({ hosts: [{ name: "h1", address: "x", roles: ["postgresql", "redis"], postgresql: { auth: "pgpass" }, redis: { auth: true } }] });
        expectProblem(err, "hosts[0].postgresql.auth", "pgpass", /a secret postgresqlPassword/);
        expectProblem(err, "hosts[0].redis.auth", true, /a secret redisPassword/);
    });

    it("missing Grafana API token with grafanaMode: api", () => {
        const err = configError({ monitoringHost: "h1", grafanaMode: "api", hosts: [{ name: "h1", address: "x", roles: ["monitoring"] }] });
        expectProblem(err, "grafanaApiToken", undefined, /a secret token \(pulumi config set --secret grafanaApiToken \.\.\.\), required with grafanaMode: api/);
    });

    it("monitoringHost that is not a host", () => {
        const err = configError({ monitoringHost: "mon-9" });
        expectProblem(err, "monitoringHost", "mon-9", /the name of a host in hosts \(h1\)/);
    });

    it("monitoringHost without the monitoring role", () => {
        const err = configError({ monitoringHost: "h1" });
        expect(err.problems).toHaveLength(1);
        expectProblem(err, "monitoringHost", "h1", /a host with the "monitoring" role/);
    });

    it.each([
        ["gzip", 10],
        ["auto", 12],
    ])("compression %s with level %d > 9", (method, level) => {
        const err = configError({ compression: method, compressionLevel: level });
        expectProblem(err, "compressionLevel", level, /1-9, because gzip.*has no higher levels; or set compression: zstd/);
        expect(load({ ...baseRaw(), compression: "zstd", compressionLevel: level }).compression).toEqual({ method: "zstd", level, threads: 2 });
    });

    it("enumerations name the allowed values", () => {
        expectProblem(configError({ encryptionAlgorithm: "AES-128-CBC" }), "encryptionAlgorithm", "AES-128-CBC", /one of "AES-256-CBC"/);
        expectProblem(configError({ retentionBy: "suffix" }), "retentionBy", "suffix", /one of "prefix", "tag"/);
        expectProblem(configError({ sshSudo: "yes" }), "sshSudo", "yes", /true or false/);
    });

    it("Object Lock only on an AWS bucket", () => {
        const err = configError({ objectLockMode: "COMPLIANCE", s3Endpoint: "https://s3.example.com" }, { assumeSecretsSet: true });
        expectProblem(err, "objectLockMode", "COMPLIANCE", /only managed on an AWS bucket/);
    });
});

describe("the schema is the one home of every bound and allowed value", () => {
    const keys = Object.entries(CONFIG_KEYS) as [string, ConfigKeySpec][];

    it("every integer key has bounds, and its default is inside them", () => {
        for (const [key, s] of keys.filter(([, s]) => s.type === "integer")) {
            expect(s.min, `${key}.min`).toBeTypeOf("number");
            expect(s.max, `${key}.max`).toBeTypeOf("number");
            expect(s.default as number, key).toBeGreaterThanOrEqual(s.min!);
            expect(s.default as number, key).toBeLessThanOrEqual(s.max!);
        }
    });

    it("every default passes its key's own allowed values and form", () => {
        for (const [key, s] of keys) {
            if (s.allowed) expect(s.allowed, key).toContain(s.default);
            if (s.check && s.default !== "") expect(s.check(s.default as string), key).toBeNull();
            if (s.required) expect(s.default, key).not.toBe("");
        }
        for (const [field, s] of Object.entries(HOST_FIELDS) as [string, HostFieldSpec][]) {
            if (s.allowed && s.default !== undefined) for (const v of [s.default].flat()) expect(s.allowed, field).toContain(v);
            if (s.min !== undefined) expect(s.default as number, field).toBeGreaterThanOrEqual(s.min);
            if (s.max !== undefined) expect(s.default as number, field).toBeLessThanOrEqual(s.max);
            expect(s.default !== undefined || s.defaultText !== undefined, `${field} has a default or says why not`).toBe(true);
        }
    });

    it("the loader applies the schema's bounds: one past each end is refused, each end is taken", () => {
        for (const [key, s] of keys.filter(([, s]) => s.type === "integer")) {
            for (const bad of [s.min! - 1, s.max! + 1]) expectProblem(configError({ [key]: bad }), key, bad, new RegExp(`^a whole number from ${s.min} to ${s.max}`));
        }
    });

    it("the host fields' defaults are the loader's", () => {
        const h = load({ ...baseRaw(), hosts: [{ name: "h1", address: "10.0.0.1", roles: ["postgresql", "redis", "configuration"] }] }).hosts[0];
        expect(h.port).toBe(HOST_FIELDS.port.default);
        expect(h.postgresql?.port).toBe(HOST_FIELDS["postgresql.port"].default);
        expect(h.postgresql?.host).toBe(HOST_FIELDS["postgresql.host"].default);
        expect(h.postgresql?.vacuumAnalyzeBefore).toBe(HOST_FIELDS["postgresql.vacuumAnalyzeBefore"].default);
        expect(h.redis?.rdbPath).toBe(HOST_FIELDS["redis.rdbPath"].default);
        expect(h.configuration?.tlsPaths).toEqual(HOST_FIELDS["configuration.tlsPaths"].default);
        expect(h.configuration?.paths).toEqual([...HOST_FIELDS["configuration.paths"].default, "/etc/postgresql", "/etc/redis"]);
    });
});

describe("all problems are reported together", () => {
    it("three unknown keys give three problems in one error", () => {
        const err = configError({ retentionDialy: 1, bucketNmae: "x", scheduleDatabseDaily: "0 2 * * *" });
        expect(err.problems.map((p) => p.path).sort()).toEqual(["bucketNmae", "retentionDialy", "scheduleDatabseDaily"]);
        expect(err.message).toMatch(/^Stack "unit" has 3 configuration problems:\n/);
        expect(err.message.split("\n").filter((l) => l.startsWith("  - hx-backup:"))).toHaveLength(3);
    });

    it("problems from every part of the config arrive in one error", () => {
        const err = configError({
            retentionDialy: 1,
            scheduleDatabaseDaily: "0 2 * * 8",
            retentionMonthly: -3,
            lifecycleIaDays: 10,
            logDir: "logs",
            compression: "gzip",
            compressionLevel: 15,
            monitoringHost: "nope",
            hosts: [
                { name: "Bad Name", address: "10.0.0.1" },
                { name: "h2", address: "10.0.0.2", roles: ["postgresql"], postgresql: { databases: ["x;y"] } },
            ],
        });
        const paths = err.problems.map((p) => p.path);
        for (const p of ["retentionDialy", "scheduleDatabaseDaily", "retentionMonthly", "lifecycleIaDays", "logDir", "compressionLevel", "monitoringHost", "hosts[0].name", "hosts[1].postgresql.databases[0]"]) {
            expect(paths).toContain(p);
        }
        expect(err.message).toContain(`has ${err.problems.length} configuration problems`);
        for (const p of err.problems) expect(err.message).toContain(`hx-backup:${p.path}: got `);
    });

    it("a single problem is worded in the singular", () => {
        expect(configError({ retentionDaily: -1 }).message).toMatch(/^Stack "unit" has 1 configuration problem:\n/);
    });
});

describe("secrets in runtime config (as index.ts reads it)", () => {
    it("a secret set under a mistyped key never appears in the error", () => {
        // `pulumi config set --secret redisPasword ...`: allConfig() holds the decrypted value.
        const secretValue = "S3CR3T-typo-value-9876";
        pulumi.runtime.setAllConfig({ "hx-backup:redisPasword": secretValue, "hx-backup:bucketName": "hx-unit-bucket" }, ["hx-backup:redisPasword"]);
        let message = "";
        try {
            loadStackConfig("unit", rawFromRuntime(pulumi.runtime.allConfig()), { awsRegion: "eu-central-1" });
        } catch (e) {
            message = (e as Error).message;
        } finally {
            pulumi.runtime.setAllConfig({}, []);
        }
        expect(message).toMatch(/hx-backup:redisPasword: got .*did you mean "redisPassword"/);
        expect(message).not.toContain(secretValue);
    });

    it("known secret keys are read only as a placeholder", () => {
        const raw = rawFromRuntime({ "hx-backup:redisPassword": "S3CR3T", "hx-backup:s3AccessKeyId": "", "hx-backup:retentionDaily": "5", "hx-backup:hosts": '[{"name":"h1","address":"x"}]', "aws:region": "eu-west-1" });
        expect(raw).toEqual({ redisPassword: "[secret]", s3AccessKeyId: "", retentionDaily: "5", hosts: [{ name: "h1", address: "x" }] });
    });
});

describe("the stack files", () => {
    it("production loads with two database hosts, one application host and the monitoring host", () => {
        const c = stack("production");
        expect(c.hosts.map((h) => [h.name, [...h.roles].sort()])).toEqual([
            ["db-1", ["configuration", "postgresql", "redis"]],
            ["db-2", ["configuration", "postgresql", "redis"]],
            ["app-1", ["application", "configuration"]],
            ["mon-1", ["configuration", "monitoring"]],
        ]);
        expect(c.storage).toMatchObject({ mode: "aws", bucketName: "hx-backups-production-euc1", region: "eu-central-1", prefix: "hx-backup", objectLock: { mode: "GOVERNANCE", days: 30 } });
        expect(c.retention).toEqual({ daily: 7, weekly: 4, monthly: 12, yearly: 3 });
        expect(c.schedules.databaseDaily.onCalendar).toBe("*-*-* 02:00:00");
        expect(c.schedules.databaseWeekly.onCalendar).toBe("Sun *-*-* 03:00:00");
        expect(c.schedules.applicationDaily.onCalendar).toBe("*-*-* 01:00:00");
        expect(c.monitoring).toMatchObject({ host: "mon-1", grafanaMode: "file" });
        expect(c.hosts[0].postgresql?.databases).toEqual([{ name: "hx_app", large: false }, { name: "hx_analytics", large: true }]);
        expect(c.hosts[2].application?.exclude).toEqual(["*.tmp", "*/cache/*", "*/.thumbnails/*"]);
        expect(c.ssh).toMatchObject({ sudo: true, bastion: { host: "bastion.hx.internal", user: "deploy", port: 22 } });
        expect(c.hosts.every((h) => h.sshUser === "deploy" && h.hostKey?.startsWith("ssh-ed25519 "))).toBe(true);
    });

    it("sandbox loads as a fleet shaped like production's, each host on its own loopback address with its own node_exporter, and a non-AWS endpoint", () => {
        const c = stack("sandbox");
        expect(c.hosts.map((h) => [h.name, h.address, h.roles])).toEqual([
            ["db-1", "127.0.0.2", ["postgresql", "redis", "configuration"]],
            ["app-1", "127.0.0.3", ["application", "configuration"]],
            ["mon-1", "127.0.0.4", ["monitoring", "configuration"]],
        ]);
        // The hosts share the machine's network: each one's node_exporter and Redis are on its own address.
        expect(c.hosts.map((h) => h.nodeExporterUrl)).toEqual(["http://127.0.0.2:9100/metrics", "http://127.0.0.3:9100/metrics", "http://127.0.0.4:9100/metrics"]);
        expect(c.hosts[0].redis).toMatchObject({ host: "127.0.0.2" });
        // HTTPS with the sandbox's own CA: pgBackRest needs it for the database host's PITR.
        expect(c.storage).toMatchObject({ mode: "custom", endpoint: "https://127.0.0.1:4569", caFile: "/etc/hx-sandbox/s3-ca.pem", bucketName: "hx-backup-sandbox", region: "us-east-1" });
        expect(c.hosts[0].postgresql).toMatchObject({ dataDir: "/var/lib/hx-sandbox/pg", pitr: { allowRestart: true } });
        expect(c.installPackages).toBe(false);
        expect(c.randomizedDelaySec).toBe(0);
        expect(c.monitoring).toMatchObject({ host: "mon-1", grafanaMode: "none" });
    });

    it("an unknown stack names the missing file", () => {
        expect(() => loadStackFromFiles(PROJECT_DIR, "nosuchstack")).toThrow(/no stack file .*Pulumi\.nosuchstack\.yaml/);
    });

    describe("secrets in a stack file", () => {
        const dir = tempDir();
        afterAll(() => removeDir(dir));
        const write = (stackName: string, lines: string[]) => {
            mkdirSync(dir, { recursive: true });
            writeFileSync(path.join(dir, `Pulumi.${stackName}.yaml`), `config:\n${lines.map((l) => `  ${l}`).join("\n")}\n`);
        };
        const common = ["aws:region: eu-central-1", "hx-backup:bucketName: hx-unit-bucket", "hx-backup:hosts:", "  - name: h1", "    address: 10.0.0.1"];

        it.each(["sshPrivateKey", "s3SecretAccessKey", "grafanaApiToken", "postgresqlPassword"])("a plaintext %s is refused without echoing the value", (key) => {
            const secretValue = "TOP-SECRET-VALUE-1234";
            write("plain", [...common, `hx-backup:${key}: ${secretValue}`]);
            let message = "";
            try {
                loadStackFromFiles(dir, "plain");
            } catch (e) {
                message = (e as Error).message;
            }
            expect(message).toMatch(new RegExp(`hx-backup:${key} is stored in plaintext; remove it and run: pulumi config set --secret ${key} --stack plain`));
            expect(message).not.toContain(secretValue);
        });

        it("an encrypted (secure:) value is accepted and read only as a placeholder", () => {
            write("enc", [...common, "hx-backup:sshPrivateKey:", "    secure: AAABAHXc2V0dGluZ3M="]);
            const { raw, other } = rawFromFiles(dir, "enc");
            expect(raw.sshPrivateKey).toBe("[secret]");
            expect(other["aws:region"]).toBe("eu-central-1");
            const c = loadStackFromFiles(dir, "enc");
            expect(c.ssh.usesPrivateKey).toBe(true);
            expect(JSON.stringify({ ...c, secretsSet: [...c.secretsSet] })).not.toContain("AAABAHXc2V0dGluZ3M=");
        });

        it("an empty secret value is not plaintext", () => {
            write("empty", [...common, 'hx-backup:sshPrivateKey: ""']);
            expect(rawFromFiles(dir, "empty").raw.sshPrivateKey).toBe("");
        });

        it("a config error in a stack file is a ConfigValidationError naming the stack", () => {
            write("bad", [...common, "hx-backup:retentionDialy: 3"]);
            expect(() => loadStackFromFiles(dir, "bad")).toThrow(ConfigValidationError);
            expect(() => loadStackFromFiles(dir, "bad")).toThrow(/Stack "bad" has 1 configuration problem:\n {2}- hx-backup:retentionDialy: got 3; expected a known key \(did you mean "retentionDaily"\?\)/);
        });
    });
});
