#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch.h"

#define US 1000000LL

/* 2026-03-29T00:00:00Z: 20541 days after 1970-01-01, 20541 * 86400 s. */
#define B0 1774742400LL
#define B1 (B0 + 900)

static struct kpi_policy policy;

static int setup(void **state)
{
	(void)state;
	kpi_policy_defaults(&policy);
	return 0;
}

static struct rating rating(int32_t score, int32_t min, int32_t max)
{
	return (struct rating){.present = true, .score = score, .scale_min = min, .scale_max = max};
}

static struct event event_make(const char *id, int64_t at_us, enum channel ch, const char *agent)
{
	return (struct event){
	    .event_id = id,
	    .customer_id = "c-1",
	    .agent_id = agent,
	    .interaction_id = "",
	    .comment = "",
	    .locale = "",
	    .occurred_at_us = at_us,
	    .channel = ch,
	};
}

static struct event event_csat(const char *id, int64_t at_us, enum channel ch, const char *agent,
                               int32_t score)
{
	struct event ev = event_make(id, at_us, ch, agent);

	ev.csat = rating(score, 1, 5);
	return ev;
}

static void assert_counts_equal(const struct kpi_counts *got, const struct kpi_counts *want)
{
	assert_int_equal(got->csat_n, want->csat_n);
	assert_int_equal(got->csat_satisfied, want->csat_satisfied);
	assert_int_equal(got->csat_score_units, want->csat_score_units);
	assert_int_equal(got->nps_n, want->nps_n);
	assert_int_equal(got->nps_promoters, want->nps_promoters);
	assert_int_equal(got->nps_passives, want->nps_passives);
	assert_int_equal(got->nps_detractors, want->nps_detractors);
	assert_int_equal(got->ces_n, want->ces_n);
	assert_int_equal(got->ces_effort_sum, want->ces_effort_sum);
	assert_int_equal(got->ces_high, want->ces_high);
	assert_int_equal(got->ces_low, want->ces_low);
	assert_int_equal(got->fcr_n, want->fcr_n);
	assert_int_equal(got->fcr_yes, want->fcr_yes);
	assert_int_equal(got->offered, want->offered);
	assert_int_equal(got->answered, want->answered);
	assert_int_equal(got->abandoned, want->abandoned);
	assert_int_equal(got->self_service, want->self_service);
	assert_int_equal(got->answered_within_sl, want->answered_within_sl);
	assert_int_equal(got->wait_seconds_answered, want->wait_seconds_answered);
	assert_int_equal(got->handle_seconds, want->handle_seconds);
	assert_int_equal(got->negative, want->negative);
}

static void assert_row(const struct agg_row *row, int64_t bucket, enum channel ch,
                       const char *agent, const struct kpi_counts *want)
{
	assert_int_equal(row->bucket, bucket);
	assert_int_equal(row->channel, ch);
	if (agent)
		assert_string_equal(row->agent_id, agent);
	else
		assert_null(row->agent_id);
	assert_counts_equal(&row->counts, want);
}

static void mark_all_new(struct batch *b)
{
	for (size_t i = 0; i < b->n_events; i++)
		b->events[i].is_new = true;
}

static void test_new_full_reset(void **state)
{
	struct batch *b = batch_new(3);
	struct event ev = event_csat("e-1", B0 * US, CHANNEL_SMS, "", 5);

	(void)state;
	assert_non_null(b);
	assert_int_equal(b->cap_msgs, 3);
	assert_int_equal(b->n_msgs, 0);
	assert_false(batch_full(b));

	assert_int_equal(batch_add(b, 0, 0, 0, NULL, &policy), 0);
	assert_int_equal(batch_add(b, 0, 0, 1, &ev, &policy), 0);
	assert_false(batch_full(b));
	assert_int_equal(batch_add(b, 0, 0, 2, NULL, &policy), 0);
	assert_true(batch_full(b));

	/* No room: refused, and nothing changes. */
	ev.event_id = "e-2";
	assert_int_equal(batch_add(b, 0, 0, 3, &ev, &policy), -1);
	assert_int_equal(b->n_msgs, 3);
	assert_int_equal(b->n_events, 1);

	batch_reset(b);
	assert_int_equal(b->n_msgs, 0);
	assert_int_equal(b->n_events, 0);
	assert_false(batch_full(b));
	assert_int_equal(batch_add(b, 0, 0, 3, &ev, &policy), 0);
	assert_int_equal(b->msgs[0].event, 0);
	batch_destroy(b);

	/* A batch of no messages is full from the start. */
	b = batch_new(0);
	assert_non_null(b);
	assert_true(batch_full(b));
	assert_int_equal(batch_add(b, 0, 0, 0, NULL, &policy), -1);
	batch_destroy(b);

	batch_destroy(NULL);
}

