/*
 * dlq.c under failure, against librdkafka's mock cluster: the Nth
 * rd_kafka_produceva() fails (a full queue), or the Nth delivery report
 * says the record was lost. dlq_drain must send again until every dead
 * letter is acknowledged; none may be dropped, and one that cannot be
 * sent must still be pending when the consumer is told to stop.
 */
#include "dlq.h"
#include "fault/drwrap.h"
#include "integration/fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define PER_ROUND 5

rd_kafka_error_t *__real_rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt);
rd_kafka_error_t *__wrap_rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt);

static struct {
	int produce_at, produce_calls;
	bool produce_from_then_on;       /* every call from produce_at on fails */
	rd_kafka_resp_err_t produce_err; /* default: a full queue */
	int report_at, report_calls;
	rd_kafka_resp_err_t report_err; /* default: timed out */
} f;

rd_kafka_error_t *__wrap_rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt)
{
	if (f.produce_at > 0) {
		int n = ++f.produce_calls;

		if (n == f.produce_at || (f.produce_from_then_on && n > f.produce_at))
			return f.produce_err ? rd_kafka_error_new(f.produce_err, "injected: %s",
			                                          rd_kafka_err2str(f.produce_err))
			                     : rd_kafka_error_new(RD_KAFKA_RESP_ERR__QUEUE_FULL,
			                                          "injected: queue full");
	}
	return __real_rd_kafka_produceva(rk, vus, cnt);
}

/* From now on every produce call is refused (on), or none is. */
static void refuse_produce(bool on)
{
	f.produce_at = on ? 1 : 0;
	f.produce_calls = 0;
	f.produce_from_then_on = on;
}

/* Reports the Nth successful delivery as timed out (the record is in the topic all the same). */
static void report(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	if (f.report_at > 0 && rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    ++f.report_calls == f.report_at) {
		rd_kafka_message_t lost = *rkm;

		lost.err = f.report_err ? f.report_err : RD_KAFKA_RESP_ERR__MSG_TIMED_OUT;
		drwrap_real(rk, &lost, opaque);
		return;
	}
	drwrap_real(rk, rkm, opaque);
}

struct world {
	struct fx_kafka k;
	struct dlq *d;
	rd_kafka_topic_t *rkt; /* the source topic of the dead letters */
	int64_t next_offset;   /* source offset of the next dead letter */
	unsigned long long sent;
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];

	assert_non_null(w);
	fx_kafka_start(&w->k, 1);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", w->k.bootstrap, errstr, sizeof(errstr)))
		fail_msg("%s", errstr);
	drwrap_hook = report;
	drwrap_capture = true;
	w->d = dlq_new(conf, "feedback.dlq", errstr, sizeof(errstr));
	drwrap_capture = false;
	if (w->d == NULL)
		fail_msg("dlq_new: %s", errstr);
	w->rkt = rd_kafka_topic_new(w->k.producer, "feedback.sms", NULL);
	assert_non_null(w->rkt);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	dlq_destroy(w->d);
	rd_kafka_topic_destroy(w->rkt);
	fx_kafka_stop(&w->k);
	free(w);
	return 0;
}

/* Queues n dead letters of feedback.sms partition 3 with consecutive source offsets. */
static void send_to(struct world *w, struct dlq *d, int n)
{
	for (int i = 0; i < n; i++) {
		char value[32];
		rd_kafka_message_t rkm = {.rkt = w->rkt, .partition = 3};

		rkm.offset = w->next_offset++;
		snprintf(value, sizeof(value), "bad-%lld", (long long)rkm.offset);
		rkm.payload = value;
		rkm.len = strlen(value);
		rkm.key = "k";
		rkm.key_len = 1;
		assert_int_equal(dlq_send(d, &rkm, "decode_error", "not a FeedbackEvent"), 0);
		if (d == w->d)
			w->sent++;
	}
}

static void send_some(struct world *w, int n)
{
	send_to(w, w->d, n);
}

static void count_wait(void *arg)
{
	(*(int *)arg)++;
}

/* Drains; returns how often dlq_drain said it was still waiting. */
static int drain_all(struct world *w)
{
	atomic_int stop = 0;
	int waits = 0;

	assert_int_equal(dlq_drain(w->d, &stop, count_wait, &waits), 0);
	assert_int_equal(dlq_pending(w->d), 0);
	assert_int_equal(dlq_delivered(w->d), w->sent);
	return waits;
}

