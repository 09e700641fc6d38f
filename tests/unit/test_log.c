/*
 * Log lines as a collector reads them: one JSON object per line with ts,
 * level, msg and the Kafka context, whatever bytes a bad message put in
 * the text; in text form, still one line.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

/* Runs one log_write with stderr sent to a file; returns what was written. */
static char *capture(enum log_level level, const struct log_ctx *ctx, const char *msg)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *out = calloc(1, 65536);
	size_t n;

	assert_non_null(f);
	dup2(fileno(f), STDERR_FILENO);
	log_write(level, ctx, "%s", msg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(out, 1, 65535, f);
	out[n] = '\0';
	fclose(f);
	return out;
}

static void test_utf8_clean(void **state)
{
	char out[64];

	(void)state;
	/* A stray 0xff byte becomes U+FFFD (ef bf bd); valid é (c3 a9) stays. */
	assert_int_equal(log_utf8_clean("a\xff\xc3\xa9", out, sizeof(out)), 1 + 3 + 2);
	assert_string_equal(out, "a\xef\xbf\xbd\xc3\xa9");
	/* A surrogate (ed a0 80): the lead byte and each lone continuation byte, 3 x 3 bytes. */
	assert_int_equal(log_utf8_clean("\xed\xa0\x80", out, sizeof(out)), 9);
	assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	/* Overlong '/' (c0 af) and a sequence cut short by the end (c3). */
	assert_string_equal((log_utf8_clean("\xc0\xaf", out, sizeof(out)), out),
	                    "\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal((log_utf8_clean("x\xc3", out, sizeof(out)), out), "x\xef\xbf\xbd");
	/* Past U+10FFFF (f4 90 80 80): four replacements. */
	assert_int_equal(log_utf8_clean("\xf4\x90\x80\x80", out, sizeof(out)), 12);
	/* Cut at a character, never inside one: 3 bytes of room hold "a" only. */
	assert_int_equal(log_utf8_clean("a\xc3\xa9", out, 3), 1);
	assert_string_equal(out, "a");
}

static void test_json_line(void **state)
{
	struct log_ctx ctx = {"feedback.sms", 3, 42, "ev-\"1\""};
	json_error_t err;
	json_t *obj;
	char *line;

	(void)state;
	log_setup(LOG_INFO, LOG_FORMAT_JSON);
	line = capture(LOG_WARN, &ctx, "bad \"value\"\n\tnext\x01 \xff end");
	/* Exactly one line, and JSON escapes in it rather than raw control bytes. */
	assert_non_null(strchr(line, '\n'));
	assert_int_equal(strchr(line, '\n')[1], '\0');
	assert_non_null(
	    strstr(line, "\"msg\":\"bad \\\"value\\\"\\n\\tnext\\u0001 \xef\xbf\xbd end\""));
	obj = json_loads(line, 0, &err);
	if (obj == NULL)
		fail_msg("not JSON (%s): %s", err.text, line);
	assert_string_equal(json_string_value(json_object_get(obj, "level")), "warn");
	assert_int_equal(strlen(json_string_value(json_object_get(obj, "ts"))),
	                 strlen("2026-11-20T10:00:00.000Z"));
	assert_string_equal(json_string_value(json_object_get(obj, "topic")), "feedback.sms");
	assert_int_equal(json_integer_value(json_object_get(obj, "partition")), 3);
	assert_int_equal(json_integer_value(json_object_get(obj, "offset")), 42);
	assert_string_equal(json_string_value(json_object_get(obj, "event_id")), "ev-\"1\"");
	json_decref(obj);
	free(line);

	/* Below the threshold: nothing at all. */
	line = capture(LOG_DEBUG, NULL, "quiet");
	assert_string_equal(line, "");
	free(line);
}

static void test_text_line(void **state)
{
	struct log_ctx ctx = {"feedback.email", 0, 7, NULL};
	char *line;

	(void)state;
	log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
	line = capture(LOG_INFO, &ctx, "two\nlines\x1b[31m");
	/* The newline and the escape byte are spelled out; the line ends once. */
	assert_non_null(strstr(line, " info  two\\nlines\\x1b[31m [feedback.email/0@7]\n"));
	assert_int_equal(strchr(line, '\n')[1], '\0');
	free(line);

	/* An event id is the event's own bytes: spelled out the same way. */
	ctx.event_id = "id\n2026-01-01T00:00:00Z error  forged\x07";
	line = capture(LOG_INFO, &ctx, "rejected");
	assert_non_null(strstr(line, " rejected [feedback.email/0@7] "
	                             "event_id=id\\n2026-01-01T00:00:00Z error  forged\\x07\n"));
	assert_int_equal(strchr(line, '\n')[1], '\0');
	free(line);
}

/* A consumer thread of several tags its lines; another thread's stay untagged. */
static void *log_from_thread(void *arg)
{
	return capture(LOG_INFO, NULL, arg);
}

static void test_worker_tag(void **state)
{
	pthread_t t;
	void *other;
	char *line;

	(void)state;
	log_setup(LOG_INFO, LOG_FORMAT_JSON);
	log_set_worker(1);
	line = capture(LOG_INFO, NULL, "assigned");
	assert_non_null(strstr(line, "\"msg\":\"assigned\",\"worker\":1}\n"));
	free(line);
	log_setup(LOG_INFO, LOG_FORMAT_TEXT);
	line = capture(LOG_INFO, NULL, "assigned");
	assert_non_null(strstr(line, " info  assigned worker=1\n"));
	free(line);
	assert_int_equal(pthread_create(&t, NULL, log_from_thread, "elsewhere"), 0);
	assert_int_equal(pthread_join(t, &other), 0);
	assert_non_null(strstr(other, " info  elsewhere\n"));
	free(other);
	log_set_worker(-1);
	line = capture(LOG_INFO, NULL, "assigned");
	assert_non_null(strstr(line, " info  assigned\n"));
	free(line);
}

/* log_setup(level, LOG_FORMAT_AUTO) with stderr on fd for the moment. */
static void setup_auto_on(int fd)
{
	int saved = dup(STDERR_FILENO);

	dup2(fd, STDERR_FILENO);
	log_setup(LOG_INFO, LOG_FORMAT_AUTO);
	dup2(saved, STDERR_FILENO);
	close(saved);
}

/* log.format=auto: text when stderr is a terminal at setup, JSON otherwise. */
static void test_auto_format(void **state)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY), slave;
	FILE *f = tmpfile();
	char *line;

	(void)state;
	assert_true(master >= 0);
	assert_non_null(f);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	setup_auto_on(slave);
	close(slave);
	close(master);
	line = capture(LOG_INFO, NULL, "on a terminal");
	assert_non_null(strstr(line, " info  on a terminal\n"));
	assert_int_equal(line[0] == '{', 0);
	free(line);

	/* A file or a pipe, as in a container. */
	setup_auto_on(fileno(f));
	fclose(f);
	line = capture(LOG_INFO, NULL, "in a pod");
	assert_int_equal(line[0], '{');
	assert_non_null(strstr(line, "\"msg\":\"in a pod\""));
	free(line);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8_clean), cmocka_unit_test(test_json_line),
	    cmocka_unit_test(test_text_line),  cmocka_unit_test(test_auto_format),
	    cmocka_unit_test(test_worker_tag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
