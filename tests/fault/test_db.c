/*
 * db.c under failure: every libpq call of db_connect, db_apply and
 * db_load_offsets fails in turn (pqfault.h), against a real PostgreSQL.
 * For each call N the status must name what the caller has to do, nothing
 * of the transaction may remain, the connection must be usable again (at
 * once, or after db_connect), and the retry must give the exact figures
 * computed by hand below.
 */
#include "db.h"
#include "fault/pqfault.h"
#include "integration/harness.h"
#include "migrate.h"
#include "pgconn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/*
 * The batch, 4 messages of 2 partitions, topic index 0 = sms, 2 = phone:
 *   sms/0 @0   ev-1 2024-03-01 10:05 UTC CSAT 5 of 1-5, agent-1
 *   sms/0 @1   ev-2 10:10 CSAT 2 of 1-5, agent-1          (bottom-2-box: negative)
 *   phone/1 @0 ev-3 10:20 NPS 9, answered after 30 s, handled 200 s, agent-2
 *   phone/1 @1 ev-4 10:25 NPS 3, FCR resolved, abandoned after 120 s (detractor: negative)
 * Expected, bucket 10:00 sms: csat_n 2, satisfied 1 (5 > 5-2; 2 is not);
 * bucket 10:15 phone: nps_n 2, promoters 1, detractors 1, fcr 1 of 1,
 * offered 2, answered 1, abandoned 1, within 90 s 1, wait 30, handle 200;
 * negative 1 and 1. Agents: agent-1 has the sms row, agent-2 the answered call.
 */
static const char expect_channels[] =
    "2024-03-01 10:00 sms csat 2/1 nps 0+0-0 fcr 0/0 offered 0 answered 0 abandoned 0 sl 0 "
    "wait 0 handle 0 negative 1; "
    "2024-03-01 10:15 phone csat 0/0 nps 2+1-1 fcr 1/1 offered 2 answered 1 abandoned 1 sl 1 "
    "wait 30 handle 200 negative 1";
static const char expect_agents[] = "agent-1 sms csat 2/1 nps 0 offered 0; "
                                    "agent-2 phone csat 0/0 nps 1 offered 1";
/* sms/0 and phone/1 each advance to 2. */
static const char expect_offsets[] = "feedback.phone/1=2 feedback.sms/0=2";

static const char *const topics[CHANNEL_MAX] = {"feedback.sms", "feedback.email", "feedback.phone",
                                                "feedback.social"};

struct world {
	PGconn *conn; /* the test's own: checks, truncation, ending sessions */
	char *schema;
	struct db *db;
	struct batch *b;
	struct offset_update u[4];
	size_t nu;
	bool look_up; /* apply() looks event ids up before the ledger COPY */
};

static int64_t at_us(const char *iso)
{
	struct tm tm = {0};

	assert_non_null(strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm));
	return (int64_t)timegm(&tm) * 1000000;
}

static void add_event(struct batch *b, int topic, int32_t partition, int64_t offset,
                      const struct event *ev)
{
	struct kpi_policy p;

	kpi_policy_defaults(&p);
	assert_int_equal(batch_add(b, topic, partition, offset, ev, &p), 0);
}

static struct batch *build_batch(void)
{
	struct batch *b = batch_new(16);
	struct event ev;

	assert_non_null(b);
	ev = (struct event){.event_id = "ev-1",
	                    .customer_id = "c-1",
	                    .agent_id = "agent-1",
	                    .interaction_id = "",
	                    .comment = "",
	                    .locale = "",
	                    .occurred_at_us = at_us("2024-03-01T10:05:00"),
	                    .channel = CHANNEL_SMS,
	                    .csat = {true, 5, 1, 5, false}};
	add_event(b, 0, 0, 0, &ev);
	ev.event_id = "ev-2";
	ev.occurred_at_us = at_us("2024-03-01T10:10:00");
	ev.csat.score = 2;
	add_event(b, 0, 0, 1, &ev);
	ev = (struct event){.event_id = "ev-3",
	                    .customer_id = "c-3",
	                    .agent_id = "agent-2",
	                    .interaction_id = "call-3",
	                    .comment = "",
	                    .locale = "",
	                    .occurred_at_us = at_us("2024-03-01T10:20:00"),
	                    .channel = CHANNEL_PHONE,
	                    .nps = {true, 9, 0, 10, false},
	                    .has_contact = true,
	                    .outcome = OUTCOME_ANSWERED,
	                    .wait_seconds = 30,
	                    .handle_seconds = 200};
	add_event(b, 2, 1, 0, &ev);
	ev = (struct event){.event_id = "ev-4",
	                    .customer_id = "c-4",
	                    .agent_id = "",
	                    .interaction_id = "",
	                    .comment = "",
	                    .locale = "",
	                    .occurred_at_us = at_us("2024-03-01T10:25:00"),
	                    .channel = CHANNEL_PHONE,
	                    .nps = {true, 3, 0, 10, false},
	                    .fcr = FCR_RESOLVED,
	                    .has_contact = true,
	                    .outcome = OUTCOME_ABANDONED,
	                    .wait_seconds = 120};
	add_event(b, 2, 1, 1, &ev);
	return b;
}

