#!/usr/bin/env bash
# hx-backup library: the PostgreSQL data source: libpq environment, the
# verbs (dump, restore test, restore) and the dump checker. Its parts:
# postgresql-dump.sh (one database or the globals) and postgresql-restore.sh
# (the parallel stream restore).
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts
declare -gA HX_SOURCE_MODULE # defined in core.sh; this module adds its types

# -------------------------------------------------------------- postgresql ---

# hx_pg_env: export the libpq environment from the config (no password on
# argv: peer auth, or the 0600 .pgpass file via PGPASSFILE).
hx_pg_env() {
    HX_PG_ERROR=""
    if ! hx_cfg_section postgresql; then
        HX_PG_ERROR="config: postgresql is not configured on this host"
        return 1
    fi
    local -a pg=()
    hx_cfg_into pg postgresql.host postgresql.port postgresql.user postgresql.auth postgresql.pgpassFile
    PGHOST=${pg[0]}
    PGPORT=${pg[1]}
    PGUSER=${pg[2]}
    PGDATABASE=postgres
    PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-15}
    PGAPPNAME=hx-backup
    export PGHOST PGPORT PGUSER PGDATABASE PGCONNECT_TIMEOUT PGAPPNAME
    [[ -n $PGHOST ]] || unset PGHOST
    unset PGPASSWORD PGSERVICE PGSERVICEFILE
    if [[ ${pg[3]} == pgpass ]]; then
        PGPASSFILE=${pg[4]}
        if [[ -z $PGPASSFILE || ! -r $PGPASSFILE ]]; then
            HX_PG_ERROR="config: pgpass file missing or unreadable: $PGPASSFILE"
            return 1
        fi
        if [[ $(stat --format=%a -- "$PGPASSFILE") != 600 ]]; then
            HX_PG_ERROR="pgpass file must have mode 0600: $PGPASSFILE"
            return 1
        fi
        export PGPASSFILE
    else
        # peer auth: make sure no password file is consulted
        export PGPASSFILE=/nonexistent/hx-backup-peer-auth
    fi
}

hx_psql() {
    psql --no-psqlrc --quiet --tuples-only --no-align --set=ON_ERROR_STOP=1 "$@"
}

# The user tables a dump carries data for (c: pg_class, n: pg_namespace):
# ordinary tables outside the system schemas and not owned by an extension.
HX_PG_USER_TABLES="FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"

# Table list + row counts (one line of JSON), as the manifest records them.
HX_PG_COUNT_SQL="SELECT coalesce(jsonb_agg(jsonb_build_object('table', t.name, 'rows', t.rows) ORDER BY t.name), '[]'::jsonb)::text FROM (
        SELECT format('%I.%I', n.nspname, c.relname) AS name,
               (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint AS rows
        $HX_PG_USER_TABLES) t;"

hx_pg_table_counts() {
    PGDATABASE=$1 hx_psql --command="$HX_PG_COUNT_SQL"
}

# Per table with indexes, how many (one line of JSON): what content.postData
# lists, an index or key constraint a line (HX_PG_POST_DATA_SQL).
HX_PG_INDEX_COUNT_SQL="SELECT coalesce(jsonb_agg(jsonb_build_object('table', t.name, 'indexes', t.n) ORDER BY t.name), '[]'::jsonb)::text FROM (
        SELECT format('%I.%I', n.nspname, c.relname) AS name, (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) AS n
        $HX_PG_USER_TABLES) t WHERE t.n > 0;"

