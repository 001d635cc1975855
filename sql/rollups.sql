-- The rollups' one rebuild from raw events (the tables: sql/schema.sql; the
-- fold that keeps them current: sql/fold.sql).

-- The rollup tables, in the writers' lock order: each must always equal what
-- rebuild_rollups computes from the raw events.
CREATE FUNCTION audience_internal.rollup_tables()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['app_viewers', 'app_totals', 'app_month_viewers', 'app_months',
                 'workspace_month_viewers', 'workspace_months', 'app_day_viewers']
$$;

-- Recomputes every rollup of a workspace from its raw events: after a change
-- of time zone or counting start, and to check that the rollups kept during
-- ingest are exact. The workspace row is locked first, FOR UPDATE, and the
-- rollups are emptied in the lock order of every writer (the top of
-- sql/ingest.sql): no ingest of the workspace is in progress while they are
-- rebuilt, and ingest that waited for the lock finds the rebuilt rows.
CREATE FUNCTION audience_internal.rebuild_rollups(workspace_id bigint)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ws audience_internal.workspaces;
    t text;
BEGIN
    SELECT * INTO ws FROM audience_internal.workspaces w WHERE w.workspace_id = rebuild_rollups.workspace_id FOR UPDATE;
    -- The rebuild counts every stored event, the pending ones too.
    DELETE FROM audience_internal.pending_folds p WHERE p.workspace_id = ws.workspace_id;
    FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
        EXECUTE format('DELETE FROM audience_internal.%I t WHERE t.workspace_id = $1', t) USING ws.workspace_id;
    END LOOP;

    INSERT INTO audience_internal.app_viewers
    SELECT e.workspace_id, e.app_id, e.viewer_id, min(e.viewed_at), max(e.viewed_at),
           (array_agg(e.identifiable ORDER BY e.viewed_at DESC, e.identifiable DESC))[1],
           count(*), count(*) FILTER (WHERE e.viewed_at >= ws.counting_start)
      FROM audience_internal.view_events e
     WHERE e.workspace_id = ws.workspace_id
     GROUP BY e.workspace_id, e.app_id, e.viewer_id;

    INSERT INTO audience_internal.app_totals
    SELECT av.workspace_id, av.app_id, count(*) FILTER (WHERE av.counted_views > 0), sum(av.counted_views)
      FROM audience_internal.app_viewers av
     WHERE av.workspace_id = ws.workspace_id
     GROUP BY av.workspace_id, av.app_id
    HAVING sum(av.counted_views) > 0;

    INSERT INTO audience_internal.app_month_viewers
    SELECT DISTINCT e.workspace_id, e.app_id, date_trunc('month', e.viewed_at AT TIME ZONE ws.time_zone)::date, e.viewer_id
      FROM audience_internal.view_events e
     WHERE e.workspace_id = ws.workspace_id;

    INSERT INTO audience_internal.app_months
    SELECT e.workspace_id, e.app_id, m.month, count(DISTINCT e.viewer_id), count(*)
      FROM audience_internal.view_events e,
           LATERAL (SELECT date_trunc('month', e.viewed_at AT TIME ZONE ws.time_zone)::date AS month) m
     WHERE e.workspace_id = ws.workspace_id
     GROUP BY e.workspace_id, e.app_id, m.month;

    INSERT INTO audience_internal.workspace_month_viewers
    SELECT DISTINCT e.workspace_id, date_trunc('month', e.viewed_at AT TIME ZONE ws.time_zone)::date, e.viewer_id
      FROM audience_internal.view_events e
     WHERE e.workspace_id = ws.workspace_id;

    INSERT INTO audience_internal.workspace_months
    SELECT e.workspace_id, m.month, count(DISTINCT e.viewer_id), count(*)
      FROM audience_internal.view_events e,
           LATERAL (SELECT date_trunc('month', e.viewed_at AT TIME ZONE ws.time_zone)::date AS month) m
     WHERE e.workspace_id = ws.workspace_id
     GROUP BY e.workspace_id, m.month;

    INSERT INTO audience_internal.app_day_viewers
    SELECT e.workspace_id, e.app_id, (e.viewed_at AT TIME ZONE ws.time_zone)::date, e.viewer_id, e.identifiable,
           count(*) FILTER (WHERE e.kind = 'session'), count(*) FILTER (WHERE e.kind = 'visit'),
           sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at)), max(e.viewed_at)
      FROM audience_internal.view_events e
     WHERE e.workspace_id = ws.workspace_id
     GROUP BY 1, 2, 3, 4, 5;
