-- Who may call what. Until a platform grants the capability roles, only the
-- extension's owner (the platform operator) can do anything: nothing here is
-- executable by PUBLIC except the harmless relative_time.
REVOKE ALL ON ALL TABLES IN SCHEMA audience_internal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA audience_internal FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA audience_internal FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA audience FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audience.relative_time(timestamptz, timestamptz) TO PUBLIC;
GRANT USAGE ON SCHEMA audience TO PUBLIC;

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
