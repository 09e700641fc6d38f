/*
 * The schema migrations and the runner against a real PostgreSQL 15: the
 * runner's bookkeeping and locking, the column order the consumer relies
 * on, the KPI views' rates, the ledger's partitions and retention.
 * Run under pg_virtualenv -v 15 (PG* variables).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "migrate.h"
#include "migrations.h"

/* The columns the consumer COPYs into the ledger, in the order of db.c. */
#define LEDGER_COLUMNS                                                                             \
	"event_id, occurred_at, channel, customer_id, agent_id, interaction_id, csat_score, "      \
	"csat_min, csat_max, nps_score, ces_score, ces_min, ces_max, ces_inverted, fcr, "          \
	"contact_outcome, wait_seconds, handle_seconds, negative_reasons, source_partition, "      \
	"source_offset"

#define AGG_COLUMNS                                                                                \
	"csat_n, csat_satisfied, csat_score_units, nps_n, nps_promoters, nps_passives, "           \
	"nps_detractors, ces_n, ces_effort_sum, ces_high, ces_low, fcr_n, fcr_yes, offered, "      \
	"answered, abandoned, self_service, answered_within_sl, wait_seconds_answered, "           \
	"handle_seconds, negative"

/* The names of CONTRACT.md's SQL interface, then the added columns. */
#define KPI_COLUMNS                                                                                \
	"csat_n, csat_satisfied, csat_score_sum, nps_n, nps_promoters, nps_passives, "             \
	"nps_detractors, ces_n, ces_effort_sum, ces_high, ces_low, fcr_n, fcr_yes, offered, "      \
	"answered, abandoned, self_service, answered_within_sl, wait_seconds_answered, "           \
	"handle_seconds, negative, csat_pct, nps, ces_mean, ces_high_pct, fcr_pct, answer_rate, "  \
	"abandon_rate, service_level, asa_seconds, aht_seconds, self_service_rate, csat_mean, "    \
	"csat_score_units"

/* Every derived figure of a view row, 4 decimals, NULL spelt out. */
#define R(c) "coalesce(" #c "::numeric(14,4)::text, 'NULL')"
#define RATES_SQL                                                                                                                                                 \
	"SELECT format('csat_pct=%%s csat_mean=%%s csat_score_sum=%%s nps=%%s ces_mean=%%s "                                                                      \
	"ces_high_pct=%%s fcr_pct=%%s answer_rate=%%s abandon_rate=%%s service_level=%%s "                                                                        \
	"asa=%%s aht=%%s self_service_rate=%%s', " R(csat_pct) ", " R(csat_mean) ", " R(csat_score_sum) ", " R(nps) ", " R(ces_mean) ", " R(ces_high_pct) ", " R( \
	    fcr_pct) ", " R(answer_rate) ", " R(abandon_rate) ", " R(service_level) ", " R(asa_seconds) ", " R(aht_seconds) ", " R(self_service_rate) ") FROM %s WHERE %s"

struct fixture {
	PGconn *conn;
	char *schema;
};

static int setup_fresh(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->conn = harness_pg_connect();
	f->schema = harness_fresh_schema(f->conn, "fc_schema");
	*state = f;
	return 0;
}

/* A fresh schema, migrated, first on the search path. */
static int setup_migrated(void **state)
{
	struct fixture *f;
	char errstr[512];
	char sql[256];

	setup_fresh(state);
	f = *state;
	if (migrate_run(f->conn, f->schema, errstr, sizeof(errstr)) < 0)
		fail_msg("migrate: %s", errstr);
	snprintf(sql, sizeof(sql), "SET search_path TO \"%s\"", f->schema);
	harness_exec(f->conn, sql);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	harness_drop_schema(f->conn, f->schema);
	free(f->schema);
	PQfinish(f->conn);
	free(f);
	return 0;
}

/* Asserts that sql yields the text want (NULL: SQL NULL). */
static void expect_text(PGconn *conn, const char *sql, const char *want)
{
	char *got = harness_query_text(conn, sql);
	char shown[1024];
	bool same = got && want ? strcmp(got, want) == 0 : got == want;

	snprintf(shown, sizeof(shown), "%s", got ? got : "NULL");
	free(got);
	if (!same)
		fail_msg("%s\n  got:  %s\n  want: %s", sql, shown, want ? want : "NULL");
}

static void expect_rates(PGconn *conn, const char *view, const char *where, const char *want)
{
	char sql[2048];

	snprintf(sql, sizeof(sql), RATES_SQL, view, where);
	expect_text(conn, sql, want);
}

/* The SQLSTATE with which sql fails; fails the test when sql succeeds. */
static void expect_sqlstate(PGconn *conn, const char *sql, const char *want)
{
	PGresult *res = PQexec(conn, sql);
	const char *got = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char shown[16];

	snprintf(shown, sizeof(shown), "%s", got ? got : "none");
	PQclear(res);
	if (strcmp(shown, want) != 0)
		fail_msg("%s\n  sqlstate %s, want %s", sql, shown, want);
}

/* --- the runner ------------------------------------------------------------ */

static void test_schema_name_rules(void **state)
{
	char errstr[512] = "";
	char longest[65];

	(void)state;
	assert_true(migrate_schema_name_valid("feedback"));
	assert_true(migrate_schema_name_valid("_"));
	assert_true(migrate_schema_name_valid("fc_test_42"));
	memset(longest, 'a', 63);
	longest[63] = '\0';
	assert_true(migrate_schema_name_valid(longest));
	longest[63] = 'a'; /* 64 characters: PostgreSQL would truncate it */
	longest[64] = '\0';
	assert_false(migrate_schema_name_valid(longest));
	assert_false(migrate_schema_name_valid(NULL));
	assert_false(migrate_schema_name_valid(""));
	assert_false(migrate_schema_name_valid("Feedback"));
	assert_false(migrate_schema_name_valid("1feedback"));
	assert_false(migrate_schema_name_valid("feed-back"));
	assert_false(migrate_schema_name_valid("feed back"));
	assert_false(migrate_schema_name_valid("x\"; DROP SCHEMA public; --"));
	assert_false(migrate_schema_name_valid("f\xc3\xa9"));

	/* Rejected before the connection is looked at: there is none. */
	assert_int_equal(migrate_run(NULL, "Feedback", errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "invalid schema name \"Feedback\""));
	errstr[0] = '\0';
	assert_int_equal(migrate_current_version(NULL, "a;b", errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "invalid schema name \"a;b\""));
	errstr[0] = '\0';
	assert_int_equal(migrate_run(NULL, "feedback", errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "no connection"));
}

