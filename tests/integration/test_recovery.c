/*
 * Service recovery end to end: the consumer binary reads a fixed stream
 * from the mock cluster, PostgreSQL decides the triggers, the publisher
 * sends them to feedback.recovery, and the test decodes what arrived.
 * Every expected trigger below was worked out by hand from the default
 * policy: NPS 0-6, CSAT bottom-2-box on 1-5 and CES 5-7 on 1-7 are
 * negative; repeat window 30 d (inclusive), cooldown 24 h (a trigger
 * exactly 24 h after the last one is allowed); critical for NPS 0-3 or the
 * lowest CSAT score, else high for a comment or a repeat, else normal;
 * follow-up 4 h, 24 h, 48 h.
 */
#include "feedback/v1/feedback.pb-c.h"
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
enum { T_SMS = 0, T_EMAIL = 1, T_PHONE = 2, T_SOCIAL = 3, T_RECOVERY = 4 };

#define PARTITIONS 4
/* The Kafka protocol ApiKey of ProduceRequest. */
#define PRODUCE_API_KEY 0

/*
 * Customer A, all on sms partition 0, in this order.
 * a1 NPS 2: trigger, critical (2 <= 3), repeat 1.
 * a2 (+2 h) and a3 (+10 h): within 24 h of a1, suppressed.
 * a4 (+24 h exactly): trigger; CSAT 1 is the lowest score -> critical;
 *    repeat 4 (a1..a4), suppressed 2 (a2, a3).
 */
