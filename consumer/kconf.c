#include "kconf.h"

#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Properties (or prefixes ending in '.') of one client kind only. */
static const char *const consumer_only[] = {
    "group.",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.",
    "max.partition.fetch.bytes",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "allow.auto.create.topics",
    "auto.offset.reset",
    "consume.callback.max.messages",
    "offset.store.method",
};

static const char *const producer_only[] = {
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "linger.ms",
    "queue.buffering.",
    "batch.num.messages",
    "batch.size",
    "compression.",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "message.send.max.retries",
    "transactional.id",
    "transaction.timeout.ms",
    "partitioner",
    "sticky.partitioning.linger.ms",
    "request.timeout.ms",
    "delivery.report.only.error",
};

static bool matches(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(list[i]);
		if (list[i][len - 1] == '.' ? strncmp(name, list[i], len) == 0
		                            : strcmp(name, list[i]) == 0)
			return true;
	}
	return false;
}

/*
 * The values of the secret kafka.* keys given to any configuration, so that
 * a librdkafka line quoting one (a debug dump, an error echoing a setting)
 * never reaches the log. Kept for the life of the process.
 */
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[64];
static size_t n_secrets;

static void remember_secret(const char *value)
{
	pthread_mutex_lock(&secrets_lock);
	for (size_t i = 0; i < n_secrets; i++)
		if (strcmp(secrets[i], value) == 0)
			goto out;
	if (n_secrets < sizeof(secrets) / sizeof(*secrets) && value[0] &&
	    (secrets[n_secrets] = strdup(value)) != NULL)
		n_secrets++;
out:
	pthread_mutex_unlock(&secrets_lock);
}

/*
 * A secret made of several words (sasl.oauthbearer.config: "principal=fc
 * clientSecret=..."), of which librdkafka may quote only the rest from one
 * on: each word, and each word's value after its '=', of 4 bytes or more,
 * is a secret too.
 */
static void remember_secret_words(const char *value)
{
	remember_secret(value);
	for (const char *p = value; *p;) {
		size_t skip = strspn(p, " \t\r\n"), len;
		char word[512];

		p += skip;
		len = strcspn(p, " \t\r\n");
		if (len == 0)
			break;
		if (len >= 4 && len < sizeof(word)) {
			memcpy(word, p, len);
			word[len] = '\0';
			remember_secret(word);
			const char *eq = strchr(word, '=');
			if (eq && strlen(eq + 1) >= 4)
				remember_secret(eq + 1);
		}
		p += len;
	}
}

void kconf_redact(const char *buf, char *out, size_t size)
{
	static const char mask[] = "<redacted>";
	size_t o = 0;

	if (size == 0)
		return;
	pthread_mutex_lock(&secrets_lock);
	/*
	 * One pass over buf, the longest secret first at each position: a
	 * secret is never looked for in a mask already written (one of
	 * "<redacted>"'s letters would otherwise be masked again and again).
	 */
	for (const char *p = buf; *p != '\0';) {
		size_t len = 0;

		for (size_t i = 0; i < n_secrets; i++) {
			size_t n = strlen(secrets[i]);

			if (n > len && strncmp(p, secrets[i], n) == 0)
				len = n;
		}
		if (len == 0) {
			if (o + 1 >= size)
				break;
			out[o++] = *p++;
			continue;
		}
		if (o + sizeof(mask) > size)
			break; /* no room: cut the line before the secret */
		memcpy(out + o, mask, sizeof(mask) - 1);
		o += sizeof(mask) - 1;
		p += len;
	}
	out[o] = '\0';
	pthread_mutex_unlock(&secrets_lock);
}

struct kconf_build {
	rd_kafka_conf_t *conf;
	enum kconf_role role;
	char *errstr;
	size_t errstr_size;
};

static int set_one(const char *name, const char *value, void *arg)
{
	struct kconf_build *kb = arg;
	char why[512];

	if (kb->role == KCONF_PRODUCER &&
	    matches(name, consumer_only, sizeof(consumer_only) / sizeof(*consumer_only)))
		return 0;
	if (kb->role == KCONF_CONSUMER &&
	    matches(name, producer_only, sizeof(producer_only) / sizeof(*producer_only)))
		return 0;
	char key[300];
	snprintf(key, sizeof(key), "kafka.%s", name);
	if (config_is_secret(key))
		remember_secret_words(value);
	if (rd_kafka_conf_set(kb->conf, name, value, why, sizeof(why)) == RD_KAFKA_CONF_OK)
		return 0;
	/* librdkafka's message may quote the value: never for a secret. */
	if (config_is_secret(key))
		snprintf(kb->errstr, kb->errstr_size, "invalid setting '%s'", key);
	else
		snprintf(kb->errstr, kb->errstr_size, "invalid setting '%s': %s", key, why);
	return -1;
}

static void log_from_rdkafka(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
	enum log_level lv = level <= 3   ? LOG_ERROR
	                    : level == 4 ? LOG_WARN
	                    : level <= 6 ? LOG_INFO
	                                 : LOG_DEBUG;
	char clean[2048];

	if (!log_enabled(lv))
		return;
	kconf_redact(buf, clean, sizeof(clean));
	log_write(lv, NULL, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, clean);
}

/* The consumers' prefetch per process, in KiB. */
#define PREFETCH_KB 3072

