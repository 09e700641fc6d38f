/*
 * metrics.h - counters, gauges and fixed-bucket histograms, rendered in
 * the Prometheus text exposition format 0.0.4.
 *
 * A registry holds metric families in registration order; each family has
 * fixed label names and one series per distinct tuple of label values.
 * Every update takes the registry's mutex, so any thread may update or
 * render; updates are per batch, not per message, so the lock is cold.
 * Names follow Prometheus rules: base units, counters end in _total, and
 * no label whose values grow with the data (agents, customers).
 */
#ifndef FC_METRICS_H
#define FC_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum { METRIC_MAX_LABELS = 4 };

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics;
struct metric_family;

/* An empty registry; NULL when out of memory. */
struct metrics *metrics_new(void);
void metrics_destroy(struct metrics *m);

/*
 * Registers a family, or returns the one registered under name before
 * (NULL if of another type): every consumer of a process adds to the same
 * counters. labels names its labels, comma separated ("channel,
 * outcome" without spaces), or NULL; bounds are the ascending upper bounds
 * of a histogram's buckets (copied; +Inf is implied). Returns the family,
 * owned by m, or NULL when out of memory. A NULL m gives NULL, and every
 * update of a NULL family does nothing, so code runs without metrics.
 */
struct metric_family *metrics_counter(struct metrics *m, const char *name, const char *help,
                                      const char *labels);
struct metric_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                    const char *labels);
struct metric_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                        const char *labels, const double *bounds, size_t n_bounds);

/*
 * Updates the series of f with label values values (as many as f has
 * labels; NULL when it has none), creating it at zero first. add and set
 * apply to counters and gauges, observe to histograms. A series that
 * cannot be created for lack of memory is skipped.
 */
void metric_add(struct metric_family *f, const char *const *values, double v);
void metric_set(struct metric_family *f, const char *const *values, double v);
void metric_observe(struct metric_family *f, const char *const *values, double v);

/* Creates the series of values at zero, so that it is exported before it first moves. */
void metric_touch(struct metric_family *f, const char *const *values);

/* One series of metric_replace: label values and the value. */
struct metric_sample {
	const char *values[METRIC_MAX_LABELS];
	double value;
};

/* Replaces every series of gauge f by samples s[0..n) at once. */
void metric_replace(struct metric_family *f, const struct metric_sample *s, size_t n);

/*
 * Replaces the series that owner set last by s[0..n), leaving those of
 * other owners: each consumer of a process exports the lag of its own
 * partitions. A series of another owner with the same labels passes to owner.
 */
void metric_replace_owned(struct metric_family *f, const void *owner, const struct metric_sample *s,
                          size_t n);

/* The value of a counter or gauge series, or of a histogram's count; 0 when absent. */
double metric_value(struct metric_family *f, const char *const *values);

/*
 * Registers fn to run before each rendering (outside the lock), to read
 * values that live elsewhere: publisher statistics, /proc. Up to 8.
 */
int metrics_on_collect(struct metrics *m, void (*fn)(void *arg), void *arg);

/*
 * The whole registry in the text format, HELP and TYPE lines included, as
 * a malloc'd string the caller frees (length in *len); NULL when out of
 * memory.
 */
char *metrics_render(struct metrics *m, size_t *len);

/*
 * Registers the process_* families (cpu, resident and virtual memory,
 * start time, open and maximum file descriptors) and a collector that
 * reads them from /proc/self at each rendering. 0, or -1 when out of memory.
 */
int metrics_add_process(struct metrics *m);

/* One partition's consumer lag from librdkafka's statistics. */
struct metrics_lag {
	char topic[256];
	int32_t partition;
	int64_t lag;
};

/*
 * Parses librdkafka's statistics JSON (len bytes at json) and returns in
 * *out (malloc'd, the caller frees) the consumer lag of every partition,
 * skipping the internal partition -1 and unknown lags (-1), sorted by
 * topic then partition; the count in *n. 0, or -1 on malformed JSON or no
 * memory.
 */
int metrics_parse_lag(const char *json, size_t len, struct metrics_lag **out, size_t *n);

#endif
