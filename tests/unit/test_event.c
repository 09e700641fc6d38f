#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"

static void test_channel_names(void **state)
{
	(void)state;
	/* CONTRACT.md: the SQL views spell the channels sms, email, phone, social. */
	assert_string_equal(channel_name(CHANNEL_SMS), "sms");
	assert_string_equal(channel_name(CHANNEL_EMAIL), "email");
	assert_string_equal(channel_name(CHANNEL_PHONE), "phone");
	assert_string_equal(channel_name(CHANNEL_SOCIAL), "social");
	/* The wire numbers of feedback.v1.Channel. */
	assert_int_equal(CHANNEL_SMS, 1);
	assert_int_equal(CHANNEL_EMAIL, 2);
	assert_int_equal(CHANNEL_PHONE, 3);
	assert_int_equal(CHANNEL_SOCIAL, 4);
	assert_int_equal(CHANNEL_MAX, 4);
}

static void test_channel_name_out_of_range(void **state)
{
	(void)state;
	assert_null(channel_name(CHANNEL_NONE));
	assert_null(channel_name((enum channel)5));
	assert_null(channel_name((enum channel) - 1));
	assert_null(channel_name((enum channel)1000));
}

static void test_channel_from_name(void **state)
{
	(void)state;
	assert_int_equal(channel_from_name("sms"), CHANNEL_SMS);
	assert_int_equal(channel_from_name("email"), CHANNEL_EMAIL);
	assert_int_equal(channel_from_name("phone"), CHANNEL_PHONE);
	assert_int_equal(channel_from_name("social"), CHANNEL_SOCIAL);
	/* Exact, case-sensitive names only. */
	assert_int_equal(channel_from_name(""), CHANNEL_NONE);
	assert_int_equal(channel_from_name("SMS"), CHANNEL_NONE);
	assert_int_equal(channel_from_name("sms "), CHANNEL_NONE);
	assert_int_equal(channel_from_name("sm"), CHANNEL_NONE);
	assert_int_equal(channel_from_name("smss"), CHANNEL_NONE);
	assert_int_equal(channel_from_name("none"), CHANNEL_NONE);
	assert_int_equal(channel_from_name("1"), CHANNEL_NONE);
}

static void test_channel_round_trip(void **state)
{
	int seen = 0;

	(void)state;
	for (int ch = 1; ch <= CHANNEL_MAX; ch++) {
		const char *name = channel_name((enum channel)ch);
		assert_non_null(name);
		assert_int_equal(channel_from_name(name), ch);
		seen++;
	}
	assert_int_equal(seen, 4);
	static const char *const names[] = {"sms", "email", "phone", "social"};
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(channel_name(channel_from_name(names[i])), names[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_channel_names),
	    cmocka_unit_test(test_channel_name_out_of_range),
	    cmocka_unit_test(test_channel_from_name),
	    cmocka_unit_test(test_channel_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
