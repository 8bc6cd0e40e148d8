#!/usr/bin/env bash
# Upload committed artifacts and manifests to S3 (aws-cli v2).
#
# Each manifest is uploaded once, under its retention class: yearly for the
# first backup of a year of that source, else monthly for the first of a
# month, else weekly for the first of an ISO week, else daily. The class is
# the key prefix (remote.retentionBy "prefix") or the object tag
# retention-class (retentionBy "tag"); S3 lifecycle rules expire by class.
# Every upload is retried with backoff and checked (size + sha256 metadata).
# A deduplicated backup uploads no bytes: the earlier object is copied
# server-side when its class differs.
#
# Usage: backup-sync.sh [--type TYPE]
# Exit codes: 0 all synced (or remote disabled), 1 some upload failed (local
# backups untouched), 2 usage/config, 3 locked.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=sync
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

ONLY_TYPE=""
while (($# > 0)); do
    case $1 in
        --type)
            ONLY_TYPE=$(hx_type_option "$@")
            shift
            ;;
        *)
            echo "usage: $HX_SCRIPT_NAME [--type TYPE]" >&2
            exit "$HX_EXIT_USAGE"
            ;;
    esac
    shift
done

hx_init "${HX_JOB:-sync}"
hx_lock backup-sync
if ! hx_cfg_true remote.enabled; then
    hx_info sync_disabled "remote sync is disabled for this host"
    exit 0
fi

SOURCES=()
hx_source_dirs SOURCES "$ONLY_TYPE"

# The retention classes are counted in retention.timeZone: a zone this host
# cannot use stops the sync, as unusable credentials do.
if ! hx_retention_zone || ! hx_remote_env; then
    for dir in "${SOURCES[@]}"; do
        hx_source_of "$dir" type target
        hx_metrics "$type" "$target" backup_remote_sync_status=0
    done
    hx_die "$HX_EXIT_USAGE" "${HX_ZONE_ERROR:-$HX_REMOTE_ERROR}"
fi
# hx-style retry: attempt, then wait base*2^n (capped) between attempts.
with_retries() {
    local n=0 delay=$HX_S3_RETRY_DELAY
    while :; do
        if "$@"; then
            return 0
        fi
        if ((n >= HX_S3_RETRIES)); then
            return 1
        fi
        n=$((n + 1))
        hx_warn retry "attempt $n failed: $HX_REMOTE_ERROR; retrying in ${delay}s"
        sleep "$delay"
        delay=$((delay * 2 > 60 ? 60 : delay * 2))
    done
}

# retention_class STATEFILE CREATED_AT
retention_class() {
    local state=$1 created=$2 year month week
    read -r _ week month year < <(hx_period_keys "$created")
    local have_y=0 have_m=0 have_w=0 c cls name cw cm cy
    if [[ -f $state ]]; then
        while read -r c cls name; do
            [[ -n $c ]] || continue
            read -r _ cw cm cy < <(hx_period_keys "$c")
            [[ $cy == "$year" ]] && have_y=1
            [[ $cm == "$month" ]] && have_m=1
            [[ $cw == "$week" ]] && have_w=1
            : "$cls" "$name"
        done <"$state"
    fi
    if ((have_y == 0)); then
        echo yearly
    elif ((have_m == 0)); then
        echo monthly
    elif ((have_w == 0)); then
        echo weekly
    else
        echo daily
    fi
}

s3_touch() {
    local key=$1 sha=$2 class=$3 out
    if ! out=$(hx_aws s3api copy-object --bucket "$HX_S3_BUCKET" --key "$key" --copy-source "$HX_S3_BUCKET/$key" \
        --metadata-directive REPLACE --metadata "sha256=$sha,retention-class=$class" --storage-class "$HX_S3_STORAGE_CLASS" 2>&1); then
        HX_REMOTE_ERROR="refreshing $key failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
}

s3_copy() {
    local src=$1 dst=$2 out
    if ! out=$(hx_aws s3api copy-object --bucket "$HX_S3_BUCKET" --key "$dst" --copy-source "$HX_S3_BUCKET/$src" --metadata-directive COPY 2>&1); then
        HX_REMOTE_ERROR="server-side copy failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
}

# sync_restore_test DIR TYPE TARGET: the source's restore-test record
# (lib/verify.sh hx_restore_test_record), uploaded as restore-test.json beside
# the source's objects outside the retention classes (hx_s3_source_key),
# replacing the previous one, whenever it changed since the last upload.
sync_restore_test() {
    local dir=$1 type=$2 target=$3 sha key
    local record="$dir/.restore-test.json" marker="$dir/.restore-test.json.synced" part="$dir/.restore-test.json.synced.$$.partial"
    [[ -f $record ]] || return 0
    if ! sha=$(openssl dgst -sha256 -r <"$record"); then
        HX_REMOTE_ERROR="cannot read the restore-test record $record"
        return 1
    fi
    sha=${sha%% *}
    if [[ -f $marker && $(<"$marker") == "$sha" ]]; then
        return 0
    fi
    key=$(hx_s3_source_key "$type" "$target" restore-test.json)
    with_retries hx_s3_put "$record" "$key" "$sha" "" || return 1
    hx_tmp_register "$part"
    printf '%s\n' "$sha" >"$part"
    mv -f -- "$part" "$marker"
    hx_info synced "restore-test record uploaded" "type=$type" "target=$target" "key=$key"
}

