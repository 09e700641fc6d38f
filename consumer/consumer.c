#include "consumer.h"

#include "batch.h"
#include "db.h"
#include "decode.h"
#include "dlq.h"
#include "log.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Dead-letter reasons: the decode results, then one for rows the database refused. */
#define REASON_DB_REJECTED DECODE_RESULT_COUNT
#define N_REASONS          (DECODE_RESULT_COUNT + 1)

static const char *const outcome_names[] = {"accepted", "duplicate", "dead_lettered"};

/* The families this consumer updates; all NULL without a registry. */
struct consumer_metrics {
	struct metric_family *events;       /* channel, outcome */
	struct metric_family *dead_letters; /* reason */
	struct metric_family *batches, *batch_events, *tx_seconds;
	struct metric_family *db_retries, *stale_batches, *rebalances;
	struct metric_family *lag; /* topic, partition */
	struct metric_family *triggers, *suppressed;
};

/* What this consumer knows of one partition. */
struct part_state {
	bool owned;
	int64_t next; /* stored next offset in PostgreSQL; -1: none stored */
	int64_t read; /* the offset after the last message taken; -1: none since assigned */
	/*
	 * Where this consumer began to read the partition while PostgreSQL held
	 * no offset for it: a resync, a re-assignment or a stored offset lost
	 * with an asynchronous commit go back there. An offset, or
	 * RD_KAFKA_OFFSET_BEGINNING; kept for the process's life.
	 */
	bool has_origin;
	int64_t origin;
	int64_t woke_at; /* read when consumer_wake_fetcher last sought it; -1: never */
};

struct consumer {
	const struct consumer_opts *opts;
	rd_kafka_t *rk;
	struct dlq *dlq;
	struct db *db;
	struct batch *b;
	/*
	 * By message index, the messages of the batch that carry an event, as a
	 * dead letter of a row the database refuses needs them: key and value
	 * live in the batch's arena. librdkafka's message goes right after the
	 * decode; held to the commit, it kept its share of a fetch buffer, some
	 * 0.9 KiB an event (tests/bench/pipeline.sh, 20,000-event batches).
	 */
	struct dlq_source *sources;
	struct arena decoded; /* the message being decoded; batch_add keeps what it needs */
	struct offset_update *updates;
	struct part_state *parts[CHANNEL_MAX];
	int32_t n_parts[CHANNEL_MAX];
	int64_t batch_started_us;
	size_t batch_dead; /* dead letters of the open batch */
	bool db_up;
	bool need_resync; /* positions of kafka and of the database may differ */
	bool fatal;
	atomic_int *stop;
	struct consumer_stats stats;
	int64_t next_report_us;
	int64_t next_maintain_us;
	int64_t next_db_check_us; /* idle: when to check the connection next */
	int db_check_step;        /* backoff of idle reconnection attempts */
	/*
	 * By message index, the reason of its dead letter + 1 (0: none), counted
	 * when the transaction that holds the message commits.
	 */
	uint8_t *dead_reason;
	int64_t gate_waited_us; /* waiting for dead letters before COMMIT, this batch */
	int drain_first;        /* batches left that wait for dead letters before BEGIN */
	bool gate_failed;       /* the last refusal of the gate came from a failed delivery */
	bool batch_gated;       /* the open batch was refused by the gate at least once */
	int slow_batches;       /* consecutive batches refused for slow dead letters */
	bool in_group;          /* assigned (possibly nothing) and not lost since */
	/*
	 * librdkafka leaves the group when the loop has not polled it for
	 * max.poll.interval.ms (waiting for dead letters or a database that keeps
	 * refusing); the rebalance callback that would say so runs only when it
	 * polls again.
	 */
	int64_t polled_us, max_poll_us;
	bool assigned_once;
	bool streaming;       /* the last poll returned a message */
	int64_t next_wake_us; /* consumer_wake_fetcher: not before */
	int wake_cursor;      /* consumer_wake_fetcher: where the round starts */
	unsigned long long exported_db_retries;
	struct consumer_metrics m;
	/* Read by the probes on the http thread. */
	atomic_llong progress_us;
	atomic_bool ready;
};

/* consumer_wake_fetcher: at most this often. */
#define WAKE_INTERVAL_US 10000

enum flush_result { FLUSH_OK, FLUSH_STALE, FLUSH_ABANDONED, FLUSH_FATAL };

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int topic_index(const struct consumer *c, const char *topic)
{
	for (int t = 0; t < CHANNEL_MAX; t++)
		if (strcmp(c->opts->topics[t], topic) == 0)
			return t;
	return -1;
}

static struct part_state *part_get(struct consumer *c, int t, int32_t partition)
{
	if (partition < 0)
		return NULL;
	if (partition >= c->n_parts[t]) {
		int32_t n = partition + 16;
		struct part_state *p = realloc(c->parts[t], (size_t)n * sizeof(*p));

		if (p == NULL)
			return NULL;
		memset(p + c->n_parts[t], 0, (size_t)(n - c->n_parts[t]) * sizeof(*p));
		c->parts[t] = p;
		c->n_parts[t] = n;
	}
	return &c->parts[t][partition];
}

/*
 * Tells the probes the loop is alive and whether it is ready. Waiting out
 * a database outage counts as alive: restarting would not bring it back.
 */
static void consumer_publish_health(struct consumer *c)
{
	bool ready = c->db_up && c->in_group && mono_us() - c->polled_us < c->max_poll_us;

	atomic_store(&c->progress_us, mono_us());
	/* Retries are counted in several places; the counter follows the statistics. */
	if (c->stats.db_retries != c->exported_db_retries) {
		metric_add(c->m.db_retries, NULL,
		           (double)(c->stats.db_retries - c->exported_db_retries));
		c->exported_db_retries = c->stats.db_retries;
	}
	atomic_store(&c->ready, ready);
}

/* Waiting for the dead-letter topic is progress too: a restart would not help. */
static void consumer_alive(void *arg)
{
	consumer_publish_health(arg);
}

/*
 * Waits for every dead letter; false when told to stop, or when the
 * dead-letter producer failed for good: then the process exits non-zero,
 * and its restart reads the batch again with a new producer.
 */
static bool consumer_drain(struct consumer *c)
{
	if (dlq_drain(c->dlq, c->stop, consumer_alive, c) == 0)
		return true;
	if (dlq_fatal(c->dlq))
		c->fatal = true;
	return false;
}

