/*
 * drwrap.h - a fault test's view of the delivery reports of the module it
 * tests. Linked with -Wl,--wrap=rd_kafka_conf_set_dr_msg_cb: while
 * drwrap_capture is set, the delivery callback the module sets is kept in
 * drwrap_real and drwrap_hook is set in its place; the hook decides what
 * reaches drwrap_real.
 */
#ifndef FC_TEST_DRWRAP_H
#define FC_TEST_DRWRAP_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

typedef void drwrap_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);

extern bool drwrap_capture;
extern drwrap_cb *drwrap_hook, *drwrap_real;

#endif
