/**
 * Everything one host receives, as data: the remote steps in order, the files
 * each installs (with owner, mode and content) and the secret files (content
 * filled in at deploy time). The Host component turns steps into
 * `command.remote.Command`s; `npm run render` writes the files to a folder;
 * drift detection compares a host against the same plan.
 */
import { readdirSync } from "node:fs";
import * as path from "node:path";
import type { HostSpec, StackConfig } from "../config/types";
import { HOST_CONFIG_NAME, LOGROTATE_PATH, SUDOERS_PATH, UNIT_DIR } from "./paths";
import { renderHostConfig, serializeHostConfig, PGPASS_NAME, REDIS_AUTH_NAME, S3_CREDENTIALS_NAME, type DeployFacts, type HostConfigFile } from "./hostConfig";
import type { Job } from "./jobs";
import { renderJobUnits, renderMaintenanceUnits, unitName } from "./systemd";
import { renderSudoers } from "./sudoers";
import { readTemplate, renderTemplate, TEMPLATE_ROOT } from "./template";
import { installSecretFilesScript, removeFilesScript, sha256 } from "./remote";
import { shellQuote } from "./shell";
import { digestOf, fileStep, withManifestEntry, type PlannedSecretFile, type Step } from "./step";

export interface HostPlan {
    readonly host: HostSpec;
    readonly config: HostConfigFile;
    readonly jobs: readonly Job[];
    readonly steps: readonly Step[];
}

export const SCRIPT_TEMPLATE_DIR = "scripts";

/** Scripts shipped to every host: every file in templates/scripts. The library is sourced, not run. */
export function scriptTemplates(): string[] {
    return readdirSync(path.join(TEMPLATE_ROOT, SCRIPT_TEMPLATE_DIR)).filter((f) => f.endsWith(".sh")).sort();
}

export function packagesFor(host: HostSpec, remote: boolean): string[] {
    const pkgs = new Set(["jq", "zstd", "gzip", "openssl", "tar", "acl", "attr", "util-linux", "coreutils", "sudo", "logrotate", "iproute2"]);
    if (remote) pkgs.add("awscli");
    if (host.roles.includes("redis")) pkgs.add("redis-tools");
    if (host.roles.includes("postgresql")) pkgs.add("postgresql-client");
    return [...pkgs].sort();
}

function packagesScript(pkgs: readonly string[]): string {
    const list = pkgs.map(shellQuote).join(" ");
    return [
        `pkgs=${shellQuote(pkgs.join(" "))}`,
        "if command -v apt-get >/dev/null 2>&1; then",
        "  missing=''",
        "  for p in $pkgs; do dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'install ok installed' || missing=\"$missing $p\"; done",
        "  if [ -n \"$missing\" ]; then",
        "    export DEBIAN_FRONTEND=noninteractive",
        "    apt-get update -qq",
        // Debian's postgresql-client is a metapackage; on a server host the matching client is already there.
        "    apt-get install -y -qq --no-install-recommends $missing",
        "  fi",
        "elif command -v dnf >/dev/null 2>&1; then",
        `  dnf install -y ${list.replace("awscli", "awscli2").replace("iproute2", "iproute").replace("redis-tools", "redis").replace("postgresql-client", "postgresql")}`,
        "else",
        "  echo 'hx-backup: no apt-get or dnf; install these packages yourself:' \"$pkgs\" >&2; exit 1",
        "fi",
    ].join("\n");
}

interface DirSpec {
    path: string;
    owner: string;
    group: string;
    mode: string;
}

function directories(config: StackConfig): DirSpec[] {
    const u = config.backupUser;
    const p = config.paths;
    const keyDir = p.keyFile.replace(/\/[^/]+$/, "");
    const dirs: DirSpec[] = [
        { path: p.configDir, owner: "root", group: u, mode: "0750" },
        { path: p.scriptDir, owner: "root", group: "root", mode: "0755" },
        { path: p.storageDir, owner: u, group: u, mode: "0750" },
        { path: p.logDir, owner: u, group: "adm", mode: "0750" },
        { path: p.keyringDir, owner: u, group: u, mode: "0700" },
    ];
    if (keyDir !== p.configDir && keyDir !== p.keyringDir) dirs.push({ path: keyDir, owner: "root", group: u, mode: "0750" });
    return dirs;
}

/** Marker recording that this tool created the user, so destroy never deletes a pre-existing account. */
const userMarker = (config: StackConfig) => `${config.paths.configDir}/.created-user`;

