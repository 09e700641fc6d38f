/*
 * The service-recovery policy (rules.c) and the trigger message
 * (trigger.c). Times are written as offsets from T0 in hours and days, so
 * each expected repeat count, cooldown and deadline can be checked by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "feedback/v1/feedback.pb-c.h"
#include "kpi.h"
#include "rules.h"
#include "trigger.h"

#define US   1000000LL
#define HOUR (3600 * US)
#define DAY  (24 * HOUR)
/* 2023-11-14T22:13:20Z */
#define T0 (1700000000LL * US)
/* Detection is a fixed instant, so follow_up_by is exact. */
#define DETECTED (T0 + 1000 * DAY)

static struct rating rating(int32_t score, int32_t min, int32_t max)
{
	return (struct rating){.present = true, .score = score, .scale_min = min, .scale_max = max};
}

static struct event event_at(int64_t at)
{
	return (struct event){
	    .event_id = "e-1",
	    .customer_id = "c-1",
	    .agent_id = "",
	    .interaction_id = "",
	    .comment = "",
	    .locale = "",
	    .channel = CHANNEL_SMS,
	    .occurred_at_us = at,
	};
}

/* An event negative on NPS only, score 5: not critical, no comment. */
static struct event nps5_at(int64_t at)
{
	struct event ev = event_at(at);

	ev.nps = rating(5, 0, 10);
	return ev;
}

static struct rules_policy policy(void)
{
	struct rules_policy p;

	rules_policy_defaults(&p);
	return p;
}

static unsigned negative(const struct event *ev)
{
	struct kpi_policy p;

	kpi_policy_defaults(&p);
	return kpi_negative_reasons(ev, &p);
}

/* Evaluates ev under p against st and returns the decision. */
static struct rules_decision decide(const struct rules_policy *p, const struct event *ev,
                                    struct rules_state *st)
{
	struct rules_decision d;
	unsigned neg = negative(ev);

	assert_int_not_equal(neg, 0);
	assert_int_equal(rules_evaluate(p, ev, neg, DETECTED, st, &d), 0);
	return d;
}

static void test_policy_defaults(void **state)
{
	struct rules_policy p = policy();

	(void)state;
	assert_int_equal(p.critical_nps_max, 3);
	assert_true(p.critical_csat_lowest);
	assert_true(p.high_on_comment);
	assert_true(p.high_on_repeat);
	assert_int_equal(p.repeat_window_us, 30 * DAY);
	assert_int_equal(p.cooldown_us, 24 * HOUR);
	assert_int_equal(p.follow_up_us[SEVERITY_CRITICAL], 4 * HOUR);
	assert_int_equal(p.follow_up_us[SEVERITY_HIGH], 24 * HOUR);
	assert_int_equal(p.follow_up_us[SEVERITY_NORMAL], 48 * HOUR);
}

