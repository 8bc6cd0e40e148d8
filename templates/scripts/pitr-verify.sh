#!/usr/bin/env bash
# PITR verification: `pgbackrest verify` over the whole repository, then a
# restore test of the latest point (a canary row written just before must
# come back; see hx_pitr_restore_test). Runs as postgres, weekly, from the
# hx-backup-pitr-verify unit.
#
# Usage: pitr-verify.sh
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
HX_ON_EXIT=hx_pitr_on_exit
HX_SINGLE_TARGET=verify
hx_init "pitr-verify"
hx_pitr_init
# Not while a backup writes the repository.
hx_lock_wait pitr-backup 21600
hx_pitr_verify