/*
 * The commit gate: a dead letter must be safe in Kafka before the offsets
 * move past it. Its delivery runs while the transaction writes; a broker
 * slower than DLQ_GATE_MS, or a failed delivery, turns it into a full
 * dlq_drain outside the transaction (DB_GATED), which holds no lock. So
 * that a failing or slow broker does not cost every batch a rolled-back
 * transaction, the next DLQ_DRAIN_FIRST batches then wait for their dead
 * letters before they begin, as the gate then has nothing left to wait for:
 * after a failed delivery at once, after DLQ_SLOW_BATCHES slow batches in
 * a row otherwise (the producer's first delivery, which also waits for
 * its connection, is slow once).
 */
#define DLQ_GATE_MS      500
#define DLQ_DRAIN_FIRST  100
#define DLQ_SLOW_BATCHES 3

static bool consumer_dead_letters_safe(void *arg)
{
	struct consumer *c = arg;
	int64_t t0 = mono_us();
	bool safe = dlq_settle(c->dlq, DLQ_GATE_MS) == 0;

	c->gate_waited_us += mono_us() - t0;
	c->gate_failed = !safe && dlq_failing(c->dlq);
	return safe;
}

/* Sleeps up to ms in short steps; false when stop was requested. */
static bool backoff_sleep(struct consumer *c, int ms)
{
	int64_t until = mono_us() + (int64_t)ms * 1000;

	while (!*c->stop) {
		int64_t left = until - mono_us();
		struct timespec ts;

		consumer_publish_health(c);
		if (left <= 0)
			return true;
		if (left > 100000)
			left = 100000;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Exponential backoff with full jitter, capped by db.retry.max.ms. */
static int backoff_next(struct consumer *c, int *step)
{
	int cap = c->opts->db_retry_max_ms;
	long ceiling = 100L << (*step < 16 ? *step : 16);

	if (ceiling > cap)
		ceiling = cap;
	else
		(*step)++;
	return (int)(ceiling / 2 + rand() % (ceiling / 2 + 1));
}

/* Ledger partitions ahead of time; a failure only delays them, so it is logged. */
static void consumer_db_maintain(struct consumer *c)
{
	char errstr[512];

	if (db_maintain(c->db, errstr, sizeof(errstr)) != DB_OK)
		log_warn("%s", errstr);
	c->next_maintain_us = mono_us() + 3600LL * 1000000;
}

/* The idle check runs again in ms: after a success, or a pause between attempts. */
static void consumer_db_check_in(struct consumer *c, int ms)
{
	c->next_db_check_us = mono_us() + ms * 1000LL;
}

/*
 * One attempt to connect. Returns 0 when connected (logged as connected),
 * -1 on a fatal error (logged, c->fatal set), else the pause in ms before
 * the next attempt (logged and counted as a retry).
 */
static int consumer_db_attempt(struct consumer *c, int *step, const char *connected)
{
	char errstr[512];
	enum db_status st = db_connect(c->db, errstr, sizeof(errstr));

	if (st == DB_OK) {
		c->db_up = true;
		*step = 0;
		log_info("%s, schema \"%s\"", connected, c->opts->schema);
		consumer_db_maintain(c);
		return 0;
	}
	if (st == DB_FATAL) {
		log_error("%s", errstr);
		c->fatal = true;
		return -1;
	}
	int ms = backoff_next(c, step);

	log_warn("%s; retrying in %d ms", errstr, ms);
	c->stats.db_retries++;
	return ms;
}

/*
 * While no batch is open, readiness would otherwise keep the answer of the
 * last transaction however long ago: check the connection now and then,
 * and try to bring it back without blocking the poll loop.
 */
static void consumer_db_check(struct consumer *c)
{
	char errstr[512];
	int ms;

	if (mono_us() < c->next_db_check_us)
		return;
	if (c->db_up) {
		if (db_ping(c->db, errstr, sizeof(errstr)) == DB_OK) {
			consumer_db_check_in(c, c->opts->db_check_interval_ms);
			return;
		}
		log_warn("%s; not ready until postgresql answers", errstr);
		c->db_up = false;
		c->db_check_step = 0;
	}
	ms = consumer_db_attempt(c, &c->db_check_step, "connected to postgresql again");
	if (ms >= 0)
		consumer_db_check_in(c, ms > 0 ? ms : c->opts->db_check_interval_ms);
}

/* Brings the database connection up, retrying until it works or stop. */
static bool consumer_db_ensure(struct consumer *c)
{
	int step = 0;

	while (!c->db_up) {
		int ms = consumer_db_attempt(c, &step, "connected to postgresql");

		if (ms < 0 || (ms > 0 && !backoff_sleep(c, ms)))
			return false;
	}
	return true;
}

/* Reads the stored offsets of one topic's partitions, retrying until stop. */
static bool consumer_load_offsets(struct consumer *c, const char *topic, const int32_t *partitions,
                                  size_t n, int64_t *next)
{
	char errstr[512];
	int step = 0;

	for (;;) {
		enum db_status st;

		if (!consumer_db_ensure(c))
			return false;
		st = db_load_offsets(c->db, c->opts->group, topic, partitions, n, next, errstr,
		                     sizeof(errstr));
		if (st == DB_OK)
			return true;
		if (st == DB_FATAL) {
			log_error("%s", errstr);
			c->fatal = true;
			return false;
		}
		if (st == DB_RECONNECT)
			c->db_up = false;
		int ms = backoff_next(c, &step);

		log_warn("%s; retrying in %d ms", errstr, ms);
		c->stats.db_retries++;
		if (!backoff_sleep(c, ms))
			return false;
	}
}

/*
 * The end offsets of the partitions of list whose offset is
 * RD_KAFKA_OFFSET_END, made their origin: with offset.reset=latest, the
 * start of a partition with nothing stored has to be a number, as the end
 * moves on while the messages after it wait to be read. A partition the
 * broker does not answer for stays at the end; its first message taken
 * becomes its origin.
 */
static void consumer_resolve_latest(struct consumer *c, rd_kafka_topic_partition_list_t *list)
{
	rd_kafka_topic_partition_list_t *ends = rd_kafka_topic_partition_list_new(list->cnt);

	if (ends == NULL)
		return;
	for (int i = 0; i < list->cnt; i++)
		if (list->elems[i].offset == RD_KAFKA_OFFSET_END)
			rd_kafka_topic_partition_list_add(ends, list->elems[i].topic,
			                                  list->elems[i].partition)
			    ->offset = RD_KAFKA_OFFSET_END; /* as a timestamp: the latest */
	rd_kafka_resp_err_t err = ends->cnt > 0 ? rd_kafka_offsets_for_times(c->rk, ends, 10000)
	                                        : RD_KAFKA_RESP_ERR_NO_ERROR;
	if (err)
		log_warn("the end offsets of %d partitions with nothing stored: %s; they start at "
		         "their end",
		         ends->cnt, rd_kafka_err2str(err));
	for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < ends->cnt; i++) {
		rd_kafka_topic_partition_t *e = &ends->elems[i];
		rd_kafka_topic_partition_t *tp =
		    rd_kafka_topic_partition_list_find(list, e->topic, e->partition);
		int t = topic_index(c, e->topic);
		struct part_state *ps = t >= 0 ? part_get(c, t, e->partition) : NULL;

		if (e->err || e->offset < 0 || tp == NULL || ps == NULL)
			continue;
		tp->offset = e->offset;
		ps->has_origin = true;
		ps->origin = e->offset;
	}
	rd_kafka_topic_partition_list_destroy(ends);
}

/*
 * Sets each partition of list to its stored offset, or, with none stored,
 * to its origin, or else to the configured start, and records it as owned.
 * False when stop or a fatal error came first.
 */
static bool consumer_position(struct consumer *c, rd_kafka_topic_partition_list_t *list)
{
	bool latest = false;

	for (int i = 0; i < list->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &list->elems[i];
		int t = topic_index(c, tp->topic);
		struct part_state *ps;
		int64_t next;

		if (t < 0 || (ps = part_get(c, t, tp->partition)) == NULL)
			continue;
		if (!consumer_load_offsets(c, tp->topic, &tp->partition, 1, &next))
			return false;
		ps->owned = true;
		ps->next = next;
		ps->read = -1;
		ps->woke_at = -1;
		if (next >= 0) {
			tp->offset = next;
		} else if (ps->has_origin) {
			/*
			 * Nothing stored (yet, or any more), and what was read since
			 * the origin has to be read again: the end of the log would
			 * be past the messages of a batch that did not commit.
			 */
			tp->offset = ps->origin;
		} else if (!c->opts->start_latest) {
			tp->offset = RD_KAFKA_OFFSET_BEGINNING;
			ps->has_origin = true;
			ps->origin = RD_KAFKA_OFFSET_BEGINNING;
		} else {
			tp->offset = RD_KAFKA_OFFSET_END;
			latest = true;
		}
	}
	if (latest)
		consumer_resolve_latest(c, list);
	return true;
}

/* Fills c->updates for messages [from, to) with the expected stored positions. */
static size_t consumer_updates(struct consumer *c, size_t from, size_t to)
{
	size_t nu = batch_offset_updates(c->b, from, to, c->updates);

	for (size_t i = 0; i < nu; i++) {
		struct part_state *ps = part_get(c, c->updates[i].topic, c->updates[i].partition);

		c->updates[i].expected = ps ? ps->next : -1;
	}
	return nu;
}

static size_t count_events(const struct batch *b, size_t from, size_t to, size_t *first)
{
	size_t n = 0;

	for (size_t i = from; i < to; i++)
		if (b->msgs[i].event >= 0) {
			if (n++ == 0)
				*first = i;
		}
	return n;
}

/* Queues the dead letter of message i of the batch, refused as why. */
static bool consumer_reject_one(struct consumer *c, size_t i, const char *event_id, const char *why)
{
	const struct dlq_source *src = &c->sources[i];
	struct log_ctx ctx = {src->topic, src->partition, src->offset, event_id};

	log_write(LOG_WARN, &ctx, "postgresql refused the event, dead-lettering it: %s", why);
	if (dlq_send_source(c->dlq, src, "db_rejected", why) != 0) {
		log_error("out of memory queueing a dead letter");
		c->fatal = true;
		return false;
	}
	c->batch_dead++;
	c->dead_reason[i] = REASON_DB_REJECTED + 1;
	return true;
}

/*
 * Dead-letters message i, which the database refused alone, and every
 * repeat of its event later in the batch: counted as duplicates of an
 * event that never went in, they would vanish without a trace.
 */
static bool consumer_reject(struct consumer *c, size_t i, const char *why)
{
	struct batch *b = c->b;
	int32_t e = b->msgs[i].event;
	const char *id = b->events[e].ev.event_id;
	char repeat_why[1200];

	if (!consumer_reject_one(c, i, id, why))
		return false;
	snprintf(repeat_why, sizeof(repeat_why),
	         "a repeat of the event at offset %" PRId64 ", which postgresql refused: %s",
	         b->msgs[i].offset, why);
	for (size_t j = i + 1; j < b->n_msgs; j++) {
		if (b->msgs[j].repeat_of != e)
			continue;
		if (!consumer_reject_one(c, j, id, repeat_why))
			return false;
		b->msgs[j].repeat_of = -1;
	}
	if (!consumer_drain(c))
		return false;
	b->msgs[i].event = -1;
	return true;
}

static const char *reason_name(size_t r)
{
	return r == REASON_DB_REJECTED ? "db_rejected" : decode_reason_code((enum decode_result)r);
}

/*
 * Counts messages [from, to) of the batch, just committed in one
 * transaction: events by channel and outcome, dead letters by reason. A
 * split batch counts each part as it commits, so that a part that
 * committed counts even when a later one does not (it is not read again).
 */
static void consumer_count_committed(struct consumer *c, size_t from, size_t to)
{
	const struct batch *b = c->b;
	unsigned long long msgs[CHANNEL_MAX] = {0}, fresh[CHANNEL_MAX] = {0};
	unsigned long long dead[CHANNEL_MAX] = {0}, reasons[N_REASONS] = {0};

	for (size_t i = from; i < to; i++) {
		int t = b->msgs[i].topic;

		msgs[t]++;
		if (c->dead_reason[i] > 0) {
			dead[t]++;
			reasons[c->dead_reason[i] - 1]++;
		} else if (b->msgs[i].event >= 0 && b->events[b->msgs[i].event].is_new) {
			fresh[t]++;
		}
	}
	for (int t = 0; t < CHANNEL_MAX; t++) {
		double n[3] = {(double)fresh[t], (double)(msgs[t] - dead[t] - fresh[t]),
		               (double)dead[t]};

		c->stats.consumed += msgs[t];
		c->stats.accepted += fresh[t];
		c->stats.dead_lettered += dead[t];
		c->stats.duplicates += msgs[t] - dead[t] - fresh[t];
		for (int o = 0; o < 3; o++) {
			const char *labels[] = {channel_name((enum channel)(t + 1)),
			                        outcome_names[o]};

			if (n[o] > 0)
				metric_add(c->m.events, labels, n[o]);
		}
	}
	for (size_t r = 0; r < N_REASONS; r++) {
		const char *labels[] = {reason_name(r)};

		if (reasons[r] > 0)
			metric_add(c->m.dead_letters, labels, (double)reasons[r]);
	}
}

/*
 * Applies messages [from, to) in one transaction, retrying what can be
 * retried; when the database rejects a row, splits the range until that
 * row stands alone and dead-letters it.
 */
static enum flush_result consumer_apply(struct consumer *c, size_t from, size_t to)
{
	char errstr[1024];
	int step = 0;

	for (;;) {
		size_t nu, first = 0, n_events;
		enum db_status st;

		if (!consumer_db_ensure(c))
			return c->fatal ? FLUSH_FATAL : FLUSH_ABANDONED;
		nu = consumer_updates(c, from, to);
		int64_t tx_started_us = mono_us();
		st = db_apply(c->db, c->opts->group, c->opts->topics, c->b, from, to, c->updates,
		              nu, errstr, sizeof(errstr));
		metric_observe(c->m.tx_seconds, NULL, (double)(mono_us() - tx_started_us) / 1e6);
		switch (st) {
		case DB_OK:
			consumer_db_check_in(c, c->opts->db_check_interval_ms);
			consumer_count_committed(c, from, to);
			c->stats.triggers += db_last_tx(c->db)->triggers;
			c->stats.suppressed += db_last_tx(c->db)->suppressed;
			metric_add(c->m.triggers, NULL, (double)db_last_tx(c->db)->triggers);
			metric_add(c->m.suppressed, NULL, (double)db_last_tx(c->db)->suppressed);
			for (size_t i = 0; i < nu; i++) {
				struct part_state *ps =
				    part_get(c, c->updates[i].topic, c->updates[i].partition);

				ps->next = c->updates[i].next;
			}
			return FLUSH_OK;
		case DB_STALE:
			log_warn("%s; dropping the batch and reading from the stored offsets",
			         errstr);
			return FLUSH_STALE;
		case DB_FATAL:
			log_error("%s", errstr);
			c->fatal = true;
			return FLUSH_FATAL;
		case DB_REJECTED:
			n_events = count_events(c->b, from, to, &first);
			if (n_events == 0) {
				log_error("%s, with no event in the transaction", errstr);
				c->fatal = true;
				return FLUSH_FATAL;
			}
			if (n_events == 1) {
				if (!consumer_reject(c, first, errstr))
					return c->fatal ? FLUSH_FATAL : FLUSH_ABANDONED;
				continue;
			}
			log_info("%s; splitting %zu messages to find the row", errstr, to - from);
			size_t mid = from + (to - from) / 2;
			enum flush_result r = consumer_apply(c, from, mid);

			if (r != FLUSH_OK)
				return r;
			return consumer_apply(c, mid, to);
		case DB_GATED:
			/* Nothing was wrong with the batch: wait for its dead letters, retry. */
			if (!c->batch_gated)
				c->slow_batches += !c->gate_failed;
			c->batch_gated = true;
			if (c->gate_failed || c->slow_batches >= DLQ_SLOW_BATCHES) {
				if (c->drain_first == 0)
					log_info("dead letters %s; the next %d batches wait for "
					         "theirs before the transaction",
					         c->gate_failed ? "failed to be delivered"
					                        : "are slow to be acknowledged",
					         DLQ_DRAIN_FIRST);
				c->drain_first = DLQ_DRAIN_FIRST;
				c->slow_batches = 0;
			}
			if (!consumer_drain(c))
				return c->fatal ? FLUSH_FATAL : FLUSH_ABANDONED;
			continue;
		case DB_RECONNECT:
			c->db_up = false;
			/* fall through */
		case DB_RETRY:
			break;
		}
		int ms = backoff_next(c, &step);

		log_warn("%s; retrying the batch in %d ms", errstr, ms);
		c->stats.db_retries++;
		if (!backoff_sleep(c, ms))
			return FLUSH_ABANDONED;
	}
}

/* Tells Kafka the positions the database now holds, for lag tools. */
static void consumer_commit_kafka(struct consumer *c)
{
	size_t nu = batch_offset_updates(c->b, 0, c->b->n_msgs, c->updates);
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)nu);
	rd_kafka_resp_err_t err;

	for (size_t i = 0; i < nu; i++)
		rd_kafka_topic_partition_list_add(list, c->opts->topics[c->updates[i].topic],
		                                  c->updates[i].partition)
		    ->offset = c->updates[i].next;
	err = rd_kafka_commit(c->rk, list, 1);
	if (err)
		log_debug("committing offsets to kafka: %s", rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Moves every owned partition back to its stored offset: after a stale or
 * abandoned batch, what was read past it must be read again.
 */
static void consumer_resync(struct consumer *c)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
	rd_kafka_error_t *error;

	for (int t = 0; t < CHANNEL_MAX; t++)
		for (int32_t p = 0; p < c->n_parts[t]; p++)
			if (c->parts[t][p].owned)
				rd_kafka_topic_partition_list_add(list, c->opts->topics[t], p);
	if (list->cnt > 0 && consumer_position(c, list)) {
		error = rd_kafka_seek_partitions(c->rk, list, 5000);
		if (error) {
			log_warn("seeking to the stored offsets: %s", rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
		} else {
			/* Each partition answers for itself; one that failed keeps the resync. */
			bool all = true;

			for (int i = 0; i < list->cnt; i++) {
				const rd_kafka_topic_partition_t *tp = &list->elems[i];

				if (tp->err) {
					struct log_ctx ctx = {tp->topic, tp->partition, tp->offset,
					                      NULL};

					log_write(LOG_WARN, &ctx,
					          "seeking to the stored offset: %s",
					          rd_kafka_err2str(tp->err));
					all = false;
				}
			}
			c->need_resync = !all;
		}
	} else if (list->cnt == 0) {
		c->need_resync = false;
	}
	rd_kafka_topic_partition_list_destroy(list);
}

/* Adds the committed batch to the metrics: events by channel and outcome, dead letters. */

/* Commits the open batch: dead letters first, then the one transaction. */
static enum flush_result consumer_flush(struct consumer *c)
{
	struct batch *b = c->b;
	enum flush_result r;

	if (b->n_msgs == 0)
		return FLUSH_OK;
	/*
	 * After a fatal error (out of memory adding a message or queueing its
	 * dead letter) the batch may lack a message's dead letter: it must not
	 * commit, not even from the revocation of consumer_close().
	 */
	if (c->fatal)
		return FLUSH_FATAL;
	int64_t t_fill = mono_us();
	bool drained = true;

	c->gate_waited_us = 0;
	c->batch_gated = false;
	if (c->drain_first > 0) {
		c->drain_first--;
		drained = consumer_drain(c);
	}
	r = drained ? consumer_apply(c, 0, b->n_msgs) : c->fatal ? FLUSH_FATAL : FLUSH_ABANDONED;
	/* Slow counts batches in a row that had dead letters to wait for. */
	if (r == FLUSH_OK && c->batch_dead > 0 && !c->batch_gated)
		c->slow_batches = 0;
	if (log_enabled(LOG_DEBUG))
		log_debug("batch of %zu messages: filled in %lld ms, applied in %lld ms, of which "
		          "%lld ms waiting for dead letters (%s)",
		          b->n_msgs, (long long)(t_fill - c->batch_started_us) / 1000,
		          (long long)(mono_us() - t_fill) / 1000,
		          (long long)c->gate_waited_us / 1000,
		          r == FLUSH_OK ? "committed" : "not committed");
	if (r == FLUSH_OK) {
		/* Its messages were counted as they committed (consumer_apply). */
		c->stats.batches++;
		metric_add(c->m.batches, NULL, 1);
		metric_observe(c->m.batch_events, NULL, (double)b->n_msgs);
		consumer_commit_kafka(c);
	} else {
		if (r == FLUSH_STALE) {
			c->stats.stale_batches++;
			metric_add(c->m.stale_batches, NULL, 1);
		}
		c->need_resync = true;
	}
	c->batch_dead = 0;
	batch_reset(c->b);
	return r;
}

/* Copies what a dead letter needs of rkm, message idx of the batch, into its arena. */
static int consumer_keep_source(struct consumer *c, size_t idx, int t,
                                const rd_kafka_message_t *rkm)
{
	struct dlq_source *src = &c->sources[idx];
	/* Byte copies; arena_strndup's NUL after them is never read. */
	const char *key = rkm->key ? arena_strndup(&c->b->arena, rkm->key, rkm->key_len) : NULL;
	const char *value =
	    rkm->payload ? arena_strndup(&c->b->arena, rkm->payload, rkm->len) : NULL;

	if ((rkm->key && key == NULL) || (rkm->payload && value == NULL))
		return -1;
	*src = (struct dlq_source){.topic = c->opts->topics[t],
	                           .partition = rkm->partition,
	                           .offset = rkm->offset,
	                           .key = key,
	                           .key_len = rkm->key_len,
	                           .value = value,
	                           .value_len = rkm->payload ? rkm->len : 0};
	return 0;
}

static void consumer_handle(struct consumer *c, rd_kafka_message_t *rkm)
{
	char errmsg[512];
	struct event ev;
	enum decode_result dr;
	int t = topic_index(c, rd_kafka_topic_name(rkm->rkt));
	struct part_state *ps = t >= 0 ? part_get(c, t, rkm->partition) : NULL;
	size_t idx = c->b->n_msgs;

	/*
	 * A batch that did not commit leaves the fetch positions past the
	 * stored offsets until consumer_resync() moves them back. What comes
	 * meanwhile (the rest of a poll whose rebalance callback failed to
	 * commit, or anything after a failed seek) is read again from there;
	 * in the batch it would carry its partition's stored offset past the
	 * messages in between.
	 */
	if (ps == NULL || !ps->owned || c->need_resync) {
		rd_kafka_message_destroy(rkm);
		return;
	}
	if (idx == 0)
		c->batch_started_us = mono_us();
	arena_reset(&c->decoded);
	dr = decode_event(rkm->payload, rkm->payload ? rkm->len : 0, (enum channel)(t + 1),
	                  now_us(), &c->decoded, &ev, errmsg, sizeof(errmsg));
	if (dr == DECODE_OK) {
		if (batch_add(c->b, t, rkm->partition, rkm->offset, &ev, &c->opts->policy) != 0)
			goto oom;
		c->dead_reason[idx] = 0; /* idx < the batch's capacity: batch_add took it */
	} else {
		struct log_ctx ctx = {rd_kafka_topic_name(rkm->rkt), rkm->partition, rkm->offset,
		                      NULL};

		log_write(LOG_WARN, &ctx, "dead-lettering an invalid event (%s): %s",
		          decode_reason_code(dr), errmsg);
		if (batch_add(c->b, t, rkm->partition, rkm->offset, NULL, &c->opts->policy) != 0 ||
		    dlq_send(c->dlq, rkm, decode_reason_code(dr), errmsg) != 0)
			goto oom;
		c->batch_dead++;
		c->dead_reason[idx] =
		    (uint8_t)((dr < DECODE_RESULT_COUNT ? dr : DECODE_DECODE_ERROR) + 1);
	}
	ps->read = rkm->offset + 1;
	if (!ps->has_origin && ps->next < 0) { /* positioned at an end the broker did not tell */
		ps->has_origin = true;
		ps->origin = rkm->offset;
	}
	/* batch_add recorded the message at idx on both paths. Kept: what may be dead-lettered. */
	if ((c->b->msgs[idx].event >= 0 || c->b->msgs[idx].repeat_of >= 0) &&
	    consumer_keep_source(c, idx, t, rkm) != 0)
		goto oom;
	rd_kafka_message_destroy(rkm);
	return;
oom:
	log_error("out of memory adding a message to the batch");
	rd_kafka_message_destroy(rkm);
	c->fatal = true;
}

static void consumer_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct consumer *c = opaque;
	bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

	c->stats.rebalances++;
	metric_add(c->m.rebalances, NULL, 1);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("assigned %d partitions (%s)", parts->cnt,
		         cooperative ? "cooperative" : "eager");
		c->in_group = true;
		c->assigned_once = true;
		if (!consumer_position(c, parts))
			log_warn("assigning without stored offsets: shutting down or the database "
			         "is unusable");
		if (cooperative)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			aerr = rd_kafka_assign(rk, parts);
	} else {
		log_info("revoked %d partitions (%s)", parts->cnt,
		         cooperative ? "cooperative" : "eager");
		/* A revocation within a rebalance keeps the membership; a lost assignment does not.
		 */
		if (rd_kafka_assignment_lost(rk))
			c->in_group = false;
		/* The batch holds messages of these partitions: commit it while they are ours. */
		if (consumer_flush(c) != FLUSH_OK)
			log_warn("the open batch was not committed; its messages are read again");
		for (int i = 0; i < parts->cnt; i++) {
			int t = topic_index(c, parts->elems[i].topic);
			struct part_state *ps =
			    t >= 0 ? part_get(c, t, parts->elems[i].partition) : NULL;

			if (ps)
				ps->owned = false;
		}
		if (cooperative)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			aerr = rd_kafka_assign(rk, NULL);
	}
	bool failed = error != NULL || aerr != RD_KAFKA_RESP_ERR_NO_ERROR;

	if (error) {
		log_error("rebalance: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (aerr) {
		log_error("rebalance: %s", rd_kafka_err2str(aerr));
	}
	/*
	 * An assignment that librdkafka refused leaves partitions that the group
	 * gave this member unread, and marked owned here: exit, so that a
	 * restart joins again with a consistent state.
	 */
	if (failed && err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
		c->fatal = true;
}

/*
 * librdkafka before 2.3.0 aborts when a cooperative-sticky member is
 * destroyed before its first assignment (its issue 4312), which a replica
 * stopped right after it started would hit. Gives the pending join up to
 * timeout_ms to finish; what it polls meanwhile is read again by the
 * partition's next owner, since nothing is committed.
 */
static void consumer_await_first_assignment(struct consumer *c, int timeout_ms)
{
	char strategy[256];
	size_t size = sizeof(strategy);
	int64_t until = mono_us() + (int64_t)timeout_ms * 1000;

	if (c->assigned_once || rd_kafka_version() >= 0x020300ff ||
	    rd_kafka_conf_get(rd_kafka_conf(c->rk), "partition.assignment.strategy", strategy,
	                      &size) != RD_KAFKA_CONF_OK ||
	    strstr(strategy, "cooperative-sticky") == NULL)
		return;
	log_info("waiting up to %d ms for the first assignment before leaving the group",
	         timeout_ms);
	while (!c->assigned_once && !c->fatal && mono_us() < until) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, 100);

		if (rkm)
			rd_kafka_message_destroy(rkm);
	}
}

