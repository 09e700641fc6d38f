/*
 * feedgen - load and sample generator for the demo, the integration tests
 * and the benchmarks.
 *
 * Produces realistic feedback.v1.FeedbackEvent messages to the four
 * channel topics, keyed by customer id, with a configurable share of
 * re-sent duplicates (same bytes) and of malformed messages of every kind
 * the consumer must dead-letter. Output is deterministic for a given seed:
 * event i depends only on (seed, i) and the shape options (--count,
 * --start, --span, ...), so a second run with the same seed re-sends the
 * same event ids, which lets a test check idempotency across runs.
 *
 * Prints one summary line on stdout:
 *   produced events=N duplicates=N malformed=N messages=N negative=N
 *            sms=N email=N phone=N social=N seed=N
 * where messages is everything written to the channel topics, negative the
 * unique events that are negative under the default rules of KPI.md, and
 * the channel counts are unique valid events. Exit status 0 only when every
 * message was acknowledged by the brokers.
 */
#include "feedback/v1/feedback.pb-c.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_CHANNELS        4
#define MAX_RATINGS       3
#define MAX_ATTRS         3
#define PACK_BUF_SIZE     8192
#define FRAME_HEADER_SIZE 6  /* 0x00, schema id, message index [0] */
#define DUP_RING_SIZE     64 /* how far back a re-sent duplicate may reach */
#define PROGRESS_EVERY_US (5 * 1000000LL)
#define FUTURE_BASE_S     4102444800LL /* 2100-01-01T00:00:00Z */

static const char *const channel_names[N_CHANNELS] = {"sms", "email", "phone", "social"};

/* --- deterministic random numbers ---------------------------------------- */

