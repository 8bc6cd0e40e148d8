#!/usr/bin/env bash
# Restore one artifact, after verifying its manifest MAC and checksum.
#
# Usage: backup-restore.sh [--force] [--target TARGET] SOURCE
#   SOURCE  a local manifest (.manifest.json) or artifact (.enc), or an S3 URL
#           s3://bucket/key of either (both objects are downloaded into the
#           storage directory and verified first); a local artifact is
#           restored with the newest valid manifest that describes it (its
#           own or a deduplicated one). A failed verification of a local
#           source sets its backup_verification_status to 0 (an artifact no
#           manifest refers to is refused and records nothing).
#   TARGET  postgresql: database name (default: the original database)
#           postgresql globals: output SQL file (required)
#           redis: output RDB file (required)
#           application, configuration: directory to extract into (required;
#           run as root to restore owners, ACLs and xattrs)
#   --force overwrite an existing database, file or non-empty directory
#
#        backup-restore.sh --pitr [--target-time TS | --latest] --target DIR [--force]
#   Restores the PostgreSQL cluster with pgBackRest (postgresql.pitr) into
#   DIR, to the time TS (e.g. "2026-12-01 13:05:00+00") or to the latest
#   archived WAL (the default). A new DIR gets archive_mode off, so the copy
#   never archives into the repository. DIR may be the live data directory
#   only with --force and PostgreSQL stopped. Run as root or postgres.
# Exit codes: 0 restored, 2 usage or target exists without --force,
# 4 verification failed, 1 restore failed.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=restore
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"
# Root restores owners, modes, ACLs and xattrs.
hx_allow_root

usage() {
    echo "usage: $HX_SCRIPT_NAME [--force] [--target TARGET] MANIFEST|ARTIFACT|s3://bucket/key" >&2
    echo "       $HX_SCRIPT_NAME --pitr [--target-time TS | --latest] --target DIR [--force]" >&2
    exit "$HX_EXIT_USAGE"
}
# --------------------------------------------------------------------- PITR ---
if [[ ${1:-} == --pitr ]]; then
    shift
    FORCE=0 DIR="" TIME="" LATEST=0
    while (($# > 0)); do
        case $1 in
            --force) FORCE=1 ;;
            --latest) LATEST=1 ;;
            --target-time | --target)
                [[ $# -ge 2 ]] || usage
                [[ $1 == --target ]] && DIR=$2 || TIME=$2
                shift
                ;;
            --target-time=*) TIME=${1#--target-time=} ;;
            --target=*) DIR=${1#--target=} ;;
            *) usage ;;
        esac
        shift
    done
    [[ -n $DIR ]] || usage
    [[ -z $TIME || $LATEST == 0 ]] || usage
    # A time PostgreSQL would misread is refused here, not after the copy.
    [[ -z $TIME ]] || date --date="$TIME" +%s >/dev/null 2>&1 || {
        echo "$HX_SCRIPT_NAME: --target-time '$TIME' is not a timestamp (e.g. '2026-12-01 13:05:00+00')" >&2
        exit "$HX_EXIT_USAGE"
    }
    hx_init "restore"
    hx_pitr_init
    hx_pitr_restore "$DIR" "$TIME" "$FORCE"
    echo "Restored the cluster (stanza ${HX_PITR[stanza]}) to ${HX_PITR[restored_to]} in $DIR."
    echo "Start it, e.g.: runuser -u postgres -- $(hx_pitr_bindir "$DIR")/pg_ctl start --pgdata=$DIR --options='-c port=5499'"
    exit 0
fi

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
    DL=$(mktemp --directory -- "$HX_STORAGE/.restore-download.$$.tmpXXXXXX.partial")
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
    hx_manifest_for_artifact "$SRC" || {
        ((HX_MANIFEST_REFS == 0)) || hx_record_verification "$SRC" 0 # an orphan is no backup (see backup-verify.sh)
        hx_die "$HX_EXIT_VERIFY" "$HX_VERIFY_ERROR"
    }
    MANIFEST=$HX_MANIFEST_FOUND
    echo "Using manifest $MANIFEST (the newest valid of $HX_MANIFEST_REFS that describe the artifact)"
fi
[[ -f $MANIFEST ]] || hx_die "$HX_EXIT_USAGE" "no such manifest: $MANIFEST"

# ----------------------------------------------------------------- verify ---
ARTIFACT=$(hx_manifest_artifact "$MANIFEST") || hx_die "$HX_EXIT_VERIFY" "manifest names an invalid artifact"
if ! hx_verify_artifact "$MANIFEST" "$ARTIFACT"; then
    hx_record_verification "$MANIFEST" 0
    hx_die "$HX_EXIT_VERIFY" "verification failed, nothing restored: $HX_VERIFY_ERROR"
fi
hx_record_verification "$MANIFEST" 1
TYPE=$(jq --raw-output '.type' "$MANIFEST")
hx_info restore_start "artifact verified; restoring" "manifest=$MANIFEST" "type=$TYPE" "target=$TARGET"
TARGET=$(hx_source "$TYPE" restore "$MANIFEST" "$ARTIFACT" "$TARGET" "$FORCE") || exit
hx_audit restore ok "manifest=$MANIFEST" "type=$TYPE" "target=$TARGET"
echo "Restored $TYPE artifact $(basename -- "$ARTIFACT") to ${TARGET}"
