#!/usr/bin/env bash
# hx-backup library: the Redis data source: dump (BGSAVE and the RDB
# stream), RDB check, restore test and restore.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_SOURCE_MODULE # defined in core.sh; this module adds its types

# The dump: BGSAVE, wait for it (rdb_saves counter, in-progress flag and
# last status; LASTSAVE alone has one-second resolution), and stream the RDB
# through the pipeline while redis-check-rdb checks it and counts the keys.
#
# When the RDB directory is readable, the stream starts while BGSAVE is still
# writing: it follows the child's temp-<pid>.rdb (opened once, so the same
# inode) until the save is reported done, through the tee'd redis-check-rdb
# (RDB checksum and EOF marker). Redis renames that file into place, so it is
# kept only if the RDB path then names the same inode with the size that was
# streamed; otherwise the saved file is read again. Without the live read,
# a readable RDB is read after the save with redis-check-rdb beside the
# stream on the same inode; an unreadable one comes from the privileged helper.
# AUTH comes from the configured file through REDISCLI_AUTH, never argv.

# HX_REDIS: the dump's settings and state (host, port, rdb, timeout, deadline,
# the save counters before BGSAVE, the helper PIDs, the scratch files and the
# key count); HX_REDIS_LIVE_FD and HX_REDIS_RDB_FD: the descriptors it reads.
declare -gA HX_REDIS=()
# HX_BGSAVE: the last INFO persistence reading (in_progress, saves,
# lastsave, status; saves is empty before Redis 7).
declare -gA HX_BGSAVE=()

# The poller's exit (save done, failed or timed out) lets tail read to the
# end of the file and stop; a failed save fails the stream with its cause.
# shellcheck disable=SC2317  # invoked through hx_store
hx__redis_live_source() {
    local result cause
    tail --bytes=+1 --follow=descriptor --pid="${HX_REDIS[poll_pid]}" --sleep-interval=0.01 -- "/dev/fd/${HX_REDIS_LIVE_FD}" 2>>"${HX_REDIS[errf]}" || return
    read -r result cause <"${HX_REDIS[pollf]}" || true
    [[ ${result:-} == ok ]] || {
        printf '%s\n' "${cause:-BGSAVE wait failed}" >>"${HX_REDIS[errf]}"
        return 1
    }
}
# shellcheck disable=SC2317  # invoked through hx_store
hx__redis_fd_source() {
    cat -- "/dev/fd/${HX_REDIS_RDB_FD}" 2>>"${HX_REDIS[errf]}"
}
# shellcheck disable=SC2317  # invoked through hx_store
hx__redis_privileged_source() {
    hx_privileged redis-copy-rdb 2>>"${HX_REDIS[errf]}"
}

