-- The read path (docs/spec.md §3, Streamlit-style analytics), answered for the
-- requester (sql/requester.sql). Every answer comes from the rollups and the
-- few events not folded into them yet (sql/rollups.sql); none scans raw events.
--
-- Each answer is a SECURITY INVOKER function in schema audience that hands a
-- ticket naming its caller (src/privacy/requester.rs) to a SECURITY DEFINER
-- function in audience_internal: definer rights because readers hold no
-- privilege on the tables; search_path pinned so that no object of the
-- caller's can stand in for one of ours. A workspace or app the requester may
-- not see gives the same error as one that does not exist.
--
-- The wrapper and its definer body return the same named row type
-- (audience.<function>_row), so that a function's columns are stated once.
--
-- The wrapper's body is SQL-standard (BEGIN ATOMIC): what it calls is
-- resolved when it is created, so callers need no USAGE on audience_internal
-- and see nothing of it. Its SET clause keeps the planner from inlining it:
-- a plan a client caches then calls the public function, whose EXECUTE
-- privilege is checked as whoever runs the plan, and a refusal names it, not
-- what it calls.

CREATE FUNCTION audience_internal.check_count(value integer, argument text, max integer)
RETURNS integer LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF audience_internal.require(value, argument) NOT BETWEEN 1 AND max THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid argument "%s": must be between 1 and %s', argument, max);
    END IF;
    RETURN value;
END
$$;

CREATE TYPE audience.monthly_viewers_row AS (
    month date,
    unique_viewers bigint,
    views bigint,
    complete boolean);
COMMENT ON TYPE audience.monthly_viewers_row IS
    'One calendar month of workspace_monthly_viewers and app_monthly_viewers.';

-- Monthly unique viewers and views of a set of apps of one workspace, for
-- the last `months` months, months without views included. `apps` NULL means
-- the whole workspace, from its own rollup; one app from its own; several
-- apps from the union of their month viewer sets (a viewer member sees only
-- the apps the privacy rules allow, so their totals are over those apps):
-- where the apps include every app public now, as a viewer member's do, the
-- union of the month's set of the public apps (workspace_months) and of the
-- other apps' sets. The events not folded yet add their views, and their
-- viewers are united with the month's set. PL/pgSQL so that its plan is kept for
-- the session: a SQL function that is not inlined is planned anew at every
-- call, and this query costs more to plan than to run.
CREATE FUNCTION audience_internal.monthly_viewers(workspace_id bigint, apps bigint[], months integer)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
-- Planned for a thousand months (generate_series, when the number of
-- months is not known, as in a plan kept for the session) and a viewer
-- member's thousand apps, the query's estimate passes the default
-- jit_above_cost: compiling it took 290 ms of a 2 ms read.
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    tz text := (SELECT w.time_zone FROM audience_internal.workspaces w
                 WHERE w.workspace_id = monthly_viewers.workspace_id);
    current_month timestamp := audience_internal.month_of(now(), tz);
