# shellcheck shell=sh
# Removes the installed paths named by the positional parameters (other install
# record keys, such as user:<name>, name nothing to remove here). A systemd unit
# in unit_dir is stopped and disabled before its file goes.
: "${unit_dir:?}"

hx_reload=""
for hx_path in "$@"; do
  case $hx_path in
    /*) ;;
    *) continue ;;
  esac
  case $hx_path in
    "$unit_dir"/*.service | "$unit_dir"/*.timer)
      if [ -d /run/systemd/system ]; then
        systemctl disable --now "${hx_path##*/}" 2>/dev/null || true
        hx_reload=1
      fi
      ;;
  esac
  rm -f -- "$hx_path"
done
if [ -n "$hx_reload" ]; then systemctl daemon-reload; fi
