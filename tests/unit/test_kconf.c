/*
 * The librdkafka configurations built from the kafka.* settings: the
 * consumer's own defaults, and the user's keys winning over them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "kconf.h"

/* The value of property name in conf. */
static const char *property(rd_kafka_conf_t *conf, const char *name)
{
	static char value[256];
	size_t size = sizeof(value);

	assert_int_equal(rd_kafka_conf_get(conf, name, value, &size), RD_KAFKA_CONF_OK);
	return value;
}

static rd_kafka_conf_t *build(struct config *cfg, enum kconf_role role)
{
	char errstr[512] = "";
	rd_kafka_conf_t *conf = kconf_new(cfg, role, errstr, sizeof(errstr));

	if (conf == NULL)
		fail_msg("kconf_new: %s", errstr);
	return conf;
}

/* A negative rating waits at most 20 ms for its fetch; 3 MiB are prefetched; out of range resumes
 * at the start. */
static void test_consumer_defaults(void **state)
{
	struct config *cfg = config_new();
	rd_kafka_conf_t *conf;

	(void)state;
	assert_non_null(cfg);
	conf = build(cfg, KCONF_CONSUMER);
	assert_string_equal(property(conf, "fetch.wait.max.ms"), "20");
	assert_string_equal(property(conf, "queued.max.messages.kbytes"), "3072");
	assert_string_equal(property(conf, "fetch.max.bytes"), "4194304");
	assert_string_equal(property(conf, "max.partition.fetch.bytes"), "262144");
	/* librdkafka's own default is the end of the log. */
	assert_string_equal(property(conf, "auto.offset.reset"), "smallest");
	rd_kafka_conf_destroy(conf);
	config_destroy(cfg);
}

/* consumer.workers = workers, and kafka.group.instance.id = id unless NULL. */
static struct config *workers_config(const char *workers, const char *id)
{
	struct config *cfg = config_new();
	char err[512];

	assert_non_null(cfg);
	assert_int_equal(
	    config_set(cfg, "consumer.workers", workers, CONFIG_SRC_FLAG, err, sizeof(err)), 0);
	if (id)
		assert_int_equal(config_set(cfg, "kafka.group.instance.id", id, CONFIG_SRC_FLAG,
		                            err, sizeof(err)),
		                 0);
	return cfg;
}

/* The consumers of one process share the prefetch. */
static void test_workers_share_the_prefetch(void **state)
{
	static const char *const cases[][2] = {{"2", "1536"}, {"3", "1024"}, {"16", "192"}};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct config *cfg = workers_config(cases[i][0], NULL);
		rd_kafka_conf_t *conf = build(cfg, KCONF_CONSUMER);

		assert_string_equal(property(conf, "queued.max.messages.kbytes"), cases[i][1]);
		rd_kafka_conf_destroy(conf);
		config_destroy(cfg);
	}
}

/* Two members with one static id fence each other: each worker gets its own. */
static void test_workers_get_their_own_instance_id(void **state)
{
	static const char *const cases[][3] = {
	    /* consumer.workers, group.instance.id, worker 1's id */
	    {"1", "pod-a", "pod-a"},
	    {"2", "pod-a", "pod-a-1"},
	    {"2", NULL, NULL},
	};
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct config *cfg = workers_config(cases[i][0], cases[i][1]);
		rd_kafka_conf_t *conf = build(cfg, KCONF_CONSUMER);

		assert_int_equal(kconf_set_worker(conf, cfg, 1, err, sizeof(err)), 0);
		if (cases[i][2]) {
			assert_string_equal(property(conf, "group.instance.id"), cases[i][2]);
		} else {
			char v[64] = "";
			size_t size = sizeof(v);

			/* Still unset: a dynamic member. */
			assert_int_equal(rd_kafka_conf_get(conf, "group.instance.id", v, &size),
			                 RD_KAFKA_CONF_UNKNOWN);
		}
		rd_kafka_conf_destroy(conf);
		config_destroy(cfg);
	}
}

static void test_user_keys_win(void **state)
{
	char err[512];
	struct config *cfg = config_new();
	rd_kafka_conf_t *conf;

	(void)state;
	assert_non_null(cfg);
	assert_int_equal(
	    config_set(cfg, "kafka.fetch.wait.max.ms", "500", CONFIG_SRC_ENV, err, sizeof(err)), 0);
	assert_int_equal(config_set(cfg, "kafka.queued.max.messages.kbytes", "65536",
	                            CONFIG_SRC_FLAG, err, sizeof(err)),
	                 0);
	conf = build(cfg, KCONF_CONSUMER);
	assert_string_equal(property(conf, "fetch.wait.max.ms"), "500");
	assert_string_equal(property(conf, "queued.max.messages.kbytes"), "65536");
	rd_kafka_conf_destroy(conf);
	config_destroy(cfg);
}

/* kafka.* = value on the command line. */
static void set_kafka(struct config *cfg, const char *key, const char *value)
{
	char err[512];

	if (config_set(cfg, key, value, CONFIG_SRC_FLAG, err, sizeof(err)) != 0)
		fail_msg("%s", err);
}

/*
 * A message.max.bytes over the consumer's 4 MiB fetch.max.bytes raises it,
 * as librdkafka would have had the key not been set; an explicit
 * fetch.max.bytes stays, and kconf_check then refuses the pair, as a
 * client would once started, without a broker to connect to.
 */
