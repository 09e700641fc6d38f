/*
 * The consumer binary end to end: the mock cluster in, real PostgreSQL out.
 * The figures of the fixed set below were computed by hand; each expected
 * row carries its arithmetic.
 */
#include "fixture.h"
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

enum { CSAT = 1, NPS = 2, CES = 3 };
enum { ANSWERED = 1, ABANDONED = 2, SELF_SERVICE = 3 };

/*
 * Buckets B1 = 2026-11-20 10:00 and B2 = 10:15 UTC. The first delivery of
 * the set is 18 messages: 14 distinct valid events, e1 once more on another
 * partition, and 3 malformed messages.
 */
static const struct fx_event e1 = {.id = "sms-1",
                                   .at = "2026-11-20T10:03:00",
                                   .agent = "a1",
                                   .r = {{CSAT, 5, 0, 0, false}, {NPS, 10, 0, 0, false}},
                                   .n_ratings = 2};
static const struct fx_event e2 = {.id = "sms-2",
                                   .at = "2026-11-20T10:14:59.999999",
                                   .agent = "a1",
                                   .r = {{CSAT, 2, 0, 0, false}, {NPS, 6, 0, 0, false}},
                                   .n_ratings = 2};
static const struct fx_event e3 = {.id = "sms-3",
                                   .at = "2026-11-20T10:15:00",
                                   .agent = "a2",
                                   .r = {{CSAT, 4, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event e4 = {.id = "email-1",
                                   .at = "2026-11-20T10:05:00",
                                   .agent = "a2",
                                   .r = {{CSAT, 9, 1, 10, false}, {NPS, 8, 0, 0, false}},
                                   .n_ratings = 2};
static const struct fx_event e5 = {
    .id = "email-2", .at = "2026-11-20T10:06:00", .r = {{NPS, 0, 0, 0, false}}, .n_ratings = 1};
static const struct fx_event e6 = {.id = "email-3",
                                   .at = "2026-11-20T10:06:30",
                                   .channel = 2,
                                   .r = {{CSAT, 1, 0, 1, false}},
                                   .n_ratings = 1};
static const struct fx_event e7 = {.id = "phone-1",
                                   .at = "2026-11-20T10:01:00",
                                   .agent = "a1",
                                   .r = {{CES, 2, 0, 0, false}},
                                   .n_ratings = 1,
                                   .outcome = ANSWERED,
                                   .wait = 30,
                                   .handle = 300,
                                   .fcr = 1};
static const struct fx_event e8 = {.id = "phone-2",
                                   .at = "2026-11-20T10:02:00",
                                   .agent = "a2",
                                   .r = {{CES, 2, 1, 7, true}},
                                   .n_ratings = 1,
                                   .outcome = ANSWERED,
                                   .wait = 120,
                                   .handle = 600,
                                   .fcr = 2};
static const struct fx_event e9 = {
    .id = "phone-3", .at = "2026-11-20T10:04:00", .outcome = ABANDONED, .wait = 200};
static const struct fx_event e10 = {.id = "phone-4",
                                    .at = "2026-11-20T10:20:00",
                                    .r = {{CES, 3, 1, 5, false}},
                                    .n_ratings = 1,
                                    .outcome = SELF_SERVICE};
static const struct fx_event e11 = {.id = "social-1",
                                    .at = "2026-11-20T10:07:00",
                                    .comment = "slow\treply,\nthen \\ fine",
                                    .r = {{CSAT, 3, 0, 0, false}},
                                    .n_ratings = 1};
static const struct fx_event e12 = {.id = "social-2",
                                    .at = "2026-11-20T10:08:00",
                                    .agent = "a3",
                                    .r = {{CSAT, 1, 0, 0, false}},
                                    .n_ratings = 1};
/* A contact block without its outcome (not given): offered, and its rating counts. */
static const struct fx_event e14 = {.id = "phone-5",
                                    .at = "2026-11-20T10:25:00",
                                    .r = {{CSAT, 4, 0, 0, false}},
                                    .n_ratings = 1,
                                    .outcome = FX_NO_OUTCOME,
                                    .wait = 40,
                                    .handle = 100};
/* Sent in Confluent framing. */
static const struct fx_event e13 = {
    .id = "social-3", .at = "2026-11-20T10:09:00", .r = {{CSAT, 5, 0, 0, false}}, .n_ratings = 1};
/* Invalid: CSAT 6 on 1-5; a phone-topic event that says it is SMS. */
static const struct fx_event bad_score = {
    .id = "email-bad", .at = "2026-11-20T10:05:00", .r = {{CSAT, 6, 0, 0, false}}, .n_ratings = 1};
static const struct fx_event bad_channel = {
    .id = "phone-bad", .at = "2026-11-20T10:05:00", .channel = 1, .outcome = ANSWERED, .wait = 1};

#define FIXED_MESSAGES 18

struct placed {
	int topic;
	int32_t partition;
	const struct fx_event *e;
};

static const struct placed fixed_set[] = {
    {0, 0, &e1}, {0, 1, &e2},  {0, 2, &e3},  {0, 3, &e1}, /* e1 again: a producer retry */
    {1, 0, &e4}, {1, 1, &e5},  {1, 2, &e6},  {2, 0, &e7},  {2, 1, &e8},
    {2, 2, &e9}, {2, 3, &e10}, {2, 3, &e14}, {3, 0, &e11}, {3, 1, &e12},
};

static void produce_fixed_set(struct fx_kafka *k)
{
	uint8_t buf[1024];
	size_t len;

	for (size_t i = 0; i < sizeof(fixed_set) / sizeof(fixed_set[0]); i++) {
		const struct placed *p = &fixed_set[i];

		len = fx_pack(p->e, buf, sizeof(buf));
		fx_produce(k, fx_topics[p->topic], p->partition, "cust-1", buf, len);
	}
	/* Confluent framing: magic 0, schema id 7, message indexes [0]. */
	buf[0] = 0;
	buf[1] = 0;
	buf[2] = 0;
	buf[3] = 0;
	buf[4] = 7;
	buf[5] = 0;
	len = fx_pack(&e13, buf + 6, sizeof(buf) - 6);
	fx_produce(k, fx_topics[3], 2, "cust-2", buf, len + 6);

	fx_produce(k, fx_topics[0], 3, "cust-3", "not protobuf", 12);
	len = fx_pack(&bad_score, buf, sizeof(buf));
	fx_produce(k, fx_topics[1], 3, "cust-4", buf, len);
	len = fx_pack(&bad_channel, buf, sizeof(buf));
	fx_produce(k, fx_topics[2], 1, "cust-5", buf, len);
	fx_flush(k);
}

static const char counts_sql[] =
    "SELECT concat_ws(' ', csat_n, csat_satisfied, round(csat_score_sum, 4), nps_n, "
    "nps_promoters, nps_passives, nps_detractors, ces_n, ces_effort_sum, ces_high, ces_low, "
    "fcr_n, fcr_yes, offered, answered, abandoned, self_service, answered_within_sl, "
    "wait_seconds_answered, handle_seconds, negative) FROM \"%s\".%s WHERE %s";

static const char rates_sql[] =
    "SELECT concat_ws(' ', coalesce(round(csat_pct, 4)::text, '-'), "
    "coalesce(round(nps, 4)::text, '-'), coalesce(round(ces_mean, 4)::text, '-'), "
    "coalesce(round(ces_high_pct, 4)::text, '-'), coalesce(round(fcr_pct, 4)::text, '-'), "
    "coalesce(round(answer_rate, 4)::text, '-'), coalesce(round(abandon_rate, 4)::text, '-'), "
    "coalesce(round(service_level, 4)::text, '-'), coalesce(round(asa_seconds, 4)::text, '-'), "
    "coalesce(round(aht_seconds, 4)::text, '-'), "
    "coalesce(round(self_service_rate, 4)::text, '-')) FROM \"%s\".%s WHERE %s";

static void expect_row(PGconn *conn, const char *schema, const char *sqlfmt, const char *view,
                       const char *where, const char *expected)
{
	char sql[2048];
	char *got;

	/* sqlfmt is one of the two query templates above. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(sql, sizeof(sql), sqlfmt, schema, view, where);
#pragma GCC diagnostic pop
	got = harness_query_text(conn, sql);
	if (got == NULL)
		fail_msg("no row in %s where %s", view, where);
	if (strcmp(got, expected) != 0)
		fail_msg("%s where %s:\n  got      %s\n  expected %s", view, where, got, expected);
	free(got);
}

#define B1 "bucket = '2026-11-20 10:00:00+00'"
#define B2 "bucket = '2026-11-20 10:15:00+00'"

static void assert_fixed_figures(PGconn *conn, const char *schema)
{
	char sql[256];

	/*
	 * Counts: csat_n sat sum | nps_n pro pas det | ces_n effort high low |
	 * fcr_n yes | offered answered abandoned self within_sl wait handle | negative
	 */
	/* e1 CSAT 5 (100 points, satisfied), e2 CSAT 2 (25, bottom box); NPS 10 and 6. */
	expect_row(conn, schema, counts_sql, "channel_kpi", B1 " AND channel = 'sms'",
	           "2 1 125.0000 2 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 1");
	/* CSAT 1/2 = 50 %, NPS (1 - 1) / 2 = 0. */
	expect_row(conn, schema, rates_sql, "channel_kpi", B1 " AND channel = 'sms'",
	           "50.0000 0.0000 - - - - - - - - -");
	/* e3 at exactly 10:15:00 opens B2: CSAT 4 = 75 points, satisfied. */
	expect_row(conn, schema, counts_sql, "channel_kpi", B2 " AND channel = 'sms'",
	           "1 1 75.0000 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0");
	/*
	 * e4 CSAT 9 on 1-10 (k = 3: satisfied; 800/9 = 88.8889 points), e6 1 on
	 * 0-1 (100 points): 188.8889. NPS e4 8 passive, e5 0 detractor.
	 */
	expect_row(conn, schema, counts_sql, "channel_kpi", B1 " AND channel = 'email'",
	           "2 2 188.8889 2 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 1");
	/* NPS (0 - 1) / 2 = -50. */
	expect_row(conn, schema, rates_sql, "channel_kpi", B1 " AND channel = 'email'",
	           "100.0000 -50.0000 - - - - - - - - -");
	/*
	 * e7 CES 2 (low), e8 agreement 2 on 1-7 = effort 6 (high, negative);
	 * FCR yes + no; contacts: answered 30 s / 300 s, answered 120 s / 600 s,
	 * abandoned after 200 s. Within 90 s: e7 only.
	 */
	expect_row(conn, schema, counts_sql, "channel_kpi", B1 " AND channel = 'phone'",
	           "0 0 0.0000 0 0 0 0 2 8 1 1 2 1 3 2 1 0 1 150 900 1");
	/*
	 * CES 8/2 = 4, high 1/2; FCR 1/2; answer 2/3, abandon 1/3, SL 1/3 x 100,
	 * ASA 150/2, AHT 900/2, self-service 0/3.
	 */
	expect_row(conn, schema, rates_sql, "channel_kpi", B1 " AND channel = 'phone'",
	           "- - 4.0000 50.0000 50.0000 0.6667 0.3333 33.3333 75.0000 450.0000 0.0000");
	/*
	 * e10: self-service, CES 3 on 1-5 (moderate: neither high nor low); e14
	 * CSAT 4 (75 points, satisfied), offered with no outcome: 2 offered,
	 * 1 self-service, no wait or handle time in any sum.
	 */
	expect_row(conn, schema, counts_sql, "channel_kpi", B2 " AND channel = 'phone'",
	           "1 1 75.0000 0 0 0 0 1 3 0 0 0 0 2 0 0 1 0 0 0 0");
	/* CSAT 1/1; answer, abandon and SL 0/2; self-service 1/2. */
	expect_row(conn, schema, rates_sql, "channel_kpi", B2 " AND channel = 'phone'",
	           "100.0000 - 3.0000 0.0000 - 0.0000 0.0000 0.0000 - - 0.5000");
	/* e11 CSAT 3 (50 points), e12 1 (0, negative), e13 framed 5 (100, satisfied). */
	expect_row(conn, schema, counts_sql, "channel_kpi", B1 " AND channel = 'social'",
	           "3 1 150.0000 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1");
	expect_row(conn, schema, rates_sql, "channel_kpi", B1 " AND channel = 'social'",
	           "33.3333 - - - - - - - - - -");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".channel_kpi", schema);
	assert_int_equal(harness_query_int(conn, sql), 6);

	/* Agents: a1 has e1, e2 (sms) and e7 (phone); a2 e3, e4, e8; a3 e12. */
	expect_row(conn, schema, counts_sql, "agent_kpi",
	           B1 " AND agent_id = 'a1' AND channel = 'sms'",
	           "2 1 125.0000 2 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 1");
	expect_row(conn, schema, counts_sql, "agent_kpi",
	           B1 " AND agent_id = 'a1' AND channel = 'phone'",
	           "0 0 0.0000 0 0 0 0 1 2 0 1 1 1 1 1 0 0 1 30 300 0");
	expect_row(conn, schema, counts_sql, "agent_kpi",
	           B2 " AND agent_id = 'a2' AND channel = 'sms'",
	           "1 1 75.0000 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0");
	expect_row(conn, schema, counts_sql, "agent_kpi",
	           B1 " AND agent_id = 'a2' AND channel = 'email'",
	           "1 1 88.8889 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0");
	expect_row(conn, schema, counts_sql, "agent_kpi",
	           B1 " AND agent_id = 'a2' AND channel = 'phone'",
	           "0 0 0.0000 0 0 0 0 1 6 1 0 1 0 1 1 0 0 0 120 600 1");
	expect_row(conn, schema, counts_sql, "agent_kpi",
	           B1 " AND agent_id = 'a3' AND channel = 'social'",
	           "1 0 0.0000 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".agent_kpi", schema);
	assert_int_equal(harness_query_int(conn, sql), 6);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".ledger", schema);
	assert_int_equal(harness_query_int(conn, sql), 14);
	/* The ledger keeps the contact of e14, outcome 0 (not given). */
	snprintf(sql, sizeof(sql),
	         "SELECT contact_outcome * 1000000 + wait_seconds * 1000 + handle_seconds "
	         "FROM \"%s\".ledger WHERE event_id = 'phone-5'",
	         schema);
	assert_int_equal(harness_query_int(conn, sql), 40100);
}

struct dead_letter {
	const char *topic;
	int32_t partition;
	long long offset;  /* in the first delivery */
	long long per_set; /* messages of its partition in one delivery */
	const char *reason;
};

/* One delivery's dead letters: the three malformed messages of produce_fixed_set. */
static const struct dead_letter expected_dead[] = {
    {"feedback.sms", 3, 1, 2, "decode_error"},
    {"feedback.email", 3, 0, 1, "invalid_score"},
    {"feedback.phone", 1, 1, 2, "channel_mismatch"},
};

/* Delivery k's dead letter of each is at its offset + k * per_set, once. */
static void assert_dead_letters(struct fx_kafka *k, size_t deliveries)
{
	struct fx_record *r = NULL;
	size_t n = fx_read_topic(k, "feedback.dlq", &r);
	size_t found[3] = {0, 0, 0};
	unsigned seen[3] = {0, 0, 0};

	assert_int_equal(n, 3 * deliveries);
	for (size_t i = 0; i < n; i++) {
		bool matched = false;

		for (int d = 0; d < 3; d++) {
			const struct dead_letter *x = &expected_dead[d];
			long long off, delivery;

			if (r[i].header[3] == NULL || strcmp(r[i].header[3], x->reason) != 0)
				continue;
			assert_string_equal(r[i].header[0], x->topic);
			assert_int_equal(strtol(r[i].header[1], NULL, 10), x->partition);
			off = strtoll(r[i].header[2], NULL, 10);
			delivery = (off - x->offset) / x->per_set;
			if (off < x->offset || (off - x->offset) % x->per_set != 0 ||
			    delivery >= (long long)deliveries || (seen[d] & (1u << delivery)))
				fail_msg("dead letter %s of %s/%d@%lld: not one of %zu deliveries",
				         x->reason, x->topic, (int)x->partition, off, deliveries);
			seen[d] |= 1u << delivery;
			assert_non_null(r[i].header[4]);
			assert_true(strlen(r[i].header[4]) > 10);
			found[d]++;
			matched = true;
		}
		assert_true(matched);
	}
	for (int d = 0; d < 3; d++)
		assert_int_equal(found[d], deliveries);
	/* The value is the original bytes. */
	for (size_t i = 0; i < n; i++)
		if (strcmp(r[i].header[3], "decode_error") == 0) {
			assert_int_equal(r[i].len, 12);
			assert_memory_equal(r[i].value, "not protobuf", 12);
			assert_string_equal(r[i].key, "cust-3");
		}
	fx_records_free(r, n);
}

static void test_fixed_set_exact_and_idempotent(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_fixed");
	struct fx_kafka k;
	pid_t pid;

	(void)state;
	fx_migrate(conn, schema);
	fx_kafka_start(&k, 4);
	produce_fixed_set(&k);
	pid = fx_consumer_start(&k, schema, "g-fixed", NULL);
	fx_wait_offsets(conn, schema, "g-fixed", FIXED_MESSAGES, 30000);
	assert_fixed_figures(conn, schema);
	assert_dead_letters(&k, 1);

	/* The whole set delivered again: not one figure moves. */
	produce_fixed_set(&k);
	fx_wait_offsets(conn, schema, "g-fixed", 2 * FIXED_MESSAGES, 30000);
	assert_fixed_figures(conn, schema);
	assert_dead_letters(&k, 2);

	/* SIGTERM: leave the group and exit 0 within seconds. */
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 10000), 0);

	/* A restart resumes at the stored offsets: one more copy of e1 is the
	 * only message it reads, and it changes nothing. */
	pid = fx_consumer_start(&k, schema, "g-fixed", NULL);
	uint8_t buf[1024];
	size_t len = fx_pack(&e1, buf, sizeof(buf));
	fx_produce(&k, fx_topics[0], 2, "c", buf, len);
	fx_flush(&k);
	fx_wait_offsets(conn, schema, "g-fixed", 2 * FIXED_MESSAGES + 1, 30000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 10000), 0);
	assert_fixed_figures(conn, schema);
	/* Nothing read again from before: no dead letter of a third round. */
	assert_dead_letters(&k, 2);

	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixed_set_exact_and_idempotent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
