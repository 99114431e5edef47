#!/bin/sh
# Runs `pulumi <args> --stack dev` with a local file backend, so no Pulumi account is needed.
# PULUMI_BACKEND_URL, PULUMI_STACK and PULUMI_CONFIG_PASSPHRASE override the defaults.
#
# The CLI is the first `pulumi` on PATH, else the `pulumi` npm package's (a dependency), which
# downloads the CLI from get.pulumi.com on first use. npm puts node_modules/.bin first on PATH,
# so that entry is skipped when looking for an installed one.
set -eu
project="$(cd "$(dirname "$0")/.." && pwd)"

installed_pulumi() {
    (
        IFS=:
        for dir in $PATH; do
            case "$dir" in */node_modules/.bin) continue ;; esac
            if [ -x "$dir/pulumi" ]; then
                echo "$dir/pulumi"
                return
            fi
        done
    )
}

pulumi="$(installed_pulumi)"
if [ -z "$pulumi" ]; then
    pulumi="$project/node_modules/.bin/pulumi"
    get="install it from https://www.pulumi.com/docs/install/ and run this again"
    if [ ! -x "$pulumi" ]; then
        echo "error: no Pulumi CLI on PATH, and no node_modules: run \`npm ci\` first, or $get" >&2
        exit 127
    fi
    if ! why="$("$pulumi" version 2>&1 >/dev/null)"; then
        version="$(node -p 'require(process.argv[1]).version' "$project/node_modules/pulumi/package.json")"
        reason="$(printf '%s' "$why" | tail -n 1)"
        echo "error: no Pulumi CLI on PATH, and downloading v$version from get.pulumi.com failed ($reason): $get" >&2
        exit 127
    fi
fi

export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://~}"
# Encrypts the stack's secrets (upstream credentials); empty unless you choose one.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-}"
stack="${PULUMI_STACK:-dev}"
"$pulumi" stack select --create "$stack" >/dev/null
exec "$pulumi" "$@" --stack "$stack"