static void test_add_records_event(void **state)
{
	struct batch *b = batch_new(8);
	/* 00:07:30.5 on B0's day, phone, CSAT 2 of 1-5: 25 points, bottom-2-box. */
	char id[] = "e-1", agent[] = "a1";
	struct event ev = event_csat(id, B0 * US + 450 * US + 500000, CHANNEL_PHONE, agent, 2);
	char same_id[] = "e-1";
	struct event repeat = event_csat(same_id, B1 * US, CHANNEL_SMS, "a2", 5);
	const struct batch_event *be;

	(void)state;
	ev.has_contact = true;
	ev.outcome = OUTCOME_ANSWERED;
	ev.wait_seconds = 10;
	ev.handle_seconds = 50;

	assert_int_equal(batch_add(b, 2, 5, 42, &ev, &policy), 0);
	assert_int_equal(b->n_msgs, 1);
	assert_int_equal(b->n_events, 1);
	assert_int_equal(b->msgs[0].topic, 2);
	assert_int_equal(b->msgs[0].partition, 5);
	assert_int_equal(b->msgs[0].offset, 42);
	assert_int_equal(b->msgs[0].event, 0);
	assert_int_equal(b->msgs[0].repeat_of, -1);

	/* The batch keeps copies: the decoded message goes before the commit. */
	memset(id, 'x', sizeof(id) - 1);
	memset(agent, 'x', sizeof(agent) - 1);
	be = &b->events[0];
	assert_string_equal(be->ev.event_id, "e-1");
	assert_string_equal(be->ev.agent_id, "a1");
	assert_int_equal(be->ev.channel, CHANNEL_PHONE);
	assert_int_equal(be->ev.occurred_at_us, B0 * US + 450 * US + 500000);
	assert_int_equal(be->bucket, B0);
	assert_int_equal(be->negative_reasons, KPI_NEG_CSAT);
	assert_false(be->is_new);
	assert_counts_equal(&be->counts, &(struct kpi_counts){.csat_n = 1,
	                                                      .csat_score_units = 63000,
	                                                      .offered = 1,
	                                                      .answered = 1,
	                                                      .answered_within_sl = 1,
	                                                      .wait_seconds_answered = 10,
	                                                      .handle_seconds = 50,
	                                                      .negative = 1});

	/* Dead-lettered: a message without an event. */
	assert_int_equal(batch_add(b, 2, 5, 43, NULL, &policy), 0);
	assert_int_equal(b->msgs[1].event, -1);
	assert_int_equal(b->msgs[1].repeat_of, -1);
	assert_int_equal(b->n_events, 1);

	/* The same id in other memory, with other content: a repeat, counted once. */
	assert_int_equal(batch_add(b, 2, 6, 7, &repeat, &policy), 0);
	assert_int_equal(b->n_msgs, 3);
	assert_int_equal(b->msgs[2].event, -1);
	assert_int_equal(b->msgs[2].repeat_of, 0); /* of event 0, message 0's */
	assert_int_equal(b->msgs[2].partition, 6);
	assert_int_equal(b->msgs[2].offset, 7);
	assert_int_equal(b->n_events, 1);

	/* A new id; under csat_negative_k 1 a 2 of 1-5 is no longer negative. */
	struct kpi_policy lenient = policy;

	lenient.csat_negative_k = 1;
	ev.event_id = "e-2";
	assert_int_equal(batch_add(b, 2, 5, 44, &ev, &lenient), 0);
	assert_int_equal(b->msgs[3].event, 1);
	assert_int_equal(b->msgs[3].repeat_of, -1);
	/* A repeat of e-2 names event 1, not 0. */
	assert_int_equal(batch_add(b, 2, 6, 8, &ev, &lenient), 0);
	assert_int_equal(b->msgs[4].event, -1);
	assert_int_equal(b->msgs[4].repeat_of, 1);
	assert_int_equal(b->events[1].negative_reasons, 0);
	assert_int_equal(b->events[1].counts.negative, 0);

	/* An instant before 1970 falls in the bucket that starts before it. */
	ev = event_make("e-3", -1, CHANNEL_SMS, "");
	ev.nps = rating(9, 0, 10);
	assert_int_equal(batch_add(b, 2, 5, 45, &ev, &policy), 0);
	assert_int_equal((int64_t)b->events[2].bucket, -900);
	batch_destroy(b);
}

