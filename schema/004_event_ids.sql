-- 004_event_ids: the idempotency key of the contract is the event id alone.
-- The ledger's primary key had to hold its partition key, occurred_at, so an
-- event id that came back with another occurred_at was counted again. The
-- key now lives in a table of its own, unpartitioned: one row per event id
-- ever accepted, with the occurred_at that finds its ledger row. The ledger
-- keeps no index of its own; the consumer writes both in one transaction.
-- Measured on 500,000 rows: the ledger COPY without its key plus the ids'
-- COPY cost what the ledger COPY with its key did; both keys, twice that.

CREATE TABLE event_ids (
  event_id text PRIMARY KEY,
  occurred_at timestamptz NOT NULL
);

-- Consumers of the build before may still be running: until this commits,
-- none adds a ledger row that the copy below would miss.
LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE;

-- Ledgers of earlier versions: the first occurred_at of an id is the one
-- that counts from now on.
INSERT INTO event_ids (event_id, occurred_at)
SELECT DISTINCT ON (event_id) event_id, occurred_at
FROM ledger
ORDER BY event_id, occurred_at;

ALTER TABLE ledger DROP CONSTRAINT ledger_pkey;

-- Retention also forgets the ids of the months it drops; an id whose ledger
-- row sits in ledger_default stays, as that row does.
CREATE OR REPLACE FUNCTION ledger_drop_partitions_before(cutoff date)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  part text;
  month_start date;
  lo date;
  hi date;
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
    lo := coalesce(lo, month_start);
    hi := (month_start + interval '1 month')::date;
    dropped := dropped + 1;
  END LOOP;
  IF dropped > 0 THEN
    DELETE FROM event_ids e
    WHERE e.occurred_at >= lo::timestamp AT TIME ZONE 'UTC'
      AND e.occurred_at < hi::timestamp AT TIME ZONE 'UTC'
      AND NOT EXISTS (SELECT 1 FROM ledger_default d
                      WHERE d.event_id = e.event_id AND d.occurred_at = e.occurred_at);
  END IF;
  RETURN dropped;
END
$$;
REVOKE EXECUTE ON FUNCTION ledger_drop_partitions_before(date) FROM PUBLIC;
