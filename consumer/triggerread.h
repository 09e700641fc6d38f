/*
 * triggerread.h - the `triggers` subcommand: reads the recovery topic from
 * the beginning and prints each RecoveryTrigger decoded, one line each, so
 * operators and the demo can see what the downstream workflow receives.
 */
#ifndef FC_TRIGGERREAD_H
#define FC_TRIGGERREAD_H

#include "feedback/v1/feedback.pb-c.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>

/*
 * Reads every message of topic up to the end of each partition, using
 * conf (taken, also on failure), and prints one line per trigger to out,
 * then a summary line. Returns the number of triggers printed, or -1 with
 * errstr set when the topic cannot be read or a message does not decode.
 */
long triggerread_print(rd_kafka_conf_t *conf, const char *topic, FILE *out, char *errstr,
                       size_t errstr_size);

/*
 * One trigger, one line with its newline: the id, then
 * key="..." and label=value fields. Ids and the locale print as they are
 * when plain (printable ASCII, no space, quote, backslash or '='), quoted
 * and escaped otherwise; the key and comment always quoted.
 */
void triggerread_format(FILE *out, const void *key, size_t key_len,
                        const Feedback__V1__RecoveryTrigger *t);

#endif
