#!/usr/bin/env bash
# Provides the Pulumi engine that a real `pulumi preview/up` of this project needs:
# the CLI, the Node.js language host, and the `command` and `random` resource plugins.
#
#   1. A `pulumi` on PATH is used as it is. Otherwise, with Go, the CLI and the
#      language host are built from the modules pinned in
#      scripts/pulumi-engine/*/go.{mod,sum} into a cache outside the clone, keyed
#      by those pins, so a rerun costs nothing.
#   2. Each plugin is upstream's where one is found: `pulumi-resource-<name>` on
#      PATH, or installed at the wanted release under the user's PULUMI_HOME
#      (~/.pulumi). Otherwise this repository's stand-in serves it, built with
#      Go from scripts/pulumi-engine/standin/ into the cache, keyed by its
#      sources, and reporting its version as `<release>+hx-standin`.
#   3. Plugins go into this repository's own engine home, .engine/home
#      (git-ignored), which the project's tools pass as PULUMI_HOME. Nothing is
#      installed where a `pulumi` outside this repository would pick it up.
#
# HX_PULUMI_PLUGINS=upstream makes a missing upstream plugin an error instead
# of a stand-in (for checking the stand-ins against upstream).
#
# stdout: `bin=<dir to put first on PATH>` and `home=<PULUMI_HOME to use>`.
# stderr: key=value log lines, one `event=plugin` line per plugin.
# Exit: 0 ready; 1 no CLI and no Go; 2 usage; 3 a missing piece (with --check,
# or an upstream plugin that HX_PULUMI_PLUGINS=upstream asks for).
set -Eeuo pipefail

ENGINE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/pulumi-engine" && pwd)
readonly ENGINE_DIR
REPO_DIR=$(cd "$ENGINE_DIR/../.." && pwd)
readonly REPO_DIR
readonly STANDIN_DIR="$ENGINE_DIR/standin"
readonly ENGINE_HOME="${HX_ENGINE_HOME:-$REPO_DIR/.engine/home}"
readonly STANDIN_SUFFIX="+hx-standin"
# Built with the same flags as Pulumi's own release builds.
readonly GO_TAGS="osusergo,grpcnotrace"
readonly VERSION_VAR="github.com/pulumi/pulumi/sdk/v3/go/common/version.Version"
readonly CLI_VERSION="v3.248.0"
readonly CLI_PACKAGE="github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
# The language host module is untagged; the proxy serves it only at v3.163.0's commit.
readonly LANGUAGE_HOST_VERSION="v3.163.0"
readonly LANGUAGE_HOST_PACKAGE="github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"
# name, accepted upstream version prefix, the version @pulumi/<name> in package-lock.json asks for.
readonly PLUGINS=("command 1.2. 1.2.1" "random 4. 4.21.2")
# Only a stack that manages AWS resources needs it, and nothing stands in for it.
readonly AWS_PLUGIN_VERSION="7.48.0"

log() { printf 'hx-install-pulumi %s\n' "$*" >&2; }

