-- 010_retention: retention no longer stops ingestion while it forgets ids,
-- and forgets everything before its cut, the default partition included.
--
-- Dropping a partition takes ACCESS EXCLUSIVE on the ledger until COMMIT, and
-- the ids of the dropped months were deleted after the drops: every consumer
-- waited for a scan of all of event_ids (no index on occurred_at) and the
-- deletion of a month of ids. The ids now go first, holding no lock on the
-- ledger; the drops come last and hold it only until COMMIT.
--
-- The cut is the first day of cutoff's month: the months that end by then are
-- dropped, as before. Rows of ledger_default before the cut went nowhere and
-- their ids stayed, for good; they are deleted with the ids now. So, at the
-- next run, is the id that a late event of a dropped month adds while one
-- runs: its row goes with its partition.
CREATE OR REPLACE FUNCTION ledger_drop_partitions_before(cutoff date)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  cut timestamptz;
  part text;
  month_start date;
  dropped integer := 0;
BEGIN
  IF cutoff IS NULL THEN
    RAISE EXCEPTION 'ledger_drop_partitions_before: cutoff is NULL';
  END IF;
  cut := date_trunc('month', cutoff::timestamp) AT TIME ZONE 'UTC';
  DELETE FROM ledger_default WHERE occurred_at < cut;
  DELETE FROM event_ids WHERE occurred_at < cut;
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
