#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kpi.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* One point of a normalised CSAT score, in summed units. */
#define POINT ((int64_t)KPI_CSAT_UNIT)

static struct rating rating(int32_t score, int32_t min, int32_t max)
{
	return (struct rating){.present = true, .score = score, .scale_min = min, .scale_max = max};
}

static struct rating rating_inverted(int32_t score, int32_t min, int32_t max)
{
	struct rating r = rating(score, min, max);

	r.inverted = true;
	return r;
}

static struct event event_blank(void)
{
	return (struct event){
	    .event_id = "e-1",
	    .customer_id = "c-1",
	    .agent_id = "",
	    .interaction_id = "",
	    .comment = "",
	    .locale = "",
	    .channel = CHANNEL_SMS,
	};
}

static struct kpi_policy policy_defaults(void)
{
	struct kpi_policy p;

	kpi_policy_defaults(&p);
	return p;
}

static void test_policy_defaults(void **state)
{
	struct kpi_policy p = policy_defaults();

	(void)state;
	assert_int_equal(p.service_level_seconds, 90);
	assert_int_equal(p.csat_negative_k, 0);
	assert_int_equal(p.nps_detractor_max, 6);
	assert_int_equal(p.ces_high_min_7, 5);
	assert_int_equal(p.ces_high_min_5, 4);
}

static void test_csat_k(void **state)
{
	(void)state;
	assert_int_equal(kpi_csat_k(2), 1);
	assert_int_equal(kpi_csat_k(3), 1);
	assert_int_equal(kpi_csat_k(4), 2);
	assert_int_equal(kpi_csat_k(5), 2);
	assert_int_equal(kpi_csat_k(7), 2);
	assert_int_equal(kpi_csat_k(9), 2);
	assert_int_equal(kpi_csat_k(10), 3);
	assert_int_equal(kpi_csat_k(11), 3);
}

/* units = 100 * (score - min) / (max - min) points, 1 point = 2520 units. */
static const struct csat_case {
	int32_t min, max, score;
	bool satisfied;
	int64_t units;
} csat_cases[] = {
    /* 2 points (yes/no), k = 1: satisfied when score > 2 - 1 = 1 */
    {1, 2, 1, false, 0},
    {1, 2, 2, true, 252000}, /* 100 points */
    {0, 1, 0, false, 0},
    {0, 1, 1, true, 252000},
    /* 3 points, k = 1: satisfied when score > 2 */
    {1, 3, 2, false, 126000}, /* 50 points */
    {1, 3, 3, true, 252000},
    {1, 3, 1, false, 0},
    /* 4 points, k = 2: satisfied when score > 2 */
    {1, 4, 2, false, 84000}, /* 33.33.. points = 252000 / 3 */
    {1, 4, 3, true, 168000}, /* 66.66.. points */
    /* 5 points, k = 2: satisfied when score > 3 */
    {1, 5, 1, false, 0},
    {1, 5, 2, false, 63000},  /* 25 points */
    {1, 5, 3, false, 126000}, /* 50 points */
    {1, 5, 4, true, 189000},  /* 75 points */
    {1, 5, 5, true, 252000},  /* 100 points */
    /* 7 points, k = 2: satisfied when score > 5 */
    {1, 7, 2, false, 42000},  /* 16.66.. points = 252000 / 6 */
    {1, 7, 5, false, 168000}, /* 66.66.. points = 4 * 42000 */
    {1, 7, 6, true, 210000},  /* 83.33.. points = 5 * 42000 */
    {1, 7, 7, true, 252000},
    /* 10 points (1-10), k = 3: satisfied when score > 7 */
    {1, 10, 1, false, 0},
    {1, 10, 7, false, 168000}, /* 66.66.. points = 6 * 252000 / 9 = 6 * 28000 */
    {1, 10, 8, true, 196000},  /* 77.77.. points = 7 * 28000 */
    {1, 10, 10, true, 252000},
    /* 11 points (0-10), k = 3: satisfied when score > 7 */
    {0, 10, 0, false, 0},
    {0, 10, 7, false, 176400}, /* 70 points */
    {0, 10, 8, true, 201600},  /* 80 points */
    {0, 10, 10, true, 252000},
};

