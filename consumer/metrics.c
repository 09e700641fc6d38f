#include "metrics.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum { MAX_COLLECTORS = 8 };

struct series {
	char *values[METRIC_MAX_LABELS];
	const void *owner; /* metric_replace_owned: who set it */
	double value;      /* counter, gauge */
	uint64_t *buckets; /* histogram: per bucket, not cumulative; n_bounds + 1 (+Inf) */
	double sum;
	uint64_t count;
};

struct metric_family {
	struct metrics *m;
	struct metric_family *next;
	char *name, *help;
	enum metric_type type;
	char *labels[METRIC_MAX_LABELS];
	size_t n_labels;
	double *bounds;
	size_t n_bounds;
	struct series *s;
	size_t n, cap;
};

struct metrics {
	pthread_mutex_t lock;
	struct metric_family *first, *last;
	struct {
		void (*fn)(void *arg);
		void *arg;
	} collect[MAX_COLLECTORS];
	size_t n_collect;
	/* process_*: cpu, rss, vsize, start time, open fds, max fds */
	struct metric_family *proc[6];
};

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

static void series_release(struct series *s)
{
	for (size_t i = 0; i < METRIC_MAX_LABELS; i++)
		free(s->values[i]);
	free(s->buckets);
}

static void metric_free(struct metric_family *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		series_release(&f->s[i]);
	free(f->s);
	for (size_t i = 0; i < METRIC_MAX_LABELS; i++)
		free(f->labels[i]);
	free(f->bounds);
	free(f->name);
	free(f->help);
	free(f);
}

