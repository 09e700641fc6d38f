-- 002_recovery: service recovery. The per-customer state of the repeat and
-- cooldown rules, and the outbox of triggers that the publisher sends to the
-- recovery topic. Both are written in the transaction of the batch whose
-- events they come from, so a trigger exists if and only if its event was
-- counted.

-- One row per customer who ever had a negative rating. Rows are locked in
-- customer_id order (COLLATE "C") by every replica.
CREATE TABLE recovery_state (
  customer_id text PRIMARY KEY,
  -- occurred_at of the customer's negatives within the repeat window, in
  -- microseconds since the epoch, ascending
  negatives bigint[] NOT NULL DEFAULT '{}',
  last_trigger_at timestamptz,
  suppressed integer NOT NULL DEFAULT 0 CHECK (suppressed >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE recovery_outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  trigger_id text NOT NULL UNIQUE,
  event_id text NOT NULL,
  customer_id text NOT NULL,
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'phone', 'social')),
  severity smallint NOT NULL CHECK (severity BETWEEN 1 AND 3),
  reasons smallint NOT NULL,
  repeat_count integer NOT NULL,
  suppressed_count integer NOT NULL,
  occurred_at timestamptz NOT NULL,
  detected_at timestamptz NOT NULL,
  follow_up_by timestamptz NOT NULL,
  -- the feedback.v1.RecoveryTrigger as sent, keyed by customer_id
  payload bytea NOT NULL,
  sent_at timestamptz
);

COMMENT ON COLUMN recovery_outbox.severity IS '1 normal, 2 high, 3 critical';
COMMENT ON COLUMN recovery_outbox.reasons IS
  'bit set: 1 CSAT low, 2 NPS detractor, 4 CES high effort, 8 repeat negative';

-- What the publisher scans, and what pruning scans.
CREATE INDEX recovery_outbox_pending ON recovery_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX recovery_outbox_sent ON recovery_outbox (sent_at) WHERE sent_at IS NOT NULL;