static void test_repeat_forgotten_after_reset(void **state)
{
	struct batch *b = batch_new(4);
	struct event ev = event_csat("e-1", B0 * US, CHANNEL_SMS, "", 5);

	(void)state;
	assert_int_equal(batch_add(b, 0, 0, 0, &ev, &policy), 0);
	assert_int_equal(batch_add(b, 0, 0, 1, &ev, &policy), 0);
	assert_int_equal(b->msgs[1].event, -1);
	batch_reset(b);
	assert_int_equal(batch_add(b, 0, 0, 2, &ev, &policy), 0);
	assert_int_equal(b->msgs[0].event, 0);
	assert_int_equal(b->n_events, 1);
	batch_destroy(b);
}

static void assert_update(const struct offset_update *u, int topic, int32_t partition, int64_t next)
{
	assert_int_equal(u->topic, topic);
	assert_int_equal(u->partition, partition);
	assert_int_equal(u->next, next);
	assert_int_equal((int64_t)u->expected, -1);
}

static void test_offsets_interleaved(void **state)
{
	static const struct {
		int topic;
		int32_t partition;
		int64_t offset;
	} in[] = {
	    {1, 0, 10},  /* 0 */
	    {0, 2, 5},   /* 1 */
	    {1, 0, 11},  /* 2 */
	    {0, 2, 6},   /* 3 */
	    {0, 1, 100}, /* 4 */
	    {1, 1, 7},   /* 5 */
	    {0, 2, 4},   /* 6: lower than 6, so topic 0 partition 2 still ends at 6 */
	    {1, 0, 12},  /* 7 */
	};
	struct batch *b = batch_new(16);
	struct offset_update out[16];
	struct event ev = event_csat("e-1", B0 * US, CHANNEL_SMS, "", 5);

	(void)state;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		/* Offsets advance whether or not the message carried an event. */
		const struct event *e = i == 3 ? &ev : NULL;

		assert_int_equal(
		    batch_add(b, in[i].topic, in[i].partition, in[i].offset, e, &policy), 0);
	}

	assert_int_equal(batch_offset_updates(b, 0, 8, out), 4);
	assert_update(&out[0], 0, 1, 101);
	assert_update(&out[1], 0, 2, 7);
	assert_update(&out[2], 1, 0, 13);
	assert_update(&out[3], 1, 1, 8);

	/* Messages 2, 3, 4. */
	assert_int_equal(batch_offset_updates(b, 2, 5, out), 3);
	assert_update(&out[0], 0, 1, 101);
	assert_update(&out[1], 0, 2, 7);
	assert_update(&out[2], 1, 0, 12);

	/* Messages 6, 7: the range decides, not the batch's maximum. */
	assert_int_equal(batch_offset_updates(b, 6, 8, out), 2);
	assert_update(&out[0], 0, 2, 5);
	assert_update(&out[1], 1, 0, 13);

	assert_int_equal(batch_offset_updates(b, 0, 1, out), 1);
	assert_update(&out[0], 1, 0, 11);

	assert_int_equal(batch_offset_updates(b, 3, 3, out), 0);
	assert_int_equal(batch_offset_updates(b, 5, 4, out), 0);
	batch_destroy(b);
}

