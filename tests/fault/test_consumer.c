/*
 * consumer.c in process, against the mock cluster and PostgreSQL, with a
 * fatal error raised where only a shortage of memory or a librdkafka
 * refusal would raise one: the consumer must stop, and commit nothing that
 * the error left incomplete. And with transactions made to fail the
 * compare-and-set, or offsets lost as a server crash loses asynchronous
 * commits: every message must be read again from where it has to be.
 */
#include "consumer.h"
#include "db.h"
#include "dlq.h"
#include "integration/fixture.h"
#include "integration/harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

rd_kafka_resp_err_t __real_rd_kafka_assign(rd_kafka_t *rk,
                                           const rd_kafka_topic_partition_list_t *partitions);
rd_kafka_resp_err_t __wrap_rd_kafka_assign(rd_kafka_t *rk,
                                           const rd_kafka_topic_partition_list_t *partitions);
rd_kafka_error_t *
__real_rd_kafka_incremental_assign(rd_kafka_t *rk,
                                   const rd_kafka_topic_partition_list_t *partitions);
rd_kafka_error_t *
__wrap_rd_kafka_incremental_assign(rd_kafka_t *rk,
                                   const rd_kafka_topic_partition_list_t *partitions);
enum db_status __real_db_apply(struct db *db, const char *group, const char *const *topics,
                               struct batch *b, size_t from, size_t to,
                               const struct offset_update *u, size_t nu, char *errstr,
                               size_t errstr_size);
enum db_status __wrap_db_apply(struct db *db, const char *group, const char *const *topics,
                               struct batch *b, size_t from, size_t to,
                               const struct offset_update *u, size_t nu, char *errstr,
                               size_t errstr_size);
int __real_dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason,
                    const char *message);

int __wrap_dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason,
                    const char *message);

static struct {
	int refuse_assignments; /* assignments (not unassignments) to refuse */
	int refused;
	int fail_dead_letters; /* dlq_send calls to fail, as when out of memory */
	int failed;
	/* db_apply: results to return in turn instead of applying (DB_OK: apply) */
	enum db_status applies[4];
	int n_applies, applied;
	/* called inside the next db_apply, before its result */
	void (*in_apply)(void);
} f;

/* The world of the running test, for in_apply. */
static struct world *current;

rd_kafka_resp_err_t __wrap_rd_kafka_assign(rd_kafka_t *rk,
                                           const rd_kafka_topic_partition_list_t *partitions)
{
	if (partitions != NULL && f.refuse_assignments > 0) {
		f.refuse_assignments--;
		f.refused++;
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	return __real_rd_kafka_assign(rk, partitions);
}

rd_kafka_error_t *
__wrap_rd_kafka_incremental_assign(rd_kafka_t *rk,
                                   const rd_kafka_topic_partition_list_t *partitions)
{
	if (f.refuse_assignments > 0) {
		f.refuse_assignments--;
		f.refused++;
		return rd_kafka_error_new(RD_KAFKA_RESP_ERR__INVALID_ARG, "refused by the test");
	}
	return __real_rd_kafka_incremental_assign(rk, partitions);
}

enum db_status __wrap_db_apply(struct db *db, const char *group, const char *const *topics,
                               struct batch *b, size_t from, size_t to,
                               const struct offset_update *u, size_t nu, char *errstr,
                               size_t errstr_size)
{
	if (f.in_apply) {
		void (*hook)(void) = f.in_apply;

		f.in_apply = NULL;
		hook();
	}
	if (f.applied < f.n_applies && f.applies[f.applied++] != DB_OK) {
		snprintf(errstr, errstr_size, "refused by the test");
		return f.applies[f.applied - 1];
	}
	return __real_db_apply(db, group, topics, b, from, to, u, nu, errstr, errstr_size);
}

int __wrap_dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason,
                    const char *message)
{
	if (f.fail_dead_letters > 0) {
		f.fail_dead_letters--;
		f.failed++;
		return -1;
	}
	return __real_dlq_send(d, rkm, reason, message);
}

struct run {
	struct consumer_opts opts;
	struct consumer *c;
	atomic_int stop;
	atomic_bool done;
	int rc;
	pthread_t thread;
	bool running; /* started and not joined: teardown stops it after a failed test */
};

static void *run_main(void *arg)
{
	struct run *r = arg;

	r->rc = consumer_run(r->c, &r->stop);
	atomic_store(&r->done, true);
	return NULL;
}

static rd_kafka_conf_t *conf_for(const struct fx_kafka *k)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (rd_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)))
		fail_msg("conf: %s", errstr);
	return conf;
}

/* offset.reset=latest for the consumers start() makes */
static bool start_latest;

