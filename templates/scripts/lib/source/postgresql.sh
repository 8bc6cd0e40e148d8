#!/usr/bin/env bash
# hx-backup library: the PostgreSQL data source: libpq environment, parallel stream restore, restore test and restore
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

# hx__pg_restore_stream MANIFEST ARTIFACT PART DB ERRF PG_RESTORE_ARGS...:
# pg_restore from one decrypted stream. Ignorable errors (e.g. ownership of
# extensions) are logged; the row-count check that follows decides. A pass
# that needs no data ends after the TOC and closes the stream early.
hx__pg_restore_stream() {
    local m=$1 a=$2 part=$3 db=$4 errf=$5
    shift 5
    (
        set +o pipefail
        hx_open_part "$m" "$a" "$part" 2>/dev/null |
            PGDATABASE=$db pg_restore --no-owner --no-privileges --no-password --dbname="$db" "$@" 2>>"$errf"
    ) || true
}

# hx__pg_split_toc MANIFEST ARTIFACT PART DIR JOBS SPLIT_DATA: write
# pg_restore --use-list files into DIR from the stream's TOC:
# d.K (TABLE DATA) when SPLIT_DATA is 1: contiguous runs of the archive,
# balanced by the manifest's row counts, so each stream stops reading where
# its run ends and only the last reads the whole archive (sequences and large
# objects go to that last one); p.K (indexes and primary/unique constraints,
# round-robin); rest (everything else: foreign keys, triggers, INDEX ATTACH).
hx__pg_split_toc() {
    local m=$1 a=$2 part=$3 dir=$4 jobs=$5 split_data=$6
    (
        set +o pipefail
        hx_open_part "$m" "$a" "$part" 2>/dev/null | pg_restore --list >"$dir/toc" 2>/dev/null
    ) || true
    grep --quiet '^[0-9]' "$dir/toc" || return 1
    jq --raw-output '.content.tables[]? | "\(.table)\t\(.rows)"' "$m" >"$dir/rows"
    awk -v jobs="$jobs" -v dir="$dir" -v split_data="$split_data" -F'\t' '
        FNR == NR { rows[$1] = $2; next }
        !/^[0-9]/ { next }
        {
            line[++n] = $0
            kind[n] = "rest"
            if (split_data && $0 ~ /^[0-9]+; [0-9]+ [0-9]+ TABLE DATA /) {
                c = split($0, f, " "); key = f[c - 2] "." f[c - 1]
                weight[n] = (key in rows) ? rows[key] + 1 : 1
                total += weight[n]
                kind[n] = "data"
            } else if (split_data && $0 ~ /^[0-9]+; [0-9]+ [0-9]+ (SEQUENCE SET|BLOBS|BLOB|LARGE OBJECT) /) {
                kind[n] = "tail"
            } else if ($0 ~ /^[0-9]+; [0-9]+ [0-9]+ (INDEX|CONSTRAINT) /) {
                kind[n] = "post"
            }
        }
        END {
            target = total / jobs
            s = 0
            for (i = 1; i <= n; i++) {
                if (kind[i] != "data") continue
                if (s < jobs - 1 && load > 0 && load + weight[i] / 2 > target) { s++; load = 0 }
                load += weight[i]
                stream[i] = s
            }
            for (i = 1; i <= n; i++) {
                if (kind[i] == "data") print line[i] > (dir "/d." stream[i])
                else if (kind[i] == "tail") print line[i] > (dir "/d." s)
                else if (kind[i] == "post") print line[i] > (dir "/p." (np++ % jobs))
                else print line[i] > (dir "/rest")
            }
        }' "$dir/rows" "$dir/toc"
}

# hx__pg_run_lists MANIFEST ARTIFACT PART DB ERRF DIR PREFIX JOBS: restore the
# DIR/PREFIX.K lists concurrently, one stream each.
hx__pg_run_lists() {
    local m=$1 a=$2 part=$3 db=$4 errf=$5 dir=$6 prefix=$7 jobs=$8 k
    local -a pids=()
    for ((k = 0; k < jobs; k++)); do
        [[ -s $dir/$prefix.$k ]] || continue
        hx__pg_restore_stream "$m" "$a" "$part" "$db" "$errf" --use-list="$dir/$prefix.$k" &
        pids+=($!)
    done
    for k in "${pids[@]}"; do wait "$k" || true; done
}

