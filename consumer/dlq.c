#include "dlq.h"

#include "log.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dlq_record {
	struct dlq_record *next; /* in the retry list */
	unsigned long long seq;  /* the order the letters came in */
	char *src_topic;
	int32_t src_partition;
	int64_t src_offset;
	char *reason;
	char *message;
	void *key;
	size_t key_len;
	void *value;
	size_t value_len;
	bool null_value; /* a tombstone stays a tombstone */
	bool left_out;   /* too large: sent again without its value */
};

struct dlq {
	rd_kafka_t *rk;
	/* held so that the topic's leaders are known before the first letter */
	rd_kafka_topic_t *rkt;
	char *topic;
	size_t outstanding; /* produced or waiting to be re-sent */
	/* waiting to be sent again, in the order the letters came in */
	struct dlq_record *failed, *failed_tail;
	unsigned long long next_seq;
	unsigned long long delivered;
	bool fatal; /* the producer can send nothing more (idempotence broken) */
	char last_error[256];
};

static void record_free(struct dlq_record *r)
{
	if (r == NULL)
		return;
	free(r->src_topic);
	free(r->reason);
	free(r->message);
	free(r->key);
	free(r->value);
	free(r);
}

static void *memdup(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

static bool too_large(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/*
 * A record the producer or the broker refuses for its size never fits:
 * waiting for it would stall the partition for good. It goes again without
 * its value (and without a key over 1 KiB), the message saying so and
 * where the original is; the headers name the source all the same.
 */
static int leave_out(struct dlq *d, struct dlq_record *r)
{
	char *message, key_part[48] = "";
	size_t key_len = r->key && r->key_len > 1024 ? r->key_len : 0;

	if (key_len)
		snprintf(key_part, sizeof(key_part), "key of %zu bytes and ", key_len);
	int n = asprintf(&message,
	                 "%s; its %svalue of %zu bytes %s too large for \"%s\" and left out: the "
	                 "original is at %s/%d@%lld",
	                 r->message, key_part, r->value_len, key_len ? "are" : "is", d->topic,
	                 r->src_topic, (int)r->src_partition, (long long)r->src_offset);

	if (n < 0)
		return -1;
	log_error("dead letter of %s/%d@%lld: %zu bytes, too large for \"%s\"; sending it "
	          "without its value",
	          r->src_topic, (int)r->src_partition, (long long)r->src_offset,
	          r->key_len + r->value_len, d->topic);
	free(r->message);
	r->message = message;
	r->value_len = 0;
	r->null_value = false;
	if (key_len) {
		free(r->key);
		r->key = NULL;
		r->key_len = 0;
	}
	r->left_out = true;
	return 0;
}

/* Remembers why nothing can be sent any more; dlq_drain gives up on it. */
static void set_fatal(struct dlq *d, const char *what)
{
	char reason[200];

	d->fatal = true;
	if (rd_kafka_fatal_error(d->rk, reason, sizeof(reason)) == RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(reason, sizeof(reason), "%.199s", what);
	snprintf(d->last_error, sizeof(d->last_error), "fatal: %s", reason);
}

/*
 * Puts r among the letters waiting to be sent again, in the order the
 * letters came in: failures mostly come in that order, so from the tail.
 */
static void failed_add(struct dlq *d, struct dlq_record *r)
{
	struct dlq_record **at = &d->failed;

	if (d->failed_tail && d->failed_tail->seq < r->seq)
		at = &d->failed_tail->next;
	else
		while (*at && (*at)->seq < r->seq)
			at = &(*at)->next;
	r->next = *at;
	*at = r;
	if (r->next == NULL)
		d->failed_tail = r;
}

/* Runs on the thread that polls the producer (dlq_drain / dlq_send). */
static void dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct dlq *d = opaque;
	struct dlq_record *r = rkm->_private;

	(void)rk;
	if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		d->outstanding--;
		d->delivered++;
		record_free(r);
		return;
	}
	snprintf(d->last_error, sizeof(d->last_error), "%s", rd_kafka_err2str(rkm->err));
	if (rkm->err == RD_KAFKA_RESP_ERR__FATAL)
		set_fatal(d, rd_kafka_err2str(rkm->err));
	else if (too_large(rkm->err) && !r->left_out)
		(void)leave_out(d, r); /* out of memory: sent again as it is */
	failed_add(d, r);
}

static rd_kafka_resp_err_t dlq_produce(struct dlq *d, struct dlq_record *r)
{
	char partition[16], offset[24];
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(5);
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

	snprintf(partition, sizeof(partition), "%" PRId32, r->src_partition);
	snprintf(offset, sizeof(offset), "%" PRId64, r->src_offset);
	rd_kafka_header_add(hdrs, "__connect.errors.topic", -1, r->src_topic, -1);
	rd_kafka_header_add(hdrs, "__connect.errors.partition", -1, partition, -1);
	rd_kafka_header_add(hdrs, "__connect.errors.offset", -1, offset, -1);
	rd_kafka_header_add(hdrs, "__connect.errors.exception.class.name", -1, r->reason, -1);
	rd_kafka_header_add(hdrs, "__connect.errors.exception.message", -1, r->message, -1);
	/* The array form, not the variadic one: the fault tests can wrap it (-Wl,--wrap). */
	rd_kafka_vu_t vus[] = {
	    {.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = d->topic},
	    {.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {r->key, r->key ? r->key_len : 0}},
	    {.vtype = RD_KAFKA_VTYPE_VALUE,
	     .u.mem = {r->null_value ? NULL : r->value, r->null_value ? 0 : r->value_len}},
	    {.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
	    {.vtype = RD_KAFKA_VTYPE_HEADERS, .u.headers = hdrs},
	    {.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = r},
	};

	error = rd_kafka_produceva(d->rk, vus, sizeof(vus) / sizeof(vus[0]));
	/* On success the message owns the headers; on failure they are still ours. */
	if (error) {
		err = rd_kafka_error_code(error);
		snprintf(d->last_error, sizeof(d->last_error), "%s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		rd_kafka_headers_destroy(hdrs);
		if (err == RD_KAFKA_RESP_ERR__FATAL)
			set_fatal(d, d->last_error);
		else if (too_large(err) && !r->left_out && leave_out(d, r) == 0)
			return dlq_produce(d, r);
	}
	return err;
}

struct dlq *dlq_new(rd_kafka_conf_t *conf, const char *topic, char *errstr, size_t errstr_size)
{
	struct dlq *d = calloc(1, sizeof(*d));

	if (d == NULL || (d->topic = strdup(topic)) == NULL) {
		snprintf(errstr, errstr_size, "dead-letter producer: out of memory");
		goto fail;
	}
	if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) !=
	        RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "acks", "all", errstr, errstr_size) != RD_KAFKA_CONF_OK)
		goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, dlq_delivery);
	rd_kafka_conf_set_opaque(conf, d);
	d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (d->rk == NULL)
		goto fail;
	/*
	 * A new topic handle asks for the topic's leaders now, in the background.
	 * Otherwise the first dead letter waits for them, and holds back the
	 * commit of its batch (the rows that batch locked, too) by up to 0.5 s.
	 */
	d->rkt = rd_kafka_topic_new(d->rk, topic, NULL);
	return d;
