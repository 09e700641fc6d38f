#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "feedback/v1/feedback.pb-c.h"

#include "arena.h"
#include "decode.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* 2026-03-29T00:00:00.123456Z: 20541 days * 86400 s after the epoch, plus 123456 us. */
#define NOW_S  1774742400LL
#define NOW_US (NOW_S * 1000000 + 123456)

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in seconds since the epoch. */
#define YEAR1_S    (-62135596800LL)
#define YEAR9999_S 253402300799LL

#define MAX_ATTRS 40

/*
 * A FeedbackEvent under construction. It points into itself, so it lives in
 * one static instance and is never copied.
 */
struct msg {
	Feedback__V1__FeedbackEvent ev;
	Google__Protobuf__Timestamp ts;
	Feedback__V1__Rating rating[4];
	Feedback__V1__Rating *ratings[4];
	Feedback__V1__Contact contact;
	Feedback__V1__FeedbackEvent__AttributesEntry attr[MAX_ATTRS];
	Feedback__V1__FeedbackEvent__AttributesEntry *attrs[MAX_ATTRS];
	char attr_keys[MAX_ATTRS][16];
};

static struct msg M;
static struct arena arena;
static struct event ev;
static char err[512];
static uint8_t wire[32768];
static bool seen[DECODE_RESULT_COUNT];

/* The baseline valid event: ids, occurred_at one minute ago, CSAT 4 on the default scale. */
static void msg_init(void)
{
	memset(&M, 0, sizeof(M));
	M.ev = (Feedback__V1__FeedbackEvent)FEEDBACK__V1__FEEDBACK_EVENT__INIT;
	M.ts = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	M.contact = (Feedback__V1__Contact)FEEDBACK__V1__CONTACT__INIT;
	M.ev.event_id = "evt-1";
	M.ev.customer_id = "cust-1";
	M.ts.seconds = NOW_S - 60;
	M.ev.occurred_at = &M.ts;
	M.ev.ratings = M.ratings;
	M.ev.attributes = M.attrs;
	for (size_t i = 0; i < ARRAY_SIZE(M.rating); i++) {
		M.rating[i] = (Feedback__V1__Rating)FEEDBACK__V1__RATING__INIT;
		M.ratings[i] = &M.rating[i];
	}
	for (size_t i = 0; i < MAX_ATTRS; i++) {
		M.attr[i] = (Feedback__V1__FeedbackEvent__AttributesEntry)
		    FEEDBACK__V1__FEEDBACK_EVENT__ATTRIBUTES_ENTRY__INIT;
		M.attrs[i] = &M.attr[i];
	}
	M.rating[0].metric = FEEDBACK__V1__METRIC__METRIC_CSAT;
	M.rating[0].score = 4;
	M.ev.n_ratings = 1;
}

/* Replaces the ratings with one of metric/score/scale. */
static Feedback__V1__Rating *only_rating(int metric, int32_t score, int32_t min, int32_t max)
{
	M.rating[0] = (Feedback__V1__Rating)FEEDBACK__V1__RATING__INIT;
	M.rating[0].metric = (Feedback__V1__Metric)metric;
	M.rating[0].score = score;
	M.rating[0].scale_min = min;
	M.rating[0].scale_max = max;
	M.ev.n_ratings = 1;
	return &M.rating[0];
}

static Feedback__V1__Rating *add_rating(int metric, int32_t score, int32_t min, int32_t max)
{
	Feedback__V1__Rating *r = &M.rating[M.ev.n_ratings++];

	*r = (Feedback__V1__Rating)FEEDBACK__V1__RATING__INIT;
	r->metric = (Feedback__V1__Metric)metric;
	r->score = score;
	r->scale_min = min;
	r->scale_max = max;
	return r;
}

static void set_contact(int outcome, uint32_t wait, uint32_t handle)
{
	M.contact.outcome = (Feedback__V1__ContactOutcome)outcome;
	M.contact.wait_seconds = wait;
	M.contact.handle_seconds = handle;
	M.ev.contact = &M.contact;
}

/* n attributes "k0".."k{n-1}" = value. */
static void set_attributes(size_t n, char *value)
{
	assert_true(n <= MAX_ATTRS);
	for (size_t i = 0; i < n; i++) {
		snprintf(M.attr_keys[i], sizeof(M.attr_keys[i]), "k%d", (int)i);
		M.attr[i].key = M.attr_keys[i];
		M.attr[i].value = value;
	}
	M.ev.n_attributes = n;
}

static size_t msg_pack(void)
{
	size_t n = feedback__v1__feedback_event__get_packed_size(&M.ev);

	assert_true(n <= sizeof(wire));
	assert_int_equal(feedback__v1__feedback_event__pack(&M.ev, wire), n);
	return n;
}

/*
 * Decodes a private copy of exactly len bytes, so that AddressSanitizer sees
 * any read past the value.
 */
static enum decode_result decode_raw(const void *value, size_t len, enum channel topic)
{
	void *copy = len ? malloc(len) : NULL;
	enum decode_result r;

	if (len)
		assert_non_null(copy);
	if (len)
		memcpy(copy, value, len);
	arena_reset(&arena);
	memset(&ev, 0xa5, sizeof(ev));
	strcpy(err, "(unset)");
	r = decode_event(copy, len, topic, NOW_US, &arena, &ev, err, sizeof(err));
	free(copy);
	assert_in_range(r, 0, DECODE_RESULT_COUNT - 1);
	if (r != DECODE_OK)
		assert_string_not_equal(err, "(unset)");
	seen[r] = true;
	return r;
}

static enum decode_result decode_msg_on(enum channel topic)
{
	size_t n = msg_pack();

	return decode_raw(wire, n, topic);
}

static enum decode_result decode_msg(void)
{
	return decode_msg_on(CHANNEL_SMS);
}

/* The result's reason code is code and the error message contains needle. */
static void assert_reject(enum decode_result r, const char *code, const char *needle)
{
	if (strcmp(decode_reason_code(r), code) != 0 || strstr(err, needle) == NULL)
		fail_msg("want %s mentioning \"%s\", got %s: %s", code, needle,
		         decode_reason_code(r), err);
}

static void assert_ok(enum decode_result r)
{
	if (r != DECODE_OK)
		fail_msg("want ok, got %s: %s", decode_reason_code(r), err);
}

