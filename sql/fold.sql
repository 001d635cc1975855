-- The fold: events stored but not yet in the rollups (pending_folds, in
-- sql/schema.sql) merged into every rollup, set-wise, in one statement. Every
-- writer of events leaves them here (record_view, the bulk paths in
-- sql/bulk_ingest.sql, and through them import_connect); the bulk paths fold
-- at the end of each statement, record_view every fold_every() events, and
-- forget_viewer and rollups_vs_rebuild before they read the rollups. Reads
-- add what is still pending to what the rollups hold (sql/analytics.sql,
-- sql/usage.sql), so when a fold runs changes no answer.
--
-- This is the one place that merges events into the rollups: rebuild_rollups
-- (sql/rollups.sql) computes them from the raw events without it, on
-- purpose, so that comparing the two can show the fold wrong.

-- How the fold merges what it adds into a kept rollup row (ON CONFLICT ...
-- DO UPDATE), for the rows that are more than counters.
CREATE FUNCTION audience_internal.merged_app_viewer(kept audience_internal.app_viewers, added audience_internal.app_viewers)
RETURNS audience_internal.app_viewers LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT kept.workspace_id, kept.app_id, kept.viewer_id,
           least(kept.first_viewed_at, added.first_viewed_at),
           greatest(kept.last_viewed_at, added.last_viewed_at),
           audience_internal.latest_identifiable(kept.last_viewed_at, kept.last_view_identifiable,
                                                 added.last_viewed_at, added.last_view_identifiable),
           kept.views + added.views,
           kept.counted_views + added.counted_views
$$;

CREATE FUNCTION audience_internal.merged_app_day_viewer(kept audience_internal.app_day_viewers, added audience_internal.app_day_viewers)
RETURNS audience_internal.app_day_viewers LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT kept.workspace_id, kept.app_id, kept.day, kept.viewer_id, kept.identifiable,
           kept.sessions + added.sessions,
           kept.visits + added.visits,
           kept.session_micros + added.session_micros,
           greatest(kept.last_viewed_at, added.last_viewed_at)
$$;

-- How many single events record_view stores before it folds its
-- workspace's pending events: a fold's fixed cost shared by this many
-- events, and at most about this many events for a read to add.
CREATE FUNCTION audience_internal.fold_every()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 64 $$;

