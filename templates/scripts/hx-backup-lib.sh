#!/usr/bin/env bash
# hx-backup shared library. Sourced by every hx-backup script from its own
# directory; never executed directly.
#
# Exit codes (all scripts):
#   0  success
#   1  failure (the backup/verification/restore did not complete)
#   2  usage or configuration error (bad arguments, unreadable/corrupt config,
#      missing or malformed key)
#   3  another run of the same job holds the lock; nothing was done
#   4  verification failed (checksum, MAC, structure or restore test)
#   5  partial success: the local backup is complete and verified, but the
#      remote sync failed (it is retried by the next run)
#
# Config: $HX_BACKUP_CONFIG, default /etc/hx-backup/backup.json (the rendered
# HostConfigFile, see render/hostConfig.ts). Read with jq only, never evaluated.
#
# Secrets (key halves, passwords, S3 credentials) never appear on argv, in
# logs or in metrics: keys are read with the `read` builtin and passed to
# openssl on a file descriptor; the HMAC is built from bash builtins.
#
# shellcheck disable=SC2034  # HX_* globals set here are read by the scripts that source this library

if [[ -n ${HX_LIB_LOADED:-} ]]; then
    return 0
fi
HX_LIB_LOADED=1

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

HX_SCRIPT_NAME=$(basename -- "$0")
HX_STEM=${HX_SCRIPT_NAME%.sh}
HX_JOB=${HX_JOB:-$HX_STEM}
HX_LOG_FILE=""
HX_STATUS_CAUSE=""
HX_CONFIG_FILE=""
HX_RUN_USER=$(id -un 2>/dev/null || echo "uid-$EUID")
HX_INVOCATION="$HX_SCRIPT_NAME"
HX_TMP_PATHS=()

# ---------------------------------------------------------------- logging ---

hx_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
hx_epoch() { date -u +%s; }

