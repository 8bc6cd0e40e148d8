#!/usr/bin/env bash
# Redis backup: BGSAVE, wait for it (rdb_saves counter, in-progress flag and
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
#
# Usage: redis-backup.sh
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=redis
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

if (($# != 0)); then
    echo "usage: $HX_SCRIPT_NAME" >&2
    exit "$HX_EXIT_USAGE"
fi
CHECK_PID=""
POLL_PID=""
# Exit hook: stop helpers still running beside a failed stream.
# shellcheck disable=SC2317  # invoked through HX_ON_EXIT
redis_on_exit() {
    local p
    for p in "$CHECK_PID" "$POLL_PID"; do
        [[ -n $p ]] && kill "$p" 2>/dev/null
    done
    hx_single_target_on_exit "$1"
}
HX_ON_EXIT=redis_on_exit
hx_init "redis-daily"
hx_lock redis-backup
hx_cfg_section redis || hx_die "$HX_EXIT_USAGE" "config: redis is not configured on this host"
settings=()
hx_cfg_into settings redis.host redis.port redis.rdbPath redis.authFile redis.bgsaveTimeoutSeconds
R_HOST=${settings[0]}
R_PORT=${settings[1]}
RDB=${settings[2]}
AUTH_FILE=${settings[3]}
TIMEOUT=${settings[4]}
TARGET=$(hx_slug "redis-$R_PORT")
HX_ARCHIVE_TARGET=$TARGET
START=$(hx_epoch)
hx_key_load "$HX_KEY_ID" || hx_die "$HX_EXIT_USAGE" "encryption key: $HX_KEY_ERROR"

unset REDISCLI_AUTH
if [[ -n $AUTH_FILE ]]; then
    [[ -r $AUTH_FILE ]] || hx_die "$HX_EXIT_USAGE" "redis auth file not readable: $AUTH_FILE"
    IFS= read -r REDISCLI_AUTH <"$AUTH_FILE" || true
    export REDISCLI_AUTH
fi

rcli() {
    redis-cli -h "$R_HOST" -p "$R_PORT" --no-auth-warning "$@"
}

# bgsave_state: one INFO persistence call into BG_IN_PROGRESS, BG_SAVES,
# BG_LASTSAVE and BG_STATUS (BG_SAVES is empty before Redis 7).
bgsave_state() {
    local info line
    info=$(rcli INFO persistence 2>&1) || {
        HX_STATUS_CAUSE="INFO persistence failed: $(head -c 200 <<<"$info" | tr '\n' ' ')"
        return 1
    }
    BG_IN_PROGRESS="" BG_SAVES="" BG_LASTSAVE="" BG_STATUS=""
    while IFS= read -r line; do
        line=${line%$'\r'}
        case $line in
            rdb_bgsave_in_progress:*) BG_IN_PROGRESS=${line#*:} ;;
            rdb_saves:*) BG_SAVES=${line#*:} ;;
            rdb_last_save_time:*) BG_LASTSAVE=${line#*:} ;;
            rdb_last_bgsave_status:*) BG_STATUS=${line#*:} ;;
        esac
    done <<<"$info"
    [[ $BG_IN_PROGRESS =~ ^[01]$ && $BG_LASTSAVE =~ ^[0-9]+$ && $BG_SAVES =~ ^[0-9]*$ ]] || {
        HX_STATUS_CAUSE="INFO persistence reported no usable rdb fields"
        return 1
    }
}

# bgsave_wait: poll every 50 ms until the requested save has finished and
# succeeded; otherwise set HX_STATUS_CAUSE and return 1.
bgsave_wait() {
    while :; do
        bgsave_state || return 1
        if [[ $BG_IN_PROGRESS == 0 ]]; then
            if [[ -n $BG_SAVES && -n $BEFORE_SAVES ]]; then
                ((BG_SAVES > BEFORE_SAVES)) && break
            elif ((BG_LASTSAVE > BEFORE_LASTSAVE)); then
                break
            fi
        fi
        if (($(printf '%(%s)T' -1) >= DEADLINE)); then
            HX_STATUS_CAUSE="timed out after ${TIMEOUT}s waiting for BGSAVE"
            return 1
        fi
        sleep 0.05
    done
    [[ $BG_STATUS == ok ]] || {
        HX_STATUS_CAUSE="BGSAVE finished with status '$BG_STATUS'"
        return 1
    }
}

# live_temp_file REF: set LIVE_TMP to the newest temp-<pid>.rdb next to the
# RDB that is newer than the file REF (made before BGSAVE), or to "".
live_temp_file() {
    local ref=$1 f
    LIVE_TMP=""
    for f in "${RDB%/*}"/temp-*.rdb; do
        [[ ${f##*/} =~ ^temp-[0-9]+\.rdb$ && -f $f && -r $f && $f -nt $ref ]] || continue
        [[ -z $LIVE_TMP || $f -nt $LIVE_TMP ]] && LIVE_TMP=$f
    done
    return 0
}

PING=$(rcli PING 2>&1 || true)
[[ $PING == PONG ]] || hx_die "$HX_EXIT_FAIL" "redis at $R_HOST:$R_PORT not reachable or AUTH failed: $(head -c 200 <<<"$PING" | tr '\n' ' ')"

DIR="$HX_STORAGE/redis/$TARGET"
ERRF="$DIR/.stderr.$$.partial"
CHECKF="$DIR/.check.$$.partial"
POLLF="$DIR/.bgsave.$$.partial"
mkdir -p -- "$DIR"
hx_tmp_register "$ERRF"
hx_tmp_register "$CHECKF"
hx_tmp_register "$POLLF"
: >"$ERRF"
: >"$POLLF"
HX_SOURCE_ERROR_FILE=$ERRF

bgsave_state || hx_die "$HX_EXIT_FAIL" "$HX_STATUS_CAUSE"
BEFORE_SAVES=$BG_SAVES
BEFORE_LASTSAVE=$BG_LASTSAVE
DEADLINE=$((START + TIMEOUT))
while :; do
    out=$(rcli BGSAVE SCHEDULE 2>&1 || true)
    case $out in
        *"started"* | *"scheduled"*) break ;;
        *"already in progress"*) ;;
        *) hx_die "$HX_EXIT_FAIL" "BGSAVE failed: $(head -c 200 <<<"$out" | tr '\n' ' ')" ;;
    esac
    (($(hx_epoch) < DEADLINE)) || hx_die "$HX_EXIT_FAIL" "timed out waiting to start BGSAVE"
    sleep 0.5
done
hx_info bgsave "BGSAVE requested" "type=redis" "target=$TARGET"
# Work that does not need the RDB is done while Redis writes it.
hx_metrics redis "$TARGET" "backup_last_attempt_timestamp=$START"
mapfile -t JSONS < <(jq --null-input --compact-output --arg c "$(redis-cli --version)" --arg h "$R_HOST" --arg p "$R_PORT" --arg rdb "$RDB" \
    '{"redis-cli": $c}, {host: $h, port: $p, rdbPath: $rdb}')
((${#JSONS[@]} == 2)) || hx_die "$HX_EXIT_FAIL" "could not build the manifest fields"
HX_EXTRA_TOOLS_JSON=${JSONS[0]}
SOURCE_JSON=${JSONS[1]}

# The poller's exit (save done, failed or timed out) lets tail read to the
# end of the file and stop; a failed save fails the stream with its cause.
# shellcheck disable=SC2317  # invoked through hx_store
rdb_live_source() {
    local result cause
    tail --bytes=+1 --follow=descriptor --pid="$POLL_PID" --sleep-interval=0.05 -- "/dev/fd/$LIVE_FD" 2>>"$ERRF" || return
    read -r result cause <"$POLLF" || true
    [[ ${result:-} == ok ]] || {
        printf '%s\n' "${cause:-BGSAVE wait failed}" >>"$ERRF"
        return 1
    }
}
# shellcheck disable=SC2317  # invoked through hx_store
rdb_fd_source() {
    cat -- "/dev/fd/$RDB_FD" 2>>"$ERRF"
}
# shellcheck disable=SC2317  # invoked through hx_store
rdb_source() {
    hx_privileged redis-copy-rdb 2>>"$ERRF"
}

# The live read: only for a save this request started, in a readable
# directory, once the child's temp file shows up.
LIVE=0
READ_MODE="file"
if [[ $out == *"started"* && $RDB == /* && -r ${RDB%/*} && -x ${RDB%/*} ]]; then
    for ((i = 0; i < 100; i++)); do
        live_temp_file "$POLLF"
        [[ -n $LIVE_TMP ]] && break
        bgsave_state || hx_die "$HX_EXIT_FAIL" "$HX_STATUS_CAUSE"
        [[ $BG_IN_PROGRESS == 1 ]] || break
        sleep 0.01
    done
    if [[ -n $LIVE_TMP ]] && { exec {LIVE_FD}<"$LIVE_TMP"; } 2>/dev/null; then
        LIVE=1
        READ_MODE=live
    fi
fi
if ((LIVE == 1)); then
    # The stream shares the CPUs with the BGSAVE child it follows: the job
    # yields to it at nice 10, as its systemd unit (Nice=10) runs it anyway.
    niceness=$(nice 2>/dev/null || true)
    if [[ $niceness =~ ^-?[0-9]+$ ]] && ((niceness < 10)); then
        renice --priority 10 --pid "$$" >/dev/null 2>&1 || true
    fi
    (
        if bgsave_wait; then
            echo ok
        else
            printf 'failed %s\n' "$HX_STATUS_CAUSE"
        fi
    ) >"$POLLF" 2>>"$ERRF" &
    POLL_PID=$!
    hx_store redis "$TARGET" "$TARGET" rdb hx_redis_check_rdb -- rdb_live_source
    wait "$POLL_PID" || true
    POLL_PID=""
    read -r poll_result poll_cause <"$POLLF" || true
    [[ ${poll_result:-} == ok ]] || hx_die "$HX_EXIT_FAIL" "${poll_cause:-BGSAVE wait failed}"
    hx_info bgsave_done "BGSAVE finished" "type=redis" "target=$TARGET"
    live_id=$(stat --dereference --format='%d %i %s' -- "/dev/fd/$LIVE_FD")
    rdb_id=$(stat --dereference --format='%d %i %s' -- "$RDB" 2>/dev/null || true)
    exec {LIVE_FD}<&-
    if [[ $live_id != "$rdb_id" || ${live_id##* } != "${HX_OUT[plain_size]}" ]]; then
        hx_warn live_read "the RDB read during BGSAVE is not the saved file; reading the saved file" "type=redis" "target=$TARGET"
        rm -rf -- "${HX_OUT[partial]}" "${HX_OUT[work]}"
        LIVE=0
        READ_MODE="file"
    fi
else
    bgsave_wait || hx_die "$HX_EXIT_FAIL" "$HX_STATUS_CAUSE"
    hx_info bgsave_done "BGSAVE finished" "type=redis" "target=$TARGET"
fi

if ((LIVE == 0)) && [[ -r $RDB ]]; then
    # redis-check-rdb reads the file beside the stream instead of behind a
    # tee, so neither waits for the other. Both open it through one
    # descriptor, i.e. the same inode: a later save renames a new file over
    # the path, never rewrites this one; identity and size are compared after.
    exec {RDB_FD}<"$RDB"
    RDB_ID=$(stat --dereference --format='%d %i %s %y' -- "/dev/fd/$RDB_FD")
    redis-check-rdb "/dev/fd/$RDB_FD" >"$CHECKF" 2>&1 &
    CHECK_PID=$!
    hx_store redis "$TARGET" "$TARGET" rdb hx_check_raw -- rdb_fd_source
    check_rc=0
    wait "$CHECK_PID" || check_rc=$?
    CHECK_PID=""
    if ((check_rc != 0)); then
        check_err=$(sed -n '/RDB ERROR DETECTED/{n;p;q}' "$CHECKF")
        hx_die "$HX_EXIT_FAIL" "redis-check-rdb rejected the RDB: ${check_err:-$(tail -n 3 "$CHECKF" | tr '\n' ' ')}"
    fi
    [[ $(stat --dereference --format='%d %i %s %y' -- "/dev/fd/$RDB_FD") == "$RDB_ID" ]] \
        || hx_die "$HX_EXIT_FAIL" "the RDB file changed while it was being backed up"
    read -r _ _ RDB_SIZE _ <<<"$RDB_ID"
    exec {RDB_FD}<&-
    [[ $RDB_SIZE == "${HX_OUT[plain_size]}" ]] || hx_die "$HX_EXIT_FAIL" "read ${HX_OUT[plain_size]} bytes of an RDB file of $RDB_SIZE bytes"
    REDIS_KEYS=$(hx_redis_keys_read <"$CHECKF")
else
    if ((LIVE == 0)); then
        # Through the privileged helper: checked in the pipeline (hx_store's tee).
        READ_MODE=privileged
        hx_store redis "$TARGET" "$TARGET" rdb hx_redis_check_rdb -- rdb_source
    fi
    REDIS_KEYS=$(hx_redis_keys_read <"${HX_OUT[work]}/check")
fi
[[ $REDIS_KEYS =~ ^(0|[1-9][0-9]*)$ ]] || hx_die "$HX_EXIT_VERIFY" "redis-check-rdb did not report a key count"
CONTENT_JSON="{\"format\":\"rdb\",\"keys\":$REDIS_KEYS}"
hx_commit_artifact redis "$TARGET" "$SOURCE_JSON" "$CONTENT_JSON"
NOW=$(hx_epoch)
SIZE_STATUS=$(hx_size_check "${HX_OUT[dir]}" "${HX_OUT[plain_size]}")
[[ $SIZE_STATUS == 1 ]] || hx_warn size_check "backup size ${HX_OUT[plain_size]} is outside the configured band around the median ${HX_SIZE_MEDIAN:-?}" "type=redis" "target=$TARGET"
hx_info backup_ok "RDB backed up and verified" "type=redis" "target=$TARGET" "manifest=${HX_OUT[manifest]}" "keys=$REDIS_KEYS" \
    "plain_bytes=${HX_OUT[plain_size]}" "stored_bytes=${HX_OUT[stored_size]}" "read=$READ_MODE"
hx_metrics redis "$TARGET" backup_last_run_status=1 "backup_last_success_timestamp=$NOW" \
    "backup_duration_seconds=$((NOW - START))" "backup_size_bytes=${HX_OUT[stored_size]}" \
    backup_verification_status=1 "backup_dedup_saved_bytes=${HX_OUT[dedup_saved]}" \
    "backup_size_check_status=$SIZE_STATUS" "backup_storage_usage_bytes=$(hx_storage_usage "${HX_OUT[dir]}")"
RC=0
hx_finish_job redis "$RC" || RC=$?
exit "$RC"
