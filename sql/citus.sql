-- A database's pg_audience on a Citus cluster (docs/citus.md): its tables
-- distributed by workspace, the small ones replicated to every node. One
-- design serves one server and a cluster; this is the one step that only a
-- cluster takes.

-- The placement: reference tables (a copy on every node) for what has no
-- workspace in its keys or is a row or a few for the whole database, and
-- every other table hashed on workspace_id in one colocation group, so that
-- a workspace's rows of every table are on one node. view_imports stays on
-- the coordinator: its statement trigger reads a transition table, which a
-- shard's trigger cannot. In foreign-key order.
CREATE FUNCTION audience_internal.citus_placement()
RETURNS TABLE (table_name text, reference boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT t, true FROM unnest(ARRAY['workspaces', 'token_secrets', 'spent_tokens', 'retired_months']) t
    UNION ALL
    SELECT t, false
      FROM unnest(ARRAY['apps', 'workspace_keys', 'members', 'app_access', 'app_visibility_changes', 'viewers',
                        'view_events', 'connect_content', 'connect_records', 'pending_folds', 'app_viewers',
                        'app_totals', 'app_months', 'workspace_months', 'app_days', 'workspace_days']) t
$$;

-- Run on the coordinator once, after CREATE EXTENSION citus and adding the
-- workers; data already stored moves to the workers. SECURITY INVOKER:
-- Citus lets only the tables' owner distribute them.
CREATE FUNCTION audience.distribute()
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    roles jsonb;
    m record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = 'Citus is not installed in this database',
            HINT = 'Run CREATE EXTENSION citus and add the workers first.';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'only a superuser may distribute pg_audience';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition d
                WHERE d.logicalrelid = 'audience_internal.workspaces'::regclass) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'pg_audience is distributed already';
    END IF;
    -- A member's database role is stored by number, and every node numbers
    -- its roles itself: the members' roles are kept by name, and given again
    -- by name once the rows are on the workers.
    roles := (SELECT jsonb_agg(jsonb_build_array(x.workspace_id, x.member_id, x.db_role::text))
                FROM audience_internal.members x WHERE x.db_role IS NOT NULL);
    -- Without it, Citus would make the tables that refer to workspaces
    -- local Citus tables under new names, which the workers' own copies of
    -- the extension's tables then collide with.
    PERFORM set_config('citus.enable_local_reference_table_foreign_keys', 'off', true);
    PERFORM set_config('citus.shard_replication_factor', '1', true);
    FOR p IN SELECT * FROM audience_internal.citus_placement() LOOP
        IF p.reference THEN
            EXECUTE 'SELECT create_reference_table($1)' USING ('audience_internal.' || p.table_name)::regclass;
        ELSE
            EXECUTE 'SELECT create_distributed_table($1, ''workspace_id'', colocate_with => $2)'
              USING ('audience_internal.' || p.table_name)::regclass,
                    CASE WHEN p.table_name = 'apps' THEN 'default' ELSE 'audience_internal.apps' END;
        END IF;
    END LOOP;
    -- On a cluster the lookup of the requester's memberships is planned for
    -- each call: the generic plan a session's lookups come to, kept for any
    -- role names, cannot be distributed. (On one server it is planned once
    -- a session.)
    ALTER FUNCTION audience_internal.requester_memberships(bigint) SET plan_cache_mode = force_custom_plan;
    -- Keys are made on the worker that stores them (sql/management.sql).
    EXECUTE 'SELECT create_distributed_function($1, ''$1'', colocate_with => ''audience_internal.workspace_keys'', force_delegation => true)'
      USING 'audience_internal.add_keys(bigint)'::regprocedure;
    EXECUTE 'SELECT create_distributed_function($1, ''$1'', colocate_with => ''audience_internal.workspace_keys'', force_delegation => true)'
      USING 'audience_internal.new_pseudonym_key(bigint)'::regprocedure;
    -- Citus copies the stored rows to the workers and leaves the
    -- originals on the coordinator, where no query reads them and no
    -- erasure (forget_viewer, delete_workspace) would reach them.
    FOR p IN SELECT * FROM audience_internal.citus_placement() x ORDER BY x.reference, x.table_name LOOP
        EXECUTE 'SELECT truncate_local_data_after_distributing_table($1)'
          USING ('audience_internal.' || p.table_name)::regclass;
    END LOOP;
    FOR m IN SELECT (r ->> 0)::bigint AS workspace_id, (r ->> 1)::bigint AS member_id, r ->> 2 AS db_role
               FROM jsonb_array_elements(coalesce(roles, '[]')) r LOOP
        UPDATE audience_internal.members x SET db_role = m.db_role::regrole
         WHERE x.workspace_id = m.workspace_id AND x.member_id = m.member_id;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audience.distribute() IS
    'Distributes this database''s pg_audience tables over a Citus cluster: run once on the coordinator by a superuser, after CREATE EXTENSION citus and adding the workers. Events, viewers and every rollup are hashed on workspace_id in one colocation group; workspaces and the token and retirement tables become reference tables. Stored data moves to the workers.';
