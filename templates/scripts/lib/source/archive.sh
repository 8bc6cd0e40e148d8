#!/usr/bin/env bash
# hx-backup library: the archive data sources (application data, configuration):
# the archive job, restore test and restore.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_SOURCE_MODULE # defined in core.sh; this module adds its types

# hx_archive_restore_test MANIFEST ARTIFACT: list, extract to a temp dir
# inside the storage directory, compare with the archive, remove.
hx_archive_restore_test() {
    local m=$1 a=$2 tmp listed extracted diffout
    listed=$(hx_open_artifact "$m" "$a" | tar --list --ignore-zeros --file=- | grep --count .) || {
        HX_VERIFY_ERROR="archive cannot be listed"
        return 1
    }
    local want
    want=$(jq --raw-output '.content.entries // empty' "$m")
    if [[ -n $want && $listed != "$want" ]]; then
        HX_VERIFY_ERROR="archive lists $listed entries, manifest recorded $want"
        return 1
    fi
    tmp=$(mktemp --directory -- "$HX_STORAGE/.restore-test.$$.tmpXXXXXX.partial")
    hx_tmp_register "$tmp"
    local -a owner_opts=(--no-same-owner)
    ((EUID == 0)) && owner_opts=(--same-owner --numeric-owner --xattrs --xattrs-include='*' --acls)
    if ! hx_open_artifact "$m" "$a" | tar --extract --ignore-zeros --file=- --directory="$tmp" --preserve-permissions "${owner_opts[@]}" 2>"$tmp.err"; then
        HX_VERIFY_ERROR="archive extraction failed: $(head -c 300 "$tmp.err" | tr '\n' ' ')"
        chmod -R u+rwX -- "$tmp" 2>/dev/null || true
        rm -rf -- "$tmp" "$tmp.err"
        return 1
    fi
    extracted=$(cd -- "$tmp" && find . -mindepth 1 | grep --count .)
    diffout=$(hx_open_artifact "$m" "$a" | tar --diff --ignore-zeros --file=- --directory="$tmp" "${owner_opts[@]}" 2>&1 | grep --invert-match --extended-regexp 'Uid differs|Gid differs|Mod time differs' || true)
    # Read-only directories from the archive must not block the cleanup.
    chmod -R u+rwX -- "$tmp" 2>/dev/null || true
    rm -rf -- "$tmp" "$tmp.err"
    if [[ -n $diffout ]]; then
        HX_VERIFY_ERROR="extracted files differ from the archive: $(head -c 300 <<<"$diffout" | tr '\n' ' ')"
        return 1
    fi
    ((extracted > 0 || listed == 0)) || {
        HX_VERIFY_ERROR="nothing was extracted"
        return 1
    }
}

# ----------------------------------------------------------- archive jobs ---

# hx_archive_script TYPE TARGET JOB [ARGS...]: the whole of application-backup.sh
# and configuration-backup.sh: one archive of TYPE, made by the privileged
# helper's TYPE-archive verb, stored as TARGET.
hx_archive_script() {
    local type=$1 target=$2 job=$3
    shift 3
    hx_single_target_job hx_single_target_on_exit "$target" "$job" "$@"
    hx_lock "$type-backup"
    hx_cfg_section "$type" || hx_die "$HX_EXIT_USAGE" "config: $type is not configured on this host"
    hx_archive_dump "$type" "$target" "$type-archive"
    local rc=0
    hx_finish_job "$type" "$rc" || rc=$?
    exit "$rc"
}

# hx_archive_dump TYPE TARGET VERB: the dump verb. An application or
# configuration archive, read through the privileged helper's VERB.
hx_archive_dump() {
    local type=$1 target=$2 verb=$3 errf start
    start=$(hx_epoch)
    hx_metrics "$type" "$target" "backup_last_attempt_timestamp=$start"
    HX_SINGLE_TARGET=$target
    hx_key_load "$HX_KEY_ID" || hx_die "$HX_EXIT_USAGE" "encryption key: $HX_KEY_ERROR"
    mkdir -p -- "$HX_STORAGE/$type/$target"
    errf="$HX_STORAGE/$type/$target/.stderr.$$.partial"
    hx_tmp_register "$errf"
    : >"$errf"
    HX_SOURCE_ERROR_FILE=$errf
    HX_EXTRA_TOOLS_JSON=$(jq --null-input --compact-output --arg t "$(hx_tool_version tar)" '{tar: $t}')
    hx_store "$type" "$target" "$target" tar hx_archive_check_tar -- hx__archive_source "$verb" "$errf"
    local content entries
    entries=$(grep --count . "${HX_OUT[work]}/check" || true)
    content=$(jq --null-input --compact-output --argjson n "$entries" '{format: "tar", entries: $n}')
    local source_json
    source_json=$(hx_cfg_json "$type")
    hx_commit_artifact "$type" "$target" "$source_json" "$content"
    hx_backup_succeeded "$type" "$target" "$start" "archive backed up and verified" "entries=$entries"
}

# shellcheck disable=SC2317  # invoked through hx_store
hx__archive_source() {
    hx_privileged "$1" 2>>"$2"
}

hx_archive_content_hasher() { echo hx__hash_raw; }

# hx_archive_check_tar SIZEFILE CHECKFILE < tar: hash and size while tar
# lists the same bytes (one entry per line in CHECKFILE).
hx_archive_check_tar() { hx__hash_tee "$1" "$2" tar --list --ignore-zeros --file=-; }

# hx_archive_restore MANIFEST ARTIFACT DIR FORCE: extract into DIR, which must
# be empty unless FORCE is 1; as root with owners, ACLs and xattrs. Prints DIR.
hx_archive_restore() {
    local m=$1 a=$2 target=$3 force=$4
    [[ -n $target ]] || hx_die "$HX_EXIT_USAGE" "--target DIR is required for archive artifacts"
    if [[ -e $target && ! -d $target ]]; then hx_restore_refuse "$target (not a directory)"; fi
    if [[ -d $target ]] && [[ -n $(find "$target" -mindepth 1 -maxdepth 1 -print -quit) ]] && ((force != 1)); then
        hx_restore_refuse "non-empty directory $target"
    fi
    mkdir -p -- "$target"
    local -a opts=(--preserve-permissions --ignore-zeros)
    if ((EUID == 0)); then
        opts+=(--same-owner --numeric-owner --xattrs --xattrs-include='*' --acls)
    else
        opts+=(--no-same-owner)
        hx_warn restore "not running as root: owners, ACLs and xattrs are not restored"
    fi
    hx_open_artifact "$m" "$a" | tar --extract --file=- --directory="$target" "${opts[@]}" ||
        hx_die "$HX_EXIT_FAIL" "extraction failed"
    printf '%s\n' "$target"
}

HX_SOURCE_MODULE[application]=archive
HX_SOURCE_MODULE[configuration]=archive
