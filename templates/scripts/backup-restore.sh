#!/usr/bin/env bash
# Restore one artifact, after verifying its manifest MAC and checksum.
#
# Usage: backup-restore.sh [--force] [--target TARGET] SOURCE
#   SOURCE  a local manifest (.manifest.json) or artifact (.enc), or an S3 URL
#           s3://bucket/key of either (both objects are downloaded into the
#           storage directory and verified first)
#   TARGET  postgresql: database name (default: the original database)
#           postgresql globals: output SQL file (required)
#           redis: output RDB file (required)
#           application, configuration: directory to extract into (required;
#           run as root to restore owners, ACLs and xattrs)
#   --force overwrite an existing database, file or non-empty directory
# Exit codes: 0 restored, 2 usage or target exists without --force,
# 4 verification failed, 1 restore failed.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=restore
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

usage() {
    echo "usage: $HX_SCRIPT_NAME [--force] [--target TARGET] MANIFEST|ARTIFACT|s3://bucket/key" >&2
    exit "$HX_EXIT_USAGE"
}
FORCE=0
TARGET=""
SRC=""
while (($# > 0)); do
    case $1 in
        --force) FORCE=1 ;;
        --target)
            [[ $# -ge 2 ]] || usage
            TARGET=$2
            shift
            ;;
        --target=*) TARGET=${1#--target=} ;;
        -h | --help) usage ;;
        -*) usage ;;
        *)
            [[ -z $SRC ]] || usage
            SRC=$1
            ;;
    esac
    shift
done
[[ -n $SRC ]] || usage

hx_init "restore"