static void test_fetch_follows_message_max(void **state)
{
	char errstr[512] = "";
	struct config *cfg = config_new();
	rd_kafka_conf_t *conf;

	(void)state;
	assert_non_null(cfg);
	set_kafka(cfg, "kafka.message.max.bytes", "5000000");
	conf = build(cfg, KCONF_CONSUMER);
	assert_string_equal(property(conf, "fetch.max.bytes"), "5000000");
	assert_int_equal(kconf_check(conf, KCONF_CONSUMER, errstr, sizeof(errstr)), 0);
	rd_kafka_conf_destroy(conf);
	conf = build(cfg, KCONF_PRODUCER);
	assert_int_equal(kconf_check(conf, KCONF_PRODUCER, errstr, sizeof(errstr)), 0);
	rd_kafka_conf_destroy(conf);

	set_kafka(cfg, "kafka.fetch.max.bytes", "4194304");
	conf = build(cfg, KCONF_CONSUMER);
	assert_string_equal(property(conf, "fetch.max.bytes"), "4194304");
	assert_int_equal(kconf_check(conf, KCONF_CONSUMER, errstr, sizeof(errstr)), -1);
	assert_string_equal(errstr, "`fetch.max.bytes` must be >= `message.max.bytes`");
	/* The configuration checked is a copy: conf is still whole. */
	assert_string_equal(property(conf, "message.max.bytes"), "5000000");
	rd_kafka_conf_destroy(conf);
	config_destroy(cfg);
}

/* A file librdkafka cannot read is refused before any connection. */
static void test_check_reads_the_files(void **state)
{
	char errstr[512] = "";
	struct config *cfg = config_new();
	rd_kafka_conf_t *conf;

	(void)state;
	assert_non_null(cfg);
	set_kafka(cfg, "kafka.security.protocol", "ssl");
	set_kafka(cfg, "kafka.ssl.ca.location", "/nonexistent/ca.crt");
	set_kafka(cfg, "kafka.log_level", "0");
	conf = build(cfg, KCONF_PRODUCER);
	assert_int_equal(kconf_check(conf, KCONF_PRODUCER, errstr, sizeof(errstr)), -1);
	assert_non_null(strstr(errstr, "ssl.ca.location failed"));
	rd_kafka_conf_destroy(conf);
	config_destroy(cfg);
}

/*
 * librdkafka quotes a sasl.oauthbearer.config it cannot parse from the
 * word it stumbled on: each word of a secret, and its value, is masked.
 */
static void test_secret_words_are_redacted(void **state)
{
	char out[128];
	struct config *cfg = config_new();
	rd_kafka_conf_t *conf;

	(void)state;
	assert_non_null(cfg);
	set_kafka(cfg, "kafka.sasl.oauthbearer.config",
	          "principal=fc clientSecret=TopSecret99 x=y");
	conf = build(cfg, KCONF_CONSUMER);
	kconf_redact(
	    "Unrecognized sasl.oauthbearer.config beginning at: clientSecret=TopSecret99 x=y", out,
	    sizeof(out));
	assert_string_equal(out,
	                    "Unrecognized sasl.oauthbearer.config beginning at: <redacted> x=y");
	kconf_redact("token for TopSecret99", out, sizeof(out));
	assert_string_equal(out, "token for <redacted>");
	rd_kafka_conf_destroy(conf);
	config_destroy(cfg);
}

/*
 * librdkafka's lines lose every secret value: the longest match first, never
 * a letter of a mask already written (nor the mask itself, when it is a
 * secret), and a line too long is cut before a secret, never inside it.
 */
static void test_log_lines_are_redacted(void **state)
{
	char err[512], out[64], small[16], tiny[8];
	struct config *cfg = config_new();
	rd_kafka_conf_t *conf;

	(void)state;
	assert_non_null(cfg);
	assert_int_equal(
	    config_set(cfg, "kafka.sasl.password", "e", CONFIG_SRC_FLAG, err, sizeof(err)), 0);
	assert_int_equal(
	    config_set(cfg, "kafka.ssl.key.password", "connect", CONFIG_SRC_ENV, err, sizeof(err)),
	    0);
	/* A secret that is the mask itself once matched the mask it wrote, forever. */
	assert_int_equal(config_set(cfg, "kafka.ssl.keystore.password", "<redacted>",
	                            CONFIG_SRC_FILE, err, sizeof(err)),
	                 0);
	conf = build(cfg, KCONF_PRODUCER);

	kconf_redact("key=<redacted> next", out, sizeof(out));
	assert_string_equal(out, "k<redacted>y=<redacted> n<redacted>xt");
	kconf_redact("librdkafka connected to broker-1 ok", out, sizeof(out));
	assert_string_equal(out, "librdkafka <redacted><redacted>d to brok<redacted>r-1 ok");
	kconf_redact("xx connect yy", small, sizeof(small));
	assert_string_equal(small, "xx <redacted> y");
	kconf_redact("ab connect", tiny, sizeof(tiny));
	assert_string_equal(tiny, "ab ");
	kconf_redact("no secret", out, sizeof(out));
	assert_string_equal(out, "no s<redacted>cr<redacted>t");

	rd_kafka_conf_destroy(conf);
	config_destroy(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_consumer_defaults),
	    cmocka_unit_test(test_workers_share_the_prefetch),
	    cmocka_unit_test(test_workers_get_their_own_instance_id),
	    cmocka_unit_test(test_user_keys_win),
	    cmocka_unit_test(test_fetch_follows_message_max),
	    cmocka_unit_test(test_check_reads_the_files),
	    cmocka_unit_test(test_secret_words_are_redacted),
	    cmocka_unit_test(test_log_lines_are_redacted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
