#!/usr/bin/env bash
# hx-backup library: the PostgreSQL data source, part: one database's dump
# (custom or parallel format, in one exported snapshot, with its row counts
# and structure check) and the globals' dump, for the dump verb.
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

declare -gA HX_PG_DUMP # defined in postgresql.sh
# HX_PG_DB: one database's state, in its own subshell (target, start, errf,
# snapshot, sizes, tables, post, plan, parts, toc, data, header, and part_* of the
# last hx__pg_toc_check).
declare -gA HX_PG_DB=()

# Per-database exit trap: the failure's metrics and cause.
# shellcheck disable=SC2317  # invoked through trap
hx__pg_db_exit() {
    local rc=$?
    trap - ERR
    set +e
    hx_tmp_cleanup
    ((rc == 0)) || hx_backup_failed postgresql "${HX_PG_DB[target]}" "$rc"
    exit "$rc"
}

# hx__pg_db_begin TARGET ERRNAME: the start of one target's subshell: its
# trap, attempt metric, folder and stderr file (HX_PG_DB[errf]).
hx__pg_db_begin() {
    local target=$1
    HX_PG_DB=([target]=$target [start]=$(hx_epoch))
    hx_tmp_scope
    HX_STATUS_CAUSE=""
    trap hx__pg_db_exit EXIT
    hx_metrics postgresql "$target" "backup_last_attempt_timestamp=${HX_PG_DB[start]}"
    mkdir -p -- "$HX_STORAGE/postgresql/$target"
    HX_PG_DB[errf]="$HX_STORAGE/postgresql/$target/.$2.$BASHPID.partial"
    hx_tmp_register "${HX_PG_DB[errf]}"
    : >"${HX_PG_DB[errf]}"
    HX_SOURCE_ERROR_FILE=${HX_PG_DB[errf]}
}

hx__pg_stderr() { tr '\n' ' ' <"${HX_PG_DB[errf]}" | cut -c 1-300; }

# Hold a REPEATABLE READ transaction that exports its snapshot, and keep it
# open while pg_dump uses the same snapshot; the rows are counted in it while
# pg_dump streams (hx__pg_snapshot_counts reads the result).
hx__pg_snapshot_open() {
    local db=$1 snapshot=""
    coproc HX_PG_SNAP { PGDATABASE=$db hx_psql 2>>"${HX_PG_DB[errf]}"; }
    printf '%s\n' "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;" "SELECT pg_export_snapshot();" "SELECT pg_database_size(current_database());" 1>&"${HX_PG_SNAP[1]}"
    read -r -t 120 snapshot 0<&"${HX_PG_SNAP[0]}" || true
    [[ $snapshot =~ ^[0-9A-Fa-f-]+$ ]] || {
        HX_STATUS_CAUSE="could not export a snapshot from database: $(hx__pg_stderr)"
        return 1
    }
    HX_PG_DB[snapshot]=$snapshot
    read -r -t 120 'HX_PG_DB[bytes]' 0<&"${HX_PG_SNAP[0]}" || true
    [[ ${HX_PG_DB[bytes]} =~ ^[0-9]+$ ]] || {
        HX_STATUS_CAUSE="could not read the database size: $(hx__pg_stderr)"
        return 1
    }
    printf '%s\n' "$HX_PG_COUNT_SQL" 1>&"${HX_PG_SNAP[1]}"
}

# hx__pg_snapshot_read KEY WHAT: one line of JSON (an array) from the
# snapshot session into HX_PG_DB[KEY].
hx__pg_snapshot_read() {
    local line=""
    read -r -t 3600 line 0<&"${HX_PG_SNAP[0]}" || true
    jq --exit-status 'type == "array"' <<<"$line" >/dev/null 2>&1 || {
        HX_STATUS_CAUSE="could not $2: $(hx__pg_stderr)"
        return 1
    }
    HX_PG_DB[$1]=$line
}

hx__pg_snapshot_close() {
    if [[ -n ${HX_PG_SNAP_PID:-} ]]; then
        printf '%s\n' "COMMIT;" '\q' 1>&"${HX_PG_SNAP[1]}" 2>/dev/null || true
        wait "$HX_PG_SNAP_PID" 2>/dev/null || true
    fi
}

# hx__pg_dump DB [PG_DUMP_ARGS...]: pg_dump -Fc, uncompressed, in the
# snapshot. The lock wait makes it give up instead of waiting forever behind
# an exclusive table lock.
# shellcheck disable=SC2317  # invoked through hx_store and hx_pipe_to
hx__pg_dump() {
    local db=$1
    shift
    PGDATABASE=$db pg_dump --format=custom --compress=0 --snapshot="${HX_PG_DB[snapshot]}" \
        --lock-wait-timeout="${HX_PG_DUMP[lock_wait]}s" --no-password "$@" 2>>"${HX_PG_DB[errf]}"
}

