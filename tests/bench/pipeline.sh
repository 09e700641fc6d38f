#!/usr/bin/env bash
# End-to-end ingestion benchmark. Prints figures; it never fails on them.
#
#   tests/bench/pipeline.sh [EVENTS [CASE...]]   (default 500000, every case)
#   BENCH_CONSUMER_FLAGS="--batch.max.events=10000" tests/bench/pipeline.sh   (extra settings)
#   BENCH_ROUNDS=3 tests/bench/pipeline.sh   (3 rounds of the cases, then the medians)
#   BENCH_BASELINE=/path/to/other/feedback-consumer tests/bench/pipeline.sh 500000 agents100
#     (each case BENCH_ROUNDS times, default 4, the two builds in turn, the
#     other one first in odd rounds and second in even ones; rows of the other
#     build are named CASE@base; then the medians' ratios)
#   BENCH_PROFILE=1 tests/bench/pipeline.sh 500000 agents100
#     (after each case, PostgreSQL's statements by time: pg_stat_statements;
#     and each table's rows updated, of them HOT, and deleted)
#   BENCH_INITDB="--locale-provider=icu --icu-locale=en-US" tests/bench/pipeline.sh
#     (options of the throwaway cluster's initdb: here the collation of most
#     production databases instead of C.UTF-8)
#
# For each case it starts a fresh embedded Kafka, produces a backlog of
# realistic events (four channels, 16 partitions each, 1 % re-sent
# duplicates, 0.1 % malformed, 20 % with comments), then runs the consumer
# (release build) against a throwaway PostgreSQL until every message is
# committed, and measures:
#   - end-to-end events/s: distinct events / time from consumer start to the
#     last offset committed in PostgreSQL (joining the group included);
#   - steady events/s: the same from the first commit on, and the seconds
#     from consumer start to that first commit (first_s);
#   - CPU seconds of the consumer per million events, and its peak RSS;
#   - busy CPU seconds of the whole machine (consumer, PostgreSQL, Kafka)
#     per million events from the first commit on: on a machine whose cores
#     are all busy, the cost that sets the rate, and steadier than the rate;
#   - the share of the machine's CPU time the hypervisor took (steal) while
#     the consumer ran: on a shared virtual machine the rates move with it;
#   - the bytes of WAL that PostgreSQL wrote per event while the consumer
#     ran (wal_B/ev): what the database did, and unlike CPU time it does
#     not move with the machine, so a change to what the consumer writes
#     shows even in one run;
#   - the embedded Kafka's CPU seconds per million events while the
#     consumer runs (kafka_s/M): part of the machine's, here only because
#     the broker shares the machine;
#   - the ceiling: COPY of the same ledger rows into an empty ledger of the
#     same schema, and of their ids into its event_ids (the ledger's key,
#     which the ledger itself no longer holds), in rows/s, and the ratios of
#     both rates to it. Binary COPY, as the consumer writes: the fastest
#     way in, so the ceiling is not lowered by parsing text.
# Cases: 100 agents, 100,000 agents, and 100 agents with twice the backlog,
# each with one process of two consumers (--consumer.workers=2, one per
# core); then the first case with two processes of one consumer each, the
# way the service scales out (CPU summed over both, RSS of the larger);
# then the first case with one consumer, the baseline of the other two; and
# then the first case with service recovery off (--recovery.enabled=false):
# the ingestion pipeline alone, without the triggers' state and outbox; and
# last the first case live: the consumers start first and join the group,
# and only once every partition is assigned does the producer start, so the
# time counts from the first event produced to the last offset committed,
# the way the service runs in production (no group join, no backlog). There
# the machine's CPU includes the producer's, and a line on stderr says when
# the producer finished: a rate close to it is the producer's, not the
# consumer's.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" != "--inside" ]; then
  deploy/deps.sh
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DFC_BUILD_TESTS=ON >/dev/null
  cmake --build build/release -j"$(nproc)" --target feedback-consumer feedgen >/dev/null
  profile=()
  [ -z "${BENCH_PROFILE:-}" ] || profile=(-o shared_preload_libraries=pg_stat_statements)
  initdb=()
  [ -z "${BENCH_INITDB:-}" ] || initdb=(-i "$BENCH_INITDB")
  exec pg_virtualenv -t -v 15 "${profile[@]}" "${initdb[@]}" "$PWD/tests/bench/pipeline.sh" --inside "$@"
