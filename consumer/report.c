#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KPI.md's constant, so that every report of the same counts prints the same bounds. */
#define Z95          1.96
#define SMALL_SAMPLE 30

/* Bounds within [lo, hi]: rounding must not print -0.0 %, nor the formula an NPS over 100. */
static struct interval clamped(double a, double b, double lo, double hi)
{
	return (struct interval){fmin(fmax(a, lo), hi), fmin(fmax(b, lo), hi)};
}

struct interval report_wilson(int64_t x, int64_t n)
{
	double p = (double)x / (double)n, z2 = Z95 * Z95, dn = (double)n;
	double centre = (p + z2 / (2 * dn)) / (1 + z2 / dn);
	double half = Z95 * sqrt(p * (1 - p) / dn + z2 / (4 * dn * dn)) / (1 + z2 / dn);

	return clamped(100 * (centre - half), 100 * (centre + half), 0, 100);
}

struct interval report_nps_interval(int64_t promoters, int64_t detractors, int64_t n)
{
	double p = (double)promoters / (double)n, q = (double)detractors / (double)n;
	double nps = 100 * (p - q);
	double half = Z95 * sqrt(p + q - (p - q) * (p - q)) / sqrt((double)n) * 100;

	return clamped(nps - half, nps + half, -100, 100);
}

const char *report_csat_band(double pct)
{
	char shown[32];

	/* As printed: "90.0 %" next to "good" would contradict itself. */
	snprintf(shown, sizeof(shown), "%.1f", pct);
	pct = strtod(shown, NULL);
	if (pct >= 90)
		return "excellent";
	if (pct >= 70)
		return "good";
	if (pct >= 50)
		return "average";
	return "poor";
}

enum col {
	C_CHANNEL,
	C_CSAT_N,
	C_CSAT_SAT,
	C_CSAT_SUM,
	C_NPS_N,
	C_NPS_PRO,
	C_NPS_DET,
	C_CES_N,
	C_CES_SUM,
	C_CES_HIGH,
	C_FCR_N,
	C_FCR_YES,
	C_OFFERED,
	C_ANSWERED,
	C_ABANDONED,
	C_SELF,
	C_WITHIN_SL,
	C_WAIT,
	C_HANDLE,
	C_NEGATIVE,
};

static const char report_sql[] =
    "SELECT channel, sum(csat_n), sum(csat_satisfied), sum(csat_score_sum), sum(nps_n), "
    "sum(nps_promoters), sum(nps_detractors), sum(ces_n), sum(ces_effort_sum), sum(ces_high), "
    "sum(fcr_n), sum(fcr_yes), sum(offered), sum(answered), sum(abandoned), sum(self_service), "
    "sum(answered_within_sl), sum(wait_seconds_answered), sum(handle_seconds), sum(negative) "
    "FROM %s.channel_kpi WHERE ($1::timestamptz IS NULL OR bucket >= $1) "
    "AND ($2::timestamptz IS NULL OR bucket < $2) GROUP BY channel "
    "ORDER BY array_position(ARRAY['sms','email','phone','social'], channel)";

static int64_t val(const PGresult *res, int row, enum col c)
{
	return PQgetisnull(res, row, c) ? 0 : strtoll(PQgetvalue(res, row, c), NULL, 10);
}

static const char *small(int64_t n)
{
	return n < SMALL_SAMPLE ? "  small sample" : "";
}

static void print_proportion(FILE *out, const char *label, int64_t x, int64_t n)
{
	struct interval ci;

	if (n == 0) {
		fprintf(out, "  %-22s -\n", label);
		return;
	}
	ci = report_wilson(x, n);
	fprintf(out, "  %-22s %6.1f %%  [%5.1f, %5.1f]  n=%" PRId64 "%s\n", label,
	        100.0 * (double)x / (double)n, ci.lo, ci.hi, n, small(n));
}