/* The single text value of "select FROM <schema>.relation". */
static char *query_text(struct world *w, const char *select, const char *relation)
{
	char sql[2048];

	snprintf(sql, sizeof(sql), "%s FROM \"%s\".%s", select, w->schema, relation);
	return harness_query_text(w->conn, sql);
}

static void assert_figures(struct world *w)
{
	char *channels = query_text(
	    w,
	    "SELECT string_agg(format('%s %s csat %s/%s nps %s+%s-%s fcr %s/%s offered %s "
	    "answered %s abandoned %s sl %s wait %s handle %s negative %s', "
	    "to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), channel, csat_n, "
	    "csat_satisfied, nps_n, nps_promoters, nps_detractors, fcr_n, fcr_yes, offered, "
	    "answered, abandoned, answered_within_sl, wait_seconds_answered, handle_seconds, "
	    "negative), '; ' ORDER BY bucket, channel)",
	    "channel_kpi");
	char *agents = query_text(w,
	                          "SELECT string_agg(format('%s %s csat %s/%s nps %s offered %s', "
	                          "agent_id, channel, csat_n, csat_satisfied, nps_n, offered), "
	                          "'; ' ORDER BY agent_id)",
	                          "agent_kpi");
	char *offsets = query_text(w,
	                           "SELECT string_agg(format('%s/%s=%s', topic, partition, "
	                           "next_offset), ' ' ORDER BY topic, partition)",
	                           "consumer_offsets");
	char *ledger =
	    query_text(w, "SELECT string_agg(event_id, ' ' ORDER BY event_id)", "ledger");

	assert_non_null(channels);
	assert_non_null(agents);
	assert_non_null(offsets);
	assert_non_null(ledger);
	assert_string_equal(channels, expect_channels);
	assert_string_equal(agents, expect_agents);
	assert_string_equal(offsets, expect_offsets);
	assert_string_equal(ledger, "ev-1 ev-2 ev-3 ev-4");
	free(channels);
	free(agents);
	free(offsets);
	free(ledger);
}

static long long rows_left(struct world *w)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "SELECT (SELECT count(*) FROM \"%s\".ledger) + (SELECT count(*) FROM "
	         "\"%s\".channel_agg) + (SELECT count(*) FROM \"%s\".agent_agg) + "
	         "(SELECT count(*) FROM \"%s\".consumer_offsets)",
	         w->schema, w->schema, w->schema, w->schema);
	return harness_query_int(w->conn, sql);
}

static void connect_db(struct world *w);

/*
 * Empties the tables and gives db a new session: it remembers the events
 * it committed in the last one, which are gone from the ledger now.
 */
static void empty_tables(struct world *w)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "TRUNCATE \"%s\".ledger, \"%s\".event_ids, \"%s\".channel_agg, "
	         "\"%s\".agent_agg, \"%s\".consumer_offsets",
	         w->schema, w->schema, w->schema, w->schema, w->schema);
	harness_exec(w->conn, sql);
	connect_db(w);
}

static enum db_status apply(struct world *w, char *errstr, size_t errstr_size)
{
	errstr[0] = '\0';
	db_look_up_first(w->db, w->look_up ? 1 : 0);
	return db_apply(w->db, "g", topics, w->b, 0, w->b->n_msgs, w->u, w->nu, errstr,
	                errstr_size);
}

static void connect_db(struct world *w)
{
	char errstr[512];
	enum db_status st = db_connect(w->db, errstr, sizeof(errstr));

	if (st != DB_OK)
		fail_msg("db_connect: %s: %s", db_status_name(st), errstr);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	char errstr[512];

	assert_non_null(w);
	w->conn = harness_pg_connect();
	w->schema = harness_fresh_schema(w->conn, "fc_fault_db");
	if (migrate_run(w->conn, w->schema, errstr, sizeof(errstr)) < 0)
		fail_msg("migrate: %s", errstr);
	w->db = db_new("", w->schema);
	assert_non_null(w->db);
	w->b = build_batch();
	w->nu = batch_offset_updates(w->b, 0, w->b->n_msgs, w->u);
	assert_int_equal(w->nu, 2);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	db_destroy(w->db);
	batch_destroy(w->b);
	harness_drop_schema(w->conn, w->schema);
	free(w->schema);
	PQfinish(w->conn);
	free(w);
	return 0;
}

static bool is_statement(const char *fn)
{
	return strcmp(fn, "PQexec") == 0 || strcmp(fn, "PQexecParams") == 0;
}

/* What the fault of kind at call fn must make db_* answer. */
static enum db_status expected(enum pqfault_kind kind, const char *fn, enum db_status for_sqlstate)
{
	if (kind == PQFAULT_SQLSTATE && is_statement(fn))
		return for_sqlstate;
	return DB_RECONNECT;
}

/*
 * Fails each call of db_apply in turn with kind, checking status, rollback,
 * the connection and the retry, on the path of w->look_up. Returns the
 * number of calls.
 */
static int apply_path_in_turn(struct world *w, enum pqfault_kind kind, const char *sqlstate,
                              enum db_status for_sqlstate)
{
	char errstr[1024];
	enum db_status st;
	int calls, fallbacks = 0;
	bool unique = sqlstate && strcmp(sqlstate, "23505") == 0;

