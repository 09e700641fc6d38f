#include "migrate.h"

#include "log.h"
#include "migrations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * A migration's ALTER TABLE waits for the locks of every transaction on
 * the table, a long report's, say; meanwhile every ingest transaction
 * queues behind its own request, and the consumers stall. Without a
 * lock_timeout of the session's own, a migration waits 5 s at most, rolls
 * back, and tries again, up to LOCK_ATTEMPTS times, 1 s, 2 s, ... 30 s apart.
 */
#define LOCK_TIMEOUT   "5s"
#define LOCK_ATTEMPTS  10
#define LOCK_BACKOFF_S 30

/* PostgreSQL's NAMEDATALEN - 1: longer identifiers would be truncated silently. */
#define SCHEMA_NAME_MAX 63

/*
 * One key per schema, shared by every build of the consumer: hashtext() is
 * computed by the server, so replicas of different architectures agree.
 */
static const char sql_lock[] =
    "SELECT pg_advisory_xact_lock(hashtext('feedback-consumer.migrate.' || $1::text))";

/* Catalog lookups instead of IF NOT EXISTS, which would send a notice on every start. */
static const char sql_state[] =
    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), "
    "EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = $1 AND c.relname = 'schema_migrations')";

static const char sql_create_table[] =
    "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())";

bool migrate_schema_name_valid(const char *schema)
{
	size_t len;

	if (schema == NULL)
		return false;
	len = strnlen(schema, SCHEMA_NAME_MAX + 1);
	if (len == 0 || len > SCHEMA_NAME_MAX)
		return false;
	if (schema[0] != '_' && (schema[0] < 'a' || schema[0] > 'z'))
		return false;
	for (size_t i = 1; i < len; i++) {
		char c = schema[i];

		if (c != '_' && (c < 'a' || c > 'z') && (c < '0' || c > '9'))
			return false;
	}
	return true;
}

/* Writes "<what> failed (sqlstate S): message" for res, else for the connection. */
static void set_error(PGconn *conn, const PGresult *res, const char *what, char *errstr,
                      size_t errstr_size)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char state[32] = "";

	if (msg == NULL)
		msg = PQerrorMessage(conn);
	if (msg == NULL || *msg == '\0')
		msg = "no message from the server";
	if (sqlstate)
		snprintf(state, sizeof(state), " (sqlstate %s)", sqlstate);
	snprintf(errstr, errstr_size, "%s failed%s: %.*s", what, state, (int)strcspn(msg, "\n"),
	         msg);
}

/*
 * Runs sql with text parameters. On success returns 0 and hands the result
 * to *out (the caller clears it) or clears it when out is NULL; on failure
 * returns -1 with errstr saying what failed.
 */
static int exec_sql(PGconn *conn, const char *sql, int n_params, const char *const *params,
                    PGresult **out, const char *what, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
	ExecStatusType rs = PQresultStatus(res);

	if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
		set_error(conn, res, what, errstr, errstr_size);
		PQclear(res);
		return -1;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return 0;
}

static void rollback(PGconn *conn)
{
	PGresult *res;

	if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) == PQTRANS_IDLE)
		return;
	res = PQexec(conn, "ROLLBACK");
	PQclear(res);
}

static bool check_args(PGconn *conn, const char *schema, char *errstr, size_t errstr_size)
{
	if (!migrate_schema_name_valid(schema)) {
		snprintf(errstr, errstr_size,
		         "invalid schema name \"%.*s\": use 1 to 63 lower-case letters, digits or "
		         "underscores, not starting with a digit",
		         SCHEMA_NAME_MAX + 1, schema ? schema : "(null)");
		return false;
	}
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "no connection to postgresql for schema \"%s\"",
		         schema);
		return false;
	}
	return true;
}

/* Whether schema and its schema_migrations table exist; 0, or -1 with errstr set. */
static int schema_state(PGconn *conn, const char *schema, bool *has_schema, bool *has_table,
                        char *errstr, size_t errstr_size)
{
	char what[128];
	const char *params[1] = {schema};
	PGresult *res = NULL;

	snprintf(what, sizeof(what), "looking up schema \"%s\"", schema);
	if (exec_sql(conn, sql_state, 1, params, &res, what, errstr, errstr_size) < 0)
		return -1;
	*has_schema = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	*has_table = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	return 0;
}

