#include "kpi.h"

#include <string.h>

#define US_PER_BUCKET ((int64_t)KPI_BUCKET_SECONDS * 1000000)

void kpi_policy_defaults(struct kpi_policy *p)
{
	p->service_level_seconds = 90;
	p->csat_negative_k = 0;
	p->nps_detractor_max = 6;
	p->ces_high_min_7 = 5;
	p->ces_high_min_5 = 4;
}

int kpi_csat_k(int points)
{
	if (points <= 3)
		return 1;
	if (points <= 9)
		return 2;
	return 3;
}

static int csat_points(const struct rating *r)
{
	return r->scale_max - r->scale_min + 1;
}

bool kpi_csat_satisfied(const struct rating *r)
{
	return r->score > r->scale_max - kpi_csat_k(csat_points(r));
}

int64_t kpi_csat_units(const struct rating *r)
{
	int64_t width = (int64_t)r->scale_max - r->scale_min;

	/* A validated rating always has min < max; never divide by zero on a bad one. */
	if (width <= 0)
		return 0;
	return ((int64_t)r->score - r->scale_min) * 100 * KPI_CSAT_UNIT / width;
}

enum nps_class kpi_nps_class(int32_t score)
{
	if (score >= 9)
		return NPS_PROMOTER;
	if (score >= 7)
		return NPS_PASSIVE;
	return NPS_DETRACTOR;
}

int32_t kpi_ces_effort(const struct rating *r)
{
	if (r->inverted)
		return r->scale_min + r->scale_max - r->score;
	return r->score;
}

/* The contract allows only 1-5 and 1-7; anything else is treated as 1-7, the default. */
static bool ces_is_five_point(const struct rating *r)
{
	return r->scale_max - r->scale_min + 1 == 5;
}

enum ces_band kpi_ces_band(const struct rating *r)
{
	int32_t effort = kpi_ces_effort(r);

	if (effort <= 2)
		return CES_LOW;
	if (ces_is_five_point(r))
		return effort <= 3 ? CES_MODERATE : CES_HIGH;
	return effort <= 4 ? CES_MODERATE : CES_HIGH;
}

unsigned kpi_negative_reasons(const struct event *ev, const struct kpi_policy *p)
{
	unsigned reasons = 0;

	if (ev->csat.present) {
		const struct rating *r = &ev->csat;
		int points = csat_points(r), top = kpi_csat_k(points);
		int k = p->csat_negative_k > 0 ? p->csat_negative_k : top;

		/* A configured box never reaches the satisfied answers: k 2 on yes/no is "no". */
		if (k > points - top)
			k = points - top;

		/* score - min is at most 10; min + k may pass INT32_MAX. */
		if (r->score - r->scale_min < k)
			reasons |= KPI_NEG_CSAT;
	}
	if (ev->nps.present && ev->nps.score <= p->nps_detractor_max)
		reasons |= KPI_NEG_NPS;
	if (ev->ces.present) {
		int high_min = ces_is_five_point(&ev->ces) ? p->ces_high_min_5 : p->ces_high_min_7;

		if (kpi_ces_effort(&ev->ces) >= high_min)
			reasons |= KPI_NEG_CES;
	}
	return reasons;
}

void kpi_count_event(const struct event *ev, const struct kpi_policy *p, struct kpi_counts *out)
{
	memset(out, 0, sizeof(*out));

	if (ev->csat.present) {
		out->csat_n = 1;
		out->csat_satisfied = kpi_csat_satisfied(&ev->csat);
		out->csat_score_units = kpi_csat_units(&ev->csat);
	}
	if (ev->nps.present) {
		enum nps_class c = kpi_nps_class(ev->nps.score);

		out->nps_n = 1;
		out->nps_promoters = c == NPS_PROMOTER;
		out->nps_passives = c == NPS_PASSIVE;
		out->nps_detractors = c == NPS_DETRACTOR;
	}
	if (ev->ces.present) {
		enum ces_band band = kpi_ces_band(&ev->ces);

		out->ces_n = 1;
		out->ces_effort_sum = kpi_ces_effort(&ev->ces);
		out->ces_high = band == CES_HIGH;
		out->ces_low = band == CES_LOW;
	}
	if (ev->fcr == FCR_RESOLVED || ev->fcr == FCR_UNRESOLVED) {
		out->fcr_n = 1;
		out->fcr_yes = ev->fcr == FCR_RESOLVED;
	}
	if (ev->has_contact) {
		bool answered = ev->outcome == OUTCOME_ANSWERED;

		out->offered = 1;
		out->answered = answered;
		out->abandoned = ev->outcome == OUTCOME_ABANDONED;
		out->self_service = ev->outcome == OUTCOME_SELF_SERVICE;
		out->answered_within_sl = answered && ev->wait_seconds <= p->service_level_seconds;
		/* ASA and AHT divide by answered, so only answered contacts may add to their sums.
		 */
		if (answered) {
			out->wait_seconds_answered = ev->wait_seconds;
			out->handle_seconds = ev->handle_seconds;
		}
	}
	out->negative = kpi_negative_reasons(ev, p) != 0;
}

void kpi_counts_add(struct kpi_counts *dst, const struct kpi_counts *src)
{
	dst->csat_n += src->csat_n;
	dst->csat_satisfied += src->csat_satisfied;
	dst->csat_score_units += src->csat_score_units;
	dst->nps_n += src->nps_n;
	dst->nps_promoters += src->nps_promoters;
	dst->nps_passives += src->nps_passives;
	dst->nps_detractors += src->nps_detractors;
	dst->ces_n += src->ces_n;
	dst->ces_effort_sum += src->ces_effort_sum;
	dst->ces_high += src->ces_high;
	dst->ces_low += src->ces_low;
	dst->fcr_n += src->fcr_n;
	dst->fcr_yes += src->fcr_yes;
	dst->offered += src->offered;
	dst->answered += src->answered;
	dst->abandoned += src->abandoned;
	dst->self_service += src->self_service;
	dst->answered_within_sl += src->answered_within_sl;
	dst->wait_seconds_answered += src->wait_seconds_answered;
	dst->handle_seconds += src->handle_seconds;
	dst->negative += src->negative;
}

int64_t kpi_bucket(int64_t occurred_at_us)
{
	int64_t q = occurred_at_us / US_PER_BUCKET;

	/* C division truncates toward zero; a bucket starts at the floor. */
	if (occurred_at_us % US_PER_BUCKET < 0)
		q--;
	return q * KPI_BUCKET_SECONDS;
}
