#!/usr/bin/env bash
# Configuration: critical system and application config files, TLS
# certificates and keys (0600 in the archive), and a network/firewall snapshot
# (archived by backup-privileged.sh).
#
# Usage: configuration-backup.sh
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=configuration
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

if (($# != 0)); then
    echo "usage: $HX_SCRIPT_NAME" >&2
    exit "$HX_EXIT_USAGE"
fi
HX_ON_EXIT=hx_single_target_on_exit
HX_ARCHIVE_TARGET=system
hx_init "configuration-daily"
hx_lock configuration-backup
[[ $(hx_cfg '.configuration | type') == object ]] || hx_die "$HX_EXIT_USAGE" "config: configuration is not configured on this host"
hx_archive_job configuration system configuration-archive
RC=0
hx_finish_job configuration "$RC" || RC=$?
exit "$RC"