BEGIN
    RETURN QUERY
    WITH shown AS MATERIALIZED (
        -- For several apps: whether they include every public app, and those
        -- of them that are not public.
        SELECT coalesce(bool_and(s.app_id IS NOT NULL) FILTER (WHERE a.visibility = 'public'), true) AS all_public,
               coalesce(array_agg(a.app_id) FILTER (WHERE s.app_id IS NOT NULL AND a.visibility <> 'public'), '{}') AS others
          FROM audience_internal.apps a
          LEFT JOIN unnest(monthly_viewers.apps) s(app_id) ON s.app_id = a.app_id
         WHERE cardinality(monthly_viewers.apps) > 1 AND a.workspace_id = monthly_viewers.workspace_id
    ),
    pending AS MATERIALIZED (
        SELECT p.app_id, p.viewer_id, audience_internal.month_of(p.viewed_at, tz) AS month
          FROM audience_internal.pending_folds p
         WHERE p.workspace_id = monthly_viewers.workspace_id
           AND (monthly_viewers.apps IS NULL OR p.app_id = ANY (monthly_viewers.apps))
    )
    SELECT r.month, coalesce(c.unique_viewers, n.viewer_count), coalesce(c.views, 0) + n.views, r.complete
      -- The first days of the last `months` months, the current one last:
      -- counted in integers, whose series the planner sizes from its bounds
      -- when they are known. On a Citus worker, which runs this query with
      -- its own settings (not the function's jit = off) and the bounds
      -- known, a series of timestamps, guessed at a thousand rows, made the
      -- plan's cost pass jit_above_cost.
      FROM (SELECT (current_month + make_interval(months => k))::date AS month, k < 0 AS complete
              FROM generate_series(1 - monthly_viewers.months, 0) k) r
     CROSS JOIN LATERAL (
          SELECT count(*) AS views, count(DISTINCT p.viewer_id) AS viewer_count,
                 audience_internal.viewer_set(array_agg(p.viewer_id)) AS viewers
            FROM pending p WHERE p.month = r.month
     ) n
      -- The month's rollup row, its set united with the pending viewers'
      -- when there are any.
      LEFT JOIN LATERAL (
          SELECT CASE WHEN n.viewers IS NULL THEN wm.unique_viewers
                      ELSE audience_internal.viewer_set_count(ARRAY[wm.viewers, n.viewers]) END AS unique_viewers,
                 wm.views
            FROM audience_internal.workspace_months wm
           WHERE monthly_viewers.apps IS NULL AND wm.workspace_id = monthly_viewers.workspace_id AND wm.month = r.month
          UNION ALL
          SELECT CASE WHEN n.viewers IS NULL THEN am.unique_viewers
                      ELSE audience_internal.viewer_set_count(ARRAY[am.viewers, n.viewers]) END,
                 am.views
            FROM audience_internal.app_months am
           WHERE cardinality(monthly_viewers.apps) = 1 AND am.workspace_id = monthly_viewers.workspace_id AND am.app_id = monthly_viewers.apps[1] AND am.month = r.month
          UNION ALL
          -- Several apps: the union of their month sets (or of the public
          -- apps' set and the others') and of the pending events' viewers.
          SELECT audience_internal.viewer_set_count(array_agg(x.viewers) || n.viewers),
                 coalesce(sum(x.views), 0)::bigint
            FROM shown,
                 LATERAL (SELECT wm.public_viewers AS viewers, wm.public_views AS views
                            FROM audience_internal.workspace_months wm
                           WHERE shown.all_public AND cardinality(monthly_viewers.apps) > 1 AND wm.workspace_id = monthly_viewers.workspace_id AND wm.month = r.month
                          UNION ALL
                          SELECT am.viewers, am.views
                            FROM audience_internal.app_months am
                           WHERE shown.all_public AND cardinality(monthly_viewers.apps) > 1 AND am.workspace_id = monthly_viewers.workspace_id
                             AND am.app_id = ANY (shown.others) AND am.month = r.month
                          UNION ALL
                          SELECT am.viewers, am.views
                            FROM audience_internal.app_months am
                           WHERE NOT shown.all_public AND am.workspace_id = monthly_viewers.workspace_id
                             AND am.app_id = ANY (monthly_viewers.apps) AND am.month = r.month) x
          HAVING cardinality(monthly_viewers.apps) <> 1
      ) c ON true
     ORDER BY r.month;
END
$$;

CREATE FUNCTION audience_internal.workspace_monthly_viewers_for(ticket bytea, workspace text, months integer)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 12
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    ws record;
BEGIN
    ws := audience_internal.read_scope(ticket, workspace, NULL, false);
    PERFORM audience_internal.check_count(months, 'months', 1200);
    RETURN QUERY SELECT * FROM audience_internal.monthly_viewers(ws.workspace_id, ws.app_ids, months);
END
$$;

CREATE FUNCTION audience.workspace_monthly_viewers(workspace text, months integer DEFAULT 12)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 12
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.workspace_monthly_viewers_for(audience_internal.ticket(), workspace, months);
END;
COMMENT ON FUNCTION audience.workspace_monthly_viewers(text, integer) IS
    'Per calendar month (in the workspace''s time zone), the number of distinct viewers of the workspace''s apps that the requester may see, and of views, for the last `months` months; complete is false for the month in progress.';

CREATE FUNCTION audience_internal.app_monthly_viewers_for(ticket bytea, workspace text, app text, months integer)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 12
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    ws record;
BEGIN
    ws := audience_internal.read_scope(ticket, workspace, app, true);
    PERFORM audience_internal.check_count(months, 'months', 1200);
    RETURN QUERY SELECT * FROM audience_internal.monthly_viewers(ws.workspace_id, ws.app_ids, months);
END
$$;

CREATE FUNCTION audience.app_monthly_viewers(workspace text, app text, months integer DEFAULT 12)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 12
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.app_monthly_viewers_for(audience_internal.ticket(), workspace, app, months);
END;
COMMENT ON FUNCTION audience.app_monthly_viewers(text, text, integer) IS
    'Per calendar month (in the workspace''s time zone), the number of distinct viewers of one app and of its views, for the last `months` months; complete is false for the month in progress.';

CREATE FUNCTION audience_internal.app_total_viewers_for(ticket bytea, workspace text, app text)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    ws record;
BEGIN
    ws := audience_internal.read_scope(ticket, workspace, app, true);
    -- The rollup's count, and the viewers of events not folded yet who have
    -- no counted view in it.
    RETURN coalesce((SELECT t.viewers FROM audience_internal.app_totals t
                      WHERE t.workspace_id = ws.workspace_id AND t.app_id = ws.app_ids[1]), 0)
         + (SELECT count(DISTINCT p.viewer_id)
              FROM audience_internal.pending_folds p
              JOIN audience_internal.workspaces w ON w.workspace_id = p.workspace_id
             WHERE p.workspace_id = ws.workspace_id AND p.app_id = ws.app_ids[1] AND p.viewed_at >= w.counting_start
               AND NOT EXISTS (SELECT FROM audience_internal.app_viewers av
                                WHERE av.workspace_id = p.workspace_id AND av.app_id = p.app_id
                                  AND av.viewer_id = p.viewer_id AND av.counted_views > 0));
END
$$;

CREATE FUNCTION audience.app_total_viewers(workspace text, app text)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT audience_internal.app_total_viewers_for(audience_internal.ticket(), workspace, app);
END;
COMMENT ON FUNCTION audience.app_total_viewers(text, text) IS
    'All-time number of distinct viewers of an app, counted from the workspace''s counting start.';

CREATE TYPE audience.all_monthly_viewers_row AS (
    workspace text,
    app text,
    month date,
    month_start timestamptz,
    unique_viewers bigint,
    views bigint,
    complete boolean);
COMMENT ON TYPE audience.all_monthly_viewers_row IS
    'One month of a workspace (app NULL) or of an app, as all_monthly_viewers answers.';

-- The first month (in the workspace's time zone) with a view of any of
-- these apps, folded or not; NULL when they have none.
CREATE FUNCTION audience_internal.first_month(workspace_id bigint, apps bigint[])
RETURNS date LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    tz text := (SELECT w.time_zone FROM audience_internal.workspaces w WHERE w.workspace_id = first_month.workspace_id);
BEGIN
    RETURN least((SELECT min(am.month) FROM audience_internal.app_months am
                   WHERE am.workspace_id = first_month.workspace_id AND am.app_id = ANY (first_month.apps)),
                 (SELECT min(audience_internal.month_of(p.viewed_at, tz))
                    FROM audience_internal.pending_folds p
                   WHERE p.workspace_id = first_month.workspace_id AND p.app_id = ANY (first_month.apps)));
END
$$;

-- Every month with data, for a BI tool's chart: for each workspace the
-- requester sees, the workspace as a whole (over the apps the requester
-- sees, as workspace_monthly_viewers counts it) from its first month with a
-- view, and each app from its own; empty months in between included.
CREATE FUNCTION audience_internal.all_monthly_viewers_for(ticket bytea)
RETURNS SETOF audience.all_monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 240
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    tz text;
    current_month date;
    shown_app text;
    shown_ids bigint[];
    since date;
BEGIN
    PERFORM audience_internal.enter(ticket);
    FOR ws IN
        SELECT r.workspace_id, r.workspace, bool_and(r.access = 'all') AS whole,
               array_agg(r.app_id ORDER BY r.app) AS app_ids, array_agg(r.app ORDER BY r.app) AS apps
          FROM audience_internal.requester_apps() r
         GROUP BY r.workspace_id, r.workspace
         ORDER BY r.workspace
    LOOP
        tz := (SELECT w.time_zone FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id);
        current_month := audience_internal.month_of(now(), tz);
        -- The workspace as a whole (0), then each app.
        FOR i IN 0 .. cardinality(ws.app_ids) LOOP
            shown_app := ws.apps[i];
            shown_ids := CASE WHEN i > 0 THEN ARRAY[ws.app_ids[i]] WHEN NOT ws.whole THEN ws.app_ids END;
            since := audience_internal.first_month(ws.workspace_id, coalesce(shown_ids, ws.app_ids));
            CONTINUE WHEN since IS NULL;
            RETURN QUERY
            SELECT ws.workspace, shown_app, m.month, m.month::timestamp AT TIME ZONE tz,
                   m.unique_viewers, m.views, m.complete
              FROM audience_internal.monthly_viewers(
                       ws.workspace_id, shown_ids,
                       least(1200, (extract(year FROM age(current_month, since)) * 12
                                    + extract(month FROM age(current_month, since)))::integer + 1)) m;
        END LOOP;
    END LOOP;
END
$$;

CREATE FUNCTION audience.all_monthly_viewers()
RETURNS SETOF audience.all_monthly_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 240
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.all_monthly_viewers_for(audience_internal.ticket());
END;
COMMENT ON FUNCTION audience.all_monthly_viewers() IS
    'Every month with data, for each workspace the requester sees (app NULL: its apps the requester may see, together) and each app, from the first month with a view to the month in progress: distinct viewers, views, month_start (the month''s first instant in the workspace''s time zone), complete.';

CREATE TYPE audience.recent_viewers_row AS (
    viewer text,
    viewer_ref text,
    pseudonymous boolean,
    last_viewed_at timestamptz,
    last_viewed text,
    views bigint);
COMMENT ON TYPE audience.recent_viewers_row IS
    'One viewer of recent_viewers.';

CREATE FUNCTION audience_internal.recent_viewers_for(ticket bytea, workspace text, app text, max_viewers integer)
RETURNS SETOF audience.recent_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 20
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    viewer_ids bigint[];
    seen_at timestamptz[];
    seen_identifiable boolean[];
    view_counts bigint[];
BEGIN
    ws := audience_internal.read_scope(recent_viewers_for.ticket, recent_viewers_for.workspace, recent_viewers_for.app, true);
    PERFORM audience_internal.check_count(recent_viewers_for.max_viewers, 'max_viewers', 1000);
    -- The most recent viewers of the rollup, and every viewer of an event
    -- not folded yet, merged as the fold would merge them: no other viewer
    -- can be among the most recent. Then their labels.
    WITH pending AS MATERIALIZED (
        SELECT p.workspace_id, p.viewer_id, max(p.viewed_at) AS last_viewed_at,
               (array_agg(p.identifiable ORDER BY p.viewed_at DESC, p.identifiable DESC))[1] AS last_view_identifiable,
               count(*) AS views
          FROM audience_internal.pending_folds p
         WHERE p.workspace_id = ws.workspace_id AND p.app_id = ws.app_ids[1]
         GROUP BY p.workspace_id, p.viewer_id
    ),
    merged AS (
        SELECT coalesce(a.workspace_id, p.workspace_id) AS workspace_id, coalesce(a.viewer_id, p.viewer_id) AS viewer_id,
               greatest(a.last_viewed_at, p.last_viewed_at) AS last_viewed_at,
               CASE WHEN a.viewer_id IS NULL THEN p.last_view_identifiable
                    WHEN p.viewer_id IS NULL THEN a.last_view_identifiable
                    ELSE audience_internal.latest_identifiable(a.last_viewed_at, a.last_view_identifiable,
                                                               p.last_viewed_at, p.last_view_identifiable) END
                   AS last_view_identifiable,
               coalesce(a.views, 0) + coalesce(p.views, 0) AS views
          FROM ((SELECT x.workspace_id, x.viewer_id, x.last_viewed_at, x.last_view_identifiable, x.views
                   FROM audience_internal.app_viewers x
                  WHERE x.workspace_id = ws.workspace_id AND x.app_id = ws.app_ids[1]
                  ORDER BY x.last_viewed_at DESC, x.viewer_id DESC
                  LIMIT recent_viewers_for.max_viewers)
                UNION
                -- A lookup per pending viewer, whatever the plan: a generic
                -- plan, which guesses one row of the app's viewers, would
                -- read them all to join them to a pending set that is
                -- mostly empty.
                SELECT x.workspace_id, x.viewer_id, x.last_viewed_at, x.last_view_identifiable, x.views
                  FROM pending q
                 CROSS JOIN LATERAL (
                      SELECT y.* FROM audience_internal.app_viewers y
                       WHERE y.workspace_id = ws.workspace_id AND y.app_id = ws.app_ids[1] AND y.viewer_id = q.viewer_id
                       LIMIT 1) x) a
          FULL JOIN pending p ON p.viewer_id = a.viewer_id
    )
    SELECT array_agg(m.viewer_id ORDER BY m.last_viewed_at DESC, m.viewer_id DESC),
           array_agg(m.last_viewed_at ORDER BY m.last_viewed_at DESC, m.viewer_id DESC),
           array_agg(m.last_view_identifiable ORDER BY m.last_viewed_at DESC, m.viewer_id DESC),
           array_agg(m.views ORDER BY m.last_viewed_at DESC, m.viewer_id DESC)
      INTO viewer_ids, seen_at, seen_identifiable, view_counts
      FROM (SELECT * FROM merged ORDER BY merged.last_viewed_at DESC, merged.viewer_id DESC
             LIMIT recent_viewers_for.max_viewers) m;
    RETURN QUERY
    SELECT l.viewer, l.viewer_ref, l.pseudonymous, seen_at[l.n], audience.relative_time(seen_at[l.n], now()), view_counts[l.n]
      FROM audience_internal.labels(ws.workspace_id, viewer_ids, NULL, seen_at, seen_identifiable) l
     ORDER BY l.n;
END
$$;

CREATE FUNCTION audience.recent_viewers(workspace text, app text, max_viewers integer DEFAULT 20)
RETURNS SETOF audience.recent_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.recent_viewers_for(audience_internal.ticket(), workspace, app, max_viewers);
END;
COMMENT ON FUNCTION audience.recent_viewers(text, text, integer) IS
    'The most recent distinct viewers of an app, newest first: label (identity or pseudonym), stable opaque viewer_ref, whether the label is a pseudonym, time of the last view, that time in words, and the viewer''s number of views.';

COMMENT ON FUNCTION audience.relative_time(timestamptz, timestamptz) IS
    'How long before `now` the time `at` was, in words: just now, 5 minutes ago, yesterday, 4 days ago, 2 months ago.';

CREATE TYPE audience.visible_apps_row AS (
    workspace text,
    app text,
    name text,
    visibility text);
COMMENT ON TYPE audience.visible_apps_row IS
    'One app of visible_apps.';

CREATE FUNCTION audience_internal.visible_apps_for(ticket bytea)
RETURNS SETOF audience.visible_apps_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 50
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
    PERFORM audience_internal.enter(ticket);
    RETURN QUERY
    SELECT r.workspace, r.app, r.name, r.visibility
      FROM audience_internal.requester_apps() r
     ORDER BY r.workspace, r.app;
END
$$;

CREATE FUNCTION audience.visible_apps()
RETURNS SETOF audience.visible_apps_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 50
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.visible_apps_for(audience_internal.ticket());
END;
COMMENT ON FUNCTION audience.visible_apps() IS
    'The apps whose analytics the requester may see: workspace, app, name and current visibility.';

-- Views for BI tools: browsable like tables, each answering for whoever
-- queries it. Their rows come from the functions above, which apply the
-- privacy rules before any row exists, so no predicate of the caller's (a
-- leaky function in a WHERE clause) ever sees a row it should not; they are
-- security barriers besides.

CREATE VIEW audience.apps WITH (security_barrier) AS
    SELECT * FROM audience.visible_apps();
COMMENT ON VIEW audience.apps IS 'The apps whose analytics the current requester may see.';

CREATE VIEW audience.workspace_monthly_viewers WITH (security_barrier) AS
    SELECT w.workspace, m.month, m.unique_viewers, m.views, m.complete
      FROM (SELECT DISTINCT workspace FROM audience.visible_apps()) w,
           LATERAL audience.workspace_monthly_viewers(w.workspace) m;
COMMENT ON VIEW audience.workspace_monthly_viewers IS
    'For each workspace the current requester sees: distinct viewers and views per calendar month, last 12 months; complete is false for the month in progress.';

CREATE VIEW audience.app_monthly_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, m.month, m.unique_viewers, m.views, m.complete
      FROM audience.visible_apps() a,
           LATERAL audience.app_monthly_viewers(a.workspace, a.app) m;
COMMENT ON VIEW audience.app_monthly_viewers IS
    'For each app the current requester sees: distinct viewers and views per calendar month, last 12 months; complete is false for the month in progress.';

CREATE VIEW audience.app_total_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, audience.app_total_viewers(a.workspace, a.app) AS total_viewers
      FROM audience.visible_apps() a;
COMMENT ON VIEW audience.app_total_viewers IS
    'For each app the current requester sees: all-time distinct viewers since the workspace''s counting start.';

CREATE VIEW audience.recent_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, r.viewer, r.viewer_ref, r.pseudonymous, r.last_viewed_at, r.last_viewed, r.views
      FROM audience.visible_apps() a,
           LATERAL audience.recent_viewers(a.workspace, a.app) r;
COMMENT ON VIEW audience.recent_viewers IS
    'For each app the current requester sees: its 20 most recent distinct viewers, labelled by identity or pseudonym, with viewer_ref, last view and number of views.';

-- Every month with data, for charts over the whole history.
CREATE VIEW audience.all_monthly_viewers WITH (security_barrier) AS
    SELECT * FROM audience.all_monthly_viewers();
COMMENT ON VIEW audience.all_monthly_viewers IS
    'For each workspace the current requester sees (app NULL) and each of its apps: distinct viewers and views of every calendar month from the first with a view to the month in progress, with month_start for a time axis; complete is false for the month in progress.';
