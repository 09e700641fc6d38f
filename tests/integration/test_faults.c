/*
 * The consumer binary under failure: PostgreSQL restarted in the middle of
 * the stream or down at start, SIGTERM and SIGINT with a backlog, bad
 * configuration, a row the database refuses, a dead-letter topic that
 * cannot be written for a while, and a replica paused until it lost its
 * partitions. Each must end with exactly the figures of one clean run over
 * the same messages (the reference), every message's offset stored once,
 * and every malformed message in the dead-letter topic.
 */
#include "fixture.h"
#include "harness.h"
#include "migrations.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define PARTITIONS 8

struct world {
	PGconn *conn;
	struct fx_kafka k;
	struct fx_gen gen;
	char *ref;      /* schema of the clean reference run */
	char **ref_dlq; /* "topic/partition/offset" of each dead letter of that run, sorted */
	size_t n_ref_dlq;
};

/* Consumers started by the tests, stopped in teardown if a failed test left them running. */
static pid_t children[32];
static size_t n_children;

static pid_t track(pid_t pid)
{
	if (n_children < sizeof(children) / sizeof(children[0]))
		children[n_children++] = pid;
	return pid;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the stored offsets of group pass above, so that work is under way. */
static long long wait_offsets_above(PGconn *conn, const char *schema, const char *group,
                                    long long above, int timeout_ms)
{
	int64_t until = mono_ms() + timeout_ms;
	long long got;

	while ((got = harness_stored_offsets(conn, schema, group)) <= above) {
		if (mono_ms() > until)
			fail_msg("stored offsets of %s stayed at %lld", group, got);
		usleep(10000);
	}
	return got;
}

static bool log_has(const char *path, const char *needle)
{
	char line[8192];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* Counts the lines of the log at path that contain needle. */
static int log_count(const char *path, const char *needle)
{
	char line[8192];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static void wait_log(const char *path, const char *needle, int count, int timeout_ms)
{
	int64_t until = mono_ms() + timeout_ms;

	while (log_count(path, needle) < count) {
		if (mono_ms() > until)
			fail_msg("the log %s did not show \"%s\" %d times within %d ms", path,
			         needle, count, timeout_ms);
		usleep(50000);
	}
}

static void temp_log(char *path)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
}

static bool running(pid_t pid)
{
	int status;

	return waitpid(pid, &status, WNOHANG) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dead letters of topic as sorted "topic/partition/offset" keys (duplicates kept). */
static size_t dlq_keys(struct world *w, const char *topic, char ***out)
{
	struct fx_record *r = NULL;
	size_t n = fx_read_topic(&w->k, topic, &r);
	char **keys = calloc(n ? n : 1, sizeof(*keys));

	for (size_t i = 0; i < n; i++) {
		char key[256];

		assert_non_null(r[i].header[0]);
		assert_non_null(r[i].header[1]);
		assert_non_null(r[i].header[2]);
		assert_non_null(r[i].header[3]);
		assert_non_null(r[i].header[4]);
		snprintf(key, sizeof(key), "%s/%s/%s", r[i].header[0], r[i].header[1],
		         r[i].header[2]);
		keys[i] = strdup(key);
	}
	qsort(keys, n, sizeof(*keys), cmp_str);
	fx_records_free(r, n);
	*out = keys;
	return n;
}

static void keys_free(char **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

/*
 * Runs pg_ctl <action> on the cluster of pg_virtualenv, as the owner of its
 * data directory. pg_ctl, not pg_ctlcluster: the latter decides whether a
 * cluster runs from a pid file that every concurrent "15/regress" shares.
 */
static void pg_cluster(struct world *w, const char *action)
{
	const char *version = getenv("PGVERSION");
	char cmd[2048], data[256] = "", user[64] = "";
	struct stat st;
	FILE *p;
	int rc;

	if (version == NULL)
		fail_msg("PGVERSION is not set: run the test under pg_virtualenv -v 15");
	snprintf(cmd, sizeof(cmd), "pg_conftool -s %s regress show data_directory", version);
	p = popen(cmd, "r");
	if (p == NULL || fgets(data, sizeof(data), p) == NULL)
		fail_msg("%s: no answer", cmd);
	pclose(p);
	data[strcspn(data, "\n")] = '\0';
	if (stat(data, &st) != 0)
		fail_msg("data directory \"%s\": %s", data, strerror(errno));
	if (geteuid() == 0 && st.st_uid != 0) {
		struct passwd *pw = getpwuid(st.st_uid);

		assert_non_null(pw);
		snprintf(user, sizeof(user), "runuser -u %s -- ", pw->pw_name);
	}
	PQfinish(w->conn);
	w->conn = NULL;
	/* Fast: every session ends, as in a failover or an upgrade. The server log
	 * goes to a file: an inherited stderr would keep ctest waiting. */
	/* Debian keeps the configuration apart from the data, as pg_ctlcluster says. */
	snprintf(cmd, sizeof(cmd),
	         "%s/usr/lib/postgresql/%s/bin/pg_ctl -D '%s' -l '%s/fc-test.log' -m fast -w "
	         "-t 120 -o '-c config_file=%s/%s/regress/postgresql.conf' %s >&2",
	         user, version, data, data,
	         getenv("PG_CLUSTER_CONF_ROOT") ? getenv("PG_CLUSTER_CONF_ROOT")
	                                        : "/etc/postgresql",
	         version, action);
	rc = system(cmd);
	if (rc != 0)
		fail_msg("%s: exit status %d", cmd, rc);
}

/* Connects again after the cluster came back (it may still be starting). */
static void pg_reconnect(struct world *w)
{
	int64_t until = mono_ms() + 60000;

	for (;;) {
		PGconn *conn = PQconnectdb("");

		if (PQstatus(conn) == CONNECTION_OK) {
			PQfinish(conn);
			break;
		}
		PQfinish(conn);
		if (mono_ms() > until)
			fail_msg("postgresql did not come back within 60 s");
		usleep(100000);
	}
	w->conn = harness_pg_connect();
}

static void assert_exact(struct world *w, const char *schema, const char *group)
{
	assert_int_equal(harness_stored_offsets(w->conn, schema, group), w->gen.messages);
	assert_int_equal(harness_ledger_rows(w->conn, schema), w->gen.events);
	assert_int_equal(fx_schema_diff(w->conn, w->ref, schema), 0);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	const char *const ref_flags[] = {"--topic.dlq=feedback.dlq.ref", NULL};

	w->conn = harness_pg_connect();
	fx_kafka_start(&w->k, PARTITIONS);
	/* 20000 events, 1 % re-sent, 0.2 % malformed. */
	fx_feedgen(&w->k, "--count 20000 --duplicates 1 --malformed 0.2 --seed 33 --agents 40",
	           &w->gen);
	assert_int_equal(w->gen.events, 20000);
	assert_int_equal(w->gen.duplicates, 200);
	assert_int_equal(w->gen.malformed, 40);
	assert_int_equal(w->gen.messages, 20000 + 200 + 40);

	w->ref = harness_fresh_schema(w->conn, "fc_fref");
	fx_migrate(w->conn, w->ref);
	pid_t pid = track(fx_consumer_start(&w->k, w->ref, "g-ref", ref_flags));
	fx_wait_offsets(w->conn, w->ref, "g-ref", w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_int_equal(harness_ledger_rows(w->conn, w->ref), w->gen.events);
	/* One dead letter per malformed message, none twice. */
	w->n_ref_dlq = dlq_keys(w, "feedback.dlq.ref", &w->ref_dlq);
	assert_int_equal(w->n_ref_dlq, 40);
	for (size_t i = 1; i < w->n_ref_dlq; i++)
		assert_string_not_equal(w->ref_dlq[i - 1], w->ref_dlq[i]);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	if (w == NULL)
		return 0;
	for (size_t i = 0; i < n_children; i++)
		if (kill(children[i], 0) == 0 && waitpid(children[i], NULL, WNOHANG) == 0) {
			kill(children[i], SIGCONT);
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
		}
	if (w->conn == NULL) {
		/* A test failed while the cluster was down. */
		pg_cluster(w, "start");
		pg_reconnect(w);
	}
	harness_drop_schema(w->conn, w->ref);
	free(w->ref);
	keys_free(w->ref_dlq, w->n_ref_dlq);
	fx_kafka_stop(&w->k);
	PQfinish(w->conn);
	free(w);
	return 0;
}

/*
 * Migrates schema, starts a consumer of group logging to a new temporary
 * log, and returns once it has committed a tenth of the messages, not all.
 */
static pid_t start_mid_stream(struct world *w, const char *schema, const char *group,
                              const char *const *extra, char *log)
{
	temp_log(log);
	fx_migrate(w->conn, schema);
	pid_t pid = track(fx_consumer_start_logged(&w->k, schema, group, extra, log));
	long long before = wait_offsets_above(w->conn, schema, group, w->gen.messages / 10, 120000);

	assert_true(before < w->gen.messages);
	return pid;
}

static void test_postgres_restart_mid_stream(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_pgr");
	char log[] = "/tmp/fc-pgr-XXXXXX";
	/* Small batches, many transactions: the restart lands in the middle. */
	const char *const extra[] = {"--batch.max.events=20", "--database.retry.max=1s", NULL};
	pid_t pid = start_mid_stream(w, schema, "g-pgr", extra, log);
	pg_cluster(w, "restart");
	pg_reconnect(w);
	fx_wait_offsets(w->conn, schema, "g-pgr", w->gen.messages, 180000);
	assert_true(running(pid));
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	/* It saw the restart and retried, rather than finishing before it. */
	assert_true(log_has(log, "retrying"));
	assert_exact(w, schema, "g-pgr");
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

static void test_postgres_down_at_start(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_pgd");
	char log[] = "/tmp/fc-pgd-XXXXXX";
	const char *const extra[] = {"--database.retry.max=1s", NULL};

	temp_log(log);
	fx_migrate(w->conn, schema);
	pg_cluster(w, "stop");
	pid_t pid = track(fx_consumer_start_logged(&w->k, schema, "g-pgd", extra, log));
	/* Two attempts refused: it keeps trying instead of giving up. */
	wait_log(log, "cannot connect to postgresql", 2, 60000);
	assert_true(running(pid));
	pg_cluster(w, "start");
	pg_reconnect(w);
	fx_wait_offsets(w->conn, schema, "g-pgd", w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_exact(w, schema, "g-pgd");
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/* One valid CSAT event of feedback.sms, partition 0, with id id, acknowledged. */
static void produce_one(struct fx_kafka *k, const char *id)
{
	fx_produce_csat(k, fx_topics[0], 0, id);
	fx_flush(k);
}

/*
 * The probes follow what happens, not what last happened: a transaction
 * stuck on a lock stalls the loop and /healthz fails until it moves again;
 * PostgreSQL going away while the consumer is idle makes /readyz fail
 * (while /healthz stays up: a restart would not bring the database back),
 * and its return makes it ready again without any new message.
 */
static void test_probes_follow_postgres(void **state)
{
	struct world *w = *state;
	struct fx_kafka k;
	char *schema = harness_fresh_schema(w->conn, "fc_prb");
	char log[] = "/tmp/fc-prb-XXXXXX", a_port[32], lock[256];
	int port = fx_free_port();
	const char *const extra[] = {a_port, "--database.check.interval=300ms",
	                             "--database.retry.max=1s", "--http.liveness.timeout=1s", NULL};
	struct fx_http_reply r;
	PGconn *locker = NULL;

	snprintf(a_port, sizeof(a_port), "--http.port=%d", port);
	temp_log(log);
	fx_migrate(w->conn, schema);
	fx_kafka_start(&k, 1);
	pid_t pid = track(fx_consumer_start_logged(&k, schema, "g-prb", extra, log));
	produce_one(&k, "prb-1");
	fx_wait_offsets(w->conn, schema, "g-prb", 1, 60000);
	fx_wait_status(port, "/readyz", 200, 30000);
	assert_int_equal(fx_http_status(port, "/healthz"), 200);

	/* The next batch waits for a lock the test holds: no progress. */
	locker = harness_pg_connect();
	snprintf(lock, sizeof(lock), "BEGIN; LOCK TABLE \"%s\".consumer_offsets IN EXCLUSIVE MODE",
	         schema);
	harness_exec(locker, lock);
	produce_one(&k, "prb-2");
	fx_wait_status(port, "/healthz", 503, 30000);
	r = fx_http_request(port, "GET", "/healthz");
	assert_non_null(strstr(r.body, "no progress"));
	free(r.body);
	harness_exec(locker, "ROLLBACK");
	PQfinish(locker);
	fx_wait_offsets(w->conn, schema, "g-prb", 2, 30000);
	fx_wait_status(port, "/healthz", 200, 10000);
	assert_int_equal(fx_http_status(port, "/readyz"), 200);

	/* Idle, and the database goes away: not ready, still alive. */
	pg_cluster(w, "stop");
	fx_wait_status(port, "/readyz", 503, 30000);
	assert_int_equal(fx_http_status(port, "/healthz"), 200);
	assert_true(log_has(log, "not ready until postgresql answers"));
	pg_cluster(w, "start");
	pg_reconnect(w);
	fx_wait_status(port, "/readyz", 200, 30000);
	assert_true(log_has(log, "connected to postgresql again"));
	produce_one(&k, "prb-3");
	fx_wait_offsets(w->conn, schema, "g-prb", 3, 60000);
	assert_int_equal(harness_ledger_rows(w->conn, schema), 3);

	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	unlink(log);
	fx_teardown(&k, w->conn, schema);
}

/* A stop signal with a backlog: exit 0 at once, and a restart finishes the work. */
static void stop_with_backlog(struct world *w, int sig, const char *group)
{
	char *schema = harness_fresh_schema(w->conn, "fc_sig");
	const char *const extra[] = {"--batch.max.events=50", NULL};
	long long at_stop;
	int64_t t0;
	int rc;

	fx_migrate(w->conn, schema);
	pid_t pid = track(fx_consumer_start(&w->k, schema, group, extra));
	wait_offsets_above(w->conn, schema, group, 0, 120000);
	t0 = mono_ms();
	rc = fx_consumer_stop(pid, sig, 10000);
	print_message("signal %d: exit %d after %lld ms\n", sig, rc, (long long)(mono_ms() - t0));
	/* -1 would mean it did not exit within 10 s. */
	assert_int_equal(rc, 0);
	at_stop = harness_stored_offsets(w->conn, schema, group);
	assert_true(at_stop > 0);
	assert_true(at_stop < w->gen.messages);

	/* It left the group: the next consumer gets the partitions and resumes. */
	pid = track(fx_consumer_start(&w->k, schema, group, NULL));
	fx_wait_offsets(w->conn, schema, group, w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_exact(w, schema, group);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

static void test_sigterm_with_backlog(void **state)
{
	stop_with_backlog(*state, SIGTERM, "g-term");
}

static void test_sigint_with_backlog(void **state)
{
	stop_with_backlog(*state, SIGINT, "g-int");
}

/*
 * Kafka stops answering mid-stream (every response delayed 10 minutes), then
 * a stop signal: the consumer can neither leave its group nor commit to
 * Kafka, and librdkafka would wait for the coordinator far beyond any grace
 * period. What counts is already in PostgreSQL, so it exits on its own after
 * shutdown.timeout; a second signal exits at once. Returns the elapsed ms
 * from the first signal to the exit, and the exit status in *rc.
 */
static int64_t stop_with_kafka_silent(struct world *w, const char *group, bool twice,
                                      const char *log, int *rc)
{
	struct fx_kafka k;
	struct fx_gen gen;
	char *schema = harness_fresh_schema(w->conn, "fc_silent");
	const char *const extra[] = {"--batch.max.events=50", "--shutdown.timeout=3s", NULL};
	int64_t t0, ms;

	fx_kafka_start(&k, 4);
	fx_feedgen(&k, "--count 5000 --seed 5", &gen);
	assert_int_equal(gen.events, 5000);
	fx_migrate(w->conn, schema);
	pid_t pid = track(fx_consumer_start_logged(&k, schema, group, extra, log));
	wait_offsets_above(w->conn, schema, group, 0, 120000);
	assert_int_equal(rd_kafka_mock_broker_set_rtt(mockcluster_handle(k.mc), 1, 600000),
	                 RD_KAFKA_RESP_ERR_NO_ERROR);
	t0 = mono_ms();
	if (twice) {
		assert_int_equal(kill(pid, SIGTERM), 0);
		usleep(300 * 1000);
	}
	*rc = fx_consumer_stop(pid, SIGTERM, 30000);
	ms = mono_ms() - t0;
	fx_teardown(&k, w->conn, schema);
	return ms;
}

static void test_sigterm_with_kafka_silent(void **state)
{
	char log[] = "/tmp/fc-silent-XXXXXX";
	int rc;

	temp_log(log);
	int64_t ms = stop_with_kafka_silent(*state, "g-silent", false, log, &rc);
	print_message("exit %d %lld ms after SIGTERM\n", rc, (long long)ms);
	assert_int_equal(rc, 0);
	/* shutdown.timeout is 3 s; 10 s leaves room for a slow machine. */
	assert_in_range(ms, 3000, 10000);
	assert_true(log_has(log, "shutdown did not finish within shutdown.timeout (3000 ms)"));
	unlink(log);
}

static void test_second_signal_exits_at_once(void **state)
{
	char log[] = "/tmp/fc-twice-XXXXXX";
	int rc;

	temp_log(log);
	int64_t ms = stop_with_kafka_silent(*state, "g-twice", true, log, &rc);
	print_message("exit %d %lld ms after the first SIGTERM\n", rc, (long long)ms);
	assert_int_equal(rc, 1);
	assert_in_range(ms, 300, 2999);
	assert_true(log_has(log, "second stop signal"));
	assert_false(log_has(log, "shutdown did not finish"));
	unlink(log);
}

/* Runs FC_BIN with args and env; returns the exit status and the elapsed time. */
static int run_bin(const char *const *args, const char *env, const char *log, int64_t *ms)
{
	const char *bin = getenv("FC_BIN");
	char *argv[16];
	int n = 0, status;
	int64_t t0 = mono_ms();
	pid_t pid;

	assert_non_null(bin);
	argv[n++] = (char *)bin;
	for (; *args && n < 15; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_TRUNC);

		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (env)
			putenv((char *)env);
		execv(bin, argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	*ms = mono_ms() - t0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * A bad value stops the process with code 2 and names the key, before
 * anything connects: kafka and postgresql point at closed ports, where a
 * connection attempt would log and retry instead of returning.
 */
static void test_bad_configuration(void **state)
{
	static const struct {
		const char *flag, *env, *key;
	} cases[] = {
	    {"--batch.max.events=lots", NULL, "batch.max.events"},
	    {"--batch.max.events=0", NULL, "batch.max.events"},
	    {"--batch.linger=soon", NULL, "batch.linger"},
	    {"--offset.reset=middle", NULL, "offset.reset"},
	    {NULL, "FEEDBACK_DATABASE_RETRY_MAX=forever", "database.retry.max"},
	    {"--no.such.setting=1", NULL, "no.such.setting"},
	    {"--kafka.group.id=", NULL, "kafka.group.id"},
	    /* what librdkafka checks only as a client starts */
	    {"--kafka.message.max.bytes=5000000", "FEEDBACK_KAFKA_FETCH_MAX_BYTES=4194304",
	     "`fetch.max.bytes` must be >= `message.max.bytes`"},
	    {"--kafka.ssl.ca.location=/nonexistent/ca.crt", "FEEDBACK_KAFKA_SECURITY_PROTOCOL=ssl",
	     "ssl.ca.location failed"},
	};
	char log[] = "/tmp/fc-cfg-XXXXXX";

	(void)state;
	temp_log(log);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[] = {"run",
		                      "--kafka.bootstrap.servers=127.0.0.1:1",
		                      "--database.url=host=127.0.0.1 port=1 connect_timeout=30",
		                      "--log.format=text",
		                      cases[i].flag,
		                      NULL};
		int64_t ms;
		int rc = run_bin(args, cases[i].env, log, &ms);

		if (rc != 2)
			fail_msg("%s: exit code %d, expected 2", cases[i].key, rc);
		if (!log_has(log, cases[i].key))
			fail_msg("the error for %s does not name the key", cases[i].key);
		assert_false(log_has(log, "connect"));
		print_message("%s: exit 2 after %lld ms\n", cases[i].key, (long long)ms);
	}
	unlink(log);
}

enum { CSAT = 1, NPS = 2 };

/*
 * ledger refuses the event id poison-1. Six messages on feedback.sms/0
 * (bucket 2026-11-20 10:00 UTC), all in one batch:
 *   @0 ok-1 CSAT 5 of 1-5   satisfied
 *   @1 poison-1 CSAT 1      refused: dead letter, counts nothing
 *   @2 ok-2 CSAT 4          satisfied (4 > 5 - 2)
 *   @3 ok-3 NPS 10          promoter
 *   @4 ok-4 CSAT 2          not satisfied, negative
 *   @5 poison-1 again       a producer's re-send: a repeat of a refused
 *                           event, dead-lettered too, not a duplicate
 * Expected: csat_n 3, satisfied 2, nps_n 1, promoters 1, negative 1;
 * ledger 4 rows; stored offset 6; dead letters of offsets 1 and 5.
 */
static void test_database_rejects_one_row(void **state)
{
	struct world *w = *state;
	static const struct fx_event events[] = {
	    {.id = "ok-1",
	     .at = "2026-11-20T10:00:00",
	     .r = {{CSAT, 5, 0, 0, false}},
	     .n_ratings = 1},
	    {.id = "poison-1",
	     .at = "2026-11-20T10:01:00",
	     .r = {{CSAT, 1, 0, 0, false}},
	     .n_ratings = 1},
	    {.id = "ok-2",
	     .at = "2026-11-20T10:02:00",
	     .r = {{CSAT, 4, 0, 0, false}},
	     .n_ratings = 1},
	    {.id = "ok-3",
	     .at = "2026-11-20T10:03:00",
	     .r = {{NPS, 10, 0, 0, false}},
	     .n_ratings = 1},
	    {.id = "ok-4",
	     .at = "2026-11-20T10:04:00",
	     .r = {{CSAT, 2, 0, 0, false}},
	     .n_ratings = 1},
	};
	struct fx_kafka k;
	char *schema = harness_fresh_schema(w->conn, "fc_poison");
	const char *const extra[] = {"--topic.dlq=feedback.dlq", NULL};
	uint8_t poison[512];
	size_t poison_len = 0;
	struct fx_record *r = NULL;
	char sql[512];
	size_t n;

	fx_kafka_start(&k, 1);
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		uint8_t buf[512];
		size_t len = fx_pack(&events[i], buf, sizeof(buf));

		if (i == 1) {
			memcpy(poison, buf, len);
			poison_len = len;
		}
		fx_produce(&k, "feedback.sms", 0, events[i].id, buf, len);
	}
	fx_produce(&k, "feedback.sms", 0, "poison-1", poison, poison_len);
	fx_flush(&k);
	fx_migrate(w->conn, schema);
	snprintf(
	    sql, sizeof(sql),
	    "ALTER TABLE \"%s\".ledger ADD CONSTRAINT no_poison CHECK (event_id <> 'poison-1')",
	    schema);
	harness_exec(w->conn, sql);

	pid_t pid = track(fx_consumer_start(&k, schema, "g-poison", extra));
	fx_wait_offsets(w->conn, schema, "g-poison", 6, 120000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);

	snprintf(sql, sizeof(sql),
	         "SELECT format('%%s %%s csat %%s/%%s nps %%s+%%s negative %%s', "
	         "to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), channel, csat_n, "
	         "csat_satisfied, nps_n, nps_promoters, negative) FROM \"%s\".channel_kpi",
	         schema);
	char *figures = harness_query_text(w->conn, sql);
	assert_string_equal(figures, "2026-11-20 10:00 sms csat 3/2 nps 1+1 negative 1");
	free(figures);
	snprintf(sql, sizeof(sql),
	         "SELECT string_agg(event_id, ' ' ORDER BY event_id) FROM \"%s\".ledger", schema);
	char *ids = harness_query_text(w->conn, sql);
	assert_string_equal(ids, "ok-1 ok-2 ok-3 ok-4");
	free(ids);

	n = fx_read_topic(&k, "feedback.dlq", &r);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(r[i].key, "poison-1");
		assert_int_equal(r[i].len, poison_len);
		assert_memory_equal(r[i].value, poison, poison_len);
		assert_string_equal(r[i].header[0], "feedback.sms");
		assert_string_equal(r[i].header[1], "0");
		assert_string_equal(r[i].header[2], i == 0 ? "1" : "5");
		assert_string_equal(r[i].header[3], "db_rejected");
		assert_non_null(r[i].header[4]);
		/* The message names what PostgreSQL refused. */
		assert_non_null(strstr(r[i].header[4], "no_poison"));
	}
	assert_non_null(strstr(r[1].header[4], "a repeat of the event at offset 1"));
	fx_records_free(r, n);
	fx_teardown(&k, w->conn, schema);
}

/*
 * The dead-letter topic holds every malformed message of the reference run,
 * each at least once, and nothing else.
 */
static void assert_dead_letters(struct world *w, const char *topic)
{
	char **keys = NULL;
	size_t n = dlq_keys(w, topic, &keys), distinct = 0;

	assert_true(n >= w->n_ref_dlq);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(keys[i - 1], keys[i]) == 0)
			continue;
		if (distinct >= w->n_ref_dlq || strcmp(keys[i], w->ref_dlq[distinct]) != 0)
			fail_msg("dead letter %s is not one of the reference run's", keys[i]);
		distinct++;
	}
	assert_int_equal(distinct, w->n_ref_dlq);
	keys_free(keys, n);
}

/*
 * The dead-letter topic refuses the next produce requests: the consumer
 * waits and sends again, skips nothing, and in the end holds every
 * malformed message of the reference run, each at least once.
 */
static void test_dead_letter_topic_not_writable(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_dlqw");
	char log[] = "/tmp/fc-dlqw-XXXXXX";
	const char *const extra[] = {"--topic.dlq=feedback.dlq.blocked", "--batch.max.events=500",
	                             "--recovery.enabled=false", NULL};

	temp_log(log);
	fx_migrate(w->conn, schema);
	/* Produce is API key 0; 8 refusals, then the topic is writable again. */
	rd_kafka_mock_push_request_errors(mockcluster_handle(w->k.mc), 0, 8,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
	                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	pid_t pid = track(fx_consumer_start_logged(&w->k, schema, "g-dlqw", extra, log));
	fx_wait_offsets(w->conn, schema, "g-dlqw", w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	/* It did meet the refusals, and waited. */
	assert_true(log_has(log, "cannot write dead letters"));
	assert_exact(w, schema, "g-dlqw");
	assert_dead_letters(w, "feedback.dlq.blocked");
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/*
 * Every request to the broker takes 700 ms, longer than the commit gate
 * waits for dead letters (500 ms): each batch with a dead letter is rolled
 * back, waits for it, and commits. After three such batches in a row the
 * consumer waits for dead letters before each transaction instead, and
 * says so. Nothing is lost or counted twice either way.
 */
static void test_dead_letters_slow(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_dlqs");
	char log[] = "/tmp/fc-dlqs-XXXXXX";
	const char *const extra[] = {"--topic.dlq=feedback.dlq.slow", "--batch.max.events=2000",
	                             "--recovery.enabled=false", NULL};

	temp_log(log);
	fx_migrate(w->conn, schema);
	rd_kafka_mock_broker_set_rtt(mockcluster_handle(w->k.mc), 1, 700);
	pid_t pid = track(fx_consumer_start_logged(&w->k, schema, "g-dlqs", extra, log));
	fx_wait_offsets(w->conn, schema, "g-dlqs", w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	rd_kafka_mock_broker_set_rtt(mockcluster_handle(w->k.mc), 1, 0);
	assert_true(log_has(log, "dead letters are slow to be acknowledged; the next 100 "
	                         "batches wait for theirs before the transaction"));
	assert_exact(w, schema, "g-dlqs");
	assert_dead_letters(w, "feedback.dlq.slow");
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/* Outbox rows of schema not yet sent, or with trigger_id id only. */
static long long unsent(PGconn *conn, const char *schema, const char *id)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM \"%s\".recovery_outbox WHERE sent_at IS NULL%s%s%s", schema,
	         id ? " AND trigger_id = '" : "", id ? id : "", id ? "'" : "");
	return harness_query_int(conn, sql);
}

static void wait_unsent(PGconn *conn, const char *schema, long long want, int timeout_ms)
{
	int64_t until = mono_ms() + timeout_ms;

	while (unsent(conn, schema, NULL) != want) {
		if (mono_ms() > until)
			fail_msg("%lld triggers unsent after %d ms, not %lld",
			         unsent(conn, schema, NULL), timeout_ms, want);
		usleep(50000);
	}
}

/*
 * The publisher drains a backlog in claims that start after the last row
 * it sent. An outbox row that took its id before all of them and commits
 * after them must still go out: the claims start from the first unsent
 * row again once the backlog is drained.
 */
static void test_late_outbox_row_is_sent(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_late");
	PGconn *late = harness_pg_connect();
	const char *const extra[] = {"--topic.dlq=feedback.dlq.late",
	                             "--topic.recovery=feedback.recovery.late", NULL};
	char sql[1024];

	fx_migrate(w->conn, schema);
	snprintf(sql, sizeof(sql),
	         "BEGIN; INSERT INTO \"%s\".recovery_outbox (trigger_id, event_id, customer_id, "
	         "channel, severity, reasons, repeat_count, suppressed_count, occurred_at, "
	         "detected_at, follow_up_by, payload) VALUES ('late', 'late', 'c-late', 'sms', 1, "
	         "1, 1, 0, now(), now(), now(), '\\x00')",
	         schema);
	harness_exec(late, sql);
	pid_t pid = track(fx_consumer_start(&w->k, schema, "g-late", extra));
	fx_wait_offsets(w->conn, schema, "g-late", w->gen.messages, 180000);
	/* Thousands of triggers (several claims), all sent but the one still uncommitted. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".recovery_outbox", schema);
	assert_true(harness_query_int(w->conn, sql) > 2000);
	wait_unsent(w->conn, schema, 0, 60000);
	harness_exec(late, "COMMIT");
	wait_unsent(w->conn, schema, 0, 10000);
	assert_int_equal(unsent(w->conn, schema, "late"), 0);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	PQfinish(late);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/* Undoes test_postgres_read_only's server setting, however that test ended. */
static int server_writable(void **state)
{
	harness_server_read_only(((struct world *)*state)->conn, false);
	return 0;
}

/*
 * A failover, as the old primary sees it: mid-stream the server stops
 * taking writes. The consumer and the publisher must both leave the
 * session (a retry there would fail for ever), refuse the read-only server
 * when they connect again, and go on once a writable one answers: every
 * event counted once, every trigger sent.
 */
static void test_postgres_read_only(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_ro");
	char log[] = "/tmp/fc-ro-XXXXXX";
	const char *const extra[] = {"--batch.max.events=20", "--database.retry.max=1s",
	                             "--topic.dlq=feedback.dlq.ro",
	                             "--topic.recovery=feedback.recovery.ro", NULL};
	pid_t pid = start_mid_stream(w, schema, "g-ro", extra, log);
	harness_server_read_only(w->conn, true);
	wait_log(log, "(sqlstate 25006)", 1, 30000);
	wait_log(log, "recovery publisher cannot connect to postgresql", 1, 30000);
	/* The consumer's new session and the publisher's, both refused. */
	wait_log(log, "session is read-only", 2, 30000);
	server_writable(state);
	fx_wait_offsets(w->conn, schema, "g-ro", w->gen.messages, 180000);
	wait_unsent(w->conn, schema, 0, 60000);
	assert_true(running(pid));
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_exact(w, schema, "g-ro");
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/*
 * A prefetch queue of 1 KiB, exceeded by every fetch: librdkafka 2.0 then
 * stops fetching for up to a second each time, unless the consumer wakes
 * it. The seeks that wake it must neither skip a message nor read one
 * twice: every message is taken exactly once, with no rebalance.
 */
static void test_fetcher_woken(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_wake");
	char log[] = "/tmp/fc-wake-XXXXXX";
	const char *const extra[] = {"--topic.dlq=feedback.dlq.wake",
	                             "--kafka.queued.max.messages.kbytes=1", NULL};

	temp_log(log);
	fx_migrate(w->conn, schema);
	pid_t pid = track(fx_consumer_start_logged(&w->k, schema, "g-wake", extra, log));
	fx_wait_offsets(w->conn, schema, "g-wake", w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_true(fx_log_counter(log, "fetch_wakeups", -1) > 0);
	assert_int_equal(fx_log_counter(log, "consumed", -1), w->gen.messages);
	assert_int_equal(log_count(log, "assigned "), 1);
	assert_exact(w, schema, "g-wake");
	assert_dead_letters(w, "feedback.dlq.wake");
	unlink(log);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/*
 * A is paused (SIGSTOP) holding a batch it has read but not written, long
 * enough for the group to give its partitions to B; B finishes everything.
 * Resumed, A's transaction must fail the compare and set of the stored
 * offsets and roll back.
 */
static void test_stale_replica(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_stale");
	char log_a[] = "/tmp/fc-stale-a-XXXXXX", log_b[] = "/tmp/fc-stale-b-XXXXXX";
	/* A holds everything it reads in one batch for up to 60 s. */
	const char *const slow[] = {"--batch.max.events=100000", "--batch.linger=60s", NULL};

	temp_log(log_a);
	temp_log(log_b);
	fx_migrate(w->conn, schema);
	pid_t a = track(fx_consumer_start_logged(&w->k, schema, "g-stale", slow, log_a));
	wait_log(log_a, "assigned", 1, 60000);
	/* Time to read the backlog into its batch; the checks below do not depend on it. */
	usleep(5000000);
	assert_int_equal(kill(a, SIGSTOP), 0);
	pid_t b = track(fx_consumer_start_logged(&w->k, schema, "g-stale", NULL, log_b));
	fx_wait_offsets(w->conn, schema, "g-stale", w->gen.messages, 180000);
	assert_int_equal(kill(a, SIGCONT), 0);
	wait_log(log_a, "another consumer owns them", 1, 120000);
	assert_int_equal(fx_consumer_stop(a, SIGTERM, 30000), 0);
	assert_int_equal(fx_consumer_stop(b, SIGTERM, 30000), 0);
	assert_exact(w, schema, "g-stale");
	unlink(log_a);
	unlink(log_b);
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/*
 * offset.reset=latest, and a batch that fails the compare and set: its
 * partitions are read again from the stored offsets, and one with none
 * stored yet from where this consumer began to read it, not from the end
 * of its log again, which would skip the messages of the failed batch.
 * Q (sms/0) is stored at 0, P (sms/1) has nothing stored. Once Q@0 is
 * committed, "another member" moves Q on to 2; the batch of P@0-2 and Q@1
 * then fails on Q, and P's three events must still be counted.
 */
static void test_resync_without_stored_offset(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_latest");
	char log[] = "/tmp/fc-latest-XXXXXX";
	const char *const latest[] = {"--offset.reset=latest", "--batch.linger=2s", NULL};
	char sql[512];
	struct fx_kafka k;

	temp_log(log);
	fx_migrate(w->conn, schema);
	fx_kafka_start(&k, 2);
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".consumer_offsets (group_id, topic, partition, next_offset) "
	         "VALUES ('g-latest', '%s', 0, 0)",
	         schema, fx_topics[0]);
	harness_exec(w->conn, sql);
	pid_t pid = track(fx_consumer_start_logged(&k, schema, "g-latest", latest, log));
	wait_log(log, "assigned", 1, 60000);
	/* Committed, Q@0 shows the consumer positioned: P at its end, offset 0. */
	fx_produce_csat(&k, fx_topics[0], 0, "q-0");
	fx_flush(&k);
	fx_wait_offsets(w->conn, schema, "g-latest", 1, 60000);
	snprintf(sql, sizeof(sql),
	         "UPDATE \"%s\".consumer_offsets SET next_offset = 2 WHERE group_id = 'g-latest' "
	         "AND topic = '%s' AND partition = 0",
	         schema, fx_topics[0]);
	harness_exec(w->conn, sql);
	fx_produce_csat(&k, fx_topics[0], 1, "p-0");
	fx_produce_csat(&k, fx_topics[0], 1, "p-1");
	fx_produce_csat(&k, fx_topics[0], 1, "p-2");
	fx_produce_csat(&k, fx_topics[0], 0, "q-1");
	fx_flush(&k);
	/* Q stays at 2, P reaches 3. */
	fx_wait_offsets(w->conn, schema, "g-latest", 5, 60000);
	/* The batch held both partitions and failed on Q. */
	assert_int_equal(log_count(log, "stored offsets of 1 of 2 partitions moved on"), 1);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	/* q-0 and P's three; q-1 was the other member's. */
	snprintf(sql, sizeof(sql),
	         "SELECT string_agg(event_id, ' ' ORDER BY event_id) FROM \"%s\".ledger", schema);
	char *ids = harness_query_text(w->conn, sql);
	assert_string_equal(ids, "p-0 p-1 p-2 q-0");
	free(ids);
	unlink(log);
	fx_teardown(&k, w->conn, schema);
}

/*
 * Stored offsets past the end of every partition (a topic recreated, or
 * retention beyond the stored position): the consumer resumes at the
 * start of the log, not at its end, and counts everything once.
 */
static void test_stored_offset_out_of_range(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_oor");
	char sql[512];

	fx_migrate(w->conn, schema);
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".consumer_offsets (group_id, topic, partition, next_offset) "
	         "SELECT 'g-oor', t, p, 10000000 FROM unnest(array['%s', '%s', '%s', '%s']) t, "
	         "generate_series(0, %d) p",
	         schema, fx_topics[0], fx_topics[1], fx_topics[2], fx_topics[3], PARTITIONS - 1);
	harness_exec(w->conn, sql);
	assert_int_equal(harness_stored_offsets(w->conn, schema, "g-oor"),
	                 4LL * PARTITIONS * 10000000);
	pid_t pid = track(fx_consumer_start(&w->k, schema, "g-oor", NULL));
	fx_wait_offsets(w->conn, schema, "g-oor", w->gen.messages, 180000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_exact(w, schema, "g-oor");
	harness_drop_schema(w->conn, schema);
	free(schema);
}

/*
 * A newer build migrated the schema while this one runs (a rolling
 * upgrade). A migration that keeps older builds running lets it go on;
 * any other stops it at its next batch without committing it, and
 * restarted, it refuses the schema before it consumes anything.
 */
static void test_newer_schema(void **state)
{
	struct world *w = *state;
	char *schema = harness_fresh_schema(w->conn, "fc_newer");
	struct fx_kafka k;
	char log_path[] = "/tmp/fc-newer-XXXXXX", sql[256], want[128];
	const int newest = fc_migrations[fc_migrations_count - 1].version;

	temp_log(log_path);
	fx_migrate(w->conn, schema);
	fx_kafka_start(&k, 1);
	produce_one(&k, "nv-1");
	pid_t pid = track(fx_consumer_start_logged(&k, schema, "g-nv", NULL, log_path));
	fx_wait_offsets(w->conn, schema, "g-nv", 1, 60000);
	/* One that keeps older builds running: this one goes on. */
	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".schema_migrations (version, name, older_builds_run) "
	         "VALUES (%d, 'additive', true)",
	         schema, newest + 1);
	harness_exec(w->conn, sql);
	produce_one(&k, "nv-2");
	fx_wait_offsets(w->conn, schema, "g-nv", 2, 60000);
	assert_int_equal(harness_ledger_rows(w->conn, schema), 2);

	snprintf(sql, sizeof(sql),
	         "INSERT INTO \"%s\".schema_migrations (version, name) VALUES (%d, 'newer')",
	         schema, newest + 2);
	harness_exec(w->conn, sql);
	produce_one(&k, "nv-3");
	assert_int_equal(fx_consumer_stop(pid, 0, 60000), 1);
	snprintf(want, sizeof(want), "is at version %d, newer than this build's %d", newest + 2,
	         newest);
	assert_int_equal(log_count(log_path, want), 1);
	assert_int_equal(harness_stored_offsets(w->conn, schema, "g-nv"), 2);
	assert_int_equal(harness_ledger_rows(w->conn, schema), 2);

	pid = track(fx_consumer_start_logged(&k, schema, "g-nv", NULL, log_path));
	assert_int_equal(fx_consumer_stop(pid, 0, 60000), 1);
	assert_int_equal(log_count(log_path, want), 1); /* a new log */
	assert_int_equal(harness_stored_offsets(w->conn, schema, "g-nv"), 2);
	assert_int_equal(harness_ledger_rows(w->conn, schema), 2);

	/* Started on a schema whose newer migration keeps older builds running: it runs. */
	snprintf(sql, sizeof(sql), "DELETE FROM \"%s\".schema_migrations WHERE version = %d",
	         schema, newest + 2);
	harness_exec(w->conn, sql);
	pid = track(fx_consumer_start_logged(&k, schema, "g-nv", NULL, log_path));
	fx_wait_offsets(w->conn, schema, "g-nv", 3, 60000);
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 30000), 0);
	assert_int_equal(harness_ledger_rows(w->conn, schema), 3);
	unlink(log_path);
	fx_teardown(&k, w->conn, schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_configuration),
	    cmocka_unit_test(test_database_rejects_one_row),
	    cmocka_unit_test(test_sigterm_with_backlog),
	    cmocka_unit_test(test_sigint_with_backlog),
	    cmocka_unit_test(test_sigterm_with_kafka_silent),
	    cmocka_unit_test(test_second_signal_exits_at_once),
	    cmocka_unit_test(test_dead_letter_topic_not_writable),
	    cmocka_unit_test(test_dead_letters_slow),
	    cmocka_unit_test(test_stale_replica),
	    cmocka_unit_test(test_resync_without_stored_offset),
	    cmocka_unit_test(test_stored_offset_out_of_range),
	    cmocka_unit_test(test_newer_schema),
	    cmocka_unit_test(test_fetcher_woken),
	    cmocka_unit_test(test_late_outbox_row_is_sent),
	    cmocka_unit_test(test_postgres_restart_mid_stream),
	    cmocka_unit_test(test_postgres_down_at_start),
	    cmocka_unit_test_teardown(test_postgres_read_only, server_writable),
	    cmocka_unit_test(test_probes_follow_postgres),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
