-- 008_contact_outcome: a contact block may leave its outcome out.
--
-- The wire contract's enums say "not given" with their zero value, and
-- KPI.md counts every event that carries a contact block as offered. An
-- event whose contact block has no outcome is therefore valid: it counts
-- as offered and as none of answered, abandoned and self-service, and its
-- ratings count as those of any event. The ledger records it as outcome 0.
--
-- NOT VALID: every row written before holds 1, 2, 3 or NULL, which the new
-- check admits, so there is nothing to scan; the lock is held only for the
-- catalogue change. New rows are checked as before.
ALTER TABLE ledger
  DROP CONSTRAINT ledger_contact_outcome_check,
  ADD CONSTRAINT ledger_contact_outcome_check CHECK (contact_outcome IN (0, 1, 2, 3)) NOT VALID;

COMMENT ON COLUMN ledger.contact_outcome IS
  '0 outcome not given, 1 answered, 2 abandoned, 3 self-service, NULL no contact block';
