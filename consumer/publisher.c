#include "publisher.h"

#include "db.h"
#include "log.h"
#include "pgconn.h"
#include "trigger.h"

#include <endian.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

/* Rows claimed per transaction. */
#define CLAIM_ROWS 500
/*
 * Longest wait for the broker before the claimed rows are released again;
 * under database.idle.transaction.timeout's least value (15 s).
 */
#define ACK_TIMEOUT_MS 10000
/* Longest time between claims that scan the outbox from its first unsent row. */
#define FULL_SCAN_US 1000000

struct publisher {
	const struct publisher_opts *opts;
	rd_kafka_t *rk;
	/* The producer's configuration: each producer is made from a copy (pub_new_producer). */
	rd_kafka_conf_t *conf;
	/* held so that the topic's leaders are known before the first trigger */
	rd_kafka_topic_t *rkt;
	PGconn *conn;
	char *channel; /* quoted LISTEN channel, "<schema>.recovery" */
	pthread_t thread;
	bool started;
	atomic_int *stop;
	/* What became of each claimed row, by claim index (enum claim_state). */
	unsigned char state[CLAIM_ROWS];
	bool trimmed[CLAIM_ROWS]; /* produced without its comment */
	int pending;
	/* Rows up to this id that cannot be sent were logged once already. */
	int64_t stuck_logged;
	_Atomic unsigned long long sent, failed;
	_Atomic long long backlog, oldest_age;
	int64_t next_prune_us, next_backlog_us;
	bool broker_down;
	bool reconnect; /* the last error asks for a new session (db_classify) */
	/*
	 * Claims start after this id while a backlog drains. The sent rows
	 * leave dead entries at the front of the pending index until vacuum,
	 * and a claim from the start walked them all: 6.1 million index
	 * entries for 59,525 triggers in one benchmark run. A row committed
	 * late with a lower id is found by the next claim from the start:
	 * once caught up, and at least every FULL_SCAN_US.
	 */
	int64_t after;
	int64_t next_full_scan_us;
};

/*
 * A claimed row is produced, and acknowledged or not. One too large for
 * the topic goes again without its comment; one too large even so stays
 * unsent, logged, and is passed over so that the rows after it go out.
 */
enum claim_state {
	CLAIM_UNSENT,
	CLAIM_INFLIGHT,
	CLAIM_ACKED,
	CLAIM_TOO_LARGE, /* the broker refused it for its size */
	CLAIM_STUCK,     /* too large without its comment, or nothing to leave out */
	CLAIM_FAILED,    /* not delivered: the broker is down, or slow */
};

static bool too_large(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct publisher *p = opaque;
	intptr_t i = (intptr_t)rkm->_private;

	(void)rk;
	p->pending--;
	if (i < 0 || i >= CLAIM_ROWS)
		return;
	if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		p->state[i] = CLAIM_ACKED;
	} else if (too_large(rkm->err)) {
		p->state[i] = CLAIM_TOO_LARGE;
	} else {
		p->state[i] = CLAIM_FAILED;
		p->failed++;
		if (!p->broker_down)
			log_warn("recovery trigger not delivered to \"%s\": %s; it stays queued",
			         p->opts->topic, rd_kafka_err2str(rkm->err));
		p->broker_down = true;
	}
}

/* A producer made from a copy of p->conf, and its topic handle; false with errstr. */
static bool pub_new_producer(struct publisher *p, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(p->conf);

	p->rk = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size) : NULL;
	if (p->rk == NULL) {
		if (conf)
			rd_kafka_conf_destroy(conf);
		else
			snprintf(errstr, errstr_size, "out of memory");
		return false;
	}
	/* Asks for the topic's leaders now, not when the first trigger waits for them. */
	p->rkt = rd_kafka_topic_new(p->rk, p->opts->topic, NULL);
	return true;
}

