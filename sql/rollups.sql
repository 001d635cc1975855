-- The rollups' one rebuild from raw events (the tables: sql/schema.sql; how
-- each writer keeps them current: sql/ingest.sql, sql/bulk_ingest.sql).

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
BEGIN
    SELECT * INTO ws FROM audience_internal.workspaces w WHERE w.workspace_id = rebuild_rollups.workspace_id FOR UPDATE;
    DELETE FROM audience_internal.app_viewers t WHERE t.workspace_id = ws.workspace_id;
    DELETE FROM audience_internal.app_totals t WHERE t.workspace_id = ws.workspace_id;
    DELETE FROM audience_internal.app_month_viewers t WHERE t.workspace_id = ws.workspace_id;
    DELETE FROM audience_internal.app_months t WHERE t.workspace_id = ws.workspace_id;
    DELETE FROM audience_internal.workspace_month_viewers t WHERE t.workspace_id = ws.workspace_id;
    DELETE FROM audience_internal.workspace_months t WHERE t.workspace_id = ws.workspace_id;
    DELETE FROM audience_internal.app_day_viewers t WHERE t.workspace_id = ws.workspace_id;

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
