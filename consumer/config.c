#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct config_key {
	const char *name;
	enum config_type type;
	const char *def;
	int64_t min, max;   /* INT and DURATION (ms) */
	const char *values; /* ENUM: "a|b|c" */
	const char *help;
};

#define DAY_MS (86400LL * 1000)

static const struct config_key keys[] = {
    {"batch.linger", CONFIG_DURATION, "20ms", 0, 60000, NULL,
     "longest wait to fill a batch after its first message"},
    {"batch.max.events", CONFIG_INT, "5000", 1, 1000000, NULL, "messages per transaction"},
    {"consumer.workers", CONFIG_INT, "1", 1, 16, NULL,
     "group members in this process, each with its own postgresql connection"},
    {"database.check.interval", CONFIG_DURATION, "5s", 100, DAY_MS, NULL,
     "while idle, how often /readyz checks that postgresql answers"},
    {"database.idle.transaction.timeout", CONFIG_DURATION, "60s", 15000, DAY_MS, NULL,
     "postgresql ends a session of this process idle this long in a transaction (a frozen "
     "or lost replica), freeing its locks"},
    {"database.retry.max", CONFIG_DURATION, "30s", 100, DAY_MS, NULL,
     "longest pause between database retries"},
    {"database.schema", CONFIG_STRING, "feedback", 0, 0, NULL, "postgresql schema of every object"},
    {"database.synchronous.commit", CONFIG_ENUM, "off", 0, 0,
     "off|local|remote_write|on|remote_apply",
     "synchronous_commit of ingest transactions (off loses nothing, offsets commit with the data)"},
    {"database.url", CONFIG_STRING, "", 0, 0, NULL,
     "libpq connection string or URI; empty: the PG* variables"},
    {"http.bind", CONFIG_STRING, "0.0.0.0", 0, 0, NULL,
     "address of /metrics, /healthz, /readyz (IPv4 or IPv6)"},
    {"http.liveness.timeout", CONFIG_DURATION, "30s", 1000, DAY_MS, NULL,
     "/healthz fails when the poll loop stalls this long"},
    {"http.port", CONFIG_INT, "8080", 0, 65535, NULL,
     "port of /metrics, /healthz, /readyz; 0: off"},
    {"kafka.bootstrap.servers", CONFIG_STRING, "localhost:9092", 0, 0, NULL,
     "kafka brokers (any kafka.* key goes to librdkafka)"},
    {"kafka.group.id", CONFIG_STRING, "feedback-consumer", 0, 0, NULL, "consumer group"},
    {"log.format", CONFIG_ENUM, "auto", 0, 0, "auto|json|text",
     "json lines, or text; auto: text on a terminal"},
    {"log.level", CONFIG_ENUM, "info", 0, 0, "debug|info|warn|error", "lowest level logged"},
    {"offset.reset", CONFIG_ENUM, "earliest", 0, 0, "earliest|latest",
     "start of a partition with no stored offset"},
    {"recovery.cooldown", CONFIG_DURATION, "24h", 0, 366 * DAY_MS, NULL,
     "at most one trigger per customer per this"},
    {"recovery.critical.csat.lowest", CONFIG_BOOL, "true", 0, 0, NULL,
     "the lowest score of a CSAT scale is critical"},
    {"recovery.critical.nps.max", CONFIG_INT, "3", -1, 10, NULL,
     "NPS scores up to this are critical; -1: none"},
    {"recovery.enabled", CONFIG_BOOL, "true", 0, 0, NULL,
     "publish a recovery trigger for negative ratings"},
    {"recovery.follow.up.critical", CONFIG_DURATION, "4h", 0, 366 * DAY_MS, NULL,
     "follow-up target of critical triggers"},
    {"recovery.follow.up.high", CONFIG_DURATION, "24h", 0, 366 * DAY_MS, NULL,
     "follow-up target of high triggers"},
    {"recovery.follow.up.normal", CONFIG_DURATION, "48h", 0, 366 * DAY_MS, NULL,
     "follow-up target of normal triggers"},
    {"recovery.high.on.comment", CONFIG_BOOL, "true", 0, 0, NULL,
     "a negative with a comment is at least high"},
    {"recovery.high.on.repeat", CONFIG_BOOL, "true", 0, 0, NULL,
     "a repeat negative is at least high"},
    {"recovery.outbox.retention", CONFIG_DURATION, "7d", 0, 3660 * DAY_MS, NULL,
     "sent triggers are deleted after this"},
    {"recovery.repeat.window", CONFIG_DURATION, "30d", 0, 3660 * DAY_MS, NULL,
     "another negative within this makes a repeat"},
    {"report.from", CONFIG_STRING, "", 0, 0, NULL, "report: first instant (timestamptz)"},
    {"report.to", CONFIG_STRING, "", 0, 0, NULL, "report: end instant, excluded"},
    {"rules.ces5.high.min", CONFIG_INT, "4", 2, 5, NULL, "high effort from this on 1-5 CES"},
    {"rules.ces7.high.min", CONFIG_INT, "5", 2, 7, NULL, "high effort from this on 1-7 CES"},
    {"rules.csat.bottom.k", CONFIG_INT, "0", 0, 5, NULL,
     "negative CSAT: bottom-k box, never reaching the satisfied answers; 0: the scale's own k"},
    {"rules.nps.detractor.max", CONFIG_INT, "6", 0, 9, NULL, "negative NPS: 0 to this"},
    {"shutdown.timeout", CONFIG_DURATION, "30s", 1000, DAY_MS, NULL,
     "after a stop signal, exit even if kafka has not answered by then"},
    {"sla.seconds", CONFIG_INT, "90", 1, 86400, NULL, "service level: answered within T"},
    {"topic.dlq", CONFIG_STRING, "feedback.dlq", 0, 0, NULL, "dead-letter topic"},
    {"topic.email", CONFIG_STRING, "feedback.email", 0, 0, NULL, "email feedback topic"},
    {"topic.phone", CONFIG_STRING, "feedback.phone", 0, 0, NULL, "phone feedback topic"},
    {"topic.recovery", CONFIG_STRING, "feedback.recovery", 0, 0, NULL,
     "topic of recovery triggers"},
    {"topic.sms", CONFIG_STRING, "feedback.sms", 0, 0, NULL, "sms feedback topic"},
    {"topic.social", CONFIG_STRING, "feedback.social", 0, 0, NULL, "social feedback topic"},
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const source_names[] = {"default", "file", "env", "flag"};

struct entry {
	char *name;
	char *value;
	enum config_source src;
	int64_t num;
};

struct config {
	struct entry *e; /* keys[] first, in order, then kafka.* extras */
	size_t n, cap;
};

static const struct config_key *key_find(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static bool is_kafka(const char *name)
{
	return strncmp(name, "kafka.", 6) == 0 && name[6] != '\0';
}

bool config_is_secret(const char *key)
{
	static const char *const words[] = {"password", "secret", "jaas", "token"};
	static const char *const exact[] = {"kafka.ssl.key.pem", "kafka.ssl_key.pem",
	                                    "kafka.sasl.oauthbearer.config"};

	for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
		if (strstr(key, words[i]))
			return true;
	for (size_t i = 0; i < sizeof(exact) / sizeof(*exact); i++)
		if (strcmp(key, exact[i]) == 0)
			return true;
	return false;
}

/* "250ms", "90s", "15m", "24h", "30d" or plain milliseconds. */
static bool parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
	             {"h", 3600000}, {"d", 86400000}, {"", 1}};
	char *end;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno)
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (v > INT64_MAX / units[i].ms)
				return false;
			*ms = v * units[i].ms;
			return true;
		}
	}
	return false;
}

