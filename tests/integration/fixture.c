#include "fixture.h"

#include "feedback/v1/feedback.pb-c.h"
#include "harness.h"
#include "migrate.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

const char *const fx_topics[6] = {"feedback.sms",    "feedback.email",    "feedback.phone",
                                  "feedback.social", "feedback.recovery", "feedback.dlq"};

static int delivery_failures;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (rkm->err)
		delivery_failures++;
}

void fx_kafka_start(struct fx_kafka *k, int partitions)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	memset(k, 0, sizeof(*k));
	k->mc = mockcluster_new(1, fx_topics, 6, partitions, errstr, sizeof(errstr));
	if (k->mc == NULL)
		fail_msg("mock cluster: %s", errstr);
	k->bootstrap = mockcluster_bootstraps(k->mc);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)))
		fail_msg("producer conf: %s", errstr);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (k->producer == NULL)
		fail_msg("producer: %s", errstr);
}

void fx_kafka_stop(struct fx_kafka *k)
{
	if (k->producer)
		rd_kafka_destroy(k->producer);
	mockcluster_destroy(k->mc);
	memset(k, 0, sizeof(*k));
}

void fx_teardown(struct fx_kafka *k, PGconn *conn, char *schema)
{
	fx_kafka_stop(k);
	harness_drop_schema(conn, schema);
	free(schema);
}

void fx_produce(struct fx_kafka *k, const char *topic, int32_t partition, const char *key,
                const void *value, size_t len)
{
	rd_kafka_resp_err_t err;

	err = rd_kafka_producev(
	    k->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
	    RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, len),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	if (err)
		fail_msg("produce to %s: %s", topic, rd_kafka_err2str(err));
	rd_kafka_poll(k->producer, 0);
}

void fx_flush(struct fx_kafka *k)
{
	if (rd_kafka_flush(k->producer, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		fail_msg("producer flush timed out");
	assert_int_equal(delivery_failures, 0);
}

static Google__Protobuf__Timestamp *parse_time(const char *at, Google__Protobuf__Timestamp *ts)
{
	struct tm tm = {0};
	const char *rest = strptime(at, "%Y-%m-%dT%H:%M:%S", &tm);

	if (rest == NULL)
		fail_msg("bad time \"%s\"", at);
	ts->seconds = timegm(&tm);
	ts->nanos = 0;
	if (*rest == '.') {
		/* ".5" is half a second: the digits scaled to nine. */
		int digits = 0;
		for (rest++; digits < 9 && *rest >= '0' && *rest <= '9'; rest++, digits++)
			ts->nanos = ts->nanos * 10 + (*rest - '0');
		for (; digits < 9; digits++)
			ts->nanos *= 10;
	}
	return ts;
}

size_t fx_pack(const struct fx_event *e, uint8_t *buf, size_t size)
{
	Feedback__V1__FeedbackEvent ev = FEEDBACK__V1__FEEDBACK_EVENT__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Feedback__V1__Rating r[3] = {FEEDBACK__V1__RATING__INIT, FEEDBACK__V1__RATING__INIT,
	                             FEEDBACK__V1__RATING__INIT};
	Feedback__V1__Rating *rp[3] = {&r[0], &r[1], &r[2]};
	Feedback__V1__Contact contact = FEEDBACK__V1__CONTACT__INIT;
	size_t len;

	ev.event_id = (char *)e->id;
	ev.occurred_at = e->at ? parse_time(e->at, &ts) : NULL;
	ev.channel = (Feedback__V1__Channel)e->channel;
	ev.customer_id = (char *)(e->customer ? e->customer : "cust-1");
	if (e->agent)
		ev.agent_id = (char *)e->agent;
	if (e->comment)
		ev.comment = (char *)e->comment;
	for (int i = 0; i < e->n_ratings; i++) {
		r[i].metric = (Feedback__V1__Metric)e->r[i].metric;
		r[i].score = e->r[i].score;
		r[i].scale_min = e->r[i].min;
		r[i].scale_max = e->r[i].max;
		r[i].inverted = e->r[i].inverted;
	}
	ev.n_ratings = (size_t)e->n_ratings;
	ev.ratings = rp;
	if (e->outcome) {
		contact.outcome = (Feedback__V1__ContactOutcome)(e->outcome > 0 ? e->outcome : 0);
		contact.wait_seconds = e->wait;
		contact.handle_seconds = e->handle;
		ev.contact = &contact;
	}
	ev.first_contact_resolution = (Feedback__V1__Resolution)e->fcr;
	len = feedback__v1__feedback_event__get_packed_size(&ev);
	assert_true(len <= size);
	return feedback__v1__feedback_event__pack(&ev, buf);
}

void fx_produce_csat(struct fx_kafka *k, const char *topic, int32_t partition, const char *id)
{
	const struct fx_event e = {
	    .id = id, .at = "2026-11-20T10:00:00", .r = {{1, 5, 0, 0, false}}, .n_ratings = 1};
	uint8_t buf[512];
	size_t len = fx_pack(&e, buf, sizeof(buf));

	fx_produce(k, topic, partition, id, buf, len);
}

pid_t fx_consumer_start(const struct fx_kafka *k, const char *schema, const char *group,
                        const char *const *extra)
{
	return fx_consumer_start_logged(k, schema, group, extra, NULL);
}

pid_t fx_consumer_start_logged(const struct fx_kafka *k, const char *schema, const char *group,
                               const char *const *extra, const char *log_path)
{
	const char *bin = getenv("FC_BIN");
	char *argv[32];
	char a_bootstrap[256], a_schema[128], a_group[128];
	int n = 0;
	pid_t pid;

	if (bin == NULL)
		fail_msg("FC_BIN is not set");
	snprintf(a_bootstrap, sizeof(a_bootstrap), "--kafka.bootstrap.servers=%s", k->bootstrap);
	snprintf(a_schema, sizeof(a_schema), "--database.schema=%s", schema);
	snprintf(a_group, sizeof(a_group), "--kafka.group.id=%s", group);
	argv[n++] = (char *)bin;
	argv[n++] = "run";
	argv[n++] = a_bootstrap;
	argv[n++] = a_schema;
	argv[n++] = a_group;
	argv[n++] = "--batch.linger=50ms";
	argv[n++] = "--log.format=text";
	/* The mock cluster holds a left group for session.timeout.ms - 1 s. */
	argv[n++] = "--kafka.session.timeout.ms=6000";
	/* Consumers run side by side: no fixed HTTP port; a test that scrapes names its own. */
	argv[n++] = "--http.port=0";
	for (; extra && *extra && n < 31; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		if (log_path) {
			int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd >= 0)
				dup2(fd, STDERR_FILENO);
		}
		execv(bin, argv);
		_exit(127);
	}
	return pid;
}

int fx_consumer_stop(pid_t pid, int sig, int timeout_ms)
{
	int status;

	if (sig)
		kill(pid, sig);
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

void fx_wait_offsets(PGconn *conn, const char *schema, const char *group, long long total,
                     int timeout_ms)
{
	char sql[512];
	long long got = -1;

	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(sum(next_offset), 0) FROM \"%s\".consumer_offsets "
	         "WHERE group_id = '%s'",
	         schema, group);
	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		PGresult *res = PQexec(conn, sql);

		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			got = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		if (got == total)
			return;
		usleep(50000);
	}
	fail_msg("stored offsets of group %s reached %lld, expected %lld", group, got, total);
}

