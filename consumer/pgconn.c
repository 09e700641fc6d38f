#include "pgconn.h"

#include <stddef.h>
#include <stdlib.h>

PGconn *pgconn_open(const char *conninfo, const char *name, bool writer)
{
	/* Set before dbname, whose expanded string then overrides them (libpq: last wins). */
	static const struct {
		const char *keyword, *value, *env;
		bool writers_only;
	} defaults[] = {
	    {"target_session_attrs", "read-write", "PGTARGETSESSIONATTRS", true},
	    {"connect_timeout", "10", "PGCONNECT_TIMEOUT", false},
	    {"keepalives_idle", "30", NULL, false},
	    {"keepalives_interval", "10", NULL, false},
	    {"keepalives_count", "3", NULL, false},
	    {"tcp_user_timeout", "60000", NULL, false},
	};
	enum { MAX = sizeof(defaults) / sizeof(defaults[0]) + 3 };
	const char *keywords[MAX], *values[MAX];
	size_t n = 0;

	keywords[n] = "fallback_application_name";
	values[n++] = name;
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		/* An explicit value would win over the variable: leave it to libpq. */
		if ((defaults[i].writers_only && !writer) ||
		    (defaults[i].env != NULL && getenv(defaults[i].env) != NULL))
			continue;
		keywords[n] = defaults[i].keyword;
		values[n++] = defaults[i].value;
	}
	keywords[n] = "dbname";
	values[n++] = conninfo;
	keywords[n] = NULL;
	values[n] = NULL;
	return PQconnectdbParams(keywords, values, 1);
}
