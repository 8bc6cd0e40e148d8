#!/usr/bin/env bash
# hx-backup library: verification: stored hashes, manifest MAC, content checks and restore tests, each source's part done by its module (lib/source)
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

# ----------------------------------------------------------- verification ---

# hx_manifest_load MANIFEST: read everything verification needs in one jq
# pass into HX_MF_* (each field JSON-encoded on its own line, the canonical
# body the MAC covers last: HX_JQ_SORTK in lib/manifest.sh).
hx_manifest_load() {
    local m=$1
    local -a mf=()
    HX_MF_PATH=""
    mapfile -t mf < <(jq --raw-output "$HX_JQ_SORTK"'
        if type == "object" and .format == 1 and (.mac.value | type == "string")
        then "ok", (.mac.keyId | tojson), (.encryption.keyId | tojson), (.mac.value | tojson), (.sizes.stored | tojson),
             (.sha256.stored | tojson), (.artifact | tojson), (del(.mac) | hx_sortk | tojson)
        else "bad" end' "$m" 2>/dev/null)
    if [[ ${mf[0]:-} != ok || ${#mf[@]} -ne 8 ]]; then
        HX_VERIFY_ERROR="manifest unreadable or malformed"
        return 1
    fi
    local k
    for k in 1 2 3 5 6; do
        mf[k]=${mf[k]#\"}
        mf[k]=${mf[k]%\"}
    done
    HX_MF_KID=${mf[1]}
    HX_MF_EKID=${mf[2]}
    HX_MF_MAC=${mf[3]}
    HX_MF_SIZE=${mf[4]}
    HX_MF_SHA=${mf[5]}
    HX_MF_ARTIFACT=${mf[6]}
    HX_MF_BODY=${mf[7]}
    if [[ ! $HX_MF_KID =~ ^[A-Za-z0-9._-]+$ || ! $HX_MF_MAC =~ ^[0-9a-f]{64}$ || ! $HX_MF_SIZE =~ ^[0-9]+$ || ! $HX_MF_SHA =~ ^[0-9a-f]{64}$ ]] \
        || [[ ! $HX_MF_ARTIFACT =~ ^[A-Za-z0-9._-]+$ || $HX_MF_ARTIFACT == . || $HX_MF_ARTIFACT == .. ]]; then
        HX_VERIFY_ERROR="manifest fields are malformed"
        return 1
    fi
    HX_MF_PATH=$m
}

# hx_verify_manifest_mac MANIFEST: check structure + HMAC (loads the key).
hx_verify_manifest_mac() {
    local m=$1 got
    hx_manifest_load "$m" || return 1
    if [[ $HX_MF_KID != "$HX_MF_EKID" ]]; then
        HX_VERIFY_ERROR="manifest key ids disagree"
        return 1
    fi
    if [[ ${HX_KEY_LOADED_ID:-} != "$HX_MF_KID" ]]; then
        hx_key_load "$HX_MF_KID" || {
            HX_VERIFY_ERROR="cannot load key: $HX_KEY_ERROR"
            return 1
        }
    fi
    got=$(printf '%s\n' "$HX_MF_BODY" | hx_hmac_hex "$HX_KEY_MAC")
    if [[ $got != "$HX_MF_MAC" ]]; then
        HX_VERIFY_ERROR="manifest MAC mismatch (manifest tampered with, or wrong key)"
        return 1
    fi
}

# hx_check_stored MANIFEST FILE: size and sha256 of the stored bytes.
hx_check_stored() {
    local m=$1 f=$2 got
    if [[ ${HX_MF_PATH:-} != "$m" ]]; then
        hx_manifest_load "$m" || return 1
    fi
    [[ -f $f ]] || {
        HX_VERIFY_ERROR="artifact missing: $f"
        return 1
    }
    if [[ $(stat --format=%s -- "$f") != "$HX_MF_SIZE" ]]; then
        HX_VERIFY_ERROR="artifact size differs from manifest"
        return 1
    fi
    got=$(openssl dgst -sha256 -r <"$f")
    if [[ ${got%% *} != "$HX_MF_SHA" ]]; then
        HX_VERIFY_ERROR="artifact sha256 differs from manifest (tampered or corrupt)"
        return 1
    fi
}

# hx_manifest_artifact MANIFEST: path of the artifact a manifest describes.
hx_manifest_artifact() {
    local m=$1
    if [[ ${HX_MF_PATH:-} != "$m" ]]; then
        hx_manifest_load "$m" || return 1
    fi
    local dir
    hx_dirname_into dir "$m"
    printf '%s/%s' "$dir" "$HX_MF_ARTIFACT"
}

# hx_verify_artifact MANIFEST [ARTIFACT]: MAC then checksum; no decryption.
hx_verify_artifact() {
    local m=$1 a=${2:-} dir
    HX_VERIFY_ERROR=""
    hx_verify_manifest_mac "$m" || return 1
    if [[ -z $a ]]; then
        hx_dirname_into dir "$m"
        a="$dir/$HX_MF_ARTIFACT"
    fi
    hx_check_stored "$m" "$a"
}

# hx_open_artifact MANIFEST ARTIFACT: decrypt + decompress to stdout.
# Only call after hx_verify_artifact succeeded.
hx_open_artifact() {
    local m=$1 a=$2 iter method
    iter=$(jq --raw-output '.encryption.iter' "$m")
    method=$(jq --raw-output '.compression.method' "$m")
    [[ $iter =~ ^[0-9]{1,7}$ ]] || return 1
    hx_decrypt "$iter" <"$a" | hx_decompress "$method"
}

# hx_open_part MANIFEST ARTIFACT [PART]: the plaintext stream of a verified
# artifact, or of one part of a packed artifact (tar member, see hx_pack_parts).
hx_open_part() {
    local m=$1 a=$2 part=${3:-} iter method
    if [[ -z $part ]]; then
        hx_open_artifact "$m" "$a"
        return
    fi
    [[ $part =~ ^[a-z0-9][a-z0-9.-]*$ ]] || return 1
    iter=$(jq --raw-output '.encryption.iter' "$m")
    method=$(jq --raw-output '.compression.method' "$m")
    [[ $iter =~ ^[0-9]{1,7}$ ]] || return 1
    tar --extract --to-stdout --no-wildcards --file="$a" -- "$part" | hx_decrypt "$iter" | hx_decompress "$method"
}

# --------------------------------------------------------- restore tests ---

# hx_content_check MANIFEST ARTIFACT: decrypt + decompress and compare the
# plaintext content hash and size with the manifest (end-to-end check of the
# key). An artifact whose manifest lists parts is checked part by part.
hx_content_check() {
    local m=$1 a=$2 hasher tmp name want want_size got size index="" total=0 type format multipart
    read -r type format multipart want want_size < <(jq --raw-output '"\(.type) \(.content.format // "-") \(.content.parts != null) \(.sha256.content) \(.sizes.plain)"' "$m")
    hasher=$(hx_source "$type" content_hasher "$format") || return 1
    tmp=$(mktemp --directory -- "$HX_STORAGE/.content-check.$$.tmpXXXXXX.partial")
    hx_tmp_register "$tmp"
    local -a parts=("")
    if [[ $multipart == true ]]; then
        mapfile -t parts < <(jq --raw-output '.content.parts[]? | "\(.name) \(.sha256.content)"' "$m")
        ((${#parts[@]} > 0)) || {
            HX_VERIFY_ERROR="manifest lists no parts"
            return 1
        }
    fi
    local part_want
    for name in "${parts[@]}"; do
        part_want=${name#* }
        name=${name%% *}
        got=$(hx_open_part "$m" "$a" "$name" | "$hasher" "$tmp/size") || {
            HX_VERIFY_ERROR="decryption or decompression failed${name:+ for part $name} (wrong key or corrupt data)"
            rm -rf -- "$tmp"
            return 1
        }
        got=${got%% *}
        size=$(<"$tmp/size")
        total=$((total + size))
        if [[ -n $name ]]; then
            if [[ $got != "$part_want" ]]; then
                HX_VERIFY_ERROR="decrypted content hash of part $name differs from the manifest"
                rm -rf -- "$tmp"
                return 1
            fi
            index+="$name $got"$'\n'
        fi
    done
    rm -rf -- "$tmp"
    if [[ -n $index ]]; then
        got=$(printf '%s' "$index" | openssl dgst -sha256 -r)
        got=${got%% *}
    fi
    if [[ $got != "$want" ]]; then
        HX_VERIFY_ERROR="decrypted content hash differs from the manifest"
        return 1
    fi
    if [[ $total != "$want_size" ]]; then
        HX_VERIFY_ERROR="decrypted size $total differs from the manifest's $want_size"
        return 1
    fi
}

# hx_restore_test MANIFEST [ARTIFACT]: full restore test of one artifact. A
# manifest of a local source also gets its restore-test record, passed or
# failed (hx_restore_test_record). Sets HX_RESTORE_VERIFIED: 1 when its MAC
# and checksum passed, else 0.
hx_restore_test() {
    local m=$1 a=${2:-} started=$EPOCHREALTIME rc=0
    hx__restore_test_run "$m" "$a" || rc=1
    if ((rc == 0)); then
        hx_restore_test_record "$m" ok "$started" ""
    else
        hx_restore_test_record "$m" failed "$started" "${HX_VERIFY_ERROR:-restore test failed}"
    fi
    return "$rc"
}

hx__restore_test_run() {
    local m=$1 a=$2
    HX_RESTORE_VERIFIED=0
    [[ -n $a ]] || a=$(hx_manifest_artifact "$m")
    hx_verify_artifact "$m" "$a" || return 1
    HX_RESTORE_VERIFIED=1
    hx_content_check "$m" "$a" || return 1
    hx_source "$(jq --raw-output '.type' "$m")" restore_test "$m" "$a"
}

# hx_restore_test_record MANIFEST ok|failed STARTED ERROR: the outcome of a
# restore test of a local source's manifest (STORAGE/TYPE/TARGET/), as that
# source's .restore-test.json: when, the result, the manifest and artifact
# tested, the duration, signed with the current key as manifests are
# (hx_manifest_sign). backup-sync.sh uploads it beside the source's objects
# for the compliance report. Only the latest is kept; it is replaced
# atomically. STARTED is an $EPOCHREALTIME. A manifest elsewhere (an S3
# download) records nothing. Never fails the caller: a record that cannot be
# written is logged.
hx_restore_test_record() {
    local m=$1 result=$2 started=$3 error=$4 type target
    [[ -n ${HX_STORAGE:-} ]] || return 0
    hx_local_source_of "$m" type target || return 0
    local dir="$HX_STORAGE/$type/$target" now=$EPOCHREALTIME finished started_at ms name sha tested newest
    # The record speaks for the source's newest backup: a test of an older one
    # (by path, looking for a good copy) must not replace its failure.
    newest=$(hx_previous_manifest "$dir")
    if [[ ${newest##*/} != "${m##*/}" ]]; then
        hx_info restore_test_record "restore-test record not replaced: not the source's newest backup" "type=$type" "target=$target" "manifest=$m"
        return 0
    fi
    ms=$(((${now/./} - ${started/./}) / 1000))
    hx_utc_into finished '%Y-%m-%dT%H:%M:%SZ' "${now%.*}"
    hx_utc_into started_at '%Y-%m-%dT%H:%M:%SZ' "${started%.*}"
    hx_basename_into name "$m"
    sha=$(openssl dgst -sha256 -r <"$m" 2>/dev/null) || sha=""
    sha=${sha%% *}
    # What the tested manifest says of itself, as far as it can be read (a failed test may be of a malformed one).
    tested=$(jq --compact-output '{artifact, createdAt} | map_values(if type == "string" then . else null end)' -- "$m" 2>/dev/null) || tested='{}'
    if [[ ${HX_KEY_LOADED_ID:-} != "$HX_KEY_ID" ]] && ! hx_key_load "$HX_KEY_ID"; then
        hx_warn restore_test_record "restore-test record not written: encryption key: $HX_KEY_ERROR" "type=$type" "target=$target"
        return 0
    fi
    local part="$dir/.restore-test.json.$$.partial"
    hx_tmp_register "$part"
    # shellcheck disable=SC2016  # a jq filter: $names are jq's variables
    if ! hx_sign_json "$part" '{format: 1, kind: "restore-test", host: $host, stack: $stack, job: $job, type: $type, target: $target,
          manifest: $manifest, manifestSha256: (if $manifestSha == "" then null else $manifestSha end),
          artifact: $tested.artifact, manifestCreatedAt: $tested.createdAt,
          startedAt: $started, finishedAt: $finished, durationMs: $ms,
          result: $result, error: (if $result == "ok" then null else $error end)}' \
        --null-input --arg host "$HX_HOST" --arg stack "$HX_STACK" --arg job "$HX_JOB" \
        --arg type "$type" --arg target "$target" --arg manifest "$name" --arg manifestSha "$sha" --argjson tested "$tested" \
        --arg started "$started_at" --arg finished "$finished" --argjson ms "$ms" --arg result "$result" --arg error "${error:0:500}" \
        || ! mv -f -- "$part" "$dir/.restore-test.json"; then
        rm -f -- "$part"
        hx_warn restore_test_record "restore-test record not written" "type=$type" "target=$target"
    fi
    return 0
}

# ---------------------------------------------------------------- restore ---

# hx_restore_refuse WHAT: a restore that would overwrite WHAT without --force.
hx_restore_refuse() {
    HX_STATUS_CAUSE="refusing to overwrite $1 without --force"
    hx_error refused "$HX_STATUS_CAUSE"
    echo "$HX_STATUS_CAUSE" >&2
    exit "$HX_EXIT_USAGE"
}

# hx_restore_to_file MANIFEST ARTIFACT FILE FORCE: the decrypted stream to a
# .partial next to FILE, then renamed onto it.
hx_restore_to_file() {
    local m=$1 a=$2 out=$3 force=$4 part
    [[ -n $out ]] || hx_die "$HX_EXIT_USAGE" "--target FILE is required for this artifact"
    if [[ -e $out && $force -ne 1 ]]; then hx_restore_refuse "$out"; fi
    part="$out.$$.partial"
    hx_tmp_register "$part"
    (umask 077 && hx_open_artifact "$m" "$a" >"$part") || hx_die "$HX_EXIT_FAIL" "decryption failed"
    sync --data -- "$part"
    mv -f -- "$part" "$out"
}
