-- Distributes a database's pg_audience tables on Citus (docs/citus.md):
-- run on the coordinator, after CREATE EXTENSION pg_audience, with the
-- workers joined. Tables in foreign-key order, and no Citus table may be
-- linked to a local one meanwhile (enable_local_reference_table_foreign_keys
-- off): Citus would otherwise make the tables linked to workspaces local
-- Citus tables under a new name, which collides with the workers' own.
SET citus.shard_replication_factor = 1;
SET citus.enable_local_reference_table_foreign_keys = off;
SET client_min_messages = warning;
BEGIN;
SELECT create_reference_table('audience_internal.' || t)
  FROM unnest(ARRAY['workspaces', 'token_secrets', 'spent_tokens', 'retired_months']) t;
SELECT create_distributed_table('audience_internal.apps', 'workspace_id');
SELECT create_distributed_table('audience_internal.' || t, 'workspace_id', colocate_with => 'audience_internal.apps')
  FROM unnest(ARRAY['workspace_keys', 'members', 'app_access', 'app_visibility_changes', 'viewers', 'view_events',
                    'connect_content', 'connect_records', 'pending_folds', 'app_viewers', 'app_totals', 'app_months',
                    'workspace_months', 'app_days', 'workspace_days']) t;
COMMIT;