/* Whether the idempotent producer failed for good: it sends nothing any more. */
static bool pub_producer_failed(struct publisher *p, char *reason, size_t size)
{
	return p->rk == NULL ||
	       rd_kafka_fatal_error(p->rk, reason, size) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

struct publisher *publisher_new(const struct publisher_opts *opts, rd_kafka_conf_t *producer_conf,
                                char *errstr, size_t errstr_size)
{
	struct publisher *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		rd_kafka_conf_destroy(producer_conf);
		return NULL;
	}
	p->opts = opts;
	p->backlog = -1;
	rd_kafka_conf_set_opaque(producer_conf, p);
	rd_kafka_conf_set_dr_msg_cb(producer_conf, on_delivery);
	if (rd_kafka_conf_set(producer_conf, "enable.idempotence", "true", errstr, errstr_size) ||
	    rd_kafka_conf_set(producer_conf, "acks", "all", errstr, errstr_size) ||
	    rd_kafka_conf_set(producer_conf, "linger.ms", "2", errstr, errstr_size) ||
	    rd_kafka_conf_set(producer_conf, "client.id", "feedback-consumer-recovery", errstr,
	                      errstr_size)) {
		rd_kafka_conf_destroy(producer_conf);
		free(p);
		return NULL;
	}
	p->conf = producer_conf;
	if (!pub_new_producer(p, errstr, errstr_size)) {
		rd_kafka_conf_destroy(p->conf);
		free(p);
		return NULL;
	}
	return p;
}

static void pub_disconnect(struct publisher *p)
{
	if (p->conn)
		PQfinish(p->conn);
	p->conn = NULL;
}

/*
 * Logs the failure of a statement, and notes one that asks for a new
 * session, as the consumer's do: a server read-only after a failover, one
 * that shuts down.
 */
static void pub_failed(struct publisher *p, const PGresult *res, const char *what)
{
	if (db_classify(PQresultErrorField(res, PG_DIAG_SQLSTATE)) == DB_RECONNECT)
		p->reconnect = true;
	log_warn("recovery publisher: %s: %s", what, PQerrorMessage(p->conn));
}

static bool pub_exec_ok(struct publisher *p, const char *sql, const char *what)
{
	PGresult *res = PQexec(p->conn, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		pub_failed(p, res, what);
	PQclear(res);
	return ok;
}

/*
 * pg_notify() refuses a channel name over 63 bytes (NAMEDATALEN - 1) and
 * LISTEN cuts it: for a schema name over 54 bytes, the name keeps the
 * first 45 and a hash of the whole (FNV-1a), so that two long names that
 * begin alike still differ.
 */
char *publisher_channel(const char *schema)
{
	static const char suffix[] = ".recovery";
	size_t n = strlen(schema);
	char *name;

	if (n + sizeof(suffix) - 1 <= 63) {
		name = malloc(n + sizeof(suffix));
		if (name != NULL) {
			memcpy(name, schema, n);
			memcpy(name + n, suffix, sizeof(suffix));
		}
		return name;
	}
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)schema[i]) * 16777619u;
	name = malloc(64);
	if (name != NULL)
		snprintf(name, 64, "%.45s.%08" PRIx32 "%s", schema, h, suffix);
	return name;
}