static bool parse_int(const char *s, int64_t *v)
{
	char *end;

	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || *end != '\0')
		return false;
	*v = x;
	return true;
}

static int parse_bool(const char *s)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return 1;
		if (strcasecmp(s, no[i]) == 0)
			return 0;
	}
	return -1;
}

static bool enum_has(const char *values, const char *s)
{
	size_t n = strlen(s);

	for (const char *p = values; *p;) {
		size_t len = strcspn(p, "|");
		if (len == n && strncmp(p, s, n) == 0)
			return true;
		p += len + (p[len] == '|');
	}
	return false;
}

static bool valid_identifier(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || !(islower((unsigned char)*s) || *s == '_'))
		return false;
	for (const char *p = s; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
			return false;
	return true;
}

static bool valid_topic(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 249)
		return false;
	for (const char *p = s; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

/* An address literal: the listener binds it as is, without a name lookup. */
static bool valid_address(const char *s)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/*
 * In a URI, libpq's host part ends at the first '/' or '?', and its user
 * name and password end at the first '@'. A password with an unencoded
 * '/' or '@' (common in generated ones) parses all the same, as a host,
 * a port or a database name, which errors and logs would then show.
 */
static bool uri_userinfo_encoded(const char *s)
{
	const char *scheme = strstr(s, "://");

	if (scheme == NULL ||
	    (strncmp(s, "postgresql://", 13) != 0 && strncmp(s, "postgres://", 11) != 0))
		return true;
	const char *auth = scheme + 3, *auth_end = auth + strcspn(auth, "/?");
	const char *at = memchr(auth, '@', (size_t)(auth_end - auth));
	const char *query = auth_end + strcspn(auth_end, "?");

	if (at && memchr(at + 1, '@', (size_t)(auth_end - at - 1)))
		return false;
	return at != NULL || memchr(auth_end, '@', (size_t)(query - auth_end)) == NULL;
}

/*
 * A connection string libpq can parse. Its parse errors quote the text
 * they stumbled on, which may be the password (an unencoded '%' in a
 * URI's password, say), itself perhaps with quotes in it: the reason keeps
 * libpq's words up to the first quote and after the last one, what lies
 * between becomes "...".
 */
static bool valid_conninfo(const char *s, char *why, size_t why_size)
{
	char *err = NULL;
	PQconninfoOption *opts = NULL;

	if (!uri_userinfo_encoded(s)) {
		snprintf(why, why_size,
		         "is a URI whose user name or password holds a '/', '?' or '@': "
		         "percent-encode them (%%2F, %%3F, %%40)");
		return false;
	}
	opts = PQconninfoParse(s, &err);
	if (opts) {
		PQconninfoFree(opts);
		return true;
	}
	if (err == NULL) {
		snprintf(why, why_size, "is not a libpq connection string or URI");
		return false;
	}
	size_t line = strcspn(err, "\n");
	const char *open = memchr(err, '"', line), *close = NULL;

	for (const char *e = err; e < err + line; e++)
		if (*e == '"')
			close = e;
	if (open == NULL)
		snprintf(why, why_size, "is not a libpq connection string or URI: %.*s", (int)line,
		         err);
	else
		snprintf(why, why_size, "is not a libpq connection string or URI: %.*s\"...\"%.*s",
		         (int)(open - err), err, (int)(err + line - close - 1), close + 1);
	PQfreemem(err);
	return false;
}

/* A setting's name: a-z, 0-9, '.', '_' and '-'. Anything else is not echoed back. */
static bool valid_key(const char *key)
{
	return *key && strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(key);
}

/* Checks value for k; on success *num holds its number (INT, BOOL, DURATION). */
static bool validate(const struct config_key *k, const char *value, int64_t *num, char *why,
                     size_t why_size)
{
	*num = 0;
	switch (k->type) {
	case CONFIG_STRING:
		if (strcmp(k->name, "kafka.group.id") == 0 && *value == '\0') {
			snprintf(why, why_size, "must not be empty");
			return false;
		}
		if (strcmp(k->name, "database.schema") == 0 && !valid_identifier(value)) {
			snprintf(why, why_size, "must match [a-z_][a-z0-9_]{0,62}");
			return false;
		}
		if (strncmp(k->name, "topic.", 6) == 0 && !valid_topic(value)) {
			snprintf(why, why_size,
			         "must be a topic name of 1-249 characters [A-Za-z0-9._-]");
			return false;
		}
		if (strcmp(k->name, "database.url") == 0 && *value &&
		    !valid_conninfo(value, why, why_size))
			return false;
		if (strcmp(k->name, "http.bind") == 0 && !valid_address(value)) {
			snprintf(why, why_size, "must be an IPv4 or IPv6 address such as 0.0.0.0");
			return false;
		}
		return true;
	case CONFIG_INT:
		if (!parse_int(value, num) || *num < k->min || *num > k->max) {
			snprintf(why, why_size, "must be an integer from %lld to %lld",
			         (long long)k->min, (long long)k->max);
			return false;
		}
		return true;
	case CONFIG_BOOL: {
		int b = parse_bool(value);
		if (b < 0) {
			snprintf(why, why_size, "must be true or false");
			return false;
		}
		*num = b;
		return true;
	}
	case CONFIG_ENUM:
		if (!enum_has(k->values, value)) {
			snprintf(why, why_size, "must be one of %s", k->values);
			return false;
		}
		return true;
	case CONFIG_DURATION:
		if (!parse_duration(value, num) || *num < k->min || *num > k->max) {
			snprintf(
			    why, why_size,
			    "must be a duration such as 250ms, 90s, 15m, 24h or 30d, from %lld "
			    "to %lld ms",
			    (long long)k->min, (long long)k->max);
			return false;
		}
		return true;
	}
	return false;
}

struct config *config_new(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL)
		return NULL;
	cfg->cap = N_KEYS + 16;
	cfg->e = calloc(cfg->cap, sizeof(*cfg->e));
	if (cfg->e == NULL) {
		free(cfg);
		return NULL;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		char why[200];
		cfg->e[i].name = strdup(keys[i].name);
		cfg->e[i].value = strdup(keys[i].def);
		cfg->n++;
		if (!cfg->e[i].name || !cfg->e[i].value ||
		    !validate(&keys[i], keys[i].def, &cfg->e[i].num, why, sizeof(why))) {
			config_destroy(cfg);
			return NULL;
		}
	}
	return cfg;
}