static void test_csat_scales(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(csat_cases); i++) {
		const struct csat_case *c = &csat_cases[i];
		struct rating r = rating(c->score, c->min, c->max);
		bool satisfied = kpi_csat_satisfied(&r);
		int64_t units = kpi_csat_units(&r);

		if (satisfied != c->satisfied || units != c->units)
			fail_msg("csat %d on %d-%d: satisfied %d, units %lld; want %d, %lld",
			         c->score, c->min, c->max, satisfied, (long long)units,
			         c->satisfied, (long long)c->units);
	}
	/* The headline examples, spelled in points. */
	struct rating four_of_five = rating(4, 1, 5);
	struct rating two_of_seven = rating(2, 1, 7);

	assert_int_equal(kpi_csat_units(&four_of_five), 75 * POINT);
	assert_int_equal(kpi_csat_units(&two_of_seven) * 6, 100 * POINT);
}

static void test_nps_class(void **state)
{
	(void)state;
	assert_int_equal(kpi_nps_class(0), NPS_DETRACTOR);
	assert_int_equal(kpi_nps_class(6), NPS_DETRACTOR);
	assert_int_equal(kpi_nps_class(7), NPS_PASSIVE);
	assert_int_equal(kpi_nps_class(8), NPS_PASSIVE);
	assert_int_equal(kpi_nps_class(9), NPS_PROMOTER);
	assert_int_equal(kpi_nps_class(10), NPS_PROMOTER);
}

static const struct ces_case {
	int32_t min, max, score;
	bool inverted;
	int32_t effort;
	enum ces_band band;
} ces_cases[] = {
    /* 1-7: low 1-2, moderate 3-4, high 5-7 */
    {1, 7, 1, false, 1, CES_LOW},
    {1, 7, 2, false, 2, CES_LOW},
    {1, 7, 3, false, 3, CES_MODERATE},
    {1, 7, 4, false, 4, CES_MODERATE},
    {1, 7, 5, false, 5, CES_HIGH},
    {1, 7, 7, false, 7, CES_HIGH},
    /* 1-5: low 1-2, moderate 3, high 4-5 */
    {1, 5, 1, false, 1, CES_LOW},
    {1, 5, 2, false, 2, CES_LOW},
    {1, 5, 3, false, 3, CES_MODERATE},
    {1, 5, 4, false, 4, CES_HIGH},
    {1, 5, 5, false, 5, CES_HIGH},
    /* agreement form: effort = min + max - score */
    {1, 7, 7, true, 1, CES_LOW},      /* 1 + 7 - 7 */
    {1, 7, 3, true, 5, CES_HIGH},     /* 1 + 7 - 3 */
    {1, 7, 4, true, 4, CES_MODERATE}, /* 1 + 7 - 4 */
    {1, 5, 2, true, 4, CES_HIGH},     /* 1 + 5 - 2 */
    {1, 5, 3, true, 3, CES_MODERATE}, /* 1 + 5 - 3 */
    {1, 5, 5, true, 1, CES_LOW},      /* 1 + 5 - 5 */
};

static void test_ces_effort_and_band(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ces_cases); i++) {
		const struct ces_case *c = &ces_cases[i];
		struct rating r = c->inverted ? rating_inverted(c->score, c->min, c->max)
		                              : rating(c->score, c->min, c->max);
		int32_t effort = kpi_ces_effort(&r);
		enum ces_band band = kpi_ces_band(&r);

		if (effort != c->effort || band != c->band)
			fail_msg("ces %d on %d-%d%s: effort %d, band %d; want %d, %d", c->score,
			         c->min, c->max, c->inverted ? " inverted" : "", effort, band,
			         c->effort, c->band);
	}
}

