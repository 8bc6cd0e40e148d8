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

hx_archive_script configuration system configuration-daily "$@"
