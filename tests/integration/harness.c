#include "harness.h"

#include "migrate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* --- PostgreSQL ---------------------------------------------------------- */

/*
 * Fails the test with the error of res. fail_msg() does not return, so the
 * message is copied and res cleared first: a failing test must not also
 * report a leak.
 */
static void pg_fail(PGconn *conn, PGresult *res, const char *sql, const char *what)
{
	char msg[1024];
	const char *text = "";

	/* PQresultStatus(NULL) is a fatal error too: then the connection holds the message. */
	if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
		text = PQresultErrorMessage(res);
		if (*text == '\0')
			text = PQerrorMessage(conn);
	}
	snprintf(msg, sizeof(msg), "%.*s", (int)strcspn(text, "\n"), text);
	PQclear(res);
	fail_msg("%s%s%s\n  sql: %s", what, *msg ? ": " : "", msg, sql);
}

/* Runs sql and returns the result of its single row and column; the caller clears it. */
static PGresult *pg_query_one(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		pg_fail(conn, res, sql, "query failed");
	if (PQntuples(res) != 1 || PQnfields(res) != 1) {
		char what[96];

		snprintf(what, sizeof(what), "expected 1 row and 1 column, got %d and %d",
		         PQntuples(res), PQnfields(res));
		pg_fail(conn, res, sql, what);
	}
	return res;
}

PGconn *harness_pg_connect(void)
{
	PGconn *conn = PQconnectdb("");
	PGresult *res;

	if (PQstatus(conn) != CONNECTION_OK) {
		char msg[1024];
		const char *text = PQerrorMessage(conn);

		snprintf(msg, sizeof(msg), "%.*s", (int)strcspn(text, "\n"), text);
		PQfinish(conn);
		fail_msg(
		    "cannot connect to postgresql with the PG* environment (run the test under "
		    "pg_virtualenv -v 15): %s",
		    msg);
	}
	res = PQexec(conn, "SET client_min_messages TO warning");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		pg_fail(conn, res, "SET client_min_messages TO warning", "setting up the session");
	PQclear(res);
	return conn;
}

char *harness_fresh_schema(PGconn *conn, const char *prefix)
{
	static unsigned counter;
	char name[64];
	char *copy;

	snprintf(name, sizeof(name), "%s_%ld_%u", prefix, (long)getpid(), ++counter);
	if (!migrate_schema_name_valid(name))
		fail_msg("schema name \"%s\" from prefix \"%s\" is not valid", name, prefix);
	harness_drop_schema(conn, name);
	copy = strdup(name);
	assert_non_null(copy);
	return copy;
}

void harness_drop_schema(PGconn *conn, const char *schema)
{
	char sql[256];
	char *ident = PQescapeIdentifier(conn, schema, strlen(schema));

	if (ident == NULL)
		pg_fail(conn, NULL, schema, "quoting a schema name");
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", ident);
	PQfreemem(ident);
	harness_exec(conn, sql);
}

void harness_exec(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType rs = PQresultStatus(res);

	if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
		pg_fail(conn, res, sql, "statement failed");
	PQclear(res);
}

void harness_server_read_only(PGconn *conn, bool on)
{
	if (on) {
		harness_exec(conn, "SET default_transaction_read_only = off");
		harness_exec(conn, "ALTER SYSTEM SET default_transaction_read_only = on");
		harness_exec(conn, "SELECT pg_reload_conf()");
	} else {
		harness_exec(conn, "ALTER SYSTEM RESET default_transaction_read_only");
		harness_exec(conn, "SELECT pg_reload_conf()");
		harness_exec(conn, "RESET default_transaction_read_only");
	}
}

long long harness_query_int(PGconn *conn, const char *sql)
{
	PGresult *res = pg_query_one(conn, sql);
	const char *text;
	char *end;
	long long v;

	if (PQgetisnull(res, 0, 0))
		pg_fail(conn, res, sql, "expected an integer, got NULL");
	text = PQgetvalue(res, 0, 0);
	v = strtoll(text, &end, 10);
	if (end == text || *end != '\0') {
		char what[128];

		snprintf(what, sizeof(what), "expected an integer, got \"%.64s\"", text);
		pg_fail(conn, res, sql, what);
	}
	PQclear(res);
	return v;
}

long long harness_ledger_rows(PGconn *conn, const char *schema)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".ledger", schema);
	return harness_query_int(conn, sql);
}

long long harness_stored_offsets(PGconn *conn, const char *schema, const char *group)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(sum(next_offset), 0) FROM \"%s\".consumer_offsets "
	         "WHERE group_id = '%s'",
	         schema, group);
	return harness_query_int(conn, sql);
}

char *harness_query_text(PGconn *conn, const char *sql)
{
	PGresult *res = pg_query_one(conn, sql);
	char *copy = NULL;

	if (!PQgetisnull(res, 0, 0)) {
		copy = strdup(PQgetvalue(res, 0, 0));
		if (copy == NULL)
			pg_fail(conn, res, sql, "out of memory");
	}
	PQclear(res);
	return copy;
}