/*
 * Leaves the group, serving the final rebalance, for up to timeout_ms:
 * rd_kafka_consumer_close() waits as long as the group coordinator does
 * not answer, and a replica must stop within its grace period even when
 * Kafka is gone. The partitions are then freed by the session timeout.
 */
static void consumer_close(struct consumer *c, int timeout_ms)
{
	rd_kafka_queue_t *rkqu = rd_kafka_queue_new(c->rk);
	rd_kafka_error_t *error = rd_kafka_consumer_close_queue(c->rk, rkqu);
	int64_t until = mono_us() + (int64_t)timeout_ms * 1000;

	if (error) {
		log_warn("closing the consumer: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		rd_kafka_queue_destroy(rkqu);
		return;
	}
	/* Events, not callbacks: serving ops through the callback API here aborts
	 * librdkafka 2.0 when an error op arrives on this queue. */
	while (!rd_kafka_consumer_closed(c->rk) && mono_us() < until) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(rkqu, 100);

		if (ev == NULL)
			continue;
		if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
			consumer_rebalance(c->rk, rd_kafka_event_error(ev),
			                   rd_kafka_event_topic_partition_list(ev), c);
		else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_ERROR)
			log_debug("while closing: %s", rd_kafka_event_error_string(ev));
		rd_kafka_event_destroy(ev);
	}
	if (!rd_kafka_consumer_closed(c->rk))
		log_warn("the group coordinator did not answer within %d ms; leaving without it",
		         timeout_ms);
	rd_kafka_queue_destroy(rkqu);
}