static void test_migrate_fresh_then_up_to_date(void **state)
{
	struct fixture *f = *state;
	char errstr[512];
	char sql[512];
	int last = fc_migrations[fc_migrations_count - 1].version;

	assert_true(fc_migrations_count >= 1);
	assert_int_equal(fc_migrations[0].version, 1);
	assert_string_equal(fc_migrations[0].name, "core");

	/* The schema does not exist yet: version 0, not an error. */
	assert_int_equal(migrate_current_version(f->conn, f->schema, errstr, sizeof(errstr)), 0);

	assert_int_equal(migrate_run(f->conn, f->schema, errstr, sizeof(errstr)),
	                 fc_migrations_count);
	assert_int_equal(migrate_current_version(f->conn, f->schema, errstr, sizeof(errstr)), last);
	assert_int_equal(PQtransactionStatus(f->conn), PQTRANS_IDLE);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".schema_migrations", f->schema);
	assert_int_equal(harness_query_int(f->conn, sql), fc_migrations_count);
	snprintf(sql, sizeof(sql), "SELECT name FROM \"%s\".schema_migrations WHERE version = 1",
	         f->schema);
	expect_text(f->conn, sql, "core");

	/* Second run: nothing to do, nothing recorded twice. */
	assert_int_equal(migrate_run(f->conn, f->schema, errstr, sizeof(errstr)), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".schema_migrations", f->schema);
	assert_int_equal(harness_query_int(f->conn, sql), fc_migrations_count);

	/* Everything landed in the schema, nothing in public, the session's path untouched. */
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM pg_class WHERE relnamespace = '\"%s\"'::regnamespace "
	         "AND relname IN ('ledger', 'ledger_default', 'channel_agg', 'agent_agg', "
	         "'consumer_offsets', 'channel_kpi', 'agent_kpi', 'schema_migrations')",
	         f->schema);
	assert_int_equal(harness_query_int(f->conn, sql), 8);
	assert_int_equal(harness_query_int(f->conn,
	                                   "SELECT count(*) FROM pg_class WHERE relnamespace = "
	                                   "'public'::regnamespace AND relname IN ('ledger', "
	                                   "'channel_agg', 'schema_migrations')"),
	                 0);
	expect_text(f->conn, "SHOW search_path", "\"$user\", public");
}

/* Version 1 cannot apply over a table of the same name: rolled back, nothing recorded. */
/*
 * Only 011 says it keeps older builds running: the newest version that
 * older builds cannot run on is 10, and the runner recorded it so.
 */
static void test_older_builds_run(void **state)
{
	struct fixture *f = *state;
	char errstr[512];

	for (int i = 0; i < fc_migrations_count; i++)
		assert_int_equal(migrate_keeps_older_builds(&fc_migrations[i]),
		                 fc_migrations[i].version == 11);
	expect_text(f->conn,
	            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations "
	            "WHERE older_builds_run",
	            "11");
	assert_int_equal(migrate_needed_version(f->conn, f->schema, errstr, sizeof(errstr)), 10);
	/* The line must stand alone, not inside another comment. */
	const struct migration quoted = {12, "x",
	                                 "-- not: keeps older builds running\nSELECT 1;\n"};
	const struct migration first = {12, "x", "-- keeps older builds running\nSELECT 1;\n"};
	assert_false(migrate_keeps_older_builds(&quoted));
	assert_true(migrate_keeps_older_builds(&first));
}

static void test_failed_migration_rolls_back(void **state)
{
	struct fixture *f = *state;
	char errstr[512];
	char sql[256];

	snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".ledger (x int)",
	         f->schema, f->schema);
	harness_exec(f->conn, sql);

	assert_int_equal(migrate_run(f->conn, f->schema, errstr, sizeof(errstr)), -1);
	snprintf(sql, sizeof(sql),
	         "migration 1 \"core\" of schema \"%s\" failed (sqlstate 42P07): relation "
	         "\"ledger\" already exists",
	         f->schema);
	assert_string_equal(errstr, sql);
	assert_int_equal(PQtransactionStatus(f->conn), PQTRANS_IDLE);
	assert_int_equal(migrate_current_version(f->conn, f->schema, errstr, sizeof(errstr)), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".ledger", f->schema);
	assert_int_equal(harness_query_int(f->conn, sql), 0);

	/* A caller's open transaction is not the runner's to commit. */
	harness_exec(f->conn, "BEGIN");
	assert_int_equal(migrate_run(f->conn, f->schema, errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "inside a transaction"));
	harness_exec(f->conn, "ROLLBACK");
}

struct racer {
	const char *schema;
	pthread_barrier_t *start;
	int applied;
	char errstr[512];
};

static void *race_migrate(void *arg)
{
	struct racer *r = arg;
	PGconn *conn = PQconnectdb("");

	pthread_barrier_wait(r->start);
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(r->errstr, sizeof(r->errstr), "connect: %s", PQerrorMessage(conn));
		r->applied = -1;
	} else {
		r->applied = migrate_run(conn, r->schema, r->errstr, sizeof(r->errstr));
	}
	PQfinish(conn);
	return NULL;
}

/*
 * Two replicas migrate one fresh schema at once. The test holds the lock
 * until both wait on it, so that they really contend.
 */