static void print_channel(FILE *out, const PGresult *res, int r)
{
	int64_t csat_n = val(res, r, C_CSAT_N), nps_n = val(res, r, C_NPS_N);
	int64_t ces_n = val(res, r, C_CES_N), offered = val(res, r, C_OFFERED);
	int64_t answered = val(res, r, C_ANSWERED);

	fprintf(out, "%s\n", PQgetvalue(res, r, C_CHANNEL));
	if (csat_n > 0) {
		double pct = 100.0 * (double)val(res, r, C_CSAT_SAT) / (double)csat_n;
		struct interval ci = report_wilson(val(res, r, C_CSAT_SAT), csat_n);
		double mean = strtod(PQgetvalue(res, r, C_CSAT_SUM), NULL) / (double)csat_n;

		fprintf(
		    out,
		    "  %-22s %6.1f %%  [%5.1f, %5.1f]  n=%" PRId64 "  %s, mean score %.1f/100%s\n",
		    "CSAT", pct, ci.lo, ci.hi, csat_n, report_csat_band(pct), mean, small(csat_n));
	} else {
		fprintf(out, "  %-22s -\n", "CSAT");
	}
	if (nps_n > 0) {
		int64_t pro = val(res, r, C_NPS_PRO), det = val(res, r, C_NPS_DET);
		struct interval ci = report_nps_interval(pro, det, nps_n);

		fprintf(out, "  %-22s %+6.1f    [%+6.1f, %+6.1f]  n=%" PRId64 "%s\n", "NPS",
		        100.0 * (double)(pro - det) / (double)nps_n, ci.lo, ci.hi, nps_n,
		        small(nps_n));
	} else {
		fprintf(out, "  %-22s -\n", "NPS");
	}
	if (ces_n > 0)
		fprintf(out, "  %-22s %6.2f            n=%" PRId64 "%s\n", "CES mean effort",
		        (double)val(res, r, C_CES_SUM) / (double)ces_n, ces_n, small(ces_n));
	else
		fprintf(out, "  %-22s -\n", "CES mean effort");
	print_proportion(out, "CES high effort", val(res, r, C_CES_HIGH), ces_n);
	print_proportion(out, "FCR", val(res, r, C_FCR_YES), val(res, r, C_FCR_N));
	print_proportion(out, "answer rate", answered, offered);
	print_proportion(out, "abandonment rate", val(res, r, C_ABANDONED), offered);
	print_proportion(out, "service level", val(res, r, C_WITHIN_SL), offered);
	print_proportion(out, "self-service rate", val(res, r, C_SELF), offered);
	if (answered > 0) {
		fprintf(out, "  %-22s %6.1f s          n=%" PRId64 "%s\n", "ASA",
		        (double)val(res, r, C_WAIT) / (double)answered, answered, small(answered));
		fprintf(out, "  %-22s %6.1f s          n=%" PRId64 "%s\n", "AHT",
		        (double)val(res, r, C_HANDLE) / (double)answered, answered,
		        small(answered));
	}
	fprintf(out, "  %-22s %6" PRId64 "\n", "negative events", val(res, r, C_NEGATIVE));
}

/*
 * value of setting key as PostgreSQL reads it, in UTC, into canon; -2 with
 * errstr when it is no timestamp or falls inside a 15-minute bucket: the
 * figures exist per whole bucket, and a bound inside one would drop or
 * take the bucket's events silently.
 */
static int report_bound(PGconn *conn, const char *key, const char *value, char *canon,
                        size_t canon_size, char *errstr, size_t errstr_size)
{
	const char *params[1] = {value};
	PGresult *res =
	    PQexecParams(conn,
	                 "SELECT $1::timestamptz::text, $1::timestamptz = date_bin('15 minutes', "
	                 "$1::timestamptz, timestamptz '1970-01-01 00:00:00+00')",
	                 1, NULL, params, NULL, NULL, 0);
	int rc = -2;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(errstr, errstr_size, "'%s' is not a timestamp PostgreSQL reads: %s", key,
		         msg ? msg : PQerrorMessage(conn));
	} else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		snprintf(errstr, errstr_size,
		         "'%s' %s is inside a 15-minute bucket: the figures are per bucket (UTC), "
		         "so a bound falls on :00, :15, :30 or :45",
		         key, PQgetvalue(res, 0, 0));
	} else {
		snprintf(canon, canon_size, "%s", PQgetvalue(res, 0, 0));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

int report_print(PGconn *conn, const char *schema, const char *since, const char *until, FILE *out,
                 char *errstr, size_t errstr_size)
{
	char from[64] = "", to[64] = "";
	const char *params[2] = {since ? from : NULL, until ? to : NULL};
	char *ident = NULL;
	char *sql = NULL;
	PGresult *res = NULL;
	int rc = -1;

	/* Buckets are UTC: so is a bound written without an offset, and the header. */
	res = PQexec(conn, "SET TimeZone TO 'UTC'");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(errstr, errstr_size, "setting the time zone: %.*s",
		         (int)strcspn(PQerrorMessage(conn), "\n"), PQerrorMessage(conn));
		goto out;
	}
	PQclear(res);
	res = NULL;
	if ((since && (rc = report_bound(conn, "report.from", since, from, sizeof(from), errstr,
	                                 errstr_size)) != 0) ||
	    (until && (rc = report_bound(conn, "report.to", until, to, sizeof(to), errstr,
	                                 errstr_size)) != 0))
		goto out;
	rc = -1;
	ident = PQescapeIdentifier(conn, schema, strlen(schema));
	if (ident == NULL || asprintf(&sql, report_sql, ident) < 0) {
		snprintf(errstr, errstr_size, "building the report query: out of memory");
		goto out;
	}
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *msg = PQresultErrorMessage(res);

		snprintf(errstr, errstr_size, "reading \"%s.channel_kpi\": %.*s", schema,
		         (int)strcspn(msg, "\n"), msg);
		goto out;
	}
	fprintf(out, "KPI report%s%s%s%s (95 %% intervals; n < %d is a small sample)\n\n",
	        since ? " from " : "", from, until ? " until " : "", to, SMALL_SAMPLE);
	if (PQntuples(res) == 0)
		fprintf(out, "no feedback in this period\n");
	for (int r = 0; r < PQntuples(res); r++) {
		print_channel(out, res, r);
		fputc('\n', out);
	}
	rc = 0;
out:
	PQclear(res);
	free(sql);
	PQfreemem(ident);
	return rc;
}
