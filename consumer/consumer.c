#include "consumer.h"

#include "batch.h"
#include "db.h"
#include "decode.h"
#include "dlq.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What this consumer knows of one partition. */
struct part_state {
	bool owned;
	int64_t next; /* stored next offset in PostgreSQL; -1: none stored */
};

struct consumer {
	const struct consumer_opts *opts;
	rd_kafka_t *rk;
	struct dlq *dlq;
	struct db *db;
	struct batch *b;
	rd_kafka_message_t **held; /* the messages of the batch, by message index */
	struct offset_update *updates;
	struct part_state *parts[CHANNEL_MAX];
	int32_t n_parts[CHANNEL_MAX];
	int64_t batch_started_us;
	size_t batch_dead; /* dead letters of the open batch */
	bool db_up;
	bool need_resync; /* positions of kafka and of the database may differ */
	bool fatal;
	volatile sig_atomic_t *stop;
	struct consumer_stats stats;
	int64_t next_report_us;
	int64_t next_maintain_us;
};

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

/* Sleeps up to ms in short steps; false when stop was requested. */
static bool backoff_sleep(struct consumer *c, int ms)
{
	int64_t until = mono_us() + (int64_t)ms * 1000;

	while (!*c->stop) {
		int64_t left = until - mono_us();
		struct timespec ts;

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

/* Brings the database connection up, retrying until it works or stop. */
static bool consumer_db_ensure(struct consumer *c)
{
	char errstr[512];
	int step = 0;

	while (!c->db_up) {
		enum db_status st = db_connect(c->db, errstr, sizeof(errstr));

		if (st == DB_OK) {
			c->db_up = true;
			log_info("connected to postgresql, schema \"%s\"", c->opts->schema);
			consumer_db_maintain(c);
			break;
		}
		if (st == DB_FATAL) {
			log_error("%s", errstr);
			c->fatal = true;
			return false;
		}
		int ms = backoff_next(c, &step);

		log_warn("%s; retrying in %d ms", errstr, ms);
		c->stats.db_retries++;
		if (!backoff_sleep(c, ms))
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
 * Sets each partition of list to its stored offset (or the configured start)
 * and records it as owned. False when stop or a fatal error came first.
 */
static bool consumer_position(struct consumer *c, rd_kafka_topic_partition_list_t *list)
{
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
		if (next >= 0)
			tp->offset = next;
		else
			tp->offset =
			    c->opts->start_latest ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
	}
	return true;
}

static void consumer_release_held(struct consumer *c)
{
	for (size_t i = 0; i < c->b->n_msgs; i++) {
		rd_kafka_message_destroy(c->held[i]);
		c->held[i] = NULL;
	}
	batch_reset(c->b);
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

/* Dead-letters message i, which the database refused alone. */
static bool consumer_reject(struct consumer *c, size_t i, const char *why)
{
	const rd_kafka_message_t *rkm = c->held[i];
	struct log_ctx ctx = {rd_kafka_topic_name(rkm->rkt), rkm->partition, rkm->offset,
	                      c->b->events[c->b->msgs[i].event].ev.event_id};

	log_write(LOG_WARN, &ctx, "postgresql refused the event, dead-lettering it: %s", why);
	if (dlq_send(c->dlq, rkm, "db_rejected", why) != 0) {
		log_error("out of memory queueing a dead letter");
		c->fatal = true;
		return false;
	}
	if (dlq_drain(c->dlq, c->stop) != 0)
		return false;
	c->b->msgs[i].event = -1;
	c->batch_dead++;
	return true;
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
		st = db_apply(c->db, c->opts->group, c->opts->topics, c->b, from, to, c->updates,
		              nu, errstr, sizeof(errstr));
		switch (st) {
		case DB_OK:
			c->stats.triggers += db_last_tx(c->db)->triggers;
			c->stats.suppressed += db_last_tx(c->db)->suppressed;
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
			c->need_resync = false;
		}
	} else if (list->cnt == 0) {
		c->need_resync = false;
	}
	rd_kafka_topic_partition_list_destroy(list);
}

/* Commits the open batch: dead letters first, then the one transaction. */
static enum flush_result consumer_flush(struct consumer *c)
{
	struct batch *b = c->b;
	enum flush_result r;
	unsigned long long fresh = 0;

	if (b->n_msgs == 0)
		return FLUSH_OK;
	/* A dead letter must be safe in Kafka before its offset moves past it. */
	if (dlq_drain(c->dlq, c->stop) != 0)
		r = FLUSH_ABANDONED;
	else
		r = consumer_apply(c, 0, b->n_msgs);
	if (r == FLUSH_OK) {
		for (size_t i = 0; i < b->n_msgs; i++)
			if (b->msgs[i].event >= 0)
				fresh += b->events[b->msgs[i].event].is_new;
		/* Counted once committed: an abandoned batch is read and counted again. */
		c->stats.consumed += b->n_msgs;
		c->stats.accepted += fresh;
		c->stats.dead_lettered += c->batch_dead;
		c->stats.duplicates += b->n_msgs - c->batch_dead - fresh;
		c->stats.batches++;
		consumer_commit_kafka(c);
	} else {
		if (r == FLUSH_STALE)
			c->stats.stale_batches++;
		c->need_resync = true;
	}
	c->batch_dead = 0;
	consumer_release_held(c);
	return r;
}

static void consumer_handle(struct consumer *c, rd_kafka_message_t *rkm)
{
	char errmsg[512];
	struct event ev;
	enum decode_result dr;
	int t = topic_index(c, rd_kafka_topic_name(rkm->rkt));
	struct part_state *ps = t >= 0 ? part_get(c, t, rkm->partition) : NULL;
	size_t idx = c->b->n_msgs;

	if (ps == NULL || !ps->owned) {
		rd_kafka_message_destroy(rkm);
		return;
	}
	if (idx == 0)
		c->batch_started_us = mono_us();
	dr = decode_event(rkm->payload, rkm->payload ? rkm->len : 0, (enum channel)(t + 1),
	                  now_us(), &c->b->arena, &ev, errmsg, sizeof(errmsg));
	if (dr == DECODE_OK) {
		if (batch_add(c->b, t, rkm->partition, rkm->offset, &ev, &c->opts->policy) != 0)
			goto oom;
	} else {
		struct log_ctx ctx = {rd_kafka_topic_name(rkm->rkt), rkm->partition, rkm->offset,
		                      NULL};

		log_write(LOG_WARN, &ctx, "dead-lettering an invalid event (%s): %s",
		          decode_reason_code(dr), errmsg);
		if (batch_add(c->b, t, rkm->partition, rkm->offset, NULL, &c->opts->policy) != 0 ||
		    dlq_send(c->dlq, rkm, decode_reason_code(dr), errmsg) != 0)
			goto oom;
		c->batch_dead++;
	}
	c->held[idx] = rkm;
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
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("assigned %d partitions (%s)", parts->cnt,
		         cooperative ? "cooperative" : "eager");
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
	if (error) {
		log_error("rebalance: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (aerr) {
		log_error("rebalance: %s", rd_kafka_err2str(aerr));
	}
}

static void consumer_report(struct consumer *c, bool force)
{
	int64_t now = mono_us();

	if (!force && now < c->next_report_us)
		return;
	c->next_report_us = now + 10 * 1000000LL;
	log_info("consumed=%llu accepted=%llu duplicates=%llu dead_lettered=%llu batches=%llu "
	         "db_retries=%llu triggers=%llu suppressed=%llu",
	         c->stats.consumed, c->stats.accepted, c->stats.duplicates, c->stats.dead_lettered,
	         c->stats.batches, c->stats.db_retries, c->stats.triggers, c->stats.suppressed);
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
	c->b = batch_new((size_t)opts->batch_max_events);
	c->held = calloc((size_t)opts->batch_max_events, sizeof(*c->held));
	c->updates = calloc((size_t)opts->batch_max_events, sizeof(*c->updates));
	c->db = db_new(opts->conninfo, opts->schema);
	if (!c->b || !c->held || !c->updates || !c->db) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	db_set_recovery(c->db, opts->recovery);
	c->dlq = dlq_new(producer_conf, opts->dlq_topic, errstr, errstr_size);
	producer_conf = NULL;
	if (c->dlq == NULL)
		goto fail;
	if (rd_kafka_conf_set(consumer_conf, "group.id", opts->group, errstr, errstr_size) ||
	    rd_kafka_conf_set(consumer_conf, "enable.auto.commit", "false", errstr, errstr_size) ||
	    rd_kafka_conf_set(consumer_conf, "enable.auto.offset.store", "false", errstr,
	                      errstr_size))
		goto fail;
	rd_kafka_conf_set_rebalance_cb(consumer_conf, consumer_rebalance);
	rd_kafka_conf_set_opaque(consumer_conf, c);
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, consumer_conf, errstr, errstr_size);
	if (c->rk == NULL)
		goto fail;
	consumer_conf = NULL;
	rd_kafka_poll_set_consumer(c->rk);
	return c;
fail:
	if (consumer_conf)
		rd_kafka_conf_destroy(consumer_conf);
	if (producer_conf)
		rd_kafka_conf_destroy(producer_conf);
	consumer_destroy(c);
	return NULL;
}

int consumer_run(struct consumer *c, volatile sig_atomic_t *stop)
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

		if (c->need_resync)
			consumer_resync(c);
		if (c->b->n_msgs > 0) {
			int64_t left =
			    c->batch_started_us + c->opts->batch_linger_ms * 1000LL - mono_us();

			timeout = left <= 0 ? 0 : (int)(left / 1000) + 1;
			if (timeout > 100)
				timeout = 100;
		}
		rkm = rd_kafka_consumer_poll(c->rk, timeout);
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
		if (c->db_up && c->b->n_msgs == 0 && mono_us() >= c->next_maintain_us)
			consumer_db_maintain(c);
	}
	if (c->fatal)
		rc = -1;
	/* Finish the open batch if the database takes it now; otherwise it is read again. */
	if (!c->fatal && c->b->n_msgs > 0)
		consumer_flush(c);
	log_info("leaving the consumer group");
	err = rd_kafka_consumer_close(c->rk);
	if (err)
		log_warn("closing the consumer: %s", rd_kafka_err2str(err));
	consumer_release_held(c);
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
	if (c->rk)
		rd_kafka_destroy(c->rk);
	dlq_destroy(c->dlq);
	if (c->b)
		consumer_release_held(c);
	batch_destroy(c->b);
	free(c->held);
	free(c->updates);
	for (int t = 0; t < CHANNEL_MAX; t++)
		free(c->parts[t]);
	db_destroy(c->db);
	free(c);
}