static const struct fx_event a1 = {.id = "a1",
                                   .at = "2026-09-01T10:00:00",
                                   .customer = "cust-a",
                                   .agent = "ag-1",
                                   .r = {{NPS, 2, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event a2 = {.id = "a2",
                                   .at = "2026-09-01T12:00:00",
                                   .customer = "cust-a",
                                   .r = {{CSAT, 2, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event a3 = {.id = "a3",
                                   .at = "2026-09-01T20:00:00",
                                   .customer = "cust-a",
                                   .r = {{CES, 6, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event a4 = {.id = "a4",
                                   .at = "2026-09-02T10:00:00",
                                   .customer = "cust-a",
                                   .comment = "called three times",
                                   .r = {{CSAT, 1, 0, 0, false}, {NPS, 5, 0, 0, false}},
                                   .n_ratings = 2};
/*
 * Customer B on social partition 1.
 * b1 CES 4 on 1-5 (high effort from 4) with a comment: high, repeat 1.
 * b2 NPS 9: a promoter, no trigger.
 * b3 NPS 6 exactly 30 d after b1 (September has 30 days): a repeat,
 *    repeat 2, high.
 */
static const struct fx_event b1 = {.id = "b1",
                                   .at = "2026-09-05T09:00:00",
                                   .customer = "cust-b",
                                   .comment = "too many forms",
                                   .r = {{CES, 4, 1, 5, false}},
                                   .n_ratings = 1};
static const struct fx_event b2 = {.id = "b2",
                                   .at = "2026-09-05T09:30:00",
                                   .customer = "cust-b",
                                   .r = {{NPS, 9, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event b3 = {.id = "b3",
                                   .at = "2026-10-05T09:00:00",
                                   .customer = "cust-b",
                                   .r = {{NPS, 6, 0, 0, false}},
                                   .n_ratings = 1};
/* Customer C on phone partition 2, re-sent on partition 3: negative on all
 * three metrics, one trigger with three reasons, normal. */
static const struct fx_event c1 = {
    .id = "c1",
    .at = "2026-09-10T08:00:00",
    .customer = "cust-c",
    .agent = "ag-2",
    .r = {{CSAT, 2, 0, 0, false}, {NPS, 6, 0, 0, false}, {CES, 5, 0, 0, false}},
    .n_ratings = 3,
    .outcome = 1,
    .wait = 30,
    .handle = 200};
/* Customer D: satisfied, no trigger. */
static const struct fx_event d1 = {.id = "d1",
                                   .at = "2026-09-12T08:00:00",
                                   .customer = "cust-d",
                                   .r = {{CSAT, 5, 0, 0, false}},
                                   .n_ratings = 1};
/* Customer G on email partition 2: g1 NPS 5, normal. */
static const struct fx_event g1 = {.id = "g1",
                                   .at = "2026-09-20T12:00:00",
                                   .customer = "cust-g",
                                   .r = {{NPS, 5, 0, 0, false}},
                                   .n_ratings = 1};
/*
 * Delivered later, in this order: g2 occurred 10 h before g1 (a late
 * event): within 24 h of the g1 trigger, suppressed. g3 25 h after g1:
 * trigger, repeat 3 (g1, g2, g3), suppressed 1 (g2), high (repeat).
 */
static const struct fx_event g2 = {.id = "g2",
                                   .at = "2026-09-20T02:00:00",
                                   .customer = "cust-g",
                                   .r = {{NPS, 5, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event g3 = {.id = "g3",
                                   .at = "2026-09-21T13:00:00",
                                   .customer = "cust-g",
                                   .r = {{NPS, 4, 0, 0, false}},
                                   .n_ratings = 1};
/* Invalid (CSAT 6 on 1-5): dead-lettered, never a trigger. */
static const struct fx_event bad = {.id = "bad-1",
                                    .at = "2026-09-01T11:00:00",
                                    .customer = "cust-e",
                                    .r = {{CSAT, 6, 0, 0, false}},
                                    .n_ratings = 1};

struct placed {
	int topic;
	int32_t partition;
	const struct fx_event *e;
};

/* 12 messages: 11 distinct events, the last one invalid, c1 twice. */
static const struct placed stream[] = {
    {T_SMS, 0, &a1},    {T_SMS, 0, &a2},    {T_SMS, 0, &a3},    {T_SMS, 0, &a4},
    {T_SOCIAL, 1, &b1}, {T_SOCIAL, 1, &b2}, {T_SOCIAL, 1, &b3}, {T_PHONE, 2, &c1},
    {T_PHONE, 3, &c1},  {T_SMS, 1, &d1},    {T_EMAIL, 2, &g1},  {T_EMAIL, 0, &bad},
};
#define STREAM_MESSAGES 12
/* The stream without its invalid last message, which would need the dead-letter topic. */
#define VALID_MESSAGES 11
static const struct placed late[] = {{T_EMAIL, 2, &g2}, {T_EMAIL, 2, &g3}};
#define LATE_MESSAGES 2

enum { R_CSAT = 1, R_NPS = 2, R_CES = 3, R_REPEAT = 4 };
enum { NORMAL = 1, HIGH = 2, CRITICAL = 3 };

struct expected {
	const char *trigger_id, *event_id, *customer, *channel_topic;
	int channel;
	int reasons[4];
	size_t n_reasons;
	int severity;
	unsigned repeat, suppressed;
	int follow_up_hours;
	const char *comment;
};

/* The triggers of `stream`; the last two entries only with `late`. */
static const struct expected expected[] = {
    {"rt:a1", "a1", "cust-a", "sms", 1, {R_NPS}, 1, CRITICAL, 1, 0, 4, ""},
    {"rt:a4",
     "a4",
     "cust-a",
     "sms",
     1,
     {R_CSAT, R_NPS, R_REPEAT},
     3,
     CRITICAL,
     4,
     2,
     4,
     "called three times"},
    {"rt:b1", "b1", "cust-b", "social", 4, {R_CES}, 1, HIGH, 1, 0, 24, "too many forms"},
    {"rt:b3", "b3", "cust-b", "social", 4, {R_NPS, R_REPEAT}, 2, HIGH, 2, 0, 24, ""},
    {"rt:c1", "c1", "cust-c", "phone", 3, {R_CSAT, R_NPS, R_CES}, 3, NORMAL, 1, 0, 48, ""},
    {"rt:g1", "g1", "cust-g", "email", 2, {R_NPS}, 1, NORMAL, 1, 0, 48, ""},
    {"rt:g3", "g3", "cust-g", "email", 2, {R_NPS, R_REPEAT}, 2, HIGH, 3, 1, 24, ""},
};
#define N_EXPECTED_STREAM 6
#define N_EXPECTED_ALL    7

static void produce(struct fx_kafka *k, const struct placed *p, size_t n)
{
	uint8_t buf[1024];

	for (size_t i = 0; i < n; i++) {
		size_t len = fx_pack(p[i].e, buf, sizeof(buf));
		fx_produce(k, fx_topics[p[i].topic], p[i].partition, p[i].e->customer, buf, len);
	}
	fx_flush(k);
}

/* Polls sql until it returns want; fails after timeout_ms (a safety net only). */
static void wait_int(PGconn *conn, const char *sql, long long want, int timeout_ms)
{
	long long got = -1;

	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		got = harness_query_int(conn, sql);
		if (got == want)
			return;
		usleep(100000);
	}
	fail_msg("%s: got %lld, expected %lld", sql, got, want);
}

/* Rows of the outbox of schema; only the unsent ones when unsent. */
static long long outbox_count(PGconn *conn, const char *schema, bool unsent)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".recovery_outbox%s", schema,
	         unsent ? " WHERE sent_at IS NULL" : "");
	return harness_query_int(conn, sql);
}

/* Waits until every outbox row is marked sent; fails after timeout_ms (a safety net). */
static void wait_all_sent(PGconn *conn, const char *schema, int timeout_ms)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM \"%s\".recovery_outbox WHERE sent_at IS NULL", schema);
	wait_int(conn, sql, 0, timeout_ms);
}

static int64_t ts_s(const Google__Protobuf__Timestamp *ts)
{
	assert_non_null(ts);
	return ts->seconds;
}

/*
 * Reads feedback.recovery, decodes every record and checks it against
 * expected[0..n_expected): every trigger arrives, with the right fields and
 * key. Returns the number of records (re-sends included).
 */
static size_t check_topic(struct fx_kafka *k, size_t n_expected)
{
	struct fx_record *recs = NULL;
	size_t n = fx_read_topic(k, fx_topics[T_RECOVERY], &recs);
	bool seen[N_EXPECTED_ALL] = {false};

	for (size_t i = 0; i < n; i++) {
		Feedback__V1__RecoveryTrigger *t =
		    feedback__v1__recovery_trigger__unpack(NULL, recs[i].len, recs[i].value);
		const struct expected *e = NULL;

		assert_non_null(t);
		for (size_t j = 0; j < n_expected; j++)
			if (strcmp(expected[j].trigger_id, t->trigger_id) == 0) {
				e = &expected[j];
				seen[j] = true;
			}
		if (e == NULL)
			fail_msg("unexpected trigger \"%s\"", t->trigger_id);
		assert_non_null(recs[i].key);
		assert_string_equal(recs[i].key, e->customer);
		assert_string_equal(t->event_id, e->event_id);
		assert_string_equal(t->customer_id, e->customer);
		assert_int_equal(t->channel, e->channel);
		assert_int_equal(t->n_reasons, e->n_reasons);
		for (size_t r = 0; r < e->n_reasons; r++)
			assert_int_equal(t->reasons[r], e->reasons[r]);
		/* Every reason but the repeat names a negative rating, in metric order. */
		size_t n_ratings = e->n_reasons - (e->reasons[e->n_reasons - 1] == R_REPEAT);
		assert_int_equal(t->n_negative_ratings, n_ratings);
		for (size_t r = 0; r < n_ratings; r++)
			assert_int_equal(t->negative_ratings[r]->metric, e->reasons[r]);
		if ((int)t->severity != e->severity)
			fail_msg("%s: severity %d, expected %d", e->trigger_id, t->severity,
			         e->severity);
		assert_int_equal(t->repeat_count, e->repeat);
		assert_int_equal(t->suppressed_count, e->suppressed);
		assert_string_equal(t->comment, e->comment);
		assert_int_equal(ts_s(t->follow_up_by) - ts_s(t->detected_at),
		                 e->follow_up_hours * 3600);
		feedback__v1__recovery_trigger__free_unpacked(t, NULL);
	}
	for (size_t j = 0; j < n_expected; j++)
		if (!seen[j])
			fail_msg("trigger \"%s\" never arrived", expected[j].trigger_id);
	fx_records_free(recs, n);
	return n;
}

/* The counter name=N of the last statistics line of a consumer log, or -1. */
static long long log_counter(const char *path, const char *name)
{
	char line[4096];
	long long v = -1;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		fail_msg("cannot read %s", path);
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, " consumed=") ? strstr(line, name) : NULL;
		if (p)
			v = strtoll(p + strlen(name), NULL, 10);
	}
	fclose(f);
	return v;
}

/* Suppressed negatives count in the aggregates like any other. */
static void check_aggregates(PGconn *conn, const char *schema, long long negatives)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT coalesce(sum(negative), 0) FROM \"%s\".channel_kpi",
	         schema);
	assert_int_equal(harness_query_int(conn, sql), negatives);
}

/* A test's world: a fresh schema, an embedded Kafka, and a file for the consumer's log. */
struct run {
	PGconn *conn;
	char *schema;
	char log[64];
	struct fx_kafka k;
};

static void run_begin(struct run *r, const char *name)
{
	int fd;

	r->conn = harness_pg_connect();
	r->schema = harness_fresh_schema(r->conn, name);
	snprintf(r->log, sizeof(r->log), "/tmp/%s_XXXXXX", name);
	fd = mkstemp(r->log);
	assert_true(fd >= 0);
	close(fd);
	fx_migrate(r->conn, r->schema);
	fx_kafka_start(&r->k, PARTITIONS);
}

static void run_end(struct run *r)
{
	fx_kafka_stop(&r->k);
	unlink(r->log);
	harness_drop_schema(r->conn, r->schema);
	free(r->schema);
	PQfinish(r->conn);
}

/*
 * The fixed stream, then the late events and the whole stream once more:
 * exactly the expected triggers, each sent once.
 */
static void test_fixed_stream(void **state)
{
	struct run r;
	pid_t pid;

	(void)state;
	run_begin(&r, "fc_recovery");
	produce(&r.k, stream, STREAM_MESSAGES);
	pid = fx_consumer_start_logged(&r.k, r.schema, "g-recovery", NULL, r.log);
	fx_wait_offsets(r.conn, r.schema, "g-recovery", STREAM_MESSAGES, 60000);
	wait_all_sent(r.conn, r.schema, 60000);
	assert_int_equal(outbox_count(r.conn, r.schema, false), N_EXPECTED_STREAM);

	/* The late events, then the same stream again: duplicates only. */
	produce(&r.k, late, LATE_MESSAGES);
	produce(&r.k, stream, STREAM_MESSAGES);
	fx_wait_offsets(r.conn, r.schema, "g-recovery", 2 * STREAM_MESSAGES + LATE_MESSAGES, 60000);
	wait_all_sent(r.conn, r.schema, 60000);
	assert_int_equal(outbox_count(r.conn, r.schema, false), N_EXPECTED_ALL);
	/* a2, a3, g2 were suppressed: cust-a's counter was reset by a4, g2's carried into g3. */
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT sum(suppressed) FROM \"%s\".recovery_state", r.schema);
	assert_int_equal(harness_query_int(r.conn, sql), 0);
	/* Negatives: a1-a4, b1, b3, c1, g1-g3 = 10. */
	check_aggregates(r.conn, r.schema, 10);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 20000), 0);
	/* The consumer's counters: 7 queued, 3 suppressed (a2, a3, g2). */
	assert_int_equal(log_counter(r.log, "triggers="), N_EXPECTED_ALL);
	assert_int_equal(log_counter(r.log, "suppressed="), 3);

	/* Normal operation: each trigger exactly once. */
	assert_int_equal(check_topic(&r.k, N_EXPECTED_ALL), N_EXPECTED_ALL);

	run_end(&r);
}

/*
 * A schema name near PostgreSQL's 63 bytes: "<schema>.recovery" would be a
 * channel name pg_notify() refuses, failing every batch with a trigger.
 */
static void test_long_schema_name(void **state)
{
	struct run r;
	pid_t pid;

	(void)state;
	run_begin(&r, "fc_recovery_with_a_schema_name_close_to_the_limit");
	assert_true(strlen(r.schema) + strlen(".recovery") > 63);
	produce(&r.k, stream, STREAM_MESSAGES);
	pid = fx_consumer_start_logged(&r.k, r.schema, "g-long", NULL, r.log);
	fx_wait_offsets(r.conn, r.schema, "g-long", STREAM_MESSAGES, 60000);
	wait_all_sent(r.conn, r.schema, 60000);
	assert_int_equal(outbox_count(r.conn, r.schema, false), N_EXPECTED_STREAM);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 20000), 0);
	/* Only the stream's invalid event; none of the negatives was refused. */
	assert_int_equal(log_counter(r.log, "dead_lettered="), 1);
	assert_int_equal(check_topic(&r.k, N_EXPECTED_STREAM), N_EXPECTED_STREAM);
	run_end(&r);
}

static void recovery_leader(struct fx_kafka *k, int32_t broker)
{
	for (int32_t p = 0; p < PARTITIONS; p++)
		assert_int_equal(rd_kafka_mock_partition_set_leader(
		                     mockcluster_handle(k->mc), fx_topics[T_RECOVERY], p, broker),
		                 0);
}

/*
 * The stream produced to a migrated schema, consumed by a consumer of
 * group with extra flags while the recovery topic has no leader: every
 * trigger committed, none acknowledged. Returns the consumer's pid.
 */
static pid_t stream_without_leader(struct fx_kafka *k, PGconn *conn, const char *schema,
                                   const char *group, const char *const *extra)
{
	pid_t pid;

	fx_migrate(conn, schema);
	fx_kafka_start(k, PARTITIONS);
	produce(k, stream, STREAM_MESSAGES);
	recovery_leader(k, -1);
	pid = fx_consumer_start(k, schema, group, extra);
	fx_wait_offsets(conn, schema, group, STREAM_MESSAGES, 60000);
	return pid;
}

/*
 * The recovery topic has no leader, so triggers are committed but never
 * acknowledged; the consumer is killed; after the restart every trigger
 * arrives (a re-send would carry the same trigger_id).
 */
static void test_sigkill_before_ack(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_recovery_kill");
	struct fx_kafka k;
	pid_t pid;

	(void)state;
	pid = stream_without_leader(&k, conn, schema, "g-kill", NULL);
	/* Committed with their events, none acknowledged. */
	assert_int_equal(outbox_count(conn, schema, false), N_EXPECTED_STREAM);
	assert_int_equal(outbox_count(conn, schema, true), N_EXPECTED_STREAM);
	/* a1-a4, b1, b3, c1, g1 = 8. */
	check_aggregates(conn, schema, 8);
	assert_int_equal(fx_consumer_stop(pid, SIGKILL, 10000), 128 + SIGKILL);

	recovery_leader(&k, 1);
	pid = fx_consumer_start(&k, schema, "g-kill", NULL);
	wait_all_sent(conn, schema, 120000);
	assert_int_equal(outbox_count(conn, schema, false), N_EXPECTED_STREAM);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 20000), 0);

	/* The distinct trigger ids are exactly the expected ones. */
	assert_true(check_topic(&k, N_EXPECTED_STREAM) >= N_EXPECTED_STREAM);

	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

