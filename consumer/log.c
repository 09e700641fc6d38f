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
/* The consumer a thread runs, on each of its lines; -1: none. */
static _Thread_local int worker = -1;

void log_set_worker(int w)
{
	worker = w;
}

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

size_t log_utf8_clean(const char *in, char *out, size_t size)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;

	if (size == 0)
		return 0;
	while (*p) {
		size_t len = 0;
		uint32_t cp = 0, min = 0;

		if (p[0] < 0x80)
			len = 1, cp = p[0];
		else if ((p[0] & 0xe0) == 0xc0)
			len = 2, cp = p[0] & 0x1f, min = 0x80;
		else if ((p[0] & 0xf0) == 0xe0)
			len = 3, cp = p[0] & 0x0f, min = 0x800;
		else if ((p[0] & 0xf8) == 0xf0)
			len = 4, cp = p[0] & 0x07, min = 0x10000;
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80) {
				len = 0;
				break;
			}
			cp = cp << 6 | (p[i] & 0x3f);
		}
		/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid too.
		 */
		if (len > 1 && (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
			len = 0;
		const char *src = len ? (const char *)p : replacement;
		size_t take = len ? len : 3;

		if (n + take >= size)
			break;
		memcpy(out + n, src, take);
		n += take;
		p += len ? len : 1;
	}
	out[n] = '\0';
	return n;
}

/* Control characters as \n, \t, \r or \xNN, so that a text line stays one line. */
static void escape_controls(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && n + 5 < size; p++) {
		if (*p >= 0x20 && *p != 0x7f)
			out[n++] = (char)*p;
		else if (*p == '\n')
			n += (size_t)snprintf(out + n, size - n, "\\n");
		else if (*p == '\t')
			n += (size_t)snprintf(out + n, size - n, "\\t");
		else if (*p == '\r')
			n += (size_t)snprintf(out + n, size - n, "\\r");
		else
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", *p);
	}
	out[n] = '\0';
}

static void write_json(enum log_level level, const struct log_ctx *ctx, const char *ts,
                       const char *msg)
{
	json_t *obj = json_object();
	if (!obj)
		return;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level_names[level]));
	/* msg is valid UTF-8 already; jansson escapes quotes and control characters. */
	json_object_set_new(obj, "msg", json_string(msg));
	if (worker >= 0)
		json_object_set_new(obj, "worker", json_integer(worker));
	if (ctx && ctx->topic) {
		char topic[1024];

		log_utf8_clean(ctx->topic, topic, sizeof(topic));
		json_object_set_new(obj, "topic", json_string(topic));
		json_object_set_new(obj, "partition", json_integer(ctx->partition));
		json_object_set_new(obj, "offset", json_integer(ctx->offset));
	}
	if (ctx && ctx->event_id && ctx->event_id[0]) {
		char id[1024];

		log_utf8_clean(ctx->event_id, id, sizeof(id));
		json_object_set_new(obj, "event_id", json_string(id));
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
	if (worker >= 0 && len < sizeof(line) - 1) {
		n = snprintf(line + len, sizeof(line) - len, " worker=%d", worker);
		if (n > 0)
			len = len + (size_t)n < sizeof(line) ? len + (size_t)n : sizeof(line) - 1;
	}
	if (ctx && ctx->topic && len < sizeof(line) - 1) {
		n = snprintf(line + len, sizeof(line) - len, " [%s/%d@%lld]", ctx->topic,
		             (int)ctx->partition, (long long)ctx->offset);
		if (n > 0)
			len = len + (size_t)n < sizeof(line) ? len + (size_t)n : sizeof(line) - 1;
	}
	if (ctx && ctx->event_id && ctx->event_id[0] && len < sizeof(line) - 1) {
		/* The id comes from the event: as untrusted as the message's bytes. */
		char clean[1024], id[4 * sizeof(clean)];

		log_utf8_clean(ctx->event_id, clean, sizeof(clean));
		escape_controls(clean, id, sizeof(id));
		n = snprintf(line + len, sizeof(line) - len, " event_id=%s", id);
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
	char raw[4096], msg[3 * sizeof(raw)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* A message may quote bytes of a bad event: keep them visible, never break the line. */
	log_utf8_clean(raw, msg, sizeof(msg));

	char ts[40];
	format_time(ts, sizeof(ts));
	if (as_json) {
		write_json(level, ctx, ts, msg);
	} else {
		char text[8192];

		escape_controls(msg, text, sizeof(text));
		write_text(level, ctx, ts, text);
	}
}
