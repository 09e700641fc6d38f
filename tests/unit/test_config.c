#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A secret that no error message or printed configuration may contain. */
#define SECRET "hunter2-Zq9"

static struct config *cfg;
static char err[1024];
static char temp_paths[8][64];
static int n_temp;

static int setup(void **state)
{
	(void)state;
	cfg = config_new();
	assert_non_null(cfg);
	err[0] = '\0';
	n_temp = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	config_destroy(cfg);
	cfg = NULL;
	for (int i = 0; i < n_temp; i++)
		unlink(temp_paths[i]);
	return 0;
}

/* A file in the working directory holding content; removed by teardown. */
static const char *temp_file(const char *content)
{
	char *path = temp_paths[n_temp];

	assert_true(n_temp < (int)ARRAY_SIZE(temp_paths));
	strcpy(path, "fc-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	n_temp++;
	size_t n = strlen(content);
	assert_int_equal(write(fd, content, n), (ssize_t)n);
	close(fd);
	return path;
}

/* config_load with argv (NULL-terminated, argv[0] included) and envp. */
static int load(char **argv, char **envp)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	err[0] = '\0';
	return config_load(cfg, argc, argv, envp, err, sizeof(err));
}

static int set(const char *key, const char *value)
{
	err[0] = '\0';
	return config_set(cfg, key, value, CONFIG_SRC_FLAG, err, sizeof(err));
}

/* Everything config_print writes, malloc'd. */
static char *printed(void)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	assert_non_null(f);
	config_print(cfg, f);
	fclose(f);
	assert_non_null(buf);
	return buf;
}

/* The printed line of key, without its newline, in a static buffer. */
static const char *printed_line(const char *key)
{
	static char line[1024];
	char *all = printed(), *p = all;
	size_t klen = strlen(key);

	line[0] = '\0';
	while (*p) {
		size_t n = strcspn(p, "\n");
		if (n > klen + 3 && strncmp(p, key, klen) == 0 &&
		    strncmp(p + klen, " = ", 3) == 0) {
			assert_true(n < sizeof(line));
			memcpy(line, p, n);
			line[n] = '\0';
			break;
		}
		p += n + (p[n] == '\n');
	}
	free(all);
	return line;
}

static void assert_no_secret(const char *s)
{
	if (strstr(s, SECRET))
		fail_msg("the secret leaked: %s", s);
}

static void test_defaults(void **state)
{
	(void)state;
	assert_string_equal(config_get(cfg, "batch.max.events"), "5000");
	assert_int_equal(config_get_int(cfg, "batch.max.events"), 5000);
	assert_int_equal(config_get_int(cfg, "batch.linger"), 20);
	assert_int_equal(config_get_int(cfg, "database.retry.max"), 30000);
	assert_int_equal(config_get_int(cfg, "database.check.interval"), 5000);
	assert_string_equal(config_get(cfg, "database.schema"), "feedback");
	assert_string_equal(config_get(cfg, "database.url"), "");
	assert_int_equal(config_get_int(cfg, "http.port"), 8080);
	assert_string_equal(config_get(cfg, "kafka.bootstrap.servers"), "localhost:9092");
	assert_string_equal(config_get(cfg, "kafka.group.id"), "feedback-consumer");
	assert_string_equal(config_get(cfg, "log.format"), "auto");
	assert_string_equal(config_get(cfg, "log.level"), "info");
	assert_string_equal(config_get(cfg, "offset.reset"), "earliest");
	/* 24 h, 7 d and 30 d in milliseconds. */
	assert_int_equal(config_get_int(cfg, "recovery.cooldown"), 86400000);
	assert_int_equal(config_get_int(cfg, "recovery.outbox.retention"), 604800000);
	assert_int_equal(config_get_int(cfg, "recovery.repeat.window"), 2592000000LL);
	assert_int_equal(config_get_int(cfg, "recovery.critical.nps.max"), 3);
	assert_true(config_get_bool(cfg, "recovery.enabled"));
	assert_int_equal(config_get_int(cfg, "sla.seconds"), 90);
	assert_string_equal(config_get(cfg, "topic.sms"), "feedback.sms");
	assert_string_equal(config_get(cfg, "topic.email"), "feedback.email");
	assert_string_equal(config_get(cfg, "topic.phone"), "feedback.phone");
	assert_string_equal(config_get(cfg, "topic.social"), "feedback.social");
	assert_string_equal(config_get(cfg, "topic.recovery"), "feedback.recovery");
	assert_string_equal(config_get(cfg, "topic.dlq"), "feedback.dlq");
	/* An undeclared kafka.* key is simply unset. */
	assert_string_equal(config_get(cfg, "kafka.sasl.mechanism"), "");
	assert_string_equal(printed_line("log.level"), "log.level = info  # default");
	assert_string_equal(printed_line("batch.linger"), "batch.linger = 20ms  # default");
}

