#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds with
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs every tier
# (unit, fault, integration, deploy) against a throwaway PostgreSQL 15
# cluster; then the unit tier once more, built by clang, and the fuzzer.
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
# -t keeps the throw-away cluster in a temporary directory with a free port, also as
# root, so that it never collides with another cluster on the machine.
pg_virtualenv -t -v 15 ctest --test-dir "$build" --output-on-failure "$@"

# The unit tier again, built by clang: its UndefinedBehaviorSanitizer also
# checks what GCC's does not, such as arithmetic on a NULL pointer. And
# libFuzzer on decode_event, a fixed number of inputs from a fixed seed.
clang_build=build/test-clang
cmake -S . -B "$clang_build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON \
  -DFC_BUILD_TESTS=ON -DFC_FUZZ=ON >/dev/null
cmake --build "$clang_build" -j"$(nproc)" >/dev/null
echo "unit tests built by clang, and the fuzzer:"
ctest --test-dir "$clang_build" --output-on-failure -L 'unit|fuzz' "$@"
