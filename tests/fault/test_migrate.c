/*
 * migrate.c under failure: every libpq call of migrate_run fails in turn
 * (pqfault.h) on a fresh schema. A migration is all or nothing: each
 * version recorded in schema_migrations has all its objects, and none of
 * a version that is not recorded exists. Running again completes the
 * schema.
 */
#include "fault/pqfault.h"
#include "integration/harness.h"
#include "migrate.h"
#include "migrations.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/*
 * The objects of schema and the rights on them, with the schema's own name
 * written as S; schema_migrations itself is left out.
 */
static char *objects_of(PGconn *conn, const char *schema)
{
	char sql[1536];
	char *text;

	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(string_agg(replace(x, '%s', 'S'), ' ' ORDER BY x), '') FROM ("
	         " SELECT c.relkind::text || ':' || c.relname || ':' || coalesce(c.relacl::text, "
	         "'') AS x"
	         " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	         " WHERE n.nspname = '%s' AND c.relname NOT LIKE 'schema_migrations%%'"
	         " UNION ALL SELECT 'f:' || p.proname || ':' || p.prosecdef || ':' ||"
	         " coalesce(p.proconfig::text, '') || ':' || coalesce(p.proacl::text, '')"
	         " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
	         " WHERE n.nspname = '%s') o",
	         schema, schema, schema);
	text = harness_query_text(conn, sql);
	assert_non_null(text);
	return text;
}

static long long version_of(PGconn *conn, const char *schema)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT (to_regclass('\"%s\".schema_migrations') IS NULL)::int",
	         schema);
	if (harness_query_int(conn, sql) == 1)
		return 0;
	snprintf(sql, sizeof(sql), "SELECT coalesce(max(version), 0) FROM \"%s\".schema_migrations",
	         schema);
	return harness_query_int(conn, sql);
}

