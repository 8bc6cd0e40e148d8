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

hx_single_target_job hx_single_target_on_exit archive pitr-archive "$@"
hx_pitr_init
hx_lock pitr-status
hx_pitr_status
