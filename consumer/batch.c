#include "batch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The event ids of the current batch: open addressing with linear probing,
 * at most half full. A slot belongs to the current batch only while its
 * generation matches, so a reset bumps one counter instead of clearing a
 * table that may be far larger than the batch that used it.
 */
struct id_slot {
	const char *key;
	uint32_t gen;
	int32_t event; /* index into the batch's events */
};

struct id_set {
	struct id_slot *slots;
	size_t mask;
	uint32_t gen;
};

static uint64_t id_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	/* FNV-1a mixes its high bits best; the table indexes by the low ones. */
	return h ^ (h >> 32);
}

static void id_set_destroy(struct id_set *set)
{
	if (!set)
		return;
	free(set->slots);
	free(set);
}

static struct id_set *id_set_new(size_t max_keys)
{
	struct id_set *set = NULL;
	size_t n_slots = 16;
	bool ok = false;

	if (max_keys > SIZE_MAX / 4 / sizeof(struct id_slot))
		return NULL;
	while (n_slots < 2 * max_keys)
		n_slots <<= 1;
	set = calloc(1, sizeof(*set));
	if (!set)
		goto out;
	set->slots = calloc(n_slots, sizeof(*set->slots));
	if (!set->slots)
		goto out;
	set->mask = n_slots - 1;
	set->gen = 1;
	ok = true;
out:
	if (!ok) {
		id_set_destroy(set);
		set = NULL;
	}
	return set;
}

static void id_set_reset(struct id_set *set)
{
	if (++set->gen == 0) {
		memset(set->slots, 0, (set->mask + 1) * sizeof(*set->slots));
		set->gen = 1;
	}
}

/*
 * The slot of key: its own when present (*present), otherwise the free one
 * where it belongs, which the caller claims (gen, key, event) or leaves
 * free; it keeps the set below half full.
 */
static struct id_slot *id_set_slot(struct id_set *set, const char *key, bool *present)
{
	size_t i = (size_t)id_hash(key) & set->mask;

	while (set->slots[i].gen == set->gen) {
		if (strcmp(set->slots[i].key, key) == 0) {
			*present = true;
			return &set->slots[i];
		}
		i = (i + 1) & set->mask;
	}
	*present = false;
	return &set->slots[i];
}

/* s in a, or the literal "" for an empty s; NULL when out of memory. */
static const char *keep_string(struct arena *a, const char *s)
{
	return *s ? arena_strndup(a, s, strlen(s)) : "";
}

/*
 * Points ev's strings at copies in a: the decoded message they came from
 * lives only until the next one is decoded. 0, or -1 when out of memory.
 */
static int keep_strings(struct arena *a, struct event *ev)
{
	const char **const fields[] = {&ev->event_id,       &ev->customer_id, &ev->agent_id,
	                               &ev->interaction_id, &ev->comment,     &ev->locale};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		*fields[i] = keep_string(a, *fields[i]);
		if (*fields[i] == NULL)
			return -1;
	}
	return 0;
}

struct batch *batch_new(size_t max_msgs)
{
	struct batch *b = NULL;
	bool ok = false;
	/* calloc(0) may return NULL, which would read as out of memory. */
	size_t cap = max_msgs ? max_msgs : 1;

	/* Message event indexes are int32_t; agg_row is the largest per-event array. */
	if (max_msgs > INT32_MAX || cap > SIZE_MAX / sizeof(struct agg_row))
		return NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		goto out;
	arena_init(&b->arena, 0);
	b->msgs = calloc(cap, sizeof(*b->msgs));
	b->events = calloc(cap, sizeof(*b->events));
	b->ids = id_set_new(cap);
	if (!b->msgs || !b->events || !b->ids)
		goto out;
	b->cap_msgs = max_msgs;
	b->cap_events = max_msgs;
	ok = true;
out:
	if (!ok) {
		batch_destroy(b);
		b = NULL;
	}
	return b;
}

void batch_destroy(struct batch *b)
{
	if (!b)
		return;
	arena_release(&b->arena);
	id_set_destroy(b->ids);
	free(b->events);
	free(b->msgs);
	free(b);
}

void batch_reset(struct batch *b)
{
	b->n_msgs = 0;
	b->n_events = 0;
	arena_reset(&b->arena);
	id_set_reset(b->ids);
}

bool batch_full(const struct batch *b)
{
	return b->n_msgs == b->cap_msgs;
}

int batch_add(struct batch *b, int topic, int32_t partition, int64_t offset, const struct event *ev,
              const struct kpi_policy *p)
{
	struct batch_msg *m;

	/* Every array is sized for cap_msgs up front, so a full batch is the only failure. */
	if (b->n_msgs == b->cap_msgs || b->n_events == b->cap_events)
		return -1;
	m = &b->msgs[b->n_msgs];
	m->topic = topic;
	m->partition = partition;
	m->offset = offset;
	m->event = -1;
	m->repeat_of = -1;
	bool present = false;
	struct id_slot *slot = ev ? id_set_slot(b->ids, ev->event_id, &present) : NULL;
	if (present) {
		m->repeat_of = slot->event;
	} else if (slot) {
		struct batch_event *be = &b->events[b->n_events];

		be->ev = *ev;
		if (keep_strings(&b->arena, &be->ev) != 0)
			return -1;
		slot->gen = b->ids->gen;
		slot->key = be->ev.event_id;
		slot->event = (int32_t)b->n_events;
		kpi_count_event(ev, p, &be->counts);
		be->bucket = kpi_bucket(ev->occurred_at_us);
		be->negative_reasons = kpi_negative_reasons(ev, p);
		be->is_new = false;
		m->event = (int32_t)b->n_events++;
	}
	b->n_msgs++;
	return 0;
}

