"""The Grafana dashboard against the real schema: every SQL query in it
(panels and template variables), with Grafana's macros and variables
replaced by concrete SQL, runs as the reporting role of deploy/roles.sql
on a migrated schema holding hand-made rows, and returns rows; figures are
checked against values computed by hand. Prometheus queries may only use
the agreed metric names. Needs FC_BIN and the PG* variables."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASH = os.path.join(ROOT, "helm", "feedback-consumer", "dashboards", "feedback-consumer.json")
PID = os.getpid()
SCHEMA = "deploy_dash_%d" % PID
MIGRATOR, REPORTING, RUNTIME = ("fc_dash_mig_%d" % PID, "fc_dash_rep_%d" % PID, "fc_dash_run_%d" % PID)
PASSWORD = "dash-%d-pw" % PID  # test-only role password, throwaway cluster
failures = []

# Agreed in the metrics contract; histograms add _bucket, _sum and _count.
METRICS = {
    "feedback_events_total", "feedback_dead_letters_total", "feedback_batches_total",
    "feedback_batch_events", "feedback_transaction_duration_seconds", "feedback_db_retries_total",
    "feedback_stale_batches_total", "feedback_rebalances_total", "feedback_consumer_lag_messages",
    "feedback_recovery_triggers_queued_total", "feedback_recovery_suppressed_total",
    "feedback_recovery_triggers_sent_total", "feedback_recovery_publish_failures_total",
    "feedback_recovery_outbox_backlog", "feedback_recovery_outbox_oldest_age_seconds", "feedback_ready",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
    "process_start_time_seconds", "process_open_fds", "process_max_fds",
}
HISTOGRAMS = {"feedback_batch_events", "feedback_transaction_duration_seconds"}


def check(what, ok, detail=""):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok else ": " + detail))
    if not ok:
        failures.append(what)


def psql(sql, user=None, password=None):
    env = dict(os.environ)
    if user:
        env["PGUSER"], env["PGPASSWORD"] = user, password
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-c", sql],
                          capture_output=True, text=True, env=env)


def must(sql):
    r = psql(sql)
    if r.returncode != 0:
        sys.exit("setup failed: %s\n%s" % (sql, r.stderr))
    return r.stdout


# The period the dashboard is looked at, and the values of its variables.
FROM, TO = "2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z"


def concrete(sql):
    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
                 r'to_timestamp(floor(extract(epoch FROM \1) / 900) * 900) AS "time"', sql)
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN '%s' AND '%s'" % (FROM, TO), sql)
    sql = sql.replace("${schema}", SCHEMA)
    sql = sql.replace("$channel", "'sms','email','phone','social'")
    sql = sql.replace("$agent", "'agent-1','agent-2'")
    return sql


def main():
    with open(DASH) as f:
        dash = json.load(f)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    check("data sources are template variables",
          variables.get("DS_POSTGRES", {}).get("type") == "datasource"
          and variables.get("DS_PROMETHEUS", {}).get("type") == "datasource")

    sql_queries, prom_queries = [], []
    for v in dash["templating"]["list"]:
        if v.get("datasource", {}).get("uid") == "${DS_POSTGRES}":
            sql_queries.append(("variable " + v["name"], v["query"]))

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if "rawSql" in t:
                    check(p["title"] + " (%s): PostgreSQL data source variable" % t["refId"],
                          t["datasource"]["uid"] == "${DS_POSTGRES}")
                    sql_queries.append(("%s (%s)" % (p["title"], t["refId"]), t["rawSql"]))
                if "expr" in t:
                    check(p["title"] + " (%s): Prometheus data source variable" % t["refId"],
                          t["datasource"]["uid"] == "${DS_PROMETHEUS}")
                    prom_queries.append(("%s (%s)" % (p["title"], t["refId"]), t["expr"]))
    walk(dash["panels"])
    check("the dashboard has SQL and PromQL queries", len(sql_queries) >= 20 and len(prom_queries) >= 10,
          "%d SQL, %d PromQL" % (len(sql_queries), len(prom_queries)))

    for where, expr in prom_queries:
        names = set(re.findall(r"\b((?:feedback|process)_[a-z_]+)", expr))
        unknown = []
        for n in names:
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            if n not in METRICS and not (base in HISTOGRAMS and n != base):
                unknown.append(n)
        check(where + ": agreed metric names only", bool(names) and not unknown, ", ".join(unknown) or expr)

    # --- a migrated schema with hand-made rows, read as the reporting role ---
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "schema=" + SCHEMA,
                    "-v", "migrator=" + MIGRATOR, "-v", "runtime=" + RUNTIME, "-v", "reporting=" + REPORTING,
                    "-f", os.path.join(ROOT, "deploy", "roles.sql")], check=True, capture_output=True)
    must("ALTER ROLE %s PASSWORD '%s'" % (MIGRATOR, PASSWORD))
    must("ALTER ROLE %s PASSWORD '%s'" % (REPORTING, PASSWORD))
    env = dict(os.environ, FEEDBACK_DATABASE_URL="host=%s port=%s dbname=%s user=%s password=%s" % (
        os.environ.get("PGHOST", "localhost"), os.environ.get("PGPORT", "5432"),
        os.environ.get("PGDATABASE", "postgres"), MIGRATOR, PASSWORD))
    mig = subprocess.run([os.environ["FC_BIN"], "migrate", "--database.schema=" + SCHEMA, "--log.format=text"],
                         capture_output=True, text=True, env=env)
    if mig.returncode != 0:
        sys.exit("migrate failed: " + mig.stderr)
    # sms, 10:00: 8 of 10 CSAT satisfied; 10:15: 15 of 30. The period's CSAT
    # is (8 + 15) / (10 + 30) = 57.5 %, not the mean of 80 % and 50 % (65 %).
    # NPS sms: promoters 6 + 4, detractors 2 + 8 of 12 + 20: (10 - 10) / 32 = 0.
    must(f"""
      INSERT INTO {SCHEMA}.channel_agg (bucket, channel, csat_n, csat_satisfied, csat_score_units,
          nps_n, nps_promoters, nps_passives, nps_detractors, ces_n, ces_effort_sum, ces_high,
          fcr_n, fcr_yes, offered, answered, answered_within_sl, negative) VALUES
        ('2024-03-01 10:00+00', 'sms', 10, 8, 10 * 75 * 2520, 12, 6, 4, 2, 4, 12, 1, 5, 4, 0, 0, 0, 3),
        ('2024-03-01 10:15+00', 'sms', 30, 15, 30 * 50 * 2520, 20, 4, 8, 8, 6, 30, 4, 5, 2, 0, 0, 0, 9),
        ('2024-03-01 10:00+00', 'phone', 4, 3, 4 * 80 * 2520, 4, 1, 1, 2, 2, 8, 1, 4, 3, 10, 9, 7, 2);
      INSERT INTO {SCHEMA}.agent_agg (bucket, agent_id, channel, csat_n, csat_satisfied, nps_n,
          nps_promoters, nps_detractors, ces_n, ces_effort_sum, fcr_n, fcr_yes, offered,
          answered_within_sl) VALUES
        ('2024-03-01 10:00+00', 'agent-1', 'phone', 3, 2, 3, 1, 1, 2, 8, 3, 2, 8, 6),
        ('2024-03-01 10:15+00', 'agent-1', 'phone', 1, 1, 1, 0, 1, 0, 0, 1, 1, 2, 1),
        ('2024-03-01 10:00+00', 'agent-2', 'sms', 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0);
      -- Three triggers: one sent, two unsent of which one is past its
      -- follow-up deadline (2024) and one is not (2100).
      INSERT INTO {SCHEMA}.recovery_outbox (trigger_id, event_id, customer_id, channel, severity,
          reasons, repeat_count, suppressed_count, occurred_at, detected_at, follow_up_by, payload,
          sent_at) VALUES
        ('t1', 'e1', 'c1', 'sms', 3, 2, 0, 0, '2024-03-01 10:01+00', '2024-03-01 10:02+00',
         '2024-03-01 14:02+00', '\\x00', '2024-03-01 10:02:01+00'),
        ('t2', 'e2', 'c2', 'sms', 2, 1, 0, 0, '2024-03-01 10:16+00', '2024-03-01 10:17+00',
         '2024-03-02 10:17+00', '\\x00', NULL),
        ('t3', 'e3', 'c3', 'phone', 1, 4, 0, 0, '2024-03-01 10:20+00', '2024-03-01 10:21+00',
         '2100-01-01 00:00+00', '\\x00', NULL);""")

    results = {}
    for where, raw in sql_queries:
        sql = concrete(raw)
        left = re.findall(r"\$\{?\w+", sql)
        check(where + ": every macro and variable replaced", not left, ", ".join(left))
        r = psql(sql, REPORTING, PASSWORD)
        ok = r.returncode == 0 and r.stdout.strip() != ""
        check(where + ": runs as the reporting role and returns rows", ok,
              (r.stderr.strip() or "no rows") + "\n" + sql)
        results[where] = [line.split("\t") for line in r.stdout.strip().splitlines()]

    table = results.get("Per channel over the selected period (A)", [])
    sms = [row for row in table if row and row[0] == "sms"]
    check("per-channel table: sms CSAT n and % (40, 57.5)", bool(sms) and sms[0][1:3] == ["40", "57.5"],
          repr(sms))
    check("per-channel table: sms NPS n and score (32, 0.0)", bool(sms) and sms[0][3:5] == ["32", "0.0"],
          repr(sms))
    check("per-channel table: phone service level (7 of 10 = 70.0)",
          any(row[0] == "phone" and row[10] == "70.0" for row in table), repr(table))
    agents = results.get("Per agent over the selected period (A)", [])
    # agent-1: CSAT 3 of 4 = 75.0; service level (6 + 1) / (8 + 2) = 70.0.
    check("per-agent table: agent-1 CSAT 4 / 75.0, service level 70.0",
          any(r[0] == "agent-1" and r[1:3] == ["4", "75.0"] and r[10] == "70.0" for r in agents), repr(agents))
    check("unsent triggers = 2", results.get("Unsent triggers (A)") == [["2"]],
          repr(results.get("Unsent triggers (A)")))
    check("unsent past follow-up deadline = 1", results.get("Unsent past follow-up deadline (A)") == [["1"]],
          repr(results.get("Unsent past follow-up deadline (A)")))
    series = results.get("CSAT % by channel (A)", [])
    check("CSAT % time series: sms at 10:15 is 50 (15 of 30)",
          any(r[0].startswith("2024-03-01 10:15") and r[1] == "sms" and float(r[2]) == 50.0 for r in series),
          repr(series))


try:
    main()
finally:
    psql("DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA)
    psql("DROP OWNED BY %s, %s, %s" % (MIGRATOR, RUNTIME, REPORTING))
    psql("DROP ROLE IF EXISTS %s, %s, %s" % (MIGRATOR, RUNTIME, REPORTING))
if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
