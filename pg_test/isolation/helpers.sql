-- Helpers of the isolation specs in specs/, loaded into their database
-- (by scripts/test) after CREATE EXTENSION pg_audience.

CREATE SCHEMA iso;

-- Every rollup of the named workspaces against a rebuild from their raw
-- events (audience_internal.rollups_vs_rebuild): one row per rollup table
-- that differs, with the number of rows only the rollup kept by the write
-- paths has and the number only the rebuild has; no row when every rollup
-- equals its rebuild. The rebuild is undone, so the check can be repeated
-- and changes nothing.
CREATE FUNCTION iso.rollups_vs_rebuild(VARIADIC workspaces text[])
RETURNS TABLE (rollup text, kept_only bigint, rebuilt_only bigint)
LANGUAGE sql AS $$
    SELECT r.rollup, sum(r.kept_only)::bigint, sum(r.rebuilt_only)::bigint
      FROM audience_internal.rollups_vs_rebuild(
               ARRAY(SELECT w.workspace_id FROM audience_internal.workspaces w WHERE w.slug = ANY (workspaces))) r
     GROUP BY r.rollup
     ORDER BY min(array_position(audience_internal.rollup_tables(), r.rollup))
$$;

-- The SQLSTATE a statement fails with, or 'ok': for outcomes whose error
-- message would name a generated id.
CREATE FUNCTION iso.outcome(statement text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
