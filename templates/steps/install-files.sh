# Installs files atomically: each is written to a temp file in its folder, given
# its owner and mode, checked when there is a check, then renamed over the
# target, so the target is the old file or the new one, never a part of one.
# from=json: stdin is {"files": {<path>: {owner, group, mode, sha256, content}}}
#   (render/step.ts filesDocument). A file already there as described (content,
#   owner, group and mode) is left alone, inode and mtime included. A file
#   marked "unchecked" (the step's manifest entry) skips the check.
# from=lines: stdin holds one base64 line per file, in order (secrets, which so
#   never reach argv); the positional parameters give path, owner, group and
#   mode of each file, four at a time.
# check: empty, or a command line (each word shell-quoted) that must pass with
# the temp file as its last argument before the file replaces the target.
: "${from:?}" "${check?}"

hx_tab="$(printf '\t')"
hx_tmp=""
hx_doc=""
trap 'rm -f "$hx_tmp" "$hx_doc"' EXIT

# hx_place TARGET OWNER GROUP MODE [unchecked]: gives the temp file its owner and mode, checks it, and renames it over TARGET.
hx_place() {
  chown "$2:$3" "$hx_tmp"
  chmod "$4" "$hx_tmp"
  if [ -n "$check" ] && [ "${5:-}" != true ] && ! eval "$check \"\$hx_tmp\"" >&2; then
    echo "hx-backup: refusing to install $1: check failed: $check \"\$tmp\"" >&2
    exit 1
  fi
  mv -f "$hx_tmp" "$1"
  hx_tmp=""
}

# hx_temp_for TARGET: a new temp file in TARGET's folder (created when missing).
hx_temp_for() {
  hx_dir=${1%/*}
  hx_dir=${hx_dir:-/}
  mkdir -p "$hx_dir"
  hx_tmp=$(mktemp "$hx_dir/.hx-backup.XXXXXX")
}

if [ "$from" = json ]; then
  if ! command -v jq >/dev/null 2>&1; then
    echo "hx-backup: jq is missing on this host: the deploy installs files from a JSON document (installPackages: true installs jq)" >&2
    exit 1
  fi
  hx_doc=$(mktemp)
  cat >"$hx_doc"
  hx_list=$(jq --raw-output '.files | to_entries[] | [.key, .value.owner, .value.group, .value.mode, .value.sha256, (.value.unchecked // false)] | @tsv' "$hx_doc")
  while IFS="$hx_tab" read -r hx_path hx_owner hx_group hx_mode hx_sha hx_unchecked; do
    [ -n "$hx_path" ] || continue
    if [ -f "$hx_path" ] && [ ! -L "$hx_path" ] &&
      [ "$(stat -c '%U %G %a' -- "$hx_path")" = "$hx_owner $hx_group $(printf '%o' "$((0$hx_mode))")" ] &&
      [ "$(sha256sum <"$hx_path" | cut -c1-64)" = "$hx_sha" ]; then
      continue
    fi
    hx_temp_for "$hx_path"
    jq --join-output --arg path "$hx_path" '.files[$path].content' "$hx_doc" >"$hx_tmp"
    hx_got=$(sha256sum <"$hx_tmp" | cut -c1-64)
    if [ "$hx_got" != "$hx_sha" ]; then
      echo "hx-backup: refusing to install $hx_path: its content arrived as sha256 $hx_got, the deploy sent $hx_sha" >&2
      exit 1
    fi
    hx_place "$hx_path" "$hx_owner" "$hx_group" "$hx_mode" "$hx_unchecked"
    echo "hx-backup: installed $hx_path"
  done <<EOF_FILES
$hx_list
EOF_FILES
else
  while [ "$#" -gt 0 ]; do
    IFS= read -r hx_line || { echo "hx-backup: missing secret for $1" >&2; exit 1; }
    hx_temp_for "$1"
    printf '%s' "$hx_line" | base64 -d >"$hx_tmp"
    hx_place "$1" "$2" "$3" "$4"
    shift 4
  done
fi
rm -f "$hx_doc"
hx_doc=""
trap - EXIT