/* Appends one length-delimited field (wire type 2) to the len bytes at buf. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

static size_t append_field(uint8_t *buf, size_t len, uint32_t field, const void *bytes, size_t n)
{
	len += put_varint(buf + len, (uint64_t)field << 3 | 2);
	len += put_varint(buf + len, n);
	memcpy(buf + len, bytes, n);
	return len + n;
}

/* A string of n copies of c, in a static buffer. */
static char *repeat(char c, size_t n)
{
	static char buf[8][8192];
	static int next;
	char *s = buf[next++ % 8];

	assert_true(n < sizeof(buf[0]));
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static int group_setup(void **state)
{
	(void)state;
	arena_init(&arena, 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	arena_release(&arena);
	return 0;
}

static int test_setup(void **state)
{
	(void)state;
	msg_init();
	return 0;
}

static void test_reason_codes(void **state)
{
	static const char *const want[] = {
	    "ok",
	    "empty_value",
	    "framing_error",
	    "decode_error",
	    "missing_event_id",
	    "invalid_event_id",
	    "missing_occurred_at",
	    "invalid_occurred_at",
	    "future_occurred_at",
	    "missing_customer_id",
	    "invalid_customer_id",
	    "invalid_agent_id",
	    "invalid_interaction_id",
	    "comment_too_long",
	    "invalid_locale",
	    "too_many_attributes",
	    "invalid_string",
	    "invalid_channel",
	    "channel_mismatch",
	    "invalid_metric",
	    "duplicate_metric",
	    "invalid_scale",
	    "invalid_score",
	    "invalid_resolution",
	    "invalid_outcome",
	    "no_content",
	    "invalid_duration",
	};

	(void)state;
	assert_int_equal(ARRAY_SIZE(want), DECODE_RESULT_COUNT);
	for (int r = 0; r < DECODE_RESULT_COUNT; r++)
		assert_string_equal(decode_reason_code((enum decode_result)r), want[r]);
	assert_string_equal(decode_reason_code(DECODE_RESULT_COUNT), "unknown");
	assert_string_equal(decode_reason_code((enum decode_result) - 1), "unknown");
}

/* Every field set; every one read back exactly. */
static void test_full_event(void **state)
{
	static char comment[] = "Tr\xc3\xa8s bien, merci \xe2\x82\xac \xf0\x9f\x98\x80";

	(void)state;
	M.ev.event_id = "0b7c6a1e-3d0f-4c1a-9e55-5a1f7f0f7a01";
	M.ev.customer_id = "cust-42";
	M.ev.agent_id = "agent-7";
	M.ev.interaction_id = "call-99";
	M.ev.channel = FEEDBACK__V1__CHANNEL__CHANNEL_PHONE;
	/* One hour before NOW, plus 123456789 ns: 123456 us after truncation. */
	M.ts.seconds = NOW_S - 3600;
	M.ts.nanos = 123456789;
	only_rating(METRIC_CSAT, 4, 0, 0);
	add_rating(METRIC_NPS, 9, 0, 0);
	add_rating(METRIC_CES, 2, 1, 5)->inverted = 1;
	set_contact(OUTCOME_ANSWERED, 45, 300);
	M.ev.comment = comment;
	M.ev.locale = "fr-CA";
	set_attributes(2, "v");
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED;

	assert_ok(decode_msg_on(CHANNEL_PHONE));
	assert_string_equal(ev.event_id, "0b7c6a1e-3d0f-4c1a-9e55-5a1f7f0f7a01");
	assert_string_equal(ev.customer_id, "cust-42");
	assert_string_equal(ev.agent_id, "agent-7");
	assert_string_equal(ev.interaction_id, "call-99");
	assert_string_equal(ev.comment, comment);
	assert_string_equal(ev.locale, "fr-CA");
	assert_true(ev.occurred_at_us == 1774738800123456LL);
	assert_int_equal(ev.channel, CHANNEL_PHONE);
	assert_true(ev.csat.present);
	assert_int_equal(ev.csat.score, 4);
	assert_int_equal(ev.csat.scale_min, 1);
	assert_int_equal(ev.csat.scale_max, 5);
	assert_false(ev.csat.inverted);
	assert_true(ev.nps.present);
	assert_int_equal(ev.nps.score, 9);
	assert_int_equal(ev.nps.scale_min, 0);
	assert_int_equal(ev.nps.scale_max, 10);
	assert_false(ev.nps.inverted);
	assert_true(ev.ces.present);
	assert_int_equal(ev.ces.score, 2);
	assert_int_equal(ev.ces.scale_min, 1);
	assert_int_equal(ev.ces.scale_max, 5);
	assert_true(ev.ces.inverted);
	assert_int_equal(ev.fcr, FCR_RESOLVED);
	assert_true(ev.has_contact);
	assert_int_equal(ev.outcome, OUTCOME_ANSWERED);
	assert_int_equal(ev.wait_seconds, 45);
	assert_int_equal(ev.handle_seconds, 300);
}

/* Absent optional strings are "", absent ratings not present, no contact. */
static void test_minimal_event_defaults(void **state)
{
	(void)state;
	M.ev.n_ratings = 0;
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_UNRESOLVED;
	M.ts.seconds = NOW_S;
	M.ts.nanos = 0;

	assert_ok(decode_msg_on(CHANNEL_EMAIL));
	assert_string_equal(ev.event_id, "evt-1");
	assert_string_equal(ev.customer_id, "cust-1");
	assert_string_equal(ev.agent_id, "");
	assert_string_equal(ev.interaction_id, "");
	assert_string_equal(ev.comment, "");
	assert_string_equal(ev.locale, "");
	assert_true(ev.occurred_at_us == 1774742400000000LL);
	/* channel unset in the event: the topic's. */
	assert_int_equal(ev.channel, CHANNEL_EMAIL);
	assert_false(ev.csat.present);
	assert_false(ev.nps.present);
	assert_false(ev.ces.present);
	assert_int_equal(ev.fcr, FCR_UNRESOLVED);
	assert_false(ev.has_contact);
	assert_int_equal(ev.outcome, OUTCOME_NONE);
	assert_int_equal(ev.wait_seconds, 0);
	assert_int_equal(ev.handle_seconds, 0);
}

static void test_default_scales(void **state)
{
	(void)state;
	/* Both 0: CSAT 1-5, NPS 0-10, CES 1-7. */
	only_rating(METRIC_CSAT, 5, 0, 0);
	add_rating(METRIC_NPS, 0, 0, 0);
	add_rating(METRIC_CES, 7, 0, 0);
	assert_ok(decode_msg());
	assert_int_equal(ev.csat.scale_min, 1);
	assert_int_equal(ev.csat.scale_max, 5);
	assert_int_equal(ev.csat.score, 5);
	assert_int_equal(ev.nps.scale_min, 0);
	assert_int_equal(ev.nps.scale_max, 10);
	assert_int_equal(ev.nps.score, 0);
	assert_int_equal(ev.ces.scale_min, 1);
	assert_int_equal(ev.ces.scale_max, 7);
	assert_int_equal(ev.ces.score, 7);
	assert_false(ev.ces.inverted);
}

/* The same event plain and in each Confluent spelling decodes the same. */
static void test_confluent_framing(void **state)
{
	/* magic 0x00, schema id 42 big-endian, then the index list. */
	static const uint8_t idx0[] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x00};
	/* count 1 (zig-zag 0x02), index 2 (zig-zag 0x04): the third message of the file. */
	static const uint8_t idx2[] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x02, 0x04};
	/* count 2 (0x04), indexes [1, 0] (0x02 0x00); schema id 0xdeadbeef. */
	static const uint8_t idx10[] = {0x00, 0xde, 0xad, 0xbe, 0xef, 0x04, 0x02, 0x00};
	/* count 1 with a two-byte varint index 64 (zig-zag 128 = 0x80 0x01). */
	static const uint8_t idx64[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x80, 0x01};
	const struct {
		const uint8_t *head;
		size_t n;
	} heads[] = {{idx0, sizeof(idx0)},
	             {idx2, sizeof(idx2)},
	             {idx10, sizeof(idx10)},
	             {idx64, sizeof(idx64)}};
	uint8_t framed[1024];

	(void)state;
	M.ev.agent_id = "agent-3";
	only_rating(METRIC_NPS, 6, 0, 0);
	size_t n = msg_pack();
	assert_true(wire[0] != 0x00);
	assert_ok(decode_raw(wire, n, CHANNEL_SMS));
	assert_string_equal(ev.agent_id, "agent-3");
	assert_int_equal(ev.nps.score, 6);

	for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
		memcpy(framed, heads[i].head, heads[i].n);
		memcpy(framed + heads[i].n, wire, n);
		assert_ok(decode_raw(framed, heads[i].n + n, CHANNEL_SMS));
		assert_string_equal(ev.event_id, "evt-1");
		assert_string_equal(ev.customer_id, "cust-1");
		assert_string_equal(ev.agent_id, "agent-3");
		assert_true(ev.occurred_at_us == (NOW_S - 60) * 1000000);
		assert_true(ev.nps.present);
		assert_int_equal(ev.nps.score, 6);
		assert_false(ev.csat.present);
	}
}

