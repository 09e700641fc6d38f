#include "pgbuf.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

/* Seconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00:00 UTC. */
#define PG_EPOCH_UNIX_S 946684800LL
/* pg_type.oid of int8, which a binary array names for its elements. */
#define INT8_OID 20

static const char copy_signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', 0};

static bool reserve(struct pgbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more <= b->cap)
		return true;
	cap = b->cap ? b->cap : 1 << 16;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->buf, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->buf = p;
	b->cap = cap;
	return true;
}

void pgbuf_clear(struct pgbuf *b)
{
	b->len = 0;
	b->oom = false;
	b->range_column = NULL;
	b->range_value = 0;
}

void pgbuf_free(struct pgbuf *b)
{
	free(b->buf);
	*b = (struct pgbuf){0};
}

void pgbuf_raw(struct pgbuf *b, const void *p, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static void put16(struct pgbuf *b, uint16_t v)
{
	v = htobe16(v);
	pgbuf_raw(b, &v, sizeof(v));
}

static void put32(struct pgbuf *b, uint32_t v)
{
	v = htobe32(v);
	pgbuf_raw(b, &v, sizeof(v));
}

static void put64(struct pgbuf *b, uint64_t v)
{
	v = htobe64(v);
	pgbuf_raw(b, &v, sizeof(v));
}

void pgbuf_copy_begin(struct pgbuf *b)
{
	pgbuf_clear(b);
	pgbuf_raw(b, copy_signature, sizeof(copy_signature));
	put32(b, 0); /* flags: no OIDs */
	put32(b, 0); /* no header extension */
}

void pgbuf_row(struct pgbuf *b, int fields)
{
	put16(b, (uint16_t)fields);
}

void pgbuf_copy_end(struct pgbuf *b)
{
	put16(b, 0xffff);
}

void pgbuf_null(struct pgbuf *b)
{
	put32(b, 0xffffffffu);
}

void pgbuf_text(struct pgbuf *b, const char *s)
{
	size_t n = strlen(s);

	put32(b, (uint32_t)n);
	pgbuf_raw(b, s, n);
}

void pgbuf_text2(struct pgbuf *b, const char *a, const char *s)
{
	size_t na = strlen(a), ns = strlen(s);

	put32(b, (uint32_t)(na + ns));
	pgbuf_raw(b, a, na);
	pgbuf_raw(b, s, ns);
}

void pgbuf_opt_text(struct pgbuf *b, const char *s)
{
	if (*s)
		pgbuf_text(b, s);
	else
		pgbuf_null(b);
}

void pgbuf_bool(struct pgbuf *b, bool v)
{
	put32(b, 1);
	pgbuf_raw(b, v ? "\1" : "\0", 1);
}

/* v, or 0 once noted as the first value out of range, when v is outside [min, max]. */
static int64_t in_range(struct pgbuf *b, int64_t v, int64_t min, int64_t max, const char *column)
{
	if (v >= min && v <= max)
		return v;
	if (b->range_column == NULL) {
		b->range_column = column;
		b->range_value = v;
	}
	return 0;
}

void pgbuf_int2(struct pgbuf *b, int64_t v, const char *column)
{
	put32(b, 2);
	put16(b, (uint16_t)(int16_t)in_range(b, v, INT16_MIN, INT16_MAX, column));
}

void pgbuf_int4(struct pgbuf *b, int64_t v, const char *column)
{
	put32(b, 4);
	put32(b, (uint32_t)(int32_t)in_range(b, v, INT32_MIN, INT32_MAX, column));
}

void pgbuf_int8(struct pgbuf *b, int64_t v)
{
	put32(b, 8);
	put64(b, (uint64_t)v);
}

void pgbuf_time(struct pgbuf *b, int64_t unix_us)
{
	put32(b, 8);
	/* Unsigned: wraps instead of overflowing; the server checks the range. */
	put64(b, (uint64_t)unix_us - (uint64_t)(PG_EPOCH_UNIX_S * 1000000));
}

void pgbuf_bytea(struct pgbuf *b, const void *p, size_t n)
{
	put32(b, (uint32_t)n);
	pgbuf_raw(b, p, n);
}

void pgbuf_int8_array(struct pgbuf *b, const int64_t *v, size_t n)
{
	if (n == 0) {
		put32(b, 12);
		put32(b, 0); /* dimensions */
		put32(b, 0); /* has nulls */
		put32(b, INT8_OID);
		return;
	}
	put32(b, (uint32_t)(20 + 12 * n));
	put32(b, 1);
	put32(b, 0);
	put32(b, INT8_OID);
	put32(b, (uint32_t)n); /* elements of the dimension */
	put32(b, 1);           /* its lower bound */
	for (size_t i = 0; i < n; i++) {
		put32(b, 8);
		put64(b, (uint64_t)v[i]);
	}
}

void pgbuf_array_begin(struct pgbuf *b)
{
	pgbuf_raw(b, "{", 1);
}

void pgbuf_array_sep(struct pgbuf *b, size_t i)
{
	if (i > 0)
		pgbuf_raw(b, ",", 1);
}

void pgbuf_array_end(struct pgbuf *b)
{
	pgbuf_raw(b, "}", 2); /* with the NUL */
}

void pgbuf_array_text(struct pgbuf *b, const char *s)
{
	if (!reserve(b, 2 * strlen(s) + 2))
		return;
	b->buf[b->len++] = '"';
	for (const char *p = s; *p; p++) {
		if (*p == '"' || *p == '\\')
			b->buf[b->len++] = '\\';
		b->buf[b->len++] = *p;
	}
	b->buf[b->len++] = '"';
}

/* Decimal digits by hand: snprintf was a large cost of building a batch. */
void pgbuf_array_int(struct pgbuf *b, int64_t v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	pgbuf_raw(b, p, (size_t)(tmp + sizeof(tmp) - p));
}
