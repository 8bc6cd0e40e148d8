#!/usr/bin/env bash
# PITR status: WAL archiving (lag, failures), the pending restart and the
# recovery window, as the metrics of target `archive` (see lib/source/pitr.sh).
# Runs as postgres every five minutes, from the hx-backup-pitr-archive unit.
#
# Usage: pitr-status.sh
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=pitr
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

if (($# != 0)); then
    echo "usage: $HX_SCRIPT_NAME" >&2
    exit "$HX_EXIT_USAGE"
fi
HX_ON_EXIT=hx_single_target_on_exit
HX_SINGLE_TARGET=archive
hx_init "pitr-archive"
hx_pitr_init
hx_lock pitr-status
hx_pitr_status
