/*
 * kpi.h - the counting rules of KPI.md: what one event adds to an aggregate.
 *
 * Every figure is an additive count or sum; rates are derived at read time.
 * Pure functions, no allocation.
 */
#ifndef FC_KPI_H
#define FC_KPI_H

#include "event.h"

#include <stdbool.h>
#include <stdint.h>

/* Width of a bucket: the 15-minute workforce-management interval. */
#define KPI_BUCKET_SECONDS 900

/*
 * Normalised CSAT scores (0-100) are summed in units of 1/KPI_CSAT_UNIT
 * point: 2520 is divisible by every scale width 1..10, so each normalised
 * score is an exact integer in these units.
 */
#define KPI_CSAT_UNIT 2520

/* Thresholds that are configuration (rules.*, sla.*). */
struct kpi_policy {
	uint32_t service_level_seconds; /* answered within T counts; default 90 */
	int csat_negative_k;            /* bottom-k-box; 0 = the scale's own k */
	int nps_detractor_max;          /* scores 0..this are negative; default 6 */
	int ces_high_min_7;             /* effort >= this is negative on 1-7; default 5 */
	int ces_high_min_5;             /* effort >= this is negative on 1-5; default 4 */
};

struct kpi_counts {
	int64_t csat_n, csat_satisfied, csat_score_units;
	int64_t nps_n, nps_promoters, nps_passives, nps_detractors;
	int64_t ces_n, ces_effort_sum, ces_high, ces_low;
	int64_t fcr_n, fcr_yes;
	int64_t offered, answered, abandoned, self_service, answered_within_sl;
	int64_t wait_seconds_answered, handle_seconds;
	int64_t negative; /* events with at least one negative rating */
};

enum nps_class { NPS_DETRACTOR, NPS_PASSIVE, NPS_PROMOTER };
enum ces_band { CES_LOW, CES_MODERATE, CES_HIGH };

/* Reasons an event is negative, as a bit set. */
#define KPI_NEG_CSAT 1u
#define KPI_NEG_NPS  2u
#define KPI_NEG_CES  4u

void kpi_policy_defaults(struct kpi_policy *p);

/* k of the top-/bottom-k-box for a CSAT scale of points = max - min + 1. */
int kpi_csat_k(int points);
bool kpi_csat_satisfied(const struct rating *r);
/* The normalised score 0-100 in units of 1/KPI_CSAT_UNIT. */
int64_t kpi_csat_units(const struct rating *r);

enum nps_class kpi_nps_class(int32_t score);

/* The effort of a CES rating: the score, or min + max - score when inverted. */
int32_t kpi_ces_effort(const struct rating *r);
/* KPI.md's band of an effort value on the rating's scale (1-5 or 1-7). */
enum ces_band kpi_ces_band(const struct rating *r);

/* The KPI_NEG_* bits of ev under policy p; 0 when ev is not negative. */
unsigned kpi_negative_reasons(const struct event *ev, const struct kpi_policy *p);

/* Sets *out to what ev adds to its aggregates (out is overwritten). */
void kpi_count_event(const struct event *ev, const struct kpi_policy *p, struct kpi_counts *out);

/* dst += src, field by field. */
void kpi_counts_add(struct kpi_counts *dst, const struct kpi_counts *src);

/* Start of the 15-minute UTC bucket holding t, in seconds since the epoch
 * (floor, also for instants before 1970). */
int64_t kpi_bucket(int64_t occurred_at_us);

#endif