FAILED=0
UPLOADED=0
for dir in "${SOURCES[@]}"; do
    hx_source_of "$dir" type target
    state="$dir/.remote-classes"
    ok=1
    result=0 # stays 0 unless an upload failed (and the loop below stopped)
    # The outcome of this run's verifications of the source: 0 if any failed.
    verified=()
    mapfile -d '' -t ms < <(hx_manifests "$dir")
    for m in "${ms[@]}"; do
        name=$(basename -- "$m")
        marker="$dir/.$name.synced"
        [[ -f $marker ]] && continue
        if ! hx_verify_artifact "$m"; then
            hx_error sync_skip "not uploading an artifact that fails verification: $HX_VERIFY_ERROR" "manifest=$m"
            verified=(backup_verification_status=0)
            ok=0
            continue
        fi
        ((${#verified[@]} > 0)) || verified=(backup_verification_status=1)
        created=$(jq --raw-output '.createdAt' "$m")
        class=$(retention_class "$state" "$created")
        artifact=$(jq --raw-output '.artifact' "$m")
        sha=$(jq --raw-output '.sha256.stored' "$m")
        akey=$(hx_s3_key "$class" "$type" "$target" "$artifact")
        mkey=$(hx_s3_key "$class" "$type" "$target" "$name")
        # Remote copies of each artifact are recorded next to it, so a later
        # (deduplicated) manifest can reuse them after retention pruned the
        # manifest that first uploaded it.
        record="$dir/.$artifact.remote"
        result=0
        if [[ -s $record ]]; then
            if grep --quiet --fixed-strings --line-regexp -- "$akey" "$record"; then
                # Same key: copy the object onto itself so its lifecycle age
                # restarts and it cannot expire before this newer manifest.
                if with_retries s3_touch "$akey" "$sha" "$class"; then
                    hx_info sync_refresh "existing object copied onto itself to restart its lifecycle age" "key=$akey"
                else
                    result=1
                fi
            else
                src_key=$(head -n 1 "$record")
                if with_retries s3_copy "$src_key" "$akey"; then
                    printf '%s\n' "$akey" >>"$record"
                else
                    result=1
                fi
            fi
            hx_info sync_dedup "artifact already stored remotely: no artifact bytes uploaded" "manifest=$name" "class=$class"
        else
            if with_retries hx_s3_put "$dir/$artifact" "$akey" "$sha" "$class"; then
                printf '%s\n' "$akey" >>"$record"
            else
                result=1
            fi
        fi
        if ((result == 0)); then
            msha=$(openssl dgst -sha256 -r <"$m")
            with_retries hx_s3_put "$m" "$mkey" "${msha%% *}" "$class" || result=1
        fi
        if ((result != 0)); then
            ok=0
            hx_error sync_failed "upload failed: $HX_REMOTE_ERROR" "type=$type" "target=$target" "manifest=$name"
            break
        fi
        hx_tmp_register "$marker.$$.partial"
        printf 'artifact %s\nmanifest %s\nclass %s\n' "$akey" "$mkey" "$class" >"$marker.$$.partial"
        mv -f -- "$marker.$$.partial" "$marker"
        printf '%s %s %s\n' "$created" "$class" "$name" >>"$state"
        UPLOADED=$((UPLOADED + 1))
        hx_info synced "uploaded" "type=$type" "target=$target" "class=$class" "key=$akey"
    done
    if ((result == 0)) && ! sync_restore_test "$dir" "$type" "$target"; then
        ok=0
        hx_error sync_failed "restore-test record upload failed: $HX_REMOTE_ERROR" "type=$type" "target=$target"
    fi
    # A manifest that failed here stays failed for retention's later check of
    # newer backups (HX_SYNC_UNVERIFIED), until a sync that ran through finds
    # it passing or gone.
    if ((result == 0)); then
        if [[ ${verified[0]:-} == backup_verification_status=0 ]]; then
            hx_tmp_register "$dir/$HX_SYNC_UNVERIFIED.$$.partial"
            hx_epoch >"$dir/$HX_SYNC_UNVERIFIED.$$.partial"
            mv -f -- "$dir/$HX_SYNC_UNVERIFIED.$$.partial" "$dir/$HX_SYNC_UNVERIFIED"
        elif [[ -f $dir/$HX_SYNC_UNVERIFIED ]]; then
            # What it marked passed or is gone: the status it set to 0 is 1 again.
            rm -f -- "${dir:?}/$HX_SYNC_UNVERIFIED"
            verified=(backup_verification_status=1)
        fi
    fi
    if ((ok == 1)); then
        hx_metrics "$type" "$target" backup_remote_sync_status=1 "backup_remote_sync_last_success_timestamp=$(hx_epoch)" "${verified[@]}"
    else
        FAILED=$((FAILED + 1))
        hx_metrics "$type" "$target" backup_remote_sync_status=0 "${verified[@]}"
    fi
done
if ((FAILED > 0)); then
    hx_die "$HX_EXIT_FAIL" "remote sync failed for $FAILED source(s)"
fi
hx_info sync_ok "remote sync complete" "uploaded=$UPLOADED"