static void consumer_report(struct consumer *c, bool force)
{
	int64_t now = mono_us();

	if (!force && now < c->next_report_us)
		return;
	c->next_report_us = now + 10 * 1000000LL;
	log_info("consumed=%llu accepted=%llu duplicates=%llu dead_lettered=%llu batches=%llu "
	         "db_retries=%llu triggers=%llu suppressed=%llu fetch_wakeups=%llu",
	         c->stats.consumed, c->stats.accepted, c->stats.duplicates, c->stats.dead_lettered,
	         c->stats.batches, c->stats.db_retries, c->stats.triggers, c->stats.suppressed,
	         c->stats.fetch_wakeups);
}

/* librdkafka's statistics, every statistics.interval.ms: the lag of each partition. */
static int consumer_on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
	struct consumer *c = opaque;
	struct metrics_lag *lag = NULL;
	struct metric_sample *samples = NULL;
	char(*partitions)[12] = NULL;
	size_t n = 0;

	(void)rk;
	if (c->m.lag == NULL)
		return 0;
	if (metrics_parse_lag(json, json_len, &lag, &n) != 0) {
		log_debug("cannot read the consumer lag from librdkafka's statistics");
		return 0;
	}
	samples = calloc(n ? n : 1, sizeof(*samples));
	partitions = calloc(n ? n : 1, sizeof(*partitions));
	if (samples && partitions) {
		size_t kept = 0;

		for (size_t i = 0; i < n; i++) {
			/*
			 * The statistics list every partition of the topics: one taken
			 * away keeps the lag it had then, for good, and the group's
			 * lag would never reach 0. Its owner reports it.
			 */
			int t = topic_index(c, lag[i].topic);
			if (t < 0 || lag[i].partition < 0 || lag[i].partition >= c->n_parts[t] ||
			    !c->parts[t][lag[i].partition].owned)
				continue;
			snprintf(partitions[kept], sizeof(partitions[kept]), "%d",
			         (int)lag[i].partition);
			samples[kept].values[0] = lag[i].topic;
			samples[kept].values[1] = partitions[kept];
			samples[kept].value = (double)lag[i].lag;
			kept++;
		}
		metric_replace_owned(c->m.lag, c, samples, kept);
	}
	free(partitions);
	free(samples);
	free(lag);
	return 0; /* librdkafka frees json */
}

