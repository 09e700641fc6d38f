-- 009_partition_check: a caller's temporary table no longer passes for a
-- ledger partition.
--
-- ledger_ensure_partitions looked a month's partition up by its bare name.
-- pg_temp comes last in the function's search path, so a temporary table
-- cannot stand in for "ledger"; but a name the schema lacks is still looked
-- up there, and a caller's temporary ledger_pYYYYMM made the function take
-- that month for done: its rows then went to ledger_default, for good. The
-- look-up now names the schema.
--
-- CREATE OR REPLACE resets SECURITY DEFINER and the search path, which 003
-- set: they are set again, as there.
CREATE OR REPLACE FUNCTION ledger_ensure_partitions(from_month date, months integer)
RETURNS integer
LANGUAGE plpgsql
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
    CONTINUE WHEN to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL;
    IF NOT locked THEN
      -- Self-conflicting and blocks inserts: serialises concurrent callers,
      -- and no row can reach the default partition between the check below
      -- and the CREATE, which would otherwise fail on it.
      LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE;
      locked := true;
      CONTINUE WHEN to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL;
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

DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION ledger_ensure_partitions(date, integer) '
                 'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END
$$;
