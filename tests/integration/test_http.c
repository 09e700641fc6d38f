/*
 * The operations endpoint of the real binary: probes before and after
 * PostgreSQL is reachable, exact counters after a fixed set of messages,
 * the scrape checked by promtool, and a real Prometheus server scraping it.
 */
#include "fixture.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

enum { CSAT = 1 };

/* Children a failed test leaves behind; the teardown kills them. */
static pid_t consumer_pid, second_pid, prometheus_pid;

static int kill_children(void **state)
{
	(void)state;
	if (consumer_pid > 0)
		fx_consumer_stop(consumer_pid, SIGKILL, 10000);
	if (second_pid > 0)
		fx_consumer_stop(second_pid, SIGKILL, 10000);
	if (prometheus_pid > 0) {
		kill(prometheus_pid, SIGKILL);
		waitpid(prometheus_pid, NULL, 0);
	}
	consumer_pid = second_pid = prometheus_pid = 0;
	return 0;
}

/* The value of the sample line "name{labels} value" in a scrape; fails when absent. */
static double sample(const char *text, const char *series)
{
	char needle[512];
	const char *p;

	snprintf(needle, sizeof(needle), "\n%s ", series);
	p = strstr(text, needle);
	if (p == NULL)
		fail_msg("no sample %s in the scrape", series);
	return strtod(p + strlen(needle), NULL);
}

static bool has_sample(const char *text, const char *series)
{
	char needle[512];

	snprintf(needle, sizeof(needle), "\n%s ", series);
	return strstr(text, needle) != NULL;
}

/* A connection from 127.0.0.<host> to port that has sent half a request line. */
static int slow_client(int port, int host)
{
	struct sockaddr_in from = {.sin_family = AF_INET,
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + (uint32_t)host)};
	struct sockaddr_in to = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
	assert_int_equal(write(fd, "GET /he", 7), 7);
	return fd;
}

/* The status of GET /healthz from 127.0.0.<host>, 0 when there is no answer in 5 s. */
static int probe_from(int port, int host)
{
	static const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
	int fd = slow_client(port, host), status = 0;
	char buf[256];
	ssize_t n;
	struct timeval tv = {5, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(write(fd, req + 7, sizeof(req) - 1 - 7), (ssize_t)(sizeof(req) - 1 - 7));
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		sscanf(buf, "HTTP/1.%*d %d", &status);
	}
	close(fd);
	return status;
}

