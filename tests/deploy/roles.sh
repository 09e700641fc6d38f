#!/usr/bin/env bash
# deploy/roles.sql in a throwaway cluster: the roles it creates get exactly
# the privileges the consumer needs. Two schemas: a fresh one (roles first,
# then `migrate` as the migration role, then the consumer as the runtime role
# under a feedgen load), and one migrated earlier by the superuser and handed
# over by roles.sql. Needs FC_BIN, FC_FEEDGEN and the PG* variables.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${FC_BIN:?}" "${FC_FEEDGEN:?}"
work=$(mktemp -d)
fresh=deploy_roles_fresh_$$
adopted=deploy_roles_adopted_$$
migrator=fc_test_migrator_$$
runtime=fc_test_runtime_$$
reporting=fc_test_reporting_$$
# Test-only passwords: the cluster lives as long as this test run.
mig_pw=m-$$-pw
run_pw=r-$$-pw
rep_pw=b-$$-pw

cleanup() {
  stop_all
  sql -c "DROP SCHEMA IF EXISTS \"$fresh\" CASCADE" -c "DROP SCHEMA IF EXISTS \"$adopted\" CASCADE" \
    >/dev/null 2>&1 || true
  sql -c "DROP OWNED BY $migrator, $runtime, $reporting" \
    -c "DROP ROLE IF EXISTS $migrator, $runtime, $reporting" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

roles_sql() {
  sql -v schema="$1" -v migrator="$migrator" -v runtime="$runtime" -v reporting="$reporting" \
    -f "$DEPLOY_ROOT/deploy/roles.sql" >/dev/null
}

# The number of the newest migration: what `migrate` must reach.
latest=$(find "$DEPLOY_ROOT/schema" -name '[0-9]*.sql' -printf '%f\n' | sort | tail -1)
latest=$((10#${latest%%_*}))

# --- an installation migrated by one owner role, before roles existed -------
FEEDBACK_DATABASE_URL= "$FC_BIN" migrate --database.schema="$adopted" --log.format=text \
  2>"$work/adopt.log" || { cat "$work/adopt.log"; exit 1; }

# --- roles, twice: the script is idempotent ---------------------------------
roles_sql "$fresh"
roles_sql "$fresh"
roles_sql "$adopted"
sql -c "ALTER ROLE $migrator PASSWORD '$mig_pw'" -c "ALTER ROLE $runtime PASSWORD '$run_pw'" \
  -c "ALTER ROLE $reporting PASSWORD '$rep_pw'"

# --- migrate the fresh schema as the migration role -------------------------
out=$(FEEDBACK_DATABASE_URL=$(conninfo_for "$migrator" "$mig_pw") \
  "$FC_BIN" migrate --database.schema="$fresh" --log.format=text 2>&1) || fail "migrate as $migrator: $out"
expect_match "migrate as the migration role reaches version $latest" \
  "is at version $latest \\($latest migrations applied\\)" "$out"
expect_no_match "the migration log shows no password" "$mig_pw" "$out"

check_schema() {
  local s=$1
  echo "== schema $s"
  expect_eq "$s: objects not owned by the migration role" 0 "$(sql -c "
    SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = '$s'::regnamespace
              AND relkind IN ('r', 'p', 'v', 'S', 'i', 'I') AND relowner <> '$migrator'::regrole)
         + (SELECT count(*) FROM pg_proc WHERE pronamespace = '$s'::regnamespace
              AND proowner <> '$migrator'::regrole)
         + (SELECT count(*) FROM pg_namespace WHERE nspname = '$s'
              AND nspowner <> '$migrator'::regrole)")"
  # S select, I insert, U update, D delete, T truncate; written by hand
  # from what consumer/db.c and consumer/publisher.c send.
  expect_eq "$s: table privileges of the runtime role" \
    "agent_agg=SIU channel_agg=SIU consumer_offsets=SIU event_ids=SIU ledger=SIU ledger_default=SIU recovery_outbox=SIUD recovery_state=SIU schema_migrations=S" \
    "$(sql -c "
    SELECT string_agg(relname || '=' || concat(
             CASE WHEN has_table_privilege('$runtime', oid, 'SELECT') THEN 'S' END,
             CASE WHEN has_table_privilege('$runtime', oid, 'INSERT') THEN 'I' END,
             CASE WHEN has_table_privilege('$runtime', oid, 'UPDATE') THEN 'U' END,
             CASE WHEN has_table_privilege('$runtime', oid, 'DELETE') THEN 'D' END,
             CASE WHEN has_table_privilege('$runtime', oid, 'TRUNCATE') THEN 'T' END),
             ' ' ORDER BY relname)
    FROM pg_class WHERE relnamespace = '$s'::regnamespace AND relname IN ('agent_agg',
      'channel_agg', 'consumer_offsets', 'event_ids', 'ledger', 'ledger_default', 'recovery_outbox',
      'recovery_state', 'schema_migrations')")"
  expect_eq "$s: relations the reporting role can read" \
    "agent_kpi channel_kpi recovery_triggers" "$(sql -c "
    SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_class
    WHERE relnamespace = '$s'::regnamespace AND relkind IN ('r', 'p', 'v', 'm')
      AND has_table_privilege('$reporting', oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')")"
  expect_eq "$s: runtime schema usage, schema create, temp, partition function, drop function" \
    "t|f|t|t|f" "$(sql -c "
    SELECT has_schema_privilege('$runtime', '$s', 'USAGE'), has_schema_privilege('$runtime', '$s', 'CREATE'),
           has_database_privilege('$runtime', current_database(), 'TEMPORARY'),
           has_function_privilege('$runtime', '\"$s\".ledger_ensure_partitions(date, integer)', 'EXECUTE'),
           has_function_privilege('$runtime', '\"$s\".ledger_drop_partitions_before(date)', 'EXECUTE')")"
  expect_eq "$s: the partition function runs as its owner" t \
    "$(sql -c "SELECT prosecdef FROM pg_proc WHERE oid = '\"$s\".ledger_ensure_partitions(date, integer)'::regprocedure")"

  # What the runtime role must not do: each fails on a privilege check.
  local stmt out
  for stmt in "DROP TABLE \"$s\".ledger" "ALTER TABLE \"$s\".channel_agg ADD COLUMN x integer" \
    "ALTER TABLE \"$s\".recovery_outbox DROP COLUMN payload" "CREATE TABLE \"$s\".x (i integer)" \
    "CREATE VIEW \"$s\".x AS SELECT 1" "TRUNCATE \"$s\".channel_agg" \
    "DELETE FROM \"$s\".agent_agg" "DROP FUNCTION \"$s\".ledger_ensure_partitions(date, integer)" \
    "SELECT \"$s\".ledger_drop_partitions_before('2100-01-01')" \
    "INSERT INTO \"$s\".schema_migrations (version, name) VALUES (999, 'x')"; do
    out=$(sql_as "$runtime" "$run_pw" "$stmt") && fail "runtime role could: $stmt"
    expect_match "runtime role refused: $stmt" "permission denied|must be owner" "$out"
  done
  # ... and what it does through the SECURITY DEFINER function: January 2031
  # is one month that no partition covers yet, so exactly 1 is created.
  expect_eq "$s: runtime role creates a ledger partition" 1 \
    "$(sql_as "$runtime" "$run_pw" "SELECT \"$s\".ledger_ensure_partitions('2031-01-01', 1)")"
  expect_eq "$s: owner of the new partition" "$migrator" \
    "$(sql -c "SELECT tableowner FROM pg_tables WHERE schemaname = '$s' AND tablename = 'ledger_p203101'")"
  # A table of a later migration is covered by the default privileges.
  sql_as "$migrator" "$mig_pw" "CREATE TABLE \"$s\".later_table (i integer)" >/dev/null ||
    fail "$s: the migration role cannot create a table"
  expect_eq "$s: runtime privileges on a later table (select, insert, update, delete)" "t|t|t|f" \
    "$(sql -c "SELECT has_table_privilege('$runtime', '\"$s\".later_table', 'SELECT'),
                      has_table_privilege('$runtime', '\"$s\".later_table', 'INSERT'),
                      has_table_privilege('$runtime', '\"$s\".later_table', 'UPDATE'),
                      has_table_privilege('$runtime', '\"$s\".later_table', 'DELETE')")"
  sql_as "$migrator" "$mig_pw" "DROP TABLE \"$s\".later_table" >/dev/null

  # The reporting role reads the views and nothing else, read-only.
  expect_eq "$s: reporting reads channel_kpi" 0 \
    "$(sql_as "$reporting" "$rep_pw" "SELECT count(*) FROM \"$s\".channel_kpi WHERE bucket < '2000-01-01'")"
  for stmt in "SELECT count(*) FROM \"$s\".ledger" "SELECT count(*) FROM \"$s\".recovery_outbox" \
    "CREATE TEMP TABLE x (i integer)"; do
    out=$(sql_as "$reporting" "$rep_pw" "$stmt") && fail "reporting role could: $stmt"
    expect_match "reporting role refused: $stmt" "permission denied|read-only transaction" "$out"
  done
}

check_schema "$fresh"
check_schema "$adopted"

# --- the consumer as the runtime role -----------------------------------------
echo "== consumer as $runtime"
start_kafka_mock "$FC_BIN" "$work"
# 300 unique valid events (--count); re-sends (5 %) are extra messages.
gen=$("$FC_FEEDGEN" --bootstrap "$BOOTSTRAP" --count 300 --seed 41 --duplicates 5 --malformed 0 \
  --agents 7 --customers 40 --quiet)
echo "feedgen: $gen"
field() { printf '%s' "$gen" | sed -n "s/.* $1=\\([0-9]*\\).*/\\1/p"; }
messages=$(field messages)
FEEDBACK_DATABASE_URL=$(conninfo_for "$runtime" "$run_pw") FEEDBACK_DATABASE_SCHEMA=$fresh \
  FEEDBACK_KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP FEEDBACK_HTTP_PORT=0 \
  "$FC_BIN" run --log.format=text --kafka.group.id=deploy-roles 2>"$work/run.log" &
consumer=$!
DEPLOY_PIDS+=("$consumer")
wait_offsets "$fresh" deploy-roles "$messages" || fail "the consumer did not catch up"
stop_wait "$consumer"
expect_eq "exit status after SIGTERM" 0 "$STOP_RC"
log=$(cat "$work/run.log")
expect_no_match "no permission error in the consumer log" "permission denied|must be owner|42501" "$log"
expect_no_match "no password in the consumer log" "$run_pw" "$log"
expect_eq "events in the ledger (--count)" 300 "$(sql -c "SELECT count(*) FROM \"$fresh\".ledger")"
expect_eq "events per channel (feedgen's sms email phone social)" \
  "$(field sms) $(field email) $(field phone) $(field social)" "$(sql -c "
  SELECT string_agg(n::text, ' ' ORDER BY array_position(ARRAY['sms','email','phone','social'], channel))
  FROM (SELECT channel, count(*) AS n FROM \"$fresh\".ledger GROUP BY channel) x")"
expect_eq "negative events in channel_agg (feedgen's negative)" "$(field negative)" \
  "$(sql -c "SELECT sum(negative) FROM \"$fresh\".channel_agg")"
expect_eq "CSAT responses: channel_agg against the ledger" \
  "$(sql -c "SELECT count(csat_score) FROM \"$fresh\".ledger")" \
  "$(sql -c "SELECT sum(csat_n) FROM \"$fresh\".channel_agg")"
expect_eq "agent CSAT responses: agent_agg against the ledger" \
  "$(sql -c "SELECT count(csat_score) FROM \"$fresh\".ledger WHERE agent_id IS NOT NULL")" \
  "$(sql -c "SELECT sum(csat_n) FROM \"$fresh\".agent_agg")"
expect_match "recovery triggers queued by the runtime role" '^[1-9][0-9]*$' \
  "$(sql -c "SELECT count(*) FROM \"$fresh\".recovery_outbox")"
expect_eq "recovery triggers left unsent after shutdown" 0 \
  "$(sql -c "SELECT count(*) FROM \"$fresh\".recovery_outbox WHERE sent_at IS NULL")"

finish
