# Pullthrough's cache entry command (PID 1 of the cache container, run by the image's own sh).
#
# A registry in proxy mode exits at start when its upstream is unreachable (distribution #4038),
# so a cache restarted offline would serve nothing although its volume holds every image. This
# runs the image's registry as a proxy while the upstream answers and as a read-only registry over
# the same storage while it does not. It also watches the volume: a full disk makes the cache
# unhealthy, saying so, and partial uploads that interrupted fetches left behind are removed.
# Only busybox applets of the official registry:2 and registry:3 images are used (sh, wget,
# timeout, cat, head, df, find, stat, date, ls, rm, mkdir, mv, touch, nc, awk).
#
#   PULLTHROUGH_MODE=auto     follow the upstream: proxy when it answers, read-only when not
#   PULLTHROUGH_MODE=offline  never contact the upstream; serve the cache read-only
#   PULLTHROUGH_MODE=proxy    always proxy
#   PULLTHROUGH_MODE=writable the tools' writable view: the image's own registry, taking pushes
#   PULLTHROUGH_REMOTE        the upstream URL (REGISTRY_PROXY_REMOTEURL of proxy mode)
#   PULLTHROUGH_VIEW_LEASE_SECONDS  a tool's view only: stop once $lease_file is this old, so a
#                             view outlives a killed tool by at most that long
#
# An upstream login, when set, is a `proxy:` section uploaded to $credentials; it is appended to
# the image's own config in a file only root can read, so it never appears in the container's
# environment (docker inspect, /proc/*/environ).
#
# With the argument `uploads` it only lists the partial uploads (see list_uploads): how the tools
# (status, prune, import) see them, by the same rule the supervisor removes them. With `figures`
# it prints what the cache fetched upstream since its volume began counting (see upstream_figures).
set -u

# Paths the TypeScript side shares: these five lines are rendered from core/container-facts.ts.
storage=/var/lib/registry
serving_file=/tmp/pullthrough-serving
disk_full_file=/tmp/pullthrough-disk-full
credentials=/etc/pullthrough-credentials.yml
lease_file=/tmp/pullthrough-view-lease

root=$storage/docker/registry/v2
# An upload nobody in this container holds open and that has not grown for this long is dead.
# A live proxied fetch is held open by the registry however slow its upstream; the time is for
# writers in other containers (the tools' writable views), which write without pause. While the
# disk is full no write can succeed, and one the registry still holds is dead too (it closes a
# failed write's file only when Go collects it, up to 2 minutes later).
stale_upload_seconds=30

# One line per partial upload: `upload SIZE MTIME writing|stale PATH`, PATH under the registry's
# root ($root). An upload is a folder `_uploads/<id>` of a repository; the registry
# holds its `data` open for as long as the blob writer lives (distribution
# registry/storage/driver/filesystem/driver.go, Writer).
list_uploads() {
    now=$(date +%s)
    held=$(ls -l /proc/[0-9]*/fd/ 2>/dev/null)
    find "$root/repositories" \( -name _layers -o -name _manifests \) -prune -o \
        -path '*/_uploads/*' -prune -type d -print 2>/dev/null | while read -r upload; do
        if [ -f "$upload/data" ]; then
            set -- $(stat -c '%s %Y' "$upload/data")
        else
            set -- 0 "$(stat -c %Y "$upload")"
        fi
        state=stale
        [ -s "$disk_full_file" ] || case "$held" in *" -> $upload/"*) state=writing ;; esac
        [ $((now - $2)) -ge "$stale_upload_seconds" ] || state=writing
        echo "upload $1 $2 $state ${upload#"$root"/}"
    done
}

# The registry's proxy counters (registry 3's Prometheus metrics on its debug port) start at zero
# with every registry process. Their totals live in the volume, one line:
#   <since> <misses carried> <bytes carried> <misses of the live process> <bytes of the live process>
# The live process's counters are saved every probe and when it is stopped, and carried over
# when the next one starts, so the totals survive restarts, mode switches and new containers.
figures_file=$storage/pullthrough/upstream-figures

