#!/usr/bin/env bash
# Verify stored artifacts: manifest structure, HMAC and the sha256 of the
# stored bytes, all before any decryption; optionally a restore test.
#
# Usage:
#   backup-verify.sh --all [--restore-test] [--type TYPE]
#       every committed manifest; --restore-test also restore-tests the
#       newest artifact of each source
#   backup-verify.sh [--restore-test] PATH
#       one artifact (.enc) or manifest (.manifest.json); an artifact is
#       checked against the newest valid manifest that describes it (its own
#       or a deduplicated one). Either way the source's
#       backup_verification_status (and, with --restore-test,
#       backup_restore_test_status) records the outcome; an artifact no
#       manifest refers to is refused (exit 4) and records nothing, as --all
#       only warns about such orphans.
# Exit codes: 0 all verified, 4 any verification or restore test failed,
# 2 usage/config, 3 locked (see hx-backup-lib.sh).
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=verification
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

usage() {
    echo "usage: $HX_SCRIPT_NAME --all [--restore-test] [--type TYPE] | [--restore-test] PATH" >&2
    exit "$HX_EXIT_USAGE"
}

ALL=0
RESTORE=0
ONLY_TYPE=""
TARGET_PATH=""
while (($# > 0)); do
    case $1 in
        --all) ALL=1 ;;
        --restore-test) RESTORE=1 ;;
        --type)
            ONLY_TYPE=$(hx_type_option "$@")
            shift
            ;;
        --help | -h) usage ;;
        -*) usage ;;
        *)
            [[ -z $TARGET_PATH ]] || usage
            TARGET_PATH=$1
            ;;
    esac
    shift
done
((ALL == 1)) || [[ -n $TARGET_PATH ]] || usage
((ALL == 0)) || [[ -z $TARGET_PATH ]] || usage

hx_init "verification"
hx_lock backup-verify
((ALL == 0)) || hx_metrics verification all "backup_last_attempt_timestamp=$HX_START_EPOCH"

verify_one() {
    local m=$1 a
    a=$(hx_manifest_artifact "$m") || {
        HX_VERIFY_ERROR="manifest names an invalid artifact"
        return 1
    }
    hx_verify_artifact "$m" "$a"
}

FAILURES=0
CHECKED=0
if [[ -n $TARGET_PATH ]]; then
    m=$TARGET_PATH
    if [[ $m != *.manifest.json ]]; then
        hx_manifest_for_artifact "$TARGET_PATH" || {
            # An artifact no manifest refers to is no backup (--all only warns
            # about it): refused, but the source's status is left alone.
            ((HX_MANIFEST_REFS == 0)) || hx_record_verification "$TARGET_PATH" 0
            hx_die "$HX_EXIT_VERIFY" "$HX_VERIFY_ERROR"
        }
        m=$HX_MANIFEST_FOUND
    fi
    [[ -f $m ]] || hx_die "$HX_EXIT_USAGE" "no such manifest: $m"
    if verify_one "$m"; then
        hx_record_verification "$m" 1
        hx_info verified "artifact verified" "manifest=$m"
        echo "OK   $m"
    else
        hx_record_verification "$m" 0
        hx_error verify_failed "verification failed: $HX_VERIFY_ERROR" "manifest=$m"
        echo "FAIL $m: $HX_VERIFY_ERROR"
        hx_die "$HX_EXIT_VERIFY" "verification failed for $m: $HX_VERIFY_ERROR"
    fi
    if ((RESTORE == 1)); then
        if hx_restore_test "$m"; then
            hx_record_verification "$m" 1 backup_restore_test_status
            hx_info restore_test_ok "restore test passed" "manifest=$m"
            echo "OK   restore test"
        else
            hx_record_verification "$m" 0 backup_restore_test_status
            echo "FAIL restore test: $HX_VERIFY_ERROR"
            hx_die "$HX_EXIT_VERIFY" "restore test failed for $m: $HX_VERIFY_ERROR"
        fi
    fi
    exit 0
fi

SOURCES=()
hx_source_dirs SOURCES "$ONLY_TYPE"
for dir in "${SOURCES[@]}"; do
    hx_source_of "$dir" type target
    mapfile -d '' -t ms < <(hx_manifests "$dir")
    ((${#ms[@]} > 0)) || continue
    ok=1
    newest_ok=""
    for m in "${ms[@]}"; do
        CHECKED=$((CHECKED + 1))
        if verify_one "$m"; then
            newest_ok=$m
        else
            ok=0
            FAILURES=$((FAILURES + 1))
            hx_error verify_failed "verification failed: $HX_VERIFY_ERROR" "type=$type" "target=$target" "manifest=$m"
            echo "FAIL $type/$target/$(basename -- "$m"): $HX_VERIFY_ERROR"
        fi
    done
    hx_metrics "$type" "$target" "backup_verification_status=$ok" "backup_storage_usage_bytes=$(hx_storage_usage "$dir")"
    ((ok == 1)) && echo "OK   $type/$target (${#ms[@]} manifests)"
    if ((RESTORE == 1)); then
        newest=${ms[${#ms[@]} - 1]}
        rt=0
        if [[ $newest == "$newest_ok" ]] && hx_restore_test "$newest"; then
            rt=1
            hx_info restore_test_ok "restore test passed" "type=$type" "target=$target" "manifest=$newest"
            echo "OK   $type/$target restore test ($(basename -- "$newest"))"
        else
            # Not restore-tested because it did not verify: recorded as a failed restore test (hx_restore_test records its own).
            [[ $newest == "$newest_ok" ]] || hx_restore_test_record "$newest" failed "$EPOCHREALTIME" "${HX_VERIFY_ERROR:-newest artifact did not verify}"
            FAILURES=$((FAILURES + 1))
            hx_error restore_test_failed "restore test failed: ${HX_VERIFY_ERROR:-newest artifact did not verify}" "type=$type" "target=$target" "manifest=$newest"
            echo "FAIL $type/$target restore test: ${HX_VERIFY_ERROR:-newest artifact did not verify}"
        fi
        hx_metrics "$type" "$target" "backup_restore_test_status=$rt"
    fi
done

# Artifacts without any manifest are never treated as backups; report them.
refs=()
while IFS= read -r -d '' orphan; do
    hx_artifact_refs refs "$orphan"
    ((${#refs[@]} > 0)) || hx_warn orphan "artifact has no manifest (incomplete or foreign); ignored" "path=$orphan"
done < <(hx_artifacts 3 "$HX_STORAGE" 2>/dev/null)

now=$(hx_epoch)
if ((FAILURES > 0)); then
    hx_metrics verification all backup_last_run_status=0 "backup_duration_seconds=$((now - HX_START_EPOCH))"
    hx_die "$HX_EXIT_VERIFY" "$FAILURES verification problem(s) in $CHECKED manifest(s)"
fi
hx_metrics verification all backup_last_run_status=1 "backup_last_success_timestamp=$now" "backup_duration_seconds=$((now - HX_START_EPOCH))" backup_verification_status=1
hx_info verify_ok "all $CHECKED manifest(s) verified"
echo "All $CHECKED manifest(s) verified."
