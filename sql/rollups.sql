-- The rollups' rules, stated once: the buckets an event is counted in, which
-- view of a viewer is the latest, what a session adds, and how a set of
-- events is merged into every rollup (the fold). The tables are in
-- sql/schema.sql.
--
-- Every write reaches the rollups through the same fold steps
-- (fold_steps): the bulk paths of sql/bulk_ingest.sql (and through them
-- import_connect) run them over the events they store, in the same
-- statement; a single event waits in pending_folds until a fold of its
-- workspace moves it in (record_view folds every fold_every() events, and
-- forget_viewer and rollups_vs_rebuild fold before they read the rollups);
-- and rebuild_rollups runs them over all of a workspace's raw events, into
-- empty rollups. Reads add what is still pending to what the rollups hold
-- (sql/analytics.sql, sql/usage.sql), so when a fold runs changes no
-- answer. Two rules are stated elsewhere, each as the inverse of one here:
-- end_session's change of a folded session's time (sql/ingest.sql) and
-- forget_viewer's subtraction of a person (sql/forget.sql).

-- The calendar month and the day of an instant in a workspace's time zone:
-- the buckets of every monthly and daily rollup and of every read of them.
-- A day's month is the month of each of its instants.
CREATE FUNCTION audience_internal.day_of(at timestamptz, time_zone text)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (day_of.at AT TIME ZONE day_of.time_zone)::date $$;

CREATE FUNCTION audience_internal.month_of_day(day date)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT date_trunc('month', month_of_day.day)::date $$;

CREATE FUNCTION audience_internal.month_of(at timestamptz, time_zone text)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audience_internal.month_of_day(audience_internal.day_of(month_of.at, month_of.time_zone)) $$;

-- The time a view adds to its app's session time: an ended session's
-- duration, in microseconds; nothing for a visit or a session still open.
CREATE FUNCTION audience_internal.session_micros(kind text, viewed_at timestamptz, ended_at timestamptz)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN session_micros.kind = 'session' AND session_micros.ended_at IS NOT NULL
                THEN audience_internal.micros_between(session_micros.viewed_at, session_micros.ended_at) ELSE 0 END
$$;

