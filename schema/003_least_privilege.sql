-- 003_least_privilege: lets the consumer run as a role without DDL rights
-- (deploy/roles.sql), and gives BI the recovery figures without customer data.
--
-- deploy/roles.sql sets feedback.runtime_role and feedback.reporting_role on
-- the migration role, so that a migration it runs can grant those roles what
-- default privileges cannot express. Run by any other role (an installation
-- with one owner role, the tests) the settings are empty and the owner alone
-- keeps these rights.

-- The consumer creates next months' ledger partitions while it runs; as the
-- owner of the ledger the function may, the caller may not. pg_temp last: a
-- caller's temporary table must not stand in for "ledger".
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION ledger_ensure_partitions(date, integer) '
                 'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION ledger_ensure_partitions(date, integer) FROM PUBLIC;
-- Retention drops data: for the owner only.
REVOKE EXECUTE ON FUNCTION ledger_drop_partitions_before(date) FROM PUBLIC;

-- One row per recovery trigger, without customer, event or payload: what
-- dashboards need for trigger volume and the follow-up backlog.
CREATE VIEW recovery_triggers AS
SELECT
  id,
  channel,
  severity,
  reasons,
  repeat_count,
  occurred_at,
  detected_at,
  follow_up_by,
  sent_at
FROM recovery_outbox;

COMMENT ON VIEW recovery_triggers IS
  'one row per queued recovery trigger (sent_at NULL: not yet published), without personal data';

DO $$
DECLARE
  runtime text := nullif(current_setting('feedback.runtime_role', true), '');
  reporting text := nullif(current_setting('feedback.reporting_role', true), '');
BEGIN
  IF runtime IS NOT NULL THEN
    EXECUTE format('GRANT EXECUTE ON FUNCTION ledger_ensure_partitions(date, integer) TO %I',
                   runtime);
    -- The publisher prunes sent triggers; no other table loses rows.
    EXECUTE format('GRANT DELETE ON recovery_outbox TO %I', runtime);
    -- Default privileges gave it the runner's own record: only migrations write it.
    EXECUTE format('REVOKE INSERT, UPDATE ON schema_migrations FROM %I', runtime);
  END IF;
  IF reporting IS NOT NULL THEN
    EXECUTE format('GRANT SELECT ON channel_kpi, agent_kpi, recovery_triggers TO %I', reporting);
  END IF;
END
$$;