	empty_tables(w);
	connect_db(w);
	pqfault_arm(0, kind, sqlstate, w->conn);
	st = apply(w, errstr, sizeof(errstr));
	calls = pqfault_calls();
	pqfault_disarm();
	if (st != DB_OK)
		fail_msg("clean db_apply: %s: %s", db_status_name(st), errstr);
	assert_int_equal(db_last_tx(w->db)->looked_up, w->look_up);
	assert_figures(w);
	/* BEGIN, offsets, COPY + data + end + result + insert for the ledger and each aggregate,
	 * COMMIT. */
	assert_true(calls >= 10);

	for (int n = 1; n <= calls; n++) {
		const char *fn;
		enum db_status want;

		empty_tables(w);
		pqfault_arm(n, kind, sqlstate, w->conn);
		st = apply(w, errstr, sizeof(errstr));
		fn = pqfault_hit();
		pqfault_disarm();
		assert_non_null(fn);
		want = expected(kind, fn, for_sqlstate);
		/*
		 * A unique violation on the optimistic COPY of the event ids is a duplicate:
		 * db_apply rolls back to its savepoint, looks the ids up and
		 * commits. Once they were looked up, it means another replica
		 * committed one of them since: db_apply asks for a retry, which
		 * finds it. Anywhere else it is a bad row.
		 */
		if (want == DB_REJECTED && unique && st == DB_OK && !w->look_up &&
		    db_last_tx(w->db)->looked_up) {
			fallbacks++;
			assert_figures(w);
			continue;
		}
		if (want == DB_REJECTED && unique && w->look_up &&
		    strncmp(errstr, "inserting event ids", 19) == 0)
			want = DB_RETRY;
		if (st != want)
			fail_msg("call %d (%s) failing: db_apply said %s, expected %s: %s", n, fn,
			         db_status_name(st), db_status_name(want), errstr);
		assert_true(strlen(errstr) > 0);
		/* Rolled back: not one ledger, aggregate or offset row. */
		if (rows_left(w) != 0)
			fail_msg("call %d (%s) failing left %lld rows", n, fn, rows_left(w));
		if (st == DB_RECONNECT)
			connect_db(w);
		else
			assert_int_equal(PQtransactionStatus(db_conn(w->db)), PQTRANS_IDLE);
		st = apply(w, errstr, sizeof(errstr));
		if (st != DB_OK)
			fail_msg("retry after call %d (%s) failed: %s: %s", n, fn,
			         db_status_name(st), errstr);
		assert_figures(w);
	}
	/* Exactly one call is the optimistic COPY statement. */
	assert_int_equal(fallbacks, unique && kind == PQFAULT_SQLSTATE && !w->look_up ? 1 : 0);
	return calls;
}

/* Both ledger paths: the optimistic COPY, and the look-up before it. */
static void apply_in_turn(struct world *w, enum pqfault_kind kind, const char *sqlstate,
                          enum db_status for_sqlstate)
{
	w->look_up = false;
	int optimistic = apply_path_in_turn(w, kind, sqlstate, for_sqlstate);
	w->look_up = true;
	int looked_up = apply_path_in_turn(w, kind, sqlstate, for_sqlstate);
	w->look_up = false;
	/* The look-up path adds the staging COPY and the SELECT, and drops the savepoints. */
	assert_true(looked_up != optimistic);
}

static void test_apply_session_dropped(void **state)
{
	apply_in_turn(*state, PQFAULT_DROP, NULL, DB_RECONNECT);
}

static void test_apply_client_failure(void **state)
{
	apply_in_turn(*state, PQFAULT_CLIENT, NULL, DB_RECONNECT);
}

static void test_apply_serialization_failure(void **state)
{
	apply_in_turn(*state, PQFAULT_SQLSTATE, "40001", DB_RETRY);
}

static void test_apply_deadlock(void **state)
{
	apply_in_turn(*state, PQFAULT_SQLSTATE, "40P01", DB_RETRY);
}

/* Class 23 by a CHECK constraint: the row is bad wherever it fails. */
static void test_apply_check_violation(void **state)
{
	apply_in_turn(*state, PQFAULT_SQLSTATE, "23514", DB_REJECTED);
}

/*
 * A unique violation is a bad row, except on the COPY of the event ids: a
 * duplicate, found by the look-up, or another replica's commit of the same
 * event id after the look-up, and apply_in_turn expects a retry.
 */
static void test_apply_unique_violation(void **state)
{
	apply_in_turn(*state, PQFAULT_SQLSTATE, "23505", DB_REJECTED);
}

static void test_apply_bad_value(void **state)
{
	apply_in_turn(*state, PQFAULT_SQLSTATE, "22003", DB_REJECTED);
}

/*
 * A CSAT scale of 40000-40004 is valid (five points), but the ledger keeps
 * scales in smallint. The row is refused as the server refuses it, 22003
 * naming the column, before anything is sent: nothing stays, the session
 * goes on, and the batch without it commits. The first column out of range
 * is named: the score, which comes before the scale.
 */
