/*
 * kconf.h - librdkafka configurations from the kafka.* settings.
 *
 * Every kafka.* key goes to librdkafka as is (kcat -X style). Properties
 * that only a consumer or only a producer understands are given to that
 * client alone, so neither logs warnings about the other's settings.
 */
#ifndef FC_KCONF_H
#define FC_KCONF_H

#include "config.h"

#include <librdkafka/rdkafka.h>

enum kconf_role { KCONF_CONSUMER, KCONF_PRODUCER };

/*
 * A new librdkafka configuration for role from cfg's kafka.* keys, with
 * librdkafka's log routed to log.h. Returns NULL with errstr naming the
 * key (never a secret value); the caller owns the result.
 */
rd_kafka_conf_t *kconf_new(const struct config *cfg, enum kconf_role role, char *errstr,
                           size_t errstr_size);

/*
 * buf into out (size bytes, NUL included) with the value of every secret
 * kafka.* key that kconf_new was ever given replaced by "<redacted>", as
 * librdkafka's log lines are before they are logged. A line too long for
 * out is cut, and never inside a secret.
 */
void kconf_redact(const char *buf, char *out, size_t size);

/*
 * Makes consumer conf that of worker (0 ..) of consumer.workers: with more
 * than one, a static member id (kafka.group.instance.id) gets "-<worker>",
 * since two members with one id fence each other. Returns 0, or -1 with
 * errstr.
 */
int kconf_set_worker(rd_kafka_conf_t *conf, const struct config *cfg, int worker, char *errstr,
                     size_t errstr_size);

/*
 * Checks what librdkafka checks only as a client starts: values that
 * contradict each other (fetch.max.bytes under message.max.bytes), files
 * it cannot read (ssl.ca.location), and the like. A client of role is
 * made from a copy of conf with no brokers to connect to, and destroyed.
 * Returns 0, or -1 with librdkafka's reason in errstr.
 */
int kconf_check(const rd_kafka_conf_t *conf, enum kconf_role role, char *errstr,
                size_t errstr_size);

#endif
