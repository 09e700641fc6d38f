#include "decode.h"

#include "feedback/v1/feedback.pb-c.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_ID_BYTES      128
#define MAX_COMMENT_BYTES 4096
#define MAX_ATTRIBUTES    32
#define MAX_FUTURE_US     (300LL * 1000000)
#define MAX_LOCALE_BYTES  128
/* The ledger's integer columns: 68 years. The contract's uint32 goes twice as far. */
#define MAX_DURATION_S 2147483647u
#define MIN_SECONDS    (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_SECONDS    253402300799LL   /* 9999-12-31T23:59:59Z */

static const char *const reason_codes[DECODE_RESULT_COUNT] = {
    [DECODE_OK] = "ok",
    [DECODE_EMPTY_VALUE] = "empty_value",
    [DECODE_FRAMING_ERROR] = "framing_error",
    [DECODE_DECODE_ERROR] = "decode_error",
    [DECODE_MISSING_EVENT_ID] = "missing_event_id",
    [DECODE_INVALID_EVENT_ID] = "invalid_event_id",
    [DECODE_MISSING_OCCURRED_AT] = "missing_occurred_at",
    [DECODE_INVALID_OCCURRED_AT] = "invalid_occurred_at",
    [DECODE_FUTURE_OCCURRED_AT] = "future_occurred_at",
    [DECODE_MISSING_CUSTOMER_ID] = "missing_customer_id",
    [DECODE_INVALID_CUSTOMER_ID] = "invalid_customer_id",
    [DECODE_INVALID_AGENT_ID] = "invalid_agent_id",
    [DECODE_INVALID_INTERACTION_ID] = "invalid_interaction_id",
    [DECODE_COMMENT_TOO_LONG] = "comment_too_long",
    [DECODE_INVALID_LOCALE] = "invalid_locale",
    [DECODE_TOO_MANY_ATTRIBUTES] = "too_many_attributes",
    [DECODE_INVALID_STRING] = "invalid_string",
    [DECODE_INVALID_CHANNEL] = "invalid_channel",
    [DECODE_CHANNEL_MISMATCH] = "channel_mismatch",
    [DECODE_INVALID_METRIC] = "invalid_metric",
    [DECODE_DUPLICATE_METRIC] = "duplicate_metric",
    [DECODE_INVALID_SCALE] = "invalid_scale",
    [DECODE_INVALID_SCORE] = "invalid_score",
    [DECODE_INVALID_RESOLUTION] = "invalid_resolution",
    [DECODE_INVALID_OUTCOME] = "invalid_outcome",
    [DECODE_NO_CONTENT] = "no_content",
    [DECODE_INVALID_DURATION] = "invalid_duration",
};

const char *decode_reason_code(enum decode_result r)
{
	if ((unsigned)r >= DECODE_RESULT_COUNT || reason_codes[r] == NULL)
		return "unknown";
	return reason_codes[r];
}

static enum decode_result fail(char *errmsg, size_t size, enum decode_result r, const char *fmt,
                               ...) __attribute__((format(printf, 4, 5)));