/*
 * A new dead-letter producer asks for the topic's leaders at once, not when
 * its first letter needs them: the letter would wait for them, and with it
 * the commit of its batch, and every row that batch locked. Once the new
 * producer had a moment, the embedded Kafka answers every further question
 * about the topic with "leader not available"; the first letter is still
 * acknowledged.
 */
static void test_first_letter_knows_the_leader(void **state)
{
	struct world *w = *state;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_mock_cluster_t *mc = mockcluster_handle(w->k.mc);
	struct timespec moment = {1, 0};
	char errstr[512];
	unsigned long long delivered;
	struct dlq *d;
	int settled;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", w->k.bootstrap, errstr, sizeof(errstr)))
		fail_msg("%s", errstr);
	d = dlq_new(conf, "feedback.dlq", errstr, sizeof(errstr));
	if (d == NULL)
		fail_msg("dlq_new: %s", errstr);
	nanosleep(&moment, NULL);
	rd_kafka_mock_topic_set_error(mc, "feedback.dlq", RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
	send_to(w, d, 1);
	settled = dlq_settle(d, 5000);
	delivered = dlq_delivered(d);
	/* Before asserting: the other tests need the topic back. */
	rd_kafka_mock_topic_set_error(mc, "feedback.dlq", RD_KAFKA_RESP_ERR_NO_ERROR);
	dlq_destroy(d);
	assert_int_equal(settled, 0);
	assert_int_equal(delivered, 1);
}

static void test_produce_fails_in_turn(void **state)
{
	struct world *w = *state;

	for (int n = 1; n <= PER_ROUND; n++) {
		f.produce_at = n;
		f.produce_calls = 0;
		send_some(w, PER_ROUND);
		/* The refused one waits for dlq_drain; the others are on their way. */
		assert_int_equal(dlq_pending(w->d) > 0, 1);
		/* The refused one waited out a backoff, telling the caller so. */
		assert_true(drain_all(w) >= 1);
		f.produce_at = 0;
	}
}

static void test_delivery_fails_in_turn(void **state)
{
	struct world *w = *state;

	for (int n = 1; n <= PER_ROUND; n++) {
		f.report_at = n;
		f.report_calls = 0;
		send_some(w, PER_ROUND);
		assert_true(drain_all(w) >= 1);
		assert_int_equal(f.report_calls >= n, 1);
		f.report_at = 0;
	}
}

static void test_stop_keeps_what_was_not_sent(void **state)
{
	struct world *w = *state;
	atomic_int stop = 1;

	/* The topic cannot be written at all; the consumer is told to stop. */
	refuse_produce(true);
	send_some(w, 2);
	assert_int_equal(dlq_drain(w->d, &stop, NULL, NULL), -1);
	assert_int_equal(dlq_pending(w->d), 2);
	/* Writable again: nothing was lost in between. */
	refuse_produce(false);
	drain_all(w);
}

/*
 * dlq_settle, the consumer's commit gate: 0 once the broker acknowledged
 * every record; -1, and the record still pending, when a produce call was
 * refused or a delivery reported lost, which only dlq_drain sends again.
 */
static void test_settle(void **state)
{
	struct world *w = *state;
	unsigned long long before = dlq_delivered(w->d);

	send_some(w, 3);
	assert_int_equal(dlq_settle(w->d, 30000), 0);
	assert_int_equal(dlq_pending(w->d), 0);
	assert_int_equal(dlq_delivered(w->d), before + 3);
	assert_int_equal(dlq_settle(w->d, 30000), 0);

	f.produce_at = 1;
	f.produce_calls = 0;
	send_some(w, 2);
	f.produce_at = 0;
	/* The refused one is pending; settle does not wait for its sibling in flight. */
	assert_int_equal(dlq_settle(w->d, 30000), -1);
	assert_true(dlq_pending(w->d) >= 1);
	assert_int_equal(dlq_pending(w->d) + dlq_delivered(w->d), before + 5);
	drain_all(w);

	f.report_at = 1;
	f.report_calls = 0;
	send_some(w, 1);
	assert_int_equal(dlq_settle(w->d, 30000), -1);
	assert_int_equal(f.report_calls, 1);
	assert_int_equal(dlq_pending(w->d), 1);
	f.report_at = 0;
	drain_all(w);
	assert_int_equal(dlq_settle(w->d, 30000), 0);
}

/*
 * Every dead letter is in the topic, at least once (a delivery reported
 * lost may have arrived), with its headers; the set of source offsets is
 * exactly 0 .. next_offset - 1.
 */
static void test_every_record_in_topic(void **state)
{
	struct world *w = *state;
	struct fx_record *r = NULL;
	size_t n = fx_read_topic(&w->k, "feedback.dlq", &r);
	int64_t total = w->next_offset;
	int *seen = calloc((size_t)total, sizeof(int));
	char value[32];

	/*
	 * The first letter of a new producer, 5 rounds of 5 failing produce
	 * calls, 5 of 5 failing reports, 2 while stopped, 3 + 2 + 1 settled.
	 */
	assert_int_equal(total, 1 + 5 * 5 + 5 * 5 + 2 + 6);
	assert_true(n >= (size_t)total);
	for (size_t i = 0; i < n; i++) {
		long long off;

		assert_string_equal(r[i].header[0], "feedback.sms");
		assert_string_equal(r[i].header[1], "3");
		assert_string_equal(r[i].header[3], "decode_error");
		assert_string_equal(r[i].header[4], "not a FeedbackEvent");
		assert_string_equal(r[i].key, "k");
		off = strtoll(r[i].header[2], NULL, 10);
		assert_true(off >= 0 && off < total);
		snprintf(value, sizeof(value), "bad-%lld", off);
		assert_int_equal(r[i].len, strlen(value));
		assert_memory_equal(r[i].value, value, r[i].len);
		seen[off]++;
	}
	for (int64_t off = 0; off < total; off++)
		if (seen[off] == 0)
			fail_msg("dead letter of offset %lld is missing", (long long)off);
	free(seen);
	fx_records_free(r, n);
}

/* The dead letters of source offset off, in topic order. */
static size_t records_of(struct world *w, int64_t off, struct fx_record **all, size_t *n_all,
                         struct fx_record **out, size_t max)
{
	char want[24];
	size_t n = 0;

	snprintf(want, sizeof(want), "%lld", (long long)off);
	*n_all = fx_read_topic(&w->k, "feedback.dlq", all);
	for (size_t i = 0; i < *n_all && n < max; i++)
		if (strcmp((*all)[i].header[2], want) == 0)
			out[n++] = &(*all)[i];
	return n;
}

/*
 * A record the producer refuses for its size (over message.max.bytes,
 * 1,000,000 by default, once the headers are added) would never be sent:
 * it goes without its value, saying so, and the next one flows on.
 */
static void test_too_large_goes_without_value(void **state)
{
	struct world *w = *state;
	size_t big = 999990;
	char *value = malloc(big);
	rd_kafka_message_t rkm = {.rkt = w->rkt, .partition = 3, .key = "k", .key_len = 1};
	struct fx_record *all, *mine[2];
	size_t n_all;
	const int64_t off = w->next_offset++;

	assert_non_null(value);
	memset(value, 0xff, big);
	rkm.offset = off;
	rkm.payload = value;
	rkm.len = big;
	assert_int_equal(dlq_send(w->d, &rkm, "decode_error", "not a FeedbackEvent"), 0);
	w->sent++;
	free(value);
	send_some(w, 1);
	drain_all(w);
	assert_int_equal(records_of(w, off, &all, &n_all, mine, 2), 1);
	assert_string_equal(mine[0]->key, "k");
	assert_int_equal(mine[0]->len, 0);
	assert_non_null(mine[0]->value);
	assert_string_equal(mine[0]->header[0], "feedback.sms");
	assert_string_equal(mine[0]->header[1], "3");
	assert_string_equal(mine[0]->header[3], "decode_error");
	char want[256];
	snprintf(want, sizeof(want),
	         "not a FeedbackEvent; its value of 999990 bytes is too large for "
	         "\"feedback.dlq\" and left out: the original is at feedback.sms/3@%lld",
	         (long long)off);
	assert_string_equal(mine[0]->header[4], want);
	fx_records_free(all, n_all);
	/* The letter after it went as it was. */
	struct fx_record *next[2];
	assert_int_equal(records_of(w, off + 1, &all, &n_all, next, 2), 1);
	snprintf(want, sizeof(want), "bad-%lld", (long long)off + 1);
	assert_int_equal(next[0]->len, strlen(want));
	assert_memory_equal(next[0]->value, want, strlen(want));
	fx_records_free(all, n_all);
}

/*
 * The broker refusing a record for its size (the topic's max.message.bytes
 * below the producer's): the delivery report says so, and the record goes
 * again without its value.
 */
static void test_broker_refuses_size(void **state)
{
	struct world *w = *state;
	struct fx_record *all, *mine[3];
	size_t n_all;
	const int64_t off = w->next_offset;

	f.report_at = 1;
	f.report_calls = 0;
	f.report_err = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
	send_some(w, 1);
	drain_all(w);
	f.report_at = 0;
	f.report_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	/* The embedded Kafka took the first copy; the report said otherwise. */
	char want[32];
	snprintf(want, sizeof(want), "bad-%lld", (long long)off);
	assert_int_equal(records_of(w, off, &all, &n_all, mine, 3), 2);
	assert_int_equal(mine[0]->len, strlen(want));
	assert_memory_equal(mine[0]->value, want, strlen(want));
	assert_int_equal(mine[1]->len, 0);
	assert_non_null(strstr(mine[1]->header[4], "; its value of "));
	fx_records_free(all, n_all);
}

/*
 * A fatal error of the idempotent producer: nothing will ever be sent by
 * it again, so dlq_drain gives up at once instead of retrying for good,
 * and says why; the caller exits and a restart reads the batch again.
 */
static void test_fatal_gives_up(void **state)
{
	struct world *w = *state;
	atomic_int stop = 0;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];
	struct dlq *d;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", w->k.bootstrap, errstr, sizeof(errstr)))
		fail_msg("%s", errstr);
	d = dlq_new(conf, "feedback.dlq", errstr, sizeof(errstr));
	if (d == NULL)
		fail_msg("dlq_new: %s", errstr);
	refuse_produce(true);
	f.produce_err = RD_KAFKA_RESP_ERR__FATAL;
	send_to(w, d, 2);
	assert_true(dlq_fatal(d));
	assert_int_equal(dlq_drain(d, &stop, NULL, NULL), -1);
	assert_int_equal(dlq_pending(d), 2);
	refuse_produce(false);
	f.produce_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	assert_false(dlq_fatal(w->d));
	dlq_destroy(d);
}

