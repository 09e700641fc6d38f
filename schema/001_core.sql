-- 001_core: the ledger of accepted events, the 15-minute aggregates, the
-- stored consumer offsets and the KPI views of the SQL interface.
--
-- Names are unqualified on purpose: the runner (consumer/migrate.c) creates
-- the target schema (default "feedback"), runs this file with
-- SET LOCAL search_path TO that schema, inside one transaction, and records
-- it in schema_migrations (which the runner itself creates). A migration must
-- therefore not contain transaction control, and functions capture the
-- schema with SET search_path FROM CURRENT.

-- One row per accepted event. The primary key is the idempotency key of the
-- contract; it must contain the partition key, which costs nothing because a
-- redelivered event carries the same occurred_at. The consumer COPYs every
-- column but accepted_at in this order: append new columns, never reorder.
CREATE TABLE ledger (
  event_id text NOT NULL,
  occurred_at timestamptz NOT NULL,
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'phone', 'social')),
  customer_id text NOT NULL,
  agent_id text,
  interaction_id text,
  csat_score smallint,
  csat_min smallint,
  csat_max smallint,
  nps_score smallint,
  ces_score smallint,
  ces_min smallint,
  ces_max smallint,
  ces_inverted boolean,
  fcr smallint CHECK (fcr IN (1, 2)),
  contact_outcome smallint CHECK (contact_outcome IN (1, 2, 3)),
  wait_seconds integer CHECK (wait_seconds >= 0),
  handle_seconds integer CHECK (handle_seconds >= 0),
  negative_reasons smallint NOT NULL DEFAULT 0 CHECK (negative_reasons >= 0),
  source_partition integer NOT NULL CHECK (source_partition >= 0),
  source_offset bigint NOT NULL CHECK (source_offset >= 0),
  accepted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

COMMENT ON COLUMN ledger.fcr IS '1 resolved, 2 unresolved, NULL not asked';
COMMENT ON COLUMN ledger.contact_outcome IS '1 answered, 2 abandoned, 3 self-service, NULL no contact block';
COMMENT ON COLUMN ledger.negative_reasons IS 'bit set: 1 CSAT low, 2 NPS detractor, 4 CES high effort';

-- Late, early or clock-skewed events must never be refused for want of a
-- partition; rows found here show that ledger_ensure_partitions runs too rarely.
CREATE TABLE ledger_default PARTITION OF ledger DEFAULT;

-- Creates the missing monthly partitions ledger_pYYYYMM of `months` months
-- from the month of from_month; returns how many it created. Month bounds are
-- UTC midnights whatever the session time zone.
CREATE FUNCTION ledger_ensure_partitions(from_month date, months integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  first_month date := date_trunc('month', from_month::timestamp)::date;
  lo date;
  hi date;
  part text;
  locked boolean := false;
  created integer := 0;
BEGIN
  IF from_month IS NULL OR months IS NULL OR months < 0 THEN
    RAISE EXCEPTION 'ledger_ensure_partitions: invalid arguments (%, %)', from_month, months;
  END IF;
  FOR i IN 0 .. months - 1 LOOP
    lo := (first_month + make_interval(months => i))::date;
    hi := (lo + interval '1 month')::date;
    part := 'ledger_p' || to_char(lo, 'YYYYMM');
    CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
    IF NOT locked THEN
      -- Self-conflicting and blocks inserts: serialises concurrent callers,
      -- and no row can reach the default partition between the check below
      -- and the CREATE, which would otherwise fail on it.
      LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE;
      locked := true;
      CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_default
               WHERE occurred_at >= lo::timestamp AT TIME ZONE 'UTC'
                 AND occurred_at < hi::timestamp AT TIME ZONE 'UTC') THEN
      RAISE NOTICE 'ledger partition "%" not created: rows of % already sit in "ledger_default"',
        part, to_char(lo, 'YYYY-MM');
      CONTINUE;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF ledger FOR VALUES FROM (%L) TO (%L)',
                   part, lo::text || ' 00:00:00+00', hi::text || ' 00:00:00+00');
    created := created + 1;
  END LOOP;
  RETURN created;
END
$$;