/* splitmix64: tiny, fast, and the same sequence on every platform. */
struct rng {
	uint64_t s;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rng_next(struct rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

/* An independent stream per (seed, purpose, index): event i never depends on other options. */
static struct rng rng_for(uint64_t seed, uint64_t stream, uint64_t index)
{
	struct rng r = {mix64(seed ^ mix64(stream + 0x632be59bd9b4e019ULL) ^ mix64(~index))};

	return r;
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static bool rng_pct(struct rng *r, double pct)
{
	return rng_unit(r) * 100.0 < pct;
}

static int rng_range(struct rng *r, int lo, int hi)
{
	return lo + (int)rng_below(r, (uint64_t)(hi - lo + 1));
}

/* Picks an index by integer weights. */
static int rng_weighted(struct rng *r, const int *weights, int n)
{
	int total = 0, x;

	for (int i = 0; i < n; i++)
		total += weights[i];
	x = (int)rng_below(r, (uint64_t)total);
	for (int i = 0; i < n; i++) {
		if (x < weights[i])
			return i;
		x -= weights[i];
	}
	return n - 1;
}

enum stream {
	STREAM_EVENT = 1,
	STREAM_AGENT,
	STREAM_DUP_PICK,
	STREAM_DUP_WHICH,
	STREAM_MAL_PICK,
	STREAM_MAL_EVENT,
};

/*
 * Selection sampling (Knuth's algorithm S): called once per position in
 * order, it says yes to exactly `wanted` of `total` positions, spread at
 * random, without keeping a list.
 */
struct sampler {
	struct rng r;
	uint64_t wanted, total, seen, taken;
};

static bool sampler_take(struct sampler *s)
{
	uint64_t left = s->total - s->seen;

	s->seen++;
	if (s->taken < s->wanted && rng_below(&s->r, left) < s->wanted - s->taken) {
		s->taken++;
		return true;
	}
	return false;
}

/* --- options ------------------------------------------------------------- */

struct opts {
	const char *bootstrap;
	uint64_t count;
	int agents;
	int customers;
	double dup_pct;
	double mal_pct;
	double comment_pct;
	double framed_pct;
	double rate;
	uint64_t seed;
	int64_t start_s;
	int64_t span_s;
	bool start_given;
	const char *topic_prefix;
	const char *id_prefix;
	const char *compression;
	uint32_t schema_id;
	bool quiet;
	const char **props; /* "key=value" for librdkafka, in order */
	size_t n_props;
};

/* --- the generated event ------------------------------------------------- */

enum mood { MOOD_NEGATIVE, MOOD_NEUTRAL, MOOD_POSITIVE };

struct attr {
	const char *key;
	const char *value;
};

struct gen_event {
	char event_id[96];
	char customer_id[32];
	char agent_id[32];       /* "" when absent */
	char interaction_id[96]; /* "" when absent */
	const char *comment;     /* "" when absent */
	const char *locale;      /* "" when absent */
	int channel;             /* 1..4, the topic */
	int channel_field;       /* what the event says about itself; 0 = not given */
	int64_t occurred_s;
	int32_t nanos;
	Feedback__V1__Rating ratings[MAX_RATINGS];
	size_t n_ratings;
	bool has_contact;
	Feedback__V1__Contact contact;
	Feedback__V1__Resolution fcr;
	struct attr attrs[MAX_ATTRS];
	size_t n_attrs;
};

struct gen {
	const struct opts *o;
	double *agent_quality; /* by agent number - 1, in [-1, 1]: better agents, fewer negatives */
};

static const char *const comments_negative[] = {
    "Waited far too long on hold and the problem is still not fixed.",
    "Nobody called me back although I was promised a call within 24 hours.",
    "The agent did not listen and kept reading from a script.",
    "Third time I contact you about the same invoice. Very frustrating.",
    "I was transferred four times and had to repeat everything.",
    "Die Wartezeit war viel zu lang und niemand konnte mir helfen.",
    "Très déçu, le problème n'est toujours pas résolu après deux semaines.",
    "Pésimo servicio, me colgaron dos veces.",
    "The app keeps crashing and support just told me to reinstall it. 👎",
    "Billing error again. I want a refund, not an apology.",
};

static const char *const comments_neutral[] = {
    "It was ok, took a bit longer than expected.",
    "Problem solved, but the website could explain this better.",
    "Fine. The chat bot was useless, the human agent was helpful.",
    "Alles in Ordnung, aber die Hotline ist schwer zu erreichen.",
    "Correct, sans plus.",
    "Answer was right but I had to ask twice.",
};

static const char *const comments_positive[] = {
    "Quick and friendly, thank you!",
    "The agent solved my issue in five minutes. Great service.",
    "Very helpful, explained everything clearly.",
    "Super schnell geholfen, vielen Dank!",
    "Service impeccable, merci beaucoup.",
    "Muy amable y eficiente. 👍",
    "Resolved on the first call, that is how it should be.",
    "बहुत अच्छी सेवा, धन्यवाद।",
};

static const char *const locales[] = {"en-US", "en-GB", "de-DE", "fr-FR",
                                      "es-ES", "pt-BR", "nl-NL", "hi-IN"};
static const int locale_weights[] = {40, 15, 12, 10, 8, 6, 5, 4};

static const char *const queues[] = {"billing", "technical", "sales", "retention", "general"};
static const char *const surveys[N_CHANNELS] = {"post-conversation", "post-ticket", "post-call",
                                                "social-dm"};
static const char *const regions[] = {"north", "south", "east", "west"};
static const char *const interaction_prefixes[N_CHANNELS] = {"conv", "ticket", "call", "dm"};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Top/bottom box width of a CSAT scale (KPI.md): 1 on 2-3 points, 2 on 4-9, 3 on 10-11. */
static int csat_box(int points)
{
	return points <= 3 ? 1 : points <= 9 ? 2 : 3;
}

/* A neighbouring mood now and then, so ratings of one event do not always agree. */
static enum mood mood_jitter(struct rng *r, enum mood m)
{
	if (!rng_pct(r, 12))
		return m;
	if (m == MOOD_NEUTRAL)
		return rng_pct(r, 50) ? MOOD_NEGATIVE : MOOD_POSITIVE;
	return MOOD_NEUTRAL;
}

static void add_rating(struct gen_event *ev, Feedback__V1__Metric metric, int score, int min,
                       int max, bool explicit_scale, bool inverted)
{
	Feedback__V1__Rating *rt = &ev->ratings[ev->n_ratings++];

	feedback__v1__rating__init(rt);
	rt->metric = metric;
	rt->score = score;
	if (explicit_scale) {
		rt->scale_min = min;
		rt->scale_max = max;
	}
	rt->inverted = inverted;
}

static void add_csat(struct gen_event *ev, struct rng *r, enum mood m, bool five_point_only)
{
	static const int scale_weights[] = {80, 10, 10}; /* 1-5, 1-10, 0-10 */
	int form = five_point_only ? 0 : rng_weighted(r, scale_weights, 3);
	int min = form == 2 ? 0 : 1;
	int max = form == 0 ? 5 : 10;
	int k = csat_box(max - min + 1);
	int score;

	switch (mood_jitter(r, m)) {
	case MOOD_NEGATIVE:
		score = rng_range(r, min, min + k - 1);
		break;
	case MOOD_NEUTRAL:
		score = rng_range(r, min + k, max - k);
		break;
	default:
		/* Satisfied customers mostly give the top mark. */
		score = rng_pct(r, 65) ? max : rng_range(r, max - k + 1, max);
		break;
	}
	/* Half the producers leave the default 1-5 scale implicit. */
	add_rating(ev, FEEDBACK__V1__METRIC__METRIC_CSAT, score, min, max,
	           form != 0 || rng_pct(r, 50), false);
}

static void add_nps(struct gen_event *ev, struct rng *r, enum mood m)
{
	int score;

	switch (mood_jitter(r, m)) {
	case MOOD_NEGATIVE:
		score = rng_range(r, 0, 6);
		break;
	case MOOD_NEUTRAL:
		score = rng_range(r, 7, 8);
		break;
	default:
		score = rng_pct(r, 60) ? 10 : 9;
		break;
	}
	add_rating(ev, FEEDBACK__V1__METRIC__METRIC_NPS, score, 0, 10, rng_pct(r, 50), false);
}

static void add_ces(struct gen_event *ev, struct rng *r, enum mood m)
{
	static const int form_weights[] = {60, 25, 15}; /* effort 1-7, agreement 1-7, effort 1-5 */
	int form = rng_weighted(r, form_weights, 3);
	int max = form == 2 ? 5 : 7;
	int effort;

	switch (mood_jitter(r, m)) {
	case MOOD_NEGATIVE:
		effort = max == 7 ? rng_range(r, 5, 7) : rng_range(r, 4, 5);
		break;
	case MOOD_NEUTRAL:
		effort = max == 7 ? rng_range(r, 3, 4) : 3;
		break;
	default:
		effort = rng_range(r, 1, 2);
		break;
	}
	if (form == 1) /* "the company made it easy": 7 = agree = little effort */
		add_rating(ev, FEEDBACK__V1__METRIC__METRIC_CES, 1 + max - effort, 1, max, true,
		           true);
	else
		add_rating(ev, FEEDBACK__V1__METRIC__METRIC_CES, effort, 1, max,
		           max == 5 || rng_pct(r, 50), false);
}

/* Negative under the default rules of KPI.md: CSAT bottom box, NPS detractor, CES high effort. */
static bool event_is_negative(const struct gen_event *ev)
{
	for (size_t i = 0; i < ev->n_ratings; i++) {
		const Feedback__V1__Rating *rt = &ev->ratings[i];
		bool dflt = rt->scale_min == 0 && rt->scale_max == 0;

		switch (rt->metric) {
		case FEEDBACK__V1__METRIC__METRIC_CSAT: {
			int min = dflt ? 1 : rt->scale_min, max = dflt ? 5 : rt->scale_max;

			if (rt->score < min + csat_box(max - min + 1))
				return true;
			break;
		}
		case FEEDBACK__V1__METRIC__METRIC_NPS:
			if (rt->score <= 6)
				return true;
			break;
		case FEEDBACK__V1__METRIC__METRIC_CES: {
			int min = dflt ? 1 : rt->scale_min, max = dflt ? 7 : rt->scale_max;
			int effort = rt->inverted ? min + max - rt->score : rt->score;

			if (effort >= (max == 5 ? 4 : 5))
				return true;
			break;
		}
		default:
			break;
		}
	}
	return false;
}

static void pick_comment(struct gen_event *ev, struct rng *r, const struct opts *o, enum mood m)
{
	/* Social posts are mostly text; survey comment boxes are mostly left empty. */
	double pct = ev->channel == FEEDBACK__V1__CHANNEL__CHANNEL_SOCIAL
	                 ? fmin(100.0, 2.5 * o->comment_pct)
	                 : o->comment_pct;

	if (!rng_pct(r, pct))
		return;
	/* The words match the ratings, so a negative trigger carries a complaint. */
	switch (m) {
	case MOOD_NEGATIVE:
		ev->comment = comments_negative[rng_below(r, COUNT_OF(comments_negative))];
		break;
	case MOOD_NEUTRAL:
		ev->comment = comments_neutral[rng_below(r, COUNT_OF(comments_neutral))];
		break;
	default:
		ev->comment = comments_positive[rng_below(r, COUNT_OF(comments_positive))];
		break;
	}
}

static void add_attr(struct gen_event *ev, const char *key, const char *value)
{
	if (ev->n_attrs < MAX_ATTRS) {
		ev->attrs[ev->n_attrs].key = key;
		ev->attrs[ev->n_attrs].value = value;
		ev->n_attrs++;
	}
}

/* Waits of answered calls: mostly short, a long tail up to 300 s, longer when it went badly. */
static uint32_t answered_wait(struct rng *r, enum mood m)
{
	double mean = m == MOOD_NEGATIVE ? 110.0 : 40.0;
	double w = -mean * log(1.0 - rng_unit(r));

	return (uint32_t)fmin(300.0, w);
}

static void phone_block(struct gen_event *ev, struct rng *r, enum mood m)
{
	static const int outcome_weights[] = {83, 11, 6}; /* answered, abandoned, self-service */
	int outcome = rng_weighted(r, outcome_weights, 3);

	ev->has_contact = true;
	feedback__v1__contact__init(&ev->contact);
	switch (outcome) {
	case 0:
		ev->contact.outcome = FEEDBACK__V1__CONTACT_OUTCOME__OUTCOME_ANSWERED;
		ev->contact.wait_seconds = answered_wait(r, m);
		/* Two uniforms: a triangular spread of 60-900 s peaking near 480 s. */
		ev->contact.handle_seconds =
		    (uint32_t)(60 + (rng_range(r, 0, 420) + rng_range(r, 0, 420)));
		if (rng_pct(r, 65))
			add_ces(ev, r, m);
		if (rng_pct(r, 75)) {
			double resolved = m == MOOD_POSITIVE ? 90 : m == MOOD_NEUTRAL ? 70 : 30;

			ev->fcr = rng_pct(r, resolved)
			              ? FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED
			              : FEEDBACK__V1__RESOLUTION__RESOLUTION_UNRESOLVED;
		}
		break;
	case 1:
		/* The caller hung up in the queue: no agent, no survey. */
		ev->contact.outcome = FEEDBACK__V1__CONTACT_OUTCOME__OUTCOME_ABANDONED;
		ev->contact.wait_seconds = (uint32_t)rng_range(r, 5, 300);
		ev->agent_id[0] = '\0';
		break;
	default:
		/* Solved in the voice bot or FAQ: no wait, no agent. */
		ev->contact.outcome = FEEDBACK__V1__CONTACT_OUTCOME__OUTCOME_SELF_SERVICE;
		ev->agent_id[0] = '\0';
		if (rng_pct(r, 50))
			add_ces(ev, r, m);
		if (rng_pct(r, 40))
			ev->fcr = rng_pct(r, 60) ? FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED
			                         : FEEDBACK__V1__RESOLUTION__RESOLUTION_UNRESOLVED;
		break;
	}
}

/*
 * Fills ev with event number index, drawn from r. The event is valid under
 * every rule of CONTRACT.md; the malformed kinds are derived from it.
 */
static void event_generate(const struct gen *g, uint64_t index, const char *id_tag, struct rng *r,
                           struct gen_event *ev)
{
	static const int channel_weights[N_CHANNELS] = {25, 25, 35, 15};
	const struct opts *o = g->o;
	int hot = o->customers >= 20 ? o->customers / 20 : 1;
	int customer, agent;
	double quality, p_negative, u;
	enum mood m;
	int64_t at;

	memset(ev, 0, sizeof(*ev));
	ev->comment = "";
	ev->locale = "";
	ev->channel = 1 + rng_weighted(r, channel_weights, N_CHANNELS);
	snprintf(ev->event_id, sizeof(ev->event_id), "%s%" PRIu64 "-%s%" PRIu64, o->id_prefix,
	         o->seed, id_tag, index);
	/* A quarter of the feedback comes from one customer in twenty: regulars complain again. */
	customer = rng_pct(r, 25) ? rng_range(r, 1, hot) : rng_range(r, 1, o->customers);
	snprintf(ev->customer_id, sizeof(ev->customer_id), "cust-%06d", customer);
	agent = rng_range(r, 1, o->agents);
	quality = g->agent_quality[agent - 1];
	if (ev->channel != FEEDBACK__V1__CHANNEL__CHANNEL_SOCIAL || rng_pct(r, 60))
		snprintf(ev->agent_id, sizeof(ev->agent_id), "agent-%05d", agent);
	snprintf(ev->interaction_id, sizeof(ev->interaction_id), "%s-%" PRIu64 "-%s%" PRIu64,
	         interaction_prefixes[ev->channel - 1], o->seed, id_tag, index);

	/* Mood of the whole experience; every rating of the event leans the same way. */
	p_negative = 0.19 - 0.06 * quality +
	             (ev->channel == FEEDBACK__V1__CHANNEL__CHANNEL_SOCIAL ? 0.06 : 0.0);
	u = rng_unit(r);
	m = u < p_negative ? MOOD_NEGATIVE : u < p_negative + 0.22 ? MOOD_NEUTRAL : MOOD_POSITIVE;

	switch (ev->channel) {
	case FEEDBACK__V1__CHANNEL__CHANNEL_SMS:
	case FEEDBACK__V1__CHANNEL__CHANNEL_EMAIL: {
		bool csat = rng_pct(r, 88);
		bool nps = rng_pct(r, ev->channel == FEEDBACK__V1__CHANNEL__CHANNEL_SMS ? 40 : 50);

		if (csat || !nps)
			add_csat(ev, r, m, false);
		if (nps)
			add_nps(ev, r, m);
		break;
	}
	case FEEDBACK__V1__CHANNEL__CHANNEL_PHONE:
		phone_block(ev, r, m);
		break;
	default:
		add_csat(ev, r, m, true);
		break;
	}
	pick_comment(ev, r, o, m);
	if (rng_pct(r, 90))
		ev->locale = locales[rng_weighted(r, locale_weights, (int)COUNT_OF(locales))];
	add_attr(ev, "survey", surveys[ev->channel - 1]);
	if (rng_pct(r, 70))
		add_attr(ev, "queue", queues[rng_below(r, COUNT_OF(queues))]);
	if (rng_pct(r, 30))
		add_attr(ev, "region", regions[rng_below(r, COUNT_OF(regions))]);
	/* Most producers say which channel they are; the topic decides anyway. */
	ev->channel_field = rng_pct(r, 70) ? ev->channel : 0;

	/*
	 * Answers arrive roughly in time order over [start, start + span), a
	 * few minutes out of order, and 2 % hours late (an SMS answered the
	 * next morning), so buckets are written out of order too.
	 */
	at = o->start_s +
	     (int64_t)((double)o->span_s * ((double)index + rng_unit(r)) / (double)o->count);
	at += rng_range(r, -600, 600);
	if (rng_pct(r, 2))
		at -= rng_range(r, 3600, 6 * 3600);
	if (at < o->start_s)
		at = o->start_s;
	if (at > o->start_s + o->span_s - 1)
		at = o->start_s + o->span_s - 1;
	ev->occurred_s = at;
	ev->nanos = (int32_t)rng_below(r, 1000) * 1000000;
}

/* Packs ev as FeedbackEvent into buf; returns the length, or 0 if it does not fit. */
static size_t event_pack(const struct gen_event *ev, uint8_t *buf, size_t size)
{
	Feedback__V1__FeedbackEvent msg = FEEDBACK__V1__FEEDBACK_EVENT__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Feedback__V1__Rating *ratings[MAX_RATINGS];
	Feedback__V1__FeedbackEvent__AttributesEntry entries[MAX_ATTRS];
	Feedback__V1__FeedbackEvent__AttributesEntry *entry_ptrs[MAX_ATTRS];
	Feedback__V1__Contact contact = ev->contact;
	size_t len;

	msg.event_id = (char *)ev->event_id;
	ts.seconds = ev->occurred_s;
	ts.nanos = ev->nanos;
	msg.occurred_at = &ts;
	msg.channel = (Feedback__V1__Channel)ev->channel_field;
	msg.customer_id = (char *)ev->customer_id;
	msg.agent_id = (char *)ev->agent_id;
	msg.interaction_id = (char *)ev->interaction_id;
	for (size_t i = 0; i < ev->n_ratings; i++)
		ratings[i] = (Feedback__V1__Rating *)&ev->ratings[i];
	msg.n_ratings = ev->n_ratings;
	msg.ratings = ratings;
	if (ev->has_contact)
		msg.contact = &contact;
	msg.comment = (char *)ev->comment;
	msg.locale = (char *)ev->locale;
	for (size_t i = 0; i < ev->n_attrs; i++) {
		feedback__v1__feedback_event__attributes_entry__init(&entries[i]);
		entries[i].key = (char *)ev->attrs[i].key;
		entries[i].value = (char *)ev->attrs[i].value;
		entry_ptrs[i] = &entries[i];
	}
	msg.n_attributes = ev->n_attrs;
	msg.attributes = entry_ptrs;
	msg.first_contact_resolution = ev->fcr;
	len = feedback__v1__feedback_event__get_packed_size(&msg);
	if (len > size)
		return 0;
	return feedback__v1__feedback_event__pack(&msg, buf);
}

/*
 * The value of an event on the wire: plain protobuf, or in Confluent
 * Schema Registry framing (0x00, big-endian schema id, index list [0]).
 */
static size_t event_encode(const struct gen_event *ev, bool framed, uint32_t schema_id,
                           uint8_t *buf, size_t size)
{
	size_t len;

	if (!framed)
		return event_pack(ev, buf, size);
	len = event_pack(ev, buf + FRAME_HEADER_SIZE, size - FRAME_HEADER_SIZE);
	if (len == 0)
		return 0;
	buf[0] = 0x00;
	buf[1] = (uint8_t)(schema_id >> 24);
	buf[2] = (uint8_t)(schema_id >> 16);
	buf[3] = (uint8_t)(schema_id >> 8);
	buf[4] = (uint8_t)schema_id;
	buf[5] = 0x00;
	return FRAME_HEADER_SIZE + len;
}

static bool protobuf_parses(const uint8_t *buf, size_t len)
{
	Feedback__V1__FeedbackEvent *msg = feedback__v1__feedback_event__unpack(NULL, len, buf);

	if (msg == NULL)
		return false;
	feedback__v1__feedback_event__free_unpacked(msg, NULL);
	return true;
}

/* --- malformed messages -------------------------------------------------- */

enum malformed_kind {
	MAL_GARBAGE,
	MAL_TRUNCATED,
	MAL_SCORE_OUT_OF_SCALE,
	MAL_CHANNEL_MISMATCH,
	MAL_MISSING_EVENT_ID,
	MAL_FUTURE_OCCURRED_AT,
	MAL_KIND_COUNT
};

/*
 * Builds malformed message number index into buf: a plausible event broken
 * in one way. Returns the length; *channel and key receive where it goes.
 */
static size_t malformed_build(const struct gen *g, uint64_t index, uint8_t *buf, size_t size,
                              int *channel, char *key, size_t key_size)
{
	const struct opts *o = g->o;
	struct rng r = rng_for(o->seed, STREAM_MAL_EVENT, index);
	/* Kinds take turns from a seeded offset, so even ten messages cover all six. */
	enum malformed_kind kind = (enum malformed_kind)((index + o->seed) % MAL_KIND_COUNT);
	struct gen_event ev;
	size_t len = 0;

	event_generate(g, index, "bad-", &r, &ev);
	*channel = ev.channel;
	snprintf(key, key_size, "%s", ev.customer_id);
	switch (kind) {
	case MAL_GARBAGE:
		if (rng_pct(&r, 50)) {
			/* JSON sent to a protobuf topic: '{' is a group tag protobuf rejects. */
			len = (size_t)snprintf((char *)buf, size,
			                       "{\"event_id\":\"%s\",\"customer_id\":\"%s\","
			                       "\"csat\":4}",
			                       ev.event_id, ev.customer_id);
		} else {
			/* Random bytes behind a tag of wire type 7, which does not exist. */
			len = 16 + rng_below(&r, 200);
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rng_next(&r);
			buf[0] = (uint8_t)(((1 + rng_below(&r, 15)) << 3) | 7);
		}
		break;
	case MAL_TRUNCATED: {
		size_t full = event_pack(&ev, buf, size);

		/* Cut inside a field, never on a boundary where a shorter event would parse. */
		len = 1 + rng_below(&r, full - 1);
		while (len > 1 && protobuf_parses(buf, len))
			len--;
		break;
	}
	case MAL_SCORE_OUT_OF_SCALE: {
		Feedback__V1__Rating *rt = &ev.ratings[0];

		if (ev.n_ratings == 0)
			add_rating(&ev, FEEDBACK__V1__METRIC__METRIC_CES, 1, 1, 7, true, false);
		switch (rt->metric) {
		case FEEDBACK__V1__METRIC__METRIC_NPS:
			rt->score = 11;
			break;
		case FEEDBACK__V1__METRIC__METRIC_CES:
			rt->score = rt->scale_max == 5 ? 6 : 9;
			break;
		default:
			/* Common producer mistake: a 10-point answer on the default 1-5 scale. */
			rt->score = rt->scale_max == 0 || rt->scale_max == 5 ? 8 : 12;
			break;
		}
		len = event_encode(&ev, rng_pct(&r, o->framed_pct), o->schema_id, buf, size);
		break;
	}
	case MAL_CHANNEL_MISMATCH:
		ev.channel_field = 1 + ev.channel % N_CHANNELS;
		len = event_encode(&ev, rng_pct(&r, o->framed_pct), o->schema_id, buf, size);
		break;
	case MAL_MISSING_EVENT_ID:
		ev.event_id[0] = '\0';
		len = event_encode(&ev, rng_pct(&r, o->framed_pct), o->schema_id, buf, size);
		break;
	default:
		/*
		 * A device clock set wrong, to a date in January 2100: far enough
		 * ahead to stay in the future, and fixed so the seed alone
		 * decides the bytes.
		 */
		ev.occurred_s = FUTURE_BASE_S + rng_range(&r, 0, 30 * 86400);
		len = event_encode(&ev, rng_pct(&r, o->framed_pct), o->schema_id, buf, size);
		break;
	}
	return len;
}

/* --- producing ----------------------------------------------------------- */

struct delivery {
	uint64_t ok;
	uint64_t failed;
	char first_error[256];
};

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct delivery *d = opaque;

	(void)rk;
	if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		d->ok++;
		return;
	}
	if (d->failed++ == 0)
		snprintf(d->first_error, sizeof(d->first_error), "%s [%" PRId32 "]: %s",
		         rd_kafka_topic_name(rkm->rkt), rkm->partition, rd_kafka_err2str(rkm->err));
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Queues one message, waiting while the local queue is full. Returns 0 or -1. */
static int produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *key, const void *value,
                   size_t len)
{
	for (;;) {
		rd_kafka_resp_err_t err =
		    rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, strlen(key)),
		                      RD_KAFKA_V_VALUE((void *)value, len),
		                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			fprintf(stderr, "feedgen: cannot produce to \"%s\": %s\n",
			        rd_kafka_topic_name(rkt), rd_kafka_err2str(err));
			return -1;
		}
		rd_kafka_poll(rk, 50);
	}
	rd_kafka_poll(rk, 0);
	return 0;
}