/*
 * Opens the transaction of one migration: takes the lock, creates the
 * schema and schema_migrations when missing, points the search path at
 * the schema for this transaction only.
 */
static int begin_locked(PGconn *conn, const char *schema, const char *ident, char *errstr,
                        size_t errstr_size)
{
	char sql[256];
	char what[128];
	const char *params[1] = {schema};
	bool has_schema, has_table;

	snprintf(what, sizeof(what), "locking the migrations of schema \"%s\"", schema);
	if (exec_sql(conn, "BEGIN", 0, NULL, NULL, what, errstr, errstr_size) < 0 ||
	    exec_sql(conn, sql_lock, 1, params, NULL, what, errstr, errstr_size) < 0)
		return -1;
	if (schema_state(conn, schema, &has_schema, &has_table, errstr, errstr_size) < 0)
		return -1;
	snprintf(what, sizeof(what), "creating schema \"%s\"", schema);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", ident);
	if (!has_schema && exec_sql(conn, sql, 0, NULL, NULL, what, errstr, errstr_size) < 0)
		return -1;
	snprintf(what, sizeof(what), "setting the search path to schema \"%s\"", schema);
	snprintf(sql, sizeof(sql), "SET LOCAL search_path TO %s", ident);
	if (exec_sql(conn, sql, 0, NULL, NULL, what, errstr, errstr_size) < 0)
		return -1;
	snprintf(what, sizeof(what), "creating \"%s.schema_migrations\"", schema);
	if (!has_table &&
	    exec_sql(conn, sql_create_table, 0, NULL, NULL, what, errstr, errstr_size) < 0)
		return -1;
	/* After the advisory lock: waiting for another replica's migration is no stall. */
	snprintf(what, sizeof(what), "setting lock_timeout for schema \"%s\"", schema);
	if (exec_sql(conn,
	             "SELECT CASE WHEN current_setting('lock_timeout') IN ('0', '0ms') THEN "
	             "set_config('lock_timeout', '" LOCK_TIMEOUT "', true) END",
	             0, NULL, NULL, what, errstr, errstr_size) < 0)
		return -1;
	return 0;
}

/* Applies m unless it is recorded: 1 applied, 0 already applied, -1 rolled back with errstr set. */
static int apply_one(PGconn *conn, const char *schema, const char *ident, const struct migration *m,
                     char *errstr, size_t errstr_size)
{
	char version[16];
	char what[256];
	const char *params[2];
	PGresult *res = NULL;
	ExecStatusType rs;
	int applied = 0;
	int rc = -1;

	snprintf(version, sizeof(version), "%d", m->version);
	params[0] = version;
	params[1] = m->name;
	snprintf(what, sizeof(what), "migration %d \"%s\" of schema \"%s\"", m->version, m->name,
	         schema);
	if (begin_locked(conn, schema, ident, errstr, errstr_size) < 0)
		goto out;
	if (exec_sql(conn, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1, params,
	             &res, what, errstr, errstr_size) < 0)
		goto out;
	if (PQntuples(res) == 0) {
		PQclear(res);
		/* The simple query protocol: a migration is a script of many statements. */
		res = PQexec(conn, m->sql);
		rs = PQresultStatus(res);
		if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
			set_error(conn, res, what, errstr, errstr_size);
			goto out;
		}
		if (exec_sql(
		        conn,
		        "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)", 2,
		        params, NULL, what, errstr, errstr_size) < 0)
			goto out;
		/* Only migrations from 011 on, which added the column, carry the line. */
		if (migrate_keeps_older_builds(m) &&
		    exec_sql(conn,
		             "UPDATE schema_migrations SET older_builds_run = true "
		             "WHERE version = $1::integer",
		             1, params, NULL, what, errstr, errstr_size) < 0)
			goto out;
		applied = 1;
	}
	if (exec_sql(conn, "COMMIT", 0, NULL, NULL, what, errstr, errstr_size) < 0)
		goto out;
	rc = applied;
