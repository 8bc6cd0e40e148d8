#!/usr/bin/env bash
# hx-backup library: textfile metrics and the size check
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_SOURCE_MODULE # defined in core.sh

# ---------------------------------------------------------------- metrics ---

hx__label() {
    local v=$1
    v=${v//\\/\\\\}
    v=${v//\"/\\\"}
    v=${v//$'\n'/\\n}
    printf '%s' "$v"
}

# hx__textfile_temp_into VAR PREFIX: create PREFIX.PID.tmpXXXXXX.partial (six
# random letters and digits; the name hx_clean_dead_temps knows) exclusively
# with mode 0644, as mktemp and chmod did, without a process of its own.
hx__textfile_temp_into() {
    local -n hx__tmp_var=$1
    local chars=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 suffix i try
    for ((try = 0; try < 20; try++)); do
        suffix=""
        for ((i = 0; i < 6; i++)); do suffix+=${chars:RANDOM % 62:1}; done
        hx__tmp_var="$2.$$.tmpXXXXXX.partial"
        hx__tmp_var=${hx__tmp_var/%XXXXXX.partial/$suffix.partial}
        (set -o noclobber && umask 022 && : >"$hx__tmp_var") 2>/dev/null && return 0
    done
    return 1
}

# hx__sorted_into ARRAY WORD...: the WORDs in byte order (LC_ALL=C, as sort
# would) into ARRAY.
hx__sorted_into() {
    local -n hx__sorted=$1
    shift
    local w i
    hx__sorted=()
    for w in "$@"; do
        for ((i = ${#hx__sorted[@]}; i > 0; i--)); do
            [[ ${hx__sorted[i - 1]} > $w ]] || break
            hx__sorted[i]=${hx__sorted[i - 1]}
        done
        hx__sorted[i]=$w
    done
}

# hx_metrics TYPE TARGET name=value ...: merge into the source's textfile
# (one file per type/target), written atomically, no timestamps.
hx_metrics() {
    local type=$1 target=$2
    shift 2
    [[ -n ${HX_TEXTFILE:-} ]] || return 0
    if ! { [[ -d $HX_TEXTFILE ]] || mkdir -p -- "$HX_TEXTFILE" 2>/dev/null; } || [[ ! -w $HX_TEXTFILE ]]; then
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
    # The schedule facts the alert rules compare against (see hx_load_config).
    local interval=${HX_INTERVAL_OF[$type]:-}
    [[ -n $interval ]] && val[backup_expected_interval_seconds]=$interval
    local jitter=${HX_JITTER_OF[$type]:-}
    [[ -n $jitter ]] && val[backup_schedule_jitter_seconds]=$jitter
    local labels tmp
    local -a names=()
    labels="type=\"$(hx__label "$type")\",target=\"$(hx__label "$target")\""
    hx__textfile_temp_into tmp "$HX_TEXTFILE/.hx_backup-$type-$target.prom" || return 0
    hx__sorted_into names "${!val[@]}"
    {
        for name in "${names[@]}"; do
            printf '# TYPE %s gauge\n' "$name"
            printf '%s{%s} %s\n' "$name" "$labels" "${val[$name]}"
        done
    } >"$tmp"
    mv -f -- "$tmp" "$file"
}

# Per-host metrics (no type/target labels): filesystem size and free space
# of the storage directory, the configured quota (0 = none), and the current
# key's age: since this host's keyring file for it was written (the keyring
# step rewrites the files only when the set of keys changes).
hx_host_metrics() {
    [[ -n ${HX_TEXTFILE:-} && -d ${HX_STORAGE:-} ]] || return 0
    [[ -d $HX_TEXTFILE ]] || mkdir -p -- "$HX_TEXTFILE" 2>/dev/null || return 0
    local size avail quota tmp key_file key_mtime
    { read -r _ && read -r size avail; } < <(df --block-size=1 --output=size,avail -- "$HX_STORAGE" 2>/dev/null) || return 0
    quota=$HX_STORAGE_QUOTA
    [[ $size =~ ^[0-9]+$ && $avail =~ ^[0-9]+$ && $quota =~ ^[0-9]+$ ]] || return 0
    local -a lines=(backup_storage_filesystem_size_bytes "$size" backup_storage_filesystem_avail_bytes "$avail" backup_storage_quota_bytes "$quota")
    key_file="$HX_KEYRING/$HX_KEY_ID.key"
    [[ -e $key_file || -z $HX_KEYFILE ]] || key_file=$HX_KEYFILE
    key_mtime=$(stat --format=%Y -- "$key_file" 2>/dev/null || true)
    [[ $key_mtime =~ ^[0-9]+$ ]] && lines+=(backup_encryption_key_age_seconds "$(($(hx_epoch) - key_mtime))")
    hx__textfile_temp_into tmp "$HX_TEXTFILE/.hx_backup-storage.prom" || return 0
    local i
    for ((i = 0; i < ${#lines[@]}; i += 2)); do
        printf '# TYPE %s gauge\n%s %s\n' "${lines[i]}" "${lines[i]}" "${lines[i + 1]}"
    done >"$tmp"
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
    local n sum=0
    while IFS= read -r n; do
        sum=$((sum + n))
    done < <(find "$dir" -maxdepth 1 -type f ! -name '.*' -printf '%s\n')
    printf '%d\n' "$sum"
}

# ------------------------------------------------------------- size check ---

# hx_size_check DIR NEWSIZE: compare with the median plain size of the last
# N manifests (excluding the newest, which is the new one). Sets
# HX_SIZE_STATUS (1 inside the band or not enough history, 0 outside) and
# HX_SIZE_MEDIAN (empty without history). Not for $(...): it sets globals.
hx_size_check() {
    local dir=$1 size=$2 n low high
    hx_cfg_read n sizeCheck.history
    hx_cfg_read low sizeCheck.lowPercent
    hx_cfg_read high sizeCheck.highPercent
    HX_SIZE_STATUS=1
    HX_SIZE_MEDIAN=""
    shopt -s nullglob
    local -a all=("$dir"/*.manifest.json)
    shopt -u nullglob
    local count=${#all[@]}
    ((count >= 2)) || return 0
    local -a previous=() sizes=()
    mapfile -t previous < <(printf '%s\n' "${all[@]}" | sort | head -n $((count - 1)) | tail -n "$n")
    mapfile -t sizes < <(jq --raw-output '.sizes.plain' -- "${previous[@]}" | sort -n)
    local k=${#sizes[@]} median
    if ((k % 2 == 1)); then
        median=${sizes[k / 2]}
    else
        median=$(((sizes[k / 2 - 1] + sizes[k / 2]) / 2))
    fi
    HX_SIZE_MEDIAN=$median
    if ((median > 0 && (size * 100 < median * low || size * 100 > median * high))); then
        HX_SIZE_STATUS=0
    fi
}

# ------------------------------------------------------ a target's outcome ---

# hx_backup_succeeded TYPE TARGET START MESSAGE [FIELD=VALUE...]: after
# hx_commit_artifact, for the artifact in HX_OUT: the size check, the
# backup_ok log line (with the extra fields) and the success metrics.
hx_backup_succeeded() {
    local type=$1 target=$2 start=$3 message=$4 now
    shift 4
    now=$(hx_epoch)
    hx_size_check "${HX_OUT[dir]}" "${HX_OUT[plain_size]}"
    if ((HX_SIZE_STATUS == 0)); then
        hx_warn size_check "backup size ${HX_OUT[plain_size]} is outside the configured band around the median $HX_SIZE_MEDIAN" "type=$type" "target=$target"
    fi
    hx_info backup_ok "$message" "type=$type" "target=$target" "manifest=${HX_OUT[manifest]}" "$@" \
        "plain_bytes=${HX_OUT[plain_size]}" "stored_bytes=${HX_OUT[stored_size]}" "dedup_saved_bytes=${HX_OUT[dedup_saved]}" "seconds=$((now - start))"
    hx_metrics "$type" "$target" backup_last_run_status=1 "backup_last_success_timestamp=$now" \
        "backup_duration_seconds=$((now - start))" "backup_size_bytes=${HX_OUT[stored_size]}" \
        backup_verification_status=1 "backup_dedup_saved_bytes=${HX_OUT[dedup_saved]}" \
        "backup_size_check_status=$HX_SIZE_STATUS" "backup_storage_usage_bytes=$(hx_storage_usage "${HX_OUT[dir]}")"
    hx_failure_cause "$type" "$target" ""
}

# The longest cause a metric label carries (bytes; the cause is ASCII).
readonly HX_CAUSE_MAX=300

# hx_failure_cause TYPE TARGET CAUSE: backup_last_failure_info{cause=...} 1,
# the cause BackupFailed shows (and an email carries), in a file of its own
# beside the target's metrics; an empty CAUSE removes it.
hx_failure_cause() {
    local type=$1 target=$2 cause=$3 file tmp
    [[ -n ${HX_TEXTFILE:-} && -d $HX_TEXTFILE && -w $HX_TEXTFILE ]] || return 0
    file="$HX_TEXTFILE/hx_backup_cause-$type-$target.prom"
    if [[ -z $cause ]]; then
        [[ ! -e $file ]] || rm -f -- "$file"
        return 0
    fi
    # Printable ASCII only (LC_ALL=C): a label value must be valid UTF-8, and the cut below counts bytes.
    cause=${cause//[$'\n\r\t']/ }
    cause=${cause//[^[:print:]]/?}
    # A long cause (pgBackRest's, libpq's) is cut at a word's end and marked, not mid-word.
    if ((${#cause} > HX_CAUSE_MAX)); then
        cause=${cause:0:HX_CAUSE_MAX}
        [[ $cause != *' '* ]] || cause=${cause% *}
        cause="$cause ..."
    fi
    hx__textfile_temp_into tmp "$file" || return 0
    printf '# TYPE backup_last_failure_info gauge\nbackup_last_failure_info{type="%s",target="%s",cause="%s"} 1\n' \
        "$(hx__label "$type")" "$(hx__label "$target")" "$(hx__label "$cause")" >"$tmp"
    mv -f -- "$tmp" "$file"
}

# hx_backup_failed TYPE TARGET RC: a target's failed run, logged with its
# cause. Verification status drops to 0 only when verification failed (exit
# 4); any other failure leaves it as the last check set it.
hx_backup_failed() {
    local type=$1 target=$2 rc=$3
    local -a verification=()
    ((rc != HX_EXIT_VERIFY)) || verification=(backup_verification_status=0)
    hx_error backup_failed "backup of $target failed: ${HX_STATUS_CAUSE:-unknown cause}" "type=$type" "target=$target" "exit_code=$rc"
    # The cause before the status: BackupFailed fires on the first scrape that shows status 0,
    # and its description reads the cause then (node_exporter reads both files in one scrape).
    hx_failure_cause "$type" "$target" "${HX_STATUS_CAUSE:-unknown cause}"
    hx_metrics "$type" "$target" backup_last_run_status=0 "backup_last_attempt_timestamp=$(hx_epoch)" "${verification[@]}"
}

# Exit hook (HX_ON_EXIT) for single-target jobs: the failure of
# HX_SINGLE_TARGET, once it is known.
# shellcheck disable=SC2317  # invoked through HX_ON_EXIT
hx_single_target_on_exit() {
    local rc=$1
    if ((rc != 0 && rc != HX_EXIT_LOCKED && rc != HX_EXIT_PARTIAL)) && [[ -n ${HX_SINGLE_TARGET:-} ]]; then
        hx_backup_failed "$HX_TYPE" "$HX_SINGLE_TARGET" "$rc"
    fi
}

# hx_record_verification MANIFEST OK [METRIC]: the outcome of any check of a
# manifest of a local source (STORAGE/TYPE/TARGET/), as METRIC (default
# backup_verification_status) 1 or 0 of that source. A copy elsewhere (an S3
# download) belongs to no local source and records nothing.
hx_record_verification() {
    local m=$1 ok=$2 metric=${3:-backup_verification_status} type target
    hx_local_source_of "$m" type target || return 0
    hx_metrics "$type" "$target" "$metric=$ok"
}
