#include "db.h"

#include "migrate.h"
#include "pgbuf.h"
#include "pgconn.h"
#include "publisher.h"
#include "seen.h"
#include "trigger.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The most bytes of COPY data handed to libpq at once. */
#define COPY_PIECE ((size_t)256 * 1024)

struct db {
	char *conninfo;
	char *schema;
	PGconn *conn;
	/* COPY data and array literals of the current transaction; reused. */
	struct pgbuf out;
	char sqlstate[6];           /* of the last error; "" when it had none */
	char *synchronous_commit;   /* NULL: the server's setting */
	int64_t idle_tx_timeout_ms; /* 0: the server's setting */
	/* Service recovery: enabled when policy is set. */
	bool recovery;
	struct rules_policy policy;
	struct arena scratch;  /* packed triggers of the current transaction */
	struct arena combined; /* the aggregate rows of the current attempt */
	struct db_tx_stats last;
	int lookup_batches;      /* batches left that look event ids up before the COPY */
	struct seen *seen;       /* events of the last transactions; NULL when out of memory */
	bool (*gate)(void *arg); /* asked before COMMIT; NULL: always yes */
	void *gate_arg;
	char *notify_channel; /* publisher_channel(schema) */
	int *order;           /* events of a batch in event id order (db_copy_ids) */
	size_t cap_order;
};

#define AGG_COLUMNS                                                                                \
	"csat_n, csat_satisfied, csat_score_units, nps_n, nps_promoters, nps_passives, "           \
	"nps_detractors, ces_n, ces_effort_sum, ces_high, ces_low, fcr_n, fcr_yes, offered, "      \
	"answered, abandoned, self_service, answered_within_sl, wait_seconds_answered, "           \
	"handle_seconds, negative"

#define AGG_ADD(c) #c " = a." #c " + excluded." #c

#define AGG_UPDATE                                                                                 \
	AGG_ADD(csat_n)                                                                            \
	", " AGG_ADD(csat_satisfied) ", " AGG_ADD(                                                 \
	    csat_score_units) ", " AGG_ADD(nps_n) ", " AGG_ADD(nps_promoters) ", " AGG_ADD(nps_passives) ", " AGG_ADD(nps_detractors) ", " AGG_ADD(ces_n) ", " AGG_ADD(ces_effort_sum) ", " AGG_ADD(ces_high) ", " AGG_ADD(ces_low) ", " AGG_ADD(fcr_n) ", " AGG_ADD(fcr_yes) ", " AGG_ADD(offered) ", " AGG_ADD(answered) ", " AGG_ADD(abandoned) ", " AGG_ADD(self_service) ", " AGG_ADD(answered_within_sl) ", " AGG_ADD(wait_seconds_answered) ", " AGG_ADD(handle_seconds) ", " AGG_ADD(negative)

#define LEDGER_COLUMNS                                                                             \
	"event_id, occurred_at, channel, customer_id, agent_id, interaction_id, csat_score, "      \
	"csat_min, csat_max, nps_score, ces_score, ces_min, ces_max, ces_inverted, fcr, "          \
	"contact_outcome, wait_seconds, handle_seconds, negative_reasons, source_partition, "      \
	"source_offset"

#define RECOVERY_COLUMNS "customer_id, negatives, last_trigger_at, suppressed"

#define OUTBOX_COLUMNS                                                                             \
	"trigger_id, event_id, customer_id, channel, severity, reasons, repeat_count, "            \
	"suppressed_count, occurred_at, detected_at, follow_up_by, payload"

static const char *const setup_sql[] = {
    "CREATE TEMP TABLE IF NOT EXISTS fc_stage_keys (event_id text, seq integer) "
    "ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS fc_stage_channel ON COMMIT DELETE ROWS AS "
    "SELECT bucket, channel, " AGG_COLUMNS " FROM channel_agg WITH NO DATA",
    "CREATE TEMP TABLE IF NOT EXISTS fc_stage_agent ON COMMIT DELETE ROWS AS "
    "SELECT bucket, agent_id, channel, " AGG_COLUMNS " FROM agent_agg WITH NO DATA",
    "CREATE TEMP TABLE IF NOT EXISTS fc_stage_recovery ON COMMIT DELETE ROWS AS "
    "SELECT " RECOVERY_COLUMNS " FROM recovery_state WITH NO DATA",
};

/*
 * The state of the customers who have one, locked in one order, the order of
 * the array ("C" = strcmp). The others are new: their rows are inserted once,
 * with their final state, by sql_recovery_create.
 */
static const char sql_recovery_lock[] =
    "SELECT customer_id, negatives, (extract(epoch FROM last_trigger_at) * 1000000)::bigint, "
    "suppressed FROM recovery_state WHERE customer_id = ANY($1::text[]) "
    "ORDER BY customer_id COLLATE \"C\" FOR UPDATE";

/*
 * The rows of the customers who had one, locked by now. An upsert probes
 * the primary key row by row, where UPDATE ... FROM the never-analysed
 * stage table is planned as a hash join over the whole recovery_state,
 * whose cost grows with the number of customers ever seen.
 */
static const char sql_recovery_store[] =
    "INSERT INTO recovery_state AS s (" RECOVERY_COLUMNS ", updated_at) SELECT " RECOVERY_COLUMNS
    ", now() FROM fc_stage_recovery ORDER BY customer_id COLLATE \"C\" "
    "ON CONFLICT (customer_id) DO UPDATE SET negatives = excluded.negatives, "
    "suppressed = excluded.suppressed, last_trigger_at = excluded.last_trigger_at, "
    "updated_at = excluded.updated_at";

/*
 * The new customers' rows go straight in, in customer order. One that
 * another consumer gave a row since the lock (both racing on the same new
 * customer) fails the COPY with 23505: the caller retries, and then locks
 * that row.
 */
static const char sql_recovery_create[] =
    "COPY recovery_state (" RECOVERY_COLUMNS ") FROM STDIN (FORMAT binary)";

/*
 * Triggers go straight into the outbox: their ids are made of event ids
 * that this transaction accepted, so none of them exists yet.
 */
static const char sql_outbox[] =
    "COPY recovery_outbox (" OUTBOX_COLUMNS ") FROM STDIN (FORMAT binary)";

