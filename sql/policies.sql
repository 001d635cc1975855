-- Row-level security on every table, forced, as a second wall behind the
-- functions: no capability role holds a privilege on these tables, but if a
-- platform ever grants one (or pg_read_all_data), a query still returns
-- nothing the requester may not see. The rules are those of
-- sql/requester.sql; each policy asks for the requester's visible ids once
-- per query (an InitPlan), not once per row. The helpers are executable by no
-- caller, so such a query fails closed: permission denied, never a row.
-- Secrets and keys are never visible through a table.

CREATE FUNCTION audience_internal.visible_workspace_ids()
RETURNS bigint[] LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT coalesce(array_agg(w.workspace_id), '{}')
      FROM audience_internal.workspaces w
     WHERE audience_internal.workspace_access(w.workspace_id) IS NOT NULL
$$;

-- Workspaces the requester sees in full (operator, admin, developer): the
-- rows about people (members, viewers, grants) are theirs only.
CREATE FUNCTION audience_internal.managed_workspace_ids()
RETURNS bigint[] LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT coalesce(array_agg(w.workspace_id), '{}')
      FROM audience_internal.workspaces w
     WHERE audience_internal.workspace_access(w.workspace_id) = 'all'
$$;

CREATE FUNCTION audience_internal.visible_app_ids()
RETURNS bigint[] LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT coalesce(array_agg(r.app_id), '{}') FROM audience_internal.requester_apps() r
$$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.relname,
               CASE
                 WHEN c.relname IN ('workspace_keys', 'token_secrets', 'spent_tokens') THEN 'false'
                 -- workspace_days counts the viewers of private apps too.
                 WHEN c.relname IN ('members', 'viewers', 'app_access', 'connect_records', 'workspace_days') THEN
                   'workspace_id = ANY ((SELECT audience_internal.managed_workspace_ids())::bigint[])'
                 -- Which months were retired is no one's but the operator's.
                 WHEN c.relname = 'retired_months' THEN 'false'
                 WHEN c.relname IN ('workspaces', 'workspace_months') THEN
                   'workspace_id = ANY ((SELECT audience_internal.visible_workspace_ids())::bigint[])'
                 ELSE 'app_id = ANY ((SELECT audience_internal.visible_app_ids())::bigint[])'
               END AS rule
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('ALTER TABLE audience_internal.%I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('ALTER TABLE audience_internal.%I FORCE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('CREATE POLICY requester_sees ON audience_internal.%I FOR SELECT USING (%s)', t.relname, t.rule);
    END LOOP;
END
$$;
