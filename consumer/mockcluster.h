/*
 * mockcluster.h - an embedded Kafka for development, tests, the demo and
 * the benchmarks: librdkafka's mock cluster, which speaks the real Kafka
 * protocol on loopback, so the consumer, kcat and feedgen connect to it
 * like to any broker.
 *
 * What the mock of librdkafka 2.0.2 is, and is not:
 * - Retention is per partition and by size only: a partition keeps at most
 *   5 MiB (5242880 bytes) of record batches, counted as stored, i.e. after
 *   compression, and at most 100000 batches. Each append beyond either
 *   limit drops the oldest whole batches (never the newest) and moves the
 *   log start offset forward. There is no time-based retention and no API
 *   to change the limits. A consumer whose position fell below the start
 *   offset gets OFFSET_OUT_OF_RANGE and follows auto.offset.reset, so an
 *   unconsumed backlog beyond the limit is lost without any producer
 *   error. Measured with feedgen (about 140-byte values, 11-byte keys,
 *   batched): some 32000 messages per partition uncompressed, more than
 *   twice that with lz4; fewer when each batch holds one message.
 * - Unknown topics are created on first mention: the mock answers Metadata
 *   up to version 2, which has no AllowAutoTopicCreation flag, so any
 *   client asking about a topic, a consumer with the default
 *   allow.auto.create.topics=false included, creates it with 4 partitions
 *   (replication min(3, brokers)). A misspelt topic is therefore not an
 *   error here. Creating the topics up front, as mockcluster_new() does,
 *   gives them the intended partition count.
 * - Consumer groups work (join, sync, heartbeats, committed offsets), but
 *   when the last member leaves, even cleanly, the group waits
 *   session.timeout.ms - 1 s before it accepts a new generation: a
 *   consumer restarted in the same group stalls about 44 s with the 45 s
 *   default. Tests that restart consumers set a short session.timeout.ms
 *   (e.g. 6000). The very first join of a group takes 3 s.
 * - Replication is not simulated beyond leader assignment; everything
 *   lives in memory and disappears with the process.
 */
#ifndef FC_MOCKCLUSTER_H
#define FC_MOCKCLUSTER_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>

struct mockcluster;

/*
 * Starts a mock cluster of broker_cnt brokers listening on 127.0.0.1, with
 * each of the n_topics names in topics created with `partitions` partitions
 * and replication factor 1. Returns NULL with errstr set on failure; the
 * caller owns the result and releases it with mockcluster_destroy().
 */
struct mockcluster *mockcluster_new(int broker_cnt, const char *const *topics, size_t n_topics,
                                    int partitions, char *errstr, size_t errstr_size);

/* The bootstrap.servers list ("127.0.0.1:port,..."), valid until destroy. */
const char *mockcluster_bootstraps(const struct mockcluster *m);

/* The underlying mock cluster for error injection (rd_kafka_mock_*); owned by m. */
rd_kafka_mock_cluster_t *mockcluster_handle(struct mockcluster *m);

/* Stops the brokers and frees everything; m may be NULL. */
void mockcluster_destroy(struct mockcluster *m);

/*
 * The `kafka-mock` subcommand: starts a cluster, prints
 * `bootstrap.servers=<addr>` on stdout, optionally writes the address to
 * --bootstrap-file (atomically, by rename, removed again on exit), and runs
 * until SIGINT or SIGTERM. argv[0] is the subcommand name; options start at
 * argv[1]. Returns the process exit code: 0, 1 on failure, 2 on bad usage.
 */
int mockcluster_main(int argc, char **argv);

#endif
