#!/usr/bin/env bash
# Builds the test-only "second Docker host": Debian's dockerd, containerd, runc, docker CLI,
# iptables and OpenSSH's sshd from this machine's packages, with their shared libraries, in one
# image. Run (nearly) privileged, it is a Docker host on a Docker network, reachable over ssh (root,
# key only) and over TCP with TLS client certificates. Nothing is pulled.
# Usage: docker-host-image.sh TAG   (does nothing when TAG exists in this layout)
set -euo pipefail
tag="$1"
layout=3 # raise when the image's contents change, so existing hosts rebuild it
[ "$(docker image inspect --format '{{index .Config.Labels "pullthrough.layout"}}' "$tag" 2>/dev/null)" = "$layout" ] && exit 0

for binary in /usr/sbin/sshd /usr/bin/ssh-keygen; do
    [ -x "$binary" ] || { echo "docker-host-image: $binary is missing; run scripts/test-host.sh as root" >&2; exit 1; }
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/ssh,root/.ssh,run/sshd,var/lib/docker,var/log,var/run,tmp}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root" "$root/root/.ssh"
install -m 0755 /usr/bin/busybox "$root/bin/busybox"
for applet in $(busybox --list); do ln -s busybox "$root/bin/$applet"; done

binaries=(/usr/sbin/dockerd /usr/bin/docker /usr/bin/containerd /usr/bin/containerd-shim-runc-v2
    /usr/sbin/runc /usr/bin/docker-init /usr/sbin/docker-proxy /usr/sbin/xtables-nft-multi /usr/sbin/sshd)
for binary in "${binaries[@]}"; do install -D -m 0755 "$binary" "$root$binary"; done
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$root/usr/sbin/$name"
done
# iptables' match and target modules (MASQUERADE, addrtype, conntrack …), loaded at run time.
xtables=/usr/lib/x86_64-linux-gnu/xtables
mkdir -p "$root$xtables" && cp -a "$xtables"/. "$root$xtables"/

# Shared libraries of every binary and module, plus the NSS modules name look-ups load.
nss_libs=$(ldconfig -p | awk '/libnss_(dns|files)\.so\.2 /{print $NF}' | sort -u)
for lib in $( (for file in "${binaries[@]}" /usr/bin/busybox "$xtables"/*.so; do ldd "$file" 2>/dev/null || true; done) | grep -o '/[^ ]*' | sort -u) $nss_libs; do
    [ -e "$lib" ] && cp --parents -L "$lib" "$root/"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534::/run/sshd:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo 'root:*:19000:0:99999:7:::' >"$root/etc/shadow"
chmod 0600 "$root/etc/shadow"
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
cat >"$root/etc/ssh/sshd_config" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /root/.ssh/authorized_keys
SetEnv PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
ssh-keygen -q -t ed25519 -N '' -f "$root/etc/ssh/ssh_host_ed25519_key"

# PID 1: dockerd on its own socket, sshd for Docker's ssh:// transport. `authorized_keys` comes
# from the test at run time (PULLTHROUGH_AUTHORIZED_KEY). Run with every capability but
# SYS_RESOURCE (this machine's runc cannot grant that one, so --privileged fails), seccomp and
# AppArmor unconfined, and all devices allowed.
cat >"$root/entrypoint.sh" <<'SH'
#!/bin/sh
set -e
echo "$PULLTHROUGH_AUTHORIZED_KEY" >/root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
# Without --privileged the cgroup (v1) hierarchies arrive read-only: mount them again, writable,
# for the nested runc.
for hierarchy in $(awk '$3 == "cgroup" {print $2}' /proc/mounts); do
    options=$(awk -v at="$hierarchy" '$2 == at {print $4}' /proc/mounts | tr , '\n' |
        grep -vE '^(ro|rw|nosuid|nodev|noexec|relatime)$' | paste -sd, -)
    umount "$hierarchy" && mount -t cgroup -o "rw,nosuid,nodev,noexec,$options" cgroup "$hierarchy"
done
# The test copies a CA and a server certificate for this container's address into /etc/docker-tls
# once it knows the address; dockerd then serves its socket and TLS on port 2376 (Docker's
# --tlsverify: clients need a certificate from the same CA). With no usable resolver dockerd would
# hand its containers 8.8.8.8: nothing may leave, so names outside Docker's own resolve nowhere.
tls=/etc/docker-tls
(
    while [ ! -f "$tls/ready" ]; do sleep 0.2; done
    exec dockerd --host unix:///var/run/docker.sock --host tcp://0.0.0.0:2376 --tlsverify \
        --tlscacert "$tls/ca.pem" --tlscert "$tls/server-cert.pem" --tlskey "$tls/server-key.pem" \
        --dns 127.0.0.1 >/var/log/dockerd.log 2>&1
) &
exec /usr/sbin/sshd -D -e
SH
chmod 0755 "$root/entrypoint.sh"

tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'VOLUME ["/var/lib/docker"]' \
    --change 'EXPOSE 22 2376' \
    --change 'ENTRYPOINT ["/entrypoint.sh"]' \
    --change "LABEL pullthrough.layout=$layout" \
    --change "LABEL org.opencontainers.image.description=\"Test fixture: Debian dockerd $(dpkg-query -W -f='${Version}' docker.io) and sshd $(dpkg-query -W -f='${Version}' openssh-server) as a second Docker host\"" \
    - "$tag" >/dev/null
