/**
 * Runs a host's real remote step scripts, exactly as the Host component sends
 * them (wrapped command line, stdin), on this machine inside a private mount
 * and PID namespace whose /etc, /var and /opt are overlays: every change
 * vanishes afterwards. Proves the steps install what the plan says with the right
 * owners and modes, are idempotent (a second run changes no byte), refuse a
 * broken sudoers file, and that the delete steps remove the automation but
 * keep backups and keys.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadStackConfig } from "../../config/load";
import { planHost, type HostPlan } from "../../render/hostPlan";
import { STAGE_ROOT } from "../../render/paths";
import { wrapStep } from "../../render/remote";
import { secretStdin } from "../../render/secrets";
import { stdinWith } from "../unit/helpers";

const root = process.getuid?.() === 0;
const hasUnshare = spawnSync("unshare", ["--version"]).status === 0;
const runnable = root && hasUnshare;
if (!runnable && process.env.CI === "true") throw new Error("host-install test needs root and unshare(1) in CI");

const KEY_HEX = "ab".repeat(64);

function testPlan(): HostPlan {
    const config = loadStackConfig("itest", {
        backupUser: "hxbackup",
        installPackages: false,
        s3Endpoint: "http://127.0.0.1:9",
        bucketName: "itest-bucket",
        s3AccessKeyId: "[secret]",
        s3SecretAccessKey: "[secret]",
        hosts: [
            {
                name: "itest",
                address: "127.0.0.1",
                roles: ["redis", "application", "configuration"],
                redis: { auth: true },
                application: { paths: ["/srv/it app"], exclude: ["*.tmp"] },
            },
        ],
        redisPassword: "[secret]",
    });
    const facts = { currentKeyId: "itest-v1", keyIds: ["itest-v1"], keyFingerprints: { "itest-v1": "sha256:test" } };
    return planHost(config, config.hosts[0], facts);
}

/** The `count` highest system UIDs (100-999, useradd's --system range) that no account here has. */
function freeSystemUids(count: number): number[] {
    const taken = new Set(readFileSync("/etc/passwd", "utf8").split("\n").map((l) => Number(l.split(":")[2])));
    const free: number[] = [];
    for (let uid = 999; uid >= 100 && free.length < count; uid--) if (!taken.has(uid)) free.push(uid);
    return free;
}

/** Shell that lists every managed path with owner, group, mode and content hash. */
const SNAPSHOT = `snapshot() {
  for p in /etc/hx-backup /var/lib/backup/scripts /etc/sudoers.d/hx-backup /etc/logrotate.d/hx-backup /opt/hx-backups /var/log/hx-backups $(ls -d /etc/systemd/system/hx-backup-* 2>/dev/null); do
    [ -e "$p" ] || continue
    find "$p" -printf '%p %u %g %m ' -exec sh -c 'if [ -f "$1" ]; then sha256sum < "$1" | cut -c1-16; else echo dir; fi' _ {} \\;
  done | sort
  if getent passwd hxbackup >/dev/null; then getent passwd hxbackup | cut -d: -f1,7; else echo "no-user"; fi
}`;

