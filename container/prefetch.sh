# Pullthrough's prefetcher, run in the front by its entry command (front-entry.sh) when prefetch
# is on. nginx writes a line into PULLTHROUGH_PREFETCH_PIPE for every platform manifest a client
# pulled (`<cache port> <manifest uri> <manifest digest>`; core/front.ts says which: never an
# index, never a tool's view or the prefetcher's own request). The first time a manifest digest
# comes by, its layers and config are asked of the front, PULLTHROUGH_PREFETCH_CONCURRENCY at a
# time, on the cache's own port: through the front's cache lock, so each blob is fetched
# upstream once, by whichever asks first, the prefetcher or a node.
#
# The reading loop never waits for a fetch (a full pipe would stall nginx's workers): each
# image's prefetch runs in the background. A request that gets no byte for
# PULLTHROUGH_PREFETCH_STALL_SECONDS gives up its slot; nginx keeps the fetch behind it going
# (a cacheable response outlives its client), so a node waiting on that blob gets it when the
# link moves again. A fetch the upstream breaks off leaves a partial upload that the cache's
# supervisor removes, as any cut fetch's. Requests go to 127.0.0.1 inside the container, over
# TLS without checking the name when the front serves HTTPS (the certificate need not name
# 127.0.0.1), with the tools' token past the pull credentials.
#
# curl (the Debian image) or busybox wget (the Alpine one), xargs, awk, cat, find, rm and mkdir.
set -u

token=$(cat "$PULLTHROUGH_TOOL_TOKEN")

# get URL [ACCEPT]: the body on stdout, asked as the prefetcher (not a pull) with the tools' token.
if command -v curl >/dev/null 2>&1; then
    get() {
        set -- "$1" -H "Accept: ${2:-*/*}" -H "X-Pullthrough-Prefetch: 1" \
            -H "$PULLTHROUGH_TOOL_HEADER_NAME: $token"
        curl -fsS -k --speed-limit 1 --speed-time "$PULLTHROUGH_PREFETCH_STALL_SECONDS" "$@"
    }
else
    get() {
        set -- "$1" --header "Accept: ${2:-*/*}" --header "X-Pullthrough-Prefetch: 1" \
            --header "$PULLTHROUGH_TOOL_HEADER_NAME: $token"
        wget -q -O - --no-check-certificate -T "$PULLTHROUGH_PREFETCH_STALL_SECONDS" "$@"
    }
fi

# `prefetch.sh blob URL`: one blob, for the xargs below.
if [ "${1:-}" = blob ]; then
    get "$2" >/dev/null 2>&1
    exit 0
fi

# Platform manifests only: the prefetcher asks for one by the digest a client was served.
accept="application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

# The blob URLs of a manifest, under PREFIX: its layers last to first, then its config. A node
# asks for the config and then the layers first to last, so the two start at opposite ends and
# rarely wait on each other's fetch (a waiter gets nothing until the whole blob is cached).
blob_urls() {
    awk -v prefix="$1" '{
        while (match($0, /"digest"[ \t]*:[ \t]*"sha256:[0-9a-f]+"/)) {
            found = substr($0, RSTART, RLENGTH)
            sub(/^.*"sha256:/, "sha256:", found)
            sub(/"$/, "", found)
            urls[++count] = prefix found
            $0 = substr($0, RSTART + RLENGTH)
        }
    }
    END { for (i = count; i >= 1; i--) print urls[i] }'
}

prefetch_image() { # PORT REPOSITORY DIGEST
    base="$PULLTHROUGH_PREFETCH_SCHEME://127.0.0.1:$1/v2/$2"
    manifest=$(get "$base/manifests/$3" "$accept" 2>/dev/null) || return 0
    printf '%s\n' "$manifest" | blob_urls "$base/blobs/" |
        xargs -n 1 -P "$PULLTHROUGH_PREFETCH_CONCURRENCY" sh "$0" blob
}

mkdir -p "$PULLTHROUGH_PREFETCH_SEEN"
while read -r port uri digest; do
    case "$digest" in sha256:*) ;; *) continue ;; esac
    mark="$PULLTHROUGH_PREFETCH_SEEN/${digest#sha256:}"
    [ -e "$mark" ] && continue
    # A mark a day old goes: a front that runs all season keeps a day's marks, not a season's.
    find "$PULLTHROUGH_PREFETCH_SEEN" -type f -mmin +1440 -exec rm -f {} + 2>/dev/null
    : >"$mark"
    repository=${uri#/v2/}
    repository=${repository%/manifests/*}
    prefetch_image "$port" "$repository" "$digest" &
done
# nginx closed the pipe: it is stopping, and the fetches in flight end with it.