/* Holds back the next message until the --rate budget allows it, serving delivery reports
 * meanwhile. */
static void pace(rd_kafka_t *rk, const struct opts *o, int64_t t0, uint64_t sent)
{
	int64_t due;

	if (o->rate <= 0)
		return;
	due = t0 + (int64_t)((double)sent * 1e6 / o->rate);
	for (int64_t now = now_us(); now < due && !stop_signal; now = now_us())
		rd_kafka_poll(rk, (int)((due - now + 999) / 1000));
}

struct dup_entry {
	int channel;
	char key[32];
	uint8_t *value;
	size_t len;
	size_t cap;
};

struct counts {
	uint64_t events;
	uint64_t duplicates;
	uint64_t malformed;
	uint64_t messages;
	uint64_t negative;
	uint64_t by_channel[N_CHANNELS];
};

static int remember(struct dup_entry *e, int channel, const char *key, const uint8_t *value,
                    size_t len)
{
	if (e->cap < len) {
		uint8_t *p = realloc(e->value, len);

		if (p == NULL)
			return -1;
		e->value = p;
		e->cap = len;
	}
	memcpy(e->value, value, len);
	e->len = len;
	e->channel = channel;
	snprintf(e->key, sizeof(e->key), "%s", key);
	return 0;
}

/* --- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: feedgen --bootstrap ADDR [options]\n"
	       "Produces realistic feedback.v1.FeedbackEvent messages to the channel topics.\n"
	       "\n"
	       "  --bootstrap ADDR     bootstrap.servers (required)\n"
	       "  --count N            unique valid events (default 1000)\n"
	       "  --agents N           agents agent-00001.. (default 50)\n"
	       "  --customers N        customers cust-000001.. (default 10000)\n"
	       "  --duplicates PCT     extra re-sends of earlier events, same bytes (default 2)\n"
	       "  --malformed PCT      extra malformed messages: garbage, truncated protobuf,\n"
	       "                       score out of scale, channel mismatch, missing event_id,\n"
	       "                       future occurred_at (in 2100), in turn (default 1)\n"
	       "  --seed N             same seed and --start, same bytes and event ids\n"
	       "                       (default: random, printed in the summary)\n"
	       "  --start TIME         start of occurred_at, ISO-8601 UTC, e.g.\n"
	       "                       2024-03-01T00:00:00Z (default: --span before now)\n"
	       "  --span SECONDS       length of the occurred_at range (default 172800)\n"
	       "  --comment-pct PCT    events with a comment, 2.5 times as many on social\n"
	       "                       (default 20)\n"
	       "  --framed-pct PCT     messages in Confluent Schema Registry framing (default 10)\n"
	       "  --schema-id N        schema id in that framing (default 1)\n"
	       "  --rate N             at most N messages per second, 0 = unlimited (default 0)\n"
	       "  --topic-prefix STR   topics STR{sms,email,phone,social} (default \"feedback.\")\n"
	       "  --id-prefix STR      event ids STR<seed>-<index> (default \"\")\n"
	       "  --compression CODEC  none or lz4 (default none)\n"
	       "  -X KEY=VALUE         any librdkafka producer property, repeatable\n"
	       "  --quiet              no progress on stderr\n"
	       "  --help               this text\n"
	       "\n"
	       "Prints one line: produced events= duplicates= malformed= messages= negative=\n"
	       "sms= email= phone= social= seed= (channel counts are unique valid events;\n"
	       "negative counts events negative under the default KPI rules).\n"
	       "librdkafka's mock cluster keeps 5 MiB per partition: use --rate for long runs.\n");
}

static bool parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-' || v > max) {
		fprintf(stderr,
		        "feedgen: invalid %s \"%s\": expected an integer from 0 to %" PRIu64 "\n",
		        opt, s, max);
		return false;
	}
	*out = v;
	return true;
}

static bool parse_int(const char *opt, const char *s, int min, int max, int *out)
{
	uint64_t v = 0;

	if (!parse_u64(opt, s, (uint64_t)max, &v))
		return false;
	if (v < (uint64_t)min) {
		fprintf(stderr, "feedgen: invalid %s \"%s\": expected at least %d\n", opt, s, min);
		return false;
	}
	*out = (int)v;
	return true;
}

static bool parse_double(const char *opt, const char *s, double min, double max, double *out)
{
	char *end = NULL;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max)) {
		fprintf(stderr, "feedgen: invalid %s \"%s\": expected a number from %g to %g\n",
		        opt, s, min, max);
		return false;
	}
	*out = v;
	return true;
}

/* ISO-8601 in UTC: "2024-03-01", "2024-03-01T08:00[:00[.123]]" with optional "Z" or "+00:00". */
static bool parse_time(const char *s, int64_t *out)
{
	struct tm tm;
	const char *rest;

	memset(&tm, 0, sizeof(tm));
	rest = strptime(s, "%Y-%m-%d", &tm);
	if (rest != NULL && (*rest == 'T' || *rest == ' ')) {
		const char *t = strptime(rest + 1, "%H:%M", &tm);

		rest = t;
		if (rest != NULL && *rest == ':')
			rest = strptime(rest, ":%S", &tm);
		if (rest != NULL && *rest == '.') {
			rest++;
			while (*rest >= '0' && *rest <= '9')
				rest++;
		}
	}
	if (rest == NULL)
		return false;
	if (*rest == 'Z')
		rest++;
	else if (strcmp(rest, "+00:00") == 0 || strcmp(rest, "+0000") == 0)
		rest += strlen(rest);
	if (*rest != '\0')
		return false;
	*out = (int64_t)timegm(&tm);
	return true;
}