-- Which of two views of a viewer is shown is the later one; whether it was
-- identifiable decides the label. For views at the same instant, either one
-- being identifiable counts. Reads decide a label with it, the fold merges
-- a kept rollup row with it, and the fold's set-wise form below is the same
-- rule over many views at once.
CREATE FUNCTION audience_internal.latest_identifiable(
    kept_at timestamptz, kept boolean, new_at timestamptz, new boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN new_at > kept_at THEN new WHEN new_at = kept_at THEN kept OR new ELSE kept END
$$;

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

-- The rollup tables, in the writers' lock order: each must always equal what
-- rebuild_rollups computes from the raw events (rollups_vs_rebuild).
CREATE FUNCTION audience_internal.rollup_tables()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['app_viewers', 'app_totals', 'app_months', 'workspace_months', 'app_days', 'workspace_days']
$$;

-- The fold's steps: the rest of one statement that merges a set of events
-- into every rollup and returns how many events it merged, after a CTE
-- `added` that the statement starts with (workspace_id, app_id, viewer_id,
-- viewed_at, ended_at, kind, identifiable of each event). fold() puts
-- before them a query of pending or raw events; the bulk path the INSERT
-- that stores its events, so that they reach the rollups in the statement
-- that stores them. Each data-modifying step starts only once the previous
-- one has finished (its result is counted in a one-time filter, or fully
-- read by a sort or an aggregate), which keeps the lock order of
-- sql/ingest.sql. Run with session_replication_role = replica (by fold() and
-- the bulk trigger: the rollup rows' foreign keys are not checked row by
-- row; the callers' locks keep every parent), and the work_mem and join
-- settings those set for big batches.
CREATE FUNCTION audience_internal.fold_steps()
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT $steps$
    -- The workspace settings as locked (every caller holds the lock
    -- already): a locking read returns the latest committed version, where
    -- the statement's snapshot may predate a configure_workspace that the
    -- caller's lock waited for.
    settings AS MATERIALIZED (
        SELECT w.workspace_id, w.time_zone, w.counting_start
          FROM audience_internal.workspaces w
         WHERE w.workspace_id IN (SELECT a.workspace_id FROM added a)
           FOR KEY SHARE
    ),
    -- The apps of the events that are public now, by a locking read for the
    -- reason above (set_app_visibility changes one under the workspace
    -- row's lock, and makes the public sets again; it holds the app row FOR
    -- UPDATE before it changes it, so that a key-share lock finds the new
    -- version). Every app of the events is locked and its visibility tested
    -- after: a test in the locking read would see the statement's snapshot
    -- first, and skip an app made public since without reading it again.
    batch_apps AS MATERIALIZED (
        SELECT a.workspace_id, a.app_id, a.visibility
          FROM audience_internal.apps a
         WHERE (a.workspace_id, a.app_id) IN (SELECT m.workspace_id, m.app_id FROM added m)
           FOR KEY SHARE
    ),
    public_apps AS MATERIALIZED (
        SELECT b.workspace_id, b.app_id FROM batch_apps b WHERE b.visibility = 'public'
    ),
    evv AS MATERIALIZED (
        SELECT m.workspace_id, m.app_id, m.viewer_id, m.viewed_at, m.ended_at, m.kind, m.identifiable,
               (m.viewed_at >= w.counting_start)::int AS counted,
               audience_internal.month_of(m.viewed_at, w.time_zone) AS month,
               audience_internal.day_of(m.viewed_at, w.time_zone) AS day
          FROM added m
          JOIN settings w ON w.workspace_id = m.workspace_id
    ),
    batch_app_viewers AS MATERIALIZED (
        SELECT e.workspace_id, e.app_id, e.viewer_id, min(e.viewed_at) AS first_viewed_at,
               max(e.viewed_at) AS last_viewed_at,
               -- latest_identifiable over a set: the latest view's, and of
               -- views at the same instant, either one identifiable counts.
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
    -- after the batch equals the batch's. (The one-time filter runs
    -- app_viewers first even for a batch of no counted views, whose join
    -- would not read it: left to the end of the statement, its inserts
    -- would come after the later tables' and break the lock order.)
    app_totals AS (
        INSERT INTO audience_internal.app_totals AS t (workspace_id, app_id, viewers, views)
        SELECT b.workspace_id, b.app_id, count(*) FILTER (WHERE u.counted_views = b.counted_views), sum(b.counted_views)
          FROM batch_app_viewers b
          JOIN app_viewers u ON u.workspace_id = b.workspace_id AND u.app_id = b.app_id AND u.viewer_id = b.viewer_id
         WHERE b.counted_views > 0
           AND (SELECT count(*) FROM app_viewers) >= 0
         GROUP BY b.workspace_id, b.app_id
         ORDER BY b.workspace_id, b.app_id
        ON CONFLICT (workspace_id, app_id) DO UPDATE
           SET viewers = t.viewers + excluded.viewers, views = t.views + excluded.views
        RETURNING 1
    ),
    -- A month's distinct viewers are its viewer set's size: the batch's set
    -- is merged into the kept one (viewer_set_merge), which gives both.
    app_months AS (
        INSERT INTO audience_internal.app_months AS m (workspace_id, app_id, month, unique_viewers, views, viewers)
        SELECT e.workspace_id, e.app_id, e.month, count(DISTINCT e.viewer_id), count(*),
               audience_internal.viewer_set(array_agg(e.viewer_id))
          FROM evv e
         WHERE (SELECT count(*) FROM app_totals) >= 0
         GROUP BY e.workspace_id, e.app_id, e.month
         ORDER BY e.workspace_id, e.app_id, e.month
        ON CONFLICT (workspace_id, app_id, month) DO UPDATE
           SET (viewers, unique_viewers) =
               (SELECT u.viewers, u.viewer_count FROM audience_internal.viewer_set_merge(m.viewers, excluded.viewers) u),
               views = m.views + excluded.views
        RETURNING 1
    ),
    -- The batch's packed counters of apps and of viewers per workspace and
    -- month, added to a month's own once it is over (close_months). Read
    -- only for such a month: a CTE is computed when first read, so a batch
    -- of the running month alone does not pack them.
    batch_month_packs AS MATERIALIZED (
        SELECT e.workspace_id, e.month,
               audience_internal.app_counts(array_agg(e.app_id), array_agg((e.kind = 'session')::int::bigint),
                                            array_agg((e.kind = 'visit')::int::bigint),
                                            array_agg(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at)))
                   AS apps,
               audience_internal.viewer_counts(array_agg(e.viewer_id), array_agg(e.identifiable),
                                               array_agg((e.kind = 'session')::int::bigint),
                                               array_agg((e.kind = 'visit')::int::bigint),
                                               array_agg(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at)),
                                               array_agg(e.viewed_at)) AS viewer_counts
          FROM evv e
         GROUP BY e.workspace_id, e.month
    ),
    workspace_months AS (
        INSERT INTO audience_internal.workspace_months AS m
               (workspace_id, month, unique_viewers, views, viewers, public_viewers, public_views)
        SELECT e.workspace_id, e.month, count(DISTINCT e.viewer_id), count(*),
               audience_internal.viewer_set(array_agg(e.viewer_id)),
               audience_internal.viewer_set(coalesce(array_agg(e.viewer_id) FILTER (WHERE p.app_id IS NOT NULL), '{}')),
               count(*) FILTER (WHERE p.app_id IS NOT NULL)
          FROM evv e
          LEFT JOIN public_apps p ON p.workspace_id = e.workspace_id AND p.app_id = e.app_id
         WHERE (SELECT count(*) FROM app_months) >= 0
         GROUP BY e.workspace_id, e.month
         ORDER BY e.workspace_id, e.month
        ON CONFLICT (workspace_id, month) DO UPDATE
           SET (viewers, unique_viewers) =
               (SELECT u.viewers, u.viewer_count FROM audience_internal.viewer_set_merge(m.viewers, excluded.viewers) u),
               views = m.views + excluded.views,
               public_viewers = audience_internal.viewer_set_union(ARRAY[m.public_viewers, excluded.public_viewers]),
               public_views = m.public_views + excluded.public_views,
               apps = CASE WHEN m.apps IS NOT NULL THEN
                          audience_internal.packed_counts_add(m.apps,
                              (SELECT p.apps FROM batch_month_packs p
                                WHERE p.workspace_id = m.workspace_id AND p.month = m.month)) END,
               viewer_counts = CASE WHEN m.viewer_counts IS NOT NULL THEN
                          audience_internal.packed_counts_add(m.viewer_counts,
                              (SELECT p.viewer_counts FROM batch_month_packs p
                                WHERE p.workspace_id = m.workspace_id AND p.month = m.month)) END
        RETURNING 1
    ),
    -- Each viewer's counters per app and day, identifiable views apart:
    -- packed per app and day (app_days.viewer_counts) and per workspace and
    -- day (workspace_days.viewer_counts).
    batch_app_day_viewers AS MATERIALIZED (
        SELECT e.workspace_id, e.app_id, e.day, e.viewer_id, e.identifiable,
               count(*) FILTER (WHERE e.kind = 'session') AS sessions, count(*) FILTER (WHERE e.kind = 'visit') AS visits,
               sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at))::bigint AS session_micros,
               max(e.viewed_at) AS last_viewed_at
          FROM evv e
         WHERE (SELECT count(*) FROM workspace_months) >= 0
         GROUP BY e.workspace_id, e.app_id, e.day, e.viewer_id, e.identifiable
    ),
    -- A day row's counters add up and its viewer sets and packed counters
    -- unite; a workspace day's are those of its apps' day rows in the
    -- batch, and of its viewers' (a viewer's views of several apps in one
    -- entry).
    batch_app_days AS MATERIALIZED (
        SELECT v.workspace_id, v.app_id, v.day, sum(v.sessions)::bigint AS sessions, sum(v.visits)::bigint AS visits,
               sum(v.session_micros)::bigint AS session_micros,
               audience_internal.viewer_set(array_agg(v.viewer_id)) AS viewers,
               audience_internal.viewer_counts(array_agg(v.viewer_id), array_agg(v.identifiable), array_agg(v.sessions),
                                               array_agg(v.visits), array_agg(v.session_micros),
                                               array_agg(v.last_viewed_at)) AS viewer_counts
          FROM batch_app_day_viewers v
         GROUP BY v.workspace_id, v.app_id, v.day
    ),
    app_days AS (
        INSERT INTO audience_internal.app_days AS d
               (workspace_id, app_id, day, sessions, visits, session_micros, viewers, viewer_counts)
        SELECT b.workspace_id, b.app_id, b.day, b.sessions, b.visits, b.session_micros, b.viewers, b.viewer_counts
          FROM batch_app_days b
         ORDER BY b.workspace_id, b.app_id, b.day
        ON CONFLICT (workspace_id, app_id, day) DO UPDATE
           SET sessions = d.sessions + excluded.sessions, visits = d.visits + excluded.visits,
               session_micros = d.session_micros + excluded.session_micros,
               viewers = audience_internal.viewer_set_union(ARRAY[d.viewers, excluded.viewers]),
               viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, excluded.viewer_counts)
        RETURNING 1
    ),
    batch_day_viewers AS MATERIALIZED (
        SELECT v.workspace_id, v.day,
               audience_internal.viewer_counts(array_agg(v.viewer_id), array_agg(v.identifiable), array_agg(v.sessions),
                                               array_agg(v.visits), array_agg(v.session_micros),
                                               array_agg(v.last_viewed_at)) AS viewer_counts
          FROM batch_app_day_viewers v
         WHERE (SELECT count(*) FROM app_days) >= 0
         GROUP BY v.workspace_id, v.day
    ),
    workspace_days AS (
        INSERT INTO audience_internal.workspace_days AS d
               (workspace_id, day, sessions, visits, session_micros, viewers, apps, viewer_counts)
        SELECT b.workspace_id, b.day, b.sessions, b.visits, b.session_micros, b.viewers, b.apps, v.viewer_counts
          FROM (SELECT b.workspace_id, b.day, sum(b.sessions) AS sessions, sum(b.visits) AS visits,
                       sum(b.session_micros) AS session_micros,
                       audience_internal.viewer_set_union(array_agg(b.viewers)) AS viewers,
                       audience_internal.app_counts(array_agg(b.app_id), array_agg(b.sessions), array_agg(b.visits),
                                                    array_agg(b.session_micros::bigint)) AS apps
                  FROM batch_app_days b
                 GROUP BY b.workspace_id, b.day) b
          JOIN batch_day_viewers v ON v.workspace_id = b.workspace_id AND v.day = b.day
         ORDER BY b.workspace_id, b.day
        ON CONFLICT (workspace_id, day) DO UPDATE
           SET sessions = d.sessions + excluded.sessions, visits = d.visits + excluded.visits,
               session_micros = d.session_micros + excluded.session_micros,
               viewers = audience_internal.viewer_set_union(ARRAY[d.viewers, excluded.viewers]),
               apps = audience_internal.packed_counts_add(d.apps, excluded.apps),
               viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, excluded.viewer_counts)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM evv) + 0 * (SELECT count(*) FROM workspace_days)
