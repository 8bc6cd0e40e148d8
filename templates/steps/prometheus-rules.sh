# shellcheck shell=sh
# After the rules file is installed (action=install): Prometheus runs as its
# own user and needs search (x) permission on every folder above the rules
# file (the positional parameters), which may sit in the 0750 storage folder;
# then it re-reads its rules. After the file is removed (action=remove): it
# re-reads them, and a failed reload does not fail the removal.
# reload: prometheusReloadCommand, a shell command line run in this shell.
: "${action:?}" "${reload:?}"

if [ "$action" = install ]; then
  chmod o+x "$@"
  eval "$reload"
else
  eval "$reload || true"
fi
