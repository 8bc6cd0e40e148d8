#!/usr/bin/env bash
# hx-backup library: the Redis data source, part: redis-cli and BGSAVE
# (start, state, wait) for the dump verb in redis.sh.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_REDIS # defined in redis.sh

hx__redis_cli() {
    redis-cli -h "${HX_REDIS[host]}" -p "${HX_REDIS[port]}" --no-auth-warning "$@"
}

# hx__redis_nap SECONDS: sleep without a process. The waits below poll every
# 10 to 50 ms while BGSAVE runs, and a sleep process each time is CPU taken
# from the save and the stream: a read that times out on a pipe that no one
# writes to (this shell holds its write end) waits in the shell instead.
hx__redis_nap() {
    local nothing
    [[ -n ${HX_REDIS_NAP_FD:-} ]] || exec {HX_REDIS_NAP_FD}<> <(:)
    read -r -t "$1" -u "$HX_REDIS_NAP_FD" nothing || true
}

# hx__bgsave_state: one INFO persistence call into HX_BGSAVE.
hx__bgsave_state() {
    local info line
    info=$(hx__redis_cli INFO persistence 2>&1) || {
        HX_STATUS_CAUSE="INFO persistence failed: $(head -c 200 <<<"$info" | tr '\n' ' ')"
        return 1
    }
    HX_BGSAVE=([in_progress]="" [saves]="" [lastsave]="" [status]="")
    while IFS= read -r line; do
        line=${line%$'\r'}
        case $line in
            rdb_bgsave_in_progress:*) HX_BGSAVE[in_progress]=${line#*:} ;;
            rdb_saves:*) HX_BGSAVE[saves]=${line#*:} ;;
            rdb_last_save_time:*) HX_BGSAVE[lastsave]=${line#*:} ;;
            rdb_last_bgsave_status:*) HX_BGSAVE[status]=${line#*:} ;;
        esac
    done <<<"$info"
    [[ ${HX_BGSAVE[in_progress]} =~ ^[01]$ && ${HX_BGSAVE[lastsave]} =~ ^[0-9]+$ && ${HX_BGSAVE[saves]} =~ ^[0-9]*$ ]] || {
        HX_STATUS_CAUSE="INFO persistence reported no usable rdb fields"
        return 1
    }
}

# hx__bgsave_wait [TEMP]: poll every 50 ms until the requested save has
# finished and succeeded; otherwise set HX_STATUS_CAUSE and return 1. With
# TEMP (the child's temp file), wait without a process while it exists (the
# child renames it when the RDB is complete), then poll every 10 ms until the
# server has reaped the child and reports the result.
hx__bgsave_wait() {
    local temp=${1:-} interval=0.05 now
    [[ -z $temp ]] || interval=0.01
    while :; do
        printf -v now '%(%s)T' -1
        if ((now >= HX_REDIS[deadline])); then
            HX_STATUS_CAUSE="timed out after ${HX_REDIS[timeout]}s waiting for BGSAVE"
            return 1
        fi
        if [[ -n $temp && -e $temp ]]; then
            hx__redis_nap 0.02
            continue
        fi
        hx__bgsave_state || return 1
        if [[ ${HX_BGSAVE[in_progress]} == 0 ]]; then
            if [[ -n ${HX_BGSAVE[saves]} && -n ${HX_REDIS[before_saves]} ]]; then
                ((HX_BGSAVE[saves] > HX_REDIS[before_saves])) && break
            elif ((HX_BGSAVE[lastsave] > HX_REDIS[before_lastsave])); then
                break
            fi
        fi
        hx__redis_nap "$interval"
    done
    [[ ${HX_BGSAVE[status]} == ok ]] || {
        HX_STATUS_CAUSE="BGSAVE finished with status '${HX_BGSAVE[status]}'"
        return 1
    }
}

# hx__redis_live_temp REF: print the newest temp-<pid>.rdb next to the RDB
# that is newer than the file REF (made before BGSAVE), or nothing.
hx__redis_live_temp() {
    local ref=$1 f newest=""
    for f in "${HX_REDIS[rdb]%/*}"/temp-*.rdb; do
        [[ ${f##*/} =~ ^temp-[0-9]+\.rdb$ && -f $f && -r $f && $f -nt $ref ]] || continue
        [[ -z $newest || $f -nt $newest ]] && newest=$f
    done
    printf '%s' "$newest"
}

# hx__redis_bgsave_start: BGSAVE (waiting out one already running). Sets
# HX_REDIS[started] to 1 only when this request started the save.
hx__redis_bgsave_start() {
    local out
    while :; do
        out=$(hx__redis_cli BGSAVE SCHEDULE 2>&1 || true)
        case $out in
            *"started"* | *"scheduled"*) break ;;
            *"already in progress"*) ;;
            *) hx_die "$HX_EXIT_FAIL" "BGSAVE failed: $(head -c 200 <<<"$out" | tr '\n' ' ')" ;;
        esac
        (($(hx_epoch) < HX_REDIS[deadline])) || hx_die "$HX_EXIT_FAIL" "timed out waiting to start BGSAVE"
        sleep 0.5
    done
    HX_REDIS[started]=0
    [[ $out != *"started"* ]] || HX_REDIS[started]=1
}
