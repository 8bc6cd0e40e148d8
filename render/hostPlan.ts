/**
 * Everything one host receives, as data: the remote steps in order, the files
 * each installs (with owner, mode and content) and the secret files (content
 * filled in at deploy time). The Host component turns steps into
 * `command.remote.Command`s; `npm run render` writes the files to a folder;
 * drift detection compares a host against the same plan.
 */
import * as path from "node:path";
import type { HostSpec, StackConfig } from "../config/types";
import { configLocationPath, createdUserMarker, hostConfigPath, INSTALL_RECORDS_DIR, locksDir, LOGROTATE_PATH, STAGE_ROOT, SUDOERS_PATH, UNIT_DIR } from "./paths";
import { renderHostConfig, serializeHostConfig, PGPASS_NAME, REDIS_AUTH_NAME, S3_CREDENTIALS_NAME, type DeployFacts, type HostConfigFile } from "./hostConfig";
import { hostJobs, type Job } from "./jobs";
import { renderJobUnits, renderMaintenanceUnits, unitName } from "./systemd";
import { renderSudoers } from "./sudoers";
import { isLibrary, readTemplate, renderTemplate, SCRIPT_TEMPLATE_DIR, scriptTemplates, TEMPLATE_ROOT } from "./template";
import { sha256 } from "./remote";
import { pitrFirstFullStep, planPitrSteps } from "./pgbackrest";
import { digestOf, filesStep, installSecretFilesScript, secretFilesStep, stepScript, withManifestEntry, type PlannedFile, type PlannedSecretFile, type StagedFolder, type Step } from "./step";

export interface HostPlan {
    readonly host: HostSpec;
    readonly config: HostConfigFile;
    readonly jobs: readonly Job[];
    readonly steps: readonly Step[];
}

export { SCRIPT_TEMPLATE_DIR, scriptTemplates };

/** Debian's package names; templates/steps/packages.sh knows the few that dnf calls differently. */
export function packagesFor(host: HostSpec, remote: boolean): string[] {
    const pkgs = new Set(["jq", "zstd", "gzip", "openssl", "tar", "acl", "attr", "util-linux", "coreutils", "sudo", "logrotate", "iproute2"]);
    if (remote) pkgs.add("awscli");
    if (host.roles.includes("redis")) pkgs.add("redis-tools");
    if (host.roles.includes("postgresql")) pkgs.add("postgresql-client");
    if (host.postgresql?.pitr) pkgs.add("pgbackrest");
    return [...pkgs].sort();
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
        { path: locksDir(config), owner: u, group: u, mode: "0750" },
        { path: p.logDir, owner: u, group: "adm", mode: "0750" },
        { path: p.keyringDir, owner: u, group: u, mode: "0700" },
    ];
    if (keyDir !== p.configDir && keyDir !== p.keyringDir) dirs.push({ path: keyDir, owner: "root", group: u, mode: "0750" });
    return dirs;
}

/** What the account's create and delete scripts both need. */
const accountValues = (config: StackConfig) => ({ user: config.backupUser, user_marker: createdUserMarker(config), textfile_dir: config.paths.textfileDir });

/**
 * The static scripts reach a host as a copy of templates/scripts, in the SSH user's home (per stack and host, so
 * that two installs on one machine never share one), and are installed from there.
 */
export function scriptStage(config: StackConfig, host: HostSpec): StagedFolder {
    return { source: path.join(TEMPLATE_ROOT, SCRIPT_TEMPLATE_DIR), remotePath: `${STAGE_ROOT}/${config.stack}/${host.name}`, user: host.sshUser };
}

/** Every script under templates/scripts at its place in scriptDir, staged at `scripts/<its path>`. */
function scriptFiles(config: StackConfig): PlannedFile[] {
    return scriptTemplates().map((script) => ({
        path: `${config.paths.scriptDir}/${script}`,
        owner: "root",
        group: "root",
        mode: isLibrary(script) ? "0644" : "0755",
        content: readTemplate(`${SCRIPT_TEMPLATE_DIR}/${script}`),
        staged: `${path.basename(SCRIPT_TEMPLATE_DIR)}/${script}`,
    }));
}