/* Whether the publisher of the frozen process holds a claim: idle in a transaction. */
static long long publishers_in_claim(PGconn *conn)
{
	return harness_query_int(conn, "SELECT count(*) FROM pg_stat_activity WHERE "
	                               "application_name = 'feedback-consumer publisher' AND "
	                               "state = 'idle in transaction'");
}

/*
 * A replica frozen while its publisher holds a claim (SIGSTOP: a node
 * gone, its TCP connection still up): PostgreSQL ends that session after
 * database.idle.transaction.timeout, and another replica's publisher sends
 * the triggers, instead of passing over their locked rows for hours.
 */
static void test_frozen_publisher_frees_its_claim(void **state)
{
	const char *const extra[] = {"--database.idle.transaction.timeout=15s", NULL};
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_recovery_frozen");
	struct fx_kafka k;
	pid_t a, b;
	bool held = false;

	(void)state;
	a = stream_without_leader(&k, conn, schema, "g-frozen", extra);
	/* Frozen in a claim: a claim waits 10 s for the broker, then another begins. */
	for (int attempt = 0; attempt < 5 && !held; attempt++) {
		for (int w = 0; w < 300 && publishers_in_claim(conn) == 0; w++)
			usleep(50000);
		kill(a, SIGSTOP);
		held = publishers_in_claim(conn) == 1;
		if (!held)
			kill(a, SIGCONT);
	}
	assert_true(held);
	recovery_leader(&k, 1);
	b = fx_consumer_start(&k, schema, "g-frozen", extra);
	wait_all_sent(conn, schema, 45000);
	assert_int_equal(outbox_count(conn, schema, false), N_EXPECTED_STREAM);
	assert_int_equal(fx_consumer_stop(b, SIGTERM, 20000), 0);
	/* Killed as it is: continued, it would deliver what it still holds. */
	assert_int_equal(fx_consumer_stop(a, SIGKILL, 10000), 128 + SIGKILL);
	assert_int_equal(check_topic(&k, N_EXPECTED_STREAM), N_EXPECTED_STREAM);

	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

static bool log_contains(const char *path, const char *needle)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/*
 * The broker refuses every produce request for a while: ingestion goes on,
 * the triggers wait in the outbox (and the log says so), and all of them
 * go out once the broker accepts again, from the same process.
 */
static void test_broker_refuses_then_recovers(void **state)
{
	struct run r;
	pid_t pid;

	(void)state;
	run_begin(&r, "fc_recovery_down");
	/* The input first: from here on every produce request fails, retriably. */
	produce(&r.k, stream, VALID_MESSAGES);
	rd_kafka_resp_err_t errs[1000];
	for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++)
		errs[i] = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
	for (int i = 0; i < 100; i++)
		rd_kafka_mock_push_request_errors_array(mockcluster_handle(r.k.mc), PRODUCE_API_KEY,
		                                        sizeof(errs) / sizeof(*errs), errs);

	pid = fx_consumer_start_logged(&r.k, r.schema, "g-down", NULL, r.log);
	fx_wait_offsets(r.conn, r.schema, "g-down", VALID_MESSAGES, 60000);
	check_aggregates(r.conn, r.schema, 8);
	assert_int_equal(outbox_count(r.conn, r.schema, false), N_EXPECTED_STREAM);
	for (int waited = 0; !log_contains(r.log, "stays queued"); waited += 100) {
		if (waited > 60000)
			fail_msg("no log line about the undelivered triggers in %s", r.log);
		usleep(100000);
	}
	assert_int_equal(outbox_count(r.conn, r.schema, true), N_EXPECTED_STREAM);

	rd_kafka_mock_clear_request_errors(mockcluster_handle(r.k.mc), PRODUCE_API_KEY);
	wait_all_sent(r.conn, r.schema, 120000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 20000), 0);
	assert_true(log_contains(r.log, "writable again"));
	/* Delayed, not lost, and not duplicated: NOT_ENOUGH_REPLICAS appends nothing. */
	assert_int_equal(check_topic(&r.k, N_EXPECTED_STREAM), N_EXPECTED_STREAM);

	run_end(&r);
}

