/*
 * trigger.h - the feedback.v1.RecoveryTrigger message of a negative event.
 */
#ifndef FC_TRIGGER_H
#define FC_TRIGGER_H

#include "arena.h"
#include "event.h"
#include "rules.h"

#include <stddef.h>
#include <stdint.h>

/* The prefix of every trigger id; the rest is the event id, so a re-sent
 * trigger carries the same id and names the event it comes from. */
#define TRIGGER_ID_PREFIX "rt:"

/*
 * The packed RecoveryTrigger of ev under decision d, detected at
 * detected_us, in memory of arena a; *len is its size. NULL when out of
 * memory. Only the ratings that are negative are included.
 */
uint8_t *trigger_pack(const struct event *ev, const struct rules_decision *d, int64_t detected_us,
                      struct arena *a, size_t *len);

/*
 * The packed trigger payload (len bytes) again without its comment, with
 * comment_left_out set: for a trigger too large for the recovery topic.
 * malloc'd, *out_len its size; NULL when it has no comment to leave out,
 * does not decode, or memory runs out.
 */
uint8_t *trigger_without_comment(const uint8_t *payload, size_t len, size_t *out_len);

#endif
