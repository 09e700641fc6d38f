#include "rules.h"

#include "kpi.h"

#include <stdlib.h>
#include <string.h>

#define HOUR_US (3600LL * 1000000)

void rules_policy_defaults(struct rules_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->critical_nps_max = 3;
	p->critical_csat_lowest = true;
	p->high_on_comment = true;
	p->high_on_repeat = true;
	p->repeat_window_us = 30 * 24 * HOUR_US;
	p->cooldown_us = 24 * HOUR_US;
	p->follow_up_us[SEVERITY_CRITICAL] = 4 * HOUR_US;
	p->follow_up_us[SEVERITY_HIGH] = 24 * HOUR_US;
	p->follow_up_us[SEVERITY_NORMAL] = 48 * HOUR_US;
}

static int64_t distance(int64_t a, int64_t b)
{
	return a > b ? a - b : b - a;
}

int rules_evaluate(const struct rules_policy *p, const struct event *ev, unsigned neg,
                   int64_t detected_us, struct rules_state *st, struct rules_decision *out)
{
	int64_t t = ev->occurred_at_us;

	/* Room for t first: on failure nothing has changed. */
	if (st->n_negatives == st->cap_negatives) {
		size_t cap = st->cap_negatives ? 2 * st->cap_negatives : 8;
		int64_t *v = realloc(st->negatives_us, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		st->negatives_us = v;
		st->cap_negatives = cap;
	}

	memset(out, 0, sizeof(*out));
	out->reasons = neg;
	out->repeat_count = 1;
	for (size_t i = 0; i < st->n_negatives; i++)
		if (distance(t, st->negatives_us[i]) <= p->repeat_window_us)
			out->repeat_count++;
	if (out->repeat_count >= 2)
		out->reasons |= RULES_REASON_REPEAT;

	if ((neg & KPI_NEG_NPS) && ev->nps.present && ev->nps.score <= p->critical_nps_max)
		out->severity = SEVERITY_CRITICAL;
	else if (p->critical_csat_lowest && (neg & KPI_NEG_CSAT) && ev->csat.present &&
	         ev->csat.score == ev->csat.scale_min)
		out->severity = SEVERITY_CRITICAL;
	else if ((p->high_on_comment && ev->comment && ev->comment[0]) ||
	         (p->high_on_repeat && out->repeat_count >= 2))
		out->severity = SEVERITY_HIGH;
	else
		out->severity = SEVERITY_NORMAL;
	out->follow_up_by_us = detected_us + p->follow_up_us[out->severity];

	if (st->has_trigger && distance(t, st->last_trigger_us) < p->cooldown_us) {
		out->trigger = false;
		st->suppressed++;
	} else {
		out->trigger = true;
		out->suppressed_count = st->suppressed;
		st->suppressed = 0;
		/* A late event must not move the cooldown back in time. */
		if (!st->has_trigger || t > st->last_trigger_us)
			st->last_trigger_us = t;
		st->has_trigger = true;
	}

	/* Insert t in order, then forget what the window no longer reaches. */
	size_t at = st->n_negatives;
	while (at > 0 && st->negatives_us[at - 1] > t)
		at--;
	memmove(st->negatives_us + at + 1, st->negatives_us + at,
	        (st->n_negatives - at) * sizeof(int64_t));
	st->negatives_us[at] = t;
	st->n_negatives++;
	int64_t newest = st->negatives_us[st->n_negatives - 1];
	size_t drop = 0;
	while (drop < st->n_negatives && st->negatives_us[drop] < newest - p->repeat_window_us)
		drop++;
	if (st->n_negatives - drop > RULES_KEEP_NEGATIVES)
		drop = st->n_negatives - RULES_KEEP_NEGATIVES;
	memmove(st->negatives_us, st->negatives_us + drop,
	        (st->n_negatives - drop) * sizeof(int64_t));
	st->n_negatives -= drop;
	return 0;
}

void rules_state_release(struct rules_state *st)
{
	free(st->negatives_us);
	memset(st, 0, sizeof(*st));
}