# `misses bytes` of the running registry, asked on the debug port of the official registry:3
# config (`http.debug.addr: :5001`) over HTTP/1.0; nothing when it has none (registry 2).
registry_counters() {
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | nc -w 3 127.0.0.1 5001 2>/dev/null |
        awk '/^registry_proxy_misses_total/ { misses += $NF; seen = 1 }
            /^registry_proxy_pulled_bytes_total/ { bytes += $NF }
            END { if (seen) printf "%.0f %.0f\n", misses, bytes }'
}

read_figures() {
    since=$(date +%s) carried_misses=0 carried_bytes=0 live_misses=0 live_bytes=0
    [ ! -f "$figures_file" ] ||
        read -r since carried_misses carried_bytes live_misses live_bytes <"$figures_file"
}

# A read-only volume (a read-only view) keeps what it has: nothing is written, nothing is said.
write_figures() {
    mkdir -p "${figures_file%/*}" 2>/dev/null &&
        echo "$since $carried_misses $carried_bytes $live_misses $live_bytes" >"$figures_file.tmp" 2>/dev/null &&
        mv -f "$figures_file.tmp" "$figures_file" 2>/dev/null || true
}

# A tool's view runs a registry of its own over the cache's volume: its counters are not the
# cache's, and it must not move the cache's figures either.
is_view() { [ -n "${PULLTHROUGH_VIEW_LEASE_SECONDS:-}" ]; }

save_live_figures() {
    ! is_view || return 0
    counters=$(registry_counters)
    [ -n "$counters" ] || return 0
    read_figures
    set -- $counters
    live_misses=$1 live_bytes=$2
    write_figures
}

carry_figures() {
    ! is_view || return 0
    read_figures
    carried_misses=$((carried_misses + live_misses)) carried_bytes=$((carried_bytes + live_bytes))
    live_misses=0 live_bytes=0
    write_figures
}

# `upstream <since> <misses> <bytes>`: the carried totals plus the live process's counters.
upstream_figures() {
    read_figures
    counters=$(registry_counters)
    if [ -n "$counters" ]; then
        set -- $counters
        live_misses=$1 live_bytes=$2
    fi
    echo "upstream $since $((carried_misses + live_misses)) $((carried_bytes + live_bytes))"
}

case "${1:-}" in
uploads)
    list_uploads
    exit 0
    ;;
figures)
    upstream_figures
    exit 0
    ;;
esac

config=/etc/docker/registry/config.yml
[ -f /etc/distribution/config.yml ] && config=/etc/distribution/config.yml
if [ -f "$credentials" ]; then
    with_login=/tmp/pullthrough-registry.yml
    (umask 077 && { cat "$config" && echo && cat "$credentials"; } >"$with_login")
    config=$with_login
fi
probe_interval=10
# Consecutive failed probes before a proxy gives way: one lost probe is not an outage.
failures_before_offline=2