$steps$ $$;

-- The views and the viewer set of the apps public now, for every month of
-- one workspace (workspace_months.public_views and public_viewers), made
-- again from the apps' month rollups: set_app_visibility runs it after a
-- change, under the workspace row's lock (the fold keeps them for the
-- events it merges, and events not folded yet are folded under the
-- visibility of their fold), and the 0.1.0 update fills them with it.
CREATE FUNCTION audience_internal.remake_public_sets(workspace_id bigint)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    UPDATE audience_internal.workspace_months wm
       SET public_viewers = p.viewers, public_views = p.views
      FROM (SELECT m.month,
                   audience_internal.viewer_set_union(
                       coalesce(array_agg(am.viewers) FILTER (WHERE a.visibility = 'public'), '{}')) AS viewers,
                   coalesce(sum(am.views) FILTER (WHERE a.visibility = 'public'), 0) AS views
              FROM audience_internal.workspace_months m
              LEFT JOIN audience_internal.app_months am ON am.workspace_id = m.workspace_id AND am.month = m.month
              LEFT JOIN audience_internal.apps a ON a.workspace_id = am.workspace_id AND a.app_id = am.app_id
             WHERE m.workspace_id = remake_public_sets.workspace_id
             GROUP BY m.month) p
     WHERE wm.workspace_id = remake_public_sets.workspace_id AND wm.month = p.month;
