# shellcheck shell=sh
# Installs the packages named by the positional parameters (Debian names) that are missing.

# Fedora's names for the packages Debian calls differently.
dnf_name() {
  case $1 in
    awscli) echo awscli2 ;;
    iproute2) echo iproute ;;
    redis-tools) echo redis ;;
    postgresql-client) echo postgresql ;;
    *) echo "$1" ;;
  esac
}

if command -v apt-get >/dev/null 2>&1; then
  # Keeps only the packages not installed yet: each one is shifted off the front and put back at the end if missing.
  for p in "$@"; do
    shift
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || set -- "$@" "$p"
  done
  if [ "$#" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's postgresql-client is a metapackage; on a server host the matching client is already there.
    apt-get install -y -qq --no-install-recommends "$@"
  fi
elif command -v dnf >/dev/null 2>&1; then
  for p in "$@"; do
    shift
    set -- "$@" "$(dnf_name "$p")"
  done
  dnf install -y "$@"
else
  echo 'hx-backup: no apt-get or dnf; install these packages yourself:' "$*" >&2; exit 1
fi