/* log.level from each source in turn: flag > env > file > default. */
static void test_precedence(void **state)
{
	const char *file = temp_file("log.level = warn\n");
	char config_flag[128];

	(void)state;
	snprintf(config_flag, sizeof(config_flag), "--config=%s", file);
	char *argv_none[] = {"feedback-consumer", NULL};
	char *argv_file[] = {"feedback-consumer", config_flag, NULL};
	char *argv_all[] = {"feedback-consumer", config_flag, "--log.level=debug", NULL};
	char *env_none[] = {NULL};
	char *env_level[] = {"FEEDBACK_LOG_LEVEL=error", NULL};

	assert_int_equal(load(argv_none, env_none), 0);
	assert_string_equal(printed_line("log.level"), "log.level = info  # default");
	assert_int_equal(load(argv_file, env_none), 0);
	assert_string_equal(printed_line("log.level"), "log.level = warn  # file");
	assert_int_equal(load(argv_file, env_level), 0);
	assert_string_equal(printed_line("log.level"), "log.level = error  # env");
	assert_int_equal(load(argv_all, env_level), 0);
	assert_string_equal(printed_line("log.level"), "log.level = debug  # flag");
	assert_string_equal(config_get(cfg, "log.level"), "debug");

	/* The same order within one fresh load. */
	config_destroy(cfg);
	cfg = config_new();
	assert_int_equal(load(argv_all, env_level), 0);
	assert_string_equal(printed_line("log.level"), "log.level = debug  # flag");
	config_destroy(cfg);
	cfg = config_new();
	char *argv_flag_only[] = {"feedback-consumer", "--log.level", "warn", NULL};
	assert_int_equal(load(argv_flag_only, env_level), 0);
	assert_string_equal(printed_line("log.level"), "log.level = warn  # flag");
}

static void test_config_file_locations(void **state)
{
	const char *a = temp_file("sla.seconds = 30\n");
	const char *b = temp_file("sla.seconds = 45\n");
	char env_a[128];

	(void)state;
	snprintf(env_a, sizeof(env_a), "FEEDBACK_CONFIG=%s", a);
	char *env[] = {env_a, NULL};
	char *argv_env[] = {"feedback-consumer", NULL};
	assert_int_equal(load(argv_env, env), 0);
	assert_int_equal(config_get_int(cfg, "sla.seconds"), 30);
	/* --config PATH wins over FEEDBACK_CONFIG. */
	char *argv_flag[] = {"feedback-consumer", "--config", (char *)b, NULL};
	assert_int_equal(load(argv_flag, env), 0);
	assert_int_equal(config_get_int(cfg, "sla.seconds"), 45);
	/* A missing file is an error that names it. */
	char *argv_missing[] = {"feedback-consumer", "--config=no-such-file.conf", NULL};
	assert_int_equal(load(argv_missing, env), -1);
	assert_string_equal(
	    err, "cannot read config file 'no-such-file.conf': No such file or directory");
}

static void test_flag_forms(void **state)
{
	char *eq[] = {"feedback-consumer", "--batch.max.events=250", NULL};
	char *sep[] = {"feedback-consumer", "--batch.max.events", "260", NULL};
	char *url[] = {"feedback-consumer", "--database.url=host=db port=5433", NULL};
	char *missing[] = {"feedback-consumer", "--sla.seconds=20", "--log.level", NULL};
	char *positional[] = {"feedback-consumer", "run", NULL};
	char *dashes[] = {"feedback-consumer", "--", NULL};
	char *env[] = {NULL};

	(void)state;
	assert_int_equal(load(eq, env), 0);
	assert_int_equal(config_get_int(cfg, "batch.max.events"), 250);
	assert_int_equal(load(sep, env), 0);
	assert_int_equal(config_get_int(cfg, "batch.max.events"), 260);
	assert_string_equal(printed_line("batch.max.events"), "batch.max.events = 260  # flag");
	/* Only the first '=' separates. */
	assert_int_equal(load(url, env), 0);
	assert_string_equal(config_get(cfg, "database.url"), "host=db port=5433");
	assert_int_equal(load(missing, env), -1);
	assert_string_equal(err, "flag '--log.level' needs a value");
	assert_int_equal(load(positional, env), -1);
	assert_string_equal(err, "unexpected argument 'run'");
	assert_int_equal(load(dashes, env), -1);
	assert_string_equal(err, "unexpected argument '--'");
}

static void test_int(void **state)
{
	static const struct {
		const char *key, *value;
		int ok;
		int64_t want;
	} c[] = {
	    {"batch.max.events", "1", 1, 1},
	    {"batch.max.events", "1000000", 1, 1000000},
	    {"batch.max.events", "0", 0, 0},
	    {"batch.max.events", "1000001", 0, 0},
	    {"batch.max.events", "+7", 1, 7},
	    {"batch.max.events", "", 0, 0},
	    {"batch.max.events", "abc", 0, 0},
	    {"batch.max.events", " 5", 0, 0},
	    {"batch.max.events", "5 ", 0, 0},
	    {"batch.max.events", "1e3", 0, 0},
	    {"batch.max.events", "0x10", 0, 0},
	    {"batch.max.events", "2.5", 0, 0},
	    {"batch.max.events", "99999999999999999999", 0, 0},
	    {"consumer.workers", "1", 1, 1},
	    {"consumer.workers", "16", 1, 16},
	    {"consumer.workers", "0", 0, 0},
	    {"consumer.workers", "17", 0, 0},
	    {"http.port", "0", 1, 0},
	    {"http.port", "65535", 1, 65535},
	    {"http.port", "65536", 0, 0},
	    {"http.port", "-1", 0, 0},
	    {"recovery.critical.nps.max", "-1", 1, -1},
	    {"recovery.critical.nps.max", "-2", 0, 0},
	    {"recovery.critical.nps.max", "10", 1, 10},
	    {"recovery.critical.nps.max", "11", 0, 0},
	    {"sla.seconds", "86400", 1, 86400},
	    {"sla.seconds", "86401", 0, 0},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		int rc = set(c[i].key, c[i].value);
		if ((rc == 0) != c[i].ok)
			fail_msg("%s = '%s': rc %d: %s", c[i].key, c[i].value, rc, err);
		if (c[i].ok)
			assert_int_equal(config_get_int(cfg, c[i].key), c[i].want);
	}
	assert_int_equal(set("batch.max.events", "0"), -1);
	assert_string_equal(
	    err, "'batch.max.events' must be an integer from 1 to 1000000, got '0' (flag)");
	/* A rejected value leaves the previous one. */
	assert_int_equal(set("batch.max.events", "42"), 0);
	assert_int_equal(set("batch.max.events", "x"), -1);
	assert_int_equal(config_get_int(cfg, "batch.max.events"), 42);
	assert_string_equal(config_get(cfg, "batch.max.events"), "42");
	/* librdkafka would take an empty group id, and fail only as it subscribes. */
	assert_int_equal(set("kafka.group.id", ""), -1);
	assert_string_equal(err, "'kafka.group.id' must not be empty, got '' (flag)");
}

