#!/bin/sh
# `npm run pulumi -- <args>` (and up, preview, outputs, destroy): runs `pulumi <args> --stack dev`
# with a local file backend, so no Pulumi account is needed. PULUMI_BACKEND_URL, PULUMI_STACK and
# PULUMI_CONFIG_PASSPHRASE override the defaults.
#
# The CLI is the first `pulumi` on PATH at least as new as the floor below, else the `pulumi` npm
# package's (a dependency), which downloads the CLI from get.pulumi.com on first use. npm puts
# node_modules/.bin first on PATH, so that entry is skipped when looking for an installed one.
set -eu
project="$(cd "$(dirname "$0")/.." && pwd)"
# Pulumi.yaml types its config (`type: object`), which the CLI understands from 3.187.0 on.
floor=3.187.0

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

# Whether version $1 (x.y.z, a suffix allowed) is at least $2; an unreadable one is given the benefit.
at_least() {
    case "$1" in [0-9]*.[0-9]*.[0-9]*) ;; *) return 0 ;; esac
    saved_ifs=$IFS
    IFS=.
    # shellcheck disable=SC2086
    set -- $1 $2
    IFS=$saved_ifs
    patch=${3%%[!0-9]*}
    [ "$1" -ne "$4" ] && { [ "$1" -gt "$4" ]; return; }
    [ "$2" -ne "$5" ] && { [ "$2" -gt "$5" ]; return; }
    [ "${patch:-0}" -ge "$6" ]
}

pulumi="$(installed_pulumi)"
if [ -n "$pulumi" ]; then
    version="$("$pulumi" version 2>/dev/null || true)"
    version=${version#v}
    if ! at_least "$version" "$floor"; then
        echo "pullthrough: $pulumi is v$version, older than the $floor Pulumi.yaml needs; using the pulumi npm package's CLI instead" >&2
        pulumi=
    fi
fi
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
        # Node's fetch says only "fetch failed" when no connection could be made at all.
        case "$reason" in *"fetch failed") reason="$reason: get.pulumi.com could not be reached; is this machine offline?" ;; esac
        echo "error: no Pulumi CLI on PATH, and downloading v$version from get.pulumi.com failed ($reason): $get" >&2
        exit 127
    fi
fi

export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://~}"
# Encrypts the stack's secrets (upstream credentials); empty unless you choose one.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-}"
# The stack: the command's own --stack (or -s), else PULUMI_STACK, else dev. Found before anything
# is selected, so `npm run pulumi -- up --stack prod` never makes a dev stack on the way.
stack="${PULUMI_STACK:-dev}"
given_stack=
previous=
for arg in "$@"; do
    case "$previous" in --stack | -s) stack=$arg given_stack=1 ;; esac
    case "$arg" in --stack=*) stack=${arg#--stack=} given_stack=1 ;; esac
    previous=$arg
done

# Commands about the CLI itself take no stack.
case "${1:-}" in "" | -* | version | help | login | logout | whoami | plugin | gen-completion)
    exec "$pulumi" "$@"
    ;;
esac

# Under sudo (a QEMU cluster needs root), the user's Pulumi state, talosctl state and stack file
# go back to the user afterwards: otherwise what the run wrote stays root's, and the next run
# without sudo fails on it. `sudo -E` keeps HOME, so both runs share one state.
if [ "$(id -u)" = 0 ] && [ -n "${SUDO_UID:-}" ]; then
    if [ "$HOME" = "$(getent passwd root | cut -d: -f6)" ]; then
        echo "pullthrough: sudo set HOME to root's, so this run would use root's Pulumi state, not yours: run \`sudo -E npm run ...\` instead" >&2
        exit 2
    fi
    give_back() {
        find "$HOME/.pulumi" "$HOME/.talos" "$project/Pulumi.$stack.yaml" -user 0 \
            -exec chown -h "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" {} + 2>/dev/null || true
        echo "pullthrough: ran as root under sudo; gave ${SUDO_USER:-uid $SUDO_UID} back ~/.pulumi, ~/.talos and Pulumi.$stack.yaml" >&2
    }
    trap give_back EXIT
    # exec would skip the trap.
    run() { "$@"; }
else
    run() { exec "$@"; }
fi
"$pulumi" stack select --create "$stack" >/dev/null
if [ -n "$given_stack" ]; then
    run "$pulumi" "$@"
else
    run "$pulumi" "$@" --stack "$stack"
fi
