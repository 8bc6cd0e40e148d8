#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the tests and the sandbox need.
# As root it installs what is missing; otherwise it prints the one command to run.
set -Eeuo pipefail

readonly PACKAGES=(
    postgresql postgresql-client redis-server redis-tools
    openssh-server openssh-sftp-server openssh-client
    prometheus prometheus-alertmanager prometheus-node-exporter
    shellcheck zstd jq openssl acl attr tar gzip coreutils util-linux procps iproute2 nftables
    sudo logrotate systemd awscli curl ca-certificates
    chromium pgbackrest
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query --show --showformat='${Status}' "$pkg" 2>/dev/null | grep --quiet 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "hx-backup needs these system packages. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the services from starting; the tests start their own instances.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