rd_kafka_conf_t *kconf_new(const struct config *cfg, enum kconf_role role, char *errstr,
                           size_t errstr_size)
{
	struct kconf_build kb = {rd_kafka_conf_new(), role, errstr, errstr_size};

	if (kb.conf == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	rd_kafka_conf_set_log_cb(kb.conf, log_from_rdkafka);
	/*
	 * librdkafka prefetches up to 64 MiB by default; a few MiB ahead of the
	 * batch are enough, each queued message costing some 500 bytes besides
	 * its payload. Over the limit, librdkafka 2.0 stops fetching for up to
	 * a second; consumer.c wakes its fetcher when the queue runs dry before
	 * that. The consumers of one process (consumer.workers) share 3 MiB.
	 * Measured with tests/bench/pipeline.sh: 38 MiB resident with one
	 * consumer, 45 MiB with two (5,000-event batches).
	 * A negative rating waits for the fetch that brings it: with the
	 * default fetch.wait.max.ms of 500 ms, the recovery benchmark measured
	 * 400 ms from produce to transaction at the median, 45 ms with 20 ms.
	 * A stored offset the log no longer holds (retention passed it, or the
	 * topic was recreated) resumes at the log's start, not at its end:
	 * only what retention deleted is skipped, and what is read again is
	 * a duplicate, counted once.
	 * Set before the user's kafka.* keys, which may override them.
	 */
	char prefetch[16];

	snprintf(prefetch, sizeof(prefetch), "%lld",
	         (long long)(PREFETCH_KB / config_get_int(cfg, "consumer.workers")));
	if (role == KCONF_CONSUMER &&
	    (rd_kafka_conf_set(kb.conf, "queued.max.messages.kbytes", prefetch, errstr,
	                       errstr_size) != RD_KAFKA_CONF_OK ||
	     rd_kafka_conf_set(kb.conf, "fetch.wait.max.ms", "20", errstr, errstr_size) !=
	         RD_KAFKA_CONF_OK ||
	     rd_kafka_conf_set(kb.conf, "fetch.max.bytes", "4194304", errstr, errstr_size) !=
	         RD_KAFKA_CONF_OK ||
	     rd_kafka_conf_set(kb.conf, "max.partition.fetch.bytes", "262144", errstr,
	                       errstr_size) != RD_KAFKA_CONF_OK ||
	     rd_kafka_conf_set(kb.conf, "auto.offset.reset", "earliest", errstr, errstr_size) !=
	         RD_KAFKA_CONF_OK)) {
		rd_kafka_conf_destroy(kb.conf);
		return NULL;
	}
	if (config_each_kafka(cfg, set_one, &kb) != 0) {
		rd_kafka_conf_destroy(kb.conf);
		return NULL;
	}
	/*
	 * librdkafka wants fetch.max.bytes >= message.max.bytes, and set here,
	 * no longer raises it itself: a larger message.max.bytes raises it too,
	 * unless fetch.max.bytes is set as well.
	 */
	char max[32];
	size_t max_size = sizeof(max);
	if (role == KCONF_CONSUMER && config_get(cfg, "kafka.fetch.max.bytes")[0] == '\0' &&
	    rd_kafka_conf_get(kb.conf, "message.max.bytes", max, &max_size) == RD_KAFKA_CONF_OK &&
	    strtoll(max, NULL, 10) > 4194304 &&
	    rd_kafka_conf_set(kb.conf, "fetch.max.bytes", max, errstr, errstr_size) !=
	        RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(kb.conf);
		return NULL;
	}
	return kb.conf;
}

static void log_nothing(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	(void)fac;
	(void)buf;
}

int kconf_check(const rd_kafka_conf_t *conf, enum kconf_role role, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *dry = rd_kafka_conf_dup(conf);
	rd_kafka_t *rk = NULL;

	if (dry == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	/*
	 * No broker to connect to; the callbacks and their opaque are never
	 * called. Silent, kafka.debug too: it would warn that it has no
	 * brokers, and the real clients log whatever else it would.
	 */
	if (rd_kafka_conf_set(dry, "bootstrap.servers", "", errstr, errstr_size) !=
	        RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(dry, "log_level", "0", errstr, errstr_size) != RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(dry);
		return -1;
	}
	rd_kafka_conf_set_log_cb(dry, log_nothing); /* kafka.debug raises log_level again */
	rk = rd_kafka_new(role == KCONF_CONSUMER ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, dry,
	                  errstr, errstr_size);
	if (rk == NULL) {
		rd_kafka_conf_destroy(dry);
		return -1;
	}
	rd_kafka_destroy(rk);
	return 0;
}

int kconf_set_worker(rd_kafka_conf_t *conf, const struct config *cfg, int worker, char *errstr,
                     size_t errstr_size)
{
	char id[512], mine[540];
	size_t size = sizeof(id);

	if (config_get_int(cfg, "consumer.workers") < 2 ||
	    rd_kafka_conf_get(conf, "group.instance.id", id, &size) != RD_KAFKA_CONF_OK ||
	    id[0] == '\0')
		return 0;
	snprintf(mine, sizeof(mine), "%s-%d", id, worker);
	if (rd_kafka_conf_set(conf, "group.instance.id", mine, errstr, errstr_size) !=
	    RD_KAFKA_CONF_OK)
		return -1;
	return 0;
}