log() { echo "pullthrough: $*"; }
describe() {
    case "$PULLTHROUGH_MODE/$1" in
    */proxy) echo "proxying $PULLTHROUGH_REMOTE" ;;
    writable/*) echo "taking pushes into the cache (a tool's writable view)" ;;
    offline/*) echo "serving the cache read-only; $PULLTHROUGH_REMOTE is never contacted" ;;
    *) echo "serving the cache read-only ($PULLTHROUGH_REMOTE does not answer)" ;;
    esac
}

mib() { echo "$(($1 / 1024)) MiB"; }

# A volume mounted read-only (a read-only view) keeps what it has: rm fails and nothing is said.
remove_stale_uploads() {
    list_uploads | while read -r _ size _ state upload; do
        [ "$state" = stale ] && rm -rf "${root:?}/$upload" 2>/dev/null &&
            log "removed a partial upload an interrupted fetch left: $upload ($((size / 1024)) KiB)"
    done
}

# A full volume fails writes while reads still work; a failed blob write leaves it with no byte
# free, so a 64 KiB probe write (checked every second) tells at once. df says how much is left.
check_disk() {
    probe="$storage/.pullthrough-probe"
    failed=$(head -c 65536 /dev/zero 2>&1 >"$probe") && failed=
    rm -f "$probe"
    # busybox reports ENOSPC on tmpfs as an I/O error: any failure but a read-only mount counts.
    case "$failed" in
    "" | *"Read-only"*) rm -f "$disk_full_file" ;;
    *)
        df -Pk "$storage" | {
            read -r _
            read -r _ size _ available _
            echo "disk is full: $(mib "$available") free of $(mib "$size") on $storage; still serving what it holds"
        } >"$disk_full_file"
        remove_stale_uploads
        ;;
    esac
}

# Any HTTP answer counts: registries that want a token answer /v2/ with 401.
upstream_answers() {
    answer=$(timeout 5 wget -q -O /dev/null "$PULLTHROUGH_REMOTE/v2/" 2>&1) && return 0
    case "$answer" in *"server returned error"*) return 0 ;; esac
    return 1
}

read_only='{"enabled":true}'
registry_pid=
serving=

start() {
    carry_figures
    if [ "$1" = proxy ]; then
        REGISTRY_PROXY_REMOTEURL="$PULLTHROUGH_REMOTE" registry serve "$config" &
    elif [ "$1" = writable ]; then
        registry serve "$config" &
    else
        REGISTRY_STORAGE_MAINTENANCE_READONLY="$read_only" registry serve "$config" &
    fi
    registry_pid=$!
    serving=$1
    echo "$1" >"$serving_file"
}

stop() {
    [ -n "$registry_pid" ] || return 0
    save_live_figures
    kill "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null
    registry_pid=
}

# A child that exited stays a zombie until waited for, and kill -0 still succeeds on it.
running() {
    [ -n "$registry_pid" ] && read -r _ _ process_state _ <"/proc/$registry_pid/stat" 2>/dev/null && [ "$process_state" != Z ]
}

# Sets $wanted: the fixed modes as they are; auto from a fresh probe, where a running proxy gives
# way only after repeated failures.
decide() {
    case "$PULLTHROUGH_MODE" in proxy | offline | writable)
        wanted=$PULLTHROUGH_MODE
        return
        ;;
    esac
    if upstream_answers; then
        failures=0
        wanted=proxy
        return
    fi
    failures=$((failures + 1))
    if [ "$serving" = proxy ] && [ "$failures" -lt "$failures_before_offline" ]; then wanted=proxy; else wanted=offline; fi
}

# A view whose tool stopped renewing its lease (killed, or gone with its machine) stops itself.
lease_expired() {
    is_view || return 1
    renewed=$(stat -c %Y "$lease_file" 2>/dev/null) || renewed=0
    [ $(($(date +%s) - renewed)) -ge "$PULLTHROUGH_VIEW_LEASE_SECONDS" ]
}

trap 'stop; exit 0' TERM INT

! is_view || touch "$lease_file"
failures=0
check_disk
remove_stale_uploads
decide
log "$PULLTHROUGH_MODE mode: $(describe "$wanted")"
start "$wanted"
seconds=0
while :; do
    # A background sleep keeps the TERM trap immediate.
    sleep 1 &
    wait $!
    seconds=$((seconds + 1))
    if lease_expired; then
        log "no tool renewed this view's lease for ${PULLTHROUGH_VIEW_LEASE_SECONDS} s; stopping"
        stop
        exit 0
    fi
    check_disk
    if ! running; then
        wait "$registry_pid" 2>/dev/null
        registry_pid=
        serving=
        decide
        log "registry exited; restarting, $(describe "$wanted")"
        start "$wanted"
    elif [ $((seconds % probe_interval)) -eq 0 ]; then
        save_live_figures
        remove_stale_uploads
        decide
        if [ "$wanted" != "$serving" ]; then
            log "switching to $wanted mode: $(describe "$wanted")"
            stop
            start "$wanted"
        fi
    fi
done