# hx__pg_missing_indexes MANIFEST DB ERRF: prints which tables of the restored
# database DB lack indexes the dump recorded (content.postData), with
# pg_restore's first errors from ERRF; nothing when none is missing, or for an
# artifact from before content.postData. pg_restore goes on past an index or
# constraint build that fails (a function whose body depends on search_path,
# say), and the row counts cannot show it.
hx__pg_missing_indexes() {
    local m=$1 db=$2 errf=$3 got missing
    jq --exit-status '.content.postData != null' "$m" >/dev/null || return 0
    if ! got=$(PGDATABASE=$db hx_psql --command="$HX_PG_INDEX_COUNT_SQL" 2>>"$errf"); then
        printf 'cannot list the restored indexes: %s' "$(tail -n 3 -- "$errf" | tr '\n' ' ' | cut -c 1-300)"
        return 0
    fi
    missing=$(jq --raw-output --argjson got "$got" '
        (.content.postData | group_by(.table) | map({key: .[0].table, value: length}) | from_entries) as $want
        | ($got | map({key: .table, value: .indexes}) | from_entries) as $have
        | [$want | to_entries[] | select(($have[.key] // 0) != .value) | "\(.key) has \($have[.key] // 0) of its \(.value)"]
        | join(", ")' "$m")
    [[ -n $missing ]] || return 0
    printf 'indexes or key constraints missing after the restore (%s); pg_restore said: %s' "$missing" \
        "$(grep --max-count=3 -- 'ERROR' "$errf" | tr '\n' ' ' | cut -c 1-400 || true)"
}

# HX_PG_DUMP: the run's settings (jobs, format, lock_wait, server_version,
# rundir). HX_PG_RUNNING: PID -> target of the running subshells.
declare -gA HX_PG_DUMP=()
declare -gA HX_PG_RUNNING=()

# hx_postgresql_dump: the dump verb. Every configured database (or every
# non-template one) and the globals, at most postgresql.parallelDumps at a
# time, each in its own subshell; a run folder (HX_PG_DUMP[rundir]) gets each
# success's manifest path. Sets HX_PG_FAILED (the targets that failed) and
# HX_PG_VERIFY_FAILED (1 when one failed verification; the targets that did
# in HX_PG_VERIFY_FAILED_TARGETS). Until the loop has
# run, HX_PG_PENDING lists the targets a failure must be recorded for.
hx_postgresql_dump() {
    hx_pg_env || hx_die "$HX_EXIT_USAGE" "$HX_PG_ERROR"
    local -a settings=() names=() large=()
    hx_cfg_into settings postgresql.parallelDumps postgresql.jobs postgresql.format postgresql.lockWaitTimeoutSeconds postgresql.parallelThresholdMiB
    local parallel=${settings[0]} n i
    HX_PG_DUMP=([jobs]=${settings[1]} [format]=${settings[2]} [lock_wait]=${settings[3]} [parallel_from_bytes]=$((settings[4] * 1048576)))
    # The configured databases before contacting the server, so that a
    # failure to connect is recorded for each of them.
    hx_cfg_into names 'postgresql.databases[].name'
    hx_cfg_into large 'postgresql.databases[].large'
    HX_PG_PENDING=(_globals)
    for n in "${names[@]}"; do HX_PG_PENDING+=("$(hx_slug "$n")"); done
    hx_key_load "$HX_KEY_ID" || hx_die "$HX_EXIT_USAGE" "encryption key: $HX_KEY_ERROR"

    local errf="$HX_STORAGE/.postgresql-connect.$$.partial" version
    hx_tmp_register "$errf"
    version=$(hx_psql --command='SHOW server_version' 2>"$errf") \
        || hx_die "$HX_EXIT_FAIL" "cannot connect to PostgreSQL as '$PGUSER': $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
    HX_PG_DUMP[server_version]=$version
    hx_info connected "connected to PostgreSQL $version" "server_version=$version"
    if ((${#names[@]} == 0)); then
        mapfile -d '' -t names < <(hx_psql --record-separator-zero --command='SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname')
        large=()
        for n in "${names[@]}"; do
            large+=(false)
            HX_PG_PENDING+=("$(hx_slug "$n")")
        done
    fi
    HX_PG_DATABASES=("${names[@]}")
    HX_EXTRA_TOOLS_JSON=$(jq --null-input --compact-output --arg d "$(pg_dump --version)" --arg s "$version" '{pg_dump: $d, server: $s}')
    HX_PG_DUMP[rundir]="$HX_STORAGE/.run.$$.partial"
    mkdir -m 0700 -- "${HX_PG_DUMP[rundir]}"
    hx_tmp_register "${HX_PG_DUMP[rundir]}"

    HX_PG_FAILED=()
    HX_PG_VERIFY_FAILED=0
    HX_PG_VERIFY_FAILED_TARGETS=()
    HX_PG_RUNNING=()
    hx__pg_backup_globals &
    HX_PG_RUNNING[$!]=_globals
    for i in "${!names[@]}"; do
        while ((${#HX_PG_RUNNING[@]} >= parallel)); do hx__pg_collect; done
        hx__pg_backup_database "${names[i]}" "${large[i]}" &
        HX_PG_RUNNING[$!]=$(hx_slug "${names[i]}")
    done
    while ((${#HX_PG_RUNNING[@]} > 0)); do hx__pg_collect; done
    HX_PG_PENDING=()
}


# hx__pg_collect: wait for one of HX_PG_RUNNING and record its outcome.
hx__pg_collect() {
    local done_pid="" rc=0
    wait -n -p done_pid || rc=$?
    [[ -n $done_pid && -n ${HX_PG_RUNNING[$done_pid]:-} ]] || return 0
    if ((rc != 0)); then
        HX_PG_FAILED+=("${HX_PG_RUNNING[$done_pid]}")
        if ((rc == HX_EXIT_VERIFY)); then
            HX_PG_VERIFY_FAILED=1
            HX_PG_VERIFY_FAILED_TARGETS+=("${HX_PG_RUNNING[$done_pid]}")
        fi
    fi
    unset "HX_PG_RUNNING[$done_pid]"
}

# hx_postgresql_restore_test MANIFEST ARTIFACT: restore into a scratch database,
# compare table list + row counts and each table's index count with the
# manifest, drop it.
hx_postgresql_restore_test() {
    local m=$1 a=$2 fmt scratch errf got want missing rc=0
    fmt=$(jq --raw-output '.content.format // ""' "$m")
    if [[ $fmt == sql ]]; then
        local head
        head=$(hx_open_artifact "$m" "$a" 2>/dev/null | head -c 4096 | grep --count --extended-regexp '^(--|SET|CREATE)' || true)
        [[ $head -gt 0 ]] || {
            HX_VERIFY_ERROR="globals dump does not look like SQL"
            return 1
        }
        return 0
    fi
    hx_pg_env || {
        HX_VERIFY_ERROR=$HX_PG_ERROR
        return 1
    }
    scratch="hx_restore_test_$(openssl rand -hex 6)"
    errf=$(mktemp -- "$HX_STORAGE/.restore-test.$$.tmpXXXXXX.partial")
    hx_tmp_register "$errf"
    if ! hx_psql --command="CREATE DATABASE $scratch" 2>>"$errf"; then
        HX_VERIFY_ERROR="cannot create scratch database: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
        return 1
    fi
    hx_pg_restore_into "$m" "$a" "$scratch" "$errf" || rc=1
    got=$(hx_pg_table_counts "$scratch" 2>>"$errf" | jq --compact-output --sort-keys 'sort_by(.table)') || rc=1
    want=$(jq --compact-output --sort-keys '.content.tables | sort_by(.table)' "$m")
    missing=$(hx__pg_missing_indexes "$m" "$scratch" "$errf")
    hx_psql --command="DROP DATABASE IF EXISTS $scratch" 2>>"$errf" || hx_warn restore_test "could not drop scratch database $scratch"
    if ((rc != 0)) || [[ $got != "$want" ]]; then
        HX_VERIFY_ERROR="restored tables/row counts differ from the manifest: $(diff <(jq --raw-output '.[] | "\(.table) \(.rows)"' <<<"$want") <(jq --raw-output '.[] | "\(.table) \(.rows)"' <<<"${got:-[]}") | head -n 5 | tr '\n' ' ')"
        return 1
    fi
    if [[ -n $missing ]]; then
        HX_VERIFY_ERROR=$missing
        return 1
    fi
}


# Content hash of a pg_dump custom-format stream, ignoring the dump timestamp
# in its header, so two dumps of an unchanged database hash alike.
# hx__postgresql_hash_custom SIZEFILE < stream: prints the hash, writes the size.
hx__postgresql_hash_custom() {
    local sizef=$1
    local -a hdr
    read -r -a hdr < <(dd bs=1 count=11 status=none | od -An -v -tu1)
    local prefix="" x
    for x in "${hdr[@]}"; do printf -v prefix '%s\\x%02x' "$prefix" "$x"; done
    if [[ ${#hdr[@]} -ne 11 || ${hdr[0]} != 80 || ${hdr[1]} != 71 || ${hdr[2]} != 68 || ${hdr[3]} != 77 || ${hdr[4]} != 80 ]]; then
        { printf '%b' "$prefix"; hx__count_to "$sizef.rest"; } | openssl dgst -sha256 -r
        printf '%s\n' "$(($(<"$sizef.rest") + ${#hdr[@]}))" >"$sizef"
        return
    fi
    local vmaj=${hdr[5]} vmin=${hdr[6]} isz=${hdr[8]} complen tslen
    if ((vmaj > 1 || vmin >= 15)); then complen=1; else complen=$((1 + isz)); fi
    tslen=$((7 * (1 + isz)))
    {
        printf '%b' "$prefix"
        dd bs=1 count="$complen" status=none
        dd bs=1 count="$tslen" status=none of=/dev/null
        hx__count_to "$sizef.rest"
    } | openssl dgst -sha256 -r
    printf '%s\n' "$(($(<"$sizef.rest") + 11 + complen + tslen))" >"$sizef"
}

# hx_postgresql_content_hasher FORMAT: custom and parallel dumps hash their
# TOC-independent content (see hx__postgresql_hash_custom); a plain SQL dump its bytes.
hx_postgresql_content_hasher() {
    if [[ $1 =~ ^(custom|parallel)$ ]]; then echo hx__postgresql_hash_custom; else echo hx__hash_raw; fi
}

# hx_postgresql_restore MANIFEST ARTIFACT TARGET FORCE: into database TARGET
# (default: the original one), which must not exist unless FORCE is 1; then
# the restored tables, row counts and index counts must match the manifest. The globals
# (plain SQL) go to the file TARGET. Prints the target.
hx_postgresql_restore() {
    local m=$1 a=$2 target=$3 force=$4 errf exists got want missing
    if [[ $(jq --raw-output '.content.format // ""' "$m") == sql ]]; then
        hx_restore_to_file "$m" "$a" "$target" "$force"
        printf '%s\n' "$target"
        return
    fi
    hx_pg_env || hx_die "$HX_EXIT_USAGE" "$HX_PG_ERROR"
    [[ -n $target ]] || target=$(jq --raw-output '.source.database' "$m")
    errf=$(mktemp -- "$HX_STORAGE/.restore-err.$$.tmpXXXXXX.partial")
    hx_tmp_register "$errf"
    exists=$(printf '%s\n' "SELECT count(*) FROM pg_database WHERE datname = :'d';" | hx_psql --set=d="$target" 2>>"$errf") ||
        hx_die "$HX_EXIT_FAIL" "cannot query PostgreSQL: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
    if [[ $exists != 0 ]]; then
        ((force == 1)) || hx_restore_refuse "database '$target'"
        hx_audit drop_database dropping "database=$target"
        printf '%s\n' 'DROP DATABASE :"d" WITH (FORCE);' | hx_psql --set=d="$target" 2>>"$errf" ||
            hx_die "$HX_EXIT_FAIL" "cannot drop database '$target': $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
    fi
    printf '%s\n' 'CREATE DATABASE :"d";' | hx_psql --set=d="$target" 2>>"$errf" ||
        hx_die "$HX_EXIT_FAIL" "cannot create database '$target': $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
    hx_pg_restore_into "$m" "$a" "$target" "$errf" || hx_die "$HX_EXIT_FAIL" "pg_restore failed: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
    got=$(hx_pg_table_counts "$target" | jq --compact-output --sort-keys 'sort_by(.table)')
    want=$(jq --compact-output --sort-keys '.content.tables | sort_by(.table)' "$m")
    if [[ $got != "$want" ]]; then
        hx_die "$HX_EXIT_FAIL" "restored database '$target' does not match the manifest's tables and row counts"
    fi
    missing=$(hx__pg_missing_indexes "$m" "$target" "$errf")
    [[ -z $missing ]] || hx_die "$HX_EXIT_FAIL" "restored database '$target' holds every row but not every index: $missing"
    printf '%s\n' "$target"
}

# hx_postgresql_check_dump SIZEFILE CHECKFILE < dump: the checker of a
# pg_dump -Fc stream (its content hash leaves out the TOC's timestamps).
hx_postgresql_check_dump() { hx__postgresql_hash_custom "$1"; }

HX_SOURCE_MODULE[postgresql]=postgresql
