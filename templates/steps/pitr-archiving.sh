# shellcheck shell=sh
# Turns on WAL archiving to pgBackRest for one cluster: the directories and
# ACLs the postgres-run jobs need, the settings through ALTER SYSTEM and a
# reload, a restart only when archive_mode was off and allow_restart is 1
# (otherwise the restart is reported as pending, on stdout and as a metric),
# then stanza-create and check as postgres. Prints key=value lines.
: "${host:?}" "${stanza:?}" "${data_dir:?}" "${pg_host:?}" "${pg_port:?}" "${archive_command:?}" "${archive_timeout:?}"
: "${allow_restart:?}" "${repo_dir?}" "${scratch_dir:?}" "${storage_dir:?}" "${lock_dir:?}" "${log_dir:?}" "${textfile_dir:?}" "${pgbackrest_dirs:?}"

# runuser keeps the working directory, which postgres may not enter.
cd /

fail() {
  echo "hx-backup: PITR on host=$host stanza=$stanza: $*" >&2
  exit 1
}

command -v pgbackrest >/dev/null 2>&1 || fail "pgbackrest is not installed (installPackages installs it)"
id -u postgres >/dev/null 2>&1 || fail "there is no postgres user"
command -v setfacl >/dev/null 2>&1 || fail "setfacl is missing (Debian package acl)"
[ -f "$data_dir/PG_VERSION" ] || fail "$data_dir is not a PostgreSQL data directory (postgresql.dataDir)"

# The jobs run as postgres: they pass through the storage directory to their
# lock (the account step made the folder) and (local) repository, and write
# their logs and metrics.
setfacl -m u:postgres:x "$storage_dir"
for dir in "$lock_dir" "$log_dir" "$textfile_dir"; do
  setfacl -m u:postgres:rwx "$dir"
done
if [ -n "$repo_dir" ]; then
  install -d -o postgres -g postgres -m 0750 "$(dirname "$repo_dir")" "$repo_dir"
fi
install -d -o postgres -g postgres -m 0700 "$scratch_dir"
for dir in $pgbackrest_dirs; do
  install -d -o postgres -g postgres -m 0750 "$dir"
done

sql() {
  runuser -u postgres -- psql --no-psqlrc --quiet --tuples-only --no-align --set ON_ERROR_STOP=1 \
    --host="$pg_host" --port="$pg_port" --dbname=postgres "$@"
}

# Running values, before any change: they decide whether a restart is needed.
running_archive_mode=$(sql --command='SHOW archive_mode') || fail "cannot reach PostgreSQL at $pg_host:$pg_port"
running_wal_level=$(sql --command='SHOW wal_level')
live_data_dir=$(sql --command='SHOW data_directory')
[ "$live_data_dir" = "$data_dir" ] || fail "the server on port $pg_port runs from $live_data_dir, not $data_dir (postgresql.dataDir)"

# Values are ours (the stanza is [A-Za-z0-9._-], the timeout an integer); the
# archive command is passed as a psql variable, which quotes it as a literal.
sql --set=cmd="$archive_command" --set=timeout="$archive_timeout" <<'SQL'
SELECT CASE WHEN current_setting('wal_level') = 'minimal' THEN 'ALTER SYSTEM SET wal_level = replica' END \gexec
ALTER SYSTEM SET archive_mode = on;
ALTER SYSTEM SET archive_command = :'cmd';
ALTER SYSTEM SET archive_timeout = :'timeout';
SELECT pg_reload_conf();
SQL

# How this cluster is restarted: its Debian cluster wrapper, else the systemd
# unit its postmaster runs in, else pg_ctl (which reuses postmaster.opts).
version=$(cat "$data_dir/PG_VERSION")
restart_command=""
if command -v pg_lsclusters >/dev/null 2>&1; then
  restart_command=$(pg_lsclusters --no-header 2>/dev/null | awk -v d="$data_dir" '$6 == d { print "pg_ctlcluster " $1 " " $2 " restart"; exit }')
fi
if [ -z "$restart_command" ] && [ -d /run/systemd/system ]; then
  unit=$(ps -o unit= -p "$(head -n 1 "$data_dir/postmaster.pid")" 2>/dev/null | tr -d ' ')
  case $unit in *.service) restart_command="systemctl restart $unit" ;; esac
fi
if [ -z "$restart_command" ]; then
  restart_command="runuser -u postgres -- /usr/lib/postgresql/$version/bin/pg_ctl restart --pgdata=$data_dir --mode=fast --wait --silent --log=$data_dir/hx-backup-restart.log"
fi

pending=0
if [ "$running_archive_mode" != on ] || [ "$running_wal_level" = minimal ]; then
  if [ "$allow_restart" = 1 ]; then
    echo "event=pitr_restart stanza=$stanza command=\"$restart_command\""
    sh -c "$restart_command" >/dev/null 2>&1 </dev/null || fail "restart failed: $restart_command"
    tries=0
    until sql --command='SELECT 1' >/dev/null 2>&1; do
      tries=$((tries + 1))
      [ "$tries" -lt 120 ] || fail "PostgreSQL did not come back within 60 s after: $restart_command"
      sleep 0.5
    done
  else
    pending=1
  fi
fi

# The restart state, for the PitrRestartPending alert (the archive status job rewrites it on every run).
label_command=$(printf '%s' "$restart_command" | sed 's/\\/\\\\/g; s/"/\\"/g')
metrics=$(mktemp "$textfile_dir/.hx_backup_pitr_restart.prom.$$.tmpXXXXXX.partial")
{
  printf '# TYPE backup_pitr_restart_pending gauge\nbackup_pitr_restart_pending{type="pitr",target="archive"} %s\n' "$pending"
  if [ "$pending" = 1 ]; then
    printf '# TYPE backup_pitr_restart_command_info gauge\nbackup_pitr_restart_command_info{type="pitr",target="archive",command="%s"} 1\n' "$label_command"
  fi
} >"$metrics"
chmod 0644 "$metrics"
mv -f "$metrics" "$textfile_dir/hx_backup_pitr_restart.prom"

# pgBackRest's own message, on one printable line; a repository it cannot
# decode was most likely written with another passphrase (another keyring).
pgbackrest_as_postgres() {
  if ! out=$(runuser -u postgres -- pgbackrest --stanza="$stanza" "$@" 2>&1); then
    # pgBackRest's whole message (the ERROR line, the causes under it, its HINTs), on one printable line.
    message=$(printf '%s' "$out" | tr -s ' \n' ' ' | LC_ALL=C tr -c '[:print:]' '?' | cut -c 1-800)
    case $message in
      *FormatError* | *CryptoError* | *"repo encrypted"*) message="$message (the repository does not decode with this passphrase: was it written with another keyring?)" ;;
    esac
    fail "pgbackrest $1 failed: $message"
  fi
}
pgbackrest_as_postgres stanza-create
if [ "$pending" = 1 ]; then
  echo "event=pitr_restart_pending stanza=$stanza restart_pending=1 command=\"$restart_command\""
  echo "hx-backup: host=$host: WAL archiving starts after a restart of PostgreSQL; run: $restart_command" >&2
else
  pgbackrest_as_postgres check
  echo "event=pitr_ok stanza=$stanza restart_pending=0"
fi
