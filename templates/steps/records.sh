# shellcheck shell=sh
# Install records, shared by every step that installs or removes something and by
# the deploy's host read. records_dir holds, per key (a path, or user:<name> and
# the like), which resource installed it (owners/), and per resource how many
# times its install found the host drifted and repaired it (repairs/).
: "${hx_records:?}"

# hx_sha TEXT: the sha256 of TEXT, a record's file name.
hx_sha() { printf '%s' "$1" | sha256sum | cut -c1-64; }
# hx_owner_of KEY: the resource recorded for KEY, or nothing.
hx_owner_of() {
  hx_f="$hx_records/owners/$(hx_sha "$1")"
  if [ -f "$hx_f" ]; then IFS="$(printf '\t')" read -r hx_o _ <"$hx_f" || true; printf '%s' "${hx_o:-}"; fi
}
# hx_with_lines LINES COMMAND [ARG...]: runs COMMAND ARG... with each non-empty
# line of LINES (keys: no key holds a newline) as one more argument.
hx_with_lines() {
  hx_lines=$1
  shift
  while IFS= read -r hx_line; do
    [ -z "$hx_line" ] || set -- "$@" "$hx_line"
  done <<EOF_LINES
$hx_lines
EOF_LINES
  "$@"
}
# hx_repairs_file RESOURCE
hx_repairs_file() { printf '%s/repairs/%s' "$hx_records" "$(hx_sha "$1")"; }
# hx_drift ENTRY: how the host differs from the install manifest entry ENTRY, one
# "missing PATH", "owner-or-mode PATH (...)" or "changed PATH" per file, joined by
# "; " ("" when they agree): path, owner, group, mode and sha256 per line, "-" for
# a secret (checked by owner and mode only); managed blocks are not files.
hx_drift() {
  [ -f "$1" ] || { printf 'missing %s' "$1"; return 0; }
  hx_tab="$(printf '\t')"
  hx_sep=""
  while IFS="$hx_tab" read -r hx_p hx_u hx_g hx_m hx_h; do
    if [ -z "$hx_p" ] || [ "$hx_u" = @block ]; then continue; fi
    if [ ! -f "$hx_p" ] || [ -L "$hx_p" ]; then
      printf '%smissing %s' "$hx_sep" "$hx_p"
    else
      hx_seen=$(stat -c '%U %G %a' -- "$hx_p")
      if [ "$hx_seen" != "$hx_u $hx_g $(printf '%o' "$((0$hx_m))")" ]; then
        printf '%sowner-or-mode %s (%s, expected %s %s %s)' "$hx_sep" "$hx_p" "$hx_seen" "$hx_u" "$hx_g" "$hx_m"
      elif [ "$hx_h" != - ] && [ "$(sha256sum <"$hx_p" | cut -c1-64)" != "$hx_h" ]; then
        printf '%schanged %s' "$hx_sep" "$hx_p"
      else
        continue
      fi
    fi
    hx_sep="; "
  done <"$1"
}