/* A well-framed empty payload is an empty FeedbackEvent, which lacks its event_id. */
static void test_confluent_empty_payload(void **state)
{
	static const uint8_t v[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x00};

	(void)state;
	assert_reject(decode_raw(v, sizeof(v), CHANNEL_SMS), "missing_event_id", "'event_id'");
}

static void test_framing_errors(void **state)
{
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t n;
	} cases[] = {
	    {"magic byte alone", {0x00}, 1},
	    {"schema id cut short", {0x00, 0x00, 0x00, 0x2a}, 4},
	    {"no index list", {0x00, 0x00, 0x00, 0x00, 0x2a}, 5},
	    {"index count varint cut short", {0x00, 0x00, 0x00, 0x00, 0x2a, 0x80}, 6},
	    {"count 1, index missing", {0x00, 0x00, 0x00, 0x00, 0x2a, 0x02}, 6},
	    {"count 2, one index", {0x00, 0x00, 0x00, 0x00, 0x2a, 0x04, 0x02}, 7},
	    {"index varint cut short", {0x00, 0x00, 0x00, 0x00, 0x2a, 0x02, 0xff}, 7},
	    /* zig-zag 1 is -1 */
	    {"negative count", {0x00, 0x00, 0x00, 0x00, 0x2a, 0x01, 0x0a, 0x00}, 8},
	    /* zig-zag 130 (0x82 0x01) is 65 */
	    {"count 65", {0x00, 0x00, 0x00, 0x00, 0x2a, 0x82, 0x01, 0x00}, 8},
	    {"count varint of 11 bytes",
	     {0x00, 0x00, 0x00, 0x00, 0x2a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	      0x80, 0x00},
	     16},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		enum decode_result r = decode_raw(cases[i].bytes, cases[i].n, CHANNEL_SMS);
		if (r != DECODE_FRAMING_ERROR)
			fail_msg("%s: got %s: %s", cases[i].what, decode_reason_code(r), err);
		assert_non_null(strstr(err, "schema registry"));
	}
}

static void test_empty_value(void **state)
{
	static const uint8_t one = 0x0a;

	(void)state;
	assert_reject(decode_raw(NULL, 0, CHANNEL_SMS), "empty_value", "no value");
	assert_reject(decode_event(&one, 0, CHANNEL_SMS, NOW_US, &arena, &ev, err, sizeof(err)),
	              "empty_value", "no value");
}

static void test_garbage(void **state)
{
	static const struct {
		const char *what;
		uint8_t bytes[12];
		size_t n;
	} cases[] = {
	    {"wire type 7", {0xff, 0xff, 0xff, 0xff}, 4},
	    {"length past the end", {0x0a, 0x10, 'a', 'b'}, 4},
	    {"varint cut short", {0x18, 0x80}, 2},
	    {"fixed64 cut short", {0x09, 0x01, 0x02}, 3},
	    {"event_id as a varint", {0x08, 0x01}, 2},
	    {"end group without start", {0x0c}, 1},
	    {"occurred_at not a message", {0x12, 0x02, 0xff, 0xff}, 4},
	};
	uint8_t framed[32] = {0x00, 0x00, 0x00, 0x00, 0x07, 0x00};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		enum decode_result r = decode_raw(cases[i].bytes, cases[i].n, CHANNEL_SMS);
		if (r != DECODE_DECODE_ERROR || !strstr(err, "feedback.v1.FeedbackEvent"))
			fail_msg("%s: got %s: %s", cases[i].what, decode_reason_code(r), err);
		/* The same garbage behind valid framing. */
		memcpy(framed + 6, cases[i].bytes, cases[i].n);
		r = decode_raw(framed, 6 + cases[i].n, CHANNEL_SMS);
		if (r != DECODE_DECODE_ERROR)
			fail_msg("framed %s: got %s: %s", cases[i].what, decode_reason_code(r),
			         err);
	}
}

/* Shared by the four id fields: lengths 0, 1, 128, 129 bytes. */
static void check_id_lengths(char **field, bool required, const char *missing, const char *invalid,
                             const char *name, const char **out)
{
	char quoted[64];

	snprintf(quoted, sizeof(quoted), "'%s'", name);
	*field = "";
	if (required)
		assert_reject(decode_msg(), missing, quoted);
	else
		assert_ok(decode_msg());
	if (!required)
		assert_string_equal(*out, "");
	*field = "x";
	assert_ok(decode_msg());
	assert_string_equal(*out, "x");
	*field = repeat('a', 128);
	assert_ok(decode_msg());
	assert_int_equal(strlen(*out), 128);
	*field = repeat('a', 129);
	assert_reject(decode_msg(), invalid, quoted);
	assert_non_null(strstr(err, "129 bytes"));
	/* 64 two-byte characters are 128 bytes; 65 are 130. */
	char *s = repeat('.', 130);
	for (int i = 0; i < 65; i++)
		memcpy(s + 2 * i, "\xc3\xa9", 2);
	s[128] = '\0';
	*field = s;
	assert_ok(decode_msg());
	assert_int_equal(strlen(*out), 128);
	s[128] = '\xc3';
	*field = s;
	assert_reject(decode_msg(), invalid, quoted);
}

static void test_event_id(void **state)
{
	(void)state;
	check_id_lengths(&M.ev.event_id, true, "missing_event_id", "invalid_event_id", "event_id",
	                 &ev.event_id);
}

static void test_customer_id(void **state)
{
	(void)state;
	check_id_lengths(&M.ev.customer_id, true, "missing_customer_id", "invalid_customer_id",
	                 "customer_id", &ev.customer_id);
}

static void test_agent_id(void **state)
{
	(void)state;
	check_id_lengths(&M.ev.agent_id, false, NULL, "invalid_agent_id", "agent_id", &ev.agent_id);
}

static void test_interaction_id(void **state)
{
	(void)state;
	check_id_lengths(&M.ev.interaction_id, false, NULL, "invalid_interaction_id",
	                 "interaction_id", &ev.interaction_id);
}

static void test_occurred_at_missing_and_invalid(void **state)
{
	(void)state;
	M.ev.occurred_at = NULL;
	assert_reject(decode_msg(), "missing_occurred_at", "'occurred_at'");
	assert_string_equal(err, "event has no 'occurred_at'");

	M.ev.occurred_at = &M.ts;
	M.ts.seconds = NOW_S;
	M.ts.nanos = -1;
	assert_reject(decode_msg(), "invalid_occurred_at", "'occurred_at'");
	M.ts.nanos = 1000000000;
	assert_reject(decode_msg(), "invalid_occurred_at", "'occurred_at'");
	M.ts.nanos = 999999999;
	assert_ok(decode_msg());
	assert_true(ev.occurred_at_us == NOW_S * 1000000 + 999999);

	/* Years 1 to 9999 only. */
	M.ts.nanos = 0;
	M.ts.seconds = YEAR1_S;
	assert_ok(decode_msg());
	assert_true(ev.occurred_at_us == -62135596800000000LL);
	M.ts.seconds = YEAR1_S - 1;
	assert_reject(decode_msg(), "invalid_occurred_at", "'occurred_at'");
	M.ts.seconds = YEAR9999_S + 1;
	assert_reject(decode_msg(), "invalid_occurred_at", "'occurred_at'");
	M.ts.seconds = INT64_MAX;
	assert_reject(decode_msg(), "invalid_occurred_at", "'occurred_at'");
	M.ts.seconds = INT64_MIN;
	assert_reject(decode_msg(), "invalid_occurred_at", "'occurred_at'");
	/* The epoch itself is a valid instant. */
	M.ts.seconds = 0;
	assert_ok(decode_msg());
	assert_true(ev.occurred_at_us == 0);
}