static void consumer_register_metrics(struct consumer *c, struct metrics *reg)
{
	static const double batch_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
	static const double tx_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	                                   0.25,  0.5,    1,     2.5,  5,     10};
	struct consumer_metrics *m = &c->m;

	m->events = metrics_counter(reg, "feedback_events_total",
	                            "Consumed messages by channel and outcome, counted when the "
	                            "transaction that holds them commits.",
	                            "channel,outcome");
	m->dead_letters =
	    metrics_counter(reg, "feedback_dead_letters_total",
	                    "Messages sent to the dead-letter topic, by reason.", "reason");
	m->batches = metrics_counter(reg, "feedback_batches_total", "Committed batches.", NULL);
	m->batch_events =
	    metrics_histogram(reg, "feedback_batch_events", "Messages per committed batch.", NULL,
	                      batch_bounds, sizeof(batch_bounds) / sizeof(*batch_bounds));
	m->tx_seconds = metrics_histogram(reg, "feedback_transaction_duration_seconds",
	                                  "Duration of one database transaction, whatever its "
	                                  "outcome.",
	                                  NULL, tx_bounds, sizeof(tx_bounds) / sizeof(*tx_bounds));
	m->db_retries = metrics_counter(reg, "feedback_db_retries_total",
	                                "Database attempts that failed and were retried.", NULL);
	m->stale_batches = metrics_counter(
	    reg, "feedback_stale_batches_total",
	    "Batches dropped because another consumer moved the stored offsets.", NULL);
	m->rebalances =
	    metrics_counter(reg, "feedback_rebalances_total",
	                    "Consumer group rebalance events (assign and revoke).", NULL);
	m->lag = metrics_gauge(reg, "feedback_consumer_lag_messages",
	                       "Messages between the committed offset and the end of each "
	                       "assigned partition, from librdkafka's statistics.",
	                       "topic,partition");
	m->triggers = metrics_counter(reg, "feedback_recovery_triggers_queued_total",
	                              "Recovery triggers queued in the outbox.", NULL);
	m->suppressed =
	    metrics_counter(reg, "feedback_recovery_suppressed_total",
	                    "Negative events kept from triggering by the cooldown.", NULL);
	/* Every series exists from the start, so rates and alerts see the first event. */
	for (int t = 0; t < CHANNEL_MAX; t++)
		for (int o = 0; o < 3; o++) {
			const char *labels[] = {channel_name((enum channel)(t + 1)),
			                        outcome_names[o]};

			metric_touch(m->events, labels);
		}
	for (size_t r = 1; r < N_REASONS; r++) {
		const char *labels[] = {reason_name(r)};

		metric_touch(m->dead_letters, labels);
	}
}

