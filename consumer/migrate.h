/*
 * migrate.h - applies the schema migrations compiled into the binary
 * (migrations.h) to one PostgreSQL schema, and reports its version.
 *
 * Migrations use unqualified names; each runs with its search_path set to
 * the target schema, so one database can hold several independent
 * installations (tests use one schema each).
 */
#ifndef FC_MIGRATE_H
#define FC_MIGRATE_H

#include "migrations.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Applies every migration of fc_migrations[] not yet recorded in
 * <schema>.schema_migrations, creating the schema and that table when
 * missing. Each migration runs in its own transaction under a
 * transaction-level advisory lock, so replicas starting at once serialise.
 * conn must be idle (not inside a transaction). Returns the number applied
 * (0 when up to date) or -1 with errstr set; a failed migration is rolled
 * back, the ones before it stay applied.
 */
int migrate_run(PGconn *conn, const char *schema, char *errstr, size_t errstr_size);

/* The highest applied version, 0 for none (also when the schema does not
 * exist), -1 on error with errstr set. */
int migrate_current_version(PGconn *conn, const char *schema, char *errstr, size_t errstr_size);

/*
 * The newest applied version that the builds before it cannot run on: the
 * highest one whose migration lacks the line "-- keeps older builds
 * running". A build runs on a schema where this is at most its newest
 * version. The schema must be at version 11 at least; -1 on error.
 */
int migrate_needed_version(PGconn *conn, const char *schema, char *errstr, size_t errstr_size);

#define MIGRATE_KEEPS_OLDER_BUILDS "keeps older builds running"

/* Whether migration m has the line "-- keeps older builds running". */
bool migrate_keeps_older_builds(const struct migration *m);

/* Whether schema matches [a-z_][a-z0-9_]{0,62}; both functions above reject
 * any other name before they touch the connection. */
bool migrate_schema_name_valid(const char *schema);

#endif