/* Packs the event and appends raw wire bytes after it; returns the length. */
static size_t msg_pack_then(const uint8_t *tail, size_t n)
{
	size_t len = msg_pack();

	assert_true(len + n <= sizeof(wire));
	memcpy(wire + len, tail, n);
	return len + n;
}

/*
 * occurred_at and contact sent in several parts are each one field, merged
 * as protobuf's parsers merge them: later fields win, the others stay. Each
 * part alone would be the whole field to protobuf-c.
 */
static void test_split_fields_are_merged(void **state)
{
	/* occurred_at {nanos: 5}; {nanos: 7000}; contact {handle_seconds: 40}; contact {} */
	static const uint8_t nanos5[] = {0x12, 0x02, 0x10, 0x05};
	static const uint8_t nanos7000[] = {0x12, 0x03, 0x10, 0xd8, 0x36};
	static const uint8_t handle40[] = {0x42, 0x02, 0x18, 0x28};
	static const uint8_t handle40_empty[] = {0x42, 0x02, 0x18, 0x28, 0x42, 0x00};
	uint8_t framed[1024] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x00};
	size_t n;

	(void)state;
	/* An hour ahead, then nanos: still an hour ahead, not 1970. */
	M.ts.seconds = NOW_S + 3600;
	n = msg_pack_then(nanos5, sizeof(nanos5));
	assert_reject(decode_raw(wire, n, CHANNEL_SMS), "future_occurred_at", "'occurred_at'");
	assert_string_equal(err, "'occurred_at' is 3599.876544 s in the future, more than 300");

	/* A minute ago, then 7000 ns: 7 us past that minute. */
	M.ts.seconds = NOW_S - 60;
	n = msg_pack_then(nanos7000, sizeof(nanos7000));
	assert_ok(decode_raw(wire, n, CHANNEL_SMS));
	assert_true(ev.occurred_at_us == (NOW_S - 60) * 1000000 + 7);
	assert_string_equal(ev.event_id, "evt-1");
	assert_int_equal(ev.csat.score, 4);
	assert_false(ev.has_contact);

	/* Answered after 30 s, then a handle time of 40 s: all three stay. */
	set_contact(OUTCOME_ANSWERED, 30, 0);
	n = msg_pack_then(handle40, sizeof(handle40));
	assert_ok(decode_raw(wire, n, CHANNEL_SMS));
	assert_true(ev.has_contact);
	assert_int_equal(ev.outcome, OUTCOME_ANSWERED);
	assert_int_equal(ev.wait_seconds, 30);
	assert_int_equal(ev.handle_seconds, 40);

	/* The same behind the schema registry's framing, with an empty last part. */
	n = msg_pack_then(handle40_empty, sizeof(handle40_empty));
	memcpy(framed + 6, wire, n);
	assert_ok(decode_raw(framed, n + 6, CHANNEL_SMS));
	assert_int_equal(ev.outcome, OUTCOME_ANSWERED);
	assert_int_equal(ev.wait_seconds, 30);
	assert_int_equal(ev.handle_seconds, 40);

	/* A field not sent stays absent when another is merged. */
	M.ev.occurred_at = NULL;
	n = msg_pack_then(handle40, sizeof(handle40));
	assert_reject(decode_raw(wire, n, CHANNEL_SMS), "missing_occurred_at", "'occurred_at'");
}

static void test_occurred_at_future_boundary(void **state)
{
	(void)state;
	/* NOW is NOW_S s + 123456 us; +300 s is NOW_S + 300 s + 123456000 ns. */
	M.ts.seconds = NOW_S + 300;
	M.ts.nanos = 123456000;
	assert_ok(decode_msg());
	assert_true(ev.occurred_at_us == NOW_US + 300000000);
	/* One microsecond later. */
	M.ts.nanos = 123457000;
	assert_reject(decode_msg(), "future_occurred_at", "'occurred_at'");
	assert_string_equal(err, "'occurred_at' is 300.000001 s in the future, more than 300");
	/* Nanoseconds below a microsecond do not count (microsecond resolution). */
	M.ts.nanos = 123456999;
	assert_ok(decode_msg());
	/* An hour ahead. */
	M.ts.seconds = NOW_S + 3600;
	M.ts.nanos = 0;
	assert_reject(decode_msg(), "future_occurred_at", "'occurred_at'");
	/* 3600 s minus NOW's 0.123456 s. */
	assert_string_equal(err, "'occurred_at' is 3599.876544 s in the future, more than 300");
	/* Far in the past is fine. */
	M.ts.seconds = NOW_S - 400 * 86400;
	assert_ok(decode_msg());
}

static void test_channel(void **state)
{
	static const enum channel topics[] = {CHANNEL_SMS, CHANNEL_EMAIL, CHANNEL_PHONE,
	                                      CHANNEL_SOCIAL};

	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(topics); t++) {
		for (int c = 0; c <= 4; c++) {
			M.ev.channel = (Feedback__V1__Channel)c;
			enum decode_result r = decode_msg_on(topics[t]);
			if (c == 0 || c == (int)topics[t]) {
				assert_ok(r);
				assert_int_equal(ev.channel, topics[t]);
			} else {
				assert_reject(r, "channel_mismatch", "'channel'");
			}
		}
	}
	M.ev.channel = FEEDBACK__V1__CHANNEL__CHANNEL_SMS;
	assert_reject(decode_msg_on(CHANNEL_EMAIL), "channel_mismatch", "'channel'");
	assert_string_equal(err,
	                    "event 'channel' is sms but the message came from the email topic");

	M.ev.channel = (Feedback__V1__Channel)5;
	assert_reject(decode_msg(), "invalid_channel", "'channel'");
	assert_string_equal(err, "'channel' 5 is not a known channel");
	M.ev.channel = (Feedback__V1__Channel)-1;
	assert_reject(decode_msg(), "invalid_channel", "'channel'");
	M.ev.channel = (Feedback__V1__Channel)1000;
	assert_reject(decode_msg(), "invalid_channel", "'channel'");
}

static void test_metric(void **state)
{
	(void)state;
	only_rating(0, 3, 0, 0);
	assert_reject(decode_msg(), "invalid_metric", "metric 0");
	only_rating(4, 3, 0, 0);
	assert_reject(decode_msg(), "invalid_metric", "metric 4");
	only_rating(-1, 3, 0, 0);
	assert_reject(decode_msg(), "invalid_metric", "metric -1");
	/* The second rating is the bad one: its position is named. */
	only_rating(METRIC_CSAT, 3, 0, 0);
	add_rating(7, 3, 0, 0);
	assert_reject(decode_msg(), "invalid_metric", "rating 2");
}

