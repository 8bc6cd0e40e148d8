# Backups, keys and logs stay; only an account this tool created goes.
: "${user:?}" "${user_marker:?}" "${textfile_dir:?}"

if [ -f "$user_marker" ] && id -u "$user" >/dev/null 2>&1; then userdel "$user"; fi
rm -f "$user_marker"
if command -v setfacl >/dev/null 2>&1; then setfacl -x "u:$user" "$textfile_dir" 2>/dev/null || true; fi
