# Installs files atomically: each is written to a temp file in its folder, given
# its owner and mode, checked when there is a check, then renamed over the
# target, so the target is the old file or the new one, never a part of one.
# from=stdin: the one file is the rest of stdin. from=lines: stdin holds one
# base64 line per file, in order (secrets, which so never reach argv).
# check: empty, or a command line (each word shell-quoted) that must pass with
# the temp file as its last argument before the file replaces the target.
# Positional parameters: path, owner, group and mode of each file, four at a time.
: "${from:?}" "${check?}"

while [ "$#" -gt 0 ]; do
  target=$1
  if [ "$from" = lines ]; then
    IFS= read -r line || { echo "hx-backup: missing secret for $target" >&2; exit 1; }
  fi
  dir=${target%/*}
  dir=${dir:-/}
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.hx-backup.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  if [ "$from" = lines ]; then printf '%s' "$line" | base64 -d >"$tmp"; else cat >"$tmp"; fi
  chown "$2:$3" "$tmp"
  chmod "$4" "$tmp"
  if [ -n "$check" ] && ! eval "$check \"\$tmp\"" >&2; then
    echo "hx-backup: refusing to install $target: check failed: $check \"\$tmp\"" >&2
    exit 1
  fi
  mv -f "$tmp" "$target"
  trap - EXIT
  shift 4
done
