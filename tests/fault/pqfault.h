/*
 * pqfault.h - failure injection into libpq for the fault tests.
 *
 * A test links with -Wl,--wrap= for PQconnectdbParams, PQstatus, PQexec,
 * PQexecParams, PQputCopyData, PQputCopyEnd and PQgetResult. While armed,
 * every call of those is counted; the Nth one fails in the way the kind
 * says, every other call goes to libpq unchanged. Calls are counted in one
 * sequence over all seven functions, so "each call fails in turn" is a loop
 * over N from 1 to the number of calls of a clean run.
 */
#ifndef FC_TEST_PQFAULT_H
#define FC_TEST_PQFAULT_H

#include <libpq-fe.h>

enum pqfault_kind {
	/* The server ends the session before the call: pg_terminate_backend(). */
	PQFAULT_DROP,
	/* The statement fails on the server with sqlstate (PQexec, PQexecParams;
	 * the other functions fail as with PQFAULT_CLIENT). */
	PQFAULT_SQLSTATE,
	/* libpq itself gives up: NULL result, -1, CONNECTION_BAD (for good), a refused
	 * connection. */
	PQFAULT_CLIENT,
};

/*
 * Counts calls from now on and fails call n (n = 0: count only). killer is
 * a connection of the test's own, used to end sessions for PQFAULT_DROP;
 * its calls are never counted. sqlstate is used by PQFAULT_SQLSTATE.
 */
void pqfault_arm(int n, enum pqfault_kind kind, const char *sqlstate, PGconn *killer);

/* Stops counting and failing. */
void pqfault_disarm(void);

/* Calls counted since pqfault_arm(). */
int pqfault_calls(void);

/* The name of the function whose call failed ("PQexec", ...), or NULL when call n never came. */
const char *pqfault_hit(void);

#endif