export function planHost(config: StackConfig, host: HostSpec, facts: DeployFacts): HostPlan {
    const hostConfig = renderHostConfig(config, host, facts);
    const jobs = hostJobs(config, host);
    const u = config.backupUser;
    const p = config.paths;
    const steps: Step[] = [];
    const base: string[] = [];

    if (config.installPackages) {
        const pkgs = packagesFor(host, hostConfig.remote.enabled);
        steps.push({ name: "packages", create: stepScript("packages", {}, pkgs), files: [], secretFiles: [], dependsOn: [], digest: digestOf(pkgs) });
        base.push("packages");
    }
    steps.push({
        name: "account",
        create: stepScript(
            "account",
            { ...accountValues(config), home_dir: p.storageDir, config_dir: p.configDir },
            directories(config).flatMap((d) => [d.path, d.owner, d.group, d.mode]),
        ),
        delete: stepScript("account-remove", { ...accountValues(config), records_dir: INSTALL_RECORDS_DIR }),
        files: [],
        secretFiles: [],
        claims: [`user:${u}`],
        dependsOn: [...base],
        digest: digestOf({ user: u, dirs: directories(config), textfile: p.textfileDir }),
    });
    const afterAccount = ["account"];

    const pg = host.postgresql;
    if (pg) {
        steps.push({
            name: "postgresql-role",
            create: stepScript("postgresql-role", { role: pg.user, pg_host: pg.host, pg_port: pg.port }),
            files: [],
            secretFiles: [],
            dependsOn: afterAccount,
            digest: digestOf({ role: pg.user, host: pg.host, port: pg.port }),
        });
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
    if (credentialFiles.length) steps.push(secretFilesStep("credentials", credentialFiles, afterAccount));

    const pitrSteps = planPitrSteps(config, host, facts.currentKeyId, [...base, ...afterAccount]);
    steps.push(...pitrSteps);

    // The config and where to find it: runs by hand or through sudo read the location beside the library.
    steps.push(
        filesStep(
            "config",
            [
                { path: hostConfigPath(config), owner: "root", group: u, mode: "0640", content: serializeHostConfig(hostConfig) },
                { path: configLocationPath(config), owner: "root", group: "root", mode: "0644", content: `${hostConfigPath(config)}\n` },
            ],
            afterAccount,
        ),
    );

    // The static scripts and logrotate, after the config they read (a new script may read a new field).
    steps.push(
        filesStep(
            "files",
            [...scriptFiles(config), { path: LOGROTATE_PATH, owner: "root", group: "root", mode: "0644", content: renderTemplate("logrotate/hx-backup", { stack: config.stack, host: host.name, logDir: p.logDir, user: u }) }],
            [...afterAccount, "config"],
            { stage: scriptStage(config, host) },
        ),
    );

    steps.push(filesStep("sudoers", [{ path: SUDOERS_PATH, owner: "root", group: "root", mode: "0440", content: renderSudoers(config, host) }], ["files", "config"], { check: ["visudo", "-cf"] }));

    const allUnits = [...jobs.flatMap((job) => renderJobUnits(config, host, job)), ...renderMaintenanceUnits(config, host, jobs)];
    steps.push(filesStep("units", allUnits.map((unit) => ({ path: `${UNIT_DIR}/${unit.name}`, owner: "root", group: "root", mode: "0644", content: unit.content })), ["files", "config"]));
    const timers = jobs.map((j) => unitName(j.name, "timer"));
    steps.push({
        name: "timers",
        create: stepScript("units-activate", { units: allUnits.map((x) => x.name).join("\n") }, timers),
        delete: stepScript("timers-disable", {}, timers),
        files: [],
        secretFiles: [],
        claims: timers.map((t) => `systemd:${t}`),
        dependsOn: ["units", "sudoers", "keyring", ...(credentialFiles.length ? ["credentials"] : []), ...(pitrSteps.length ? ["pitr-archiving"] : [])],
        digest: digestOf(allUnits.map((x) => [x.name, sha256(x.content)])),
    });
    const archiving = pitrSteps.find((x) => x.name === "pitr-archiving");
    if (archiving) steps.push(pitrFirstFullStep(host, archiving, unitName("pitr-full", "service"), ["timers"]));

    return { host, config: hostConfig, jobs, steps: steps.map((s) => withManifestEntry(config, s)) };
}