static void test_concurrent_migrations_serialise(void **state)
{
	struct fixture *f = *state;
	pthread_barrier_t start;
	pthread_t threads[2];
	struct racer racers[2];
	char sql[512];
	char waiters[512];
	long long waiting = 0;

	/* A bigint advisory key shows in pg_locks as classid (high half) and objid. */
	snprintf(waiters, sizeof(waiters),
	         "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
	         "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = "
	         "hashtext('feedback-consumer.migrate.%s')::bigint",
	         f->schema);
	snprintf(sql, sizeof(sql),
	         "BEGIN; SELECT pg_advisory_xact_lock(hashtext('feedback-consumer.migrate.%s'))",
	         f->schema);
	harness_exec(f->conn, sql);
	pthread_barrier_init(&start, NULL, 3);
	for (int i = 0; i < 2; i++) {
		racers[i] = (struct racer){.schema = f->schema, .start = &start};
		assert_int_equal(pthread_create(&threads[i], NULL, race_migrate, &racers[i]), 0);
	}
	pthread_barrier_wait(&start);
	for (int waited = 0; waited < 10000 && waiting < 2; waited += 20) {
		waiting = harness_query_int(f->conn, waiters);
		if (waiting < 2)
			usleep(20000);
	}
	harness_exec(f->conn, "COMMIT");
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start);

	assert_int_equal(waiting, 2);
	for (int i = 0; i < 2; i++)
		if (racers[i].applied < 0)
			fail_msg("replica %d: %s", i, racers[i].errstr);
	assert_int_equal(racers[0].applied + racers[1].applied, fc_migrations_count);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) * 1000 + count(DISTINCT version) FROM \"%s\".schema_migrations",
	         f->schema);
	assert_int_equal(harness_query_int(f->conn, sql),
	                 fc_migrations_count * 1000 + fc_migrations_count);
}

/* --- the tables the consumer writes -------------------------------------- */

static void expect_columns(PGconn *conn, const char *table, const char *want)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) "
	         "FROM information_schema.columns WHERE table_schema = current_schema() "
	         "AND table_name = '%s'",
	         table);
	expect_text(conn, sql, want);
}

/* The collation of table.column in the search path's schema. */
static void expect_collation(PGconn *conn, const char *table, const char *column, const char *want)
{
	char sql[512];

	snprintf(
	    sql, sizeof(sql),
	    "SELECT c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
	    "WHERE a.attrelid = '%s'::regclass AND a.attname = '%s'",
	    table, column);
	expect_text(conn, sql, want);
}

/*
 * Ids are opaque: the keys that grow without end compare them as bytes
 * (006), whatever the database's collation; the ledger, with no index on
 * them, keeps the database's.
 */
static void test_id_collation(void **state)
{
	struct fixture *f = *state;

	expect_collation(f->conn, "event_ids", "event_id", "C");
	expect_collation(f->conn, "recovery_state", "customer_id", "C");
	expect_collation(f->conn, "ledger", "event_id", "default");
}

/* Room for HOT updates (001, and 007 for agent rows); the ids' key and the ledger fill up. */
static void test_fill_factors(void **state)
{
	struct fixture *f = *state;

	expect_text(
	    f->conn,
	    "SELECT string_agg(relname || ' ' || coalesce(array_to_string(reloptions, ','), "
	    "'-'), '; ' ORDER BY relname) FROM pg_class WHERE relnamespace = "
	    "current_schema()::regnamespace AND relname IN ('agent_agg', 'channel_agg', "
	    "'event_ids', 'ledger_default')",
	    "agent_agg fillfactor=50; channel_agg fillfactor=80; event_ids -; "
	    "ledger_default -");
}

static void test_column_order(void **state)
{
	struct fixture *f = *state;

	expect_columns(f->conn, "ledger", LEDGER_COLUMNS ", accepted_at");
	expect_columns(f->conn, "channel_agg", "bucket, channel, " AGG_COLUMNS);
	expect_columns(f->conn, "agent_agg", "bucket, agent_id, channel, " AGG_COLUMNS);
	expect_columns(f->conn, "consumer_offsets",
	               "group_id, topic, partition, next_offset, updated_at");
	expect_columns(f->conn, "schema_migrations", "version, name, applied_at, older_builds_run");
	expect_columns(f->conn, "channel_kpi", "bucket, channel, " KPI_COLUMNS);
	expect_columns(f->conn, "agent_kpi", "bucket, agent_id, channel, " KPI_COLUMNS);
}

/*
 * The outbox's indexes: the key, what the publisher scans and what pruning
 * scans. No unique index on trigger_id: event_ids takes an event once, and
 * its trigger is written in the same transaction.
 */
static void test_outbox_indexes(void **state)
{
	struct fixture *f = *state;

	expect_text(f->conn,
	            "SELECT string_agg(indexname, ' ' ORDER BY indexname) FROM pg_indexes "
	            "WHERE schemaname = current_schema() AND tablename = 'recovery_outbox'",
	            "recovery_outbox_pending recovery_outbox_pkey recovery_outbox_sent");
}

static void test_table_rules(void **state)
{
	struct fixture *f = *state;

	/* check_violation: a channel outside the contract, a bucket not on 15 minutes. */
	expect_sqlstate(f->conn,
	                "INSERT INTO channel_agg (bucket, channel) "
	                "VALUES ('2024-03-10 09:15:00+00', 'fax')",
	                "23514");
	expect_sqlstate(f->conn,
	                "INSERT INTO channel_agg (bucket, channel) "
	                "VALUES ('2024-03-10 09:16:00+00', 'sms')",
	                "23514");
	expect_sqlstate(f->conn,
	                "INSERT INTO ledger (event_id, occurred_at, channel, customer_id, fcr, "
	                "source_partition, source_offset) VALUES ('e', now(), 'sms', 'c', 3, 0, 0)",
	                "23514");
	/* A bucket on 15 minutes of a +05:45 zone is on 15 minutes of UTC as well. */
	harness_exec(f->conn, "INSERT INTO agent_agg (bucket, agent_id, channel) "
	                      "VALUES ('2024-03-10 15:00:00+05:45', 'a-1', 'sms')");
	expect_text(f->conn, "SELECT csat_n || ' ' || negative FROM agent_agg", "0 0");
}

/* --- the KPI views --------------------------------------------------------- */

