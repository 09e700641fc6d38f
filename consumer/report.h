/*
 * report.h - the KPI report: per-channel figures over a period, each rate
 * with its sample size, a small-sample flag below n = 30 and the 95 %
 * interval of KPI.md (Wilson for proportions; the NPS formula for NPS).
 */
#ifndef FC_REPORT_H
#define FC_REPORT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct interval {
	double lo, hi;
};

/* 95 % Wilson score interval of x successes in n, in percent (0 to 100); n > 0. */
struct interval report_wilson(int64_t x, int64_t n);

/*
 * 95 % interval of an NPS from promoters, detractors and responses n > 0:
 * KPI.md's formula, its bounds clipped to -100 and 100.
 */
struct interval report_nps_interval(int64_t promoters, int64_t detractors, int64_t n);

/* "excellent", "good", "average" or "poor" for a CSAT %, as printed to one decimal. */
const char *report_csat_band(double pct);

/*
 * Prints the report of schema's channel_kpi summed over [since, until)
 * (NULL: unbounded; any PostgreSQL timestamptz literal on a 15-minute
 * boundary, UTC unless it says otherwise) to out. Returns 0, -2 with
 * errstr for a bound that is no timestamp or not on a boundary, or -1 with
 * errstr set.
 */
int report_print(PGconn *conn, const char *schema, const char *since, const char *until, FILE *out,
                 char *errstr, size_t errstr_size);

#endif
