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

# hx_pitr_init: read the PITR settings; the server is reached as postgres
# over the configured socket. A job of this module writes no host metrics:
# as postgres it cannot read the keyring, whose age they carry.
hx_pitr_init() {
    hx_cfg_section pitr || hx_die "$HX_EXIT_USAGE" "config: postgresql.pitr is not enabled on this host"
    local -a v=()
    hx_cfg_into v pitr.stanza pitr.archiveTimeoutSeconds pitr.repository pitr.dataDir pitr.scratchDir postgresql.host postgresql.port
    HX_PITR=([stanza]=${v[0]} [archive_timeout]=${v[1]} [repository]=${v[2]} [data_dir]=${v[3]} [scratch]=${v[4]})
    export PGHOST=${v[5]} PGPORT=${v[6]} PGUSER=postgres PGDATABASE=postgres
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
# errors only) goes to HX_PITR[out], and a failure's last lines become the cause.
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

HX_PITR_AS=()

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
    local -a status=()
    # The stanza's status, and each repository's message (where "unable to connect" shows).
    mapfile -t status < <(jq --raw-output '.status.code, .status.message, ([.repo[]? | select(.status.code != 0) | "repo\(.key): \(.status.message)"] | join("; "))' <<<"${HX_PITR[info]}")
    [[ ${status[0]} == 0 || ${status[0]} == 2 ]] || {
        HX_STATUS_CAUSE="pgbackrest info: stanza ${HX_PITR[stanza]} status ${status[0]}: ${status[1]}${status[2]:+ (${status[2]})}"
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
    local -a b=()
    mapfile -t b < <(jq --raw-output --arg k "$kind" \
        '[.backup[] | select(.type == $k)] | last | .label, .timestamp.start, .timestamp.stop, .info.repository.delta, .info.size' <<<"${HX_PITR[info]}")
    [[ ${b[0]:-null} != null ]] || {
        HX_STATUS_CAUSE="pgbackrest info lists no $kind backup after the backup"
        return 1
    }
    now=$(hx_epoch)
    hx_info backup_ok "pgBackRest $kind backup ${b[0]}" "type=pitr" "target=$target" "label=${b[0]}" \
        "stored_bytes=${b[3]}" "database_bytes=${b[4]}" "seconds=$((now - start))"
    hx_metrics pitr "$target" backup_last_run_status=1 "backup_last_success_timestamp=$now" "backup_last_attempt_timestamp=$now" \
        "backup_duration_seconds=$((b[2] - b[1]))" "backup_size_bytes=${b[3]}" "backup_database_size_bytes=${b[4]}"
    hx_failure_cause pitr "$target" ""
}

# hx_pitr_status: the archiver's state (pg_stat_archiver and the WAL waiting
# in archive_status), the restart state, and the recovery window from the
# repository; all as the `archive` target's metrics.
hx_pitr_status() {
    local start now
    start=$(hx_epoch)
    local -a a=()
    # archived, failed counts; last archived and failed times; age of the oldest .ready segment; restart pending.
    mapfile -t a < <(hx_psql --field-separator=$'\n' --command="
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
    ((${#a[@]} == 6)) || {
        HX_STATUS_CAUSE="unexpected pg_stat_archiver reading: ${a[*]}"
        return 1
    }
    local failing=0
    ((a[3] > a[2])) && failing=1
    hx_pitr_restart_state "${a[5]}"
    if ((failing)); then
        hx_warn archive_failing "WAL archiving is failing: the last archive attempt failed" "stanza=${HX_PITR[stanza]}" "failed_count=${a[1]}"
    fi
    # The archiver's state needs no repository: written first, so an outage of the repository still shows as failing.
    hx_metrics pitr archive \
        "backup_wal_archive_lag_seconds=${a[4]}" "backup_wal_archive_failing=$failing" "backup_wal_archive_failures_total=${a[1]}" \
        "backup_wal_last_archived_timestamp=${a[2]}" "backup_wal_archive_timeout_seconds=${HX_PITR[archive_timeout]}"
    # A sample must be quick: pgBackRest's default I/O timeout retries an unreachable repository for minutes.
    hx_pitr_info --io-timeout=10 || return
    local -a w=()
    mapfile -t w < <(jq --raw-output '[.backup[]?.timestamp.stop] | (min // 0), (max // 0)' <<<"${HX_PITR[info]}")
    local oldest=${w[0]} newest=${w[1]}
    # The newest point is the last archived WAL when it is newer than the newest backup's end.
    ((a[2] > newest)) && newest=${a[2]}
    local window=0
    ((oldest > 0)) && window=$((newest - oldest))
    now=$(hx_epoch)
    hx_info pitr_status "WAL archive status" "stanza=${HX_PITR[stanza]}" "archived_count=${a[0]}" "failed_count=${a[1]}" \
        "lag_seconds=${a[4]}" "window_seconds=$window" "restart_pending=${a[5]}"
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

# ---------------------------------------------------------------- restore ---

# hx_pitr_server_running DIR: a postmaster runs from DIR.
hx_pitr_server_running() {
    local pid
    [[ -r $1/postmaster.pid ]] || return 1
    read -r pid <"$1/postmaster.pid" || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# hx_pitr_restore DIR TIME FORCE: restore the cluster into DIR, to TIME (a
# timestamp PostgreSQL reads) or, with TIME empty, to the latest archived
# point. A new directory gets archiving off, so a copy never pushes WAL into
# the repository; only the live data directory (FORCE, server stopped) keeps
# it. Sets HX_PITR[restored_to] to what was asked.
hx_pitr_restore() {
    local dir=$1 time=$2 force=$3 real live
    [[ $dir == /* ]] || hx_die "$HX_EXIT_USAGE" "--target must be an absolute directory (got '$dir')"
    real=$(realpath --canonicalize-missing -- "$dir")
    live=$(realpath --canonicalize-missing -- "${HX_PITR[data_dir]}")
    local -a opts=()
    if [[ $real == "$live" ]]; then
        ((force)) || hx_die "$HX_EXIT_USAGE" "$dir is the live data directory: stop PostgreSQL and pass --force to restore over it"
        hx_pitr_server_running "$real" && hx_die "$HX_EXIT_USAGE" "PostgreSQL is running from $dir: stop it first (nothing was changed)"
        opts+=(--delta)
    else
        if [[ -e $real && -n $(ls -A -- "$real" 2>/dev/null) ]]; then
            ((force)) || hx_die "$HX_EXIT_USAGE" "$dir is not empty: choose a new directory, or pass --force to overwrite it"
            hx_pitr_server_running "$real" && hx_die "$HX_EXIT_USAGE" "a PostgreSQL server is running from $dir: stop it first (nothing was changed)"
            opts+=(--delta)
        fi
        opts+=(--archive-mode=off)
    fi
    if ((EUID == 0)); then
        install -d -o postgres -g postgres -m 0700 -- "$real"
    else
        install -d -m 0700 -- "$real"
    fi
    if [[ -n $time ]]; then
        opts+=(--type=time "--target=$time" --target-action=promote)
        HX_PITR[restored_to]=$time
    else
        HX_PITR[restored_to]=latest
    fi
    hx_info restore_start "pgBackRest restore" "type=pitr" "stanza=${HX_PITR[stanza]}" "target_dir=$real" "to=${HX_PITR[restored_to]}"
    hx_pgbackrest --pg1-path="$real" "${opts[@]}" restore || return
    [[ $real == "$live" ]] || hx_pitr_copy_config "$real"
    hx_audit restore ok "type=pitr" "stanza=${HX_PITR[stanza]}" "target_dir=$real" "to=${HX_PITR[restored_to]}"
}

# hx_pitr_copy_config DIR: a restored copy whose cluster keeps its config
# outside the data directory (Debian's /etc/postgresql/<version>/<cluster>)
# gets a minimal postgresql.conf, pg_hba.conf (local peer only) and
# pg_ident.conf, so it starts; postgresql.auto.conf (ALTER SYSTEM) came with
# the restore. The operator copies their own in before serving from it.
hx_pitr_copy_config() {
    local dir=$1 file
    [[ ! -e $dir/postgresql.conf ]] || return 0
    printf '# Written by hx-backup: this cluster keeps its configuration outside the data directory.\n' >"$dir/postgresql.conf"
    printf '# Written by hx-backup: local connections only, as the same OS user.\nlocal all all peer\n' >"$dir/pg_hba.conf"
    : >"$dir/pg_ident.conf"
    for file in postgresql.conf pg_hba.conf pg_ident.conf; do
        chmod 0600 -- "$dir/$file"
        ((EUID != 0)) || chown postgres:postgres -- "$dir/$file"
    done
    hx_warn restore_config "the cluster's configuration is outside its data directory: wrote a minimal postgresql.conf and pg_hba.conf (local peer only) into the copy; put your own there before serving from it" "target_dir=$dir"
}

# hx_pitr_bindir DIR: the server binaries for the cluster in DIR.
hx_pitr_bindir() {
    local version bindir
    version=$(<"$1/PG_VERSION")
    for bindir in "/usr/lib/postgresql/$version/bin" "/usr/pgsql-$version/bin"; do
        [[ -x $bindir/pg_ctl ]] && printf '%s' "$bindir" && return
    done
    bindir=$(dirname -- "$(command -v pg_ctl)") && printf '%s' "$bindir"
}

# hx_pitr_restore_test: the weekly proof that the repository restores to
# now. A canary row (hx_backup.pitr_canary in database postgres) is written
# on the live server and its WAL archived; the latest point is restored into
# the scratch directory and started on a socket in it, with no TCP and no
# archiving, and the canary must be there. The scratch copy is removed after.
hx_pitr_restore_test() {
    local start canary scratch="${HX_PITR[scratch]}/restore-test" sock bindir seen rto
    start=$(hx_epoch)
    canary="$(hx_now)-$$-$RANDOM"
    hx_psql --command="CREATE SCHEMA IF NOT EXISTS hx_backup;
        CREATE TABLE IF NOT EXISTS hx_backup.pitr_canary (token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
        DELETE FROM hx_backup.pitr_canary;
        INSERT INTO hx_backup.pitr_canary (token) VALUES ('$canary');" >/dev/null || {
        HX_STATUS_CAUSE="cannot write the PITR canary on $PGHOST:$PGPORT"
        return 1
    }
    # Close the canary's WAL segment and wait until the archive has it.
    local segment archived deadline=$(($(hx_epoch) + 10 * HX_PITR[archive_timeout] + 60))
    segment=$(hx_psql --command="SELECT pg_walfile_name(pg_switch_wal())")
    until archived=$(hx_psql --command="SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") && [[ $archived > "$segment" || $archived == "$segment" ]]; do
        (($(hx_epoch) < deadline)) || {
            HX_STATUS_CAUSE="WAL $segment was not archived in time (archive last had '$archived')"
            return 1
        }
        sleep 1
    done
    rm -rf -- "$scratch"
    # Removed by hx_pitr_on_exit, after its server is stopped.
    HX_PITR[scratch_dir]=$scratch
    local restore_start
    restore_start=$(hx_epoch)
    hx_pitr_restore "$scratch" "" 0 || return
    bindir=$(hx_pitr_bindir "$scratch")
    sock="$scratch/.socket"
    mkdir -m 0700 -- "$sock"
    # Only a socket in its own directory: the port names the socket file and takes no TCP port.
    local port=$PGPORT
    "${HX_PITR_AS[@]}" "$bindir/pg_ctl" start --pgdata="$scratch" --wait --timeout=600 --silent --log="$scratch/restore-test.log" \
        --options="-c port=$port -c listen_addresses= -c unix_socket_directories=$sock -c archive_mode=off" >/dev/null || {
        HX_STATUS_CAUSE="the restored cluster did not start: $(tail -n 3 -- "$scratch/restore-test.log" 2>/dev/null | tr '\n' ' ')"
        return 1
    }
    HX_PITR[scratch_running]=$scratch
    local i
    for ((i = 0; i < 600; i++)); do
        [[ $(PGHOST=$sock PGPORT=$port hx_psql --command="SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && break
        sleep 1
    done
    rto=$(($(hx_epoch) - restore_start))
    seen=$(PGHOST=$sock PGPORT=$port hx_psql --command="SELECT count(*) FROM hx_backup.pitr_canary WHERE token = '$canary'" 2>/dev/null || echo 0)
    hx_pitr_stop_scratch
    if [[ $seen != 1 ]]; then
        HX_STATUS_CAUSE="restore test: the restored cluster lacks the canary written before the restore (recovery did not reach the latest archived WAL)"
        return 1
    fi
    HX_PITR[rto]=$rto
    hx_info restore_test_ok "restored the latest point and found the canary" "type=pitr" "stanza=${HX_PITR[stanza]}" "restore_seconds=$rto"
}

# Stops the restore test's scratch server, if one was started, and removes its directory.
hx_pitr_stop_scratch() {
    if [[ -n ${HX_PITR[scratch_running]:-} ]]; then
        "${HX_PITR_AS[@]}" "$(hx_pitr_bindir "${HX_PITR[scratch_running]}")/pg_ctl" stop --pgdata="${HX_PITR[scratch_running]}" --mode=immediate --wait --silent >/dev/null 2>&1 || true
        HX_PITR[scratch_running]=""
    fi
    if [[ -n ${HX_PITR[scratch_dir]:-} ]]; then
        rm -rf -- "${HX_PITR[scratch_dir]}"
        HX_PITR[scratch_dir]=""
    fi
}

# Exit hook (HX_ON_EXIT) of the verify job: a killed or failed run leaves no
# scratch server running, then its failure is recorded.
# shellcheck disable=SC2317  # invoked through HX_ON_EXIT
hx_pitr_on_exit() {
    hx_pitr_stop_scratch
    hx_single_target_on_exit "$1"
}

# hx_pitr_verify: `pgbackrest verify` (every backup and WAL file in the
# repository against its checksums), then the restore test; both as the
# `verify` target's metrics.
hx_pitr_verify() {
    local start now
    start=$(hx_epoch)
    # verify exits 0 when it finds an invalid file; its report's status says error.
    if ! hx_pgbackrest --output=text verify || grep --quiet '^status: error' <<<"${HX_PITR[out]}"; then
        if [[ -z $HX_STATUS_CAUSE ]]; then
            HX_STATUS_CAUSE="pgbackrest verify found invalid files: $(grep --extended-regexp 'archiveId|backup:|invalid' <<<"${HX_PITR[out]}" | tr --squeeze-repeats ' \n' ' ')"
        fi
        hx_metrics pitr verify backup_verification_status=0 "backup_last_attempt_timestamp=$(hx_epoch)"
        return 1
    fi
    hx_metrics pitr verify backup_verification_status=1
    if ! hx_pitr_restore_test; then
        hx_metrics pitr verify backup_restore_test_status=0 "backup_last_attempt_timestamp=$(hx_epoch)"
        return 1
    fi
    now=$(hx_epoch)
    hx_metrics pitr verify backup_last_run_status=1 "backup_last_success_timestamp=$now" "backup_last_attempt_timestamp=$now" \
        "backup_duration_seconds=$((now - start))" backup_restore_test_status=1 "backup_pitr_restore_seconds=${HX_PITR[rto]}"
    hx_failure_cause pitr verify ""
}
