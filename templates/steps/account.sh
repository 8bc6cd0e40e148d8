# shellcheck shell=sh
# Creates the backup user (recording that this tool created it), takes away its login, and installs its directories.
# Positional parameters: path, owner, group and mode of each directory, four at a time.
: "${user:?}" "${home_dir:?}" "${config_dir:?}" "${user_marker:?}" "${textfile_dir:?}"

if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$home_dir" --no-create-home --shell /usr/sbin/nologin --comment 'hx-backup jobs' "$user"
  mkdir -p "$config_dir" && printf '%s\n' "$user" > "$user_marker"
fi
# No login shell, no password, whether we created the account or found it.
usermod --shell /usr/sbin/nologin "$user"
passwd --lock "$user" >/dev/null 2>&1 || usermod --lock "$user"
while [ "$#" -gt 0 ]; do
  install -d -o "$2" -g "$3" -m "$4" "$1"
  shift 4
done
# node_exporter reads *.prom from its textfile directory; the jobs write their own files there.
install -d -m 0755 "$textfile_dir"
if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:$user:rwx" "$textfile_dir" 2>/dev/null; then :; else chgrp "$user" "$textfile_dir" && chmod 0775 "$textfile_dir"; fi
