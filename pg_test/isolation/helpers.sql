-- Helpers of the isolation specs in specs/, loaded into their database
-- (by scripts/test) after CREATE EXTENSION pg_audience.

CREATE SCHEMA iso;

-- Every rollup of the named workspaces against a rebuild from their raw
-- events: one row per rollup table that differs, with the number of rows
-- only the rollup kept by the write paths has and the number only the
-- rebuild has; no row when every rollup equals its rebuild. The rebuild is
-- undone, so the check can be repeated and changes nothing. A rollup table
-- the installed version does not have is left out.
CREATE FUNCTION iso.rollups_vs_rebuild(VARIADIC workspaces text[])
RETURNS TABLE (rollup text, kept_only bigint, rebuilt_only bigint)
LANGUAGE plpgsql AS $$
DECLARE
    tables text[] := ARRAY['app_viewers', 'app_totals', 'app_month_viewers', 'app_months',
                           'workspace_month_viewers', 'workspace_months', 'app_day_viewers'];
    ids bigint[];
    t text;
    kept bigint;
    rebuilt bigint;
    found_rows jsonb := '[]';
BEGIN
    SELECT array_agg(w.workspace_id ORDER BY w.workspace_id) INTO ids
      FROM audience_internal.workspaces w WHERE w.slug = ANY (workspaces);
    BEGIN
        -- As rebuild_rollups locks them, before the copies: no write of
        -- these workspaces commits between the copies and the rebuild.
        PERFORM FROM audience_internal.workspaces w WHERE w.workspace_id = ANY (ids)
          ORDER BY w.workspace_id FOR UPDATE;
        FOREACH t IN ARRAY tables LOOP
            CONTINUE WHEN to_regclass('audience_internal.' || t) IS NULL;
            EXECUTE format('CREATE TEMP TABLE iso_kept_%s AS SELECT * FROM audience_internal.%I WHERE workspace_id = ANY ($1)', t, t)
              USING ids;
        END LOOP;
        PERFORM audience_internal.rebuild_rollups(id) FROM unnest(ids) id;
        FOREACH t IN ARRAY tables LOOP
            CONTINUE WHEN to_regclass('audience_internal.' || t) IS NULL;
            EXECUTE format('SELECT (SELECT count(*) FROM (TABLE iso_kept_%1$s EXCEPT ALL
                                                          SELECT * FROM audience_internal.%1$I WHERE workspace_id = ANY ($1)) x),
                                   (SELECT count(*) FROM (SELECT * FROM audience_internal.%1$I WHERE workspace_id = ANY ($1)
                                                          EXCEPT ALL TABLE iso_kept_%1$s) y)', t)
              INTO kept, rebuilt USING ids;
            IF kept + rebuilt > 0 THEN
                found_rows := found_rows || jsonb_build_object('rollup', t, 'kept_only', kept, 'rebuilt_only', rebuilt);
            END IF;
        END LOOP;
        -- Undoes the rebuild and the copies.
        RAISE SQLSTATE 'IS000';
    EXCEPTION WHEN SQLSTATE 'IS000' THEN
        NULL;
    END;
    RETURN QUERY SELECT r ->> 'rollup', (r ->> 'kept_only')::bigint, (r ->> 'rebuilt_only')::bigint
                   FROM jsonb_array_elements(found_rows) r;
END
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
