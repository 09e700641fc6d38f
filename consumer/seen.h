/*
 * seen.h - the events this process committed in its last transactions.
 *
 * A producer's re-send usually follows its original by a few messages, so
 * it often lands in the next batch, where the optimistic COPY of the ids
 * would fail on it and the batch would have to look every id up. Events
 * found here are known duplicates without asking: they are in event_ids,
 * this process put them there. The primary key of event_ids stays the
 * guard for everything else, an id that comes back with another
 * occurred_at among it. Keys are (event_id, occurred_at).
 */
#ifndef FC_SEEN_H
#define FC_SEEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct seen;

/* Remembers the events of the last `generations` transactions (at least 1). */
struct seen *seen_new(int generations);
void seen_destroy(struct seen *s);

/* Whether (id, at_us) was added in one of the remembered generations. */
bool seen_has(const struct seen *s, const char *id, int64_t at_us);

/* Starts a new generation, forgetting the oldest one. */
void seen_rotate(struct seen *s);

/* Forgets everything. */
void seen_clear(struct seen *s);

/* Adds (id, at_us) to the newest generation. 0, or -1 when out of memory (then not added). */
int seen_add(struct seen *s, const char *id, int64_t at_us);

#endif