# hx__redis_stream_live TARGET TEMP: follow the child's temp file TEMP while
# BGSAVE writes it. Returns 1 (nothing kept) when the file it read is not the
# saved RDB.
hx__redis_stream_live() {
    local target=$1 temp=$2 niceness poll_result poll_cause live_id rdb_id
    # The stream shares the CPUs with the BGSAVE child it follows: the job
    # yields to it at nice 10, as its systemd unit (Nice=10) runs it anyway.
    niceness=$(nice 2>/dev/null || true)
    if [[ $niceness =~ ^-?[0-9]+$ ]] && ((niceness < 10)); then
        renice --priority 10 --pid "$$" >/dev/null 2>&1 || true
    fi
    (
        if hx__bgsave_wait "$temp"; then
            echo ok
        else
            printf 'failed %s\n' "$HX_STATUS_CAUSE"
        fi
    ) >"${HX_REDIS[pollf]}" 2>>"${HX_REDIS[errf]}" &
    HX_REDIS[poll_pid]=$!
    hx_store redis "$target" "$target" rdb hx_redis_check_rdb -- hx__redis_live_source
    wait "${HX_REDIS[poll_pid]}" || true
    HX_REDIS[poll_pid]=""
    read -r poll_result poll_cause <"${HX_REDIS[pollf]}" || true
    [[ ${poll_result:-} == ok ]] || hx_die "$HX_EXIT_FAIL" "${poll_cause:-BGSAVE wait failed}"
    hx_info bgsave_done "BGSAVE finished" "type=redis" "target=$target"
    live_id=$(stat --dereference --format='%d %i %s' -- "/dev/fd/${HX_REDIS_LIVE_FD}")
    rdb_id=$(stat --dereference --format='%d %i %s' -- "${HX_REDIS[rdb]}" 2>/dev/null || true)
    exec {HX_REDIS_LIVE_FD}<&-
    if [[ $live_id != "$rdb_id" || ${live_id##* } != "${HX_OUT[plain_size]}" ]]; then
        hx_warn live_read "the RDB read during BGSAVE is not the saved file; reading the saved file" "type=redis" "target=$target"
        rm -rf -- "${HX_OUT[partial]}" "${HX_OUT[work]}"
        return 1
    fi
}

# hx__redis_stream_saved TARGET: the saved RDB, read by the job with
# redis-check-rdb beside the stream on the same descriptor (neither waits
# for the other; a later save renames a new file over the path, never
# rewrites this one). Sets HX_REDIS[keys].
hx__redis_stream_saved() {
    local target=$1 rdb_id check_rc=0 check_err rdb_size
    exec {HX_REDIS_RDB_FD}<"${HX_REDIS[rdb]}"
    rdb_id=$(stat --dereference --format='%d %i %s %y' -- "/dev/fd/${HX_REDIS_RDB_FD}")
    redis-check-rdb "/dev/fd/${HX_REDIS_RDB_FD}" >"${HX_REDIS[checkf]}" 2>&1 &
    HX_REDIS[check_pid]=$!
    hx_store redis "$target" "$target" rdb hx_check_raw -- hx__redis_fd_source
    wait "${HX_REDIS[check_pid]}" || check_rc=$?
    HX_REDIS[check_pid]=""
    if ((check_rc != 0)); then
        check_err=$(sed -n '/RDB ERROR DETECTED/{n;p;q}' "${HX_REDIS[checkf]}")
        hx_die "$HX_EXIT_FAIL" "redis-check-rdb rejected the RDB: ${check_err:-$(tail -n 3 "${HX_REDIS[checkf]}" | tr '\n' ' ')}"
    fi
    [[ $(stat --dereference --format='%d %i %s %y' -- "/dev/fd/${HX_REDIS_RDB_FD}") == "$rdb_id" ]] \
        || hx_die "$HX_EXIT_FAIL" "the RDB file changed while it was being backed up"
    read -r _ _ rdb_size _ <<<"$rdb_id"
    exec {HX_REDIS_RDB_FD}<&-
    [[ $rdb_size == "${HX_OUT[plain_size]}" ]] || hx_die "$HX_EXIT_FAIL" "read ${HX_OUT[plain_size]} bytes of an RDB file of $rdb_size bytes"
    HX_REDIS[keys]=$(hx_redis_keys_read <"${HX_REDIS[checkf]}")
}

# Exit hook: stop the helpers still running beside a failed stream, then
# record the failure.
# shellcheck disable=SC2317  # invoked through HX_ON_EXIT
hx__redis_on_exit() {
    local p
    for p in "${HX_REDIS[check_pid]:-}" "${HX_REDIS[poll_pid]:-}"; do
        [[ -n $p ]] && kill "$p" 2>/dev/null
    done
    hx_single_target_on_exit "$1"
}

# hx_redis_dump: the dump verb. Backs up the configured instance's RDB as
# target redis-PORT; exits with the cause on failure.
hx_redis_dump() {
    local settings=() start target dir live=0 read_mode=file keys i source_json
    hx_cfg_into settings redis.host redis.port redis.rdbPath redis.authFile redis.bgsaveTimeoutSeconds
    HX_REDIS=([host]=${settings[0]} [port]=${settings[1]} [rdb]=${settings[2]} [timeout]=${settings[4]} [check_pid]="" [poll_pid]="")
    local auth_file=${settings[3]}
    target=$(hx_slug "redis-${HX_REDIS[port]}")
    HX_SINGLE_TARGET=$target
    HX_ON_EXIT=hx__redis_on_exit
    start=$(hx_epoch)
    hx_key_load "$HX_KEY_ID" || hx_die "$HX_EXIT_USAGE" "encryption key: $HX_KEY_ERROR"

    unset REDISCLI_AUTH
    if [[ -n $auth_file ]]; then
        [[ -r $auth_file ]] || hx_die "$HX_EXIT_USAGE" "redis auth file not readable: $auth_file"
        IFS= read -r REDISCLI_AUTH <"$auth_file" || true
        export REDISCLI_AUTH
    fi
    # The save counters before BGSAVE. Read, they also prove the server
    # reachable and AUTH right; otherwise PING says which failed.
    if ! hx__bgsave_state; then
        local ping
        ping=$(hx__redis_cli PING 2>&1 || true)
        [[ $ping == PONG ]] || hx_die "$HX_EXIT_FAIL" "redis at ${HX_REDIS[host]}:${HX_REDIS[port]} not reachable or AUTH failed: $(head -c 200 <<<"$ping" | tr '\n' ' ')"
        hx_die "$HX_EXIT_FAIL" "$HX_STATUS_CAUSE"
    fi

    dir="$HX_STORAGE/redis/$target"
    HX_REDIS[errf]="$dir/.stderr.$$.partial"
    HX_REDIS[checkf]="$dir/.check.$$.partial"
    HX_REDIS[pollf]="$dir/.bgsave.$$.partial"
    mkdir -p -- "$dir"
    for i in errf checkf pollf; do hx_tmp_register "${HX_REDIS[$i]}"; done
    : >"${HX_REDIS[errf]}"
    : >"${HX_REDIS[pollf]}"
    HX_SOURCE_ERROR_FILE=${HX_REDIS[errf]}

    HX_REDIS[before_saves]=${HX_BGSAVE[saves]}
    HX_REDIS[before_lastsave]=${HX_BGSAVE[lastsave]}
    HX_REDIS[deadline]=$((start + HX_REDIS[timeout]))
    hx__redis_bgsave_start
    hx_info bgsave "BGSAVE requested" "type=redis" "target=$target"
    # Work that does not need the RDB is done while Redis writes it.
    hx_metrics redis "$target" "backup_last_attempt_timestamp=$start"
    local -a jsons=()
    mapfile -t jsons < <(jq --null-input --compact-output --arg c "$(redis-cli --version)" --arg h "${HX_REDIS[host]}" --arg p "${HX_REDIS[port]}" --arg rdb "${HX_REDIS[rdb]}" \
        '{"redis-cli": $c}, {host: $h, port: $p, rdbPath: $rdb}')
    ((${#jsons[@]} == 2)) || hx_die "$HX_EXIT_FAIL" "could not build the manifest fields"
    HX_EXTRA_TOOLS_JSON=${jsons[0]}
    source_json=${jsons[1]}

    # The live read: only for a save this request started, in a readable
    # directory, once the child's temp file shows up.
    local rdb=${HX_REDIS[rdb]} live_tmp="" waited=0
    if [[ ${HX_REDIS[started]} == 1 && $rdb == /* && -r ${rdb%/*} && -x ${rdb%/*} ]]; then
        for ((i = 0; i < 100; i++)); do
            live_tmp=$(hx__redis_live_temp "${HX_REDIS[pollf]}")
            [[ -n $live_tmp ]] && break
            hx__bgsave_state || hx_die "$HX_EXIT_FAIL" "$HX_STATUS_CAUSE"
            [[ ${HX_BGSAVE[in_progress]} == 1 ]] || break
            hx__redis_nap 0.01
        done
        if [[ -n $live_tmp ]] && { exec {HX_REDIS_LIVE_FD}<"$live_tmp"; } 2>/dev/null; then
            live=1
            read_mode=live
            waited=1 # the poller saw the save finish, whichever file is kept
            hx__redis_stream_live "$target" "$live_tmp" || { live=0; read_mode="file"; }
        fi
    fi
    if ((waited == 0)); then
        hx__bgsave_wait || hx_die "$HX_EXIT_FAIL" "$HX_STATUS_CAUSE"
        hx_info bgsave_done "BGSAVE finished" "type=redis" "target=$target"
    fi

    if ((live == 0)) && [[ -r $rdb ]]; then
        hx__redis_stream_saved "$target"
        keys=${HX_REDIS[keys]}
    else
        if ((live == 0)); then
            # Through the privileged helper: checked in the pipeline (hx_store's tee).
            read_mode=privileged
            hx_store redis "$target" "$target" rdb hx_redis_check_rdb -- hx__redis_privileged_source
        fi
        keys=$(hx_redis_keys_read <"${HX_OUT[work]}/check")
    fi
    [[ $keys =~ ^(0|[1-9][0-9]*)$ ]] || hx_die "$HX_EXIT_VERIFY" "redis-check-rdb did not report a key count"
    hx_commit_artifact redis "$target" "$source_json" "{\"format\":\"rdb\",\"keys\":$keys}"
    hx_backup_succeeded redis "$target" "$start" "RDB backed up and verified" "keys=$keys" "read=$read_mode"
}

# hx_redis_restore_test MANIFEST ARTIFACT: redis-check-rdb reads the RDB and
# counts the keys the manifest recorded.
hx_redis_restore_test() {
    local m=$1 a=$2 out keys want
    out=$(hx_open_artifact "$m" "$a" | redis-check-rdb /dev/stdin 2>&1) || {
        HX_VERIFY_ERROR="redis-check-rdb rejected the RDB: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    }
    keys=$(hx_redis_keys_read <<<"$out")
    want=$(jq --raw-output '.content.keys // empty' "$m")
    if [[ -n $want && $keys != "$want" ]]; then
        HX_VERIFY_ERROR="RDB has ${keys:-?} keys, manifest recorded $want"
        return 1
    fi
}

hx_redis_content_hasher() { echo hx__hash_raw; }

# hx_redis_keys_read < redis-check-rdb output: the number of keys it read
# (its first "[info] N keys read" line; a few lines, read by the shell).
hx_redis_keys_read() {
    local line
    while IFS= read -r line; do
        if [[ $line =~ ^\[info\]\ ([0-9]*)\ keys\ read ]]; then
            printf '%s\n' "${BASH_REMATCH[1]}"
            return 0
        fi
    done
}

# hx_redis_check_rdb SIZEFILE CHECKFILE < rdb: hash and size while
# redis-check-rdb reads the same bytes (its report goes to CHECKFILE).
hx_redis_check_rdb() { hx__hash_tee "$1" "$2" redis-check-rdb /dev/stdin; }

# hx_redis_restore MANIFEST ARTIFACT FILE FORCE: the RDB to FILE. Prints it.
hx_redis_restore() {
    hx_restore_to_file "$1" "$2" "$3" "$4"
    printf '%s\n' "$3"
}

HX_SOURCE_MODULE[redis]=redis