/*
 * Offsets move only from the position this consumer read: an update whose
 * expected value no longer matches, or an insert that finds a row, changes
 * nothing, and the caller sees fewer rows than partitions. The schema's
 * version comes along: a newer build may have migrated it while this one
 * runs (a rolling upgrade), and may count with rules this one lacks.
 */
static const char sql_offsets[] =
    "WITH u AS (SELECT * FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[]) "
    "  AS u(topic, partition, expected, next)), "
    "upd AS (UPDATE consumer_offsets o SET next_offset = u.next, updated_at = now() FROM u "
    "  WHERE o.group_id = $1 AND o.topic = u.topic AND o.partition = u.partition "
    "  AND u.expected >= 0 AND o.next_offset = u.expected RETURNING 1), "
    "ins AS (INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
    "  SELECT $1, topic, partition, next FROM u WHERE expected < 0 "
    "  ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins), "
    "(SELECT coalesce(max(version), 0) FROM schema_migrations WHERE NOT older_builds_run)";

/*
 * The events of the batch whose ids were accepted before: duplicates. The
 * LATERAL ... LIMIT 1 makes it one primary-key probe per event; a plain
 * join may hash the whole table.
 */
static const char sql_ledger_seen[] =
    "SELECT s.seq FROM fc_stage_keys s CROSS JOIN LATERAL (SELECT 1 FROM event_ids e "
    "WHERE e.event_id = s.event_id LIMIT 1) seen";

/* The ORDER BY is the lock order that every replica shares; "C" matches strcmp. */
static const char sql_channel[] = "INSERT INTO channel_agg AS a (bucket, channel, " AGG_COLUMNS ") "
                                  "SELECT bucket, channel, " AGG_COLUMNS " FROM fc_stage_channel "
                                  "ORDER BY bucket, channel COLLATE \"C\" "
                                  "ON CONFLICT (bucket, channel) DO UPDATE SET " AGG_UPDATE;

static const char sql_agent[] =
    "INSERT INTO agent_agg AS a (bucket, agent_id, channel, " AGG_COLUMNS ") "
    "SELECT bucket, agent_id, channel, " AGG_COLUMNS " FROM fc_stage_agent "
    "ORDER BY bucket, agent_id COLLATE \"C\", channel COLLATE \"C\" "
    "ON CONFLICT (bucket, agent_id, channel) DO UPDATE SET " AGG_UPDATE;

/* Delivered at commit, and only then: publishers never see a row too early. */
static const char sql_notify[] = "SELECT pg_notify($1, '')";

/*
 * The statements of every batch, parsed once per session (db_connect)
 * rather than once per batch: parsing and planning the aggregate upserts
 * and the offset CTE cost more than some of them take to run. The recovery
 * lock is not among them: its plan depends on the size of recovery_state,
 * and a plan cached while the table was small would stay.
 */
enum db_stmt {
	STMT_OFFSETS,
	STMT_AGENT,
	STMT_CHANNEL,
	STMT_RECOVERY_STORE,
	STMT_NOTIFY,
	STMT_COUNT
};

static const struct {
	const char *name;
	const char *sql;
	int n_params;
} stmts[STMT_COUNT] = {
    [STMT_OFFSETS] = {"fc_offsets", sql_offsets, 5},
    [STMT_AGENT] = {"fc_agent", sql_agent, 0},
    [STMT_CHANNEL] = {"fc_channel", sql_channel, 0},
    [STMT_RECOVERY_STORE] = {"fc_recovery_store", sql_recovery_store, 0},
    [STMT_NOTIFY] = {"fc_notify", sql_notify, 1},
};

static const char *const status_names[] = {
    [DB_OK] = "ok",       [DB_RETRY] = "retry",       [DB_RECONNECT] = "reconnect",
    [DB_STALE] = "stale", [DB_REJECTED] = "rejected", [DB_FATAL] = "fatal",
    [DB_GATED] = "gated",
};

const char *db_status_name(enum db_status st)
{
	return status_names[st];
}

enum db_status db_classify(const char *sqlstate)
{
	if (sqlstate == NULL || strncmp(sqlstate, "08", 2) == 0)
		return DB_RECONNECT;
	/* admin_shutdown, crash_shutdown, cannot_connect_now: the server restarts. */
	if (strncmp(sqlstate, "57P", 3) == 0)
		return DB_RECONNECT;
	/*
	 * read_only_sql_transaction: this server was the primary and is a
	 * standby now (a failover); the new primary is another connection away.
	 */
	if (strcmp(sqlstate, "25006") == 0)
		return DB_RECONNECT;
	if (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0 ||
	    strcmp(sqlstate, "55P03") == 0 || strncmp(sqlstate, "53", 2) == 0)
		return DB_RETRY;
	if (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0 ||
	    strncmp(sqlstate, "54", 2) == 0)
		return DB_REJECTED;
	/* Missing objects, permissions, authentication: no retry will help. */
	if (strncmp(sqlstate, "42", 2) == 0 || strncmp(sqlstate, "3F", 2) == 0 ||
	    strncmp(sqlstate, "28", 2) == 0 || strncmp(sqlstate, "0A", 2) == 0)
		return DB_FATAL;
	return DB_RETRY;
}

struct db *db_new(const char *conninfo, const char *schema)
{
	struct db *db = calloc(1, sizeof(*db));

	if (db == NULL)
		return NULL;
	arena_init(&db->scratch, 0);
	arena_init(&db->combined, 0);
	/* A re-send within a batch or two of its original; memory for two batches of ids. */
	db->seen = seen_new(2);
	db->conninfo = strdup(conninfo ? conninfo : "");
	db->schema = strdup(schema);
	db->notify_channel = publisher_channel(schema);
	if (db->conninfo == NULL || db->schema == NULL || db->notify_channel == NULL) {
		db_destroy(db);
		return NULL;
	}
	return db;
}

void db_destroy(struct db *db)
{
	if (db == NULL)
		return;
	if (db->conn)
		PQfinish(db->conn);
	free(db->conninfo);
	free(db->schema);
	free(db->notify_channel);
	free(db->order);
	free(db->synchronous_commit);
	pgbuf_free(&db->out);
	arena_release(&db->scratch);
	arena_release(&db->combined);
	seen_destroy(db->seen);
	free(db);
}

int db_set_synchronous_commit(struct db *db, const char *value)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return -1;
	free(db->synchronous_commit);
	db->synchronous_commit = copy;
	return 0;
}

