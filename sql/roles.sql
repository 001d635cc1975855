-- The three capability roles of docs/spec.md §4. They are cluster-wide: creating the
-- extension in a second database finds them already there. A platform grants
-- them to its own login roles.
DO $$
DECLARE
    cap text;
BEGIN
    FOREACH cap IN ARRAY ARRAY['audience_manager', 'audience_ingest', 'audience_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = cap) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', cap);
        ELSIF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = cap AND (rolsuper OR rolbypassrls)) THEN
            -- Whoever holds a capability must stay subject to the privacy rules.
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = format('role %I exists with SUPERUSER or BYPASSRLS; pg_audience will not use it as a capability role', cap);
        END IF;
    END LOOP;
END
$$;
COMMENT ON ROLE audience_manager IS 'pg_audience: the platform operator. Management functions, and every workspace in full.';
COMMENT ON ROLE audience_ingest IS 'pg_audience: records view events (record_view, end_session). Reads nothing.';
COMMENT ON ROLE audience_reader IS 'pg_audience: reads analytics, answered per requester (database role or request token).';
