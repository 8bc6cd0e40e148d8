#!/usr/bin/env bash
# PostgreSQL backup: every configured database (or every non-template one),
# plus globals (roles, tablespaces), streamed through the hx-backup pipeline
# (see lib/source/postgresql.sh).
#
# Usage: postgresql-backup.sh daily|weekly|test
#   daily, weekly  back up, verify, apply retention, sync to S3
#   test           check connectivity, dump each database to a throwaway
#                  artifact, verify and list it, remove it, print a report;
#                  no metrics, no retention, no sync
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=postgresql
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

MODE=${1:-daily}
if [[ ! $MODE =~ ^(daily|weekly|test)$ ]] || (($# > 1)); then
    echo "usage: $HX_SCRIPT_NAME daily|weekly|test" >&2
    exit "$HX_EXIT_USAGE"
fi

# A failure before the databases' own runs is recorded for each of them.
HX_PG_PENDING=()
# shellcheck disable=SC2317  # invoked through HX_ON_EXIT
pg_on_exit() {
    local rc=$1 target
    ((rc != 0 && rc != HX_EXIT_LOCKED)) || return 0
    for target in "${HX_PG_PENDING[@]}"; do hx_backup_failed postgresql "$target" "$rc" || true; done
}
HX_ON_EXIT=pg_on_exit

hx_init "postgresql-$MODE"
hx_lock postgresql-backup
hx_cfg_section postgresql || hx_die "$HX_EXIT_USAGE" "config: postgresql is not configured on this host"

if [[ $MODE == test ]]; then
    # Throwaway storage inside the backup directory, removed at exit; no metrics.
    HX_STORAGE="$HX_STORAGE/.selftest.$$.partial"
    mkdir -m 0700 -- "$HX_STORAGE"
    hx_tmp_register "$HX_STORAGE"
    HX_TEXTFILE=""
fi

hx_source postgresql dump

if [[ $MODE == test ]]; then
    echo "PostgreSQL backup self-test (server ${HX_PG_DUMP[server_version]}, user $PGUSER)"
    for db in "${HX_PG_DATABASES[@]}"; do
        manifest_ref="${HX_PG_DUMP[rundir]}/$(hx_slug "$db").manifest"
        if [[ -f $manifest_ref ]]; then
            manifest=$(cat -- "$manifest_ref")
            printf '  %-30s OK   %s bytes stored, %s tables\n' "$db" "$(jq --raw-output '.sizes.stored' "$manifest")" "$(jq --raw-output '.content.tables | length' "$manifest")"
        else
            printf '  %-30s FAILED (see %s)\n' "$db" "${HX_LOG_FILE:-the log}"
        fi
    done
    if [[ -f ${HX_PG_DUMP[rundir]}/_globals.manifest ]]; then echo "  globals                        OK"; else echo "  globals                        FAILED"; fi
    if ((${#HX_PG_FAILED[@]} > 0)); then
        HX_STATUS_CAUSE="self-test failed for: ${HX_PG_FAILED[*]}"
        exit "$HX_EXIT_FAIL"
    fi
    echo "Self-test passed; throwaway artifacts removed."
    exit 0
fi

RC=0
if ((${#HX_PG_FAILED[@]} > 0)); then
    HX_STATUS_CAUSE="backup failed for: ${HX_PG_FAILED[*]}"
    RC=$HX_EXIT_FAIL
    ((HX_PG_VERIFY_FAILED == 0)) || RC=$HX_EXIT_VERIFY
fi
hx_finish_job postgresql "$RC" || RC=$?
# Retention and sync have just checked the stored backups and recorded any
# pass; a database whose new artifact failed its own checks keeps its 0.
for target in "${HX_PG_VERIFY_FAILED_TARGETS[@]}"; do hx_metrics postgresql "$target" backup_verification_status=0; done
if ((RC != 0)) && [[ -z $HX_STATUS_CAUSE ]]; then HX_STATUS_CAUSE="remote sync failed"; fi
exit "$RC"
