/*
 * dlq.h - the dead-letter producer.
 *
 * A dead letter is the original key and value, unchanged, with the Kafka
 * Connect error headers (__connect.errors.*). A record is kept until the
 * broker acknowledged it; failed deliveries are sent again, so no bad
 * message is ever skipped silently.
 */
#ifndef FC_DLQ_H
#define FC_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dlq;

/* A producer on conf (taken, even on failure) writing to topic. NULL with errstr on failure. */
struct dlq *dlq_new(rd_kafka_conf_t *conf, const char *topic, char *errstr, size_t errstr_size);
/* Flushes for up to a second, then drops what is still unsent. */
void dlq_destroy(struct dlq *d);

/* A source message, as much of it as a dead letter carries. */
struct dlq_source {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const void *key; /* NULL: no key */
	size_t key_len;
	const void *value; /* NULL: a null value */
	size_t value_len;
};

/*
 * Queues a copy of src's key and value with headers naming its topic,
 * partition and offset, the reason code (e.g. "invalid_score") and
 * message. Returns 0, or -1 when out of memory. The caller keeps src.
 */
int dlq_send_source(struct dlq *d, const struct dlq_source *src, const char *reason,
                    const char *message);

/* dlq_send_source of rkm. */
int dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason, const char *message);

/*
 * Waits until every queued dead letter was acknowledged, re-sending failed
 * ones with backoff (one too large for the topic goes without its value).
 * Calls waiting(arg) (unless NULL) at least every 100 ms while it waits, so
 * the caller can tell its probes it is alive. Returns 0, or -1 when *stop
 * was set first or the producer failed for good (dlq_fatal).
 */
int dlq_drain(struct dlq *d, atomic_int *stop, void (*waiting)(void *arg), void *arg);

/*
 * Waits up to timeout_ms for every queued dead letter to be acknowledged,
 * without re-sending anything. Returns 0 when none is outstanding, -1 when
 * some are still on their way or failed (dlq_drain deals with those).
 */
int dlq_settle(struct dlq *d, int timeout_ms);

/* Whether a dead letter failed and waits for dlq_drain to send it again. */
bool dlq_failing(const struct dlq *d);

/* Whether the producer failed for good (a fatal idempotence error): a new one is needed. */
bool dlq_fatal(const struct dlq *d);

/* Dead letters queued and not yet acknowledged. */
size_t dlq_pending(const struct dlq *d);

/* Dead letters acknowledged since the start. */
unsigned long long dlq_delivered(const struct dlq *d);

#endif
