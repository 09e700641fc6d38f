/*
 * http.h - the operations endpoint: GET /metrics (Prometheus text format),
 * /healthz (liveness) and /readyz (readiness), served by libmicrohttpd on
 * its own thread while the consumer runs.
 *
 * Anything else is 404; a method other than GET or HEAD is 405. The
 * server accepts a bounded number of connections and drops idle ones, so
 * a misbehaving client cannot hold the process.
 */
#ifndef FC_HTTP_H
#define FC_HTTP_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * A probe: true when healthy. detail receives a short sentence for the
 * response body either way. Called on the server's thread.
 */
typedef bool (*http_probe_fn)(void *arg, char *detail, size_t detail_size);

struct http_opts {
	const char *bind; /* an IPv4 or IPv6 address literal */
	int port;
	struct metrics *metrics; /* rendered at each GET /metrics */
	http_probe_fn live, ready;
	void *arg; /* given to both probes */
};

struct http;

/*
 * Starts serving opts (referenced, must outlive the server). Returns the
 * server, or NULL with errstr (the address is taken, bad bind address).
 */
struct http *http_new(const struct http_opts *opts, char *errstr, size_t errstr_size);

/* Stops serving, waits for the server's thread and frees it. */
void http_destroy(struct http *h);

#endif
