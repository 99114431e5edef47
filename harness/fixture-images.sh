#!/usr/bin/env bash
# The local images the real-engine tests and the bench run. Idempotent: an image that exists is
# left as it is.
#   pullthrough-test/registry:3.0.0       distribution 3.0.0 (the default): the archive beside the
#                                         checkout when there is one (shared/fixtures/registry-3,
#                                         built from source; machines without a network use it),
#                                         else the official image, pulled by digest
#   pullthrough-test/registry:2.8-debian  Debian's distribution 2.8 (registry:2 specifics, fixture upstreams)
#   pullthrough-test/nginx:1.22-debian    Debian's nginx laid out like the official nginx image (the front)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shared="${PULLTHROUGH_SHARED:-$here/../../shared}"
# docker.io/library/registry:3.0.0, its multi-platform index: the digest public projects pin for
# that tag (it was not re-read from Docker Hub here, which this machine cannot reach).
official_registry="registry:3.0.0@sha256:6c5666b861f3505b116bb9aa9b25175e71210414bd010d92035ff64018f9457e"

if ! docker image inspect pullthrough-test/registry:3.0.0 >/dev/null 2>&1; then
    archive="$shared/fixtures/registry-3/registry-3.0.0-image.tar.xz"
    if [ -f "$archive" ]; then
        xz -dc "$archive" | docker load >/dev/null
    else
        echo "fixture-images: no $archive; pulling $official_registry" >&2
        docker pull --quiet "$official_registry" >/dev/null || {
            echo "fixture-images: cannot pull $official_registry; put the registry 3.0.0 archive at $archive (or set PULLTHROUGH_SHARED), or run with a network" >&2
            exit 1
        }
        docker tag "$official_registry" pullthrough-test/registry:3.0.0
    fi
fi
bash "$here/registry-image.sh" pullthrough-test/registry:2.8-debian
bash "$here/front-image.sh" pullthrough-test/nginx:1.22-debian