/* The negative-rating rules of KPI.md with their defaults, edge by edge. */
static void test_negative_rules(void **state)
{
	static const struct {
		int metric;
		int32_t score, min, max;
		bool inverted;
		unsigned expect;
	} cases[] = {
	    /* CSAT bottom-k-box: negative when score < min + k. */
	    {METRIC_CSAT, 2, 1, 5, false, KPI_NEG_CSAT}, /* 1-5: k = 2, 2 < 3 */
	    {METRIC_CSAT, 3, 1, 5, false, 0},            /* 3 < 3 is false */
	    {METRIC_CSAT, 0, 0, 1, false, KPI_NEG_CSAT}, /* yes/no: k = 1, 0 < 1 */
	    {METRIC_CSAT, 1, 0, 1, false, 0},
	    {METRIC_CSAT, 1, 1, 3, false, KPI_NEG_CSAT}, /* 3 points: k = 1 */
	    {METRIC_CSAT, 2, 1, 3, false, 0},
	    {METRIC_CSAT, 3, 1, 10, false, KPI_NEG_CSAT}, /* 10 points: k = 3, 3 < 4 */
	    {METRIC_CSAT, 4, 1, 10, false, 0},
	    {METRIC_CSAT, 2, 0, 10, false, KPI_NEG_CSAT}, /* 11 points: k = 3, 2 < 3 */
	    {METRIC_CSAT, 3, 0, 10, false, 0},
	    /* NPS detractor 0-6. */
	    {METRIC_NPS, 6, 0, 10, false, KPI_NEG_NPS},
	    {METRIC_NPS, 7, 0, 10, false, 0},
	    {METRIC_NPS, 0, 0, 10, false, KPI_NEG_NPS},
	    /* CES high effort: 5-7 on 1-7, 4-5 on 1-5; agreement form inverted. */
	    {METRIC_CES, 5, 1, 7, false, KPI_NEG_CES},
	    {METRIC_CES, 4, 1, 7, false, 0},
	    {METRIC_CES, 4, 1, 5, false, KPI_NEG_CES},
	    {METRIC_CES, 3, 1, 5, false, 0},
	    {METRIC_CES, 3, 1, 7, true, KPI_NEG_CES}, /* effort 1 + 7 - 3 = 5 */
	    {METRIC_CES, 4, 1, 7, true, 0},           /* effort 4 */
	    {METRIC_CES, 2, 1, 5, true, KPI_NEG_CES}, /* effort 1 + 5 - 2 = 4 */
	};
	struct kpi_policy kp;

	(void)state;
	kpi_policy_defaults(&kp);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct event ev = event_at(T0);
		struct rating r = rating(cases[i].score, cases[i].min, cases[i].max);

		r.inverted = cases[i].inverted;
		if (cases[i].metric == METRIC_CSAT)
			ev.csat = r;
		else if (cases[i].metric == METRIC_NPS)
			ev.nps = r;
		else
			ev.ces = r;
		assert_int_equal(kpi_negative_reasons(&ev, &kp), cases[i].expect);
	}

	/* Configured thresholds: bottom-1-box, detractors 0-4, high effort from 6 / 5. */
	kp.csat_negative_k = 1;
	kp.nps_detractor_max = 4;
	kp.ces_high_min_7 = 6;
	kp.ces_high_min_5 = 5;
	struct event ev = event_at(T0);
	ev.csat = rating(2, 1, 5); /* 2 < 1 + 1 is false */
	ev.nps = rating(5, 0, 10);
	ev.ces = rating(5, 1, 7);
	assert_int_equal(kpi_negative_reasons(&ev, &kp), 0);
	ev.csat = rating(1, 1, 5);
	ev.nps = rating(4, 0, 10);
	ev.ces = rating(6, 1, 7);
	assert_int_equal(kpi_negative_reasons(&ev, &kp), KPI_NEG_CSAT | KPI_NEG_NPS | KPI_NEG_CES);
	ev.ces = rating(4, 1, 5);
	assert_int_equal(kpi_negative_reasons(&ev, &kp), KPI_NEG_CSAT | KPI_NEG_NPS);
}

/* Negative on three metrics: one trigger with three reasons. */
static void test_several_reasons_one_trigger(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct event ev = event_at(T0);

	(void)state;
	ev.csat = rating(2, 1, 5);
	ev.nps = rating(5, 0, 10);
	ev.ces = rating(6, 1, 7);
	struct rules_decision d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.reasons, KPI_NEG_CSAT | KPI_NEG_NPS | KPI_NEG_CES);
	assert_int_equal(d.repeat_count, 1);
	assert_int_equal(d.suppressed_count, 0);
	/* CSAT 2 is not the lowest, NPS 5 > 3, no comment, no repeat. */
	assert_int_equal(d.severity, SEVERITY_NORMAL);
	assert_int_equal(d.follow_up_by_us, DETECTED + 48 * HOUR);
	assert_int_equal(st.n_negatives, 1);
	assert_int_equal(st.negatives_us[0], T0);
	assert_true(st.has_trigger);
	assert_int_equal(st.last_trigger_us, T0);
	rules_state_release(&st);
}

