-- Row-level security on every table, forced and without a policy: a second
-- wall behind the functions. No capability role holds a privilege on these
-- tables; should a platform ever grant one (or pg_read_all_data), a query
-- by that role returns no row. The extension's functions read the tables
-- as their owner, who is not subject to row security, and apply the
-- requester's rules (sql/requester.sql) themselves.
--
-- Row security without a policy denies every row: the planner makes that
-- one constant test per query, and it needs nothing a database node other
-- than the one a client is connected to cannot evaluate. A policy that
-- looked the requester up (their workspaces and apps, once per query
-- through a subquery) could not be evaluated on a Citus worker, which
-- knows neither the requester nor, inside a shard's query, the other
-- tables, and Citus refuses subqueries in policies (docs/citus.md); it
-- allowed no more than this either, as the lookups were executable by the
-- extension's owner only.

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.relname
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('ALTER TABLE audience_internal.%I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('ALTER TABLE audience_internal.%I FORCE ROW LEVEL SECURITY', t.relname);
    END LOOP;
END
$$;
