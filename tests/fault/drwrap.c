#include "drwrap.h"

bool drwrap_capture;
drwrap_cb *drwrap_hook, *drwrap_real;

void __real_rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf, drwrap_cb *cb);
void __wrap_rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf, drwrap_cb *cb);

void __wrap_rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf, drwrap_cb *cb)
{
	if (drwrap_capture) {
		drwrap_real = cb;
		cb = drwrap_hook;
	}
	__real_rd_kafka_conf_set_dr_msg_cb(conf, cb);
}
