/*
 * Crashes and consumer groups: a consumer killed with SIGKILL in the middle
 * of its work and restarted, and two consumers splitting the partitions
 * through a rebalance, must give exactly the figures of one clean run over
 * the same messages (the reference), with every distinct event counted once.
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

#define PARTITIONS 8

struct world {
	PGconn *conn;
	struct fx_kafka k;
	struct fx_gen gen;
	char *ref; /* schema of the clean reference run */
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	w->conn = harness_pg_connect();
	fx_kafka_start(&w->k, PARTITIONS);
	/* 40000 events, 1 % re-sent, 0.1 % malformed, over 32 partitions. */
	fx_feedgen(&w->k, "--count 40000 --duplicates 1 --malformed 0.1 --seed 21 --agents 50",
	           &w->gen);
	assert_int_equal(w->gen.events, 40000);
	assert_int_equal(w->gen.duplicates, 400);
	assert_int_equal(w->gen.malformed, 40);
	assert_int_equal(w->gen.messages, 40000 + 400 + 40);

	w->ref = harness_fresh_schema(w->conn, "fc_ref");
	fx_migrate(w->conn, w->ref);
	pid_t pid = fx_consumer_start(&w->k, w->ref, "g-ref", NULL);
	fx_wait_offsets(w->conn, w->ref, "g-ref", w->gen.messages, 120000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 15000), 0);
	assert_int_equal(harness_ledger_rows(w->conn, w->ref), w->gen.events);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	if (w == NULL)
		return 0;
	harness_drop_schema(w->conn, w->ref);
	free(w->ref);
	fx_kafka_stop(&w->k);
	PQfinish(w->conn);
	free(w);
	return 0;
}

static void test_sigkill_mid_batch_then_restart(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_kill");
	/* Small batches: the kill lands while batches are being read and written. */
	const char *const slow[] = {"--batch.max.events=50", NULL};
	long long at_kill = 0;

	fx_migrate(w->conn, schema);
	pid_t pid = fx_consumer_start(&w->k, schema, "g-kill", slow);
	for (int i = 0; i < 6000 && at_kill < w->gen.messages / 4; i++) {
		usleep(10000);
		at_kill = harness_stored_offsets(w->conn, schema, "g-kill");
	}
	assert_int_equal(fx_consumer_stop(pid, SIGKILL, 5000), 128 + SIGKILL);
	/* The kill must have come before the end, or this tests nothing. */
	at_kill = harness_stored_offsets(w->conn, schema, "g-kill");
	assert_true(at_kill > 0);
	assert_true(at_kill < w->gen.messages);

	pid = fx_consumer_start(&w->k, schema, "g-kill", NULL);
	fx_wait_offsets(w->conn, schema, "g-kill", w->gen.messages, 120000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 15000), 0);

	assert_int_equal(harness_ledger_rows(w->conn, schema), w->gen.events);
	assert_int_equal(fx_schema_diff(w->conn, w->ref, schema), 0);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

static void run_two_consumers(struct world *w, const char *strategy)
{
	char *schema = harness_fresh_schema(w->conn, "fc_duo");
	char assign[128];
	/*
	 * Small transactions keep A busy for several seconds, longer than B
	 * needs to join (the mock's rebalances take about 3 s).
	 */
	const char *const extra[] = {"--batch.max.events=20", assign, NULL};
	char log_a[] = "/tmp/fc-duo-a-XXXXXX", log_b[] = "/tmp/fc-duo-b-XXXXXX";

	snprintf(assign, sizeof(assign), "--kafka.partition.assignment.strategy=%s", strategy);
	close(mkstemp(log_a));
	close(mkstemp(log_b));
	fx_migrate(w->conn, schema);
	/* A starts alone; B joins while A is busy, so the partitions move. */
	pid_t a = fx_consumer_start_logged(&w->k, schema, "g-duo", extra, log_a);
	for (int i = 0; i < 6000 && harness_stored_offsets(w->conn, schema, "g-duo") == 0; i++)
		usleep(10000);
	pid_t b = fx_consumer_start_logged(&w->k, schema, "g-duo", extra, log_b);
	fx_wait_offsets(w->conn, schema, "g-duo", w->gen.messages, 120000);
	assert_int_equal(fx_consumer_stop(a, SIGTERM, 15000), 0);
	assert_int_equal(fx_consumer_stop(b, SIGTERM, 15000), 0);

	assert_int_equal(harness_ledger_rows(w->conn, schema), w->gen.events);
	assert_int_equal(fx_schema_diff(w->conn, w->ref, schema), 0);
	/* Both did part of the work. */
	long long by_a = fx_log_counter(log_a, "consumed", -1),
	          by_b = fx_log_counter(log_b, "consumed", -1);
	print_message("%s: consumer A read %lld messages, B %lld\n", strategy, by_a, by_b);
	assert_true(by_a > 0);
	assert_true(by_b > 0);
	assert_true(by_a + by_b >= w->gen.messages);
	unlink(log_a);
	unlink(log_b);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

static void test_two_consumers_eager(void **state)
{
	run_two_consumers(*state, "range,roundrobin");
}

static void test_two_consumers_cooperative(void **state)
{
	run_two_consumers(*state, "cooperative-sticky");
}

/*
 * One process, two consumers (consumer.workers=2): each a member of the
 * group with its own partitions and connections, each line of the log
 * naming its worker. Same figures as one consumer; both did part of it.
 */
static void test_two_workers_in_one_process(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_wrk");
	const char *const extra[] = {"--consumer.workers=2", "--batch.max.events=500", NULL};
	char log[] = "/tmp/fc-wrk-XXXXXX";

	close(mkstemp(log));
	fx_migrate(w->conn, schema);
	pid_t pid = fx_consumer_start_logged(&w->k, schema, "g-wrk", extra, log);
	fx_wait_offsets(w->conn, schema, "g-wrk", w->gen.messages, 120000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 15000), 0);

	assert_int_equal(harness_ledger_rows(w->conn, schema), w->gen.events);
	assert_int_equal(fx_schema_diff(w->conn, w->ref, schema), 0);
	long long by_0 = fx_log_counter(log, "consumed", 0),
	          by_1 = fx_log_counter(log, "consumed", 1);
	print_message("worker 0 read %lld messages, worker 1 %lld\n", by_0, by_1);
	assert_true(by_0 > 0);
	assert_true(by_1 > 0);
	assert_true(by_0 + by_1 >= w->gen.messages);
	assert_int_equal(fx_log_counter(log, "consumed", 2), -1);
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sigkill_mid_batch_then_restart),
	    cmocka_unit_test(test_two_consumers_eager),
	    cmocka_unit_test(test_two_consumers_cooperative),
	    cmocka_unit_test(test_two_workers_in_one_process),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
