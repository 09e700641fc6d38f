/*
 * Writes the seed inputs of fuzz_decode into a directory: valid events of
 * each channel (every field, the least an event may hold, a contact alone,
 * an FCR answer alone), two that are invalid only just, each plain and in
 * both Confluent framings. An input is one byte for the channel of the
 * topic (0 sms ... 3 social), then the message value.
 */
#include "feedback/v1/feedback.pb-c.h"

#include <stdio.h>
#include <stdlib.h>

static int n_seeds;

static int write_seed(const char *dir, unsigned char topic, const unsigned char *prefix,
                      size_t n_prefix, const unsigned char *value, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed%02d", dir, n_seeds++);
	f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	fputc(topic, f);
	fwrite(prefix, 1, n_prefix, f);
	fwrite(value, 1, n, f);
	return fclose(f);
}

/* The event plain, and framed with message indexes [0] and [0, 1]. */
static int emit(const char *dir, unsigned char topic, const Feedback__V1__FeedbackEvent *e)
{
	static const unsigned char one[] = {0x00, 0x00, 0x00, 0x00, 0x07, 0x00};
	static const unsigned char two[] = {0x00, 0x00, 0x00, 0x01, 0x02, 0x04, 0x00, 0x02};
	size_t n = feedback__v1__feedback_event__get_packed_size(e);
	unsigned char *b = malloc(n ? n : 1);
	int err;

	if (b == NULL)
		return -1;
	feedback__v1__feedback_event__pack(e, b);
	err = write_seed(dir, topic, NULL, 0, b, n) |
	      write_seed(dir, topic, one, sizeof(one), b, n) |
	      write_seed(dir, topic, two, sizeof(two), b, n);
	free(b);
	return err;
}

int main(int argc, char **argv)
{
	Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT, late = at;
	Feedback__V1__Rating csat = FEEDBACK__V1__RATING__INIT, nps = csat, ces = csat,
	                     csat10 = csat;
	Feedback__V1__Contact answered = FEEDBACK__V1__CONTACT__INIT, abandoned = answered;
	Feedback__V1__FeedbackEvent__AttributesEntry a1 =
	    FEEDBACK__V1__FEEDBACK_EVENT__ATTRIBUTES_ENTRY__INIT;
	Feedback__V1__FeedbackEvent__AttributesEntry a2 = a1, many[33], *pm[33];
	Feedback__V1__Rating *all[] = {&csat, &nps, &ces}, *just_csat[] = {&csat},
	                     *scale10[] = {&csat10};
	Feedback__V1__FeedbackEvent__AttributesEntry *two_attrs[] = {&a1, &a2};
	Feedback__V1__FeedbackEvent full = FEEDBACK__V1__FEEDBACK_EVENT__INIT, least = full,
	                            contact = full, fcr = full;
	int err = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	at.seconds = 1767225000; /* ten minutes before the harness's now */
	at.nanos = 123456000;
	csat.metric = FEEDBACK__V1__METRIC__METRIC_CSAT;
	csat.score = 2;
	nps.metric = FEEDBACK__V1__METRIC__METRIC_NPS;
	nps.score = 9;
	nps.scale_max = 10;
	ces.metric = FEEDBACK__V1__METRIC__METRIC_CES;
	ces.score = 4;
	ces.scale_min = 1;
	ces.scale_max = 5;
	ces.inverted = 1;
	csat10.metric = FEEDBACK__V1__METRIC__METRIC_CSAT;
	csat10.score = 10;
	csat10.scale_max = 10;
	answered.outcome = FEEDBACK__V1__CONTACT_OUTCOME__OUTCOME_ANSWERED;
	answered.wait_seconds = 42;
	answered.handle_seconds = 300;
	abandoned.outcome = FEEDBACK__V1__CONTACT_OUTCOME__OUTCOME_ABANDONED;
	abandoned.wait_seconds = 604800;
	a1.key = "campaign";
	a1.value = "spring";
	a2.key = "r\xc3\xa9gion";
	a2.value = "\xc3\x8ele-de-France";

	full.event_id = "evt-0001";
	full.occurred_at = &at;
	full.channel = FEEDBACK__V1__CHANNEL__CHANNEL_SMS;
	full.customer_id = "cust-42";
	full.agent_id = "agent-7";
	full.interaction_id = "call-99";
	full.n_ratings = 3;
	full.ratings = all;
	full.contact = &answered;
	full.comment = "slow but friendly \xf0\x9f\x98\x80";
	full.locale = "fr-FR";
	full.n_attributes = 2;
	full.attributes = two_attrs;
	full.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_RESOLVED;
	err |= emit(argv[1], 0, &full);

	least.event_id = "e2";
	least.occurred_at = &at;
	least.customer_id = "c";
	least.n_ratings = 1;
	least.ratings = just_csat;
	err |= emit(argv[1], 1, &least);

	contact.event_id = "e3";
	contact.occurred_at = &at;
	contact.customer_id = "c3";
	contact.channel = FEEDBACK__V1__CHANNEL__CHANNEL_PHONE;
	contact.contact = &abandoned;
	contact.locale = "zh-Hant-TW";
	err |= emit(argv[1], 2, &contact);

	fcr.event_id = "e4";
	fcr.occurred_at = &at;
	fcr.customer_id = "c4";
	fcr.channel = FEEDBACK__V1__CHANNEL__CHANNEL_SOCIAL;
	fcr.first_contact_resolution = FEEDBACK__V1__RESOLUTION__RESOLUTION_UNRESOLVED;
	fcr.n_ratings = 1;
	fcr.ratings = scale10;
	err |= emit(argv[1], 3, &fcr);

	/* Invalid only just: one second past the five minutes ahead; 33 attributes. */
	late.seconds = 1767225600 + 301;
	least.occurred_at = &late;
	err |= emit(argv[1], 1, &least);
	least.occurred_at = &at;
	for (int i = 0; i < 33; i++) {
		static char keys[33][8];

		feedback__v1__feedback_event__attributes_entry__init(&many[i]);
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		many[i].key = keys[i];
		many[i].value = "v";
		pm[i] = &many[i];
	}
	least.n_attributes = 33;
	least.attributes = pm;
	err |= emit(argv[1], 1, &least);
	if (err) {
		perror(argv[1]);
		return 1;
	}
	return 0;
}
