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
# objects go to that last one), and dtab.K the table oids that d.K loads;
# the indexes and primary/unique constraints: when the manifest sizes them
# (content.postData, see HX_PG_POST_DATA_SQL), post: "WEIGHT<tab>TABLE
# OID<tab>TOC LINE", heaviest first (an entry it does not size weighs 0 and
# has table oid -), for hx__pg_run_post; else (an older artifact) p.K,
# round-robin in TOC order; rest (everything else: foreign keys, triggers,
# INDEX ATTACH). An entry's weight: its index's bytes and a quarter of its
# table's (an index build sorts its entries and scans the table once).
hx__pg_split_toc() {
    local m=$1 a=$2 part=$3 dir=$4 jobs=$5 split_data=$6 errf=$7
    # pg_restore's status decides: a database without objects has an empty TOC.
    (
        set +o pipefail
        hx_open_part "$m" "$a" "$part" 2>/dev/null | pg_restore --list >"$dir/toc" 2>>"$errf"
    ) || return 1
    jq --raw-output '.content.tables[]? | "\(.table)\t\(.rows)"' "$m" >"$dir/rows"
    jq --raw-output '.content.postData[]? | "\(.toc)\t\(.tableOid)\t\(.indexBytes + (.tableBytes / 4 | floor))"' "$m" >"$dir/sizes"
    awk -v jobs="$jobs" -v dir="$dir" -v split_data="$split_data" -v rowsf="$dir/rows" -v sizesf="$dir/sizes" -F'\t' '
        FILENAME == rowsf { rows[$1] = $2; next }
        FILENAME == sizesf { table[$1] = $2; size[$1] = $3; sized = 1; next }
        !/^[0-9]/ { next }
        {
            line[++n] = $0
            kind[n] = "rest"
            c = split($0, f, " ")
            if (split_data && $0 ~ /^[0-9]+; [0-9]+ [0-9]+ TABLE DATA /) {
                key = f[c - 2] "." f[c - 1]
                weight[n] = (key in rows) ? rows[key] + 1 : 1
                total += weight[n]
                kind[n] = "data"
                oid[n] = f[3]
            } else if (split_data && $0 ~ /^[0-9]+; [0-9]+ [0-9]+ (SEQUENCE SET|BLOBS|BLOB|LARGE OBJECT) /) {
                kind[n] = "tail"
            } else if ($0 ~ /^[0-9]+; [0-9]+ [0-9]+ (INDEX|CONSTRAINT) / && $0 !~ /^[0-9]+; [0-9]+ [0-9]+ INDEX ATTACH /) {
                kind[n] = "post"
                key = f[2] " " f[3]
                if (key in size) { pw[n] = size[key]; pt[n] = table[key] } else { pw[n] = 0; pt[n] = "-" }
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
                if (kind[i] == "data") { print line[i] > (dir "/d." stream[i]); print oid[i] > (dir "/dtab." stream[i]) }
                else if (kind[i] == "tail") print line[i] > (dir "/d." s)
                else if (kind[i] == "post" && sized) print pw[i] "\t" pt[i] "\t" i "\t" line[i] > (dir "/post.unsorted")
                else if (kind[i] == "post") print line[i] > (dir "/p." (np++ % jobs))
                else print line[i] > (dir "/rest")
            }
        }' "$dir/rows" "$dir/sizes" "$dir/toc"
    if [[ -s $dir/sizes ]]; then
        touch -- "$dir/post.unsorted"
        sort --field-separator=$'\t' --key=1,1nr --key=3,3n -- "$dir/post.unsorted" | cut --fields=1,2,4- >"$dir/post"
    fi
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

# hx__pg_stream_bg NAME MANIFEST ARTIFACT PART DB ERRF PG_RESTORE_ARGS...: one
# stream in the background; its end leaves the file NAME.end (how
# hx__pg_run_post tells a stream ended, whichever wait reaped it).
hx__pg_stream_bg() {
    local name=$1
    shift
    (
        hx__pg_restore_stream "$@"
        : >"$name.end"
    ) &
}

# hx__pg_run_post MANIFEST ARTIFACT PART DB ERRF DIR JOBS [LOADER...]: build
# the indexes and key constraints of DIR/post while the data streams (each
# LOADER a name given to hx__pg_stream_bg; the file LOADER lists the table
# oids it loads) still run, in at most JOBS concurrent streams (the data
# streams count): heaviest first, each once no running data stream loads its
# table (an entry of table oid - once none runs at all). A stream takes the
# heaviest ready entry and, while their weight is below an eighth of the
# remaining weight per stream, the next ready ones: the builds end about
# together (longest processing time first), and many small entries do not
# each pay for a stream.
hx__pg_run_post() {
    local m=$1 a=$2 part=$3 db=$4 errf=$5 dir=$6 jobs=$7
    shift 7
    local -A loads=() loading=() posts=()
    local -a items=() keep=()
    local name oid line w t rest batch bw share total=0 n=0 ended rc
    for name in "$@"; do
        loads[$name]=1
        while IFS= read -r oid; do loading[$oid]=$((${loading[$oid]:-0} + 1)); done <"$name"
    done
    mapfile -t items <"$dir/post"
    for line in "${items[@]}"; do total=$((total + ${line%%$'\t'*} + 1)); done
    while :; do
        ended=0
        for name in "${!loads[@]}"; do
            [[ -e $name.end ]] || continue
            while IFS= read -r oid; do loading[$oid]=$((loading[$oid] - 1)); done <"$name"
            unset "loads[$name]"
            ended=1
            ((${#loads[@]} > 0)) || hx__pg_phase data
        done
        for name in "${!posts[@]}"; do
            [[ -e $name.end ]] || continue
            unset "posts[$name]"
            ended=1
        done
        while ((${#loads[@]} + ${#posts[@]} < jobs && ${#items[@]} > 0)); do
            batch="" bw=0 keep=()
            share=$((total / (jobs * 8)))
            for line in "${items[@]}"; do
                w=${line%%$'\t'*}
                rest=${line#*$'\t'}
                t=${rest%%$'\t'*}
                if [[ -z $batch || $bw -lt $share ]] && { [[ $t == - ]] && ((${#loads[@]} == 0)) || [[ $t != - && ${loading[$t]:-0} == 0 ]]; }; then
                    batch+="${rest#*$'\t'}"$'\n'
                    bw=$((bw + w + 1))
                else
                    keep+=("$line")
                fi
            done
            [[ -n $batch ]] || break
            items=("${keep[@]}")
            total=$((total - bw))
            n=$((n + 1))
            printf '%s' "$batch" >"$dir/q.$n"
            hx__pg_stream_bg "$dir/q.$n" "$m" "$a" "$part" "$db" "$errf" --use-list="$dir/q.$n"
            posts[$dir/q.$n]=1
        done
        ((${#loads[@]} + ${#posts[@]} > 0)) || break
        rc=0
        wait -n || rc=$?
        # No child left, yet a stream without its end file (killed): it ended.
        if ((rc == 127 && ended == 0)) && [[ -z $(jobs -rp) ]]; then
            for name in "${!loads[@]}" "${!posts[@]}"; do : >"$name.end"; done
        fi
    done
    ((${#items[@]} == 0))
}

# hx__pg_phase NAME: log that the restore's phase NAME ended, with the
# seconds since HX_PG_RESTORE_START.
hx__pg_phase() {
    local now=${EPOCHREALTIME/[.,]/} elapsed
    elapsed=$(((now - HX_PG_RESTORE_START) / 1000))
    hx_info restore_phase "restore phase done" "phase=$1" "seconds=$((elapsed / 1000)).$(printf '%03d' "$((elapsed % 1000))")"
}

# hx_pg_restore_into MANIFEST ARTIFACT DBNAME ERRFILE: restore a verified
# PostgreSQL artifact into an existing (empty) database, in parallel and
# without plaintext on disk. pg_restore -j refuses a stream, so the work is
# split by TOC entry: pre-data once; then the table data in JOBS concurrent
# streams (one per part for a parallel dump); the indexes and key
# constraints in JOBS streams: of an artifact whose manifest sizes them,
# each as soon as its table is loaded, heaviest first (hx__pg_run_post); of
# an older one, round-robin once all data is loaded; then the rest of
# post-data. Each phase's end is logged (restore_phase).
hx_pg_restore_into() {
    local m=$1 a=$2 db=$3 errf=$4 fmt jobs dir schema="" part k
    local -a loaders=()
    HX_PG_RESTORE_START=${EPOCHREALTIME/[.,]/}
    fmt=$(jq --raw-output '.content.format // "custom"' "$m")
    hx_cfg_read jobs postgresql.jobs
    dir=$(mktemp --directory -- "$HX_STORAGE/.restore-lists.$$.tmpXXXXXX.partial")
    hx_tmp_register "$dir"
    case $fmt in
        custom)
            hx__pg_split_toc "$m" "$a" "" "$dir" "$jobs" 1 "$errf" || return 1
            hx__pg_restore_stream "$m" "$a" "" "$db" "$errf" --section=pre-data
            hx__pg_phase pre-data
            if [[ -e $dir/post ]]; then
                for ((k = 0; k < jobs; k++)); do
                    [[ -s $dir/d.$k ]] || continue
                    [[ -e $dir/dtab.$k ]] || : >"$dir/dtab.$k"
                    hx__pg_stream_bg "$dir/dtab.$k" "$m" "$a" "" "$db" "$errf" --use-list="$dir/d.$k"
                    loaders+=("$dir/dtab.$k")
                done
            else
                hx__pg_run_lists "$m" "$a" "" "$db" "$errf" "$dir" d "$jobs"
                hx__pg_phase data
            fi
            ;;
        parallel)
            schema=$(jq --raw-output '.content.parts[]? | select(.role == "schema") | .name' "$m")
            [[ -n $schema ]] || return 1
            hx__pg_split_toc "$m" "$a" "$schema" "$dir" "$jobs" 0 "$errf" || return 1
            hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=pre-data
            hx__pg_phase pre-data
            # The table oids each data stream loads: a data part's tables;
            # the schema part's, those in no data part.
            jq --raw-output '[.content.parts[]? | select(.role == "data") | .tables[]] as $d
                | .content.postData[]? | select(.table | IN($d[]) | not) | .tableOid' "$m" >"$dir/l.schema"
            hx__pg_stream_bg "$dir/l.schema" "$m" "$a" "$schema" "$db" "$errf" --section=data
            loaders+=("$dir/l.schema")
            k=0
            while IFS= read -r part; do
                while (($(jobs -rp | wc -l) >= jobs + 1)); do wait -n || true; done
                k=$((k + 1))
                jq --raw-output --arg p "$part" '(.content.parts[]? | select(.name == $p) | .tables) as $t
                    | .content.postData[]? | select(.table | IN($t[])) | .tableOid' "$m" >"$dir/l.$k"
                hx__pg_stream_bg "$dir/l.$k" "$m" "$a" "$part" "$db" "$errf" --data-only
                loaders+=("$dir/l.$k")
            done < <(jq --raw-output '.content.parts[]? | select(.role == "data") | .name' "$m")
            if [[ ! -e $dir/post ]]; then
                wait
                hx__pg_phase data
            fi
            ;;
        *) return 1 ;;
    esac
    if [[ -e $dir/post ]]; then
        hx__pg_run_post "$m" "$a" "$schema" "$db" "$errf" "$dir" "$jobs" "${loaders[@]}" || return 1
    else
        hx__pg_run_lists "$m" "$a" "$schema" "$db" "$errf" "$dir" p "$jobs"
    fi
    hx__pg_phase indexes
    if [[ -s $dir/rest ]]; then
        hx__pg_restore_stream "$m" "$a" "$schema" "$db" "$errf" --section=post-data --use-list="$dir/rest"
    fi
    hx__pg_phase post-data
    rm -rf -- "$dir"
}
