/*
 * log.h - one line per event on stderr: a JSON object, or plain text when
 * stderr is a terminal. Every line carries its level and, where known, the
 * Kafka context (topic, partition, offset, event id).
 */
#ifndef FC_LOG_H
#define FC_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_AUTO, LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

/* Where a line is about; a NULL topic or event_id is left out. */
struct log_ctx {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const char *event_id;
};

/* Sets the threshold and the format (AUTO: text on a terminal, else JSON). */
void log_setup(enum log_level level, enum log_format format);
/* Tags the calling thread's lines with consumer number w ("worker"); -1 stops. */
void log_set_worker(int w);
/* "debug", "info", "warn", "error" to a level; -1 when unknown. */
int log_level_parse(const char *s);
/* True when lines of level would be written. */
bool log_enabled(enum log_level level);

/* Writes one line; ctx may be NULL. Thread-safe (one write(2) per line). */
void log_write(enum log_level level, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Copies in to out (size bytes, always terminated, cut at a character
 * boundary) with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD. Returns the length written.
 */
size_t log_utf8_clean(const char *in, char *out, size_t size);

#define log_debug(...) log_write(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, NULL, __VA_ARGS__)

#endif
