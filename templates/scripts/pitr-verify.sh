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

hx_single_target_job hx_pitr_on_exit verify pitr-verify "$@"
hx_pitr_init
# Not while a backup writes the repository.
hx_lock_wait pitr-backup 21600
hx_pitr_verify
