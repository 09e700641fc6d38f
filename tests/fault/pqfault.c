#include "pqfault.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

PGconn *__real_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                 int expand_dbname);
ConnStatusType __real_PQstatus(const PGconn *conn);
PGresult *__real_PQexec(PGconn *conn, const char *query);
PGresult *__real_PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                              const char *const *paramValues, const int *paramLengths,
                              const int *paramFormats, int resultFormat);
int __real_PQputCopyData(PGconn *conn, const char *buffer, int nbytes);
int __real_PQputCopyEnd(PGconn *conn, const char *errormsg);
PGresult *__real_PQgetResult(PGconn *conn);

PGconn *__wrap_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                 int expand_dbname);
ConnStatusType __wrap_PQstatus(const PGconn *conn);
PGresult *__wrap_PQexec(PGconn *conn, const char *query);
PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                              const char *const *paramValues, const int *paramLengths,
                              const int *paramFormats, int resultFormat);
int __wrap_PQputCopyData(PGconn *conn, const char *buffer, int nbytes);
int __wrap_PQputCopyEnd(PGconn *conn, const char *errormsg);
PGresult *__wrap_PQgetResult(PGconn *conn);

static struct {
	bool armed;
	int at, calls;
	enum pqfault_kind kind;
	const char *sqlstate;
	PGconn *killer;
	const char *hit;
	const PGconn *broken; /* reported CONNECTION_BAD from the failed call on */
} f;

void pqfault_arm(int n, enum pqfault_kind kind, const char *sqlstate, PGconn *killer)
{
	f.armed = true;
	f.at = n;
	f.calls = 0;
	f.kind = kind;
	f.sqlstate = sqlstate;
	f.killer = killer;
	f.hit = NULL;
	f.broken = NULL;
}

void pqfault_disarm(void)
{
	f.armed = false;
	f.broken = NULL;
}

int pqfault_calls(void)
{
	return f.calls;
}

const char *pqfault_hit(void)
{
	return f.hit;
}

/* Whether this call is the one to fail; the killer's own calls never count. */
static bool fault_now(const PGconn *conn, const char *fn)
{
	if (!f.armed || (conn != NULL && conn == f.killer))
		return false;
	if (++f.calls != f.at)
		return false;
	f.hit = fn;
	return true;
}

/* Ends conn's session on the server and waits until its backend is gone. */
static void drop_session(const PGconn *conn)
{
	char sql[96];
	PGresult *res;

	if (conn == NULL || __real_PQstatus(conn) != CONNECTION_OK)
		return;
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d, 30000)", PQbackendPID(conn));
	res = __real_PQexec(f.killer, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		fail_msg("could not end the session of backend %d", PQbackendPID(conn));
	}
	PQclear(res);
}

/* A statement that fails on the server with f.sqlstate, aborting any open transaction. */
static PGresult *raise_sqlstate(PGconn *conn)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
	         "DO $$BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '%s'; END$$",
	         f.sqlstate);
	return __real_PQexec(conn, sql);
}

PGconn *__wrap_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                 int expand_dbname)
{
	if (fault_now(NULL, "PQconnectdbParams")) {
		/* Nothing listens on port 1: the connection is refused at once. */
		static const char *const k[] = {"host", "port", "connect_timeout", NULL};
		static const char *const v[] = {"127.0.0.1", "1", "5", NULL};

		return __real_PQconnectdbParams(k, v, 0);
	}
	return __real_PQconnectdbParams(keywords, values, expand_dbname);
}

ConnStatusType __wrap_PQstatus(const PGconn *conn)
{
	if (fault_now(conn, "PQstatus")) {
		if (f.kind == PQFAULT_DROP) {
			drop_session(conn);
			return __real_PQstatus(conn);
		}
		/* As libpq after a failed read: the connection stays bad. */
		f.broken = conn;
	}
	if (f.armed && conn != NULL && conn == f.broken)
		return CONNECTION_BAD;
	return __real_PQstatus(conn);
}

PGresult *__wrap_PQexec(PGconn *conn, const char *query)
{
	if (fault_now(conn, "PQexec")) {
		if (f.kind == PQFAULT_SQLSTATE)
			return raise_sqlstate(conn);
		if (f.kind == PQFAULT_CLIENT)
			return NULL;
		drop_session(conn);
	}
	return __real_PQexec(conn, query);
}

PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                              const char *const *paramValues, const int *paramLengths,
                              const int *paramFormats, int resultFormat)
{
	if (fault_now(conn, "PQexecParams")) {
		if (f.kind == PQFAULT_SQLSTATE)
			return raise_sqlstate(conn);
		if (f.kind == PQFAULT_CLIENT)
			return NULL;
		drop_session(conn);
	}
	return __real_PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
	                           paramFormats, resultFormat);
}

int __wrap_PQputCopyData(PGconn *conn, const char *buffer, int nbytes)
{
	if (fault_now(conn, "PQputCopyData")) {
		if (f.kind != PQFAULT_DROP)
			return -1;
		drop_session(conn);
	}
	return __real_PQputCopyData(conn, buffer, nbytes);
}

int __wrap_PQputCopyEnd(PGconn *conn, const char *errormsg)
{
	if (fault_now(conn, "PQputCopyEnd")) {
		if (f.kind != PQFAULT_DROP)
			return -1;
		drop_session(conn);
	}
	return __real_PQputCopyEnd(conn, errormsg);
}

PGresult *__wrap_PQgetResult(PGconn *conn)
{
	if (fault_now(conn, "PQgetResult")) {
		/* The real result stays unread: whoever handles the error must drain it. */
		if (f.kind != PQFAULT_DROP)
			return NULL;
		drop_session(conn);
	}
	return __real_PQgetResult(conn);
}