fi
shift
base=${1:-500000}
shift || true
only=" $* "
bin=$PWD/build/release/feedback-consumer
gen=$PWD/build/release/tests/feedgen
work=$(mktemp -d)
chmod 755 "$work"
: >"$work/results"
mock=
consumers=()
cleanup() {
  for pid in "${consumers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [ -n "$mock" ] && kill -TERM "$mock" 2>/dev/null || true
  [ -n "${PSQL_PID:-}" ] && kill -TERM "$PSQL_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now() {
  local t=$EPOCHREALTIME
  echo "${t/,/.}"
}
# The wait loop must not load the machine it measures: a psql started every
# 50 ms took a sixth of both cores. One session answers every poll, and the
# pause is a read that times out on a FIFO nobody writes to.
mkfifo "$work/never"
exec {never}<>"$work/never"
coproc PSQL { psql -At -v ON_ERROR_STOP=1; }
[ -z "${BENCH_PROFILE:-}" ] || psql -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
sql() {
  echo "$1;" >&"${PSQL[1]}"
  read -r -u "${PSQL[0]}" REPLY
}
pause() { read -r -t "$1" -u "$never" || true; }
# "steal total busy" jiffies of all CPUs so far (/proc/stat: user nice system
# idle iowait irq softirq steal); busy is what every process on the machine
# used: the consumer, PostgreSQL, the embedded Kafka.
cpu_jiffies() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
ticks=$(getconf CLK_TCK)
# cpu_seconds PID...: their CPU seconds so far, utime + stime (fields 14 and 15).
cpu_seconds() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/stat"; done |
    awk -v t="$ticks" '{ s += $14 + $15 } END { printf "%.2f", s / t }'
}

# profile_case NAME: the statements of the case that took most of the server's time.
profile_case() {
  echo "$1: calls, rows, ms, statement"
  psql -AtF ' ' -c "SELECT calls, rows, round(total_exec_time), left(regexp_replace(query, '\s+', ' ', 'g'), 90)
    FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 15"
  echo "$1: table, rows updated, of them HOT (no index touched), deleted"
  psql -AtF ' ' -c "SELECT relname, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables
    WHERE n_tup_upd + n_tup_del > 0 ORDER BY n_tup_upd DESC"
}

