# shellcheck shell=sh
# Install records, shared by every step that installs or removes something and by
# the deploy's host read. records_dir holds, per key (a path, or user:<name> and
# the like), which resource installed it (owners/), and per resource how many
# times its install found the host drifted and repaired it (repairs/).
: "${hx_records:?}"

# hx_sha TEXT: the sha256 of TEXT, a record's file name.
hx_sha() { printf '%s' "$1" | sha256sum | cut -c1-64; }
# hx_shas KEY...: "<sha256><TAB><KEY>" per KEY, in order, from one sha256sum run
# (a step claims tens of keys; one run per key was most of a first deploy's time).
hx_shas() {
  [ "$#" -gt 0 ] || return 0
  hx_kd=$(mktemp -d)
  hx_i=0
  for hx_k in "$@"; do
    hx_i=$((hx_i + 1))
    printf '%s' "$hx_k" >"$hx_kd/$(printf '%06d' "$hx_i")"
  done
  # The names are digits only, so sha256sum never escapes them: each line is the hash, two spaces, the name.
  hx_sums=$(cd "$hx_kd" && sha256sum -- *)
  rm -rf "$hx_kd"
  for hx_k in "$@"; do
    printf '%s\t%s\n' "${hx_sums%%  *}" "$hx_k"
    hx_sums=${hx_sums#*"
"}
  done
}
# hx_owner_at SHA: the resource recorded for the key whose sha256 is SHA, or nothing.
hx_owner_at() {
  hx_f="$hx_records/owners/$1"
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
# a secret (checked by owner and mode only); managed blocks are not files. The
# files to hash are hashed in one sha256sum run, so "changed" ones come last.
hx_drift() {
  [ -f "$1" ] || { printf 'missing %s' "$1"; return 0; }
  hx_entry=$1
  set --
  hx_tab="$(printf '\t')"
  hx_sep=""
  hx_want=""
  while IFS="$hx_tab" read -r hx_p hx_u hx_g hx_m hx_h; do
    if [ -z "$hx_p" ] || [ "$hx_u" = @block ]; then continue; fi
    if [ ! -f "$hx_p" ] || [ -L "$hx_p" ]; then
      printf '%smissing %s' "$hx_sep" "$hx_p"
    else
      hx_seen=$(stat -c '%U %G %a' -- "$hx_p")
      if [ "$hx_seen" != "$hx_u $hx_g $(printf '%o' "$((0$hx_m))")" ]; then
        printf '%sowner-or-mode %s (%s, expected %s %s %s)' "$hx_sep" "$hx_p" "$hx_seen" "$hx_u" "$hx_g" "$hx_m"
      else
        [ "$hx_h" = - ] || { set -- "$@" "$hx_p"; hx_want="$hx_want$hx_h
"; }
        continue
      fi
    fi
    hx_sep="; "
  done <"$hx_entry"
  [ "$#" -gt 0 ] || return 0
  # A name with a backslash or newline comes back escaped, its line starting with "\"; the hash is what counts.
  hx_sums=$(sha256sum -- "$@" | sed 's/^\\//' | cut -c1-64)
  if [ "$(printf '%s\n' "$hx_sums" | wc -l)" -ne "$#" ]; then
    hx_sums=""
    for hx_p in "$@"; do hx_sums="$hx_sums$(sha256sum <"$hx_p" 2>/dev/null | cut -c1-64)
"; done
  fi
  while IFS= read -r hx_got; do
    [ "$#" -gt 0 ] || break
    if [ "$hx_got" != "${hx_want%%"
"*}" ]; then
      printf '%schanged %s' "$hx_sep" "$1"
      hx_sep="; "
    fi
    hx_want=${hx_want#*"
"}
    shift
  done <<EOF_SUMS
$hx_sums
EOF_SUMS
}
