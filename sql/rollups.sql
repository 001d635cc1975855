-- The rollups' rules, stated once: the buckets an event is counted in, which
-- view of a viewer is the latest, what a session adds, and how a set of
-- events is merged into every rollup (the fold). The tables are in
-- sql/schema.sql.
--
-- Every write reaches the rollups through the same fold (fold_batch): the
-- bulk paths of sql/bulk_ingest.sql (and through them import_connect) run
-- it over the events they store, in the same statement; a single event
-- waits in pending_folds until a fold of its workspace moves it in
-- (record_view folds every fold_every() events, and forget_viewer and
-- rollups_vs_rebuild fold before they read the rollups); and
-- rebuild_rollups runs it over all of a workspace's raw events, into empty
-- rollups. Reads add what is still pending to what the rollups hold
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

-- The rollup tables, in the writers' lock order: each must always equal what
-- rebuild_rollups computes from the raw events (rollups_vs_rebuild).
CREATE FUNCTION audience_internal.rollup_tables()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['app_viewers', 'app_totals', 'app_months', 'workspace_months', 'app_days', 'workspace_days']
$$;

-- Merges a batch of one workspace's events into every rollup and returns how
-- many it merged: the pending events of a fold (fold_pending), all of a
-- workspace's raw events (rebuild_rollups), or the events a bulk statement
-- stores (sql/bulk_ingest.sql). The batch comes as arrays of one length, an
-- entry per event, taken once by the caller; each rollup is then written by
-- a statement of its own, over the batch and the workspace's rows only, in
-- the lock order of sql/ingest.sql, each rollup row once and in primary-key
-- order. So it runs alike on one server and on Citus, which routes each
-- statement to the shards of the workspace (docs/citus.md): no statement
-- reads a table and writes another, and ON CONFLICT calls only functions of
-- the rows' columns.
--
-- The caller holds the workspace's lock (the lock order at the top of
-- sql/ingest.sql); the settings and the apps' visibility read here are
-- therefore the latest committed ones, as every statement of a function
-- takes a new snapshot. Only a definer function of the extension can call
-- this: session_replication_role = replica leaves the rollup rows' foreign
-- keys unchecked row by row (the caller's lock keeps every parent).
-- work_mem is for batches of a million events, and each statement is
-- planned for its batch.
CREATE FUNCTION audience_internal.fold_batch(
    workspace_id bigint, app_ids bigint[], viewer_ids bigint[], viewed_ats timestamptz[],
    ended_ats timestamptz[], kinds text[], identifiables boolean[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET session_replication_role = replica
SET work_mem = '256MB'
SET plan_cache_mode = force_custom_plan
SET enable_nestloop = on
SET enable_mergejoin = on
AS $$
#variable_conflict use_column
DECLARE
    ws bigint := fold_batch.workspace_id;
    tz text;
    counting_from timestamptz;
    public_ids bigint[];
    days date[];
    -- The batch's counters per app, day, viewer and kind of view: the
    -- entries of the day rows' packed counters.
    d_apps bigint[];
    d_days date[];
    d_viewers bigint[];
    d_identifiable boolean[];
    d_sessions bigint[];
    d_visits bigint[];
    d_micros bigint[];
    d_last timestamptz[];
    t_apps bigint[];
    t_viewers bigint[];
    t_views bigint[];
    closed date[];
BEGIN
    IF coalesce(cardinality(fold_batch.app_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- The planner guesses the size of a join with rows just written: for a
    -- big batch it would join by nested loops (quadratic) or by sorting,
    -- where hashing is what scales. (The settings end with this function.)
    IF cardinality(fold_batch.app_ids) > 1000 THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
    END IF;
    SELECT w.time_zone, w.counting_start INTO tz, counting_from
      FROM audience_internal.workspaces w WHERE w.workspace_id = ws;
    public_ids := ARRAY(SELECT a.app_id FROM audience_internal.apps a
                         WHERE a.workspace_id = ws AND a.visibility = 'public'
                           AND a.app_id = ANY (ARRAY(SELECT DISTINCT x FROM unnest(fold_batch.app_ids) x)));
    days := ARRAY(SELECT audience_internal.day_of(x, tz) FROM unnest(fold_batch.viewed_ats) x);

    -- A viewer's row per app; a viewer enters the app's all-time total with
    -- its first counted view, that is when all its counted views so far are
    -- in this batch: its count after the merge equals the batch's.
    WITH b AS MATERIALIZED (
        SELECT e.app_id, e.viewer_id, min(e.viewed_at) AS first_viewed_at, max(e.viewed_at) AS last_viewed_at,
               -- latest_identifiable over a set: the latest view's, and of
               -- views at the same instant, either one identifiable counts.
               (array_agg(e.identifiable ORDER BY e.viewed_at DESC, e.identifiable DESC))[1] AS last_view_identifiable,
               count(*) AS views, count(*) FILTER (WHERE e.viewed_at >= counting_from) AS counted_views
          FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, fold_batch.viewed_ats, fold_batch.identifiables)
               e(app_id, viewer_id, viewed_at, identifiable)
         GROUP BY e.app_id, e.viewer_id
    ),
    merged AS (
        INSERT INTO audience_internal.app_viewers AS av
               (workspace_id, app_id, viewer_id, first_viewed_at, last_viewed_at,
                last_view_identifiable, views, counted_views)
        SELECT ws, b.app_id, b.viewer_id, b.first_viewed_at, b.last_viewed_at,
               b.last_view_identifiable, b.views, b.counted_views
          FROM b
         ORDER BY b.app_id, b.viewer_id
        ON CONFLICT (workspace_id, app_id, viewer_id) DO UPDATE
           SET first_viewed_at = least(av.first_viewed_at, excluded.first_viewed_at),
               last_viewed_at = greatest(av.last_viewed_at, excluded.last_viewed_at),
               last_view_identifiable = audience_internal.latest_identifiable(
                   av.last_viewed_at, av.last_view_identifiable, excluded.last_viewed_at, excluded.last_view_identifiable),
               views = av.views + excluded.views,
               counted_views = av.counted_views + excluded.counted_views
        RETURNING av.app_id, av.viewer_id, av.counted_views
    )
    SELECT array_agg(t.app_id), array_agg(t.viewers), array_agg(t.views) INTO t_apps, t_viewers, t_views
      FROM (SELECT b.app_id, count(*) FILTER (WHERE m.counted_views = b.counted_views) AS viewers,
                   sum(b.counted_views)::bigint AS views
              FROM b JOIN merged m ON m.app_id = b.app_id AND m.viewer_id = b.viewer_id
             WHERE b.counted_views > 0
             GROUP BY b.app_id
             ORDER BY b.app_id) t;

    INSERT INTO audience_internal.app_totals AS t (workspace_id, app_id, viewers, views)
    SELECT ws, x.app_id, x.viewers, x.views
      FROM unnest(t_apps, t_viewers, t_views) x(app_id, viewers, views)
     ORDER BY x.app_id
    ON CONFLICT (workspace_id, app_id) DO UPDATE
       SET viewers = t.viewers + excluded.viewers, views = t.views + excluded.views;

    -- A month's distinct viewers are its viewer set's size: the batch's set
    -- is merged into the kept one (viewer_set_merge), which gives both.
    INSERT INTO audience_internal.app_months AS m (workspace_id, app_id, month, unique_viewers, views, viewers)
    SELECT ws, e.app_id, e.month, count(DISTINCT e.viewer_id), count(*), audience_internal.viewer_set(array_agg(e.viewer_id))
      FROM (SELECT x.app_id, x.viewer_id, audience_internal.month_of_day(x.day) AS month
              FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, days) x(app_id, viewer_id, day)) e
     GROUP BY e.app_id, e.month
     ORDER BY e.app_id, e.month
    ON CONFLICT (workspace_id, app_id, month) DO UPDATE
       SET (viewers, unique_viewers) =
           (SELECT u.viewers, u.viewer_count FROM audience_internal.viewer_set_merge(m.viewers, excluded.viewers) u),
           views = m.views + excluded.views;

    WITH merged AS (
        INSERT INTO audience_internal.workspace_months AS m
               (workspace_id, month, unique_viewers, views, viewers, public_viewers, public_views)
        SELECT ws, e.month, count(DISTINCT e.viewer_id), count(*),
               audience_internal.viewer_set(array_agg(e.viewer_id)),
               audience_internal.viewer_set(coalesce(array_agg(e.viewer_id) FILTER (WHERE e.app_id = ANY (public_ids)), '{}')),
               count(*) FILTER (WHERE e.app_id = ANY (public_ids))
          FROM (SELECT x.app_id, x.viewer_id, audience_internal.month_of_day(x.day) AS month
                  FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, days) x(app_id, viewer_id, day)) e
         GROUP BY e.month
         ORDER BY e.month
        ON CONFLICT (workspace_id, month) DO UPDATE
           SET (viewers, unique_viewers) =
               (SELECT u.viewers, u.viewer_count FROM audience_internal.viewer_set_merge(m.viewers, excluded.viewers) u),
               views = m.views + excluded.views,
               public_viewers = audience_internal.viewer_set_union(ARRAY[m.public_viewers, excluded.public_viewers]),
               public_views = m.public_views + excluded.public_views
        RETURNING m.month, m.viewer_counts IS NOT NULL AS closed
    )
    SELECT array_agg(merged.month) FILTER (WHERE merged.closed) INTO closed FROM merged;

    SELECT array_agg(v.app_id), array_agg(v.day), array_agg(v.viewer_id), array_agg(v.identifiable),
           array_agg(v.sessions), array_agg(v.visits), array_agg(v.session_micros), array_agg(v.last_viewed_at)
      INTO d_apps, d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last
      FROM (SELECT e.app_id, e.day, e.viewer_id, e.identifiable,
                   count(*) FILTER (WHERE e.kind = 'session') AS sessions, count(*) FILTER (WHERE e.kind = 'visit') AS visits,
                   sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at))::bigint AS session_micros,
                   max(e.viewed_at) AS last_viewed_at
              FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, fold_batch.viewed_ats, fold_batch.ended_ats,
                          fold_batch.kinds, fold_batch.identifiables, days)
                   e(app_id, viewer_id, viewed_at, ended_at, kind, identifiable, day)
             GROUP BY e.app_id, e.day, e.viewer_id, e.identifiable) v;

    -- A month that is over has the sums of its days' packed counters
    -- (close_months), which the batch's days add to, under the month row's
    -- lock taken just above.
    IF closed IS NOT NULL THEN
        UPDATE audience_internal.workspace_months m
           SET apps = audience_internal.packed_counts_add(m.apps, p.apps),
               viewer_counts = audience_internal.packed_counts_add(m.viewer_counts, p.viewer_counts)
          FROM (SELECT x.month,
                       audience_internal.app_counts(array_agg(x.app_id), array_agg(x.sessions), array_agg(x.visits),
                                                    array_agg(x.session_micros)) AS apps,
                       audience_internal.viewer_counts(array_agg(x.viewer_id), array_agg(x.identifiable),
                                                       array_agg(x.sessions), array_agg(x.visits),
                                                       array_agg(x.session_micros), array_agg(x.last_viewed_at)) AS viewer_counts
                  FROM (SELECT audience_internal.month_of_day(y.day) AS month, y.*
                          FROM unnest(d_apps, d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last)
                               y(app_id, day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)) x
                 WHERE x.month = ANY (closed)
                 GROUP BY x.month) p
         WHERE m.workspace_id = ws AND m.month = p.month;
    END IF;

    -- A day row's counters add up and its viewer sets and packed counters
    -- unite; a workspace day's are those of its apps' day rows in the
    -- batch, and of its viewers' (a viewer's views of several apps in one
    -- entry).
    INSERT INTO audience_internal.app_days AS d
           (workspace_id, app_id, day, sessions, visits, session_micros, viewers, viewer_counts)
    SELECT ws, v.app_id, v.day, sum(v.sessions)::bigint, sum(v.visits)::bigint, sum(v.session_micros)::bigint,
           audience_internal.viewer_set(array_agg(v.viewer_id)),
           audience_internal.viewer_counts(array_agg(v.viewer_id), array_agg(v.identifiable), array_agg(v.sessions),
                                           array_agg(v.visits), array_agg(v.session_micros), array_agg(v.last_viewed_at))
      FROM unnest(d_apps, d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last)
           v(app_id, day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)
     GROUP BY v.app_id, v.day
     ORDER BY v.app_id, v.day
    ON CONFLICT (workspace_id, app_id, day) DO UPDATE
       SET sessions = d.sessions + excluded.sessions, visits = d.visits + excluded.visits,
           session_micros = d.session_micros + excluded.session_micros,
           viewers = audience_internal.viewer_set_union(ARRAY[d.viewers, excluded.viewers]),
           viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, excluded.viewer_counts);

    INSERT INTO audience_internal.workspace_days AS d
           (workspace_id, day, sessions, visits, session_micros, viewers, apps, viewer_counts)
    SELECT ws, a.day, a.sessions, a.visits, a.session_micros, v.viewers, a.apps, v.viewer_counts
      FROM (SELECT x.day, sum(x.sessions)::bigint AS sessions, sum(x.visits)::bigint AS visits,
                   sum(x.session_micros)::bigint AS session_micros,
                   audience_internal.app_counts(array_agg(x.app_id), array_agg(x.sessions), array_agg(x.visits),
                                                array_agg(x.session_micros)) AS apps
              FROM (SELECT y.day, y.app_id, sum(y.sessions)::bigint AS sessions, sum(y.visits)::bigint AS visits,
                           sum(y.session_micros)::bigint AS session_micros
                      FROM unnest(d_apps, d_days, d_sessions, d_visits, d_micros) y(app_id, day, sessions, visits, session_micros)
                     GROUP BY y.day, y.app_id) x
             GROUP BY x.day) a
      JOIN (SELECT y.day, audience_internal.viewer_set(array_agg(y.viewer_id)) AS viewers,
                   audience_internal.viewer_counts(array_agg(y.viewer_id), array_agg(y.identifiable), array_agg(y.sessions),
                                                   array_agg(y.visits), array_agg(y.session_micros),
                                                   array_agg(y.last_viewed_at)) AS viewer_counts
              FROM unnest(d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last)
                   y(day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)
             GROUP BY y.day) v ON v.day = a.day
     ORDER BY a.day
    ON CONFLICT (workspace_id, day) DO UPDATE
       SET sessions = d.sessions + excluded.sessions, visits = d.visits + excluded.visits,
           session_micros = d.session_micros + excluded.session_micros,
           viewers = audience_internal.viewer_set_union(ARRAY[d.viewers, excluded.viewers]),
           apps = audience_internal.packed_counts_add(d.apps, excluded.apps),
           viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, excluded.viewer_counts);

    PERFORM audience_internal.close_months(ARRAY[ws]);
    RETURN cardinality(fold_batch.app_ids);