static void test_duplicate_metric(void **state)
{
	static const int metrics[] = {METRIC_CSAT, METRIC_NPS, METRIC_CES};
	static const char *const names[] = {"'csat'", "'nps'", "'ces'"};

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		only_rating(metrics[i], 2, 0, 0);
		add_rating(metrics[i], 3, 0, 0);
		assert_reject(decode_msg(), "duplicate_metric", names[i]);
	}
	/* Three different metrics are fine; a fourth repeats one. */
	only_rating(METRIC_CSAT, 2, 0, 0);
	add_rating(METRIC_NPS, 3, 0, 0);
	add_rating(METRIC_CES, 4, 0, 0);
	assert_ok(decode_msg());
	add_rating(METRIC_NPS, 3, 0, 0);
	assert_reject(decode_msg(), "duplicate_metric", "'nps'");
	assert_string_equal(err, "event has two 'nps' ratings");
}

struct scale_case {
	int metric;
	int32_t min, max, score;
	const char *want; /* reason code */
};

static void check_scales(const struct scale_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		only_rating(c[i].metric, c[i].score, c[i].min, c[i].max);
		enum decode_result r = decode_msg();
		if (strcmp(decode_reason_code(r), c[i].want) != 0)
			fail_msg("metric %d scale %d-%d score %d: want %s, got %s: %s", c[i].metric,
			         (int)c[i].min, (int)c[i].max, (int)c[i].score, c[i].want,
			         decode_reason_code(r), err);
		if (r == DECODE_OK) {
			const struct rating *got = c[i].metric == METRIC_CSAT  ? &ev.csat
			                           : c[i].metric == METRIC_NPS ? &ev.nps
			                                                       : &ev.ces;
			assert_true(got->present);
			assert_int_equal(got->scale_min, c[i].min);
			assert_int_equal(got->scale_max, c[i].max);
			assert_int_equal(got->score, c[i].score);
		} else {
			static const char *const names[] = {"", "'csat'", "'nps'", "'ces'"};
			assert_non_null(strstr(err, names[c[i].metric]));
		}
	}
}

static void test_scales_csat(void **state)
{
	static const struct scale_case c[] = {
	    {METRIC_CSAT, 1, 2, 2, "ok"},             /* 2 points */
	    {METRIC_CSAT, 1, 3, 1, "ok"},             /* 3 points */
	    {METRIC_CSAT, 1, 10, 10, "ok"},           /* 10 points */
	    {METRIC_CSAT, 0, 10, 0, "ok"},            /* 11 points */
	    {METRIC_CSAT, 1, 11, 11, "ok"},           /* 11 points */
	    {METRIC_CSAT, -5, 5, -5, "ok"},           /* 11 points */
	    {METRIC_CSAT, 0, 11, 5, "invalid_scale"}, /* 12 points */
	    {METRIC_CSAT, 1, 12, 5, "invalid_scale"}, /* 12 points */
	    {METRIC_CSAT, 3, 3, 3, "invalid_scale"},  /* 1 point */
	    {METRIC_CSAT, 5, 1, 3, "invalid_scale"},  /* reversed */
	    {METRIC_CSAT, 1, 0, 1, "invalid_scale"},  /* only one bound 0: not the default */
	    {METRIC_CSAT, 0, 1, 1, "ok"},             /* 2 points 0-1 */
	    {METRIC_CSAT, INT32_MIN, INT32_MAX, 0, "invalid_scale"},
	    {METRIC_CSAT, INT32_MAX - 1, INT32_MAX, INT32_MAX, "ok"},
	};

	(void)state;
	check_scales(c, ARRAY_SIZE(c));
	only_rating(METRIC_CSAT, 3, 0, 11);
	assert_reject(decode_msg(), "invalid_scale", "'csat' scale 0-11");
}

static void test_scales_nps(void **state)
{
	static const struct scale_case c[] = {
	    {METRIC_NPS, 0, 10, 7, "ok"},
	    {METRIC_NPS, 1, 10, 7, "invalid_scale"},
	    {METRIC_NPS, 0, 9, 7, "invalid_scale"},
	    {METRIC_NPS, 1, 5, 3, "invalid_scale"},
	    {METRIC_NPS, 0, 11, 7, "invalid_scale"},
	    {METRIC_NPS, 1, 11, 7, "invalid_scale"},
	};

	(void)state;
	check_scales(c, ARRAY_SIZE(c));
	only_rating(METRIC_NPS, 3, 1, 10);
	assert_reject(decode_msg(), "invalid_scale", "'nps' scale 1-10 is not 0-10");
}

static void test_scales_ces(void **state)
{
	static const struct scale_case c[] = {
	    {METRIC_CES, 1, 5, 3, "ok"},
	    {METRIC_CES, 1, 7, 3, "ok"},
	    {METRIC_CES, 1, 6, 3, "invalid_scale"},
	    {METRIC_CES, 0, 7, 3, "invalid_scale"},
	    {METRIC_CES, 2, 7, 3, "invalid_scale"},
	    {METRIC_CES, 0, 4, 3, "invalid_scale"},
	    {METRIC_CES, 1, 10, 3, "invalid_scale"},
	};

	(void)state;
	check_scales(c, ARRAY_SIZE(c));
	only_rating(METRIC_CES, 3, 1, 6);
	assert_reject(decode_msg(), "invalid_scale", "'ces' scale 1-6 is neither 1-5 nor 1-7");
}

static void test_scores(void **state)
{
	static const struct scale_case c[] = {
	    /* CSAT default 1-5 */
	    {METRIC_CSAT, 0, 0, 1, "ok"},
	    {METRIC_CSAT, 0, 0, 5, "ok"},
	    {METRIC_CSAT, 0, 0, 0, "invalid_score"},
	    {METRIC_CSAT, 0, 0, 6, "invalid_score"},
	    {METRIC_CSAT, 0, 0, -1, "invalid_score"},
	    /* CSAT 0-10 */
	    {METRIC_CSAT, 0, 10, 0, "ok"},
	    {METRIC_CSAT, 0, 10, 10, "ok"},
	    {METRIC_CSAT, 0, 10, 11, "invalid_score"},
	    {METRIC_CSAT, 0, 10, -1, "invalid_score"},
	    /* NPS 0-10, default and explicit */
	    {METRIC_NPS, 0, 0, 0, "ok"},
	    {METRIC_NPS, 0, 0, 10, "ok"},
	    {METRIC_NPS, 0, 0, 11, "invalid_score"},
	    {METRIC_NPS, 0, 10, -1, "invalid_score"},
	    /* CES 1-7 default, 1-5 */
	    {METRIC_CES, 0, 0, 1, "ok"},
	    {METRIC_CES, 0, 0, 7, "ok"},
	    {METRIC_CES, 0, 0, 0, "invalid_score"},
	    {METRIC_CES, 0, 0, 8, "invalid_score"},
	    {METRIC_CES, 1, 5, 5, "ok"},
	    {METRIC_CES, 1, 5, 6, "invalid_score"},
	    {METRIC_CES, 1, 7, INT32_MAX, "invalid_score"},
	    {METRIC_CES, 1, 7, INT32_MIN, "invalid_score"},
	};

	(void)state;
	/* check_scales compares the resolved scale: give the defaults explicitly for "ok". */
	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		struct scale_case one = c[i];
		only_rating(one.metric, one.score, one.min, one.max);
		enum decode_result r = decode_msg();
		if (strcmp(decode_reason_code(r), one.want) != 0)
			fail_msg("metric %d scale %d-%d score %d: want %s, got %s: %s", one.metric,
			         (int)one.min, (int)one.max, (int)one.score, one.want,
			         decode_reason_code(r), err);
	}
	only_rating(METRIC_CSAT, 6, 0, 0);
	assert_reject(decode_msg(), "invalid_score", "'csat'");
	assert_string_equal(err, "rating 'csat' score 6 is outside its scale 1-5");
	only_rating(METRIC_CES, 8, 0, 0);
	assert_reject(decode_msg(), "invalid_score", "'ces' score 8 is outside its scale 1-7");
}

