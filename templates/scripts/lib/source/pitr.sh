#!/usr/bin/env bash
# hx-backup library: the PITR data source (pgBackRest): full and differential
# backups, the archive status and the recovery window.
# Sourced by hx-backup-lib.sh; never run. Its jobs run as postgres.
#
# Its backups live in pgBackRest's repository, not in the storage directory:
# pgBackRest encrypts, checksums, expires and stores them itself, so PITR is
# not an artifact type (HX_SOURCE_MODULE) for the core's sync, retention and
# verify. This module runs pgBackRest and turns its state into metrics.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

declare -gA HX_INTERVAL_OF HX_JITTER_OF # defined in config.sh

# HX_PITR: stanza, archive_timeout and repository, from backup.json.
declare -gA HX_PITR=()
# HX_PITR_AS: how pgBackRest is run (through runuser when the caller is root).
HX_PITR_AS=()

# hx_pitr_init: read the PITR settings; the server is reached as postgres
# over the configured socket. A job of this module writes no host metrics:
# as postgres it cannot read the keyring, whose age they carry.
hx_pitr_init() {
    hx_cfg_section pitr || hx_die "$HX_EXIT_USAGE" "config: postgresql.pitr is not enabled on this host"
    local -a settings=()
    hx_cfg_into settings pitr.stanza pitr.archiveTimeoutSeconds pitr.repository pitr.dataDir pitr.scratchDir postgresql.host postgresql.port
    HX_PITR=([stanza]=${settings[0]} [archive_timeout]=${settings[1]} [repository]=${settings[2]} [data_dir]=${settings[3]} [scratch]=${settings[4]})
    export PGHOST=${settings[5]} PGPORT=${settings[6]} PGUSER=postgres PGDATABASE=postgres
    # An operator's restore runs as root; pgBackRest's config is postgres's alone.
    HX_PITR_AS=()
    if ((EUID == 0)); then
        HX_PITR_AS=(runuser -u postgres --)
    fi
    HX_HOST_METRICS=""
    # This job's own schedule facts: the full and differential jobs share a type.
    local i
    for i in "${!HX_JOB_NAMES[@]}"; do
        if [[ ${HX_JOB_NAMES[i]} == "$HX_JOB" ]]; then
            HX_INTERVAL_OF[pitr]=${HX_JOB_INTERVALS[i]}
            HX_JITTER_OF[pitr]=${HX_JOB_JITTERS[i]}
        fi
    done
}

# hx_pgbackrest ARGS...: pgBackRest on this stanza; its console output (warnings and
# errors only) goes to HX_PITR[out], and a failure's whole message becomes the cause.
hx_pgbackrest() {
    local rc=0 arg command=""
    for arg in "$@"; do
        [[ $arg == -* ]] || command=$arg
    done
    HX_PITR[out]=$(cd / && "${HX_PITR_AS[@]}" pgbackrest --stanza="${HX_PITR[stanza]}" "$@" 2>&1) || rc=$?
    if ((rc != 0)); then
        # pgBackRest's whole message (the ERROR line, the causes under it, its HINTs), on one line.
        HX_STATUS_CAUSE="pgbackrest $command failed (exit $rc): $(tr --squeeze-repeats ' \n' ' ' <<<"${HX_PITR[out]}" | cut --characters=1-800)"
    fi
    return "$rc"
}

# hx_pitr_info [ARGS...]: the stanza's `pgbackrest info` JSON into
# HX_PITR[info]. pgBackRest exits 0 even when the stanza is broken: its
# status says so, and anything but ok (0) or "no valid backups" (2, a new
# repository) is a failure with pgBackRest's message.
hx_pitr_info() {
    hx_pgbackrest --output=json "$@" info || return
    HX_PITR[info]=$(jq --compact-output --arg s "${HX_PITR[stanza]}" '.[] | select(.name == $s)' <<<"${HX_PITR[out]}")
    [[ -n ${HX_PITR[info]} ]] || {
        HX_STATUS_CAUSE="pgbackrest info does not list stanza ${HX_PITR[stanza]}"
        return 1
    }
    local -a info_status=()
    # The stanza's status, and each repository's message (where "unable to connect" shows).
    mapfile -t info_status < <(jq --raw-output '.status.code, .status.message, ([.repo[]? | select(.status.code != 0) | "repo\(.key): \(.status.message)"] | join("; "))' <<<"${HX_PITR[info]}")
    [[ ${info_status[0]} == 0 || ${info_status[0]} == 2 ]] || {
        HX_STATUS_CAUSE="pgbackrest info: stanza ${HX_PITR[stanza]} status ${info_status[0]}: ${info_status[1]}${info_status[2]:+ (${info_status[2]})}"
        return 1
    }
}