void db_set_idle_timeout(struct db *db, int64_t ms)
{
	db->idle_tx_timeout_ms = ms;
}

void db_set_recovery(struct db *db, const struct rules_policy *p)
{
	db->recovery = p != NULL;
	if (p)
		db->policy = *p;
}

const struct db_tx_stats *db_last_tx(const struct db *db)
{
	return &db->last;
}

void db_set_commit_gate(struct db *db, bool (*gate)(void *arg), void *arg)
{
	db->gate = gate;
	db->gate_arg = arg;
}

void db_look_up_first(struct db *db, int batches)
{
	db->lookup_batches = batches;
}

struct pg_conn *db_conn(struct db *db)
{
	return db->conn;
}

/* Writes the error of res (or of the connection) and classifies it. */
static enum db_status db_error(struct db *db, const PGresult *res, const char *what, char *errstr,
                               size_t errstr_size)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	enum db_status st;

	snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", sqlstate ? sqlstate : "");
	if (msg == NULL)
		msg = PQerrorMessage(db->conn);
	if (PQstatus(db->conn) == CONNECTION_BAD)
		st = DB_RECONNECT;
	else
		st = db_classify(sqlstate);
	snprintf(errstr, errstr_size, "%s failed (sqlstate %s): %.*s", what,
	         sqlstate ? sqlstate : "none", (int)strcspn(msg, "\n"), msg);
	return st;
}

/*
 * Checks the result of a statement, expecting a command or tuples; hands it
 * to *out when out is not NULL and the statement succeeded, otherwise clears it.
 */
static enum db_status db_result(struct db *db, PGresult *res, const char *what, PGresult **out,
                                char *errstr, size_t errstr_size)
{
	ExecStatusType rs = PQresultStatus(res);
	enum db_status st = DB_OK;

	if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
		st = db_error(db, res, what, errstr, errstr_size);
	if (st == DB_OK && out != NULL) {
		*out = res;
		return st;
	}
	PQclear(res);
	return st;
}

/* Runs sql, expecting a command or tuples; drains results so the connection stays usable. */
static enum db_status db_exec(struct db *db, const char *sql, const char *what, char *errstr,
                              size_t errstr_size)
{
	return db_result(db, PQexec(db->conn, sql), what, NULL, errstr, errstr_size);
}

/* Runs prepared statement id with params; *out as for db_result. */
static enum db_status db_run(struct db *db, enum db_stmt id, const char *const *params,
                             const char *what, PGresult **out, char *errstr, size_t errstr_size)
{
	PGresult *res =
	    PQexecPrepared(db->conn, stmts[id].name, stmts[id].n_params, params, NULL, NULL, 0);

	return db_result(db, res, what, out, errstr, errstr_size);
}

static void db_rollback(struct db *db)
{
	PGresult *res;

	if (PQstatus(db->conn) != CONNECTION_OK)
		return;
	/*
	 * Leftover results of a failed COPY must be read before anything else is
	 * sent. A COPY whose data could not be sent is still open, and libpq
	 * answers PGRES_COPY_IN for as long as it is: end it, or this never ends.
	 */
	while ((res = PQgetResult(db->conn)) != NULL) {
		ExecStatusType rs = PQresultStatus(res);

		PQclear(res);
		if (rs == PGRES_COPY_IN && PQputCopyEnd(db->conn, "transaction abandoned") == 1)
			continue;
		if (rs == PGRES_COPY_IN || rs == PGRES_COPY_OUT || rs == PGRES_COPY_BOTH)
			return; /* unusable: the next statement fails and asks to reconnect */
	}
	res = PQexec(db->conn, "ROLLBACK");
	PQclear(res);
}

/* The schema version this build migrates to. */
static int newest_version(void)
{
	return fc_migrations[fc_migrations_count - 1].version;
}

/*
 * A build older than the schema may not know how it has to be written (the
 * key of duplicates moved to event_ids in version 4, say): it stops rather
 * than count with rules it lacks, and its replacement takes over. Newer
 * migrations that keep older builds running do not count (011).
 */
static void db_newer_schema(const struct db *db, int version, char *errstr, size_t errstr_size)
{
	snprintf(errstr, errstr_size,
	         "schema \"%s\" is at version %d, newer than this build's %d: a newer build "
	         "migrated it; run that one",
	         db->schema, version, newest_version());
}

enum db_status db_connect(struct db *db, char *errstr, size_t errstr_size)
{
	char sql[256];
	char *ident = NULL;
	enum db_status st;
	int version;

	if (db->conn)
		PQfinish(db->conn);
	/*
	 * A new session may be a restarted server or a promoted standby that
	 * lost the last acknowledged commits (synchronous_commit = off, an
	 * asynchronous replica): what this process remembers committing is
	 * no longer known to be in the ledger.
	 */
	if (db->seen)
		seen_clear(db->seen);
	db->conn = pgconn_open(db->conninfo, "feedback-consumer", true);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		/*
		 * The string parsed when the configuration was read (config.c), so
		 * this is about the connection: host and user, never the password.
		 */
		const char *msg = PQerrorMessage(db->conn);