static void test_inverted(void **state)
{
	(void)state;
	/* The agreement form exists for CES only. */
	only_rating(METRIC_CES, 6, 1, 7)->inverted = 1;
	assert_ok(decode_msg());
	assert_true(ev.ces.inverted);
	assert_int_equal(ev.ces.score, 6);
	only_rating(METRIC_CES, 4, 0, 0)->inverted = 1;
	assert_ok(decode_msg());
	assert_true(ev.ces.inverted);
	assert_int_equal(ev.ces.scale_max, 7);
	only_rating(METRIC_CES, 4, 0, 0);
	assert_ok(decode_msg());
	assert_false(ev.ces.inverted);
	only_rating(METRIC_CSAT, 2, 0, 0)->inverted = 1;
	assert_ok(decode_msg());
	assert_false(ev.csat.inverted);
	only_rating(METRIC_NPS, 2, 0, 0)->inverted = 1;
	assert_ok(decode_msg());
	assert_false(ev.nps.inverted);
}

static void test_fcr(void **state)
{
	(void)state;
	M.ev.n_ratings = 0;
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED;
	assert_ok(decode_msg());
	assert_int_equal(ev.fcr, FCR_RESOLVED);
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_UNRESOLVED;
	assert_ok(decode_msg());
	assert_int_equal(ev.fcr, FCR_UNRESOLVED);
	M.ev.first_contact_resolution = (Feedback__V1__Resolution)3;
	assert_reject(decode_msg(), "invalid_resolution", "'first_contact_resolution'");
	assert_string_equal(err, "'first_contact_resolution' 3 is not resolved or unresolved");
	M.ev.first_contact_resolution = (Feedback__V1__Resolution)-1;
	assert_reject(decode_msg(), "invalid_resolution", "'first_contact_resolution'");
	/* With a rating, 0 means "not asked". */
	only_rating(METRIC_CSAT, 3, 0, 0);
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_UNSPECIFIED;
	assert_ok(decode_msg());
	assert_int_equal(ev.fcr, FCR_NOT_ASKED);
}

static void test_contact(void **state)
{
	(void)state;
	M.ev.n_ratings = 0;
	set_contact(OUTCOME_ANSWERED, 30, 240);
	assert_ok(decode_msg());
	assert_true(ev.has_contact);
	assert_int_equal(ev.outcome, OUTCOME_ANSWERED);
	assert_int_equal(ev.wait_seconds, 30);
	assert_int_equal(ev.handle_seconds, 240);
	set_contact(OUTCOME_ABANDONED, 95, 0);
	assert_ok(decode_msg());
	assert_int_equal(ev.outcome, OUTCOME_ABANDONED);
	assert_int_equal(ev.wait_seconds, 95);
	assert_int_equal(ev.handle_seconds, 0);
	set_contact(OUTCOME_SELF_SERVICE, 0, 0);
	assert_ok(decode_msg());
	assert_int_equal(ev.outcome, OUTCOME_SELF_SERVICE);
	/* Outcome not given (the enum's 0): a contact all the same, offered with no outcome. */
	set_contact(0, 10, 20);
	assert_ok(decode_msg());
	assert_true(ev.has_contact);
	assert_int_equal(ev.outcome, OUTCOME_NONE);
	assert_int_equal(ev.wait_seconds, 10);
	assert_int_equal(ev.handle_seconds, 20);
	set_contact(4, 10, 10);
	assert_reject(decode_msg(), "invalid_outcome", "'contact.outcome' 4");
	set_contact(-2, 10, 10);
	assert_reject(decode_msg(), "invalid_outcome", "'contact.outcome' -2");
	/* Durations: uint32 up to what the ledger's integer columns hold. */
	set_contact(OUTCOME_ANSWERED, 604801, 1209600); /* an email answered after a week */
	assert_ok(decode_msg());
	assert_int_equal(ev.wait_seconds, 604801);
	assert_int_equal(ev.handle_seconds, 1209600);
	set_contact(OUTCOME_ANSWERED, 2147483647u, 2147483647u);
	assert_ok(decode_msg());
	assert_int_equal(ev.wait_seconds, 2147483647u);
	assert_int_equal(ev.handle_seconds, 2147483647u);
	set_contact(OUTCOME_ANSWERED, 2147483648u, 0);
	assert_reject(
	    decode_msg(), "invalid_duration",
	    "'contact.wait_seconds' 2147483648 is more than the 2147483647 the ledger holds");
	set_contact(OUTCOME_ANSWERED, 0, 2147483648u);
	assert_reject(decode_msg(), "invalid_duration", "'contact.handle_seconds' 2147483648");
	set_contact(OUTCOME_ANSWERED, UINT32_MAX, 0);
	assert_reject(decode_msg(), "invalid_duration", "'contact.wait_seconds' 4294967295");
}

static void test_comment_length(void **state)
{
	(void)state;
	M.ev.comment = repeat('c', 4096);
	assert_ok(decode_msg());
	assert_int_equal(strlen(ev.comment), 4096);
	assert_string_equal(ev.comment, M.ev.comment);
	M.ev.comment = repeat('c', 4097);
	assert_reject(decode_msg(), "comment_too_long", "'comment'");
	assert_string_equal(err, "'comment' is 4097 bytes, more than 4096");
	/* Bytes, not characters: 2048 two-byte characters fit, 2049 do not. */
	char *s = repeat('.', 4098);
	for (int i = 0; i < 2049; i++)
		memcpy(s + 2 * i, "\xc3\xa9", 2);
	s[4096] = '\0';
	M.ev.comment = s;
	assert_ok(decode_msg());
	assert_int_equal(strlen(ev.comment), 4096);
	s[4096] = '\xc3';
	assert_reject(decode_msg(), "comment_too_long", "4098 bytes");
}

