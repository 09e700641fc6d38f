/*
 * harness.h - helpers of the integration tests.
 *
 * PostgreSQL: a connection from the PG* environment (as pg_virtualenv sets
 * it) and one throwaway schema per test. Every helper fails the running
 * cmocka test, with the SQL and the server's message, instead of returning
 * an error.
 */
#ifndef FC_TEST_HARNESS_H
#define FC_TEST_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>

/* --- PostgreSQL ---------------------------------------------------------- */

/*
 * Connects with the PG* environment; the caller PQfinish()es the result.
 * Notices below warnings are not sent, so that IF EXISTS and friends keep
 * test output readable; a test that looks at notices sets
 * client_min_messages itself.
 */
PGconn *harness_pg_connect(void);

/*
 * A schema name unique to this process and call, prefix_<pid>_<n>; drops
 * any schema of that name left by an earlier run but does not create it
 * (migrate_run does). Returns a malloc'd name the caller frees.
 */
char *harness_fresh_schema(PGconn *conn, const char *prefix);

/* Drops schema and everything in it, if it exists. */
void harness_drop_schema(PGconn *conn, const char *schema);

/* Runs sql (one or more statements), expecting success. */
void harness_exec(PGconn *conn, const char *sql);

/* The single value of a one-row, one-column query, which must not be NULL. */
long long harness_query_int(PGconn *conn, const char *sql);

/* Rows in schema's ledger. */
long long harness_ledger_rows(PGconn *conn, const char *schema);

/* The sum of the offsets stored for group in schema: messages consumed, as positions. */
long long harness_stored_offsets(PGconn *conn, const char *schema, const char *group);

/*
 * Makes the whole server read-only (default_transaction_read_only, as a
 * demoted primary is after a failover) or writable again. conn's own
 * session stays writable meanwhile; sessions see the change at their next
 * statement after the reload reaches them.
 */
void harness_server_read_only(PGconn *conn, bool on);

/* The single value of a one-row, one-column query: a malloc'd copy the
 * caller frees, or NULL for SQL NULL. */
char *harness_query_text(PGconn *conn, const char *sql);

#endif