# Escape a value for a key="value" log field (one line, quotes escaped).
hx__logval() {
    local v=$1
    v=${v//\\/\\\\}
    v=${v//\"/\\\"}
    v=${v//$'\n'/\\n}
    v=${v//$'\r'/\\r}
    v=${v//$'\t'/\\t}
    printf '"%s"' "$v"
}

# hx_log LEVEL EVENT MESSAGE [key=value ...]
hx_log() {
    local level=$1 event=$2 msg=$3
    shift 3
    local line kv
    line="ts=$(hx_now) level=$level job=$HX_JOB event=$event user=$HX_RUN_USER msg=$(hx__logval "$msg")"
    for kv in "$@"; do
        line+=" ${kv%%=*}=$(hx__logval "${kv#*=}")"
    done
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

# ----------------------------------------------------------------- config ---

# backup.json is the rendered HostConfigFile (render/hostConfig.ts): the render
# writes every field the scripts read, so a missing or null field is a config
# error (exit 2, naming the field), never a silent default. hx_load_config
# flattens it once (one jq run); every read below is then a table look-up.
#
# A PATH is dotted field names, e.g. remote.retries. In hx_cfg_into, `[]`
# stands for every element of a list: postgresql.databases[].name.
# HX_CFG maps each path (list indexes are segments: drift.watch.0) to its value
# (strings raw, numbers and booleans as JSON, lists and objects their length);
# HX_CFG_TYPE maps it to its jq type.
declare -gA HX_CFG=() HX_CFG_TYPE=()

# hx__cfg_flatten: fill HX_CFG and HX_CFG_TYPE from $HX_CONFIG_FILE. Fails on
# unreadable or malformed JSON.
hx__cfg_flatten() {
    local -a cells=()
    mapfile -d '' -t cells < <(jq --join-output 'paths as $p | getpath($p) as $v | ($v | type) as $t
        | ($p | map(tostring) | join(".")), "\u0000", $t, "\u0000",
          (if $t == "string" then $v elif $t == "array" or $t == "object" then ($v | length | tostring) else ($v | tojson) end), "\u0000"' \
        "$HX_CONFIG_FILE" 2>/dev/null && printf 'ok\0' || printf 'failed\0')
    # The last cell says whether jq read the whole file (errexit would end the substitution before a status).
    local status=${cells[-1]} i
    unset 'cells[-1]'
    [[ $status == ok ]] && ((${#cells[@]} % 3 == 0)) || return 1
    HX_CFG=() HX_CFG_TYPE=()
    for ((i = 0; i < ${#cells[@]}; i += 3)); do
        HX_CFG_TYPE[${cells[i]}]=${cells[i + 1]}
        HX_CFG[${cells[i]}]=${cells[i + 2]}
    done
}

hx__cfg_missing() {
    HX_CONFIG_BROKEN=1
    hx_die "$HX_EXIT_USAGE" "config: $HX_CONFIG_FILE has no $1 ($2); re-render it with pulumi up"
}

# hx__cfg_scalar PATH: fail unless PATH holds a string, number or boolean.
hx__cfg_scalar() {
    case ${HX_CFG_TYPE[$1]:-missing} in
        string | number | boolean) ;;
        *) hx__cfg_missing "$1" "expected a value, found ${HX_CFG_TYPE[$1]:-nothing}" ;;
    esac
}

# hx__cfg_expand ARRAY PATH: the concrete paths of PATH into ARRAY, each `[]`
# replaced by every index of that list.
hx__cfg_expand() {
    local -n hx__cfg_paths=$1
    local -a todo=("$2")
    local path list i
    hx__cfg_paths=()
    while ((${#todo[@]} > 0)); do
        path=${todo[0]}
        todo=("${todo[@]:1}")
        if [[ $path != *'[]'* ]]; then
            hx__cfg_paths+=("$path")
            continue
        fi
        list=${path%%'[]'*}
        [[ ${HX_CFG_TYPE[$list]:-} == array ]] || hx__cfg_missing "$list" "expected a list, found ${HX_CFG_TYPE[$list]:-nothing}"
        for ((i = 0; i < HX_CFG[$list]; i++)); do
            todo+=("$list.$i${path#*'[]'}")
        done
    done
}

# hx_cfg_read VAR PATH: the scalar at PATH into VAR.
hx_cfg_read() {
    local -n hx__cfg_var=$1
    hx__cfg_scalar "$2"
    hx__cfg_var=${HX_CFG[$2]}
}

# hx_cfg_into ARRAY PATH...: the scalars at every PATH, in order, into ARRAY.
hx_cfg_into() {
    local -n hx__cfg_arr=$1
    shift
    local -a concrete=()
    local path leaf
    hx__cfg_arr=()
    for path in "$@"; do
        hx__cfg_expand concrete "$path"
        for leaf in "${concrete[@]}"; do
            hx__cfg_scalar "$leaf"
            hx__cfg_arr+=("${HX_CFG[$leaf]}")
        done
    done
}

# hx_cfg_true PATH: succeed if the boolean at PATH is true.
hx_cfg_true() {
    [[ ${HX_CFG_TYPE[$1]:-} == boolean ]] || hx__cfg_missing "$1" "expected true or false, found ${HX_CFG_TYPE[$1]:-nothing}"
    [[ ${HX_CFG[$1]} == true ]]
}

# hx_cfg_section NAME: succeed if the data source NAME is configured on this
# host (an object); fail if it is null (the host does not have that role).
hx_cfg_section() {
    case ${HX_CFG_TYPE[$1]:-missing} in
        object) return 0 ;;
        null) return 1 ;;
        *) hx__cfg_missing "$1" "expected an object or null, found ${HX_CFG_TYPE[$1]:-nothing}" ;;
    esac
}

# hx_cfg_json PATH: the value at PATH as compact JSON (for a manifest).
hx_cfg_json() {
    [[ -n ${HX_CFG_TYPE[$1]:-} && ${HX_CFG_TYPE[$1]} != null ]] || hx__cfg_missing "$1" "expected a value, found ${HX_CFG_TYPE[$1]:-nothing}"
    jq --compact-output --arg path "$1" 'getpath($path | split(".") | map(tonumber? // .))' "$HX_CONFIG_FILE"
}

# Fallback locations used only when the config itself cannot be read.
hx__fallback_dirs() {
    HX_LOGS=${HX_BACKUP_FALLBACK_LOGS:-/var/log/hx-backups}
    HX_TEXTFILE=${HX_BACKUP_FALLBACK_TEXTFILE:-/var/lib/prometheus/node-exporter}
}

# hx_load_config: locate, check and load the config into HX_CFG and HX_* variables.
# When run through sudo, HX_BACKUP_CONFIG is ignored.
hx_load_config() {
    if [[ -n ${SUDO_USER:-} ]]; then
        HX_CONFIG_FILE=$HX_DEFAULT_CONFIG
    else
        HX_CONFIG_FILE=${HX_BACKUP_CONFIG:-$HX_DEFAULT_CONFIG}
    fi
    # Where to log and export the failure until the config says otherwise.
    hx__fallback_dirs
    local problem=""
    if [[ ! -r $HX_CONFIG_FILE ]]; then
        problem="config file not readable: $HX_CONFIG_FILE"
    elif ! hx__cfg_flatten || [[ ${HX_CFG[format]:-} != "$HX_CONFIG_FORMAT" ]]; then
        problem="config file is corrupt or has an unsupported format (want format $HX_CONFIG_FORMAT): $HX_CONFIG_FILE"
    fi
    if [[ -n $problem ]]; then
        hx__open_log
        HX_CONFIG_BROKEN=1
        hx_die "$HX_EXIT_USAGE" "$problem"
    fi
    # Logs first, so a config error below is logged where the job's log is.
    [[ ${HX_CFG_TYPE[paths.logs]:-} == string ]] && HX_LOGS=${HX_CFG[paths.logs]}
    [[ ${HX_CFG_TYPE[paths.textfile]:-} == string ]] && HX_TEXTFILE=${HX_CFG[paths.textfile]}
    hx__open_log
    local -a cfgv=()
    hx_cfg_into cfgv paths.storage paths.logs paths.textfile paths.locks paths.keyFile paths.keyring paths.scripts encryption.currentKeyId host stack
    HX_STORAGE=${cfgv[0]}
    HX_LOGS=${cfgv[1]}
    HX_TEXTFILE=${cfgv[2]}
    HX_LOCKS=${cfgv[3]}
    HX_KEYFILE=${cfgv[4]}
    HX_KEYRING=${cfgv[5]}
    HX_SCRIPTS=${cfgv[6]}
    HX_KEY_ID=${cfgv[7]}
    HX_HOST=${cfgv[8]}
    HX_STACK=${cfgv[9]}
    if [[ -z $HX_STORAGE || -z $HX_LOGS || -z $HX_TEXTFILE ]]; then
        HX_CONFIG_BROKEN=1
        hx__fallback_dirs
        hx_die "$HX_EXIT_USAGE" "config: paths.storage, paths.logs and paths.textfile must not be empty"
    fi
    if [[ ! $HX_KEY_ID =~ ^[A-Za-z0-9._-]+$ ]]; then
        hx_die "$HX_EXIT_USAGE" "config: encryption.currentKeyId is not a valid key id"
    fi
    local -a scheme=()
    hx_cfg_into scheme encryption.cipher encryption.mac
    if [[ ${scheme[0]} != aes-256-cbc || ${scheme[1]} != hmac-sha256 ]]; then
        hx_die "$HX_EXIT_USAGE" "config: encryption ${scheme[0]} with ${scheme[1]} is not what this library implements (aes-256-cbc with hmac-sha256)"
    fi
    # The schedule interval the alert rules compare against, per type: the
    # shortest maxIntervalSeconds of this host's jobs of that type.
    hx_cfg_into HX_JOB_NAMES 'jobs[].name'
    hx_cfg_into HX_JOB_TYPES 'jobs[].type'
    hx_cfg_into HX_JOB_INTERVALS 'jobs[].maxIntervalSeconds'
    HX_INTERVAL_OF=()
    local i type
    for i in "${!HX_JOB_TYPES[@]}"; do
        type=${HX_JOB_TYPES[i]}
        if [[ -z ${HX_INTERVAL_OF[$type]:-} ]] || ((HX_JOB_INTERVALS[i] < HX_INTERVAL_OF[$type])); then
            HX_INTERVAL_OF[$type]=${HX_JOB_INTERVALS[i]}
        fi
    done
}
# This host's jobs (name, type, maxIntervalSeconds by index) and the shortest
# interval per type, loaded by hx_load_config.
HX_JOB_NAMES=() HX_JOB_TYPES=() HX_JOB_INTERVALS=()
declare -gA HX_INTERVAL_OF=()

hx__open_log() {
    if mkdir -p -- "$HX_LOGS" 2>/dev/null && [[ -w $HX_LOGS ]]; then
        HX_LOG_FILE="$HX_LOGS/$HX_STEM.log"
    else
        HX_LOG_FILE=""
    fi
}

# hx_init [JOB]: common start of every job script.
hx_init() {
    hx_init_common "$@"
    # Read now: the exit hook that exports it must not fail on the config.
    hx_cfg_read HX_STORAGE_QUOTA storageQuotaBytes
    HX_HOST_METRICS=1
    mkdir -p -- "$HX_STORAGE" "$HX_LOCKS"
    hx_audit start started
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

# ---------------------------------------------------------------- locking ---

# hx_lock NAME: take the job lock or exit 3. A lock whose recorded holder is
# dead (killed run, possibly with orphaned children still holding the fd) is
# broken by replacing the lock file.
hx_lock() {
    local name=$1
    local file="$HX_LOCKS/$name.lock" guard holder_pid holder_start
    mkdir -p -- "$HX_LOCKS"
    exec {guard}>>"$file.guard"
    flock --timeout 30 "$guard" || hx_die "$HX_EXIT_LOCKED" "could not take lock guard $file.guard"
    exec {HX_LOCK_FD}>>"$file"
    if ! flock --nonblock "$HX_LOCK_FD"; then
        read -r holder_pid holder_start <"$file" || true
        if [[ -n ${holder_pid:-} ]] && hx__pid_alive "$holder_pid" "${holder_start:-}"; then
            exec {guard}>&-
            HX_STATUS_CAUSE="locked by running pid $holder_pid"
            hx_log warning locked "another run of $name is in progress (pid $holder_pid); exiting with code $HX_EXIT_LOCKED" "lock=$file"
            exit "$HX_EXIT_LOCKED"
        fi
        hx_warn stale_lock "breaking stale lock left by dead pid ${holder_pid:-unknown}" "lock=$file"
        exec {HX_LOCK_FD}>&-
        rm -f -- "$file"
        exec {HX_LOCK_FD}>>"$file"
        flock --nonblock "$HX_LOCK_FD" || hx_die "$HX_EXIT_LOCKED" "could not take lock $file"
    fi
    printf '%s %s\n' "$$" "$(hx__pid_start "$$")" >"$file"
    exec {guard}>&-
}

hx__pid_start() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    local -a fields
    read -r -a fields <<<"$stat"
    printf '%s' "${fields[19]:-}"
}

hx__pid_alive() {
    local pid=$1 start=$2
    [[ -d /proc/$pid ]] || return 1
    [[ -z $start || $(hx__pid_start "$pid") == "$start" ]]
}

# ------------------------------------------------------------------- keys ---

# hx_key_load KEYID: set HX_KEY_ENC / HX_KEY_MAC (hex, never exported).
hx_key_load() {
    local id=$1 file line
    [[ $id =~ ^[A-Za-z0-9._-]+$ ]] || {
        HX_KEY_ERROR="invalid key id"
        return 1
    }
    file="$HX_KEYRING/$id.key"
    if [[ ! -r $file && $id == "$HX_KEY_ID" && -n $HX_KEYFILE ]]; then
        file=$HX_KEYFILE
    fi
    if [[ ! -r $file ]]; then
        HX_KEY_ERROR="key '$id' not found or not readable ($file)"
        return 1
    fi
    line=""
    IFS= read -r line <"$file" || true
    line=${line%$'\r'}
    if [[ ! $line =~ ^[0-9a-fA-F]{128}$ ]]; then
        HX_KEY_ERROR="key file for '$id' is malformed (expected 128 hex characters)"
        return 1
    fi
    HX_KEY_ENC=${line:0:64}
    HX_KEY_MAC=${line:64:64}
    HX_KEY_LOADED_ID=$id
}

# hx_hmac_hex KEYHEX < message: HMAC-SHA256 (RFC 2104) without putting the
# key on argv: the padded key bytes are produced by the printf builtin.
hx_hmac_hex() {
    local key=$1 ipad="" opad="" i b inner
    if ((${#key} > 128)); then
        return 1
    fi
    for ((i = 0; i < 64; i++)); do
        b=0
        if ((i * 2 < ${#key})); then
            b=$((16#${key:i*2:2}))
        fi
        printf -v ipad '%s\\x%02x' "$ipad" $((b ^ 0x36))
        printf -v opad '%s\\x%02x' "$opad" $((b ^ 0x5c))
    done
    inner=$({
        printf '%b' "$ipad"
        cat
    } | openssl dgst -sha256 -r)
    inner=${inner%% *}
    local inner_esc=""
    for ((i = 0; i < 64; i += 2)); do
        inner_esc+="\\x${inner:i:2}"
    done
    local out
    out=$({
        printf '%b' "$opad"
        printf '%b' "$inner_esc"
    } | openssl dgst -sha256 -r)
    printf '%s\n' "${out%% *}"
}

# ------------------------------------------------------------- pipeline ---

# hx_compression_method SETTING: the method for compression.method (auto: zstd if installed).
hx_compression_method() {
    case $1 in
        zstd) printf zstd ;;
        gzip) printf gzip ;;
        *) if command -v zstd >/dev/null 2>&1; then printf zstd; else printf gzip; fi ;;
    esac
}

hx_compress() {
    local method=$1 level=$2 threads=$3
    case $method in
        zstd) zstd --quiet --stdout "--threads=$threads" "-$level" ;;
        gzip)
            ((level > 9)) && level=9
            gzip --stdout "-$level"
            ;;
    esac
}

hx_decompress() {
    case $1 in
        zstd) zstd --quiet --decompress --stdout ;;
        gzip) gzip --decompress --stdout ;;
        *) return 1 ;;
    esac
}

hx_encrypt() {
    openssl enc -aes-256-cbc -salt -pbkdf2 -md sha256 -iter "$HX_PBKDF2_ITER" -pass fd:3 3< <(printf '%s\n' "$HX_KEY_ENC")
}

hx_decrypt() {
    local iter=$1
    openssl enc -d -aes-256-cbc -pbkdf2 -md sha256 -iter "$iter" -pass fd:3 3< <(printf '%s\n' "$HX_KEY_ENC")
}

hx_tool_version() {
    case $1 in
        zstd) zstd --version 2>/dev/null | head -n 1 ;;
        gzip) gzip --version 2>/dev/null | head -n 1 ;;
        openssl) openssl version 2>/dev/null ;;
        tar) tar --version 2>/dev/null | head -n 1 ;;
        *) "$1" --version 2>/dev/null | head -n 1 ;;
    esac
}

# hx__count_to FILE: copy stdin to stdout, writing the byte count to FILE.
hx__count_to() {
    local out=$1 stats
    { stats=$(LC_ALL=C dd bs=128K 2>&1 1>&3 3>&-); } 3>&1 || return 1
    stats=${stats##*$'\n'}
    [[ $stats =~ ^([0-9]+)\ bytes ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}" >"$out"
}

# Content hash of a pg_dump custom-format stream, ignoring the dump timestamp
# in its header, so two dumps of an unchanged database hash alike.
# hx__hash_pgcustom SIZEFILE < stream: prints the hash, writes the size.
hx__hash_pgcustom() {
    local sizef=$1
    local -a hdr
    read -r -a hdr < <(dd bs=1 count=11 status=none | od -An -v -tu1)
    local prefix="" x
    for x in "${hdr[@]}"; do printf -v prefix '%s\\x%02x' "$prefix" "$x"; done
    if [[ ${#hdr[@]} -ne 11 || ${hdr[0]} != 80 || ${hdr[1]} != 71 || ${hdr[2]} != 68 || ${hdr[3]} != 77 || ${hdr[4]} != 80 ]]; then
        { printf '%b' "$prefix"; hx__count_to "$sizef.rest"; } | openssl dgst -sha256 -r
        printf '%s\n' "$(($(<"$sizef.rest") + ${#hdr[@]}))" >"$sizef"
        return
    fi
    local vmaj=${hdr[5]} vmin=${hdr[6]} isz=${hdr[8]} complen tslen
    if ((vmaj > 1 || vmin >= 15)); then complen=1; else complen=$((1 + isz)); fi
    tslen=$((7 * (1 + isz)))
    {
        printf '%b' "$prefix"
        dd bs=1 count="$complen" status=none
        dd bs=1 count="$tslen" status=none of=/dev/null
        hx__count_to "$sizef.rest"
    } | openssl dgst -sha256 -r
    printf '%s\n' "$(($(<"$sizef.rest") + 11 + complen + tslen))" >"$sizef"
}

# hx__hash_raw SIZEFILE < stream: prints the sha256, writes the size.
hx__hash_raw() { hx__count_to "$1" | openssl dgst -sha256 -r; }

# hx__hash_tee SIZEFILE CHECKOUT CONSUMER...: sha256 and size of stdin while
# CONSUMER (a structure checker) reads the same bytes; its output goes to
# CHECKOUT.
hx__hash_tee() {
    local sizef=$1 checkout=$2 p rc=0
    shift 2
    mkfifo -- "$checkout.fifo"
    hx__hash_raw "$sizef" <"$checkout.fifo" &
    p=$!
    local -a st
    set +e
    tee -- "$checkout.fifo" | "$@" >"$checkout" 2>&1
    st=("${PIPESTATUS[@]}")
    set -e
    hx__fifo_release "$checkout.fifo"
    wait "$p" || rc=$?
    ((st[0] == 0 && st[1] == 0 && rc == 0))
}

# Unblock a FIFO reader that may never have seen a writer, then let it see EOF.
hx__fifo_release() {
    local f=$1 fd
    if [[ -p $f ]]; then
        exec {fd}<>"$f"
        exec {fd}>&-
    fi
}

# hx_artifact_begin TYPE TARGET STEM SUFFIX: choose the artifact's name
# (<STEM>-<UTC stamp>.<SUFFIX>) and create its private work directory.
# Sets HX_OUT_DIR, HX_OUT_BASE, HX_OUT_ARTIFACT, HX_OUT_PARTIAL, HX_OUT_WORK,
# HX_OUT_METHOD, HX_OUT_LEVEL, HX_OUT_THREADS, HX_OUT_CEXT.
hx_artifact_begin() {
    local type=$1 target=$2 stem=$3 suffix=$4
    HX_OUT_DIR="$HX_STORAGE/$type/$target"
    mkdir -p -- "$HX_OUT_DIR"
    local -a compression=()
    hx_cfg_into compression compression.method compression.level compression.threads
    HX_OUT_METHOD=$(hx_compression_method "${compression[0]}")
    HX_OUT_LEVEL=${compression[1]}
    HX_OUT_THREADS=${compression[2]}
    HX_OUT_CEXT=zst
    [[ $HX_OUT_METHOD == gzip ]] && HX_OUT_CEXT=gz
    suffix=${suffix//@CEXT@/$HX_OUT_CEXT}
    # Names sort by time; two runs within one second wait for the next one.
    local stamp
    while :; do
        stamp=$(date -u +%Y%m%dT%H%M%SZ)
        HX_OUT_BASE="$stem-$stamp"
        [[ -e $HX_OUT_DIR/$HX_OUT_BASE.manifest.json || -e $HX_OUT_DIR/$HX_OUT_BASE.$suffix ]] || break
        sleep 0.3
    done
    HX_OUT_ARTIFACT="$HX_OUT_BASE.$suffix"
    HX_OUT_WORK="$HX_OUT_DIR/.$HX_OUT_BASE.$$.work.partial"
    mkdir -m 0700 -- "$HX_OUT_WORK"
    hx_tmp_register "$HX_OUT_WORK"
    HX_OUT_PARTIAL="$HX_OUT_DIR/.$HX_OUT_ARTIFACT.$$.partial"
    hx_tmp_register "$HX_OUT_PARTIAL"
}

# hx_pipe_to FILE WORK HASHMODE -- COMMAND...
# After hx_artifact_begin. Streams COMMAND's stdout: compress -> encrypt ->
# FILE (fsynced), while side branches take the sha256 of the stored bytes
# and decompress the compressed stream again for the plaintext content hash
# and size (for HASHMODE redis or tar also a structure check). Hashing the
# decompressed copy proves the compressed stream decodes, and tees the
# small compressed stream instead of the large plaintext one. Plaintext never
# touches the disk. WORK (an empty private directory) receives the results:
# WORK/result is "plain_size stored_size stored_sha256 content_sha256";
# WORK/check the checker's output. Returns non-zero, with HX_STATUS_CAUSE,
# on failure (FILE is then removed).
hx_pipe_to() {
    local file=$1 work=$2 hashmode=$3
    shift 3
    [[ ${1:-} == -- ]] && shift
    mkfifo -- "$work/compressed" "$work/cipher"
    local hasher=hx__hash_raw
    [[ $hashmode == pgcustom ]] && hasher=hx__hash_pgcustom
    local p1 p3
    case $hashmode in
        redis) { hx_decompress "$HX_OUT_METHOD" <"$work/compressed" | hx__hash_tee "$work/size" "$work/check" redis-check-rdb /dev/stdin >"$work/plain.sha"; } & ;;
        tar) { hx_decompress "$HX_OUT_METHOD" <"$work/compressed" | hx__hash_tee "$work/size" "$work/check" tar --list --ignore-zeros --file=- >"$work/plain.sha"; } & ;;
        *) { hx_decompress "$HX_OUT_METHOD" <"$work/compressed" | "$hasher" "$work/size" >"$work/plain.sha"; } & ;;
    esac
    p1=$!
    openssl dgst -sha256 -r <"$work/cipher" >"$work/cipher.sha" &
    p3=$!
    local -a st
    set +e
    "$@" | hx_compress "$HX_OUT_METHOD" "$HX_OUT_LEVEL" "$HX_OUT_THREADS" | tee -- "$work/compressed" | hx_encrypt | tee -- "$work/cipher" >"$file"
    st=("${PIPESTATUS[@]}")
    set -e
    hx__fifo_release "$work/compressed"
    hx__fifo_release "$work/cipher"
    local r1=0 r3=0
    wait "$p1" || r1=$?
    wait "$p3" || r3=$?
    local names=(source compress tee encrypt write) i
    for i in "${!st[@]}"; do
        if ((st[i] != 0)); then
            HX_STATUS_CAUSE="pipeline stage '${names[i]}' failed with status ${st[i]}"
            [[ -n ${HX_SOURCE_ERROR_FILE:-} && -s $HX_SOURCE_ERROR_FILE ]] && HX_STATUS_CAUSE+=": $(tail -c 400 "$HX_SOURCE_ERROR_FILE" | tr '\n' ' ')"
            rm -f -- "$file"
            return 1
        fi
    done
    if ((r1 != 0 || r3 != 0)); then
        case $hashmode in
            redis) HX_STATUS_CAUSE="redis-check-rdb rejected the RDB stream: $(tail -n 3 "$work/check" 2>/dev/null | tr '\n' ' ')" ;;
            tar) HX_STATUS_CAUSE="the archive stream is not a valid tar: $(tail -n 3 "$work/check" 2>/dev/null | tr '\n' ' ')" ;;
            *) HX_STATUS_CAUSE="hashing stage failed (decompressed copy=$r1 stored=$r3)" ;;
        esac
        rm -f -- "$file"
        return 1
    fi
    sync --data -- "$file" || {
        HX_STATUS_CAUSE="fsync of $file failed"
        rm -f -- "$file"
        return 1
    }
    local plain_size stored_size stored_sha content_sha
    plain_size=$(<"$work/size")
    stored_size=$(stat --format=%s -- "$file")
    stored_sha=$(<"$work/cipher.sha")
    content_sha=$(<"$work/plain.sha")
    stored_sha=${stored_sha%% *}
    content_sha=${content_sha%% *}
    [[ $plain_size =~ ^[0-9]+$ && $stored_sha =~ ^[0-9a-f]{64}$ && $content_sha =~ ^[0-9a-f]{64}$ ]] || {
        HX_STATUS_CAUSE="could not read pipeline hashes"
        rm -f -- "$file"
        return 1
    }
    printf '%s %s %s %s\n' "$plain_size" "$stored_size" "$stored_sha" "$content_sha" >"$work/result"
}

# hx_store TYPE TARGET STEM EXT HASHMODE -- COMMAND...
# One artifact from one stream (hx_artifact_begin + hx_pipe_to). Sets the
# HX_OUT_* variables hx_commit_artifact reads. Returns non-zero (with
# HX_STATUS_CAUSE) on failure.
hx_store() {
    local type=$1 target=$2 stem=$3 ext=$4 hashmode=$5
    shift 5
    [[ ${1:-} == -- ]] && shift
    hx_artifact_begin "$type" "$target" "$stem" "$ext.@CEXT@.enc"
    hx_pipe_to "$HX_OUT_PARTIAL" "$HX_OUT_WORK" "$hashmode" -- "$@" || return 1
    read -r HX_OUT_PLAIN_SIZE HX_OUT_STORED_SIZE HX_OUT_STORED_SHA HX_OUT_CONTENT_SHA <"$HX_OUT_WORK/result"
    HX_OUT_REDIS_KEYS=""
    HX_OUT_TAR_ENTRIES=""
    if [[ $hashmode == redis ]]; then
        HX_OUT_REDIS_KEYS=$(sed -n 's/^\[info\] \([0-9]*\) keys read.*/\1/p' "$HX_OUT_WORK/check" | head -n 1)
    elif [[ $hashmode == tar ]]; then
        HX_OUT_TAR_ENTRIES=$(grep --count . "$HX_OUT_WORK/check" || true)
    fi
}

# hx_pack_parts PART...: after hx_artifact_begin and one hx_pipe_to per part
# (FILE $HX_OUT_WORK/parts/PART, results in $HX_OUT_WORK/PART.d), pack the
# encrypted parts into one uncompressed tar as the artifact. The content hash
# covers every part's name and content hash, so dedup still works. Sets the
# HX_OUT_* variables hx_commit_artifact reads, and HX_OUT_PARTS_JSON.
hx_pack_parts() {
    local name plain stored ssha csha total=0 index=""
    local -a rows=()
    for name in "$@"; do
        read -r plain stored ssha csha <"$HX_OUT_WORK/$name.d/result"
        total=$((total + plain))
        index+="$name $csha"$'\n'
        rows+=("$(jq --null-input --compact-output --arg n "$name" --argjson p "$plain" --argjson s "$stored" --arg ss "$ssha" --arg cs "$csha" \
            '{name: $n, sizes: {plain: $p, stored: $s}, sha256: {stored: $ss, content: $cs}}')")
    done
    # --remove-files: each part leaves the work directory once packed, so
    # the peak disk use stays near one copy of the artifact.
    if ! tar --create --file="$HX_OUT_PARTIAL" --directory="$HX_OUT_WORK/parts" --format=posix --sort=name --remove-files \
        --mtime=@0 --owner=0 --group=0 --numeric-owner --pax-option=delete=atime,delete=ctime -- "$@" 2>"$HX_OUT_WORK/tar.err"; then
        HX_STATUS_CAUSE="packing the parts failed: $(head -c 300 "$HX_OUT_WORK/tar.err" | tr '\n' ' ')"
        return 1
    fi
    sync --data -- "$HX_OUT_PARTIAL" || {
        HX_STATUS_CAUSE="fsync of $HX_OUT_PARTIAL failed"
        return 1
    }
    local s
    s=$(openssl dgst -sha256 -r <"$HX_OUT_PARTIAL")
    HX_OUT_STORED_SHA=${s%% *}
    s=$(printf '%s' "$index" | openssl dgst -sha256 -r)
    HX_OUT_CONTENT_SHA=${s%% *}
    HX_OUT_STORED_SIZE=$(stat --format=%s -- "$HX_OUT_PARTIAL")
    HX_OUT_PLAIN_SIZE=$total
    HX_OUT_PARTS_JSON=$(printf '%s\n' "${rows[@]}" | jq --slurp --compact-output .)
    HX_OUT_REDIS_KEYS=""
    HX_OUT_TAR_ENTRIES=""
}

# ------------------------------------------------------------- manifests ---

# hx_manifest_sign FILE_IN FILE_OUT: add .mac to a manifest body.
hx_manifest_sign() {
    local in=$1 out=$2 mac
    mac=$(jq --compact-output --sort-keys 'del(.mac)' "$in" | hx_hmac_hex "$HX_KEY_MAC")
    jq --sort-keys --arg mac "$mac" --arg kid "$HX_KEY_LOADED_ID" '.mac = {alg: "hmac-sha256", keyId: $kid, value: $mac}' "$in" >"$out"
}

# hx_previous_manifest DIR: newest committed manifest in DIR (or nothing).
hx_previous_manifest() {
    local dir=$1
    local -a mlist=()
    shopt -s nullglob
    mlist=("$dir"/*.manifest.json)
    shopt -u nullglob
    ((${#mlist[@]} > 0)) || return 0
    printf '%s\n' "${mlist[@]}" | sort | tail -n 1
}

# hx_commit_artifact TYPE TARGET SOURCE_JSON CONTENT_JSON
# After hx_store: dedup against the previous artifact, write + sign the
# manifest, verify, then rename artifact and manifest into place.
# Sets HX_OUT_MANIFEST, HX_OUT_DEDUP_SAVED.
hx_commit_artifact() {
    local type=$1 target=$2 source_json=$3 content_json=$4
    local dir=$HX_OUT_DIR base=$HX_OUT_BASE
    local prev ref_artifact="" ref_manifest="" artifact=$HX_OUT_ARTIFACT stored_sha=$HX_OUT_STORED_SHA stored_size=$HX_OUT_STORED_SIZE
    HX_OUT_DEDUP_SAVED=0
    prev=$(hx_previous_manifest "$dir")
    if [[ -n $prev ]] && hx_verify_manifest_mac "$prev" >/dev/null 2>&1; then
        # Only reuse an artifact made with the current key and compression,
        # since the new manifest describes how to open it.
        local pc pa ps psha pk pm
        read -r pc pa ps psha pk pm < <(jq --raw-output '"\(.sha256.content // "-") \(.artifact // "-") \(.sizes.stored // "-") \(.sha256.stored // "-") \(.encryption.keyId // "-") \(.compression.method // "-")"' "$prev")
        if [[ $pc == "$HX_OUT_CONTENT_SHA" && -n $pa && $pa != */* && -f $dir/$pa && $pk == "$HX_KEY_ID" && $pm == "$HX_OUT_METHOD" ]] \
            && [[ $(stat --format=%s -- "$dir/$pa") == "$ps" ]] && hx_check_stored "$prev" "$dir/$pa"; then
            ref_artifact=$pa
            ref_manifest=$(basename -- "$prev")
            artifact=$pa
            stored_sha=$psha
            stored_size=$ps
            HX_OUT_DEDUP_SAVED=$HX_OUT_STORED_SIZE
            rm -f -- "$HX_OUT_PARTIAL"
            hx_info dedup "content unchanged since $ref_manifest; not storing a new copy" "type=$type" "target=$target" "saved_bytes=$HX_OUT_DEDUP_SAVED"
        fi
    fi
    # Verifying the previous manifest may have loaded an older key: sign
    # with the current one.
    if [[ ${HX_KEY_LOADED_ID:-} != "$HX_KEY_ID" ]]; then
        hx_key_load "$HX_KEY_ID" || {
            HX_STATUS_CAUSE="encryption key: $HX_KEY_ERROR"
            return "$HX_EXIT_USAGE"
        }
    fi
    local now mpart="$dir/.$base.manifest.json.$$.partial"
    hx_tmp_register "$mpart"
    hx_tmp_register "$mpart.body"
    now=$(hx_now)
    jq --null-input --sort-keys \
        --argjson format "$HX_MANIFEST_FORMAT" --arg type "$type" --arg target "$target" \
        --argjson source "$source_json" --argjson content "$content_json" \
        --arg host "$HX_HOST" --arg stack "$HX_STACK" --arg job "$HX_JOB" \
        --arg artifact "$artifact" --arg refArtifact "$ref_artifact" --arg refManifest "$ref_manifest" \
        --arg started "$(date -u -d "@$HX_START_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" --arg created "$now" \
        --arg keyId "$HX_KEY_LOADED_ID" --argjson iter "$HX_PBKDF2_ITER" \
        --arg method "$HX_OUT_METHOD" --argjson level "$HX_OUT_LEVEL" \
        --argjson plainSize "$HX_OUT_PLAIN_SIZE" --argjson storedSize "$stored_size" \
        --arg storedSha "$stored_sha" --arg contentSha "$HX_OUT_CONTENT_SHA" \
        --arg vOpenssl "$(hx_tool_version openssl)" --arg vComp "$(hx_tool_version "$HX_OUT_METHOD")" \
        --arg vHx "$HX_VERSION" --argjson tools "${HX_EXTRA_TOOLS_JSON:-{\}}" \
        '{format: $format, type: $type, target: $target, source: $source, content: $content,
          host: $host, stack: $stack, job: $job, artifact: $artifact,
          dedup: (if $refArtifact == "" then null else {artifact: $refArtifact, manifest: $refManifest} end),
          startedAt: $started, createdAt: $created,
          encryption: {cipher: "aes-256-cbc", kdf: "pbkdf2", digest: "sha256", iter: $iter, keyId: $keyId},
          compression: {method: $method, level: $level},
          sizes: {plain: $plainSize, stored: $storedSize},
          sha256: {stored: $storedSha, content: $contentSha},
          tools: ({"hx-backup": $vHx, openssl: $vOpenssl, ($method): $vComp} + $tools)}' >"$mpart.body"
    hx_manifest_sign "$mpart.body" "$mpart"
    rm -f -- "$mpart.body"
    # Check what was written before giving it its final name.
    local check_file="$dir/$artifact"
    [[ -z $ref_artifact ]] && check_file=$HX_OUT_PARTIAL
    if ! hx_verify_manifest_mac "$mpart" >/dev/null; then
        HX_STATUS_CAUSE="manifest MAC self-check failed"
        return "$HX_EXIT_VERIFY"
    fi
    if ! hx_check_stored "$mpart" "$check_file"; then
        HX_STATUS_CAUSE="artifact checksum self-check failed"
        return "$HX_EXIT_VERIFY"
    fi
    sync --data -- "$mpart"
    if [[ -z $ref_artifact ]]; then
        mv -f -- "$HX_OUT_PARTIAL" "$dir/$artifact"
    fi
    mv -f -- "$mpart" "$dir/$base.manifest.json"
    sync -- "$dir" 2>/dev/null || true
    HX_OUT_MANIFEST="$dir/$base.manifest.json"
    HX_OUT_ARTIFACT_PATH="$dir/$artifact"
    HX_OUT_STORED_SIZE_NEW=$stored_size
    ((HX_OUT_DEDUP_SAVED > 0)) && HX_OUT_STORED_SIZE_NEW=0
    return 0
}

# ----------------------------------------------------------- verification ---

# hx_manifest_load MANIFEST: read everything verification needs in one jq
# pass into HX_MF_* (each field JSON-encoded on its own line, the canonical
# body last: keys sorted recursively, compact; identical to `jq -cS`).
hx_manifest_load() {
    local m=$1
    local -a mf=()
    HX_MF_PATH=""
    mapfile -t mf < <(jq --raw-output 'def sortk: if type == "object" then to_entries | sort_by(.key) | map(.value |= sortk) | from_entries
            elif type == "array" then map(sortk) else . end;
        if type == "object" and .format == 1 and (.mac.value | type == "string")
        then "ok", (.mac.keyId | tojson), (.encryption.keyId | tojson), (.mac.value | tojson), (.sizes.stored | tojson),
             (.sha256.stored | tojson), (.artifact | tojson), (del(.mac) | sortk | tojson)
        else "bad" end' "$m" 2>/dev/null)
    if [[ ${mf[0]:-} != ok || ${#mf[@]} -ne 8 ]]; then
        HX_VERIFY_ERROR="manifest unreadable or malformed"
        return 1
    fi
    local k
    for k in 1 2 3 5 6; do
        mf[k]=${mf[k]#\"}
        mf[k]=${mf[k]%\"}
    done
    HX_MF_KID=${mf[1]}
    HX_MF_EKID=${mf[2]}
    HX_MF_MAC=${mf[3]}
    HX_MF_SIZE=${mf[4]}
    HX_MF_SHA=${mf[5]}
    HX_MF_ARTIFACT=${mf[6]}
    HX_MF_BODY=${mf[7]}
    if [[ ! $HX_MF_KID =~ ^[A-Za-z0-9._-]+$ || ! $HX_MF_MAC =~ ^[0-9a-f]{64}$ || ! $HX_MF_SIZE =~ ^[0-9]+$ || ! $HX_MF_SHA =~ ^[0-9a-f]{64}$ ]] \
        || [[ ! $HX_MF_ARTIFACT =~ ^[A-Za-z0-9._-]+$ || $HX_MF_ARTIFACT == . || $HX_MF_ARTIFACT == .. ]]; then
        HX_VERIFY_ERROR="manifest fields are malformed"
        return 1
    fi
    HX_MF_PATH=$m
}

# hx_verify_manifest_mac MANIFEST: check structure + HMAC (loads the key).
hx_verify_manifest_mac() {
    local m=$1 got
    hx_manifest_load "$m" || return 1
    if [[ $HX_MF_KID != "$HX_MF_EKID" ]]; then
        HX_VERIFY_ERROR="manifest key ids disagree"
        return 1
    fi
    if [[ ${HX_KEY_LOADED_ID:-} != "$HX_MF_KID" ]]; then
        hx_key_load "$HX_MF_KID" || {
            HX_VERIFY_ERROR="cannot load key: $HX_KEY_ERROR"
            return 1
        }
    fi
    got=$(printf '%s\n' "$HX_MF_BODY" | hx_hmac_hex "$HX_KEY_MAC")
    if [[ $got != "$HX_MF_MAC" ]]; then
        HX_VERIFY_ERROR="manifest MAC mismatch (manifest tampered with, or wrong key)"
        return 1
    fi
}

# hx_check_stored MANIFEST FILE: size and sha256 of the stored bytes.
hx_check_stored() {
    local m=$1 f=$2 got
    if [[ ${HX_MF_PATH:-} != "$m" ]]; then
        hx_manifest_load "$m" || return 1
    fi
    [[ -f $f ]] || {
        HX_VERIFY_ERROR="artifact missing: $f"
        return 1
    }
    if [[ $(stat --format=%s -- "$f") != "$HX_MF_SIZE" ]]; then
        HX_VERIFY_ERROR="artifact size differs from manifest"
        return 1
    fi
    got=$(openssl dgst -sha256 -r <"$f")
    if [[ ${got%% *} != "$HX_MF_SHA" ]]; then
        HX_VERIFY_ERROR="artifact sha256 differs from manifest (tampered or corrupt)"
        return 1
    fi
}

# hx_manifest_artifact MANIFEST: path of the artifact a manifest describes.
hx_manifest_artifact() {
    local m=$1
    if [[ ${HX_MF_PATH:-} != "$m" ]]; then
        hx_manifest_load "$m" || return 1
    fi
    printf '%s/%s' "$(dirname -- "$m")" "$HX_MF_ARTIFACT"
}

# hx_verify_artifact MANIFEST [ARTIFACT]: MAC then checksum; no decryption.
hx_verify_artifact() {
    local m=$1 a=${2:-}
    HX_VERIFY_ERROR=""
    hx_verify_manifest_mac "$m" || return 1
    if [[ -z $a ]]; then
        a="$(dirname -- "$m")/$HX_MF_ARTIFACT"
    fi
    hx_check_stored "$m" "$a"
}

# hx_open_artifact MANIFEST ARTIFACT: decrypt + decompress to stdout.
# Only call after hx_verify_artifact succeeded.
hx_open_artifact() {
    local m=$1 a=$2 iter method
    iter=$(jq --raw-output '.encryption.iter' "$m")
    method=$(jq --raw-output '.compression.method' "$m")
    [[ $iter =~ ^[0-9]{1,7}$ ]] || return 1
    hx_decrypt "$iter" <"$a" | hx_decompress "$method"
}

# ---------------------------------------------------------------- metrics ---

hx__label() {
    local v=$1
    v=${v//\\/\\\\}
    v=${v//\"/\\\"}
    v=${v//$'\n'/\\n}
    printf '%s' "$v"
}

# hx_metrics TYPE TARGET name=value ...: merge into the source's textfile
# (one file per type/target), written atomically, no timestamps.
hx_metrics() {
    local type=$1 target=$2
    shift 2
    [[ -n ${HX_TEXTFILE:-} ]] || return 0
    if ! mkdir -p -- "$HX_TEXTFILE" 2>/dev/null || [[ ! -w $HX_TEXTFILE ]]; then
        hx_warn metrics "textfile directory $HX_TEXTFILE is not writable; metrics not updated"
        return 0
    fi
    local file="$HX_TEXTFILE/hx_backup-$type-$target.prom"
    local -A val=()
    local line name kv
    if [[ -r $file ]]; then
        while IFS= read -r line; do
            [[ $line == backup_* ]] || continue
            name=${line%%\{*}
            val[$name]=${line##* }
        done <"$file"
    fi
    for kv in "$@"; do
        val[${kv%%=*}]=${kv#*=}
    done
    # The schedule interval the alert rules compare against: the shortest
    # maxIntervalSeconds of this host's jobs of this type.
    local interval=${HX_INTERVAL_OF[$type]:-}
    [[ -n $interval ]] && val[backup_expected_interval_seconds]=$interval
    local labels tmp
    labels="type=\"$(hx__label "$type")\",target=\"$(hx__label "$target")\""
    tmp=$(mktemp -- "$HX_TEXTFILE/.hx_backup-$type-$target.prom.XXXXXX") || return 0
    {
        for name in $(printf '%s\n' "${!val[@]}" | sort); do
            printf '# TYPE %s gauge\n' "$name"
            printf '%s{%s} %s\n' "$name" "$labels" "${val[$name]}"
        done
    } >"$tmp"
    chmod 0644 -- "$tmp"
    mv -f -- "$tmp" "$file"
}

# Per-host storage metrics (no type/target labels): filesystem size and free
# space of the storage directory, and the configured quota (0 = none).
hx_host_metrics() {
    [[ -n ${HX_TEXTFILE:-} && -d ${HX_STORAGE:-} ]] || return 0
    mkdir -p -- "$HX_TEXTFILE" 2>/dev/null || return 0
    local size avail quota tmp
    read -r size avail < <(df --block-size=1 --output=size,avail -- "$HX_STORAGE" 2>/dev/null | tail -n 1) || return 0
    quota=$HX_STORAGE_QUOTA
    [[ $size =~ ^[0-9]+$ && $avail =~ ^[0-9]+$ && $quota =~ ^[0-9]+$ ]] || return 0
    tmp=$(mktemp -- "$HX_TEXTFILE/.hx_backup-storage.prom.XXXXXX") || return 0
    printf '# TYPE %s gauge\n%s %s\n' \
        backup_storage_filesystem_size_bytes backup_storage_filesystem_size_bytes "$size" \
        backup_storage_filesystem_avail_bytes backup_storage_filesystem_avail_bytes "$avail" \
        backup_storage_quota_bytes backup_storage_quota_bytes "$quota" >"$tmp"
    chmod 0644 -- "$tmp"
    mv -f -- "$tmp" "$HX_TEXTFILE/hx_backup-storage.prom"
}

hx__config_failure_metric() {
    local type=${HX_TYPE:-unknown}
    hx_metrics "$type" "_config" "backup_last_run_status=0" "backup_last_attempt_timestamp=$(hx_epoch)" 2>/dev/null || true
}

# Bytes used by committed artifacts of one source directory.
hx_storage_usage() {
    local dir=$1
    [[ -d $dir ]] || {
        echo 0
        return
    }
    find "$dir" -maxdepth 1 -type f ! -name '.*' -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}'
}

# ------------------------------------------------------------- size check ---

# hx_size_check DIR NEWSIZE: compare with the median plain size of the last
# N manifests (excluding the newest, which is the new one). Prints status:
# 1 inside the band (or not enough history), 0 outside.
hx_size_check() {
    local dir=$1 size=$2 n low high
    hx_cfg_read n sizeCheck.history
    hx_cfg_read low sizeCheck.lowPercent
    hx_cfg_read high sizeCheck.highPercent
    local -a sizes=()
    local mf
    shopt -s nullglob
    local -a all=("$dir"/*.manifest.json)
    shopt -u nullglob
    local count=${#all[@]}
    if ((count < 2)); then
        echo 1
        return
    fi
    mapfile -t sizes < <(printf '%s\n' "${all[@]}" | sort | head -n $((count - 1)) | tail -n "$n" | while IFS= read -r mf; do jq --raw-output '.sizes.plain' "$mf"; done | sort -n)
    local k=${#sizes[@]} median
    if ((k % 2 == 1)); then
        median=${sizes[k / 2]}
    else
        median=$(((sizes[k / 2 - 1] + sizes[k / 2]) / 2))
    fi
    HX_SIZE_MEDIAN=$median
    if ((median == 0)); then
        echo 1
        return
    fi
    if ((size * 100 < median * low || size * 100 > median * high)); then
        echo 0
    else
        echo 1
    fi
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

HX_SCRIPTS_DIR_SELF=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

# ------------------------------------------------------------------ remote ---

hx_aws_bin() {
    if [[ -x /usr/bin/aws ]]; then
        printf /usr/bin/aws
    else
        command -v aws
    fi
}

# hx_remote_env: check the remote config and export the AWS CLI environment
# (credentials through AWS_SHARED_CREDENTIALS_FILE, never argv). TLS is
# required unless the endpoint is loopback.
hx_remote_env() {
    HX_REMOTE_ERROR=""
    local -a cfgv=()
    hx_cfg_into cfgv remote.bucket remote.prefix remote.region remote.endpoint remote.credentialsFile remote.retentionBy \
        remote.retries remote.retryDelaySeconds remote.storageClass
    HX_S3_BUCKET=${cfgv[0]}
    HX_S3_PREFIX=${cfgv[1]%/}
    HX_S3_REGION=${cfgv[2]}
    HX_S3_ENDPOINT=${cfgv[3]}
    HX_S3_CREDS=${cfgv[4]}
    HX_S3_RETENTION_BY=${cfgv[5]}
    HX_S3_RETRIES=${cfgv[6]}
    HX_S3_RETRY_DELAY=${cfgv[7]}
    HX_S3_STORAGE_CLASS=${cfgv[8]}
    HX_AWS=$(hx_aws_bin) || {
        HX_REMOTE_ERROR="aws CLI not found"
        return 1
    }
    if [[ -n $HX_S3_ENDPOINT ]]; then
        local hostport host
        hostport=${HX_S3_ENDPOINT#*://}
        hostport=${hostport%%/*}
        host=${hostport%:*}
        [[ $hostport == \[* ]] && host=${hostport%%]*} && host=${host#[}
        case $HX_S3_ENDPOINT in
            https://*) ;;
            http://*)
                if [[ ! $host =~ ^(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|::1)$ ]]; then
                    HX_REMOTE_ERROR="refusing plain-HTTP S3 endpoint $HX_S3_ENDPOINT: TLS is required for non-loopback endpoints"
                    return 1
                fi
                ;;
            *)
                HX_REMOTE_ERROR="remote.endpoint must be an http(s) URL"
                return 1
                ;;
        esac
    fi
    if [[ -n $HX_S3_CREDS ]]; then
        [[ -r $HX_S3_CREDS ]] || {
            HX_REMOTE_ERROR="S3 credentials file not readable: $HX_S3_CREDS"
            return 1
        }
        export AWS_SHARED_CREDENTIALS_FILE=$HX_S3_CREDS
        export AWS_PROFILE=default
    fi
    export AWS_CONFIG_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" AWS_MAX_ATTEMPTS=2 AWS_RETRY_MODE=standard
    [[ -n $HX_S3_REGION ]] && export AWS_DEFAULT_REGION=$HX_S3_REGION
    [[ -n $HX_S3_BUCKET ]] || {
        HX_REMOTE_ERROR="remote.bucket is empty"
        return 1
    }
}

hx_aws() {
    local -a ep=()
    [[ -n $HX_S3_ENDPOINT ]] && ep=(--endpoint-url "$HX_S3_ENDPOINT")
    "$HX_AWS" "${ep[@]}" --cli-connect-timeout 5 --cli-read-timeout 120 --output json "$@"
}

# hx_s3_download BUCKET KEY FILE
hx_s3_download() {
    local out
    if ! out=$(hx_aws s3api get-object --bucket "$1" --key "$2" "$3" 2>&1); then
        HX_REMOTE_ERROR=$(tail -n 2 <<<"$out" | tr '\n' ' ')
        return 1
    fi
}

# hx_s3_put FILE KEY SHA256 CLASS: upload (multipart when large), then check
# the object's size and the sha256 recorded in its metadata.
hx_s3_put() {
    local file=$1 key=$2 sha=$3 class=$4 out size head
    size=$(stat --format=%s -- "$file")
    # No SSE headers: the bucket's default SSE-KMS key applies (see HostConfigFile.remote.credentialsFile).
    local -a extra=(--storage-class "$HX_S3_STORAGE_CLASS" --metadata "sha256=$sha,retention-class=$class")
    if ! out=$(hx_aws s3 cp --only-show-errors --no-progress "${extra[@]}" "$file" "s3://$HX_S3_BUCKET/$key" 2>&1); then
        HX_REMOTE_ERROR="upload failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
    if ! head=$(hx_aws s3api head-object --bucket "$HX_S3_BUCKET" --key "$key" 2>&1); then
        HX_REMOTE_ERROR="head-object failed: $(tail -n 2 <<<"$head" | tr '\n' ' ')"
        return 1
    fi
    if [[ $(jq --raw-output '.ContentLength' <<<"$head") != "$size" ]]; then
        HX_REMOTE_ERROR="uploaded size differs for $key"
        return 1
    fi
    if [[ $(jq --raw-output '.Metadata.sha256 // ""' <<<"$head") != "$sha" ]]; then
        HX_REMOTE_ERROR="uploaded checksum metadata differs for $key"
        return 1
    fi
    if [[ $HX_S3_RETENTION_BY == tag ]]; then
        if ! out=$(hx_aws s3api put-object-tagging --bucket "$HX_S3_BUCKET" --key "$key" --tagging "TagSet=[{Key=retention-class,Value=$class}]" 2>&1); then
            HX_REMOTE_ERROR="tagging failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
            return 1
        fi
    fi
}

# hx_s3_key CLASS TYPE TARGET FILE: object key for the configured layout.
hx_s3_key() {
    local class=$1 type=$2 target=$3 file=$4 p=""
    [[ -n $HX_S3_PREFIX ]] && p="$HX_S3_PREFIX/"
    if [[ $HX_S3_RETENTION_BY == tag ]]; then
        printf '%s%s/%s/%s/%s' "$p" "$HX_HOST" "$type" "$target" "$file"
    else
        printf '%s%s/%s/%s/%s/%s' "$p" "$class" "$HX_HOST" "$type" "$target" "$file"
    fi
}

# -------------------------------------------------------------- postgresql ---

# hx_pg_env: export the libpq environment from the config (no password on
# argv: peer auth, or the 0600 .pgpass file via PGPASSFILE).
hx_pg_env() {
    HX_PG_ERROR=""
    if ! hx_cfg_section postgresql; then
        HX_PG_ERROR="config: postgresql is not configured on this host"
        return 1
    fi
    local -a pg=()
    hx_cfg_into pg postgresql.host postgresql.port postgresql.user postgresql.auth postgresql.pgpassFile
    PGHOST=${pg[0]}
    PGPORT=${pg[1]}
    PGUSER=${pg[2]}
    PGDATABASE=postgres
    PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-15}
    PGAPPNAME=hx-backup
    export PGHOST PGPORT PGUSER PGDATABASE PGCONNECT_TIMEOUT PGAPPNAME
    [[ -n $PGHOST ]] || unset PGHOST
    unset PGPASSWORD PGSERVICE PGSERVICEFILE
    if [[ ${pg[3]} == pgpass ]]; then
        PGPASSFILE=${pg[4]}
        if [[ -z $PGPASSFILE || ! -r $PGPASSFILE ]]; then
            HX_PG_ERROR="config: pgpass file missing or unreadable: $PGPASSFILE"
            return 1
        fi
        if [[ $(stat --format=%a -- "$PGPASSFILE") != 600 ]]; then
            HX_PG_ERROR="pgpass file must have mode 0600: $PGPASSFILE"
            return 1
        fi
        export PGPASSFILE
    else
        # peer auth: make sure no password file is consulted
        export PGPASSFILE=/nonexistent/hx-backup-peer-auth
    fi
}

hx_psql() {
    psql --no-psqlrc --quiet --tuples-only --no-align --set=ON_ERROR_STOP=1 "$@"
}

# The user tables a dump carries data for (c: pg_class, n: pg_namespace):
# ordinary tables outside the system schemas and not owned by an extension.
HX_PG_USER_TABLES="FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"

# Table list + row counts (one line of JSON), as the manifest records them.
HX_PG_COUNT_SQL="SELECT coalesce(jsonb_agg(jsonb_build_object('table', t.name, 'rows', t.rows) ORDER BY t.name), '[]'::jsonb)::text FROM (
        SELECT format('%I.%I', n.nspname, c.relname) AS name,
               (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint AS rows
        $HX_PG_USER_TABLES) t;"

hx_pg_table_counts() {
    PGDATABASE=$1 hx_psql --command="$HX_PG_COUNT_SQL"
}

# hx__pg_open MANIFEST ARTIFACT [PART]: the plaintext dump stream of a
# verified artifact, or of one part of a parallel dump (tar member).
hx__pg_open() {
    local m=$1 a=$2 part=${3:-} iter method
    if [[ -z $part ]]; then
        hx_open_artifact "$m" "$a"
        return
    fi
    [[ $part =~ ^[a-z0-9][a-z0-9.-]*$ ]] || return 1
    iter=$(jq --raw-output '.encryption.iter' "$m")
    method=$(jq --raw-output '.compression.method' "$m")
    [[ $iter =~ ^[0-9]{1,7}$ ]] || return 1
    tar --extract --to-stdout --no-wildcards --file="$a" -- "$part" | hx_decrypt "$iter" | hx_decompress "$method"
}

# hx__pg_restore_stream MANIFEST ARTIFACT PART DB ERRF PG_RESTORE_ARGS...:
# pg_restore from one decrypted stream. Ignorable errors (e.g. ownership of
# extensions) are logged; the row-count check that follows decides. A pass
# that needs no data ends after the TOC and closes the stream early.
hx__pg_restore_stream() {
    local m=$1 a=$2 part=$3 db=$4 errf=$5
    shift 5
    (
        set +o pipefail
        hx__pg_open "$m" "$a" "$part" 2>/dev/null |
            PGDATABASE=$db pg_restore --no-owner --no-privileges --no-password --dbname="$db" "$@" 2>>"$errf"
    ) || true
}

# hx__pg_split_toc MANIFEST ARTIFACT PART DIR JOBS SPLIT_DATA: write
# pg_restore --use-list files into DIR from the stream's TOC:
# d.K (TABLE DATA) when SPLIT_DATA is 1: contiguous runs of the archive,
# balanced by the manifest's row counts, so each stream stops reading where
# its run ends and only the last reads the whole archive (sequences and large
# objects go to that last one); p.K (indexes and primary/unique constraints,
# round-robin); rest (everything else: foreign keys, triggers, INDEX ATTACH).
hx__pg_split_toc() {
    local m=$1 a=$2 part=$3 dir=$4 jobs=$5 split_data=$6
    (
        set +o pipefail
        hx__pg_open "$m" "$a" "$part" 2>/dev/null | pg_restore --list >"$dir/toc" 2>/dev/null
    ) || true
    grep --quiet '^[0-9]' "$dir/toc" || return 1
    jq --raw-output '.content.tables[]? | "\(.table)\t\(.rows)"' "$m" >"$dir/rows"
    awk -v jobs="$jobs" -v dir="$dir" -v split_data="$split_data" -F'\t' '
        FNR == NR { rows[$1] = $2; next }
        !/^[0-9]/ { next }
        {
            line[++n] = $0
            kind[n] = "rest"
            if (split_data && $0 ~ /^[0-9]+; [0-9]+ [0-9]+ TABLE DATA /) {
                c = split($0, f, " "); key = f[c - 2] "." f[c - 1]
                weight[n] = (key in rows) ? rows[key] + 1 : 1
                total += weight[n]
                kind[n] = "data"
            } else if (split_data && $0 ~ /^[0-9]+; [0-9]+ [0-9]+ (SEQUENCE SET|BLOBS|BLOB|LARGE OBJECT) /) {
                kind[n] = "tail"
            } else if ($0 ~ /^[0-9]+; [0-9]+ [0-9]+ (INDEX|CONSTRAINT) /) {
                kind[n] = "post"
            }
        }
        END {
            target = total / jobs
            s = 0
            for (i = 1; i <= n; i++) {
                if (kind[i] != "data") continue
                if (s < jobs - 1 && load > 0 && load + weight[i] / 2 > target) { s++; load = 0 }
                load += weight[i]
                stream[i] = s
            }
            for (i = 1; i <= n; i++) {
                if (kind[i] == "data") print line[i] > (dir "/d." stream[i])
                else if (kind[i] == "tail") print line[i] > (dir "/d." s)
                else if (kind[i] == "post") print line[i] > (dir "/p." (np++ % jobs))
                else print line[i] > (dir "/rest")
            }
        }' "$dir/rows" "$dir/toc"
}

# hx__pg_run_lists MANIFEST ARTIFACT PART DB ERRF DIR PREFIX JOBS: restore the
# DIR/PREFIX.K lists concurrently, one stream each.
hx__pg_run_lists() {
    local m=$1 a=$2 part=$3 db=$4 errf=$5 dir=$6 prefix=$7 jobs=$8 k
    local -a pids=()
    for ((k = 0; k < jobs; k++)); do
        [[ -s $dir/$prefix.$k ]] || continue
        hx__pg_restore_stream "$m" "$a" "$part" "$db" "$errf" --use-list="$dir/$prefix.$k" &
        pids+=($!)
    done
    for k in "${pids[@]}"; do wait "$k" || true; done
}

# hx_pg_restore_into MANIFEST ARTIFACT DBNAME ERRFILE: restore a verified
# PostgreSQL artifact into an existing (empty) database, in parallel and
# without plaintext on disk. pg_restore -j refuses a stream, so the work is
# split by TOC entry: pre-data once; then the table data in JOBS concurrent
# streams (one per part for a parallel dump); then indexes and key
# constraints in JOBS streams; then the rest of post-data.
hx_pg_restore_into() {
    local m=$1 a=$2 db=$3 errf=$4 fmt jobs dir schema="" part
    fmt=$(jq --raw-output '.content.format // "custom"' "$m")
    hx_cfg_read jobs postgresql.jobs
    dir=$(mktemp --directory -- "$HX_STORAGE/.restore-lists.XXXXXX.partial")
    hx_tmp_register "$dir"
    case $fmt in
        custom)
            hx__pg_split_toc "$m" "$a" "" "$dir" "$jobs" 1 || return 1
            hx__pg_restore_stream "$m" "$a" "" "$db" "$errf" --section=pre-data
            hx__pg_run_lists "$m" "$a" "" "$db" "$errf" "$dir" d "$jobs"
            ;;
        parallel)
            schema=$(jq --raw-output '.content.parts[]? | select(.role == "schema") | .name' "$m")
            [[ -n $schema ]] || return 1
            hx__pg_split_toc "$m" "$a" "$schema" "$dir" "$jobs" 0 || return 1
            hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=pre-data
            local -a pids=()
            hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=data &
            pids+=($!)
            while IFS= read -r part; do
                while (($(jobs -rp | wc -l) >= jobs + 1)); do wait -n || true; done
                hx__pg_restore_stream "$m" "$a" "$part" "$db" "$errf" --data-only &
                pids+=($!)
            done < <(jq --raw-output '.content.parts[]? | select(.role == "data") | .name' "$m")
            for part in "${pids[@]}"; do wait "$part" || true; done
            ;;
        *) return 1 ;;
    esac
    hx__pg_run_lists "$m" "$a" "$schema" "$db" "$errf" "$dir" p "$jobs"
    if [[ -s $dir/rest ]]; then
        hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=post-data --use-list="$dir/rest"
    fi
    rm -rf -- "$dir"
}

# hx_pg_restore_test MANIFEST ARTIFACT: restore into a scratch database,
# compare table list + row counts with the manifest, drop it.
hx_pg_restore_test() {
    local m=$1 a=$2 fmt scratch errf got want rc=0
    fmt=$(jq --raw-output '.content.format // ""' "$m")
    if [[ $fmt == sql ]]; then
        local head
        head=$(hx_open_artifact "$m" "$a" | head -c 4096 | grep --count --extended-regexp '^(--|SET|CREATE)' || true)
        [[ $head -gt 0 ]] || {
            HX_VERIFY_ERROR="globals dump does not look like SQL"
            return 1
        }
        return 0
    fi
    hx_pg_env || {
        HX_VERIFY_ERROR=$HX_PG_ERROR
        return 1
    }
    scratch="hx_restore_test_$(openssl rand -hex 6)"
    errf=$(mktemp -- "$HX_STORAGE/.restore-test.XXXXXX.partial")
    hx_tmp_register "$errf"
    if ! hx_psql --command="CREATE DATABASE $scratch" 2>>"$errf"; then
        HX_VERIFY_ERROR="cannot create scratch database: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
        return 1
    fi
    hx_pg_restore_into "$m" "$a" "$scratch" "$errf" || rc=1
    got=$(hx_pg_table_counts "$scratch" 2>>"$errf" | jq --compact-output --sort-keys 'sort_by(.table)') || rc=1
    want=$(jq --compact-output --sort-keys '.content.tables | sort_by(.table)' "$m")
    hx_psql --command="DROP DATABASE IF EXISTS $scratch" 2>>"$errf" || hx_warn restore_test "could not drop scratch database $scratch"
    if ((rc != 0)) || [[ $got != "$want" ]]; then
        HX_VERIFY_ERROR="restored tables/row counts differ from the manifest: $(diff <(jq --raw-output '.[] | "\(.table) \(.rows)"' <<<"$want") <(jq --raw-output '.[] | "\(.table) \(.rows)"' <<<"${got:-[]}") | head -n 5 | tr '\n' ' ')"
        return 1
    fi
}

# --------------------------------------------------------- restore tests ---

# hx_content_check MANIFEST ARTIFACT: decrypt + decompress and compare the
# plaintext content hash and size with the manifest (end-to-end check of the
# key). A parallel dump is checked part by part.
hx_content_check() {
    local m=$1 a=$2 hasher=hx__hash_raw tmp name want want_size got size index="" total=0 type format
    read -r type format want want_size < <(jq --raw-output '"\(.type) \(.content.format // "-") \(.sha256.content) \(.sizes.plain)"' "$m")
    if [[ $type == postgresql && $format =~ ^(custom|parallel)$ ]]; then
        hasher=hx__hash_pgcustom
    fi
    tmp=$(mktemp --directory -- "$HX_STORAGE/.content-check.XXXXXX.partial")
    hx_tmp_register "$tmp"
    local -a parts=("")
    if [[ $format == parallel ]]; then
        mapfile -t parts < <(jq --raw-output '.content.parts[]? | "\(.name) \(.sha256.content)"' "$m")
        ((${#parts[@]} > 0)) || {
            HX_VERIFY_ERROR="manifest lists no parts"
            return 1
        }
    fi
    local part_want
    for name in "${parts[@]}"; do
        part_want=${name#* }
        name=${name%% *}
        got=$(hx__pg_open "$m" "$a" "$name" | "$hasher" "$tmp/size") || {
            HX_VERIFY_ERROR="decryption or decompression failed${name:+ for part $name} (wrong key or corrupt data)"
            rm -rf -- "$tmp"
            return 1
        }
        got=${got%% *}
        size=$(<"$tmp/size")
        total=$((total + size))
        if [[ -n $name ]]; then
            if [[ $got != "$part_want" ]]; then
                HX_VERIFY_ERROR="decrypted content hash of part $name differs from the manifest"
                rm -rf -- "$tmp"
                return 1
            fi
            index+="$name $got"$'\n'
        fi
    done
    rm -rf -- "$tmp"
    if [[ -n $index ]]; then
        got=$(printf '%s' "$index" | openssl dgst -sha256 -r)
        got=${got%% *}
    fi
    if [[ $got != "$want" ]]; then
        HX_VERIFY_ERROR="decrypted content hash differs from the manifest"
        return 1
    fi
    if [[ $total != "$want_size" ]]; then
        HX_VERIFY_ERROR="decrypted size $total differs from the manifest's $want_size"
        return 1
    fi
}

# hx_archive_restore_test MANIFEST ARTIFACT: list, extract to a temp dir
# inside the storage directory, compare with the archive, remove.
hx_archive_restore_test() {
    local m=$1 a=$2 tmp listed extracted diffout
    listed=$(hx_open_artifact "$m" "$a" | tar --list --ignore-zeros --file=- | grep --count .) || {
        HX_VERIFY_ERROR="archive cannot be listed"
        return 1
    }
    local want
    want=$(jq --raw-output '.content.entries // empty' "$m")
    if [[ -n $want && $listed != "$want" ]]; then
        HX_VERIFY_ERROR="archive lists $listed entries, manifest recorded $want"
        return 1
    fi
    tmp=$(mktemp --directory -- "$HX_STORAGE/.restore-test.XXXXXX.partial")
    hx_tmp_register "$tmp"
    local -a owner_opts=(--no-same-owner)
    ((EUID == 0)) && owner_opts=(--same-owner --numeric-owner --xattrs --xattrs-include='*' --acls)
    if ! hx_open_artifact "$m" "$a" | tar --extract --ignore-zeros --file=- --directory="$tmp" --preserve-permissions "${owner_opts[@]}" 2>"$tmp.err"; then
        HX_VERIFY_ERROR="archive extraction failed: $(head -c 300 "$tmp.err" | tr '\n' ' ')"
        chmod -R u+rwX -- "$tmp" 2>/dev/null || true
        rm -rf -- "$tmp" "$tmp.err"
        return 1
    fi
    extracted=$(cd -- "$tmp" && find . -mindepth 1 | grep --count .)
    diffout=$(hx_open_artifact "$m" "$a" | tar --diff --ignore-zeros --file=- --directory="$tmp" "${owner_opts[@]}" 2>&1 | grep --invert-match --extended-regexp 'Uid differs|Gid differs|Mod time differs' || true)
    # Read-only directories from the archive must not block the cleanup.
    chmod -R u+rwX -- "$tmp" 2>/dev/null || true
    rm -rf -- "$tmp" "$tmp.err"
    if [[ -n $diffout ]]; then
        HX_VERIFY_ERROR="extracted files differ from the archive: $(head -c 300 <<<"$diffout" | tr '\n' ' ')"
        return 1
    fi
    ((extracted > 0 || listed == 0)) || {
        HX_VERIFY_ERROR="nothing was extracted"
        return 1
    }
}

hx_redis_restore_test() {
    local m=$1 a=$2 out keys want
    out=$(hx_open_artifact "$m" "$a" | redis-check-rdb /dev/stdin 2>&1) || {
        HX_VERIFY_ERROR="redis-check-rdb rejected the RDB: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    }
    keys=$(sed -n 's/^\[info\] \([0-9]*\) keys read.*/\1/p' <<<"$out" | head -n 1)
    want=$(jq --raw-output '.content.keys // empty' "$m")
    if [[ -n $want && $keys != "$want" ]]; then
        HX_VERIFY_ERROR="RDB has ${keys:-?} keys, manifest recorded $want"
        return 1
    fi
}

# hx_restore_test MANIFEST [ARTIFACT]: full restore test of one artifact.
hx_restore_test() {
    local m=$1 a=${2:-}
    [[ -n $a ]] || a=$(hx_manifest_artifact "$m")
    hx_verify_artifact "$m" "$a" || return 1
    hx_content_check "$m" "$a" || return 1
    case $(jq --raw-output '.type' "$m") in
        postgresql) hx_pg_restore_test "$m" "$a" ;;
        redis) hx_redis_restore_test "$m" "$a" ;;
        application | configuration) hx_archive_restore_test "$m" "$a" ;;
        *)
            HX_VERIFY_ERROR="unknown artifact type"
            return 1
            ;;
    esac
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

# ----------------------------------------------------------- archive jobs ---

# hx_archive_script TYPE TARGET JOB [ARGS...]: the whole of application-backup.sh
# and configuration-backup.sh: one archive of TYPE, made by the privileged
# helper's TYPE-archive verb, stored as TARGET.
hx_archive_script() {
    local type=$1 target=$2 job=$3
    shift 3
    if (($# != 0)); then
        echo "usage: $HX_SCRIPT_NAME" >&2
        exit "$HX_EXIT_USAGE"
    fi
    HX_ON_EXIT=hx_single_target_on_exit
    HX_ARCHIVE_TARGET=$target
    hx_init "$job"
    hx_lock "$type-backup"
    hx_cfg_section "$type" || hx_die "$HX_EXIT_USAGE" "config: $type is not configured on this host"
    hx_archive_job "$type" "$target" "$type-archive"
    local rc=0
    hx_finish_job "$type" "$rc" || rc=$?
    exit "$rc"
}

# hx_archive_job TYPE TARGET VERB: application/configuration backup through
# the privileged archive helper.
hx_archive_job() {
    local type=$1 target=$2 verb=$3 errf start now
    start=$(hx_epoch)
    hx_metrics "$type" "$target" "backup_last_attempt_timestamp=$start"
    HX_ARCHIVE_TARGET=$target
    hx_key_load "$HX_KEY_ID" || hx_die "$HX_EXIT_USAGE" "encryption key: $HX_KEY_ERROR"
    mkdir -p -- "$HX_STORAGE/$type/$target"
    errf="$HX_STORAGE/$type/$target/.stderr.$$.partial"
    hx_tmp_register "$errf"
    : >"$errf"
    HX_SOURCE_ERROR_FILE=$errf
    HX_EXTRA_TOOLS_JSON=$(jq --null-input --compact-output --arg t "$(hx_tool_version tar)" '{tar: $t}')
    hx_store "$type" "$target" "$target" tar tar -- hx__archive_source "$verb" "$errf"
    local content
    content=$(jq --null-input --compact-output --argjson n "${HX_OUT_TAR_ENTRIES:-0}" '{format: "tar", entries: $n}')
    local source_json
    source_json=$(hx_cfg_json "$type")
    hx_commit_artifact "$type" "$target" "$source_json" "$content"
    now=$(hx_epoch)
    local size_status
    size_status=$(hx_size_check "$HX_OUT_DIR" "$HX_OUT_PLAIN_SIZE")
    [[ $size_status == 1 ]] || hx_warn size_check "backup size $HX_OUT_PLAIN_SIZE is outside the configured band around the median ${HX_SIZE_MEDIAN:-?}" "type=$type" "target=$target"
    hx_info backup_ok "archive backed up and verified" "type=$type" "target=$target" "manifest=$HX_OUT_MANIFEST" \
        "entries=$HX_OUT_TAR_ENTRIES" "plain_bytes=$HX_OUT_PLAIN_SIZE" "stored_bytes=$HX_OUT_STORED_SIZE" "dedup_saved_bytes=$HX_OUT_DEDUP_SAVED"
    hx_metrics "$type" "$target" backup_last_run_status=1 "backup_last_success_timestamp=$now" \
        "backup_duration_seconds=$((now - start))" "backup_size_bytes=$HX_OUT_STORED_SIZE" \
        backup_verification_status=1 "backup_dedup_saved_bytes=$HX_OUT_DEDUP_SAVED" \
        "backup_size_check_status=$size_status" "backup_storage_usage_bytes=$(hx_storage_usage "$HX_OUT_DIR")"
}

# shellcheck disable=SC2317  # invoked through hx_store
hx__archive_source() {
    hx_privileged "$1" 2>>"$2"
}

# Exit hook for single-target jobs: record the failure in the metrics.
# shellcheck disable=SC2317  # invoked through HX_ON_EXIT
hx_single_target_on_exit() {
    local rc=$1
    if ((rc != 0 && rc != HX_EXIT_LOCKED && rc != HX_EXIT_PARTIAL)) && [[ -n ${HX_ARCHIVE_TARGET:-} ]]; then
        hx_error backup_failed "backup failed: ${HX_STATUS_CAUSE:-unknown cause}" "type=$HX_TYPE" "target=$HX_ARCHIVE_TARGET" "exit_code=$rc"
        hx_metrics "$HX_TYPE" "$HX_ARCHIVE_TARGET" backup_last_run_status=0 "backup_last_attempt_timestamp=$(hx_epoch)" \
            "backup_verification_status=$([[ $rc == "$HX_EXIT_VERIFY" ]] && echo 0 || echo 1)"
    fi
}
