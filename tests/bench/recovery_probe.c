/*
 * recovery_probe - measures the latency from producing a negative feedback
 * event to its recovery trigger being readable on the recovery topic.
 *
 * It reads the recovery topic from its current end, sends one promoter to
 * every partition of the probe topic (so that its producer is connected
 * before the clock starts), then produces --count
 * probe events (NPS 0, each for a customer of its own so no cooldown
 * applies) every --interval-ms, and matches the triggers that come back by
 * event id. Triggers of other events (a background load) are ignored.
 * Prints one line: probes= received= p50_ms= p90_ms= p99_ms= max_ms=.
 */
#include "feedback/v1/feedback.pb-c.h"

#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct probe_opts {
	const char *bootstrap;
	const char *topic;
	const char *recovery_topic;
	int count, interval_ms, timeout_s;
};

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "recovery_probe: %s: %s\n", what, why);
	exit(1);
}

static rd_kafka_t *client_new(rd_kafka_type_t type, const char *bootstrap)
{
	static const char *const consumer_props[][2] = {
	    {"group.id", "recovery-probe"},
	    {"enable.auto.commit", "false"},
	    {"fetch.wait.max.ms", "5"},
	    {"fetch.error.backoff.ms", "10"},
	};
	static const char *const producer_props[][2] = {
	    {"linger.ms", "0"},
	    {"acks", "all"},
	};
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)))
		die("bootstrap.servers", errstr);
	if (type == RD_KAFKA_CONSUMER) {
		for (size_t i = 0; i < sizeof(consumer_props) / sizeof(*consumer_props); i++)
			if (rd_kafka_conf_set(conf, consumer_props[i][0], consumer_props[i][1],
			                      errstr, sizeof(errstr)))
				die(consumer_props[i][0], errstr);
	} else {
		for (size_t i = 0; i < sizeof(producer_props) / sizeof(*producer_props); i++)
			if (rd_kafka_conf_set(conf, producer_props[i][0], producer_props[i][1],
			                      errstr, sizeof(errstr)))
				die(producer_props[i][0], errstr);
	}
	rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		die("client", errstr);
	return rk;
}

/* Assigns every partition of topic at its current end. */
static void assign_at_end(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);

	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err)
		die(topic, "no metadata");
	int parts = md->topics[0].partition_cnt;
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(parts);
	for (int p = 0; p < parts; p++) {
		int64_t lo = 0, hi = 0;

		if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000))
			die(topic, "no watermarks");
		rd_kafka_topic_partition_list_add(list, topic, p)->offset = hi;
	}
	if (rd_kafka_assign(rk, list))
		die(topic, "cannot assign");
	rd_kafka_topic_partition_list_destroy(list);
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
}

/* Probe i: NPS score for a customer of its own, with event id "<kind>-<pid>-<i>". */
static size_t pack_probe(const char *kind, int i, int score, char *id, size_t id_size, uint8_t *buf,
                         size_t size)
{
	Feedback__V1__FeedbackEvent ev = FEEDBACK__V1__FEEDBACK_EVENT__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Feedback__V1__Rating r = FEEDBACK__V1__RATING__INIT;
	Feedback__V1__Rating *rp[1] = {&r};
	char customer[64];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(id, id_size, "%s-%ld-%d", kind, (long)getpid(), i);
	snprintf(customer, sizeof(customer), "%s-customer-%ld-%d", kind, (long)getpid(), i);
	ts.seconds = now.tv_sec;
	ts.nanos = (int32_t)now.tv_nsec;
	ev.event_id = id;
	ev.occurred_at = &ts;
	ev.customer_id = customer;
	r.metric = FEEDBACK__V1__METRIC__METRIC_NPS;
	r.score = score;
	ev.ratings = rp;
	ev.n_ratings = 1;
	if (feedback__v1__feedback_event__get_packed_size(&ev) > size)
		die("probe", "too large");
	return feedback__v1__feedback_event__pack(&ev, buf);
}

/*
 * One promoter (no trigger) to every partition of topic, delivered: the
 * producer's metadata and broker connections are then in place, and the
 * first probes time the pipeline, not the producer's start.
 */
static void warm_up(rd_kafka_t *producer, const char *topic)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer, topic, NULL);

	if (rd_kafka_metadata(producer, 0, rkt, &md, 10000) || md->topic_cnt != 1 ||
	    md->topics[0].err)
		die(topic, "no metadata");
	for (int p = 0; p < md->topics[0].partition_cnt; p++) {
		uint8_t buf[512];
		char id[64];
		size_t len = pack_probe("warm-up", p, 10, id, sizeof(id), buf, sizeof(buf));

		if (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(p),
		                      RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE(buf, len),
		                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END))
			die("produce", rd_kafka_err2str(rd_kafka_last_error()));
	}
	if (rd_kafka_flush(producer, 10000))
		die(topic, "warm-up messages not delivered");
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
}

