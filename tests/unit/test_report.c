/*
 * The report's honest numbers (KPI.md): the Wilson interval of a
 * proportion, the NPS interval, and the CSAT bands. Expected bounds were
 * worked out from KPI.md's formulas with z = 1.96.
 */
#include "report.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#define EPS 1e-6

static void expect_interval(struct interval got, double lo, double hi)
{
	assert_float_equal(got.lo, lo, EPS);
	assert_float_equal(got.hi, hi, EPS);
}

static void test_wilson(void **state)
{
	(void)state;
	/*
	 * 3 of 4: p = 0.75, z^2/n = 0.9604; centre (0.75 + 0.4802) / 1.9604 =
	 * 0.627525, half 1.96 x sqrt(0.046875 + 0.060025) / 1.9604 = 0.326889.
	 */
	expect_interval(report_wilson(3, 4), 30.063605, 95.441394);
	expect_interval(report_wilson(1, 2), 9.452865, 90.547135);
	expect_interval(report_wilson(45, 60), 62.767689, 84.223614);
	/* The textbook ends: 0 of 10 is [0, 27.75], 10 of 10 [72.25, 100]. */
	expect_interval(report_wilson(0, 10), 0, 27.754017);
	expect_interval(report_wilson(10, 10), 72.245983, 100);
}

static void test_wilson_never_leaves_0_to_100(void **state)
{
	(void)state;
	/* For x = 0 centre - half is 0 in exact arithmetic, -1e-15 or so in floating point. */
	for (int n = 1; n <= 2000; n++) {
		struct interval none = report_wilson(0, n), all = report_wilson(n, n);

		char lo[16], hi[16];

		assert_true(none.lo >= 0.0 && !signbit(none.lo) && none.lo < 1e-9);
		assert_true(all.hi <= 100.0 && all.hi > 100.0 - 1e-9);
		snprintf(lo, sizeof(lo), "%.1f", none.lo);
		snprintf(hi, sizeof(hi), "%.1f", all.hi);
		assert_string_equal(lo, "0.0");
		assert_string_equal(hi, "100.0");
	}
}

static void test_nps_interval(void **state)
{
	(void)state;
	/* 5 promoters, 2 detractors of 10: NPS 30, half 1.96 x sqrt(0.7 - 0.09) / sqrt(10) x 100.
	 */
	expect_interval(report_nps_interval(5, 2, 10), -18.408429, 78.408429);
	expect_interval(report_nps_interval(40, 10, 100), 17.449876, 42.550124);
	/* 3 and 3 of 6: NPS 0, half 1.96 x sqrt(1) / sqrt(6) x 100 = 80.016665. */
	expect_interval(report_nps_interval(3, 3, 6), -80.016665, 80.016665);
	/* 9 of 10 promoters: the formula's upper bound, 108.594193, is clipped to 100. */
	expect_interval(report_nps_interval(9, 0, 10), 71.405807, 100);
	/* All detractors: no spread, -100 both ends. */
	expect_interval(report_nps_interval(0, 10, 10), -100, -100);
}

static void test_csat_bands(void **state)
{
	(void)state;
	/* KPI.md: 90-100 excellent, 70-89 good, 50-69 average, below 50 poor. */
	assert_string_equal(report_csat_band(100), "excellent");
	assert_string_equal(report_csat_band(90), "excellent");
	/* The band of the figure as the report prints it, to one decimal. */
	assert_string_equal(report_csat_band(89.96), "excellent"); /* 90.0 */
	assert_string_equal(report_csat_band(89.94), "good");      /* 89.9 */
	assert_string_equal(report_csat_band(70), "good");
	assert_string_equal(report_csat_band(69.95), "good"); /* 70.0 */
	assert_string_equal(report_csat_band(69.94), "average");
	assert_string_equal(report_csat_band(50), "average");
	assert_string_equal(report_csat_band(49.96), "average");
	assert_string_equal(report_csat_band(49.94), "poor");
	assert_string_equal(report_csat_band(0), "poor");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wilson),
	    cmocka_unit_test(test_wilson_never_leaves_0_to_100),
	    cmocka_unit_test(test_nps_interval),
	    cmocka_unit_test(test_csat_bands),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