static void test_apply_scale_beyond_smallint(void **state)
{
	struct world *w = *state;
	struct batch *b = batch_new(4);
	struct offset_update u[1];
	struct event ev = {.event_id = "ev-big",
	                   .customer_id = "c-9",
	                   .agent_id = "agent-9",
	                   .interaction_id = "",
	                   .comment = "",
	                   .locale = "",
	                   .occurred_at_us = at_us("2024-03-01T10:05:00"),
	                   .channel = CHANNEL_SMS,
	                   .csat = {true, 40002, 40000, 40004, false}};
	char errstr[1024];

	assert_non_null(b);
	empty_tables(w);
	add_event(b, 0, 0, 0, &ev);
	assert_int_equal(batch_offset_updates(b, 0, b->n_msgs, u), 1);
	assert_int_equal(
	    db_apply(w->db, "g", topics, b, 0, b->n_msgs, u, 1, errstr, sizeof(errstr)),
	    DB_REJECTED);
	assert_string_equal(errstr,
	                    "inserting ledger rows failed (sqlstate 22003): csat_score 40002 "
	                    "is out of range for its column");
	assert_int_equal(PQtransactionStatus(db_conn(w->db)), PQTRANS_IDLE);
	assert_int_equal(rows_left(w), 0);
	batch_destroy(b);

	assert_int_equal(apply(w, errstr, sizeof(errstr)), DB_OK);
	assert_figures(w);
}

static void test_apply_missing_table(void **state)
{
	apply_in_turn(*state, PQFAULT_SQLSTATE, "42P01", DB_FATAL);
}

static void test_apply_admin_shutdown(void **state)
{
	/* What a server restart sends to every session before it closes it. */
	apply_in_turn(*state, PQFAULT_SQLSTATE, "57P01", DB_RECONNECT);
}

struct gate_probe {
	struct world *w;
	bool answer;
	int calls;
	long long own_rows, other_rows; /* ledger rows seen from the transaction, from outside */
};

static bool gate(void *arg)
{
	struct gate_probe *g = arg;

	g->calls++;
	g->own_rows = harness_ledger_rows(db_conn(g->w->db), g->w->schema);
	g->other_rows = harness_ledger_rows(g->w->conn, g->w->schema);
	return g->answer;
}

/*
 * The commit gate is asked once, after every write and before COMMIT: the
 * transaction sees its 4 ledger rows, nobody else does. A no rolls all back
 * (DB_GATED); a yes commits.
 */
static void test_apply_commit_gate(void **state)
{
	struct world *w = *state;
	struct gate_probe g = {.w = w, .answer = false};
	char errstr[1024];

	empty_tables(w);
	connect_db(w);
	db_set_commit_gate(w->db, gate, &g);
	assert_int_equal(apply(w, errstr, sizeof(errstr)), DB_GATED);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.own_rows, 4);
	assert_int_equal(g.other_rows, 0);
	assert_int_equal(rows_left(w), 0);
	assert_int_equal(PQtransactionStatus(db_conn(w->db)), PQTRANS_IDLE);
	assert_int_equal(db_last_tx(w->db)->accepted, 0);

	g.answer = true;
	assert_int_equal(apply(w, errstr, sizeof(errstr)), DB_OK);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.own_rows, 4);
	assert_int_equal(g.other_rows, 0);
	assert_int_equal(db_last_tx(w->db)->accepted, 4);
	assert_figures(w);
	db_set_commit_gate(w->db, NULL, NULL);
}

/* Empties every table, recovery's too; reconnects with the default recovery policy. */
static void empty_with_recovery(struct world *w)
{
	struct rules_policy policy;
	char sql[512];

	empty_tables(w);
	snprintf(sql, sizeof(sql), "TRUNCATE \"%s\".recovery_state, \"%s\".recovery_outbox",
	         w->schema, w->schema);
	harness_exec(w->conn, sql);
	rules_policy_defaults(&policy);
	db_set_recovery(w->db, &policy);
	connect_db(w);
}

/*
 * Two replicas meet the same new customer: the other one inserts c-4's
 * recovery state after this transaction looked (its row is not committed
 * yet) and commits a second later, while this one waits on the insert.
 * Creating the state finds one of the 2 new customers taken: a retry, all
 * rolled back. The retry locks c-4's row and stores both customers: c-1
 * created, c-4 updated, one trigger each.
 */
