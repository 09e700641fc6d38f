/*
 * libFuzzer target of decode_event(): the first byte of an input picks the
 * topic's channel, the rest is the message value. Checks what decode.h
 * promises of every input: no crash, no read past the value, a reason and
 * a sentence for a rejection, and for an accepted event the contract's
 * limits; the arena is released each time, so a leak is a failure.
 */
#include "arena.h"
#include "decode.h"
#include "event.h"
#include "kpi.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW_US 1767225600000000LL /* 2026-01-01T00:00:00Z */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_event(const struct event *ev, enum channel ch)
{
	const struct rating *rs[3] = {&ev->csat, &ev->nps, &ev->ces};

	if (ev->channel != ch || ev->event_id[0] == '\0' || ev->customer_id[0] == '\0' ||
	    strlen(ev->event_id) > 128 || strlen(ev->customer_id) > 128 ||
	    strlen(ev->agent_id) > 128 || strlen(ev->interaction_id) > 128 ||
	    strlen(ev->comment) > 4096 || strlen(ev->locale) > 128 ||
	    ev->wait_seconds > 2147483647u || ev->handle_seconds > 2147483647u)
		__builtin_trap();
	for (int i = 0; i < 3; i++)
		if (rs[i]->present &&
		    (rs[i]->scale_min >= rs[i]->scale_max || rs[i]->score < rs[i]->scale_min ||
		     rs[i]->score > rs[i]->scale_max))
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena a;
	struct event ev;
	char errmsg[512] = "";
	enum channel ch;
	uint8_t *value = NULL;
	size_t len;
	enum decode_result r;

	if (size < 1)
		return 0;
	ch = (enum channel)(1 + data[0] % CHANNEL_MAX);
	/* An exact copy on the heap, so that AddressSanitizer sees a read past it. */
	len = size - 1;
	if (len > 0) {
		value = malloc(len);
		if (value == NULL)
			return 0;
		memcpy(value, data + 1, len);
	}
	/* Small chunks now and then, so that the arena's large-block path runs too. */
	arena_init(&a, (data[0] & 0x80) ? 256 : 0);
	memset(&ev, 0xa5, sizeof(ev));
	/* No value at all is a tombstone: NULL, as librdkafka gives it. */
	r = decode_event(value, len, ch, NOW_US, &a, &ev, errmsg, sizeof(errmsg));
	if (r == DECODE_OK) {
		check_event(&ev, ch);
		/* What batch_add computes of every valid event, with the widest bottom box. */
		struct kpi_policy p;
		struct kpi_counts counts;

		kpi_policy_defaults(&p);
		p.csat_negative_k = 5; /* rules.csat.bottom.k at most */
		kpi_count_event(&ev, &p, &counts);
		(void)kpi_negative_reasons(&ev, &p);
	} else if ((unsigned)r >= DECODE_RESULT_COUNT || errmsg[0] == '\0' ||
	           decode_reason_code(r)[0] == '\0')
		__builtin_trap();
	arena_reset(&a);
	arena_release(&a);
	free(value);
	return 0;
}
