/*
 * main.c - the feedback-consumer binary: parses the command line and the
 * configuration, then hands over to one module per subcommand.
 */
#include "config.h"
#include "consumer.h"
#include "http.h"
#include "kconf.h"
#include "log.h"
#include "migrate.h"
#include "mockcluster.h"
#include "pgconn.h"
#include "publisher.h"
#include "report.h"
#include "triggerread.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

enum { EXIT_USAGE = 2 };

/*
 * Set by the signal handlers and the workers, read by every thread:
 * atomic, and lock-free, as a signal handler may only touch such objects.
 */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");
static atomic_int stop;

/*
 * The shutdown watchdog. A clean stop finishes the open batch, leaves the
 * group and sends the last triggers; but leaving the group waits on the
 * group coordinator, and librdkafka can wait for it much longer than a
 * grace period when Kafka is gone. Everything that counts is committed in
 * PostgreSQL (offsets, aggregates, the trigger outbox), so past
 * shutdown.timeout the process exits without waiting; a second signal
 * exits at once.
 */
static struct {
	sem_t wake; /* posted by each signal, and once by a finished shutdown */
	atomic_int signals;
	atomic_int finished;
	int64_t timeout_ms;
	pthread_t thread;
	bool running;
} watchdog;

static void on_signal(int sig)
{
	int saved = errno;

	(void)sig;
	stop = 1;
	if (watchdog.signals < 2)
		watchdog.signals++;
	if (watchdog.running)
		sem_post(&watchdog.wake); /* async-signal-safe */
	errno = saved;
}