static int offset_update_cmp(const void *pa, const void *pb)
{
	const struct offset_update *a = pa, *b = pb;

	if (a->topic != b->topic)
		return a->topic < b->topic ? -1 : 1;
	if (a->partition != b->partition)
		return a->partition < b->partition ? -1 : 1;
	return 0;
}

size_t batch_offset_updates(const struct batch *b, size_t from, size_t to,
                            struct offset_update *out)
{
	size_t n = 0, last = 0;

	if (to > b->n_msgs)
		to = b->n_msgs;
	if (from >= to)
		return 0;

	/*
	 * out doubles as the sort buffer. A consumer fetches partition by
	 * partition, so folding neighbours first usually leaves little to sort.
	 */
	for (size_t i = from; i < to; i++) {
		const struct batch_msg *m = &b->msgs[i];
		struct offset_update u = {
		    .topic = m->topic,
		    .partition = m->partition,
		    .expected = -1,
		    .next = m->offset + 1,
		};

		if (n > 0 && offset_update_cmp(&out[n - 1], &u) == 0) {
			if (u.next > out[n - 1].next)
				out[n - 1].next = u.next;
		} else {
			out[n++] = u;
		}
	}
	qsort(out, n, sizeof(*out), offset_update_cmp);

	for (size_t i = 1; i < n; i++) {
		if (offset_update_cmp(&out[last], &out[i]) == 0) {
			if (out[i].next > out[last].next)
				out[last].next = out[i].next;
		} else {
			out[++last] = out[i];
		}
	}
	return last + 1;
}

typedef int (*event_cmp_fn)(const void *, const void *);

static int channel_key_cmp(const void *pa, const void *pb)
{
	const struct batch_event *a = *(const struct batch_event *const *)pa;
	const struct batch_event *b = *(const struct batch_event *const *)pb;

	if (a->bucket != b->bucket)
		return a->bucket < b->bucket ? -1 : 1;
	if (a->ev.channel != b->ev.channel)
		return a->ev.channel < b->ev.channel ? -1 : 1;
	return 0;
}

static int agent_key_cmp(const void *pa, const void *pb)
{
	const struct batch_event *a = *(const struct batch_event *const *)pa;
	const struct batch_event *b = *(const struct batch_event *const *)pb;
	int c;

	if (a->bucket != b->bucket)
		return a->bucket < b->bucket ? -1 : 1;
	c = strcmp(a->ev.agent_id, b->ev.agent_id);
	if (c != 0)
		return c;
	if (a->ev.channel != b->ev.channel)
		return a->ev.channel < b->ev.channel ? -1 : 1;
	return 0;
}

/*
 * Sorts refs by cmp and sums each run of equal keys into one row. Rows are
 * counted before they are allocated so that the arena holds no more than
 * the batch needs, which matters when a failing batch is split and
 * combined again range by range.
 */
static int rows_build(struct arena *a, const struct batch_event **refs, size_t n, event_cmp_fn cmp,
                      bool with_agent, struct agg_row **rows_out, size_t *n_out)
{
	struct agg_row *rows = NULL;
	size_t n_rows = 1, r = 0;

	if (n == 0)
		return 0;
	qsort(refs, n, sizeof(*refs), cmp);
	for (size_t i = 1; i < n; i++)
		if (cmp(&refs[i - 1], &refs[i]) != 0)
			n_rows++;
	rows = arena_alloc(a, n_rows * sizeof(*rows));
	if (!rows)
		return -1;

	for (size_t i = 0; i < n; i++) {
		const struct batch_event *be = refs[i];

		if (i > 0 && cmp(&refs[i - 1], &refs[i]) == 0) {
			kpi_counts_add(&rows[r - 1].counts, &be->counts);
			continue;
		}
		rows[r].bucket = be->bucket;
		rows[r].channel = be->ev.channel;
		rows[r].agent_id = with_agent ? be->ev.agent_id : NULL;
		rows[r].counts = be->counts;
		r++;
	}
	*rows_out = rows;
	*n_out = n_rows;
	return 0;
}

int batch_combine(struct batch *b, struct arena *a, size_t from, size_t to,
                  struct agg_row **channel_rows, size_t *n_channel, struct agg_row **agent_rows,
                  size_t *n_agent)
{
	const struct batch_event **refs = NULL;
	size_t n = 0, n_with_agent = 0;
	int rc = -1;

	*channel_rows = NULL;
	*n_channel = 0;
	*agent_rows = NULL;
	*n_agent = 0;
	if (to > b->n_msgs)
		to = b->n_msgs;
	if (from >= to)
		return 0;

	refs = arena_alloc(a, (to - from) * sizeof(*refs));
	if (!refs)
		goto out;
	for (size_t i = from; i < to; i++) {
		int32_t e = b->msgs[i].event;

		if (e >= 0 && b->events[e].is_new)
			refs[n++] = &b->events[e];
	}
	if (rows_build(a, refs, n, channel_key_cmp, false, channel_rows, n_channel) < 0)
		goto out;

	for (size_t i = 0; i < n; i++)
		if (refs[i]->ev.agent_id[0] != '\0')
			refs[n_with_agent++] = refs[i];
	if (rows_build(a, refs, n_with_agent, agent_key_cmp, true, agent_rows, n_agent) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		*channel_rows = NULL;
		*n_channel = 0;
		*agent_rows = NULL;
		*n_agent = 0;
	}
	return rc;
}
