# shellcheck shell=sh
set -eu