bool consumer_live(struct consumer *c, int64_t timeout_ms, char *detail, size_t detail_size)
{
	int64_t idle_ms = (mono_us() - atomic_load(&c->progress_us)) / 1000;

	if (idle_ms <= timeout_ms) {
		snprintf(detail, detail_size, "ok");
		return true;
	}
	snprintf(detail, detail_size, "the poll loop has made no progress for %lld ms",
	         (long long)idle_ms);
	return false;
}

bool consumer_ready(struct consumer *c, char *detail, size_t detail_size)
{
	if (atomic_load(&c->ready)) {
		snprintf(detail, detail_size, "ready");
		return true;
	}
	snprintf(detail, detail_size,
	         "not ready: waiting for postgresql or the consumer group, or for longer than "
	         "max.poll.interval.ms without polling kafka");
	return false;
}

/* max.poll.interval.ms of the consumer, in microseconds. */
static int64_t consumer_max_poll_us(rd_kafka_t *rk)
{
	char value[32];
	size_t size = sizeof(value);

	if (rd_kafka_conf_get(rd_kafka_conf(rk), "max.poll.interval.ms", value, &size) !=
	    RD_KAFKA_CONF_OK)
		return 300000 * 1000LL; /* librdkafka's default */
	return strtoll(value, NULL, 10) * 1000;
}