END
$$;

-- The views and the viewer set of the apps public now, for every month of
-- one workspace (workspace_months.public_views and public_viewers), made
-- again from the apps' month rollups: set_app_visibility runs it after a
-- change, under the workspace's lock (the fold keeps them for the
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

-- Gives the months of these workspaces that are over in their time zone
-- their packed counters (workspace_months.apps and viewer_counts): the sums
-- of their days'. From then on every write that changes a day of the month
-- changes them too: the fold (fold_batch), end_session and forget_viewer,
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
-- order (the top of sql/ingest.sql): the workspaces' locks, FOR KEY SHARE
-- (so no forget_viewer, delete_workspace or rebuild of them runs meanwhile:
-- the viewers and apps the events name stay), then, workspace by
-- workspace, the pending rows (deleted, so that a concurrent end_session
-- waits for this fold and then finds the event folded), then the rollups in
-- the writers' order. A pending row of a transaction still in progress is
-- not seen and waits for the next fold.
CREATE FUNCTION audience_internal.fold_pending(workspace_ids bigint[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := ARRAY(SELECT DISTINCT x FROM unnest(fold_pending.workspace_ids) x WHERE x IS NOT NULL ORDER BY 1);
    ws bigint;
    n_folded bigint := 0;
    app_ids bigint[];
    viewer_ids bigint[];
    viewed_ats timestamptz[];
    ended_ats timestamptz[];
    kinds text[];
    identifiables boolean[];
BEGIN
    FOREACH ws IN ARRAY ids LOOP
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws FOR KEY SHARE;
    END LOOP;
    FOREACH ws IN ARRAY ids LOOP
        WITH taken AS (
            DELETE FROM audience_internal.pending_folds p WHERE p.workspace_id = ws RETURNING p.*
        )
        SELECT array_agg(t.app_id), array_agg(t.viewer_id), array_agg(t.viewed_at), array_agg(t.ended_at),
               array_agg(t.kind), array_agg(t.identifiable)
          INTO app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables
          FROM taken t;
        n_folded := n_folded + audience_internal.fold_batch(ws, app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables);
    END LOOP;
    RETURN n_folded;
END
$$;
COMMENT ON FUNCTION audience_internal.fold_pending(bigint[]) IS
    'Merges the pending events of these workspaces into every rollup, set-wise, and returns how many it folded.';

-- Recomputes every rollup of a workspace from its raw events: after a change
-- of time zone or counting start, and to check that the rollups kept by the
-- folds are exact. The workspace's lock is taken first, FOR UPDATE, and the
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
    app_ids bigint[];
    viewer_ids bigint[];
    viewed_ats timestamptz[];
    ended_ats timestamptz[];
    kinds text[];
    identifiables boolean[];
BEGIN
    SELECT k.workspace_id INTO ws_id FROM audience_internal.workspace_keys k
     WHERE k.workspace_id = rebuild_rollups.workspace_id FOR UPDATE;
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
    SELECT array_agg(e.app_id), array_agg(e.viewer_id), array_agg(e.viewed_at), array_agg(e.ended_at),
           array_agg(e.kind), array_agg(e.identifiable)
      INTO app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables
      FROM audience_internal.view_events e WHERE e.workspace_id = ws_id;
    PERFORM audience_internal.fold_batch(ws_id, app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables);
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
    ids := ARRAY(SELECT DISTINCT k.workspace_id FROM audience_internal.workspace_keys k
                  WHERE k.workspace_id = ANY (rollups_vs_rebuild.workspace_ids)
                  ORDER BY k.workspace_id);
    FOREACH id IN ARRAY ids LOOP
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = id FOR UPDATE;
    END LOOP;
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