/* Severity of a first negative (no repeat) under the defaults and under configuration. */
static void test_severity(void **state)
{
	static const struct {
		const char *what;
		struct rating csat, nps;
		const char *comment;
		enum severity expect;
		int64_t follow_up;
	} cases[] = {
	    {"nps 3", {0}, {true, 3, 0, 10, false}, "", SEVERITY_CRITICAL, 4 * HOUR},
	    {"nps 0", {0}, {true, 0, 0, 10, false}, "", SEVERITY_CRITICAL, 4 * HOUR},
	    {"nps 4", {0}, {true, 4, 0, 10, false}, "", SEVERITY_NORMAL, 48 * HOUR},
	    {"nps 6 comment", {0}, {true, 6, 0, 10, false}, "rude", SEVERITY_HIGH, 24 * HOUR},
	    {"nps 2 comment", {0}, {true, 2, 0, 10, false}, "rude", SEVERITY_CRITICAL, 4 * HOUR},
	    {"csat 1 of 1-5", {true, 1, 1, 5, false}, {0}, "", SEVERITY_CRITICAL, 4 * HOUR},
	    {"csat 2 of 1-5", {true, 2, 1, 5, false}, {0}, "", SEVERITY_NORMAL, 48 * HOUR},
	    {"csat 0 of 0-1", {true, 0, 0, 1, false}, {0}, "", SEVERITY_CRITICAL, 4 * HOUR},
	    {"csat 2 of 1-10", {true, 2, 1, 10, false}, {0}, "", SEVERITY_NORMAL, 48 * HOUR},
	    {"csat 2 comment", {true, 2, 1, 5, false}, {0}, "x", SEVERITY_HIGH, 24 * HOUR},
	};
	struct rules_policy p = policy();

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rules_state st = {0};
		struct event ev = event_at(T0);

		ev.csat = cases[i].csat;
		ev.nps = cases[i].nps;
		ev.comment = cases[i].comment;
		struct rules_decision d = decide(&p, &ev, &st);
		if (d.severity != cases[i].expect)
			fail_msg("%s: severity %d, expected %d", cases[i].what, d.severity,
			         cases[i].expect);
		assert_int_equal(d.follow_up_by_us, DETECTED + cases[i].follow_up);
		rules_state_release(&st);
	}

	/* Everything configured off: all normal. */
	p.critical_nps_max = -1;
	p.critical_csat_lowest = false;
	p.high_on_comment = false;
	p.follow_up_us[SEVERITY_NORMAL] = 2 * HOUR;
	struct rules_state st = {0};
	struct event ev = event_at(T0);
	ev.nps = rating(0, 0, 10);
	ev.csat = rating(1, 1, 5);
	ev.comment = "never again";
	struct rules_decision d = decide(&p, &ev, &st);
	assert_int_equal(d.severity, SEVERITY_NORMAL);
	assert_int_equal(d.follow_up_by_us, DETECTED + 2 * HOUR);
	rules_state_release(&st);

	/* Critical up to NPS 5 when configured so. */
	p = policy();
	p.critical_nps_max = 5;
	ev = nps5_at(T0);
	d = decide(&p, &ev, &st);
	assert_int_equal(d.severity, SEVERITY_CRITICAL);
	rules_state_release(&st);
}

/* The repeat window is inclusive: 30 d apart is a repeat, 30 d + 1 us is not. */
static void test_repeat_window_edges(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct event ev;
	struct rules_decision d;

	(void)state;
	ev = nps5_at(T0);
	d = decide(&p, &ev, &st);
	assert_int_equal(d.repeat_count, 1);
	assert_int_equal(d.reasons, KPI_NEG_NPS);

	ev = nps5_at(T0 + 30 * DAY);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger); /* 30 d > 24 h cooldown */
	assert_int_equal(d.repeat_count, 2);
	assert_int_equal(d.reasons, KPI_NEG_NPS | RULES_REASON_REPEAT);
	assert_int_equal(d.severity, SEVERITY_HIGH); /* a repeat */
	assert_int_equal(d.follow_up_by_us, DETECTED + 24 * HOUR);
	rules_state_release(&st);

	ev = nps5_at(T0);
	d = decide(&p, &ev, &st);
	ev = nps5_at(T0 + 30 * DAY + 1);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.repeat_count, 1);
	assert_int_equal(d.reasons, KPI_NEG_NPS);
	assert_int_equal(d.severity, SEVERITY_NORMAL);
	/* T0 is out of the window of the newest negative and forgotten. */
	assert_int_equal(st.n_negatives, 1);
	assert_int_equal(st.negatives_us[0], T0 + 30 * DAY + 1);
	rules_state_release(&st);

	/* high_on_repeat off: a repeat stays normal but keeps its reason. */
	p.high_on_repeat = false;
	ev = nps5_at(T0);
	d = decide(&p, &ev, &st);
	ev = nps5_at(T0 + 2 * DAY);
	d = decide(&p, &ev, &st);
	assert_int_equal(d.reasons, KPI_NEG_NPS | RULES_REASON_REPEAT);
	assert_int_equal(d.severity, SEVERITY_NORMAL);
	rules_state_release(&st);
}

