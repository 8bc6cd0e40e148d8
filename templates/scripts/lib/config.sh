#!/usr/bin/env bash
# hx-backup library: config: backup.json, read through strict readers
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

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

# hx__config_location: the config path the deploy wrote beside the library
# (lib/config-path, root-owned like the scripts), or nothing.
hx__config_location() {
    local location="$HX_SCRIPTS_DIR_SELF/lib/config-path" line=""
    if [[ -r $location ]]; then
        IFS= read -r line <"$location" || true
    fi
    HX_CONFIG_FILE=$line
}

# hx_load_config: locate, check and load the config into HX_CFG and HX_* variables.
# The systemd units set HX_BACKUP_CONFIG; runs by hand and every run through
# sudo (where the caller's HX_BACKUP_CONFIG is ignored) read lib/config-path.
hx_load_config() {
    if [[ -z ${SUDO_USER:-} && -n ${HX_BACKUP_CONFIG:-} ]]; then
        HX_CONFIG_FILE=$HX_BACKUP_CONFIG
    else
        hx__config_location
    fi
    # Where to log and export the failure until the config says otherwise.
    hx__fallback_dirs
    local problem=""
    if [[ -z $HX_CONFIG_FILE ]]; then
        local or_env=", or set HX_BACKUP_CONFIG"
        [[ -z ${SUDO_USER:-} ]] || or_env="; through sudo HX_BACKUP_CONFIG is ignored"
        problem="config location unknown: $HX_SCRIPTS_DIR_SELF/lib/config-path is missing or empty (the deploy's config-location step writes it: run pulumi up$or_env)"
    elif [[ $HX_CONFIG_FILE != /* ]]; then
        problem="config location is not an absolute path: $HX_CONFIG_FILE (in $HX_SCRIPTS_DIR_SELF/lib/config-path; run pulumi up to rewrite it)"
    elif [[ ! -r $HX_CONFIG_FILE ]]; then
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
    [[ ${HX_CFG[logging.format]:-} == json ]] && HX_LOG_FORMAT=json
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
    hx_cfg_read HX_LOG_FORMAT logging.format
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
    # The schedule facts the alert rules compare against, per type: the
    # shortest maxIntervalSeconds of this host's jobs of that type, and the
    # longest start delay (RandomizedDelaySec) of those jobs.
    hx_cfg_into HX_JOB_NAMES 'jobs[].name'
    hx_cfg_into HX_JOB_TYPES 'jobs[].type'
    hx_cfg_into HX_JOB_INTERVALS 'jobs[].maxIntervalSeconds'
    hx_cfg_into HX_JOB_JITTERS 'jobs[].jitterSeconds'
    HX_INTERVAL_OF=()
    HX_JITTER_OF=()
    local i type
    for i in "${!HX_JOB_TYPES[@]}"; do
        type=${HX_JOB_TYPES[i]}
        if [[ -z ${HX_INTERVAL_OF[$type]:-} ]] || ((HX_JOB_INTERVALS[i] < HX_INTERVAL_OF[$type])); then
            HX_INTERVAL_OF[$type]=${HX_JOB_INTERVALS[i]}
        fi
        if [[ -z ${HX_JITTER_OF[$type]:-} ]] || ((HX_JOB_JITTERS[i] > HX_JITTER_OF[$type])); then
            HX_JITTER_OF[$type]=${HX_JOB_JITTERS[i]}
        fi
    done
}
# This host's jobs (name, type, maxIntervalSeconds, jitterSeconds by index),
# and per type the shortest interval and the longest jitter, loaded by
# hx_load_config.
HX_JOB_NAMES=() HX_JOB_TYPES=() HX_JOB_INTERVALS=() HX_JOB_JITTERS=()
declare -gA HX_INTERVAL_OF=() HX_JITTER_OF=()

hx__open_log() {
    if [[ -n $HX_NO_LOG_FILE ]]; then
        HX_LOG_FILE=""
    elif { [[ -d $HX_LOGS ]] || mkdir -p -- "$HX_LOGS" 2>/dev/null; } && [[ -w $HX_LOGS ]]; then
        HX_LOG_FILE="$HX_LOGS/$HX_STEM.log"
    else
        HX_LOG_FILE=""
    fi
}