static void start(struct run *r, const struct fx_kafka *k, const char *schema, const char *group,
                  int linger_ms)
{
	char errstr[512];
	rd_kafka_conf_t *cconf = conf_for(k);

	memset(r, 0, sizeof(*r));
	r->opts = (struct consumer_opts){.group = group,
	                                 .dlq_topic = fx_topics[5],
	                                 .conninfo = "",
	                                 .schema = schema,
	                                 .batch_max_events = 100,
	                                 .batch_linger_ms = linger_ms,
	                                 .db_retry_max_ms = 1000,
	                                 .db_check_interval_ms = 1000,
	                                 .start_latest = start_latest};
	for (int t = 0; t < CHANNEL_MAX; t++)
		r->opts.topics[t] = fx_topics[t];
	kpi_policy_defaults(&r->opts.policy);
	/* The mock cluster holds a left group for session.timeout.ms - 1 s. */
	if (rd_kafka_conf_set(cconf, "session.timeout.ms", "6000", errstr, sizeof(errstr)))
		fail_msg("conf: %s", errstr);
	r->c = consumer_new(&r->opts, cconf, conf_for(k), errstr, sizeof(errstr));
	if (r->c == NULL)
		fail_msg("consumer_new: %s", errstr);
	assert_int_equal(pthread_create(&r->thread, NULL, run_main, r), 0);
	r->running = true;
}

/* Waits up to timeout_ms for consumer_run to return by itself; then stops it and joins. */
static bool ended_by_itself(struct run *r, int timeout_ms)
{
	bool ended = false;

	for (int waited = 0; waited < timeout_ms && !ended; waited += 50) {
		ended = atomic_load(&r->done);
		if (!ended)
			usleep(50000);
	}
	atomic_store(&r->stop, 1);
	pthread_join(r->thread, NULL);
	r->running = false;
	return ended;
}

/*
 * Each test: a migrated schema, a mock cluster of two partitions a topic,
 * no fault armed, and the consumer it runs.
 */
struct world {
	PGconn *conn;
	char *schema;
	struct fx_kafka k;
	struct run run;
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	memset(&f, 0, sizeof(f));
	start_latest = false;
	current = w;
	w->conn = harness_pg_connect();
	w->schema = harness_fresh_schema(w->conn, "fc_consumer");
	fx_migrate(w->conn, w->schema);
	fx_kafka_start(&w->k, 2);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	if (w->run.running) { /* the test failed while its consumer ran */
		ended_by_itself(&w->run, 0);
		consumer_destroy(w->run.c);
	}
	fx_teardown(&w->k, w->conn, w->schema);
	PQfinish(w->conn);
	free(w);
	return 0;
}

/*
 * librdkafka refuses the first assignment: the partitions would be marked
 * ours yet never fetched. The consumer exits with an error instead.
 */
static void test_refused_assignment(void **state)
{
	struct world *w = *state;
	struct run *r = &w->run;

	f.refuse_assignments = 1;
	start(r, &w->k, w->schema, "g-assign", 50);
	if (!ended_by_itself(r, 30000))
		fail_msg("the consumer ran on for 30 s after its assignment was refused");
	consumer_destroy(r->c);
	assert_int_equal(f.refused, 1);
	assert_int_equal(r->rc, -1);
}

/*
 * A good event, then a malformed message whose dead letter cannot be
 * queued (out of memory), in one batch: the consumer stops, and nothing of
 * the batch commits, not even from the revocation as it leaves the group;
 * a restart reads both messages again.
 */
static void test_fatal_batch_not_committed(void **state)
{
	struct world *w = *state;
	struct run *r = &w->run;

	fx_produce_csat(&w->k, fx_topics[0], 0, "e-1");
	fx_produce(&w->k, fx_topics[0], 0, "c-2", "not protobuf", 12);
	fx_flush(&w->k);
	f.fail_dead_letters = 1;
	/* Both messages come in one fetch, long before the linger ends. */
	start(r, &w->k, w->schema, "g-fatal", 5000);
	if (!ended_by_itself(r, 30000))
		fail_msg("the consumer ran on for 30 s after a fatal error");
	consumer_destroy(r->c);
	assert_int_equal(f.failed, 1);
	assert_int_equal(r->rc, -1);
	assert_int_equal(harness_stored_offsets(w->conn, w->schema, "g-fatal"), 0);
	assert_int_equal(harness_ledger_rows(w->conn, w->schema), 0);
}

/*
 * A batch of four events is refused as a whole (a row PostgreSQL refuses),
 * split in two; the first half commits, the second fails the compare and
 * set (another member moved on, as far as this consumer can tell). The
 * second half is read again from the stored offset and commits. Each half
 * counts once: consumed 4, accepted 4, though the split batch as a whole
 * never committed.
 */
static void test_split_batch_counts_what_committed(void **state)
{
	static const char *const ids[] = {"e-1", "e-2", "e-3", "e-4"};
	struct world *w = *state;
	struct run *r = &w->run;

	for (size_t i = 0; i < 4; i++)
		fx_produce_csat(&w->k, fx_topics[0], 0, ids[i]);
	fx_flush(&w->k);
	f.applies[0] = DB_REJECTED; /* all four */
	f.applies[1] = DB_OK;       /* e-1, e-2 */
	f.applies[2] = DB_STALE;    /* e-3, e-4 */
	f.n_applies = 3;            /* then e-3, e-4 again, applied */
	start(r, &w->k, w->schema, "g-split", 1000);
	fx_wait_offsets(w->conn, w->schema, "g-split", 4, 30000);
	assert_false(ended_by_itself(r, 0));
	const struct consumer_stats st = *consumer_stats(r->c);

	consumer_destroy(r->c);
	assert_int_equal(f.applied, 3);
	assert_int_equal(harness_ledger_rows(w->conn, w->schema), 4);
	assert_int_equal(st.stale_batches, 1);
	assert_int_equal(st.consumed, 4);
	assert_int_equal(st.accepted, 4);
	assert_int_equal(st.duplicates, 0);
	assert_int_equal(st.dead_lettered, 0);
	assert_int_equal(st.batches, 1);
}

