# shellcheck shell=sh
# Stops WAL archiving to pgBackRest without a restart, and keeps the repository.
# archive_command becomes /bin/true: with archive_mode still on (changing it
# needs a restart), an empty archive_command would make PostgreSQL keep every
# WAL segment until the disk fills; a command that succeeds lets it recycle
# WAL as before. The repository stays restorable up to the last archived WAL.
: "${stanza:?}" "${pg_host:?}" "${pg_port:?}" "${storage_dir:?}" "${lock_dir:?}" "${log_dir:?}" "${textfile_dir:?}"

if ! runuser -u postgres -- psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 --host="$pg_host" --port="$pg_port" --dbname=postgres <<'SQL'
ALTER SYSTEM SET archive_command = '/bin/true';
ALTER SYSTEM RESET archive_timeout;
SELECT pg_reload_conf();
SQL
then
  echo "hx-backup: stanza=$stanza: cannot reach PostgreSQL at $pg_host:$pg_port to stop archiving; start it and run the destroy again" >&2
  exit 1
fi
rm -f "$textfile_dir/hx_backup_pitr_restart.prom" "$textfile_dir"/hx_backup-pitr-*.prom
for dir in "$storage_dir" "$lock_dir" "$log_dir" "$textfile_dir"; do
  if [ -e "$dir" ]; then setfacl -x u:postgres "$dir" 2>/dev/null || true; fi
done
echo "event=pitr_removed stanza=$stanza archive_command=/bin/true"