/*
 * The publisher asks for the recovery topic's leaders when it starts, not
 * at its first trigger. Once the consumer is in its group, the embedded
 * Kafka answers every question about feedback.recovery with "leader not
 * available"; the triggers of the stream are still acknowledged.
 */
static void test_first_trigger_knows_the_leader(void **state)
{
	rd_kafka_mock_cluster_t *mc;
	struct run r;
	long long unsent = -1;
	pid_t pid;

	(void)state;
	run_begin(&r, "fc_recovery_leader");
	mc = mockcluster_handle(r.k.mc);
	pid = fx_consumer_start_logged(&r.k, r.schema, "g-leader", NULL, r.log);
	for (int waited = 0; !log_contains(r.log, "assigned "); waited += 100) {
		if (waited > 60000) {
			fx_consumer_stop(pid, SIGKILL, 10000);
			fail_msg("the consumer never joined its group (%s)", r.log);
		}
		usleep(100000);
	}
	rd_kafka_mock_topic_set_error(mc, fx_topics[T_RECOVERY],
	                              RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
	produce(&r.k, stream, STREAM_MESSAGES);
	fx_wait_offsets(r.conn, r.schema, "g-leader", STREAM_MESSAGES, 60000);
	for (int waited = 0; waited <= 20000; waited += 100) {
		unsent = outbox_count(r.conn, r.schema, true);
		if (unsent == 0)
			break;
		usleep(100000);
	}
	/* Before asserting: a failed assertion must not leave the topic or the consumer. */
	rd_kafka_mock_topic_set_error(mc, fx_topics[T_RECOVERY], RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 20000), 0);
	assert_int_equal(unsent, 0);
	assert_int_equal(outbox_count(r.conn, r.schema, false), N_EXPECTED_STREAM);
	assert_int_equal(check_topic(&r.k, N_EXPECTED_STREAM), N_EXPECTED_STREAM);

	run_end(&r);
}