struct consumer *consumer_new(const struct consumer_opts *opts, rd_kafka_conf_t *consumer_conf,
                              rd_kafka_conf_t *producer_conf, char *errstr, size_t errstr_size)
{
	struct consumer *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	c->opts = opts;
	atomic_init(&c->progress_us, mono_us());
	atomic_init(&c->ready, false);
	consumer_register_metrics(c, opts->metrics);
	arena_init(&c->decoded, 0);
	c->b = batch_new((size_t)opts->batch_max_events);
	c->sources = calloc((size_t)opts->batch_max_events, sizeof(*c->sources));
	c->dead_reason = calloc((size_t)opts->batch_max_events, sizeof(*c->dead_reason));
	c->updates = calloc((size_t)opts->batch_max_events, sizeof(*c->updates));
	c->db = db_new(opts->conninfo, opts->schema);
	if (!c->b || !c->sources || !c->dead_reason || !c->updates || !c->db) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	db_set_recovery(c->db, opts->recovery);
	db_set_idle_timeout(c->db, opts->idle_tx_timeout_ms);
	if (opts->synchronous_commit &&
	    db_set_synchronous_commit(c->db, opts->synchronous_commit) != 0) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	c->dlq = dlq_new(producer_conf, opts->dlq_topic, errstr, errstr_size);
	producer_conf = NULL;
	if (c->dlq == NULL)
		goto fail;
	db_set_commit_gate(c->db, consumer_dead_letters_safe, c);
	if (rd_kafka_conf_set(consumer_conf, "group.id", opts->group, errstr, errstr_size) ||
	    rd_kafka_conf_set(consumer_conf, "enable.auto.commit", "false", errstr, errstr_size) ||
	    rd_kafka_conf_set(consumer_conf, "enable.auto.offset.store", "false", errstr,
	                      errstr_size))
		goto fail;
	rd_kafka_conf_set_rebalance_cb(consumer_conf, consumer_rebalance);
	rd_kafka_conf_set_stats_cb(consumer_conf, consumer_on_stats);
	rd_kafka_conf_set_opaque(consumer_conf, c);
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, consumer_conf, errstr, errstr_size);
	if (c->rk == NULL)
		goto fail;
	consumer_conf = NULL;
	rd_kafka_poll_set_consumer(c->rk);
	c->max_poll_us = consumer_max_poll_us(c->rk);
	c->polled_us = mono_us();
	return c;
