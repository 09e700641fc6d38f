#include "trigger.h"

#include "feedback/v1/feedback.pb-c.h"
#include "kpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Google__Protobuf__Timestamp *timestamp_new(struct arena *a, int64_t us)
{
	Google__Protobuf__Timestamp *ts = arena_alloc(a, sizeof(*ts));

	if (ts == NULL)
		return NULL;
	google__protobuf__timestamp__init(ts);
	ts->seconds = us / 1000000;
	ts->nanos = (int32_t)(us % 1000000) * 1000;
	if (ts->nanos < 0) {
		ts->nanos += 1000000000;
		ts->seconds -= 1;
	}
	return ts;
}

static Feedback__V1__Rating *rating_new(struct arena *a, Feedback__V1__Metric metric,
                                        const struct rating *r)
{
	Feedback__V1__Rating *pr = arena_alloc(a, sizeof(*pr));

	if (pr == NULL)
		return NULL;
	feedback__v1__rating__init(pr);
	pr->metric = metric;
	pr->score = r->score;
	pr->scale_min = r->scale_min;
	pr->scale_max = r->scale_max;
	pr->inverted = r->inverted;
	return pr;
}

uint8_t *trigger_pack(const struct event *ev, const struct rules_decision *d, int64_t detected_us,
                      struct arena *a, size_t *len)
{
	Feedback__V1__RecoveryTrigger t = FEEDBACK__V1__RECOVERY_TRIGGER__INIT;
	Feedback__V1__Rating *ratings[3];
	Feedback__V1__Reason reasons[4];
	size_t id_len = strlen(TRIGGER_ID_PREFIX) + strlen(ev->event_id) + 1;
	char *id = arena_alloc(a, id_len);

	if (id == NULL)
		return NULL;
	snprintf(id, id_len, "%s%s", TRIGGER_ID_PREFIX, ev->event_id);
	t.trigger_id = id;
	t.event_id = (char *)ev->event_id;
	t.customer_id = (char *)ev->customer_id;
	t.agent_id = (char *)ev->agent_id;
	t.interaction_id = (char *)ev->interaction_id;
	t.channel = (Feedback__V1__Channel)ev->channel;
	t.occurred_at = timestamp_new(a, ev->occurred_at_us);
	t.detected_at = timestamp_new(a, detected_us);
	t.follow_up_by = timestamp_new(a, d->follow_up_by_us);
	if (!t.occurred_at || !t.detected_at || !t.follow_up_by)
		return NULL;

	if (d->reasons & KPI_NEG_CSAT) {
		ratings[t.n_negative_ratings] =
		    rating_new(a, FEEDBACK__V1__METRIC__METRIC_CSAT, &ev->csat);
		reasons[t.n_reasons++] = FEEDBACK__V1__REASON__REASON_CSAT_LOW;
		if (ratings[t.n_negative_ratings++] == NULL)
			return NULL;
	}
	if (d->reasons & KPI_NEG_NPS) {
		ratings[t.n_negative_ratings] =
		    rating_new(a, FEEDBACK__V1__METRIC__METRIC_NPS, &ev->nps);
		reasons[t.n_reasons++] = FEEDBACK__V1__REASON__REASON_NPS_DETRACTOR;
		if (ratings[t.n_negative_ratings++] == NULL)
			return NULL;
	}
	if (d->reasons & KPI_NEG_CES) {
		ratings[t.n_negative_ratings] =
		    rating_new(a, FEEDBACK__V1__METRIC__METRIC_CES, &ev->ces);
		reasons[t.n_reasons++] = FEEDBACK__V1__REASON__REASON_CES_HIGH_EFFORT;
		if (ratings[t.n_negative_ratings++] == NULL)
			return NULL;
	}
	if (d->reasons & RULES_REASON_REPEAT)
		reasons[t.n_reasons++] = FEEDBACK__V1__REASON__REASON_REPEAT_NEGATIVE;
	t.negative_ratings = ratings;
	t.reasons = reasons;
	t.severity = (Feedback__V1__Severity)d->severity;
	t.comment = (char *)ev->comment;
	t.locale = (char *)ev->locale;
	t.repeat_count = d->repeat_count;
	t.suppressed_count = d->suppressed_count;

	*len = feedback__v1__recovery_trigger__get_packed_size(&t);
	uint8_t *buf = arena_alloc(a, *len ? *len : 1);
	if (buf == NULL)
		return NULL;
	feedback__v1__recovery_trigger__pack(&t, buf);
	return buf;
}

uint8_t *trigger_without_comment(const uint8_t *payload, size_t len, size_t *out_len)
{
	Feedback__V1__RecoveryTrigger *t =
	    feedback__v1__recovery_trigger__unpack(NULL, len, payload);
	uint8_t *buf = NULL;

	if (t == NULL)
		return NULL;
	if (t->comment != NULL && t->comment[0] != '\0') {
		/* The string belongs to the unpacked message: free_unpacked frees it. */
		char *comment = t->comment;

		t->comment = (char *)protobuf_c_empty_string;
		t->comment_left_out = true;
		*out_len = feedback__v1__recovery_trigger__get_packed_size(t);
		buf = malloc(*out_len ? *out_len : 1);
		if (buf != NULL)
			feedback__v1__recovery_trigger__pack(t, buf);
		t->comment = comment;
	}
	feedback__v1__recovery_trigger__free_unpacked(t, NULL);
	return buf;
}