		snprintf(errstr, errstr_size, "cannot connect to postgresql: %.*s",
		         (int)strcspn(msg, "\n"), msg);
		return DB_RECONNECT;
	}
	version = migrate_current_version(db->conn, db->schema, errstr, errstr_size);
	if (version < 0)
		return PQstatus(db->conn) == CONNECTION_OK ? DB_FATAL : DB_RECONNECT;
	if (version < newest_version()) {
		snprintf(errstr, errstr_size,
		         "schema \"%s\" is at version %d, this build needs %d: run "
		         "'feedback-consumer migrate'",
		         db->schema, version, newest_version());
		return DB_FATAL;
	}
	version = migrate_needed_version(db->conn, db->schema, errstr, errstr_size);
	if (version < 0)
		return PQstatus(db->conn) == CONNECTION_OK ? DB_FATAL : DB_RECONNECT;
	if (version > newest_version()) {
		db_newer_schema(db, version, errstr, errstr_size);
		return DB_FATAL;
	}
	ident = PQescapeIdentifier(db->conn, db->schema, strlen(db->schema));
	if (ident == NULL)
		return db_error(db, NULL, "quoting the schema name", errstr, errstr_size);
	snprintf(sql, sizeof(sql), "SET search_path TO %s", ident);
	PQfreemem(ident);
	st = db_exec(db, sql, "setting the search path", errstr, errstr_size);
	if (st == DB_OK && db->synchronous_commit) {
		/* A value of the config table's enum: nothing to quote. */
		snprintf(sql, sizeof(sql), "SET synchronous_commit TO %s", db->synchronous_commit);
		st = db_exec(db, sql, "setting synchronous_commit", errstr, errstr_size);
	}
	if (st == DB_OK && db->idle_tx_timeout_ms > 0) {
		snprintf(sql, sizeof(sql), "SET idle_in_transaction_session_timeout TO %lld",
		         (long long)db->idle_tx_timeout_ms);
		st = db_exec(db, sql, "setting idle_in_transaction_session_timeout", errstr,
		             errstr_size);
	}
	for (size_t i = 0; st == DB_OK && i < sizeof(setup_sql) / sizeof(setup_sql[0]); i++)
		st = db_exec(db, setup_sql[i], "creating the staging tables", errstr, errstr_size);
	for (size_t i = 0; st == DB_OK && i < STMT_COUNT; i++) {
		PGresult *res =
		    PQprepare(db->conn, stmts[i].name, stmts[i].sql, stmts[i].n_params, NULL);

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			st = db_error(db, res, "preparing the statements", errstr, errstr_size);
		PQclear(res);
	}
	return st;
}

enum db_status db_ping(struct db *db, char *errstr, size_t errstr_size)
{
	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "not connected to postgresql");
		return DB_RECONNECT;
	}
	return db_exec(db, "SELECT 1", "checking the connection", errstr, errstr_size);
}

enum db_status db_maintain(struct db *db, char *errstr, size_t errstr_size)
{
	/* CASE evaluates the lock first; the transaction of the statement holds it. */
	static const char sql[] =
	    "SELECT CASE WHEN pg_try_advisory_xact_lock(hashtext('feedback.ledger_partitions'))"
	    " THEN ledger_ensure_partitions(((now() AT TIME ZONE 'UTC') - interval '1 "
	    "month')::date, 4)"
	    " END";

	return db_exec(db, sql, "creating ledger partitions", errstr, errstr_size);
}

/* --- COPY rows ---------------------------------------------------------- */

/* score, or score, scale_min, scale_max: NULL when the rating is absent. */
static void put_rating(struct pgbuf *o, const struct rating *r, bool with_scale, const char *score,
                       const char *min, const char *max)
{
	if (!r->present) {
		pgbuf_null(o);
		if (with_scale) {
			pgbuf_null(o);
			pgbuf_null(o);
		}
		return;
	}
	pgbuf_int2(o, r->score, score);
	if (with_scale) {
		pgbuf_int2(o, r->scale_min, min);
		pgbuf_int2(o, r->scale_max, max);
	}
}

/* A row of LEDGER_COLUMNS. */
static void put_ledger_row(struct pgbuf *o, const struct batch_msg *m, const struct batch_event *be)
{
	const struct event *ev = &be->ev;

	pgbuf_row(o, 21);
	pgbuf_text(o, ev->event_id);
	pgbuf_time(o, ev->occurred_at_us);
	pgbuf_text(o, channel_name(ev->channel));
	pgbuf_text(o, ev->customer_id);
	pgbuf_opt_text(o, ev->agent_id);
	pgbuf_opt_text(o, ev->interaction_id);
	put_rating(o, &ev->csat, true, "csat_score", "csat_min", "csat_max");
	put_rating(o, &ev->nps, false, "nps_score", NULL, NULL);
	put_rating(o, &ev->ces, true, "ces_score", "ces_min", "ces_max");
	if (ev->ces.present)
		pgbuf_bool(o, ev->ces.inverted);
	else
		pgbuf_null(o);
	if (ev->fcr != FCR_NOT_ASKED)
		pgbuf_int2(o, ev->fcr, "fcr");
	else
		pgbuf_null(o);
	if (ev->has_contact) {
		pgbuf_int2(o, ev->outcome, "contact_outcome");
		pgbuf_int4(o, ev->wait_seconds, "wait_seconds");
		pgbuf_int4(o, ev->handle_seconds, "handle_seconds");
	} else {
		pgbuf_null(o);
		pgbuf_null(o);
		pgbuf_null(o);
	}
	pgbuf_int2(o, be->negative_reasons, "negative_reasons");
	pgbuf_int4(o, m->partition, "source_partition");
	pgbuf_int8(o, m->offset);
}

#define AGG_COUNT 21

/* The AGG_COLUMNS of c, in their order. */
static void put_counts(struct pgbuf *o, const struct kpi_counts *c)
{
	const int64_t v[AGG_COUNT] = {
	    c->csat_n,
	    c->csat_satisfied,
	    c->csat_score_units,
	    c->nps_n,
	    c->nps_promoters,
	    c->nps_passives,
	    c->nps_detractors,
	    c->ces_n,
	    c->ces_effort_sum,
	    c->ces_high,
	    c->ces_low,
	    c->fcr_n,
	    c->fcr_yes,
	    c->offered,
	    c->answered,
	    c->abandoned,
	    c->self_service,
	    c->answered_within_sl,
	    c->wait_seconds_answered,
	    c->handle_seconds,
	    c->negative,
	};

	for (size_t i = 0; i < AGG_COUNT; i++)
		pgbuf_int8(o, v[i]);
}

/*
 * Ends the binary COPY data in db->out and sends it with sql (COPY ... FROM
 * STDIN (FORMAT binary)). A value that does not fit its column is refused
 * here, as the server refuses it in text: sqlstate 22003, so that the
 * batch is split until its event stands alone.
 */
