#include "triggerread.h"

#include "feedback/v1/feedback.pb-c.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Gives up when no partition reached its end for this long. */
#define IDLE_TIMEOUT_MS 15000

static const char *severity_name(Feedback__V1__Severity s)
{
	switch (s) {
	case FEEDBACK__V1__SEVERITY__SEVERITY_NORMAL:
		return "normal";
	case FEEDBACK__V1__SEVERITY__SEVERITY_HIGH:
		return "high";
	case FEEDBACK__V1__SEVERITY__SEVERITY_CRITICAL:
		return "critical";
	default:
		return "unspecified";
	}
}

static const char *reason_name(Feedback__V1__Reason r)
{
	switch (r) {
	case FEEDBACK__V1__REASON__REASON_CSAT_LOW:
		return "csat_low";
	case FEEDBACK__V1__REASON__REASON_NPS_DETRACTOR:
		return "nps_detractor";
	case FEEDBACK__V1__REASON__REASON_CES_HIGH_EFFORT:
		return "ces_high_effort";
	case FEEDBACK__V1__REASON__REASON_REPEAT_NEGATIVE:
		return "repeat_negative";
	default:
		return "unspecified";
	}
}

static const char *metric_name(Feedback__V1__Metric m)
{
	static const char *const names[] = {"unspecified", "csat", "nps", "ces"};

	return (unsigned)m < sizeof(names) / sizeof(*names) ? names[m] : "unspecified";
}

static const char *channel_label(Feedback__V1__Channel c)
{
	static const char *const names[] = {"unspecified", "sms", "email", "phone", "social"};

	return (unsigned)c < sizeof(names) / sizeof(*names) ? names[c] : "unspecified";
}