static void test_apply_recovery_state_race(void **state)
{
	struct world *w = *state;
	char errstr[1024], sql[512];
	PGconn *other = harness_pg_connect();
	PGresult *res;

	empty_with_recovery(w);
	snprintf(sql, sizeof(sql),
	         "BEGIN; INSERT INTO \"%s\".recovery_state (customer_id) VALUES ('c-4')",
	         w->schema);
	harness_exec(other, sql);
	assert_int_equal(PQsendQuery(other, "SELECT pg_sleep(1); COMMIT"), 1);

	assert_int_equal(apply(w, errstr, sizeof(errstr)), DB_RETRY);
	assert_string_equal(errstr, "creating recovery state: another consumer created one of 2 "
	                            "new customers meanwhile");
	assert_int_equal(rows_left(w), 0);
	while ((res = PQgetResult(other)) != NULL) {
		assert_true(PQresultStatus(res) == PGRES_TUPLES_OK ||
		            PQresultStatus(res) == PGRES_COMMAND_OK);
		PQclear(res);
	}
	PQfinish(other);

	assert_int_equal(apply(w, errstr, sizeof(errstr)), DB_OK);
	assert_int_equal(db_last_tx(w->db)->triggers, 2);
	assert_figures(w);
	char *states =
	    query_text(w,
	               "SELECT string_agg(format('%s %s %s', customer_id, cardinality(negatives), "
	               "to_char(last_trigger_at AT TIME ZONE 'UTC', 'HH24:MI')), '; ' "
	               "ORDER BY customer_id)",
	               "recovery_state");
	assert_string_equal(states, "c-1 1 10:10; c-4 1 10:25");
	free(states);
	char *outbox =
	    query_text(w, "SELECT string_agg(event_id, ' ' ORDER BY event_id)", "recovery_outbox");
	assert_string_equal(outbox, "ev-2 ev-4");
	free(outbox);
	db_set_recovery(w->db, NULL);
}

/*
 * A one-partition batch of sms/0 messages at offset first.. of CSAT events
 * (id, HH:MM, score, customer); customers NULL: all c-1.
 */
static struct batch *sms_batch(int64_t first, const char *const *ids, const char *const *times,
                               const int *scores, const char *const *customers, size_t n)
{
	struct batch *b = batch_new(16);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++) {
		char iso[32];
		struct event ev = {.event_id = ids[i],
		                   .customer_id = customers ? customers[i] : "c-1",
		                   .agent_id = "agent-1",
		                   .interaction_id = "",
		                   .comment = "",
		                   .locale = "",
		                   .channel = CHANNEL_SMS,
		                   .csat = {true, scores[i], 1, 5, false}};

		snprintf(iso, sizeof(iso), "2024-03-01T%s:00", times[i]);
		ev.occurred_at_us = at_us(iso);
		add_event(b, 0, 0, first + (int64_t)i, &ev);
	}
	return b;
}

static enum db_status apply_sms(struct world *w, struct batch *b, int64_t expected, char *errstr,
                                size_t errstr_size)
{
	struct offset_update u[1];

	assert_int_equal(batch_offset_updates(b, 0, b->n_msgs, u), 1);
	u[0].expected = expected;
	db_look_up_first(w->db, 0);
	return db_apply(w->db, "g", topics, b, 0, b->n_msgs, u, 1, errstr, errstr_size);
}

/*
 * An event id that comes again with another occurred_at (and other
 * content) is a duplicate all the same: the contract's key is the id
 * alone. The optimistic COPY fails on event_ids, the look-up finds ev-7,
 * and only ev-8 counts and triggers.
 */
static void test_apply_event_id_with_another_time(void **state)
{
	struct world *w = *state;
	char errstr[1024];
	const char *ids1[] = {"ev-7"}, *times1[] = {"10:00"}, *cust1[] = {"c-7"};
	const char *ids2[] = {"ev-7", "ev-8"}, *times2[] = {"11:00", "11:05"},
	           *cust2[] = {"c-9", "c-8"};
	const int low[] = {1, 1}; /* negative */
	struct batch *b1 = sms_batch(0, ids1, times1, low, cust1, 1);
	struct batch *b2 = sms_batch(1, ids2, times2, low, cust2, 2);

	empty_with_recovery(w);

	assert_int_equal(apply_sms(w, b1, -1, errstr, sizeof(errstr)), DB_OK);
	assert_int_equal(db_last_tx(w->db)->triggers, 1);
	assert_int_equal(apply_sms(w, b2, 1, errstr, sizeof(errstr)), DB_OK);
	assert_true(db_last_tx(w->db)->looked_up);
	assert_int_equal(db_last_tx(w->db)->accepted, 1);
	assert_int_equal(db_last_tx(w->db)->triggers, 1);

	char *ledger = query_text(
	    w, "SELECT string_agg(event_id || ' ' || customer_id, ', ' ORDER BY occurred_at)",
	    "ledger");
	char *outbox =
	    query_text(w, "SELECT string_agg(event_id || ' ' || customer_id, ', ' ORDER BY id)",
	               "recovery_outbox");
	char *states = query_text(w, "SELECT string_agg(customer_id, ' ' ORDER BY customer_id)",
	                          "recovery_state");
	char *offset = query_text(w, "SELECT next_offset::text",
	                          "consumer_offsets WHERE topic = 'feedback.sms'");

	char *ids = query_text(
	    w,
	    "SELECT string_agg(event_id || to_char(occurred_at AT TIME ZONE 'UTC', ' HH24:MI'), "
	    "', ' ORDER BY event_id)",
	    "event_ids");
	char *sms = query_text(w, "SELECT format('%s/%s', sum(csat_n), sum(negative))",
	                       "channel_kpi WHERE channel = 'sms'");

	assert_string_equal(ledger, "ev-7 c-7, ev-8 c-8");
	assert_string_equal(ids, "ev-7 10:00, ev-8 11:05");
	assert_string_equal(sms, "2/2");
	assert_string_equal(outbox, "ev-7 c-7, ev-8 c-8");
	assert_string_equal(states, "c-7 c-8");
	assert_string_equal(offset, "3");
	free(ledger);
	free(ids);
	free(sms);
	free(outbox);
	free(states);
	free(offset);
	batch_destroy(b1);
	batch_destroy(b2);
	db_set_recovery(w->db, NULL);
}