static enum db_status db_copy(struct db *db, const char *sql, const char *what, char *errstr,
                              size_t errstr_size)
{
	PGresult *res = NULL;
	enum db_status st = DB_OK;

	pgbuf_copy_end(&db->out);
	if (db->out.oom) {
		snprintf(errstr, errstr_size, "%s: out of memory", what);
		return DB_FATAL;
	}
	if (db->out.range_column) {
		snprintf(db->sqlstate, sizeof(db->sqlstate), "22003");
		snprintf(errstr, errstr_size,
		         "%s failed (sqlstate 22003): %s %" PRId64
		         " is out of range for its column",
		         what, db->out.range_column, db->out.range_value);
		return DB_REJECTED;
	}
	res = PQexec(db->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		st = db_error(db, res, what, errstr, errstr_size);
		goto out;
	}
	PQclear(res);
	res = NULL;
	/* PQputCopyData takes an int: a large COPY goes in pieces. */
	for (size_t at = 0; at < db->out.len; at += COPY_PIECE) {
		size_t n = db->out.len - at < COPY_PIECE ? db->out.len - at : COPY_PIECE;

		if (PQputCopyData(db->conn, db->out.buf + at, (int)n) != 1) {
			st = db_error(db, NULL, what, errstr, errstr_size);
			goto out;
		}
	}
	if (PQputCopyEnd(db->conn, NULL) != 1) {
		st = db_error(db, NULL, what, errstr, errstr_size);
		goto out;
	}
	res = PQgetResult(db->conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		st = db_error(db, res, what, errstr, errstr_size);
out:
	PQclear(res);
	return st;
}

/* --- transactions ------------------------------------------------------- */

static enum db_status db_advance_offsets(struct db *db, const char *group,
                                         const char *const *topics, const struct offset_update *u,
                                         size_t nu, char *errstr, size_t errstr_size)
{
	const char *params[5];
	size_t at[4];
	PGresult *res = NULL;
	enum db_status st = DB_OK;
	long long moved;
	struct pgbuf *o = &db->out;

	pgbuf_clear(o);
	at[0] = o->len;
	pgbuf_array_begin(o);
	for (size_t i = 0; i < nu; i++) {
		pgbuf_array_sep(o, i);
		pgbuf_array_text(o, topics[u[i].topic]);
	}
	pgbuf_array_end(o);
	at[1] = o->len;
	pgbuf_array_begin(o);
	for (size_t i = 0; i < nu; i++) {
		pgbuf_array_sep(o, i);
		pgbuf_array_int(o, u[i].partition);
	}
	pgbuf_array_end(o);
	at[2] = o->len;
	pgbuf_array_begin(o);
	for (size_t i = 0; i < nu; i++) {
		pgbuf_array_sep(o, i);
		pgbuf_array_int(o, u[i].expected);
	}
	pgbuf_array_end(o);
	at[3] = o->len;
	pgbuf_array_begin(o);
	for (size_t i = 0; i < nu; i++) {
		pgbuf_array_sep(o, i);
		pgbuf_array_int(o, u[i].next);
	}
	pgbuf_array_end(o);
	if (o->oom) {
		snprintf(errstr, errstr_size, "advancing offsets: out of memory");
		return DB_FATAL;
	}
	params[0] = group;
	for (int i = 0; i < 4; i++)
		params[i + 1] = o->buf + at[i];
	st = db_run(db, STMT_OFFSETS, params, "advancing offsets", &res, errstr, errstr_size);
	if (st != DB_OK)
		goto out;
	moved = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	int version = (int)strtol(PQgetvalue(res, 0, 1), NULL, 10);
	if (version > newest_version()) {
		db_newer_schema(db, version, errstr, errstr_size);
		st = DB_FATAL;
	} else if (moved != (long long)nu) {
		snprintf(errstr, errstr_size,
		         "stored offsets of %zu of %zu partitions moved on: another consumer "
		         "owns them now",
		         nu - (size_t)moved, nu);
		st = DB_STALE;
	}
out:
	PQclear(res);
	return st;
}

/*
 * The ledger and its key are written with COPY, which inserts many rows per
 * call, where INSERT ... ON CONFLICT pays per row; a look-up of the ids
 * costs only index reads.
 */

static int by_event_id(const void *x, const void *y, void *arg)
{
	const struct batch *b = arg;

	return strcmp(b->events[*(const int *)x].ev.event_id,
	              b->events[*(const int *)y].ev.event_id);
}

/*
 * COPYs, with sql, a row (event_id, x) for each event of [from, to) marked
 * is_new: x its occurred_at (into event_ids, the key), or with with_index
 * its index in the batch (into the stage of a look-up). Keys go in id order
 * (strcmp), as every other shared row is written in key order: two
 * replicas holding the same ids (an event re-sent under another key, so on
 * another partition) then wait for each other in one direction only, never
 * in a cycle.
 */
static enum db_status db_copy_ids(struct db *db, struct batch *b, size_t from, size_t to,
                                  bool with_index, const char *sql, const char *what, char *errstr,
                                  size_t errstr_size)
{
	size_t n = 0;

	if (to - from > db->cap_order) {
		int *o = realloc(db->order, (to - from) * sizeof(*o));

		if (o == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return DB_FATAL;
		}
		db->order = o;
		db->cap_order = to - from;
	}
	for (size_t i = from; i < to; i++) {
		const struct batch_msg *m = &b->msgs[i];

		if (m->event >= 0 && b->events[m->event].is_new)
			db->order[n++] = m->event;
	}
	if (!with_index)
		qsort_r(db->order, n, sizeof(*db->order), by_event_id, b);
	pgbuf_copy_begin(&db->out);
	for (size_t i = 0; i < n; i++) {
		const struct batch_event *be = &b->events[db->order[i]];

		pgbuf_row(&db->out, 2);
		pgbuf_text(&db->out, be->ev.event_id);
		if (with_index)
			pgbuf_int4(&db->out, db->order[i], "seq");
		else
			pgbuf_time(&db->out, be->ev.occurred_at_us);
	}
	return db_copy(db, sql, what, errstr, errstr_size);
}

static const char sql_copy_ids[] =
    "COPY event_ids (event_id, occurred_at) FROM STDIN (FORMAT binary)";

/* The ledger rows of the events of [from, to) marked is_new. */
static enum db_status db_copy_ledger(struct db *db, struct batch *b, size_t from, size_t to,
                                     char *errstr, size_t errstr_size)
{
	pgbuf_copy_begin(&db->out);
	for (size_t i = from; i < to; i++) {
		const struct batch_msg *m = &b->msgs[i];

		if (m->event >= 0 && b->events[m->event].is_new)
			put_ledger_row(&db->out, m, &b->events[m->event]);
	}
	return db_copy(db, "COPY ledger (" LEDGER_COLUMNS ") FROM STDIN (FORMAT binary)",
	               "inserting ledger rows", errstr, errstr_size);
}

/*
 * Inserts the events of [from, to) whose ids were not accepted before, and
 * marks them is_new. First optimistically: one COPY of every event's id
 * into event_ids under a savepoint, which succeeds unless one of them is a
 * duplicate, then one of their ledger rows. On a unique violation of the
 * ids it rolls back to the savepoint, looks the ids up, and COPYs the new
 * ones. Measured, the optimistic COPY wins even when a quarter of the
 * batches hold a duplicate: the look-up costs about as much as the COPY,
 * and a failing COPY stops at its first duplicate.
 */
static enum db_status db_insert_ledger(struct db *db, struct batch *b, size_t from, size_t to,
                                       size_t *n_new, char *errstr, size_t errstr_size)
{
	PGresult *res = NULL;
	enum db_status st;
	size_t rows = 0;

	*n_new = 0;
	for (size_t i = from; i < to; i++) {
		struct batch_event *be;

		if (b->msgs[i].event < 0)
			continue;
		be = &b->events[b->msgs[i].event];
		/* Committed by this process a transaction or two ago: a duplicate. */
		be->is_new =
		    db->seen == NULL || !seen_has(db->seen, be->ev.event_id, be->ev.occurred_at_us);
		rows += be->is_new;
	}
	if (rows == 0)
		return DB_OK;

	if (db->lookup_batches > 0) {
		db->lookup_batches--;
	} else {
		st = db_exec(db, "SAVEPOINT fc_ledger", "setting a savepoint", errstr, errstr_size);
		if (st != DB_OK)
			return st;
		st = db_copy_ids(db, b, from, to, false, sql_copy_ids, "inserting event ids",
		                 errstr, errstr_size);
		if (st == DB_OK) {
			st = db_copy_ledger(db, b, from, to, errstr, errstr_size);
			if (st != DB_OK)
				return st;
			*n_new = rows;
			return db_exec(db, "RELEASE SAVEPOINT fc_ledger", "releasing a savepoint",
			               errstr, errstr_size);
		}
		if (st != DB_REJECTED || strcmp(db->sqlstate, "23505") != 0)
			return st;
		st = db_exec(db, "ROLLBACK TO SAVEPOINT fc_ledger", "rolling back to a savepoint",
		             errstr, errstr_size);
		if (st != DB_OK)
			return st;
	}

	db->last.looked_up = true;
	st = db_copy_ids(db, b, from, to, true, "COPY fc_stage_keys FROM STDIN (FORMAT binary)",
	                 "staging event ids", errstr, errstr_size);
	if (st != DB_OK)
		return st;
	res = PQexec(db->conn, sql_ledger_seen);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		st = db_error(db, res, "looking up event ids", errstr, errstr_size);
		goto out;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		long seq = strtol(PQgetvalue(res, r, 0), NULL, 10);

		b->events[seq].is_new = false;
		rows--;
	}
	if (rows == 0)
		goto out;
	st = db_copy_ids(db, b, from, to, false, sql_copy_ids, "inserting event ids", errstr,
	                 errstr_size);
	/*
	 * Another consumer committed one of these ids after the look-up (two
	 * replicas racing after a rebalance): the retry finds it there.
	 */
	if (st == DB_REJECTED && strcmp(db->sqlstate, "23505") == 0)
		st = DB_RETRY;
	if (st == DB_OK)
		st = db_copy_ledger(db, b, from, to, errstr, errstr_size);
	if (st == DB_OK)
		*n_new = rows;
out:
	PQclear(res);
	return st;
}