static void test_bool(void **state)
{
	static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "On"};
	static const char *const no[] = {"false", "no", "off", "0", "FALSE", "No", "OFF"};
	static const char *const bad[] = {"", "2", "y", "n", "truee", "enabled", " true"};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		assert_int_equal(set("recovery.enabled", "false"), 0);
		assert_int_equal(set("recovery.enabled", yes[i]), 0);
		assert_true(config_get_bool(cfg, "recovery.enabled"));
		assert_int_equal(config_get_int(cfg, "recovery.enabled"), 1);
	}
	for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
		assert_int_equal(set("recovery.enabled", "true"), 0);
		assert_int_equal(set("recovery.enabled", no[i]), 0);
		assert_false(config_get_bool(cfg, "recovery.enabled"));
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (set("recovery.enabled", bad[i]) != -1)
			fail_msg("'%s' accepted as a boolean", bad[i]);
	assert_int_equal(config_set(cfg, "recovery.enabled", "y", CONFIG_SRC_ENV, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "'recovery.enabled' must be true or false, got 'y' (env)");
}

static void test_enum(void **state)
{
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	static const char *const bad[] = {"DEBUG", "warning", "", "inf", "info|warn", "info "};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(levels); i++) {
		assert_int_equal(set("log.level", levels[i]), 0);
		assert_string_equal(config_get(cfg, "log.level"), levels[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (set("log.level", bad[i]) != -1)
			fail_msg("'%s' accepted as a log level", bad[i]);
	assert_int_equal(set("log.format", "json"), 0);
	assert_int_equal(set("log.format", "text"), 0);
	assert_int_equal(set("log.format", "auto"), 0);
	assert_int_equal(set("offset.reset", "latest"), 0);
	assert_int_equal(set("offset.reset", "smallest"), -1);
	assert_int_equal(config_set(cfg, "log.level", "verbose", CONFIG_SRC_FILE, err, sizeof(err)),
	                 -1);
	assert_string_equal(
	    err, "'log.level' must be one of debug|info|warn|error, got 'verbose' (file)");
}

static void test_duration(void **state)
{
	static const struct {
		const char *key, *value;
		int ok;
		int64_t ms;
	} c[] = {
	    {"recovery.cooldown", "250ms", 1, 250},
	    {"recovery.cooldown", "90s", 1, 90000},
	    {"recovery.cooldown", "15m", 1, 900000},
	    {"recovery.cooldown", "24h", 1, 86400000},
	    {"recovery.cooldown", "30d", 1, 2592000000LL},
	    {"recovery.cooldown", "1500", 1, 1500},
	    {"recovery.cooldown", "0", 1, 0},
	    {"recovery.cooldown", "0s", 1, 0},
	    {"recovery.cooldown", "366d", 1, 31622400000LL},
	    {"recovery.cooldown", "367d", 0, 0},
	    {"recovery.cooldown", "5w", 0, 0},
	    {"recovery.cooldown", "5 s", 0, 0},
	    {"recovery.cooldown", "5S", 0, 0},
	    {"recovery.cooldown", "5sec", 0, 0},
	    {"recovery.cooldown", "5mss", 0, 0},
	    {"recovery.cooldown", "1.5s", 0, 0},
	    {"recovery.cooldown", "-5s", 0, 0},
	    {"recovery.cooldown", "s", 0, 0},
	    {"recovery.cooldown", "ms", 0, 0},
	    {"recovery.cooldown", "", 0, 0},
	    {"recovery.cooldown", " 5s", 0, 0},
	    {"recovery.cooldown", "5s ", 0, 0},
	    {"recovery.cooldown", "9223372036854775807d", 0, 0},
	    {"recovery.cooldown", "99999999999999999999", 0, 0},
	    /* batch.linger: 0 to 60000 ms */
	    {"batch.linger", "60s", 1, 60000},
	    {"batch.linger", "1m", 1, 60000},
	    {"batch.linger", "60000", 1, 60000},
	    {"batch.linger", "60001ms", 0, 0},
	    {"batch.linger", "61s", 0, 0},
	    /* database.retry.max: 100 ms to a day */
	    {"database.retry.max", "100ms", 1, 100},
	    {"database.retry.max", "99ms", 0, 0},
	    {"database.retry.max", "1d", 1, 86400000},
	    {"database.retry.max", "25h", 0, 0},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		int rc = set(c[i].key, c[i].value);
		if ((rc == 0) != c[i].ok)
			fail_msg("%s = '%s': rc %d: %s", c[i].key, c[i].value, rc, err);
		if (c[i].ok)
			assert_int_equal(config_get_int(cfg, c[i].key), c[i].ms);
	}
	assert_int_equal(set("batch.linger", "61s"), -1);
	assert_string_equal(err, "'batch.linger' must be a duration such as 250ms, 90s, 15m, 24h "
	                         "or 30d, from 0 to 60000 ms, got '61s' (flag)");
	/* The value is kept as written. */
	assert_int_equal(set("recovery.cooldown", "15m"), 0);
	assert_string_equal(config_get(cfg, "recovery.cooldown"), "15m");
}

static void test_validated_strings(void **state)
{
	char name[300];

	(void)state;
	assert_int_equal(set("database.schema", "feedback_2"), 0);
	assert_int_equal(set("database.schema", "_x"), 0);
	assert_int_equal(set("database.schema", "Feedback"), -1);
	assert_string_equal(err, "'database.schema' must match [a-z_][a-z0-9_]{0,62}, got "
	                         "'Feedback' (flag)");
	assert_int_equal(set("database.schema", "1abc"), -1);
	assert_int_equal(set("database.schema", ""), -1);
	assert_int_equal(set("database.schema", "a-b"), -1);
	assert_int_equal(set("database.schema", "a;drop"), -1);
	memset(name, 'a', 63);
	name[63] = '\0';
	assert_int_equal(set("database.schema", name), 0);
	name[63] = 'a';
	name[64] = '\0';
	assert_int_equal(set("database.schema", name), -1);

	assert_int_equal(set("topic.sms", "a.b-c_D9"), 0);
	assert_int_equal(set("topic.sms", "bad topic"), -1);
	assert_int_equal(set("topic.dlq", ""), -1);
	assert_int_equal(set("topic.recovery", "x/y"), -1);
	memset(name, 't', 249);
	name[249] = '\0';
	assert_int_equal(set("topic.email", name), 0);
	name[249] = 't';
	name[250] = '\0';
	assert_int_equal(set("topic.email", name), -1);
	/* Free text keys take anything. */
	assert_int_equal(set("report.from", "2026-03-01 00:00+00"), 0);
}

/* Each topic under one setting only: a channel is known by its topic. */
static void test_topics_distinct(void **state)
{
	char *argv_same[] = {"feedback-consumer", "--topic.social=feedback.sms", NULL};
	char *argv_dlq[] = {"feedback-consumer", "--topic.recovery=dead", NULL};
	char *argv_swap[] = {"feedback-consumer", "--topic.sms=feedback.email",
	                     "--topic.email=feedback.sms", NULL};
	char *env_dlq[] = {"FEEDBACK_TOPIC_DLQ=dead", NULL};
	char *env_none[] = {NULL};

	(void)state;
	assert_int_equal(load(argv_same, env_none), -1);
	assert_string_equal(err, "'topic.sms' and 'topic.social' name the same topic "
	                         "\"feedback.sms\"");
	config_destroy(cfg);
	cfg = config_new();
	assert_int_equal(load(argv_dlq, env_dlq), -1);
	assert_string_equal(err, "'topic.dlq' and 'topic.recovery' name the same topic \"dead\"");
	config_destroy(cfg);
	cfg = config_new();
	assert_int_equal(load(argv_swap, env_none), 0);
	assert_string_equal(config_get(cfg, "topic.sms"), "feedback.email");
}

/* Each source is named in the error, with the variable or the file line. */
static void test_error_names_key_and_source(void **state)
{
	const char *file = temp_file("# settings\n\nsla.seconds = 30\nhttp.port = http\n");
	char config_flag[128], want[256];

	(void)state;
	snprintf(config_flag, sizeof(config_flag), "--config=%s", file);
	char *argv_file[] = {"feedback-consumer", config_flag, NULL};
	char *argv_none[] = {"feedback-consumer", NULL};
	char *argv_flag[] = {"feedback-consumer", "--http.port=70000", NULL};
	char *env_none[] = {NULL};
	char *env_bad[] = {"FEEDBACK_HTTP_PORT=eighty", NULL};

	assert_int_equal(load(argv_file, env_none), -1);
	snprintf(want, sizeof(want),
	         "%s:4: 'http.port' must be an integer from 0 to 65535, got 'http' (file)", file);
	assert_string_equal(err, want);
	assert_int_equal(load(argv_none, env_bad), -1);
	assert_string_equal(err, "'http.port' must be an integer from 0 to 65535, got 'eighty' "
	                         "(env) (from FEEDBACK_HTTP_PORT)");
	assert_int_equal(load(argv_flag, env_none), -1);
	assert_string_equal(err,
	                    "'http.port' must be an integer from 0 to 65535, got '70000' (flag)");
}

static void test_file_syntax(void **state)
{
	const char *file = temp_file("# a comment\n"
	                             "   \n"
	                             "  sla.seconds=15  \n"
	                             "\tlog.level =   warn\n"
	                             "database.url = \"host=db password='x y'\"\n"
	                             "kafka.client.id = fc-1 # not a comment\n"
	                             "  # indented comment\n");
	const char *bad = temp_file("sla.seconds = 15\nlog.level warn\n");
	const char *unknown = temp_file("no.such.key = 1\n");
	char flag[128], want[256];

	(void)state;
	snprintf(flag, sizeof(flag), "--config=%s", file);
	char *argv[] = {"feedback-consumer", flag, NULL};
	char *env[] = {NULL};
	assert_int_equal(load(argv, env), 0);
	assert_int_equal(config_get_int(cfg, "sla.seconds"), 15);
	assert_string_equal(config_get(cfg, "log.level"), "warn");
	assert_string_equal(config_get(cfg, "database.url"), "host=db password='x y'");
	assert_string_equal(config_get(cfg, "kafka.client.id"), "fc-1 # not a comment");

	snprintf(flag, sizeof(flag), "--config=%s", bad);
	assert_int_equal(load(argv, env), -1);
	snprintf(want, sizeof(want), "%s:2: expected 'key = value'", bad);
	assert_string_equal(err, want);

	snprintf(flag, sizeof(flag), "--config=%s", unknown);
	assert_int_equal(load(argv, env), -1);
	snprintf(want, sizeof(want), "%s:1: unknown setting 'no.such.key' (file)", unknown);
	assert_string_equal(err, want);
}

/* A value longer than any line buffer is read whole, not split into two lines. */
static void test_file_long_line(void **state)
{
	static char content[9000];
	char flag[128];

	(void)state;
	/* "kafka.client.id = " then 6000 'x' then "=y": 6020 bytes on one line. */
	strcpy(content, "kafka.client.id = ");
	size_t n = strlen(content);
	memset(content + n, 'x', 6000);
	strcpy(content + n + 6000, "=y\nsla.seconds = 12\n");
	const char *file = temp_file(content);
	snprintf(flag, sizeof(flag), "--config=%s", file);
	char *argv[] = {"feedback-consumer", flag, NULL};
	char *env[] = {NULL};
	if (load(argv, env) != 0)
		fail_msg("%.200s", err);
	assert_int_equal(strlen(config_get(cfg, "kafka.client.id")), 6002);
	assert_int_equal(config_get_int(cfg, "sla.seconds"), 12);
}

static void test_unknown_keys(void **state)
{
	char *argv_unknown[] = {"feedback-consumer", "--no.such.key=1", NULL};
	char *argv_kafka_empty[] = {"feedback-consumer", "--kafka.=1", NULL};
	char *argv_none[] = {"feedback-consumer", NULL};
	char *env[] = {"PATH=/bin",
	               "FEEDBACK_NO_SUCH_KEY=1",
	               "FEEDBACK_CONSUMER_SERVICE_HOST=10.0.0.1",
	               "FEEDBACK_CONSUMER_PORT=tcp://10.0.0.1:8080",
	               "FEEDBACK_=x",
	               "FEEDBACK_SLA_SECONDS=60",
	               "feedback_log_level=debug",
	               NULL};

	(void)state;
	assert_int_equal(load(argv_unknown, env), -1);
	assert_string_equal(err, "unknown setting 'no.such.key' (flag)");
	assert_int_equal(load(argv_kafka_empty, env), -1);
	assert_string_equal(err, "unknown setting 'kafka.' (flag)");
	/* Unknown FEEDBACK_* variables are ignored; the known one applies. */
	assert_int_equal(load(argv_none, env), 0);
	assert_int_equal(config_get_int(cfg, "sla.seconds"), 60);
	assert_string_equal(config_get(cfg, "log.level"), "info");
	assert_int_equal(set("no.such.key", "1"), -1);
	assert_string_equal(err, "unknown setting 'no.such.key' (flag)");
}

struct collected {
	char text[1024];
	int calls;
	int stop_at;
};

static int collect(const char *name, const char *value, void *arg)
{
	struct collected *c = arg;
	size_t n = strlen(c->text);

	snprintf(c->text + n, sizeof(c->text) - n, "%s=%s;", name, value);
	c->calls++;
	return c->calls == c->stop_at ? 7 : 0;
}

/*
 * What Kubernetes gives a pod for Services named feedback-kafka-bootstrap
 * and feedback-http is not a setting; FEEDBACK_HTTP_PORT with a number is.
 */
static void test_service_links_ignored(void **state)
{
	char *argv[] = {"feedback-consumer", NULL};
	char *env[] = {"FEEDBACK_KAFKA_BOOTSTRAP_SERVICE_HOST=10.0.0.11",
	               "FEEDBACK_KAFKA_BOOTSTRAP_SERVICE_PORT=9092",
	               "FEEDBACK_KAFKA_BOOTSTRAP_SERVICE_PORT_TCP_CLIENTS=9092",
	               "FEEDBACK_KAFKA_BOOTSTRAP_PORT=tcp://10.0.0.11:9092",
	               "FEEDBACK_KAFKA_BOOTSTRAP_PORT_9092_TCP=tcp://10.0.0.11:9092",
	               "FEEDBACK_KAFKA_BOOTSTRAP_PORT_9092_TCP_PROTO=tcp",
	               "FEEDBACK_KAFKA_BOOTSTRAP_PORT_9092_TCP_PORT=9092",
	               "FEEDBACK_KAFKA_BOOTSTRAP_PORT_9092_TCP_ADDR=10.0.0.11",
	               "FEEDBACK_KAFKA_PORT_53_UDP_ADDR=10.0.0.12",
	               "FEEDBACK_KAFKA_PORT_9093_SCTP=sctp://10.0.0.12:9093",
	               "FEEDBACK_HTTP_PORT=udp://10.0.0.13:8080",
	               "FEEDBACK_KAFKA_CLIENT_ID=fc-7",
	               NULL};
	char *env_port[] = {"FEEDBACK_HTTP_PORT=9090", NULL};
	char *env_bad_port[] = {"FEEDBACK_HTTP_PORT=port-9090", NULL};
	struct collected got = {"", 0, 0};

	(void)state;
	if (load(argv, env) != 0)
		fail_msg("%.200s", err);
	assert_int_equal(config_each_kafka(cfg, collect, &got), 0);
	assert_string_equal(
	    got.text,
	    "bootstrap.servers=localhost:9092;client.id=fc-7;group.id=feedback-consumer;");
	assert_int_equal(config_get_int(cfg, "http.port"), 8080);
	assert_int_equal(load(argv, env_port), 0);
	assert_int_equal(config_get_int(cfg, "http.port"), 9090);
	/* Not a service link: still refused, naming the variable. */
	assert_int_equal(load(argv, env_bad_port), -1);
	assert_string_equal(err, "'http.port' must be an integer from 0 to 65535, got 'port-9090' "
	                         "(env) (from FEEDBACK_HTTP_PORT)");
}

static void test_kafka_passthrough(void **state)
{
	const char *file = temp_file("kafka.client.id = fc-1\n");
	char flag[128];
	struct collected c = {.stop_at = -1};

	(void)state;
	snprintf(flag, sizeof(flag), "--config=%s", file);
	char *argv[] = {"feedback-consumer", flag, "--kafka.sasl.mechanism=PLAIN",
	                "--kafka.debug=", NULL};
	char *env[] = {"FEEDBACK_KAFKA_SECURITY_PROTOCOL=sasl_ssl", NULL};
	assert_int_equal(load(argv, env), 0);
	/* In key order, prefix removed; the empty kafka.debug is not passed. */
	assert_int_equal(config_each_kafka(cfg, collect, &c), 0);
	assert_string_equal(c.text, "bootstrap.servers=localhost:9092;client.id=fc-1;"
	                            "group.id=feedback-consumer;sasl.mechanism=PLAIN;"
	                            "security.protocol=sasl_ssl;");
	assert_int_equal(c.calls, 5);
	assert_string_equal(printed_line("kafka.security.protocol"),
	                    "kafka.security.protocol = sasl_ssl  # env");
	assert_string_equal(printed_line("kafka.client.id"), "kafka.client.id = fc-1  # file");
	/* A non-zero return stops the walk and is returned. */
	struct collected stop = {.stop_at = 2};
	assert_int_equal(config_each_kafka(cfg, collect, &stop), 7);
	assert_int_equal(stop.calls, 2);
	assert_string_equal(stop.text, "bootstrap.servers=localhost:9092;client.id=fc-1;");
	/* Any value passes through unchecked: librdkafka validates its own. */
	assert_int_equal(set("kafka.fetch.wait.max.ms", "not-a-number"), 0);
	assert_string_equal(config_get(cfg, "kafka.fetch.wait.max.ms"), "not-a-number");
}

static void test_file_variables(void **state)
{
	const char *pw = temp_file(SECRET "\n");
	const char *url = temp_file("postgresql://fc:" SECRET "@db/feedback\r\n\n");
	const char *port = temp_file("9090");
	char big_content[6000];
	char env_pw[128], env_url[128], env_port[128], env_big[128];

	(void)state;
	/* 5000 bytes: more than one read. */
	memset(big_content, 'k', 5000);
	big_content[5000] = '\0';
	const char *big = temp_file(big_content);
	snprintf(env_pw, sizeof(env_pw), "FEEDBACK_KAFKA_SASL_PASSWORD_FILE=%s", pw);
	snprintf(env_url, sizeof(env_url), "FEEDBACK_DATABASE_URL_FILE=%s", url);
	snprintf(env_port, sizeof(env_port), "FEEDBACK_HTTP_PORT_FILE=%s", port);
	snprintf(env_big, sizeof(env_big), "FEEDBACK_KAFKA_SSL_KEY_PEM_FILE=%s", big);
	char *argv[] = {"feedback-consumer", NULL};
	char *env[] = {env_pw, env_url, env_port, env_big, NULL};

	assert_int_equal(load(argv, env), 0);
	/* Trailing newlines are not part of the value. */
	assert_string_equal(config_get(cfg, "kafka.sasl.password"), SECRET);
	assert_string_equal(config_get(cfg, "database.url"),
	                    "postgresql://fc:" SECRET "@db/feedback");
	assert_int_equal(config_get_int(cfg, "http.port"), 9090);
	assert_string_equal(config_get(cfg, "kafka.ssl.key.pem"), big_content);
	assert_string_equal(printed_line("http.port"), "http.port = 9090  # env");
	char *all = printed();
	assert_no_secret(all);
	free(all);

	char *env_missing[] = {"FEEDBACK_KAFKA_SASL_PASSWORD_FILE=no-such-secret-file", NULL};
	assert_int_equal(load(argv, env_missing), -1);
	assert_string_equal(err, "cannot read the file named by FEEDBACK_KAFKA_SASL_PASSWORD_FILE: "
	                         "No such file or directory");
}

static void test_secret_never_in_errors(void **state)
{
	char *env[] = {"FEEDBACK_DATABASE_PASSWORD=" SECRET, NULL};
	char *cases[][4] = {
	    /* an undeclared key that sounds like a password */
	    {"feedback-consumer", "--database.password=" SECRET, NULL, NULL},
	    {"feedback-consumer", "--database.password", SECRET, NULL},
	    /* one dash too few */
	    {"feedback-consumer", "-kafka.sasl.password=" SECRET, NULL, NULL},
	    {"feedback-consumer", "kafka.sasl.password=" SECRET, NULL, NULL},
	    /* a space after '=' leaves the secret as a stray argument */
	    {"feedback-consumer", "--kafka.sasl.password=", SECRET, NULL},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(load(cases[i], env), -1);
		assert_true(err[0] != '\0');
		assert_no_secret(err);
	}
	/* The errors still say what was wrong. */
	assert_int_equal(load(cases[0], env), -1);
	assert_string_equal(err, "unknown setting 'database.password' (flag)");
	assert_int_equal(load(cases[2], env), -1);
	assert_string_equal(err, "unexpected argument '-kafka.sasl.password=...'");
	assert_int_equal(load(cases[4], env), -1);
	assert_string_equal(err, "unexpected argument after '--kafka.sasl.password='");

	/* A file line without '=' is not echoed either. */
	const char *file = temp_file("kafka.sasl.password " SECRET "\n");
	char flag[128];
	snprintf(flag, sizeof(flag), "--config=%s", file);
	char *argv[] = {"feedback-consumer", flag, NULL};
	assert_int_equal(load(argv, env), -1);
	assert_no_secret(err);

	/* Nor one whose '=' comes after the secret: the "key" then holds it. */
	static const char *const lines[] = {
	    "database.url: postgresql://fc:" SECRET "@db/feedback?sslmode=require\n",
	    "kafka.sasl.password " SECRET "=x\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		snprintf(flag, sizeof(flag), "--config=%s", temp_file(lines[i]));
		assert_int_equal(load(argv, env), -1);
		assert_no_secret(err);
		assert_non_null(strstr(err, ":1: a setting's name is made of a-z, 0-9, '.', '_' "
		                            "and '-': this one is not (not shown, as it may hold a "
		                            "value) (file)"));
	}
}

/* libpq's parse errors quote the text they stumbled on: here the password. */
static void test_database_url_must_parse(void **state)
{
	static const struct {
		const char *url, *err;
	} c[] = {
	    {"postgres://fc:%zz" SECRET "@db/feedback",
	     "'database.url' is not a libpq connection string or URI: invalid percent-encoded "
	     "token: \"...\" (flag)"},
	    {"postgres://fc:" SECRET "%00@db/feedback",
	     "'database.url' is not a libpq connection string or URI: forbidden value %00 in "
	     "percent-encoded value: \"...\" (flag)"},
	    {"host=db " SECRET,
	     "'database.url' is not a libpq connection string or URI: missing \"...\" in "
	     "connection info string (flag)"},
	    /* a quote in the password: all between libpq's first and last quote goes */
	    {"postgresql://u:p\"" SECRET "%zzTAIL@h/db",
	     "'database.url' is not a libpq connection string or URI: invalid percent-encoded "
	     "token: \"...\" (flag)"},
	    {"postgresql://u:ab\"" SECRET "@[::1]x/db",
	     "'database.url' is not a libpq connection string or URI: unexpected character "
	     "\"...\" (flag)"},
	    /* libpq would read these passwords as a port, a host, a database name */
	    {"postgresql://fc:Ab3x/" SECRET "@db.example/feedback",
	     "'database.url' is a URI whose user name or password holds a '/', '?' or '@': "
	     "percent-encode them (%2F, %3F, %40) (flag)"},
	    {"postgresql://fc:Ab3x@" SECRET "@127.0.0.1/feedback",
	     "'database.url' is a URI whose user name or password holds a '/', '?' or '@': "
	     "percent-encode them (%2F, %3F, %40) (flag)"},
	    {"postgres://fc:" SECRET "/x@db/feedback?sslmode=require",
	     "'database.url' is a URI whose user name or password holds a '/', '?' or '@': "
	     "percent-encode them (%2F, %3F, %40) (flag)"},
	    {"host=db password='" SECRET,
	     "'database.url' is not a libpq connection string or URI: unterminated quoted "
	     "string in connection info string (flag)"},
	    {"host=db passwd=" SECRET,
	     "'database.url' is not a libpq connection string or URI: invalid connection "
	     "option \"...\" (flag)"},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		assert_int_equal(set("database.url", c[i].url), -1);
		if (strcmp(err, c[i].err) != 0)
			fail_msg("'%s': got \"%s\", want \"%s\"", c[i].url, err, c[i].err);
		assert_no_secret(err);
	}
	/* Both forms, and empty (the PG* variables), are accepted. */
	assert_int_equal(set("database.url", "postgres://fc:p%25ss@db:5432/feedback"), 0);
	assert_int_equal(set("database.url", "postgres://fc:a%2Fb%40c@db/feedback?user=x@y"), 0);
	assert_int_equal(set("database.url", "postgresql:///feedback?host=/run/postgresql"), 0);
	assert_int_equal(set("database.url", "host=db password='a b' dbname=feedback"), 0);
	assert_int_equal(set("database.url", ""), 0);
}

static void test_is_secret(void **state)
{
	static const char *const secret[] = {
	    "kafka.sasl.password",           "kafka.ssl.key.password",
	    "kafka.ssl.keystore.password",   "kafka.sasl.oauthbearer.client.secret",
	    "kafka.sasl.oauthbearer.config", "kafka.ssl.key.pem",
	    "kafka.sasl.jaas.config",        "kafka.sasl.oauthbearer.token",
	};
	static const char *const plain[] = {
	    "kafka.sasl.username",   "kafka.ssl.certificate.pem",
	    "kafka.ssl.ca.location", "kafka.bootstrap.servers",
	    "database.url",          "log.level",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(secret); i++)
		if (!config_is_secret(secret[i]))
			fail_msg("'%s' is not treated as a secret", secret[i]);
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++)
		if (config_is_secret(plain[i]))
			fail_msg("'%s' is treated as a secret", plain[i]);
}

static void test_print_redacts_secrets(void **state)
{
	char *argv[] = {"feedback-consumer",
	                "--kafka.sasl.password=" SECRET,
	                "--kafka.sasl.username=alice",
	                "--kafka.sasl.oauthbearer.client.secret=" SECRET,
	                "--kafka.ssl.key.pem=-----BEGIN " SECRET,
	                "--kafka.ssl.keystore.password=",
	                NULL};
	char *env[] = {"FEEDBACK_KAFKA_SSL_KEY_PASSWORD=" SECRET, NULL};

	(void)state;
	assert_int_equal(load(argv, env), 0);
	assert_string_equal(printed_line("kafka.sasl.password"),
	                    "kafka.sasl.password = <redacted>  # flag");
	assert_string_equal(printed_line("kafka.ssl.key.password"),
	                    "kafka.ssl.key.password = <redacted>  # env");
	assert_string_equal(printed_line("kafka.sasl.oauthbearer.client.secret"),
	                    "kafka.sasl.oauthbearer.client.secret = <redacted>  # flag");
	assert_string_equal(printed_line("kafka.ssl.key.pem"),
	                    "kafka.ssl.key.pem = <redacted>  # flag");
	/* An empty secret shows that it is empty. */
	assert_string_equal(printed_line("kafka.ssl.keystore.password"),
	                    "kafka.ssl.keystore.password =   # flag");
	assert_string_equal(printed_line("kafka.sasl.username"),
	                    "kafka.sasl.username = alice  # flag");
	assert_string_equal(printed_line("database.url"), "database.url =   # default");
	char *all = printed();
	assert_no_secret(all);
	/* Every line is "key = value  # source", in key order. */
	assert_non_null(strstr(all, "batch.linger = 20ms  # default\n"
	                            "batch.max.events = 5000  # default\n"));
	free(all);
}

static void test_print_masks_database_url(void **state)
{
	static const struct {
		const char *url, *shown;
	} c[] = {
	    /* URI form: shown as the keywords libpq reads from it, in libpq's order */
	    {"postgresql://u:" SECRET "@h/db", "user=u password=<redacted> dbname=db host=h"},
	    {"postgres://fc:" SECRET "@h1:5432,h2:5433/feedback?sslmode=require",
	     "user=fc password=<redacted> dbname=feedback host=h1,h2 port=5432,5433 "
	     "sslmode=require"},
	    {"postgresql://:" SECRET "@h/db", "password=<redacted> dbname=db host=h"},
	    {"postgresql://u@h:5432/db", "user=u dbname=db host=h port=5432"},
	    {"postgresql://h/db?password=" SECRET "&sslmode=require",
	     "password=<redacted> dbname=db host=h sslmode=require"},
	    {"postgresql://u:" SECRET "@h/db?password=" SECRET,
	     "user=u password=<redacted> dbname=db host=h"},
	    /* sslpassword unlocks the client key: as secret as password. */
	    {"postgresql://h/db?sslpassword=" SECRET "&password=" SECRET,
	     "password=<redacted> dbname=db host=h sslpassword=<redacted>"},
	    /* a keyword percent-encoded in the query is decoded by libpq */
	    {"postgresql://h/db?pass%77ord=" SECRET, "password=<redacted> dbname=db host=h"},
	    /* key=value form */
	    {"password=" SECRET, "password=<redacted>"},
	    {"host=db port=5432 password=" SECRET " dbname=fb",
	     "password=<redacted> dbname=fb host=db port=5432"},
	    {"host=db password = " SECRET, "password=<redacted> host=db"},
	    {"password='" SECRET " x\\' y' host=db", "password=<redacted> host=db"},
	    {"host=db\tpassword=" SECRET, "password=<redacted> host=db"},
	    {"host=db sslpassword=" SECRET " password=" SECRET,
	     "password=<redacted> host=db sslpassword=<redacted>"},
	    /* no space after a quoted value; an escaped space in an unquoted one */
	    {"host=h dbname='db'password=" SECRET, "password=<redacted> dbname=db host=h"},
	    {"password=" SECRET "\\ def", "password=<redacted>"},
	    {"host=db user=password", "user=password host=db"},
	    {"host=db dbname='my db' options='-c x=\\'y\\''",
	     "dbname='my db' host=db options='-c x=\\'y\\''"},
	};
	char want[512];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		assert_int_equal(set("database.url", c[i].url), 0);
		snprintf(want, sizeof(want), "database.url = %s  # flag", c[i].shown);
		const char *got = printed_line("database.url");
		if (strcmp(got, want) != 0)
			fail_msg("'%s': got \"%s\", want \"%s\"", c[i].url, got, want);
	}
}

static void test_help_lists_every_key(void **state)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	(void)state;
	assert_non_null(f);
	config_print_help(f);
	fclose(f);
	assert_non_null(strstr(buf, "settings:\n"));
	assert_non_null(strstr(buf, "  batch.max.events             integer  default '5000'\n"
	                            "      messages per transaction\n"));
	assert_non_null(strstr(buf, "  log.level                    choice   default 'info'\n"
	                            "      lowest level logged: debug|info|warn|error\n"));
	free(buf);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_defaults),
	    T(test_precedence),
	    T(test_config_file_locations),
	    T(test_flag_forms),
	    T(test_int),
	    T(test_bool),
	    T(test_enum),
	    T(test_duration),
	    T(test_validated_strings),
	    T(test_topics_distinct),
	    T(test_error_names_key_and_source),
	    T(test_file_syntax),
	    T(test_file_long_line),
	    T(test_unknown_keys),
	    T(test_kafka_passthrough),
	    T(test_file_variables),
	    T(test_secret_never_in_errors),
	    T(test_is_secret),
	    T(test_print_redacts_secrets),
	    T(test_print_masks_database_url),
	    T(test_database_url_must_parse),
	    T(test_service_links_ignored),
	    T(test_help_lists_every_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
