#!/usr/bin/env bash
# Redis backup: the configured instance's RDB (BGSAVE, then the RDB streamed
# through the pipeline and checked by redis-check-rdb; see lib/source/redis.sh).
#
# Usage: redis-backup.sh
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=redis
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

# The target (the instance's name) is known once the dump reads the config.
hx_single_target_job hx_single_target_on_exit "" redis-daily "$@"
hx_lock redis-backup
hx_cfg_section redis || hx_die "$HX_EXIT_USAGE" "config: redis is not configured on this host"
hx_source redis dump
RC=0
hx_finish_job redis "$RC" || RC=$?
exit "$RC"
