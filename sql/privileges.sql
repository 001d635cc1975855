-- Who may call what (docs/spec.md §4). Nothing is executable by PUBLIC except the
-- harmless relative_time; each capability role gets exactly its functions.
-- No role but the owner holds any privilege on a table in audience_internal.
REVOKE ALL ON ALL TABLES IN SCHEMA audience_internal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA audience_internal FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA audience_internal FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA audience FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA audience FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audience.relative_time(timestamptz, timestamptz) TO PUBLIC;
GRANT USAGE ON SCHEMA audience TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    audience.create_workspace(text, text),
    audience.configure_workspace(text, text, timestamptz, timestamptz, text, text),
    audience.create_app(text, text, text, text),
    audience.set_app_visibility(text, text, text),
    audience.add_member(text, text, text, name),
    audience.invite_viewer(text, text, text, name),
    audience.accept_invite(text, text),
    audience.remove_member(text, text),
    audience.grant_app_access(text, text, text),
    audience.rotate_pseudonym_key(text),
    audience.set_token_secret(text),
    audience.forget_viewer(text),
    audience.delete_workspace(text),
    audience.retire_events(date)
TO audience_manager;

GRANT EXECUTE ON FUNCTION
    audience.record_view(text, text, text, timestamptz, text, timestamptz, text),
    audience.record_views(jsonb, text),
    audience.end_session(bigint, timestamptz)
TO audience_ingest;
GRANT EXECUTE ON FUNCTION audience.import_connect(text, jsonb, jsonb, jsonb) TO audience_ingest, audience_manager;
-- The COPY path: rows written here are folded into the model by a trigger
-- in the same statement; the staging table never keeps them.
GRANT USAGE ON SCHEMA audience_ingest TO audience_ingest;
-- SELECT too, so that the one table the ingest role lists is one it may
-- read: it is always empty to anyone (rows live only within the statement
-- that inserts them).
GRANT SELECT, INSERT ON audience_ingest.view_imports TO audience_ingest;

-- The operator reads every workspace in full through the same functions.
-- The read functions are SECURITY INVOKER wrappers around definer functions
-- in audience_internal (sql/analytics.sql): the caller needs EXECUTE on
-- those, and no USAGE on the schema (the wrappers name them by OID), so
-- a schema browser that lists what a reader may use shows nothing there.
REVOKE USAGE ON SCHEMA audience_internal FROM audience_reader, audience_manager;
GRANT EXECUTE ON FUNCTION
    audience_internal.ticket(),
    audience_internal.workspace_monthly_viewers_for(bytea, text, integer),
    audience_internal.app_monthly_viewers_for(bytea, text, text, integer),
    audience_internal.app_total_viewers_for(bytea, text, text),
    audience_internal.recent_viewers_for(bytea, text, text, integer),
    audience_internal.visible_apps_for(bytea),
    audience_internal.all_monthly_viewers_for(bytea),
    audience_internal.whoami_for(bytea),
    audience_internal.app_sessions_for(bytea, text, text, timestamptz, timestamptz, interval, integer),
    audience_internal.top_apps_for(bytea, text, timestamptz, timestamptz, integer),
    audience_internal.top_viewers_for(bytea, text, text, timestamptz, timestamptz, integer),
    audience_internal.usage_over_time_for(bytea, text, text, timestamptz, timestamptz, text),
    audience_internal.viewer_trend_for(bytea, text, text, integer),
    audience_internal.app_access_for(bytea, text, text)
TO audience_reader, audience_manager;
GRANT EXECUTE ON FUNCTION
    audience.workspace_monthly_viewers(text, integer),
    audience.app_monthly_viewers(text, text, integer),
    audience.app_total_viewers(text, text),
    audience.recent_viewers(text, text, integer),
    audience.visible_apps(),
    audience.all_monthly_viewers(),
    audience.whoami(),
    audience.authenticate(text),
    audience.app_sessions(text, text, timestamptz, timestamptz, interval, integer),
    audience.top_apps(text, timestamptz, timestamptz, integer),
    audience.top_viewers(text, text, timestamptz, timestamptz, integer),
    audience.usage_over_time(text, text, timestamptz, timestamptz, text),
    audience.viewer_trend(text, text, integer),
    audience.app_access(text, text)
TO audience_reader, audience_manager;
GRANT SELECT ON
    audience.apps,
    audience.workspace_monthly_viewers,
    audience.app_monthly_viewers,
    audience.app_total_viewers,
    audience.recent_viewers,
    audience.all_monthly_viewers,
    audience.app_sessions,
    audience.top_apps,
    audience.top_viewers,
    audience.usage_over_time,
    audience.viewer_trend,
    audience.app_access
TO audience_reader, audience_manager;

-- pg_dump keeps the contents of every table and sequence, secrets included,
-- so that a restored database gives the same answers and pseudonyms.
-- (One call per statement: each call rewrites the extension's catalog row.)
DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'S')
         ORDER BY c.relname
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(rel, '');
    END LOOP;
END
$$;
