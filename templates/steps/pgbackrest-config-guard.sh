# shellcheck shell=sh
# Refuses to replace a pgBackRest main config that hx-backup did not write
# (ours starts with a "# Managed by hx-backup" line).
: "${host:?}" "${conf:?}"

if [ -e "$conf" ] && ! head -n 1 "$conf" | grep -q '^# Managed by hx-backup'; then
  echo "hx-backup: host $host: $conf exists and is not managed by hx-backup; pgBackRest reads one main config, so move it aside (or merge it into postgresql.pitr) and deploy again" >&2
  exit 1
fi