END
$$;

-- Merges a set of events into every rollup: `events`, a query over $1 (the
-- workspace ids), is a fold of pending events (fold_pending) or all of a
-- workspace's raw events (rebuild_rollups). Only a definer function of the
-- extension can call this (session_replication_role). work_mem and the join
-- settings: for batches of a million events; hashing scales where the
-- planner, guessing from stale statistics, would pick nested loops over a
-- large batch (`many`).
CREATE FUNCTION audience_internal.fold(workspace_ids bigint[], events text, many boolean)
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET session_replication_role = replica
SET work_mem = '256MB'
SET enable_nestloop = on
SET enable_mergejoin = on
AS $$
DECLARE
    n_folded bigint;
BEGIN
    IF fold.many THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
    END IF;
    EXECUTE 'WITH added AS (' || fold.events || '),' || audience_internal.fold_steps()
       INTO n_folded USING fold.workspace_ids;
    PERFORM audience_internal.close_months(fold.workspace_ids);
    RETURN n_folded;
END
$$;

-- Gives the months of these workspaces that are over in their time zone
-- their packed counters (workspace_months.apps and viewer_counts): the sums
-- of their days'. From then on every write that changes a day of the month
-- changes them too: the fold (fold_steps), end_session and forget_viewer,
-- each under the month row's lock. Run after each fold, in its
-- transaction. A month row that another transaction holds is skipped, for
-- a later fold to do: that transaction is changing the month's days (it
-- holds the row as the fold and end_session do, before they change a day
-- row), and waiting for it could deadlock, as it may wait for a day row
-- this one holds. The days are read after the lock is taken, by a
-- statement of their own, so they include every change committed before.
CREATE FUNCTION audience_internal.close_months(workspace_ids bigint[])
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT m.workspace_id, m.month
               FROM audience_internal.workspace_months m
               JOIN audience_internal.workspaces w ON w.workspace_id = m.workspace_id
              WHERE m.workspace_id = ANY (close_months.workspace_ids) AND m.viewer_counts IS NULL
                AND m.month < audience_internal.month_of(now(), w.time_zone)
              ORDER BY m.workspace_id, m.month
    LOOP
        PERFORM FROM audience_internal.workspace_months m
          WHERE m.workspace_id = r.workspace_id AND m.month = r.month AND m.viewer_counts IS NULL
            FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE audience_internal.workspace_months m
               SET (apps, viewer_counts) =
                   (SELECT audience_internal.packed_counts_sum(array_agg(d.apps)),
                           audience_internal.packed_counts_sum(array_agg(d.viewer_counts))
                      FROM audience_internal.workspace_days d
                     WHERE d.workspace_id = r.workspace_id
                       AND d.day >= r.month AND d.day < (r.month + interval '1 month')::date)
             WHERE m.workspace_id = r.workspace_id AND m.month = r.month;
        END IF;
    END LOOP;
