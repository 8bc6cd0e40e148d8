#!/usr/bin/env bash
# hx-backup library: the PITR data source's restores: into a directory (to a
# time or the latest point), the weekly restore test with a canary row, and
# the verification job that runs both checks. See lib/source/pitr.sh.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_PITR # defined in pitr.sh

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
    # Something to act on for a copy an operator restored; a restore test's
    # scratch copy (HX_PITR[scratch_dir]) is thrown away.
    local level=warning scratch=${HX_PITR[scratch_dir]:-}
    [[ -z $scratch || $(realpath --canonicalize-missing -- "$scratch") != "$dir" ]] || level=info
    hx_log "$level" restore_config "the cluster's configuration is outside its data directory: wrote a minimal postgresql.conf and pg_hba.conf (local peer only) into the copy; put your own there before serving from it" "target_dir=$dir"
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
    local canary scratch="${HX_PITR[scratch]}/restore-test" sock bindir seen rto
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