/*
 * A re-send that follows its original into the next batch is known a
 * duplicate without a look-up: the optimistic COPY of the new event
 * alone succeeds. After a reconnect nothing is known any more (the server
 * may have lost the last commits): the same kind of batch fails its
 * optimistic COPY on the key in event_ids and looks its ids up.
 */
static void test_apply_remembers_its_last_commits(void **state)
{
	struct world *w = *state;
	char errstr[1024];
	const char *ids2[] = {"ev-2", "ev-5"}, *times2[] = {"10:10", "10:40"};
	const char *ids3[] = {"ev-5", "ev-6"}, *times3[] = {"10:40", "10:50"};
	const int scores2[] = {2, 4}, scores3[] = {4, 5};
	struct batch *b2 = sms_batch(2, ids2, times2, scores2, NULL, 2);
	struct batch *b3 = sms_batch(4, ids3, times3, scores3, NULL, 2);

	empty_tables(w);
	connect_db(w);
	assert_int_equal(apply(w, errstr, sizeof(errstr)), DB_OK);
	assert_figures(w);

	assert_int_equal(apply_sms(w, b2, 2, errstr, sizeof(errstr)), DB_OK);
	assert_false(db_last_tx(w->db)->looked_up);
	assert_int_equal(db_last_tx(w->db)->accepted, 1);

	connect_db(w);
	assert_int_equal(apply_sms(w, b3, 4, errstr, sizeof(errstr)), DB_OK);
	assert_true(db_last_tx(w->db)->looked_up);
	assert_int_equal(db_last_tx(w->db)->accepted, 1);

	char *ledger =
	    query_text(w, "SELECT string_agg(event_id, ' ' ORDER BY event_id)", "ledger");
	/* ev-1 5, ev-2 2, then ev-5 4 and ev-6 5; the re-sent ev-2 and ev-5 count nothing. */
	char *sms = query_text(w, "SELECT format('%s/%s', sum(csat_n), sum(csat_satisfied))",
	                       "channel_kpi WHERE channel = 'sms'");
	char *offset = query_text(w, "SELECT next_offset::text",
	                          "consumer_offsets WHERE topic = 'feedback.sms'");

	assert_string_equal(ledger, "ev-1 ev-2 ev-3 ev-4 ev-5 ev-6");
	assert_string_equal(sms, "4/3");
	assert_string_equal(offset, "6");
	free(ledger);
	free(sms);
	free(offset);
	batch_destroy(b2);
	batch_destroy(b3);
}

/* The offsets stored by the batch: sms/0 = 2, phone/1 = 2, nothing for phone/0. */
static void load_in_turn(struct world *w, enum pqfault_kind kind, const char *sqlstate,
                         enum db_status for_sqlstate)
{
	const int32_t parts[2] = {0, 1};
	int64_t next[2];
	char errstr[512];
	enum db_status st;
	int calls;

	empty_tables(w);
	connect_db(w);
	st = apply(w, errstr, sizeof(errstr));
	assert_int_equal(st, DB_OK);
	pqfault_arm(0, kind, sqlstate, w->conn);
	st = db_load_offsets(w->db, "g", "feedback.phone", parts, 2, next, errstr, sizeof(errstr));
	calls = pqfault_calls();
	pqfault_disarm();
	assert_int_equal(st, DB_OK);
	assert_int_equal(next[0], -1);
	assert_int_equal(next[1], 2);
	assert_int_equal(calls, 2); /* PQstatus, PQexecParams */
	for (int n = 1; n <= calls; n++) {
		const char *fn;

		pqfault_arm(n, kind, sqlstate, w->conn);
		st = db_load_offsets(w->db, "g", "feedback.phone", parts, 2, next, errstr,
		                     sizeof(errstr));
		fn = pqfault_hit();
		pqfault_disarm();
		assert_non_null(fn);
		if (st != expected(kind, fn, for_sqlstate))
			fail_msg("call %d (%s) failing: db_load_offsets said %s: %s", n, fn,
			         db_status_name(st), errstr);
		/* Nothing half-read: no partition looks as if it had a stored offset. */
		assert_int_equal(next[0], -1);
		assert_int_equal(next[1], -1);
		if (st == DB_RECONNECT)
			connect_db(w);
		st = db_load_offsets(w->db, "g", "feedback.phone", parts, 2, next, errstr,
		                     sizeof(errstr));
		assert_int_equal(st, DB_OK);
		assert_int_equal(next[0], -1);
		assert_int_equal(next[1], 2);
	}
}

static void test_load_offsets(void **state)
{
	load_in_turn(*state, PQFAULT_DROP, NULL, DB_RECONNECT);
	load_in_turn(*state, PQFAULT_CLIENT, NULL, DB_RECONNECT);
	load_in_turn(*state, PQFAULT_SQLSTATE, "40001", DB_RETRY);
	load_in_turn(*state, PQFAULT_SQLSTATE, "42501", DB_FATAL);
}