/* Whether the server closed fd within timeout_ms: end of stream, or a reset. */
static bool closed_by_server(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void test_probes_before_postgresql(void **state)
{
	struct fx_kafka k;
	char a_port[64], a_db[128], log_path[] = "/tmp/fc-http-log-XXXXXX";
	int port = fx_free_port(), db_port = fx_free_port(), fd;
	/* librdkafka's configuration dump goes to the log at debug level: never the password. */
	const char *extra[] = {a_port,
	                       a_db,
	                       "--log.level=debug",
	                       "--kafka.debug=conf",
	                       "--kafka.security.protocol=SASL_PLAINTEXT",
	                       "--kafka.sasl.mechanisms=PLAIN",
	                       "--kafka.sasl.username=fc",
	                       "--kafka.sasl.password=pw-Zq81-never-logged",
	                       NULL};
	struct fx_http_reply r;
	char cmd[256];
	pid_t pid;

	(void)state;
	fx_kafka_start(&k, 1);
	snprintf(a_port, sizeof(a_port), "--http.port=%d", port);
	/* Nothing listens there: the consumer waits for postgresql, retrying. */
	snprintf(a_db, sizeof(a_db), "--database.url=postgresql://fc@127.0.0.1:%d/fc", db_port);
	fd = mkstemp(log_path);
	assert_true(fd >= 0);
	close(fd);
	consumer_pid = pid =
	    fx_consumer_start_logged(&k, "fc_unreachable", "g-probe", extra, log_path);
	fx_wait_status(port, "/healthz", 200, 30000);

	r = fx_http_request(port, "GET", "/readyz");
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "not ready"));
	free(r.body);
	/* Waiting out an outage is progress: restarting would not help. */
	assert_int_equal(fx_http_status(port, "/healthz"), 200);

	r = fx_http_request(port, "GET", "/metrics");
	assert_int_equal(r.status, 200);
	assert_true(sample(r.body, "feedback_ready") == 0);
	assert_true(sample(r.body, "feedback_events_total{channel=\"sms\",outcome=\"accepted\"}") ==
	            0);
	free(r.body);

	assert_int_equal(fx_http_status(port, "/"), 404);
	assert_int_equal(fx_http_status(port, "/metrics/x"), 404);

	/*
	 * Slow clients never keep a probe out. Four connections of 127.0.0.1
	 * and four of each of 127.0.0.2 to .8 trickle a request: 32, the most
	 * the server keeps open. A probe from 127.0.0.1 is answered, and the
	 * oldest of that address is closed (four an address at most). Another
	 * slow one from 127.0.0.9 makes 32 again; a probe from 127.0.0.10 is
	 * answered, and the oldest of all is closed.
	 */
	int slow[33];
	for (int i = 0; i < 32; i++) {
		slow[i] = slow_client(port, i < 4 ? 1 : 2 + (i - 4) / 4);
		/* accepted and counted in order: each waits for the one before */
		usleep(20000);
	}
	usleep(200000);
	assert_int_equal(fx_http_status(port, "/healthz"), 200);
	assert_true(closed_by_server(slow[0], 2000));
	slow[32] = slow_client(port, 9);
	usleep(200000);
	assert_int_equal(probe_from(port, 10), 200);
	assert_true(closed_by_server(slow[1], 2000));
	for (int i = 2; i < 33; i++)
		if (closed_by_server(slow[i], 0))
			fail_msg("slow connection %d was closed too", i);
	for (int i = 0; i < 33; i++)
		close(slow[i]);
	r = fx_http_request(port, "POST", "/metrics");
	assert_int_equal(r.status, 405);
	free(r.body);
	r = fx_http_request(port, "HEAD", "/healthz");
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, ""); /* HEAD: headers only */
	free(r.body);

	consumer_pid = 0;
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 10000), 0);
	fx_kafka_stop(&k);

	/* The dump was logged (so the check below can fail), redacted, and no line names the value.
	 */
	snprintf(cmd, sizeof(cmd), "grep -q 'sasl.password = ' '%s'", log_path);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "grep -q 'pw-Zq81-never-logged' '%s'", log_path);
	assert_int_not_equal(system(cmd), 0);
	/* The settings' check before connecting (a client without brokers) says nothing. */
	snprintf(cmd, sizeof(cmd), "grep -q 'No .bootstrap.servers. configured' '%s'", log_path);
	assert_int_not_equal(system(cmd), 0);
	unlink(log_path);
}

/*
 * The fixed set, 11 messages, per channel (topic, partition):
 *   sms:    s1 (0), s2 (1), s1 again (2), "not protobuf" (3)
 *           -> accepted 2, duplicate 1, dead_lettered 1 (decode_error)
 *   email:  m1, a CSAT 1 (0), a CSAT 6 on 1-5 (1)
 *           -> accepted 1, dead_lettered 1 (invalid_score); m1 is the one negative
 *   phone:  p1 (0), p1 again (1), an event saying it is sms (2)
 *           -> accepted 1, duplicate 1, dead_lettered 1 (channel_mismatch)
 *   social: o1 (0), o2 (1) -> accepted 2
 */
static const struct fx_event s1 = {
    .id = "h-sms-1", .at = "2026-11-20T10:00:00", .r = {{CSAT, 5, 0, 0, false}}, .n_ratings = 1};
static const struct fx_event s2 = {
    .id = "h-sms-2", .at = "2026-11-20T10:01:00", .r = {{CSAT, 4, 0, 0, false}}, .n_ratings = 1};
static const struct fx_event m1 = {.id = "h-email-1",
                                   .at = "2026-11-20T10:02:00",
                                   .customer = "cust-neg",
                                   .r = {{CSAT, 1, 0, 0, false}},
                                   .n_ratings = 1};
static const struct fx_event m_bad = {.id = "h-email-bad",
                                      .at = "2026-11-20T10:02:00",
                                      .r = {{CSAT, 6, 0, 0, false}},
                                      .n_ratings = 1};