static void test_channel_kpi_rates(void **state)
{
	struct fixture *f = *state;

	/*
	 * phone, 09:15:
	 *   CSAT 4 answers, 3 satisfied, each normalised 75 (4 x 189000 units of 1/2520)
	 *     -> csat_pct 3/4 = 75, csat_score_sum 756000/2520 = 300, csat_mean 300/4 = 75
	 *   NPS 10: 5 promoters, 3 passives, 2 detractors -> 100 x (5-2)/10 = 30
	 *   CES 8 answers, effort 22, 2 high, 5 low -> mean 22/8 = 2.75, high 2/8 = 25 %
	 *   FCR 5 answers, 4 yes -> 80 %
	 *   contacts 20 offered, 16 answered, 3 abandoned, 1 self-service, 12 within the SL,
	 *   720 s of waiting and 4800 s of handling of the answered ones
	 *     -> answer rate 16/20 = 0.8, abandon rate 3/20 = 0.15, service level
	 *        12/20 = 60 %, ASA 720/16 = 45 s, AHT 4800/16 = 300 s, self-service 1/20
	 */
	harness_exec(f->conn,
	             "INSERT INTO channel_agg (bucket, channel, " AGG_COLUMNS ") VALUES "
	             "('2024-03-10 09:15:00+00', 'phone', 4, 3, 756000, 10, 5, 3, 2, 8, 22, 2, 5, "
	             "5, 4, 20, 16, 3, 1, 12, 720, 4800, 3)");
	expect_rates(f->conn, "channel_kpi", "channel = 'phone'",
	             "csat_pct=75.0000 csat_mean=75.0000 csat_score_sum=300.0000 nps=30.0000 "
	             "ces_mean=2.7500 ces_high_pct=25.0000 fcr_pct=80.0000 answer_rate=0.8000 "
	             "abandon_rate=0.1500 service_level=60.0000 asa=45.0000 aht=300.0000 "
	             "self_service_rate=0.0500");
	/* The counts pass through unchanged, the bucket is the stored instant. */
	expect_text(
	    f->conn,
	    "SELECT concat_ws(' ', bucket AT TIME ZONE 'UTC', csat_n, csat_satisfied, "
	    "nps_n, nps_promoters, nps_passives, nps_detractors, ces_n, ces_effort_sum, "
	    "ces_high, ces_low, fcr_n, fcr_yes, offered, answered, abandoned, self_service, "
	    "answered_within_sl, wait_seconds_answered, handle_seconds, negative, "
	    "csat_score_units) FROM channel_kpi",
	    "2024-03-10 09:15:00 4 3 10 5 3 2 8 22 2 5 5 4 20 16 3 1 12 720 4800 3 756000");

	/* email: every count 0 -> every rate NULL, the score sum 0. */
	harness_exec(f->conn, "INSERT INTO channel_agg (bucket, channel) "
	                      "VALUES ('2024-03-10 09:15:00+00', 'email')");
	expect_rates(f->conn, "channel_kpi", "channel = 'email'",
	             "csat_pct=NULL csat_mean=NULL csat_score_sum=0.0000 nps=NULL ces_mean=NULL "
	             "ces_high_pct=NULL fcr_pct=NULL answer_rate=NULL abandon_rate=NULL "
	             "service_level=NULL asa=NULL aht=NULL self_service_rate=NULL");

	/*
	 * sms: 2 contacts offered, both abandoned -> answer rate 0, abandon rate 1,
	 * service level 0, but ASA and AHT have no answered contact: NULL.
	 */
	harness_exec(f->conn, "INSERT INTO channel_agg (bucket, channel, offered, abandoned) "
	                      "VALUES ('2024-03-10 09:15:00+00', 'sms', 2, 2)");
	expect_rates(f->conn, "channel_kpi", "channel = 'sms'",
	             "csat_pct=NULL csat_mean=NULL csat_score_sum=0.0000 nps=NULL ces_mean=NULL "
	             "ces_high_pct=NULL fcr_pct=NULL answer_rate=0.0000 abandon_rate=1.0000 "
	             "service_level=0.0000 asa=NULL aht=NULL self_service_rate=0.0000");
}

static void test_agent_kpi_rates(void **state)
{
	struct fixture *f = *state;

	/*
	 * a-1 on social, 10:00: CSAT 5, 4 and 2 on a 1-5 scale, normalised 100, 75 and
	 * 25 = 252000 + 189000 + 63000 units; satisfied (top-2-box) 2
	 *   -> csat_pct 2/3 = 66.6667, csat_score_sum 504000/2520 = 200, mean 200/3 = 66.6667
	 * NPS 3 answers: 0 promoters, 1 passive, 2 detractors -> 100 x (0-2)/3 = -66.6667
	 * no CES, FCR or contact: NULL.
	 */
	harness_exec(f->conn, "INSERT INTO agent_agg (bucket, agent_id, channel, csat_n, "
	                      "csat_satisfied, csat_score_units, nps_n, nps_promoters, "
	                      "nps_passives, nps_detractors, negative) "
	                      "VALUES ('2024-03-10 10:00:00+00', 'a-1', 'social', 3, 2, 504000, 3, "
	                      "0, 1, 2, 2)");
	expect_rates(f->conn, "agent_kpi", "agent_id = 'a-1'",
	             "csat_pct=66.6667 csat_mean=66.6667 csat_score_sum=200.0000 nps=-66.6667 "
	             "ces_mean=NULL ces_high_pct=NULL fcr_pct=NULL answer_rate=NULL "
	             "abandon_rate=NULL service_level=NULL asa=NULL aht=NULL "
	             "self_service_rate=NULL");

	/*
	 * a-2 on phone, 10:00: CES 1-5 with effort 5 and 4 (2 high) -> mean 4.5, high 100 %;
	 * FCR 3 answers, 1 yes -> 33.3333; 3 offered, 3 answered, 2 within the SL,
	 * 100 s of waiting, 1000 s of handling -> service level 66.6667, ASA 33.3333,
	 * AHT 333.3333.
	 */
	harness_exec(f->conn,
	             "INSERT INTO agent_agg (bucket, agent_id, channel, ces_n, "
	             "ces_effort_sum, ces_high, fcr_n, fcr_yes, offered, answered, "
	             "answered_within_sl, wait_seconds_answered, handle_seconds) "
	             "VALUES ('2024-03-10 10:00:00+00', 'a-2', 'phone', 2, 9, 2, 3, 1, 3, 3, "
	             "2, 100, 1000)");
	expect_rates(f->conn, "agent_kpi", "agent_id = 'a-2'",
	             "csat_pct=NULL csat_mean=NULL csat_score_sum=0.0000 nps=NULL "
	             "ces_mean=4.5000 ces_high_pct=100.0000 fcr_pct=33.3333 answer_rate=1.0000 "
	             "abandon_rate=0.0000 service_level=66.6667 asa=33.3333 aht=333.3333 "
	             "self_service_rate=0.0000");
	/* Rates are not rounded in the view: 1/3 keeps its digits. */
	expect_text(f->conn,
	            "SELECT fcr_pct::numeric(20,12)::text FROM agent_kpi "
	            "WHERE agent_id = 'a-2'",
	            "33.333333333333");
}