# run_case NAME EVENTS AGENTS REPLICAS WORKERS [FLAGS]: prints one line of figures.
run_case() {
  local name=$1 events=$2 agents=$3 replicas=$4 workers=$5 flags=${6:-} schema="bench_$1"
  [ "$only" = "  " ] || [[ $only == *" $name "* ]] || return 0
  rm -f "$work/bootstrap"
  "$bin" kafka-mock --partitions 16 --bootstrap-file "$work/bootstrap" >/dev/null &
  mock=$!
  for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
  local bootstrap
  bootstrap=$(cat "$work/bootstrap")

  "$bin" migrate --database.schema="$schema" --log.level=warn
  produce() {
    "$gen" --bootstrap "$bootstrap" --quiet --count "$events" --agents "$agents" \
      --customers $((events / 4)) --duplicates 1 --malformed 0.1 \
      --comment-pct 20 --compression lz4 --seed 42 >"$work/produced"
  }
  local total=
  rm -f "$work/produced"
  [ -n "${live:-}" ] || { produce; total=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "$work/produced"); }

  local t0 t1 tf="" stored=0 first=0 j0 j1 jf="" wal kcpu producer
  [ -z "${BENCH_PROFILE:-}" ] || sql "SELECT count(*) FROM pg_stat_statements_reset(), pg_stat_reset()"
  sql "SELECT pg_current_wal_insert_lsn()"
  wal=$REPLY
  # the embedded Kafka's CPU seconds while the consumer runs
  kcpu=$(cpu_seconds "$mock")
  t0=$(now)
  j0=$(cpu_jiffies)
  consumers=()
  # With two members, the embedded Kafka sometimes answers a follower's
  # SyncGroup with "Invalid request" (it counts the leader's assignments,
  # not the members that asked); the follower rejoins and the group waits
  # session.timeout.ms - 1 s for the others, 44 s by default, 5 s here.
  for r in $(seq "$replicas"); do
    "$bin" run --kafka.bootstrap.servers="$bootstrap" --database.schema="$schema" \
      --consumer.workers="$workers" --kafka.session.timeout.ms=6000 --http.port=0 --log.level=info $flags ${BENCH_CONSUMER_FLAGS:-} 2>"$work/consumer-$r.log" &
    consumers+=($!)
  done
  if [ -n "${live:-}" ]; then
    # The service is up before the events come: every member has its
    # partitions (each logs its assignments and revocations), then the
    # producer starts, and the time counts from there.
    while [ "$(for r in $(seq "$replicas"); do cat "$work/consumer-$r.log"; done | awk -v members=$((replicas * workers)) '
        match($0, /(assigned|revoked) [0-9]+ partitions/) {
          split(substr($0, RSTART, RLENGTH), w, " ")
          if (w[1] == "assigned") { n++; held += w[2] } else held -= w[2]
        }
        END { print (n >= members && held == 64) ? "up" : "joining" }')" != up ]; do
      pause 0.05
    done
    t0=$(now)
    j0=$(cpu_jiffies)
    { produce; now >"$work/produced_at"; } &
    producer=$!
  fi
  while [ ! -s "$work/produced" ] || [ "$stored" != "$total" ]; do
    [ -z "$total" ] && [ -s "$work/produced" ] && total=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "$work/produced")
    pause 0.05
    sql "SELECT coalesce(sum(next_offset), 0) FROM $schema.consumer_offsets"
    stored=$REPLY
    # The steady rate starts at the first commit: joining the group is not ingestion.
    if [ -z "$tf" ] && [ "$stored" != 0 ]; then
      tf=$(now)
      jf=$(cpu_jiffies)
      first=$stored
    fi
    for r in "${!consumers[@]}"; do
      kill -0 "${consumers[r]}" 2>/dev/null || { cat "$work/consumer-$((r + 1)).log" >&2; exit 1; }
    done
  done
  t1=$(now)
  j1=$(cpu_jiffies)
  if [ -n "${live:-}" ]; then
    wait "$producer"
    awk -v t0="$t0" -v t1="$t1" -v tp="$(cat "$work/produced_at")" -v n="$name${tag:-}" \
      'BEGIN { printf "%s: producer done after %.2f s, last commit after %.2f s\n", n, tp - t0, t1 - t0 }' >&2
  fi
  sql "SELECT pg_current_wal_insert_lsn() - '$wal'"
  wal=$REPLY
  # the consumers' CPU seconds, and the high-water mark of the RSS
  local cpu rss pid
  cpu=$(cpu_seconds "${consumers[@]}")
  rss=$(for pid in "${consumers[@]}"; do cat "/proc/$pid/status"; done |
    awk '/^VmHWM/ && $2 > m { m = $2 } END { printf "%.1f", m / 1024 }')
  for pid in "${consumers[@]}"; do kill -TERM "$pid"; done
  for pid in "${consumers[@]}"; do wait "$pid" || true; done
  consumers=()
  [ -z "${BENCH_PROFILE:-}" ] || profile_case "$name${tag:-}" >&2
  kcpu=$(awk -v k0="$kcpu" -v k1="$(cpu_seconds "$mock")" 'BEGIN { printf "%.2f", k1 - k0 }')
  kill -TERM "$mock"
  wait "$mock" || true
  mock=

  # The ceiling: the same ledger rows and their key COPYed into an empty schema.
  local rows c0 c1
  rows=$(psql -Atc "SELECT count(*) FROM $schema.ledger")
  psql -qc "\\copy (SELECT * FROM $schema.ledger) TO '$work/ledger.copy' (FORMAT binary)"
  # A baseline build from before migration 004 keys the ledger itself.
  local ids=
  [ "$(psql -Atc "SELECT to_regclass('$schema.event_ids') IS NOT NULL")" = t ] && ids=1
  [ -z "$ids" ] || psql -qc "\\copy (SELECT * FROM $schema.event_ids) TO '$work/ids.copy' (FORMAT binary)"
  "$bin" migrate --database.schema="${schema}_copy" --log.level=warn
  c0=$(now)
  psql -qc "\\copy ${schema}_copy.ledger FROM '$work/ledger.copy' (FORMAT binary)"
  [ -z "$ids" ] || psql -qc "\\copy ${schema}_copy.event_ids FROM '$work/ids.copy' (FORMAT binary)"
  c1=$(now)
  # Each case starts from a quiet cluster: no autovacuum of an earlier
  # case's tables, no checkpoint writing its buffers, while the next runs.
  PGOPTIONS="-c client_min_messages=warning" psql -qc "DROP SCHEMA ${schema}_copy CASCADE" \
    -c "DROP SCHEMA $schema CASCADE" -c "CHECKPOINT"

  awk -v n="$name${tag:-}" -v e="$rows" -v a="$agents" -v t0="$t0" -v t1="$t1" -v c0="$c0" \
    -v c1="$c1" -v cpu="$cpu" -v rss="$rss" -v tf="$tf" -v first="$first" -v total="$total" \
    -v j0="$j0" -v j1="$j1" -v jf="$jf" -v ticks="$ticks" -v wal="$wal" -v kcpu="$kcpu" '
    BEGIN {
      rate = e / (t1 - t0); ceil = e / (c1 - c0)
      # messages per second after the first commit, scaled to distinct events
      steady = (t1 > tf) ? (total - first) / (t1 - tf) * e / total : 0
      split(j0, s0, " "); split(j1, s1, " ")
      steal = (s1[2] > s0[2]) ? 100 * (s1[1] - s0[1]) / (s1[2] - s0[2]) : 0
      # busy CPU seconds of the whole machine per million events, from the first commit
      split(jf, sf, " ")
      host = (total > first) ? (s1[3] - sf[3]) / ticks * 1e6 / ((total - first) * e / total) : 0
      printf "%-10s %9d %7d %9.2f %10.0f %10.0f %9.2f %8.2f %8.1f %11.0f %6.2f %6.2f %6.0f %7.2f %8.0f %8.2f\n",
        n, e, a, t1 - t0, rate, steady, cpu * 1e6 / e, host, rss, ceil, rate / ceil, steady / ceil, steal,
        tf - t0, wal / e, kcpu * 1e6 / e
    }' | tee -a "$work/results"
}

