#!/usr/bin/env bash
# Local GFS retention with restic's semantics (--keep-daily/-weekly/-monthly/
# -yearly): walking backups newest first, a backup is kept for a rule when it
# is the newest one in a day / ISO week / month / year not yet counted by that
# rule, until the rule's count is used up. Periods without a backup do not
# count; one backup may satisfy several rules. The newest verified backup of
# each source is never deleted. Artifacts still referenced by a kept
# (deduplicated) manifest are kept. Periods are counted in
# retention.timeZone (local: the host's zone, as restic does).
#
# Usage: backup-retention.sh [--type TYPE] [--dry-run]
#   --dry-run  list what would be deleted and why; delete nothing (the
#              verification of the newest backups still records its outcome)
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=retention
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

ONLY_TYPE=""
DRY=0
while (($# > 0)); do
    case $1 in
        --type)
            ONLY_TYPE=$(hx_type_option "$@")
            shift
            ;;
        --dry-run) DRY=1 ;;
        *)
            echo "usage: $HX_SCRIPT_NAME [--type TYPE] [--dry-run]" >&2
            exit "$HX_EXIT_USAGE"
            ;;
    esac
    shift
done

HX_DRY_RUN=$DRY # hx_init's cleanup of dead runs' temp paths only lists them
hx_init "${HX_JOB:-retention}"
hx_lock "backup-retention"
hx_retention_zone || hx_die "$HX_EXIT_USAGE" "$HX_ZONE_ERROR"
RULES=(daily weekly monthly yearly)
counts=()
hx_cfg_into counts retention.daily retention.weekly retention.monthly retention.yearly
declare -A KEEP_N=([daily]=${counts[0]} [weekly]=${counts[1]} [monthly]=${counts[2]} [yearly]=${counts[3]})
# Unreferenced artifacts younger than this may belong to a run that is
# committing right now (artifact renamed, manifest not yet).
hx_cfg_read ORPHAN_MINUTES retention.orphanMinutes
if ((KEEP_N[daily] + KEEP_N[weekly] + KEEP_N[monthly] + KEEP_N[yearly] == 0)); then
    hx_warn retention "all retention counts are 0: keeping everything"
    exit 0
fi

# prune_artifact PATH: delete (or, with --dry-run, list) an artifact no
# kept manifest refers to, and its record of remote copies.
prune_artifact() {
    local a=$1 b
    hx_basename_into b "$a"
    if ((DRY == 1)); then
        echo "delete $type/$target/$b (artifact not referenced by any kept manifest)"
    else
        rm -f -- "$a" "$dir/.$b.remote"
        hx_info pruned "deleted unreferenced artifact" "type=$type" "target=$target" "artifact=$b"
    fi
}

SOURCES=()
hx_source_dirs SOURCES "$ONLY_TYPE"
DELETED=0
for dir in "${SOURCES[@]}"; do
    hx_source_of "$dir" type target
    mapfile -d '' -t ms < <(hx_manifests "$dir" --reverse)
    ((${#ms[@]} > 0)) || continue
    declare -A last=() left=() why=()
    for r in "${RULES[@]}"; do
        left[$r]=${KEEP_N[$r]}
        last[$r]=""
    done
    newest_verified=""
    # createdAt and artifact of every manifest in one jq pass.
    declare -A created_of=() artifact_of=()
    while IFS=$'\t' read -r fname c a; do
        created_of[$fname]=$c
        artifact_of[$fname]=$a
    done < <(jq --raw-output '[input_filename, (.createdAt // "" | tostring), (.artifact // "" | tostring)] | @tsv' "${ms[@]}" 2>/dev/null || true)
    # Newest first until one verifies: each check's outcome is the source's
    # verification status (0 if a newer backup failed, even when an older one passed).
    verified=""
    for m in "${ms[@]}"; do
        if [[ -z $newest_verified ]]; then
            if hx_verify_artifact "$m"; then
                newest_verified=$m
                verified=${verified:-1}
            else
                verified=0
                hx_error verify_failed "verification failed: $HX_VERIFY_ERROR" "type=$type" "target=$target" "manifest=$m"
            fi
        fi
        created=${created_of[$m]:-}
        reasons=""
        if [[ $created =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]]; then
            read -r day week month year < <(hx_period_keys "$created")
            declare -A bucket=([daily]=$day [weekly]=$week [monthly]=$month [yearly]=$year)
            for r in "${RULES[@]}"; do
                if ((left[$r] > 0)) && [[ ${bucket[$r]} != "${last[$r]}" ]]; then
                    last[$r]=${bucket[$r]}
                    left[$r]=$((left[$r] - 1))
                    reasons+="${reasons:+, }$r ${bucket[$r]}"
                fi
            done
        else
            reasons="unreadable timestamp (kept for safety)"
        fi
        if [[ $m == "$newest_verified" ]]; then
            reasons+="${reasons:+, }newest verified"
        fi
        why[$m]=$reasons
    done
    # Artifacts referenced by kept manifests.
    declare -A needed=()
    for m in "${ms[@]}"; do
        [[ -n ${why[$m]} ]] || continue
        a=${artifact_of[$m]:-}
        [[ -n $a ]] && needed[$a]=1
    done
    for m in "${ms[@]}"; do
        hx_basename_into name "$m"
        if [[ -n ${why[$m]} ]]; then
            ((DRY == 0)) || echo "keep   $type/$target/$name ($(tr -d '\n' <<<"${why[$m]}"))"
            continue
        fi
        if ((DRY == 1)); then
            echo "delete $type/$target/$name (not the newest backup of any kept day, week, month or year)"
            continue
        fi
        rm -f -- "$m" "$dir/.$name.synced"
        DELETED=$((DELETED + 1))
        hx_info pruned "deleted by retention policy" "type=$type" "target=$target" "manifest=$name"
    done
    # Artifacts no kept manifest refers to: those of the manifests pruned
    # above at once (committed backups, not a run in progress; left for
    # orphanMinutes, backup-verify.sh --all would report them as orphans), any
    # other (an orphan of an old run) once older than orphanMinutes.
    declare -A gone=()
    for m in "${ms[@]}"; do
        a=${artifact_of[$m]:-}
        [[ -z ${why[$m]} && -n $a && -z ${needed[$a]:-} && -z ${gone[$a]:-} && $a != */* && $a != .* && ($a == *.enc || $a == *.enc.tar) && -f $dir/$a ]] || continue
        gone[$a]=1
        prune_artifact "$dir/$a"
    done
    while IFS= read -r -d '' a; do
        hx_basename_into b "$a"
        [[ -n ${needed[$b]:-} || -n ${gone[$b]:-} ]] && continue
        prune_artifact "$a"
    done < <(hx_artifacts 1 "$dir" -mmin +"$ORPHAN_MINUTES")
    unset last left why needed created_of artifact_of gone
    if [[ $verified == 1 && -f $dir/$HX_SYNC_UNVERIFIED ]]; then
        # Newer backups passed, but an older one the sync could not upload did not.
        verified=0
        hx_warn verify_failed "a backup the last sync checked failed verification and is not uploaded; run backup-verify.sh --all" "type=$type" "target=$target"
    fi
    if ((DRY == 1)); then
        hx_metrics "$type" "$target" "backup_verification_status=$verified"
    else
        hx_metrics "$type" "$target" "backup_verification_status=$verified" "backup_storage_usage_bytes=$(hx_storage_usage "$dir")"
    fi
done
hx_info retention_ok "retention applied" "deleted_manifests=$DELETED" "dry_run=$DRY"
