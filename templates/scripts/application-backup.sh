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

hx_archive_script application data application-daily "$@"
