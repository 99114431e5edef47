# Pullthrough's front entry command (run by the nginx image's own sh), then nginx in the foreground.
#
# The front's cache is transient by design: PULLTHROUGH_FRONT_FILES (its cache, temp files and
# socket) is emptied first, so a front that was killed mid-fetch starts clean instead of keeping
# half-written temp files nginx never looks at again, and a socket it could not bind.
#
# docker-proxy hands the front every connection from this host's loopback and from other
# containers with the source address of the front network's gateway, so that network must be
# allowed; its subnet is only known inside the container. It goes to an nginx include of
# `allow` lines, one per network the front is on, read from the kernel's routing table.
# Only sh builtins, cat, rm and mkdir are used, which the Debian and Alpine nginx images all have.
set -eu

rm -rf "${PULLTHROUGH_FRONT_FILES:?}"
mkdir -p "$PULLTHROUGH_FRONT_FILES"

allowed=/etc/nginx/pullthrough-networks.conf

# /proc/net/route writes an IPv4 address as a little-endian hex word: 0060A8C0 is 192.168.96.0.
dotted() {
    rest=$1
    d=${rest%??????}; rest=${rest#??}
    c=${rest%????}; rest=${rest#??}
    b=${rest%??}
    a=${rest#??}
    echo "$((0x$a)).$((0x$b)).$((0x$c)).$((0x$d))"
}

prefix_length() {
    mask=$((0x$1))
    bits=0
    while [ "$mask" -ne 0 ]; do
        bits=$((bits + (mask & 1)))
        mask=$((mask >> 1))
    done
    echo "$bits"
}

: >"$allowed"
while read -r _ destination _ _ _ _ _ mask _; do
    case "$destination" in Destination | 00000000) continue ;; esac
    echo "allow $(dotted "$destination")/$(prefix_length "$mask");" >>"$allowed"
done </proc/net/route
echo "pullthrough: allowing the front's own networks: $(cat "$allowed")"

exec nginx -g 'daemon off;'
