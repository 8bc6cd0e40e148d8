# shellcheck shell=sh
# Backups, keys and logs stay; only an account this tool created goes.
: "${user:?}" "${user_marker:?}" "${textfile_dir:?}" "${records_dir:?}"

# Another install's record (a step this one did not remove) means the user is still in use.
hx_in_use=""
for hx_f in "$records_dir"/owners/*; do
  [ -f "$hx_f" ] || continue
  IFS="$(printf '\t')" read -r hx_o hx_k <"$hx_f" || true
  hx_in_use="$hx_k (by $hx_o)"
  break
done
if [ -n "$hx_in_use" ]; then
  echo "hx-backup: keeping user $user: this host still has installs that use it, such as $hx_in_use"
  exit 0
fi
if [ -f "$user_marker" ] && id -u "$user" >/dev/null 2>&1; then userdel "$user"; fi
rm -f "$user_marker"
if command -v setfacl >/dev/null 2>&1; then setfacl -x "u:$user" "$textfile_dir" 2>/dev/null || true; fi