describe.runIf(runnable)("host install steps, run for real in a throwaway mount namespace", () => {
    let work: string;
    let report: Record<string, string>;
    let plan: HostPlan;
    let squatted: number[] = [];
    let squatters: ChildProcess[] = [];

    beforeAll(() => {
        plan = testPlan();
        work = mkdtempSync(path.join(tmpdir(), "hx-host-install-"));
        const steps = path.join(work, "steps");
        mkdirSync(steps);
        const secrets = { keys: { "itest-v1": KEY_HEX }, s3: { accessKeyId: "AKIAIT", secretAccessKey: "it/secret" }, redisPassword: "it-redis-pw" };
        const order: string[] = [];
        plan.steps.forEach((step, i) => {
            const id = `${String(i).padStart(2, "0")}-${step.name}`;
            order.push(id);
            writeFileSync(path.join(steps, `${id}.create`), wrapStep(step.create, false));
            writeFileSync(path.join(steps, `${id}.delete`), step.delete ? wrapStep(step.delete, false) : "true");
            const stdin = step.secretFiles.length ? secretStdin(step.secretFiles, secrets, plan.host) : step.stdin ?? "";
            writeFileSync(path.join(steps, `${id}.stdin`), stdin);
        });
        // A sudoers file visudo rejects, for the gate check.
        const sudoers = plan.steps.find((s) => s.name === "sudoers")!;
        writeFileSync(path.join(steps, "bad-sudoers.create"), wrapStep(sudoers.create, false));
        writeFileSync(path.join(steps, "bad-sudoers.stdin"), stdinWith(sudoers, sudoers.files[0]!.path, "hxbackup ALL=(root) NOPASSWD ALL this is not sudoers\n"));
        writeFileSync(path.join(work, "order"), `${order.join("\n")}\n`);
        // The static scripts' stage, as the host component's CopyToRemote leaves it in root's home (bound below).
        for (const step of plan.steps) {
            for (const f of step.stage ? step.files : []) {
                if (f.staged === undefined) continue;
                const target = path.join(work, "home", step.stage!.remotePath, f.staged);
                mkdirSync(path.dirname(target), { recursive: true });
                writeFileSync(target, f.content);
            }
        }
        const driver = `set -eu
W=${JSON.stringify(work)}
for d in etc var opt srv; do mkdir -p "$W/ov/$d-up" "$W/ov/$d-work"; done
for d in etc var opt; do mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/ov/$d-up,workdir=$W/ov/$d-work" "/$d"; done
mkdir -p "$W/home/${STAGE_ROOT}" "/root/${STAGE_ROOT}" && mount --bind "$W/home/${STAGE_ROOT}" "/root/${STAGE_ROOT}"
mount -t tmpfs tmpfs /srv
mkdir -p "/srv/it app"
${SNAPSHOT}
run() { # phase id
  if ! bash -c "$(cat "$W/steps/$2.$1")" < "$W/steps/$2.stdin" > "$W/out-$1-$2" 2>&1; then echo "FAILED $1 $2" >> "$W/failures"; cat "$W/out-$1-$2" >> "$W/failures"; fi
}
: > "$W/failures"
while read -r id; do run create "$id"; done < "$W/order"
snapshot > "$W/snap1"
id -u hxbackup > "$W/uid"
while read -r id; do run create "$id"; done < "$W/order"
snapshot > "$W/snap2"
# The sudo path, as an operator runs a job by hand: one allowed verb, and anything else refused.
printf 'hello\n' > "/srv/it app/file.txt" && chmod 0600 "/srv/it app/file.txt"
if runuser -u hxbackup -- sudo -n /var/lib/backup/scripts/backup-privileged.sh application-archive 2> "$W/sudo-ok.err" | tar --list > "$W/sudo-ok.list"; then echo ok > "$W/sudo-ok.rc"; else echo failed > "$W/sudo-ok.rc"; fi
if runuser -u hxbackup -- sudo -n /var/lib/backup/scripts/backup-privileged.sh postgresql-analyze 2> "$W/sudo-other.err"; then echo allowed > "$W/sudo-other.rc"; else echo refused > "$W/sudo-other.rc"; fi
if runuser -u hxbackup -- sudo -n /bin/cat /etc/shadow > /dev/null 2> "$W/sudo-cat.err"; then echo allowed > "$W/sudo-cat.rc"; else echo refused > "$W/sudo-cat.rc"; fi
cp /etc/sudoers.d/hx-backup "$W/sudoers-before"
if bash -c "$(cat "$W/steps/bad-sudoers.create")" < "$W/steps/bad-sudoers.stdin" > "$W/bad-sudoers.out" 2>&1; then echo accepted > "$W/bad-sudoers.rc"; else echo refused > "$W/bad-sudoers.rc"; fi
cp /etc/sudoers.d/hx-backup "$W/sudoers-after"
ls -a /etc/sudoers.d > "$W/sudoers-dir"
# Data that must survive destroy.
install -d -o hxbackup -m 0750 /opt/hx-backups/redis/main && echo data > /opt/hx-backups/redis/main/artifact.enc
tac "$W/order" | while read -r id; do run delete "$id"; done
snapshot > "$W/snap3"
`;
        writeFileSync(path.join(work, "driver.sh"), driver);
        // Squat the system UIDs useradd would pick here (it takes the highest free ones), as another test
        // host's backup user would from its own overlay: destroy must still remove this host's user.
        squatted = freeSystemUids(3);
        squatters = squatted.map((uid) => spawn("setpriv", [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "sleep", "600"], { stdio: "ignore" }));
        // Its own PID namespace and /proc too: userdel refuses a user whose UID any visible process runs
        // as, and a parallel test's user on this machine can hold the UID the overlay's useradd picks.
        try {
            execFileSync("unshare", ["--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "bash", path.join(work, "driver.sh")], { stdio: "pipe" });
        } finally {
            for (const squatter of squatters) squatter.kill("SIGKILL");
        }
        report = Object.fromEntries(["failures", "uid", "snap1", "snap2", "snap3", "bad-sudoers.rc", "bad-sudoers.out", "sudoers-before", "sudoers-after", "sudoers-dir", "sudo-ok.rc", "sudo-ok.err", "sudo-ok.list", "sudo-other.rc", "sudo-cat.rc"].map((f) => [f, readFileSync(path.join(work, f), "utf8")]));
        for (const step of plan.steps) {
            const id = `${String(plan.steps.indexOf(step)).padStart(2, "0")}-${step.name}`;
            report[`out-${step.name}`] = readFileSync(path.join(work, `out-create-${id}`), "utf8");
        }
    });

    afterAll(() => {
        for (const squatter of squatters) squatter.kill("SIGKILL");
        if (work) rmSync(work, { recursive: true, force: true });
    });

    it("every step succeeds", () => {
        expect(report.failures).toBe("");
    });

    it("installs every planned file with its owner, group and mode", () => {
        const lines = report.snap1.split("\n");
        for (const file of plan.steps.flatMap((s) => [...s.files, ...s.secretFiles])) {
            const mode = String(parseInt(file.mode, 8).toString(8));
            expect(lines.find((l) => l.startsWith(`${file.path} `)), file.path).toMatch(new RegExp(`^\\S+ ${file.owner} ${file.group} ${mode} `));
        }
        expect(lines).toContain("/etc/hx-backup/keys hxbackup hxbackup 700 dir");
        expect(lines).toContain("/var/lib/backup/scripts root root 755 dir");
        expect(lines).toContain("hxbackup:/usr/sbin/nologin");
    });

    it("writes file contents byte for byte, secrets included", () => {
        const hash = (text: string) => execFileSync("sha256sum", { input: text }).toString().slice(0, 16);
        const lines = report.snap1.split("\n");
        const config = plan.steps.find((s) => s.name === "config")!.files[0];
        expect(lines.find((l) => l.startsWith(`${config.path} `))).toContain(hash(config.content));
        expect(lines.find((l) => l.startsWith("/etc/hx-backup/keys/itest-v1.key "))).toContain(hash(`${KEY_HEX}\n`));
        expect(lines.find((l) => l.startsWith("/etc/hx-backup/redis.auth "))).toContain(hash("it-redis-pw"));
    });

    it("is idempotent: a second run changes no byte, owner or mode", () => {
        expect(report.snap2).toBe(report.snap1);
    });

    it("lets the backup user run exactly its roles' privileged verbs through sudo, and nothing else", () => {
        expect(report["sudo-ok.rc"].trim(), report["sudo-ok.err"]).toBe("ok");
        expect(report["sudo-ok.list"]).toContain("file.txt");
        // This host has no postgresql role, so that verb is not in its drop-in; nor is anything else.
        expect(report["sudo-other.rc"].trim()).toBe("refused");
        expect(report["sudo-cat.rc"].trim()).toBe("refused");
    });

    it("says clearly that timers are not enabled where systemd is not running, and succeeds", () => {
        expect(report["out-timers"]).toMatch(/systemd is not running here; units are installed but timers are not enabled/);
    });

    it("never installs a sudoers file that visudo rejects", () => {
        expect(report["bad-sudoers.rc"].trim()).toBe("refused");
        expect(report["bad-sudoers.out"]).toMatch(/refusing to install \/etc\/sudoers.d\/hx-backup/);
        expect(report["sudoers-after"]).toBe(report["sudoers-before"]);
        expect(report["sudoers-dir"].split("\n").filter((f) => f.startsWith(".hx-backup"))).toEqual([]);
    });

    it("destroy removes the automation and the user it created, and keeps backups and keys", () => {
        const after = report.snap3;
        expect(after).not.toMatch(/\/var\/lib\/backup\/scripts\/\S+\.sh/);
        expect(after).not.toMatch(/\/etc\/systemd\/system\/hx-backup-/);
        expect(after).not.toContain("/etc/sudoers.d/hx-backup ");
        expect(after).not.toContain("/etc/hx-backup/backup.json");
        expect(after).not.toContain("/etc/hx-backup/s3-credentials");
        expect(after).toContain("/etc/hx-backup/keys/itest-v1.key");
        expect(after).toContain("/etc/hx-backup/encryption.key");
        expect(after).toContain("/opt/hx-backups/redis/main/artifact.enc");
        expect(after).toContain("no-user");
        // The user had one of the UIDs a process outside the namespace was running as.
        expect(squatted).toContain(Number(report.uid));
    });
});