static void test_sum_rolls_up(void **state)
{
	struct fixture *f = *state;

	/*
	 * phone, two buckets:
	 *   09:15  CSAT 4 (3 satisfied, scores 4 x 75)  NPS 10 (5 P, 3 p, 2 D)  20 offered, 16
	 * answered 09:30  CSAT 1 (0 satisfied, score 0)        NPS 4 (0 P, 0 p, 4 D)    5 offered,
	 * 4 answered The hour: CSAT 3/5 = 60 % (not 37.5, the mean of the buckets' 75 and 0), score
	 * sum 300, mean score 300/5 = 60, NPS 100 x (5-6)/14 = -7.1429 (not -35, the mean
	 * of 30 and -100), answer rate 20/25 = 0.8. sms of 09:30 stays out.
	 */
	harness_exec(f->conn,
	             "INSERT INTO channel_agg (bucket, channel, csat_n, csat_satisfied, "
	             "csat_score_units, nps_n, nps_promoters, nps_passives, nps_detractors, "
	             "offered, answered) VALUES "
	             "('2024-03-10 09:15:00+00', 'phone', 4, 3, 756000, 10, 5, 3, 2, 20, 16), "
	             "('2024-03-10 09:30:00+00', 'phone', 1, 0, 0, 4, 0, 0, 4, 5, 4), "
	             "('2024-03-10 09:30:00+00', 'sms', 7, 7, 1764000, 0, 0, 0, 0, 0, 0)");
	expect_text(
	    f->conn,
	    "SELECT concat_ws(' ', sum(csat_n), sum(csat_satisfied), "
	    "(100 * sum(csat_satisfied) / sum(csat_n))::numeric(14,4), "
	    "sum(csat_score_sum)::numeric(14,4), "
	    "(sum(csat_score_sum) / sum(csat_n))::numeric(14,4), "
	    "(100 * (sum(nps_promoters) - sum(nps_detractors)) / sum(nps_n))::numeric(14,4), "
	    "(sum(answered)::numeric / sum(offered))::numeric(14,4), "
	    "avg(csat_pct)::numeric(14,4)) "
	    "FROM channel_kpi WHERE channel = 'phone' "
	    "AND bucket >= '2024-03-10 09:00:00+00' AND bucket < '2024-03-10 10:00:00+00'",
	    "5 3 60.0000 300.0000 60.0000 -7.1429 0.8000 37.5000");
}

/*
 * `feedback-consumer report` over one hour, read through channel_kpi. sms
 * 09:30: CSAT 7 of 7 satisfied, 100 points each. phone 09:15 and 09:30
 * summed: CSAT 3 of 5 satisfied (60 %, "average"), score sum 4 x 75 = 300
 * (mean 60); NPS (5 - 6) / 14 = -7.1; CES effort 9 / 2 = 4.50, 2 of 2 high;
 * FCR 1 of 3; 35 offered: 28 answered (80 %), 5 abandoned (14.3 %), 18
 * within the SL (51.4 %), 2 self-service (5.7 %); ASA 840 / 28 = 30.0 s,
 * AHT 8400 / 28 = 300.0 s; 9 negative. Intervals: Wilson and KPI.md's NPS
 * formula with z = 1.96 (NPS: half 1.96 x sqrt(11/14 - (1/14)^2) / sqrt(14)
 * x 100 = 46.28). Below n = 30 each figure says "small sample"; 35
 * offered is not small, 28 answered is. The rows before 09:00 and from 10:00
 * stay out; email and social have none inside.
 */
static const char report_expected[] =
    "KPI report from 2024-03-10 09:00:00+00 until 2024-03-10 10:00:00+00 (95 % intervals; "
    "n < 30 is a small sample)\n"
    "\n"
    "sms\n"
    "  CSAT                    100.0 %  [ 64.6, 100.0]  n=7  excellent, mean score 100.0/100"
    "  small sample\n"
    "  NPS                    -\n"
    "  CES mean effort        -\n"
    "  CES high effort        -\n"
    "  FCR                    -\n"
    "  answer rate            -\n"
    "  abandonment rate       -\n"
    "  service level          -\n"
    "  self-service rate      -\n"
    "  negative events             0\n"
    "\n"
    "phone\n"
    "  CSAT                     60.0 %  [ 23.1,  88.2]  n=5  average, mean score 60.0/100"
    "  small sample\n"
    "  NPS                      -7.1    [ -53.4,  +39.1]  n=14  small sample\n"
    "  CES mean effort          4.50            n=2  small sample\n"
    "  CES high effort         100.0 %  [ 34.2, 100.0]  n=2  small sample\n"
    "  FCR                      33.3 %  [  6.1,  79.2]  n=3  small sample\n"
    "  answer rate              80.0 %  [ 64.1,  90.0]  n=35\n"
    "  abandonment rate         14.3 %  [  6.3,  29.4]  n=35\n"
    "  service level            51.4 %  [ 35.6,  67.0]  n=35\n"
    "  self-service rate         5.7 %  [  1.6,  18.6]  n=35\n"
    "  ASA                      30.0 s          n=28  small sample\n"
    "  AHT                     300.0 s          n=28  small sample\n"
    "  negative events             9\n"
    "\n";

/*
 * Runs "[env] feedback-consumer report --database.schema=schema args" with
 * stderr on stdout, its output in out; returns its exit code.
 */
