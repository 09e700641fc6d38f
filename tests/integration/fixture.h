/*
 * fixture.h - Kafka and process fixtures of the integration tests: an
 * embedded mock cluster, a producer, feedback events built from a compact
 * spec, the consumer binary as a child process, a reader of output topics.
 * Every helper fails the running cmocka test on error.
 */
#ifndef FC_TEST_FIXTURE_H
#define FC_TEST_FIXTURE_H

#include "mockcluster.h"

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

extern const char *const fx_topics[6]; /* sms, email, phone, social, recovery, dlq */

struct fx_kafka {
	struct mockcluster *mc;
	const char *bootstrap;
	rd_kafka_t *producer;
};

void fx_kafka_start(struct fx_kafka *k, int partitions);
void fx_kafka_stop(struct fx_kafka *k);
/* The end of a test: stops k, drops schema (through conn) and frees its name. */
void fx_teardown(struct fx_kafka *k, PGconn *conn, char *schema);
/* Produces to an explicit partition; fx_flush waits for every acknowledgement. */
void fx_produce(struct fx_kafka *k, const char *topic, int32_t partition, const char *key,
                const void *value, size_t len);
void fx_flush(struct fx_kafka *k);

struct fx_rating {
	int metric; /* 1 CSAT, 2 NPS, 3 CES */
	int score, min, max;
	bool inverted;
};

#define FX_NO_OUTCOME (-1)

struct fx_event {
	const char *id;
	const char *at; /* UTC, "YYYY-MM-DDTHH:MM:SS[.ffffff]" */
	int channel;    /* the event's own channel field; 0 = not given */
	const char *customer, *agent, *comment;
	struct fx_rating r[3];
	int n_ratings;
	int outcome; /* 0 = no contact block; FX_NO_OUTCOME = a block without one */
	unsigned wait, handle;
	int fcr;
};

/* Packs e as FeedbackEvent; returns the length written to buf. */
size_t fx_pack(const struct fx_event *e, uint8_t *buf, size_t size);

/* Produces one valid event, id (also the key): CSAT 5 of 1-5 at 2026-11-20 10:00 UTC. */
void fx_produce_csat(struct fx_kafka *k, const char *topic, int32_t partition, const char *id);

/* Starts FC_BIN run against k, schema and group, with extra flags (NULL-terminated). */
pid_t fx_consumer_start(const struct fx_kafka *k, const char *schema, const char *group,
                        const char *const *extra);
/* The same with stderr written to log_path (NULL: inherited). */
pid_t fx_consumer_start_logged(const struct fx_kafka *k, const char *schema, const char *group,
                               const char *const *extra, const char *log_path);
/*
 * The counter name=N (consumed, batches, ...) of the last statistics line in
 * consumer log (as fx_consumer_start writes it), of consumer worker (-1: of any); -1
 * when none.
 */
long long fx_log_counter(const char *log_path, const char *name, int worker);
/* Sends sig, waits up to timeout_ms; returns the exit status, 128+signal, or -1 on timeout. */
int fx_consumer_stop(pid_t pid, int sig, int timeout_ms);

/* Waits until the stored offsets of group in schema add up to total messages. */
void fx_wait_offsets(PGconn *conn, const char *schema, const char *group, long long total,
                     int timeout_ms);

struct fx_record {
	char *key;
	void *value;
	size_t len;
	int32_t partition;
	/* __connect.errors.{topic,partition,offset,exception.class.name,exception.message} */
	char *header[5];
};

/* Reads every message of topic from the beginning; returns the count. */
size_t fx_read_topic(struct fx_kafka *k, const char *topic, struct fx_record **out);
void fx_records_free(struct fx_record *r, size_t n);

/* The summary line of feedgen. */
struct fx_gen {
	long long events, duplicates, malformed, messages, negative;
};

/* Runs FC_FEEDGEN against k with extra arguments args (shell words). */
void fx_feedgen(const struct fx_kafka *k, const char *args, struct fx_gen *out);

/* Rows of channel_kpi and agent_kpi that differ between schemas a and b. */
long long fx_schema_diff(PGconn *conn, const char *a, const char *b);

/* Applies the migrations to schema. */
void fx_migrate(PGconn *conn, const char *schema);

/* A TCP port of 127.0.0.1 that nothing listens on right now. */
int fx_free_port(void);

struct fx_http_reply {
	int status; /* 0: no connection */
	char *body; /* malloc'd */
};

/* One HTTP/1.0 request to 127.0.0.1:port; the server closes after the reply. */
struct fx_http_reply fx_http_request(int port, const char *method, const char *path);
/* The status of GET path, the body dropped. */
int fx_http_status(int port, const char *path);
/* Waits until GET path answers status; fails after timeout_ms. */
void fx_wait_status(int port, const char *path, int status, int timeout_ms);

#endif
