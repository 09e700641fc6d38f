/*
 * pgconn.h - how every part of the service opens a PostgreSQL connection.
 *
 * libpq's defaults suit a short psql session; a service that holds its
 * connections for weeks and lives through failovers needs others. Each
 * default below gives way to the same keyword in the connection string and
 * to its PG* variable, where libpq has one:
 *   - fallback_application_name: the name pg_stat_activity shows;
 *   - target_session_attrs=read-write (PGTARGETSESSIONATTRS), for writers:
 *     a demoted primary, read-only after a failover, is refused at connect
 *     and the next host of a host list tried, rather than used;
 *   - connect_timeout=10 (PGCONNECT_TIMEOUT): a host that drops packets
 *     fails in seconds, not after the kernel's minutes of SYN retries;
 *   - keepalives_idle=30, keepalives_interval=10, keepalives_count=3 and
 *     tcp_user_timeout=60000: a server that vanished from the network (no
 *     reset ever comes) is noticed within about a minute, where the
 *     kernel's keepalive starts after two hours.
 */
#ifndef FC_PGCONN_H
#define FC_PGCONN_H

#include <libpq-fe.h>
#include <stdbool.h>

/* conninfo: a libpq connection string or URI; "" = the PG* environment. */
PGconn *pgconn_open(const char *conninfo, const char *name, bool writer);

#endif
