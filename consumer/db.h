/*
 * db.h - the one owner of the PostgreSQL connection.
 *
 * Applies a batch (or a message range of it) in one transaction: compare
 * and set of the stored offsets, new ledger rows, their contribution to the
 * aggregates. Every call answers with what the caller must do next.
 */
#ifndef FC_DB_H
#define FC_DB_H

#include "batch.h"
#include "rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum db_status {
	DB_OK,
	DB_RETRY,     /* serialization failure, deadlock, resources: retry after a pause */
	DB_RECONNECT, /* the connection is gone (SQLSTATE class 08, shutdown): reconnect */
	DB_STALE,     /* the stored offsets moved on: another consumer owns the partition */
	DB_REJECTED,  /* a row broke a rule of the database (class 22, 23, 54): split */
	DB_FATAL,     /* schema missing, authentication, programming error: stop */
	DB_GATED,     /* the commit gate said not yet: rolled back, nothing else wrong */
};

struct db;

/*
 * A wrapper for conninfo (a libpq connection string or URI; "" means the
 * PG* environment) and the objects of schema. Does not connect yet.
 */
struct db *db_new(const char *conninfo, const char *schema);
void db_destroy(struct db *db);

/*
 * A check that db_apply makes after writing and before COMMIT (NULL: none).
 * When gate(arg) returns false the transaction is rolled back and db_apply
 * answers DB_GATED. The consumer waits here for its dead letters, whose
 * delivery thus overlaps the transaction instead of preceding it.
 */
void db_set_commit_gate(struct db *db, bool (*gate)(void *arg), void *arg);

/* What the last successful db_apply did. */
struct db_tx_stats {
	size_t accepted;   /* new events (the rest were duplicates) */
	size_t triggers;   /* recovery triggers queued in the outbox */
	size_t suppressed; /* negatives the cooldown kept from triggering */
	bool looked_up;    /* the event ids were looked up in the ledger first */
};

/*
 * Turns service recovery on with policy p (copied), or off with NULL: each
 * db_apply then decides the triggers of its new negative events and queues
 * them in the outbox, in the same transaction.
 */
void db_set_recovery(struct db *db, const struct rules_policy *p);

const struct db_tx_stats *db_last_tx(const struct db *db);

/*
 * The next `batches` db_apply calls look their event ids up in the ledger
 * before inserting, rather than trying one optimistic COPY first (the path
 * a batch with duplicates takes). 0: optimistic again. For tests.
 */
void db_look_up_first(struct db *db, int batches);

/*
 * The synchronous_commit of the connection's transactions (value copied;
 * applied at the next db_connect). "off" loses no event: a commit lost in a
 * server crash takes its stored offsets with it, the next compare and set
 * fails, and the messages are read again. Returns 0, or -1 when out of memory.
 */
int db_set_synchronous_commit(struct db *db, const char *value);

/*
 * The idle_in_transaction_session_timeout of the connection (applied at
 * the next db_connect; 0: the server's). A process frozen or cut off
 * inside a transaction would otherwise hold its row locks, which every
 * other replica's batch waits for, until TCP gives up on it: hours.
 */
void db_set_idle_timeout(struct db *db, int64_t ms);

/* Connects (again), checks the schema is migrated, prepares statements. */
enum db_status db_connect(struct db *db, char *errstr, size_t errstr_size);

/* The open connection, or NULL; owned by db. */
struct pg_conn *db_conn(struct db *db);

/*
 * A round trip to the server: DB_OK when it answers, DB_RECONNECT when the
 * connection is gone. What readiness stands on when no batch is committed.
 */
enum db_status db_ping(struct db *db, char *errstr, size_t errstr_size);

/*
 * Creates the monthly ledger partitions from last month to two months
 * ahead where missing. Only one replica does it at a time; the others skip
 * (advisory lock), so it is safe to call on every connect and hourly.
 */
enum db_status db_maintain(struct db *db, char *errstr, size_t errstr_size);

/*
 * Reads the stored next offsets of n partitions of topic for group into
 * next[i] (-1 where none is stored).
 */
enum db_status db_load_offsets(struct db *db, const char *group, const char *topic,
                               const int32_t *partitions, size_t n, int64_t *next, char *errstr,
                               size_t errstr_size);

/*
 * Applies messages [from, to) of b in one transaction: advances the offsets
 * of updates u (compare and set on u[i].expected; DB_STALE when any moved),
 * inserts the events into the ledger (marking b->events[].is_new for those
 * not seen before) and adds the new ones to the aggregates. topics names
 * the topic indexes of b and u. On any status but DB_OK the transaction
 * was rolled back and errstr says why.
 */
enum db_status db_apply(struct db *db, const char *group, const char *const *topics,
                        struct batch *b, size_t from, size_t to, const struct offset_update *u,
                        size_t nu, char *errstr, size_t errstr_size);

/* What to do about an error with this SQLSTATE (NULL: connection lost). */
enum db_status db_classify(const char *sqlstate);

const char *db_status_name(enum db_status st);

#endif
