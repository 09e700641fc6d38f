/*
 * event.h - a decoded, validated feedback event, independent of protobuf.
 *
 * Strings point into memory owned by whoever decoded the event (the batch
 * arena in the consumer); they are NUL-terminated, valid UTF-8, and an
 * absent optional string is the empty string "", never NULL.
 */
#ifndef FC_EVENT_H
#define FC_EVENT_H

#include <stdbool.h>
#include <stdint.h>

enum channel {
	CHANNEL_NONE = 0,
	CHANNEL_SMS = 1,
	CHANNEL_EMAIL = 2,
	CHANNEL_PHONE = 3,
	CHANNEL_SOCIAL = 4,
};
#define CHANNEL_MAX 4

enum metric {
	METRIC_CSAT = 1,
	METRIC_NPS = 2,
	METRIC_CES = 3,
};

enum fcr {
	FCR_NOT_ASKED = 0,
	FCR_RESOLVED = 1,
	FCR_UNRESOLVED = 2,
};

enum outcome {
	OUTCOME_NONE = 0,
	OUTCOME_ANSWERED = 1,
	OUTCOME_ABANDONED = 2,
	OUTCOME_SELF_SERVICE = 3,
};

/* A rating whose scale is resolved: defaults applied, always min < max. */
struct rating {
	bool present;
	int32_t score;
	int32_t scale_min;
	int32_t scale_max;
	bool inverted; /* CES agreement form: effort = min + max - score */
};

struct event {
	const char *event_id;
	const char *customer_id;
	const char *agent_id;       /* "" when absent */
	const char *interaction_id; /* "" when absent */
	const char *comment;        /* "" when absent */
	const char *locale;         /* "" when absent */
	int64_t occurred_at_us;     /* microseconds since the Unix epoch, UTC */
	enum channel channel;       /* from the topic; never CHANNEL_NONE */
	struct rating csat;
	struct rating nps;
	struct rating ces;
	enum fcr fcr;
	bool has_contact;
	enum outcome outcome;
	uint32_t wait_seconds;
	uint32_t handle_seconds;
};

/* "sms", "email", "phone", "social"; NULL for CHANNEL_NONE or out of range. */
const char *channel_name(enum channel ch);

/* The channel named by s ("sms", ...), or CHANNEL_NONE. */
enum channel channel_from_name(const char *s);

#endif