static void test_offsets_take_max(void **state)
{
	struct batch *b = batch_new(4);
	struct offset_update out[4];

	(void)state;
	/* Neighbours of one partition, highest offset first: next is 9 + 1, not 7 + 1. */
	assert_int_equal(batch_add(b, 0, 3, 9, NULL, &policy), 0);
	assert_int_equal(batch_add(b, 0, 3, 8, NULL, &policy), 0);
	assert_int_equal(batch_add(b, 0, 3, 7, NULL, &policy), 0);
	assert_int_equal(batch_offset_updates(b, 0, b->n_msgs, out), 1);
	assert_update(&out[0], 0, 3, 10);
	batch_destroy(b);
}

static void test_offsets_many_partitions(void **state)
{
	enum { PARTITIONS = 300, ROUNDS = 10, N = PARTITIONS * ROUNDS };
	struct batch *b = batch_new(N);
	struct offset_update *out = calloc(N, sizeof(*out));
	size_t n;

	(void)state;
	assert_non_null(b);
	assert_non_null(out);
	/* Round-robin over partitions from the highest down; partition p is on topic p % 3. */
	for (int r = 0; r < ROUNDS; r++)
		for (int p = PARTITIONS - 1; p >= 0; p--)
			assert_int_equal(batch_add(b, p % 3, p, 1000LL * p + r, NULL, &policy), 0);
	assert_true(batch_full(b));

	n = batch_offset_updates(b, 0, b->n_msgs, out);
	assert_int_equal(n, PARTITIONS);
	/* Topic t holds partitions t, t + 3, ..., t + 297; each ended at 1000 p + 9. */
	for (int t = 0; t < 3; t++) {
		for (int k = 0; k < PARTITIONS / 3; k++) {
			int p = 3 * k + t;

			assert_update(&out[t * (PARTITIONS / 3) + k], t, p, 1000LL * p + 10);
		}
	}
	free(out);
	batch_destroy(b);
}

/*
 * The fixture of the combine tests, by message index:
 *   0 e4  B1 + 60 s      sms    a9   CSAT 4 (189000, satisfied)
 *   1 e1  B0             sms    a9   CSAT 5 (252000, satisfied)
 *   2 e3  B0 + 899.999999 email a9   NPS 9 (promoter)
 *   3 -   dead-lettered
 *   4 e2  B0 + 300 s     sms    a10  CSAT 2 (63000, negative)
 *   5 e1  repeat of message 1 with other content: ignored
 *   6 e5  B0 + 120 s     sms    a9   NPS 3 (detractor, negative), answered, wait 30, handle 100
 *   7 e6  B0 + 600 s     sms    ""   CSAT 3 (126000)
 *   8 e7  B0 + 700 s     phone  a10  abandoned after 50 s
 *   9 e8  B0 + 10 s      sms    a9   CSAT 1, not new (the ledger had it)
 */
static struct batch *combine_fixture(void)
{
	struct batch *b = batch_new(16);
	struct event ev[10];

	assert_non_null(b);
	ev[0] = event_csat("e4", (B1 + 60) * US, CHANNEL_SMS, "a9", 4);
	ev[1] = event_csat("e1", B0 * US, CHANNEL_SMS, "a9", 5);
	ev[2] = event_make("e3", (B0 + 900) * US - 1, CHANNEL_EMAIL, "a9");
	ev[2].nps = rating(9, 0, 10);
	ev[4] = event_csat("e2", (B0 + 300) * US, CHANNEL_SMS, "a10", 2);
	ev[5] = event_csat("e1", (B0 + 5) * US, CHANNEL_EMAIL, "a9", 1);
	ev[6] = event_make("e5", (B0 + 120) * US, CHANNEL_SMS, "a9");
	ev[6].nps = rating(3, 0, 10);
	ev[6].has_contact = true;
	ev[6].outcome = OUTCOME_ANSWERED;
	ev[6].wait_seconds = 30;
	ev[6].handle_seconds = 100;
	ev[7] = event_csat("e6", (B0 + 600) * US, CHANNEL_SMS, "", 3);
	ev[8] = event_make("e7", (B0 + 700) * US, CHANNEL_PHONE, "a10");
	ev[8].has_contact = true;
	ev[8].outcome = OUTCOME_ABANDONED;
	ev[8].wait_seconds = 50;
	ev[9] = event_csat("e8", (B0 + 10) * US, CHANNEL_SMS, "a9", 1);

