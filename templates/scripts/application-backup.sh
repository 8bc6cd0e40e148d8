#!/usr/bin/env bash
# Application data: the configured paths with include/exclude patterns, keeping
# owners, modes, ACLs and xattrs (archived by backup-privileged.sh).
#
# Usage: application-backup.sh
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=application
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

if (($# != 0)); then
    echo "usage: $HX_SCRIPT_NAME" >&2
    exit "$HX_EXIT_USAGE"
fi
HX_ON_EXIT=hx_single_target_on_exit
HX_ARCHIVE_TARGET=data
hx_init "application-daily"
hx_lock application-backup
[[ $(hx_cfg '.application | type') == object ]] || hx_die "$HX_EXIT_USAGE" "config: application is not configured on this host"
hx_archive_job application data application-archive
RC=0
hx_finish_job application "$RC" || RC=$?
exit "$RC"
