#!/usr/bin/env bash
# hx-backup library: constants, the job lifecycle (traps, exit; its temp paths in tmp.sh), names and paths, the privileged helper, data-source dispatch and the end of a job
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

readonly HX_VERSION="1.0.0"
readonly HX_MANIFEST_FORMAT=1
# The HostConfigFile format this library reads (HOST_CONFIG_FORMAT in render/hostConfig.ts).
readonly HX_CONFIG_FORMAT=1
readonly HX_PBKDF2_ITER=10000
readonly HX_EXIT_OK=0 HX_EXIT_FAIL=1 HX_EXIT_USAGE=2 HX_EXIT_LOCKED=3 HX_EXIT_VERIFY=4 HX_EXIT_PARTIAL=5

umask 077
export LC_ALL=C
PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
export PATH

HX_SCRIPT_NAME=${0##*/}
HX_STEM=${HX_SCRIPT_NAME%.sh}
HX_JOB=${HX_JOB:-$HX_STEM}
HX_LOG_FILE=""
HX_STATUS_CAUSE=""
HX_CONFIG_FILE=""
HX_RUN_USER=$(id -un 2>/dev/null || echo "uid-$EUID")
HX_INVOCATION="$HX_SCRIPT_NAME"
# Set by hx_allow_root (never from the environment): this script runs as root.
HX_ROOT_ALLOWED=""
# Set while a root run must not write a log file (hx_refuse_root).
HX_NO_LOG_FILE=""
# Data-source type -> the lib/source module that handles it; each module registers its types.
declare -gA HX_SOURCE_MODULE=()

# hx_single_target_job ON_EXIT TARGET JOB [ARGS...]: the start of a job that
# takes no arguments and writes one target (TARGET, or "" until the job knows
# it): usage error on any argument, then the exit hook and hx_init JOB.
hx_single_target_job() {
    local on_exit=$1 target=$2 job=$3
    shift 3
    if (($# != 0)); then
        echo "usage: $HX_SCRIPT_NAME" >&2
        exit "$HX_EXIT_USAGE"
    fi
    HX_ON_EXIT=$on_exit
    HX_SINGLE_TARGET=$target
    hx_init "$job"
}

# hx_init [JOB]: common start of every job script.
hx_init() {
    hx_init_common "$@"
    # Read now: the exit hook that exports it must not fail on the config.
    hx_cfg_read HX_STORAGE_QUOTA storageQuotaBytes
    HX_HOST_METRICS=1
    [[ -d $HX_STORAGE && -d $HX_LOCKS ]] || mkdir -p -- "$HX_STORAGE" "$HX_LOCKS"
    hx_audit start started
    hx_clean_dead_temps
}

# hx_clean_dead_temps: remove the temp paths of runs that are gone, wherever
# jobs make them (the storage root, each source folder, the textfile
# directory). A temp path is named .NAME.PID.partial, .NAME.PID.work.partial
# or .NAME.PID.tmpXXXXXX.partial; its PID is the run that owns it. With
# HX_DRY_RUN=1 it only lists them. Paths it may not remove are left alone.
hx_clean_dead_temps() {
    local path name pid
    local -a roots=("$HX_STORAGE")
    [[ -n ${HX_TEXTFILE:-} && -d $HX_TEXTFILE ]] && roots+=("$HX_TEXTFILE")
    while IFS= read -r -d '' path; do
        name=${path##*/}
        [[ $name =~ \.([0-9]+)(\.work|\.tmp[A-Za-z0-9]{6})?\.partial$ ]] || continue
        pid=${BASH_REMATCH[1]}
        [[ ! -d /proc/$pid ]] || continue
        if [[ ${HX_DRY_RUN:-0} == 1 ]]; then
            echo "would remove stale temp path $path"
        elif rm -rf -- "$path" 2>/dev/null; then
            hx_info stale_temp "removed a temp path of a dead run" "path=$path" "pid=$pid"
        fi
    done < <(find "${roots[@]}" -mindepth 1 -maxdepth 3 -name '.*.partial' -prune -print0 2>/dev/null)
}

# hx_init_common [JOB]: traps, config, log; creates nothing in storage.
hx_init_common() {
    HX_JOB=${1:-$HX_JOB}
    HX_INVOCATION="$HX_SCRIPT_NAME${HX_ARGS:+ $HX_ARGS}"
    HX_START_EPOCH=$(hx_epoch)
    # Root writes no log file: the log folder is the backup user's, and a link
    # planted there would aim root's appends anywhere. Its lines still reach
    # stderr and syslog. A job that refuses root writes nothing at all, not
    # even for a config error: no exit hook either.
    if ((EUID == 0)); then
        HX_NO_LOG_FILE=1
        [[ -z $HX_ROOT_ALLOWED ]] || hx__traps
    else
        hx__traps
    fi
    trap 'exit 143' TERM
    trap 'exit 130' INT
    hx_load_config
    hx_refuse_root
    hx__open_log
}

# hx_allow_root: called by the scripts that need root, right after sourcing
# the library: backup-restore.sh (it restores owners, modes, ACLs and xattrs)
# and backup-privileged.sh (the root helper).
hx_allow_root() {
    HX_ROOT_ALLOWED=1
}

hx__traps() {
    trap 'hx__on_exit' EXIT
    trap 'hx__on_err "$LINENO" "$BASH_COMMAND"' ERR
}

# hx_refuse_root: a job started as root (a hand run without `sudo -u`) would
# leave root-owned artifacts, source folders, manifests, records, markers,
# locks and metrics that its own user's next runs cannot read, lock or
# replace. So it refuses (exit 2) having written nothing, and says how to run
# it instead. The user comes from the config. Its arguments are left out of
# the advice: logged, a quoted hostile one would not paste back as itself.
hx_refuse_root() {
    ((EUID == 0)) && [[ -z $HX_ROOT_ALLOWED ]] || return 0
    local user advice
    # pgBackRest's jobs run as postgres with the backup group their units add.
    if [[ ${HX_TYPE:-} == pitr ]] && hx_cfg_section pitr; then
        hx_cfg_read user pitr.user
        advice="start it through its unit, which runs it as $user with the backup group: systemctl start hx-backup-$HX_JOB.service"
    else
        hx_cfg_read user backupUser
        advice="run it as $user, with the same arguments: sudo -u $user $HX_SCRIPTS_DIR_SELF/$HX_SCRIPT_NAME"
    fi
    # A host whose jobs run as root has nothing to protect.
    if [[ $user == root ]]; then
        HX_NO_LOG_FILE=""
        hx__traps
        return 0
    fi
    hx_error run_as_root "refusing to run as root: the files this job writes must stay $user's; $advice" "run_as=$user"
    exit "$HX_EXIT_USAGE"
}

hx__on_err() {
    local line=$1 cmd=$2
    if [[ -z $HX_STATUS_CAUSE ]]; then
        HX_STATUS_CAUSE="command failed at line $line: $cmd"
    fi
}

# Hooks the scripts may set: HX_ON_EXIT (function name) runs first.
hx__on_exit() {
    local rc=$?
    trap - ERR
    set +e
    hx_tmp_cleanup
    if [[ -n ${HX_ON_EXIT:-} ]]; then
        "$HX_ON_EXIT" "$rc"
    fi
    if [[ -n ${HX_CONFIG_BROKEN:-} ]]; then
        hx__config_failure_metric
    elif [[ -n ${HX_HOST_METRICS:-} ]]; then
        hx_host_metrics || true
    fi
    local result=ok
    ((rc == 0)) || result=failed
    ((rc == HX_EXIT_PARTIAL)) && result=partial
    ((rc == HX_EXIT_LOCKED)) && result=locked
    hx_audit finish "$result" "exit_code=$rc" "cause=${HX_STATUS_CAUSE:-}" "duration_seconds=$(($(hx_epoch) - ${HX_START_EPOCH:-$(hx_epoch)}))"
    exit "$rc"
}

# ------------------------------------------------------------------ names ---

# hx_dirname_into VAR PATH / hx_basename_into VAR PATH: dirname and basename
# without a process (PATH has no trailing slash).
hx_dirname_into() {
    local hx_path=$2
    if [[ $hx_path != */* ]]; then
        printf -v "$1" '%s' .
    else
        hx_path=${hx_path%/*}
        printf -v "$1" '%s' "${hx_path:-/}"
    fi
}
hx_basename_into() { printf -v "$1" '%s' "${2##*/}"; }

# A filesystem- and label-safe name for a source: the name itself when it is
# plain, otherwise a sanitised form plus a short hash of the real name.
hx_slug() {
    local name=$1
    if [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]; then
        printf '%s' "$name"
        return
    fi
    local clean h
    clean=${name//[^A-Za-z0-9._-]/_}
    clean=${clean:0:40}
    h=$(printf '%s' "$name" | openssl dgst -sha256 -r)
    printf '%s-%s' "${clean:-x}" "${h:0:8}"
}

# ------------------------------------------------------------- privileged ---

# hx_privileged VERB: run the root helper (directly when already root).
# hx_has_capability BIT: is the capability in this process's effective set?
# (CAP_DAC_READ_SEARCH is bit 2, CAP_NET_ADMIN bit 12.)
hx_has_capability() {
    local key value
    while read -r key value; do
        if [[ $key == CapEff: ]]; then
            (((16#$value >> $1) & 1)) && return 0
            return 1
        fi
    done </proc/self/status
    return 1
}

# hx_privileged VERB: run one backup-privileged.sh verb. Under systemd the job's
# unit grants CAP_DAC_READ_SEARCH with NoNewPrivileges (which also disables
# sudo), so the helper runs directly with that capability; run by hand, the
# backup user has no capabilities and sudo runs the helper as root.
hx_privileged() {
    local verb=$1 helper="${HX_SCRIPTS_DIR_SELF}/backup-privileged.sh"
    if ((EUID == 0)) || hx_has_capability 2; then
        "$helper" "$verb"
    else
        sudo --non-interactive -- "$helper" "$verb"
    fi
}


# ---------------------------------------------------------------- finish ---

# hx_finish_job TYPE RC: remote sync, then retention, for one type. Returns
# the job's final exit code: a failed sync turns success into 5 (partial),
# never into a failure, and never touches local backups.
hx_finish_job() {
    local type=$1 rc=$2
    if [[ -x $HX_SCRIPTS_DIR_SELF/backup-sync.sh ]] && hx_cfg_true remote.enabled; then
        if ! HX_JOB=$HX_JOB HX_QUIET=1 "$HX_SCRIPTS_DIR_SELF/backup-sync.sh" --type "$type" >/dev/null; then
            hx_warn sync "remote sync failed; the local backup is complete and kept" "type=$type"
            if ((rc == 0)); then
                rc=$HX_EXIT_PARTIAL
                HX_STATUS_CAUSE="remote sync failed"
            fi
        fi
    fi
    # Retention in a subshell (lib/retention.sh hx_retention_job), not a new
    # process: asynchronous and waited for, so errexit holds inside it.
    if [[ -x $HX_SCRIPTS_DIR_SELF/backup-retention.sh ]]; then
        (hx_retention_job "$type") >/dev/null &
        wait "$!" || hx_warn retention "retention failed; all backups kept" "type=$type"
    fi
    return "$rc"
}

# ---------------------------------------------------------------- sources ---

# hx_type_arg WHAT TYPE: TYPE, which must name a data source; otherwise a
# usage error (exit 2) that names WHAT (the option or argument).
hx_type_arg() {
    if [[ -z ${2:-} || -z ${HX_SOURCE_MODULE[$2]:-} ]]; then
        echo "$HX_SCRIPT_NAME: $1 needs one of: ${!HX_SOURCE_MODULE[*]} (got '${2:-}')" >&2
        exit "$HX_EXIT_USAGE"
    fi
    printf '%s\n' "$2"
}

# hx_type_option ARGS...: the TYPE of a `--type TYPE` option at the start of ARGS.
hx_type_option() { hx_type_arg --type "${2:-}"; }

# hx_source TYPE VERB ARGS...: run the data-source module's VERB for TYPE
# (hx_<module>_<verb>): dump, content_hasher, restore_test or restore.
hx_source() {
    local type=$1 verb=$2
    shift 2
    local module=${HX_SOURCE_MODULE[$type]:-}
    if [[ -z $module ]]; then
        HX_VERIFY_ERROR="unknown artifact type '$type'"
        hx_error unknown_type "$HX_VERIFY_ERROR"
        return 1
    fi
    "hx_${module}_${verb}" "$@"
}
