/*
 * consumer.h - the ingestion loop: Kafka in, decode and validate, batch,
 * one PostgreSQL transaction per batch, then offsets to Kafka.
 */
#ifndef FC_CONSUMER_H
#define FC_CONSUMER_H

#include "kpi.h"
#include "metrics.h"
#include "rules.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdbool.h>

struct consumer_opts {
	const char *group;
	const char *topics[CHANNEL_MAX]; /* by channel - 1: sms, email, phone, social */
	const char *dlq_topic;
	const char *conninfo; /* "" = PG* environment */
	const char *schema;
	int batch_max_events;
	int batch_linger_ms;
	bool start_latest;              /* where a partition without a stored offset starts */
	int db_retry_max_ms;            /* cap of the backoff between database attempts */
	int db_check_interval_ms;       /* idle: how often the connection is checked */
	const char *synchronous_commit; /* of the ingest transactions */
	int64_t idle_tx_timeout_ms;     /* idle_in_transaction_session_timeout; 0: the server's */
	struct kpi_policy policy;
	const struct rules_policy *recovery; /* NULL: no recovery triggers */
	struct metrics *metrics;             /* the feedback_* families go here; NULL: none */
};

/* Counters since the start, for logs and metrics. */
struct consumer_stats {
	unsigned long long consumed;
	unsigned long long accepted;
	unsigned long long duplicates;
	unsigned long long dead_lettered;
	unsigned long long batches;
	unsigned long long db_retries;
	unsigned long long rebalances;
	unsigned long long stale_batches;
	unsigned long long triggers;      /* queued in the outbox */
	unsigned long long suppressed;    /* negatives kept from triggering by the cooldown */
	unsigned long long fetch_wakeups; /* consumer_wake_fetcher's seeks */
};

struct consumer;

/*
 * A consumer for opts (referenced, must outlive it) on consumer_conf and a
 * dead-letter producer on producer_conf; both confs are taken, also on
 * failure. Subscribes and connects to PostgreSQL only in consumer_run.
 */
struct consumer *consumer_new(const struct consumer_opts *opts, rd_kafka_conf_t *consumer_conf,
                              rd_kafka_conf_t *producer_conf, char *errstr, size_t errstr_size);

/*
 * Runs until *stop is set: then finishes the open batch if the database
 * takes it at once (else abandons it; it is read again), leaves the group
 * and returns 0. Returns -1 on a fatal error, logged.
 */
int consumer_run(struct consumer *c, atomic_int *stop);

const struct consumer_stats *consumer_stats(const struct consumer *c);

/*
 * Liveness, safe from any thread: true when the poll loop (or a backoff
 * between database attempts) made progress within timeout_ms. detail says
 * how long ago otherwise.
 */
bool consumer_live(struct consumer *c, int64_t timeout_ms, char *detail, size_t detail_size);

/*
 * Readiness, safe from any thread: true when the last database operation
 * succeeded and the consumer is a member of its group (it received an
 * assignment, possibly empty, that it has not lost). detail names what is
 * missing.
 */
bool consumer_ready(struct consumer *c, char *detail, size_t detail_size);

void consumer_destroy(struct consumer *c);

#endif