/* The ledger's event ids in order, space-separated; the caller frees it. */
static char *ledger_ids(struct world *w)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT string_agg(event_id, ' ' ORDER BY event_id) FROM \"%s\".ledger",
	         w->schema);
	return harness_query_text(w->conn, sql);
}

/* Partition 0 of the sms topic has stored offset 0 for group; partition 1 has none. */
static void store_q(struct world *w, const char *group)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".consumer_offsets (group_id, topic, partition, next_offset) "
	         "VALUES ('%s', '%s', 0, 0)",
	         w->schema, group, fx_topics[0]);
	harness_exec(w->conn, sql);
}

/* Inside a transaction: three messages reach partition 1 and are fetched, not yet taken. */
static void produce_on_p(void)
{
	fx_produce_csat(&current->k, fx_topics[0], 1, "p-0");
	fx_produce_csat(&current->k, fx_topics[0], 1, "p-1");
	fx_produce_csat(&current->k, fx_topics[0], 1, "p-2");
	fx_flush(&current->k);
	usleep(1500000);
}

/*
 * offset.reset=latest. Partition P (sms/1) has nothing stored and nothing
 * taken yet when a batch of Q (sms/0) fails the compare-and-set, while P's
 * first three messages arrive. The resync must put P back at the offset it
 * started from, 0, not at its end, 3, past them.
 */
static void test_resync_latest_nothing_taken(void **state)
{
	struct world *w = *state;
	struct run *r = &w->run;

	store_q(w, "g-latest");
	start_latest = true;
	start(r, &w->k, w->schema, "g-latest", 200);
	fx_produce_csat(&w->k, fx_topics[0], 0, "q-0");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-latest", 1, 30000); /* assigned, P at its end, 0 */
	f.in_apply = produce_on_p;
	f.applies[0] = DB_STALE;
	f.n_applies = 1;
	fx_produce_csat(&w->k, fx_topics[0], 0, "q-1");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-latest", 2 + 3, 30000);
	fx_produce_csat(&w->k, fx_topics[0], 1, "p-3");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-latest", 2 + 4, 30000);
	assert_false(ended_by_itself(r, 0));
	consumer_destroy(r->c);
	assert_int_equal(f.applied, 1);
	char *ids = ledger_ids(w);
	assert_string_equal(ids, "p-0 p-1 p-2 p-3 q-0 q-1");
	free(ids);
}

/*
 * offset.reset=earliest. P's offsets row is created, a resync follows (a
 * stale batch of Q), P commits once more; then every commit of P since its
 * row was created is lost, as a server crash loses asynchronous commits,
 * and the session with them. P must be read again from its beginning, not
 * from the first offset read after the resync.
 */
static void test_lost_offsets_after_resync(void **state)
{
	struct world *w = *state;
	struct run *r = &w->run;
	char sql[1024];

	store_q(w, "g-lost");
	start(r, &w->k, w->schema, "g-lost", 200);
	fx_produce_csat(&w->k, fx_topics[0], 1, "p-0");
	fx_produce_csat(&w->k, fx_topics[0], 1, "p-1");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-lost", 2, 30000); /* P's row: 2 */
	f.applies[0] = DB_STALE;
	f.n_applies = 1;
	fx_produce_csat(&w->k, fx_topics[0], 0, "q-0");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-lost", 3, 30000); /* q-0, after the resync */
	fx_produce_csat(&w->k, fx_topics[0], 1, "p-2");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-lost", 4, 30000); /* P: 3 */
	snprintf(sql, sizeof(sql),
	         "BEGIN; DELETE FROM \"%s\".ledger WHERE event_id LIKE 'p-%%'; "
	         "DELETE FROM \"%s\".event_ids WHERE event_id LIKE 'p-%%'; "
	         "DELETE FROM \"%s\".consumer_offsets WHERE partition = 1; COMMIT; "
	         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	         "WHERE application_name = 'feedback-consumer' AND pid <> pg_backend_pid()",
	         w->schema, w->schema, w->schema);
	harness_exec(w->conn, sql);
	fx_produce_csat(&w->k, fx_topics[0], 1, "p-3");
	fx_flush(&w->k);
	fx_wait_offsets(w->conn, w->schema, "g-lost", 1 + 4, 30000);
	assert_false(ended_by_itself(r, 0));
	consumer_destroy(r->c);
	char *ids = ledger_ids(w);
	assert_string_equal(ids, "p-0 p-1 p-2 p-3 q-0");
	free(ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_refused_assignment, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fatal_batch_not_committed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_split_batch_counts_what_committed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resync_latest_nothing_taken, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lost_offsets_after_resync, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
