#!/usr/bin/env bash
# Builds the release binary and installs it under a staging root, the way the
# container image gets it: the build stage of deploy/Dockerfile runs this
# script, and so does the deploy.image test, so CI builds what ships.
#
#   deploy/image-build.sh STAGING_DIR [BUILD_DIR]
#
# Installs to STAGING_DIR/usr/local/bin/feedback-consumer (stripped). The
# build directory defaults to a temporary one that is removed afterwards.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 STAGING_DIR [BUILD_DIR]" >&2
  exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
staging=$1
build=${2:-}
if [ -z "$build" ]; then
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
fi

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFC_BUILD_TESTS=OFF -DFC_SANITIZE=OFF \
  -DCMAKE_INSTALL_PREFIX=/usr/local >/dev/null
cmake --build "$build" -j"$(nproc)"
DESTDIR=$staging cmake --install "$build" --strip >/dev/null
# The binary must at least start: a missing library fails here, not in the cluster.
"$staging/usr/local/bin/feedback-consumer" --help >/dev/null
echo "installed $staging/usr/local/bin/feedback-consumer"
