#!/bin/sh
# Runs `pulumi <args> --stack dev` with a local file backend, so no Pulumi account is needed.
# PULUMI_BACKEND_URL, PULUMI_STACK and PULUMI_CONFIG_PASSPHRASE override the defaults.
set -eu
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://~}"
# Encrypts the stack's secrets (upstream credentials); empty unless you choose one.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-}"
stack="${PULUMI_STACK:-dev}"
pulumi stack select --create "$stack" >/dev/null
exec pulumi "$@" --stack "$stack"