static unsigned reasons_csat(int32_t score, int32_t min, int32_t max, const struct kpi_policy *p)
{
	struct event ev = event_blank();

	ev.csat = rating(score, min, max);
	return kpi_negative_reasons(&ev, p);
}

static unsigned reasons_nps(int32_t score, const struct kpi_policy *p)
{
	struct event ev = event_blank();

	ev.nps = rating(score, 0, 10);
	return kpi_negative_reasons(&ev, p);
}

static unsigned reasons_ces(struct rating r, const struct kpi_policy *p)
{
	struct event ev = event_blank();

	ev.ces = r;
	return kpi_negative_reasons(&ev, p);
}

static void test_negative_defaults(void **state)
{
	struct kpi_policy p = policy_defaults();
	struct event ev = event_blank();

	(void)state;
	/* Bottom-k-box: score < min + k. */
	assert_int_equal(reasons_csat(1, 1, 2, &p), KPI_NEG_CSAT); /* k 1: < 2 */
	assert_int_equal(reasons_csat(2, 1, 2, &p), 0);
	assert_int_equal(reasons_csat(1, 1, 3, &p), KPI_NEG_CSAT); /* k 1: < 2 */
	assert_int_equal(reasons_csat(2, 1, 3, &p), 0);
	assert_int_equal(reasons_csat(2, 1, 5, &p), KPI_NEG_CSAT); /* k 2: < 3 */
	assert_int_equal(reasons_csat(3, 1, 5, &p), 0);
	assert_int_equal(reasons_csat(2, 1, 7, &p), KPI_NEG_CSAT); /* k 2: < 3 */
	assert_int_equal(reasons_csat(3, 1, 7, &p), 0);
	assert_int_equal(reasons_csat(3, 1, 10, &p), KPI_NEG_CSAT); /* k 3: < 4 */
	assert_int_equal(reasons_csat(4, 1, 10, &p), 0);
	assert_int_equal(reasons_csat(2, 0, 10, &p), KPI_NEG_CSAT); /* k 3: < 3 */
	assert_int_equal(reasons_csat(3, 0, 10, &p), 0);

	/* Detractor 0-6. */
	assert_int_equal(reasons_nps(0, &p), KPI_NEG_NPS);
	assert_int_equal(reasons_nps(6, &p), KPI_NEG_NPS);
	assert_int_equal(reasons_nps(7, &p), 0);

	/* High effort: >= 5 on 1-7, >= 4 on 1-5. */
	assert_int_equal(reasons_ces(rating(4, 1, 7), &p), 0);
	assert_int_equal(reasons_ces(rating(5, 1, 7), &p), KPI_NEG_CES);
	assert_int_equal(reasons_ces(rating(3, 1, 5), &p), 0);
	assert_int_equal(reasons_ces(rating(4, 1, 5), &p), KPI_NEG_CES);
	/* Agreement 3 on 1-7 is effort 5; agreement 2 on 1-5 is effort 4. */
	assert_int_equal(reasons_ces(rating_inverted(3, 1, 7), &p), KPI_NEG_CES);
	assert_int_equal(reasons_ces(rating_inverted(4, 1, 7), &p), 0);
	assert_int_equal(reasons_ces(rating_inverted(2, 1, 5), &p), KPI_NEG_CES);
	assert_int_equal(reasons_ces(rating_inverted(3, 1, 5), &p), 0);

	/* Nothing rated, nothing negative, even with a bad contact. */
	ev.has_contact = true;
	ev.outcome = OUTCOME_ABANDONED;
	ev.fcr = FCR_UNRESOLVED;
	assert_int_equal(kpi_negative_reasons(&ev, &p), 0);

	/* All three at once. */
	ev.csat = rating(1, 1, 5);
	ev.nps = rating(2, 0, 10);
	ev.ces = rating(7, 1, 7);
	assert_int_equal(kpi_negative_reasons(&ev, &p), KPI_NEG_CSAT | KPI_NEG_NPS | KPI_NEG_CES);
}

