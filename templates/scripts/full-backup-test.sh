#!/usr/bin/env bash
# Run every backup job configured for this host now, then verify everything
# and restore-test the newest artifact of each source; print a summary.
#
# Usage: full-backup-test.sh
# Exit codes: 0 all passed, 1 a job failed, 4 verification failed,
# 5 only remote sync failed.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=full-test
HX_QUIET=1
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

hx_init full-backup-test
RC=0
declare -A SEEN=()
echo "Full backup test on $HX_HOST"
script=""
argv=()
for i in "${!HX_JOB_NAMES[@]}"; do
    name=${HX_JOB_NAMES[i]}
    hx_cfg_read script "jobs.$i.script"
    [[ $script =~ ^[A-Za-z0-9._-]+\.sh$ ]] || {
        echo "  skip  $name: invalid script name"
        continue
    }
    [[ $script != backup-verify.sh ]] || continue
    # daily and weekly PostgreSQL jobs run the same backup: once is enough
    [[ -z ${SEEN[$script]:-} ]] || continue
    SEEN[$script]=1
    hx_cfg_into argv "jobs.$i.args[]"
    t0=$(hx_epoch)
    rc=0
    HX_QUIET=1 "$HX_SCRIPTS_DIR_SELF/$script" "${argv[@]}" >/dev/null 2>&1 || rc=$?
    printf '  %-5s %-24s exit %d, %ds\n' "$([[ $rc == 0 ]] && echo ok || echo FAIL)" "$name" "$rc" "$(($(hx_epoch) - t0))"
    if ((rc != 0)); then
        if ((rc == HX_EXIT_PARTIAL)); then
            ((RC != 0)) || RC=$HX_EXIT_PARTIAL
        else
            RC=$HX_EXIT_FAIL
        fi
    fi
done
rc=0
"$HX_SCRIPTS_DIR_SELF/backup-verify.sh" --all --restore-test || rc=$?
if ((rc != 0)); then
    RC=$HX_EXIT_VERIFY
fi
if ((RC == 0)); then
    echo "Full backup test passed."
else
    HX_STATUS_CAUSE="full backup test failed (exit $RC)"
    echo "Full backup test FAILED (exit $RC); see $HX_LOGS"
fi
exit "$RC"