/*
 * db_connect: the connection, the schema version check and the staging
 * tables. A dropped session must ask for another attempt; a permission
 * error must stop the consumer.
 */
static void connect_in_turn(struct world *w, enum pqfault_kind kind, const char *sqlstate,
                            enum db_status for_sqlstate)
{
	char errstr[512];
	enum db_status st;
	int calls;

	pqfault_arm(0, kind, sqlstate, w->conn);
	st = db_connect(w->db, errstr, sizeof(errstr));
	calls = pqfault_calls();
	pqfault_disarm();
	assert_int_equal(st, DB_OK);
	for (int n = 1; n <= calls; n++) {
		const char *fn;

		pqfault_arm(n, kind, sqlstate, w->conn);
		st = db_connect(w->db, errstr, sizeof(errstr));
		fn = pqfault_hit();
		pqfault_disarm();
		assert_non_null(fn);
		if (st != expected(kind, fn, for_sqlstate))
			fail_msg("call %d (%s) failing: db_connect said %s: %s", n, fn,
			         db_status_name(st), errstr);
		assert_true(strlen(errstr) > 0);
		connect_db(w);
		empty_tables(w);
		st = apply(w, errstr, sizeof(errstr));
		assert_int_equal(st, DB_OK);
		assert_figures(w);
	}
}

static void test_connect(void **state)
{
	connect_in_turn(*state, PQFAULT_DROP, NULL, DB_RECONNECT);
	connect_in_turn(*state, PQFAULT_SQLSTATE, "42501", DB_FATAL);
}

/* Makes the whole server read-only, and waits until db's session is. */
static void server_read_only(struct world *w)
{
	harness_server_read_only(w->conn, true);
	for (int i = 0; i < 500; i++) {
		char *value =
		    harness_query_text(db_conn(w->db), "SHOW default_transaction_read_only");
		bool done = strcmp(value, "on") == 0;

		free(value);
		if (done)
			return;
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	fail_msg("the session never became read-only");
}

/* Also the teardown of the test that makes it read-only, however that ended. */
static int server_writable(void **state)
{
	harness_server_read_only(((struct world *)*state)->conn, false);
	return 0;
}

/*
 * A failover, as the old primary sees it: the server takes no writes any
 * more. The batch must ask for a new session (on this server the write
 * stays refused however often it is retried), a new session must refuse a
 * read-only server rather than use it, and once a writable server answers
 * the batch commits, exactly once.
 */
static void test_read_only_server(void **state)
{
	struct world *w = *state;
	char errstr[1024];
	enum db_status st;

	empty_tables(w);
	server_read_only(w);
	st = apply(w, errstr, sizeof(errstr));
	if (st != DB_RECONNECT)
		fail_msg("db_apply on a read-only server: %s: %s", db_status_name(st), errstr);
	assert_non_null(strstr(errstr, "25006"));
	assert_int_equal(harness_ledger_rows(w->conn, w->schema), 0);
	st = db_connect(w->db, errstr, sizeof(errstr));
	if (st != DB_RECONNECT)
		fail_msg("db_connect to a read-only server: %s: %s", db_status_name(st), errstr);
	assert_non_null(strstr(errstr, "read-only"));
	server_writable(state);
	for (int i = 0; (st = db_connect(w->db, errstr, sizeof(errstr))) != DB_OK && i < 500; i++) {
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (st != DB_OK)
		fail_msg("db_connect once writable: %s: %s", db_status_name(st), errstr);
	st = apply(w, errstr, sizeof(errstr));
	if (st != DB_OK)
		fail_msg("db_apply once writable: %s: %s", db_status_name(st), errstr);
	assert_figures(w);
}

/* The value of keyword in conn's options; "" when unset. */
static char *conn_option(PGconn *conn, const char *keyword)
{
	PQconninfoOption *opts = PQconninfo(conn);
	char *value = NULL;

	assert_non_null(opts);
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, keyword) == 0)
			value = strdup(o->val ? o->val : "");
	PQconninfoFree(opts);
	assert_non_null(value);
	return value;
}

static void expect_option(PGconn *conn, const char *keyword, const char *want)
{
	char *value = conn_option(conn, keyword);

	if (strcmp(value, want) != 0)
		fail_msg("%s = \"%s\", expected \"%s\"", keyword, value, want);
	free(value);
}

/* The PG* variables that pgconn.h's defaults give way to. */
static void unset_variables(void)
{
	unsetenv("PGTARGETSESSIONATTRS");
	unsetenv("PGCONNECT_TIMEOUT");
	unsetenv("PGAPPNAME");
}

static void expect_application_name(PGconn *conn, const char *want)
{
	char *app = harness_query_text(conn, "SHOW application_name");

	assert_string_equal(app, want);
	free(app);
}

static PGconn *open_ok(const char *conninfo, const char *name, bool writer)
{
	PGconn *conn = pgconn_open(conninfo, name, writer);

	if (PQstatus(conn) != CONNECTION_OK)
		fail_msg("pgconn_open(\"%s\"): %s", conninfo, PQerrorMessage(conn));
	return conn;
}