static void test_negative_policy(void **state)
{
	struct kpi_policy p = policy_defaults();

	(void)state;
	p.csat_negative_k = 1;
	p.nps_detractor_max = 4;
	p.ces_high_min_7 = 6;
	p.ces_high_min_5 = 5;

	/* k 1 overrides every scale's own k: negative when score < min + 1. */
	assert_int_equal(reasons_csat(1, 1, 5, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(2, 1, 5, &p), 0);
	assert_int_equal(reasons_csat(0, 0, 10, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(1, 0, 10, &p), 0);

	/* A wider box than the scale's own k. */
	p.csat_negative_k = 3;
	assert_int_equal(reasons_csat(3, 1, 5, &p), KPI_NEG_CSAT); /* < 4 */
	assert_int_equal(reasons_csat(4, 1, 5, &p), 0);

	/*
	 * A box wider than the scale's unsatisfied answers stops below the
	 * satisfied ones (points - the scale's top k): yes/no 1, 3 points 2,
	 * 5 points 3, 11 points 8.
	 */
	p.csat_negative_k = 2;
	assert_int_equal(reasons_csat(0, 0, 1, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(1, 0, 1, &p), 0);
	p.csat_negative_k = 5;
	assert_int_equal(reasons_csat(2, 1, 3, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(3, 1, 3, &p), 0);
	assert_int_equal(reasons_csat(3, 1, 5, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(4, 1, 5, &p), 0);
	assert_int_equal(reasons_csat(4, 0, 10, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(5, 0, 10, &p), 0);

	/* A valid scale at the top of int32: min + k would overflow. */
	assert_int_equal(reasons_csat(INT32_MAX - 1, INT32_MAX - 1, INT32_MAX, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(INT32_MAX, INT32_MAX - 1, INT32_MAX, &p), 0);
	p.csat_negative_k = 1;
	assert_int_equal(reasons_csat(INT32_MAX, INT32_MAX - 1, INT32_MAX, &p), 0);
	assert_int_equal(reasons_csat(INT32_MIN, INT32_MIN, INT32_MIN + 10, &p), KPI_NEG_CSAT);
	assert_int_equal(reasons_csat(INT32_MIN + 1, INT32_MIN, INT32_MIN + 10, &p), 0);
	p.csat_negative_k = 3;

	/* 5 is still a detractor for the NPS figure but no longer a trigger. */
	assert_int_equal(reasons_nps(4, &p), KPI_NEG_NPS);
	assert_int_equal(reasons_nps(5, &p), 0);
	assert_int_equal(kpi_nps_class(5), NPS_DETRACTOR);

	assert_int_equal(reasons_ces(rating(5, 1, 7), &p), 0);
	assert_int_equal(reasons_ces(rating(6, 1, 7), &p), KPI_NEG_CES);
	assert_int_equal(reasons_ces(rating(4, 1, 5), &p), 0);
	assert_int_equal(reasons_ces(rating(5, 1, 5), &p), KPI_NEG_CES);
	/* Agreement 2 on 1-7 = effort 6. */
	assert_int_equal(reasons_ces(rating_inverted(2, 1, 7), &p), KPI_NEG_CES);
}

static void test_count_fcr(void **state)
{
	struct kpi_policy p = policy_defaults();
	struct event ev = event_blank();
	struct kpi_counts c;

	(void)state;
	ev.fcr = FCR_RESOLVED;
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.fcr_n, 1);
	assert_int_equal(c.fcr_yes, 1);

	ev.fcr = FCR_UNRESOLVED;
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.fcr_n, 1);
	assert_int_equal(c.fcr_yes, 0);

	ev.fcr = FCR_NOT_ASKED;
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.fcr_n, 0);
	assert_int_equal(c.fcr_yes, 0);
}

static struct kpi_counts count_contact(enum outcome outcome, uint32_t wait, uint32_t handle,
                                       const struct kpi_policy *p)
{
	struct event ev = event_blank();
	struct kpi_counts c;

	ev.has_contact = true;
	ev.outcome = outcome;
	ev.wait_seconds = wait;
	ev.handle_seconds = handle;
	kpi_count_event(&ev, p, &c);
	return c;
}

static void test_count_contact(void **state)
{
	struct kpi_policy p = policy_defaults();
	struct kpi_counts c;

	(void)state;
	/* Answered after 90 s: inside the 90 s service level. */
	c = count_contact(OUTCOME_ANSWERED, 90, 300, &p);
	assert_int_equal(c.offered, 1);
	assert_int_equal(c.answered, 1);
	assert_int_equal(c.abandoned, 0);
	assert_int_equal(c.self_service, 0);
	assert_int_equal(c.answered_within_sl, 1);
	assert_int_equal(c.wait_seconds_answered, 90);
	assert_int_equal(c.handle_seconds, 300);
	assert_int_equal(c.negative, 0);

	/* 91 s: answered, but outside. */
	c = count_contact(OUTCOME_ANSWERED, 91, 300, &p);
	assert_int_equal(c.answered, 1);
	assert_int_equal(c.answered_within_sl, 0);
	assert_int_equal(c.wait_seconds_answered, 91);

	/* Abandoned after 10 s: quick, yet never within the service level; no ASA/AHT. */
	c = count_contact(OUTCOME_ABANDONED, 10, 25, &p);
	assert_int_equal(c.offered, 1);
	assert_int_equal(c.answered, 0);
	assert_int_equal(c.abandoned, 1);
	assert_int_equal(c.answered_within_sl, 0);
	assert_int_equal(c.wait_seconds_answered, 0);
	assert_int_equal(c.handle_seconds, 0);

	c = count_contact(OUTCOME_SELF_SERVICE, 0, 40, &p);
	assert_int_equal(c.offered, 1);
	assert_int_equal(c.answered, 0);
	assert_int_equal(c.self_service, 1);
	assert_int_equal(c.answered_within_sl, 0);
	assert_int_equal(c.handle_seconds, 0);

	/* Outcome not given: offered, and nothing else; its times add to no sum. */
	c = count_contact(OUTCOME_NONE, 10, 40, &p);
	assert_int_equal(c.offered, 1);
	assert_int_equal(c.answered, 0);
	assert_int_equal(c.abandoned, 0);
	assert_int_equal(c.self_service, 0);
	assert_int_equal(c.answered_within_sl, 0);
	assert_int_equal(c.wait_seconds_answered, 0);
	assert_int_equal(c.handle_seconds, 0);

	/* A 20 s target moves the boundary. */
	p.service_level_seconds = 20;
	c = count_contact(OUTCOME_ANSWERED, 20, 0, &p);
	assert_int_equal(c.answered_within_sl, 1);
	c = count_contact(OUTCOME_ANSWERED, 21, 0, &p);
	assert_int_equal(c.answered_within_sl, 0);
}

static void test_count_no_contact(void **state)
{
	struct kpi_policy p = policy_defaults();
	struct event ev = event_blank();
	struct kpi_counts c;

	(void)state;
	ev.fcr = FCR_RESOLVED;
	/* Values behind an absent contact block must not leak into the sums. */
	ev.wait_seconds = 5;
	ev.handle_seconds = 7;
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.offered, 0);
	assert_int_equal(c.answered, 0);
	assert_int_equal(c.wait_seconds_answered, 0);
	assert_int_equal(c.handle_seconds, 0);
	assert_int_equal(c.csat_n, 0);
	assert_int_equal(c.nps_n, 0);
	assert_int_equal(c.ces_n, 0);
}

static void test_count_multi_rating(void **state)
{
	struct kpi_policy p = policy_defaults();
	struct event ev = event_blank();
	struct kpi_counts c;

	(void)state;
	/* Negative on all three metrics: one trigger, so negative = 1. */
	ev.csat = rating(2, 1, 5); /* 25 points = 63000, not satisfied */
	ev.nps = rating(3, 0, 10); /* detractor */
	ev.ces = rating(6, 1, 7);  /* effort 6, high */
	ev.fcr = FCR_UNRESOLVED;
	ev.has_contact = true;
	ev.outcome = OUTCOME_ANSWERED;
	ev.wait_seconds = 30;
	ev.handle_seconds = 200;
	memset(&c, 0x5a, sizeof(c)); /* out is overwritten, not added to */
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.csat_n, 1);
	assert_int_equal(c.csat_satisfied, 0);
	assert_int_equal(c.csat_score_units, 63000);
	assert_int_equal(c.nps_n, 1);
	assert_int_equal(c.nps_promoters, 0);
	assert_int_equal(c.nps_passives, 0);
	assert_int_equal(c.nps_detractors, 1);
	assert_int_equal(c.ces_n, 1);
	assert_int_equal(c.ces_effort_sum, 6);
	assert_int_equal(c.ces_high, 1);
	assert_int_equal(c.ces_low, 0);
	assert_int_equal(c.fcr_n, 1);
	assert_int_equal(c.fcr_yes, 0);
	assert_int_equal(c.offered, 1);
	assert_int_equal(c.answered, 1);
	assert_int_equal(c.abandoned, 0);
	assert_int_equal(c.self_service, 0);
	assert_int_equal(c.answered_within_sl, 1);
	assert_int_equal(c.wait_seconds_answered, 30);
	assert_int_equal(c.handle_seconds, 200);
	assert_int_equal(c.negative, 1);

	/* All positive: CSAT 5/5 (100 points), NPS 8 passive, agreement 6 on 1-7 = effort 2, low.
	 */
	ev = event_blank();
	ev.csat = rating(5, 1, 5);
	ev.nps = rating(8, 0, 10);
	ev.ces = rating_inverted(6, 1, 7);
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.csat_n, 1);
	assert_int_equal(c.csat_satisfied, 1);
	assert_int_equal(c.csat_score_units, 252000);
	assert_int_equal(c.nps_n, 1);
	assert_int_equal(c.nps_passives, 1);
	assert_int_equal(c.nps_promoters, 0);
	assert_int_equal(c.nps_detractors, 0);
	assert_int_equal(c.ces_n, 1);
	assert_int_equal(c.ces_effort_sum, 2);
	assert_int_equal(c.ces_low, 1);
	assert_int_equal(c.ces_high, 0);
	assert_int_equal(c.fcr_n, 0);
	assert_int_equal(c.offered, 0);
	assert_int_equal(c.negative, 0);

	/* NPS 10 is a promoter; CES moderate counts in neither high nor low. */
	ev = event_blank();
	ev.nps = rating(10, 0, 10);
	ev.ces = rating(3, 1, 5);
	kpi_count_event(&ev, &p, &c);
	assert_int_equal(c.nps_promoters, 1);
	assert_int_equal(c.ces_effort_sum, 3);
	assert_int_equal(c.ces_high, 0);
	assert_int_equal(c.ces_low, 0);
	assert_int_equal(c.csat_n, 0);
	assert_int_equal(c.negative, 0);
}

/* kpi_counts_add must name every field; a new field fails here until it does. */
_Static_assert(sizeof(struct kpi_counts) == 21 * sizeof(int64_t), "kpi_counts gained a field");

static void test_counts_add(void **state)
{
	struct kpi_counts dst = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
	                         12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
	const struct kpi_counts src = {100,  200,  300,  400,  500,  600,  700,
	                               800,  900,  1000, 1100, 1200, 1300, 1400,
	                               1500, 1600, 1700, 1800, 1900, 2000, 2100};

	(void)state;
	kpi_counts_add(&dst, &src);
	assert_int_equal(dst.csat_n, 101);
	assert_int_equal(dst.csat_satisfied, 202);
	assert_int_equal(dst.csat_score_units, 303);
	assert_int_equal(dst.nps_n, 404);
	assert_int_equal(dst.nps_promoters, 505);
	assert_int_equal(dst.nps_passives, 606);
	assert_int_equal(dst.nps_detractors, 707);
	assert_int_equal(dst.ces_n, 808);
	assert_int_equal(dst.ces_effort_sum, 909);
	assert_int_equal(dst.ces_high, 1010);
	assert_int_equal(dst.ces_low, 1111);
	assert_int_equal(dst.fcr_n, 1212);
	assert_int_equal(dst.fcr_yes, 1313);
	assert_int_equal(dst.offered, 1414);
	assert_int_equal(dst.answered, 1515);
	assert_int_equal(dst.abandoned, 1616);
	assert_int_equal(dst.self_service, 1717);
	assert_int_equal(dst.answered_within_sl, 1818);
	assert_int_equal(dst.wait_seconds_answered, 1919);
	assert_int_equal(dst.handle_seconds, 2020);
	assert_int_equal(dst.negative, 2121);
	/* src is left alone. */
	assert_int_equal(src.csat_n, 100);
	assert_int_equal(src.negative, 2100);
}

#define US 1000000LL

static void test_bucket(void **state)
{
	(void)state;
	assert_int_equal(kpi_bucket(0), 0);
	/* 00:14:59.999999 still belongs to 00:00. */
	assert_int_equal(kpi_bucket(900 * US - 1), 0);
	/* 00:15:00.000000 starts the next bucket. */
	assert_int_equal(kpi_bucket(900 * US), 900);
	assert_int_equal(kpi_bucket(1799 * US), 900);

	/* Before 1970 the bucket is the floor, not the truncation toward zero. */
	assert_int_equal((int64_t)kpi_bucket(-1), -900);
	assert_int_equal((int64_t)kpi_bucket(-1 * US), -900);
	assert_int_equal((int64_t)kpi_bucket(-900 * US), -900);
	assert_int_equal((int64_t)kpi_bucket(-900 * US - 1), -1800);

	/*
	 * 2026-03-29T01:07:00Z. Days from 1970-01-01 to 2026-01-01: 56 * 365
	 * + 14 leap days (1972..2024) = 20454; to March 29: + 31 + 28 + 28 =
	 * 20541 days = 20541 * 86400 = 1774742400 s at midnight. 01:07 adds
	 * 3600 + 420: 1774746420. Its bucket starts at 01:00 = 1774746000.
	 */
	assert_int_equal(kpi_bucket(1774746420LL * US), 1774746000LL);
	assert_int_equal(kpi_bucket(1774742400LL * US + 900 * US - 1), 1774742400LL);
	assert_int_equal(kpi_bucket(1774742400LL * US + 900 * US), 1774743300LL);

	/* The contract's extremes: 0001-01-01T00:00:00Z = -62135596800 = -69039552 * 900. */
	assert_int_equal((int64_t)kpi_bucket(-62135596800LL * US), -62135596800LL);
	assert_int_equal((int64_t)kpi_bucket(-62135596800LL * US - 1), -62135597700LL);
	/* 9999-12-31T23:59:59.999999Z; 10000-01-01 = 253402300800 = 281558112 * 900. */
	assert_int_equal(kpi_bucket(253402300800LL * US - 1), 253402299900LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policy_defaults),
	    cmocka_unit_test(test_csat_k),
	    cmocka_unit_test(test_csat_scales),
	    cmocka_unit_test(test_nps_class),
	    cmocka_unit_test(test_ces_effort_and_band),
	    cmocka_unit_test(test_negative_defaults),
	    cmocka_unit_test(test_negative_policy),
	    cmocka_unit_test(test_count_fcr),
	    cmocka_unit_test(test_count_contact),
	    cmocka_unit_test(test_count_no_contact),
	    cmocka_unit_test(test_count_multi_rating),
	    cmocka_unit_test(test_counts_add),
	    cmocka_unit_test(test_bucket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
