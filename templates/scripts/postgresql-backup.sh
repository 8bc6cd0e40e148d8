#!/usr/bin/env bash
# PostgreSQL backup: every configured database (or every non-template one),
# plus globals (roles, tablespaces), streamed through the hx-backup pipeline.
#
# Usage: postgresql-backup.sh daily|weekly|test
#   daily, weekly  back up, verify, apply retention, sync to S3
#   test           check connectivity, dump each database to a throwaway
#                  artifact, verify and list it, remove it, print a report
# Exit codes: see hx-backup-lib.sh.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=postgresql
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

MODE=${1:-daily}
case $MODE in
    daily | weekly | test) ;;
    *)
        echo "usage: $HX_SCRIPT_NAME daily|weekly|test" >&2
        exit "$HX_EXIT_USAGE"
        ;;
esac
[[ $# -le 1 ]] || {
    echo "usage: $HX_SCRIPT_NAME daily|weekly|test" >&2
    exit "$HX_EXIT_USAGE"
}

HX_PENDING_TARGETS=()
# shellcheck disable=SC2317  # invoked indirectly (trap or hx_store)
pg_on_exit() {
    local rc=$1 t
    if ((rc != 0 && rc != HX_EXIT_LOCKED)) && [[ $MODE != test ]]; then
        for t in "${HX_PENDING_TARGETS[@]}"; do
            hx_metrics postgresql "$t" backup_last_run_status=0 "backup_last_attempt_timestamp=$(hx_epoch)" || true
        done
    fi
}
HX_ON_EXIT=pg_on_exit

hx_init "postgresql-$MODE"
hx_lock postgresql-backup

hx_cfg_section postgresql || hx_die "$HX_EXIT_USAGE" "config: postgresql is not configured on this host"

# ------------------------------------------------------------ connection ---
hx_pg_env || hx_die "$HX_EXIT_USAGE" "$HX_PG_ERROR"
# LOCK_WAIT: pg_dump gives up instead of waiting forever behind an exclusive table lock.
settings=()
hx_cfg_into settings postgresql.parallelDumps postgresql.jobs postgresql.format postgresql.lockWaitTimeoutSeconds
PARALLEL=${settings[0]}
JOBS=${settings[1]}
FORMAT=${settings[2]}
LOCK_WAIT=${settings[3]}

# Configured databases (name + large flag) before contacting the server, so
# that a failure to connect is reported for each of them.
DB_NAMES=()
DB_LARGE=()
hx_cfg_into DB_NAMES 'postgresql.databases[].name'
hx_cfg_into DB_LARGE 'postgresql.databases[].large'
for n in "${DB_NAMES[@]}"; do HX_PENDING_TARGETS+=("$(hx_slug "$n")"); done
HX_PENDING_TARGETS+=(_globals)

hx_key_load "$HX_KEY_ID" || hx_die "$HX_EXIT_USAGE" "encryption key: $HX_KEY_ERROR"

ERRF="$HX_STORAGE/.postgresql-connect.$$.partial"
hx_tmp_register "$ERRF"
if ! SERVER_VERSION=$(hx_psql --command='SHOW server_version' 2>"$ERRF"); then
    hx_die "$HX_EXIT_FAIL" "cannot connect to PostgreSQL as '$PGUSER': $(tr '\n' ' ' <"$ERRF" | cut -c 1-300)"
fi
hx_info connected "connected to PostgreSQL $SERVER_VERSION" "server_version=$SERVER_VERSION"

if ((${#DB_NAMES[@]} == 0)); then
    mapfile -d '' -t DB_NAMES < <(hx_psql --record-separator-zero --command='SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname')
    DB_LARGE=()
    for n in "${DB_NAMES[@]}"; do
        DB_LARGE+=(false)
        HX_PENDING_TARGETS+=("$(hx_slug "$n")")
    done
fi

HX_EXTRA_TOOLS_JSON=$(jq --null-input --compact-output --arg d "$(pg_dump --version)" --arg s "$SERVER_VERSION" '{pg_dump: $d, server: $s}')

# ---------------------------------------------------------------- dumping ---

# Per-database work, run in a subshell. Exits non-zero on failure; its EXIT
# trap writes the failure metrics and the cause.
DB_TARGET=""
# shellcheck disable=SC2317  # invoked indirectly (trap or hx_store)
db_exit() {
    local rc=$?
    trap - ERR
    set +e
    hx_tmp_cleanup
    if ((rc != 0)); then
        hx_error backup_failed "backup of $DB_TARGET failed: ${HX_STATUS_CAUSE:-unknown cause}" "type=postgresql" "target=$DB_TARGET" "exit_code=$rc"
        if [[ $MODE != test ]]; then
            hx_metrics postgresql "$DB_TARGET" backup_last_run_status=0 "backup_last_attempt_timestamp=$DB_START" \
                "backup_verification_status=$([[ $rc == "$HX_EXIT_VERIFY" ]] && echo 0 || echo "${DB_PREV_VERIFY:-1}")"
        fi
    fi
    exit "$rc"
}

# Hold a REPEATABLE READ transaction that exports its snapshot, count rows in
# it, and keep it open while pg_dump uses the same snapshot.
snapshot_open() {
    local db=$1 errf=$2
    coproc SNAP { PGDATABASE=$db hx_psql 2>>"$errf"; }
    printf '%s\n' "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;" "SELECT pg_export_snapshot();" 1>&"${SNAP[1]}"
    SNAPSHOT=""
    read -r -t 120 SNAPSHOT 0<&"${SNAP[0]}" || true
    [[ $SNAPSHOT =~ ^[0-9A-Fa-f-]+$ ]] || {
        HX_STATUS_CAUSE="could not export a snapshot from database: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
        return 1
    }
    # The rows are counted in the snapshot session while pg_dump streams;
    # snapshot_counts reads the result.
    printf '%s\n' "$HX_PG_COUNT_SQL" 1>&"${SNAP[1]}"
}

snapshot_counts() {
    local errf=$1
    TABLES_JSON=""
    read -r -t 3600 TABLES_JSON 0<&"${SNAP[0]}" || true
    jq --exit-status 'type == "array"' <<<"$TABLES_JSON" >/dev/null 2>&1 || {
        HX_STATUS_CAUSE="could not count rows: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
        return 1
    }
}

snapshot_close() {
    if [[ -n ${SNAP_PID:-} ]]; then
        printf '%s\n' "COMMIT;" '\q' 1>&"${SNAP[1]}" 2>/dev/null || true
        wait "$SNAP_PID" 2>/dev/null || true
    fi
}

# shellcheck disable=SC2317  # invoked indirectly (trap or hx_store)
dump_custom() {
    local db=$1 errf=$2
    PGDATABASE=$db pg_dump --format=custom --compress=0 --snapshot="$SNAPSHOT" --lock-wait-timeout="${LOCK_WAIT}s" --no-password 2>>"$errf"
}

# Tables of the snapshot, largest first, each with an exact pg_dump --table
# pattern: every character inside double quotes, so a name is only data.
PARTS_SQL="SELECT coalesce(jsonb_agg(jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
            'pattern', '\"' || replace(n.nspname, '\"', '\"\"') || '\".\"' || replace(c.relname, '\"', '\"\"') || '\"',
            'bytes', pg_table_size(c.oid)) ORDER BY pg_table_size(c.oid) DESC, n.nspname, c.relname), '[]'::jsonb)::text
        $HX_PG_USER_TABLES;"

# Split the tables into at most JOBS data parts of about equal size: the
# largest tables that together hold 99 % of the bytes (at most 2,000 of them,
# which bounds pg_dump's argv); the rest stay in the schema part.
plan_parts() {
    local errf=$1 tables
    printf '%s\n' "$PARTS_SQL" 1>&"${SNAP[1]}"
    tables=""
    read -r -t 3600 tables 0<&"${SNAP[0]}" || true
    jq --exit-status 'type == "array"' <<<"$tables" >/dev/null 2>&1 || {
        HX_STATUS_CAUSE="could not list tables for the parallel dump: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
        return 1
    }
    PARTS_PLAN=$(jq --compact-output --argjson jobs "$JOBS" '
        (map(.bytes) | add // 0) as $total
        | reduce .[] as $t ({sum: 0, picked: []};
            if $t.bytes > 0 and (.picked | length) < 2000 and (.sum < $total * 0.99 or $total == 0)
            then .sum += $t.bytes | .picked += [$t] else . end)
        | .picked
        | reduce .[] as $t ([range($jobs)] | map({bytes: 0, tables: []});
            (to_entries | min_by(.value.bytes) | .key) as $i | .[$i].bytes += $t.bytes | .[$i].tables += [$t])
        | map(select(.tables | length > 0))' <<<"$tables")
}

# dump_part DB ERRF PLAN_INDEX: the schema part (PLAN_INDEX -1: everything but
# the data of the tables in data parts) or one data part (its tables' data).
# shellcheck disable=SC2317  # invoked through hx_pipe_to
dump_part() {
    local db=$1 errf=$2 index=$3 p
    local -a patterns=() selection=()
    if ((index < 0)); then
        mapfile -d '' -t patterns < <(jq --join-output '.[].tables[].pattern + "\u0000"' <<<"$PARTS_PLAN")
        for p in "${patterns[@]}"; do selection+=("--exclude-table-data=$p"); done
    else
        mapfile -d '' -t patterns < <(jq --join-output --argjson i "$index" '.[$i].tables[].pattern + "\u0000"' <<<"$PARTS_PLAN")
        selection=(--data-only)
        for p in "${patterns[@]}"; do selection+=("--table=$p"); done
    fi
    PGDATABASE=$db pg_dump --format=custom --compress=0 --snapshot="$SNAPSHOT" --lock-wait-timeout="${LOCK_WAIT}s" --no-password "${selection[@]}" 2>>"$errf"
}

# toc_check PART_FILE ERRF: decrypt one part and read its TOC; prints
# "<header ok 0/1> <entries> <table data entries>".
toc_check() {
    local listing header_ok=0
    listing=$(set +o pipefail; hx_decrypt "$HX_PBKDF2_ITER" <"$1" | hx_decompress "${HX_OUT[method]}" 2>/dev/null | pg_restore --list 2>>"$2" || true)
    grep --quiet --extended-regexp '^;[[:space:]]+Format: CUSTOM' <<<"$listing" && header_ok=1
    listing=$(grep --invert-match '^;' <<<"$listing" || true)
    printf '%s %s %s\n' "$header_ok" "$(grep --count . <<<"$listing" || true)" "$(grep --count ' TABLE DATA ' <<<"$listing" || true)"
}

# Parallel dump of one database without plaintext on disk: one pg_dump per
# part, all in the exported snapshot, each streamed through the pipeline into
# an encrypted part; the parts are packed into one artifact. Sets
# PARTS_CONTENT_JSON and the structure counts.
dump_parallel() {
    local db=$1 target=$2 errf=$3
    plan_parts "$errf" || return 1
    hx_artifact_begin postgresql "$target" "$target" "dump.@CEXT@.enc.tar"
    mkdir -- "${HX_OUT[work]}/parts"
    local nparts i name
    local -a names=() pids=()
    nparts=$(jq 'length' <<<"$PARTS_PLAN")
    for ((i = -1; i < nparts; i++)); do
        if ((i < 0)); then name="schema.dump.${HX_OUT[cext]}.enc"; else name="data-$((i + 1)).dump.${HX_OUT[cext]}.enc"; fi
        names+=("$name")
        mkdir -- "${HX_OUT[work]}/$name.d"
        (
            hx_pipe_to "${HX_OUT[work]}/parts/$name" "${HX_OUT[work]}/$name.d" hx_postgresql_check_dump -- dump_part "$db" "$errf" "$i" \
                || { printf '%s\n' "$HX_STATUS_CAUSE" >"${HX_OUT[work]}/$name.d/cause"; exit 1; }
        ) &
        pids+=($!)
    done
    local failed=""
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || failed+="${names[i]}: $(cat "${HX_OUT[work]}/${names[i]}.d/cause" 2>/dev/null || echo failed); "
    done
    if [[ -n $failed ]]; then
        HX_STATUS_CAUSE="parallel dump failed: $failed"
        return 1
    fi
    # Each part must parse; each data part must hold every table given to it.
    local header entries data want
    TOC_ENTRIES=0
    DATA_ENTRIES=0
    HEADER_OK=1
    for i in "${!names[@]}"; do
        read -r header entries data < <(toc_check "${HX_OUT[work]}/parts/${names[i]}" "$errf")
        want=0
        ((i == 0)) || want=$(jq --argjson i "$((i - 1))" '.[$i].tables | length' <<<"$PARTS_PLAN")
        if ((header == 0)) || ((data < want)); then HEADER_OK=0; fi
        TOC_ENTRIES=$((TOC_ENTRIES + entries))
        DATA_ENTRIES=$((DATA_ENTRIES + data))
    done
    hx_pack_parts "${names[@]}" || return 1
    PARTS_CONTENT_JSON=$(jq --null-input --compact-output --argjson plan "$PARTS_PLAN" --argjson parts "${HX_OUT[parts_json]}" '
        $parts | to_entries | map(.value + (if .key == 0 then {role: "schema", tables: []}
            else {role: "data", tables: ($plan[.key - 1].tables | map(.table))} end))')
}

backup_database() {
    local db=$1 large=$2
    DB_TARGET=$(hx_slug "$db")
    DB_START=$(hx_epoch)
    HX_TMP_PATHS=()
    HX_STATUS_CAUSE=""
    trap db_exit EXIT
    local target=$DB_TARGET
    [[ $MODE == test ]] || hx_metrics postgresql "$target" "backup_last_attempt_timestamp=$DB_START"
    mkdir -p -- "$HX_STORAGE/postgresql/$target"
    local errf="$HX_STORAGE/postgresql/$target/.pgdump-stderr.$BASHPID.partial"
    hx_tmp_register "$errf"
    : >"$errf"
    HX_SOURCE_ERROR_FILE=$errf
    hx_info dump_start "dumping database" "type=postgresql" "target=$target" "database=$db" "large=$large"
    snapshot_open "$db" "$errf"
    local fmt=custom header_ok=0 toc data_entries ntables parts_json=null
    [[ $large == true || $FORMAT == parallel ]] && fmt=parallel
    if [[ $fmt == custom ]]; then
        hx_store postgresql "$target" "$target" dump hx_postgresql_check_dump -- dump_custom "$db" "$errf"
        snapshot_counts "$errf"
        snapshot_close
        # Structure: the TOC must list the expected objects.
        read -r header_ok toc data_entries < <(toc_check "${HX_OUT[partial]}" "$errf")
    else
        snapshot_counts "$errf"
        dump_parallel "$db" "$target" "$errf"
        snapshot_close
        header_ok=$HEADER_OK
        toc=$TOC_ENTRIES
        data_entries=$DATA_ENTRIES
        parts_json=$PARTS_CONTENT_JSON
    fi
    ntables=$(jq 'length' <<<"$TABLES_JSON")
    # The archive must parse, and list a data entry for every table counted.
    if ((header_ok == 0)) || ((data_entries < ntables)); then
        HX_STATUS_CAUSE="structure check failed: archive header ok=$header_ok, $toc entries, $data_entries table data entries for $ntables tables"
        exit "$HX_EXIT_VERIFY"
    fi
    local source_json content_json
    source_json=$(jq --null-input --compact-output --arg db "$db" --arg host "${PGHOST:-}" --arg port "$PGPORT" '{database: $db, host: $host, port: $port}')
    content_json=$(jq --null-input --compact-output --arg fmt "$fmt" --argjson tables "$TABLES_JSON" --argjson toc "$toc" --argjson parts "$parts_json" \
        '{format: $fmt, tables: $tables, tocEntries: $toc, consistentCounts: true} + (if $parts == null then {} else {parts: $parts} end)')
    hx_commit_artifact postgresql "$target" "$source_json" "$content_json"
    local now size_status
    now=$(hx_epoch)
    size_status=$(hx_size_check "${HX_OUT[dir]}" "${HX_OUT[plain_size]}")
    if [[ $size_status == 0 ]]; then
        hx_warn size_check "backup size ${HX_OUT[plain_size]} is outside the configured band around the median ${HX_SIZE_MEDIAN:-?}" "type=postgresql" "target=$target"
    fi
    hx_info backup_ok "database backed up and verified" "type=postgresql" "target=$target" "manifest=${HX_OUT[manifest]}" \
        "plain_bytes=${HX_OUT[plain_size]}" "stored_bytes=${HX_OUT[stored_size]}" "dedup_saved_bytes=${HX_OUT[dedup_saved]}" "seconds=$((now - DB_START))"
    printf '%s\n' "${HX_OUT[manifest]}" >"$RUNDIR/$target.manifest"
    if [[ $MODE != test ]]; then
        hx_metrics postgresql "$target" backup_last_run_status=1 "backup_last_success_timestamp=$now" \
            "backup_duration_seconds=$((now - DB_START))" "backup_size_bytes=${HX_OUT[stored_size]}" \
            backup_verification_status=1 "backup_dedup_saved_bytes=${HX_OUT[dedup_saved]}" \
            "backup_size_check_status=$size_status" "backup_storage_usage_bytes=$(hx_storage_usage "${HX_OUT[dir]}")"
    fi
}

# shellcheck disable=SC2317  # invoked indirectly (trap or hx_store)
dump_globals() {
    pg_dumpall --globals-only --no-role-passwords --no-password 2>>"$1"
}

backup_globals() {
    DB_TARGET=_globals
    DB_START=$(hx_epoch)
    HX_TMP_PATHS=()
    HX_STATUS_CAUSE=""
    trap db_exit EXIT
    [[ $MODE == test ]] || hx_metrics postgresql _globals "backup_last_attempt_timestamp=$DB_START"
    mkdir -p -- "$HX_STORAGE/postgresql/_globals"
    local errf="$HX_STORAGE/postgresql/_globals/.stderr.$BASHPID.partial"
    hx_tmp_register "$errf"
    : >"$errf"
    HX_SOURCE_ERROR_FILE=$errf
    hx_store postgresql _globals globals sql hx_check_raw -- dump_globals "$errf"
    hx_commit_artifact postgresql _globals '{"globals":true}' '{"format":"sql"}'
    local now
    now=$(hx_epoch)
    printf '%s\n' "${HX_OUT[manifest]}" >"$RUNDIR/_globals.manifest"
    if [[ $MODE != test ]]; then
        hx_metrics postgresql _globals backup_last_run_status=1 "backup_last_success_timestamp=$now" \
            "backup_duration_seconds=$((now - DB_START))" "backup_size_bytes=${HX_OUT[stored_size]}" \
            backup_verification_status=1 "backup_dedup_saved_bytes=${HX_OUT[dedup_saved]}" \
            "backup_storage_usage_bytes=$(hx_storage_usage "${HX_OUT[dir]}")"
    fi
}

# ------------------------------------------------------------------ main ---

if [[ $MODE == test ]]; then
    # Throwaway storage inside the backup directory, removed at exit.
    TEST_STORAGE="$HX_STORAGE/.selftest.$$.partial"
    mkdir -m 0700 -- "$TEST_STORAGE"
    hx_tmp_register "$TEST_STORAGE"
    HX_STORAGE=$TEST_STORAGE
fi
RUNDIR="$HX_STORAGE/.run.$$.partial"
mkdir -m 0700 -- "$RUNDIR"
hx_tmp_register "$RUNDIR"

declare -A PID_TARGET=()
FAILED=()
VERIFY_FAILED=0
run_limited() {
    local done_pid rc
    while (($(jobs -rp | wc -l) >= PARALLEL)); do
        rc=0
        wait -n -p done_pid || rc=$?
        collect "$done_pid" "$rc"
    done
}
collect() {
    local pid=$1 rc=$2
    [[ -n $pid && -n ${PID_TARGET[$pid]:-} ]] || return 0
    if ((rc != 0)); then
        FAILED+=("${PID_TARGET[$pid]}")
        ((rc == HX_EXIT_VERIFY)) && VERIFY_FAILED=1
    fi
    unset "PID_TARGET[$pid]"
}

backup_globals &
PID_TARGET[$!]=_globals
for i in "${!DB_NAMES[@]}"; do
    run_limited
    backup_database "${DB_NAMES[i]}" "${DB_LARGE[i]}" &
    PID_TARGET[$!]=$(hx_slug "${DB_NAMES[i]}")
done
while ((${#PID_TARGET[@]} > 0)); do
    rc=0
    done_pid=""
    wait -n -p done_pid || rc=$?
    collect "$done_pid" "$rc"
done
HX_PENDING_TARGETS=()

if [[ $MODE == test ]]; then
    echo "PostgreSQL backup self-test (server $SERVER_VERSION, user $PGUSER)"
    for i in "${!DB_NAMES[@]}"; do
        t=$(hx_slug "${DB_NAMES[i]}")
        if [[ -f $RUNDIR/$t.manifest ]]; then
            m=$(cat "$RUNDIR/$t.manifest")
            printf '  %-30s OK   %s bytes stored, %s tables\n' "${DB_NAMES[i]}" "$(jq -r '.sizes.stored' "$m")" "$(jq -r '.content.tables | length' "$m")"
        else
            printf '  %-30s FAILED (see %s)\n' "${DB_NAMES[i]}" "${HX_LOG_FILE:-the log}"
        fi
    done
    if [[ -f $RUNDIR/_globals.manifest ]]; then echo "  globals                        OK"; else echo "  globals                        FAILED"; fi
    if ((${#FAILED[@]} > 0)); then
        HX_STATUS_CAUSE="self-test failed for: ${FAILED[*]}"
        exit "$HX_EXIT_FAIL"
    fi
    echo "Self-test passed; throwaway artifacts removed."
    exit 0
fi

RC=0
if ((${#FAILED[@]} > 0)); then
    HX_STATUS_CAUSE="backup failed for: ${FAILED[*]}"
    RC=$HX_EXIT_FAIL
    ((VERIFY_FAILED == 0)) || RC=$HX_EXIT_VERIFY
fi

hx_finish_job postgresql "$RC" || RC=$?
if ((RC != 0)) && [[ -z $HX_STATUS_CAUSE ]]; then HX_STATUS_CAUSE="remote sync failed"; fi
exit "$RC"