/* The repeat count includes every negative within 30 d of this one, both sides. */
static void test_repeat_count_out_of_order(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct event ev;
	struct rules_decision d;

	(void)state;
	/* Read in the order 10 d, 40 d, 2 d (late), 25 d. */
	ev = nps5_at(T0 + 10 * DAY);
	d = decide(&p, &ev, &st);
	assert_int_equal(d.repeat_count, 1);
	ev = nps5_at(T0 + 40 * DAY);
	d = decide(&p, &ev, &st); /* 10 d is exactly 30 d before: counted */
	assert_int_equal(d.repeat_count, 2);
	ev = nps5_at(T0 + 2 * DAY);
	d = decide(&p, &ev, &st);
	/* 10 d is 8 d away (counted); 40 d is 38 d away (not). */
	assert_true(d.trigger); /* 38 d from the latest trigger (40 d) */
	assert_int_equal(d.repeat_count, 2);
	assert_int_equal(d.reasons, KPI_NEG_NPS | RULES_REASON_REPEAT);
	/* 2 d fell out of the newest's (40 d) window when kept: the state holds 10 d, 40 d. */
	assert_int_equal(st.n_negatives, 2);
	assert_int_equal(st.negatives_us[0], T0 + 10 * DAY);
	assert_int_equal(st.negatives_us[1], T0 + 40 * DAY);
	ev = nps5_at(T0 + 25 * DAY);
	d = decide(&p, &ev, &st);
	/* 10 d (15 d away) and 40 d (15 d away): 3 with this one. */
	assert_int_equal(d.repeat_count, 3);
	assert_int_equal(st.n_negatives, 3);
	assert_int_equal(st.negatives_us[1], T0 + 25 * DAY); /* kept in order */
	rules_state_release(&st);
}

/*
 * A shared customer id: 200 negatives an hour apart, all within one
 * window. The state keeps the newest 64, so the 200th counts 64 earlier
 * ones; a late one older than all of them counts the kept ones within its
 * window, and is kept only if it is among the newest 64 (it is not).
 */
static void test_negatives_kept_are_bounded(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct event ev;
	struct rules_decision d;

	(void)state;
	for (int i = 0; i < 200; i++) {
		ev = nps5_at(T0 + i * HOUR);
		d = decide(&p, &ev, &st);
		assert_int_equal(d.repeat_count, 1 + (i < 64 ? i : 64));
		assert_int_equal(st.n_negatives, i < 64 ? (size_t)i + 1 : 64);
	}
	assert_true(st.cap_negatives <= 128);
	/* 136 h .. 199 h */
	assert_int_equal(st.negatives_us[0], T0 + 136 * HOUR);
	assert_int_equal(st.negatives_us[63], T0 + 199 * HOUR);
	/* 10 h: 30 days reach every kept one. */
	ev = nps5_at(T0 + 10 * HOUR);
	d = decide(&p, &ev, &st);
	assert_int_equal(d.repeat_count, 65);
	assert_int_equal(st.n_negatives, 64);
	assert_int_equal(st.negatives_us[0], T0 + 136 * HOUR);
	rules_state_release(&st);
}

/* 24 h apart is allowed; 24 h - 1 us is suppressed, and counted. */
static void test_cooldown_edges_and_suppressed_count(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct event ev;
	struct rules_decision d;

	(void)state;
	ev = nps5_at(T0);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);

	ev = nps5_at(T0 + 1 * HOUR);
	d = decide(&p, &ev, &st);
	assert_false(d.trigger);
	assert_int_equal(d.repeat_count, 2);
	assert_int_equal(st.suppressed, 1);
	ev = nps5_at(T0 + 24 * HOUR - 1);
	d = decide(&p, &ev, &st);
	assert_false(d.trigger);
	assert_int_equal(st.suppressed, 2);

	ev = nps5_at(T0 + 24 * HOUR);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.suppressed_count, 2); /* the two above */
	assert_int_equal(d.repeat_count, 4);     /* all four within 30 d */
	assert_int_equal(d.reasons, KPI_NEG_NPS | RULES_REASON_REPEAT);
	assert_int_equal(st.suppressed, 0);
	assert_int_equal(st.last_trigger_us, T0 + 24 * HOUR);

	/* Suppressed again within 24 h of the second trigger, then carried to the third. */
	ev = nps5_at(T0 + 30 * HOUR);
	d = decide(&p, &ev, &st);
	assert_false(d.trigger);
	ev = nps5_at(T0 + 48 * HOUR);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.suppressed_count, 1);
	ev = nps5_at(T0 + 72 * HOUR);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.suppressed_count, 0);
	rules_state_release(&st);

	/* Cooldown 0: every negative triggers. */
	p.cooldown_us = 0;
	ev = nps5_at(T0);
	d = decide(&p, &ev, &st);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.suppressed_count, 0);
	rules_state_release(&st);
}