void config_destroy(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n; i++) {
		free(cfg->e[i].name);
		free(cfg->e[i].value);
	}
	free(cfg->e);
	free(cfg);
}

static struct entry *entry_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n; i++)
		if (strcmp(cfg->e[i].name, name) == 0)
			return &cfg->e[i];
	return NULL;
}

int config_set(struct config *cfg, const char *key, const char *value, enum config_source src,
               char *errstr, size_t errstr_size)
{
	const struct config_key *k = key_find(key);
	struct entry *e;
	int64_t num = 0;
	char why[300];

	if (!valid_key(key)) {
		/* A key = value line gone wrong may have its value in the "key". */
		snprintf(errstr, errstr_size,
		         "a setting's name is made of a-z, 0-9, '.', '_' and '-': this one is not "
		         "(not shown, as it may hold a value) (%s)",
		         source_names[src]);
		return -1;
	}
	if (k == NULL && !is_kafka(key)) {
		snprintf(errstr, errstr_size, "unknown setting '%s' (%s)", key, source_names[src]);
		return -1;
	}
	if (k && !validate(k, value, &num, why, sizeof(why))) {
		/* A connection string may hold a password: its value is never echoed. */
		if (config_is_secret(key) || strcmp(key, "database.url") == 0)
			snprintf(errstr, errstr_size, "'%s' %s (%s)", key, why, source_names[src]);
		else
			snprintf(errstr, errstr_size, "'%s' %s, got '%.100s' (%s)", key, why, value,
			         source_names[src]);
		return -1;
	}
	e = entry_find(cfg, key);
	if (e == NULL) {
		if (cfg->n == cfg->cap) {
			struct entry *ne = realloc(cfg->e, 2 * cfg->cap * sizeof(*ne));
			if (ne == NULL)
				goto oom;
			cfg->e = ne;
			cfg->cap *= 2;
		}
		e = &cfg->e[cfg->n];
		memset(e, 0, sizeof(*e));
		e->name = strdup(key);
		if (e->name == NULL)
			goto oom;
		cfg->n++;
	}
	char *v = strdup(value);
	if (v == NULL)
		goto oom;
	free(e->value);
	e->value = v;
	e->src = src;
	e->num = num;
	return 0;
oom:
	snprintf(errstr, errstr_size, "out of memory");
	return -1;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static int load_file(struct config *cfg, const char *path, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t line_size = 0;
	int lineno = 0, rc = 0;

	if (f == NULL) {
		snprintf(errstr, errstr_size, "cannot read config file '%s': %s", path,
		         strerror(errno));
		return -1;
	}
	/* Whole lines: a fixed buffer would read the rest of a long value as a line of its own. */
	while (rc == 0 && getline(&line, &line_size, f) != -1) {
		lineno++;
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(errstr, errstr_size, "%s:%d: expected 'key = value'", path,
			         lineno);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		size_t vl = strlen(value);
		if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
			value[vl - 1] = '\0';
			value++;
		}
		char why[400];
		if (config_set(cfg, key, value, CONFIG_SRC_FILE, why, sizeof(why)) != 0) {
			snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno, why);
			rc = -1;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

/* The whole file, without its trailing newlines; NULL with errstr. */
static char *read_secret_file(const char *var, const char *path, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL) {
		snprintf(errstr, errstr_size, "cannot read the file named by %s: %s", var,
		         strerror(errno));
		return NULL;
	}
	for (;;) {
		if (len + 1024 + 1 > cap) {
			cap = cap ? 2 * cap : 4096;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				snprintf(errstr, errstr_size, "out of memory");
				return NULL;
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, 1024, f);
		len += got;
		if (got < 1024)
			break;
	}
	fclose(f);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	return buf;
}

/* FEEDBACK_A_B_C -> "a.b.c"; false for names that are no key. */
static bool env_to_key(const char *name, size_t len, char *key, size_t size)
{
	if (len == 0 || len >= size)
		return false;
	for (size_t i = 0; i < len; i++)
		key[i] = name[i] == '_' ? '.' : (char)tolower((unsigned char)name[i]);
	key[len] = '\0';
	return true;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/*
 * A variable Kubernetes gives every pod for every Service of its namespace
 * (unless enableServiceLinks is false): for a Service feedback-kafka-bootstrap,
 * FEEDBACK_KAFKA_BOOTSTRAP_SERVICE_HOST, _SERVICE_PORT, _SERVICE_PORT_<NAME>,
 * _PORT=tcp://ip:port and _PORT_<n>_TCP with _PROTO, _PORT and _ADDR. Read
 * as settings they would be kafka.* keys librdkafka refuses. A setting of
 * our own that ends in _PORT (FEEDBACK_HTTP_PORT) has a number for value.
 */
static bool service_link(const char *name, size_t n, const char *value)
{
	static const char *const protos[] = {"_TCP", "_UDP", "_SCTP"};
	static const char *const tails[] = {"", "_PROTO", "_PORT", "_ADDR"};

	if (ends_with(name, n, "_SERVICE_HOST") || ends_with(name, n, "_SERVICE_PORT") ||
	    memmem(name, n, "_SERVICE_PORT_", 14) != NULL)
		return true;
	if (ends_with(name, n, "_PORT") &&
	    (strncmp(value, "tcp://", 6) == 0 || strncmp(value, "udp://", 6) == 0 ||
	     strncmp(value, "sctp://", 7) == 0))
		return true;
	/* ..._PORT_<digits><proto><tail> */
	for (size_t t = 0; t < sizeof(tails) / sizeof(*tails); t++)
		for (size_t p = 0; p < sizeof(protos) / sizeof(*protos); p++) {
			char suffix[16];

			snprintf(suffix, sizeof(suffix), "%s%s", protos[p], tails[t]);
			if (!ends_with(name, n, suffix))
				continue;
			size_t end = n - strlen(suffix), d = end;

			while (d > 0 && isdigit((unsigned char)name[d - 1]))
				d--;
			if (d < end && d >= 6 && memcmp(name + d - 6, "_PORT_", 6) == 0)
				return true;
		}
	return false;
}

static int load_env(struct config *cfg, char **envp, char *errstr, size_t errstr_size)
{
	static const char prefix[] = "FEEDBACK_";
	const size_t plen = sizeof(prefix) - 1;

	for (char **ep = envp; ep && *ep; ep++) {
		const char *var = *ep, *eq = strchr(var, '=');
		char key[256], vname[256];

		if (eq == NULL || strncmp(var, prefix, plen) != 0)
			continue;
		size_t nlen = (size_t)(eq - var);
		snprintf(vname, sizeof(vname), "%.*s", (int)nlen, var);
		if (strcmp(vname, "FEEDBACK_CONFIG") == 0)
			continue;
		const char *name = var + plen;
		size_t len = nlen - plen;
		bool from_file = len > 5 && strncmp(name + len - 5, "_FILE", 5) == 0;
		if (from_file)
			len -= 5;
		if (service_link(var, nlen, eq + 1) || !env_to_key(name, len, key, sizeof(key)))
			continue;
		/* Kubernetes injects FEEDBACK_CONSUMER_SERVICE_HOST and the like. */
		if (key_find(key) == NULL && !is_kafka(key))
			continue;
		char *value = NULL;
		if (from_file) {
			value = read_secret_file(vname, eq + 1, errstr, errstr_size);
			if (value == NULL)
				return -1;
		}
		char why[400];
		int rc =
		    config_set(cfg, key, value ? value : eq + 1, CONFIG_SRC_ENV, why, sizeof(why));
		free(value);
		if (rc != 0) {
			snprintf(errstr, errstr_size, "%s (from %s)", why, vname);
			return -1;
		}
	}
	return 0;
}

/*
 * A stray argument may be a secret given the wrong way ("-kafka.sasl.password=x",
 * or "--kafka.sasl.password= x"): say where it is without echoing a value.
 */
static void unexpected_argument(char **argv, int i, char *errstr, size_t errstr_size)
{
	const char *arg = argv[i], *eq = strchr(arg, '='), *prev = i > 1 ? argv[i - 1] : "";
	size_t plen = strlen(prev);

	if (eq)
		snprintf(errstr, errstr_size, "unexpected argument '%.*s=...'", (int)(eq - arg),
		         arg);
	else if (plen > 3 && strncmp(prev, "--", 2) == 0 && prev[plen - 1] == '=')
		snprintf(errstr, errstr_size, "unexpected argument after '%s'", prev);
	else
		snprintf(errstr, errstr_size, "unexpected argument '%s'", arg);
}

/*
 * The topic a message came from names its channel, and the service reads
 * neither of its own topics: one topic under two settings would count a
 * channel's events as another's, or read the dead letters as feedback.
 */
static int check_topics_distinct(const struct config *cfg, char *errstr, size_t errstr_size)
{
	static const char *const names[] = {"topic.sms",    "topic.email", "topic.phone",
	                                    "topic.social", "topic.dlq",   "topic.recovery"};
	const size_t n = sizeof(names) / sizeof(names[0]);

	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(entry_find(cfg, names[i])->value,
			           entry_find(cfg, names[j])->value) == 0) {
				snprintf(errstr, errstr_size,
				         "'%s' and '%s' name the same topic \"%s\"", names[i],
				         names[j], entry_find(cfg, names[i])->value);
				return -1;
			}
	return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char **envp, char *errstr,
                size_t errstr_size)
{
	const char *file = NULL;

	for (char **ep = envp; ep && *ep; ep++)
		if (strncmp(*ep, "FEEDBACK_CONFIG=", 16) == 0)
			file = *ep + 16;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			file = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			file = argv[i] + 9;
	}
	if (file && *file && load_file(cfg, file, errstr, errstr_size) != 0)
		return -1;
	if (load_env(cfg, envp, errstr, errstr_size) != 0)
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value;
		char key[256];

		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			unexpected_argument(argv, i, errstr, errstr_size);
			return -1;
		}
		const char *eq = strchr(arg, '=');
		if (eq) {
			snprintf(key, sizeof(key), "%.*s", (int)(eq - arg - 2), arg + 2);
			value = eq + 1;
		} else {
			snprintf(key, sizeof(key), "%s", arg + 2);
			if (i + 1 >= argc) {
				snprintf(errstr, errstr_size, "flag '--%s' needs a value", key);
				return -1;
			}
			value = argv[++i];
		}
		if (strcmp(key, "config") == 0)
			continue;
		if (config_set(cfg, key, value, CONFIG_SRC_FLAG, errstr, errstr_size) != 0)
			return -1;
	}
	return check_topics_distinct(cfg, errstr, errstr_size);
}

