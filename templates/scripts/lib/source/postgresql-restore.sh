#!/usr/bin/env bash
# hx-backup library: the PostgreSQL data source, part: the parallel stream
# restore (pg_restore from decrypted streams, the TOC split into passes).
# Sourced by hx-backup-lib.sh; never run.

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

# hx__pg_split_toc MANIFEST ARTIFACT PART DIR JOBS SPLIT_DATA ERRF: write
# pg_restore --use-list files into DIR from the stream's TOC:
# d.K (TABLE DATA) when SPLIT_DATA is 1: contiguous runs of the archive,
# balanced by the manifest's row counts, so each stream stops reading where
# its run ends and only the last reads the whole archive (sequences and large
# objects go to that last one); p.K (indexes and primary/unique constraints,
# round-robin); rest (everything else: foreign keys, triggers, INDEX ATTACH).
hx__pg_split_toc() {
    local m=$1 a=$2 part=$3 dir=$4 jobs=$5 split_data=$6 errf=$7
    # pg_restore's status decides: a database without objects has an empty TOC.
    (
        set +o pipefail
        hx_open_part "$m" "$a" "$part" 2>/dev/null | pg_restore --list >"$dir/toc" 2>>"$errf"
    ) || return 1
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
    dir=$(mktemp --directory -- "$HX_STORAGE/.restore-lists.$$.tmpXXXXXX.partial")
    hx_tmp_register "$dir"
    case $fmt in
        custom)
            hx__pg_split_toc "$m" "$a" "" "$dir" "$jobs" 1 "$errf" || return 1
            hx__pg_restore_stream "$m" "$a" "" "$db" "$errf" --section=pre-data
            hx__pg_run_lists "$m" "$a" "" "$db" "$errf" "$dir" d "$jobs"
            ;;
        parallel)
            schema=$(jq --raw-output '.content.parts[]? | select(.role == "schema") | .name' "$m")
            [[ -n $schema ]] || return 1
            hx__pg_split_toc "$m" "$a" "$schema" "$dir" "$jobs" 0 "$errf" || return 1
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
