#!/usr/bin/env bash
# hx-backup library: manifests and source folders: sign, find (the previous one, those naming an artifact), list sources and artifacts, retention period keys, commit an artifact
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_OUT # the artifact record, see lib/pipeline.sh

# ------------------------------------------------------------- manifests ---

# What a manifest's MAC covers: its body without .mac, keys sorted at every
# depth, compact (as `jq --compact-output --sort-keys` prints it), and a
# newline. hx_sortk sorts; hx_manifest_load (lib/verify.sh) reads with it.
readonly HX_JQ_SORTK='def hx_sortk: if type == "object" then to_entries | sort_by(.key) | map(.value |= hx_sortk) | from_entries
    elif type == "array" then map(hx_sortk) else . end;'

# hx_sign_json OUT FILTER [JQ-ARGUMENT...]: the object FILTER makes (one jq
# run, given the JQ-ARGUMENTs: options, variables, an input file), signed
# with the loaded key and written to OUT (keys sorted, indented) with
# .mac = {alg, keyId, value}. The run prints the canonical body, then the
# signed object with a placeholder for the HMAC, put in by bash: the
# placeholder's quotes would be escaped in any string value that held it.
hx_sign_json() {
    local out=$1 filter=$2 text body mac slot='"value": "@HX-MAC@"'
    shift 2
    text=$(jq --raw-output --sort-keys --arg hxKeyId "$HX_KEY_LOADED_ID" "$HX_JQ_SORTK
        ($filter) | del(.mac) | (hx_sortk | tojson), . + {mac: {alg: \"hmac-sha256\", keyId: \$hxKeyId, value: \"@HX-MAC@\"}}" "$@") || return 1
    body=${text%%$'\n'*}
    text=${text#*$'\n'}
    [[ $text == *"$slot"* && ${text#*"$slot"} != *"$slot"* ]] || return 1
    mac=$(printf '%s\n' "$body" | hx_hmac_hex "$HX_KEY_MAC") || return 1
    printf '%s\n' "${text/"$slot"/"\"value\": \"$mac\""}" >"$out"
}

# hx_manifest_sign FILE_IN FILE_OUT: add .mac to a manifest body.
hx_manifest_sign() { hx_sign_json "$2" . "$1"; }

# hx_previous_manifest DIR: newest committed manifest in DIR (or nothing).
hx_previous_manifest() {
    local -a newest_first=()
    mapfile -d '' -t newest_first < <(hx_manifests "$1" --reverse)
    ((${#newest_first[@]} == 0)) || printf '%s\n' "${newest_first[0]}"
}

# hx_manifests DIR [--reverse]: the committed manifests of one source
# directory, NUL-separated, oldest first (newest first with --reverse).
hx_manifests() {
    find "$1" -mindepth 1 -maxdepth 1 -type f -name '*.manifest.json' ! -name '.*' -print0 | sort --zero-terminated ${2:+"$2"}
}

# hx_artifact_refs ARRAY ARTIFACT: the manifests beside ARTIFACT that name it
# (its own, deduplicated ones), newest first, into ARRAY.
hx_artifact_refs() {
    local -n hx__refs=$1
    local name=${2##*/} m
    local -a newest_first=()
    hx__refs=()
    mapfile -d '' -t newest_first < <(hx_manifests "$(dirname -- "$2")" --reverse)
    for m in "${newest_first[@]}"; do
        [[ $(jq --raw-output '.artifact' -- "$m" 2>/dev/null) == "$name" ]] && hx__refs+=("$m")
    done
    return 0
}

# hx_manifest_for_artifact ARTIFACT: the manifest that describes ARTIFACT,
# its own or a deduplicated one that refers to it; when several do, the
# newest whose MAC verifies (logged with how many there were). Sets
# HX_MANIFEST_FOUND, or HX_VERIFY_ERROR and returns 1; HX_MANIFEST_REFS is
# how many manifests refer to it (0: an orphan, no backup at all).
hx_manifest_for_artifact() {
    local path=$1 m
    local -a refs=()
    HX_MANIFEST_FOUND=""
    hx_artifact_refs refs "$path"
    HX_MANIFEST_REFS=${#refs[@]}
    if ((${#refs[@]} == 0)); then
        HX_VERIFY_ERROR="no manifest found for $path"
        return 1
    fi
    for m in "${refs[@]}"; do
        if hx_verify_manifest_mac "$m"; then
            HX_MANIFEST_FOUND=$m
            hx_info manifest_found "using the newest valid of ${#refs[@]} manifest(s) that describe the artifact" "artifact=$path" "manifest=$m" "manifests=${#refs[@]}"
            return 0
        fi
        hx_warn manifest_skipped "a newer manifest that describes the artifact fails verification: $HX_VERIFY_ERROR" "artifact=$path" "manifest=$m"
    done
    HX_VERIFY_ERROR="none of the ${#refs[@]} manifest(s) that describe $path verifies: $HX_VERIFY_ERROR"
    return 1
}

# In a source folder: the mark of a backup the sync found failing and did not
# upload (backup-sync.sh writes and clears it; retention keeps the source's
# verification status at 0 while it is there).
readonly HX_SYNC_UNVERIFIED=.sync-unverified

# hx_source_of DIR TYPE_VAR TARGET_VAR: the type and target of a source
# directory (STORAGE/TYPE/TARGET).
hx_source_of() {
    local -n hx__of_type=$2 hx__of_target=$3
    local dir=${1%/}
    hx__of_target=${dir##*/}
    dir=${dir%/*}
    hx__of_type=${dir##*/}
}

# hx_local_source_of MANIFEST TYPE_VAR TARGET_VAR: the local source
# (STORAGE/TYPE/TARGET/) a manifest belongs to; returns 1 for a copy
# elsewhere (an S3 download) or an unknown type.
hx_local_source_of() {
    local dir storage
    dir=$(cd -- "$(dirname -- "$1")" 2>/dev/null && pwd -P) || return 1
    storage=$(cd -- "$HX_STORAGE" 2>/dev/null && pwd -P) || return 1
    [[ ${dir%/*/*} == "$storage" && ${dir##*/} != .* ]] || return 1
    hx_source_of "$dir" "$2" "$3"
    local -n hx__local_type=$2
    [[ -n ${HX_SOURCE_MODULE[$hx__local_type]:-} ]]
}

# hx_artifacts DEPTH DIR [FIND-TEST...]: the artifact files (*.enc, *.enc.tar;
# never a dot-named temp) DEPTH levels below DIR, NUL-separated.
hx_artifacts() {
    local depth=$1 dir=$2
    shift 2
    find "$dir" -mindepth "$depth" -maxdepth "$depth" -type f \( -name '*.enc' -o -name '*.enc.tar' \) ! -name '.*' "$@" -print0
}

# hx_source_dirs ARRAY [TYPE]: every source directory (STORAGE/TYPE/TARGET),
# or those of one type, into ARRAY.
hx_source_dirs() {
    local -n hx__dirs=$1
    local only=${2:-} dir type
    local -a all=()
    shopt -s nullglob
    all=("$HX_STORAGE"/*/*/)
    shopt -u nullglob
    hx__dirs=()
    for dir in "${all[@]}"; do
        dir=${dir%/}
        type=${dir%/*}
        [[ -z $only || ${type##*/} == "$only" ]] && hx__dirs+=("$dir")
    done
    return 0
}

# hx_retention_zone: retention.timeZone into HX_RETENTION_TZ, checked: local,
# UTC, or a zone the host's time zone database has. date(1) takes a TZ it
# cannot find as UTC without a word, so a zone missing from tzdata would
# silently count UTC days: returns 1 with HX_ZONE_ERROR instead (the
# scripts refuse to run, exit 2).
HX_RETENTION_TZ=""
HX_ZONE_ERROR=""
hx_retention_zone() {
    local zone
    hx_cfg_read zone retention.timeZone
    if [[ $zone != local && $zone != UTC ]] && { [[ ! $zone =~ ^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$ ]] || [[ ! -f /usr/share/zoneinfo/$zone ]]; }; then
        HX_ZONE_ERROR="config: retention.timeZone (retentionTimeZone) '$zone' is not in this host's time zone database (no /usr/share/zoneinfo/$zone): install or update the tzdata package, or set retentionTimeZone to local or UTC"
        return 1
    fi
    HX_RETENTION_TZ=$zone
}

# hx_period_keys CREATED_AT: the day, ISO week, month and year a backup
# belongs to for retention (and for its upload's retention class), in the
# zone retention.timeZone names (local: the host's). Call hx_retention_zone
# first, outside any $(...), so that a bad zone stops the script.
hx_period_keys() {
    [[ -n $HX_RETENTION_TZ ]] || hx_retention_zone || hx_die "$HX_EXIT_USAGE" "$HX_ZONE_ERROR"
    if [[ $HX_RETENTION_TZ == local ]]; then
        date -d "$1" '+%Y-%m-%d %G-W%V %Y-%m %Y'
    else
        TZ=$HX_RETENTION_TZ date -d "$1" '+%Y-%m-%d %G-W%V %Y-%m %Y'
    fi
}

# The manifests this process committed -> the identity (device, inode, size,
# mtime) of the manifest and the artifact when its self-checks began: the
# job's retention takes such a manifest, if both are still those files, as
# verified instead of hashing the artifact again (hx_retention_apply).
declare -gA HX_SELF_CHECKED=()

# hx_commit_artifact TYPE TARGET SOURCE_JSON CONTENT_JSON
# After hx_store: dedup against the previous artifact, write + sign the
# manifest, verify, then rename artifact and manifest into place.
# Sets HX_OUT[manifest], HX_OUT[dedup_saved].
hx_commit_artifact() {
    local type=$1 target=$2 source_json=$3 content_json=$4
    local dir=${HX_OUT[dir]} base=${HX_OUT[base]}
    local prev ref_artifact="" ref_manifest="" artifact=${HX_OUT[artifact]} stored_sha=${HX_OUT[stored_sha]} stored_size=${HX_OUT[stored_size]}
    HX_OUT[dedup_saved]=0
    prev=$(hx_previous_manifest "$dir")
    if [[ -n $prev ]] && hx_verify_manifest_mac "$prev" >/dev/null 2>&1; then
        # Only reuse an artifact made with the current key and compression,
        # since the new manifest describes how to open it.
        local pc pa ps psha pk pm
        read -r pc pa ps psha pk pm < <(jq --raw-output '"\(.sha256.content // "-") \(.artifact // "-") \(.sizes.stored // "-") \(.sha256.stored // "-") \(.encryption.keyId // "-") \(.compression.method // "-")"' "$prev")
        if [[ $pc == "${HX_OUT[content_sha]}" && -n $pa && $pa != */* && -f $dir/$pa && $pk == "$HX_KEY_ID" && $pm == "${HX_OUT[method]}" ]] \
            && [[ $(stat --format=%s -- "$dir/$pa") == "$ps" ]] && hx_check_stored "$prev" "$dir/$pa"; then
            ref_artifact=$pa
            hx_basename_into ref_manifest "$prev"
            artifact=$pa
            stored_sha=$psha
            stored_size=$ps
            HX_OUT[dedup_saved]=${HX_OUT[stored_size]}
            rm -f -- "${HX_OUT[partial]}"
            hx_info dedup "content unchanged since $ref_manifest; not storing a new copy" "type=$type" "target=$target" "saved_bytes=${HX_OUT[dedup_saved]}"
        fi
    fi
    # Verifying the previous manifest may have loaded an older key: sign
    # with the current one.
    if [[ ${HX_KEY_LOADED_ID:-} != "$HX_KEY_ID" ]]; then
        hx_key_load "$HX_KEY_ID" || {
            HX_STATUS_CAUSE="encryption key: $HX_KEY_ERROR"
            return "$HX_EXIT_USAGE"
        }
    fi
    # Both temp names end .PID.partial so a killed run's leftovers are found
    # by hx_clean_dead_temps.
    local now mpart="$dir/.$base.manifest.json.$$.partial"
    hx_tmp_register "$mpart"
    local started
    hx_utc_into now '%Y-%m-%dT%H:%M:%SZ'
    hx_utc_into started '%Y-%m-%dT%H:%M:%SZ' "$HX_START_EPOCH"
    # Built and signed in one jq run.
    # shellcheck disable=SC2016  # a jq filter: $names are jq's variables
    hx_sign_json "$mpart" '{format: $format, type: $type, target: $target, source: $source, content: $content,
          host: $host, stack: $stack, job: $job, artifact: $artifact,
          dedup: (if $refArtifact == "" then null else {artifact: $refArtifact, manifest: $refManifest} end),
          startedAt: $started, createdAt: $created,
          encryption: {cipher: "aes-256-cbc", kdf: "pbkdf2", digest: "sha256", iter: $iter, keyId: $keyId},
          compression: {method: $method, level: $level},
          sizes: {plain: $plainSize, stored: $storedSize},
          sha256: {stored: $storedSha, content: $contentSha},
          tools: ({"hx-backup": $vHx, openssl: $vOpenssl, ($method): $vComp} + $tools)}' \
        --null-input --argjson format "$HX_MANIFEST_FORMAT" --arg type "$type" --arg target "$target" \
        --argjson source "$source_json" --argjson content "$content_json" \
        --arg host "$HX_HOST" --arg stack "$HX_STACK" --arg job "$HX_JOB" \
        --arg artifact "$artifact" --arg refArtifact "$ref_artifact" --arg refManifest "$ref_manifest" \
        --arg started "$started" --arg created "$now" \
        --arg keyId "$HX_KEY_LOADED_ID" --argjson iter "$HX_PBKDF2_ITER" \
        --arg method "${HX_OUT[method]}" --argjson level "${HX_OUT[level]}" \
        --argjson plainSize "${HX_OUT[plain_size]}" --argjson storedSize "$stored_size" \
        --arg storedSha "$stored_sha" --arg contentSha "${HX_OUT[content_sha]}" \
        --arg vOpenssl "$(hx_tool_version openssl)" --arg vComp "$(hx_tool_version "${HX_OUT[method]}")" \
        --arg vHx "$HX_VERSION" --argjson tools "${HX_EXTRA_TOOLS_JSON:-{\}}" || {
        HX_STATUS_CAUSE="could not write the manifest"
        return "$HX_EXIT_FAIL"
    }
    # Check what was written before giving it its final name.
    local check_file="$dir/$artifact" checked_id
    [[ -z $ref_artifact ]] && check_file=${HX_OUT[partial]}
    checked_id=$(stat --format='%d %i %s %y' -- "$mpart" "$check_file" 2>/dev/null) || checked_id=""
    if ! hx_verify_manifest_mac "$mpart" >/dev/null; then
        HX_STATUS_CAUSE="manifest MAC self-check failed"
        return "$HX_EXIT_VERIFY"
    fi
    if ! hx_check_stored "$mpart" "$check_file"; then
        HX_STATUS_CAUSE="artifact checksum self-check failed"
        return "$HX_EXIT_VERIFY"
    fi
    sync --data -- "$mpart"
    if [[ -z $ref_artifact ]]; then
        mv -f -- "${HX_OUT[partial]}" "$dir/$artifact"
    fi
    mv -f -- "$mpart" "$dir/$base.manifest.json"
    sync -- "$dir" 2>/dev/null || true
    HX_OUT[manifest]="$dir/$base.manifest.json"
    HX_OUT[artifact_path]="$dir/$artifact"
    [[ -z $checked_id ]] || HX_SELF_CHECKED[${HX_OUT[manifest]}]=$checked_id
    HX_OUT[stored_size_new]=$stored_size
    ((HX_OUT[dedup_saved] > 0)) && HX_OUT[stored_size_new]=0
    return 0
}