static int run_report(const char *env, const char *schema, const char *args, char *out, size_t size)
{
	const char *bin = getenv("FC_BIN");
	char cmd[512];
	FILE *p;
	size_t len;

	assert_non_null(bin);
	snprintf(cmd, sizeof(cmd), "%s '%s' report --log.format=text --database.schema=%s %s 2>&1",
	         env, bin, schema, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	len = fread(out, 1, size - 1, p);
	out[len] = '\0';
	int status = pclose(p);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_report(void **state)
{
	struct fixture *f = *state;
	char out[4096];

	harness_exec(
	    f->conn,
	    "INSERT INTO channel_agg (bucket, channel, csat_n, csat_satisfied, "
	    "csat_score_units, nps_n, nps_promoters, nps_passives, nps_detractors, "
	    "ces_n, ces_effort_sum, ces_high, fcr_n, fcr_yes, offered, answered, "
	    "abandoned, self_service, answered_within_sl, wait_seconds_answered, "
	    "handle_seconds, negative) VALUES "
	    "('2024-03-10 09:15:00+00', 'phone', 4, 3, 756000, 10, 5, 3, 2, 2, 9, 2, 3, 1, "
	    "20, 16, 3, 1, 12, 480, 4800, 4), "
	    "('2024-03-10 09:30:00+00', 'phone', 1, 0, 0, 4, 0, 0, 4, 0, 0, 0, 0, 0, "
	    "15, 12, 2, 1, 6, 360, 3600, 5), "
	    "('2024-03-10 09:30:00+00', 'sms', 7, 7, 1764000, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
	    "0, 0, 0, 0, 0, 0, 0, 0), "
	    "('2024-03-10 08:45:00+00', 'social', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
	    "0, 0, 0, 0, 0, 0, 0, 3), "
	    "('2024-03-10 10:00:00+00', 'email', 2, 2, 504000, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
	    "0, 0, 0, 0, 0, 0, 0, 0)");
	assert_int_equal(run_report("", f->schema,
	                            "'--report.from=2024-03-10 09:00:00+00' "
	                            "'--report.to=2024-03-10 10:00:00+00'",
	                            out, sizeof(out)),
	                 0);
	if (strcmp(out, report_expected) != 0)
		fail_msg("report:\n%s\nexpected:\n%s", out, report_expected);

	/* A bound without an offset is UTC, as the buckets are, whatever the session's zone. */
	assert_int_equal(run_report("PGTZ=Europe/Berlin", f->schema,
	                            "'--report.from=2024-03-10 09:00' "
	                            "'--report.to=2024-03-10 11:00:00+01'",
	                            out, sizeof(out)),
	                 0);
	if (strcmp(out, report_expected) != 0)
		fail_msg("report with PGTZ=Europe/Berlin:\n%s\nexpected:\n%s", out,
		         report_expected);

	/* A bound inside a bucket, or no timestamp: exit 2, the setting named. */
	static const struct {
		const char *flag, *message;
	} bad[] = {
	    {"'--report.from=2024-03-10 09:07:00+00'",
	     "'report.from' 2024-03-10 09:07:00+00 is inside a 15-minute bucket"},
	    {"--report.to=yesterdayish", "'report.to' is not a timestamp PostgreSQL reads"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(run_report("", f->schema, bad[i].flag, out, sizeof(out)), 2);
		if (strstr(out, bad[i].message) == NULL)
			fail_msg("report %s said:\n%s", bad[i].flag, out);
	}
}

/* --- the ledger's partitions ----------------------------------------------- */

/* The event ids of table (ledger or event_ids), in order, joined by commas. */
static void expect_ids(PGconn *conn, const char *table, const char *want)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM %s",
	         table);
	expect_text(conn, sql, want);
}

/* Inserts one event and returns the partition it went to (malloc'd). */
static char *ledger_insert(PGconn *conn, const char *event_id, const char *occurred_at)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "INSERT INTO ledger (" LEDGER_COLUMNS ") VALUES ('%s', '%s', 'sms', 'c-1', NULL, "
	         "NULL, 5, 1, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 7) "
	         "RETURNING tableoid::regclass::text",
	         event_id, occurred_at);
	return harness_query_text(conn, sql);
}

static void expect_partition(PGconn *conn, const char *event_id, const char *occurred_at,
                             const char *want)
{
	char *got = ledger_insert(conn, event_id, occurred_at);
	bool same = strcmp(got, want) == 0;
	char shown[128];

	snprintf(shown, sizeof(shown), "%s", got);
	free(got);
	if (!same)
		fail_msg("event %s at %s went to %s, want %s", event_id, occurred_at, shown, want);
}

#define NOTICES_SIZE 1024

static void collect_notice(void *arg, const PGresult *res)
{
	char *buf = arg;
	size_t used = strlen(buf);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (msg)
		snprintf(buf + used, NOTICES_SIZE - used, "%s\n", msg);
}