	for (int i = 0; i < 10; i++)
		assert_int_equal(batch_add(b, 0, i % 3, i, i == 3 ? NULL : &ev[i], &policy), 0);
	assert_int_equal(b->n_events, 8);
	for (size_t i = 0; i < b->n_events; i++)
		b->events[i].is_new = strcmp(b->events[i].ev.event_id, "e8") != 0;
	return b;
}

/*
 * A transaction retried (deadlock, lost connection) combines its batch
 * again: into the caller's arena, reset each time, never the batch's,
 * which would grow by the batch's rows with every attempt.
 */
static void test_combine_again_uses_no_more(void **state)
{
	struct batch *b = combine_fixture();
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0, used = 0;
	struct arena a;

	(void)state;
	arena_init(&a, 0);
	size_t batch_used = b->arena.used;
	for (int attempt = 0; attempt < 100; attempt++) {
		arena_reset(&a);
		assert_int_equal(batch_combine(b, &a, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag), 0);
		assert_int_equal(n_ch, 4);
		if (attempt == 0)
			used = a.used;
		assert_int_equal(a.used, used);
	}
	assert_true(used > 0);
	assert_int_equal(b->arena.used, batch_used);
	arena_release(&a);
	batch_destroy(b);
}

static void test_combine(void **state)
{
	struct batch *b = combine_fixture();
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0;

	(void)state;
	assert_int_equal(batch_combine(b, &b->arena, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag), 0);

	/* Channel rows by (bucket, channel); sms 1 < email 2 < phone 3. */
	assert_int_equal(n_ch, 4);
	/* e1 + e2 + e5 + e6: CSAT 252000 + 63000 + 126000; negative e2 and e5. */
	assert_row(&ch[0], B0, CHANNEL_SMS, NULL,
	           &(struct kpi_counts){.csat_n = 3,
	                                .csat_satisfied = 1,
	                                .csat_score_units = 441000,
	                                .nps_n = 1,
	                                .nps_detractors = 1,
	                                .offered = 1,
	                                .answered = 1,
	                                .answered_within_sl = 1,
	                                .wait_seconds_answered = 30,
	                                .handle_seconds = 100,
	                                .negative = 2});
	assert_row(&ch[1], B0, CHANNEL_EMAIL, NULL,
	           &(struct kpi_counts){.nps_n = 1, .nps_promoters = 1});
	assert_row(&ch[2], B0, CHANNEL_PHONE, NULL,
	           &(struct kpi_counts){.offered = 1, .abandoned = 1});
	assert_row(
	    &ch[3], B1, CHANNEL_SMS, NULL,
	    &(struct kpi_counts){.csat_n = 1, .csat_satisfied = 1, .csat_score_units = 189000});

	/* Agent rows by (bucket, agent, channel); "a10" < "a9" byte by byte. e6 has no agent. */
	assert_int_equal(n_ag, 5);
	assert_row(&ag[0], B0, CHANNEL_SMS, "a10",
	           &(struct kpi_counts){.csat_n = 1, .csat_score_units = 63000, .negative = 1});
	assert_row(&ag[1], B0, CHANNEL_PHONE, "a10",
	           &(struct kpi_counts){.offered = 1, .abandoned = 1});
	/* e1 + e5. */
	assert_row(&ag[2], B0, CHANNEL_SMS, "a9",
	           &(struct kpi_counts){.csat_n = 1,
	                                .csat_satisfied = 1,
	                                .csat_score_units = 252000,
	                                .nps_n = 1,
	                                .nps_detractors = 1,
	                                .offered = 1,
	                                .answered = 1,
	                                .answered_within_sl = 1,
	                                .wait_seconds_answered = 30,
	                                .handle_seconds = 100,
	                                .negative = 1});
	assert_row(&ag[3], B0, CHANNEL_EMAIL, "a9",
	           &(struct kpi_counts){.nps_n = 1, .nps_promoters = 1});
	assert_row(
	    &ag[4], B1, CHANNEL_SMS, "a9",
	    &(struct kpi_counts){.csat_n = 1, .csat_satisfied = 1, .csat_score_units = 189000});
	batch_destroy(b);
}

