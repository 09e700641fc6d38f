/*
 * rules.h - the service-recovery policy: what a negative event triggers.
 *
 * Pure functions over one customer's recovery state, which the caller
 * loads from and stores to PostgreSQL in the transaction of the event, so
 * that every replica sees the same history. Times are microseconds since
 * the epoch; the repeat window and the cooldown compare occurred_at times,
 * so a replayed backlog is judged as it happened, not as it is read.
 */
#ifndef FC_RULES_H
#define FC_RULES_H

#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum severity {
	SEVERITY_NORMAL = 1,
	SEVERITY_HIGH = 2,
	SEVERITY_CRITICAL = 3,
};

/*
 * The most negatives a customer's state keeps: the newest ones. A shared
 * id ("anonymous", "guest") gathers thousands in a window, and each batch
 * that touches it would read, rewrite and hold locked all of them; a
 * repeat needs two. repeat_count counts up to this many earlier ones.
 */
#define RULES_KEEP_NEGATIVES 64

/* Reason bits beyond KPI_NEG_CSAT, KPI_NEG_NPS and KPI_NEG_CES of kpi.h. */
#define RULES_REASON_REPEAT 8u

struct rules_policy {
	int critical_nps_max;      /* NPS 0..this is critical; default 3, -1 = never */
	bool critical_csat_lowest; /* the lowest score of its CSAT scale is critical */
	bool high_on_comment;      /* a comment makes it high; default true */
	bool high_on_repeat;       /* a repeat negative makes it high; default true */
	int64_t repeat_window_us;  /* default 30 days */
	int64_t cooldown_us;       /* at most one trigger per customer per this; default 24 h */
	int64_t follow_up_us[SEVERITY_CRITICAL + 1]; /* by severity: 48 h, 24 h, 4 h */
};

/*
 * One customer's recovery state. negatives_us holds the occurred_at of the
 * customer's earlier negative events within the repeat window, ascending,
 * the newest RULES_KEEP_NEGATIVES of them; the array belongs to the caller
 * (rules_state_release frees it).
 */
struct rules_state {
	int64_t *negatives_us;
	size_t n_negatives, cap_negatives;
	bool has_trigger;
	int64_t last_trigger_us; /* the latest occurred_at of a triggering event */
	uint32_t suppressed;     /* negatives suppressed since that trigger */
};

struct rules_decision {
	bool trigger;              /* false: suppressed by the cooldown */
	unsigned reasons;          /* KPI_NEG_* and RULES_REASON_REPEAT */
	uint32_t repeat_count;     /* negatives within the window, this one included */
	uint32_t suppressed_count; /* suppressed since the last trigger (when trigger) */
	enum severity severity;
	int64_t follow_up_by_us; /* detected_us + the follow-up target of severity */
};

void rules_policy_defaults(struct rules_policy *p);

/*
 * Decides what the new negative event ev (KPI_NEG_* bits neg, non-zero)
 * triggers, detected at detected_us, and updates st: the event joins the
 * customer's negatives (those outside the window around it are dropped, and
 * the oldest beyond RULES_KEEP_NEGATIVES),
 * and the cooldown state moves. Returns 0, or -1 when out of memory (st
 * is then unchanged).
 */
int rules_evaluate(const struct rules_policy *p, const struct event *ev, unsigned neg,
                   int64_t detected_us, struct rules_state *st, struct rules_decision *out);

void rules_state_release(struct rules_state *st);

#endif