fail:
	if (d == NULL || d->rk == NULL)
		rd_kafka_conf_destroy(conf);
	if (d)
		free(d->topic);
	free(d);
	return NULL;
}

void dlq_destroy(struct dlq *d)
{
	if (d == NULL)
		return;
	rd_kafka_flush(d->rk, 1000);
	/* Purged messages report through the delivery callback: collect them all. */
	rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(d->rk, 0);
	if (d->outstanding > 0 || d->failed)
		log_warn("%zu dead letters to \"%s\" were not acknowledged before shutdown; "
		         "their offsets were not committed, so they are read again",
		         d->outstanding, d->topic);
	while (d->failed) {
		struct dlq_record *r = d->failed;

		d->failed = r->next;
		record_free(r);
	}
	if (d->rkt)
		rd_kafka_topic_destroy(d->rkt);
	rd_kafka_destroy(d->rk);
	free(d->topic);
	free(d);
}

int dlq_send_source(struct dlq *d, const struct dlq_source *src, const char *reason,
                    const char *message)
{
	struct dlq_record *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	r->src_topic = strdup(src->topic);
	r->src_partition = src->partition;
	r->src_offset = src->offset;
	r->reason = strdup(reason);
	r->message = strdup(message);
	r->key = src->key ? memdup(src->key, src->key_len) : NULL;
	r->key_len = src->key_len;
	r->null_value = src->value == NULL;
	r->value = memdup(src->value ? src->value : "", src->value_len);
	r->value_len = src->value_len;
	if (!r->src_topic || !r->reason || !r->message || (src->key && !r->key) || !r->value) {
		record_free(r);
		return -1;
	}
	d->outstanding++;
	r->seq = d->next_seq++;
	/* Behind the letters that wait, or it would overtake them. */
	if (d->failed || dlq_produce(d, r) != RD_KAFKA_RESP_ERR_NO_ERROR)
		failed_add(d, r); /* queue full or similar: dlq_drain sends it again */
	rd_kafka_poll(d->rk, 0);
	return 0;
}

int dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason, const char *message)
{
	const struct dlq_source src = {rd_kafka_topic_name(rkm->rkt),
	                               rkm->partition,
	                               rkm->offset,
	                               rkm->key,
	                               rkm->key_len,
	                               rkm->payload,
	                               rkm->payload ? rkm->len : 0};

	return dlq_send_source(d, &src, reason, message);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int dlq_drain(struct dlq *d, atomic_int *stop, void (*waiting)(void *arg), void *arg)
{
	int backoff_ms = 100;

	for (;;) {
		rd_kafka_flush(d->rk, 100);
		if (d->outstanding == 0)
			return 0;
		if (d->fatal) {
			log_error("cannot write dead letters to \"%s\" any more (%s); %zu waiting",
			          d->topic, d->last_error, d->outstanding);
			return -1;
		}
		if (waiting)
			waiting(arg);
		if (d->failed) {
			struct dlq_record *list = d->failed;

			log_warn(
			    "cannot write dead letters to \"%s\" (%s); %zu waiting, retrying in "
			    "%d ms",
			    d->topic, d->last_error, d->outstanding, backoff_ms);
			for (int waited = 0; waited < backoff_ms; waited += 100) {
				if (*stop)
					return -1;
				sleep_ms(100);
				if (waiting)
					waiting(arg);
			}
			backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
			d->failed = d->failed_tail = NULL;
			while (list) {
				struct dlq_record *r = list;

				list = r->next;
				if (dlq_produce(d, r) != RD_KAFKA_RESP_ERR_NO_ERROR) {
					/* The rest waits behind it, in order. */
					failed_add(d, r);
					while (list) {
						r = list;
						list = r->next;
						failed_add(d, r);
					}
				}
			}
		}
		if (*stop)
			return -1;
	}
}

int dlq_settle(struct dlq *d, int timeout_ms)
{
	/* A failed record waits in d->failed for dlq_drain: nothing comes back by waiting. */
	if (d->outstanding > 0 && d->failed == NULL)
		rd_kafka_flush(d->rk, timeout_ms);
	return d->outstanding == 0 ? 0 : -1;
}

bool dlq_failing(const struct dlq *d)
{
	return d->failed != NULL;
}

bool dlq_fatal(const struct dlq *d)
{
	return d->fatal;
}

size_t dlq_pending(const struct dlq *d)
{
	return d->outstanding;
}

unsigned long long dlq_delivered(const struct dlq *d)
{
	return d->delivered;
}