-- Folds the pending events of these workspaces and returns how many. Lock
-- order (the top of sql/ingest.sql): the workspace rows, FOR KEY SHARE (so
-- no forget_viewer, delete_workspace or rebuild of them runs meanwhile: the
-- viewers and apps the events name stay), then the pending rows (deleted,
-- so that a concurrent end_session waits for this fold and then finds the
-- event folded), then the rollups in the writers' order. A pending row of a
-- transaction still in progress is not seen and waits for the next fold.
-- session_replication_role = replica: the rollup rows' foreign keys are not
-- checked row by row (the locks above keep every parent); only a
-- definer function of the extension can call this. work_mem and the join
-- settings: as in the bulk fold, for batches of a million events.
CREATE FUNCTION audience_internal.fold_pending(workspace_ids bigint[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET session_replication_role = replica
SET work_mem = '256MB'
SET enable_nestloop = on
SET enable_mergejoin = on
AS $$
DECLARE
    n_pending bigint;
    n_folded bigint;
BEGIN
    PERFORM FROM audience_internal.workspaces w WHERE w.workspace_id = ANY (fold_pending.workspace_ids)
     ORDER BY w.workspace_id FOR KEY SHARE;
    SELECT count(*) INTO n_pending FROM audience_internal.pending_folds p WHERE p.workspace_id = ANY (fold_pending.workspace_ids);
    IF n_pending = 0 THEN
        RETURN 0;
    END IF;
    -- Hashing scales where the planner, guessing from stale statistics,
    -- would pick nested loops over a large batch.
    IF n_pending > 1000 THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
    END IF;

    -- One statement: each data-modifying step starts only once the previous
    -- one has finished (its result is counted in a one-time filter, or fully
    -- read by a sort or an aggregate), which keeps the lock order.
    EXECUTE $fold$
    WITH moved AS (
        DELETE FROM audience_internal.pending_folds p
         WHERE p.workspace_id = ANY ($1)
        RETURNING p.*
    ),
    evv AS MATERIALIZED (
        SELECT m.workspace_id, m.app_id, m.viewer_id, m.viewed_at, m.ended_at, m.kind, m.identifiable,
               (m.viewed_at >= w.counting_start)::int AS counted,
               date_trunc('month', m.viewed_at AT TIME ZONE w.time_zone)::date AS month,
               (m.viewed_at AT TIME ZONE w.time_zone)::date AS day
          FROM moved m
          JOIN audience_internal.workspaces w ON w.workspace_id = m.workspace_id
    ),
    batch_app_viewers AS MATERIALIZED (
        SELECT e.workspace_id, e.app_id, e.viewer_id, min(e.viewed_at) AS first_viewed_at,
               max(e.viewed_at) AS last_viewed_at,
               -- Of views at the same instant, either one identifiable counts
               -- (audience_internal.latest_identifiable).
               (array_agg(e.identifiable ORDER BY e.viewed_at DESC, e.identifiable DESC))[1] AS last_view_identifiable,
               count(*) AS views, sum(e.counted) AS counted_views
          FROM evv e
         GROUP BY e.workspace_id, e.app_id, e.viewer_id
    ),
    app_viewers AS (
        INSERT INTO audience_internal.app_viewers AS av
               (workspace_id, app_id, viewer_id, first_viewed_at, last_viewed_at,
                last_view_identifiable, views, counted_views)
        SELECT b.workspace_id, b.app_id, b.viewer_id, b.first_viewed_at, b.last_viewed_at,
               b.last_view_identifiable, b.views, b.counted_views
          FROM batch_app_viewers b
         ORDER BY b.workspace_id, b.app_id, b.viewer_id
        ON CONFLICT (workspace_id, app_id, viewer_id) DO UPDATE
           SET (first_viewed_at, last_viewed_at, last_view_identifiable, views, counted_views) =
               (SELECT m.first_viewed_at, m.last_viewed_at, m.last_view_identifiable, m.views, m.counted_views
                  FROM audience_internal.merged_app_viewer(av, excluded) m)
        RETURNING av.workspace_id, av.app_id, av.viewer_id, av.counted_views
    ),
    -- A viewer enters the all-time total with its first counted view, that
    -- is when all its counted views so far are in this batch: its count
    -- after the batch equals the batch's.
    app_totals AS (
        INSERT INTO audience_internal.app_totals AS t (workspace_id, app_id, viewers, views)
        SELECT b.workspace_id, b.app_id, count(*) FILTER (WHERE u.counted_views = b.counted_views), sum(b.counted_views)
          FROM batch_app_viewers b
          JOIN app_viewers u ON u.workspace_id = b.workspace_id AND u.app_id = b.app_id AND u.viewer_id = b.viewer_id
         WHERE b.counted_views > 0
         GROUP BY b.workspace_id, b.app_id
         ORDER BY b.workspace_id, b.app_id
        ON CONFLICT (workspace_id, app_id) DO UPDATE
           SET viewers = t.viewers + excluded.viewers, views = t.views + excluded.views
        RETURNING 1
    ),
    app_month_viewers AS (
        INSERT INTO audience_internal.app_month_viewers (workspace_id, app_id, month, viewer_id)
        SELECT DISTINCT e.workspace_id, e.app_id, e.month, e.viewer_id
          FROM evv e
         WHERE (SELECT count(*) FROM app_totals) >= 0
         ORDER BY e.workspace_id, e.app_id, e.month, e.viewer_id
        ON CONFLICT DO NOTHING
        RETURNING workspace_id, app_id, month
    ),
    app_months AS (
        INSERT INTO audience_internal.app_months AS m (workspace_id, app_id, month, unique_viewers, views)
        SELECT c.workspace_id, c.app_id, c.month, count(*) FILTER (WHERE c.added), count(*) FILTER (WHERE NOT c.added)
          FROM (SELECT e.workspace_id, e.app_id, e.month, false AS added FROM evv e
                UNION ALL
                SELECT x.workspace_id, x.app_id, x.month, true FROM app_month_viewers x) c
         GROUP BY c.workspace_id, c.app_id, c.month
         ORDER BY c.workspace_id, c.app_id, c.month
        ON CONFLICT (workspace_id, app_id, month) DO UPDATE
           SET unique_viewers = m.unique_viewers + excluded.unique_viewers, views = m.views + excluded.views
        RETURNING 1
    ),
    workspace_month_viewers AS (
        INSERT INTO audience_internal.workspace_month_viewers (workspace_id, month, viewer_id)
        SELECT DISTINCT e.workspace_id, e.month, e.viewer_id
          FROM evv e
         WHERE (SELECT count(*) FROM app_months) >= 0
         ORDER BY e.workspace_id, e.month, e.viewer_id
        ON CONFLICT DO NOTHING
        RETURNING workspace_id, month
    ),
    workspace_months AS (
        INSERT INTO audience_internal.workspace_months AS m (workspace_id, month, unique_viewers, views)
        SELECT c.workspace_id, c.month, count(*) FILTER (WHERE c.added), count(*) FILTER (WHERE NOT c.added)
          FROM (SELECT e.workspace_id, e.month, false AS added FROM evv e
                UNION ALL
                SELECT x.workspace_id, x.month, true FROM workspace_month_viewers x) c
         GROUP BY c.workspace_id, c.month
         ORDER BY c.workspace_id, c.month
        ON CONFLICT (workspace_id, month) DO UPDATE
           SET unique_viewers = m.unique_viewers + excluded.unique_viewers, views = m.views + excluded.views
        RETURNING 1
    ),
    app_day_viewers AS (
        INSERT INTO audience_internal.app_day_viewers AS d
               (workspace_id, app_id, day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)
        SELECT e.workspace_id, e.app_id, e.day, e.viewer_id, e.identifiable,
               count(*) FILTER (WHERE e.kind = 'session'), count(*) FILTER (WHERE e.kind = 'visit'),
               sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at)), max(e.viewed_at)
          FROM evv e
         WHERE (SELECT count(*) FROM workspace_months) >= 0
         GROUP BY e.workspace_id, e.app_id, e.day, e.viewer_id, e.identifiable
         ORDER BY e.workspace_id, e.app_id, e.day, e.viewer_id, e.identifiable
        ON CONFLICT (workspace_id, app_id, day, viewer_id, identifiable) DO UPDATE
           SET (sessions, visits, session_micros, last_viewed_at) =
               (SELECT m.sessions, m.visits, m.session_micros, m.last_viewed_at
                  FROM audience_internal.merged_app_day_viewer(d, excluded) m)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM evv) + 0 * (SELECT count(*) FROM app_day_viewers)
    $fold$ INTO n_folded USING fold_pending.workspace_ids;
    RETURN n_folded;
END
$$;
COMMENT ON FUNCTION audience_internal.fold_pending(bigint[]) IS
    'Merges the pending events of these workspaces into every rollup, set-wise, and returns how many it folded.';
