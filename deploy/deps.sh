#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need.
# Fast and silent when everything is present: it only asks dpkg, and runs
# apt-get (update included) only for what is missing. Runs as root, or
# through sudo when that exists.
set -euo pipefail

# One package per word; add new dependencies here.
PACKAGES="build-essential cmake pkg-config clang-format clang libclang-rt-14-dev librdkafka-dev libprotobuf-c-dev
yamllint python3-yaml python3-jsonschema
golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
protobuf-c-compiler libprotobuf-dev libpq-dev libcmocka-dev libjansson-dev postgresql-15
postgresql-common kcat libmicrohttpd-dev prometheus curl openssl ca-certificates"

missing=()
for pkg in $PACKAGES; do
  # "install ok installed" only: removed packages keep a "deinstall ... config-files" entry.
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "deps.sh: missing packages ${missing[*]}, and neither root nor sudo to install them" >&2
  exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
