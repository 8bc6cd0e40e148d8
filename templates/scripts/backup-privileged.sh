#!/usr/bin/env bash
# The only part of hx-backup that runs as root. The backup user may run it
# through sudo with exactly one argument, a verb; every path comes from the
# root-owned config named in the root-owned lib/config-path beside it
# (HX_BACKUP_CONFIG is ignored under sudo). Data goes to stdout, logs to stderr and backup-privileged.log.
#
# Verbs:
#   redis-copy-rdb             the configured RDB file
#   application-archive        tar (posix, xattrs, ACLs, numeric owners) of
#                              application.paths with include/exclude
#   configuration-archive      tar of configuration.paths, tlsPaths (mode
#                              0600/0700 in the archive) and a network /
#                              firewall snapshot
# VACUUM/ANALYZE are not verbs: they run only from their systemd units, as postgres.
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=privileged
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"
# The root helper.
hx_allow_root

VERBS="redis-copy-rdb application-archive configuration-archive"
if [[ $# -ne 1 || " $VERBS " != *" $1 "* ]]; then
    echo "usage: $HX_SCRIPT_NAME {${VERBS// /|}}" >&2
    exit "$HX_EXIT_USAGE"
fi
VERB=$1
# Root (through sudo), or a systemd job holding CAP_DAC_READ_SEARCH: every verb only reads.
if ((EUID != 0)) && ! hx_has_capability 2; then
    echo "$HX_SCRIPT_NAME $VERB must run as root (through sudo) or with CAP_DAC_READ_SEARCH (its systemd unit)" >&2
    exit "$HX_EXIT_USAGE"
fi

FL_ROOTS=()
FL_INCS=()
FL_EXCS=()
hx_init_common "privileged-$VERB"
hx_audit start started

# Escape glob characters so a literal path can be used inside a find pattern.
glob_escape() {
    local s=$1 out="" i c
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            '*' | '?' | '[' | ']' | \\) out+="\\$c" ;;
            *) out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# file_list: NUL-separated, sorted
# list of paths (relative to /) to archive, from the arrays FL_ROOTS,
# FL_INCS and FL_EXCS. Roots are literal paths;
# patterns are globs matched (as data, by find) against the name, the full
# path and the path below the root. Excluded directories are pruned.
file_list() {
    local root eroot pat
    for root in "${FL_ROOTS[@]}"; do
        if [[ $root != /* ]]; then
            hx_warn skip_path "not an absolute path; skipped" "path=$root"
            continue
        fi
        if [[ ! -e $root && ! -L $root ]]; then
            hx_warn skip_path "path does not exist; skipped" "path=$root"
            continue
        fi
        root=${root%/}
        [[ -n $root ]] || root=/
        eroot=$(glob_escape "$root")
        local -a ex=() inc=()
        for pat in "${FL_EXCS[@]}"; do
            ((${#ex[@]} == 0)) || ex+=(-o)
            ex+=(-name "$pat" -o -path "$pat" -o -path "$eroot/$pat")
        done
        for pat in "${FL_INCS[@]}"; do
            inc+=(-o -name "$pat" -o -path "$pat" -o -path "$eroot/$pat")
        done
        local -a expr=()
        if ((${#ex[@]} > 0)); then
            expr+=(\( "${ex[@]}" \) -prune -o)
        fi
        if ((${#FL_INCS[@]} > 0)); then
            expr+=(\( -type d "${inc[@]}" \) -print0)
        else
            expr+=(-print0)
        fi
        find -P "$root" "${expr[@]}"
    done | while IFS= read -r -d '' p; do
        p=${p#/}
        [[ -n $p ]] && printf '%s\0' "$p"
    done | sort --zero-terminated --unique
}

# Deterministic tar of a NUL list on stdin (paths relative to /).
tar_list() {
    local rc=0
    tar --create --file=- --directory=/ --null --verbatim-files-from --no-recursion --files-from=- \
        --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
        --xattrs --xattrs-include='*' --acls --numeric-owner --ignore-failed-read "$@" || rc=$?
    if ((rc == 1)); then
        hx_warn tar "some files changed while being archived"
        rc=0
    fi
    return "$rc"
}

archive_application() {
    hx_cfg_section application || hx_die "$HX_EXIT_USAGE" "config: application is not configured"
    hx_cfg_into FL_ROOTS 'application.paths[]'
    hx_cfg_into FL_INCS 'application.include[]'
    hx_cfg_into FL_EXCS 'application.exclude[]'
    file_list | tar_list
}

# Network/firewall state, made deterministic (no counters, timestamps or
# address lifetimes) so an unchanged host deduplicates.
network_snapshot() {
    local dir=$1
    mkdir -p -- "$dir/hx-network-snapshot"
    local d="$dir/hx-network-snapshot"
    if command -v nft >/dev/null 2>&1; then
        nft --stateless list ruleset >"$d/nftables.rules" 2>&1 || hx_warn snapshot "nft list ruleset failed"
    elif command -v iptables-save >/dev/null 2>&1; then
        iptables-save 2>&1 | sed -E -e '/^#/d' -e 's/\[[0-9]+:[0-9]+\]/[0:0]/g' >"$d/iptables.rules" || hx_warn snapshot "iptables-save failed"
        if command -v ip6tables-save >/dev/null 2>&1; then
            ip6tables-save 2>&1 | sed -E -e '/^#/d' -e 's/\[[0-9]+:[0-9]+\]/[0:0]/g' >"$d/ip6tables.rules" || true
        fi
    else
        hx_warn snapshot "neither nft nor iptables-save is installed; no firewall snapshot"
    fi
    if command -v ip >/dev/null 2>&1; then
        ip address show 2>&1 | sed -e '/valid_lft/d' >"$d/ip-address.txt" || true
        ip route show table all >"$d/ip-route.txt" 2>&1 || true
        ip -6 route show >"$d/ip6-route.txt" 2>&1 || true
    fi
    find "$d" -exec touch --no-dereference --date=@0 -- {} +
}

archive_configuration() {
    hx_cfg_section configuration || hx_die "$HX_EXIT_USAGE" "config: configuration is not configured"
    local snap
    snap=$(mktemp --directory -- "${RUNTIME_DIRECTORY:-/run}/hx-backup-snapshot.XXXXXX" 2>/dev/null || mktemp --directory)
    hx_tmp_register "$snap"
    network_snapshot "$snap"
    # Three tar streams, concatenated; restore and listing use --ignore-zeros.
    FL_INCS=()
    FL_EXCS=()
    hx_cfg_into FL_ROOTS 'configuration.paths[]'
    file_list | tar_list
    hx_cfg_into FL_ROOTS 'configuration.tlsPaths[]'
    file_list | tar_list --mode=go-rwx
    tar --create --file=- --directory="$snap" --sort=name --format=posix \
        --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
        --owner=0 --group=0 --numeric-owner --mode=go-rwx hx-network-snapshot
}

copy_rdb() {
    local rdb
    hx_cfg_read rdb redis.rdbPath
    [[ $rdb == /* ]] || hx_die "$HX_EXIT_USAGE" "config: redis.rdbPath is not an absolute path: $rdb"
    [[ -f $rdb ]] || hx_die "$HX_EXIT_FAIL" "RDB file not found: $rdb"
    cat -- "$rdb"
}

case $VERB in
    redis-copy-rdb) copy_rdb ;;
    application-archive) archive_application ;;
    configuration-archive) archive_configuration ;;
esac
