# shellcheck shell=sh
# Starts a full backup when the current repository has none: on the first
# deploy, and after a key rotation (a new repository per key id), so that
# point-in-time recovery covers the cluster from now on rather than from the
# next scheduled backup. The job runs from its unit, detached (--no-block):
# the deploy does not wait for it. Prints key=value lines.
: "${host:?}" "${stanza:?}" "${unit:?}" "${pg_host:?}" "${pg_port:?}"

cd /

backups=$(runuser -u postgres -- pgbackrest --stanza="$stanza" --output=json info 2>/dev/null | jq --raw-output '.[0].backup | length') || backups=""
if [ -z "$backups" ]; then
  echo "hx-backup: host=$host stanza=$stanza: pgbackrest info failed, so whether a full backup exists is unknown; the scheduled jobs take one" >&2
  echo "event=pitr_first_full stanza=$stanza started=0 reason=info_failed"
  exit 0
fi
if [ "$backups" -gt 0 ]; then
  echo "event=pitr_first_full stanza=$stanza started=0 reason=has_backups backups=$backups"
  exit 0
fi
# A backup needs working archiving, which waits for a pending restart.
archive_mode=$(runuser -u postgres -- psql --no-psqlrc --quiet --tuples-only --no-align \
  --host="$pg_host" --port="$pg_port" --dbname=postgres --command='SHOW archive_mode' 2>/dev/null) || archive_mode=""
if [ "$archive_mode" != on ]; then
  echo "hx-backup: host=$host stanza=$stanza: no full backup yet; after the pending PostgreSQL restart run: systemctl start $unit" >&2
  echo "event=pitr_first_full stanza=$stanza started=0 reason=restart_pending"
  exit 0
fi
if [ ! -d /run/systemd/system ]; then
  echo "hx-backup: host=$host stanza=$stanza: no full backup yet and systemd is not running here; start $unit the way systemd would" >&2
  echo "event=pitr_first_full stanza=$stanza started=0 reason=no_systemd"
  exit 0
fi
systemctl start --no-block "$unit"
echo "event=pitr_first_full stanza=$stanza started=1 unit=$unit"
