/**
 * scripts/install-system-deps.sh says what it installs and why, one package
 * group at a time, installs only what is missing, and prints one line when
 * nothing is. Runs the real script against stand-ins for dpkg-query and
 * apt-get first on PATH: nothing is installed on this machine.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/engine";
import { isRoot, removeDir, tempDir } from "../support/env";

const SCRIPT = path.join(REPO_ROOT, "scripts", "install-system-deps.sh");

/** Installed is every package not listed in $FAKE_MISSING. */
const FAKE_DPKG_QUERY = `#!/bin/sh
for pkg; do :; done
grep --quiet --line-regexp --fixed-strings -- "$pkg" "$FAKE_MISSING" && exit 1
printf 'install ok installed'
`;

/** Logs each call; an install takes its packages off $FAKE_MISSING, and postgresql brings openssl along. */
const FAKE_APT_GET = `#!/bin/sh
echo "$*" >>"$FAKE_APT_LOG"
[ "$1" = install ] || exit 0
for arg; do
    case $arg in
        install | -*) ;;
        postgresql) sed --in-place -e '/^postgresql$/d' -e '/^openssl$/d' "$FAKE_MISSING" ;;
        *) sed --in-place "/^$arg\\$/d" "$FAKE_MISSING" ;;
    esac
done
`;

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

function machine(missing: string[]) {
    const dir = tempDir("hx-install-deps-");
    dirs.push(dir);
    writeFileSync(path.join(dir, "dpkg-query"), FAKE_DPKG_QUERY, { mode: 0o755 });
    writeFileSync(path.join(dir, "apt-get"), FAKE_APT_GET, { mode: 0o755 });
    const missingFile = path.join(dir, "missing");
    writeFileSync(missingFile, missing.map((p) => `${p}\n`).join(""), { mode: 0o666 });
    const aptLog = path.join(dir, "apt.log");
    const run = (asUser = false) => {
        const command = asUser && isRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", SCRIPT] : ["bash", SCRIPT];
        return spawnSync(command[0], command.slice(1), {
            encoding: "utf8",
            env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, FAKE_MISSING: missingFile, FAKE_APT_LOG: aptLog },
        });
    };
    const aptCalls = () => (existsSync(aptLog) ? readFileSync(aptLog, "utf8").trim().split("\n") : []);
    return { run, aptCalls };
}

describe("install-system-deps.sh", () => {
    it("with every package present prints one line and runs no apt-get", () => {
        const m = machine([]);
        const r = m.run();
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toBe("");
        expect(r.stderr).toBe("hx-install-deps: present: all system packages (postgresql redis ssh monitoring host-tools s3-tools lint browser)\n");
        expect(m.aptCalls()).toEqual([]);
    });

    it.runIf(isRoot)("as root installs group by group, saying what and why before each, and says present for the rest", () => {
        const m = machine(["postgresql", "pgbackrest", "openssl", "chromium"]);
        const r = m.run();
        expect(r.status, r.stderr).toBe(0);
        expect(r.stderr.trimEnd().split("\n").map((l) => l.replace(/ in \d+ s$/, " in N s"))).toEqual([
            "hx-install-deps: updating the package lists (apt-get update)",
            "hx-install-deps: installing postgresql (postgresql pgbackrest): real clusters for the dump, restore and point-in-time recovery tests",
            "hx-install-deps: installed postgresql in N s",
            "hx-install-deps: present: redis (redis-server redis-tools)",
            "hx-install-deps: present: ssh (openssh-server openssh-sftp-server openssh-client)",
            "hx-install-deps: present: monitoring (prometheus prometheus-alertmanager prometheus-node-exporter)",
            // openssl came with postgresql: asked again, the group is complete.
            "hx-install-deps: present: host-tools (zstd jq openssl acl attr tar gzip coreutils util-linux procps iproute2 nftables sudo logrotate systemd)",
            "hx-install-deps: present: s3-tools (awscli curl ca-certificates)",
            "hx-install-deps: present: lint (shellcheck)",
            "hx-install-deps: installing browser (chromium): renders the compliance report's screenshot",
            "hx-install-deps: installed browser in N s",
        ]);
        expect(m.aptCalls()).toEqual([
            "update -qq",
            "install -y -qq --no-install-recommends postgresql pgbackrest",
            "install -y -qq --no-install-recommends chromium",
        ]);

        const again = m.run();
        expect(again.status, again.stderr).toBe(0);
        expect(again.stderr).toMatch(/^hx-install-deps: present: all system packages \([^)]*\)\n$/);
        expect(m.aptCalls()).toHaveLength(3);
    });

    it("as another user names each missing group and why, prints the one command to run, and installs nothing", () => {
        const m = machine(["redis-tools", "chromium"]);
        const r = m.run(true);
        expect(r.status).toBe(1);
        expect(r.stderr).toBe(
            [
                "hx-install-deps: missing redis (redis-tools): a real server for the Redis backup tests",
                "hx-install-deps: missing browser (chromium): renders the compliance report's screenshot",
                "hx-backup needs these system packages. Install them with:",
                "  sudo apt-get update && sudo apt-get install -y redis-tools chromium",
                "",
            ].join("\n"),
        );
        expect(m.aptCalls()).toEqual([]);
    });
});
