#!/usr/bin/env bash
# PITR backup: a pgBackRest full or differential backup of the cluster into
# its repository (see lib/source/pitr.sh). Runs as postgres, from the
# hx-backup-pitr-full and hx-backup-pitr-differential units.
#
# Usage: pitr-backup.sh full|diff
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=pitr
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

case ${1:-} in
    full) HX_SINGLE_TARGET=full ;;
    diff) HX_SINGLE_TARGET=differential ;;
    *)
        echo "usage: $HX_SCRIPT_NAME full|diff" >&2
        exit "$HX_EXIT_USAGE"
        ;;
esac
(($# == 1)) || {
    echo "usage: $HX_SCRIPT_NAME full|diff" >&2
    exit "$HX_EXIT_USAGE"
}
HX_ON_EXIT=hx_single_target_on_exit
hx_init "pitr-$HX_SINGLE_TARGET"
hx_pitr_init
# A full and a differential scheduled at the same time run one after the other.
hx_lock_wait pitr-backup 21600
hx_pitr_backup "$1" "$HX_SINGLE_TARGET"
