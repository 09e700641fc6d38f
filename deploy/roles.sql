-- Least-privilege database roles of feedback-consumer.
--
--   migration role  owns the schema and everything in it; runs
--                   `feedback-consumer migrate` (the Helm pre-install and
--                   pre-upgrade hook)
--   runtime role    runs `feedback-consumer run`: reads and writes the rows
--                   of the tables the consumer keeps, deletes sent recovery
--                   triggers (pruning), creates ledger partitions through the
--                   SECURITY DEFINER function of migration 003, temporary
--                   staging tables; no DDL on the schema
--   reporting role  BI: reads the views only, in read-only transactions
--
-- Run it as a superuser (or the cloud provider's admin role) in the database
-- of the service, before the first migration; it is idempotent, run it again
-- after an upgrade at will. Names are psql variables with these defaults:
--
--   psql -v ON_ERROR_STOP=1 -d feedback -f deploy/roles.sql \
--        -v schema=feedback -v migrator=feedback_migrator \
--        -v runtime=feedback_runtime -v reporting=feedback_reporting
--
-- The roles get no password: set one (\password feedback_runtime) or use
-- certificate or IAM authentication.

\set ON_ERROR_STOP on
\if :{?schema}
\else
\set schema feedback
\endif
\if :{?migrator}
\else
\set migrator feedback_migrator
\endif
\if :{?runtime}
\else
\set runtime feedback_runtime
\endif
\if :{?reporting}
\else
\set reporting feedback_reporting
\endif

BEGIN;

SELECT format('CREATE ROLE %I', r)
FROM unnest(ARRAY[:'migrator', :'runtime', :'reporting']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

-- Explicit attributes, so that an existing role of the same name is brought in line.
ALTER ROLE :"migrator" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"runtime" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"reporting" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;

-- What migrations grant to (schema/003_least_privilege.sql): the settings
-- are in force in every session of the migration role in this database.
SELECT format('ALTER ROLE %I IN DATABASE %I SET feedback.runtime_role = %L',
              :'migrator', current_database(), :'runtime') \gexec
SELECT format('ALTER ROLE %I IN DATABASE %I SET feedback.reporting_role = %L',
              :'migrator', current_database(), :'reporting') \gexec
SELECT format('ALTER ROLE %I IN DATABASE %I SET default_transaction_read_only = on',
              :'reporting', current_database()) \gexec
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I',
              :'reporting', current_database(), :'schema') \gexec

-- TEMPORARY: the consumer stages every batch in temporary tables. Granted
-- explicitly for databases whose PUBLIC grants were revoked.
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', current_database(),
              :'migrator', :'runtime', :'reporting') \gexec
SELECT format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), :'runtime') \gexec

-- The schema exists before the first migration, so the migration role
-- needs no CREATE on the database.
SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', :'schema', :'migrator')
WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :'schema') \gexec
ALTER SCHEMA :"schema" OWNER TO :"migrator";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
GRANT USAGE ON SCHEMA :"schema" TO :"runtime", :"reporting";

-- A schema migrated earlier by another role (one owner for everything) is
-- handed to the migration role; indexes and identity sequences follow their
-- tables. SECURITY DEFINER functions then run as the migration role.
SELECT format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
              c.oid::regclass, :'migrator')
FROM pg_class c
WHERE c.relnamespace = :'schema'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
  AND c.relowner <> :'migrator'::regrole
ORDER BY c.oid \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'migrator')
FROM pg_proc p
WHERE p.pronamespace = :'schema'::regnamespace AND p.proowner <> :'migrator'::regrole \gexec

-- Tables that later migrations create: the runtime role reads and writes
-- their rows; DELETE and the reporting role's SELECT are granted by the
-- migration that needs them (see 003).
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA :"schema"
  GRANT SELECT, INSERT, UPDATE ON TABLES TO :"runtime";

-- The same for the objects that exist already (a re-run, or a schema that
-- was migrated before these roles existed).
SELECT format('GRANT SELECT, INSERT, UPDATE ON %s TO %I', c.oid::regclass, :'runtime')
FROM pg_class c
WHERE c.relnamespace = :'schema'::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname <> 'schema_migrations' \gexec
SELECT format('GRANT SELECT ON %I.schema_migrations TO %I', :'schema', :'runtime')
WHERE to_regclass(format('%I.schema_migrations', :'schema')) IS NOT NULL \gexec
SELECT format('REVOKE INSERT, UPDATE ON %I.schema_migrations FROM %I', :'schema', :'runtime')
WHERE to_regclass(format('%I.schema_migrations', :'schema')) IS NOT NULL \gexec
SELECT format('GRANT DELETE ON %I.recovery_outbox TO %I', :'schema', :'runtime')
WHERE to_regclass(format('%I.recovery_outbox', :'schema')) IS NOT NULL \gexec
SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', p.oid::regprocedure, :'runtime')
FROM pg_proc p
WHERE p.pronamespace = :'schema'::regnamespace AND p.proname = 'ledger_ensure_partitions' \gexec
SELECT format('GRANT SELECT ON %s TO %I', c.oid::regclass, :'reporting')
FROM pg_class c
WHERE c.relnamespace = :'schema'::regnamespace AND c.relkind IN ('v', 'm') \gexec

COMMIT;
