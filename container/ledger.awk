# Pullthrough's ledger: folds the front's pulls into a small record on the front's volume, so
# `status` and `prune` read figures that survive log rotation, restarts and a replaced front, in
# time that grows with what the caches hold and never with how many requests they served.
#
# Input, one line per content request a client pulled (nginx, core/ledger.ts ledgerLogFormat),
# tab-separated:  msec registry method status bytes front-cache-status uri
# and lines the tools write into the same pipe: `sync <id>` (everything before one is in the
# record once the record acknowledges it, `synced … <id> …`), and `forget <registry> manifest|blob
# <key>` (prune removed what it names: the record keeps what the caches hold, not all they ever did).
#
# The record (core/ledger.ts parseLedger), one fact per line:
#   since <epoch s>                                      when counting began
#   served <registry> <requests> <bytes> <front hits>    content requests answered 2xx or 304
#   manifest <registry> <repository>:<tag>|@<digest> <epoch s>   last served
#   blob <registry> <digest> <epoch s>                    last sent by GET
#   synced <id> …                                        the tools' latest syncs
#   unrouted <ns> <requests> <epoch s>                   asked of the one port, no cache for it
#
# The one port (core/front.ts) also writes `msec unrouted ns` for a request no cache serves; its
# ns counts in lower case, "(none)" when there was none, at most 100 of them, the rest as
# "(others)", so the record stays small whatever clients send.
#
# Written whole to a temporary file and renamed over the record: at most once a second while
# pulls come in, at once for a sync, and at the end of input (the front stopping). Runs on the
# awk of both official nginx images (mawk, busybox) and gawk; `record` and `started` come as -v.
BEGIN {
    FS = "\t"
    since = started
    while ((getline line < record) > 0) load(line)
    close(record)
    last_flush = 0
    recent_syncs = 8
}

function load(line,    field) {
    split(line, field, " ")
    if (field[1] == "since") since = field[2]
    else if (field[1] == "served") {
        requests[field[2]] = field[3]
        bytes[field[2]] = field[4]
        front_hits[field[2]] = field[5]
    } else if (field[1] == "manifest") manifest[field[2] " " field[3]] = field[4]
    else if (field[1] == "blob") blob[field[2] " " field[3]] = field[4]
    else if (field[1] == "unrouted") {
        if (!(field[2] in unrouted)) unrouted_kinds++
        unrouted[field[2]] = field[3]
        unrouted_last[field[2]] = field[4]
    }
}

/^sync [0-9a-f]+$/ {
    count = split(synced " " substr($0, 6), ids, " ")
    synced = ""
    for (i = count > recent_syncs ? count - recent_syncs + 1 : 1; i <= count; i++)
        synced = synced " " ids[i]
    flush()
    next
}

/^forget [^ ]+ (manifest|blob) [^ ]+$/ {
    split($0, field, " ")
    if (field[3] == "manifest") delete manifest[field[2] " " field[4]]
    else delete blob[field[2] " " field[4]]
    dirty = 1
    next
}

NF == 3 && $2 == "unrouted" {
    ns = tolower($3)
    # The query as sent: Go's client sends a port's colon as %3A.
    gsub(/%3a/, ":", ns)
    if (ns == "-" || ns == "") ns = "(none)"
    else if (ns !~ /^[a-z0-9][a-z0-9.-]*(:[0-9]+)?$/) ns = "(invalid)"
    if (!(ns in unrouted) && unrouted_kinds >= 100) ns = "(others)"
    if (!(ns in unrouted)) unrouted_kinds++
    unrouted[ns] += 1
    now = int($1)
    unrouted_last[ns] = now
    dirty = 1
    if (now >= last_flush + 1) {
        last_flush = now
        flush()
    }
    next
}

NF == 7 && ($4 == 304 || ($4 >= 200 && $4 < 300)) {
    registry = $2
    requests[registry] += 1
    bytes[registry] += $5
    if ($6 == "HIT") front_hits[registry] += 1
    now = int($1)
    if (match($7, /\/(manifests|blobs)\/[^\/]+$/)) {
        repository = substr($7, 5, RSTART - 5)
        reference = substr($7, RSTART + 1)
        kind = substr(reference, 1, index(reference, "/") - 1)
        reference = substr(reference, length(kind) + 2)
        if (kind == "manifests")
            manifest[registry " " repository (reference ~ /^sha256:/ ? "@" : ":") reference] = now
        else if ($3 == "GET")
            blob[registry " " reference] = now
    }
    dirty = 1
    if (now >= last_flush + 1) {
        last_flush = now
        flush()
    }
}

END {
    if (dirty) flush()
}

function flush(    temporary, key) {
    temporary = record ".tmp"
    printf "since %.0f\n", since > temporary
    for (key in requests)
        printf "served %s %.0f %.0f %.0f\n", key, requests[key], bytes[key], front_hits[key] > temporary
    for (key in manifest) printf "manifest %s %.0f\n", key, manifest[key] > temporary
    for (key in blob) printf "blob %s %.0f\n", key, blob[key] > temporary
    for (key in unrouted)
        printf "unrouted %s %.0f %.0f\n", key, unrouted[key], unrouted_last[key] > temporary
    if (synced != "") printf "synced%s\n", synced > temporary
    close(temporary)
    system("mv -f '" temporary "' '" record "'")
    dirty = 0
}