/* refs[v]: the objects after exactly the first v migrations, each run as migrate.c runs it. */
static char **reference_objects(PGconn *conn)
{
	char **refs = calloc((size_t)fc_migrations_count + 1, sizeof(*refs));
	char *schema = harness_fresh_schema(conn, "fc_fault_ref");
	char sql[256];

	assert_non_null(refs);
	/* The runner's own table, which 011 alters. */
	snprintf(sql, sizeof(sql),
	         "CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".schema_migrations (version integer "
	         "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
	         schema, schema);
	harness_exec(conn, sql);
	refs[0] = objects_of(conn, schema);
	for (int v = 1; v <= fc_migrations_count; v++) {
		snprintf(sql, sizeof(sql), "BEGIN; SET LOCAL search_path TO \"%s\"", schema);
		harness_exec(conn, sql);
		harness_exec(conn, fc_migrations[v - 1].sql);
		harness_exec(conn, "COMMIT");
		refs[v] = objects_of(conn, schema);
	}
	harness_drop_schema(conn, schema);
	free(schema);
	return refs;
}

static void refs_free(char **refs)
{
	for (int v = 0; v <= fc_migrations_count; v++)
		free(refs[v]);
	free(refs);
}

/* A schema at version v has exactly the objects of migrations 1..v. */
static void assert_whole_versions(PGconn *conn, const char *schema, char **refs, int n)
{
	long long v = version_of(conn, schema);
	char *got;

	assert_true(v >= 0 && v <= fc_migrations_count);
	got = objects_of(conn, schema);
	if (strcmp(got, refs[v]) != 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%.200s", got);
		free(got);
		fail_msg(
		    "call %d failing: schema at version %lld has other objects than migrations "
		    "1..%lld create: %s",
		    n, v, v, msg);
	}
	free(got);
}

static void migrate_in_turn(enum pqfault_kind kind, const char *sqlstate)
{
	PGconn *killer = harness_pg_connect();
	PGconn *conn = harness_pg_connect();
	char *schema = harness_fresh_schema(killer, "fc_fault_mig");
	char **refs = reference_objects(killer);
	char errstr[512];
	int calls, rc;

	pqfault_arm(0, kind, sqlstate, killer);
	rc = migrate_run(conn, schema, errstr, sizeof(errstr));
	calls = pqfault_calls();
	pqfault_disarm();
	if (rc != fc_migrations_count)
		fail_msg("clean migrate_run gave %d: %s", rc, errstr);
	assert_int_equal(version_of(killer, schema),
	                 fc_migrations[fc_migrations_count - 1].version);
	assert_whole_versions(killer, schema, refs, 0);

	for (int n = 1; n <= calls; n++) {
		harness_drop_schema(killer, schema);
		pqfault_arm(n, kind, sqlstate, killer);
		rc = migrate_run(conn, schema, errstr, sizeof(errstr));
		pqfault_disarm();
		assert_non_null(pqfault_hit());
		if (rc != -1)
			fail_msg("call %d (%s) failing: migrate_run gave %d", n, pqfault_hit(), rc);
		assert_true(strlen(errstr) > 0);
		assert_whole_versions(killer, schema, refs, n);
		if (PQstatus(conn) != CONNECTION_OK) {
			PQfinish(conn);
			conn = harness_pg_connect();
		}
		assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
		rc = migrate_run(conn, schema, errstr, sizeof(errstr));
		if (rc < 0)
			fail_msg("migrating again after call %d failed: %s", n, errstr);
		assert_int_equal(version_of(killer, schema),
		                 fc_migrations[fc_migrations_count - 1].version);
		assert_whole_versions(killer, schema, refs, n);
	}
	harness_drop_schema(killer, schema);
	free(schema);
	refs_free(refs);
	PQfinish(conn);
	PQfinish(killer);
}

static void test_session_dropped(void **state)
{
	(void)state;
	migrate_in_turn(PQFAULT_DROP, NULL);
}

static void test_statement_fails(void **state)
{
	(void)state;
	migrate_in_turn(PQFAULT_SQLSTATE, "42501");
}

static void test_client_failure(void **state)
{
	(void)state;
	migrate_in_turn(PQFAULT_CLIENT, NULL);
}

struct migrate_arg {
	PGconn *conn;
	const char *schema;
	int rc;
	char errstr[512];
};

static void *migrate_thread(void *arg)
{
	struct migrate_arg *a = arg;

	a->rc = migrate_run(a->conn, a->schema, a->errstr, sizeof(a->errstr));
	return NULL;
}

/*
 * Migration 8's ALTER TABLE waits for a report's transaction on the
 * ledger. With its lock_timeout (1 s here, the session's own) it rolls back
 * and tries again instead of queueing every reader behind its request: a
 * query of the ledger with a 3 s statement_timeout still answers, and the
 * migration goes through once the report ends, 4 s in.
 */
static void test_lock_wait_is_bounded(void **state)
{
	PGconn *conn = harness_pg_connect(), *holder = harness_pg_connect();
	PGconn *mig = harness_pg_connect(), *reader = harness_pg_connect();
	char *schema = harness_fresh_schema(conn, "fc_mig_lock");
	char errstr[512], sql[256];
	struct migrate_arg a = {.conn = mig, .schema = schema};
	pthread_t t;

	(void)state;
	assert_int_equal(migrate_run(conn, schema, errstr, sizeof(errstr)), fc_migrations_count);
	snprintf(sql, sizeof(sql), "DELETE FROM \"%s\".schema_migrations WHERE version = 8",
	         schema);
	harness_exec(conn, sql);
	harness_exec(holder, "BEGIN");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".ledger", schema);
	assert_int_equal(harness_query_int(holder, sql), 0);
	harness_exec(mig, "SET lock_timeout = '1s'");
	assert_int_equal(pthread_create(&t, NULL, migrate_thread, &a), 0);
	usleep(300000); /* the ALTER TABLE waits */
	harness_exec(reader, "SET statement_timeout = '3s'");
	PGresult *res = PQexec(reader, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("the ledger's reader: %s", PQerrorMessage(reader));
	PQclear(res);
	sleep(4);
	harness_exec(holder, "COMMIT");
	assert_int_equal(pthread_join(t, NULL), 0);
	if (a.rc != 1)
		fail_msg("migrate_run gave %d: %s", a.rc, a.errstr);
	assert_int_equal(version_of(conn, schema), fc_migrations[fc_migrations_count - 1].version);
	PQfinish(reader);
	PQfinish(mig);
	PQfinish(holder);
	harness_drop_schema(conn, schema);
	free(schema);
	PQfinish(conn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_dropped),
	    cmocka_unit_test(test_statement_fails),
	    cmocka_unit_test(test_client_failure),
	    cmocka_unit_test(test_lock_wait_is_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