static char *header_dup(rd_kafka_headers_t *hdrs, const char *name)
{
	const void *v;
	size_t len;
	char *s;

	if (hdrs == NULL || rd_kafka_header_get_last(hdrs, name, &v, &len))
		return NULL;
	s = malloc(len + 1);
	memcpy(s, v, len);
	s[len] = '\0';
	return s;
}

size_t fx_read_topic(struct fx_kafka *k, const char *topic, struct fx_record **out)
{
	static const char *const names[5] = {
	    "__connect.errors.topic", "__connect.errors.partition", "__connect.errors.offset",
	    "__connect.errors.exception.class.name", "__connect.errors.exception.message"};
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_t *rk;
	size_t n = 0, cap = 16;
	int eofs = 0, parts;
	struct fx_record *r = calloc(cap, sizeof(*r));

	if (rd_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "group.id", "fx-reader", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)))
		fail_msg("reader conf: %s", errstr);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		fail_msg("reader: %s", errstr);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		fail_msg("metadata of %s", topic);
	parts = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	list = rd_kafka_topic_partition_list_new(parts);
	for (int p = 0; p < parts; p++)
		rd_kafka_topic_partition_list_add(list, topic, p)->offset =
		    RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_assign(rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	for (int polls = 0; eofs < parts && polls < 300; polls++) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
		rd_kafka_headers_t *hdrs = NULL;

		if (rkm == NULL)
			continue;
		if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			eofs++;
		} else if (rkm->err == 0) {
			if (n == cap)
				r = realloc(r, (cap *= 2) * sizeof(*r));
			memset(&r[n], 0, sizeof(r[n]));
			if (rkm->key) {
				r[n].key = malloc(rkm->key_len + 1);
				memcpy(r[n].key, rkm->key, rkm->key_len);
				r[n].key[rkm->key_len] = '\0';
			}
			r[n].value = malloc(rkm->len + 1);
			if (rkm->len)
				memcpy(r[n].value, rkm->payload, rkm->len);
			r[n].len = rkm->len;
			r[n].partition = rkm->partition;
			rd_kafka_message_headers(rkm, &hdrs);
			for (int h = 0; h < 5; h++)
				r[n].header[h] = header_dup(hdrs, names[h]);
			n++;
		}
		rd_kafka_message_destroy(rkm);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	if (eofs < parts)
		fail_msg("reading %s: reached the end of %d of %d partitions", topic, eofs, parts);
	*out = r;
	return n;
}

