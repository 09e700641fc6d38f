/*
 * The Prometheus text rendering of hand-set values, and the reading of
 * librdkafka's statistics. Every expected text was written by hand from
 * the exposition format 0.0.4.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

static char *render(struct metrics *m)
{
	size_t len = 0;
	char *text = metrics_render(m, &len);

	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static void test_counter_and_gauge(void **state)
{
	struct metrics *m = metrics_new();
	struct metric_family *c =
	    metrics_counter(m, "t_events_total", "Events.", "channel,outcome");
	struct metric_family *g = metrics_gauge(m, "t_temperature_celsius", "A gauge.", NULL);
	const char *sms_ok[] = {"sms", "accepted"}, *email_dup[] = {"email", "duplicate"};
	char *text;

	(void)state;
	metric_add(c, sms_ok, 3);
	metric_add(c, email_dup, 1);
	metric_add(c, sms_ok, 2); /* 3 + 2 */
	metric_set(g, NULL, -1.5);
	metric_add(g, NULL, 0.25); /* -1.5 + 0.25 */
	text = render(m);
	assert_string_equal(text, "# HELP t_events_total Events.\n"
	                          "# TYPE t_events_total counter\n"
	                          "t_events_total{channel=\"sms\",outcome=\"accepted\"} 5\n"
	                          "t_events_total{channel=\"email\",outcome=\"duplicate\"} 1\n"
	                          "# HELP t_temperature_celsius A gauge.\n"
	                          "# TYPE t_temperature_celsius gauge\n"
	                          "t_temperature_celsius -1.25\n");
	assert_true(metric_value(c, sms_ok) == 5);
	free(text);
	metrics_destroy(m);
}

static void test_histogram(void **state)
{
	static const double bounds[] = {0.25, 0.5, 1};
	struct metrics *m = metrics_new();
	struct metric_family *h =
	    metrics_histogram(m, "t_duration_seconds", "Durations.", NULL, bounds, 3);
	char *text;

	(void)state;
	/* Binary fractions, so the sum is exact: 0.125 + 0.25 + 0.375 + 0.75 + 2 = 3.5. */
	metric_observe(h, NULL, 0.125); /* le 0.25 */
	metric_observe(h, NULL, 0.25);  /* le 0.25: a bound is inclusive */
	metric_observe(h, NULL, 0.375); /* le 0.5 */
	metric_observe(h, NULL, 0.75);  /* le 1 */
	metric_observe(h, NULL, 2);     /* +Inf only */
	text = render(m);
	/* Buckets are cumulative: 2, 2 + 1, 3 + 1, and +Inf holds all 5. */
	assert_string_equal(text, "# HELP t_duration_seconds Durations.\n"
	                          "# TYPE t_duration_seconds histogram\n"
	                          "t_duration_seconds_bucket{le=\"0.25\"} 2\n"
	                          "t_duration_seconds_bucket{le=\"0.5\"} 3\n"
	                          "t_duration_seconds_bucket{le=\"1\"} 4\n"
	                          "t_duration_seconds_bucket{le=\"+Inf\"} 5\n"
	                          "t_duration_seconds_sum 3.5\n"
	                          "t_duration_seconds_count 5\n");
	free(text);
	metrics_destroy(m);
}

static void test_labelled_histogram_starts_empty(void **state)
{
	static const double bounds[] = {10};
	struct metrics *m = metrics_new();
	struct metric_family *h = metrics_histogram(m, "t_size", "Sizes.", "kind", bounds, 1);
	const char *big[] = {"big"};
	char *text;

	(void)state;
	/* A labelled family without a series is left out altogether. */
	text = render(m);
	assert_string_equal(text, "");
	free(text);
	metric_observe(h, big, 11);
	text = render(m);
	assert_string_equal(text, "# HELP t_size Sizes.\n"
	                          "# TYPE t_size histogram\n"
	                          "t_size_bucket{kind=\"big\",le=\"10\"} 0\n"
	                          "t_size_bucket{kind=\"big\",le=\"+Inf\"} 1\n"
	                          "t_size_sum{kind=\"big\"} 11\n"
	                          "t_size_count{kind=\"big\"} 1\n");
	free(text);
	metrics_destroy(m);
}