# Tables of the snapshot, largest first, each with an exact pg_dump --table
# pattern: every character inside double quotes, so a name is only data.
HX_PG_PARTS_SQL="SELECT coalesce(jsonb_agg(jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
            'pattern', '\"' || replace(n.nspname, '\"', '\"\"') || '\".\"' || replace(c.relname, '\"', '\"\"') || '\"',
            'bytes', pg_table_size(c.oid)) ORDER BY pg_table_size(c.oid) DESC, n.nspname, c.relname), '[]'::jsonb)::text
        $HX_PG_USER_TABLES;"

# The indexes of the dumped tables, for the restore's schedule of its index
# and key-constraint builds (hx__pg_split_toc): each keyed as its pg_restore
# --list line names it ("<catalog oid> <object oid>": the constraint for a
# primary key, unique or exclusion constraint, else the index), with its
# table (name and oid, as TABLE DATA lists it) and the bytes of the table and
# the index in this snapshot.
HX_PG_POST_DATA_SQL="SELECT coalesce(jsonb_agg(jsonb_build_object(
            'toc', CASE WHEN con.oid IS NULL THEN format('%s %s', 'pg_class'::regclass::oid, i.indexrelid) ELSE format('%s %s', 'pg_constraint'::regclass::oid, con.oid) END,
            'table', t.name, 'tableOid', t.oid::bigint, 'tableBytes', pg_relation_size(t.oid), 'indexBytes', pg_relation_size(i.indexrelid))
            ORDER BY t.name, i.indexrelid), '[]'::jsonb)::text
        FROM (SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name $HX_PG_USER_TABLES) t
        JOIN pg_index i ON i.indrelid = t.oid
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = t.oid AND con.contype IN ('p', 'u', 'x');"

# hx__pg_post_data_sizes: HX_PG_DB[post] from the snapshot (see HX_PG_POST_DATA_SQL).
hx__pg_post_data_sizes() {
    printf '%s\n' "$HX_PG_POST_DATA_SQL" 1>&"${HX_PG_SNAP[1]}"
    hx__pg_snapshot_read post "list the index sizes"
}

