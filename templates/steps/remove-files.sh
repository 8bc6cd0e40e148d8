# Removes the files named by the positional parameters.
if [ "$#" -gt 0 ]; then rm -f -- "$@"; fi
