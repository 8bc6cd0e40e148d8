# shellcheck shell=sh
# Loads the installed units, clears their failed state and enables the timers.
# units: one unit name per line. Positional parameters: the timers.
: "${units?}"

if [ ! -d /run/systemd/system ]; then
  echo "hx-backup: systemd is not running here; units are installed but timers are not enabled. On a systemd host run: systemctl daemon-reload && systemctl enable --now $*"
  exit 0
fi
systemctl daemon-reload
while IFS= read -r unit; do
  [ -z "$unit" ] || systemctl reset-failed "$unit" 2>/dev/null || true
done <<EOF_UNITS
$units
EOF_UNITS
if [ "$#" -gt 0 ]; then systemctl enable --now "$@"; fi
