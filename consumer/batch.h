/*
 * batch.h - the messages gathered between two database transactions.
 *
 * Every consumed message is recorded, accepted or not, so that offsets
 * advance past dead-lettered ones too. Accepted events' strings live in
 * the batch's arena. A batch is applied whole, or split into message
 * ranges [from, to) when the database rejects one row.
 */
#ifndef FC_BATCH_H
#define FC_BATCH_H

#include "arena.h"
#include "event.h"
#include "kpi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct batch_event {
	struct event ev;
	struct kpi_counts counts;
	int64_t bucket;            /* kpi_bucket(ev.occurred_at_us) */
	unsigned negative_reasons; /* KPI_NEG_* */
	bool is_new;               /* set once the ledger accepted it */
};

struct batch_msg {
	int topic; /* index into the consumer's topic list */
	int32_t partition;
	int64_t offset;
	int32_t event; /* index into events, or -1: dead-lettered or a repeat within the batch */
	int32_t repeat_of; /* a repeat within the batch: the event it repeats; otherwise -1 */
};

struct offset_update {
	int topic;
	int32_t partition;
	int64_t expected; /* the stored next offset this consumer read from; -1: none stored */
	int64_t next;     /* last offset of the range + 1 */
};

/* A sum of counts under one aggregate key. */
struct agg_row {
	int64_t bucket;
	enum channel channel;
	const char *agent_id; /* NULL in channel rows */
	struct kpi_counts counts;
};

struct batch {
	struct arena arena; /* events' strings, and what the consumer keeps of messages */
	struct batch_msg *msgs;
	size_t n_msgs, cap_msgs;
	struct batch_event *events;
	size_t n_events, cap_events;
	struct id_set *ids; /* event ids of this batch, for repeats within it */
};

/* A batch for up to max_msgs messages; NULL when out of memory. */
struct batch *batch_new(size_t max_msgs);
void batch_destroy(struct batch *b);
/* Empties b for reuse; memory handed out by its arena becomes invalid. */
void batch_reset(struct batch *b);
bool batch_full(const struct batch *b);

/*
 * Records a consumed message. With ev non-NULL it is an accepted event:
 * its strings are copied into b->arena (ev's may go after the call), and
 * its counts, bucket and negative reasons are computed under policy p. An
 * event id already in the batch is recorded as a message without an event
 * (it counts once) that names the event it repeats (repeat_of).
 * Returns 0, or -1 when out of memory (b unchanged).
 */
int batch_add(struct batch *b, int topic, int32_t partition, int64_t offset, const struct event *ev,
              const struct kpi_policy *p);

/*
 * Fills out (room for b->n_msgs entries) with one update per (topic,
 * partition) among messages [from, to): next = its last offset + 1,
 * expected = -1 (the caller knows the stored position). Sorted by topic
 * then partition, the order in which offset rows are locked. Returns the
 * number of updates.
 */
size_t batch_offset_updates(const struct batch *b, size_t from, size_t to,
                            struct offset_update *out);

/*
 * Combines the events of messages [from, to) whose is_new is set into
 * channel rows keyed (bucket, channel) and agent rows keyed (bucket,
 * agent_id, channel) for events with an agent. Rows come sorted by key
 * (bucket, then channel; bucket, agent_id by strcmp, channel): every writer
 * locks aggregate rows in this one order, so concurrent replicas cannot
 * deadlock. Rows live in arena a, not in the batch's: a transaction
 * retried after a deadlock combines again, and the caller's arena is
 * reset each time. Returns 0, or -1 when out of memory.
 */
int batch_combine(struct batch *b, struct arena *a, size_t from, size_t to,
                  struct agg_row **channel_rows, size_t *n_channel, struct agg_row **agent_rows,
                  size_t *n_agent);

#endif
