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

if (($# != 0)); then
    echo "usage: $HX_SCRIPT_NAME" >&2
    exit "$HX_EXIT_USAGE"
fi
HX_ON_EXIT=hx_single_target_on_exit
hx_init "redis-daily"
hx_lock redis-backup
hx_cfg_section redis || hx_die "$HX_EXIT_USAGE" "config: redis is not configured on this host"
hx_source redis dump
RC=0
hx_finish_job redis "$RC" || RC=$?
exit "$RC"