usage() {
    cat >&2 <<'EOF'
usage: scripts/install-pulumi.sh [--check]
  --check   only report what is there; build and install nothing
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

user_pulumi_home() {
    printf '%s' "${HX_USER_PULUMI_HOME:-$HOME/.pulumi}"
}

# upstream_plugin_dir NAME PREFIX: a folder under the user's PULUMI_HOME holding an upstream release of
# the plugin whose version starts with PREFIX; never one of our stand-ins, never our own engine home.
upstream_plugin_dir() {
    local name=$1 prefix=$2 user_home dir
    user_home=$(user_pulumi_home)
    [[ $(realpath --canonicalize-missing "$user_home") == "$(realpath --canonicalize-missing "$ENGINE_HOME")" ]] && return 1
    for dir in "$user_home/plugins/resource-$name-v$prefix"*; do
        [[ $dir == *"$STANDIN_SUFFIX" || $dir == *.partial || $dir == *.lock ]] && continue
        [[ -x $dir/pulumi-resource-$name ]] || continue
        printf '%s' "$dir"
        return 0
    done
    return 1
}

# ambient_plugin NAME: a `pulumi-resource-NAME` on PATH; the engine prefers it, whatever its version.
ambient_plugin() {
    command -v "pulumi-resource-$1" 2>/dev/null
}

# install_plugin NAME FOLDER EXECUTABLE: makes FOLDER, holding a link to EXECUTABLE, the engine home's only
# folder of the plugin. A real folder: the engine does not list a linked one.
install_plugin() {
    local name=$1 folder=$2 executable=$3 plugins="$ENGINE_HOME/plugins" existing
    mkdir --parents "$plugins/$folder"
    for existing in "$plugins/resource-$name-v"*; do
        [[ $(basename "$existing") == "$folder" ]] && continue
        rm --recursive --force -- "$existing"
    done
    ln --symbolic --force --no-dereference "$executable" "$plugins/$folder/pulumi-resource-$name"
}

# standin_dir: where the stand-ins are built, keyed by their sources, so an edit rebuilds them.
standin_dir() {
    local key
    key=$(cd "$STANDIN_DIR" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort --zero-terminated |
        xargs --null sha256sum | sha256sum | cut --characters=1-16)
    printf '%s/standin-%s' "${HX_PULUMI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hx-backup}" "$key"
}

# standin_executable NAME CHECK_ONLY: prints the stand-in's executable, building both stand-ins once.
standin_executable() {
    local name=$1 check_only=$2 out go_bin started
    out=$(standin_dir)
    if [[ ! -x $out/pulumi-resource-$name ]]; then
        [[ $check_only == true ]] && { log "event=missing piece=standin name=$name would_build=$out"; return 3; }
        go_bin=$(find_go)
        [[ -n $go_bin ]] || { log "event=missing piece=standin name=$name reason=no-go"; return 1; }
        started=$(date +%s)
        log "event=build package=standin name=$name dir=$out"
        mkdir --parents "$out"
        (cd "$STANDIN_DIR" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$go_bin" build -trimpath -o "$out/" ./cmd/...)
        log "event=built package=standin seconds=$(($(date +%s) - started))"
    fi
    printf '%s' "$out/pulumi-resource-$name"
}

# resolve_plugin NAME PREFIX WANTED CHECK_ONLY: installs upstream's plugin, else the stand-in; logs which.
resolve_plugin() {
    local name=$1 prefix=$2 wanted=$3 check_only=$4 found
    if found=$(ambient_plugin "$name"); then
        # The ambient plugin wins; leave no stand-in beside it to confuse `pulumi plugin ls`.
        [[ $check_only == true ]] || rm --recursive --force -- "$ENGINE_HOME/plugins/resource-$name-v"*"$STANDIN_SUFFIX"
        log "event=plugin name=$name source=upstream how=path path=$found"
        return 0
    fi
    if found=$(upstream_plugin_dir "$name" "$prefix"); then
        [[ $check_only == true ]] || install_plugin "$name" "$(basename "$found")" "$found/pulumi-resource-$name"
        log "event=plugin name=$name source=upstream how=pulumi-home version=$(basename "$found" | sed "s/^resource-$name-v//") path=$found"
        return 0
    fi
    if [[ ${HX_PULUMI_PLUGINS:-} == upstream ]]; then
        log "event=plugin name=$name source=missing wanted=$wanted reason=HX_PULUMI_PLUGINS=upstream"
        echo "HX_PULUMI_PLUGINS=upstream, but no upstream pulumi-resource-$name $prefix* is on PATH or under $(user_pulumi_home)/plugins." >&2
        return 3
    fi
    local executable
    executable=$(standin_executable "$name" "$check_only") || return $?
    [[ $check_only == true ]] || install_plugin "$name" "resource-$name-v$wanted$STANDIN_SUFFIX" "$executable"
    log "event=plugin name=$name source=standin version=$wanted$STANDIN_SUFFIX path=$executable"
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

    local entry name prefix wanted status=0
    for entry in "${PLUGINS[@]}"; do
        read -r name prefix wanted <<<"$entry"
        PATH="$bin_dir:$PATH" resolve_plugin "$name" "$prefix" "$wanted" "$check_only" || status=$?
    done
    if ambient_plugin aws >/dev/null || upstream_plugin_dir aws "$AWS_PLUGIN_VERSION" >/dev/null ||
        [[ -d $ENGINE_HOME/plugins/resource-aws-v$AWS_PLUGIN_VERSION ]]; then
        log "event=plugin name=aws source=upstream"
    else
        # Nothing stands in for it: a stack that manages AWS resources (production) cannot preview without it.
        log "event=plugin name=aws source=missing needed_by=stacks-with-aws-resources" \
            "install=\"PULUMI_HOME=$ENGINE_HOME $bin_dir/pulumi plugin install resource aws $AWS_PLUGIN_VERSION\""
    fi
    [[ $status -eq 0 ]] || return "$status"
    printf 'bin=%s\nhome=%s\n' "$bin_dir" "$ENGINE_HOME"
}

main "$@"
