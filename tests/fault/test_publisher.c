/*
 * publisher.c when its idempotent producer fails for good (a fatal error,
 * here raised at the first delivery): it must start a new producer and
 * send what the old one left unacknowledged, instead of letting every
 * trigger wait in the outbox until a restart.
 */
#include "fault/drwrap.h"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_producer_after_fatal_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
