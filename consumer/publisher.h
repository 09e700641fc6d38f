/*
 * publisher.h - sends the recovery triggers of the outbox to Kafka.
 *
 * Runs on its own thread with its own PostgreSQL connection and its own
 * idempotent producer (acks=all). It claims unsent outbox rows with FOR
 * UPDATE SKIP LOCKED, so replicas share the work without sending a row
 * twice, produces them keyed by customer id, and marks as sent only the
 * rows the broker acknowledged, in the same transaction. A crash between
 * the acknowledgement and that commit re-sends a row later, with the same
 * trigger_id. It wakes on the NOTIFY of each committed batch, and prunes
 * sent rows after the retention period.
 */
#ifndef FC_PUBLISHER_H
#define FC_PUBLISHER_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdint.h>

struct publisher_opts {
	const char *conninfo; /* "" = PG* environment */
	const char *schema;
	const char *topic;
	int64_t retention_ms; /* sent rows older than this are deleted */
	int db_retry_max_ms;
	int64_t idle_tx_timeout_ms; /* idle_in_transaction_session_timeout; 0: the server's */
};

struct publisher_stats {
	unsigned long long sent;       /* triggers acknowledged by the broker */
	unsigned long long failed;     /* produce attempts that failed; the rows stay queued */
	long long backlog;             /* unsent rows at the last check; -1 unknown */
	long long oldest_unsent_age_s; /* age of the oldest unsent row; 0 none */
};

struct publisher;

/*
 * The name of the notification channel on which the batches of schema wake
 * its publishers, "<schema>.recovery" (for a schema name over 54 bytes, its
 * first 45 and a hash: channel names have 63 at most): the consumer NOTIFYs
 * it, publishers LISTEN to it. malloc'd; NULL when out of memory.
 */
char *publisher_channel(const char *schema);

/* A publisher for opts (referenced, must outlive it) on producer_conf,
 * which it takes, also on failure. Does not connect yet. */
struct publisher *publisher_new(const struct publisher_opts *opts, rd_kafka_conf_t *producer_conf,
                                char *errstr, size_t errstr_size);

/* Starts the thread; it runs until *stop is set. 0, or -1 with errstr. */
int publisher_start(struct publisher *p, atomic_int *stop, char *errstr, size_t errstr_size);

/* A snapshot of the counters; safe from any thread. */
void publisher_stats(struct publisher *p, struct publisher_stats *out);

/* Waits for the thread (after *stop was set) and frees everything. */
void publisher_destroy(struct publisher *p);

#endif
