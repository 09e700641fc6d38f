/*
 * pgbuf.h - what db.c sends to PostgreSQL, built in one growable buffer:
 * COPY rows in the binary format, and text array literals for parameters.
 *
 * Binary COPY spares the server the parsing of every number and timestamp
 * (text COPY spent a third of the ledger's load on it), and the consumer
 * their formatting. Each field must have exactly the type of its column:
 * smallint is int2, integer int4, bigint int8; a migration that changes a
 * column's type changes the writer of its COPY too.
 *
 * Nothing fails on the way: out of memory sets oom, and a value that does
 * not fit its column sets range (the first one), for the caller to check
 * before it sends.
 */
#ifndef FC_PGBUF_H
#define FC_PGBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pgbuf {
	char *buf;
	size_t len, cap;
	bool oom;
	/* The first value that did not fit its column, or range_column NULL. */
	const char *range_column;
	int64_t range_value;
};

/* Empties the buffer (keeping its memory), and forgets oom and range. */
void pgbuf_clear(struct pgbuf *b);
void pgbuf_free(struct pgbuf *b);
void pgbuf_raw(struct pgbuf *b, const void *p, size_t n);

/* --- binary COPY --------------------------------------------------------- */

/* pgbuf_clear, then the header of a binary COPY. */
void pgbuf_copy_begin(struct pgbuf *b);
/* Starts a row of `fields` fields. */
void pgbuf_row(struct pgbuf *b, int fields);
/* The trailer; the buffer then holds the whole COPY data. */
void pgbuf_copy_end(struct pgbuf *b);

void pgbuf_null(struct pgbuf *b);
void pgbuf_text(struct pgbuf *b, const char *s);
/* One text field: the concatenation of a and s. */
void pgbuf_text2(struct pgbuf *b, const char *a, const char *s);
/* A text field, or NULL for an empty string. */
void pgbuf_opt_text(struct pgbuf *b, const char *s);
void pgbuf_bool(struct pgbuf *b, bool v);
/* smallint and integer: a value outside the type sets range, naming column. */
void pgbuf_int2(struct pgbuf *b, int64_t v, const char *column);
void pgbuf_int4(struct pgbuf *b, int64_t v, const char *column);
void pgbuf_int8(struct pgbuf *b, int64_t v);
/* timestamptz from microseconds since the Unix epoch. */
void pgbuf_time(struct pgbuf *b, int64_t unix_us);
void pgbuf_bytea(struct pgbuf *b, const void *p, size_t n);
/* bigint[] of n elements, one dimension ('{}' when n is 0). */
void pgbuf_int8_array(struct pgbuf *b, const int64_t *v, size_t n);

/* --- text array literals, NUL-terminated, for parameters ------------------ */

void pgbuf_array_begin(struct pgbuf *b);
/* Before element i: a comma unless it is the first. */
void pgbuf_array_sep(struct pgbuf *b, size_t i);
/* The closing brace and a NUL. */
void pgbuf_array_end(struct pgbuf *b);
/* A double-quoted element, " and \ escaped. */
void pgbuf_array_text(struct pgbuf *b, const char *s);
void pgbuf_array_int(struct pgbuf *b, int64_t v);

#endif