static void test_migration_creates_partitions(void **state)
{
	struct fixture *f = *state;

	/* From 3 months back to 12 ahead: 3 + 1 + 12 = 16 months, and the default. */
	assert_int_equal(harness_query_int(f->conn,
	                                   "SELECT count(*) FROM pg_inherits "
	                                   "WHERE inhparent = 'ledger'::regclass "
	                                   "AND inhrelid::regclass::text ~ '^ledger_p[0-9]{6}$'"),
	                 16);
	assert_int_equal(harness_query_int(f->conn, "SELECT count(*) FROM pg_inherits "
	                                            "WHERE inhparent = 'ledger'::regclass"),
	                 17);
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_ensure_partitions((date_trunc('month', "
	                               "now() AT TIME ZONE 'UTC') - interval '3 months')::date, "
	                               "16)"),
	    0);
	/* An event of now lands in this month's partition. */
	expect_text(f->conn,
	            "WITH ins AS (INSERT INTO ledger (event_id, occurred_at, channel, customer_id, "
	            "source_partition, source_offset) VALUES ('now', now(), 'email', 'c', 0, 0) "
	            "RETURNING tableoid::regclass::text AS part, occurred_at) "
	            "SELECT part = 'ledger_p' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYYMM') "
	            "FROM ins",
	            "t");
}

static void test_partition_routing_and_idempotency(void **state)
{
	struct fixture *f = *state;
	char sql[512];

	/*
	 * Created from outside the schema, in a +05:45 session: the functions keep
	 * their own search path, and the bounds are UTC months all the same.
	 * '2001-03-17' stands for its month: March and April 2001.
	 */
	harness_exec(f->conn, "SET search_path TO public; SET TimeZone TO 'Asia/Kathmandu'");
	snprintf(sql, sizeof(sql), "SELECT \"%s\".ledger_ensure_partitions('2001-03-17', 2)",
	         f->schema);
	assert_int_equal(harness_query_int(f->conn, sql), 2);
	snprintf(sql, sizeof(sql), "SET search_path TO \"%s\"", f->schema);
	harness_exec(f->conn, sql);

	/* In Kathmandu this is already April the first, 05:44. */
	expect_partition(f->conn, "e-mar", "2001-03-31 23:59:59.999999+00", "ledger_p200103");
	expect_partition(f->conn, "e-apr", "2001-04-01 00:00:00+00", "ledger_p200104");
	expect_partition(f->conn, "e-feb", "2001-02-28 23:59:59+00", "ledger_default");
	expect_partition(f->conn, "e-far", "2101-01-15 00:00:00+00", "ledger_default");

	/*
	 * The key is the event id alone, in event_ids: a redelivery, or the same
	 * id with another occurred_at, is taken once. The ledger holds no key.
	 */
	expect_text(f->conn,
	            "WITH ins AS (INSERT INTO event_ids (event_id, occurred_at) VALUES "
	            "('e-mar', '2001-03-31 23:59:59.999999+00'), "
	            "('e-new', '2001-04-02 00:00:00+00') "
	            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
	            "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM ins",
	            "e-mar,e-new");
	expect_text(f->conn,
	            "WITH ins AS (INSERT INTO event_ids (event_id, occurred_at) VALUES "
	            "('e-mar', '2001-03-31 23:59:59.999999+00'), "
	            "('e-new', '2001-04-20 00:00:00+00'), ('e-far', '2101-01-15 00:00:00+00') "
	            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
	            "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM ins",
	            "e-far");
	expect_sqlstate(f->conn,
	                "INSERT INTO event_ids (event_id, occurred_at) VALUES "
	                "('e-new', '2001-04-21 00:00:00+00')",
	                "23505");
	expect_text(f->conn,
	            "SELECT string_agg(event_id || ' ' || to_char(occurred_at AT TIME ZONE 'UTC', "
	            "'YYYY-MM-DD'), ',' ORDER BY event_id) FROM event_ids",
	            "e-far 2101-01-15,e-mar 2001-03-31,e-new 2001-04-02");
	assert_int_equal(harness_query_int(f->conn, "SELECT count(*) FROM ledger"), 4);
}

/*
 * A temporary table named as a month's partition, in the caller's session,
 * does not pass for it: the partition is created, and the month's rows go
 * there, not to the default partition.
 */
static void test_temporary_table_is_no_partition(void **state)
{
	struct fixture *f = *state;

	harness_exec(f->conn, "CREATE TEMP TABLE ledger_p200103 (a int)");
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_ensure_partitions('2001-03-01', 1)"), 1);
	/* Gone before the look-up by name, which it would shadow. */
	harness_exec(f->conn, "DROP TABLE pg_temp.ledger_p200103");
	expect_partition(f->conn, "e-mar", "2001-03-10 12:00:00+00", "ledger_p200103");
}

static void test_ensure_and_drop_partitions(void **state)
{
	struct fixture *f = *state;
	char notices[NOTICES_SIZE] = "";
	PQnoticeReceiver previous;

	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_ensure_partitions('2001-03-01', 1)"), 1);
	expect_partition(f->conn, "e-feb", "2001-02-10 12:00:00+00", "ledger_default");
	expect_partition(f->conn, "e-mar", "2001-03-10 12:00:00+00", "ledger_p200103");
	harness_exec(f->conn, "INSERT INTO event_ids VALUES ('e-feb', '2001-02-10 12:00:00+00'), "
	                      "('e-mar', '2001-03-10 12:00:00+00'), "
	                      "('e-may', '2001-05-10 12:00:00+00')");

	/*
	 * January to April 2001: March exists, February's rows sit in the default
	 * partition (skipped with a notice), January and April are created -> 2.
	 */
	previous = PQsetNoticeReceiver(f->conn, collect_notice, notices);
	harness_exec(f->conn, "SET client_min_messages TO notice");
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_ensure_partitions('2001-01-01', 4)"), 2);
	harness_exec(f->conn, "SET client_min_messages TO warning");
	PQsetNoticeReceiver(f->conn, previous, NULL);
	assert_string_equal(notices, "ledger partition \"ledger_p200102\" not created: rows of "
	                             "2001-02 already sit in \"ledger_default\"\n");
	expect_text(f->conn, "SELECT tableoid::regclass::text FROM ledger WHERE event_id = 'e-feb'",
	            "ledger_default");
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_ensure_partitions('2001-01-01', 0)"), 0);

	/*
	 * Retention cuts at the first day of the cutoff's month: partitions
	 * ending by then go, and the rows and ids before it, wherever they sit.
	 * Cutoff 2001-03-31: January ends 2001-02-01, before the cut 2001-03-01;
	 * March ends 2001-04-01, after it -> 1. February's row in the default
	 * partition goes, and the ids of February and of e-jan, whose row is
	 * nowhere (its month was dropped as a late event came in).
	 */
	expect_partition(f->conn, "e-far", "2101-01-15 00:00:00+00", "ledger_default");
	harness_exec(f->conn, "INSERT INTO event_ids VALUES ('e-jan', '2001-01-05 00:00:00+00'), "
	                      "('e-far', '2101-01-15 00:00:00+00')");
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_drop_partitions_before('2001-03-31')"), 1);
	expect_ids(f->conn, "ledger", "e-far,e-mar");
	expect_ids(f->conn, "event_ids", "e-far,e-mar,e-may");
	/*
	 * Cutoff 2001-05-01: March and April -> 2; March's row and id go with
	 * them: a redelivery that old counts again. May is after the cut, and
	 * the row of 2101 in the default partition too: they stay.
	 */
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_drop_partitions_before('2001-05-01')"), 2);
	expect_ids(f->conn, "ledger", "e-far");
	expect_ids(f->conn, "event_ids", "e-far,e-may");
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_drop_partitions_before('2001-05-01')"), 0);
	/* The default partition stays, and so do the partitions of the present. */
	assert_int_equal(harness_query_int(f->conn, "SELECT count(*) FROM pg_inherits "
	                                            "WHERE inhparent = 'ledger'::regclass"),
	                 17);
}

/*
 * While retention forgets the ids, which can take long, events keep coming
 * in: it holds no lock on the ledger until it drops the partitions. A
 * session holding one of the old ids keeps retention at that point; an
 * insert of the present, with a lock_timeout, goes through meanwhile.
 */
static void test_retention_lets_ingestion_on(void **state)
{
	struct fixture *f = *state;
	PGconn *holder = harness_pg_connect();
	PGconn *retention = harness_pg_connect();
	PGresult *res = NULL;
	char sql[512];
	long long waiting = 0;

	snprintf(sql, sizeof(sql), "SET search_path TO \"%s\"", f->schema);
	harness_exec(holder, sql);
	harness_exec(retention, sql);
	assert_int_equal(
	    harness_query_int(f->conn, "SELECT ledger_ensure_partitions('2001-03-01', 1)"), 1);
	expect_partition(f->conn, "e-mar", "2001-03-10 12:00:00+00", "ledger_p200103");
	harness_exec(f->conn, "INSERT INTO event_ids VALUES ('e-mar', '2001-03-10 12:00:00+00')");

	harness_exec(holder, "BEGIN; SELECT 1 FROM event_ids WHERE event_id = 'e-mar' FOR UPDATE");
	assert_int_equal(
	    PQsendQuery(retention, "SELECT ledger_drop_partitions_before('2001-05-01')"), 1);
	snprintf(
	    sql, sizeof(sql),
	    "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
	    PQbackendPID(retention));
	for (int i = 0; i < 500 && waiting == 0; i++) {
		waiting = harness_query_int(f->conn, sql);
		if (waiting == 0)
			usleep(10 * 1000);
	}
	assert_int_equal(waiting, 1);

	harness_exec(f->conn, "SET lock_timeout TO '2s'");
	harness_exec(f->conn, "BEGIN; INSERT INTO event_ids VALUES ('e-now', now())");
	expect_text(f->conn,
	            "WITH ins AS (INSERT INTO ledger (event_id, occurred_at, channel, customer_id, "
	            "source_partition, source_offset) VALUES ('e-now', now(), 'email', 'c', 0, 0) "
	            "RETURNING 1) SELECT count(*) FROM ins",
	            "1");
	harness_exec(f->conn, "COMMIT; RESET lock_timeout");

	harness_exec(holder, "COMMIT");
	res = PQgetResult(retention);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	assert_null(PQgetResult(retention));
	expect_ids(f->conn, "event_ids", "e-now");
	expect_ids(f->conn, "ledger", "e-now");
	PQfinish(retention);
	PQfinish(holder);
}

/*
 * A ledger of version 3 holds e-1 twice, with two occurred_at (so it was
 * counted twice), and e-2 once. Migration 4 keys the ids, each with its
 * first occurred_at, and the ledger keeps no key of its own.
 */
static void test_event_ids_from_an_older_ledger(void **state)
{
	struct fixture *f = *state;
	char sql[512], errstr[512];

	snprintf(sql, sizeof(sql),
	         "CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".schema_migrations (version integer "
	         "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
	         f->schema, f->schema);
	harness_exec(f->conn, sql);
	/* What migrate_run did for versions 1 to 3. */
	for (int i = 0; fc_migrations[i].version != 0 && fc_migrations[i].version < 4; i++) {
		snprintf(sql, sizeof(sql), "BEGIN; SET LOCAL search_path TO \"%s\"", f->schema);
		harness_exec(f->conn, sql);
		harness_exec(f->conn, fc_migrations[i].sql);
		snprintf(sql, sizeof(sql),
		         "INSERT INTO \"%s\".schema_migrations (version, name) VALUES (%d, '%s'); "
		         "COMMIT",
		         f->schema, fc_migrations[i].version, fc_migrations[i].name);
		harness_exec(f->conn, sql);
	}
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".ledger (event_id, occurred_at, channel, customer_id, "
	         "source_partition, source_offset) VALUES "
	         "('e-1', '2101-01-16 10:00+00', 'sms', 'c', 0, 1), "
	         "('e-1', '2101-01-15 10:00+00', 'sms', 'c', 0, 2), "
	         "('e-2', '2101-01-15 11:00+00', 'sms', 'c', 0, 3)",
	         f->schema);
	harness_exec(f->conn, sql);

	/* Versions 4 on. */
	assert_int_equal(migrate_run(f->conn, f->schema, errstr, sizeof(errstr)),
	                 fc_migrations_count - 3);
	snprintf(sql, sizeof(sql), "SET search_path TO \"%s\"", f->schema);
	harness_exec(f->conn, sql);
	expect_text(f->conn,
	            "SELECT string_agg(event_id || ' ' || to_char(occurred_at AT TIME ZONE 'UTC', "
	            "'YYYY-MM-DD HH24:MI'), ', ' ORDER BY event_id) FROM event_ids",
	            "e-1 2101-01-15 10:00, e-2 2101-01-15 11:00");
	assert_int_equal(harness_query_int(f->conn, "SELECT count(*) FROM pg_constraint "
	                                            "WHERE conrelid = 'ledger'::regclass"
	                                            " AND contype = 'p'"),
	                 0);
	assert_int_equal(harness_query_int(f->conn, "SELECT count(*) FROM ledger"), 3);
	/* 006 on top: the same ids, compared as bytes, the key still a key. */
	expect_collation(f->conn, "event_ids", "event_id", "C");
	expect_text(f->conn,
	            "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM event_ids "
	            "WHERE event_id IN ('e-1', 'e-2')",
	            "e-1,e-2");
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".event_ids VALUES ('e-2', '2101-01-15 11:00+00')", f->schema);
	PGresult *res = PQexec(f->conn, sql);
	assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23505");
	PQclear(res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_schema_name_rules),
	    cmocka_unit_test_setup_teardown(test_migrate_fresh_then_up_to_date, setup_fresh,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup_fresh,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_migrations_serialise, setup_fresh,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_column_order, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_id_collation, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_fill_factors, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_indexes, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_table_rules, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_channel_kpi_rates, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_kpi_rates, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_sum_rolls_up, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_report, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_creates_partitions, setup_migrated,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_partition_routing_and_idempotency, setup_migrated,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_temporary_table_is_no_partition, setup_migrated,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_older_builds_run, setup_migrated, teardown),
	    cmocka_unit_test_setup_teardown(test_ensure_and_drop_partitions, setup_migrated,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_retention_lets_ingestion_on, setup_migrated,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_event_ids_from_an_older_ledger, setup_fresh,
	                                    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
