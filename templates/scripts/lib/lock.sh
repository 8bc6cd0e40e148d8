#!/usr/bin/env bash
# hx-backup library: per-job locks (flock) and PID liveness
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

# ---------------------------------------------------------------- locking ---

# hx_lock NAME: take the job lock or exit 3. A lock whose recorded holder is
# dead (killed run, possibly with orphaned children still holding the fd) is
# broken by replacing the lock file.
hx_lock() {
    hx__lock_try "$1" && return 0
    HX_STATUS_CAUSE="locked by running pid $HX_LOCK_HOLDER"
    hx_log warning locked "another run of $1 is in progress (pid $HX_LOCK_HOLDER); exiting with code $HX_EXIT_LOCKED" "lock=$HX_LOCKS/$1.lock"
    exit "$HX_EXIT_LOCKED"
}

# hx_lock_wait NAME SECONDS: take the lock, waiting up to SECONDS for a
# running holder to finish (jobs that may be scheduled at the same time and
# must run one after the other); then exit 3 as hx_lock does.
hx_lock_wait() {
    local name=$1 deadline=$(($(hx_epoch) + $2)) said=""
    until hx__lock_try "$name"; do
        if (($(hx_epoch) >= deadline)); then
            hx_lock "$name"
        fi
        [[ -n $said ]] || hx_info lock_wait "waiting for the run of $name by pid $HX_LOCK_HOLDER to finish" "lock=$HX_LOCKS/$name.lock"
        said=1
        sleep 5
    done
}

# hx__lock_try NAME: take the lock (0), or 1 with HX_LOCK_HOLDER set when a
# live run holds it.
hx__lock_try() {
    local name=$1
    local file="$HX_LOCKS/$name.lock" guard holder_pid holder_start
    [[ -d $HX_LOCKS ]] || mkdir -p -- "$HX_LOCKS"
    exec {guard}>>"$file.guard"
    flock --timeout 30 "$guard" || hx_die "$HX_EXIT_LOCKED" "could not take lock guard $file.guard"
    exec {HX_LOCK_FD}>>"$file"
    if ! flock --nonblock "$HX_LOCK_FD"; then
        read -r holder_pid holder_start <"$file" || true
        if [[ -n ${holder_pid:-} ]] && hx__pid_alive "$holder_pid" "${holder_start:-}"; then
            exec {guard}>&- {HX_LOCK_FD}>&-
            HX_LOCK_HOLDER=$holder_pid
            return 1
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
HX_LOCK_HOLDER=""

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