static bool pub_connect(struct publisher *p)
{
	char sql[300];

	pub_disconnect(p);
	p->conn = pgconn_open(p->opts->conninfo, "feedback-consumer publisher", true);
	if (PQstatus(p->conn) != CONNECTION_OK) {
		const char *msg = PQerrorMessage(p->conn);
		log_warn("recovery publisher cannot connect to postgresql: %.*s",
		         (int)strcspn(msg, "\n"), msg);
		pub_disconnect(p);
		return false;
	}
	char *schema = PQescapeIdentifier(p->conn, p->opts->schema, strlen(p->opts->schema));
	if (p->channel == NULL) {
		char *name = publisher_channel(p->opts->schema);

		if (name != NULL)
			p->channel = PQescapeIdentifier(p->conn, name, strlen(name));
		free(name);
	}
	if (schema == NULL || p->channel == NULL) {
		PQfreemem(schema);
		pub_disconnect(p);
		return false;
	}
	snprintf(sql, sizeof(sql), "SET search_path TO %s", schema);
	PQfreemem(schema);
	if (!pub_exec_ok(p, sql, "setting the search path")) {
		pub_disconnect(p);
		return false;
	}
	/*
	 * A claim must walk the pending index in id order and stop after its
	 * rows. A bitmap scan, which the planner picks for a fresh table, reads
	 * every entry, sorts, and never marks the entries of sent rows dead, so
	 * each claim paid again for every row sent since the last vacuum.
	 */
	if (!pub_exec_ok(p, "SET enable_bitmapscan = off", "setting the claim plan")) {
		pub_disconnect(p);
		return false;
	}
	/*
	 * A claim holds its rows locked while the broker acknowledges them.
	 * A publisher frozen or cut off meanwhile would keep every other
	 * replica's publisher off them until TCP gives up on it: hours.
	 */
	if (p->opts->idle_tx_timeout_ms > 0) {
		snprintf(sql, sizeof(sql), "SET idle_in_transaction_session_timeout TO %lld",
		         (long long)p->opts->idle_tx_timeout_ms);
		if (!pub_exec_ok(p, sql, "setting idle_in_transaction_session_timeout")) {
			pub_disconnect(p);
			return false;
		}
	}
	snprintf(sql, sizeof(sql), "LISTEN %s", p->channel);
	if (!pub_exec_ok(p, sql, "listening for new triggers")) {
		pub_disconnect(p);
		return false;
	}
	return true;
}

/* The id of claimed row i: a binary int8, in network byte order. */
static int64_t claimed_id(const PGresult *res, int i)
{
	uint64_t be = 0;

	memcpy(&be, PQgetvalue(res, i, 0), sizeof(be));
	return (int64_t)be64toh(be);
}

/* Produces claimed row i: as queued, or without its comment once trimmed. */
static rd_kafka_resp_err_t pub_produce(struct publisher *p, const PGresult *res, int i)
{
	const uint8_t *value = (const uint8_t *)PQgetvalue(res, i, 2);
	size_t len = (size_t)PQgetlength(res, i, 2);
	uint8_t *trimmed = NULL;

	if (p->trimmed[i]) {
		trimmed = trigger_without_comment(value, len, &len);
		if (trimmed == NULL)
			return RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; /* no smaller form */
		value = trimmed;
	}
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    p->rk, RD_KAFKA_V_TOPIC(p->opts->topic),
	    RD_KAFKA_V_KEY(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1)),
	    RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
	free(trimmed);
	return err;
}

/* A row too large for the topic even without its comment: logged once. */
static void pub_stuck(struct publisher *p, const PGresult *res, int i)
{
	int64_t id = claimed_id(res, i);

	p->state[i] = CLAIM_STUCK;
	if (id <= p->stuck_logged)
		return;
	p->stuck_logged = id;
	p->failed++;
	log_error("recovery trigger %s of %d bytes cannot be sent: too large for \"%s\" even "
	          "without its comment; it stays unsent in the outbox (id %lld)",
	          PQgetvalue(res, i, 3), PQgetlength(res, i, 2), p->opts->topic, (long long)id);
}

/*
 * Produces the claimed rows not yet in flight (trimming those the producer
 * or the broker refused for their size), then waits for the broker until
 * deadline_us; what it has not acknowledged by then is withdrawn and stays
 * unsent.
 */