# hx_pg_restore_into MANIFEST ARTIFACT DBNAME ERRFILE: restore a verified
# PostgreSQL artifact into an existing (empty) database, in parallel and
# without plaintext on disk. pg_restore -j refuses a stream, so the work is
# split by TOC entry: pre-data once; then the table data in JOBS concurrent
# streams (one per part for a parallel dump); then indexes and key
# constraints in JOBS streams; then the rest of post-data.
hx_pg_restore_into() {
    local m=$1 a=$2 db=$3 errf=$4 fmt jobs dir schema="" part
    fmt=$(jq --raw-output '.content.format // "custom"' "$m")
    hx_cfg_read jobs postgresql.jobs
    dir=$(mktemp --directory -- "$HX_STORAGE/.restore-lists.XXXXXX.partial")
    hx_tmp_register "$dir"
    case $fmt in
        custom)
            hx__pg_split_toc "$m" "$a" "" "$dir" "$jobs" 1 || return 1
            hx__pg_restore_stream "$m" "$a" "" "$db" "$errf" --section=pre-data
            hx__pg_run_lists "$m" "$a" "" "$db" "$errf" "$dir" d "$jobs"
            ;;
        parallel)
            schema=$(jq --raw-output '.content.parts[]? | select(.role == "schema") | .name' "$m")
            [[ -n $schema ]] || return 1
            hx__pg_split_toc "$m" "$a" "$schema" "$dir" "$jobs" 0 || return 1
            hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=pre-data
            local -a pids=()
            hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=data &
            pids+=($!)
            while IFS= read -r part; do
                while (($(jobs -rp | wc -l) >= jobs + 1)); do wait -n || true; done
                hx__pg_restore_stream "$m" "$a" "$part" "$db" "$errf" --data-only &
                pids+=($!)
            done < <(jq --raw-output '.content.parts[]? | select(.role == "data") | .name' "$m")
            for part in "${pids[@]}"; do wait "$part" || true; done
            ;;
        *) return 1 ;;
    esac
    hx__pg_run_lists "$m" "$a" "$schema" "$db" "$errf" "$dir" p "$jobs"
    if [[ -s $dir/rest ]]; then
        hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=post-data --use-list="$dir/rest"
    fi
    rm -rf -- "$dir"
}

# hx_postgresql_restore_test MANIFEST ARTIFACT: restore into a scratch database,
# compare table list + row counts with the manifest, drop it.
hx_postgresql_restore_test() {
    local m=$1 a=$2 fmt scratch errf got want rc=0
    fmt=$(jq --raw-output '.content.format // ""' "$m")
    if [[ $fmt == sql ]]; then
        local head
        head=$(hx_open_artifact "$m" "$a" | head -c 4096 | grep --count --extended-regexp '^(--|SET|CREATE)' || true)
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
    errf=$(mktemp -- "$HX_STORAGE/.restore-test.XXXXXX.partial")
    hx_tmp_register "$errf"
    if ! hx_psql --command="CREATE DATABASE $scratch" 2>>"$errf"; then
        HX_VERIFY_ERROR="cannot create scratch database: $(tr '\n' ' ' <"$errf" | cut -c 1-300)"
        return 1
    fi
    hx_pg_restore_into "$m" "$a" "$scratch" "$errf" || rc=1
    got=$(hx_pg_table_counts "$scratch" 2>>"$errf" | jq --compact-output --sort-keys 'sort_by(.table)') || rc=1
    want=$(jq --compact-output --sort-keys '.content.tables | sort_by(.table)' "$m")
    hx_psql --command="DROP DATABASE IF EXISTS $scratch" 2>>"$errf" || hx_warn restore_test "could not drop scratch database $scratch"
    if ((rc != 0)) || [[ $got != "$want" ]]; then
        HX_VERIFY_ERROR="restored tables/row counts differ from the manifest: $(diff <(jq --raw-output '.[] | "\(.table) \(.rows)"' <<<"$want") <(jq --raw-output '.[] | "\(.table) \(.rows)"' <<<"${got:-[]}") | head -n 5 | tr '\n' ' ')"
        return 1
    fi
}


# hx_postgresql_content_hasher FORMAT: custom and parallel dumps hash their
# TOC-independent content (see hx__hash_pgcustom); a plain SQL dump its bytes.
hx_postgresql_content_hasher() {
    if [[ $1 =~ ^(custom|parallel)$ ]]; then echo hx__hash_pgcustom; else echo hx__hash_raw; fi
}

# hx_postgresql_restore MANIFEST ARTIFACT TARGET FORCE: into database TARGET
# (default: the original one), which must not exist unless FORCE is 1; then
# the restored tables and row counts must match the manifest. The globals
# (plain SQL) go to the file TARGET. Prints the target.
hx_postgresql_restore() {
    local m=$1 a=$2 target=$3 force=$4 errf exists got want
    if [[ $(jq --raw-output '.content.format // ""' "$m") == sql ]]; then
        hx_restore_to_file "$m" "$a" "$target" "$force"
        printf '%s\n' "$target"
        return
    fi
    hx_pg_env || hx_die "$HX_EXIT_USAGE" "$HX_PG_ERROR"
    [[ -n $target ]] || target=$(jq --raw-output '.source.database' "$m")
    errf=$(mktemp -- "$HX_STORAGE/.restore-err.XXXXXX.partial")
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
    hx_pg_restore_into "$m" "$a" "$target" "$errf" || hx_die "$HX_EXIT_FAIL" "pg_restore failed"
    got=$(hx_pg_table_counts "$target" | jq --compact-output --sort-keys 'sort_by(.table)')
    want=$(jq --compact-output --sort-keys '.content.tables | sort_by(.table)' "$m")
    if [[ $got != "$want" ]]; then
        hx_die "$HX_EXIT_FAIL" "restored database '$target' does not match the manifest's tables and row counts"
    fi
    printf '%s\n' "$target"
}

# hx_postgresql_check_dump SIZEFILE CHECKFILE < dump: the checker of a
# pg_dump -Fc stream (its content hash leaves out the TOC's timestamps).
hx_postgresql_check_dump() { hx__hash_pgcustom "$1"; }

HX_SOURCE_MODULE[postgresql]=postgresql
