/*
 * publisher.c when its idempotent producer fails for good (a fatal error,
 * here raised at the first delivery): it must start a new producer and
 * send what the old one left unacknowledged, instead of letting every
 * trigger wait in the outbox until a restart. And when a trigger is too
 * large for the topic: it goes without its comment, or, too large even
 * so, stays unsent while the triggers after it go out.
 */
#include "fault/drwrap.h"
#include "feedback/v1/feedback.pb-c.h"
#include "integration/fixture.h"
#include "integration/harness.h"
#include "publisher.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

rd_kafka_t *__real_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                                size_t errstr_size);
rd_kafka_t *__wrap_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                                size_t errstr_size);

static struct {
	int producers; /* rd_kafka_new calls for producers */
	int reports, fatal_at;
	/* refuse: deliveries keyed "c-big" are reported too large; with or without the comment */
	bool refuse;
	int big_full, big_trimmed;
} f;

rd_kafka_t *__wrap_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                                size_t errstr_size)
{
	if (type == RD_KAFKA_PRODUCER)
		f.producers++;
	return __real_rd_kafka_new(type, conf, errstr, errstr_size);
}

/*
 * At delivery fatal_at, raises a real fatal error in the producer (from
 * then on it refuses every message) and reports that delivery failed (the
 * record is in the topic all the same).
 */
static void report(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	if (++f.reports == f.fatal_at) {
		rd_kafka_message_t failed = *rkm;

		assert_int_equal(
		    rd_kafka_test_fatal_error(rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
		                              "injected"),
		    RD_KAFKA_RESP_ERR_NO_ERROR);

		failed.err = RD_KAFKA_RESP_ERR__FATAL;
		drwrap_real(rk, &failed, opaque);
		return;
	}
	drwrap_real(rk, rkm, opaque);
}

/* Reports every delivery of customer c-big's trigger as too large while f.refuse is set. */
static void refuse_big(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	if (rkm->key_len == 5 && memcmp(rkm->key, "c-big", 5) == 0) {
		Feedback__V1__RecoveryTrigger *t =
		    feedback__v1__recovery_trigger__unpack(NULL, rkm->len, rkm->payload);

		assert_non_null(t);
		if (t->comment_left_out) {
			assert_string_equal(t->comment, "");
			f.big_trimmed++;
		} else {
			assert_int_equal(strlen(t->comment), 1600);
			f.big_full++;
		}
		feedback__v1__recovery_trigger__free_unpacked(t, NULL);
		if (f.refuse) {
			rd_kafka_message_t refused = *rkm;

			refused.err = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
			drwrap_real(rk, &refused, opaque);
			return;
		}
	}
	drwrap_real(rk, rkm, opaque);
}

static long long unsent(PGconn *conn, const char *schema)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM \"%s\".recovery_outbox WHERE sent_at IS NULL", schema);
	return harness_query_int(conn, sql);
}

