/*
 * mockcluster.c - librdkafka's mock cluster as an embedded Kafka, and the
 * `kafka-mock` subcommand that keeps one running for scripts.
 */
#include "mockcluster.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mockcluster {
	rd_kafka_t *rk; /* owns nothing but the mock; never produces */
	rd_kafka_mock_cluster_t *mcluster;
};

static const char *const default_topics[] = {"feedback.sms",      "feedback.email",
                                             "feedback.phone",    "feedback.social",
                                             "feedback.recovery", "feedback.dlq"};
#define N_DEFAULT_TOPICS (sizeof(default_topics) / sizeof(default_topics[0]))

static struct mockcluster *mockcluster_new0(int broker_cnt, const char *const *topics,
                                            size_t n_topics, int partitions, const char *debug,
                                            char *errstr, size_t errstr_size)
{
	struct mockcluster *m = NULL;
	rd_kafka_conf_t *conf = NULL;

	if (broker_cnt < 1) {
		snprintf(errstr, errstr_size, "mock cluster needs at least one broker, not %d",
		         broker_cnt);
		return NULL;
	}
	if (partitions < 1) {
		snprintf(errstr, errstr_size, "mock topics need at least one partition, not %d",
		         partitions);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	conf = rd_kafka_conf_new();
	/*
	 * The handle only anchors the mock and has no bootstrap.servers of its
	 * own; at the default level it would announce that on every start.
	 * Warnings and errors still come through.
	 */
	if (rd_kafka_conf_set(conf, "log_level", "4", errstr, errstr_size) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "client.id", "mockcluster", errstr, errstr_size) !=
	        RD_KAFKA_CONF_OK)
		goto fail;
	if (debug != NULL &&
	    rd_kafka_conf_set(conf, "debug", debug, errstr, errstr_size) != RD_KAFKA_CONF_OK)
		goto fail;
	m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (m->rk == NULL)
		goto fail;
	conf = NULL; /* owned by m->rk */

	m->mcluster = rd_kafka_mock_cluster_new(m->rk, broker_cnt);
	if (m->mcluster == NULL) {
		snprintf(errstr, errstr_size,
		         "cannot start a mock cluster of %d broker(s) on loopback (see the log)",
		         broker_cnt);
		goto fail;
	}
	for (size_t i = 0; i < n_topics; i++) {
		rd_kafka_resp_err_t err =
		    rd_kafka_mock_topic_create(m->mcluster, topics[i], partitions, 1);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errstr_size, "cannot create mock topic \"%s\": %s",
			         topics[i], rd_kafka_err2str(err));
			goto fail;
		}
	}
	return m;

fail:
	if (conf != NULL)
		rd_kafka_conf_destroy(conf);
	mockcluster_destroy(m);
	return NULL;
}

struct mockcluster *mockcluster_new(int broker_cnt, const char *const *topics, size_t n_topics,
                                    int partitions, char *errstr, size_t errstr_size)
{
	return mockcluster_new0(broker_cnt, topics, n_topics, partitions, NULL, errstr,
	                        errstr_size);
}

const char *mockcluster_bootstraps(const struct mockcluster *m)
{
	return rd_kafka_mock_cluster_bootstraps(m->mcluster);
}

rd_kafka_mock_cluster_t *mockcluster_handle(struct mockcluster *m)
{
	return m->mcluster;
}

void mockcluster_destroy(struct mockcluster *m)
{
	if (m == NULL)
		return;
	/* The mock belongs to the handle's bookkeeping: it must go first. */
	if (m->mcluster != NULL)
		rd_kafka_mock_cluster_destroy(m->mcluster);
	if (m->rk != NULL)
		rd_kafka_destroy(m->rk);
	free(m);
}

/* --- the kafka-mock subcommand ------------------------------------------ */

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
	        "usage: %s [options]\n"
	        "Runs an embedded Kafka (librdkafka's mock cluster) on loopback until SIGINT or\n"
	        "SIGTERM, and prints `bootstrap.servers=<addr>` on stdout once it is ready.\n"
	        "\n"
	        "  --partitions N         partitions of every topic (default 8)\n"
	        "  --brokers N            number of brokers (default 1)\n"
	        "  --topic NAME           a topic to create, repeatable (default: feedback.sms,\n"
	        "                         feedback.email, feedback.phone, feedback.social,\n"
	        "                         feedback.recovery, feedback.dlq)\n"
	        "  --bootstrap-file PATH  also write the address to PATH, atomically, and remove\n"
	        "                         it on exit, so a script can wait for the file\n"
	        "  --debug CONTEXTS       librdkafka debug contexts of the brokers, e.g. mock\n"
	        "  --help                 this text\n"
	        "\n"
	        "Each partition keeps at most 5 MiB or 100000 batches; older batches are\n"
	        "dropped. Unknown topics are created on first use with 4 partitions.\n",
	        prog);
}

static bool parse_count(const char *prog, const char *opt, const char *s, int max, int *out)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > max) {
		fprintf(stderr, "%s: invalid %s \"%s\": expected an integer from 1 to %d\n", prog,
		        opt, s, max);
		return false;
	}
	*out = (int)v;
	return true;
}

