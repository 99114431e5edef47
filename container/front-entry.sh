# Pullthrough's front entry command (run by the nginx image's own sh), then nginx in the foreground.
#
# The front's cache is transient by design: PULLTHROUGH_FRONT_FILES (its cache, temp files and
# socket) is emptied first, so a front that was killed mid-fetch starts clean instead of keeping
# half-written temp files nginx never looks at again, and a socket it could not bind.
#
# docker-proxy hands the front every connection from this host's loopback and from other
# containers with the source address of the front network's gateway, so that network must be
# allowed; its subnet is only known inside the container. It goes to an nginx include
# (PULLTHROUGH_NETWORKS_CONF) of `allow` lines, one per network the front is on, read from the
# kernel's routing table.
#
# nginx resolves the registries' names with the engine's DNS, which differs by engine (Docker's
# embedded 127.0.0.11, Podman's network gateway): the first nameserver of /etc/resolv.conf goes
# to another include (PULLTHROUGH_RESOLVER_CONF).
#
# The ledger (core/ledger.ts): nginx writes one line per pull into a pipe, which awk folds into a
# record on the front's volume (PULLTHROUGH_LEDGER_*). This shell stays PID 1: on the engine's
# stop signal it asks nginx to finish its requests and quit, and once nginx has closed the pipe
# awk writes the record a last time, so a restart or a replaced front loses no pull. Should the
# fold stop, nginx is stopped too and the engine restarts the front, rather than serve pulls
# nobody counts. The prefetcher (when on) reads a pipe of its own, and is watched the same way.
#
# The tools' token (core/front.ts toolHeader): a random UUID from the kernel (122 bits of its
# CSPRNG, and short enough for nginx's default map_hash_bucket_size), new at every start, in a
# file the tools read with `docker exec` and in an nginx map that lets a request carrying it past
# the pull credentials (when the stack has any).
#
# Only sh builtins, cat, rm, mkdir, mkfifo, mv, date, sleep and awk are used (and by the
# prefetcher curl or wget, and xargs), which the Debian and Alpine nginx images all have (mawk in
# one, busybox awk in the other).
set -eu

rm -rf "${PULLTHROUGH_FRONT_FILES:?}"
mkdir -p "$PULLTHROUGH_FRONT_FILES"

allowed=$PULLTHROUGH_NETWORKS_CONF

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

nameserver=
while read -r keyword address _; do
    if [ "$keyword" = nameserver ]; then
        nameserver=$address
        break
    fi
done </etc/resolv.conf
[ -n "$nameserver" ] || { echo "pullthrough: no nameserver in /etc/resolv.conf to find the caches by name" >&2 && exit 1; }
case "$nameserver" in *:*) nameserver="[$nameserver]" ;; esac
echo "resolver $nameserver valid=2s ipv6=off;" >"$PULLTHROUGH_RESOLVER_CONF"
echo "pullthrough: resolving the caches' names with $nameserver"

token=$(cat /proc/sys/kernel/random/uuid)
umask 077
printf %s "$token" >"$PULLTHROUGH_TOOL_TOKEN"
umask 022
printf 'map %s $pullthrough_realm {\n    default "Pullthrough";\n    "%s" off;\n}\n' \
    "$PULLTHROUGH_TOOL_HEADER" "$token" >"$PULLTHROUGH_TOOL_TOKEN_MAP"

pipe=$PULLTHROUGH_LEDGER_PIPE
rm -f "$pipe"
mkfifo -m 600 "$pipe"
# The pipe's reader first: nginx's open of it for writing waits for one.
awk -v record="$PULLTHROUGH_LEDGER_RECORD" -v started="$(date +%s)" -f "$PULLTHROUGH_LEDGER_PROGRAM" <"$pipe" &
fold=$!
# The prefetcher (container/prefetch.sh), when the stack has it on: the same kind of pipe.
prefetcher=
if [ -n "${PULLTHROUGH_PREFETCH_PIPE:-}" ]; then
    rm -f "$PULLTHROUGH_PREFETCH_PIPE"
    mkfifo -m 600 "$PULLTHROUGH_PREFETCH_PIPE"
    sh "$PULLTHROUGH_PREFETCH_PROGRAM" <"$PULLTHROUGH_PREFETCH_PIPE" &
    prefetcher=$!
fi
nginx -g 'daemon off;' &
server=$!
echo "pullthrough: counting pulls in $PULLTHROUGH_LEDGER_RECORD"

stopping=
trap 'stopping=1; kill -QUIT "$server" 2>/dev/null || true' TERM QUIT INT
# A child that exited stays a zombie until waited for, and kill -0 still succeeds on it.
alive() { read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null && [ "$state" != Z ]; }
helpers_alive() { alive "$fold" && { [ -z "$prefetcher" ] || alive "$prefetcher"; }; }
while alive "$server" && helpers_alive; do
    # A background sleep keeps the trap immediate.
    sleep 1 &
    wait $! || true
done
if alive "$server"; then
    echo "pullthrough: the ledger's fold or the prefetcher stopped; stopping nginx so the front restarts" >&2
    kill -QUIT "$server" 2>/dev/null || true
fi
status=0
wait "$server" || status=$?
# nginx is gone and the pipe has no writer: awk reads to its end and writes the record.
wait "$fold" || true
[ -n "$stopping" ] || exit "$((status == 0 ? 1 : status))"