END
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
CREATE FUNCTION audience_internal.fold_pending(workspace_ids bigint[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    n_pending bigint;
BEGIN
    PERFORM FROM audience_internal.workspaces w WHERE w.workspace_id = ANY (fold_pending.workspace_ids)
     ORDER BY w.workspace_id FOR KEY SHARE;
    SELECT count(*) INTO n_pending FROM audience_internal.pending_folds p WHERE p.workspace_id = ANY (fold_pending.workspace_ids);
    IF n_pending = 0 THEN
        RETURN 0;
    END IF;
    RETURN audience_internal.fold(fold_pending.workspace_ids,
        'DELETE FROM audience_internal.pending_folds p WHERE p.workspace_id = ANY ($1) RETURNING p.*',
        n_pending > 1000);
END
$$;
COMMENT ON FUNCTION audience_internal.fold_pending(bigint[]) IS
    'Merges the pending events of these workspaces into every rollup, set-wise, and returns how many it folded.';

-- Recomputes every rollup of a workspace from its raw events: after a change
-- of time zone or counting start, and to check that the rollups kept by the
-- folds are exact. The workspace row is locked first, FOR UPDATE, and the
-- rollups are emptied in the lock order of every writer (the top of
-- sql/ingest.sql): no ingest of the workspace is in progress while they are
-- rebuilt, and ingest that waited for the lock finds the rebuilt rows. The
-- rebuild counts every stored event, the pending ones too, in one fold.
CREATE FUNCTION audience_internal.rebuild_rollups(workspace_id bigint)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ws_id bigint;
    retired timestamptz;
    t text;
BEGIN
    SELECT w.workspace_id INTO ws_id FROM audience_internal.workspaces w
     WHERE w.workspace_id = rebuild_rollups.workspace_id FOR UPDATE;
    -- The rollups hold the retired months' events (audience.retire_events),
    -- the raw events no longer: rebuilt, those counts would be lost. Asked
    -- under a lock that a retirement in progress takes first: it commits,
    -- and is seen, before the events are read. Whether the workspace has
    -- an event before the retired instant, whatever its time zone was.
    LOCK TABLE ONLY audience_internal.view_events IN ACCESS SHARE MODE;
    retired := audience_internal.retired_before();
    IF EXISTS (SELECT FROM audience_internal.app_viewers av
                WHERE av.workspace_id = ws_id AND av.first_viewed_at < retired)
       OR EXISTS (SELECT FROM audience_internal.pending_folds p
                   WHERE p.workspace_id = ws_id AND p.viewed_at < retired) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('the time zone and counting start of this workspace cannot change: its rollups would be rebuilt from its raw events, and those before %s UTC were retired (retire_events)',
                             to_char(retired AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'));
    END IF;
    DELETE FROM audience_internal.pending_folds p WHERE p.workspace_id = ws_id;
    FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
        EXECUTE format('DELETE FROM audience_internal.%I t WHERE t.workspace_id = $1', t) USING ws_id;
    END LOOP;
    PERFORM audience_internal.fold(ARRAY[ws_id],
        'SELECT e.* FROM audience_internal.view_events e WHERE e.workspace_id = ANY ($1)', true);
END
$$;

-- Whether the rollups kept by the write paths are exact: for each of the
-- workspaces and each rollup table that differs from a rebuild from the raw
-- events, the number of rows only the kept rollup has, the number only the
-- rebuild has, and up to two of each (sample). No row when all is exact.
-- What it compares is the rollups as many folds, end_session and
-- forget_viewer left them with one fold of every event there is: the merges
-- (ON CONFLICT, the inverses of sql/ingest.sql and sql/forget.sql) and the
-- pending bookkeeping against none of them. That each answer counts what
-- plain SQL over the raw events counts is the exactness tests' to show.
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
    -- What the fold keeps is checked with every pending event folded, and
    -- every month that is over given its sums (as a rebuild gives them).
    PERFORM audience_internal.fold_pending(ids);
    PERFORM audience_internal.close_months(ids);
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