static enum decode_result fail(char *errmsg, size_t size, enum decode_result r, const char *fmt,
                               ...)
{
	va_list ap;

	if (errmsg && size) {
		va_start(ap, fmt);
		vsnprintf(errmsg, size, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* At most 64 bytes of s, non-printable bytes as \xNN: safe to log. */
static const char *quote(const char *s, size_t len, char *buf, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < len && i < 64 && o + 5 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
	}
	if (len > 64 && o + 4 < size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* Reads a base-128 varint; false when truncated or longer than 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 70; shift += 7) {
		if (*p >= end)
			return false;
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/*
 * Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) and
 * no NUL byte.
 */
static bool valid_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/*
 * protobuf-c hands out strings as C strings, so a NUL inside one would
 * silently shorten it. This walks the wire form of the message and checks
 * every length-delimited string field of the event (and of its attribute
 * map entries) as the bytes that were sent. Returns the field number of
 * the first bad string, 0 when all are valid, -1 when the wire is broken.
 * Sets *split when occurred_at or contact comes in more than one part.
 */
static int wire_check_strings(const uint8_t *p, const uint8_t *end, bool is_map_entry, bool *split)
{
	unsigned seen = 0;

	while (p < end) {
		uint64_t tag, len;
		if (!read_varint(&p, end, &tag))
			return -1;
		uint32_t field = (uint32_t)(tag >> 3);
		switch (tag & 7) {
		case 0:
			if (!read_varint(&p, end, &len))
				return -1;
			break;
		case 1:
			if (end - p < 8)
				return -1;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -1;
			p += 4;
			break;
		case 2: {
			if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p))
				return -1;
			bool is_string = is_map_entry ? (field == 1 || field == 2)
			                              : (field == 1 || field == 4 || field == 5 ||
			                                 field == 6 || field == 9 || field == 10);
			if (is_string && !valid_utf8(p, (size_t)len))
				return (int)field;
			if (!is_map_entry && (field == 2 || field == 8)) {
				unsigned bit = field == 2 ? 1u : 2u;
				if (seen & bit)
					*split = true;
				seen |= bit;
			}
			if (!is_map_entry && field == 11) {
				int bad = wire_check_strings(p, p + len, true, split);
				if (bad != 0)
					return bad < 0 ? -1 : 11;
			}
			p += len;
			break;
		}
		default:
			return -1;
		}
	}
	return 0;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v)
{
	while (v >= 0x80) {
		*o++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*o++ = (uint8_t)v;
	return o;
}

/*
 * Copies the parts of top-level field `field` (length-delimited) of a wire
 * that protobuf-c parsed to o, tags and lengths left out, counting them in
 * *parts; or, with field 0, every field but occurred_at and contact whole.
 * Returns the end of what was written.
 */
static uint8_t *wire_copy(const uint8_t *p, const uint8_t *end, uint32_t field, uint8_t *o,
                          size_t *parts)
{
	while (p < end) {
		const uint8_t *start = p;
		uint64_t tag, len = 0;
		read_varint(&p, end, &tag);
		switch (tag & 7) {
		case 0:
			read_varint(&p, end, &len);
			break;
		case 1:
			p += 8;
			break;
		case 5:
			p += 4;
			break;
		default: /* 2: wire_check_strings let no other type through */
			read_varint(&p, end, &len);
			if ((tag >> 3) == field) {
				memcpy(o, p, (size_t)len);
				o += len;
				(*parts)++;
			}
			p += len;
			break;
		}
		bool merged = (tag & 7) == 2 && ((tag >> 3) == 2 || (tag >> 3) == 8);
		if (field == 0 && !merged) {
			memcpy(o, start, (size_t)(p - start));
			o += p - start;
		}
	}
	return o;
}

/*
 * A singular message field sent in several parts is one field, the parts
 * merged: protobuf's parsers parse it as the concatenation of the parts,
 * where protobuf-c keeps the last part alone (an occurred_at of seconds,
 * then one of nanos, would read 1970). Writes the event again, in a, with
 * occurred_at and contact each in one part; returns its length.
 */
static size_t wire_merge_parts(const uint8_t *p, const uint8_t *end, struct arena *a,
                               const uint8_t **out)
{
	static const uint32_t merged[] = {2, 8};
	/* Every part had a tag and a length; each merged field needs 11 bytes at most. */
	uint8_t *buf = arena_alloc(a, (size_t)(end - p) + 2 * 11);
	size_t parts = 0;
	uint8_t *o = wire_copy(p, end, 0, buf, &parts);

	for (size_t i = 0; i < sizeof(merged) / sizeof(merged[0]); i++) {
		uint8_t head[11], *head_end;
		uint8_t *body = o + sizeof(head);
		size_t n;

		parts = 0;
		n = (size_t)(wire_copy(p, end, merged[i], body, &parts) - body);
		if (parts == 0)
			continue; /* absent stays absent */
		head_end = put_varint(head, (uint64_t)merged[i] << 3 | 2);
		head_end = put_varint(head_end, n);
		memmove(o + (head_end - head), body, n);
		memcpy(o, head, (size_t)(head_end - head));
		o += (head_end - head) + n;
	}
	*out = buf;
	return (size_t)(o - buf);
}

static const char *metric_name(int m)
{
	return m == METRIC_CSAT ? "csat" : m == METRIC_NPS ? "nps" : "ces";
}

static enum decode_result check_rating(const Feedback__V1__Rating *r, struct rating *out,
                                       char *errmsg, size_t size)
{
	int32_t min = r->scale_min, max = r->scale_max;
	int m = (int)r->metric;
	const char *name = metric_name(m);

	if (min == 0 && max == 0) {
		min = m == METRIC_NPS ? 0 : 1;
		max = m == METRIC_CSAT ? 5 : m == METRIC_NPS ? 10 : 7;
	}
	int64_t points = (int64_t)max - min + 1;
	if (max <= min || points < 2 || points > 11)
		return fail(errmsg, size, DECODE_INVALID_SCALE,
		            "rating '%s' scale %d-%d is not a scale of 2 to 11 points", name,
		            (int)min, (int)max);
	if (m == METRIC_NPS && (min != 0 || max != 10))
		return fail(errmsg, size, DECODE_INVALID_SCALE,
		            "rating 'nps' scale %d-%d is not 0-10", (int)min, (int)max);
	if (m == METRIC_CES && !(min == 1 && (max == 5 || max == 7)))
		return fail(errmsg, size, DECODE_INVALID_SCALE,
		            "rating 'ces' scale %d-%d is neither 1-5 nor 1-7", (int)min, (int)max);
	if (r->score < min || r->score > max)
		return fail(errmsg, size, DECODE_INVALID_SCORE,
		            "rating '%s' score %d is outside its scale %d-%d", name, (int)r->score,
		            (int)min, (int)max);
	out->present = true;
	out->score = r->score;
	out->scale_min = min;
	out->scale_max = max;
	out->inverted = m == METRIC_CES && r->inverted;
	return DECODE_OK;
}

/*
 * A BCP 47 shaped tag (RFC 5646's syntax, not its registry): a language of
 * 2-8 letters, or the "x" of a private-use tag or the "i" of a grandfathered
 * one (x-pirate, i-klingon) with at least one subtag after it; then subtags
 * of 1-8 alphanumerics. Extensions make tags longer than the 35 characters
 * that RFC 5646 asks every implementation to hold; the length is checked
 * apart (MAX_LOCALE_BYTES).
 */
static bool valid_locale(const char *s)
{
	size_t n = strlen(s), i = 0,
	       first = strspn(s, "abcdefghijklmnopqrstuvwxyz"
	                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
	bool singleton = first == 1 && strchr("xXiI", s[0]) != NULL;

	if ((first < 2 && !singleton) || first > 8 || (first != n && s[first] != '-') ||
	    (singleton && first == n))
		return false;
	i = first;
	while (i < n) {
		i++; /* the '-' */
		size_t len = 0;
		while (i + len < n && isalnum((unsigned char)s[i + len]))
			len++;
		if (len < 1 || len > 8)
			return false;
		i += len;
		if (i < n && s[i] != '-')
			return false;
	}
	return true;
}

static enum decode_result check_id(const char *s, const char *field, enum decode_result missing,
                                   enum decode_result invalid, bool required, char *errmsg,
                                   size_t size)
{
	size_t n = s ? strlen(s) : 0;
	char q[300];

	if (n == 0 && required)
		return fail(errmsg, size, missing, "event has no '%s'", field);
	if (n > MAX_ID_BYTES)
		return fail(errmsg, size, invalid, "'%s' '%s' is %zu bytes, more than %d", field,
		            quote(s, n, q, sizeof(q)), n, MAX_ID_BYTES);
	return DECODE_OK;
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

/*
 * The keys of a map sent more than once are one entry each (the last one
 * wins): counts distinct keys, up to MAX_ATTRIBUTES + 1, comparing each
 * entry with those found so far only.
 */
static size_t distinct_keys(Feedback__V1__FeedbackEvent__AttributesEntry *const *e, size_t n)
{
	const char *found[MAX_ATTRIBUTES + 1];
	size_t distinct = 0;

	for (size_t i = 0; i < n && distinct < MAX_ATTRIBUTES + 1; i++) {
		const char *key = str_or_empty(e[i]->key);
		size_t j = 0;
		while (j < distinct && strcmp(found[j], key) != 0)
			j++;
		if (j == distinct)
			found[distinct++] = key;
	}
	return distinct;
}

enum decode_result decode_event(const void *value, size_t len, enum channel topic_channel,
                                int64_t now_us, struct arena *a, struct event *ev, char *errmsg,
                                size_t errmsg_size)
{
	const uint8_t *p = value, *end;
	Feedback__V1__FeedbackEvent *m;
	enum decode_result r;
	char q[300];

	/* A tombstone's value is NULL: no arithmetic on it, not even + 0. */
	if (value == NULL || len == 0)
		return fail(errmsg, errmsg_size, DECODE_EMPTY_VALUE, "message has no value");
	end = p + len;
	if (p[0] == 0x00) {
		/* Confluent framing: magic byte, 4-byte schema id, message-index list. */
		uint64_t count, zz, idx;
		if (len < 6)
			return fail(errmsg, errmsg_size, DECODE_FRAMING_ERROR,
			            "schema registry framing of %zu bytes is too short", len);
		p += 5;
		if (!read_varint(&p, end, &zz))
			return fail(errmsg, errmsg_size, DECODE_FRAMING_ERROR,
			            "schema registry message-index list is truncated");
		int64_t n = (int64_t)(zz >> 1) ^ -(int64_t)(zz & 1);
		if (n < 0 || n > 64)
			return fail(errmsg, errmsg_size, DECODE_FRAMING_ERROR,
			            "schema registry message-index count %lld is invalid",
			            (long long)n);
		count = (uint64_t)n;
		for (uint64_t i = 0; i < count; i++)
			if (!read_varint(&p, end, &idx))
				return fail(errmsg, errmsg_size, DECODE_FRAMING_ERROR,
				            "schema registry message-index list is truncated");
	}
	m = feedback__v1__feedback_event__unpack(&a->pb, (size_t)(end - p), p);
	if (m == NULL)
		return fail(errmsg, errmsg_size, DECODE_DECODE_ERROR,
		            "value is not a feedback.v1.FeedbackEvent");

	/*
	 * Before any rule that measures a string: protobuf-c's C strings end at
	 * a NUL byte, so "\0abc" would pass for an absent event_id.
	 */
	bool split = false;
	int bad = wire_check_strings(p, end, false, &split);
	if (bad < 0)
		return fail(errmsg, errmsg_size, DECODE_DECODE_ERROR,
		            "value is not a feedback.v1.FeedbackEvent");
	if (bad == 0 && split) {
		const uint8_t *merged = NULL;
		size_t n = wire_merge_parts(p, end, a, &merged);
		m = feedback__v1__feedback_event__unpack(&a->pb, n, merged);
		if (m == NULL)
			return fail(errmsg, errmsg_size, DECODE_DECODE_ERROR,
			            "value is not a feedback.v1.FeedbackEvent");
	}
	if (bad > 0) {
		static const char *const names[] = {
		    [1] = "event_id",       [4] = "customer_id", [5] = "agent_id",
		    [6] = "interaction_id", [9] = "comment",     [10] = "locale",
		    [11] = "attributes"};
		return fail(errmsg, errmsg_size, DECODE_INVALID_STRING,
		            "'%s' is not valid UTF-8 or contains a NUL byte", names[bad]);
	}

	memset(ev, 0, sizeof(*ev));
	r = check_id(m->event_id, "event_id", DECODE_MISSING_EVENT_ID, DECODE_INVALID_EVENT_ID,
	             true, errmsg, errmsg_size);
	if (r)
		return r;
	if (m->occurred_at == NULL)
		return fail(errmsg, errmsg_size, DECODE_MISSING_OCCURRED_AT,
		            "event has no 'occurred_at'");
	if (m->occurred_at->nanos < 0 || m->occurred_at->nanos > 999999999 ||
	    m->occurred_at->seconds < MIN_SECONDS || m->occurred_at->seconds > MAX_SECONDS)
		return fail(errmsg, errmsg_size, DECODE_INVALID_OCCURRED_AT,
		            "'occurred_at' %lld s %d ns is not a valid instant",
		            (long long)m->occurred_at->seconds, (int)m->occurred_at->nanos);
	ev->occurred_at_us = m->occurred_at->seconds * 1000000 + m->occurred_at->nanos / 1000;
	if (ev->occurred_at_us > now_us + MAX_FUTURE_US) {
		/* Whole seconds would read "300 s ..., more than 300" just past the limit. */
		int64_t ahead_us = ev->occurred_at_us - now_us;
		return fail(errmsg, errmsg_size, DECODE_FUTURE_OCCURRED_AT,
		            "'occurred_at' is %lld.%06lld s in the future, more than 300",
		            (long long)(ahead_us / 1000000), (long long)(ahead_us % 1000000));
	}
	if ((int)m->channel < 0 || (int)m->channel > CHANNEL_MAX)
		return fail(errmsg, errmsg_size, DECODE_INVALID_CHANNEL,
		            "'channel' %d is not a known channel", (int)m->channel);
	if (m->channel != 0 && (int)m->channel != (int)topic_channel)
		return fail(errmsg, errmsg_size, DECODE_CHANNEL_MISMATCH,
		            "event 'channel' is %s but the message came from the %s topic",
		            channel_name((enum channel)m->channel), channel_name(topic_channel));
	r = check_id(m->customer_id, "customer_id", DECODE_MISSING_CUSTOMER_ID,
	             DECODE_INVALID_CUSTOMER_ID, true, errmsg, errmsg_size);
	if (!r)
		r = check_id(m->agent_id, "agent_id", DECODE_OK, DECODE_INVALID_AGENT_ID, false,
		             errmsg, errmsg_size);
	if (!r)
		r = check_id(m->interaction_id, "interaction_id", DECODE_OK,
		             DECODE_INVALID_INTERACTION_ID, false, errmsg, errmsg_size);
	if (r)
		return r;

	for (size_t i = 0; i < m->n_ratings; i++) {
		const Feedback__V1__Rating *rt = m->ratings[i];
		struct rating *slot;
		int metric = (int)rt->metric;

		if (metric < METRIC_CSAT || metric > METRIC_CES)
			return fail(errmsg, errmsg_size, DECODE_INVALID_METRIC,
			            "rating %zu has metric %d, not csat, nps or ces", i + 1,
			            metric);
		slot = metric == METRIC_CSAT  ? &ev->csat
		       : metric == METRIC_NPS ? &ev->nps
		                              : &ev->ces;
		if (slot->present)
			return fail(errmsg, errmsg_size, DECODE_DUPLICATE_METRIC,
			            "event has two '%s' ratings", metric_name(metric));
		r = check_rating(rt, slot, errmsg, errmsg_size);
		if (r)
			return r;
	}
	if (m->contact) {
		int o = (int)m->contact->outcome;
		/* 0: not given. The contact is offered, with none of the three outcomes. */
		if (o < OUTCOME_NONE || o > OUTCOME_SELF_SERVICE)
			return fail(errmsg, errmsg_size, DECODE_INVALID_OUTCOME,
			            "'contact.outcome' %d is none of 1 answered, 2 abandoned, "
			            "3 self-service and 0 not given",
			            o);
		if (m->contact->wait_seconds > MAX_DURATION_S)
			return fail(
			    errmsg, errmsg_size, DECODE_INVALID_DURATION,
			    "'contact.wait_seconds' %u is more than the %u the ledger holds",
			    m->contact->wait_seconds, MAX_DURATION_S);
		if (m->contact->handle_seconds > MAX_DURATION_S)
			return fail(
			    errmsg, errmsg_size, DECODE_INVALID_DURATION,
			    "'contact.handle_seconds' %u is more than the %u the ledger holds",
			    m->contact->handle_seconds, MAX_DURATION_S);
		ev->has_contact = true;
		ev->outcome = (enum outcome)o;
		ev->wait_seconds = m->contact->wait_seconds;
		ev->handle_seconds = m->contact->handle_seconds;
	}
	const char *comment = str_or_empty(m->comment);
	size_t clen = strlen(comment);
	if (clen > MAX_COMMENT_BYTES)
		return fail(errmsg, errmsg_size, DECODE_COMMENT_TOO_LONG,
		            "'comment' is %zu bytes, more than %d", clen, MAX_COMMENT_BYTES);
	const char *locale = str_or_empty(m->locale);
	size_t llen = strlen(locale);
	if (llen > MAX_LOCALE_BYTES)
		return fail(errmsg, errmsg_size, DECODE_INVALID_LOCALE,
		            "'locale' is %zu bytes, more than %d", llen, MAX_LOCALE_BYTES);
	if (*locale && !valid_locale(locale))
		return fail(errmsg, errmsg_size, DECODE_INVALID_LOCALE,
		            "'locale' '%s' is not a BCP 47 language tag",
		            quote(locale, strlen(locale), q, sizeof(q)));
	size_t n_attributes = distinct_keys(m->attributes, m->n_attributes);
	if (n_attributes > MAX_ATTRIBUTES)
		return fail(errmsg, errmsg_size, DECODE_TOO_MANY_ATTRIBUTES,
		            "event has %s%zu attributes, more than %d",
		            n_attributes < m->n_attributes ? "at least " : "", n_attributes,
		            MAX_ATTRIBUTES);
	int fcr = (int)m->first_contact_resolution;
	if (fcr < FCR_NOT_ASKED || fcr > FCR_UNRESOLVED)
		return fail(errmsg, errmsg_size, DECODE_INVALID_RESOLUTION,
		            "'first_contact_resolution' %d is not resolved or unresolved", fcr);
	if (!ev->csat.present && !ev->nps.present && !ev->ces.present && !ev->has_contact &&
	    fcr == FCR_NOT_ASKED)
		return fail(errmsg, errmsg_size, DECODE_NO_CONTENT,
		            "event has no rating, no contact block and no FCR answer");

	ev->event_id = m->event_id;
	ev->customer_id = m->customer_id;
	ev->agent_id = str_or_empty(m->agent_id);
	ev->interaction_id = str_or_empty(m->interaction_id);
	ev->comment = comment;
	ev->locale = locale;
	ev->channel = topic_channel;
	ev->fcr = (enum fcr)fcr;
	return DECODE_OK;
}
