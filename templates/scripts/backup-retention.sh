#!/usr/bin/env bash
# Local GFS retention with restic's semantics (--keep-daily/-weekly/-monthly/
# -yearly), as lib/retention.sh describes: the newest verified backup of each
# source is never deleted, nor an artifact a kept (deduplicated) manifest
# refers to; periods are counted in retention.timeZone. A backup job runs the
# same retention for its type at its end (hx_finish_job).
#
# Usage: backup-retention.sh [--type TYPE] [--dry-run]
#   --dry-run  list what would be deleted and why; delete nothing (the
#              verification of the newest backups still records its outcome)
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=retention
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

ONLY_TYPE=""
DRY=0
while (($# > 0)); do
    case $1 in
        --type)
            ONLY_TYPE=$(hx_type_option "$@")
            shift
            ;;
        --dry-run) DRY=1 ;;
        *)
            echo "usage: $HX_SCRIPT_NAME [--type TYPE] [--dry-run]" >&2
            exit "$HX_EXIT_USAGE"
            ;;
    esac
    shift
done

HX_DRY_RUN=$DRY # hx_init's cleanup of dead runs' temp paths only lists them
hx_init "${HX_JOB:-retention}"
hx_lock "backup-retention"
hx_retention_apply "$ONLY_TYPE" "$DRY"
