#!/usr/bin/env bash
# hx-backup library: local GFS retention (backup-retention.sh, and a backup
# job's own retention, run in a subshell of the job: hx_retention_job)
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

# Restic's semantics (--keep-daily/-weekly/-monthly/-yearly): walking backups
# newest first, a backup is kept for a rule when it is the newest one in a
# day / ISO week / month / year not yet counted by that rule, until the rule's
# count is used up. Periods without a backup do not count; one backup may
# satisfy several rules. The newest verified backup of each source is never
# deleted. Artifacts still referenced by a kept (deduplicated) manifest are
# kept. Periods are counted in retention.timeZone (local: the host's zone, as
# restic does).

# hx__retention_prune_artifact DIR TYPE TARGET PATH DRY: delete (or, with DRY
# 1, list) an artifact no kept manifest refers to, and its record of remote
# copies.
hx__retention_prune_artifact() {
    local dir=$1 type=$2 target=$3 a=$4 dry=$5 b
    hx_basename_into b "$a"
    if ((dry == 1)); then
        echo "delete $type/$target/$b (artifact not referenced by any kept manifest)"
    else
        rm -f -- "$a" "$dir/.$b.remote"
        hx_info pruned "deleted unreferenced artifact" "type=$type" "target=$target" "artifact=$b"
    fi
}

# hx__retention_self_checked MANIFEST ARTIFACT: this process committed
# MANIFEST, its self-checks (MAC, the artifact's size and sha256) passed, and
# both files are still the ones checked (HX_SELF_CHECKED, lib/manifest.sh).
hx__retention_self_checked() {
    [[ -n ${HX_SELF_CHECKED[$1]:-} ]] || return 1
    [[ $(stat --format='%d %i %s %y' -- "$1" "$2" 2>/dev/null) == "${HX_SELF_CHECKED[$1]}" ]]
}

