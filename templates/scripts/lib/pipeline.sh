#!/usr/bin/env bash
# hx-backup library: the artifact pipeline: compress, encrypt and hash on the fly, store, pack parts
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

# ------------------------------------------------------------- pipeline ---

# hx_compression_method SETTING: the method for compression.method (auto: zstd if installed).
hx_compression_method() {
    case $1 in
        zstd) printf zstd ;;
        gzip) printf gzip ;;
        *) if command -v zstd >/dev/null 2>&1; then printf zstd; else printf gzip; fi ;;
    esac
}

hx_compress() {
    local method=$1 level=$2 threads=$3
    case $method in
        zstd) zstd --quiet --stdout "--threads=$threads" "-$level" ;;
        gzip)
            ((level > 9)) && level=9
            gzip --stdout "-$level"
            ;;
    esac
}

hx_decompress() {
    case $1 in
        zstd) zstd --quiet --decompress --stdout ;;
        gzip) gzip --decompress --stdout ;;
        *) return 1 ;;
    esac
}

hx_tool_version() {
    case $1 in
        zstd) zstd --version 2>/dev/null | head -n 1 ;;
        gzip) gzip --version 2>/dev/null | head -n 1 ;;
        openssl) openssl version 2>/dev/null ;;
        tar) tar --version 2>/dev/null | head -n 1 ;;
        *) "$1" --version 2>/dev/null | head -n 1 ;;
    esac
}