fail:
	if (consumer_conf)
		rd_kafka_conf_destroy(consumer_conf);
	if (producer_conf)
		rd_kafka_conf_destroy(producer_conf);
	consumer_destroy(c);
	return NULL;
}

/*
 * librdkafka before 2.1 stops fetching while its queue holds more than
 * queued.max.messages.kbytes, and looks at the queue again only after up
 * to a second (what 2.1 made fetch.queue.backoff.ms). A consumer that
 * empties the queue sooner waits idle with a backlog on the broker: with
 * a few MiB of queue, a quarter of every second. When the queue is empty
 * although the last fetch showed more messages than were taken, seeking
 * one such partition to its own position wakes the fetcher. Nothing is
 * skipped or read twice: the position is the offset after the last
 * message taken. Partitions take turns, since each broker has a fetcher.
 */
static void consumer_wake_fetcher(struct consumer *c)
{
	int64_t now = mono_us();
	int total = 0;

	/* Positions are about to move back to the stored offsets. */
	if (c->need_resync || now < c->next_wake_us)
		return;
	c->next_wake_us = now + WAKE_INTERVAL_US;
	for (int t = 0; t < CHANNEL_MAX; t++)
		total += c->n_parts[t];
	for (int k = 0; k < total; k++) {
		int i = (c->wake_cursor + k) % total, t = 0;
		struct part_state *ps;
		int64_t lo, hi;
		rd_kafka_topic_partition_list_t *list;
		rd_kafka_error_t *error;

		while (i >= c->n_parts[t])
			i -= c->n_parts[t++];
		ps = &c->parts[t][i];
		/* Once per position: past a transaction marker, or an open transaction's
		 * messages, the high watermark stays ahead of what can be read. */
		if (!ps->owned || ps->read < 0 || ps->read == ps->woke_at ||
		    rd_kafka_get_watermark_offsets(c->rk, c->opts->topics[t], i, &lo, &hi) != 0 ||
		    hi <= ps->read)
			continue;
		ps->woke_at = ps->read;
		list = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(list, c->opts->topics[t], i)->offset = ps->read;
		error = rd_kafka_seek_partitions(c->rk, list, 0);
		if (error)
			rd_kafka_error_destroy(error);
		rd_kafka_topic_partition_list_destroy(list);
		c->stats.fetch_wakeups++;
		c->wake_cursor = (c->wake_cursor + k + 1) % total;
		return;
	}
}

int consumer_run(struct consumer *c, atomic_int *stop)
{
	rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(CHANNEL_MAX);
	rd_kafka_resp_err_t err;
	int rc = 0;

	c->stop = stop;
	srand((unsigned)(now_us() ^ getpid()));
	for (int t = 0; t < CHANNEL_MAX; t++)
		rd_kafka_topic_partition_list_add(subs, c->opts->topics[t], RD_KAFKA_PARTITION_UA);
	if (!consumer_db_ensure(c)) {
		rd_kafka_topic_partition_list_destroy(subs);
		return c->fatal ? -1 : 0;
	}
	err = rd_kafka_subscribe(c->rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (err) {
		log_error("subscribing: %s", rd_kafka_err2str(err));
		return -1;
	}
	log_info("consuming %s, %s, %s, %s as group \"%s\"", c->opts->topics[0], c->opts->topics[1],
	         c->opts->topics[2], c->opts->topics[3], c->opts->group);
	while (!*stop && !c->fatal) {
		int timeout = 100;
		rd_kafka_message_t *rkm;

		consumer_publish_health(c);
		if (c->need_resync)
			consumer_resync(c);
		if (c->b->n_msgs > 0) {
			int64_t left =
			    c->batch_started_us + c->opts->batch_linger_ms * 1000LL - mono_us();

			timeout = left <= 0 ? 0 : (int)(left / 1000) + 1;
			if (timeout > 100)
				timeout = 100;
		}
		rkm = rd_kafka_consumer_poll(c->rk, c->streaming ? 0 : timeout);
		if (rkm == NULL && c->streaming) {
			consumer_wake_fetcher(c);
			rkm = rd_kafka_consumer_poll(c->rk, timeout);
		}
		c->polled_us = mono_us();
		c->streaming = rkm != NULL;
		if (rkm && rkm->err) {
			if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				log_warn("kafka: %s", rd_kafka_message_errstr(rkm));
			if (rkm->err == RD_KAFKA_RESP_ERR__FATAL) {
				char reason[256];

				rd_kafka_fatal_error(c->rk, reason, sizeof(reason));
				log_error("fatal kafka error: %s", reason);
				c->fatal = true;
			}
			rd_kafka_message_destroy(rkm);
		} else if (rkm) {
			consumer_handle(c, rkm);
		}
		if (c->b->n_msgs > 0 &&
		    (batch_full(c->b) ||
		     mono_us() >= c->batch_started_us + c->opts->batch_linger_ms * 1000LL)) {
			if (consumer_flush(c) == FLUSH_FATAL)
				break;
		}
		consumer_report(c, false);
		if (c->b->n_msgs == 0 && c->assigned_once)
			consumer_db_check(c);
		if (c->db_up && c->b->n_msgs == 0 && mono_us() >= c->next_maintain_us)
			consumer_db_maintain(c);
	}
	if (c->fatal)
		rc = -1;
	/* Finish the open batch if the database takes it now; otherwise it is read again. */
	if (!c->fatal && c->b->n_msgs > 0)
		consumer_flush(c);
	consumer_await_first_assignment(c, 10000);
	log_info("leaving the consumer group");
	c->in_group = false;
	consumer_publish_health(c);
	consumer_close(c, 10000);
	consumer_report(c, true);
	return rc;
}

const struct consumer_stats *consumer_stats(const struct consumer *c)
{
	return &c->stats;
}

void consumer_destroy(struct consumer *c)
{
	if (c == NULL)
		return;
	/* consumer_run() closed it already, or gave up waiting for the coordinator. */
	if (c->rk)
		rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	dlq_destroy(c->dlq);
	batch_destroy(c->b);
	arena_release(&c->decoded);
	free(c->sources);
	free(c->dead_reason);
	free(c->updates);
	for (int t = 0; t < CHANNEL_MAX; t++)
		free(c->parts[t]);
	db_destroy(c->db);
	free(c);
}
