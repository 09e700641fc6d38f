#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level threshold = LOG_INFO;
static bool as_json = true;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, enum log_format format)
{
	threshold = level;
	if (format == LOG_FORMAT_AUTO)
		as_json = !isatty(STDERR_FILENO);
	else
		as_json = format == LOG_FORMAT_JSON;
}

int log_level_parse(const char *s)
{
	for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

bool log_enabled(enum log_level level)
{
	return level >= threshold;
}

static void format_time(char *buf, size_t size)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* One write(2) per line keeps lines whole when several threads log. */
static void emit(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, line, len);
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

static void write_json(enum log_level level, const struct log_ctx *ctx, const char *ts,
                       const char *msg)
{
	json_t *obj = json_object();
	if (!obj)
		return;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level_names[level]));
	/* jansson refuses invalid UTF-8; keep the line rather than drop it. */
	json_t *m = json_string(msg);
	json_object_set_new(obj, "msg", m ? m : json_string("(message was not valid UTF-8)"));
	if (ctx && ctx->topic) {
		json_object_set_new(obj, "topic", json_string(ctx->topic));
		json_object_set_new(obj, "partition", json_integer(ctx->partition));
		json_object_set_new(obj, "offset", json_integer(ctx->offset));
	}
	if (ctx && ctx->event_id && ctx->event_id[0]) {
		json_t *id = json_string(ctx->event_id);
		if (id)
			json_object_set_new(obj, "event_id", id);
	}
	char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (!line)
		return;
	size_t len = strlen(line);
	char *nl = realloc(line, len + 2);
	if (nl) {
		line = nl;
		line[len++] = '\n';
		line[len] = '\0';
	}
	emit(line, len);
	free(line);
}

static void write_text(enum log_level level, const struct log_ctx *ctx, const char *ts,
                       const char *msg)
{
	char line[4608];
	int n = snprintf(line, sizeof(line), "%s %-5s %s", ts, level_names[level], msg);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	if (ctx && ctx->topic && len < sizeof(line) - 1) {
		n = snprintf(line + len, sizeof(line) - len, " [%s/%d@%lld]", ctx->topic,
		             (int)ctx->partition, (long long)ctx->offset);
		if (n > 0)
			len = len + (size_t)n < sizeof(line) ? len + (size_t)n : sizeof(line) - 1;
	}
	if (ctx && ctx->event_id && ctx->event_id[0] && len < sizeof(line) - 1) {
		n = snprintf(line + len, sizeof(line) - len, " event_id=%s", ctx->event_id);
		if (n > 0)
			len = len + (size_t)n < sizeof(line) ? len + (size_t)n : sizeof(line) - 1;
	}
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	emit(line, len);
}

void log_write(enum log_level level, const struct log_ctx *ctx, const char *fmt, ...)
{
	if (level < threshold)
		return;
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	char ts[40];
	format_time(ts, sizeof(ts));
	if (as_json)
		write_json(level, ctx, ts, msg);
	else
		write_text(level, ctx, ts, msg);
}
