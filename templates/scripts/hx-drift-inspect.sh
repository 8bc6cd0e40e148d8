#!/usr/bin/env bash
# Read-only inspection for drift detection, shared by `npm run drift` (sent
# over SSH) and backup-drift-check.sh (run on the host from its installed copy).
#
# stdin, one request per line (tab separated):
#   F <path> <hash|nohash>   report owner, group, mode (and sha256 unless nohash)
#   W <dir-or-glob>          list every regular file it matches (one level)
#   B <path> <stack>         sha256 of the stack's hx-backup managed blocks in
#                            a file that is not ours (the Alertmanager config)
# stdout, one line per result:
#   F <path> <owner> <group> <mode> <sha256|->   or   F <path> MISSING
#   W <path>
#   B <path> <sha256>   or   B <path> MISSING (no file, or no block in it)
set -Eeuo pipefail
shopt -s nullglob

inspect_file() {
    local path="$1" hash_mode="$2" owner group mode digest="-"
    if [[ ! -e "$path" && ! -L "$path" ]]; then
        printf 'F\t%s\tMISSING\n' "$path"
        return 0
    fi
    IFS=' ' read -r owner group mode < <(stat --format='%U %G %a' -- "$path")
    if [[ "$hash_mode" == "hash" && -f "$path" ]]; then
        digest="$(sha256sum -- "$path")"
        digest="${digest%% *}"
    fi
    printf 'F\t%s\t%s\t%s\t%04o\t%s\n' "$path" "$owner" "$group" "$((8#$mode))" "$digest"
}

inspect_blocks() {
    local path="$1" stack="$2" blocks digest
    blocks=""
    # shellcheck disable=SC2016 # $0 is awk's, not the shell's
    [[ -r "$path" ]] && blocks="$(HX_STACK="$stack" awk 'index($0, "# >>> hx-backup managed block (stack " ENVIRON["HX_STACK"] "):") { inside = 1 }
        inside { print }
        inside && /^[ \t]*# <<< hx-backup managed block <<</ { inside = 0 }' "$path"; printf x)"
    blocks="${blocks%x}"
    if [[ -z "$blocks" ]]; then
        printf 'B\t%s\tMISSING\n' "$path"
        return 0
    fi
    digest="$(printf '%s' "$blocks" | sha256sum)"
    printf 'B\t%s\t%s\n' "$path" "${digest%% *}"
}

list_watched() {
    local pattern="$1" entry
    local -a matches
    if [[ -d "$pattern" ]]; then
        matches=("$pattern"/*)
    else
        # shellcheck disable=SC2206 # globbing is the point: the pattern is e.g. /etc/systemd/system/hx-backup-*
        matches=($pattern)
    fi
    for entry in "${matches[@]}"; do
        [[ -f "$entry" || -L "$entry" ]] && printf 'W\t%s\n' "$entry"
    done
    return 0
}

main() {
    local kind target extra
    while IFS=$'\t' read -r kind target extra; do
        case "$kind" in
            F) inspect_file "$target" "${extra:-hash}" ;;
            W) list_watched "$target" ;;
            B) inspect_blocks "$target" "$extra" ;;
            '') ;;
            *) printf 'hx-drift-inspect: unknown request %q\n' "$kind" >&2; return 2 ;;
        esac
    done
}

main "$@"
