#!/usr/bin/env bash
# Restore-test the newest artifact of each source (or of one type): verify
# manifest MAC and checksum, decrypt, and restore into a scratch target
# (PostgreSQL: scratch database, compared by tables, row counts and each
# table's index count; Redis: redis-check-rdb and key count; archives:
# extract to a temp dir and compare). Nothing is overwritten. Updates backup_restore_test_status,
# backup_verification_status from the MAC and checksum step, and each
# source's restore-test record (lib/verify.sh hx_restore_test_record), which
# the next sync uploads for the compliance report.
#
# Usage: test-restore.sh [TYPE]
# Exit codes: 0 all passed, 4 a restore test failed, 1 nothing to test.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=restore-test
HX_QUIET=1
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

if (($# > 1)); then
    echo "usage: $HX_SCRIPT_NAME [TYPE]" >&2
    exit "$HX_EXIT_USAGE"
fi
ONLY=""
(($# == 0)) || ONLY=$(hx_type_arg TYPE "$1")
hx_init test-restore
SOURCES=()
hx_source_dirs SOURCES "$ONLY"
FAILED=0
TESTED=0
for dir in "${SOURCES[@]}"; do
    hx_source_of "$dir" type target
    newest=$(hx_previous_manifest "$dir")
    [[ -n $newest ]] || continue
    TESTED=$((TESTED + 1))
    t0=$(date +%s%N)
    if hx_restore_test "$newest"; then
        ms=$((($(date +%s%N) - t0) / 1000000))
        printf '  ok    %-40s %6d ms  %s\n' "$type/$target" "$ms" "$(basename -- "$newest")"
        hx_metrics "$type" "$target" backup_restore_test_status=1 backup_verification_status=1
        hx_info restore_test_ok "restore test passed" "type=$type" "target=$target" "ms=$ms"
    else
        FAILED=$((FAILED + 1))
        printf '  FAIL  %-40s %s\n' "$type/$target" "$HX_VERIFY_ERROR"
        hx_metrics "$type" "$target" backup_restore_test_status=0 "backup_verification_status=$HX_RESTORE_VERIFIED"
        hx_error restore_test_failed "restore test failed: $HX_VERIFY_ERROR" "type=$type" "target=$target"
    fi
done
((TESTED > 0)) || hx_die "$HX_EXIT_FAIL" "no backups found to restore-test${ONLY:+ of type $ONLY}"
if ((FAILED > 0)); then
    hx_die "$HX_EXIT_VERIFY" "$FAILED of $TESTED restore test(s) failed"
fi
echo "All $TESTED restore test(s) passed."