/* The cooldown works on occurred_at in both directions, and a late event never moves it back. */
static void test_cooldown_out_of_order(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct event ev;
	struct rules_decision d;

	(void)state;
	ev = nps5_at(T0 + 100 * HOUR);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	/* 10 h before the trigger: within 24 h, suppressed. */
	ev = nps5_at(T0 + 90 * HOUR);
	d = decide(&p, &ev, &st);
	assert_false(d.trigger);
	/* 50 h before: its own trigger, carrying the one suppressed. */
	ev = nps5_at(T0 + 50 * HOUR);
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);
	assert_int_equal(d.suppressed_count, 1);
	assert_int_equal(st.last_trigger_us, T0 + 100 * HOUR);
	/* 1 h after the 100 h trigger: suppressed (the late 50 h one did not reset the clock). */
	ev = nps5_at(T0 + 101 * HOUR);
	d = decide(&p, &ev, &st);
	assert_false(d.trigger);
	assert_int_equal(st.suppressed, 1);
	rules_state_release(&st);
}

/* Each customer has its own state: another customer's negative is no repeat. */
static void test_state_is_per_customer(void **state)
{
	struct rules_policy p = policy();
	struct rules_state a = {0}, b = {0};
	struct event ev = nps5_at(T0);
	struct rules_decision d;

	(void)state;
	d = decide(&p, &ev, &a);
	ev.customer_id = "c-2";
	d = decide(&p, &ev, &b);
	assert_true(d.trigger);
	assert_int_equal(d.repeat_count, 1);
	rules_state_release(&a);
	rules_state_release(&b);
}

static int64_t ts_us(const Google__Protobuf__Timestamp *ts)
{
	assert_non_null(ts);
	return ts->seconds * US + ts->nanos / 1000;
}

