# shellcheck shell=sh
# Before a step's delete: it removes only what this resource installed. When any
# of its keys is now recorded for another resource (a renamed host or step, or a
# regrouped step, which installed the same paths first), the delete removes what
# is still this resource's own with the step's own removal (hx_step_remove),
# leaves the rest, says why, and succeeds. Otherwise the records go first, so a
# delete that fails half-way is simply run again.
# Positional parameters: the keys.
: "${hx_records:?}" "${hx_resource:?}"

hx_theirs=""
hx_mine=""
hx_tab="$(printf '\t')"
hx_keyed=$(hx_shas "$@")
while IFS="$hx_tab" read -r hx_ksha hx_key; do
  [ -n "$hx_ksha" ] || continue
  hx_was=$(hx_owner_at "$hx_ksha")
  case $hx_was in
    "") ;;
    "$hx_resource")
      hx_mine="$hx_mine$hx_key
"
      rm -f "$hx_records/owners/$hx_ksha"
      ;;
    *) hx_theirs="$hx_theirs $hx_key (installed since by $hx_was)" ;;
  esac
done <<EOF_KEYS
$hx_keyed
EOF_KEYS
rm -f "$(hx_repairs_file "$hx_resource")"
# hx_remove_own KEY...: removes, with the step's own removal, what is still this resource's.
hx_remove_own() {
  if [ "$#" -gt 0 ]; then
    echo "hx-backup: $hx_resource: removing what is still its own: $*"
    hx_step_remove "$@"
  fi
}
if [ -n "$hx_theirs" ]; then
  echo "hx-backup: $hx_resource: leaving what another install now owns:$hx_theirs"
  hx_with_lines "$hx_mine" hx_remove_own
  exit 0
fi
set --