/*
 * Written last in the transaction, the most shared rows last of all: every
 * replica adds to the same few (bucket, channel) rows, and holds their locks
 * from here to COMMIT. Agent rows, then channel rows, each in key order.
 */
static enum db_status db_add_aggregates(struct db *db, struct batch *b, size_t from, size_t to,
                                        char *errstr, size_t errstr_size)
{
	struct agg_row *ch = NULL, *ag = NULL;
	size_t n_ch = 0, n_ag = 0;
	enum db_status st = DB_OK;

	arena_reset(&db->combined);
	if (batch_combine(b, &db->combined, from, to, &ch, &n_ch, &ag, &n_ag) != 0) {
		snprintf(errstr, errstr_size, "combining the batch: out of memory");
		return DB_FATAL;
	}
	pgbuf_copy_begin(&db->out);
	for (size_t i = 0; i < n_ch; i++) {
		pgbuf_row(&db->out, 2 + AGG_COUNT);
		pgbuf_time(&db->out, ch[i].bucket * 1000000);
		pgbuf_text(&db->out, channel_name(ch[i].channel));
		put_counts(&db->out, &ch[i].counts);
	}
	if (n_ch > 0 && (st = db_copy(db, "COPY fc_stage_channel FROM STDIN (FORMAT binary)",
	                              "staging channel aggregates", errstr, errstr_size)) != DB_OK)
		return st;
	pgbuf_copy_begin(&db->out);
	for (size_t i = 0; i < n_ag; i++) {
		pgbuf_row(&db->out, 3 + AGG_COUNT);
		pgbuf_time(&db->out, ag[i].bucket * 1000000);
		pgbuf_text(&db->out, ag[i].agent_id);
		pgbuf_text(&db->out, channel_name(ag[i].channel));
		put_counts(&db->out, &ag[i].counts);
	}
	if (n_ag > 0) {
		st = db_copy(db, "COPY fc_stage_agent FROM STDIN (FORMAT binary)",
		             "staging agent aggregates", errstr, errstr_size);
		if (st == DB_OK)
			st = db_run(db, STMT_AGENT, NULL, "adding agent aggregates", NULL, errstr,
			            errstr_size);
	}
	if (st == DB_OK && n_ch > 0)
		st = db_run(db, STMT_CHANNEL, NULL, "adding channel aggregates", NULL, errstr,
		            errstr_size);
	return st;
}

/* --- service recovery ---------------------------------------------------- */

struct neg_ref {
	const struct batch_event *be;
	size_t msg;
};

static int neg_ref_cmp(const void *pa, const void *pb)
{
	const struct neg_ref *a = pa, *b = pb;
	int c = strcmp(a->be->ev.customer_id, b->be->ev.customer_id);

	if (c != 0)
		return c;
	if (a->be->ev.occurred_at_us != b->be->ev.occurred_at_us)
		return a->be->ev.occurred_at_us < b->be->ev.occurred_at_us ? -1 : 1;
	return a->msg < b->msg ? -1 : a->msg > b->msg;
}