/* Packs a trigger, decodes it with protobuf-c and checks every field. */
static void test_trigger_pack(void **state)
{
	struct rules_policy p = policy();
	struct rules_state st = {0};
	struct arena a;
	struct event ev = event_at(T0 + 123456);
	size_t len = 0;

	(void)state;
	arena_init(&a, 0);
	ev.event_id = "evt-42";
	ev.customer_id = "cust-7";
	ev.agent_id = "agent-3";
	ev.interaction_id = "call-9";
	ev.comment = "waited an hour";
	ev.locale = "de-CH";
	ev.channel = CHANNEL_PHONE;
	ev.csat = rating(4, 1, 5); /* not negative: not in the trigger */
	ev.nps = rating(2, 0, 10);
	ev.ces = rating(2, 1, 7);
	ev.ces.inverted = true; /* effort 1 + 7 - 2 = 6 */
	struct event earlier = nps5_at(T0 - 2 * DAY);
	struct rules_decision d = decide(&p, &earlier, &st);
	st.suppressed = 3; /* as if three negatives had been suppressed since */
	d = decide(&p, &ev, &st);
	assert_true(d.trigger);

	uint8_t *buf = trigger_pack(&ev, &d, DETECTED, &a, &len);
	assert_non_null(buf);
	Feedback__V1__RecoveryTrigger *t = feedback__v1__recovery_trigger__unpack(NULL, len, buf);
	assert_non_null(t);
	assert_string_equal(t->trigger_id, "rt:evt-42");
	assert_string_equal(t->event_id, "evt-42");
	assert_string_equal(t->customer_id, "cust-7");
	assert_string_equal(t->agent_id, "agent-3");
	assert_string_equal(t->interaction_id, "call-9");
	assert_int_equal(t->channel, FEEDBACK__V1__CHANNEL__CHANNEL_PHONE);
	assert_int_equal(ts_us(t->occurred_at), T0 + 123456);
	assert_int_equal(t->occurred_at->nanos, 123456000);
	assert_int_equal(ts_us(t->detected_at), DETECTED);
	/* NPS 2 <= 3: critical, 4 h. */
	assert_int_equal(t->severity, FEEDBACK__V1__SEVERITY__SEVERITY_CRITICAL);
	assert_int_equal(ts_us(t->follow_up_by), DETECTED + 4 * HOUR);
	assert_int_equal(t->n_negative_ratings, 2);
	assert_int_equal(t->negative_ratings[0]->metric, FEEDBACK__V1__METRIC__METRIC_NPS);
	assert_int_equal(t->negative_ratings[0]->score, 2);
	assert_int_equal(t->negative_ratings[0]->scale_min, 0);
	assert_int_equal(t->negative_ratings[0]->scale_max, 10);
	assert_false(t->negative_ratings[0]->inverted);
	assert_int_equal(t->negative_ratings[1]->metric, FEEDBACK__V1__METRIC__METRIC_CES);
	assert_int_equal(t->negative_ratings[1]->score, 2);
	assert_int_equal(t->negative_ratings[1]->scale_min, 1);
	assert_int_equal(t->negative_ratings[1]->scale_max, 7);
	assert_true(t->negative_ratings[1]->inverted);
	assert_int_equal(t->n_reasons, 3);
	assert_int_equal(t->reasons[0], FEEDBACK__V1__REASON__REASON_NPS_DETRACTOR);
	assert_int_equal(t->reasons[1], FEEDBACK__V1__REASON__REASON_CES_HIGH_EFFORT);
	assert_int_equal(t->reasons[2], FEEDBACK__V1__REASON__REASON_REPEAT_NEGATIVE);
	assert_string_equal(t->comment, "waited an hour");
	assert_string_equal(t->locale, "de-CH");
	assert_int_equal(t->repeat_count, 2);
	assert_int_equal(t->suppressed_count, 3);
	feedback__v1__recovery_trigger__free_unpacked(t, NULL);

	/* Packed again, detected later: the same trigger_id, so a re-send is recognisable. */
	buf = trigger_pack(&ev, &d, DETECTED + HOUR, &a, &len);
	assert_non_null(buf);
	t = feedback__v1__recovery_trigger__unpack(NULL, len, buf);
	assert_non_null(t);
	assert_string_equal(t->trigger_id, "rt:evt-42");
	assert_int_equal(ts_us(t->detected_at), DETECTED + HOUR);
	feedback__v1__recovery_trigger__free_unpacked(t, NULL);

	/* A CSAT-only trigger before the epoch still encodes a valid timestamp. */
	struct event old = event_at(-1500000); /* 1969-12-31T23:59:58.5Z */
	old.csat = rating(1, 1, 5);
	struct rules_state st2 = {0};
	d = decide(&p, &old, &st2);
	buf = trigger_pack(&old, &d, DETECTED, &a, &len);
	assert_non_null(buf);
	t = feedback__v1__recovery_trigger__unpack(NULL, len, buf);
	assert_non_null(t);
	assert_int_equal(t->occurred_at->seconds, -2);
	assert_int_equal(t->occurred_at->nanos, 500000000);
	assert_int_equal(t->n_reasons, 1);
	assert_int_equal(t->reasons[0], FEEDBACK__V1__REASON__REASON_CSAT_LOW);
	assert_int_equal(t->n_negative_ratings, 1);
	assert_int_equal(t->negative_ratings[0]->metric, FEEDBACK__V1__METRIC__METRIC_CSAT);
	assert_int_equal(t->agent_id[0], '\0');
	feedback__v1__recovery_trigger__free_unpacked(t, NULL);

	rules_state_release(&st);
	rules_state_release(&st2);
	arena_release(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policy_defaults),
	    cmocka_unit_test(test_negative_rules),
	    cmocka_unit_test(test_several_reasons_one_trigger),
	    cmocka_unit_test(test_severity),
	    cmocka_unit_test(test_repeat_window_edges),
	    cmocka_unit_test(test_repeat_count_out_of_order),
	    cmocka_unit_test(test_negatives_kept_are_bounded),
	    cmocka_unit_test(test_cooldown_edges_and_suppressed_count),
	    cmocka_unit_test(test_cooldown_out_of_order),
	    cmocka_unit_test(test_state_is_per_customer),
	    cmocka_unit_test(test_trigger_pack),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