void fx_records_free(struct fx_record *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].key);
		free(r[i].value);
		for (int h = 0; h < 5; h++)
			free(r[i].header[h]);
	}
	free(r);
}

void fx_migrate(PGconn *conn, const char *schema)
{
	char errstr[512];

	if (migrate_run(conn, schema, errstr, sizeof(errstr)) < 0)
		fail_msg("migrate: %s", errstr);
}

void fx_feedgen(const struct fx_kafka *k, const char *args, struct fx_gen *out)
{
	const char *bin = getenv("FC_FEEDGEN");
	char cmd[1024], line[512];
	FILE *p;

	if (bin == NULL)
		fail_msg("FC_FEEDGEN is not set");
	snprintf(cmd, sizeof(cmd), "'%s' --bootstrap '%s' --quiet %s", bin, k->bootstrap, args);
	p = popen(cmd, "r");
	if (p == NULL)
		fail_msg("popen %s: %s", cmd, strerror(errno));
	memset(out, 0, sizeof(*out));
	bool parsed = false;
	while (fgets(line, sizeof(line), p))
		if (sscanf(line,
		           "produced events=%lld duplicates=%lld malformed=%lld messages=%lld "
		           "negative=%lld",
		           &out->events, &out->duplicates, &out->malformed, &out->messages,
		           &out->negative) == 5)
			parsed = true;
	int status = pclose(p);
	if (!parsed || status != 0)
		fail_msg("feedgen failed (status %d): %s", status, cmd);
}

long long fx_schema_diff(PGconn *conn, const char *a, const char *b)
{
	static const char *const views[] = {"channel_kpi", "agent_kpi"};
	long long diff = 0;
	char sql[1024];

	for (size_t i = 0; i < sizeof(views) / sizeof(*views); i++) {
		snprintf(sql, sizeof(sql),
		         "SELECT (SELECT count(*) FROM (SELECT * FROM \"%s\".%s EXCEPT "
		         "SELECT * FROM \"%s\".%s) x) + (SELECT count(*) FROM (SELECT * FROM "
		         "\"%s\".%s EXCEPT SELECT * FROM \"%s\".%s) y)",
		         a, views[i], b, views[i], b, views[i], a, views[i]);
		diff += harness_query_int(conn, sql);
	}
	return diff;
}

long long fx_log_counter(const char *log_path, const char *name, int worker)
{
	char line[4096], key[64], tag[32];
	long long value = -1;
	FILE *f = fopen(log_path, "r");

	if (f == NULL)
		fail_msg("cannot read %s", log_path);
	snprintf(key, sizeof(key), "%s=", name);
	snprintf(tag, sizeof(tag), " worker=%d", worker);
	while (fgets(line, sizeof(line), f)) {
		/* The worker follows the message; the context, if any, comes after it. */
		const char *w = worker >= 0 ? strstr(line, tag) : NULL;

		if (worker >= 0 &&
		    (w == NULL || !(w[strlen(tag)] == '\n' || w[strlen(tag)] == ' ')))
			continue;
		/* name=, not a longer name ending in it */
		for (const char *p = strstr(line, key); p; p = strstr(p + 1, key))
			if (p == line || !(isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
				value = strtoll(p + strlen(key), NULL, 10);
				break;
			}
	}
	fclose(f);
	return value;
}

int fx_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		fail_msg("finding a free port: %s", strerror(errno));
	close(fd);
	return ntohs(sa.sin_port);
}

struct fx_http_reply fx_http_request(int port, const char *method, const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct fx_http_reply r = {0, NULL};
	char req[1024];
	size_t len = 0, cap = 8192;
	char *buf = NULL;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		fail_msg("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return r;
	}
	snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
	/* A connection the server closes unanswered is no answer (status 0), not a SIGPIPE. */
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
		close(fd);
		r.body = strdup("");
		return r;
	}
	buf = malloc(cap);
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &r.status) != 1)
		r.status = 0;
	char *body = strstr(buf, "\r\n\r\n");
	r.body = strdup(body ? body + 4 : "");
	free(buf);
	return r;
}

int fx_http_status(int port, const char *path)
{
	struct fx_http_reply r = fx_http_request(port, "GET", path);

	free(r.body);
	return r.status;
}

void fx_wait_status(int port, const char *path, int status, int timeout_ms)
{
	int got = 0;

	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		if ((got = fx_http_status(port, path)) == status)
			return;
		usleep(100000);
	}
	fail_msg("GET %s answered %d, expected %d", path, got, status);
}