static void test_locale(void **state)
{
	static const char *const good[] = {
	    "en", "fr-CA", "zh-Hant-TW", "es-419", "de-DE-1996", "sr-Latn-RS", "haw",
	    "en-a-bbb-x-a1b2c3d4",
	    /* 37 characters, over RFC 5646's 35 that every implementation must hold */
	    "de-DE-u-co-phonebk-ka-shifted-kn-true",
	    /* private use, grandfathered */
	    "x-pirate", "i-klingon", "X-A1"};
	static const char *const bad[] = {
	    "e",     "en_US",     "en-",         "-en", "123", "en--US", "en-abcdefghi",
	    "en US", "abcdefghi", "en-\xc3\xa9", "x",   "x-",  "i",      "q-klingon"};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		M.ev.locale = (char *)good[i];
		enum decode_result r = decode_msg();
		if (r != DECODE_OK)
			fail_msg("'%s': got %s: %s", good[i], decode_reason_code(r), err);
		assert_string_equal(ev.locale, good[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		M.ev.locale = (char *)bad[i];
		assert_reject(decode_msg(), "invalid_locale", "'locale'");
	}
	/* 128 bytes is the longest tag accepted, 129 is too long. */
	char *longest = repeat('a', 128);
	for (size_t i = 2; i < 128; i += 9)
		longest[i] = '-';
	M.ev.locale = longest;
	assert_ok(decode_msg());
	assert_string_equal(ev.locale, longest);
	M.ev.locale = "en-aaaaaaaa-bbbbbbbb-cccccccc-dddddd";
	assert_ok(decode_msg());
	char *over = repeat('a', 129);
	for (size_t i = 2; i < 129; i += 9)
		over[i] = '-';
	M.ev.locale = over;
	assert_reject(decode_msg(), "invalid_locale", "'locale' is 129 bytes, more than 128");
	M.ev.locale = "en_US";
	assert_reject(decode_msg(), "invalid_locale", "'locale'");
	assert_string_equal(err, "'locale' 'en_US' is not a BCP 47 language tag");
}

static void test_attributes_count(void **state)
{
	(void)state;
	set_attributes(32, "value");
	assert_ok(decode_msg());
	set_attributes(33, "value");
	assert_reject(decode_msg(), "too_many_attributes", "attributes");
	assert_string_equal(err, "event has 33 attributes, more than 32");
	set_attributes(0, "value");
	assert_ok(decode_msg());
	/* A key sent again is the same entry: 33 entries, 32 keys. */
	set_attributes(33, "value");
	M.attr[32].key = M.attr_keys[0];
	assert_ok(decode_msg());
	/* 33 keys among 40 entries. */
	set_attributes(40, "value");
	for (size_t i = 33; i < 40; i++)
		M.attr[i].key = M.attr_keys[i - 33];
	assert_reject(decode_msg(), "too_many_attributes", "attributes");
	assert_string_equal(err, "event has at least 33 attributes, more than 32");
}

/*
 * Each string field, overridden after the valid encoding by one more
 * occurrence of the field (the last one wins), and the name the error uses.
 */
static const struct {
	uint32_t field;
	const char *name;
} string_fields[] = {
    {1, "'event_id'"},       {4, "'customer_id'"}, {5, "'agent_id'"},
    {6, "'interaction_id'"}, {9, "'comment'"},     {10, "'locale'"},
};

/* The baseline encoding with field set to the n bytes at s. */
static size_t with_field(uint32_t field, const void *s, size_t n)
{
	size_t len = msg_pack();

	return append_field(wire, len, field, s, n);
}

/* The baseline encoding plus one attributes entry of key and value. */
static size_t with_attribute(const void *key, size_t kn, const void *value, size_t vn)
{
	uint8_t entry[64];
	size_t en = 0, len = msg_pack();

	en = append_field(entry, en, 1, key, kn);
	en = append_field(entry, en, 2, value, vn);
	return append_field(wire, len, 11, entry, en);
}

static const struct {
	const char *what;
	const char *bytes;
	size_t n;
} bad_strings[] = {
    {"NUL byte first", "\0ab", 3},
    {"NUL byte inside", "en\0US", 5},
    {"NUL byte last", "ab\0", 3},
    {"lone continuation byte", "a\x80", 2},
    {"0xff", "\xff", 1},
    {"overlong slash", "\xc0\xaf", 2},
    {"overlong NUL", "\xc0\x80", 2},
    {"overlong three-byte", "\xe0\x80\xaf", 3},
    {"UTF-16 surrogate", "\xed\xa0\x80", 3},
    {"past U+10FFFF", "\xf4\x90\x80\x80", 4},
    {"five-byte lead", "\xf8\x88\x80\x80\x80", 5},
    {"truncated euro sign", "ab\xe2\x82", 4},
    {"truncated emoji", "\xf0\x9f\x98", 3},
};

static void test_invalid_strings_every_field(void **state)
{
	(void)state;
	for (size_t f = 0; f < ARRAY_SIZE(string_fields); f++) {
		for (size_t b = 0; b < ARRAY_SIZE(bad_strings); b++) {
			size_t len = with_field(string_fields[f].field, bad_strings[b].bytes,
			                        bad_strings[b].n);
			enum decode_result r = decode_raw(wire, len, CHANNEL_SMS);
			if (r != DECODE_INVALID_STRING || !strstr(err, string_fields[f].name))
				fail_msg("%s in %s: got %s: %s", bad_strings[b].what,
				         string_fields[f].name, decode_reason_code(r), err);
		}
	}
}

static void test_invalid_strings_in_attributes(void **state)
{
	(void)state;
	for (size_t b = 0; b < ARRAY_SIZE(bad_strings); b++) {
		size_t len = with_attribute(bad_strings[b].bytes, bad_strings[b].n, "v", 1);
		enum decode_result r = decode_raw(wire, len, CHANNEL_SMS);
		if (r != DECODE_INVALID_STRING || !strstr(err, "'attributes'"))
			fail_msg("%s in a key: got %s: %s", bad_strings[b].what,
			         decode_reason_code(r), err);
		len = with_attribute("k", 1, bad_strings[b].bytes, bad_strings[b].n);
		r = decode_raw(wire, len, CHANNEL_SMS);
		if (r != DECODE_INVALID_STRING || !strstr(err, "'attributes'"))
			fail_msg("%s in a value: got %s: %s", bad_strings[b].what,
			         decode_reason_code(r), err);
	}
	/* A well-formed entry, by hand, is fine. */
	size_t len = with_attribute("k\xc3\xa9", 3, "\xe2\x82\xac", 3);
	assert_ok(decode_raw(wire, len, CHANNEL_SMS));
}

static void test_valid_strings(void **state)
{
	static const char *const good[] = {
	    "a",
	    "\xc2\x80",           /* U+0080, smallest two-byte */
	    "\xdf\xbf",           /* U+07FF */
	    "\xe0\xa0\x80",       /* U+0800, smallest three-byte */
	    "\xed\x9f\xbf",       /* U+D7FF, just below the surrogates */
	    "\xee\x80\x80",       /* U+E000, just above */
	    "\xef\xbf\xbf",       /* U+FFFF */
	    "\xf0\x90\x80\x80",   /* U+10000, smallest four-byte */
	    "\xf4\x8f\xbf\xbf",   /* U+10FFFF, the last code point */
	    "\x01\x7f tab\there", /* control characters are valid UTF-8 */
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		M.ev.comment = (char *)good[i];
		M.ev.agent_id = (char *)good[i];
		enum decode_result r = decode_msg();
		if (r != DECODE_OK)
			fail_msg("string %zu: got %s: %s", i, decode_reason_code(r), err);
		assert_string_equal(ev.comment, good[i]);
		assert_string_equal(ev.agent_id, good[i]);
	}
}

static void test_no_content(void **state)
{
	(void)state;
	M.ev.n_ratings = 0;
	M.ev.comment = "nothing to rate";
	assert_reject(decode_msg(), "no_content", "no rating");
	assert_string_equal(err, "event has no rating, no contact block and no FCR answer");
	/* Any one of the three is content. */
	set_contact(OUTCOME_ABANDONED, 12, 0);
	assert_ok(decode_msg());
	M.ev.contact = NULL;
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED;
	assert_ok(decode_msg());
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_UNSPECIFIED;
	only_rating(METRIC_NPS, 10, 0, 0);
	assert_ok(decode_msg());
}

static void test_errmsg_buffers(void **state)
{
	char small[8];

	(void)state;
	only_rating(METRIC_CSAT, 6, 0, 0);
	size_t n = msg_pack();
	/* No buffer at all. */
	assert_int_equal(decode_event(wire, n, CHANNEL_SMS, NOW_US, &arena, &ev, NULL, 0),
	                 DECODE_INVALID_SCORE);
	/* A short buffer gets a truncated, terminated message. */
	memset(small, 'x', sizeof(small));
	assert_int_equal(
	    decode_event(wire, n, CHANNEL_SMS, NOW_US, &arena, &ev, small, sizeof(small)),
	    DECODE_INVALID_SCORE);
	assert_string_equal(small, "rating ");
}

/* An independent strict UTF-8 check for the robustness test. */
static bool utf8_ok(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	if (n > max)
		return false;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i], need, cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= need)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += need + 1;
	}
	return true;
}