static void test_escaping(void **state)
{
	struct metrics *m = metrics_new();
	struct metric_family *c = metrics_counter(
	    m, "t_total", "Back\\slash and \"quotes\",\nthen a new line.", "reason");
	const char *odd[] = {"say \"hi\"\\\n"};
	char *text;

	(void)state;
	metric_add(c, odd, 1);
	text = render(m);
	/* HELP escapes backslash and newline; a label value also the double quote. */
	assert_string_equal(text,
	                    "# HELP t_total Back\\\\slash and \"quotes\",\\nthen a new line.\n"
	                    "# TYPE t_total counter\n"
	                    "t_total{reason=\"say \\\"hi\\\"\\\\\\n\"} 1\n");
	free(text);
	metrics_destroy(m);
}

static void test_numbers_touch_replace(void **state)
{
	struct metrics *m = metrics_new();
	struct metric_family *g = metrics_gauge(m, "t_gauge", "Values.", "k");
	const char *a[] = {"a"}, *b[] = {"b"}, *c[] = {"c"}, *d[] = {"d"};
	struct metric_sample s[2] = {{{"x"}, 7}, {{"y"}, 0.5}};
	char *text;

	(void)state;
	metric_set(g, a, 0.1);
	metric_set(g, b, 1e21);
	metric_set(g, c, 0.0 / 0.0);
	metric_touch(g, d);
	text = render(m);
	/* Shortest round trip; large numbers in exponent form; NaN as Prometheus spells it. */
	assert_string_equal(text, "# HELP t_gauge Values.\n"
	                          "# TYPE t_gauge gauge\n"
	                          "t_gauge{k=\"a\"} 0.1\n"
	                          "t_gauge{k=\"b\"} 1e+21\n"
	                          "t_gauge{k=\"c\"} NaN\n"
	                          "t_gauge{k=\"d\"} 0\n");
	free(text);
	metric_replace(g, s, 2);
	text = render(m);
	assert_string_equal(text, "# HELP t_gauge Values.\n"
	                          "# TYPE t_gauge gauge\n"
	                          "t_gauge{k=\"x\"} 7\n"
	                          "t_gauge{k=\"y\"} 0.5\n");
	free(text);
	metric_replace(g, NULL, 0);
	text = render(m);
	assert_string_equal(text, "");
	free(text);
	metrics_destroy(m);
}

/* Two consumers of one process: one family each name, and each its own lag series. */
static void test_shared_families_and_owned_series(void **state)
{
	struct metrics *m = metrics_new();
	struct metric_family *c1 = metrics_counter(m, "t_total", "Events.", NULL);
	struct metric_family *c2 = metrics_counter(m, "t_total", "Events.", NULL);
	struct metric_family *g1 = metrics_gauge(m, "t_lag", "Lag.", "p");
	struct metric_family *g2 = metrics_gauge(m, "t_lag", "Lag.", "p");
	int w1, w2;
	struct metric_sample s1[2] = {{{"0"}, 5}, {{"1"}, 6}}, s2[1] = {{{"2"}, 7}};
	struct metric_sample s1b[1] = {{{"1"}, 3}}, moved[1] = {{{"2"}, 9}};
	char *text;

	(void)state;
	assert_ptr_equal(c1, c2);
	assert_ptr_equal(g1, g2);
	/* The same name as another type is refused. */
	assert_null(metrics_gauge(m, "t_total", "Events.", NULL));
	metric_add(c1, NULL, 2);
	metric_add(c2, NULL, 3);
	metric_replace_owned(g1, &w1, s1, 2);
	metric_replace_owned(g2, &w2, s2, 1);
	/* w1 lost partition 0: only its own series go. */
	metric_replace_owned(g1, &w1, s1b, 1);
	text = render(m);
	assert_string_equal(text, "# HELP t_total Events.\n"
	                          "# TYPE t_total counter\n"
	                          "t_total 5\n"
	                          "# HELP t_lag Lag.\n"
	                          "# TYPE t_lag gauge\n"
	                          "t_lag{p=\"2\"} 7\n"
	                          "t_lag{p=\"1\"} 3\n");
	free(text);
	/* Partition 2 moved to w1; w2's next report no longer removes it. */
	metric_replace_owned(g1, &w1, moved, 1);
	metric_replace_owned(g2, &w2, NULL, 0);
	text = render(m);
	assert_string_equal(text, "# HELP t_total Events.\n"
	                          "# TYPE t_total counter\n"
	                          "t_total 5\n"
	                          "# HELP t_lag Lag.\n"
	                          "# TYPE t_lag gauge\n"
	                          "t_lag{p=\"2\"} 9\n");
	free(text);
	metrics_destroy(m);
}