out:
	PQclear(res);
	if (rc < 0)
		rollback(conn);
	return rc;
}

/* apply_one, again after a pause while a lock_timeout (55P03) ended it. */
static int apply_one_patiently(PGconn *conn, const char *schema, const char *ident,
                               const struct migration *m, char *errstr, size_t errstr_size)
{
	for (int attempt = 1;; attempt++) {
		int rc = apply_one(conn, schema, ident, m, errstr, errstr_size);

		if (rc >= 0 || strstr(errstr, "(sqlstate 55P03)") == NULL ||
		    attempt == LOCK_ATTEMPTS || PQstatus(conn) != CONNECTION_OK)
			return rc;
		int pause_s = 1 << (attempt - 1);
		if (pause_s > LOCK_BACKOFF_S)
			pause_s = LOCK_BACKOFF_S;
		log_warn("migration %d of schema \"%s\" waits for a table another session holds; "
		         "attempt %d of %d in %d s",
		         m->version, schema, attempt + 1, LOCK_ATTEMPTS, pause_s);
		nanosleep(&(struct timespec){.tv_sec = pause_s}, NULL);
	}
}

int migrate_run(PGconn *conn, const char *schema, char *errstr, size_t errstr_size)
{
	char *ident = NULL;
	int applied = 0;
	int rc = -1;

	if (!check_args(conn, schema, errstr, errstr_size))
		return -1;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
		snprintf(errstr, errstr_size,
		         "cannot migrate schema \"%s\": the connection is inside a transaction",
		         schema);
		return -1;
	}
	ident = PQescapeIdentifier(conn, schema, strlen(schema));
	if (ident == NULL) {
		set_error(conn, NULL, "quoting the schema name", errstr, errstr_size);
		goto out;
	}
	for (const struct migration *m = fc_migrations; m->version != 0; m++) {
		int one = apply_one_patiently(conn, schema, ident, m, errstr, errstr_size);

		if (one < 0)
			goto out;
		applied += one;
	}
	rc = applied;
out:
	PQfreemem(ident);
	return rc;
}

bool migrate_keeps_older_builds(const struct migration *m)
{
	static const char line[] = "-- " MIGRATE_KEEPS_OLDER_BUILDS "\n";
	const char *p = strstr(m->sql, line);

	return p && (p == m->sql || p[-1] == '\n');
}

/* The highest version in schema_migrations where where holds ("" or " WHERE ..."); 0 for none. */
static int read_version(PGconn *conn, const char *schema, const char *where, char *errstr,
                        size_t errstr_size)
{
	char sql[256];
	char what[128];
	char *ident = NULL;
	PGresult *res = NULL;
	bool has_schema, has_table;
	int rc = -1;

	if (!check_args(conn, schema, errstr, errstr_size))
		return -1;
	if (schema_state(conn, schema, &has_schema, &has_table, errstr, errstr_size) < 0)
		goto out;
	if (!has_table) {
		rc = 0;
		goto out;
	}
	ident = PQescapeIdentifier(conn, schema, strlen(schema));
	if (ident == NULL) {
		set_error(conn, NULL, "quoting the schema name", errstr, errstr_size);
		goto out;
	}
	snprintf(sql, sizeof(sql), "SELECT coalesce(max(version), 0) FROM %s.schema_migrations%s",
	         ident, where);
	snprintf(what, sizeof(what), "reading \"%s.schema_migrations\"", schema);
	if (exec_sql(conn, sql, 0, NULL, &res, what, errstr, errstr_size) < 0)
		goto out;
	rc = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
out:
	PQclear(res);
	PQfreemem(ident);
	return rc;
}

int migrate_current_version(PGconn *conn, const char *schema, char *errstr, size_t errstr_size)
{
	return read_version(conn, schema, "", errstr, errstr_size);
}

int migrate_needed_version(PGconn *conn, const char *schema, char *errstr, size_t errstr_size)
{
	return read_version(conn, schema, " WHERE NOT older_builds_run", errstr, errstr_size);
}