static void test_combine_range(void **state)
{
	struct batch *b = combine_fixture();
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0;

	(void)state;
	/* Messages 4-8: e2, the repeat, e5, e6, e7. */
	assert_int_equal(batch_combine(b, &b->arena, 4, 9, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 2);
	/* e2 + e5 + e6: CSAT 63000 + 126000. */
	assert_row(&ch[0], B0, CHANNEL_SMS, NULL,
	           &(struct kpi_counts){.csat_n = 2,
	                                .csat_score_units = 189000,
	                                .nps_n = 1,
	                                .nps_detractors = 1,
	                                .offered = 1,
	                                .answered = 1,
	                                .answered_within_sl = 1,
	                                .wait_seconds_answered = 30,
	                                .handle_seconds = 100,
	                                .negative = 2});
	assert_row(&ch[1], B0, CHANNEL_PHONE, NULL,
	           &(struct kpi_counts){.offered = 1, .abandoned = 1});
	assert_int_equal(n_ag, 3);
	assert_row(&ag[0], B0, CHANNEL_SMS, "a10",
	           &(struct kpi_counts){.csat_n = 1, .csat_score_units = 63000, .negative = 1});
	assert_row(&ag[1], B0, CHANNEL_PHONE, "a10",
	           &(struct kpi_counts){.offered = 1, .abandoned = 1});
	assert_row(&ag[2], B0, CHANNEL_SMS, "a9",
	           &(struct kpi_counts){.nps_n = 1,
	                                .nps_detractors = 1,
	                                .offered = 1,
	                                .answered = 1,
	                                .answered_within_sl = 1,
	                                .wait_seconds_answered = 30,
	                                .handle_seconds = 100,
	                                .negative = 1});

	/* Message 9 alone is e8, which is not new; message 3 is dead-lettered. */
	assert_int_equal(batch_combine(b, &b->arena, 9, 10, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 0);
	assert_int_equal(n_ag, 0);
	assert_null(ch);
	assert_null(ag);
	assert_int_equal(batch_combine(b, &b->arena, 3, 4, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 0);
	assert_int_equal(n_ag, 0);
	assert_int_equal(batch_combine(b, &b->arena, 5, 5, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 0);
	assert_int_equal(n_ag, 0);
	batch_destroy(b);
}

static void test_combine_nothing_new(void **state)
{
	struct batch *b = combine_fixture();
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 1, n_ag = 1;

	(void)state;
	for (size_t i = 0; i < b->n_events; i++)
		b->events[i].is_new = false;
	assert_int_equal(batch_combine(b, &b->arena, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 0);
	assert_int_equal(n_ag, 0);
	assert_null(ch);
	assert_null(ag);
	batch_destroy(b);
}

static void test_combine_key_order(void **state)
{
	/*
	 * Inserted out of order. strcmp orders bytes: "Z" 0x5a < "a" 0x61,
	 * "a1" < "a10" (prefix) < "a9", and UTF-8 "é" (0xc3 0xa9) after all
	 * of ASCII. The bucket comes first: "a" in B1 follows "é" in B0.
	 */
	static const struct {
		const char *id, *agent;
		int64_t bucket;
		enum channel ch;
	} in[] = {
	    {"k1", "a9", B0, CHANNEL_SMS},    {"k2", "\xc3\xa9", B0, CHANNEL_SMS},
	    {"k3", "a", B1, CHANNEL_SMS},     {"k4", "a10", B0, CHANNEL_SOCIAL},
	    {"k5", "Z", B0, CHANNEL_SMS},     {"k6", "a10", B0, CHANNEL_SMS},
	    {"k7", "a", B0, CHANNEL_PHONE},   {"k8", "a1", B0, CHANNEL_EMAIL},
	    {"k9", "a10", B0, CHANNEL_EMAIL}, {"k10", "a", B0, CHANNEL_SOCIAL},
	};
	static const struct {
		int64_t bucket;
		const char *agent;
		enum channel ch;
	} want[] = {
	    {B0, "Z", CHANNEL_SMS},      {B0, "a", CHANNEL_PHONE}, {B0, "a", CHANNEL_SOCIAL},
	    {B0, "a1", CHANNEL_EMAIL},   {B0, "a10", CHANNEL_SMS}, {B0, "a10", CHANNEL_EMAIL},
	    {B0, "a10", CHANNEL_SOCIAL}, {B0, "a9", CHANNEL_SMS},  {B0, "\xc3\xa9", CHANNEL_SMS},
	    {B1, "a", CHANNEL_SMS},
	};
	struct batch *b = batch_new(16);
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct event ev = event_csat(in[i].id, in[i].bucket * US, in[i].ch, in[i].agent, 5);

		assert_int_equal(batch_add(b, 0, 0, (int64_t)i, &ev, &policy), 0);
	}
	mark_all_new(b);
	assert_int_equal(batch_combine(b, &b->arena, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag), 0);

	assert_int_equal(n_ag, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n_ag; i++) {
		assert_row(&ag[i], want[i].bucket, want[i].ch, want[i].agent,
		           &(struct kpi_counts){
		               .csat_n = 1, .csat_satisfied = 1, .csat_score_units = 252000});
	}

	/* Channel rows: B0 sms (k1 k2 k5 k6), email (k8 k9), phone (k7), social (k4 k10); B1 sms.
	 */
	assert_int_equal(n_ch, 5);
	assert_row(
	    &ch[0], B0, CHANNEL_SMS, NULL,
	    &(struct kpi_counts){.csat_n = 4, .csat_satisfied = 4, .csat_score_units = 4 * 252000});
	assert_row(
	    &ch[1], B0, CHANNEL_EMAIL, NULL,
	    &(struct kpi_counts){.csat_n = 2, .csat_satisfied = 2, .csat_score_units = 2 * 252000});
	assert_row(
	    &ch[2], B0, CHANNEL_PHONE, NULL,
	    &(struct kpi_counts){.csat_n = 1, .csat_satisfied = 1, .csat_score_units = 252000});
	assert_row(
	    &ch[3], B0, CHANNEL_SOCIAL, NULL,
	    &(struct kpi_counts){.csat_n = 2, .csat_satisfied = 2, .csat_score_units = 2 * 252000});
	assert_row(
	    &ch[4], B1, CHANNEL_SMS, NULL,
	    &(struct kpi_counts){.csat_n = 1, .csat_satisfied = 1, .csat_score_units = 252000});
	batch_destroy(b);
}

static void test_reset_then_reuse(void **state)
{
	struct batch *b = batch_new(4);
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0;
	struct event ev;
	char *id;

	(void)state;
	/* Ids copied into the arena, as the decoder does. */
	id = arena_strndup(&b->arena, "e-1", 3);
	assert_non_null(id);
	ev = event_csat(id, B0 * US, CHANNEL_SMS, "a1", 5);
	assert_int_equal(batch_add(b, 0, 0, 0, &ev, &policy), 0);
	mark_all_new(b);
	assert_int_equal(batch_combine(b, &b->arena, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 1);

	batch_reset(b);
	id = arena_strndup(&b->arena, "e-1", 3);
	assert_non_null(id);
	/* Same id, new batch: counted again, with this event's content only (CSAT 1 = 0 units). */
	ev = event_csat(id, B1 * US, CHANNEL_EMAIL, "a2", 1);
	assert_int_equal(batch_add(b, 0, 0, 1, &ev, &policy), 0);
	assert_int_equal(b->msgs[0].event, 0);
	mark_all_new(b);
	assert_int_equal(batch_combine(b, &b->arena, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag), 0);
	assert_int_equal(n_ch, 1);
	assert_row(&ch[0], B1, CHANNEL_EMAIL, NULL,
	           &(struct kpi_counts){.csat_n = 1, .negative = 1});
	assert_int_equal(n_ag, 1);
	assert_row(&ag[0], B1, CHANNEL_EMAIL, "a2",
	           &(struct kpi_counts){.csat_n = 1, .negative = 1});
	batch_destroy(b);
}

static int agent_row_cmp(const struct agg_row *a, const struct agg_row *b)
{
	int c;

	if (a->bucket != b->bucket)
		return a->bucket < b->bucket ? -1 : 1;
	c = strcmp(a->agent_id, b->agent_id);
	if (c != 0)
		return c;
	return (int)a->channel - (int)b->channel;
}

static void fill_large(struct batch *b, int n)
{
	for (int i = 0; i < n; i++) {
		char buf[32];
		int len;
		char *id, *agent;
		struct event ev;

		len = snprintf(buf, sizeof(buf), "event-%d", i);
		id = arena_strndup(&b->arena, buf, (size_t)len);
		/* Agent names run against message order, so the rows must be sorted. */
		len = snprintf(buf, sizeof(buf), "agent-%04d", n - 1 - i);
		agent = arena_strndup(&b->arena, buf, (size_t)len);
		assert_non_null(id);
		assert_non_null(agent);
		ev = event_csat(id, (B0 + 900 * (i % 3)) * US, (enum channel)(1 + i % 4), agent, 5);
		assert_int_equal(batch_add(b, 0, i % 200, i / 200, &ev, &policy), 0);
	}
}

static void test_large_batch(void **state)
{
	enum { N = 5000 };
	struct batch *b = batch_new(N);
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0;
	struct offset_update *out = calloc(N, sizeof(*out));

	(void)state;
	assert_non_null(b);
	assert_non_null(out);
	for (int round = 0; round < 2; round++) {
		/* The second round reuses every id: a reset batch must not remember them. */
		batch_reset(b);
		fill_large(b, N);
		assert_true(batch_full(b));
		assert_int_equal(b->n_events, N);
		mark_all_new(b);
		assert_int_equal(batch_combine(b, &b->arena, 0, b->n_msgs, &ch, &n_ch, &ag, &n_ag),
		                 0);

		/*
		 * Message i is in bucket i % 3 and channel 1 + i % 4, so each of
		 * the 12 (bucket, channel) pairs is one residue r of i mod 12.
		 * 5000 = 12 * 416 + 8: residues 0-7 occur 417 times, 8-11 416.
		 */
		assert_int_equal(n_ch, 12);
		for (size_t k = 0; k < n_ch; k++) {
			int bi = (int)k / 4, ci = (int)k % 4, r = 0;

			while (r % 3 != bi || r % 4 != ci)
				r++;
			assert_row(&ch[k], B0 + 900 * bi, (enum channel)(1 + ci), NULL,
			           &(struct kpi_counts){.csat_n = r < 8 ? 417 : 416,
			                                .csat_satisfied = r < 8 ? 417 : 416,
			                                .csat_score_units =
			                                    (r < 8 ? 417 : 416) * 252000LL});
		}

		/* One row per agent, strictly ascending. */
		assert_int_equal(n_ag, N);
		for (size_t k = 0; k < n_ag; k++) {
			assert_int_equal(ag[k].counts.csat_n, 1);
			if (k > 0)
				assert_true(agent_row_cmp(&ag[k - 1], &ag[k]) < 0);
		}
		/* Bucket B0 holds i = 0, 3, ..., 4998; the smallest name is agent-(4999 - 4998). */
		assert_string_equal(ag[0].agent_id, "agent-0001");
		assert_int_equal(ag[0].bucket, B0);

		/* 200 partitions of 25 messages each, offsets 0-24. */
		assert_int_equal(batch_offset_updates(b, 0, b->n_msgs, out), 200);
		for (int p = 0; p < 200; p++)
			assert_update(&out[p], 0, p, 25);
	}
	free(out);
	batch_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_full_reset),
	    cmocka_unit_test(test_add_records_event),
	    cmocka_unit_test(test_repeat_forgotten_after_reset),
	    cmocka_unit_test(test_offsets_interleaved),
	    cmocka_unit_test(test_offsets_take_max),
	    cmocka_unit_test(test_offsets_many_partitions),
	    cmocka_unit_test(test_combine),
	    cmocka_unit_test(test_combine_again_uses_no_more),
	    cmocka_unit_test(test_combine_range),
	    cmocka_unit_test(test_combine_nothing_new),
	    cmocka_unit_test(test_combine_key_order),
	    cmocka_unit_test(test_reset_then_reuse),
	    cmocka_unit_test(test_large_batch),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