# hx__count_to FILE: copy stdin to stdout, writing the byte count to FILE.
hx__count_to() {
    local out=$1 stats
    { stats=$(LC_ALL=C dd bs=128K 2>&1 1>&3 3>&-); } 3>&1 || return 1
    stats=${stats##*$'\n'}
    [[ $stats =~ ^([0-9]+)\ bytes ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}" >"$out"
}

# hx__hash_raw SIZEFILE < stream: prints the sha256, writes the size.
hx__hash_raw() { hx__count_to "$1" | openssl dgst -sha256 -r; }

# hx_check_raw SIZEFILE CHECKFILE < stream: the plain checker (bytes only).
hx_check_raw() { hx__hash_raw "$1"; }

# hx__hash_tee SIZEFILE CHECKOUT CONSUMER...: sha256 and size of stdin while
# CONSUMER (a structure checker) reads the same bytes; its output goes to
# CHECKOUT.
hx__hash_tee() {
    local sizef=$1 checkout=$2 p rc=0
    shift 2
    mkfifo -- "$checkout.fifo"
    hx__hash_raw "$sizef" <"$checkout.fifo" &
    p=$!
    local -a st
    set +e
    tee -- "$checkout.fifo" | "$@" >"$checkout" 2>&1
    st=("${PIPESTATUS[@]}")
    set -e
    hx__fifo_release "$checkout.fifo"
    wait "$p" || rc=$?
    ((st[0] == 0 && st[1] == 0 && rc == 0))
}

# Unblock a FIFO reader that may never have seen a writer, then let it see EOF.
hx__fifo_release() {
    local f=$1 fd
    if [[ -p $f ]]; then
        exec {fd}<>"$f"
        exec {fd}>&-
    fi
}

# The artifact being written, one record (reset by hx_artifact_begin): where
# it goes (dir, base, artifact, partial, work), how (method, level, threads,
# cext), and after hx_store or hx_pack_parts what it came to (plain_size,
# stored_size, stored_sha, content_sha, parts_json); hx_commit_artifact adds
# manifest, artifact_path, dedup_saved and stored_size_new.
declare -gA HX_OUT=()

# hx_artifact_begin TYPE TARGET STEM SUFFIX: choose the artifact's name
# (<STEM>-<UTC stamp>.<SUFFIX>) and create its private work directory.
# Starts a new HX_OUT record with dir, base, artifact, partial, work, method,
# level, threads and cext.
hx_artifact_begin() {
    HX_OUT=()
    local type=$1 target=$2 stem=$3 suffix=$4
    HX_OUT[dir]="$HX_STORAGE/$type/$target"
    [[ -d ${HX_OUT[dir]} ]] || mkdir -p -- "${HX_OUT[dir]}"
    local -a compression=()
    hx_cfg_into compression compression.method compression.level compression.threads
    HX_OUT[method]=$(hx_compression_method "${compression[0]}")
    HX_OUT[level]=${compression[1]}
    HX_OUT[threads]=${compression[2]}
    HX_OUT[cext]=zst
    [[ ${HX_OUT[method]} == gzip ]] && HX_OUT[cext]=gz
    suffix=${suffix//@CEXT@/${HX_OUT[cext]}}
    # Names sort by time; two runs within one second wait for the next one.
    local stamp
    while :; do
        hx_utc_into stamp '%Y%m%dT%H%M%SZ'
        HX_OUT[base]="$stem-$stamp"
        [[ -e ${HX_OUT[dir]}/${HX_OUT[base]}.manifest.json || -e ${HX_OUT[dir]}/${HX_OUT[base]}.$suffix ]] || break
        sleep 0.3
    done
    HX_OUT[artifact]="${HX_OUT[base]}.$suffix"
    HX_OUT[work]="${HX_OUT[dir]}/.${HX_OUT[base]}.$$.work.partial"
    mkdir -m 0700 -- "${HX_OUT[work]}"
    hx_tmp_register "${HX_OUT[work]}"
    HX_OUT[partial]="${HX_OUT[dir]}/.${HX_OUT[artifact]}.$$.partial"
    hx_tmp_register "${HX_OUT[partial]}"
}

# hx_pipe_to FILE WORK CHECKER -- COMMAND...
# After hx_artifact_begin. Streams COMMAND's stdout: compress -> encrypt ->
# FILE (fsynced), while side branches take the sha256 of the stored bytes
# and decompress the compressed stream again for the plaintext content hash
# and size. CHECKER SIZEFILE CHECKFILE reads that plaintext and prints its
# hash (hx_check_raw, or a data source's own, which may also check the
# structure and write what it found to CHECKFILE). Hashing the
# decompressed copy proves the compressed stream decodes, and tees the
# small compressed stream instead of the large plaintext one. Plaintext never
# touches the disk. WORK (an empty private directory) receives the results:
# WORK/result is "plain_size stored_size stored_sha256 content_sha256";
# WORK/check the checker's output. Returns non-zero, with HX_STATUS_CAUSE,
# on failure (FILE is then removed).
hx_pipe_to() {
    local file=$1 work=$2 checker=$3
    shift 3
    [[ ${1:-} == -- ]] && shift
    mkfifo -- "$work/compressed" "$work/cipher"
    local p1 p3
    { hx_decompress "${HX_OUT[method]}" <"$work/compressed" | "$checker" "$work/size" "$work/check" >"$work/plain.sha"; } &
    p1=$!
    openssl dgst -sha256 -r <"$work/cipher" >"$work/cipher.sha" &
    p3=$!
    local -a st
    set +e
    "$@" | hx_compress "${HX_OUT[method]}" "${HX_OUT[level]}" "${HX_OUT[threads]}" | tee -- "$work/compressed" | hx_encrypt | tee -- "$work/cipher" >"$file"
    st=("${PIPESTATUS[@]}")
    set -e
    hx__fifo_release "$work/compressed"
    hx__fifo_release "$work/cipher"
    local r1=0 r3=0
    wait "$p1" || r1=$?
    wait "$p3" || r3=$?
    local names=(source compress tee encrypt write) i
    for i in "${!st[@]}"; do
        if ((st[i] != 0)); then
            HX_STATUS_CAUSE="pipeline stage '${names[i]}' failed with status ${st[i]}"
            [[ -n ${HX_SOURCE_ERROR_FILE:-} && -s $HX_SOURCE_ERROR_FILE ]] && HX_STATUS_CAUSE+=": $(tail -c 400 "$HX_SOURCE_ERROR_FILE" | tr '\n' ' ')"
            rm -f -- "$file"
            return 1
        fi
    done
    if ((r1 != 0 || r3 != 0)); then
        HX_STATUS_CAUSE="hashing stage failed (decompressed copy=$r1 stored=$r3)"
        [[ -s $work/check ]] && HX_STATUS_CAUSE="$checker rejected the stream: $(tail -n 3 "$work/check" | tr '\n' ' ')"
        rm -f -- "$file"
        return 1
    fi
    sync --data -- "$file" || {
        HX_STATUS_CAUSE="fsync of $file failed"
        rm -f -- "$file"
        return 1
    }
    local plain_size stored_size stored_sha content_sha
    plain_size=$(<"$work/size")
    stored_size=$(stat --format=%s -- "$file")
    stored_sha=$(<"$work/cipher.sha")
    content_sha=$(<"$work/plain.sha")
    stored_sha=${stored_sha%% *}
    content_sha=${content_sha%% *}
    [[ $plain_size =~ ^[0-9]+$ && $stored_sha =~ ^[0-9a-f]{64}$ && $content_sha =~ ^[0-9a-f]{64}$ ]] || {
        HX_STATUS_CAUSE="could not read pipeline hashes"
        rm -f -- "$file"
        return 1
    }
    printf '%s %s %s %s\n' "$plain_size" "$stored_size" "$stored_sha" "$content_sha" >"$work/result"
}

# hx_store TYPE TARGET STEM EXT CHECKER -- COMMAND...
# One artifact from one stream (hx_artifact_begin + hx_pipe_to). Sets the
# HX_OUT fields hx_commit_artifact reads. Returns non-zero (with
# HX_STATUS_CAUSE) on failure.
hx_store() {
    local type=$1 target=$2 stem=$3 ext=$4 checker=$5
    shift 5
    [[ ${1:-} == -- ]] && shift
    hx_artifact_begin "$type" "$target" "$stem" "$ext.@CEXT@.enc"
    hx_pipe_to "${HX_OUT[partial]}" "${HX_OUT[work]}" "$checker" -- "$@" || return 1
    read -r 'HX_OUT[plain_size]' 'HX_OUT[stored_size]' 'HX_OUT[stored_sha]' 'HX_OUT[content_sha]' <"${HX_OUT[work]}/result"
}

# hx_pack_parts PART...: after hx_artifact_begin and one hx_pipe_to per part
# (FILE ${HX_OUT[work]}/parts/PART, results in ${HX_OUT[work]}/PART.d), pack the
# encrypted parts into one uncompressed tar as the artifact. The content hash
# covers every part's name and content hash, so dedup still works. Sets the
# HX_OUT fields hx_commit_artifact reads, and parts_json.
hx_pack_parts() {
    local name plain stored ssha csha total=0 index=""
    local -a rows=()
    for name in "$@"; do
        read -r plain stored ssha csha <"${HX_OUT[work]}/$name.d/result"
        total=$((total + plain))
        index+="$name $csha"$'\n'
        rows+=("$(jq --null-input --compact-output --arg n "$name" --argjson p "$plain" --argjson s "$stored" --arg ss "$ssha" --arg cs "$csha" \
            '{name: $n, sizes: {plain: $p, stored: $s}, sha256: {stored: $ss, content: $cs}}')")
    done
    # --remove-files: each part leaves the work directory once packed, so
    # the peak disk use stays near one copy of the artifact.
    if ! tar --create --file="${HX_OUT[partial]}" --directory="${HX_OUT[work]}/parts" --format=posix --sort=name --remove-files \
        --mtime=@0 --owner=0 --group=0 --numeric-owner --pax-option=delete=atime,delete=ctime -- "$@" 2>"${HX_OUT[work]}/tar.err"; then
        HX_STATUS_CAUSE="packing the parts failed: $(head -c 300 "${HX_OUT[work]}/tar.err" | tr '\n' ' ')"
        return 1
    fi
    sync --data -- "${HX_OUT[partial]}" || {
        HX_STATUS_CAUSE="fsync of ${HX_OUT[partial]} failed"
        return 1
    }
    local s
    s=$(openssl dgst -sha256 -r <"${HX_OUT[partial]}")
    HX_OUT[stored_sha]=${s%% *}
    s=$(printf '%s' "$index" | openssl dgst -sha256 -r)
    HX_OUT[content_sha]=${s%% *}
    HX_OUT[stored_size]=$(stat --format=%s -- "${HX_OUT[partial]}")
    HX_OUT[plain_size]=$total
    HX_OUT[parts_json]=$(printf '%s\n' "${rows[@]}" | jq --slurp --compact-output .)
}
