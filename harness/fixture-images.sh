#!/usr/bin/env bash
# The local images the real-engine tests and the bench run; nothing is ever pulled. Idempotent:
# an image that exists is left as it is.
#   pullthrough-test/registry:3.0.0       distribution 3.0.0 from shared/fixtures/registry-3 (the default)
#   pullthrough-test/registry:2.8-debian  Debian's distribution 2.8 (registry:2 specifics, fixture upstreams)
#   pullthrough-test/nginx:1.22-debian    Debian's nginx laid out like the official nginx image (the front)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shared="${PULLTHROUGH_SHARED:-$here/../../shared}"

if ! docker image inspect pullthrough-test/registry:3.0.0 >/dev/null 2>&1; then
    archive="$shared/fixtures/registry-3/registry-3.0.0-image.tar.xz"
    [ -f "$archive" ] || { echo "fixture-images: $archive not found (set PULLTHROUGH_SHARED)" >&2; exit 1; }
    xz -dc "$archive" | docker load >/dev/null
fi
bash "$here/registry-image.sh" pullthrough-test/registry:2.8-debian
bash "$here/front-image.sh" pullthrough-test/nginx:1.22-debian