/* Polls rk for up to timeout_ms, recording the arrival of probe triggers. */
static int poll_triggers(rd_kafka_t *rk, int timeout_ms, const char *prefix, int count,
                         int64_t *received_us)
{
	int got = 0;
	rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, timeout_ms);

	while (rkm != NULL) {
		int64_t now = mono_us();

		if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			Feedback__V1__RecoveryTrigger *t =
			    feedback__v1__recovery_trigger__unpack(NULL, rkm->len, rkm->payload);
			size_t n = strlen(prefix);

			if (t && strncmp(t->event_id, prefix, n) == 0) {
				int i = atoi(t->event_id + n);

				if (i >= 0 && i < count && received_us[i] == 0) {
					received_us[i] = now;
					got++;
				}
			}
			if (t)
				feedback__v1__recovery_trigger__free_unpacked(t, NULL);
		}
		rd_kafka_message_destroy(rkm);
		rkm = rd_kafka_consumer_poll(rk, 0);
	}
	return got;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile q (0-100) of n sorted values. */
static double percentile_ms(const int64_t *v, int n, double q)
{
	int rank = (int)((q / 100.0) * n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1] / 1000.0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: recovery_probe --bootstrap ADDR [--count N] [--interval-ms MS]\n"
	             "       [--topic T] [--recovery-topic T] [--timeout-s S]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"bootstrap", required_argument, NULL, 'b'},
	    {"count", required_argument, NULL, 'n'},
	    {"interval-ms", required_argument, NULL, 'i'},
	    {"topic", required_argument, NULL, 't'},
	    {"recovery-topic", required_argument, NULL, 'r'},
	    {"timeout-s", required_argument, NULL, 'w'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct probe_opts o = {NULL, "feedback.sms", "feedback.recovery", 200, 100, 60};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o.bootstrap = optarg;
			break;
		case 'n':
			o.count = atoi(optarg);
			break;
		case 'i':
			o.interval_ms = atoi(optarg);
			break;
		case 't':
			o.topic = optarg;
			break;
		case 'r':
			o.recovery_topic = optarg;
			break;
		case 'w':
			o.timeout_s = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (o.bootstrap == NULL || o.count < 1 || o.interval_ms < 1) {
		usage(stderr);
		return 2;
	}

	rd_kafka_t *consumer = client_new(RD_KAFKA_CONSUMER, o.bootstrap);
	rd_kafka_t *producer = client_new(RD_KAFKA_PRODUCER, o.bootstrap);
	int64_t *sent_us = calloc((size_t)o.count, sizeof(int64_t));
	int64_t *received_us = calloc((size_t)o.count, sizeof(int64_t));
	char prefix[64];
	int got = 0;

	if (sent_us == NULL || received_us == NULL)
		die("memory", "exhausted");
	snprintf(prefix, sizeof(prefix), "probe-%ld-", (long)getpid());
	assign_at_end(consumer, o.recovery_topic);
	warm_up(producer, o.topic);
	/* Let the assignment take effect before the first probe. */
	got += poll_triggers(consumer, 500, prefix, o.count, received_us);

	for (int i = 0; i < o.count; i++) {
		uint8_t buf[512];
		char id[64];
		size_t len = pack_probe("probe", i, 0, id, sizeof(id), buf, sizeof(buf));
		int64_t next = mono_us() + o.interval_ms * 1000LL;

		sent_us[i] = mono_us();
		if (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(o.topic),
		                      RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE(buf, len),
		                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END))
			die("produce", rd_kafka_err2str(rd_kafka_last_error()));
		while (mono_us() < next) {
			rd_kafka_poll(producer, 0);
			got += poll_triggers(consumer, 5, prefix, o.count, received_us);
		}
	}
	int64_t deadline = mono_us() + o.timeout_s * 1000000LL;
	while (got < o.count && mono_us() < deadline) {
		rd_kafka_poll(producer, 0);
		got += poll_triggers(consumer, 50, prefix, o.count, received_us);
	}

	int64_t *lat = calloc((size_t)o.count, sizeof(int64_t));
	int n = 0;
	for (int i = 0; lat && i < o.count; i++)
		if (received_us[i])
			lat[n++] = received_us[i] - sent_us[i];
	qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
	if (n > 0)
		printf("probes=%d received=%d p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
		       o.count, n, percentile_ms(lat, n, 50), percentile_ms(lat, n, 90),
		       percentile_ms(lat, n, 99), lat[n - 1] / 1000.0);
	else
		printf("probes=%d received=0\n", o.count);

	free(lat);
	free(sent_us);
	free(received_us);
	rd_kafka_flush(producer, 5000);
	rd_kafka_destroy(producer);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	return n == o.count ? 0 : 1;
}