/* Parses an int8[] literal "{1,2,3}" into st->negatives_us. */
static int parse_negatives(const char *s, struct rules_state *st)
{
	size_t n = 0;

	for (const char *p = s; *p; p++)
		n += *p == ',';
	n += 1;
	st->negatives_us = calloc(n, sizeof(int64_t));
	if (st->negatives_us == NULL)
		return -1;
	st->cap_negatives = n;
	st->n_negatives = 0;
	for (const char *p = s; *p;) {
		if (*p == '-' || (*p >= '0' && *p <= '9')) {
			char *end;
			st->negatives_us[st->n_negatives++] = strtoll(p, &end, 10);
			p = end;
		} else {
			p++;
		}
	}
	return 0;
}

/* A row of OUTBOX_COLUMNS. */
static void put_outbox_row(struct pgbuf *o, const struct event *ev, const struct rules_decision *d,
                           int64_t detected_us, const uint8_t *payload, size_t len)
{
	pgbuf_row(o, 12);
	pgbuf_text2(o, TRIGGER_ID_PREFIX, ev->event_id);
	pgbuf_text(o, ev->event_id);
	pgbuf_text(o, ev->customer_id);
	pgbuf_text(o, channel_name(ev->channel));
	pgbuf_int2(o, d->severity, "severity");
	pgbuf_int2(o, d->reasons, "reasons");
	pgbuf_int4(o, d->repeat_count, "repeat_count");
	pgbuf_int4(o, d->suppressed_count, "suppressed_count");
	pgbuf_time(o, ev->occurred_at_us);
	pgbuf_time(o, detected_us);
	pgbuf_time(o, d->follow_up_by_us);
	pgbuf_bytea(o, payload, len);
}

/* A row of RECOVERY_COLUMNS. */
static void put_state_row(struct pgbuf *o, const char *customer, const struct rules_state *st)
{
	pgbuf_row(o, 4);
	pgbuf_text(o, customer);
	pgbuf_int8_array(o, st->negatives_us, st->n_negatives);
	if (st->has_trigger)
		pgbuf_time(o, st->last_trigger_us);
	else
		pgbuf_null(o);
	pgbuf_int4(o, st->suppressed, "suppressed");
}

static int64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Decides the triggers of the new negative events of messages [from, to):
 * locks their customers' recovery state in customer order, applies the
 * rules in (customer, occurred_at) order, stores the state and queues the
 * triggers in the outbox, and notifies the publishers at commit.
 */
static enum db_status db_recover(struct db *db, struct batch *b, size_t from, size_t to,
                                 char *errstr, size_t errstr_size)
{
	struct neg_ref *refs = NULL;
	struct rules_state *states = NULL;
	const char **customers = NULL;
	bool *existed = NULL;
	PGresult *res = NULL;
	enum db_status st = DB_OK;
	size_t n = 0, n_cust = 0, n_created = 0;
	int64_t detected_us = wall_us();

	for (size_t i = from; i < to; i++) {
		const struct batch_msg *m = &b->msgs[i];
		if (m->event >= 0 && b->events[m->event].is_new &&
		    b->events[m->event].negative_reasons != 0)
			n++;
	}
	if (n == 0)
		return DB_OK;
	refs = malloc(n * sizeof(*refs));
	customers = malloc(n * sizeof(*customers));
	states = calloc(n, sizeof(*states));
	existed = calloc(n, sizeof(*existed));
	if (!refs || !customers || !states || !existed) {
		snprintf(errstr, errstr_size, "service recovery: out of memory");
		st = DB_FATAL;
		goto out;
	}
	n = 0;
	for (size_t i = from; i < to; i++) {
		const struct batch_msg *m = &b->msgs[i];
		if (m->event >= 0 && b->events[m->event].is_new &&
		    b->events[m->event].negative_reasons != 0)
			refs[n++] = (struct neg_ref){&b->events[m->event], i};
	}
	qsort(refs, n, sizeof(*refs), neg_ref_cmp);
	for (size_t i = 0; i < n; i++)
		if (n_cust == 0 || strcmp(customers[n_cust - 1], refs[i].be->ev.customer_id) != 0)
			customers[n_cust++] = refs[i].be->ev.customer_id;

	pgbuf_clear(&db->out);
	pgbuf_array_begin(&db->out);
	for (size_t i = 0; i < n_cust; i++) {
		pgbuf_array_sep(&db->out, i);
		pgbuf_array_text(&db->out, customers[i]);
	}
	pgbuf_array_end(&db->out);
	if (db->out.oom) {
		snprintf(errstr, errstr_size, "service recovery: out of memory");
		st = DB_FATAL;
		goto out;
	}
	const char *params[1] = {db->out.buf};
	res = PQexecParams(db->conn, sql_recovery_lock, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		st = db_error(db, res, "locking recovery state", errstr, errstr_size);
		goto out;
	}
	/* Rows come in customer order, like the array; a customer without one is new. */
	int row = 0, rows = PQntuples(res);
	for (size_t c = 0; c < n_cust; c++) {
		if (row < rows && strcmp(PQgetvalue(res, row, 0), customers[c]) == 0) {
			if (parse_negatives(PQgetvalue(res, row, 1), &states[c]) != 0) {
				snprintf(errstr, errstr_size, "service recovery: out of memory");
				st = DB_FATAL;
				goto out;
			}
			states[c].has_trigger = !PQgetisnull(res, row, 2);
			if (states[c].has_trigger)
				states[c].last_trigger_us =
				    strtoll(PQgetvalue(res, row, 2), NULL, 10);
			states[c].suppressed = (uint32_t)strtoul(PQgetvalue(res, row, 3), NULL, 10);
			existed[c] = true;
			row++;
		} else {
			n_created++;
		}
	}
	if (row != rows) {
		snprintf(errstr, errstr_size, "recovery state out of order at row %d of %d", row,
		         rows);
		st = DB_FATAL;
		goto out;
	}
	PQclear(res);
	res = NULL;

	/* Evaluate in (customer, occurred_at) order; outbox rows go to the buffer. */
	arena_reset(&db->scratch);
	pgbuf_copy_begin(&db->out);
	size_t c = 0;
	for (size_t i = 0; i < n; i++) {
		const struct event *ev = &refs[i].be->ev;
		struct rules_decision d;

		while (strcmp(customers[c], ev->customer_id) != 0)
			c++;
		if (rules_evaluate(&db->policy, ev, refs[i].be->negative_reasons, detected_us,
		                   &states[c], &d) != 0) {
			snprintf(errstr, errstr_size, "service recovery: out of memory");
			st = DB_FATAL;
			goto out;
		}
		if (!d.trigger) {
			db->last.suppressed++;
			continue;
		}
		size_t len = 0;
		uint8_t *payload = trigger_pack(ev, &d, detected_us, &db->scratch, &len);
		if (payload == NULL) {
			snprintf(errstr, errstr_size, "service recovery: out of memory");
			st = DB_FATAL;
			goto out;
		}
		put_outbox_row(&db->out, ev, &d, detected_us, payload, len);
		db->last.triggers++;
	}
	if (db->last.triggers > 0) {
		st = db_copy(db, sql_outbox, "queueing triggers", errstr, errstr_size);
		if (st != DB_OK)
			goto out;
	}

	/* New customers first, straight into the table; then the others, staged. */
	if (n_created > 0) {
		pgbuf_copy_begin(&db->out);
		for (size_t k = 0; k < n_cust; k++)
			if (!existed[k])
				put_state_row(&db->out, customers[k], &states[k]);
		st = db_copy(db, sql_recovery_create, "creating recovery state", errstr,
		             errstr_size);
		if (st == DB_REJECTED && strcmp(db->sqlstate, "23505") == 0) {
			snprintf(errstr, errstr_size,
			         "creating recovery state: another consumer created one of %zu new "
			         "customers meanwhile",
			         n_created);
			st = DB_RETRY;
		}
		if (st != DB_OK)
			goto out;
	}
	if (n_created < n_cust) {
		pgbuf_copy_begin(&db->out);
		for (size_t k = 0; k < n_cust; k++)
			if (existed[k])
				put_state_row(&db->out, customers[k], &states[k]);
		st = db_copy(db, "COPY fc_stage_recovery FROM STDIN (FORMAT binary)",
		             "staging recovery state", errstr, errstr_size);
		if (st == DB_OK)
			st = db_run(db, STMT_RECOVERY_STORE, NULL, "storing recovery state", NULL,
			            errstr, errstr_size);
	}
	if (st == DB_OK && db->last.triggers > 0) {
		const char *channel[1] = {db->notify_channel};

		st = db_run(db, STMT_NOTIFY, channel, "notifying publishers", NULL, errstr,
		            errstr_size);
	}
out:
	PQclear(res);
	if (states)
		for (size_t k = 0; k < n_cust; k++)
			rules_state_release(&states[k]);
	free(states);
	free(existed);
	free(customers);
	free(refs);
	return st;
}

