#!/usr/bin/env bash
# hx-backup library: logging (key=value or JSON lines, to the job's log,
# stderr and syslog), the audit line, hx_die, and UTC times from builtins.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

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
