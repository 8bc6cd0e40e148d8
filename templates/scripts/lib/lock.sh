#!/usr/bin/env bash
# hx-backup library: per-job locks (flock) and PID liveness
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

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