function accountScript(config: StackConfig): string {
    const u = shellQuote(config.backupUser);
    const lines = [
        `if ! id -u ${u} >/dev/null 2>&1; then`,
        `  useradd --system --user-group --home-dir ${shellQuote(config.paths.storageDir)} --no-create-home --shell /usr/sbin/nologin --comment 'hx-backup jobs' ${u}`,
        `  mkdir -p ${shellQuote(config.paths.configDir)} && echo ${u} > ${shellQuote(userMarker(config))}`,
        "fi",
        // No login shell, no password, whether we created the account or found it.
        `usermod --shell /usr/sbin/nologin ${u}`,
        `passwd --lock ${u} >/dev/null 2>&1 || usermod --lock ${u}`,
    ];
    for (const d of directories(config)) {
        lines.push(`install -d -o ${shellQuote(d.owner)} -g ${shellQuote(d.group)} -m ${d.mode} ${shellQuote(d.path)}`);
    }
    // node_exporter reads *.prom from its textfile directory; the jobs write their own files there.
    const tf = shellQuote(config.paths.textfileDir);
    lines.push(
        `install -d -m 0755 ${tf}`,
        `if command -v setfacl >/dev/null 2>&1 && setfacl -m u:${config.backupUser}:rwx ${tf} 2>/dev/null; then :; else chgrp ${u} ${tf} && chmod 0775 ${tf}; fi`,
    );
    return lines.join("\n");
}

function removeAccountScript(config: StackConfig): string {
    const u = shellQuote(config.backupUser);
    const marker = shellQuote(userMarker(config));
    // Backups, keys and logs stay; only an account this tool created goes.
    return [
        `if [ -f ${marker} ] && id -u ${u} >/dev/null 2>&1; then userdel ${u}; fi`,
        `rm -f ${marker}`,
        `if command -v setfacl >/dev/null 2>&1; then setfacl -x u:${config.backupUser} ${shellQuote(config.paths.textfileDir)} 2>/dev/null || true; fi`,
    ].join("\n");
}

function postgresqlRoleScript(host: HostSpec): string {
    const pg = host.postgresql!;
    const role = pg.user;
    // The SQL reaches psql on stdin; the role name is validated as a plain identifier.
    return [
        "runuser -u postgres -- psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 " +
            `--host=${shellQuote(pg.host)} --port=${pg.port} --dbname=postgres <<'SQL'`,
        "DO $$",
        "BEGIN",
        `  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN`,
        `    CREATE ROLE "${role}" LOGIN CREATEDB;`,
        "  END IF;",
        "END",
        "$$;",
        `GRANT pg_read_all_data TO "${role}";`,
        "SQL",
    ].join("\n");
}

function unitsActivationScript(timers: readonly string[], units: readonly string[]): string {
    return [
        "if [ ! -d /run/systemd/system ]; then",
        `  echo "hx-backup: systemd is not running here; units are installed but timers are not enabled. On a systemd host run: systemctl daemon-reload && systemctl enable --now ${timers.join(" ")}"`,
        "  exit 0",
        "fi",
        "systemctl daemon-reload",
        units.length ? `systemctl reset-failed ${units.map(shellQuote).join(" ")} 2>/dev/null || true` : "true",
        timers.length ? `systemctl enable --now ${timers.map(shellQuote).join(" ")}` : "true",
    ].join("\n");
}

function unitRemovalScript(unitPath: string, unit: string): string {
    return [
        `if [ -d /run/systemd/system ]; then systemctl disable --now ${shellQuote(unit)} 2>/dev/null || true; fi`,
        `rm -f ${shellQuote(unitPath)}`,
        "if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi",
    ].join("\n");
}

/** A step name safe for a Pulumi resource name. */
const slug = (text: string) => text.replace(/[^A-Za-z0-9.-]+/g, "-").replace(/^-+|-+$/g, "");