END
$$;

-- Whether the rollups kept by the write paths are exact: for each of the
-- workspaces and each rollup table that differs from a rebuild from the raw
-- events, the number of rows only the kept rollup has, the number only the
-- rebuild has, and up to two of each (sample). No row when all is exact.
-- The rebuild is undone; while the check runs, ingest into these workspaces
-- waits (their rows are locked as rebuild_rollups locks them, before the
-- copies, so that no write commits between the copies and the rebuild).
-- For the operator, and for every test layer that checks the write paths.
CREATE FUNCTION audience_internal.rollups_vs_rebuild(workspace_ids bigint[])
RETURNS TABLE (workspace_id bigint, rollup text, kept_only bigint, rebuilt_only bigint, sample jsonb)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ids bigint[];
    id bigint;
    t text;
    kept bigint;
    rebuilt bigint;
    rows_found jsonb;
    differences jsonb := '[]';
BEGIN
    ids := ARRAY(SELECT w.workspace_id FROM audience_internal.workspaces w
                  WHERE w.workspace_id = ANY (rollups_vs_rebuild.workspace_ids)
                  ORDER BY w.workspace_id FOR UPDATE);
    -- What the fold keeps is checked with every pending event folded.
    PERFORM audience_internal.fold_pending(ids);
    BEGIN
        FOREACH id IN ARRAY ids LOOP
            FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
                EXECUTE format('CREATE TEMP TABLE rollup_kept_%s_%s AS SELECT * FROM audience_internal.%I x WHERE x.workspace_id = $1',
                               t, id, t)
                  USING id;
            END LOOP;
            PERFORM audience_internal.rebuild_rollups(id);
            FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
                EXECUTE format(
                    'WITH kept AS (SELECT * FROM rollup_kept_%1$s_%2$s),
                          rebuilt AS (SELECT * FROM audience_internal.%1$I x WHERE x.workspace_id = $1),
                          kept_only AS (TABLE kept EXCEPT ALL TABLE rebuilt),
                          rebuilt_only AS (TABLE rebuilt EXCEPT ALL TABLE kept)
                     SELECT (SELECT count(*) FROM kept_only), (SELECT count(*) FROM rebuilt_only),
                            coalesce((SELECT jsonb_agg(jsonb_build_object(''kept'', to_jsonb(k)))
                                        FROM (SELECT * FROM kept_only LIMIT 2) k), ''[]'')
                            || coalesce((SELECT jsonb_agg(jsonb_build_object(''rebuilt'', to_jsonb(r)))
                                           FROM (SELECT * FROM rebuilt_only LIMIT 2) r), ''[]'')',
                    t, id)
                  INTO kept, rebuilt, rows_found USING id;
                IF kept + rebuilt > 0 THEN
                    differences := differences || jsonb_build_object(
                        'workspace_id', id, 'rollup', t, 'kept_only', kept, 'rebuilt_only', rebuilt, 'sample', rows_found);
                END IF;
            END LOOP;
        END LOOP;
        -- Undoes the rebuilds and the copies.
        RAISE SQLSTATE 'RB000';
    EXCEPTION WHEN SQLSTATE 'RB000' THEN
        NULL;
    END;
    RETURN QUERY
    SELECT (d ->> 'workspace_id')::bigint, d ->> 'rollup', (d ->> 'kept_only')::bigint,
           (d ->> 'rebuilt_only')::bigint, d -> 'sample'
      FROM jsonb_array_elements(differences) d;
END
$$;
