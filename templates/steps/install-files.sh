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
hx_nl="
"
hx_tmp=""
hx_doc=""
hx_work=""
# Per target folder that gets files: "<folder><TAB><private temp folder in it>".
hx_tmpdirs=""
hx_cleanup() {
  rm -f -- "$hx_tmp" "$hx_doc" "$hx_work"
  while IFS="$hx_tab" read -r _ hx_d; do
    [ -z "$hx_d" ] || rm -rf -- "$hx_d"
  done <<EOF_TMPDIRS
$hx_tmpdirs
EOF_TMPDIRS
}
trap hx_cleanup EXIT

# hx_place TARGET OWNER GROUP MODE: gives the temp file (a secret's) its owner and mode, checks it, and renames it over TARGET.
hx_place() {
  chown "$2:$3" "$hx_tmp"
  chmod "$4" "$hx_tmp"
  if [ -n "$check" ] && ! eval "$check \"\$hx_tmp\"" >&2; then
    printf '%s\n' "hx-backup: refusing to install $1: check failed: $check \"\$tmp\"" >&2
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

# hx_folder_of PATH: sets hx_folder to PATH's folder (no subshell: this runs once per file).
hx_folder_of() {
  hx_folder=${1%/*}
  hx_folder=${hx_folder:-/}
}

# hx_hashes FILE...: the sha256 of each FILE, one per line in order, from one sha256sum run ("" when it cannot say).
hx_hashes() {
  [ "$#" -gt 0 ] || return 0
  # A name with a backslash or newline comes back escaped, its line starting with "\"; the hash is what counts.
  hx_h=$(sha256sum -- "$@" 2>/dev/null | sed 's/^\\//' | cut -c1-64) || hx_h=""
  if [ -n "$hx_h" ] && [ "$(printf '%s\n' "$hx_h" | wc -l)" -eq "$#" ]; then printf '%s\n' "$hx_h"; fi
}

if [ "$from" = document ]; then
  hx_doc=$(mktemp)
  cat >"$hx_doc"
  if [ "$(head -n 1 "$hx_doc")" != "@hx-backup files 1" ]; then
    printf '%s\n' "hx-backup: stdin is not a files document this release reads (first line: $(head -n 1 "$hx_doc" | cut -c1-40))" >&2
    exit 1
  fi
  hx_list=$(LC_ALL=C grep "^@file$hx_tab" "$hx_doc" || true)
  hx_stage=""
  if [ -n "$stage_dir" ]; then
    hx_home=$(getent passwd "$stage_user" | cut -d: -f6)
    if [ -z "$hx_home" ]; then
      printf '%s\n' "hx-backup: cannot find the stage: the SSH user $stage_user has no home directory in the passwd database" >&2
      exit 1
    fi
    hx_stage="$hx_home/$stage_dir"
  fi

  # Which files differ from their header: the ones present are described by one stat run and hashed by one
  # sha256sum run (a step installs tens of files; a few processes per file were most of a first deploy's time).
  set --
  while IFS="$hx_tab" read -r _ hx_path _; do
    if [ -n "$hx_path" ] && [ -f "$hx_path" ] && [ ! -L "$hx_path" ]; then set -- "$@" "$hx_path"; fi
  done <<EOF_FILES
$hx_list
EOF_FILES
  hx_stats=""
  hx_sums=""
  if [ "$#" -gt 0 ]; then
    hx_stats=$(stat -c '%U %G %a' -- "$@" 2>/dev/null) || hx_stats=""
    [ "$(printf '%s\n' "$hx_stats" | wc -l)" -eq "$#" ] || hx_stats=""
    hx_sums=$(hx_hashes "$@")
  fi
  # The files to write, one line each: index, path, owner, group, mode, sha256, final newline, checked, staged
  # ("-" when not: a tab is IFS white space, so read would merge an empty field into the next).
  hx_work=$(mktemp)
  hx_index=0
  hx_folders=""
  while IFS="$hx_tab" read -r _ hx_path hx_owner hx_group hx_mode hx_sha hx_newline hx_checked hx_staged; do
    [ -n "$hx_path" ] || continue
    hx_index=$((hx_index + 1))
    if [ -f "$hx_path" ] && [ ! -L "$hx_path" ] && [ "${1-}" = "$hx_path" ]; then
      shift
      hx_want="$hx_owner $hx_group $(printf '%o' "$((0$hx_mode))")"
      if [ -n "$hx_stats" ] && [ -n "$hx_sums" ]; then
        hx_seen=${hx_stats%%"$hx_nl"*}
        hx_got=${hx_sums%%"$hx_nl"*}
      else
        # The batch could not tell (a file changed under it): this file alone.
        hx_seen=$(stat -c '%U %G %a' -- "$hx_path")
        hx_got=$(sha256sum <"$hx_path" | cut -c1-64)
      fi
      hx_stats=${hx_stats#*"$hx_nl"}
      hx_sums=${hx_sums#*"$hx_nl"}
      if [ "$hx_seen" = "$hx_want" ] && [ "$hx_got" = "$hx_sha" ]; then continue; fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$hx_index" "$hx_path" "$hx_owner" "$hx_group" "$hx_mode" "$hx_sha" "$hx_newline" "$hx_checked" "${hx_staged:--}" >>"$hx_work"
    hx_folder_of "$hx_path"
    case "$hx_nl$hx_folders" in *"$hx_nl$hx_folder$hx_nl"*) ;; *) hx_folders="$hx_folders$hx_folder$hx_nl" ;; esac
  done <<EOF_FILES
$hx_list
EOF_FILES

  # A private temp folder in each target folder (a rename from it is atomic, and nobody else can reach into it);
  # each file's temp path (there, by its own name) becomes its work line's last field.
  set --
  while IFS= read -r hx_dir; do
    if [ -n "$hx_dir" ] && [ ! -d "$hx_dir" ]; then set -- "$@" "$hx_dir"; fi
  done <<EOF_FOLDERS
$hx_folders
EOF_FOLDERS
  [ "$#" -eq 0 ] || mkdir -p -- "$@"
  while IFS= read -r hx_dir; do
    [ -n "$hx_dir" ] || continue
    hx_d=$(mktemp -d "$hx_dir/.hx-backup.XXXXXX")
    hx_tmpdirs="$hx_tmpdirs$hx_dir$hx_tab$hx_d$hx_nl"
  done <<EOF_FOLDERS
$hx_folders
EOF_FOLDERS
  hx_planned=$(cat "$hx_work")
  : >"$hx_work"
  while IFS= read -r hx_line; do
    [ -n "$hx_line" ] || continue
    hx_path=${hx_line#*"$hx_tab"}
    hx_path=${hx_path%%"$hx_tab"*}
    hx_folder_of "$hx_path"
    while IFS="$hx_tab" read -r hx_f hx_d; do
      if [ "$hx_f" = "$hx_folder" ]; then break; fi
    done <<EOF_TMPDIRS
$hx_tmpdirs
EOF_TMPDIRS
    printf '%s\t%s\n' "$hx_line" "$hx_d/${hx_path##*/}" >>"$hx_work"
  done <<EOF_PLANNED
$hx_planned
EOF_PLANNED

  # Content: a staged file is copied out of the stage (so what is checked is what is installed); the others
  # come out of the document in one awk run, each file's lines after its header without their "|".
  hx_map=""
  set --
  while IFS="$hx_tab" read -r hx_i hx_path _ _ _ _ hx_newline _ hx_staged hx_tmp; do
    [ -n "$hx_path" ] || continue
    set -- "$@" "$hx_tmp"
    case "$hx_staged" in
      staged:*)
        hx_from="$hx_stage/${hx_staged#staged:}"
        if [ -z "$hx_stage" ] || [ ! -f "$hx_from" ] || ! cat -- "$hx_from" >"$hx_tmp"; then
          printf '%s\n' "hx-backup: refusing to install $hx_path: its staged copy $hx_from is missing (the deploy copies the stage when its files change and when the host read finds drift); copy it again with pulumi up --replace on this host's files-stage resource" >&2
          exit 1
        fi
        ;;
      *) hx_map="$hx_map$hx_i$hx_tab$hx_newline$hx_tab$hx_tmp$hx_nl" ;;
    esac
  done <"$hx_work"
  hx_tmp=""
  if [ -n "$hx_map" ]; then
    printf '%s' "$hx_map" | LC_ALL=C awk -F '\t' '
      function flush(  last) {
        if (n in out) {
          last = nl[n] == "1" ? "%s\n" : "%s"
          if (have) printf last, line > out[n]; else printf "" > out[n]
          close(out[n])
        }
        have = 0
      }
      NR == FNR { out[$1] = $3; nl[$1] = $2; next }
      index($0, "@file\t") == 1 { flush(); n++; next }
      n in out { if (have) printf "%s\n", line > out[n]; line = substr($0, 2); have = 1 }
      END { flush() }
    ' - "$hx_doc"
  fi

  # Each temp file against the sha256 its header carries, in one sha256sum run.
  hx_sums=$(hx_hashes "$@")
  while IFS="$hx_tab" read -r _ hx_path _ _ _ hx_sha _ _ hx_staged _; do
    [ -n "$hx_path" ] || continue
    if [ -n "$hx_sums" ]; then hx_got=${hx_sums%%"$hx_nl"*}; hx_sums=${hx_sums#*"$hx_nl"}; else hx_got=$(sha256sum <"$1" | cut -c1-64); fi
    if [ "$hx_got" != "$hx_sha" ]; then
      case "$hx_staged" in staged:*) hx_where=" (from the stage: $hx_stage)" ;; *) hx_where="" ;; esac
      printf '%s\n' "hx-backup: refusing to install $hx_path: its content arrived as sha256 $hx_got, the deploy sent $hx_sha$hx_where" >&2
      exit 1
    fi
    shift
  done <"$hx_work"

  # Owners and modes, one chown per owner and one chmod per mode; then each check, before anything goes live.
  hx_owners=$(cut -f 3,4 "$hx_work" | sort -u)
  while IFS="$hx_tab" read -r hx_u hx_g; do
    [ -n "$hx_u" ] || continue
    set --
    while IFS="$hx_tab" read -r _ _ hx_owner hx_group _ _ _ _ _ hx_tmp; do
      if [ "$hx_owner" = "$hx_u" ] && [ "$hx_group" = "$hx_g" ]; then set -- "$@" "$hx_tmp"; fi
    done <"$hx_work"
    chown -- "$hx_u:$hx_g" "$@"
  done <<EOF_OWNERS
