/*
 * decode.h - turns a Kafka message value into a validated struct event.
 *
 * Accepts plain protobuf FeedbackEvent bytes and the Confluent Schema
 * Registry framing (0x00, 4-byte schema id, message-index list, protobuf).
 * Every rule of CONTRACT.md is checked; a rejected message gets a stable
 * reason code (the dead-letter exception class) and a sentence for people.
 */
#ifndef FC_DECODE_H
#define FC_DECODE_H

#include "arena.h"
#include "event.h"

#include <stddef.h>
#include <stdint.h>

enum decode_result {
	DECODE_OK = 0,
	DECODE_EMPTY_VALUE,            /* "empty_value": null or zero-length value */
	DECODE_FRAMING_ERROR,          /* "framing_error": bad Confluent framing */
	DECODE_DECODE_ERROR,           /* "decode_error": not a FeedbackEvent */
	DECODE_MISSING_EVENT_ID,       /* "missing_event_id" */
	DECODE_INVALID_EVENT_ID,       /* "invalid_event_id": over 128 bytes */
	DECODE_MISSING_OCCURRED_AT,    /* "missing_occurred_at" */
	DECODE_INVALID_OCCURRED_AT,    /* "invalid_occurred_at": outside years 1-9999, bad nanos */
	DECODE_FUTURE_OCCURRED_AT,     /* "future_occurred_at": > 5 min ahead of now */
	DECODE_MISSING_CUSTOMER_ID,    /* "missing_customer_id" */
	DECODE_INVALID_CUSTOMER_ID,    /* "invalid_customer_id": over 128 bytes */
	DECODE_INVALID_AGENT_ID,       /* "invalid_agent_id": over 128 bytes */
	DECODE_INVALID_INTERACTION_ID, /* "invalid_interaction_id" */
	DECODE_COMMENT_TOO_LONG,       /* "comment_too_long": over 4096 bytes */
	DECODE_INVALID_LOCALE,         /* "invalid_locale": not a BCP 47 tag */
	DECODE_TOO_MANY_ATTRIBUTES,    /* "too_many_attributes": over 32 */
	DECODE_INVALID_STRING,         /* "invalid_string": bad UTF-8 or NUL byte */
	DECODE_INVALID_CHANNEL,        /* "invalid_channel": unknown enum value */
	DECODE_CHANNEL_MISMATCH,       /* "channel_mismatch": disagrees with topic */
	DECODE_INVALID_METRIC,         /* "invalid_metric": unknown or unset metric */
	DECODE_DUPLICATE_METRIC,       /* "duplicate_metric": two ratings of one metric */
	DECODE_INVALID_SCALE,          /* "invalid_scale" */
	DECODE_INVALID_SCORE,          /* "invalid_score": outside its scale */
	DECODE_INVALID_RESOLUTION,     /* "invalid_resolution": unknown FCR value */
	DECODE_INVALID_OUTCOME,        /* "invalid_outcome": unknown outcome value */
	DECODE_NO_CONTENT,             /* "no_content": no rating, contact or FCR */
	DECODE_INVALID_DURATION,       /* "invalid_duration": over the ledger's 2^31-1 s */
	DECODE_RESULT_COUNT
};

/* The stable reason code of r, e.g. "invalid_score". */
const char *decode_reason_code(enum decode_result r);

/*
 * Decodes and validates len bytes at value, read from the topic of channel
 * topic_channel, at wall-clock time now_us (microseconds since the epoch).
 * On DECODE_OK *ev is filled; its strings live in arena a. Otherwise
 * errmsg holds a lower-case sentence naming the offending field and value.
 * Never reads past len; never crashes on any input.
 */
enum decode_result decode_event(const void *value, size_t len, enum channel topic_channel,
                                int64_t now_us, struct arena *a, struct event *ev, char *errmsg,
                                size_t errmsg_size);

#endif