void metrics_destroy(struct metrics *m)
{
	if (m == NULL)
		return;
	for (struct metric_family *f = m->first, *next; f; f = next) {
		next = f->next;
		metric_free(f);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* The series of values, created at zero when absent; NULL when out of memory. Locked. */
static struct series *series_get(struct metric_family *f, const char *const *values)
{
	struct series *s;

	for (size_t i = 0; i < f->n; i++) {
		size_t l = 0;

		while (l < f->n_labels && strcmp(f->s[i].values[l], values[l]) == 0)
			l++;
		if (l == f->n_labels)
			return &f->s[i];
	}
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 4;
		struct series *ns = realloc(f->s, cap * sizeof(*ns));

		if (ns == NULL)
			return NULL;
		f->s = ns;
		f->cap = cap;
	}
	s = &f->s[f->n];
	memset(s, 0, sizeof(*s));
	for (size_t l = 0; l < f->n_labels; l++)
		if ((s->values[l] = strdup(values[l])) == NULL)
			goto oom;
	if (f->type == METRIC_HISTOGRAM &&
	    (s->buckets = calloc(f->n_bounds + 1, sizeof(*s->buckets))) == NULL)
		goto oom;
	f->n++;
	return s;
oom:
	series_release(s);
	return NULL;
}

static struct metric_family *family_new(struct metrics *m, enum metric_type type, const char *name,
                                        const char *help, const char *labels, const double *bounds,
                                        size_t n_bounds)
{
	struct metric_family *f;

	if (m == NULL || (f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->m = m;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help);
	if (f->name == NULL || f->help == NULL)
		goto fail;
	for (const char *p = labels; p && *p && f->n_labels < METRIC_MAX_LABELS;) {
		size_t len = strcspn(p, ",");

		if ((f->labels[f->n_labels++] = strndup(p, len)) == NULL)
			goto fail;
		p += len + (p[len] == ',');
	}
	if (n_bounds > 0) {
		if ((f->bounds = malloc(n_bounds * sizeof(*bounds))) == NULL)
			goto fail;
		memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
		f->n_bounds = n_bounds;
	}
	/* A family without labels has exactly one series, exported from the start. */
	if (f->n_labels == 0 && series_get(f, NULL) == NULL)
		goto fail;
	pthread_mutex_lock(&m->lock);
	/* Registered again (another consumer of the process): the one family. */
	for (struct metric_family *g = m->first; g; g = g->next)
		if (strcmp(g->name, name) == 0) {
			pthread_mutex_unlock(&m->lock);
			metric_free(f);
			return g->type == type ? g : NULL;
		}
	if (m->last)
		m->last->next = f;
	else
		m->first = f;
	m->last = f;
	pthread_mutex_unlock(&m->lock);
	return f;
fail:
	metric_free(f);
	return NULL;
}

struct metric_family *metrics_counter(struct metrics *m, const char *name, const char *help,
                                      const char *labels)
{
	return family_new(m, METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct metric_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                    const char *labels)
{
	return family_new(m, METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct metric_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                        const char *labels, const double *bounds, size_t n_bounds)
{
	return family_new(m, METRIC_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

void metric_add(struct metric_family *f, const char *const *values, double v)
{
	struct series *s;

	if (f == NULL)
		return;
	pthread_mutex_lock(&f->m->lock);
	if ((s = series_get(f, values)) != NULL)
		s->value += v;
	pthread_mutex_unlock(&f->m->lock);
}

void metric_set(struct metric_family *f, const char *const *values, double v)
{
	struct series *s;

	if (f == NULL)
		return;
	pthread_mutex_lock(&f->m->lock);
	if ((s = series_get(f, values)) != NULL)
		s->value = v;
	pthread_mutex_unlock(&f->m->lock);
}

void metric_observe(struct metric_family *f, const char *const *values, double v)
{
	struct series *s;
	size_t b = 0;

	if (f == NULL || f->type != METRIC_HISTOGRAM)
		return;
	while (b < f->n_bounds && v > f->bounds[b])
		b++;
	pthread_mutex_lock(&f->m->lock);
	if ((s = series_get(f, values)) != NULL) {
		s->buckets[b]++;
		s->sum += v;
		s->count++;
	}
	pthread_mutex_unlock(&f->m->lock);
}

void metric_touch(struct metric_family *f, const char *const *values)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->m->lock);
	series_get(f, values);
	pthread_mutex_unlock(&f->m->lock);
}

void metric_replace(struct metric_family *f, const struct metric_sample *samples, size_t n)
{
	metric_replace_owned(f, NULL, samples, n);
}

void metric_replace_owned(struct metric_family *f, const void *owner,
                          const struct metric_sample *samples, size_t n)
{
	size_t kept = 0;

	if (f == NULL || f->type == METRIC_HISTOGRAM)
		return;
	pthread_mutex_lock(&f->m->lock);
	for (size_t i = 0; i < f->n; i++) {
		if (owner == NULL || f->s[i].owner == owner)
			series_release(&f->s[i]);
		else
			f->s[kept++] = f->s[i];
	}
	f->n = kept;
	for (size_t i = 0; i < n; i++) {
		struct series *s = series_get(f, samples[i].values);

		if (s) {
			s->value = samples[i].value;
			s->owner = owner;
		}
	}
	pthread_mutex_unlock(&f->m->lock);
}

double metric_value(struct metric_family *f, const char *const *values)
{
	double v = 0;

	if (f == NULL)
		return 0;
	pthread_mutex_lock(&f->m->lock);
	for (size_t i = 0; i < f->n; i++) {
		size_t l = 0;

		while (l < f->n_labels && strcmp(f->s[i].values[l], values[l]) == 0)
			l++;
		if (l == f->n_labels) {
			v = f->type == METRIC_HISTOGRAM ? (double)f->s[i].count : f->s[i].value;
			break;
		}
	}
	pthread_mutex_unlock(&f->m->lock);
	return v;
}

int metrics_on_collect(struct metrics *m, void (*fn)(void *arg), void *arg)
{
	int rc = -1;

	pthread_mutex_lock(&m->lock);
	if (m->n_collect < MAX_COLLECTORS) {
		m->collect[m->n_collect].fn = fn;
		m->collect[m->n_collect].arg = arg;
		m->n_collect++;
		rc = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* --- rendering ------------------------------------------------------------ */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void buf_grow(struct buf *b, size_t need)
{
	if (b->oom || b->len + need + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + need + 1)
		cap *= 2;
	char *np = realloc(b->p, cap);
	if (np == NULL) {
		b->oom = true;
		return;
	}
	b->p = np;
	b->cap = cap;
}

static void buf_putn(struct buf *b, const char *s, size_t n)
{
	buf_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_putn(b, s, strlen(s));
}

/*
 * Writes s escaped: a backslash and a newline always, a double quote too
 * inside a label value (HELP text leaves it as is).
 */
static void buf_escaped(struct buf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else if (quote && *s == '"')
			buf_puts(b, "\\\"");
		else
			buf_putn(b, s, 1);
	}
}

/* The shortest text that reads back as v; integers without a fraction. */
static void format_double(char *out, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(out, size, "NaN");
	} else if (isinf(v)) {
		snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
	} else if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(out, size, "%.0f", v);
	} else {
		snprintf(out, size, "%.15g", v);
		if (strtod(out, NULL) != v)
			snprintf(out, size, "%.17g", v);
	}
}

/* "{a="x",b="y"}" from the series' labels plus an optional le; nothing when empty. */
static void buf_labels(struct buf *b, const struct metric_family *f, const struct series *s,
                       const char *le)
{
	if (f->n_labels == 0 && le == NULL)
		return;
	buf_puts(b, "{");
	for (size_t l = 0; l < f->n_labels; l++) {
		if (l > 0)
			buf_puts(b, ",");
		buf_puts(b, f->labels[l]);
		buf_puts(b, "=\"");
		buf_escaped(b, s->values[l], true);
		buf_puts(b, "\"");
	}
	if (le) {
		if (f->n_labels > 0)
			buf_puts(b, ",");
		buf_puts(b, "le=\"");
		buf_puts(b, le);
		buf_puts(b, "\"");
	}
	buf_puts(b, "}");
}

static void buf_sample(struct buf *b, const struct metric_family *f, const char *suffix,
                       const struct series *s, const char *le, double v)
{
	char num[40];

	format_double(num, sizeof(num), v);
	buf_puts(b, f->name);
	buf_puts(b, suffix);
	buf_labels(b, f, s, le);
	buf_puts(b, " ");
	buf_puts(b, num);
	buf_puts(b, "\n");
}

static void render_family(struct buf *b, const struct metric_family *f)
{
	static const char *const type_names[] = {"counter", "gauge", "histogram"};

	if (f->n == 0)
		return;
	buf_puts(b, "# HELP ");
	buf_puts(b, f->name);
	buf_puts(b, " ");
	buf_escaped(b, f->help, false);
	buf_puts(b, "\n# TYPE ");
	buf_puts(b, f->name);
	buf_puts(b, " ");
	buf_puts(b, type_names[f->type]);
	buf_puts(b, "\n");
	for (size_t i = 0; i < f->n; i++) {
		const struct series *s = &f->s[i];

		if (f->type != METRIC_HISTOGRAM) {
			buf_sample(b, f, "", s, NULL, s->value);
			continue;
		}
		uint64_t cumulative = 0;
		char le[40];

		for (size_t k = 0; k < f->n_bounds; k++) {
			cumulative += s->buckets[k];
			format_double(le, sizeof(le), f->bounds[k]);
			buf_sample(b, f, "_bucket", s, le, (double)cumulative);
		}
		buf_sample(b, f, "_bucket", s, "+Inf", (double)s->count);
		buf_sample(b, f, "_sum", s, NULL, s->sum);
		buf_sample(b, f, "_count", s, NULL, (double)s->count);
	}
}

char *metrics_render(struct metrics *m, size_t *len)
{
	struct buf b = {0};
	size_t n_collect;

	pthread_mutex_lock(&m->lock);
	n_collect = m->n_collect;
	pthread_mutex_unlock(&m->lock);
	/* Collectors update families themselves, which takes the lock. */
	for (size_t i = 0; i < n_collect; i++)
		m->collect[i].fn(m->collect[i].arg);

	buf_grow(&b, 0);
	if (!b.oom)
		b.p[0] = '\0';
	pthread_mutex_lock(&m->lock);
	for (const struct metric_family *f = m->first; f; f = f->next)
		render_family(&b, f);
	pthread_mutex_unlock(&m->lock);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* --- process facts ---------------------------------------------------------- */

/* Seconds since the epoch at which the system booted, from /proc/stat; 0 unknown. */
static double boot_time(void)
{
	char line[256];
	double btime = 0;
	FILE *f = fopen("/proc/stat", "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lf", &btime) == 1)
			break;
	fclose(f);
	return btime;
}

static void collect_process(void *arg)
{
	struct metrics *m = arg;
	char buf[1024], *p;
	size_t n = 0;
	FILE *f;
	DIR *d;
	struct rlimit rl;
	double ticks = (double)sysconf(_SC_CLK_TCK);
	double page = (double)sysconf(_SC_PAGESIZE);

	f = fopen("/proc/self/stat", "r");
	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (p) {
		unsigned long long utime, stime, start, vsize;
		long long rss;

		/* Fields 3 (state) to 24 (rss), of which 14, 15, 22, 23, 24 are read. */
		if (sscanf(p + 2,
		           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
		           "%*d %*d %llu %llu %lld",
		           &utime, &stime, &start, &vsize, &rss) == 5) {
			metric_set(m->proc[0], NULL, (double)(utime + stime) / ticks);
			metric_set(m->proc[1], NULL, (double)rss * page);
			metric_set(m->proc[2], NULL, (double)vsize);
			metric_set(m->proc[3], NULL, boot_time() + (double)start / ticks);
		}
	}
	d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *de;
		double fds = 0;

		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				fds++;
		closedir(d);
		metric_set(m->proc[4], NULL, fds - 1); /* less the directory's own */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		metric_set(m->proc[5], NULL,
		           rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

int metrics_add_process(struct metrics *m)
{
	m->proc[0] = metrics_counter(m, "process_cpu_seconds_total",
	                             "Total user and system CPU time spent in seconds.", NULL);
	m->proc[1] = metrics_gauge(m, "process_resident_memory_bytes",
	                           "Resident memory size in bytes.", NULL);
	m->proc[2] =
	    metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL);
	m->proc[3] = metrics_gauge(m, "process_start_time_seconds",
	                           "Start time of the process since unix epoch in seconds.", NULL);
	m->proc[4] = metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", NULL);
	m->proc[5] =
	    metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", NULL);
	for (size_t i = 0; i < 6; i++)
		if (m->proc[i] == NULL)
			return -1;
	return metrics_on_collect(m, collect_process, m);
}

/* --- librdkafka statistics -------------------------------------------------- */

static int lag_cmp(const void *a, const void *b)
{
	const struct metrics_lag *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	if (c)
		return c;
	return (x->partition > y->partition) - (x->partition < y->partition);
}

int metrics_parse_lag(const char *json, size_t len, struct metrics_lag **out, size_t *n)
{
	json_t *root = json_loadb(json, len, 0, NULL);
	json_t *topics, *topic, *part;
	const char *tname, *pkey;
	struct metrics_lag *v = NULL;
	size_t count = 0, cap = 0;
	int rc = -1;

	if (root == NULL || !json_is_object(root))
		goto out;
	topics = json_object_get(root, "topics");
	if (topics != NULL && !json_is_object(topics))
		goto out;
	json_object_foreach(topics, tname, topic)
	{
		json_t *parts = json_object_get(topic, "partitions");

		json_object_foreach(parts, pkey, part)
		{
			json_t *jp = json_object_get(part, "partition");
			json_t *jl = json_object_get(part, "consumer_lag");

			if (!json_is_integer(jp) || !json_is_integer(jl))
				continue;
			/* -1 is librdkafka's internal unassigned partition; lag -1 unknown. */
			if (json_integer_value(jp) < 0 || json_integer_value(jl) < 0)
				continue;
			if (count == cap) {
				size_t ncap = cap ? 2 * cap : 16;
				struct metrics_lag *nv = realloc(v, ncap * sizeof(*nv));

				if (nv == NULL)
					goto out;
				v = nv;
				cap = ncap;
			}
			snprintf(v[count].topic, sizeof(v[count].topic), "%s", tname);
			v[count].partition = (int32_t)json_integer_value(jp);
			v[count].lag = (int64_t)json_integer_value(jl);
			count++;
		}
	}
	if (count > 1)
		qsort(v, count, sizeof(*v), lag_cmp);
	*out = v;
	*n = count;
	v = NULL;
	rc = 0;
out:
	free(v);
	json_decref(root);
	return rc;
}
