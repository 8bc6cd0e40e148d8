# Stops, disables and removes one unit file.
: "${unit:?}" "${unit_path:?}"

if [ -d /run/systemd/system ]; then systemctl disable --now "$unit" 2>/dev/null || true; fi
rm -f "$unit_path"
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
