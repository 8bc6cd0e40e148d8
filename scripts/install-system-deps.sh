#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the tests and the sandbox need.
# As root it installs what is missing, one group at a time, saying what and why;
# otherwise it prints the one command to run.
# stderr: `hx-install-deps: ...` progress lines; one line in all when nothing is missing.
set -Eeuo pipefail

# name|packages|why: the order is the install order, the largest group last.
readonly GROUPS_TABLE=(
    "postgresql|postgresql postgresql-client pgbackrest|real clusters for the dump, restore and point-in-time recovery tests"
    "redis|redis-server redis-tools|a real server for the Redis backup tests"
    "ssh|openssh-server openssh-sftp-server openssh-client|the deploy reaches the test and sandbox hosts over real SSH"
    "monitoring|prometheus prometheus-alertmanager prometheus-node-exporter|the alert rules, notifications and job metrics are checked on the real servers"
    "host-tools|zstd jq openssl acl attr tar gzip coreutils util-linux procps iproute2 nftables sudo logrotate systemd|what the backup jobs run on a host: compression, encryption, ACLs, firewall snapshot, log rotation, units"
    "s3-tools|awscli curl ca-certificates|the jobs upload with the AWS CLI; curl checks the monitoring endpoints"
    "lint|shellcheck|checks every shell script this project puts on a host"
    "browser|chromium|renders the compliance report's screenshot"
)

log() { printf 'hx-install-deps: %s\n' "$*" >&2; }

is_installed() {
    dpkg-query --show --showformat='${Status}' "$1" 2>/dev/null | grep --quiet 'install ok installed'
}

# missing_in "PACKAGES": prints those of the space-separated PACKAGES not installed, space-separated.
missing_in() {
    local pkg names missing=()
    read -r -a names <<<"$1"
    for pkg in "${names[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    printf '%s' "${missing[*]}"
}

main() {
    local entry name packages why missing
    local group_names=() missing_lines=() all_missing=()
    for entry in "${GROUPS_TABLE[@]}"; do
        IFS='|' read -r name packages why <<<"$entry"
        group_names+=("$name")
        missing=$(missing_in "$packages")
        [[ -z $missing ]] && continue
        missing_lines+=("missing $name ($missing): $why")
        all_missing+=("$missing")
    done

    if [[ ${#all_missing[@]} -eq 0 ]]; then
        log "present: all system packages (${group_names[*]})"
        return 0
    fi

    if [[ $EUID -ne 0 ]]; then
        for entry in "${missing_lines[@]}"; do
            log "$entry"
        done
        echo "hx-backup needs these system packages. Install them with:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${all_missing[*]}" >&2
        return 1
    fi

    export DEBIAN_FRONTEND=noninteractive
    log "updating the package lists (apt-get update)"
    apt-get update -qq
    local started to_install
    for entry in "${GROUPS_TABLE[@]}"; do
        IFS='|' read -r name packages why <<<"$entry"
        # Asked again: an earlier group may have pulled some of these in as dependencies.
        missing=$(missing_in "$packages")
        if [[ -z $missing ]]; then
            log "present: $name ($packages)"
            continue
        fi
        log "installing $name ($missing): $why"
        started=$SECONDS
        read -r -a to_install <<<"$missing"
        # policy-rc.d keeps the services from starting; the tests start their own instances.
        apt-get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null
        log "installed $name in $((SECONDS - started)) s"
    done
}

main "$@"
