#!/usr/bin/env bash
# Provides the Pulumi engine that a real `pulumi preview/up` needs: the CLI,
# the Node.js language host, and the `command` and `random` resource plugins.
#
#   1. A `pulumi` on PATH whose plugins are all there is used as it is.
#   2. Otherwise, with Go, the CLI and the language host are built from the
#      modules pinned in scripts/pulumi-engine/*/go.{mod,sum} into a cache
#      outside the clone, keyed by those pins, so a rerun costs nothing.
#   3. Otherwise it prints the one command that installs the Pulumi CLI.
#
# The resource plugins are only found, never built: see scripts/pulumi-engine/README.md.
#
# stdout: the directory to put first on PATH (only when everything was found).
# stderr: key=value log lines.
# Exit: 0 ready; 1 no CLI and no Go; 3 the engine is there but a plugin is missing.
set -Eeuo pipefail

ENGINE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/pulumi-engine" && pwd)
readonly ENGINE_DIR
# Built with the same flags as Pulumi's own release builds.
readonly GO_TAGS="osusergo,grpcnotrace"
readonly VERSION_VAR="github.com/pulumi/pulumi/sdk/v3/go/common/version.Version"
readonly CLI_VERSION="v3.248.0"
readonly CLI_PACKAGE="github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
# The language host module is untagged; the proxy serves it only at v3.163.0's commit.
readonly LANGUAGE_HOST_VERSION="v3.163.0"
readonly LANGUAGE_HOST_PACKAGE="github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"
# name, accepted version prefix, the version @pulumi/<name> in package-lock.json asks for.
readonly PLUGINS=("command 1.2. 1.2.1" "random 4. 4.21.2")

log() { printf 'hx-install-pulumi %s\n' "$*" >&2; }

usage() {
    cat >&2 <<'EOF'
usage: scripts/install-pulumi.sh [--check]
  --check   only report what is there; build nothing
EOF
}

find_go() {
    local go_bin
    go_bin=$(command -v go 2>/dev/null || true)
    [[ -z $go_bin && -x /usr/local/go/bin/go ]] && go_bin=/usr/local/go/bin/go
    printf '%s' "$go_bin"
}

cache_dir() {
    local key
    key=$(cat "$ENGINE_DIR"/cli/go.mod "$ENGINE_DIR"/cli/go.sum "$ENGINE_DIR"/language-nodejs/go.mod "$ENGINE_DIR"/language-nodejs/go.sum \
        <(printf '%s\n' "$GO_TAGS" "$CLI_VERSION" "$LANGUAGE_HOST_VERSION") | sha256sum | cut --characters=1-16)
    printf '%s/pulumi-%s-%s' "${HX_PULUMI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hx-backup}" "$CLI_VERSION" "$key"
}

# build_binary GO MODULE_DIR PACKAGE VERSION OUT_DIR
build_binary() {
    local go_bin=$1 module_dir=$2 package=$3 version=$4 out_dir=$5
    local started elapsed
    started=$(date +%s)
    log "event=build package=$package version=$version"
    (cd "$module_dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$go_bin" build -trimpath -tags "$GO_TAGS" \
        -ldflags "-X $VERSION_VAR=$version" -o "$out_dir/" "$package")
    elapsed=$(($(date +%s) - started))
    log "event=built package=$package seconds=$elapsed"
}

# plugin_present PULUMI NAME VERSION_PREFIX: on PATH (ambient) or installed in PULUMI_HOME.
plugin_present() {
    local pulumi_bin=$1 name=$2 prefix=$3
    command -v "pulumi-resource-$name" >/dev/null 2>&1 && return 0
    "$pulumi_bin" plugin ls --json 2>/dev/null |
        jq --exit-status --arg name "$name" --arg prefix "$prefix" \
            'any(.[]; .kind == "resource" and .name == $name and (.version | startswith($prefix)))' >/dev/null
}

main() {
    local check_only=false
    while [[ $# -gt 0 ]]; do
        case $1 in
            --check) check_only=true ;;
            -h | --help) usage; return 0 ;;
            *) usage; return 2 ;;
        esac
        shift
    done

    local pulumi_bin bin_dir go_bin
    pulumi_bin=$(command -v pulumi 2>/dev/null || true)
    if [[ -n $pulumi_bin ]]; then
        bin_dir=$(dirname "$pulumi_bin")
        log "event=found piece=cli path=$pulumi_bin version=$("$pulumi_bin" version)"
    else
        bin_dir=$(cache_dir)/bin
        go_bin=$(find_go)
        if [[ ! -x $bin_dir/pulumi || ! -x $bin_dir/pulumi-language-nodejs ]]; then
            if [[ -z $go_bin ]]; then
                log "event=missing piece=cli reason=no-pulumi-and-no-go"
                echo "Install the Pulumi CLI with:  curl -fsSL https://get.pulumi.com | sh" >&2
                return 1
            fi
            if [[ $check_only == true ]]; then
                log "event=missing piece=cli would_build=$bin_dir"
                return 3
            fi
            mkdir --parents "$bin_dir"
            [[ -x $bin_dir/pulumi ]] || build_binary "$go_bin" "$ENGINE_DIR/cli" "$CLI_PACKAGE" "$CLI_VERSION" "$bin_dir"
            [[ -x $bin_dir/pulumi-language-nodejs ]] ||
                build_binary "$go_bin" "$ENGINE_DIR/language-nodejs" "$LANGUAGE_HOST_PACKAGE" "$LANGUAGE_HOST_VERSION" "$bin_dir"
        fi
        pulumi_bin=$bin_dir/pulumi
        log "event=found piece=cli path=$pulumi_bin version=$("$pulumi_bin" version)"
    fi

    local entry name prefix wanted missing=()
    for entry in "${PLUGINS[@]}"; do
        read -r name prefix wanted <<<"$entry"
        if PATH="$bin_dir:$PATH" plugin_present "$pulumi_bin" "$name" "$prefix"; then
            log "event=found piece=plugin name=$name"
        else
            log "event=missing piece=plugin name=$name wanted=$wanted"
            missing+=("$name $wanted")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "The Pulumi engine is at $bin_dir, but these resource plugins are missing." >&2
        echo "They cannot be built from the Go module proxy here (scripts/pulumi-engine/README.md). Install them with:" >&2
        for entry in "${missing[@]}"; do
            read -r name wanted <<<"$entry"
            echo "  PATH=$bin_dir:\$PATH pulumi plugin install resource $name $wanted" >&2
        done
        return 3
    fi
    printf '%s\n' "$bin_dir"
}

main "$@"