-- The retention tool: drops every monthly partition that ends on or before
-- cutoff (a UTC date); returns how many. Rows in ledger_default stay.
CREATE FUNCTION ledger_drop_partitions_before(cutoff date)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  part text;
  month_start date;
  dropped integer := 0;
BEGIN
  IF cutoff IS NULL THEN
    RAISE EXCEPTION 'ledger_drop_partitions_before: cutoff is NULL';
  END IF;
  FOR part, month_start IN
    SELECT c.relname, to_date(substr(c.relname, 9), 'YYYYMM')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'ledger'::regclass AND c.relname ~ '^ledger_p[0-9]{6}$'
    ORDER BY 2
  LOOP
    EXIT WHEN (month_start + interval '1 month')::date > cutoff;
    EXECUTE format('DROP TABLE %I', part);
    dropped := dropped + 1;
  END LOOP;
  RETURN dropped;
END
$$;

SELECT ledger_ensure_partitions((date_trunc('month', now() AT TIME ZONE 'UTC') - interval '3 months')::date, 16);

-- Additive counts only (KPI.md storage rule). Every row is updated in place
-- by each batch; the free space lets those updates stay HOT.
CREATE TABLE channel_agg (
  bucket timestamptz NOT NULL CHECK (mod(extract(epoch FROM bucket), 900) = 0),
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'phone', 'social')),
  csat_n bigint NOT NULL DEFAULT 0,
  csat_satisfied bigint NOT NULL DEFAULT 0,
  csat_score_units bigint NOT NULL DEFAULT 0,
  nps_n bigint NOT NULL DEFAULT 0,
  nps_promoters bigint NOT NULL DEFAULT 0,
  nps_passives bigint NOT NULL DEFAULT 0,
  nps_detractors bigint NOT NULL DEFAULT 0,
  ces_n bigint NOT NULL DEFAULT 0,
  ces_effort_sum bigint NOT NULL DEFAULT 0,
  ces_high bigint NOT NULL DEFAULT 0,
  ces_low bigint NOT NULL DEFAULT 0,
  fcr_n bigint NOT NULL DEFAULT 0,
  fcr_yes bigint NOT NULL DEFAULT 0,
  offered bigint NOT NULL DEFAULT 0,
  answered bigint NOT NULL DEFAULT 0,
  abandoned bigint NOT NULL DEFAULT 0,
  self_service bigint NOT NULL DEFAULT 0,
  answered_within_sl bigint NOT NULL DEFAULT 0,
  wait_seconds_answered bigint NOT NULL DEFAULT 0,
  handle_seconds bigint NOT NULL DEFAULT 0,
  negative bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket, channel)
) WITH (fillfactor = 80);

CREATE TABLE agent_agg (
  bucket timestamptz NOT NULL CHECK (mod(extract(epoch FROM bucket), 900) = 0),
  agent_id text NOT NULL,
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'phone', 'social')),
  csat_n bigint NOT NULL DEFAULT 0,
  csat_satisfied bigint NOT NULL DEFAULT 0,
  csat_score_units bigint NOT NULL DEFAULT 0,
  nps_n bigint NOT NULL DEFAULT 0,
  nps_promoters bigint NOT NULL DEFAULT 0,
  nps_passives bigint NOT NULL DEFAULT 0,
  nps_detractors bigint NOT NULL DEFAULT 0,
  ces_n bigint NOT NULL DEFAULT 0,
  ces_effort_sum bigint NOT NULL DEFAULT 0,
  ces_high bigint NOT NULL DEFAULT 0,
  ces_low bigint NOT NULL DEFAULT 0,
  fcr_n bigint NOT NULL DEFAULT 0,
  fcr_yes bigint NOT NULL DEFAULT 0,
  offered bigint NOT NULL DEFAULT 0,
  answered bigint NOT NULL DEFAULT 0,
  abandoned bigint NOT NULL DEFAULT 0,
  self_service bigint NOT NULL DEFAULT 0,
  answered_within_sl bigint NOT NULL DEFAULT 0,
  wait_seconds_answered bigint NOT NULL DEFAULT 0,
  handle_seconds bigint NOT NULL DEFAULT 0,
  negative bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket, agent_id, channel)
) WITH (fillfactor = 80);

COMMENT ON COLUMN channel_agg.csat_score_units IS
  'sum of normalised 0-100 CSAT scores in units of 1/2520 point (exact for every scale)';