static void *watchdog_main(void *arg)
{
	struct timespec deadline;

	(void)arg;
	while (sem_wait(&watchdog.wake) != 0)
		; /* EINTR */
	if (watchdog.finished)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += watchdog.timeout_ms / 1000;
	deadline.tv_nsec += (watchdog.timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	for (;;) {
		if (sem_timedwait(&watchdog.wake, &deadline) == 0) {
			if (watchdog.finished)
				return NULL;
			log_warn("second stop signal; exiting now, the state is in postgresql");
			_exit(EXIT_FAILURE);
		}
		if (errno == ETIMEDOUT)
			break;
	}
	if (watchdog.finished)
		return NULL;
	log_warn("shutdown did not finish within shutdown.timeout (%lld ms); exiting now, "
	         "the state is in postgresql",
	         (long long)watchdog.timeout_ms);
	_exit(EXIT_SUCCESS);
}

static int watchdog_start(int64_t timeout_ms)
{
	watchdog.timeout_ms = timeout_ms;
	if (sem_init(&watchdog.wake, 0, 0) != 0)
		return -1;
	watchdog.running = true; /* before the thread: a signal in between still counts */
	if (pthread_create(&watchdog.thread, NULL, watchdog_main, NULL) != 0) {
		watchdog.running = false;
		sem_destroy(&watchdog.wake);
		return -1;
	}
	return 0;
}

static void watchdog_stop(void)
{
	if (!watchdog.running)
		return;
	watchdog.finished = 1;
	sem_post(&watchdog.wake);
	pthread_join(watchdog.thread, NULL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	watchdog.running = false;
	sem_destroy(&watchdog.wake);
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: feedback-consumer <command> [--config FILE] [--key=value ...]\n"
	        "\n"
	        "commands:\n"
	        "  run          consume the feedback topics into postgresql\n"
	        "  migrate      create or upgrade the database schema, then exit\n"
	        "  report       print the per-channel KPI figures (--report.from, --report.to)\n"
	        "  triggers     print the recovery triggers on topic.recovery, decoded\n"
	        "  kafka-mock   start an embedded kafka for development (see kafka-mock --help)\n"
	        "\n"
	        "options:\n"
	        "  --print-config   print the effective settings (secrets redacted) and exit\n"
	        "  --help           this text and every setting\n"
	        "\n"
	        "Every setting is a config-file key, an environment variable FEEDBACK_<KEY> with\n"
	        "dots as underscores, and a flag --<key>; flags win over the environment, which\n"
	        "wins over the file. Any kafka.* key passes through to librdkafka.\n\n");
	config_print_help(out);
}

static PGconn *connect_db(const struct config *cfg, const char *name, bool writer)
{
	PGconn *conn = pgconn_open(config_get(cfg, "database.url"), name, writer);

	if (PQstatus(conn) != CONNECTION_OK) {
		/* Parsed when the configuration was read: host and user, never the password. */
		log_error("cannot connect to postgresql: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static int cmd_migrate(const struct config *cfg)
{
	const char *schema = config_get(cfg, "database.schema");
	char errstr[512];
	PGconn *conn = connect_db(cfg, "feedback-consumer migrate", true);

	if (conn == NULL)
		return EXIT_FAILURE;
	int n = migrate_run(conn, schema, errstr, sizeof(errstr));
	int version = n < 0 ? -1 : migrate_current_version(conn, schema, errstr, sizeof(errstr));
	PQfinish(conn);
	if (n < 0 || version < 0) {
		log_error("migration of schema \"%s\" failed: %s", schema, errstr);
		return EXIT_FAILURE;
	}
	log_info("schema \"%s\" is at version %d (%d migration%s applied)", schema, version, n,
	         n == 1 ? "" : "s");
	return EXIT_SUCCESS;
}

static int cmd_report(const struct config *cfg)
{
	const char *from = config_get(cfg, "report.from");
	const char *to = config_get(cfg, "report.to");
	char errstr[512];
	PGconn *conn = connect_db(cfg, "feedback-consumer report", false);

	if (conn == NULL)
		return EXIT_FAILURE;
	int rc = report_print(conn, config_get(cfg, "database.schema"), *from ? from : NULL,
	                      *to ? to : NULL, stdout, errstr, sizeof(errstr));
	PQfinish(conn);
	if (rc == -2) { /* a bad setting, found by PostgreSQL */
		log_error("%s", errstr);
		return EXIT_USAGE;
	}
	if (rc != 0) {
		log_error("report failed: %s", errstr);
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

static int cmd_triggers(const struct config *cfg)
{
	char errstr[512];
	rd_kafka_conf_t *conf = kconf_new(cfg, KCONF_CONSUMER, errstr, sizeof(errstr));

	if (conf == NULL) {
		log_error("%s", errstr);
		return EXIT_USAGE;
	}
	if (triggerread_print(conf, config_get(cfg, "topic.recovery"), stdout, errstr,
	                      sizeof(errstr)) < 0) {
		log_error("%s", errstr);
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

/* What the http probes and the scrape-time collector of run read. */
struct run_state {
	struct metrics *metrics; /* NULL when http.port is 0 */
	struct http_opts http_opts;
	int64_t liveness_timeout_ms;
	struct worker *workers;
	int n_workers;
	struct publisher *pub;
	struct http *http;
	struct metric_family *sent, *failed, *backlog, *oldest, *ready;
};

/* One consumer of the process: a member of the group with its own connections. */
struct worker {
	struct consumer *c;
	int index;
	int rc;
	pthread_t thread;
};

/* Live when every consumer is; the detail is that of the first that is not. */
static bool probe_live(void *arg, char *detail, size_t detail_size)
{
	struct run_state *rs = arg;

	for (int i = 0; i < rs->n_workers; i++)
		if (!consumer_live(rs->workers[i].c, rs->liveness_timeout_ms, detail, detail_size))
			return false;
	return true;
}

static bool probe_ready(void *arg, char *detail, size_t detail_size)
{
	struct run_state *rs = arg;

	for (int i = 0; i < rs->n_workers; i++)
		if (!consumer_ready(rs->workers[i].c, detail, detail_size))
			return false;
	return rs->n_workers > 0;
}

/* The publisher keeps its own counters, the consumers their readiness; read at each scrape. */
static void collect_publisher(void *arg)
{
	struct run_state *rs = arg;
	struct publisher_stats s;
	char detail[128];

	metric_set(rs->ready, NULL, probe_ready(rs, detail, sizeof(detail)));
	if (rs->pub == NULL)
		return;
	publisher_stats(rs->pub, &s);
	metric_set(rs->sent, NULL, (double)s.sent);
	metric_set(rs->failed, NULL, (double)s.failed);
	if (s.backlog >= 0)
		metric_set(rs->backlog, NULL, (double)s.backlog);
	metric_set(rs->oldest, NULL, (double)s.oldest_unsent_age_s);
}

static int run_metrics_setup(struct run_state *rs)
{
	struct metrics *m = rs->metrics;

	rs->sent = metrics_counter(m, "feedback_recovery_triggers_sent_total",
	                           "Recovery triggers acknowledged by the broker.", NULL);
	rs->failed = metrics_counter(m, "feedback_recovery_publish_failures_total",
	                             "Recovery trigger produce attempts that failed; the rows "
	                             "stay queued.",
	                             NULL);
	rs->backlog = metrics_gauge(m, "feedback_recovery_outbox_backlog",
	                            "Unsent recovery triggers in the outbox.", NULL);
	rs->oldest = metrics_gauge(m, "feedback_recovery_outbox_oldest_age_seconds",
	                           "Age of the oldest unsent recovery trigger; 0 when none.", NULL);
	rs->ready = metrics_gauge(
	    m, "feedback_ready", "1 when connected to postgresql and a member of the group.", NULL);
	if (!rs->sent || !rs->failed || !rs->backlog || !rs->oldest || !rs->ready)
		return -1;
	if (metrics_add_process(m) != 0 || metrics_on_collect(m, collect_publisher, rs) != 0)
		return -1;
	return 0;
}

/* Runs one consumer until stop; a consumer that fails stops the others too. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (w->index > 0)
		log_set_worker(w->index);
	w->rc = consumer_run(w->c, &stop);
	if (w->rc != 0)
		stop = 1;
	return NULL;
}

static int run_service(const struct config *cfg, struct run_state *rs)
{
	static const char *const topic_keys[CHANNEL_MAX] = {"topic.sms", "topic.email",
	                                                    "topic.phone", "topic.social"};
	struct consumer_opts opts = {
	    .group = config_get(cfg, "kafka.group.id"),
	    .dlq_topic = config_get(cfg, "topic.dlq"),
	    .conninfo = config_get(cfg, "database.url"),
	    .schema = config_get(cfg, "database.schema"),
	    .batch_max_events = (int)config_get_int(cfg, "batch.max.events"),
	    .batch_linger_ms = (int)config_get_int(cfg, "batch.linger"),
	    .start_latest = strcmp(config_get(cfg, "offset.reset"), "latest") == 0,
	    .db_retry_max_ms = (int)config_get_int(cfg, "database.retry.max"),
	    .db_check_interval_ms = (int)config_get_int(cfg, "database.check.interval"),
	    .synchronous_commit = config_get(cfg, "database.synchronous.commit"),
	    .idle_tx_timeout_ms = config_get_int(cfg, "database.idle.transaction.timeout"),
	    .policy =
	        {
	            .service_level_seconds = (uint32_t)config_get_int(cfg, "sla.seconds"),
	            .csat_negative_k = (int)config_get_int(cfg, "rules.csat.bottom.k"),
	            .nps_detractor_max = (int)config_get_int(cfg, "rules.nps.detractor.max"),
	            .ces_high_min_7 = (int)config_get_int(cfg, "rules.ces7.high.min"),
	            .ces_high_min_5 = (int)config_get_int(cfg, "rules.ces5.high.min"),
	        },
	};
	struct rules_policy recovery;
	struct publisher_opts popts = {
	    .conninfo = opts.conninfo,
	    .schema = opts.schema,
	    .topic = config_get(cfg, "topic.recovery"),
	    .retention_ms = config_get_int(cfg, "recovery.outbox.retention"),
	    .db_retry_max_ms = opts.db_retry_max_ms,
	    .idle_tx_timeout_ms = opts.idle_tx_timeout_ms,
	};
	static atomic_int publisher_stop;
	char errstr[512];
	rd_kafka_conf_t *rconf = NULL;
	struct worker *workers = NULL;
	rd_kafka_conf_t **confs = NULL; /* consumer and producer of each worker */
	struct publisher *pub = NULL;
	int rc = EXIT_FAILURE, n, n_started = 0;

	rules_policy_defaults(&recovery);
	recovery.critical_nps_max = (int)config_get_int(cfg, "recovery.critical.nps.max");
	recovery.critical_csat_lowest = config_get_bool(cfg, "recovery.critical.csat.lowest");
	recovery.high_on_comment = config_get_bool(cfg, "recovery.high.on.comment");
	recovery.high_on_repeat = config_get_bool(cfg, "recovery.high.on.repeat");
	recovery.repeat_window_us = config_get_int(cfg, "recovery.repeat.window") * 1000;
	recovery.cooldown_us = config_get_int(cfg, "recovery.cooldown") * 1000;
	recovery.follow_up_us[SEVERITY_CRITICAL] =
	    config_get_int(cfg, "recovery.follow.up.critical") * 1000;
	recovery.follow_up_us[SEVERITY_HIGH] =
	    config_get_int(cfg, "recovery.follow.up.high") * 1000;
	recovery.follow_up_us[SEVERITY_NORMAL] =
	    config_get_int(cfg, "recovery.follow.up.normal") * 1000;
	if (config_get_bool(cfg, "recovery.enabled"))
		opts.recovery = &recovery;

	for (int t = 0; t < CHANNEL_MAX; t++)
		opts.topics[t] = config_get(cfg, topic_keys[t]);
	opts.metrics = rs->metrics;
	n = (int)config_get_int(cfg, "consumer.workers");
	workers = calloc((size_t)n, sizeof(*workers));
	confs = calloc(2 * (size_t)n, sizeof(*confs));
	if (workers == NULL || confs == NULL) {
		log_error("out of memory");
		goto out;
	}
	/* Every configuration is checked before anything connects. */
	for (int i = 0; i < n; i++) {
		rd_kafka_conf_t *cconf = kconf_new(cfg, KCONF_CONSUMER, errstr, sizeof(errstr));

		/* The consumer lag gauges come from librdkafka's statistics. */
		if (cconf && rs->metrics &&
		    config_get(cfg, "kafka.statistics.interval.ms")[0] == '\0')
			rd_kafka_conf_set(cconf, "statistics.interval.ms", "5000", errstr,
			                  sizeof(errstr));
		if (cconf && kconf_set_worker(cconf, cfg, i, errstr, sizeof(errstr)) != 0) {
			rd_kafka_conf_destroy(cconf);
			cconf = NULL;
		}
		confs[2 * i] = cconf;
		if (cconf == NULL || (confs[2 * i + 1] = kconf_new(cfg, KCONF_PRODUCER, errstr,
		                                                   sizeof(errstr))) == NULL)
			break;
	}
	if (confs[2 * n - 1] && opts.recovery)
		rconf = kconf_new(cfg, KCONF_PRODUCER, errstr, sizeof(errstr));
	if (confs[2 * n - 1] == NULL || (opts.recovery && rconf == NULL)) {
		log_error("%s", errstr);
		rc = EXIT_USAGE;
		goto out;
	}
	if (kconf_check(confs[0], KCONF_CONSUMER, errstr, sizeof(errstr)) != 0 ||
	    kconf_check(confs[1], KCONF_PRODUCER, errstr, sizeof(errstr)) != 0) {
		log_error("the kafka.* settings: %s", errstr);
		rc = EXIT_USAGE;
		goto out;
	}
	if (rconf) {
		pub = publisher_new(&popts, rconf, errstr, sizeof(errstr));
		rconf = NULL; /* taken by publisher_new, also on failure */
		if (pub == NULL) {
			log_error("cannot start the recovery publisher: %s", errstr);
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		workers[i].index = i;
		workers[i].c =
		    consumer_new(&opts, confs[2 * i], confs[2 * i + 1], errstr, sizeof(errstr));
		confs[2 * i] = confs[2 * i + 1] = NULL; /* taken by consumer_new, also on failure */
		if (workers[i].c == NULL) {
			log_error("cannot start the consumer: %s", errstr);
			goto out;
		}
	}

	if (watchdog_start(config_get_int(cfg, "shutdown.timeout")) != 0) {
		log_error("cannot start the shutdown watchdog: %s", strerror(errno));
		goto out;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (pub && publisher_start(pub, &publisher_stop, errstr, sizeof(errstr)) != 0) {
		log_error("%s", errstr);
		goto out;
	}
	rs->workers = workers;
	rs->n_workers = n;
	rs->pub = pub;
	if (rs->metrics) {
		rs->http = http_new(&rs->http_opts, errstr, sizeof(errstr));
		if (rs->http == NULL) {
			log_error("%s", errstr);
			goto out;
		}
	}
	/* Worker 0 runs on this thread; with several, every line names its worker. */
	for (int i = 1; i < n; i++) {
		int err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);

		if (err) {
			log_error("cannot start consumer %d: %s", i, strerror(err));
			stop = 1;
			n_started = i;
			break;
		}
		n_started = i + 1;
	}
	if (n_started == 0)
		n_started = 1;
	if (n > 1)
		log_set_worker(0);
	worker_main(&workers[0]);
	log_set_worker(-1);
	rc = EXIT_SUCCESS;
	for (int i = 0; i < n_started; i++) {
		if (i > 0)
			pthread_join(workers[i].thread, NULL);
		if (workers[i].rc != 0)
			rc = EXIT_FAILURE;
	}
	if (n_started < n)
		rc = EXIT_FAILURE;
out:
	http_destroy(rs->http);
	rs->http = NULL;
	rs->n_workers = 0;
	/* The publisher stops last, so the triggers of the final batch go out. */
	publisher_stop = 1;
	publisher_destroy(pub);
	for (int i = 0; workers && i < n; i++)
		consumer_destroy(workers[i].c);
	for (int i = 0; confs && i < 2 * n; i++)
		if (confs[i])
			rd_kafka_conf_destroy(confs[i]);
	if (rconf) /* not yet given to publisher_new */
		rd_kafka_conf_destroy(rconf);
	free(confs);
	free(workers);
	watchdog_stop();
	return rc;
}

static int cmd_run(const struct config *cfg)
{
	struct run_state rs = {
	    .liveness_timeout_ms = config_get_int(cfg, "http.liveness.timeout"),
	    .http_opts =
	        {
	            .bind = config_get(cfg, "http.bind"),
	            .port = (int)config_get_int(cfg, "http.port"),
	            .live = probe_live,
	            .ready = probe_ready,
	        },
	};
	int rc;

	rs.http_opts.arg = &rs;
	if (rs.http_opts.port != 0) {
		rs.metrics = metrics_new();
		if (rs.metrics == NULL || run_metrics_setup(&rs) != 0) {
			log_error("out of memory setting up the metrics");
			metrics_destroy(rs.metrics);
			return EXIT_FAILURE;
		}
		rs.http_opts.metrics = rs.metrics;
	}
	rc = run_service(cfg, &rs);
	metrics_destroy(rs.metrics);
	return rc;
}

int main(int argc, char **argv)
{
	struct config *cfg = NULL;
	char errstr[512];
	bool print_config = false;
	int rc = EXIT_USAGE;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_SUCCESS;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "kafka-mock") == 0)
		return mockcluster_main(argc - 1, argv + 1);
	if (strcmp(cmd, "run") != 0 && strcmp(cmd, "migrate") != 0 && strcmp(cmd, "report") != 0 &&
	    strcmp(cmd, "triggers") != 0) {
		fprintf(stderr, "feedback-consumer: unknown command '%s' (see --help)\n", cmd);
		return EXIT_USAGE;
	}

	/* Strip the flags that are not settings; config_load sees the rest. */
	int n = 1;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--print-config") == 0) {
			print_config = true;
		} else if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_SUCCESS;
		} else {
			argv[++n] = argv[i];
		}
	}

	cfg = config_new();
	if (cfg == NULL) {
		fprintf(stderr, "feedback-consumer: out of memory\n");
		return EXIT_FAILURE;
	}
	if (config_load(cfg, n, argv + 1, environ, errstr, sizeof(errstr)) != 0) {
		fprintf(stderr, "feedback-consumer: %s\n", errstr);
		goto out;
	}
	log_setup((enum log_level)log_level_parse(config_get(cfg, "log.level")),
	          strcmp(config_get(cfg, "log.format"), "json") == 0   ? LOG_FORMAT_JSON
	          : strcmp(config_get(cfg, "log.format"), "text") == 0 ? LOG_FORMAT_TEXT
	                                                               : LOG_FORMAT_AUTO);
	if (print_config) {
		config_print(cfg, stdout);
		rc = EXIT_SUCCESS;
		goto out;
	}

	if (strcmp(cmd, "run") == 0)
		rc = cmd_run(cfg);
	else if (strcmp(cmd, "migrate") == 0)
		rc = cmd_migrate(cfg);
	else if (strcmp(cmd, "triggers") == 0)
		rc = cmd_triggers(cfg);
	else
		rc = cmd_report(cfg);
out:
	config_destroy(cfg);
	return rc;
}