static const struct entry *entry_get(const struct config *cfg, const char *key)
{
	const struct entry *e = entry_find(cfg, key);

	if (e == NULL && !is_kafka(key) && key_find(key) == NULL) {
		fprintf(stderr, "config: undeclared setting '%s'\n", key);
		abort();
	}
	return e;
}

const char *config_get(const struct config *cfg, const char *key)
{
	const struct entry *e = entry_get(cfg, key);

	return e ? e->value : "";
}

int64_t config_get_int(const struct config *cfg, const char *key)
{
	const struct entry *e = entry_get(cfg, key);

	return e ? e->num : 0;
}

bool config_get_bool(const struct config *cfg, const char *key)
{
	return config_get_int(cfg, key) != 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct entry *const *)a)->name,
	              (*(const struct entry *const *)b)->name);
}

/* The entries in key order, as a malloc'd array of pointers. */
static const struct entry **sorted(const struct config *cfg)
{
	const struct entry **v = malloc(cfg->n * sizeof(*v));

	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n; i++)
		v[i] = &cfg->e[i];
	qsort(v, cfg->n, sizeof(*v), entry_cmp);
	return v;
}

int config_each_kafka(const struct config *cfg,
                      int (*fn)(const char *name, const char *value, void *arg), void *arg)
{
	const struct entry **v = sorted(cfg);
	int rc = 0;

	if (v == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n && rc == 0; i++)
		if (is_kafka(v[i]->name) && v[i]->value[0])
			rc = fn(v[i]->name + 6, v[i]->value, arg);
	free(v);
	return rc;
}