/*
 * Waits until the statistics show want rows inserted into recovery_state
 * (a backend reports its counters at exit at the latest); returns the
 * number of its rows read by sequential scans.
 */
static long long wait_state_inserts(PGconn *conn, const char *schema, long long want)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT n_tup_ins FROM pg_stat_user_tables "
	         "WHERE schemaname = '%s' AND relname = 'recovery_state'",
	         schema);
	wait_int(conn, sql, want, 10000);
	snprintf(sql, sizeof(sql),
	         "SELECT seq_tup_read FROM pg_stat_user_tables "
	         "WHERE schemaname = '%s' AND relname = 'recovery_state'",
	         schema);
	return harness_query_int(conn, sql);
}

/*
 * The recovery state of every customer ever seen stays in one table, which
 * grows without bound; a batch must touch only its own customers' rows.
 * With 20,000 customers already known (and analysed), the stream's four
 * negative customers are locked, read and stored by index: no sequential
 * scan reads a row of recovery_state.
 */
static void test_state_lookups_use_the_index(void **state)
{
	PGconn *conn = harness_pg_connect();
	PGconn *setup = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_recovery_scan");
	char sql[512];
	long long read_before, read_after;
	struct fx_kafka k;
	pid_t pid;

	(void)state;
	fx_migrate(conn, schema);
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".recovery_state (customer_id) "
	         "SELECT 'known-' || g FROM generate_series(1, 20000) g; "
	         "ANALYZE \"%s\".recovery_state",
	         schema, schema);
	harness_exec(setup, sql);
	PQfinish(setup);
	read_before = wait_state_inserts(conn, schema, 20000);

	fx_kafka_start(&k, PARTITIONS);
	produce(&k, stream, VALID_MESSAGES);
	pid = fx_consumer_start(&k, schema, "g-scan", NULL);
	fx_wait_offsets(conn, schema, "g-scan", VALID_MESSAGES, 60000);
	wait_all_sent(conn, schema, 60000);
	assert_int_equal(outbox_count(conn, schema, false), N_EXPECTED_STREAM);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 20000), 0);
	/* The new customers cust-a, cust-b, cust-c and cust-g. */
	read_after = wait_state_inserts(conn, schema, 20004);
	assert_int_equal(read_after, read_before);

	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixed_stream),
	    cmocka_unit_test(test_long_schema_name),
	    cmocka_unit_test(test_sigkill_before_ack),
	    cmocka_unit_test(test_frozen_publisher_frees_its_claim),
	    cmocka_unit_test(test_broker_refuses_then_recovers),
	    cmocka_unit_test(test_first_trigger_knows_the_leader),
	    cmocka_unit_test(test_state_lookups_use_the_index),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
