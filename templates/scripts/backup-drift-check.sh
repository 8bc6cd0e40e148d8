#!/usr/bin/env bash
# Periodic drift check on the host: compares every file the deploy recorded in
# its install manifest (manifest.d) with what is on disk (content, owner,
# group, mode; secrets by owner and mode only), and lists stray files where
# only hx-backup files belong. Logs each difference and exports
# backup_config_drift (the number of drifted paths) for the ConfigDrift alert.
#
# Usage: backup-drift-check.sh
# Exit codes: 0 no drift, 1 drift found, 2 config error.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=drift
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

# What the deploy installed, by path: "owner:group mode" and sha256 ("-" for
# secrets); and, in files that are not ours, the sha256 of our managed blocks.
declare -A WANT_META=() WANT_HASH=() WANT_BLOCKS=()

# Reads every manifest entry (path owner group mode sha256|-, or path @block - - sha256)
# that an install record names: an entry without one was left by a step whose files
# another step has taken over (a regrouped or renamed step), and describes nothing.
read_manifest() {
    local dir=$1 records=$2 entry path owner group mode digest record
    for entry in "$dir"/*.tsv; do
        [[ -f $entry ]] || continue
        if [[ -d $records/owners ]]; then
            record=$(printf '%s' "$entry" | sha256sum)
            if [[ ! -f $records/owners/${record%% *} ]]; then
                hx_info drift "skipping a manifest entry no install record names: $entry" "entry=$entry"
                continue
            fi
        fi
        while IFS=$'\t' read -r path owner group mode digest; do
            [[ -n $path ]] || continue
            if [[ $owner == @block ]]; then
                WANT_BLOCKS["$path"]=$digest
                continue
            fi
            WANT_META["$path"]="$owner:$group $((8#$mode))"
            WANT_HASH["$path"]=$digest
        done <"$entry"
    done
}

main() {
    hx_init_common drift-check
    local manifest_dir records_dir inspect
    hx_cfg_read manifest_dir drift.manifestDir
    hx_cfg_read records_dir drift.recordsDir
    [[ -d $manifest_dir ]] || hx_die "$HX_EXIT_USAGE" "no install manifest at '$manifest_dir': deploy this host first"
    inspect="$HX_SCRIPTS_DIR_SELF/hx-drift-inspect.sh"

    local -A ignored=()
    read_manifest "$manifest_dir" "$records_dir"
    local -a watch ignore
    hx_cfg_into watch 'drift.watch[]'
    hx_cfg_into ignore 'drift.ignore[]'
    local p
    for p in "${ignore[@]}"; do ignored[$p]=1; done

    local requests="" result kind path owner group mode digest
    for p in "${!WANT_META[@]}"; do
        requests+=$(printf 'F\t%s\t%s' "$p" "$([[ ${WANT_HASH[$p]} == - ]] && echo nohash || echo hash)")$'\n'
    done
    for p in "${watch[@]}"; do requests+=$(printf 'W\t%s' "$p")$'\n'; done
    for p in "${!WANT_BLOCKS[@]}"; do requests+=$(printf 'B\t%s\t%s' "$p" "$HX_STACK")$'\n'; done
    result=$(printf '%s' "$requests" | bash "$inspect")

    local drifted=0
    local -A seen=()
    while IFS=$'\t' read -r kind path owner group mode digest; do
        case $kind in
            F)
                [[ -z ${seen[$path]:-} ]] || continue
                seen[$path]=1
                if [[ $owner == MISSING ]]; then
                    hx_warn drift "missing: $path" "path=$path" "kind=missing"
                    drifted=$((drifted + 1))
                    continue
                fi
                local problem=""
                [[ ${WANT_HASH[$path]} == - || $digest == "${WANT_HASH[$path]}" ]] || problem=changed
                [[ "$owner:$group $((8#$mode))" == "${WANT_META[$path]}" ]] || problem=${problem:-owner_or_mode}
                if [[ -n $problem ]]; then
                    hx_warn drift "$problem: $path" "path=$path" "kind=$problem" "found=$owner:$group:$mode"
                    drifted=$((drifted + 1))
                fi
                ;;
            B)
                # owner holds the blocks' sha256, or MISSING.
                if [[ $owner != "${WANT_BLOCKS[$path]}" ]]; then
                    local what=changed
                    [[ $owner == MISSING ]] && what=missing
                    hx_warn drift "hx-backup's managed block $what: $path" "path=$path" "kind=block_$what"
                    drifted=$((drifted + 1))
                fi
                ;;
            W)
                # The manifest's own entries are not listed in it.
                if [[ -z ${WANT_META[$path]:-} && -z ${ignored[$path]:-} && $path != "$manifest_dir"/* ]]; then
                    hx_warn drift "extra: $path" "path=$path" "kind=extra"
                    drifted=$((drifted + 1))
                fi
                ;;
        esac
    done <<<"$result"

    local now
    now=$(hx_epoch)
    hx_metrics drift files "backup_config_drift=$drifted" "backup_last_run_status=1" "backup_last_attempt_timestamp=$now" "backup_last_success_timestamp=$now" "backup_duration_seconds=$((now - HX_START_EPOCH))"
    if ((drifted > 0)); then
        hx_warn drift "drift found: $drifted path(s) differ from the install manifest; pulumi preview --diff shows the steps, and pulumi up installs them again" "drifted=$drifted"
        return 1
    fi
    hx_info drift "no drift: ${#WANT_META[@]} installed files and ${#WANT_BLOCKS[@]} managed block file(s) match the install manifest" "files=${#WANT_META[@]}" "block_files=${#WANT_BLOCKS[@]}"
}

main "$@"