static void check_decoded_event(enum channel topic)
{
	assert_true(utf8_ok(ev.event_id, 128) && ev.event_id[0] != '\0');
	assert_true(utf8_ok(ev.customer_id, 128) && ev.customer_id[0] != '\0');
	assert_true(utf8_ok(ev.agent_id, 128));
	assert_true(utf8_ok(ev.interaction_id, 128));
	assert_true(utf8_ok(ev.comment, 4096));
	assert_true(utf8_ok(ev.locale, 128));
	assert_int_equal(ev.channel, topic);
	assert_true(ev.occurred_at_us <= NOW_US + 300000000);
	const struct rating *rs[] = {&ev.csat, &ev.nps, &ev.ces};
	for (size_t i = 0; i < 3; i++) {
		if (!rs[i]->present)
			continue;
		assert_true(rs[i]->scale_min < rs[i]->scale_max);
		assert_true(rs[i]->score >= rs[i]->scale_min && rs[i]->score <= rs[i]->scale_max);
	}
	assert_in_range(ev.fcr, FCR_NOT_ASKED, FCR_UNRESOLVED);
	if (ev.has_contact)
		assert_in_range(ev.outcome, OUTCOME_NONE, OUTCOME_SELF_SERVICE);
	assert_true(ev.csat.present || ev.nps.present || ev.ces.present || ev.has_contact ||
	            ev.fcr != FCR_NOT_ASKED);
}

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64: deterministic across runs and platforms. */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fuzz_one(const uint8_t *v, size_t n, enum channel topic, int *ok_count)
{
	uint8_t *copy = n ? malloc(n) : NULL;
	char msg[256];

	if (n)
		assert_non_null(copy);
	if (n)
		memcpy(copy, v, n);
	arena_reset(&arena);
	msg[0] = '\0';
	enum decode_result r = decode_event(copy, n, topic, NOW_US, &arena, &ev, msg, sizeof(msg));
	free(copy);
	assert_in_range(r, 0, DECODE_RESULT_COUNT - 1);
	if (r == DECODE_OK) {
		check_decoded_event(topic);
		(*ok_count)++;
	} else {
		assert_true(msg[0] != '\0');
	}
}

static void test_robustness(void **state)
{
	static char comment[] = "Service \xc3\xa9tait lent \xe2\x80\x94 4/10 \xf0\x9f\x98\x95";
	uint8_t base[3][2048], buf[2100];
	size_t base_n[3];
	int ok = 0, total = 0;

	(void)state;
	/* 1: every field set, plain. */
	M.ev.agent_id = "agent-1";
	M.ev.interaction_id = "ticket-9";
	M.ev.channel = FEEDBACK__V1__CHANNEL__CHANNEL_SOCIAL;
	only_rating(METRIC_CSAT, 2, 1, 5);
	add_rating(METRIC_NPS, 4, 0, 0);
	add_rating(METRIC_CES, 6, 1, 7)->inverted = 1;
	set_contact(OUTCOME_ANSWERED, 120, 600);
	M.ev.comment = comment;
	M.ev.locale = "pt-BR";
	set_attributes(3, "x\xc3\xa9");
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_UNRESOLVED;
	base_n[0] = msg_pack();
	memcpy(base[0], wire, base_n[0]);
	/* 2: the same in Confluent framing with an index list [1, 0]. */
	static const uint8_t head[] = {0x00, 0x00, 0x00, 0x01, 0x00, 0x04, 0x02, 0x00};
	memcpy(base[1], head, sizeof(head));
	memcpy(base[1] + sizeof(head), wire, base_n[0]);
	base_n[1] = sizeof(head) + base_n[0];
	/* 3: a minimal FCR-only event. */
	msg_init();
	M.ev.n_ratings = 0;
	M.ev.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED;
	base_n[2] = msg_pack();
	memcpy(base[2], wire, base_n[2]);

	for (int b = 0; b < 3; b++) {
		int before = ok;
		/* The bases themselves decode. */
		fuzz_one(base[b], base_n[b], CHANNEL_SOCIAL, &ok);
		assert_int_equal(ok, before + 1);
		/* Every truncation. */
		for (size_t n = 0; n < base_n[b]; n++, total++)
			fuzz_one(base[b], n, CHANNEL_SOCIAL, &ok);
		/* Seeded mutations: 1 to 4 bytes replaced, or a byte inserted or removed. */
		rng_state = 0x9e3779b97f4a7c15ULL + (uint64_t)b;
		for (int i = 0; i < 3000; i++, total++) {
			size_t n = base_n[b];
			memcpy(buf, base[b], n);
			uint64_t kind = rng() % 8;
			if (kind < 5) {
				int k = 1 + (int)(rng() % 4);
				for (int j = 0; j < k; j++) {
					static const uint8_t special[] = {0x00, 0x7f, 0x80, 0xff,
					                                  0x01, 0x0a, 0x12, 0xc0};
					uint64_t pos = rng() % n;
					buf[pos] = rng() % 3 ? (uint8_t)rng()
					                     : special[rng() % sizeof(special)];
				}
			} else if (kind < 7) {
				size_t pos = (size_t)(rng() % (n + 1));
				memmove(buf + pos + 1, buf + pos, n - pos);
				buf[pos] = (uint8_t)rng();
				n++;
			} else {
				size_t pos = (size_t)(rng() % n);
				memmove(buf + pos, buf + pos + 1, n - pos - 1);
				n--;
			}
			fuzz_one(buf, n, CHANNEL_SOCIAL, &ok);
		}
	}
	/* Some mutations must keep a valid event (e.g. changed comment letters), most not. */
	assert_true(ok > 3);
	assert_true(ok < total);
}

/* Runs last: every enum decode_result value was produced by a test above. */
static void test_every_result_covered(void **state)
{
	(void)state;
	for (int r = 0; r < DECODE_RESULT_COUNT; r++)
		if (!seen[r])
			fail_msg("no test produces %s", decode_reason_code((enum decode_result)r));
}

#define T(f) cmocka_unit_test_setup(f, test_setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_reason_codes),
	    T(test_full_event),
	    T(test_minimal_event_defaults),
	    T(test_default_scales),
	    T(test_confluent_framing),
	    T(test_confluent_empty_payload),
	    T(test_framing_errors),
	    T(test_empty_value),
	    T(test_garbage),
	    T(test_event_id),
	    T(test_customer_id),
	    T(test_agent_id),
	    T(test_interaction_id),
	    T(test_occurred_at_missing_and_invalid),
	    T(test_split_fields_are_merged),
	    T(test_occurred_at_future_boundary),
	    T(test_channel),
	    T(test_metric),
	    T(test_duplicate_metric),
	    T(test_scales_csat),
	    T(test_scales_nps),
	    T(test_scales_ces),
	    T(test_scores),
	    T(test_inverted),
	    T(test_fcr),
	    T(test_contact),
	    T(test_comment_length),
	    T(test_locale),
	    T(test_attributes_count),
	    T(test_invalid_strings_every_field),
	    T(test_invalid_strings_in_attributes),
	    T(test_valid_strings),
	    T(test_no_content),
	    T(test_errmsg_buffers),
	    T(test_robustness),
	    T(test_every_result_covered),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