# --------------------------------------------------------- locate source ---
MANIFEST=""
if [[ $SRC == s3://* ]]; then
    DL=$(mktemp --directory -- "$HX_STORAGE/.restore-download.XXXXXX.partial")
    hx_tmp_register "$DL"
    hx_remote_env || hx_die "$HX_EXIT_USAGE" "$HX_REMOTE_ERROR"
    rest=${SRC#s3://}
    bucket=${rest%%/*}
    key=${rest#*/}
    if [[ $key == *.manifest.json ]]; then
        mkey=$key
    else
        mkey="${key%/*}/$(basename -- "$key" | sed -E 's/^(.*-[0-9]{8}T[0-9]{6}Z(-[0-9]+)?)\..*$/\1/').manifest.json"
    fi
    hx_s3_download "$bucket" "$mkey" "$DL/m.json" || hx_die "$HX_EXIT_FAIL" "cannot download s3://$bucket/$mkey: $HX_REMOTE_ERROR"
    hx_verify_manifest_mac "$DL/m.json" || hx_die "$HX_EXIT_VERIFY" "downloaded manifest failed verification: $HX_VERIFY_ERROR"
    art=$(jq --raw-output '.artifact' "$DL/m.json")
    [[ $art != */* && -n $art ]] || hx_die "$HX_EXIT_VERIFY" "manifest names an invalid artifact"
    akey=$(jq --raw-output '.remote.artifactKey // empty' "$DL/m.json" 2>/dev/null || true)
    [[ -n $akey ]] || akey="${mkey%/*}/$art"
    hx_s3_download "$bucket" "$akey" "$DL/$art" || hx_die "$HX_EXIT_FAIL" "cannot download s3://$bucket/$akey: $HX_REMOTE_ERROR"
    cp -- "$DL/m.json" "$DL/restore.manifest.json"
    MANIFEST="$DL/restore.manifest.json"
elif [[ $SRC == *.manifest.json ]]; then
    MANIFEST=$SRC
else
    d=$(dirname -- "$SRC")
    b=$(basename -- "$SRC")
    while IFS= read -r -d '' c; do
        if [[ $(jq --raw-output --arg b "$b" 'select(.artifact == $b and .dedup == null) | "yes"' "$c" 2>/dev/null) == yes ]]; then
            MANIFEST=$c
        fi
    done < <(find "$d" -mindepth 1 -maxdepth 1 -type f -name '*.manifest.json' -print0)
    [[ -n $MANIFEST ]] || hx_die "$HX_EXIT_VERIFY" "no manifest found for $SRC"
fi
[[ -f $MANIFEST ]] || hx_die "$HX_EXIT_USAGE" "no such manifest: $MANIFEST"

# ----------------------------------------------------------------- verify ---
ARTIFACT=$(hx_manifest_artifact "$MANIFEST") || hx_die "$HX_EXIT_VERIFY" "manifest names an invalid artifact"
hx_verify_artifact "$MANIFEST" "$ARTIFACT" || hx_die "$HX_EXIT_VERIFY" "verification failed, nothing restored: $HX_VERIFY_ERROR"
TYPE=$(jq --raw-output '.type' "$MANIFEST")
FMT=$(jq --raw-output '.content.format // ""' "$MANIFEST")
hx_info restore_start "artifact verified; restoring" "manifest=$MANIFEST" "type=$TYPE" "target=$TARGET"

refuse() {
    HX_STATUS_CAUSE="refusing to overwrite $1 without --force"
    hx_error refused "$HX_STATUS_CAUSE"
    echo "$HX_STATUS_CAUSE" >&2
    exit "$HX_EXIT_USAGE"
}

# Write the decrypted stream to a file: .partial next to it, then rename.
restore_to_file() {
    local out=$1
    [[ -n $out ]] || hx_die "$HX_EXIT_USAGE" "--target FILE is required for $TYPE artifacts"
    if [[ -e $out && $FORCE -ne 1 ]]; then refuse "$out"; fi
    local part="$out.$$.partial"
    hx_tmp_register "$part"
    (umask 077 && hx_open_artifact "$MANIFEST" "$ARTIFACT" >"$part") || hx_die "$HX_EXIT_FAIL" "decryption failed"
    sync --data -- "$part"
    mv -f -- "$part" "$out"
}

case $TYPE in
    postgresql)
        if [[ $FMT == sql ]]; then
            restore_to_file "$TARGET"
        else
            hx_pg_env || hx_die "$HX_EXIT_USAGE" "$HX_PG_ERROR"
            [[ -n $TARGET ]] || TARGET=$(jq --raw-output '.source.database' "$MANIFEST")
            errf=$(mktemp -- "$HX_STORAGE/.restore-err.XXXXXX.partial")
            hx_tmp_register "$errf"
            exists=$(printf '%s\n' "SELECT count(*) FROM pg_database WHERE datname = :'d';" | hx_psql --set=d="$TARGET" 2>>"$errf") ||
                hx_die "$HX_EXIT_FAIL" "cannot query PostgreSQL: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
            if [[ $exists != 0 ]]; then
                ((FORCE == 1)) || refuse "database '$TARGET'"
                hx_audit drop_database dropping "database=$TARGET"
                printf '%s\n' 'DROP DATABASE :"d" WITH (FORCE);' | hx_psql --set=d="$TARGET" 2>>"$errf" ||
                    hx_die "$HX_EXIT_FAIL" "cannot drop database '$TARGET': $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
            fi
            printf '%s\n' 'CREATE DATABASE :"d";' | hx_psql --set=d="$TARGET" 2>>"$errf" ||
                hx_die "$HX_EXIT_FAIL" "cannot create database '$TARGET': $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
            hx_pg_restore_into "$MANIFEST" "$ARTIFACT" "$TARGET" "$errf" || hx_die "$HX_EXIT_FAIL" "pg_restore failed"
            got=$(hx_pg_table_counts "$TARGET" | jq --compact-output --sort-keys 'sort_by(.table)')
            want=$(jq --compact-output --sort-keys '.content.tables | sort_by(.table)' "$MANIFEST")
            if [[ $got != "$want" ]]; then
                hx_die "$HX_EXIT_FAIL" "restored database '$TARGET' does not match the manifest's tables and row counts"
            fi
        fi
        ;;
    redis)
        restore_to_file "$TARGET"
        ;;
    application | configuration)
        [[ -n $TARGET ]] || hx_die "$HX_EXIT_USAGE" "--target DIR is required for $TYPE artifacts"
        if [[ -e $TARGET && ! -d $TARGET ]]; then refuse "$TARGET (not a directory)"; fi
        if [[ -d $TARGET ]] && [[ -n $(find "$TARGET" -mindepth 1 -maxdepth 1 -print -quit) ]] && ((FORCE != 1)); then
            refuse "non-empty directory $TARGET"
        fi
        mkdir -p -- "$TARGET"
        opts=(--preserve-permissions --ignore-zeros)
        if ((EUID == 0)); then
            opts+=(--same-owner --numeric-owner --xattrs --xattrs-include='*' --acls)
        else
            opts+=(--no-same-owner)
            hx_warn restore "not running as root: owners, ACLs and xattrs are not restored"
        fi
        hx_open_artifact "$MANIFEST" "$ARTIFACT" | tar --extract --file=- --directory="$TARGET" "${opts[@]}" ||
            hx_die "$HX_EXIT_FAIL" "extraction failed"
        ;;
    *) hx_die "$HX_EXIT_VERIFY" "unknown artifact type '$TYPE'" ;;
esac
hx_audit restore ok "manifest=$MANIFEST" "type=$TYPE" "target=$TARGET"
echo "Restored $TYPE artifact $(basename -- "$ARTIFACT") to ${TARGET}"
