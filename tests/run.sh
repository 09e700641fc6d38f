#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds with
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs every tier
# (unit, fault, integration) against a throwaway PostgreSQL 15 cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/deps.sh
build=build/test
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON -DFC_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cmake --build "$build" --target format-check

# Leaks are failures; librdkafka's and libpq's own allocations are freed on exit.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# pg_virtualenv refuses to run its cluster as root; it switches to the postgres user,
# so the build tree must be readable by it.
pg_virtualenv -v 15 ctest --test-dir "$build" --output-on-failure "$@"
