#!/usr/bin/env bash
# Check that node_exporter serves this host's backup metrics, that the
# textfile collector reads them without errors, and print which jobs are
# stale (no success within their max interval).
#
# Usage: test-monitoring.sh [METRICS_URL]
#   default URL: .monitoring.nodeExporterUrl from the config, else
#   http://127.0.0.1:9100/metrics
# Exit codes: 0 ok, 1 a problem (unreachable, scrape error, missing or stale
# metrics), 2 config error.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=monitoring-test
HX_QUIET=1
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

hx_init_common test-monitoring
URL=""
hx_cfg_read URL monitoring.nodeExporterUrl
URL=${1:-$URL}
PROBLEMS=0
problem() {
    PROBLEMS=$((PROBLEMS + 1))
    printf '  PROBLEM  %s\n' "$*"
}
echo "Scraping $URL"
if ! BODY=$(curl --silent --show-error --fail --max-time 10 -- "$URL" 2>&1); then
    problem "node_exporter not reachable: $BODY"
    hx_die 1 "node_exporter not reachable at $URL"
fi
if grep --quiet '^node_textfile_scrape_error 1' <<<"$BODY"; then
    problem "node_exporter reports a textfile scrape error (node_textfile_scrape_error 1)"
fi
NOW=$(hx_epoch)
# value NAME TYPE TARGET: from the scraped body (label order as served).
value() {
    awk -v n="$1" -v ty="type=\"$2\"" -v ta="target=\"$3\"" '
        index($0, n "{") == 1 && index($0, ty) && index($0, ta) { v = $NF } END { if (v != "") print v }' <<<"$BODY"
}
STALE=()
for i in "${!HX_JOB_NAMES[@]}"; do
    jname=${HX_JOB_NAMES[i]}
    jtype=${HX_JOB_TYPES[i]}
    jmax=${HX_JOB_INTERVALS[i]}
    mapfile -t targets < <(grep --only-matching "^backup_last_attempt_timestamp{[^}]*type=\"$jtype\"[^}]*}" <<<"$BODY" | sed -n 's/.*target="\([^"]*\)".*/\1/p' | sort -u)
    if ((${#targets[@]} == 0)); then
        problem "$jname: no backup metrics served for type $jtype"
        STALE+=("$jname")
        continue
    fi
    for t in "${targets[@]}"; do
        [[ $t != _config ]] || continue
        last=$(value backup_last_success_timestamp "$jtype" "$t")
        if [[ -z $last ]]; then
            problem "$jname ($jtype/$t): never succeeded"
            STALE+=("$jname:$t")
            continue
        fi
        last=$(awk '{ printf "%d", $1 }' <<<"$last")
        age=$((NOW - last))
        if ((age > jmax)); then
            problem "$jname ($jtype/$t): stale, last success ${age}s ago (max ${jmax}s)"
            STALE+=("$jname:$t")
        else
            printf '  ok       %s (%s/%s): last success %ss ago\n' "$jname" "$jtype" "$t" "$age"
        fi
    done
done
for m in backup_last_success_timestamp backup_duration_seconds backup_size_bytes backup_verification_status backup_storage_usage_bytes; do
    grep --quiet "^$m{" <<<"$BODY" || problem "metric $m is not served"
done
if ((${#STALE[@]} > 0)); then
    echo "Stale jobs: ${STALE[*]}"
fi
if ((PROBLEMS > 0)); then
    HX_STATUS_CAUSE="$PROBLEMS monitoring problem(s)"
    echo "Monitoring check FAILED: $PROBLEMS problem(s)"
    exit 1
fi
echo "Monitoring OK"