COMMENT ON COLUMN agent_agg.csat_score_units IS
  'sum of normalised 0-100 CSAT scores in units of 1/2520 point (exact for every scale)';

-- The next offset to read, per consumer group and partition; moved in the
-- same transaction as the ledger rows it covers.
CREATE TABLE consumer_offsets (
  group_id text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  next_offset bigint NOT NULL CHECK (next_offset >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, partition)
);

-- The SQL interface of CONTRACT.md. Rates are derived here, from the counts
-- of the row, so that sum() over the counts of any period gives its true
-- rates; numeric, not rounded, NULL where the denominator is 0.
CREATE VIEW channel_kpi AS
SELECT
  bucket,
  channel,
  csat_n,
  csat_satisfied,
  csat_score_units / 2520.0 AS csat_score_sum,
  nps_n,
  nps_promoters,
  nps_passives,
  nps_detractors,
  ces_n,
  ces_effort_sum,
  ces_high,
  ces_low,
  fcr_n,
  fcr_yes,
  offered,
  answered,
  abandoned,
  self_service,
  answered_within_sl,
  wait_seconds_answered,
  handle_seconds,
  negative,
  100 * csat_satisfied::numeric / nullif(csat_n, 0) AS csat_pct,
  100 * (nps_promoters - nps_detractors)::numeric / nullif(nps_n, 0) AS nps,
  ces_effort_sum::numeric / nullif(ces_n, 0) AS ces_mean,
  100 * ces_high::numeric / nullif(ces_n, 0) AS ces_high_pct,
  100 * fcr_yes::numeric / nullif(fcr_n, 0) AS fcr_pct,
  answered::numeric / nullif(offered, 0) AS answer_rate,
  abandoned::numeric / nullif(offered, 0) AS abandon_rate,
  100 * answered_within_sl::numeric / nullif(offered, 0) AS service_level,
  wait_seconds_answered::numeric / nullif(answered, 0) AS asa_seconds,
  handle_seconds::numeric / nullif(answered, 0) AS aht_seconds,
  self_service::numeric / nullif(offered, 0) AS self_service_rate,
  csat_score_units::numeric / (2520 * nullif(csat_n, 0)) AS csat_mean,
  csat_score_units
FROM channel_agg;

CREATE VIEW agent_kpi AS
SELECT
  bucket,
  agent_id,
  channel,
  csat_n,
  csat_satisfied,
  csat_score_units / 2520.0 AS csat_score_sum,
  nps_n,
  nps_promoters,
  nps_passives,
  nps_detractors,
  ces_n,
  ces_effort_sum,
  ces_high,
  ces_low,
  fcr_n,
  fcr_yes,
  offered,
  answered,
  abandoned,
  self_service,
  answered_within_sl,
  wait_seconds_answered,
  handle_seconds,
  negative,
  100 * csat_satisfied::numeric / nullif(csat_n, 0) AS csat_pct,
  100 * (nps_promoters - nps_detractors)::numeric / nullif(nps_n, 0) AS nps,
  ces_effort_sum::numeric / nullif(ces_n, 0) AS ces_mean,
  100 * ces_high::numeric / nullif(ces_n, 0) AS ces_high_pct,
  100 * fcr_yes::numeric / nullif(fcr_n, 0) AS fcr_pct,
  answered::numeric / nullif(offered, 0) AS answer_rate,
  abandoned::numeric / nullif(offered, 0) AS abandon_rate,
  100 * answered_within_sl::numeric / nullif(offered, 0) AS service_level,
  wait_seconds_answered::numeric / nullif(answered, 0) AS asa_seconds,
  handle_seconds::numeric / nullif(answered, 0) AS aht_seconds,
  self_service::numeric / nullif(offered, 0) AS self_service_rate,
  csat_score_units::numeric / (2520 * nullif(csat_n, 0)) AS csat_mean,
  csat_score_units
FROM agent_agg;

COMMENT ON VIEW channel_kpi IS
  'one row per 15-minute UTC bucket and channel: additive counts (roll up with sum()) and the rates of the bucket';
COMMENT ON VIEW agent_kpi IS
  'one row per 15-minute UTC bucket, agent and channel: additive counts (roll up with sum()) and the rates of the bucket';