static void print_time(FILE *out, const char *label, const Google__Protobuf__Timestamp *ts)
{
	char buf[40] = "-";

	if (ts) {
		time_t s = (time_t)ts->seconds;
		struct tm tm;

		if (gmtime_r(&s, &tm))
			strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	fprintf(out, " %s=%s", label, buf);
}

/* A string in double quotes, with quotes, backslashes and control bytes escaped. */
static void print_quoted(FILE *out, const char *label, const char *s, size_t n)
{
	fprintf(out, " %s=\"", label);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* Printable ASCII that cannot be taken for a separator, a quote or a field. */
static bool plain(const char *s)
{
	for (; *s; s++)
		if (*s <= ' ' || *s >= 0x7f || *s == '"' || *s == '\\' || *s == '=')
			return false;
	return true;
}

/*
 * An id as it is when plain, quoted and escaped when not: ids come from the
 * events, and one holding a newline would otherwise print a line of its own
 * that reads like a trigger.
 */
static void print_id(FILE *out, const char *label, const char *s)
{
	if (plain(s))
		fprintf(out, " %s=%s", label, s);
	else
		print_quoted(out, label, s, strlen(s));
}

void triggerread_format(FILE *out, const void *key, size_t key_len,
                        const Feedback__V1__RecoveryTrigger *t)
{
	const char *id = t->trigger_id ? t->trigger_id : "";

	if (plain(id) && *id)
		fputs(id, out);
	else
		print_quoted(out, "trigger", id, strlen(id));
	print_quoted(out, "key", key ? key : "", key ? key_len : 0);
	fprintf(out, " severity=%s reasons=", severity_name(t->severity));
	for (size_t i = 0; i < t->n_reasons; i++)
		fprintf(out, "%s%s", i ? "," : "", reason_name(t->reasons[i]));
	fprintf(out, " ratings=");
	for (size_t i = 0; i < t->n_negative_ratings; i++) {
		const Feedback__V1__Rating *r = t->negative_ratings[i];

		fprintf(out, "%s%s:%" PRId32 "/%" PRId32 "-%" PRId32 "%s", i ? "," : "",
		        metric_name(r->metric), r->score, r->scale_min, r->scale_max,
		        r->inverted ? "(inverted)" : "");
	}
	fprintf(out, " repeat=%" PRIu32 " suppressed=%" PRIu32, t->repeat_count,
	        t->suppressed_count);
	print_id(out, "event", t->event_id ? t->event_id : "");
	print_id(out, "customer", t->customer_id ? t->customer_id : "");
	fprintf(out, " channel=%s", channel_label(t->channel));
	if (t->agent_id && t->agent_id[0])
		print_id(out, "agent", t->agent_id);
	if (t->interaction_id && t->interaction_id[0])
		print_id(out, "interaction", t->interaction_id);
	print_time(out, "occurred", t->occurred_at);
	print_time(out, "detected", t->detected_at);
	print_time(out, "follow_up_by", t->follow_up_by);
	if (t->locale && t->locale[0])
		print_id(out, "locale", t->locale);
	if (t->comment && t->comment[0])
		print_quoted(out, "comment", t->comment, strlen(t->comment));
	fputc('\n', out);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long triggerread_print(rd_kafka_conf_t *conf, const char *topic, FILE *out, char *errstr,
                       size_t errstr_size)
{
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_t *rkt = NULL;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *list = NULL;
	bool *at_end = NULL;
	long count = 0, result = -1;
	int parts = 0, ends = 0;

	if (rd_kafka_conf_set(conf, "group.id", "feedback-consumer-triggers", errstr,
	                      errstr_size) ||
	    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size) ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size))
		goto out;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (rk == NULL)
		goto out;
	conf = NULL; /* taken by rd_kafka_new */

	rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err =
	    rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000) : rd_kafka_last_error();
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && (md->topic_cnt != 1 || md->topics[0].err))
		err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
	if (err) {
		snprintf(errstr, errstr_size, "cannot read the metadata of topic \"%s\": %s", topic,
		         rd_kafka_err2str(err));
		goto out;
	}
	parts = md->topics[0].partition_cnt;
	at_end = calloc((size_t)parts + 1, sizeof(*at_end));
	list = rd_kafka_topic_partition_list_new(parts);
	if (at_end == NULL || list == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto out;
	}
	for (int p = 0; p < parts; p++)
		rd_kafka_topic_partition_list_add(list, topic, p)->offset =
		    RD_KAFKA_OFFSET_BEGINNING;
	err = rd_kafka_assign(rk, list);
	if (err) {
		snprintf(errstr, errstr_size, "cannot read topic \"%s\": %s", topic,
		         rd_kafka_err2str(err));
		goto out;
	}

	int64_t idle_until = mono_ms() + IDLE_TIMEOUT_MS;
	while (ends < parts) {
		if (mono_ms() > idle_until) {
			snprintf(
			    errstr, errstr_size,
			    "timed out reading topic \"%s\": %d of %d partitions read to the end",
			    topic, ends, parts);
			goto out;
		}
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
		if (rkm == NULL)
			continue;
		if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (rkm->partition >= 0 && rkm->partition < parts &&
			    !at_end[rkm->partition]) {
				at_end[rkm->partition] = true;
				ends++;
				idle_until = mono_ms() + IDLE_TIMEOUT_MS;
			}
		} else if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			Feedback__V1__RecoveryTrigger *t =
			    feedback__v1__recovery_trigger__unpack(NULL, rkm->len, rkm->payload);

			if (t == NULL) {
				snprintf(errstr, errstr_size,
				         "message at \"%s\" partition %" PRId32 " offset %" PRId64
				         " is not a feedback.v1.RecoveryTrigger",
				         topic, rkm->partition, rkm->offset);
				rd_kafka_message_destroy(rkm);
				goto out;
			}
			triggerread_format(out, rkm->key, rkm->key ? rkm->key_len : 0, t);
			feedback__v1__recovery_trigger__free_unpacked(t, NULL);
			count++;
			idle_until = mono_ms() + IDLE_TIMEOUT_MS;
		}
		rd_kafka_message_destroy(rkm);
	}
	fprintf(out, "%ld trigger%s on \"%s\"\n", count, count == 1 ? "" : "s", topic);
	result = count;
out:
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (list)
		rd_kafka_topic_partition_list_destroy(list);
	free(at_end);
	if (md)
		rd_kafka_metadata_destroy(md);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	return result;
}