static void test_new_producer_after_fatal_error(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_pub_fatal");
	struct fx_kafka k;
	char sql[1024], errstr[512];
	atomic_int stop = 0;

	(void)state;
	fx_migrate(conn, schema);
	snprintf(
	    sql, sizeof(sql),
	    "INSERT INTO \"%s\".recovery_outbox (trigger_id, event_id, customer_id, channel, "
	    "severity, reasons, repeat_count, suppressed_count, occurred_at, detected_at, "
	    "follow_up_by, payload) SELECT 'rt:e' || i, 'e' || i, 'c' || i, 'sms', 1, 1, 1, 0, "
	    "now(), now(), now(), convert_to('trigger-' || i, 'UTF8') "
	    "FROM generate_series(1, 3) i",
	    schema);
	harness_exec(conn, sql);
	assert_int_equal(unsent(conn, schema), 3);

	fx_kafka_start(&k, 1);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", k.bootstrap, errstr, sizeof(errstr)))
		fail_msg("%s", errstr);
	const struct publisher_opts opts = {.conninfo = "",
	                                    .schema = schema,
	                                    .topic = "feedback.recovery",
	                                    .retention_ms = 7LL * 86400 * 1000,
	                                    .db_retry_max_ms = 1000};
	int before = f.producers;
	drwrap_hook = report;
	drwrap_capture = true;
	struct publisher *p = publisher_new(&opts, conf, errstr, sizeof(errstr));
	drwrap_capture = false;
	if (p == NULL)
		fail_msg("publisher_new: %s", errstr);
	f.fatal_at = 1;
	assert_int_equal(publisher_start(p, &stop, errstr, sizeof(errstr)), 0);
	for (int waited = 0; unsent(conn, schema) > 0 && waited < 30000; waited += 100)
		usleep(100000);
	long long left = unsent(conn, schema);
	struct publisher_stats st;
	publisher_stats(p, &st);
	stop = 1;
	publisher_destroy(p);

	assert_int_equal(left, 0);
	/* The first delivery was reported fatal: a second producer sent it again. */
	assert_int_equal(f.producers - before, 2);
	assert_int_equal(st.sent, 3);
	assert_int_equal(st.failed, 1);
	/* Every trigger is in the topic, the first one also from the first producer. */
	struct fx_record *r = NULL;
	size_t n = fx_read_topic(&k, "feedback.recovery", &r);
	int seen[4] = {0};
	for (size_t i = 0; i < n; i++) {
		int which = 0;

		assert_int_equal(r[i].len, strlen("trigger-1"));
		assert_memory_equal(r[i].value, "trigger-", 8);
		which = ((const char *)r[i].value)[8] - '0';
		assert_true(which >= 1 && which <= 3);
		seen[which]++;
	}
	assert_int_equal(n, 4);
	assert_int_equal(seen[1], 2);
	assert_int_equal(seen[2], 1);
	assert_int_equal(seen[3], 1);
	fx_records_free(r, n);

	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

static const char big_comment[1601] = {[0 ... 1599] = 'x'};

/* A packed trigger of event id for customer, with comment. */
static uint8_t *trigger_of(const char *id, const char *customer, const char *comment, size_t *len)
{
	Feedback__V1__RecoveryTrigger t = FEEDBACK__V1__RECOVERY_TRIGGER__INIT;
	char trigger_id[64];
	uint8_t *buf;

	snprintf(trigger_id, sizeof(trigger_id), "rt:%s", id);
	t.trigger_id = trigger_id;
	t.event_id = (char *)id;
	t.customer_id = (char *)customer;
	t.channel = FEEDBACK__V1__CHANNEL__CHANNEL_SMS;
	t.severity = FEEDBACK__V1__SEVERITY__SEVERITY_HIGH;
	t.comment = (char *)comment;
	*len = feedback__v1__recovery_trigger__get_packed_size(&t);
	buf = malloc(*len);
	assert_non_null(buf);
	feedback__v1__recovery_trigger__pack(&t, buf);
	return buf;
}

/* Queues the trigger of event id in the outbox, as the consumer does. */
static void queue_trigger(PGconn *conn, const char *schema, const char *id, const char *customer,
                          const char *comment)
{
	char sql[512];
	size_t len;
	uint8_t *payload = trigger_of(id, customer, comment, &len);
	char trigger_id[64];
	const char *values[4] = {trigger_id, id, customer, (const char *)payload};
	int lengths[4] = {0, 0, 0, (int)len}, formats[4] = {0, 0, 0, 1};

	snprintf(trigger_id, sizeof(trigger_id), "rt:%s", id);
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".recovery_outbox (trigger_id, event_id, customer_id, channel, "
	         "severity, reasons, repeat_count, suppressed_count, occurred_at, detected_at, "
	         "follow_up_by, payload) VALUES ($1, $2, $3, 'sms', 2, 1, 1, 0, now(), now(), "
	         "now(), $4)",
	         schema);
	PGresult *res = PQexecParams(conn, sql, 4, NULL, values, lengths, formats, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail_msg("queueing %s: %s", id, PQerrorMessage(conn));
	PQclear(res);
	free(payload);
}

static const struct publisher_opts *opts_of(const char *schema)
{
	static struct publisher_opts opts;

	opts = (struct publisher_opts){.conninfo = "",
	                               .schema = schema,
	                               .topic = "feedback.recovery",
	                               .retention_ms = 7LL * 86400 * 1000,
	                               .db_retry_max_ms = 1000};
	return &opts;
}

/* A publisher on k whose deliveries go through hook, with message.max.bytes. */
static struct publisher *publisher_on(struct fx_kafka *k, const char *schema, drwrap_cb *hook,
                                      const char *max_bytes, atomic_int *stop)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (rd_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "message.max.bytes", max_bytes, errstr, sizeof(errstr)))
		fail_msg("%s", errstr);
	drwrap_hook = hook;
	drwrap_capture = true;
	struct publisher *p = publisher_new(opts_of(schema), conf, errstr, sizeof(errstr));
	drwrap_capture = false;
	if (p == NULL)
		fail_msg("publisher_new: %s", errstr);
	assert_int_equal(publisher_start(p, stop, errstr, sizeof(errstr)), 0);
	return p;
}

static long long wait_unsent(PGconn *conn, const char *schema, long long want)
{
	for (int waited = 0; unsent(conn, schema) != want && waited < 30000; waited += 100)
		usleep(100000);
	return unsent(conn, schema);
}

/* Waits up to 30 s for every row to be sent, then stops p: the rows left unsent, *st p's figures.
 */