static const struct fx_event p1 = {.id = "h-phone-1", .at = "2026-11-20T10:03:00", .outcome = 1};
static const struct fx_event p_bad = {
    .id = "h-phone-bad", .at = "2026-11-20T10:03:00", .channel = 1, .outcome = 1};
static const struct fx_event o1 = {
    .id = "h-social-1", .at = "2026-11-20T10:04:00", .r = {{CSAT, 5, 0, 0, false}}, .n_ratings = 1};
static const struct fx_event o2 = {
    .id = "h-social-2", .at = "2026-11-20T10:05:00", .r = {{CSAT, 3, 0, 0, false}}, .n_ratings = 1};

#define FIXED_MESSAGES 11

static void produce_fixed_set(struct fx_kafka *k)
{
	static const struct {
		int topic;
		int32_t partition;
		const struct fx_event *e;
	} set[] = {
	    {0, 0, &s1}, {0, 1, &s2}, {0, 2, &s1},    {1, 0, &m1}, {1, 1, &m_bad},
	    {2, 0, &p1}, {2, 1, &p1}, {2, 2, &p_bad}, {3, 0, &o1}, {3, 1, &o2},
	};
	uint8_t buf[1024];

	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
		size_t len = fx_pack(set[i].e, buf, sizeof(buf));

		fx_produce(k, fx_topics[set[i].topic], set[i].partition, "k", buf, len);
	}
	fx_produce(k, fx_topics[0], 3, "k", "not protobuf", 12);
	fx_flush(k);
}

/* Expected feedback_events_total, by channel and outcome, from the table above. */
static const struct {
	const char *channel, *outcome;
	double value;
} expected_events[] = {
    {"sms", "accepted", 2},    {"sms", "duplicate", 1},    {"sms", "dead_lettered", 1},
    {"email", "accepted", 1},  {"email", "duplicate", 0},  {"email", "dead_lettered", 1},
    {"phone", "accepted", 1},  {"phone", "duplicate", 1},  {"phone", "dead_lettered", 1},
    {"social", "accepted", 2}, {"social", "duplicate", 0}, {"social", "dead_lettered", 0},
};

#define N_EXPECTED (sizeof(expected_events) / sizeof(expected_events[0]))

static void assert_scrape(const char *text)
{
	char series[256];

	for (size_t i = 0; i < N_EXPECTED; i++) {
		snprintf(series, sizeof(series),
		         "feedback_events_total{channel=\"%s\",outcome=\"%s\"}",
		         expected_events[i].channel, expected_events[i].outcome);
		if (sample(text, series) != expected_events[i].value)
			fail_msg("%s is %g, expected %g", series, sample(text, series),
			         expected_events[i].value);
	}
	assert_true(sample(text, "feedback_dead_letters_total{reason=\"decode_error\"}") == 1);
	assert_true(sample(text, "feedback_dead_letters_total{reason=\"invalid_score\"}") == 1);
	assert_true(sample(text, "feedback_dead_letters_total{reason=\"channel_mismatch\"}") == 1);
	assert_true(sample(text, "feedback_dead_letters_total{reason=\"db_rejected\"}") == 0);
	assert_true(sample(text, "feedback_dead_letters_total{reason=\"invalid_scale\"}") == 0);
	/* Every message is in exactly one committed batch, however the batches fell. */
	assert_true(sample(text, "feedback_batch_events_sum") == FIXED_MESSAGES);
	assert_true(sample(text, "feedback_batch_events_count") ==
	            sample(text, "feedback_batches_total"));
	assert_true(sample(text, "feedback_batches_total") >= 1);
	/* At least one transaction per batch. */
	assert_true(sample(text, "feedback_transaction_duration_seconds_count") >=
	            sample(text, "feedback_batches_total"));
	assert_true(sample(text, "feedback_recovery_triggers_queued_total") == 1); /* m1 */
	assert_true(sample(text, "feedback_recovery_suppressed_total") == 0);
	assert_true(sample(text, "feedback_stale_batches_total") == 0);
	assert_true(sample(text, "feedback_ready") == 1);
	assert_true(sample(text, "feedback_rebalances_total") >= 1);
	assert_true(sample(text, "process_resident_memory_bytes") > 0);
	assert_true(sample(text, "process_open_fds") > 0);
}

