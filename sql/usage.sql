-- The usage questions of Posit Connect's administrators, answered for the
-- requester (sql/requester.sql) with the same rules and wrappers as
-- sql/analytics.sql: who used an app and for how long, which apps are
-- popular, who the most active viewers are, usage by day, week or month,
-- whether viewership grows, who may open which app.
--
-- A window is `since` (inclusive) to `until` (exclusive). Its whole days (in
-- the workspace's time zone) are read from the day rollups and the events
-- not folded into them yet, its partial first and last days from the raw
-- events: counts and distinct viewers from app_days and workspace_days (a
-- row and a viewer set per day), the questions about people (top_viewers)
-- from the packed viewer counters of workspace_days (or, for some apps,
-- of app_days); the day the workspace's identification start
-- falls in is read from the raw events there. Labels are decided view by
-- view (sql/labels.sql): a person's identified and pseudonymous views are
-- never merged into one row.

CREATE FUNCTION audience_internal.check_window(since timestamptz, until timestamptz)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF NOT isfinite(audience_internal.require(since, 'since')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "since": must be a finite time';
    END IF;
    IF NOT isfinite(audience_internal.require(until, 'until')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "until": must be a finite time';
    END IF;
    IF until <= since THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'invalid argument "until": must be later than "since" (the window is empty)';
    END IF;
END
$$;

-- An amount of session time in microseconds as an interval in days and hours.
CREATE FUNCTION audience_internal.micros_interval(micros numeric)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT justify_hours(coalesce(micros_interval.micros, 0)::bigint * interval '1 microsecond')
$$;

-- How a window [since, until) splits in a workspace's days: the whole days
-- first_day <= day < end_day (none when first_day >= end_day), and the day
-- the identification start falls in (NULL without one), whose views are on
-- both sides of it. A first or last day that the window cuts counts as
-- whole when no view of it lies outside the window: a window up to now
-- leaves none of today's views out, and the day's rollup row then answers
-- for the day, where its raw events were read one by one. The raw events
-- are the witness, so a day of a retired month (retired_before) is never
-- taken whole. Each probe is planned for its bounds: it then reads one
-- partition's index, where a generic plan scanned every partition.
--
-- A read that can take views off (`subtract_first`) may also take a cut
-- first day whole when less of it lies before the window than in it:
-- `minus_before` is then `since`, and the raw views of first_day before it
-- come with their counts negated (unfolded_views). Counts subtract; a
-- viewer set does not, and such a read takes the day's viewers from its raw
-- events in the window. A window of 30 days up to now begins at the time
-- of day it is asked: for half of the day, most of its first day is in it,
-- and those views were read one by one.
CREATE FUNCTION audience_internal.window_days(
    workspace_id bigint, since timestamptz, until timestamptz, subtract_first boolean DEFAULT false)
RETURNS TABLE (time_zone text, first_day date, end_day date, identification_day date, minus_before timestamptz)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 1
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    w audience_internal.workspaces;
    starts timestamptz;
    ends timestamptz;
    raw_from timestamptz := coalesce(audience_internal.retired_before(), '-infinity');
BEGIN
    SELECT * INTO w FROM audience_internal.workspaces x WHERE x.workspace_id = window_days.workspace_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    time_zone := w.time_zone;
    identification_day := CASE WHEN isfinite(w.identification_start)
                               THEN audience_internal.day_of(w.identification_start, w.time_zone) END;
    first_day := audience_internal.day_of(window_days.since, w.time_zone);
    starts := first_day::timestamp AT TIME ZONE w.time_zone;
    ends := (first_day + 1)::timestamp AT TIME ZONE w.time_zone;
    IF starts < window_days.since
       AND (starts < raw_from
            OR EXISTS (SELECT FROM audience_internal.view_events x
                        WHERE x.workspace_id = window_days.workspace_id
                          AND x.viewed_at >= starts AND x.viewed_at < window_days.since)) THEN
        IF window_days.subtract_first AND starts >= raw_from AND ends <= window_days.until
           AND first_day IS DISTINCT FROM identification_day
           AND window_days.since - starts < ends - window_days.since THEN
            minus_before := window_days.since;
        ELSE
            first_day := first_day + 1;
        END IF;
    END IF;
    end_day := audience_internal.day_of(window_days.until, w.time_zone);
    starts := end_day::timestamp AT TIME ZONE w.time_zone;
    IF starts < window_days.until AND starts >= raw_from
       AND NOT EXISTS (SELECT FROM audience_internal.view_events x
                        WHERE x.workspace_id = window_days.workspace_id
                          AND x.viewed_at >= window_days.until
                          AND x.viewed_at < (end_day + 1)::timestamp AT TIME ZONE w.time_zone) THEN
        end_day := end_day + 1;
    END IF;
    RETURN NEXT;
END
$$;

-- The parts of a window outside its whole days: the time ranges whose raw
-- events a read adds to the day rollups (none beside a cut day taken whole).
CREATE FUNCTION audience_internal.window_edges(
    since timestamptz, until timestamptz, time_zone text, first_day date, end_day date)
RETURNS TABLE (lo timestamptz, hi timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT e.lo, e.hi
      FROM (SELECT window_edges.since AS lo,
                   CASE WHEN window_edges.first_day < window_edges.end_day
                        THEN window_edges.first_day::timestamp AT TIME ZONE window_edges.time_zone
                        ELSE window_edges.until END AS hi
            UNION ALL
            SELECT window_edges.end_day::timestamp AT TIME ZONE window_edges.time_zone, window_edges.until
             WHERE window_edges.first_day < window_edges.end_day) e
     WHERE e.lo < e.hi
$$;

-- Which packed counters (every app's, every viewer's) answer for a
-- window's whole days first_day <= day < end_day, each by the day or month
-- it starts (`at`, `monthly`): the sums of the months that are over
-- (workspace_months.apps and viewer_counts, kept by close_months) that the
-- window holds whole, and of the one it starts in when it holds more of
-- that month's days than it leaves out before first_day; the days of that
-- month before the window, to be taken off (`take_off`); and each other
-- whole day (workspace_days). A month's views taken off are earlier than
-- the window's, so each viewer's latest view in it is one in the window.
-- The day `apart` is in no value, and its month is not summed (top_viewers
-- labels that day's views two ways: the identification start falls in it).
-- The keys only: a read fetches the values in the statement that sums
-- them, so that they are read where they are stored (on Citus, by the
-- worker that answers) and not copied on the way.
CREATE FUNCTION audience_internal.window_values(workspace_id bigint, first_day date, end_day date, apart date)
RETURNS TABLE (at date, monthly boolean, take_off boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    WITH months AS MATERIALIZED (
        SELECT m.month
          FROM audience_internal.workspace_months m
         WHERE m.workspace_id = window_values.workspace_id AND m.viewer_counts IS NOT NULL
           AND m.month >= audience_internal.month_of_day(window_values.first_day)
           AND (m.month + interval '1 month')::date <= window_values.end_day
           AND window_values.first_day - m.month < (m.month + interval '1 month')::date - window_values.first_day
           AND m.month IS DISTINCT FROM audience_internal.month_of_day(window_values.apart)
    )
    SELECT m.month, true, false
      FROM months m
    UNION ALL
    SELECT d.day, false, true
      FROM months m
      JOIN audience_internal.workspace_days d
        ON d.workspace_id = window_values.workspace_id AND d.day >= m.month AND d.day < window_values.first_day
    UNION ALL
    SELECT d.day, false, false
      FROM audience_internal.workspace_days d
     WHERE d.workspace_id = window_values.workspace_id
       AND d.day >= window_values.first_day AND d.day < window_values.end_day
       AND d.day IS DISTINCT FROM window_values.apart
       AND audience_internal.month_of_day(d.day) NOT IN (SELECT m.month FROM months m);
END
$$;

-- The views of some apps of one workspace in a window (`apps` NULL: every
-- app) that the day rollups do not hold, given the window's days as the
-- caller had them from window_days (whose probes are then not run twice):
-- the raw events of its edges, and the events of its whole days not
-- folded yet (pending_folds). A read that
-- cannot use the rollup of one whole day (`raw_day`) has its raw events
-- too. With `minus_before`, the raw events of first_day before it come
-- with their counts negated (sessions, visits and session time below
-- zero): the day's rollup and pending rows hold them, and the window does
-- not. Each range of raw events is planned for its own bounds, so that only
-- its partition is planned: planning every month's partition for bounds
-- known only when the query runs took longer than reading the events.
CREATE FUNCTION audience_internal.unfolded_views(
    workspace_id bigint, apps bigint[], since timestamptz, until timestamptz,
    time_zone text, first_day date, end_day date, raw_day date DEFAULT NULL, minus_before timestamptz DEFAULT NULL)
RETURNS TABLE (app_id bigint, day date, viewer_id bigint, sessions integer, visits integer, session_micros bigint,
               identifiable boolean, viewed_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    -- The ranges of raw events (sign -1: taken off), and then the pending rows.
    FOR r IN SELECT e.lo, e.hi, 1 AS sign, false AS pending
               FROM audience_internal.window_edges(unfolded_views.since, unfolded_views.until,
                                                    unfolded_views.time_zone, unfolded_views.first_day, unfolded_views.end_day) e
             UNION ALL
             SELECT unfolded_views.raw_day::timestamp AT TIME ZONE unfolded_views.time_zone,
                    (unfolded_views.raw_day + 1)::timestamp AT TIME ZONE unfolded_views.time_zone, 1, false
              WHERE unfolded_views.raw_day >= unfolded_views.first_day AND unfolded_views.raw_day < unfolded_views.end_day
             UNION ALL
             SELECT unfolded_views.first_day::timestamp AT TIME ZONE unfolded_views.time_zone, unfolded_views.minus_before, -1, false
              WHERE unfolded_views.minus_before IS NOT NULL
             UNION ALL
             SELECT NULL, NULL, 1, true
    LOOP
        RETURN QUERY
        SELECT x.app_id, audience_internal.day_of(x.viewed_at, unfolded_views.time_zone), x.viewer_id,
               r.sign * (x.kind = 'session')::integer, r.sign * (x.kind = 'visit')::integer,
               r.sign * audience_internal.session_micros(x.kind, x.viewed_at, x.ended_at), x.identifiable, x.viewed_at
          FROM (SELECT x.app_id, x.viewer_id, x.kind, x.viewed_at, x.ended_at, x.identifiable
                  FROM audience_internal.view_events x
                 WHERE NOT r.pending AND x.workspace_id = unfolded_views.workspace_id
                   AND (unfolded_views.apps IS NULL OR x.app_id = ANY (unfolded_views.apps))
                   AND x.viewed_at >= r.lo AND x.viewed_at < r.hi
                UNION ALL
                SELECT p.app_id, p.viewer_id, p.kind, p.viewed_at, p.ended_at, p.identifiable
                  FROM audience_internal.pending_folds p
                 WHERE r.pending AND p.workspace_id = unfolded_views.workspace_id
                   AND (unfolded_views.apps IS NULL OR p.app_id = ANY (unfolded_views.apps))
                   AND audience_internal.day_of(p.viewed_at, unfolded_views.time_zone) >= unfolded_views.first_day
                   AND audience_internal.day_of(p.viewed_at, unfolded_views.time_zone) < unfolded_views.end_day
                   AND audience_internal.day_of(p.viewed_at, unfolded_views.time_zone) IS DISTINCT FROM unfolded_views.raw_day) x;
    END LOOP;
END
$$;

-- The set of viewers of each of some apps of one workspace in [lo, hi),
-- from the raw events; planned for its bounds, so for one partition.
CREATE FUNCTION audience_internal.app_viewers_between(
    workspace_id bigint, apps bigint[], lo timestamptz, hi timestamptz)
RETURNS TABLE (app_id bigint, viewers bytea)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT x.app_id, audience_internal.viewer_set(array_agg(x.viewer_id))
      FROM audience_internal.view_events x
     WHERE x.workspace_id = app_viewers_between.workspace_id AND x.app_id = ANY (app_viewers_between.apps)
       AND x.viewed_at >= app_viewers_between.lo AND x.viewed_at < app_viewers_between.hi
     GROUP BY x.app_id;
END
$$;

-- Sessions, visits, ended session time and the set of viewers of some apps
-- of one workspace in a window (`apps` NULL: every app), by day, and by app
-- where `by_app` or `apps` asks for it (otherwise app_id is NULL and the
-- whole days are the workspace's own rows): the day rollups for the whole
-- days, and what they do not hold yet (unfolded_views). A day may have a row
-- from each, which the caller sums and unites (viewer_set_count).
CREATE FUNCTION audience_internal.usage_days(
    workspace_id bigint, apps bigint[], since timestamptz, until timestamptz, by_app boolean)
RETURNS TABLE (app_id bigint, day date, sessions bigint, visits bigint, session_micros bigint, viewers bytea)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
#variable_conflict use_column
DECLARE
    b record;
BEGIN
    SELECT * INTO b FROM audience_internal.window_days(usage_days.workspace_id, usage_days.since, usage_days.until);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT NULL::bigint, d.day, d.sessions, d.visits, d.session_micros, d.viewers
      FROM audience_internal.workspace_days d
     WHERE usage_days.apps IS NULL AND NOT usage_days.by_app
       AND d.workspace_id = usage_days.workspace_id AND d.day >= b.first_day AND d.day < b.end_day
    UNION ALL
    SELECT d.app_id, d.day, d.sessions, d.visits, d.session_micros, d.viewers
      FROM audience_internal.app_days d
     WHERE usage_days.apps IS NULL AND usage_days.by_app
       AND d.workspace_id = usage_days.workspace_id AND d.day >= b.first_day AND d.day < b.end_day
    UNION ALL
    SELECT d.app_id, d.day, d.sessions, d.visits, d.session_micros, d.viewers
      FROM audience_internal.app_days d
     WHERE usage_days.apps IS NOT NULL
       AND d.workspace_id = usage_days.workspace_id AND d.app_id = ANY (usage_days.apps)
       AND d.day >= b.first_day AND d.day < b.end_day;
    RETURN QUERY
    SELECT CASE WHEN usage_days.by_app OR usage_days.apps IS NOT NULL THEN u.app_id END, u.day,
           sum(u.sessions)::bigint, sum(u.visits)::bigint, sum(u.session_micros)::bigint,
           audience_internal.viewer_set(array_agg(u.viewer_id))
      FROM audience_internal.unfolded_views(usage_days.workspace_id, usage_days.apps, usage_days.since,
                                            usage_days.until, b.time_zone, b.first_day, b.end_day) u
     GROUP BY 1, 2;
END
$$;

CREATE TYPE audience.app_sessions_row AS (
    viewer text,
    viewer_ref text,
    pseudonymous boolean,
    started_at timestamptz,
    ended_at timestamptz,
    duration interval,
    kind text);
COMMENT ON TYPE audience.app_sessions_row IS
    'One view of app_sessions.';

CREATE FUNCTION audience_internal.app_sessions_for(
    ticket bytea, workspace text, app text, since timestamptz, until timestamptz,
    min_duration interval, max_sessions integer)
RETURNS SETOF audience.app_sessions_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    viewer_ids bigint[];
    seen_at timestamptz[];
    seen_identifiable boolean[];
    kinds text[];
    ended timestamptz[];
BEGIN
    ws := audience_internal.read_scope(app_sessions_for.ticket, app_sessions_for.workspace, app_sessions_for.app, true);
    PERFORM audience_internal.check_window(app_sessions_for.since, app_sessions_for.until);
    PERFORM audience_internal.check_count(app_sessions_for.max_sessions, 'max_sessions', 10000);
    IF app_sessions_for.min_duration < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "min_duration": must not be negative';
    END IF;
    -- The views shown, planned for this call's arguments (EXECUTE): a
    -- generic plan cannot know that max_sessions is small, and sorts the
    -- app's whole window instead of reading its index newest first. Their
    -- labels (labels) are planned once a session: planned with the views at
    -- each call, the join took about 7 ms to plan and 1 to run. A visit has
    -- no end, whatever an ingest call may have given it.
    EXECUTE 'SELECT array_agg(s.viewer_id ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(s.viewed_at ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(s.identifiable ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(s.kind ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(CASE WHEN s.kind = ''session'' THEN s.ended_at END ORDER BY s.viewed_at DESC, s.event_id DESC)
               FROM (SELECT x.event_id, x.viewer_id, x.viewed_at, x.identifiable, x.kind, x.ended_at
                       FROM audience_internal.view_events x
                      WHERE x.workspace_id = $1 AND x.app_id = $2 AND x.viewed_at >= $3 AND x.viewed_at < $4
                        AND ($5 IS NULL OR x.kind <> ''session'' OR x.ended_at IS NULL OR x.ended_at - x.viewed_at >= $5)
                      ORDER BY x.viewed_at DESC, x.event_id DESC
                      LIMIT $6) s'
       INTO viewer_ids, seen_at, seen_identifiable, kinds, ended
      USING ws.workspace_id, ws.app_ids[1], app_sessions_for.since, app_sessions_for.until,
            app_sessions_for.min_duration, app_sessions_for.max_sessions;
    RETURN QUERY
    SELECT l.viewer, l.viewer_ref, l.pseudonymous, seen_at[l.n], ended[l.n], ended[l.n] - seen_at[l.n], kinds[l.n]
      FROM audience_internal.labels(ws.workspace_id, viewer_ids, NULL, seen_at, seen_identifiable) l
     ORDER BY l.n;
END
$$;

CREATE FUNCTION audience.app_sessions(
    workspace text,
    app text,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    min_duration interval DEFAULT NULL,
    max_sessions integer DEFAULT 100)
RETURNS SETOF audience.app_sessions_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 100
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.app_sessions_for(audience_internal.ticket(), workspace, app, since, until, min_duration, max_sessions);
END;
COMMENT ON FUNCTION audience.app_sessions(text, text, timestamptz, timestamptz, interval, integer) IS
    'Every view of an app in the window [since, until), newest first, at most max_sessions: who (identity or pseudonym, viewer_ref, whether pseudonymous), start, end, duration and kind (session or visit). A visit and an open session have no end. min_duration drops ended sessions shorter than it.';

CREATE TYPE audience.top_apps_row AS (
    app text,
    visibility text,
    views bigint,
    sessions bigint,
    visits bigint,
    unique_viewers bigint,
    session_time interval);
COMMENT ON TYPE audience.top_apps_row IS
    'One app of top_apps.';

CREATE FUNCTION audience_internal.top_apps_for(
    ticket bytea, workspace text, since timestamptz, until timestamptz, max_apps integer)
RETURNS SETOF audience.top_apps_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Planned for the arguments of each call: the generic plan that the plan
-- cache turns to after five calls took half as long again (a busy
-- workspace's 30 days, 17 ms against 11 ms).
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
    b record;
    whole_from date;
    whole_to date;
    value_at date[];
    value_monthly boolean[];
    value_taken_off boolean[];
    unfolded_counts bytea;
    unfolded_ids bigint[];
    unfolded_sets bytea[];
    candidates bigint[];
    candidate_sessions bigint[];
    candidate_visits bigint[];
    candidate_micros bigint[];
    top_ids bigint[];
    top_slugs text[];
    top_visibility text[];
    top_sessions bigint[];
    top_visits bigint[];
    top_micros bigint[];
    cut_ids bigint[];
    cut_sets bytea[];
BEGIN
    ws := audience_internal.read_scope(top_apps_for.ticket, top_apps_for.workspace, NULL, false);
    PERFORM audience_internal.check_window(top_apps_for.since, top_apps_for.until);
    PERFORM audience_internal.check_count(top_apps_for.max_apps, 'max_apps', 10000);
    apps := ws.app_ids;
    -- The window's whole days, and the whole months among them:
    -- whole_from <= month < whole_to. A cut first day may come as its day
    -- value and the views before the window negated (window_days,
    -- subtract_first); its viewers, which a set cannot take off, are then
    -- those of the shown apps' raw events in the window.
    SELECT * INTO b FROM audience_internal.window_days(ws.workspace_id, top_apps_for.since, top_apps_for.until, true);
    whole_from := CASE WHEN audience_internal.month_of_day(b.first_day) = b.first_day AND b.minus_before IS NULL
                       THEN b.first_day
                       ELSE (audience_internal.month_of_day(b.first_day) + interval '1 month')::date END;
    whole_to := audience_internal.month_of_day(b.end_day);
    -- The apps' counters are summed in one call: the packed values of the
    -- window's whole days (window_values), and one made of the views those
    -- do not hold, whose viewers are kept as a set per app.
    SELECT array_agg(v.at), array_agg(v.monthly), array_agg(v.take_off)
      INTO value_at, value_monthly, value_taken_off
      FROM audience_internal.window_values(ws.workspace_id, b.first_day, b.end_day, NULL) v;
    WITH u AS MATERIALIZED (
        SELECT * FROM audience_internal.unfolded_views(ws.workspace_id, apps, top_apps_for.since, top_apps_for.until,
                                                       b.time_zone, b.first_day, b.end_day, NULL, b.minus_before)
    )
    SELECT (SELECT audience_internal.app_counts(array_agg(u.app_id), array_agg(u.sessions::bigint),
                                                array_agg(u.visits::bigint), array_agg(u.session_micros))
              FROM u),
           array_agg(s.app_id), array_agg(s.viewers)
      INTO unfolded_counts, unfolded_ids, unfolded_sets
      FROM (SELECT u.app_id, audience_internal.viewer_set(array_agg(u.viewer_id)) AS viewers
              FROM u
             WHERE u.sessions + u.visits > 0 AND u.viewed_at >= top_apps_for.since
             GROUP BY u.app_id) s;
    -- The apps with at least as many views as the last one shown (an app
    -- seen only before the window on its cut first day has none); then
    -- their slugs, which break ties.
    SELECT array_agg(c.app_id), array_agg(c.sessions), array_agg(c.visits), array_agg(c.session_micros)
      INTO candidates, candidate_sessions, candidate_visits, candidate_micros
      FROM (SELECT c.*, rank() OVER (ORDER BY c.sessions + c.visits DESC) AS place
              FROM (SELECT array_agg(coalesce(m.apps, d.apps) ORDER BY k.n) FILTER (WHERE NOT k.take_off) AS added,
                           array_agg(coalesce(m.apps, d.apps) ORDER BY k.n) FILTER (WHERE k.take_off) AS taken_off
                      FROM unnest(value_at, value_monthly, value_taken_off) WITH ORDINALITY k(at, monthly, take_off, n)
                      LEFT JOIN audience_internal.workspace_months m
                        ON k.monthly AND m.workspace_id = ws.workspace_id AND m.month = k.at
                      LEFT JOIN audience_internal.workspace_days d
                        ON NOT k.monthly AND d.workspace_id = ws.workspace_id AND d.day = k.at) v
             CROSS JOIN LATERAL audience_internal.app_counts_sum(v.added || unfolded_counts, v.taken_off, apps) c
             WHERE c.sessions + c.visits > 0) c
     WHERE c.place <= top_apps_for.max_apps;
    SELECT array_agg(t.app_id ORDER BY t.n), array_agg(t.slug ORDER BY t.n), array_agg(t.visibility ORDER BY t.n),
           array_agg(t.sessions ORDER BY t.n), array_agg(t.visits ORDER BY t.n), array_agg(t.micros ORDER BY t.n)
      INTO top_ids, top_slugs, top_visibility, top_sessions, top_visits, top_micros
      FROM (SELECT c.*, a.slug, a.visibility, row_number() OVER (ORDER BY c.sessions + c.visits DESC, a.slug) AS n
              FROM unnest(candidates, candidate_sessions, candidate_visits, candidate_micros)
                       c(app_id, sessions, visits, micros)
              JOIN audience_internal.apps a ON a.workspace_id = ws.workspace_id AND a.app_id = c.app_id) t
     WHERE t.n <= top_apps_for.max_apps;
    IF b.minus_before IS NOT NULL THEN
        SELECT array_agg(v.app_id), array_agg(v.viewers)
          INTO cut_ids, cut_sets
          FROM audience_internal.app_viewers_between(ws.workspace_id, top_ids, b.minus_before,
                                                     (b.first_day + 1)::timestamp AT TIME ZONE b.time_zone) v;
    END IF;
    -- A shown app's distinct viewers: the sets of the window's whole
    -- months (app_months, the union of their days' sets), of its other
    -- whole days, and of the views the day rollups do not hold; a year is
    -- then a few dozen sets to unite, not 365.
    RETURN QUERY
    SELECT t.slug, t.visibility, t.sessions + t.visits, t.sessions, t.visits,
           (SELECT audience_internal.viewer_set_count(array_agg(s.viewers))
              FROM (SELECT m.viewers
                      FROM audience_internal.app_months m
                     WHERE m.workspace_id = ws.workspace_id AND m.app_id = t.app_id
                       AND m.month >= whole_from AND m.month < whole_to
                    UNION ALL
                    SELECT d.viewers
                      FROM audience_internal.app_days d
                     WHERE d.workspace_id = ws.workspace_id AND d.app_id = t.app_id
                       AND d.day >= b.first_day AND d.day < b.end_day
                       AND (d.day < whole_from OR d.day >= whole_to)
                       AND (d.day > b.first_day OR b.minus_before IS NULL)
                    UNION ALL
                    SELECT x.viewers FROM unnest(unfolded_ids, unfolded_sets) x(app_id, viewers) WHERE x.app_id = t.app_id
                    UNION ALL
                    SELECT x.viewers FROM unnest(cut_ids, cut_sets) x(app_id, viewers) WHERE x.app_id = t.app_id) s),
           audience_internal.micros_interval(t.micros)
      FROM unnest(top_ids, top_slugs, top_visibility, top_sessions, top_visits, top_micros)
               WITH ORDINALITY t(app_id, slug, visibility, sessions, visits, micros, n)
     ORDER BY t.n;
END
$$;

CREATE FUNCTION audience.top_apps(
    workspace text,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    max_apps integer DEFAULT 10)
RETURNS SETOF audience.top_apps_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.top_apps_for(audience_internal.ticket(), workspace, since, until, max_apps);
END;
COMMENT ON FUNCTION audience.top_apps(text, timestamptz, timestamptz, integer) IS
    'The most viewed apps of a workspace in the window [since, until) among those the requester may see, most views first (ties by app): views, sessions, visits, distinct viewers and the time of ended sessions. Apps without a view in the window are left out.';

CREATE TYPE audience.top_viewers_row AS (
    viewer text,
    viewer_ref text,
    pseudonymous boolean,
    views bigint,
    sessions bigint,
    session_time interval,
    last_viewed_at timestamptz);
COMMENT ON TYPE audience.top_viewers_row IS
    'One viewer of top_viewers.';

-- At most max_viewers rows (10 unless asked): planned for pgrx's default of
-- 1,000, the labels of ten viewers hashed every viewer of the workspace.
ALTER FUNCTION audience_internal.viewer_counts_top(bytea[], boolean[], boolean[], timestamptz[], bigint[], integer) ROWS 10;

CREATE FUNCTION audience_internal.top_viewers_for(
    ticket bytea, workspace text, app text, since timestamptz, until timestamptz, max_viewers integer)
RETURNS SETOF audience.top_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    w audience_internal.workspaces;
    b record;
    shown_apps bigint[];
    value_at date[];
    value_monthly boolean[];
    take_off boolean[];
    unfolded bytea[];
    counted_at timestamptz[];
    class_identified boolean[];
    class_label_at timestamptz[];
    members bigint[];
    viewer_ids bigint[];
    identified boolean[];
    label_at timestamptz[];
    sessions bigint[];
    visits bigint[];
    micros bigint[];
    last_at timestamptz[];
BEGIN
    ws := audience_internal.read_scope(top_viewers_for.ticket, top_viewers_for.workspace, top_viewers_for.app, false);
    shown_apps := ws.app_ids;
    PERFORM audience_internal.check_window(top_viewers_for.since, top_viewers_for.until);
    PERFORM audience_internal.check_count(top_viewers_for.max_viewers, 'max_viewers', 1000);
    SELECT * INTO w FROM audience_internal.workspaces x WHERE x.workspace_id = ws.workspace_id;
    SELECT * INTO b FROM audience_internal.window_days(ws.workspace_id, top_viewers_for.since, top_viewers_for.until, true);
    -- The window as packed viewer counters: for every app, those of its
    -- whole days (window_values, the day of the identification start
    -- apart); for some apps, a value per whole day and shown app (app_days);
    -- and a value per day and side of the identification start of the
    -- views the day rollups do not hold. Each comes with the time its views
    -- are labelled at: all views of a value are on one side of the
    -- identification start and in one month. A cut first day may come as
    -- its day value and the views before the window negated (window_days,
    -- subtract_first): the sums are exact, and so is each viewer's latest
    -- view, as the views taken off are earlier than any in the window; a
    -- viewer seen only before it sums to no views and is not shown. The
    -- rollups' values are named here and read by the statement that sums
    -- them (window_values).
    IF shown_apps IS NULL THEN
        SELECT array_agg(v.at), array_agg(v.monthly), array_agg(v.take_off)
          INTO value_at, value_monthly, take_off
          FROM audience_internal.window_values(ws.workspace_id, b.first_day, b.end_day, b.identification_day) v;
    ELSE
        SELECT array_agg(d.day ORDER BY d.app_id, d.day), array_agg(false)
          INTO value_at, take_off
          FROM audience_internal.app_days d
         WHERE d.workspace_id = ws.workspace_id AND d.app_id = ANY (shown_apps)
           AND d.day >= b.first_day AND d.day < b.end_day AND d.day IS DISTINCT FROM b.identification_day;
    END IF;
    counted_at := ARRAY(SELECT x.at::timestamp AT TIME ZONE b.time_zone FROM unnest(value_at) WITH ORDINALITY x(at, n)
                         ORDER BY x.n);
    SELECT array_agg(u.value), counted_at || array_agg(u.at)
      INTO unfolded, counted_at
      FROM (SELECT audience_internal.viewer_counts(array_agg(u.viewer_id), array_agg(u.identifiable),
                                                   array_agg(u.sessions::bigint), array_agg(u.visits::bigint),
                                                   array_agg(u.session_micros), array_agg(u.viewed_at)) AS value,
                   CASE WHEN u.after_start
                        THEN greatest(u.day::timestamp AT TIME ZONE b.time_zone, w.identification_start)
                        ELSE u.day::timestamp AT TIME ZONE b.time_zone END AS at
              FROM (SELECT u.*, coalesce(u.viewed_at >= w.identification_start, false) AS after_start
                      FROM audience_internal.unfolded_views(
                               ws.workspace_id, shown_apps, top_viewers_for.since, top_viewers_for.until,
                               b.time_zone, b.first_day, b.end_day, b.identification_day, b.minus_before) u) u
             GROUP BY u.day, u.after_start) u;
    take_off := take_off || array_fill(false, ARRAY[coalesce(cardinality(unfolded), 0)]);
    -- The labelling rule decides, per value, how each kind of view is
    -- labelled (by a member now or not, identifiable or not); one call sums
    -- the values per viewer and label and keeps the top.
    SELECT array_agg(k.identified ORDER BY p.n, c.kind), array_agg(k.label_at ORDER BY p.n, c.kind)
      INTO class_identified, class_label_at
      FROM unnest(counted_at) WITH ORDINALITY p(at, n)
     CROSS JOIN (VALUES (0, false, false), (1, false, true), (2, true, false), (3, true, true))
                c(kind, is_member, identifiable)
     CROSS JOIN LATERAL audience_internal.label_key(w, c.is_member, p.at, c.identifiable) k;
    members := audience_internal.member_viewer_ids(ws.workspace_id);
    SELECT array_agg(t.viewer_id ORDER BY t.place), array_agg(t.identified ORDER BY t.place),
           array_agg(coalesce(t.label_at, t.last_viewed_at) ORDER BY t.place),
           array_agg(t.sessions ORDER BY t.place), array_agg(t.visits ORDER BY t.place),
           array_agg(t.session_micros ORDER BY t.place), array_agg(t.last_viewed_at ORDER BY t.place)
      INTO viewer_ids, identified, label_at, sessions, visits, micros, last_at
      FROM (SELECT t.*, row_number() OVER (ORDER BY t.sessions + t.visits DESC, t.last_viewed_at DESC, t.viewer_id,
                                                    t.identified, t.label_at) AS place
              -- The rollups' values in the order of their keys above.
              FROM (SELECT array_agg(coalesce(m.viewer_counts, d.viewer_counts) ORDER BY k.n) AS rolled_up
                      FROM unnest(value_at, value_monthly) WITH ORDINALITY k(at, monthly, n)
                      LEFT JOIN audience_internal.workspace_months m
                        ON k.monthly AND m.workspace_id = ws.workspace_id AND m.month = k.at
                      LEFT JOIN audience_internal.workspace_days d
                        ON NOT k.monthly AND d.workspace_id = ws.workspace_id AND d.day = k.at
                    HAVING shown_apps IS NULL
                    UNION ALL
                    SELECT array_agg(d.viewer_counts ORDER BY d.app_id, d.day)
                      FROM audience_internal.app_days d
                     WHERE d.workspace_id = ws.workspace_id AND d.app_id = ANY (shown_apps)
                       AND d.day >= b.first_day AND d.day < b.end_day AND d.day IS DISTINCT FROM b.identification_day
                    HAVING shown_apps IS NOT NULL) v
             CROSS JOIN LATERAL audience_internal.viewer_counts_top(v.rolled_up || unfolded, take_off, class_identified,
                                                                    class_label_at, members,
                                                                    top_viewers_for.max_viewers) t) t;
    -- A name is the same every month; its viewer_ref, like
    -- recent_viewers', is that of the month of the last view.
    RETURN QUERY
    SELECT l.viewer, l.viewer_ref, l.pseudonymous, sessions[l.n] + visits[l.n], sessions[l.n],
           audience_internal.micros_interval(micros[l.n]), last_at[l.n]
      FROM audience_internal.labels(ws.workspace_id, viewer_ids, identified, label_at, NULL) l
     ORDER BY l.n;
END
$$;

CREATE FUNCTION audience.top_viewers(
    workspace text,
    app text DEFAULT NULL,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    max_viewers integer DEFAULT 10)
RETURNS SETOF audience.top_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.top_viewers_for(audience_internal.ticket(), workspace, app, since, until, max_viewers);
END;
COMMENT ON FUNCTION audience.top_viewers(text, text, timestamptz, timestamptz, integer) IS
    'The most active viewers in the window [since, until) of one app, or (app NULL) of every app of the workspace the requester may see, most views first: label, viewer_ref, views, sessions, time of ended sessions and last view. A person''s identified and pseudonymous views are separate rows with unrelated viewer_refs.';

CREATE TYPE audience.usage_over_time_row AS (
    period date,
    views bigint,
    sessions bigint,
    visits bigint,
    unique_viewers bigint,
    session_time interval);
COMMENT ON TYPE audience.usage_over_time_row IS
    'One period of usage_over_time.';

CREATE FUNCTION audience_internal.usage_over_time_for(
    ticket bytea, workspace text, app text, since timestamptz, until timestamptz, bucket text)
RETURNS SETOF audience.usage_over_time_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
    tz text;
BEGIN
    ws := audience_internal.read_scope(usage_over_time_for.ticket, usage_over_time_for.workspace, usage_over_time_for.app, false);
    apps := ws.app_ids;
    PERFORM audience_internal.check_window(usage_over_time_for.since, usage_over_time_for.until);
    PERFORM audience_internal.check_choice(usage_over_time_for.bucket, 'bucket', ARRAY['day', 'week', 'month']);
    tz := (SELECT w.time_zone FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id);
    RETURN QUERY
    SELECT p.period::date, coalesce(u.views, 0), coalesce(u.sessions, 0), coalesce(u.visits, 0),
           coalesce(u.unique_viewers, 0), coalesce(u.session_time, interval '0')
      FROM generate_series(date_trunc(usage_over_time_for.bucket, usage_over_time_for.since AT TIME ZONE tz),
                           date_trunc(usage_over_time_for.bucket,
                                      (usage_over_time_for.until AT TIME ZONE tz) - interval '1 microsecond'),
                           ('1 ' || usage_over_time_for.bucket)::interval) p(period)
      LEFT JOIN (SELECT date_trunc(usage_over_time_for.bucket, f.day)::date AS period,
                        sum(f.sessions + f.visits)::bigint AS views, sum(f.sessions)::bigint AS sessions,
                        sum(f.visits)::bigint AS visits, audience_internal.viewer_set_count(array_agg(f.viewers)) AS unique_viewers,
                        audience_internal.micros_interval(sum(f.session_micros)) AS session_time
                   FROM audience_internal.usage_days(ws.workspace_id, apps,
                            usage_over_time_for.since, usage_over_time_for.until, false) f
                  GROUP BY 1) u ON u.period = p.period::date
     ORDER BY p.period;
END
$$;

CREATE FUNCTION audience.usage_over_time(
    workspace text,
    app text DEFAULT NULL,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    bucket text DEFAULT 'day')
RETURNS SETOF audience.usage_over_time_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 31
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.usage_over_time_for(audience_internal.ticket(), workspace, app, since, until, bucket);
END;
COMMENT ON FUNCTION audience.usage_over_time(text, text, timestamptz, timestamptz, text) IS
    'Usage of one app, or (app NULL) of every app of the workspace the requester may see, per day, week (ISO, from Monday) or month of the workspace''s time zone, for every bucket that overlaps the window [since, until), empty ones included, oldest first: views, sessions, visits, distinct viewers and time of ended sessions, counting only views inside the window.';

CREATE TYPE audience.viewer_trend_row AS (
    month date,
    unique_viewers bigint,
    previous bigint,
    change bigint,
    change_pct numeric,
    complete boolean);
COMMENT ON TYPE audience.viewer_trend_row IS
    'One month of viewer_trend.';

CREATE FUNCTION audience_internal.viewer_trend_for(ticket bytea, workspace text, app text, months integer)
RETURNS SETOF audience.viewer_trend_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
BEGIN
    ws := audience_internal.read_scope(viewer_trend_for.ticket, viewer_trend_for.workspace, viewer_trend_for.app, false);
    apps := ws.app_ids;
    PERFORM audience_internal.check_count(viewer_trend_for.months, 'months', 1200);
    RETURN QUERY
    SELECT t.month, t.unique_viewers, t.previous, t.unique_viewers - t.previous,
           CASE WHEN t.previous > 0 THEN round(100.0 * (t.unique_viewers - t.previous) / t.previous, 1) END,
           t.complete
      FROM (SELECT m.month, m.unique_viewers, lag(m.unique_viewers) OVER (ORDER BY m.month) AS previous,
                   m.complete
              FROM audience_internal.monthly_viewers(ws.workspace_id, apps, viewer_trend_for.months + 1) m) t
     ORDER BY t.month
    OFFSET 1;
END
$$;

CREATE FUNCTION audience.viewer_trend(workspace text, app text DEFAULT NULL, months integer DEFAULT 12)
RETURNS SETOF audience.viewer_trend_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 12
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.viewer_trend_for(audience_internal.ticket(), workspace, app, months);
END;
COMMENT ON FUNCTION audience.viewer_trend(text, text, integer) IS
    'Is viewership increasing: for the last `months` calendar months (workspace time zone), distinct viewers of one app or (app NULL) of the apps of the workspace the requester may see, the previous month''s figure, the change, the change in percent of the previous month rounded to one decimal (NULL when the previous month had no viewers); complete is false for the month in progress.';

CREATE TYPE audience.app_access_row AS (
    app text,
    member text,
    kind text,
    status text,
    via text);
COMMENT ON TYPE audience.app_access_row IS
    'One way one member may open one app, as app_access answers.';

-- The app argument is named apart from the `app` column of the result:
-- PL/pgSQL refuses a parameter and a result column of the same name.
CREATE FUNCTION audience_internal.app_access_for(ticket bytea, workspace text, app_slug text)
RETURNS SETOF audience.app_access_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
    own bytea[];
BEGIN
    ws := audience_internal.read_scope(app_access_for.ticket, app_access_for.workspace, app_access_for.app_slug, false);
    apps := ws.app_ids;
    -- A viewer member sees only their own rows.
    IF ws.access = 'some' THEN
        own := ARRAY(SELECT m.identity_hash FROM audience_internal.requester_memberships(ws.workspace_id) m);
    END IF;
    RETURN QUERY
    SELECT DISTINCT ON (a.slug, x.identity) a.slug, x.identity, x.kind, x.status, x.via
      FROM audience_internal.apps a
      CROSS JOIN LATERAL (
          -- Admins and developers open every app; accepted viewer members and
          -- invitees (once they accept) the public ones; grants one app each.
          -- A person with several ways in is listed by the strongest.
          SELECT m.identity, m.identity_hash, m.kind, m.status,
                 CASE WHEN m.status = 'invited' THEN 'invitation'
                      WHEN m.kind = 'viewer' THEN 'member' ELSE m.kind END AS via,
                 CASE WHEN m.status = 'invited' THEN 5 WHEN m.kind = 'viewer' THEN 4 ELSE 1 END AS strength
            FROM audience_internal.members m
           WHERE m.workspace_id = a.workspace_id AND (m.kind <> 'viewer' OR a.visibility = 'public')
          UNION ALL
          SELECT g.identity, g.identity_hash, m.kind, coalesce(m.status, 'active'),
                 CASE WHEN m.status = 'invited' THEN 'invitation' ELSE 'grant' END,
                 CASE WHEN m.status = 'invited' THEN 3 ELSE 2 END
            FROM audience_internal.app_access g
            LEFT JOIN audience_internal.members m
              ON m.workspace_id = g.workspace_id AND m.identity_hash = g.identity_hash
           WHERE g.workspace_id = a.workspace_id AND g.app_id = a.app_id
      ) x
     WHERE a.workspace_id = ws.workspace_id AND (apps IS NULL OR a.app_id = ANY (apps))
       AND (own IS NULL OR x.identity_hash = ANY (own))
     ORDER BY a.slug, x.identity, x.strength;
END
$$;

CREATE FUNCTION audience.app_access(workspace text, app text DEFAULT NULL)
RETURNS SETOF audience.app_access_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 100
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.app_access_for(audience_internal.ticket(), workspace, app);
END;
COMMENT ON FUNCTION audience.app_access(text, text) IS
    'Who may open which app of a workspace (one app, or every app the requester may see): member identity, member kind (NULL for a person who holds only a grant), status (active or invited) and via (admin, developer, member for a viewer member on a public app, grant, invitation for one not yet accepted). Admins and developers see every row; a viewer member only their own.';

-- Views for BI tools over the last 30 days, answering for whoever queries
-- them, as in sql/analytics.sql. Where a function answers for an app or
-- (app NULL) for a whole workspace, its view has both: the grouping sets
-- list each visible app and each workspace that has one.

CREATE VIEW audience.app_sessions WITH (security_barrier) AS
    SELECT a.workspace, a.app, s.viewer, s.viewer_ref, s.pseudonymous, s.started_at, s.ended_at, s.duration, s.kind
      FROM audience.visible_apps() a,
           LATERAL audience.app_sessions(a.workspace, a.app) s;
COMMENT ON VIEW audience.app_sessions IS
    'For each app the current requester sees: its views of the last 30 days (at most 100 per app, newest first), labelled, with start, end, duration and kind.';

CREATE VIEW audience.top_apps WITH (security_barrier) AS
    SELECT w.workspace, t.app, t.visibility, t.views, t.sessions, t.visits, t.unique_viewers, t.session_time
      FROM (SELECT DISTINCT v.workspace FROM audience.visible_apps() v) w,
           LATERAL audience.top_apps(w.workspace, max_apps => 10000) t;
COMMENT ON VIEW audience.top_apps IS
    'For each workspace the current requester sees: every app with views in the last 30 days, most views first, with sessions, visits, distinct viewers and session time.';

CREATE VIEW audience.top_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, t.viewer, t.viewer_ref, t.pseudonymous, t.views, t.sessions, t.session_time,
           t.last_viewed_at
      FROM audience.visible_apps() a,
           LATERAL audience.top_viewers(a.workspace, a.app) t;
COMMENT ON VIEW audience.top_viewers IS
    'For each app the current requester sees: its 10 most active viewers of the last 30 days, labelled, with views, sessions, session time and last view.';

CREATE VIEW audience.usage_over_time WITH (security_barrier) AS
    SELECT s.workspace, s.app, u.period, u.views, u.sessions, u.visits, u.unique_viewers, u.session_time
      FROM (SELECT v.workspace, v.app FROM audience.visible_apps() v
             GROUP BY GROUPING SETS ((v.workspace, v.app), (v.workspace))) s,
           LATERAL audience.usage_over_time(s.workspace, s.app) u;
COMMENT ON VIEW audience.usage_over_time IS
    'Usage per day over the last 30 days, for each app the current requester sees and (app NULL) for each of their workspaces as a whole: views, sessions, visits, distinct viewers, session time; days without views included.';

CREATE VIEW audience.viewer_trend WITH (security_barrier) AS
    SELECT s.workspace, s.app, t.month, t.unique_viewers, t.previous, t.change, t.change_pct, t.complete
      FROM (SELECT v.workspace, v.app FROM audience.visible_apps() v
             GROUP BY GROUPING SETS ((v.workspace, v.app), (v.workspace))) s,
           LATERAL audience.viewer_trend(s.workspace, s.app) t;
COMMENT ON VIEW audience.viewer_trend IS
    'Month-over-month change of distinct viewers over the last 12 months, for each app the current requester sees and (app NULL) for each of their workspaces as a whole.';

CREATE VIEW audience.app_access WITH (security_barrier) AS
    SELECT w.workspace, x.app, x.member, x.kind, x.status, x.via
      FROM (SELECT DISTINCT v.workspace FROM audience.visible_apps() v) w,
           LATERAL audience.app_access(w.workspace) x;
COMMENT ON VIEW audience.app_access IS
    'Who may open which app, for each workspace the current requester sees (a viewer member: only their own rows).';