/*
 * Dead letters reach the topic in the order of their source offsets after
 * an outage: the waiting ones in the order they came, and one that comes
 * while others wait goes after them.
 */
static void test_order_after_outage(void **state)
{
	struct world *w = *state;
	struct fx_record *r = NULL;
	int64_t first = w->next_offset;
	size_t n, at = 0;

	refuse_produce(true);
	send_some(w, 4);
	refuse_produce(false);
	drain_all(w);

	refuse_produce(true);
	send_some(w, 2);
	refuse_produce(false);
	send_some(w, 2); /* the topic takes them, but two wait before them */
	drain_all(w);

	n = fx_read_topic(&w->k, "feedback.dlq", &r);
	for (size_t i = 0; i < n; i++) {
		long long off = strtoll(r[i].header[2], NULL, 10);
		if (off < first)
			continue;
		if (off != first + (long long)at)
			fail_msg("dead letter %zu after the outage is of offset %lld, want %lld",
			         at, off, (long long)(first + (long long)at));
		at++;
	}
	assert_int_equal(at, 8);
	fx_records_free(r, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_letter_knows_the_leader),
	    cmocka_unit_test(test_produce_fails_in_turn),
	    cmocka_unit_test(test_delivery_fails_in_turn),
	    cmocka_unit_test(test_stop_keeps_what_was_not_sent),
	    cmocka_unit_test(test_settle),
	    cmocka_unit_test(test_every_record_in_topic),
	    cmocka_unit_test(test_too_large_goes_without_value),
	    cmocka_unit_test(test_broker_refuses_size),
	    cmocka_unit_test(test_fatal_gives_up),
	    cmocka_unit_test(test_order_after_outage),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