/* Scrapes until the batch sum reaches the fixed set (counted just after the commit). */
static char *scrape_settled(int port, const char *until_series, double until_value)
{
	for (int waited = 0; waited <= 30000; waited += 100) {
		struct fx_http_reply r = fx_http_request(port, "GET", "/metrics");

		if (r.status == 200 && has_sample(r.body, until_series) &&
		    sample(r.body, until_series) == until_value)
			return r.body;
		free(r.body);
		usleep(100000);
	}
	fail_msg("%s did not reach %g", until_series, until_value);
	return NULL;
}

static void promtool_check(const char *dir, const char *text)
{
	char path[512], cmd[1024], out[4096] = "";
	size_t n = 0;
	FILE *f, *p;
	int status;

	snprintf(path, sizeof(path), "%s/scrape.txt", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	status = pclose(p);
	/* promtool prints one line per problem (naming, units, HELP) and exits non-zero. */
	if (status != 0 || n != 0)
		fail_msg("promtool check metrics (status %d):\n%s", status, out);
}

static pid_t prometheus_start(const char *dir, int target_port, int web_port)
{
	char config[512], storage[512], logp[512], a_config[600], a_storage[600], a_listen[64];
	FILE *f;
	pid_t pid;

	snprintf(config, sizeof(config), "%s/prometheus.yml", dir);
	snprintf(storage, sizeof(storage), "%s/data", dir);
	snprintf(logp, sizeof(logp), "%s/prometheus.log", dir);
	f = fopen(config, "w");
	assert_non_null(f);
	fprintf(f,
	        "global:\n"
	        "  scrape_interval: 1s\n"
	        "  evaluation_interval: 1s\n"
	        "scrape_configs:\n"
	        "  - job_name: feedback\n"
	        "    static_configs:\n"
	        "      - targets: ['127.0.0.1:%d']\n",
	        target_port);
	fclose(f);
	snprintf(a_config, sizeof(a_config), "--config.file=%s", config);
	snprintf(a_storage, sizeof(a_storage), "--storage.tsdb.path=%s", storage);
	snprintf(a_listen, sizeof(a_listen), "--web.listen-address=127.0.0.1:%d", web_port);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execl("/usr/bin/prometheus", "prometheus", a_config, a_storage, a_listen,
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

/*
 * Queries Prometheus for feedback_events_total until every series of the
 * expected table is there with its value; false after timeout_ms.
 */
static bool prometheus_has_counts(int web_port, int timeout_ms, char *last, size_t last_size)
{
	for (int waited = 0; waited <= timeout_ms; waited += 500) {
		struct fx_http_reply r =
		    fx_http_request(web_port, "GET", "/api/v1/query?query=feedback_events_total");
		json_t *root = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
		json_t *result = json_object_get(json_object_get(root, "data"), "result");
		size_t matched = 0, i;
		json_t *item;

		json_array_foreach(result, i, item)
		{
			json_t *metric = json_object_get(item, "metric");
			const char *ch = json_string_value(json_object_get(metric, "channel"));
			const char *out = json_string_value(json_object_get(metric, "outcome"));
			const char *job = json_string_value(json_object_get(metric, "job"));
			const char *v =
			    json_string_value(json_array_get(json_object_get(item, "value"), 1));

			for (size_t e = 0; ch && out && v && job && e < N_EXPECTED; e++)
				if (strcmp(ch, expected_events[e].channel) == 0 &&
				    strcmp(out, expected_events[e].outcome) == 0 &&
				    strcmp(job, "feedback") == 0 &&
				    strtod(v, NULL) == expected_events[e].value)
					matched++;
		}
		snprintf(last, last_size, "status %d, %zu series, %zu as expected: %.300s",
		         r.status, json_array_size(result), matched, r.body ? r.body : "");
		if (json_array_size(result) == N_EXPECTED && matched == N_EXPECTED) {
			json_decref(root);
			free(r.body);
			return true;
		}
		json_decref(root);
		free(r.body);
		usleep(500000);
	}
	return false;
}

static void test_counters_promtool_prometheus(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_http");
	char dir[] = "/tmp/fc-http-XXXXXX", a_port[64], last[512], cmd[600];
	int port = fx_free_port(), web_port;
	const char *extra[] = {a_port, NULL};
	struct fx_kafka k;
	char *text;
	pid_t pid, prom;

	(void)state;
	assert_non_null(mkdtemp(dir));
	fx_migrate(conn, schema);
	fx_kafka_start(&k, 4);
	produce_fixed_set(&k);
	snprintf(a_port, sizeof(a_port), "--http.port=%d", port);
	consumer_pid = pid = fx_consumer_start(&k, schema, "g-http", extra);
	fx_wait_offsets(conn, schema, "g-http", FIXED_MESSAGES, 30000);
	fx_wait_status(port, "/readyz", 200, 30000);
	assert_int_equal(fx_http_status(port, "/healthz"), 200);

	text = scrape_settled(port, "feedback_batch_events_sum", FIXED_MESSAGES);
	assert_scrape(text);
	promtool_check(dir, text);
	free(text);
	/* The publisher sends m1's trigger on its own thread; its counter follows. */
	free(scrape_settled(port, "feedback_recovery_triggers_sent_total", 1));
	/*
	 * librdkafka's statistics (every 5 s) report the lag once offsets are
	 * committed to Kafka: sms/0 holds one message (offset 0) and its
	 * committed offset is 1, so its lag is 1 - 1 = 0; phone/2 likewise.
	 */
	free(scrape_settled(
	    port, "feedback_consumer_lag_messages{topic=\"feedback.sms\",partition=\"0\"}", 0));
	free(scrape_settled(
	    port, "feedback_consumer_lag_messages{topic=\"feedback.phone\",partition=\"2\"}", 0));

	web_port = fx_free_port();
	prometheus_pid = prom = prometheus_start(dir, port, web_port);
	bool ok = prometheus_has_counts(web_port, 60000, last, sizeof(last));
	kill(prom, SIGTERM);
	waitpid(prom, NULL, 0);
	prometheus_pid = 0;
	if (!ok) {
		snprintf(cmd, sizeof(cmd), "tail -20 '%s/prometheus.log' >&2", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "no prometheus log\n");
		fail_msg("prometheus never held the expected counters; last answer: %s", last);
	}

	consumer_pid = 0;
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 10000), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

#define MAX_LAG_SERIES 64

/* The labels of every feedback_consumer_lag_messages series of a scrape; returns how many (0
 * without an answer). */
static size_t lag_series(int port, char labels[][64])
{
	static const char name[] = "\nfeedback_consumer_lag_messages{";
	struct fx_http_reply r = fx_http_request(port, "GET", "/metrics");
	size_t n = 0;

	if (r.status != 200) { /* not listening yet */
		free(r.body);
		return 0;
	}
	for (const char *p = strstr(r.body, name); p && n < MAX_LAG_SERIES;
	     p = strstr(p + 1, name)) {
		const char *start = p + strlen(name), *end = strchr(start, '}');
		assert_non_null(end);
		snprintf(labels[n++], 64, "%.*s", (int)(end - start), start);
	}
	free(r.body);
	return n;
}

/*
 * The lag of a partition is reported by its owner alone. librdkafka's
 * statistics list every partition of the topics; one taken away by a
 * rebalance would keep the lag it had then in the scrape of its former
 * owner, for good, and the group's summed lag would never reach 0.
 */
static void test_lag_of_owned_partitions_only(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_lag");
	char a_port[64], b_port[64], a[MAX_LAG_SERIES][64], b[MAX_LAG_SERIES][64];
	int port_a = fx_free_port(), port_b = fx_free_port();
	const char *extra_a[] = {a_port, "--kafka.statistics.interval.ms=500", NULL};
	const char *extra_b[] = {b_port, "--kafka.statistics.interval.ms=500", NULL};
	struct fx_kafka k;
	size_t na = 0, nb = 0;

	(void)state;
	fx_migrate(conn, schema);
	fx_kafka_start(&k, 4);
	produce_fixed_set(&k);
	snprintf(a_port, sizeof(a_port), "--http.port=%d", port_a);
	snprintf(b_port, sizeof(b_port), "--http.port=%d", port_b);
	consumer_pid = fx_consumer_start(&k, schema, "g-lag", extra_a);
	fx_wait_offsets(conn, schema, "g-lag", FIXED_MESSAGES, 30000);
	/*
	 * The 11 partitions that hold messages, all the first member's: the
	 * others have no committed offset, and no lag.
	 */
	for (int waited = 0; waited < 30000 && na < 11; waited += 100, usleep(100000))
		na = lag_series(port_a, a);
	sleep(1);
	assert_int_equal(lag_series(port_a, a), 11);

	/*
	 * The second member takes some; the set again gives each of the 11 a
	 * message, and its owner a committed offset, hence a lag.
	 */
	second_pid = fx_consumer_start(&k, schema, "g-lag", extra_b);
	fx_wait_status(port_b, "/readyz", 200, 30000);
	produce_fixed_set(&k);
	fx_wait_offsets(conn, schema, "g-lag", 2 * FIXED_MESSAGES, 30000);
	for (int waited = 0; waited < 30000 && nb == 0; waited += 100, usleep(100000))
		nb = lag_series(port_b, b);
	assert_true(nb > 0);
	sleep(2); /* four statistics rounds of each */
	na = lag_series(port_a, a);
	nb = lag_series(port_b, b);
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (strcmp(a[i], b[j]) == 0)
				fail_msg("both members report the lag of {%s}", a[i]);
	assert_int_equal(na + nb, 11);

	pid_t pid_a = consumer_pid, pid_b = second_pid;
	second_pid = consumer_pid = 0;
	assert_int_equal(fx_consumer_stop(pid_b, SIGTERM, 10000), 0);
	assert_int_equal(fx_consumer_stop(pid_a, SIGTERM, 10000), 0);
	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

/*
 * Waiting for dead letters, the loop does not poll Kafka. After
 * max.poll.interval.ms librdkafka leaves the group, and another member
 * gets the partitions; the rebalance callback comes only with the next
 * poll. The member is not ready meanwhile. Here the dead-letter topic
 * refuses 12 writes, about 40 s of backoff; max.poll.interval.ms is 6 s.
 */
static void test_not_ready_while_not_polling(void **state)
{
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_poll");
	char a_port[64];
	int port = fx_free_port();
	const char *extra[] = {a_port, "--kafka.max.poll.interval.ms=6000",
	                       "--recovery.enabled=false", NULL};
	struct fx_kafka k;
	uint8_t buf[1024];
	size_t len;

	(void)state;
	fx_migrate(conn, schema);
	fx_kafka_start(&k, 1);
	len = fx_pack(&s1, buf, sizeof(buf));
	fx_produce(&k, fx_topics[0], 0, "k", buf, len);
	fx_produce(&k, fx_topics[0], 0, "k", "not protobuf", 12);
	fx_flush(&k);
	/* Produce is API key 0. */
	for (int i = 0; i < 12; i++)
		rd_kafka_mock_push_request_errors(mockcluster_handle(k.mc), 0, 1,
		                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	snprintf(a_port, sizeof(a_port), "--http.port=%d", port);
	consumer_pid = fx_consumer_start(&k, schema, "g-poll", extra);
	fx_wait_status(port, "/readyz", 200, 30000);
	/* 6 s without a poll, from the first refusal on: well before the refusals end. */
	fx_wait_status(port, "/readyz", 503, 15000);
	assert_int_equal(fx_http_status(port, "/healthz"), 200);
	/* The topic takes the dead letter at last; the member joins again. */
	fx_wait_offsets(conn, schema, "g-poll", 2, 120000);
	fx_wait_status(port, "/readyz", 200, 60000);

	pid_t pid = consumer_pid;
	consumer_pid = 0;
	assert_int_equal(fx_consumer_stop(pid, SIGTERM, 10000), 0);
	assert_int_equal(harness_ledger_rows(conn, schema), 1);
	fx_teardown(&k, conn, schema);
	PQfinish(conn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_probes_before_postgresql, kill_children),
	    cmocka_unit_test_teardown(test_counters_promtool_prometheus, kill_children),
	    cmocka_unit_test_teardown(test_lag_of_owned_partitions_only, kill_children),
	    cmocka_unit_test_teardown(test_not_ready_while_not_polling, kill_children),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