enum {
	OPT_BOOTSTRAP = 256,
	OPT_COUNT,
	OPT_AGENTS,
	OPT_CUSTOMERS,
	OPT_DUPLICATES,
	OPT_MALFORMED,
	OPT_SEED,
	OPT_START,
	OPT_SPAN,
	OPT_COMMENT_PCT,
	OPT_FRAMED_PCT,
	OPT_SCHEMA_ID,
	OPT_RATE,
	OPT_TOPIC_PREFIX,
	OPT_ID_PREFIX,
	OPT_COMPRESSION,
	OPT_QUIET,
	OPT_HELP,
};

/* Returns 0 to go on, or the exit code. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option long_options[] = {
	    {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
	    {"count", required_argument, NULL, OPT_COUNT},
	    {"agents", required_argument, NULL, OPT_AGENTS},
	    {"customers", required_argument, NULL, OPT_CUSTOMERS},
	    {"duplicates", required_argument, NULL, OPT_DUPLICATES},
	    {"malformed", required_argument, NULL, OPT_MALFORMED},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"start", required_argument, NULL, OPT_START},
	    {"span", required_argument, NULL, OPT_SPAN},
	    {"comment-pct", required_argument, NULL, OPT_COMMENT_PCT},
	    {"framed-pct", required_argument, NULL, OPT_FRAMED_PCT},
	    {"schema-id", required_argument, NULL, OPT_SCHEMA_ID},
	    {"rate", required_argument, NULL, OPT_RATE},
	    {"topic-prefix", required_argument, NULL, OPT_TOPIC_PREFIX},
	    {"id-prefix", required_argument, NULL, OPT_ID_PREFIX},
	    {"compression", required_argument, NULL, OPT_COMPRESSION},
	    {"quiet", no_argument, NULL, OPT_QUIET},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	bool seed_given = false;
	uint64_t v;
	int opt;

	while ((opt = getopt_long(argc, argv, "X:", long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_BOOTSTRAP:
			o->bootstrap = optarg;
			break;
		case OPT_COUNT:
			if (!parse_u64("--count", optarg, 1000000000, &o->count))
				return 2;
			break;
		case OPT_AGENTS:
			if (!parse_int("--agents", optarg, 1, 1000000, &o->agents))
				return 2;
			break;
		case OPT_CUSTOMERS:
			if (!parse_int("--customers", optarg, 1, 999999, &o->customers))
				return 2;
			break;
		case OPT_DUPLICATES:
			if (!parse_double("--duplicates", optarg, 0, 100, &o->dup_pct))
				return 2;
			break;
		case OPT_MALFORMED:
			if (!parse_double("--malformed", optarg, 0, 100, &o->mal_pct))
				return 2;
			break;
		case OPT_SEED:
			if (!parse_u64("--seed", optarg, UINT64_MAX, &o->seed))
				return 2;
			seed_given = true;
			break;
		case OPT_START:
			if (!parse_time(optarg, &o->start_s)) {
				fprintf(stderr,
				        "feedgen: invalid --start \"%s\": expected ISO-8601 UTC, "
				        "e.g. 2024-03-01T00:00:00Z\n",
				        optarg);
				return 2;
			}
			o->start_given = true;
			break;
		case OPT_SPAN:
			if (!parse_u64("--span", optarg, 100LL * 366 * 86400, &v))
				return 2;
			if (v == 0) {
				fprintf(stderr,
				        "feedgen: invalid --span \"0\": at least 1 second\n");
				return 2;
			}
			o->span_s = (int64_t)v;
			break;
		case OPT_COMMENT_PCT:
			if (!parse_double("--comment-pct", optarg, 0, 100, &o->comment_pct))
				return 2;
			break;
		case OPT_FRAMED_PCT:
			if (!parse_double("--framed-pct", optarg, 0, 100, &o->framed_pct))
				return 2;
			break;
		case OPT_SCHEMA_ID:
			if (!parse_u64("--schema-id", optarg, INT32_MAX, &v))
				return 2;
			o->schema_id = (uint32_t)v;
			break;
		case OPT_RATE:
			if (!parse_double("--rate", optarg, 0, 1e9, &o->rate))
				return 2;
			break;
		case OPT_TOPIC_PREFIX:
			o->topic_prefix = optarg;
			break;
		case OPT_ID_PREFIX:
			o->id_prefix = optarg;
			break;
		case OPT_COMPRESSION:
			o->compression = optarg;
			break;
		case 'X':
			if (strchr(optarg, '=') == NULL || *optarg == '=') {
				fprintf(stderr, "feedgen: invalid -X \"%s\": expected KEY=VALUE\n",
				        optarg);
				return 2;
			}
			o->props[o->n_props++] = optarg;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_HELP:
			usage(stdout);
			return -1;
		default:
			fprintf(stderr, "Try 'feedgen --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "feedgen: unexpected argument \"%s\"\nTry 'feedgen --help'.\n",
		        argv[optind]);
		return 2;
	}
	if (o->bootstrap == NULL || *o->bootstrap == '\0') {
		fprintf(stderr, "feedgen: --bootstrap is required\nTry 'feedgen --help'.\n");
		return 2;
	}
	if (!seed_given) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		o->seed = mix64((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^
		          (uint64_t)getpid();
		o->seed %= 1000000000ULL; /* short enough to read and type again */
	}
	return 0;
}