collation=$(psql -Atc "SELECT CASE datlocprovider WHEN 'i' THEN 'ICU ' || daticulocale ELSE datcollate END
  FROM pg_database WHERE datname = current_database()")
echo "PostgreSQL $(psql -Atc 'SHOW server_version') on $(nproc) cores, collation $collation; backlog $base events; consumer flags: ${BENCH_CONSUMER_FLAGS:-(defaults)}"
printf "%-10s %9s %7s %9s %10s %10s %9s %8s %8s %11s %6s %6s %6s %7s %8s %8s\n" case events agents seconds events/s \
  steady/s cpu_s/M host_s/M rss_MiB copy_rows/s ratio steady steal% first_s wal_B/ev kafka_s/M
this_bin=$bin
# BENCH_ROUNDS rounds (default 1; 4 with BENCH_BASELINE) of every case in
# turn, so that a slow spell of the machine falls on all of them alike.
# Within a round the two builds run each case in turn, the BENCH_BASELINE
# build first in odd rounds and second in even ones, so that neither is
# always the one that finds the cluster warm (its WAL segments recycled,
# its memory touched). The same build against itself, 4 rounds, gave
# machine CPU x1.09 and steady events/s x0.93: ratios closer to 1 than
# that say nothing.
rounds=${BENCH_ROUNDS:-1}
[ -z "${BENCH_BASELINE:-}" ] || rounds=${BENCH_ROUNDS:-4}
round=0
run() {
  if [ -z "${BENCH_BASELINE:-}" ]; then
    bin=$this_bin tag= run_case "$@"
  elif [ $((round % 2)) = 1 ]; then
    bin=$BENCH_BASELINE tag=@base run_case "$@"
    bin=$this_bin tag= run_case "$@"
  else
    bin=$this_bin tag= run_case "$@"
    bin=$BENCH_BASELINE tag=@base run_case "$@"
  fi
}
for _ in $(seq "$rounds"); do
  round=$((round + 1))
  run agents100 "$base" 100 1 2
  run agents100k "$base" 100000 1 2
  run backlog2x $((base * 2)) 100 1 2
  run replicas2 "$base" 100 2 1
  run oneworker "$base" 100 1 1
  run norecovery "$base" 100 1 2 --recovery.enabled=false
  live=1 run live "$base" 100 1 2
done
# With several runs of a case, the median of each column; every comparison
# below is made of medians (of one run each, without BENCH_ROUNDS).
awk '
  function median(list,    v, n, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  !($1 in runs) { order[++cases] = $1 }
  { runs[$1]++; for (c = 2; c <= NF; c++) col[$1, c] = col[$1, c] " " $c; if (runs[$1] > most) most = runs[$1] }
  END {
    for (i = 1; i <= cases; i++)
      for (c = 2; c <= 16; c++) m[order[i], c] = median(col[order[i], c])
    if (most > 1) {
      print "medians:"
      for (i = 1; i <= cases; i++) {
        k = order[i]
        printf "%-10s %9d %7d %9.2f %10.0f %10.0f %9.2f %8.2f %8.1f %11.0f %6.2f %6.2f %6.0f %7.2f %8.0f %8.2f  (%d runs)\n",
          k, m[k, 2], m[k, 3], m[k, 4], m[k, 5], m[k, 6], m[k, 7], m[k, 8], m[k, 9], m[k, 10], m[k, 11],
          m[k, 12], m[k, 13], m[k, 14], m[k, 15], m[k, 16], runs[k]
      }
    }
    for (i = 1; i <= cases; i++) {
      k = order[i]
      if (k !~ /@base$/ && ((k "@base") in runs))
        printf "%s, this build vs the baseline: machine CPU s/M x%.2f, steady events/s x%.2f, WAL per event x%.2f\n",
          k, m[k, 8] / m[k "@base", 8], m[k, 6] / m[k "@base", 6], m[k, 15] / m[k "@base", 15]
    }
    if (("agents100" in runs) && ("agents100k" in runs) && ("backlog2x" in runs))
      printf "cost per event, 100,000 vs 100 agents and 2x backlog vs 1x: consumer CPU x%.2f and x%.2f, machine CPU x%.2f and x%.2f, WAL x%.2f and x%.2f\n",
        m["agents100k", 7] / m["agents100", 7], m["backlog2x", 7] / m["agents100", 7],
        m["agents100k", 8] / m["agents100", 8], m["backlog2x", 8] / m["agents100", 8],
        m["agents100k", 15] / m["agents100", 15], m["backlog2x", 15] / m["agents100", 15]
    if (("agents100" in runs) && ("oneworker" in runs))
      printf "one process, two consumers vs one: events/s x%.2f end to end, x%.2f from the first commit\n",
        m["agents100", 5] / m["oneworker", 5], m["agents100", 6] / m["oneworker", 6]
    if (("agents100" in runs) && ("norecovery" in runs))
      printf "service recovery off vs on: machine CPU s/M x%.2f, events/s x%.2f from the first commit, ratio to the ceiling %.2f vs %.2f from the first commit\n",
        m["norecovery", 8] / m["agents100", 8], m["norecovery", 6] / m["agents100", 6], m["norecovery", 12], m["agents100", 12]
    if (("agents100" in runs) && ("live" in runs))
      printf "live vs backlog: events/s x%.2f end to end, x%.2f from the first commit\n",
        m["live", 5] / m["agents100", 5], m["live", 6] / m["agents100", 6]
    if (("agents100" in runs) && ("replicas2" in runs))
      printf "two processes of one consumer vs one of two: events/s x%.2f end to end, x%.2f from the first commit\n",
        m["replicas2", 5] / m["agents100", 5], m["replicas2", 6] / m["agents100", 6]
  }' "$work/results"