/* Remembers the events that the committed transaction of [from, to) added to the ledger. */
static void db_remember(struct db *db, const struct batch *b, size_t from, size_t to)
{
	if (db->seen == NULL)
		return;
	seen_rotate(db->seen);
	for (size_t i = from; i < to; i++) {
		const struct batch_msg *m = &b->msgs[i];

		if (m->event >= 0 && b->events[m->event].is_new &&
		    seen_add(db->seen, b->events[m->event].ev.event_id,
		             b->events[m->event].ev.occurred_at_us) != 0)
			return; /* out of memory: fewer known duplicates, nothing worse */
	}
}

enum db_status db_apply(struct db *db, const char *group, const char *const *topics,
                        struct batch *b, size_t from, size_t to, const struct offset_update *u,
                        size_t nu, char *errstr, size_t errstr_size)
{
	enum db_status st;
	size_t n_new = 0;

	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "not connected to postgresql");
		return DB_RECONNECT;
	}
	memset(&db->last, 0, sizeof(db->last));
	for (size_t i = from; i < to; i++)
		if (b->msgs[i].event >= 0)
			b->events[b->msgs[i].event].is_new = false;

	st = db_exec(db, "BEGIN", "beginning a transaction", errstr, errstr_size);
	if (st != DB_OK)
		goto out;
	/* Offsets first: a stale replica blocks or fails here before writing anything. */
	st = db_advance_offsets(db, group, topics, u, nu, errstr, errstr_size);
	if (st != DB_OK)
		goto out;
	st = db_insert_ledger(db, b, from, to, &n_new, errstr, errstr_size);
	if (st != DB_OK)
		goto out;
	if (n_new > 0) {
		if (db->recovery)
			st = db_recover(db, b, from, to, errstr, errstr_size);
		if (st == DB_OK)
			st = db_add_aggregates(db, b, from, to, errstr, errstr_size);
		if (st != DB_OK)
			goto out;
	}
	if (db->gate && !db->gate(db->gate_arg)) {
		snprintf(errstr, errstr_size, "the commit gate said not yet");
		st = DB_GATED;
		goto out;
	}
	st = db_exec(db, "COMMIT", "committing", errstr, errstr_size);
	db->last.accepted = n_new;
	if (st == DB_OK)
		db_remember(db, b, from, to);
out:
	if (st != DB_OK) {
		memset(&db->last, 0, sizeof(db->last));
		db_rollback(db);
		for (size_t i = from; i < to; i++)
			if (b->msgs[i].event >= 0)
				b->events[b->msgs[i].event].is_new = false;
	}
	return st;
}

enum db_status db_load_offsets(struct db *db, const char *group, const char *topic,
                               const int32_t *partitions, size_t n, int64_t *next, char *errstr,
                               size_t errstr_size)
{
	static const char sql[] = "SELECT partition, next_offset FROM consumer_offsets "
	                          "WHERE group_id = $1 AND topic = $2";
	const char *params[2] = {group, topic};
	PGresult *res;
	enum db_status st = DB_OK;

	for (size_t i = 0; i < n; i++)
		next[i] = -1;
	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "not connected to postgresql");
		return DB_RECONNECT;
	}
	res = PQexecParams(db->conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		st = db_error(db, res, "reading stored offsets", errstr, errstr_size);
		goto out;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		int32_t p = (int32_t)strtol(PQgetvalue(res, r, 0), NULL, 10);

		for (size_t i = 0; i < n; i++)
			if (partitions[i] == p)
				next[i] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
	}
out:
	PQclear(res);
	return st;
}