/* --- main ---------------------------------------------------------------- */

static rd_kafka_t *producer_new(const struct opts *o, struct delivery *d)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk = NULL;
	char errstr[512];
	const char *defaults[][2] = {
	    {"bootstrap.servers", o->bootstrap},
	    {"client.id", "feedgen"},
	    {"enable.idempotence", "true"},
	    {"acks", "all"},
	    {"linger.ms", "10"},
	    {"compression.type", o->compression},
	};

	for (size_t i = 0; i < COUNT_OF(defaults); i++) {
		if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr,
		                      sizeof(errstr)) != RD_KAFKA_CONF_OK) {
			fprintf(stderr, "feedgen: %s\n", errstr);
			goto fail;
		}
	}
	for (size_t i = 0; i < o->n_props; i++) {
		char *kv = strdup(o->props[i]);
		char *eq;
		rd_kafka_conf_res_t res;

		if (kv == NULL)
			goto fail;
		eq = strchr(kv, '=');
		*eq = '\0';
		res = rd_kafka_conf_set(conf, kv, eq + 1, errstr, sizeof(errstr));
		free(kv);
		if (res != RD_KAFKA_CONF_OK) {
			fprintf(stderr, "feedgen: -X %s: %s\n", o->props[i], errstr);
			goto fail;
		}
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, d);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL) {
		fprintf(stderr, "feedgen: cannot create the producer: %s\n", errstr);
		goto fail;
	}
	return rk; /* conf is owned by rk now */
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* Fails early, with the topic's name, instead of after message.timeout.ms of retries. */
static int check_topic(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *bootstrap)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
	int rc = 0;

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "feedgen: cannot reach Kafka at \"%s\": %s\n", bootstrap,
		        rd_kafka_err2str(err));
		return -1;
	}
	if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    md->topics[0].partition_cnt < 1) {
		fprintf(stderr, "feedgen: topic \"%s\" is not available: %s\n",
		        rd_kafka_topic_name(rkt),
		        rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err
		                                            : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		rc = -1;
	}
	rd_kafka_metadata_destroy(md);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = {
	    .count = 1000,
	    .agents = 50,
	    .customers = 10000,
	    .dup_pct = 2,
	    .mal_pct = 1,
	    .comment_pct = 20,
	    .framed_pct = 10,
	    .span_s = 172800,
	    .topic_prefix = "feedback.",
	    .id_prefix = "",
	    .compression = "none",
	    .schema_id = 1,
	};
	struct gen g = {.o = &o};
	struct delivery d = {0};
	struct counts c = {0};
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_t *rkts[N_CHANNELS] = {NULL};
	struct dup_entry *ring = NULL;
	uint64_t ring_n = 0;
	uint8_t *buf = NULL;
	struct sampler dup_pick, mal_pick;
	struct rng dup_which;
	struct sigaction sa;
	int64_t now_s, t0, last_progress;
	uint64_t i, mal_index = 0;
	int rc = 1;

	o.props = calloc((size_t)argc, sizeof(*o.props));
	if (o.props == NULL) {
		fprintf(stderr, "feedgen: out of memory\n");
		return 1;
	}
	rc = parse_args(argc, argv, &o);
	if (rc != 0) {
		rc = rc < 0 ? 0 : rc;
		goto out;
	}
	rc = 1;
	now_s = (int64_t)time(NULL);
	if (!o.start_given)
		o.start_s = now_s - o.span_s;
	else if (o.start_s + o.span_s > now_s + 300)
		fprintf(stderr,
		        "feedgen: warning: --start plus --span ends in the future; such events are "
		        "rejected as future_occurred_at\n");

	g.agent_quality = calloc((size_t)o.agents, sizeof(*g.agent_quality));
	ring = calloc(DUP_RING_SIZE, sizeof(*ring));
	buf = malloc(PACK_BUF_SIZE);
	if (g.agent_quality == NULL || ring == NULL || buf == NULL) {
		fprintf(stderr, "feedgen: out of memory\n");
		goto out;
	}
	for (int a = 0; a < o.agents; a++) {
		struct rng r = rng_for(o.seed, STREAM_AGENT, (uint64_t)a);

		/* Most agents are average; a few are much better or worse. */
		g.agent_quality[a] = (rng_unit(&r) + rng_unit(&r) + rng_unit(&r)) * 2.0 / 3.0 - 1.0;
	}

	rk = producer_new(&o, &d);
	if (rk == NULL)
		goto out;
	for (int ch = 0; ch < N_CHANNELS; ch++) {
		char name[512];

		snprintf(name, sizeof(name), "%s%s", o.topic_prefix, channel_names[ch]);
		rkts[ch] = rd_kafka_topic_new(rk, name, NULL);
		if (rkts[ch] == NULL) {
			fprintf(stderr, "feedgen: invalid topic \"%s\": %s\n", name,
			        rd_kafka_err2str(rd_kafka_last_error()));
			goto out;
		}
		if (check_topic(rk, rkts[ch], o.bootstrap) < 0)
			goto out;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	dup_pick = (struct sampler){.r = rng_for(o.seed, STREAM_DUP_PICK, 0),
	                            .wanted = (uint64_t)llround((double)o.count * o.dup_pct / 100),
	                            .total = o.count};
	mal_pick = (struct sampler){.r = rng_for(o.seed, STREAM_MAL_PICK, 0),
	                            .wanted = (uint64_t)llround((double)o.count * o.mal_pct / 100),
	                            .total = o.count};
	dup_which = rng_for(o.seed, STREAM_DUP_WHICH, 0);
	t0 = last_progress = now_us();

	for (i = 0; i < o.count && !stop_signal; i++) {
		struct rng r = rng_for(o.seed, STREAM_EVENT, i);
		struct gen_event ev;
		struct dup_entry *slot = &ring[i % DUP_RING_SIZE];
		size_t len;
		bool framed;

		event_generate(&g, i, "", &r, &ev);
		framed = rng_pct(&r, o.framed_pct);
		len = event_encode(&ev, framed, o.schema_id, buf, PACK_BUF_SIZE);
		if (len == 0) {
			fprintf(stderr, "feedgen: event %s does not fit in %d bytes\n", ev.event_id,
			        PACK_BUF_SIZE);
			goto out;
		}
		pace(rk, &o, t0, c.messages);
		if (produce(rk, rkts[ev.channel - 1], ev.customer_id, buf, len) < 0)
			goto out;
		c.events++;
		c.messages++;
		c.by_channel[ev.channel - 1]++;
		if (event_is_negative(&ev))
			c.negative++;
		if (remember(slot, ev.channel, ev.customer_id, buf, len) < 0) {
			fprintf(stderr, "feedgen: out of memory\n");
			goto out;
		}
		ring_n = i + 1;

		if (sampler_take(&dup_pick)) {
			/* A producer retry or an at-least-once relay: one of the recent events
			 * again. */
			uint64_t back =
			    rng_below(&dup_which, ring_n < DUP_RING_SIZE ? ring_n : DUP_RING_SIZE);
			const struct dup_entry *e = &ring[(i - back) % DUP_RING_SIZE];

			pace(rk, &o, t0, c.messages);
			if (produce(rk, rkts[e->channel - 1], e->key, e->value, e->len) < 0)
				goto out;
			c.duplicates++;
			c.messages++;
		}
		if (sampler_take(&mal_pick)) {
			char key[32];
			int channel;

			len = malformed_build(&g, mal_index++, buf, PACK_BUF_SIZE, &channel, key,
			                      sizeof(key));
			pace(rk, &o, t0, c.messages);
			if (produce(rk, rkts[channel - 1], key, buf, len) < 0)
				goto out;
			c.malformed++;
			c.messages++;
		}
		if (!o.quiet && now_us() - last_progress >= PROGRESS_EVERY_US) {
			double secs = (double)(now_us() - t0) / 1e6;

			last_progress = now_us();
			fprintf(stderr,
			        "feedgen: %" PRIu64 "/%" PRIu64 " events, %" PRIu64
			        " messages, %.0f messages/s\n",
			        c.events, o.count, c.messages, (double)c.messages / secs);
		}
	}
	if (stop_signal)
		fprintf(stderr, "feedgen: stopped by %s after %" PRIu64 " of %" PRIu64 " events\n",
		        strsignal(stop_signal), c.events, o.count);

	/*
	 * Every queued message ends in a delivery report, at the latest after
	 * message.timeout.ms. A stopped run gives the broker a few seconds, then
	 * purges: its broker is often stopped with it.
	 */
	if (stop_signal) {
		rd_kafka_flush(rk, 3000);
		rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	}
	while (rd_kafka_outq_len(rk) > 0)
		rd_kafka_flush(rk, 1000);

	printf("produced events=%" PRIu64 " duplicates=%" PRIu64 " malformed=%" PRIu64
	       " messages=%" PRIu64 " negative=%" PRIu64 " sms=%" PRIu64 " email=%" PRIu64
	       " phone=%" PRIu64 " social=%" PRIu64 " seed=%" PRIu64 "\n",
	       c.events, c.duplicates, c.malformed, c.messages, c.negative, c.by_channel[0],
	       c.by_channel[1], c.by_channel[2], c.by_channel[3], o.seed);
	fflush(stdout);
	if (d.failed > 0 || d.ok != c.messages) {
		fprintf(stderr,
		        "feedgen: %" PRIu64 " of %" PRIu64
		        " messages were not delivered; first: %s\n",
		        c.messages - d.ok, c.messages, d.failed ? d.first_error : "none reported");
		goto out;
	}
	rc = stop_signal ? 128 + stop_signal : 0;
out:
	for (int ch = 0; ch < N_CHANNELS; ch++) {
		if (rkts[ch] != NULL)
			rd_kafka_topic_destroy(rkts[ch]);
	}
	if (rk != NULL)
		rd_kafka_destroy(rk);
	if (ring != NULL) {
		for (int k = 0; k < DUP_RING_SIZE; k++)
			free(ring[k].value);
	}
	free(ring);
	free(buf);
	free(g.agent_quality);
	free(o.props);
	return rc;
}
