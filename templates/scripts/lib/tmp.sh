#!/usr/bin/env bash
# hx-backup library: the temp paths a job registers, removed when it exits
# (hx__on_exit in core.sh; a dead run's, by hx_clean_dead_temps).
# Sourced by hx-backup-lib.sh; never run.

HX_TMP_PATHS=()

hx_tmp_register() { HX_TMP_PATHS+=("$1"); }

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