/*
 * A libpq conninfo or URI as the keywords libpq reads from it, its
 * passwords (and sslpassword, which unlocks the client key) replaced by
 * <redacted>. Printed from libpq's own parse, not from the text: whatever
 * form the string takes, a password is only ever where libpq reads one.
 */
static void print_conninfo(FILE *out, const char *s)
{
	PQconninfoOption *opts = *s ? PQconninfoParse(s, NULL) : NULL;
	bool first = true;

	if (opts == NULL) /* empty, or not valid: config_set admits neither */
		return;
	for (const PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val == NULL)
			continue;
		fprintf(out, "%s%s=", first ? "" : " ", o->keyword);
		first = false;
		if (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0) {
			fputs("<redacted>", out);
			continue;
		}
		if (o->val[0] != '\0' && strcspn(o->val, " \t\n\r\f\v'\\") == strlen(o->val)) {
			fputs(o->val, out);
			continue;
		}
		fputc('\'', out);
		for (const char *c = o->val; *c; c++) {
			if (*c == '\'' || *c == '\\')
				fputc('\\', out);
			fputc(*c, out);
		}
		fputc('\'', out);
	}
	PQconninfoFree(opts);
}

void config_print(const struct config *cfg, FILE *out)
{
	const struct entry **v = sorted(cfg);

	if (v == NULL)
		return;
	for (size_t i = 0; i < cfg->n; i++) {
		fprintf(out, "%s = ", v[i]->name);
		if (config_is_secret(v[i]->name) && v[i]->value[0])
			fputs("<redacted>", out);
		else if (strcmp(v[i]->name, "database.url") == 0)
			print_conninfo(out, v[i]->value);
		else
			fputs(v[i]->value, out);
		fprintf(out, "  # %s\n", source_names[v[i]->src]);
	}
	free(v);
}

void config_print_help(FILE *out)
{
	static const char *const types[] = {"string", "integer", "boolean", "choice", "duration"};

	fprintf(out, "settings:\n");
	for (size_t i = 0; i < N_KEYS; i++)
		fprintf(out, "  %-28s %-8s default '%s'\n      %s%s%s\n", keys[i].name,
		        types[keys[i].type], keys[i].def, keys[i].help, keys[i].values ? ": " : "",
		        keys[i].values ? keys[i].values : "");
}
