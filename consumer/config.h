/*
 * config.h - every setting of feedback-consumer, from one declarative table.
 *
 * A key such as "batch.max.events" has three spellings: the config-file key
 * "batch.max.events", the environment variable FEEDBACK_BATCH_MAX_EVENTS and
 * the flag --batch.max.events. Flags win over the environment, which wins
 * over the file, which wins over the table's defaults. Any "kafka.*" key
 * passes through to librdkafka unchecked. An environment variable ending in
 * _FILE (FEEDBACK_KAFKA_SASL_PASSWORD_FILE) reads the value from that file,
 * for secrets mounted into a pod.
 */
#ifndef FC_CONFIG_H
#define FC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum config_type {
	CONFIG_STRING,
	CONFIG_INT,      /* decimal integer within [min, max] */
	CONFIG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
	CONFIG_ENUM,     /* one of a '|'-separated list */
	CONFIG_DURATION, /* "250ms", "90s", "15m", "24h", "30d" or plain milliseconds */
};

enum config_source {
	CONFIG_SRC_DEFAULT,
	CONFIG_SRC_FILE,
	CONFIG_SRC_ENV,
	CONFIG_SRC_FLAG,
};

struct config;

/* A configuration holding the table's defaults; NULL when out of memory. */
struct config *config_new(void);
void config_destroy(struct config *cfg);

/*
 * Fills cfg from the file named by --config (or FEEDBACK_CONFIG), then the
 * FEEDBACK_* variables of envp, then the flags of argv (--key=value or
 * --key value; argv[0] is not a flag). Every value is validated. Returns 0,
 * or -1 with errstr naming the offending key, source and value (secrets
 * are never echoed). Unknown FEEDBACK_* variables are ignored (Kubernetes
 * injects its own), unknown flags and file keys are errors.
 */
int config_load(struct config *cfg, int argc, char **argv, char **envp, char *errstr,
                size_t errstr_size);

/* Sets one key from source src, validated; 0, or -1 with errstr. */
int config_set(struct config *cfg, const char *key, const char *value, enum config_source src,
               char *errstr, size_t errstr_size);

/* The value of a declared or kafka.* key; "" when unset. Aborts on an
 * undeclared non-kafka key (a programming error). */
const char *config_get(const struct config *cfg, const char *key);
/* The value of an INT key, of a BOOL key (0/1), of a DURATION key in ms. */
int64_t config_get_int(const struct config *cfg, const char *key);
bool config_get_bool(const struct config *cfg, const char *key);

/* Calls fn for every kafka.* key that has a value, with the prefix removed
 * ("bootstrap.servers"); stops and returns fn's value when it is non-zero. */
int config_each_kafka(const struct config *cfg,
                      int (*fn)(const char *name, const char *value, void *arg), void *arg);

/* True for a key whose value must never be shown (passwords, secrets, keys). */
bool config_is_secret(const char *key);

/*
 * Writes every setting as "key = value  # source" in key order, secrets
 * replaced by "<redacted>" and the password of database.url masked.
 */
void config_print(const struct config *cfg, FILE *out);

/* Writes the table (key, type, default, help) for --help. */
void config_print_help(FILE *out);

#endif
