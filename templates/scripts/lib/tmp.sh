#!/usr/bin/env bash
# hx-backup library: the temp paths a job registers, removed when it exits
# (hx__on_exit in core.sh; a dead run's, by hx_clean_dead_temps).
# Sourced by hx-backup-lib.sh; never run.

HX_TMP_PATHS=()
# The process whose exit removes HX_TMP_PATHS.
HX_TMP_OWNER=$BASHPID

# hx_tmp_register PATH: PATH is removed when this shell exits. A subshell
# ($(...), a pipeline stage, a background job) runs none of its parent's exit
# trap, and would add to a copy of its parent's list: the first path a
# subshell registers gives it a list and an EXIT trap of its own.
hx_tmp_register() {
    if [[ $HX_TMP_OWNER != "$BASHPID" ]]; then
        hx_tmp_scope
        trap hx_tmp_cleanup EXIT
    fi
    HX_TMP_PATHS+=("$1")
}

# hx_tmp_scope: for a subshell whose own exit trap calls hx_tmp_cleanup: it
# starts its own empty list (its parent's paths stay its parent's).
hx_tmp_scope() {
    HX_TMP_OWNER=$BASHPID
    HX_TMP_PATHS=()
}

# Removes every registered temp path that exists, in one rm.
hx_tmp_cleanup() {
    local p
    local -a left=()
    for p in "${HX_TMP_PATHS[@]}"; do
        [[ -n $p && -e $p ]] && left+=("$p")
    done
    ((${#left[@]} == 0)) || rm -rf -- "${left[@]}"
    return 0
}