static void pub_send(struct publisher *p, const PGresult *res, int rows, int64_t deadline_us)
{
	for (int i = 0; i < rows; i++) {
		if (p->state[i] == CLAIM_TOO_LARGE) {
			if (p->trimmed[i]) {
				pub_stuck(p, res, i);
				continue;
			}
			p->trimmed[i] = true;
		} else if (p->state[i] != CLAIM_UNSENT) {
			continue;
		}
		rd_kafka_resp_err_t err = pub_produce(p, res, i);
		if (too_large(err) && !p->trimmed[i]) {
			p->trimmed[i] = true;
			err = pub_produce(p, res, i);
		}
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			p->state[i] = CLAIM_INFLIGHT;
			p->pending++;
		} else if (too_large(err)) {
			pub_stuck(p, res, i);
		} else {
			/* The rest of the claim waits for the next one. */
			p->failed++;
			log_warn("recovery publisher: producing: %s", rd_kafka_err2str(err));
			break;
		}
	}
	while (p->pending > 0 && mono_us() < deadline_us)
		rd_kafka_poll(p->rk, 50);
	if (p->pending > 0) {
		/* Not acknowledged in time: withdraw them; the rows stay unsent. */
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		while (p->pending > 0)
			rd_kafka_poll(p->rk, 50);
	}
}

/*
 * Claims up to CLAIM_ROWS unsent rows, produces them, waits for the
 * broker, and marks the acknowledged ones sent. Returns the number of rows
 * claimed (CLAIM_ROWS: more may wait), 0 when some were not delivered, or
 * -1 when the connection failed.
 */
static int pub_drain_once(struct publisher *p)
{
	static const char claim[] =
	    "SELECT id, customer_id, payload, trigger_id FROM recovery_outbox "
	    "WHERE sent_at IS NULL AND id > $1::int8 ORDER BY id LIMIT 500 "
	    "FOR UPDATE SKIP LOCKED";
	PGresult *res = NULL;
	char *ids = NULL, after[24];
	const char *claim_params[1] = {after};
	int rows = 0, acked = 0, stuck = 0;
	int64_t last_id = 0;

	if (mono_us() >= p->next_full_scan_us) {
		p->after = 0;
		p->next_full_scan_us = mono_us() + FULL_SCAN_US;
	}
	snprintf(after, sizeof(after), "%lld", (long long)p->after);
	if (!pub_exec_ok(p, "BEGIN", "beginning a transaction"))
		return -1;
	res = PQexecParams(p->conn, claim, 1, NULL, claim_params, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pub_failed(p, res, "claiming triggers");
		PQclear(res);
		return -1;
	}
	rows = PQntuples(res);
	memset(p->state, CLAIM_UNSENT, sizeof(p->state));
	memset(p->trimmed, 0, sizeof(p->trimmed));
	p->pending = 0;
	/* One deadline for the claim: its rows stay locked, the transaction idle, meanwhile. */
	int64_t deadline = mono_us() + ACK_TIMEOUT_MS * 1000LL;
	pub_send(p, res, rows, deadline);
	/* A second round for the rows the broker refused for their size. */
	for (int i = 0; i < rows; i++) {
		if (p->state[i] == CLAIM_TOO_LARGE) {
			pub_send(p, res, rows, deadline);
			break;
		}
	}

	/* The ids of acknowledged rows, as an int8[] literal. */
	size_t cap = 3 + (size_t)rows * 21, len = 0;
	ids = malloc(cap);
	if (ids == NULL) {
		PQclear(res);
		return -1;
	}
	ids[len++] = '{';
	for (int i = 0; i < rows; i++) {
		if (p->state[i] == CLAIM_TOO_LARGE) /* refused again, trimmed */
			pub_stuck(p, res, i);
		if (p->state[i] == CLAIM_STUCK)
			stuck++;
		if (p->state[i] != CLAIM_ACKED)
			continue;
		if (p->trimmed[i])
			log_warn(
			    "recovery trigger %s was too large for \"%s\" and went without its "
			    "comment",
			    PQgetvalue(res, i, 3), p->opts->topic);
		len += (size_t)snprintf(ids + len, cap - len, "%s%lld", acked ? "," : "",
		                        (long long)claimed_id(res, i));
		acked++;
	}
	if (rows > 0)
		last_id = claimed_id(res, rows - 1);
	ids[len++] = '}';
	ids[len] = '\0';
	PQclear(res);
	res = NULL;

	if (acked > 0) {
		const char *params[1] = {ids};
		res = PQexecParams(
		    p->conn,
		    "UPDATE recovery_outbox SET sent_at = now() WHERE id = ANY($1::int8[])", 1,
		    NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			pub_failed(p, res, "marking triggers sent");
			PQclear(res);
			free(ids);
			return -1;
		}
		PQclear(res);
	}
	free(ids);
	if (!pub_exec_ok(p, "COMMIT", "committing"))
		return -1;
	p->sent += (unsigned long long)acked;
	/*
	 * Draining a backlog, all sent or unsendable: the next claim starts
	 * after these rows. Unsendable rows are claimed again by the scans
	 * from the start, and passed over again.
	 */
	bool done = acked + stuck == rows;
	if (rows == CLAIM_ROWS && done) {
		p->after = last_id;
	} else {
		p->after = 0;
		p->next_full_scan_us = mono_us() + FULL_SCAN_US;
	}
	if (done && acked > 0 && p->broker_down) {
		log_info("recovery topic \"%s\" is writable again", p->opts->topic);
		p->broker_down = false;
	}
	return done ? rows : 0;
}

