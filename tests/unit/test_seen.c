/*
 * seen.c: what it remembers, for how many generations, and that the key is
 * the ledger's (event_id, occurred_at).
 */
#include "seen.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

static void test_keys_are_id_and_instant(void **state)
{
	struct seen *s = seen_new(2);

	(void)state;
	assert_non_null(s);
	assert_false(seen_has(s, "ev-1", 100));
	assert_int_equal(seen_add(s, "ev-1", 100), 0);
	assert_int_equal(seen_add(s, "ev-1", 100), 0);
	assert_true(seen_has(s, "ev-1", 100));
	/* The same id at another instant is another ledger row. */
	assert_false(seen_has(s, "ev-1", 101));
	assert_false(seen_has(s, "ev-10", 100));
	assert_false(seen_has(s, "ev-", 100));
	assert_false(seen_has(s, "", 100));
	seen_destroy(s);
}

static void test_generations(void **state)
{
	struct seen *s = seen_new(2);

	(void)state;
	assert_int_equal(seen_add(s, "a", 1), 0);
	seen_rotate(s);
	assert_int_equal(seen_add(s, "b", 2), 0);
	/* Two generations: a (the older) and b. */
	assert_true(seen_has(s, "a", 1));
	assert_true(seen_has(s, "b", 2));
	seen_rotate(s);
	assert_false(seen_has(s, "a", 1));
	assert_true(seen_has(s, "b", 2));
	assert_int_equal(seen_add(s, "c", 3), 0);
	seen_rotate(s);
	assert_false(seen_has(s, "b", 2));
	assert_true(seen_has(s, "c", 3));
	seen_clear(s);
	assert_false(seen_has(s, "c", 3));
	seen_destroy(s);

	/* One generation forgets at every rotation; 0 is taken as 1. */
	s = seen_new(0);
	assert_int_equal(seen_add(s, "a", 1), 0);
	assert_true(seen_has(s, "a", 1));
	seen_rotate(s);
	assert_false(seen_has(s, "a", 1));
	seen_destroy(s);
}

/* Past several growths of the table: every key found, no other. */
static void test_many(void **state)
{
	struct seen *s = seen_new(2);
	char id[32];

	(void)state;
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof(id), "event-%d", i);
		assert_int_equal(seen_add(s, id, i), 0);
	}
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof(id), "event-%d", i);
		assert_true(seen_has(s, id, i));
		assert_false(seen_has(s, id, i + 1));
		snprintf(id, sizeof(id), "event-%d", i + 20000);
		assert_false(seen_has(s, id, i + 20000));
	}
	seen_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keys_are_id_and_instant),
	    cmocka_unit_test(test_generations),
	    cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
