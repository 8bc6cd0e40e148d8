#!/usr/bin/env bash
# Redis backup: BGSAVE, wait for it (rdb_saves counter, in-progress flag and
# last status; LASTSAVE alone has one-second resolution), then stream the RDB
# through the pipeline while redis-check-rdb checks it and counts the keys.
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
HX_ON_EXIT=hx_single_target_on_exit
hx_init "redis-daily"
hx_lock redis-backup
[[ $(hx_cfg '.redis | type') == object ]] || hx_die "$HX_EXIT_USAGE" "config: redis is not configured on this host"

R_HOST=$(hx_cfg '.redis.host // "127.0.0.1"')
R_PORT=$(hx_cfg '.redis.port // 6379')
RDB=$(hx_cfg '.redis.rdbPath // ""')
AUTH_FILE=$(hx_cfg '.redis.authFile // ""')
TIMEOUT=$(hx_cfg '.redis.bgsaveTimeoutSeconds // 3600')
TARGET=$(hx_slug "redis-$R_PORT")
HX_ARCHIVE_TARGET=$TARGET
START=$(hx_epoch)
hx_metrics redis "$TARGET" "backup_last_attempt_timestamp=$START"
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

# info_field NAME: one field of INFO persistence.
info_field() {
    local info
    info=$(rcli INFO persistence 2>&1) || return 1
    sed -n "s/^$1:\\([^[:space:]]*\\).*/\\1/p" <<<"$info" | head -n 1
}

PING=$(rcli PING 2>&1 || true)
[[ $PING == PONG ]] || hx_die "$HX_EXIT_FAIL" "redis at $R_HOST:$R_PORT not reachable or AUTH failed: $(head -c 200 <<<"$PING" | tr '\n' ' ')"

BEFORE_SAVES=$(info_field rdb_saves)
BEFORE_LASTSAVE=$(rcli LASTSAVE)
deadline=$((START + TIMEOUT))
while :; do
    out=$(rcli BGSAVE SCHEDULE 2>&1 || true)
    case $out in
        *"started"* | *"scheduled"*) break ;;
        *"already in progress"*) ;;
        *) hx_die "$HX_EXIT_FAIL" "BGSAVE failed: $(head -c 200 <<<"$out" | tr '\n' ' ')" ;;
    esac
    (($(hx_epoch) < deadline)) || hx_die "$HX_EXIT_FAIL" "timed out waiting to start BGSAVE"
    sleep 0.5
done
hx_info bgsave "BGSAVE requested" "type=redis" "target=$TARGET"
while :; do
    in_progress=$(info_field rdb_bgsave_in_progress)
    saves=$(info_field rdb_saves)
    last=$(rcli LASTSAVE)
    if [[ $in_progress == 0 ]]; then
        if [[ -n $saves && -n $BEFORE_SAVES ]]; then
            ((saves > BEFORE_SAVES)) && break
        elif ((last > BEFORE_LASTSAVE)); then
            break
        fi
    fi
    (($(hx_epoch) < deadline)) || hx_die "$HX_EXIT_FAIL" "timed out after ${TIMEOUT}s waiting for BGSAVE"
    sleep 0.2
done
status=$(info_field rdb_last_bgsave_status)
[[ $status == ok ]] || hx_die "$HX_EXIT_FAIL" "BGSAVE finished with status '$status'"
hx_info bgsave_done "BGSAVE finished" "type=redis" "target=$TARGET"

ERRF="$HX_STORAGE/redis/$TARGET/.stderr.$$.partial"
mkdir -p -- "$HX_STORAGE/redis/$TARGET"
hx_tmp_register "$ERRF"
: >"$ERRF"
HX_SOURCE_ERROR_FILE=$ERRF
# shellcheck disable=SC2317  # invoked through hx_store
rdb_source() {
    if [[ -r $RDB ]]; then
        cat -- "$RDB" 2>>"$ERRF"
    else
        hx_privileged redis-copy-rdb 2>>"$ERRF"
    fi
}
HX_EXTRA_TOOLS_JSON=$(jq --null-input --compact-output --arg c "$(redis-cli --version)" '{"redis-cli": $c}')
hx_store redis "$TARGET" "$TARGET" rdb redis -- rdb_source
[[ $HX_OUT_REDIS_KEYS =~ ^[0-9]+$ ]] || hx_die "$HX_EXIT_VERIFY" "redis-check-rdb did not report a key count"
SOURCE_JSON=$(jq --null-input --compact-output --arg h "$R_HOST" --arg p "$R_PORT" --arg rdb "$RDB" '{host: $h, port: $p, rdbPath: $rdb}')
CONTENT_JSON=$(jq --null-input --compact-output --argjson k "$HX_OUT_REDIS_KEYS" '{format: "rdb", keys: $k}')
hx_commit_artifact redis "$TARGET" "$SOURCE_JSON" "$CONTENT_JSON"
NOW=$(hx_epoch)
SIZE_STATUS=$(hx_size_check "$HX_OUT_DIR" "$HX_OUT_PLAIN_SIZE")
[[ $SIZE_STATUS == 1 ]] || hx_warn size_check "backup size $HX_OUT_PLAIN_SIZE is outside the configured band around the median ${HX_SIZE_MEDIAN:-?}" "type=redis" "target=$TARGET"
hx_info backup_ok "RDB backed up and verified" "type=redis" "target=$TARGET" "manifest=$HX_OUT_MANIFEST" "keys=$HX_OUT_REDIS_KEYS" \
    "plain_bytes=$HX_OUT_PLAIN_SIZE" "stored_bytes=$HX_OUT_STORED_SIZE"
hx_metrics redis "$TARGET" backup_last_run_status=1 "backup_last_success_timestamp=$NOW" \
    "backup_duration_seconds=$((NOW - START))" "backup_size_bytes=$HX_OUT_STORED_SIZE" \
    backup_verification_status=1 "backup_dedup_saved_bytes=$HX_OUT_DEDUP_SAVED" \
    "backup_size_check_status=$SIZE_STATUS" "backup_storage_usage_bytes=$(hx_storage_usage "$HX_OUT_DIR")"
RC=0
hx_finish_job redis "$RC" || RC=$?
exit "$RC"
