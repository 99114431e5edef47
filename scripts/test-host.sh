#!/usr/bin/env bash
# Makes this machine ready for the real-engine tests: the Debian packages they use and a running
# Docker engine. Idempotent, and quick when everything is already there. Needs root.
set -euo pipefail

packages=(docker.io containerd docker-registry busybox nginx curl xz-utils apache2-utils util-linux openssh-client openssh-server openssl skopeo podman netavark aardvark-dns)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} > 0)); then
    echo "test-host: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log=/var/log/pullthrough-dockerd.log
    echo "test-host: starting dockerd (log: $log)"
    nohup dockerd >"$log" 2>&1 &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        echo "test-host: dockerd did not come up within 60 s" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
fi
echo "test-host: Docker $(docker version --format '{{.Server.Version}}') is up"
bash "$(dirname "$0")/../harness/fixture-images.sh"
