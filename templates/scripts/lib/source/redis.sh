#!/usr/bin/env bash
# hx-backup library: the Redis data source: RDB check, restore test and restore.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_SOURCE_MODULE # defined in core.sh; this module adds its types

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

# hx_redis_keys_read < redis-check-rdb output: the number of keys it read.
hx_redis_keys_read() { sed -n 's/^\[info\] \([0-9]*\) keys read.*/\1/p' | head -n 1; }

# hx_redis_check_rdb SIZEFILE CHECKFILE < rdb: hash and size while
# redis-check-rdb reads the same bytes (its report goes to CHECKFILE).
hx_redis_check_rdb() { hx__hash_tee "$1" "$2" redis-check-rdb /dev/stdin; }

# hx_redis_restore MANIFEST ARTIFACT FILE FORCE: the RDB to FILE. Prints it.
hx_redis_restore() {
    hx_restore_to_file "$1" "$2" "$3" "$4"
    printf '%s\n' "$3"
}

HX_SOURCE_MODULE[redis]=redis
