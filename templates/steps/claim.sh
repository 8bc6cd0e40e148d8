# shellcheck shell=sh
# Before a step installs anything: records that this resource installs each key
# (a path, or user:<name> and the like), and counts a repair when the host has
# drifted from what this resource installed last. Another stack's key is refused
# before anything changes; this stack's (a renamed host or step) is taken over,
# so that the old resource's delete leaves it. What this resource recorded
# before and no longer installs (a script or a job dropped from the plan) is
# removed by the step's own removal (hx_step_remove), then forgotten.
# Positional parameters: the keys.
: "${hx_records:?}" "${hx_resource:?}" "${hx_stack_id:?}" "${hx_manifest_entry?}"

install -d -o root -g root -m 0755 "$hx_records" "$hx_records/owners" "$hx_records/repairs"
# One backup user per host and stack: its backups, keys, locks and logs are its files.
for hx_key in "$@"; do
  case $hx_key in user:*) ;; *) continue ;; esac
  for hx_f in "$hx_records"/owners/*; do
    [ -f "$hx_f" ] || continue
    IFS="$(printf '\t')" read -r hx_o hx_k <"$hx_f" || true
    case $hx_k in user:*) ;; *) continue ;; esac
    [ "$hx_k" != "$hx_key" ] || continue
    case $hx_o in
      "$hx_stack_id"/*)
        echo "hx-backup: backupUser: this host's backup user is ${hx_k#user:} (installed by $hx_o); renaming it to ${hx_key#user:} in place is refused, because its backups, keys, locks and logs belong to ${hx_k#user:}. Set backupUser back to ${hx_k#user:}, or rename as docs/operating.md \"Changing a stack safely\" says." >&2
        exit 1
        ;;
    esac
  done
done
hx_tab="$(printf '\t')"
hx_keyed=$(hx_shas "$@")
while IFS="$hx_tab" read -r hx_ksha hx_key; do
  [ -n "$hx_ksha" ] || continue
  hx_was=$(hx_owner_at "$hx_ksha")
  case $hx_was in
    "" | "$hx_resource" | "$hx_stack_id"/*) ;;
    *)
      echo "hx-backup: $hx_key on this host was installed by $hx_was, of another stack; refusing to take it over for $hx_resource. One machine is managed by one stack: remove it from the other stack (its pulumi up removes that install), or, if that stack is gone, delete $hx_records/owners/$hx_ksha on the host." >&2
      exit 1
      ;;
  esac
done <<EOF_KEYS
$hx_keyed
EOF_KEYS
while IFS="$hx_tab" read -r hx_ksha hx_key; do
  [ -n "$hx_ksha" ] || continue
  hx_was=$(hx_owner_at "$hx_ksha")
  [ "$hx_was" != "$hx_resource" ] || continue
  [ -z "$hx_was" ] || echo "hx-backup: $hx_key: taking it over from $hx_was (same stack)"
  printf '%s\t%s\n' "$hx_resource" "$hx_key" >"$hx_records/owners/.claim.$$"
  mv -f "$hx_records/owners/.claim.$$" "$hx_records/owners/$hx_ksha"
done <<EOF_KEYS
$hx_keyed
EOF_KEYS
hx_dropped=""
for hx_f in "$hx_records"/owners/*; do
  [ -f "$hx_f" ] || continue
  IFS="$(printf '\t')" read -r hx_o hx_k <"$hx_f" || true
  [ "$hx_o" = "$hx_resource" ] || continue
  hx_kept=""
  for hx_key in "$@"; do
    if [ "$hx_key" = "$hx_k" ]; then hx_kept=1; break; fi
  done
  [ -n "$hx_kept" ] || hx_dropped="$hx_dropped$hx_k
"
done
hx_rf=$(hx_repairs_file "$hx_resource")
hx_repairs=0
if [ -f "$hx_rf" ]; then
  hx_repairs=$(cat "$hx_rf")
  hx_found=""
  [ -z "$hx_manifest_entry" ] || hx_found=$(hx_drift "$hx_manifest_entry")
  if [ -n "$hx_found" ]; then
    hx_repairs=$((hx_repairs + 1))
    echo "hx-backup: repairing drift ($hx_found): repair $hx_repairs of $hx_resource"
  fi
fi
printf '%s\n' "$hx_repairs" >"$hx_rf.tmp"
mv -f "$hx_rf.tmp" "$hx_rf"
set --
# hx_prune KEY...: removes what this resource no longer installs, then forgets it.
hx_prune() {
  echo "hx-backup: $hx_resource no longer installs: $*"
  hx_step_remove "$@"
  hx_shas "$@" | while IFS="$hx_tab" read -r hx_ksha _; do rm -f "$hx_records/owners/$hx_ksha"; done
}
[ -z "$hx_dropped" ] || hx_with_lines "$hx_dropped" hx_prune
