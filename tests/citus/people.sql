-- The people of the comparison of scripts/citus-compare: an admin and a
-- viewer member of acme, each a login role mapped to the membership. Run
-- before the tables are distributed, as the rest of the data is stored.
\set QUIET on
SET client_min_messages = warning;
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['compare_admin', 'compare_viewer'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format('GRANT audience_reader TO %I', r);
    END LOOP;
END
$$;
SELECT audience.add_member('acme', 'grace@acme.example', 'admin', 'compare_admin') \g /dev/null
SELECT audience.add_member('acme', 'edsger@acme.example', 'viewer', 'compare_viewer') \g /dev/null
