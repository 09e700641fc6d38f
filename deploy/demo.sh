#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts an embedded Kafka (the
# librdkafka mock cluster) and a throwaway PostgreSQL, produces a realistic
# mixed sample of feedback (with duplicates and malformed messages), runs the
# consumer until it has caught up, prints the KPI report and what went to the
# dead-letter and recovery topics, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  deploy/deps.sh
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DFC_BUILD_TESTS=ON >/dev/null
  cmake --build build/release -j"$(nproc)" --target feedback-consumer feedgen >/dev/null
  exec pg_virtualenv -t -v 15 "$PWD/deploy/demo.sh" --inside "$@"
fi
shift

bin=build/release/feedback-consumer
gen=build/release/tests/feedgen
events=${DEMO_EVENTS:-5000}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" kafka-mock --partitions 4 --bootstrap-file "$work/bootstrap" >/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
bootstrap=$(cat "$work/bootstrap")
export FEEDBACK_KAFKA_BOOTSTRAP_SERVERS=$bootstrap
echo "== embedded Kafka at $bootstrap, PostgreSQL at ${PGHOST}:${PGPORT}"

"$bin" migrate
echo "== producing $events feedback events on four channels"
"$gen" --bootstrap "$bootstrap" --count "$events" --seed 7 --duplicates 3 --malformed 2 \
  | tee "$work/produced"
total=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "$work/produced" | head -1)

echo "== consuming"
"$bin" run --log.format=text --http.port=0 2>"$work/consumer.log" &
consumer=$!
pids+=("$consumer")
stored=0
for _ in $(seq 600); do
  stored=$(psql -Atc "SELECT coalesce(sum(next_offset), 0) FROM feedback.consumer_offsets
                      WHERE group_id = 'feedback-consumer'")
  [ "$stored" = "$total" ] && break
  kill -0 "$consumer" 2>/dev/null || { cat "$work/consumer.log"; exit 1; }
  sleep 0.2
done
if [ "$stored" != "$total" ]; then
  echo "the consumer did not catch up: $stored of $total messages" >&2
  tail -20 "$work/consumer.log" >&2
  exit 1
fi
kill -TERM "$consumer"
wait "$consumer"
grep -E 'consumed=' "$work/consumer.log" | tail -1 | sed 's/^/   /'

echo
"$bin" report

echo "== dead letters by reason"
kcat -b "$bootstrap" -C -t feedback.dlq -e -q -f '%h\n' 2>/dev/null \
  | tr ',' '\n' | sed -n 's/^__connect.errors.exception.class.name=//p' | sort | uniq -c

echo "== recovery triggers on feedback.recovery, decoded (the first 3 of each severity)"
"$bin" triggers --log.level=warn >"$work/triggers"
for severity in critical high normal; do
  awk -v s=" severity=$severity " 'index($0, s) && n++ < 3 { print "   " $0 }' "$work/triggers"
done
tail -1 "$work/triggers" | sed 's/^/   /'
echo "   by severity:"
sed -n 's/.* severity=\([a-z]*\) .*/\1/p' "$work/triggers" | sort | uniq -c | sed 's/^/   /'
psql -Atc "SELECT '   outbox: ' || count(*) || ' triggers, ' || count(*) FILTER (WHERE sent_at IS NULL)
           || ' unsent; negatives suppressed by the cooldown: '
           || coalesce(sum(suppressed_count), 0)
              + (SELECT coalesce(sum(suppressed), 0) FROM feedback.recovery_state)
           FROM feedback.recovery_outbox"