# hx_retention_apply TYPE DRY: apply retention to every source (or those of
# TYPE), after hx_init and the backup-retention lock. With DRY 1, list what
# would be deleted and why on stdout and delete nothing (the verification of
# the newest backups still records its outcome). Exits 2 on a config error.
hx_retention_apply() {
    local only_type=$1 dry=$2
    hx_retention_zone || hx_die "$HX_EXIT_USAGE" "$HX_ZONE_ERROR"
    local -a rules=(daily weekly monthly yearly) counts=() sources=() newest_first=()
    hx_cfg_into counts retention.daily retention.weekly retention.monthly retention.yearly
    local -A keep_n=([daily]=${counts[0]} [weekly]=${counts[1]} [monthly]=${counts[2]} [yearly]=${counts[3]})
    # Unreferenced artifacts younger than this may belong to a run that is
    # committing right now (artifact renamed, manifest not yet).
    local orphan_minutes
    hx_cfg_read orphan_minutes retention.orphanMinutes
    if ((keep_n[daily] + keep_n[weekly] + keep_n[monthly] + keep_n[yearly] == 0)); then
        hx_warn retention "all retention counts are 0: keeping everything"
        return 0
    fi
    local dir type target m r a b c fname name created reasons verified newest_verified day week month year deleted=0
    local -A rule_last=() rule_left=() why=() created_of=() artifact_of=() needed=() gone=() rule_period=()
    hx_source_dirs sources "$only_type"
    for dir in "${sources[@]}"; do
        hx_source_of "$dir" type target
        mapfile -d '' -t newest_first < <(hx_manifests "$dir" --reverse)
        ((${#newest_first[@]} > 0)) || continue
        rule_last=() rule_left=() why=() created_of=() artifact_of=() needed=() gone=()
        for r in "${rules[@]}"; do
            rule_left[$r]=${keep_n[$r]}
            rule_last[$r]=""
        done
        newest_verified=""
        # createdAt and artifact of every manifest in one jq pass.
        while IFS=$'\t' read -r fname c a; do
            created_of[$fname]=$c
            artifact_of[$fname]=$a
        done < <(jq --raw-output '[input_filename, (.createdAt // "" | tostring), (.artifact // "" | tostring)] | @tsv' "${newest_first[@]}" 2>/dev/null || true)
        # Newest first until one verifies: each check's outcome is the source's
        # verification status (0 if a newer backup failed, even when an older one passed).
        # A backup this job committed was checked at its commit (hx_commit_artifact).
        verified=""
        for m in "${newest_first[@]}"; do
            if [[ -z $newest_verified ]]; then
                if hx__retention_self_checked "$m" "$dir/${artifact_of[$m]:-}" || hx_verify_artifact "$m"; then
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
                rule_period=([daily]=$day [weekly]=$week [monthly]=$month [yearly]=$year)
                for r in "${rules[@]}"; do
                    if ((rule_left[$r] > 0)) && [[ ${rule_period[$r]} != "${rule_last[$r]}" ]]; then
                        rule_last[$r]=${rule_period[$r]}
                        rule_left[$r]=$((rule_left[$r] - 1))
                        reasons+="${reasons:+, }$r ${rule_period[$r]}"
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
        for m in "${newest_first[@]}"; do
            [[ -n ${why[$m]} ]] || continue
            a=${artifact_of[$m]:-}
            [[ -n $a ]] && needed[$a]=1
        done
        for m in "${newest_first[@]}"; do
            hx_basename_into name "$m"
            if [[ -n ${why[$m]} ]]; then
                ((dry == 0)) || echo "keep   $type/$target/$name ($(tr -d '\n' <<<"${why[$m]}"))"
                continue
            fi
            if ((dry == 1)); then
                echo "delete $type/$target/$name (not the newest backup of any kept day, week, month or year)"
                continue
            fi
            rm -f -- "$m" "$dir/.$name.synced"
            deleted=$((deleted + 1))
            hx_info pruned "deleted by retention policy" "type=$type" "target=$target" "manifest=$name"
        done
        # Artifacts no kept manifest refers to: those of the manifests pruned
        # above at once (committed backups, not a run in progress; left for
        # orphanMinutes, backup-verify.sh --all would report them as orphans), any
        # other (an orphan of an old run) once older than orphanMinutes.
        for m in "${newest_first[@]}"; do
            a=${artifact_of[$m]:-}
            [[ -z ${why[$m]} && -n $a && -z ${needed[$a]:-} && -z ${gone[$a]:-} && $a != */* && $a != .* && ($a == *.enc || $a == *.enc.tar) && -f $dir/$a ]] || continue
            gone[$a]=1
            hx__retention_prune_artifact "$dir" "$type" "$target" "$dir/$a" "$dry"
        done
        while IFS= read -r -d '' a; do
            hx_basename_into b "$a"
            [[ -n ${needed[$b]:-} || -n ${gone[$b]:-} ]] && continue
            hx__retention_prune_artifact "$dir" "$type" "$target" "$a" "$dry"
        done < <(hx_artifacts 1 "$dir" -mmin +"$orphan_minutes")
        if [[ $verified == 1 && -f $dir/$HX_SYNC_UNVERIFIED ]]; then
            # Newer backups passed, but an older one the sync could not upload did not.
            verified=0
            hx_warn verify_failed "a backup the last sync checked failed verification and is not uploaded; run backup-verify.sh --all" "type=$type" "target=$target"
        fi
        if ((dry == 1)); then
            hx_metrics "$type" "$target" "backup_verification_status=$verified"
        else
            hx_metrics "$type" "$target" "backup_verification_status=$verified" "backup_storage_usage_bytes=$(hx_storage_usage "$dir")"
        fi
    done
    hx_info retention_ok "retention applied" "deleted_manifests=$deleted" "dry_run=$dry"
}

# hx_retention_job TYPE: what `backup-retention.sh --type TYPE` does, for a
# backup job's end (hx_finish_job), in a subshell of the job instead of a new
# process that would load the library and the config again. Run it
# asynchronously and wait for it (errexit stays on inside; an exit only ends
# the subshell). As the script would: its own log file, audit lines and lock,
# info lines kept off stderr, and its exit status (2 on a config error, 3
# when another retention run holds the lock).
hx_retention_job() {
    local type=$1
    HX_SCRIPT_NAME=backup-retention.sh
    HX_STEM=backup-retention
    HX_INVOCATION="backup-retention.sh --type $type"
    HX_TYPE=retention
    HX_QUIET=1
    HX_STATUS_CAUSE=""
    HX_START_EPOCH=$(hx_epoch)
    # The job's temp paths and exit hook are the job's; the job writes the host metrics at its exit.
    hx_tmp_scope
    HX_ON_EXIT=""
    HX_HOST_METRICS=""
    hx__open_log
    hx__traps
    trap 'exit 143' TERM
    trap 'exit 130' INT
    hx_audit start started
    hx_lock backup-retention
    hx_retention_apply "$type" 0
}