/* Writes addr to path through a temporary file and rename(), so readers never see a partial line.
 */
static int write_bootstrap_file(const char *path, const char *addr, char *errstr,
                                size_t errstr_size)
{
	char *tmp = NULL;
	FILE *f = NULL;
	int rc = -1;

	if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
		tmp = NULL;
		snprintf(errstr, errstr_size, "out of memory");
		goto out;
	}
	f = fopen(tmp, "w");
	if (f == NULL) {
		snprintf(errstr, errstr_size, "cannot create \"%s\": %s", tmp, strerror(errno));
		goto out;
	}
	if (fprintf(f, "%s\n", addr) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		snprintf(errstr, errstr_size, "cannot write \"%s\": %s", tmp, strerror(errno));
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(errstr, errstr_size, "cannot write \"%s\": %s", tmp, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		snprintf(errstr, errstr_size, "cannot rename \"%s\" to \"%s\": %s", tmp, path,
		         strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	if (rc != 0 && tmp != NULL)
		unlink(tmp);
	free(tmp);
	return rc;
}

int mockcluster_main(int argc, char **argv)
{
	static const struct option long_options[] = {
	    {"partitions", required_argument, NULL, 'p'},
	    {"brokers", required_argument, NULL, 'b'},
	    {"topic", required_argument, NULL, 't'},
	    {"bootstrap-file", required_argument, NULL, 'f'},
	    {"debug", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *prog = argc > 0 ? argv[0] : "kafka-mock";
	const char **topics = NULL;
	size_t n_topics = 0;
	int partitions = 8, brokers = 1;
	const char *bootstrap_file = NULL, *debug = NULL;
	struct mockcluster *m = NULL;
	struct sigaction sa, old_int, old_term;
	sigset_t block, old_mask;
	bool handlers_set = false, file_written = false;
	char errstr[512];
	int opt, rc = 1;

	/* Room for every argument as a --topic value, or for the defaults. */
	topics = calloc((size_t)argc + N_DEFAULT_TOPICS, sizeof(*topics));
	if (topics == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	/* 0, not 1: resets glibc's getopt in case the caller parsed options already. */
	optind = 0;
	while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (!parse_count(prog, "--partitions", optarg, 100000, &partitions))
				goto usage_error;
			break;
		case 'b':
			if (!parse_count(prog, "--brokers", optarg, 1000, &brokers))
				goto usage_error;
			break;
		case 't':
			if (*optarg == '\0') {
				fprintf(stderr, "%s: empty --topic\n", prog);
				goto usage_error;
			}
			topics[n_topics++] = optarg;
			break;
		case 'f':
			bootstrap_file = optarg;
			break;
		case 'd':
			debug = optarg;
			break;
		case 'h':
			usage(stdout, prog);
			rc = 0;
			goto out;
		default:
			goto usage_error;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", prog, argv[optind]);
		goto usage_error;
	}
	if (n_topics == 0) {
		for (size_t i = 0; i < N_DEFAULT_TOPICS; i++)
			topics[n_topics++] = default_topics[i];
	}

	/*
	 * Block the stop signals before anything can deliver them, so that the
	 * wait below cannot miss one that arrives between the check and the
	 * sleep.
	 */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old_mask);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	stop_signal = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	handlers_set = true;

	m = mockcluster_new0(brokers, topics, n_topics, partitions, debug, errstr, sizeof(errstr));
	if (m == NULL) {
		fprintf(stderr, "%s: %s\n", prog, errstr);
		goto out;
	}
	if (bootstrap_file != NULL) {
		if (write_bootstrap_file(bootstrap_file, mockcluster_bootstraps(m), errstr,
		                         sizeof(errstr)) < 0) {
			fprintf(stderr, "%s: %s\n", prog, errstr);
			goto out;
		}
		file_written = true;
	}
	printf("bootstrap.servers=%s\n", mockcluster_bootstraps(m));
	fflush(stdout);
	fprintf(stderr,
	        "%s: %d broker(s), %zu topic(s) of %d partition(s); stop with SIGINT or SIGTERM\n",
	        prog, brokers, n_topics, partitions);

	{
		sigset_t wait_mask = old_mask;

		sigdelset(&wait_mask, SIGINT);
		sigdelset(&wait_mask, SIGTERM);
		while (!stop_signal)
			sigsuspend(&wait_mask);
	}
	fprintf(stderr, "%s: stopping on %s\n", prog, strsignal(stop_signal));
	rc = 0;
	goto out;

usage_error:
	fprintf(stderr, "Try '%s --help'.\n", prog);
	rc = 2;
out:
	if (file_written && unlink(bootstrap_file) != 0)
		fprintf(stderr, "%s: cannot remove \"%s\": %s\n", prog, bootstrap_file,
		        strerror(errno));
	mockcluster_destroy(m);
	if (handlers_set) {
		/* Unblock while our handler is still in place: a late signal only sets the flag. */
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
	}
	free(topics);
	return rc;
}
