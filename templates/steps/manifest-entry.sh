# shellcheck shell=sh
# Records what the step installed, for the host's drift check: its entry in
# the install manifest (one line per file: path, owner, group, mode, sha256),
# written atomically.
: "${manifest_dir:?}" "${manifest_entry:?}" "${manifest_lines?}"

install -d -o root -g root -m 0755 "$manifest_dir"
printf '%s' "$manifest_lines" >"$manifest_entry.tmp"
chmod 0644 "$manifest_entry.tmp"
mv -f "$manifest_entry.tmp" "$manifest_entry"
