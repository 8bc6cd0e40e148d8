#!/usr/bin/env bash
# hx-backup library: constants, logging, the job lifecycle (traps, temp paths, exit), names, the privileged helper, data-source dispatch and the end of a job
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

readonly HX_VERSION="1.0.0"
readonly HX_MANIFEST_FORMAT=1
# The HostConfigFile format this library reads (HOST_CONFIG_FORMAT in render/hostConfig.ts).
readonly HX_CONFIG_FORMAT=1
readonly HX_DEFAULT_CONFIG="/etc/hx-backup/backup.json"
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
HX_TMP_PATHS=()
# Data-source type -> the lib/source module that handles it; each module registers its types.
declare -gA HX_SOURCE_MODULE=()

# ---------------------------------------------------------------- logging ---

# Times from the printf builtin, not a date process per call: a job logs and
# stamps dozens of times, and each fork and exec is milliseconds of its fixed cost.
# hx_utc_into VAR FORMAT [EPOCH]: strftime FORMAT of EPOCH (default now) in UTC.
hx_utc_into() {
    local TZ=UTC0
    printf -v "$1" "%($2)T" "${3:--1}"
}
hx_now() {
    local now
    hx_utc_into now '%Y-%m-%dT%H:%M:%SZ'
    printf '%s\n' "$now"
}
hx_epoch() { printf '%(%s)T\n' -1; }

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

# hx__logval_into VAR VALUE: VALUE as a key="value" log field (one line, quotes escaped).
hx__logval_into() {
    local hx_value=$2
    hx_value=${hx_value//\\/\\\\}
    hx_value=${hx_value//\"/\\\"}
    hx_value=${hx_value//$'\n'/\\n}
    hx_value=${hx_value//$'\r'/\\r}
    hx_value=${hx_value//$'\t'/\\t}
    printf -v "$1" '"%s"' "$hx_value"
}

# hx__log_json LEVEL EVENT MESSAGE [key=value ...]: one JSON line with ECS
# field names (@timestamp, log.level, event.action, event.outcome, host.name,
# service.name, message) and ours under hx.* (job, user and every key=value).
# jq builds it, so any value (quotes, newlines, invalid UTF-8) stays data.
hx__log_json() {
    local level=$1 event=$2 msg=$3
    shift 3
    jq --null-input --compact-output \
        --arg ts "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" --arg level "$level" --arg event "$event" --arg msg "$msg" \
        --arg host "${HX_HOST:-$(hostname)}" --arg job "${HX_JOB:-}" --arg user "${HX_RUN_USER:-}" \
        '($ARGS.positional | map(index("=") as $i | if $i == null or $i == 0 then {} else {(.[:$i]): .[$i + 1:]} end) | add // {}) as $kv
        | {"@timestamp": $ts, log: {level: $level}, message: $msg,
           event: {action: $event, outcome: (if $level == "error" or $kv.result == "failed" then "failure"
                elif ($kv.result // "") == "ok" or ($event | test("(^|_)ok$")) then "success" else "unknown" end)},
           host: {name: $host}, service: {name: "hx-backup"},
           hx: ($kv + {job: $job, user: $user})}' --args "$@" 2>/dev/null
}

# The line format until the config says (a config that cannot be read is
# reported in key=value: its format is not known yet).
HX_LOG_FORMAT=keyvalue

# hx_log LEVEL EVENT MESSAGE [key=value ...]: one line in logging.format
# (key=value, or JSON lines), to the job's log, stderr and syslog.
hx_log() {
    local level=$1 event=$2 msg=$3
    shift 3
    local line kv ts value
    if [[ ${HX_LOG_FORMAT:-keyvalue} == json ]] && line=$(hx__log_json "$level" "$event" "$msg" "$@"); then
        :
    else
        hx_utc_into ts '%Y-%m-%dT%H:%M:%SZ'
        hx__logval_into value "$msg"
        line="ts=$ts level=$level job=$HX_JOB event=$event user=$HX_RUN_USER msg=$value"
        for kv in "$@"; do
            hx__logval_into value "${kv#*=}"
            line+=" ${kv%%=*}=$value"
        done
    fi
    if [[ -n $HX_LOG_FILE ]]; then
        printf '%s\n' "$line" >>"$HX_LOG_FILE" 2>/dev/null || true
    fi
    if [[ -z ${HX_QUIET:-} || $level != info ]]; then
        printf '%s\n' "$line" >&2
    fi
    logger --tag hx-backup --id="$$" -- "$line" >/dev/null 2>&1 || true
}
hx_info() { hx_log info "$@"; }
hx_warn() { hx_log warning "$@"; }
hx_error() { hx_log error "$@"; }

# Audit line: who (user, sudo user), what (invocation), when (ts), result.
hx_audit() {
    local what=$1 result=$2
    shift 2
    hx_log audit "$what" "audit" "who=$HX_RUN_USER" "sudo_user=${SUDO_USER:-}" "what=$HX_INVOCATION" "result=$result" "$@"
}

# hx_die CODE MESSAGE: log, record the cause, exit.
hx_die() {
    local code=$1
    shift
    HX_STATUS_CAUSE=$*
    hx_error failed "$*" "exit_code=$code"
    exit "$code"
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
    trap 'hx__on_exit' EXIT
    trap 'hx__on_err "$LINENO" "$BASH_COMMAND"' ERR
    trap 'exit 143' TERM
    trap 'exit 130' INT
    hx_load_config
    hx__open_log
}

hx__on_err() {
    local line=$1 cmd=$2
    if [[ -z $HX_STATUS_CAUSE ]]; then
        HX_STATUS_CAUSE="command failed at line $line: $cmd"
    fi
}

# Removes every registered temp path (hx_tmp_register).
hx_tmp_cleanup() {
    local p
    for p in "${HX_TMP_PATHS[@]}"; do
        [[ -n $p && -e $p ]] && rm -rf -- "$p"
    done
    return 0
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

hx_tmp_register() { HX_TMP_PATHS+=("$1"); }

# ------------------------------------------------------------------ names ---

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
    if [[ -x $HX_SCRIPTS_DIR_SELF/backup-retention.sh ]]; then
        HX_JOB=$HX_JOB HX_QUIET=1 "$HX_SCRIPTS_DIR_SELF/backup-retention.sh" --type "$type" >/dev/null || hx_warn retention "retention failed; all backups kept" "type=$type"
    fi
    return "$rc"
}

# ---------------------------------------------------------------- sources ---

# hx_type_option ARGS...: the TYPE of a `--type TYPE` option at the start of
# ARGS, which must name a data source; otherwise a usage error (exit 2).
hx_type_option() {
    if [[ -z ${2:-} || -z ${HX_SOURCE_MODULE[$2]:-} ]]; then
        echo "$HX_SCRIPT_NAME: --type needs one of: ${!HX_SOURCE_MODULE[*]} (got '${2:-}')" >&2
        exit "$HX_EXIT_USAGE"
    fi
    printf '%s\n' "$2"
}

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