static void pub_check_backlog(struct publisher *p)
{
	PGresult *res = PQexec(p->conn, "SELECT count(*), coalesce(extract(epoch FROM now() - "
	                                "min(detected_at))::bigint, 0) FROM recovery_outbox "
	                                "WHERE sent_at IS NULL");

	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		p->backlog = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		p->oldest_age = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		if (p->backlog > 0 && p->broker_down)
			log_warn("%lld recovery triggers wait in the outbox, the oldest for %lld s",
			         (long long)p->backlog, (long long)p->oldest_age);
	}
	PQclear(res);
	p->next_backlog_us = mono_us() + 10 * 1000000LL;
}

static void pub_prune(struct publisher *p)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
	         "DELETE FROM recovery_outbox WHERE sent_at < now() - %lld * interval '1 ms'",
	         (long long)p->opts->retention_ms);
	pub_exec_ok(p, sql, "pruning sent triggers");
	p->next_prune_us = mono_us() + 3600 * 1000000LL;
}

/* Sleeps until a NOTIFY arrives, timeout_ms passes, or stop. */
static void pub_wait(struct publisher *p, int timeout_ms)
{
	int sock = PQsocket(p->conn);
	int64_t until = mono_us() + timeout_ms * 1000LL;

	if (sock < 0) /* the connection is gone: the caller's next statement reconnects */
		return;
	while (!*p->stop && mono_us() < until) {
		fd_set rd;
		struct timeval tv = {0, 100000}; /* stop is checked every 100 ms */
		PGnotify *n;
		bool woke = false;

		FD_ZERO(&rd);
		FD_SET(sock, &rd);
		if (select(sock + 1, &rd, NULL, NULL, &tv) < 0)
			return;
		if (!PQconsumeInput(p->conn))
			return;
		while ((n = PQnotifies(p->conn)) != NULL) {
			woke = true;
			PQfreemem(n);
		}
		if (woke)
			return;
	}
}

