# Helpers of the deploy tests (sourced). PostgreSQL comes from the PG*
# variables that pg_virtualenv sets; every check prints what it expected.

DEPLOY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY_FAILS=0
DEPLOY_PIDS=()

fail() {
  echo "FAIL: $*" >&2
  DEPLOY_FAILS=$((DEPLOY_FAILS + 1))
}

pass() {
  echo "ok: $*"
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then pass "$1 = $2"; else fail "$1: expected '$2', got '$3'"; fi
}

# expect_match WHAT REGEX TEXT
# A here-string, not a pipe: grep -q stops reading at its first match, and
# under pipefail the writer's SIGPIPE would turn that match into a failure.
expect_match() {
  if grep -Eq -- "$2" <<<"$3"; then pass "$1"; else fail "$1: '$3' does not match /$2/"; fi
}

# expect_no_match WHAT REGEX TEXT
expect_no_match() {
  if grep -Eq -- "$2" <<<"$3"; then fail "$1: '$3' matches /$2/"; else pass "$1"; fi
}

# The number of failures as the exit status; prints the closing line.
finish() {
  if [ "$DEPLOY_FAILS" -eq 0 ]; then echo "all checks passed"; else echo "$DEPLOY_FAILS check(s) failed"; fi
  [ "$DEPLOY_FAILS" -eq 0 ]
}

# psql as the PG* role (the cluster's superuser under pg_virtualenv).
sql() {
  psql -X -q -v ON_ERROR_STOP=1 -At "$@"
}

# sql_as ROLE PASSWORD SQL: runs SQL as ROLE; prints the output, stderr included.
sql_as() {
  PGUSER=$1 PGPASSWORD=$2 psql -X -q -v ON_ERROR_STOP=1 -At -c "$3" 2>&1
}

# A libpq connection string for ROLE with PASSWORD, from the PG* variables.
conninfo_for() {
  printf 'host=%s port=%s dbname=%s user=%s password=%s' "${PGHOST:-localhost}" \
    "${PGPORT:-5432}" "${PGDATABASE:-postgres}" "$1" "$2"
}

# start_kafka_mock BIN DIR: starts the embedded Kafka, sets BOOTSTRAP.
start_kafka_mock() {
  "$1" kafka-mock --partitions 2 --bootstrap-file "$2/bootstrap" >/dev/null &
  DEPLOY_PIDS+=($!)
  for _ in $(seq 300); do [ -s "$2/bootstrap" ] && break; sleep 0.1; done
  BOOTSTRAP=$(cat "$2/bootstrap")
  [ -n "$BOOTSTRAP" ] || { echo "the embedded kafka did not start" >&2; exit 1; }
}

# wait_offsets SCHEMA GROUP TOTAL: waits (up to 5 minutes, a safety net
# only) until the offsets stored by GROUP add up to TOTAL; returns 1 if not.
wait_offsets() {
  local stored=0
  for _ in $(seq 3000); do
    stored=$(sql -c "SELECT coalesce(sum(next_offset), 0) FROM \"$1\".consumer_offsets
                     WHERE group_id = '$2'")
    [ "$stored" = "$3" ] && return 0
    sleep 0.1
  done
  echo "stored offsets reached $stored of $3" >&2
  return 1
}

# stop_wait PID: SIGTERM, then sets STOP_RC to the exit status (124 when
# it had not ended after 60 s and was killed). Not in a subshell: only the
# parent can wait for its child.
stop_wait() {
  kill -TERM "$1"
  for _ in $(seq 600); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  STOP_RC=0
  if kill -0 "$1" 2>/dev/null; then
    kill -KILL "$1"
    wait "$1" 2>/dev/null || true
    STOP_RC=124
    return
  fi
  wait "$1" || STOP_RC=$?
}

stop_all() {
  local pid
  for pid in "${DEPLOY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${DEPLOY_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
