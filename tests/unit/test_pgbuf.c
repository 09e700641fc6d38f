/*
 * pgbuf.c: the bytes of binary COPY, field by field, as PostgreSQL's
 * documentation of the format gives them (every integer in network order,
 * timestamps in microseconds since 2000-01-01 UTC), the range check of
 * smallint and integer, and the text array literals.
 */
#include "pgbuf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static const uint8_t header[] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n',
                                 0,   0,   0,   0,   0,   0,   0,    0,    0};

static void assert_bytes(const struct pgbuf *b, const uint8_t *want, size_t n)
{
	assert_false(b->oom);
	assert_int_equal(b->len, n);
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)b->buf[i] != want[i])
			fail_msg("byte %zu is 0x%02x, not 0x%02x", i, (uint8_t)b->buf[i], want[i]);
}

static void test_header_row_and_trailer(void **state)
{
	struct pgbuf b = {0};
	uint8_t want[64];
	size_t n = sizeof(header);

	(void)state;
	pgbuf_copy_begin(&b);
	pgbuf_row(&b, 3);
	pgbuf_text(&b, "ab");
	pgbuf_null(&b);
	pgbuf_opt_text(&b, "");
	pgbuf_copy_end(&b);

	memcpy(want, header, n);
	const uint8_t rest[] = {0,    3,                          /* fields */
	                        0,    0,    0,    2,    'a', 'b', /* "ab" */
	                        0xff, 0xff, 0xff, 0xff,           /* NULL */
	                        0xff, 0xff, 0xff, 0xff,           /* "" is stored as NULL */
	                        0xff, 0xff};                      /* trailer */
	memcpy(want + n, rest, sizeof(rest));
	assert_bytes(&b, want, n + sizeof(rest));

	/* A new COPY starts from the header again. */
	pgbuf_copy_begin(&b);
	assert_bytes(&b, header, sizeof(header));
	pgbuf_free(&b);
}

static void test_numbers(void **state)
{
	struct pgbuf b = {0};

	(void)state;
	pgbuf_int2(&b, -2, "a");
	pgbuf_int4(&b, 7, "b");
	pgbuf_int8(&b, -1);
	pgbuf_bool(&b, true);
	pgbuf_bool(&b, false);
	const uint8_t want[] = {0, 0, 0, 2, 0xff, 0xfe,                                     /* -2 */
	                        0, 0, 0, 4, 0,    0,    0,    7,                            /* 7 */
	                        0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* -1 */
	                        0, 0, 0, 1, 1,                                              /* t */
	                        0, 0, 0, 1, 0};                                             /* f */
	assert_bytes(&b, want, sizeof(want));
	assert_null(b.range_column);
	pgbuf_free(&b);
}

static void test_timestamps_count_from_2000(void **state)
{
	struct pgbuf b = {0};

	(void)state;
	/* 2000-01-01 00:00:01 UTC: 946,684,801 s after the Unix epoch, 1,000,000 us after
	 * PostgreSQL's. */
	pgbuf_time(&b, 946684801000000LL);
	/* The Unix epoch: -946,684,800,000,000 us. */
	pgbuf_time(&b, 0);
	const uint8_t want[] = {0, 0, 0, 8, 0,    0,    0,    0,    0,    0x0f, 0x42, 0x40,
	                        0, 0, 0, 8, 0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00};
	assert_bytes(&b, want, sizeof(want));
	pgbuf_free(&b);
}

static void test_text2_bytea_and_arrays(void **state)
{
	struct pgbuf b = {0};
	const int64_t v[] = {5, -1};

	(void)state;
	pgbuf_text2(&b, "fb-", "ev-1");
	pgbuf_bytea(&b, "\xde\xad", 2);
	pgbuf_int8_array(&b, v, 2);
	pgbuf_int8_array(&b, NULL, 0);
	const uint8_t want[] = {
	    0, 0, 0, 7,  'f',  'b',  '-',  'e',  'v',  '-',  '1',        /* one field of 7 bytes */
	    0, 0, 0, 2,  0xde, 0xad,                                     /* bytea */
	    0, 0, 0, 44,                                                 /* 20 + 12 per element */
	    0, 0, 0, 1,                                                  /* one dimension */
	    0, 0, 0, 0,                                                  /* no NULLs */
	    0, 0, 0, 20,                                                 /* elements are int8 */
	    0, 0, 0, 2,                                                  /* two of them */
	    0, 0, 0, 1,                                                  /* from index 1 */
	    0, 0, 0, 8,  0,    0,    0,    0,    0,    0,    0,    5,    /* 5 */
	    0, 0, 0, 8,  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* -1 */
	    0, 0, 0, 12, 0,    0,    0,    0,    0,    0,    0,    0,    0, 0, 0, 20, /* '{}' */
	};
	assert_bytes(&b, want, sizeof(want));
	pgbuf_free(&b);
}

static void test_out_of_range_names_the_first_column(void **state)
{
	struct pgbuf b = {0};

	(void)state;
	pgbuf_int2(&b, 32767, "fits");
	pgbuf_int2(&b, -32768, "fits too");
	assert_null(b.range_column);
	pgbuf_int2(&b, 40000, "csat_min");
	pgbuf_int4(&b, 2147483648LL, "wait_seconds");
	assert_string_equal(b.range_column, "csat_min");
	assert_int_equal(b.range_value, 40000);
	/* The field keeps its size: the rest of the row stays in step. */
	assert_int_equal(b.len, 6 + 6 + 6 + 8);

	pgbuf_clear(&b);
	assert_int_equal(b.len, 0);
	assert_null(b.range_column);
	pgbuf_int4(&b, -2147483649LL, "wait_seconds");
	assert_string_equal(b.range_column, "wait_seconds");
	assert_int_equal(b.range_value, -2147483649LL);
	pgbuf_free(&b);
}

static void test_array_literals(void **state)
{
	struct pgbuf b = {0};
	const char want[] = "{\"a\\\"b\\\\\",1,-20}";

	(void)state;
	pgbuf_array_begin(&b);
	pgbuf_array_sep(&b, 0);
	pgbuf_array_text(&b, "a\"b\\");
	pgbuf_array_sep(&b, 1);
	pgbuf_array_int(&b, 1);
	pgbuf_array_sep(&b, 2);
	pgbuf_array_int(&b, -20);
	pgbuf_array_end(&b);
	/* NUL-terminated, to be passed as a parameter. */
	assert_bytes(&b, (const uint8_t *)want, sizeof(want));
	pgbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_row_and_trailer),
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_timestamps_count_from_2000),
	    cmocka_unit_test(test_text2_bytea_and_arrays),
	    cmocka_unit_test(test_out_of_range_names_the_first_column),
	    cmocka_unit_test(test_array_literals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