static void pub_sleep(struct publisher *p, int ms)
{
	for (int waited = 0; waited < ms && !*p->stop; waited += 100) {
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static int next_backoff(int ms, int cap)
{
	return ms * 2 > cap ? cap : ms * 2;
}

/*
 * A fatal error of the idempotent producer (librdkafka's, after the broker
 * lost acknowledged messages, say) stops it for good: every trigger would
 * wait in the outbox until a restart. A new producer takes over; what the
 * old one did not get acknowledged is still unsent and goes again.
 */
static void pub_renew_producer(struct publisher *p)
{
	char reason[512] = "", errstr[512];

	if (p->rk) {
		pub_producer_failed(p, reason, sizeof(reason));
		log_error("recovery publisher: the producer failed for good (%s); starting a new "
		          "one, the unsent triggers wait in the outbox",
		          reason);
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		while (p->pending > 0)
			rd_kafka_poll(p->rk, 50);
		if (p->rkt)
			rd_kafka_topic_destroy(p->rkt);
		rd_kafka_destroy(p->rk);
		p->rk = NULL;
		p->rkt = NULL;
	}
	if (!pub_new_producer(p, errstr, sizeof(errstr))) {
		log_error("recovery publisher: cannot start a new producer: %s", errstr);
		return;
	}
	p->broker_down = true; /* the next claim says when it is writable again */
}

static void *pub_main(void *arg)
{
	struct publisher *p = arg;
	int db_backoff_ms = 100, broker_backoff_ms = 100;

	while (!*p->stop) {
		char why[8];

		if (pub_producer_failed(p, why, sizeof(why))) {
			pub_renew_producer(p);
			if (p->rk == NULL) {
				pub_sleep(p, 1000);
				continue;
			}
		}
		if (p->conn == NULL && !pub_connect(p)) {
			pub_sleep(p, db_backoff_ms);
			db_backoff_ms = next_backoff(db_backoff_ms, p->opts->db_retry_max_ms);
			continue;
		}
		int rows = pub_drain_once(p);
		if (rows < 0) {
			if (PQstatus(p->conn) != CONNECTION_OK || p->reconnect) {
				pub_disconnect(p);
				p->reconnect = false;
				continue;
			}
			pub_exec_ok(p, "ROLLBACK", "rolling back");
		}
		db_backoff_ms = 100;
		if (mono_us() >= p->next_backlog_us)
			pub_check_backlog(p);
		if (mono_us() >= p->next_prune_us)
			pub_prune(p);
		if (rows == CLAIM_ROWS)
			continue;
		if (p->broker_down) {
			/* Try the broker again after a pause; new rows wait in the outbox. */
			pub_wait(p, broker_backoff_ms);
			broker_backoff_ms = next_backoff(broker_backoff_ms, 5000);
			continue;
		}
		broker_backoff_ms = 100;
		/* The timeout only guards against a lost notification. */
		pub_wait(p, 1000);
	}
	/* Whatever the last batches queued goes out before the process ends. */
	char why[8];

	if (p->conn && !pub_producer_failed(p, why, sizeof(why)) && !p->broker_down)
		while (pub_drain_once(p) == CLAIM_ROWS)
			;
	pub_disconnect(p);
	return NULL;
}

int publisher_start(struct publisher *p, atomic_int *stop, char *errstr, size_t errstr_size)
{
	p->stop = stop;
	int err = pthread_create(&p->thread, NULL, pub_main, p);
	if (err) {
		snprintf(errstr, errstr_size, "cannot start the publisher thread: %s",
		         strerror(err));
		return -1;
	}
	p->started = true;
	return 0;
}

void publisher_stats(struct publisher *p, struct publisher_stats *out)
{
	out->sent = p->sent;
	out->failed = p->failed;
	out->backlog = p->backlog;
	out->oldest_unsent_age_s = p->oldest_age;
}

void publisher_destroy(struct publisher *p)
{
	if (p == NULL)
		return;
	if (p->started)
		pthread_join(p->thread, NULL);
	pub_disconnect(p);
	if (p->rk) {
		rd_kafka_flush(p->rk, 5000);
		/* Unacknowledged rows stay unsent in the outbox: nothing to wait for. */
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		if (p->rkt)
			rd_kafka_topic_destroy(p->rkt);
		rd_kafka_destroy(p->rk);
	}
	if (p->conf)
		rd_kafka_conf_destroy(p->conf);
	PQfreemem(p->channel);
	free(p);
}