# hx_pitr_backup KIND TARGET: a pgBackRest backup (full or diff), then its
# size and duration from `pgbackrest info`, and the recovery window.
hx_pitr_backup() {
    local kind=$1 target=$2 start now
    start=$(hx_epoch)
    hx_info backup_start "pgBackRest $kind backup" "type=pitr" "target=$target" "stanza=${HX_PITR[stanza]}" "repository=${HX_PITR[repository]}"
    hx_pgbackrest --type="$kind" backup || return
    hx_pitr_info || return
    local -a backup=()
    mapfile -t backup < <(jq --raw-output --arg k "$kind" \
        '[.backup[] | select(.type == $k)] | last | .label, .timestamp.start, .timestamp.stop, .info.repository.delta, .info.size' <<<"${HX_PITR[info]}")
    [[ ${backup[0]:-null} != null ]] || {
        HX_STATUS_CAUSE="pgbackrest info lists no $kind backup after the backup"
        return 1
    }
    now=$(hx_epoch)
    hx_info backup_ok "pgBackRest $kind backup ${backup[0]}" "type=pitr" "target=$target" "label=${backup[0]}" \
        "stored_bytes=${backup[3]}" "database_bytes=${backup[4]}" "seconds=$((now - start))"
    hx_metrics pitr "$target" backup_last_run_status=1 "backup_last_success_timestamp=$now" "backup_last_attempt_timestamp=$now" \
        "backup_duration_seconds=$((backup[2] - backup[1]))" "backup_size_bytes=${backup[3]}" "backup_database_size_bytes=${backup[4]}"
    hx_failure_cause pitr "$target" ""
}

# hx_pitr_status: the archiver's state (pg_stat_archiver and the WAL waiting
# in archive_status), the restart state, and the recovery window from the
# repository; all as the `archive` target's metrics.
hx_pitr_status() {
    local start now
    start=$(hx_epoch)
    local -a archiver=()
    # archived, failed counts; last archived and failed times; age of the oldest .ready segment; restart pending.
    mapfile -t archiver < <(hx_psql --field-separator=$'\n' --command="
        SELECT archived_count, failed_count,
               coalesce(extract(epoch FROM last_archived_time)::bigint, 0),
               coalesce(extract(epoch FROM last_failed_time)::bigint, 0),
               (SELECT coalesce(extract(epoch FROM now() - min(modification))::bigint, 0) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'),
               (current_setting('archive_mode') <> 'on' OR current_setting('wal_level') = 'minimal'
                 OR EXISTS (SELECT 1 FROM pg_settings WHERE name IN ('archive_mode', 'wal_level') AND pending_restart))::int
        FROM pg_stat_archiver") || {
        HX_STATUS_CAUSE="cannot read pg_stat_archiver at $PGHOST:$PGPORT"
        return 1
    }
    ((${#archiver[@]} == 6)) || {
        HX_STATUS_CAUSE="unexpected pg_stat_archiver reading: ${archiver[*]}"
        return 1
    }
    local failing=0
    ((archiver[3] > archiver[2])) && failing=1
    hx_pitr_restart_state "${archiver[5]}"
    if ((failing)); then
        hx_warn archive_failing "WAL archiving is failing: the last archive attempt failed" "stanza=${HX_PITR[stanza]}" "failed_count=${archiver[1]}"
    fi
    # The archiver's state needs no repository: written first, so an outage of the repository still shows as failing.
    hx_metrics pitr archive \
        "backup_wal_archive_lag_seconds=${archiver[4]}" "backup_wal_archive_failing=$failing" "backup_wal_archive_failures_total=${archiver[1]}" \
        "backup_wal_last_archived_timestamp=${archiver[2]}" "backup_wal_archive_timeout_seconds=${HX_PITR[archive_timeout]}"
    # A sample must be quick: pgBackRest's default I/O timeout retries an unreachable repository for minutes.
    hx_pitr_info --io-timeout=10 || return
    local -a points=()
    mapfile -t points < <(jq --raw-output '[.backup[]?.timestamp.stop] | (min // 0), (max // 0)' <<<"${HX_PITR[info]}")
    local oldest=${points[0]} newest=${points[1]}
    # The newest point is the last archived WAL when it is newer than the newest backup's end.
    ((archiver[2] > newest)) && newest=${archiver[2]}
    local window=0
    ((oldest > 0)) && window=$((newest - oldest))
    now=$(hx_epoch)
    hx_info pitr_status "WAL archive status" "stanza=${HX_PITR[stanza]}" "archived_count=${archiver[0]}" "failed_count=${archiver[1]}" \
        "lag_seconds=${archiver[4]}" "window_seconds=$window" "restart_pending=${archiver[5]}"
    hx_metrics pitr archive backup_last_run_status=1 "backup_last_success_timestamp=$now" "backup_last_attempt_timestamp=$now" \
        "backup_duration_seconds=$((now - start))" \
        "backup_pitr_window_seconds=$window" "backup_pitr_oldest_restorable_timestamp=$oldest" "backup_pitr_newest_restorable_timestamp=$newest"
    hx_failure_cause pitr archive ""
}

# hx_pitr_restart_state PENDING: the PitrRestartPending series. The deploy
# step writes the exact restart command it found; this keeps it while the
# restart is pending and drops it after.
hx_pitr_restart_state() {
    local pending=$1 file="$HX_TEXTFILE/hx_backup_pitr_restart.prom" info="" tmp
    [[ -d $HX_TEXTFILE && -w $HX_TEXTFILE ]] || return 0
    if ((pending)) && [[ -r $file ]]; then
        info=$(grep --no-messages '^backup_pitr_restart_command_info{' -- "$file" || true)
    fi
    tmp=$(mktemp -- "$HX_TEXTFILE/.hx_backup_pitr_restart.prom.$$.tmpXXXXXX.partial") || return 0
    {
        printf '# TYPE backup_pitr_restart_pending gauge\nbackup_pitr_restart_pending{type="pitr",target="archive"} %s\n' "$pending"
        [[ -z $info ]] || printf '# TYPE backup_pitr_restart_command_info gauge\n%s\n' "$info"
    } >"$tmp"
    chmod 0644 -- "$tmp"
    mv -f -- "$tmp" "$file"
}
