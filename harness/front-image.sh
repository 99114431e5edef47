#!/usr/bin/env bash
# Builds the test-only front image: Debian's nginx laid out like the official `nginx` image
# (nginxinc/docker-nginx, Debian variant): /etc/nginx/nginx.conf including conf.d/*.conf inside
# http {}, workers as user nginx (uid 101), the access log on stdout, curl for health checks,
# `nginx -g 'daemon off;'` as the command. Nothing is pulled.
# Differences: Debian's nginx 1.22 instead of nginx.org's build, and an entrypoint that only execs
# its command (the official one also runs /docker-entrypoint.d/ scripts, which Pullthrough does
# not use), and no STOPSIGNAL (`docker import` cannot set it; nginx stops on TERM too).
# Usage: front-image.sh TAG   (does nothing when TAG exists in this layout)
set -euo pipefail
tag="$1"
layout=5 # raise when the image's contents change, so existing hosts rebuild it
[ "$(docker image inspect --format '{{index .Config.Labels "pullthrough.layout"}}' "$tag" 2>/dev/null)" = "$layout" ] && exit 0

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/sbin,etc/nginx/conf.d,var/log/nginx,var/cache/nginx,var/lib/nginx,var/run,tmp}
chmod 1777 "$root/tmp"
install -m 0755 /usr/sbin/nginx "$root/usr/sbin/nginx"
install -m 0755 /usr/bin/curl "$root/bin/curl"
install -m 0755 /usr/bin/busybox "$root/bin/busybox"
# The shell and the few tools Pullthrough runs in the front, all in both official images (busybox
# awk as in the Alpine one; the Debian one has mawk).
for applet in sh cat ls rm mkdir find mv mkfifo date sleep timeout awk xargs; do ln -s busybox "$root/bin/$applet"; done
cp /etc/nginx/mime.types "$root/etc/nginx/mime.types"

nss_libs=$(ldconfig -p | awk '/libnss_(dns|files)\.so\.2 /{print $NF}' | sort -u)
for lib in $( (ldd /usr/sbin/nginx; ldd /usr/bin/curl; ldd /usr/bin/busybox) | grep -o '/[^ ]*' | sort -u) $nss_libs; do
    cp --parents -L "$lib" "$root/"
done
cp --parents -L /etc/ssl/certs/ca-certificates.crt "$root/" 2>/dev/null || true
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnginx:x:101:\n' >"$root/etc/group"
ln -s /dev/stdout "$root/var/log/nginx/access.log"
ln -s /dev/stderr "$root/var/log/nginx/error.log"

# The official image's nginx.conf.
cat >"$root/etc/nginx/nginx.conf" <<'CONF'
user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
CONF
# The official image's default site, which a front replaces.
cat >"$root/etc/nginx/conf.d/default.conf" <<'CONF'
server {
    listen       80;
    location / {
        return 200 "nginx\n";
    }
}
CONF
printf '#!/bin/sh\nset -e\nexec "$@"\n' >"$root/docker-entrypoint.sh"
chmod 0755 "$root/docker-entrypoint.sh"

tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'EXPOSE 80' \
    --change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
    --change 'CMD ["nginx", "-g", "daemon off;"]' \
    --change "LABEL pullthrough.layout=$layout" \
    --change "LABEL org.opencontainers.image.description=\"Test fixture: Debian nginx $(dpkg-query -W -f='${Version}' nginx) as the nginx image\"" \
    - "$tag" >/dev/null
