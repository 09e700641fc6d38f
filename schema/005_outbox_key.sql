-- 005_outbox_key: the outbox keeps one index on trigger ids fewer.
--
-- A trigger id is made of its event's id, and a trigger is written only in
-- the transaction that accepts its event into event_ids, whose primary key
-- takes an id once: two rows with one trigger id cannot both commit. The
-- unique index on trigger_id repeated that check at the cost of a random
-- text key, inserted twice per trigger, as the row is queued and again when
-- it is marked sent (that update cannot be HOT: the outbox's partial
-- indexes name sent_at). Look-ups by trigger id, rare and by hand, scan.
ALTER TABLE recovery_outbox DROP CONSTRAINT recovery_outbox_trigger_id_key;