static long long run_until_sent(PGconn *conn, const char *schema, struct publisher *p,
                                atomic_int *stop, struct publisher_stats *st)
{
	long long left = wait_unsent(conn, schema, 0);

	publisher_stats(p, st);
	*stop = 1;
	publisher_destroy(p);
	return left;
}

/*
 * A trigger over the producer's message.max.bytes (1000) goes without its
 * comment, marked so, and the triggers after it go out as they are.
 */
static void test_too_large_goes_without_comment(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_pub_large");
	struct fx_kafka k;
	atomic_int stop = 0;
	struct publisher_stats st;

	(void)state;
	fx_migrate(conn, schema);
	queue_trigger(conn, schema, "big", "c-big", big_comment);
	queue_trigger(conn, schema, "s1", "c-1", "slow");
	queue_trigger(conn, schema, "s2", "c-2", "");
	fx_kafka_start(&k, 1);
	f.big_full = f.big_trimmed = 0;
	f.refuse = false;
	struct publisher *p = publisher_on(&k, schema, refuse_big, "1000", &stop);

	assert_int_equal(run_until_sent(conn, schema, p, &stop, &st), 0);
	assert_int_equal(st.sent, 3);
	assert_int_equal(st.failed, 0);
	/* The producer refused the whole one itself: only the trimmed one was delivered. */
	assert_int_equal(f.big_full, 0);
	assert_int_equal(f.big_trimmed, 1);
	struct fx_record *r = NULL;
	size_t n = fx_read_topic(&k, "feedback.recovery", &r);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		Feedback__V1__RecoveryTrigger *t =
		    feedback__v1__recovery_trigger__unpack(NULL, r[i].len, r[i].value);

		assert_non_null(t);
		if (strcmp(t->trigger_id, "rt:big") == 0) {
			assert_string_equal(r[i].key, "c-big");
			assert_string_equal(t->event_id, "big");
			assert_int_equal(t->severity, FEEDBACK__V1__SEVERITY__SEVERITY_HIGH);
			assert_string_equal(t->comment, "");
			assert_true(t->comment_left_out);
		} else {
			assert_true(strcmp(t->trigger_id, "rt:s1") == 0 ||
			            strcmp(t->trigger_id, "rt:s2") == 0);
			assert_string_equal(t->comment, t->trigger_id[4] == '1' ? "slow" : "");
			assert_false(t->comment_left_out);
		}
		feedback__v1__recovery_trigger__free_unpacked(t, NULL);
	}
	fx_records_free(r, n);
	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

/*
 * A trigger the broker refuses for its size, with and without its comment,
 * stays unsent and is counted as failed once, however often it is claimed
 * again; the triggers after it go out. Once the broker takes it, it goes whole.
 */
static void test_refused_trigger_is_passed_over(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_pub_refused");
	struct fx_kafka k;
	atomic_int stop = 0;
	struct publisher_stats st;
	char sql[256];

	(void)state;
	fx_migrate(conn, schema);
	queue_trigger(conn, schema, "big", "c-big", big_comment);
	queue_trigger(conn, schema, "s1", "c-1", "");
	queue_trigger(conn, schema, "s2", "c-2", "");
	fx_kafka_start(&k, 1);
	f.big_full = f.big_trimmed = 0;
	f.refuse = true;
	struct publisher *p = publisher_on(&k, schema, refuse_big, "1000000", &stop);
	assert_int_equal(wait_unsent(conn, schema, 1), 1);
	/* Claims from the first unsent row come every second: two more at least. */
	sleep(3);
	publisher_stats(p, &st);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM \"%s\".recovery_outbox WHERE sent_at IS NULL AND "
	         "trigger_id = 'rt:big'",
	         schema);
	assert_int_equal(harness_query_int(conn, sql), 1);
	assert_int_equal(st.sent, 2);
	assert_int_equal(st.failed, 1);
	assert_true(f.big_full >= 2);
	assert_int_equal(f.big_trimmed, f.big_full);
	stop = 1;
	publisher_destroy(p);

	/* Another publisher, the broker taking it: it goes whole. */
	stop = 0;
	f.big_full = f.big_trimmed = 0;
	f.refuse = false;
	p = publisher_on(&k, schema, refuse_big, "1000000", &stop);
	assert_int_equal(run_until_sent(conn, schema, p, &stop, &st), 0);
	assert_int_equal(st.sent, 1);
	assert_int_equal(st.failed, 0);
	assert_int_equal(f.big_full, 1);
	assert_int_equal(f.big_trimmed, 0);
	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_producer_after_fatal_error),
	    cmocka_unit_test(test_too_large_goes_without_comment),
	    cmocka_unit_test(test_refused_trigger_is_passed_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