/* pgconn.h: the service's defaults, each giving way to the string and to the PG* variables. */
static void test_connection_defaults(void **state)
{
	PGconn *conn;

	(void)state;
	unset_variables();
	conn = open_ok("", "feedback-consumer test", true);
	expect_option(conn, "target_session_attrs", "read-write");
	expect_option(conn, "connect_timeout", "10");
	expect_option(conn, "keepalives_idle", "30");
	expect_option(conn, "keepalives_interval", "10");
	expect_option(conn, "keepalives_count", "3");
	expect_option(conn, "tcp_user_timeout", "60000");
	expect_application_name(conn, "feedback-consumer test");
	PQfinish(conn);

	/* Readers take any server, a standby too. */
	conn = open_ok("", "feedback-consumer test", false);
	expect_option(conn, "target_session_attrs", "any");
	expect_option(conn, "keepalives_idle", "30");
	PQfinish(conn);

	/* The connection string wins, URI or keywords. */
	conn = open_ok("target_session_attrs=any keepalives_idle=5 connect_timeout=3 "
	               "application_name=bi",
	               "feedback-consumer test", true);
	expect_option(conn, "target_session_attrs", "any");
	expect_option(conn, "keepalives_idle", "5");
	expect_option(conn, "connect_timeout", "3");
	expect_option(conn, "keepalives_count", "3");
	expect_application_name(conn, "bi");
	PQfinish(conn);
	conn = open_ok("postgresql://?tcp_user_timeout=1000", "feedback-consumer test", true);
	expect_option(conn, "tcp_user_timeout", "1000");
	expect_option(conn, "target_session_attrs", "read-write");
	PQfinish(conn);

	/* And so do the variables. */
	setenv("PGTARGETSESSIONATTRS", "any", 1);
	setenv("PGCONNECT_TIMEOUT", "7", 1);
	setenv("PGAPPNAME", "ops", 1);
	conn = open_ok("", "feedback-consumer test", true);
	expect_option(conn, "target_session_attrs", "any");
	expect_option(conn, "connect_timeout", "7");
	expect_application_name(conn, "ops");
	PQfinish(conn);
	unset_variables();
}

/* The contract of db.h and STYLE.md, one SQLSTATE per class. */
static void test_classify(void **state)
{
	static const struct {
		const char *sqlstate;
		enum db_status st;
	} cases[] = {
	    {NULL, DB_RECONNECT},    /* no server answer at all */
	    {"08000", DB_RECONNECT}, /* connection_exception */
	    {"08006", DB_RECONNECT}, /* connection_failure */
	    {"57P01", DB_RECONNECT}, /* admin_shutdown: the server restarts */
	    {"57P03", DB_RECONNECT}, /* cannot_connect_now: still starting */
	    {"25006", DB_RECONNECT}, /* read_only_sql_transaction: a demoted primary */
	    {"40001", DB_RETRY},     /* serialization_failure */
	    {"40P01", DB_RETRY},     /* deadlock_detected */
	    {"55P03", DB_RETRY},     /* lock_not_available */
	    {"53300", DB_RETRY},     /* too_many_connections */
	    {"22003", DB_REJECTED},  /* numeric_value_out_of_range */
	    {"22P02", DB_REJECTED},  /* invalid_text_representation */
	    {"23505", DB_REJECTED},  /* unique_violation */
	    {"23514", DB_REJECTED},  /* check_violation */
	    {"54000", DB_REJECTED},  /* program_limit_exceeded: a too large value */
	    {"42P01", DB_FATAL},     /* undefined_table: not migrated */
	    {"42501", DB_FATAL},     /* insufficient_privilege */
	    {"42703", DB_FATAL},     /* undefined_column */
	    {"3F000", DB_FATAL},     /* invalid_schema_name */
	    {"28P01", DB_FATAL},     /* invalid_password */
	    {"0A000", DB_FATAL},     /* feature_not_supported */
	    {"XX000", DB_RETRY},     /* anything else: keep the place and try again */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (db_classify(cases[i].sqlstate) != cases[i].st)
			fail_msg("db_classify(%s) = %s, expected %s",
			         cases[i].sqlstate ? cases[i].sqlstate : "NULL",
			         db_status_name(db_classify(cases[i].sqlstate)),
			         db_status_name(cases[i].st));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_apply_session_dropped),
	    cmocka_unit_test(test_apply_client_failure),
	    cmocka_unit_test(test_apply_serialization_failure),
	    cmocka_unit_test(test_apply_deadlock),
	    cmocka_unit_test(test_apply_check_violation),
	    cmocka_unit_test(test_apply_unique_violation),
	    cmocka_unit_test(test_apply_bad_value),
	    cmocka_unit_test(test_apply_scale_beyond_smallint),
	    cmocka_unit_test(test_apply_missing_table),
	    cmocka_unit_test(test_apply_admin_shutdown),
	    cmocka_unit_test(test_apply_commit_gate),
	    cmocka_unit_test(test_apply_recovery_state_race),
	    cmocka_unit_test(test_apply_event_id_with_another_time),
	    cmocka_unit_test(test_apply_remembers_its_last_commits),
	    cmocka_unit_test(test_load_offsets),
	    cmocka_unit_test(test_connect),
	    cmocka_unit_test_teardown(test_read_only_server, server_writable),
	    cmocka_unit_test(test_connection_defaults),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
