#!/usr/bin/env bash
# Service-recovery latency benchmark. Prints figures; it never fails on them.
#
#   tests/bench/recovery.sh [RATE] [PROBES]    (defaults 12000 events/s, 300 probes)
#   BENCH_CONSUMER_FLAGS="--batch.linger=20ms" tests/bench/recovery.sh   (extra settings)
#
# Starts an embedded Kafka (16 partitions per topic), a throwaway PostgreSQL
# and the consumer (release build), feeds it a background load of RATE
# realistic events per second with feedgen (negative ones included, so the
# publisher is busy too), and meanwhile recovery_probe produces PROBES
# negative events, ten per second, each for a new customer, and times each
# until its trigger is readable on feedback.recovery. Prints p50/p90/p99/max
# of that latency and the background rate the consumer actually committed
# during the probe window (from the offsets stored in PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" != "--inside" ]; then
  deploy/deps.sh
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DFC_BUILD_TESTS=ON >/dev/null
  cmake --build build/release -j"$(nproc)" --target feedback-consumer feedgen recovery_probe \
    >/dev/null
  exec pg_virtualenv -t -v 15 "$PWD/tests/bench/recovery.sh" --inside "$@"
fi
shift
rate=${1:-12000}
probes=${2:-300}
bin=$PWD/build/release/feedback-consumer
gen=$PWD/build/release/tests/feedgen
probe=$PWD/build/release/tests/bench/recovery_probe
schema=bench_recovery
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  # Newest first: the load generator, the consumer, then the Kafka they use.
  # Each one gone before the next: feedgen must not outlive the broker.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
stored() { psql -Atc "SELECT coalesce(sum(next_offset), 0) FROM $schema.consumer_offsets"; }

"$bin" kafka-mock --partitions 16 --bootstrap-file "$work/bootstrap" >/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
bootstrap=$(cat "$work/bootstrap")
"$bin" migrate --database.schema="$schema" --log.level=warn

"$bin" run --kafka.bootstrap.servers="$bootstrap" --database.schema="$schema" \
  --http.port=0 --log.level=warn ${BENCH_CONSUMER_FLAGS:-} 2>"$work/consumer.log" &
consumer=$!
pids+=("$consumer")

# Enough background for the warm-up, the probes and their tail.
seconds=$((probes / 10 + 40))
"$gen" --bootstrap "$bootstrap" --quiet --rate "$rate" --count $((rate * seconds)) \
  --customers 200000 --duplicates 0 --malformed 0 --comment-pct 20 --seed 11 \
  >"$work/produced" &
gen_pid=$!
pids+=("$gen_pid")

sleep 10 # warm-up: the group join, the first batches
kill -0 "$consumer" 2>/dev/null || { cat "$work/consumer.log" >&2; exit 1; }
s0=$(stored)
t0=$(now)
"$probe" --bootstrap "$bootstrap" --count "$probes" --interval-ms 100 --timeout-s 60 \
  >"$work/probe" || true
s1=$(stored)
t1=$(now)
gen_alive=yes
kill -0 "$gen_pid" 2>/dev/null || gen_alive=no

echo "PostgreSQL $(psql -Atc 'SHOW server_version') on $(nproc) cores; feedgen --rate $rate;" \
  "consumer flags: ${BENCH_CONSUMER_FLAGS:-(defaults)}"
cat "$work/probe"
awk -v s0="$s0" -v s1="$s1" -v t0="$t0" -v t1="$t1" -v alive="$gen_alive" 'BEGIN {
  printf "background: %d messages committed in %.1f s = %.0f events/s%s\n", s1 - s0, t1 - t0,
    (s1 - s0) / (t1 - t0), alive == "yes" ? "" : " (feedgen finished early: rate understated)"
}'
# Where the time goes, per probe (the occurred_at of a probe is its produce time):
# accepted = the batch transaction began, detected = the rules ran in it,
# claimed = the publisher's claiming transaction began (sent_at is its now()).
psql -At <<SQL
SELECT 'stages p50/p99 ms: accepted ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY a)) || '/'
       || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY a))
       || ', detected ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)) || '/'
       || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d))
       || ', claimed ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY c)) || '/'
       || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY c))
FROM (SELECT 1000 * extract(epoch FROM l.accepted_at - l.occurred_at) AS a,
             1000 * extract(epoch FROM o.detected_at - o.occurred_at) AS d,
             1000 * extract(epoch FROM o.sent_at - o.occurred_at) AS c
      FROM $schema.recovery_outbox o JOIN $schema.ledger l USING (event_id)
      WHERE o.event_id LIKE 'probe-%') s;
SQL
psql -Atc "SELECT 'outbox: ' || count(*) || ' triggers, ' || count(*) FILTER (WHERE sent_at IS NULL)
           || ' unsent' FROM $schema.recovery_outbox"
