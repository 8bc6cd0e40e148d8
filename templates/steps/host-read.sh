# shellcheck shell=sh
# The deploy's read of a host (one session per host, during pulumi preview and
# up): for each step on stdin (resource, tab, its install manifest entry), its
# repair count ("-" before its first install) and the first way the host differs
# from that entry (empty when none); then every install record (O, resource, key).
# Changes nothing.
: "${hx_records:?}"
hx_tab="$(printf '\t')"
while IFS="$hx_tab" read -r hx_res hx_entry; do
  [ -n "$hx_res" ] || continue
  hx_rf=$(hx_repairs_file "$hx_res")
  if [ -f "$hx_rf" ]; then
    hx_found=""
    [ -z "$hx_entry" ] || hx_found=$(hx_drift "$hx_entry")
    printf 'R\t%s\t%s\t%s\n' "$hx_res" "$(cat "$hx_rf")" "$hx_found"
  else
    printf 'R\t%s\t-\t\n' "$hx_res"
  fi
done
if [ -d "$hx_records/owners" ]; then
  for hx_f in "$hx_records"/owners/*; do
    [ -f "$hx_f" ] || continue
    IFS="$hx_tab" read -r hx_o hx_k <"$hx_f" || true
    printf 'O\t%s\t%s\n' "$hx_o" "$hx_k"
  done
fi
