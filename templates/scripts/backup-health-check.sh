#!/usr/bin/env bash
# Human summary of this host's backups; exits non-zero on any problem.
#
# Checks: config and key; for every job in the config, every source of its
# type: last run ok, last success within the job's max interval, verification
# ok, size inside the band, remote sync ok (when enabled), restore test ok
# (when one ran); for PITR, WAL archiving (failing, lag, a pending restart);
# storage free space.
#
# Usage: backup-health-check.sh
# Exit codes: 0 healthy, 1 problems found, 2 config error.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=health
HX_QUIET=1
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

hx_init_common health-check
PROBLEMS=0
problem() {
    PROBLEMS=$((PROBLEMS + 1))
    printf '  PROBLEM  %s\n' "$*"
}
ok() { printf '  ok       %s\n' "$*"; }

# metric_value FILE NAME
metric_value() {
    local line
    line=$(grep --max-count=1 "^$2{" "$1" 2>/dev/null) || return 0
    printf '%s' "${line##* }"
}

# check_archiving FILE: PITR's WAL archiving, from the archive status job's metrics.
check_archiving() {
    local failing lag timeout pending command
    failing=$(metric_value "$1" backup_wal_archive_failing)
    lag=$(metric_value "$1" backup_wal_archive_lag_seconds)
    timeout=$(metric_value "$1" backup_wal_archive_timeout_seconds)
    [[ $failing != 1 ]] || problem "pitr/archive: WAL archiving is failing (pg_stat_archiver; PostgreSQL keeps the WAL until it works)"
    if [[ -n $lag && -n $timeout ]] && ((lag > 3 * timeout)); then
        problem "pitr/archive: the oldest WAL waiting to be archived is ${lag}s old (archive_timeout ${timeout}s)"
    fi
    pending=$(metric_value "$HX_TEXTFILE/hx_backup_pitr_restart.prom" backup_pitr_restart_pending)
    if [[ $pending == 1 ]]; then
        command=$(sed -n 's/^backup_pitr_restart_command_info{.*command="\(.*\)"} 1$/\1/p' "$HX_TEXTFILE/hx_backup_pitr_restart.prom" 2>/dev/null)
        problem "pitr/archive: archiving starts after a PostgreSQL restart${command:+; run: $command}"
    fi
}

NOW=$(hx_epoch)
echo "hx-backup health on ${HX_HOST} (stack ${HX_STACK:-?}) at $(hx_now)"
echo "Config: $HX_CONFIG_FILE"
# Every key of the keyring: older ones are what restores of older backups need.
key_ids=()
hx_cfg_into key_ids 'encryption.keyIds[]'
for key_id in "${key_ids[@]}"; do
    if hx_key_load "$key_id"; then
        ok "encryption key '$key_id' present$([[ $key_id == "$HX_KEY_ID" ]] && echo ' (current)')"
    else
        problem "encryption key: $HX_KEY_ERROR"
    fi
done

REMOTE=false
hx_cfg_true remote.enabled && REMOTE=true
if ((${#HX_JOB_NAMES[@]} == 0)); then
    problem "no jobs configured"
fi
schedule=""
jtarget=""
for i in "${!HX_JOB_NAMES[@]}"; do
    jname=${HX_JOB_NAMES[i]}
    jtype=${HX_JOB_TYPES[i]}
    jmax=${HX_JOB_INTERVALS[i]}
    hx_cfg_read schedule "jobs.$i.description"
    hx_cfg_read jtarget "jobs.$i.target"
    echo "Job $jname ($jtype, $schedule, max interval ${jmax}s):"
    shopt -s nullglob
    # A job with one target (PITR's) owns that file only; the others, every source of their type.
    if [[ -n $jtarget ]]; then
        files=("$HX_TEXTFILE"/hx_backup-"$jtype"-"$jtarget".prom)
    else
        files=("$HX_TEXTFILE"/hx_backup-"$jtype"-*.prom)
    fi
    shopt -u nullglob
    if ((${#files[@]} == 0)); then
        problem "$jname: no metrics yet (never ran?)"
        continue
    fi
    for f in "${files[@]}"; do
        t=$(basename -- "$f" .prom)
        t=${t#hx_backup-"$jtype"-}
        last_ok=$(metric_value "$f" backup_last_success_timestamp)
        run_status=$(metric_value "$f" backup_last_run_status)
        verify=$(metric_value "$f" backup_verification_status)
        size=$(metric_value "$f" backup_size_check_status)
        sync=$(metric_value "$f" backup_remote_sync_status)
        rtest=$(metric_value "$f" backup_restore_test_status)
        label="$jtype/$t"
        if [[ $run_status == 0 ]]; then
            problem "$label: last run failed (see $HX_LOGS)"
        fi
        if [[ -z $last_ok ]]; then
            [[ $t == _config ]] || problem "$label: never succeeded"
        else
            age=$((NOW - ${last_ok%.*}))
            if ((age > jmax)); then
                problem "$label: last success $((age / 3600))h ago (older than ${jmax}s)"
            else
                ok "$label: last success $((age / 60)) min ago"
            fi
        fi
        [[ $verify != 0 ]] || problem "$label: verification failed"
        [[ $size != 0 ]] || problem "$label: size outside the expected band"
        [[ $rtest != 0 ]] || problem "$label: restore test failed"
        if [[ $label == pitr/archive ]]; then
            check_archiving "$f"
        fi
        if [[ $REMOTE == true && $jtype != verification ]]; then
            [[ $sync != 0 ]] || problem "$label: remote sync failed"
        fi
    done
done

alert_pct=""
if [[ -d $HX_STORAGE ]]; then
    hx_cfg_read alert_pct storageAlertPercent
    read -r avail pct < <(df --output=avail,pcent -- "$HX_STORAGE" | tail -n 1)
    pct=${pct%\%}
    if ((pct >= alert_pct)); then
        problem "storage $HX_STORAGE is ${pct}% full (StorageFull at ${alert_pct}%)"
    else
        ok "storage $HX_STORAGE: ${pct}% used, $((avail / 1024)) MiB free"
    fi
else
    problem "storage directory $HX_STORAGE missing"
fi

if ((PROBLEMS > 0)); then
    echo "UNHEALTHY: $PROBLEMS problem(s)"
    HX_STATUS_CAUSE="$PROBLEMS problem(s)"
    exit 1
fi
echo "HEALTHY"
