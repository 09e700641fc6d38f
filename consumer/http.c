#include "http.h"

#include "log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/*
 * Enough for Prometheus and the kubelet; a flood of connections waits in
 * the kernel backlog. The timeout is for a connection that sends nothing;
 * one that trickles a byte now and then would hold its slot for good. So a
 * new connection is never refused for want of room: the oldest of its
 * address (beyond HTTP_PER_ADDRESS), or the oldest of all (beyond
 * HTTP_MAX_CONNECTIONS), is closed instead. Slow clients sharing the
 * kubelet's address (the node's: host-network pods, masqueraded traffic)
 * cannot take its probes away and have the pod restarted; a probe's own
 * connection lasts a millisecond. At most 32 KiB of memory per connection.
 */
enum {
	HTTP_MAX_CONNECTIONS = 32,
	HTTP_PER_ADDRESS = 4,
	HTTP_IDLE_TIMEOUT_S = 10,
	/* libmicrohttpd's own limit: room for the ones being closed */
	HTTP_SLOTS = 2 * HTTP_MAX_CONNECTIONS,
};

struct http_conn {
	struct MHD_Connection *c; /* NULL: a free slot */
	int fd;
	struct sockaddr_storage addr; /* the client's, port zeroed */
	unsigned long long seq;       /* order of arrival */
	bool closing;                 /* shut down here, not yet closed by libmicrohttpd */
};

struct http {
	const struct http_opts *opts;
	struct MHD_Daemon *daemon;
	/* Only libmicrohttpd's one polling thread touches these. */
	struct http_conn conns[HTTP_SLOTS];
	unsigned long long next_seq;
	unsigned long long evicted;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len, bool owned)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(
	    len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (resp == NULL) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	return reply(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text), false);
}

static enum MHD_Result reply_probe(struct MHD_Connection *conn, http_probe_fn probe, void *arg)
{
	char detail[256] = "ok";
	bool healthy = probe ? probe(arg, detail, sizeof(detail)) : true;
	char *body;
	int n;

	n = asprintf(&body, "%s\n", detail);
	if (n < 0)
		return MHD_NO;
	return reply(conn, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
	             "text/plain; charset=utf-8", body, (size_t)n, true);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
	struct http *h = cls;
	const struct http_opts *o = h->opts;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/healthz") != 0 &&
	    strcmp(url, "/readyz") != 0)
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/healthz") == 0)
		return reply_probe(conn, o->live, o->arg);
	if (strcmp(url, "/readyz") == 0)
		return reply_probe(conn, o->ready, o->arg);

	size_t len = 0;
	char *text = o->metrics ? metrics_render(o->metrics, &len) : strdup("");

	if (text == NULL)
		return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
	             true);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_warn("http: %s", msg);
}

/* The client's address without its port, for comparison. */
static void client_address(struct MHD_Connection *c, struct sockaddr_storage *out)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	memset(out, 0, sizeof(*out));
	if (ci == NULL || ci->client_addr == NULL)
		return;
	if (ci->client_addr->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)out;

		in->sin_family = AF_INET;
		in->sin_addr = ((const struct sockaddr_in *)ci->client_addr)->sin_addr;
	} else if (ci->client_addr->sa_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = ((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr;
	}
}

/* Closes the oldest open connection, of addr only unless NULL, when more than limit are open. */
static void evict_beyond(struct http *h, const struct sockaddr_storage *addr, int limit)
{
	struct http_conn *oldest = NULL;
	int open = 0;

	for (int i = 0; i < HTTP_SLOTS; i++) {
		struct http_conn *hc = &h->conns[i];

		if (hc->c == NULL || hc->closing ||
		    (addr && memcmp(&hc->addr, addr, sizeof(*addr)) != 0))
			continue;
		open++;
		if (oldest == NULL || hc->seq < oldest->seq)
			oldest = hc;
	}
	if (open <= limit || oldest == NULL)
		return;
	/* libmicrohttpd reads the end of the stream and closes it, then says so. */
	shutdown(oldest->fd, SHUT_RDWR);
	oldest->closing = true;
	h->evicted++;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct http *h = cls;
	struct http_conn *slot = NULL;

	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		for (int i = 0; i < HTTP_SLOTS; i++)
			if (h->conns[i].c == c)
				h->conns[i].c = NULL;
		return;
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	for (int i = 0; i < HTTP_SLOTS && slot == NULL; i++)
		if (h->conns[i].c == NULL)
			slot = &h->conns[i];
	if (ci == NULL)
		return;
	if (slot == NULL) { /* libmicrohttpd's limit is the table's: not expected */
		shutdown(ci->connect_fd, SHUT_RDWR);
		return;
	}
	slot->c = c;
	slot->fd = ci->connect_fd;
	slot->seq = h->next_seq++;
	slot->closing = false;
	client_address(c, &slot->addr);
	evict_beyond(h, &slot->addr, HTTP_PER_ADDRESS);
	evict_beyond(h, NULL, HTTP_MAX_CONNECTIONS);
}

struct http *http_new(const struct http_opts *opts, char *errstr, size_t errstr_size)
{
	struct http *h = NULL;
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, opts->bind, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)opts->port);
	} else if (inet_pton(AF_INET6, opts->bind, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)opts->port);
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(errstr, errstr_size, "'http.bind' must be an IP address, got '%s'",
		         opts->bind);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	h->opts = opts;
	/* The logger goes first, or libmicrohttpd logs the options before it itself. */
	h->daemon = MHD_start_daemon(
	    flags, (uint16_t)opts->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
	    on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_SLOTS, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
	    MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(errstr, errstr_size,
		         "cannot serve http on '%s' port %d (address in use or not permitted)",
		         opts->bind, opts->port);
		free(h);
		return NULL;
	}
	log_info("serving /metrics, /healthz and /readyz on %s port %d", opts->bind, opts->port);
	return h;
}

void http_destroy(struct http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