export function planHost(config: StackConfig, host: HostSpec, facts: DeployFacts): HostPlan {
    const hostConfig = renderHostConfig(config, host, facts);
    const { jobs } = hostConfig;
    const u = config.backupUser;
    const p = config.paths;
    const steps: Step[] = [];
    const base: string[] = [];

    if (config.installPackages) {
        const pkgs = packagesFor(host, hostConfig.remote.enabled);
        steps.push({ name: "packages", create: packagesScript(pkgs), files: [], secretFiles: [], dependsOn: [], digest: digestOf(pkgs) });
        base.push("packages");
    }
    steps.push({
        name: "account",
        create: accountScript(config),
        delete: removeAccountScript(config),
        files: [],
        secretFiles: [],
        dependsOn: [...base],
        digest: digestOf({ user: u, dirs: directories(config), textfile: p.textfileDir }),
    });
    const afterAccount = ["account"];

    if (host.postgresql) {
        steps.push({ name: "postgresql-role", create: postgresqlRoleScript(host), files: [], secretFiles: [], dependsOn: afterAccount, digest: digestOf({ role: host.postgresql.user, host: host.postgresql.host, port: host.postgresql.port }) });
    }

    // Keyring: every key id, plus the current key at the configured key file.
    const keyFiles: PlannedSecretFile[] = [
        ...facts.keyIds.map((keyId) => ({ path: `${p.keyringDir}/${keyId}.key`, owner: u, group: u, mode: "0600", secret: { kind: "key", keyId } as const })),
        { path: p.keyFile, owner: u, group: u, mode: "0600", secret: { kind: "key", keyId: facts.currentKeyId } },
    ];
    steps.push({
        name: "keyring",
        create: installSecretFilesScript(keyFiles),
        // Keys outlive the automation: older backups must stay restorable.
        files: [],
        secretFiles: keyFiles,
        dependsOn: afterAccount,
        digest: digestOf({ files: keyFiles.map(({ path: f, mode, owner, group, secret }) => ({ f, mode, owner, group, secret })), fingerprints: facts.keyFingerprints }),
    });

    const credentialFiles: PlannedSecretFile[] = [];
    if (hostConfig.remote.enabled) credentialFiles.push({ path: `${p.configDir}/${S3_CREDENTIALS_NAME}`, owner: u, group: u, mode: "0600", secret: { kind: "s3Credentials" } });
    if (host.redis?.auth) credentialFiles.push({ path: `${p.configDir}/${REDIS_AUTH_NAME}`, owner: u, group: u, mode: "0600", secret: { kind: "redisAuth" } });
    if (host.postgresql?.auth === "pgpass") credentialFiles.push({ path: `${p.configDir}/${PGPASS_NAME}`, owner: u, group: u, mode: "0600", secret: { kind: "pgpass" } });
    if (credentialFiles.length) {
        steps.push({
            name: "credentials",
            create: installSecretFilesScript(credentialFiles),
            delete: removeFilesScript(credentialFiles.map((f) => f.path)),
            files: [],
            secretFiles: credentialFiles,
            dependsOn: afterAccount,
            // A changed secret changes the (secret) stdin, which re-runs the step by itself.
            digest: digestOf({ files: credentialFiles }),
        });
    }

    steps.push(fileStep("config", { path: `${p.configDir}/${HOST_CONFIG_NAME}`, owner: "root", group: u, mode: "0640", content: serializeHostConfig(hostConfig) }, afterAccount));

    const scriptSteps: string[] = [];
    for (const script of scriptTemplates()) {
        const name = `script-${slug(script.replace(/\.sh$/, ""))}`;
        const library = script.endsWith("-lib.sh");
        steps.push(fileStep(name, { path: `${p.scriptDir}/${script}`, owner: "root", group: "root", mode: library ? "0644" : "0755", content: readTemplate(`${SCRIPT_TEMPLATE_DIR}/${script}`) }, afterAccount));
        scriptSteps.push(name);
    }

    steps.push(fileStep("sudoers", { path: SUDOERS_PATH, owner: "root", group: "root", mode: "0440", content: renderSudoers(config, host) }, scriptSteps, { check: `visudo -cf "$tmp"` }));

    steps.push(fileStep("logrotate", { path: LOGROTATE_PATH, owner: "root", group: "root", mode: "0644", content: renderTemplate("logrotate/hx-backup", { stack: config.stack, host: host.name, logDir: p.logDir, user: u }) }, afterAccount));

    const unitSteps: string[] = [];
    const allUnits = [...jobs.flatMap((job) => renderJobUnits(config, host, job)), ...renderMaintenanceUnits(config, host, jobs)];
    for (const unit of allUnits) {
        const unitPath = `${UNIT_DIR}/${unit.name}`;
        const name = `unit-${slug(unit.name)}`;
        steps.push(fileStep(name, { path: unitPath, owner: "root", group: "root", mode: "0644", content: unit.content }, [...scriptSteps, "config"], { delete: unitRemovalScript(unitPath, unit.name) }));
        unitSteps.push(name);
    }
    const timers = jobs.map((j) => unitName(j.name, "timer"));
    steps.push({
        name: "timers",
        create: unitsActivationScript(timers, allUnits.map((x) => x.name)),
        delete: timers.length ? `if [ -d /run/systemd/system ]; then systemctl disable --now ${timers.map(shellQuote).join(" ")} 2>/dev/null || true; fi` : "true",
        files: [],
        secretFiles: [],
        dependsOn: [...unitSteps, "sudoers", "keyring", ...(credentialFiles.length ? ["credentials"] : [])],
        digest: digestOf(allUnits.map((x) => [x.name, sha256(x.content)])),
    });

    return { host, config: hostConfig, jobs, steps: steps.map((s) => withManifestEntry(config, s)) };
}
