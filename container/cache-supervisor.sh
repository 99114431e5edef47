# Pullthrough's cache entry command (PID 1 of the cache container, run by the image's own sh).
#
# A registry in proxy mode exits at start when its upstream is unreachable (distribution #4038),
# so a cache restarted offline would serve nothing although its volume holds every image. This
# runs the image's registry as a proxy while the upstream answers and as a read-only registry over
# the same storage while it does not. It also watches the volume: a full disk makes the cache
# unhealthy, saying so, and partial uploads it left behind are removed. Only busybox applets
# of the official registry:2 and registry:3 images are used (sh, wget, timeout, cat, head, df,
# find, stat, date, rm).
#
#   PULLTHROUGH_MODE=auto     follow the upstream: proxy when it answers, read-only when not
#   PULLTHROUGH_MODE=offline  never contact the upstream; serve the cache read-only
#   PULLTHROUGH_MODE=proxy    always proxy (supervised only to log in, see below)
#   PULLTHROUGH_REMOTE        the upstream URL (REGISTRY_PROXY_REMOTEURL of proxy mode)
#
# An upstream login, when set, is a `proxy:` section uploaded to /etc/pullthrough-credentials.yml;
# it is appended to the image's own config in a file only root can read, so it never appears in
# the container's environment (docker inspect, /proc/*/environ).
set -u

config=/etc/docker/registry/config.yml
[ -f /etc/distribution/config.yml ] && config=/etc/distribution/config.yml
credentials=/etc/pullthrough-credentials.yml
if [ -f "$credentials" ]; then
    with_login=/tmp/pullthrough-registry.yml
    (umask 077 && { cat "$config" && echo && cat "$credentials"; } >"$with_login")
    config=$with_login
fi
# Read by the healthcheck, so `docker inspect` shows what the cache serves right now.
serving_file=/tmp/pullthrough-serving
probe_interval=10
# Consecutive failed probes before a proxy gives way: one lost probe is not an outage.
failures_before_offline=2
storage=/var/lib/registry
# Read by the healthcheck and the tools: present while the volume cannot take a small write.
disk_full_file=/tmp/pullthrough-disk-full
# A partial upload whose data has not grown for this long is dead: the registry gave up on it.
stale_upload_seconds=30

log() { echo "pullthrough: $*"; }
describe() {
    if [ "$1" = proxy ]; then echo "proxying $PULLTHROUGH_REMOTE"; else echo "serving the cache read-only ($PULLTHROUGH_REMOTE does not answer)"; fi
}

read_only='{"enabled":true}'

if [ "$PULLTHROUGH_MODE" = proxy ]; then
    log "proxy mode: proxying $PULLTHROUGH_REMOTE"
    echo proxy >"$serving_file"
    REGISTRY_PROXY_REMOTEURL="$PULLTHROUGH_REMOTE" exec registry serve "$config"
fi

if [ "$PULLTHROUGH_MODE" = offline ]; then
    log "offline mode: serving the cache read-only; $PULLTHROUGH_REMOTE is never contacted"
    echo offline >"$serving_file"
    export REGISTRY_STORAGE_MAINTENANCE_READONLY="$read_only"
    exec registry serve "$config"
fi

mib() { echo "$(($1 / 1024)) MiB"; }

# Removes partial uploads (…/_uploads/<id>/data) that stopped growing: a failed write leaves them.
remove_stale_uploads() {
    now=$(date +%s)
    find "$storage" -path '*/_uploads/*' -name data 2>/dev/null | while read -r data; do
        age=$((now - $(stat -c %Y "$data" 2>/dev/null || echo "$now")))
        if [ "$age" -ge "$stale_upload_seconds" ]; then
            rm -rf "${data%/data}" && log "removed a partial upload of a failed write: ${data%/data}"
        fi
    done
}

# A full volume fails writes while reads still work; a failed blob write leaves it with no byte
# free, so a 64 KiB probe write (checked every second) tells at once. df says how much is left.
# A volume mounted read-only (a verify view) is left alone.
check_disk() {
    probe="$storage/.pullthrough-probe"
    failed=$(head -c 65536 /dev/zero 2>&1 >"$probe") && failed=
    rm -f "$probe"
    # busybox reports ENOSPC on tmpfs as an I/O error: any failure but a read-only mount counts.
    case "$failed" in
    "" | *"Read-only"*) rm -f "$disk_full_file" ;;
    *)
        remove_stale_uploads
        df -Pk "$storage" | {
            read -r _
            read -r _ size _ available _
            echo "disk is full: $(mib "$available") free of $(mib "$size") on $storage; still serving what it holds"
        } >"$disk_full_file"
        ;;
    esac
}

# Any HTTP answer counts: registries that want a token answer /v2/ with 401.
upstream_answers() {
    answer=$(timeout 5 wget -q -O /dev/null "$PULLTHROUGH_REMOTE/v2/" 2>&1) && return 0
    case "$answer" in *"server returned error"*) return 0 ;; esac
    return 1
}

registry_pid=
serving=

start() {
    if [ "$1" = proxy ]; then
        REGISTRY_PROXY_REMOTEURL="$PULLTHROUGH_REMOTE" registry serve "$config" &
    else
        REGISTRY_STORAGE_MAINTENANCE_READONLY="$read_only" registry serve "$config" &
    fi
    registry_pid=$!
    serving=$1
    echo "$1" >"$serving_file"
}

stop() {
    [ -n "$registry_pid" ] || return 0
    kill "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null
    registry_pid=
}

# A child that exited stays a zombie until waited for, and kill -0 still succeeds on it.
running() {
    [ -n "$registry_pid" ] && read -r _ _ process_state _ <"/proc/$registry_pid/stat" 2>/dev/null && [ "$process_state" != Z ]
}

# Sets $wanted from a fresh probe; a running proxy gives way only after repeated failures.
decide() {
    if upstream_answers; then
        failures=0
        wanted=proxy
        return
    fi
    failures=$((failures + 1))
    if [ "$serving" = proxy ] && [ "$failures" -lt "$failures_before_offline" ]; then wanted=proxy; else wanted=offline; fi
}

trap 'stop; exit 0' TERM INT

failures=0
check_disk
decide
log "auto mode: $(describe "$wanted")"
start "$wanted"
seconds=0
while :; do
    # A background sleep keeps the TERM trap immediate.
    sleep 1 &
    wait $!
    seconds=$((seconds + 1))
    check_disk
    if ! running; then
        wait "$registry_pid" 2>/dev/null
        registry_pid=
        serving=
        decide
        log "registry exited; restarting, $(describe "$wanted")"
        start "$wanted"
    elif [ $((seconds % probe_interval)) -eq 0 ]; then
        decide
        if [ "$wanted" != "$serving" ]; then
            log "switching to $wanted mode: $(describe "$wanted")"
            stop
            start "$wanted"
        fi
    fi
done