static void test_null_registry_is_a_no_op(void **state)
{
	struct metric_family *c = metrics_counter(NULL, "t_total", "Nothing.", NULL);

	(void)state;
	assert_null(c);
	metric_add(c, NULL, 1);
	metric_observe(c, NULL, 1);
	assert_true(metric_value(c, NULL) == 0);
}

static double value_after(const char *text, const char *name)
{
	const char *p = strstr(text, name);

	assert_non_null(p);
	return strtod(p + strlen(name), NULL);
}

static void test_process_metrics(void **state)
{
	struct metrics *m = metrics_new();
	struct rlimit rl;
	char *text;
	double open_before;
	int fds[3];

	(void)state;
	assert_int_equal(metrics_add_process(m), 0);
	text = render(m);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(value_after(text, "\nprocess_max_fds ") == (double)rl.rlim_cur);
	open_before = value_after(text, "\nprocess_open_fds ");
	assert_true(value_after(text, "\nprocess_resident_memory_bytes ") > 0);
	free(text);
	for (int i = 0; i < 3; i++)
		fds[i] = dup(STDIN_FILENO);
	text = render(m);
	/* Three more descriptors, three more counted. */
	assert_true(value_after(text, "\nprocess_open_fds ") == open_before + 3);
	free(text);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	metrics_destroy(m);
}

/* Shaped like librdkafka's statistics, trimmed to what the parser reads. */
static const char stats_json[] =
    "{\"name\":\"rdkafka#consumer-1\",\"type\":\"consumer\",\"topics\":{"
    "\"feedback.sms\":{\"topic\":\"feedback.sms\",\"partitions\":{"
    "\"1\":{\"partition\":1,\"consumer_lag\":7,\"consumer_lag_stored\":3},"
    "\"0\":{\"partition\":0,\"consumer_lag\":0},"
    "\"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"
    "\"feedback.email\":{\"topic\":\"feedback.email\",\"partitions\":{"
    "\"0\":{\"partition\":0,\"consumer_lag\":-1},"
    "\"2\":{\"partition\":2,\"consumer_lag\":12345678901}}}}}";

static void test_lag_parser(void **state)
{
	struct metrics_lag *lag = NULL;
	size_t n = 99;

	(void)state;
	assert_int_equal(metrics_parse_lag(stats_json, strlen(stats_json), &lag, &n), 0);
	/* Partition -1 and the unknown lag of email/0 are skipped; sorted by topic, partition. */
	assert_int_equal(n, 3);
	assert_string_equal(lag[0].topic, "feedback.email");
	assert_int_equal(lag[0].partition, 2);
	assert_int_equal(lag[0].lag, 12345678901LL);
	assert_string_equal(lag[1].topic, "feedback.sms");
	assert_int_equal(lag[1].partition, 0);
	assert_int_equal(lag[1].lag, 0);
	assert_string_equal(lag[2].topic, "feedback.sms");
	assert_int_equal(lag[2].partition, 1);
	assert_int_equal(lag[2].lag, 7);
	free(lag);

	lag = NULL;
	assert_int_equal(metrics_parse_lag("{\"name\":\"x\"}", 12, &lag, &n), 0);
	assert_int_equal(n, 0);
	free(lag);
	assert_int_equal(metrics_parse_lag("{\"topics\":", 10, &lag, &n), -1);
	assert_int_equal(metrics_parse_lag("[1]", 3, &lag, &n), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counter_and_gauge),
	    cmocka_unit_test(test_histogram),
	    cmocka_unit_test(test_labelled_histogram_starts_empty),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_numbers_touch_replace),
	    cmocka_unit_test(test_shared_families_and_owned_series),
	    cmocka_unit_test(test_null_registry_is_a_no_op),
	    cmocka_unit_test(test_process_metrics),
	    cmocka_unit_test(test_lag_parser),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