$hx_owners
EOF_OWNERS
  hx_modes=$(cut -f 5 "$hx_work" | sort -u)
  while IFS= read -r hx_m; do
    [ -n "$hx_m" ] || continue
    set --
    while IFS="$hx_tab" read -r _ _ _ _ hx_mode _ _ _ _ hx_tmp; do
      if [ "$hx_mode" = "$hx_m" ]; then set -- "$@" "$hx_tmp"; fi
    done <"$hx_work"
    chmod -- "$hx_m" "$@"
  done <<EOF_MODES
$hx_modes
EOF_MODES
  if [ -n "$check" ]; then
    while IFS="$hx_tab" read -r _ hx_path _ _ _ _ _ hx_checked _ hx_tmp; do
      if [ -z "$hx_path" ] || [ "$hx_checked" = unchecked ]; then continue; fi
      if ! eval "$check \"\$hx_tmp\"" >&2; then
        printf '%s\n' "hx-backup: refusing to install $hx_path: check failed: $check \"\$tmp\"" >&2
        exit 1
      fi
    done <"$hx_work"
    hx_tmp=""
  fi

  # Live: one rename per file (mv -t per folder), then the empty temp folders go.
  while IFS="$hx_tab" read -r hx_dir hx_d; do
    [ -n "$hx_dir" ] || continue
    set --
    while IFS="$hx_tab" read -r _ hx_path _ _ _ _ _ _ _ hx_tmp; do
      hx_folder_of "$hx_path"
      if [ "$hx_folder" = "$hx_dir" ]; then set -- "$@" "$hx_tmp"; fi
    done <"$hx_work"
    mv -f -t "$hx_dir" -- "$@"
    rmdir -- "$hx_d"
  done <<EOF_TMPDIRS
$hx_tmpdirs
EOF_TMPDIRS
  hx_tmpdirs=""
  while IFS="$hx_tab" read -r _ hx_path _; do
    [ -z "$hx_path" ] || printf '%s\n' "hx-backup: installed $hx_path"
  done <"$hx_work"
else
  while [ "$#" -gt 0 ]; do
    IFS= read -r hx_line || { printf '%s\n' "hx-backup: missing secret for $1" >&2; exit 1; }
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
hx_cleanup
hx_doc=""
hx_work=""
trap - EXIT
