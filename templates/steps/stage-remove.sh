# shellcheck shell=sh
# Removes a step's stage (render/step.ts StagedFolder) from the SSH user's home,
# then its parent folders while they are empty, never the path's first folder
# (.cache). The copy plugin leaves a copy on delete; this step installed from it.
: "${stage_user:?}" "${stage_dir:?}"

case $stage_dir in
  /* | ../* | */../* | */.. | ..)
    echo "hx-backup: not removing the stage $stage_dir: it is not a path inside a home" >&2
    exit 1
    ;;
esac
hx_home=$(getent passwd "$stage_user" | cut -d: -f6)
if [ -n "$hx_home" ] && [ "$hx_home" != / ] && [ -d "$hx_home/$stage_dir" ]; then
  rm -rf -- "${hx_home:?}/$stage_dir"
  hx_dir=${stage_dir%/*}
  while [ "$hx_dir" != "${hx_dir#*/}" ] && rmdir -- "$hx_home/$hx_dir" 2>/dev/null; do
    hx_dir=${hx_dir%/*}
  done
fi
