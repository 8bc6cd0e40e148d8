# shellcheck shell=sh
# Installs files atomically: each is written to a temp file in its folder, given
# its owner and mode, checked when there is a check, then renamed over the
# target, so the target is the old file or the new one, never a part of one.
# from=document: stdin is render/step.ts filesDocument: per file a header line
#   (@file, path, owner, group, mode, sha256, final newline 1/0, checked or
#   unchecked; tab-separated), then its lines, each behind a "|". A file already
#   there as described (content, owner, group and mode) is left alone, inode and
#   mtime included; an "unchecked" one (the step's manifest entry) skips the check.
#   A header ending in "staged:<path>" has no lines: the file's bytes are at that
#   path in the stage, stage_dir (relative to stage_user's home), which the
#   deploy copied there; they are copied out, then checked against the sha256.
# from=lines: stdin holds one base64 line per file, in order (secrets, which so
#   never reach argv); the positional parameters give path, owner, group and
#   mode of each file, four at a time. A file already there with the same
#   content, owner and mode is left alone.
# check: empty, or a command line (each word shell-quoted) that must pass with
# the temp file as its last argument before the file replaces the target.
: "${from:?}" "${check?}" "${stage_user?}" "${stage_dir?}"

hx_tab="$(printf '\t')"
hx_tmp=""
hx_doc=""
trap 'rm -f "$hx_tmp" "$hx_doc"' EXIT

# hx_place TARGET OWNER GROUP MODE [checked|unchecked]: gives the temp file its owner and mode, checks it, and renames it over TARGET.
hx_place() {
  chown "$2:$3" "$hx_tmp"
  chmod "$4" "$hx_tmp"
  if [ -n "$check" ] && [ "${5:-}" != unchecked ] && ! eval "$check \"\$hx_tmp\"" >&2; then
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

if [ "$from" = document ]; then
  hx_doc=$(mktemp)
  cat >"$hx_doc"
  if [ "$(head -n 1 "$hx_doc")" != "@hx-backup files 1" ]; then
    echo "hx-backup: stdin is not a files document this release reads (first line: $(head -n 1 "$hx_doc" | cut -c1-40))" >&2
    exit 1
  fi
  hx_index=0
  hx_list=$(LC_ALL=C grep "^@file$hx_tab" "$hx_doc" || true)
  hx_stage=""
  if [ -n "$stage_dir" ]; then
    hx_home=$(getent passwd "$stage_user" | cut -d: -f6)
    if [ -z "$hx_home" ]; then
      echo "hx-backup: cannot find the stage: the SSH user $stage_user has no home directory in the passwd database" >&2
      exit 1
    fi
    hx_stage="$hx_home/$stage_dir"
  fi
  while IFS="$hx_tab" read -r _ hx_path hx_owner hx_group hx_mode hx_sha hx_newline hx_checked hx_staged; do
    [ -n "$hx_path" ] || continue
    hx_index=$((hx_index + 1))
    if [ -f "$hx_path" ] && [ ! -L "$hx_path" ] &&
      [ "$(stat -c '%U %G %a' -- "$hx_path")" = "$hx_owner $hx_group $(printf '%o' "$((0$hx_mode))")" ] &&
      [ "$(sha256sum <"$hx_path" | cut -c1-64)" = "$hx_sha" ]; then
      continue
    fi
    hx_temp_for "$hx_path"
    case "$hx_staged" in
      staged:*)
        # Copied out before the check, so what is checked is what is installed.
        hx_from="$hx_stage/${hx_staged#staged:}"
        if [ -z "$hx_stage" ] || [ ! -f "$hx_from" ] || ! cat -- "$hx_from" >"$hx_tmp"; then
          echo "hx-backup: refusing to install $hx_path: its staged copy $hx_from is missing (the deploy copies the stage when its files change and when the host read finds drift); copy it again with pulumi up --replace on this host's files-stage resource" >&2
          exit 1
        fi
        ;;
      *)
        # The lines after the file's header, up to the next one, without their "|"; the last one's newline as the header says.
        LC_ALL=C awk -v want="$hx_index" -v newline="$hx_newline" '
          index($0, "@file\t") == 1 { n++; next }
          n == want { if (have) printf "%s\n", line; line = substr($0, 2); have = 1 }
          END { if (have) { if (newline == "1") printf "%s\n", line; else printf "%s", line } }
        ' "$hx_doc" >"$hx_tmp"
        ;;
    esac
    hx_got=$(sha256sum <"$hx_tmp" | cut -c1-64)
    if [ "$hx_got" != "$hx_sha" ]; then
      echo "hx-backup: refusing to install $hx_path: its content arrived as sha256 $hx_got, the deploy sent $hx_sha${hx_staged:+ (from the stage: $hx_stage)}" >&2
      exit 1
    fi
    hx_place "$hx_path" "$hx_owner" "$hx_group" "$hx_mode" "$hx_checked"
    echo "hx-backup: installed $hx_path"
  done <<EOF_FILES
$hx_list
EOF_FILES
else
  while [ "$#" -gt 0 ]; do
    IFS= read -r hx_line || { echo "hx-backup: missing secret for $1" >&2; exit 1; }
    hx_temp_for "$1"
    printf '%s' "$hx_line" | base64 -d >"$hx_tmp"
    # Compared here, on the host (no hash of a secret leaves it): the same key is left as it is.
    if [ -f "$1" ] && [ ! -L "$1" ] &&
      [ "$(stat -c '%U %G %a' -- "$1")" = "$2 $3 $(printf '%o' "$((0$4))")" ] &&
      [ "$(sha256sum <"$1" | cut -c1-64)" = "$(sha256sum <"$hx_tmp" | cut -c1-64)" ]; then
      rm -f "$hx_tmp"
      hx_tmp=""
    else
      hx_place "$1" "$2" "$3" "$4"
    fi
    shift 4
  done
fi
rm -f "$hx_doc"
hx_doc=""
trap - EXIT