# Split the tables into at most JOBS data parts of about equal size: the
# largest tables that together hold 99 % of the bytes (at most 2,000 of them,
# which bounds pg_dump's argv); the rest stay in the schema part.
hx__pg_plan_parts() {
    printf '%s\n' "$HX_PG_PARTS_SQL" 1>&"${HX_PG_SNAP[1]}"
    hx__pg_snapshot_read sizes "list tables for the parallel dump" || return 1
    HX_PG_DB[plan]=$(jq --compact-output --argjson jobs "${HX_PG_DUMP[jobs]}" '
        (map(.bytes) | add // 0) as $total
        | reduce .[] as $t ({sum: 0, picked: []};
            if $t.bytes > 0 and (.picked | length) < 2000 and (.sum < $total * 0.99 or $total == 0)
            then .sum += $t.bytes | .picked += [$t] else . end)
        | .picked
        | reduce .[] as $t ([range($jobs)] | map({bytes: 0, tables: []});
            (to_entries | min_by(.value.bytes) | .key) as $i | .[$i].bytes += $t.bytes | .[$i].tables += [$t])
        | map(select(.tables | length > 0))' <<<"${HX_PG_DB[sizes]}")
}

# hx__pg_dump_part DB PLAN_INDEX: the schema part (PLAN_INDEX -1: everything
# but the data of the tables in data parts) or one data part (its tables' data).
# shellcheck disable=SC2317  # invoked through hx_pipe_to
hx__pg_dump_part() {
    local db=$1 index=$2 p
    local -a patterns=() selection=()
    if ((index < 0)); then
        mapfile -d '' -t patterns < <(jq --join-output '.[].tables[].pattern + "\u0000"' <<<"${HX_PG_DB[plan]}")
        for p in "${patterns[@]}"; do selection+=("--exclude-table-data=$p"); done
    else
        mapfile -d '' -t patterns < <(jq --join-output --argjson i "$index" '.[$i].tables[].pattern + "\u0000"' <<<"${HX_PG_DB[plan]}")
        selection=(--data-only)
        for p in "${patterns[@]}"; do selection+=("--table=$p"); done
    fi
    hx__pg_dump "$db" "${selection[@]}"
}

# hx__pg_toc_check PART_FILE: decrypt one part and read its TOC into
# HX_PG_DB[part_header] (1 if the archive header parses), [part_toc] (TOC
# entries) and [part_data] (table data entries). pg_restore --list stops
# reading after the TOC, and the decompression before it with it (the
# pipeline proved while writing that the whole stream decodes); cat then
# drains the decrypted rest, so the decryption always runs to its end and
# its status is real. The decompression's EPIPE (where SIGPIPE is ignored,
# as systemd starts services) is expected and kept off stderr; its message
# is the cause only when the TOC could not be read.
hx__pg_toc_check() {
    local part=$1 out="${HX_OUT[work]}/toc" stage
    local -a st=(0 0) names=(decryption "reading the TOC") errs=("$out.decrypt-err" "$out.list-err" "$out.decompress-err")
    hx_decrypt "$HX_PBKDF2_ITER" <"$part" 2>"${errs[0]}" \
        | { hx_decompress "${HX_OUT[method]}" 2>"${errs[2]}" | { pg_restore --list 2>>"${HX_PG_DB[errf]}" || true; }; cat >/dev/null; } >"$out" 2>"${errs[1]}" || st=("${PIPESTATUS[@]}")
    for stage in 0 1; do
        if ((st[stage] != 0)); then
            HX_STATUS_CAUSE="structure check: ${names[stage]} of the new artifact failed (status ${st[stage]}): $(head -c 300 -- "${errs[stage]}" | tr '\n' ' ')"
            return 1
        fi
    done
    HX_PG_DB[part_header]=0
    grep --quiet --extended-regexp '^;[[:space:]]+Format: CUSTOM' -- "$out" && HX_PG_DB[part_header]=1
    if ((HX_PG_DB[part_header] == 0)) && [[ -s ${errs[2]} ]]; then
        HX_STATUS_CAUSE="structure check: decompression of the new artifact failed: $(head -c 300 -- "${errs[2]}" | tr '\n' ' ')"
        return 1
    fi
    read -r 'HX_PG_DB[part_toc]' 'HX_PG_DB[part_data]' < <(awk '!/^;/ && NF { n++; if (/ TABLE DATA /) d++ } END { print n + 0, d + 0 }' "$out")
    rm -f -- "$out" "${errs[@]}"
}

# Parallel dump of one database without plaintext on disk: one pg_dump per
# part, all in the exported snapshot, each streamed through the pipeline into
# an encrypted part; the parts are packed into one artifact. Sets the
# structure counts and HX_PG_DB[parts].
hx__pg_dump_parallel() {
    local db=$1 target=$2
    hx__pg_plan_parts || return 1
    hx_artifact_begin postgresql "$target" "$target" "dump.@CEXT@.enc.tar"
    mkdir -- "${HX_OUT[work]}/parts"
    local nparts i name work=${HX_OUT[work]}
    local -a names=() pids=()
    nparts=$(jq 'length' <<<"${HX_PG_DB[plan]}")
    for ((i = -1; i < nparts; i++)); do
        if ((i < 0)); then name="schema.dump.${HX_OUT[cext]}.enc"; else name="data-$((i + 1)).dump.${HX_OUT[cext]}.enc"; fi
        names+=("$name")
        mkdir -- "$work/$name.d"
        (
            hx_pipe_to "$work/parts/$name" "$work/$name.d" hx_postgresql_check_dump -- hx__pg_dump_part "$db" "$i" \
                || { printf '%s\n' "$HX_STATUS_CAUSE" >"$work/$name.d/cause"; exit 1; }
        ) &
        pids+=($!)
    done
    local failed=""
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || failed+="${names[i]}: $(cat "$work/${names[i]}.d/cause" 2>/dev/null || echo failed); "
    done
    if [[ -n $failed ]]; then
        HX_STATUS_CAUSE="parallel dump failed: $failed"
        return 1
    fi
    # Each part must parse; each data part must hold every table given to it.
    local want
    HX_PG_DB[toc]=0
    HX_PG_DB[data]=0
    HX_PG_DB[header]=1
    for i in "${!names[@]}"; do
        hx__pg_toc_check "$work/parts/${names[i]}" || return "$HX_EXIT_VERIFY"
        want=0
        ((i == 0)) || want=$(jq --argjson i "$((i - 1))" '.[$i].tables | length' <<<"${HX_PG_DB[plan]}")
        if ((HX_PG_DB[part_header] == 0)) || ((HX_PG_DB[part_data] < want)); then HX_PG_DB[header]=0; fi
        HX_PG_DB[toc]=$((HX_PG_DB[toc] + HX_PG_DB[part_toc]))
        HX_PG_DB[data]=$((HX_PG_DB[data] + HX_PG_DB[part_data]))
    done
    hx_pack_parts "${names[@]}" || return 1
    HX_PG_DB[parts]=$(jq --null-input --compact-output --argjson plan "${HX_PG_DB[plan]}" --argjson parts "${HX_OUT[parts_json]}" '
        $parts | to_entries | map(.value + (if .key == 0 then {role: "schema", tables: []}
            else {role: "data", tables: ($plan[.key - 1].tables | map(.table))} end))')
}

# hx__pg_backup_database DB LARGE: one database, in its own subshell; exits
# non-zero on failure (its EXIT trap writes the metrics and the cause).
hx__pg_backup_database() {
    local db=$1 large=$2 target
    target=$(hx_slug "$db")
    hx__pg_db_begin "$target" pgdump-stderr
    hx_info dump_start "dumping database" "type=postgresql" "target=$target" "database=$db" "large=$large"
    hx__pg_snapshot_open "$db"
    # The format: `large` forces parallel; `auto` goes by the size in this snapshot.
    local fmt=custom why=setting ntables parts_json=null
    if [[ $large == true ]]; then
        fmt=parallel why=large
    elif [[ ${HX_PG_DUMP[format]} == auto ]]; then
        why=size
        if ((HX_PG_DB[bytes] >= HX_PG_DUMP[parallel_from_bytes])); then fmt=parallel; fi
    elif [[ ${HX_PG_DUMP[format]} == parallel ]]; then
        fmt=parallel
    fi
    hx_info dump_format "dump format chosen" "type=postgresql" "target=$target" "format=$fmt" "reason=$why" "database_bytes=${HX_PG_DB[bytes]}" "parallel_from_bytes=${HX_PG_DUMP[parallel_from_bytes]}"
    if [[ $fmt == custom ]]; then
        hx_store postgresql "$target" "$target" dump hx_postgresql_check_dump -- hx__pg_dump "$db"
        hx__pg_snapshot_read tables "count rows"
        hx__pg_post_data_sizes
        hx__pg_snapshot_close
        # Structure: the TOC must list the expected objects.
        hx__pg_toc_check "${HX_OUT[partial]}" || exit "$HX_EXIT_VERIFY"
        HX_PG_DB[header]=${HX_PG_DB[part_header]}
        HX_PG_DB[toc]=${HX_PG_DB[part_toc]}
        HX_PG_DB[data]=${HX_PG_DB[part_data]}
    else
        hx__pg_snapshot_read tables "count rows"
        hx__pg_dump_parallel "$db" "$target"
        hx__pg_post_data_sizes
        hx__pg_snapshot_close
        parts_json=${HX_PG_DB[parts]}
    fi
    ntables=$(jq 'length' <<<"${HX_PG_DB[tables]}")
    # The archive must parse, and list a data entry for every table counted.
    if ((HX_PG_DB[header] == 0)) || ((HX_PG_DB[data] < ntables)); then
        HX_STATUS_CAUSE="structure check failed: archive header ok=${HX_PG_DB[header]}, ${HX_PG_DB[toc]} entries, ${HX_PG_DB[data]} table data entries for $ntables tables"
        exit "$HX_EXIT_VERIFY"
    fi
    local source_json content_json
    source_json=$(jq --null-input --compact-output --arg db "$db" --arg host "${PGHOST:-}" --arg port "$PGPORT" '{database: $db, host: $host, port: $port}')
    content_json=$(jq --null-input --compact-output --arg fmt "$fmt" --argjson tables "${HX_PG_DB[tables]}" --argjson toc "${HX_PG_DB[toc]}" --argjson parts "$parts_json" \
        --argjson post "${HX_PG_DB[post]}" \
        '{format: $fmt, tables: $tables, tocEntries: $toc, consistentCounts: true, postData: $post} + (if $parts == null then {} else {parts: $parts} end)')
    hx_commit_artifact postgresql "$target" "$source_json" "$content_json"
    hx_backup_succeeded postgresql "$target" "${HX_PG_DB[start]}" "database backed up and verified"
    printf '%s\n' "${HX_OUT[manifest]}" >"${HX_PG_DUMP[rundir]}/$target.manifest"
}

# shellcheck disable=SC2317  # invoked through hx_store
hx__pg_dump_globals() {
    pg_dumpall --globals-only --no-role-passwords --no-password 2>>"${HX_PG_DB[errf]}"
}

# hx__pg_backup_globals: roles and tablespaces, as target _globals, in its
# own subshell.
hx__pg_backup_globals() {
    hx__pg_db_begin _globals stderr
    hx_store postgresql _globals globals sql hx_check_raw -- hx__pg_dump_globals
    hx_commit_artifact postgresql _globals '{"globals":true}' '{"format":"sql"}'
    hx_backup_succeeded postgresql _globals "${HX_PG_DB[start]}" "globals backed up and verified"
    printf '%s\n' "${HX_OUT[manifest]}" >"${HX_PG_DUMP[rundir]}/_globals.manifest"
}
