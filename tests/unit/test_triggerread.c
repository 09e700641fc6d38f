/*
 * The `triggers` subcommand's line for one RecoveryTrigger: every field in
 * order, and the ids of an event escaped when they are not plain, so that
 * no id can print a line that reads like a trigger of its own.
 */
#include "triggerread.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The line triggerread_format prints, malloc'd. */
static char *format(const char *key, const Feedback__V1__RecoveryTrigger *t)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	assert_non_null(f);
	triggerread_format(f, key, key ? strlen(key) : 0, t);
	fclose(f);
	return buf;
}

struct sample {
	Feedback__V1__RecoveryTrigger t;
	Feedback__V1__Rating csat;
	Feedback__V1__Rating *ratings[1];
	Feedback__V1__Reason reasons[2];
	Google__Protobuf__Timestamp occurred, detected, follow_up;
};

static void sample_init(struct sample *s)
{
	feedback__v1__recovery_trigger__init(&s->t);
	feedback__v1__rating__init(&s->csat);
	google__protobuf__timestamp__init(&s->occurred);
	google__protobuf__timestamp__init(&s->detected);
	google__protobuf__timestamp__init(&s->follow_up);
	s->csat.metric = FEEDBACK__V1__METRIC__METRIC_CSAT;
	s->csat.score = 1;
	s->csat.scale_min = 1;
	s->csat.scale_max = 5;
	s->ratings[0] = &s->csat;
	s->reasons[0] = FEEDBACK__V1__REASON__REASON_CSAT_LOW;
	s->reasons[1] = FEEDBACK__V1__REASON__REASON_REPEAT_NEGATIVE;
	s->occurred.seconds = 1767225600; /* 2026-01-01T00:00:00Z */
	s->detected.seconds = 1767225660;
	s->follow_up.seconds = 1767240060;
	s->t.trigger_id = "rt:ev-1";
	s->t.event_id = "ev-1";
	s->t.customer_id = "cust-9";
	s->t.agent_id = "agent-3";
	s->t.interaction_id = "call-77";
	s->t.channel = FEEDBACK__V1__CHANNEL__CHANNEL_PHONE;
	s->t.occurred_at = &s->occurred;
	s->t.detected_at = &s->detected;
	s->t.follow_up_by = &s->follow_up;
	s->t.n_negative_ratings = 1;
	s->t.negative_ratings = s->ratings;
	s->t.n_reasons = 2;
	s->t.reasons = s->reasons;
	s->t.severity = FEEDBACK__V1__SEVERITY__SEVERITY_CRITICAL;
	s->t.repeat_count = 2;
	s->t.suppressed_count = 1;
	s->t.locale = "fr-CA";
	s->t.comment = "said \"never\"\n";
}

static void test_plain_trigger(void **state)
{
	struct sample s;
	char *line;

	(void)state;
	sample_init(&s);
	line = format("cust-9", &s.t);
	assert_string_equal(
	    line,
	    "rt:ev-1 key=\"cust-9\" severity=critical reasons=csat_low,repeat_negative "
	    "ratings=csat:1/1-5 repeat=2 suppressed=1 event=ev-1 customer=cust-9 channel=phone "
	    "agent=agent-3 interaction=call-77 occurred=2026-01-01T00:00:00Z "
	    "detected=2026-01-01T00:01:00Z follow_up_by=2026-01-01T04:01:00Z locale=fr-CA "
	    "comment=\"said \\\"never\\\"\\x0a\"\n");
	free(line);
}

/* Valid ids (UTF-8, no NUL) may hold anything else: a newline, a space, an '='. */
static void test_ids_escaped(void **state)
{
	struct sample s;
	char *line;

	(void)state;
	sample_init(&s);
	s.t.trigger_id = "rt:e 1";
	s.t.event_id = "e 1";
	s.t.customer_id = "c1\nrt:x severity=normal";
	s.t.agent_id = "a=b";
	s.t.interaction_id = "caf\xc3\xa9";
	s.t.comment = "";
	s.t.locale = "";
	line = format(NULL, &s.t);
	assert_string_equal(
	    line, " trigger=\"rt:e 1\" key=\"\" severity=critical reasons=csat_low,repeat_negative "
	          "ratings=csat:1/1-5 repeat=2 suppressed=1 event=\"e 1\" "
	          "customer=\"c1\\x0art:x severity=normal\" channel=phone agent=\"a=b\" "
	          "interaction=\"caf\xc3\xa9\" occurred=2026-01-01T00:00:00Z "
	          "detected=2026-01-01T00:01:00Z follow_up_by=2026-01-01T04:01:00Z\n");
	/* One line: the only newline is the last byte. */
	assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
	free(line);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_trigger),
	    cmocka_unit_test(test_ids_escaped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
