-- The read path (SPEC §3, Streamlit-style analytics). Every answer comes from
-- the rollups; none scans raw events.
--
-- SECURITY DEFINER because readers hold no privilege on the tables; the
-- search_path is pinned so that no object of the caller's can stand in for
-- one of ours.

CREATE FUNCTION audience_internal.check_count(value integer, argument text, max integer)
RETURNS integer LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF audience_internal.require(value, argument) NOT BETWEEN 1 AND max THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid argument "%s": must be between 1 and %s', argument, max);
    END IF;
    RETURN value;
END
$$;

-- The first days of the last `months` calendar months in the workspace's
-- time zone, the current one last.
CREATE FUNCTION audience_internal.recent_months(workspace_id bigint, months integer)
RETURNS TABLE (month date, complete boolean) LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m::date, m < cur
      FROM (SELECT date_trunc('month', now() AT TIME ZONE w.time_zone) AS cur
              FROM audience_internal.workspaces w WHERE w.workspace_id = $1) c,
           generate_series(cur - make_interval(months => $2 - 1), cur, interval '1 month') m
$$;

-- Monthly unique viewers and views of a workspace (app_id NULL) or of one app,
-- for the last `months` months, months without views included.
CREATE FUNCTION audience_internal.monthly_viewers(workspace_id bigint, app_id bigint, months integer)
RETURNS TABLE (month date, unique_viewers bigint, views bigint, complete boolean)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.month, coalesce(c.unique_viewers, 0), coalesce(c.views, 0), r.complete
      FROM audience_internal.recent_months($1, $3) r
      LEFT JOIN LATERAL (
          SELECT wm.unique_viewers, wm.views FROM audience_internal.workspace_months wm
           WHERE $2 IS NULL AND wm.workspace_id = $1 AND wm.month = r.month
          UNION ALL
          SELECT am.unique_viewers, am.views FROM audience_internal.app_months am
           WHERE $2 IS NOT NULL AND am.workspace_id = $1 AND am.app_id = $2 AND am.month = r.month
      ) c ON true
     ORDER BY r.month
$$;

CREATE FUNCTION audience.workspace_monthly_viewers(workspace text, months integer DEFAULT 12)
RETURNS TABLE (month date, unique_viewers bigint, views bigint, complete boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM audience_internal.monthly_viewers(
        audience_internal.workspace_id(workspace), NULL,
        audience_internal.check_count(months, 'months', 1200));
END
$$;
COMMENT ON FUNCTION audience.workspace_monthly_viewers(text, integer) IS
    'Per calendar month (in the workspace''s time zone), the number of distinct viewers of any app of the workspace and of views, for the last `months` months; complete is false for the month in progress.';

CREATE FUNCTION audience.app_monthly_viewers(workspace text, app text, months integer DEFAULT 12)
RETURNS TABLE (month date, unique_viewers bigint, views bigint, complete boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
BEGIN
    RETURN QUERY SELECT * FROM audience_internal.monthly_viewers(
        ws_id, audience_internal.app_id(ws_id, workspace, app),
        audience_internal.check_count(months, 'months', 1200));
END
$$;
COMMENT ON FUNCTION audience.app_monthly_viewers(text, text, integer) IS
    'Per calendar month (in the workspace''s time zone), the number of distinct viewers of one app and of its views, for the last `months` months; complete is false for the month in progress.';

CREATE FUNCTION audience.app_total_viewers(workspace text, app text)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ws_id bigint := audience_internal.workspace_id(app_total_viewers.workspace);
    a_id bigint := audience_internal.app_id(ws_id, app_total_viewers.workspace, app_total_viewers.app);
BEGIN
    RETURN coalesce((SELECT t.viewers FROM audience_internal.app_totals t
                      WHERE t.workspace_id = ws_id AND t.app_id = a_id), 0);
END
$$;
COMMENT ON FUNCTION audience.app_total_viewers(text, text) IS
    'All-time number of distinct viewers of an app, counted from the workspace''s counting start.';

CREATE FUNCTION audience.recent_viewers(workspace text, app text, max_viewers integer DEFAULT 20)
RETURNS TABLE (viewer text, viewer_ref text, pseudonymous boolean,
               last_viewed_at timestamptz, last_viewed text, views bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ws_id bigint := audience_internal.workspace_id(recent_viewers.workspace);
    a_id bigint := audience_internal.app_id(ws_id, recent_viewers.workspace, recent_viewers.app);
BEGIN
    PERFORM audience_internal.check_count(recent_viewers.max_viewers, 'max_viewers', 1000);
    RETURN QUERY
    SELECT audience_internal.viewer_label(x.identified, x.identity, k.pseudonym_key, x.viewer_hash),
           audience_internal.viewer_ref(k.pseudonym_key, x.viewer_hash, x.identified),
           NOT x.identified,
           x.last_viewed_at,
           audience.relative_time(x.last_viewed_at, now()),
           x.views
      FROM (SELECT av.viewer_id, av.last_viewed_at, av.views, v.viewer_hash,
                   coalesce(m.identity, v.identity) AS identity,
                   audience_internal.is_identified(av.last_viewed_at, w.identification_start,
                                                   m.member_id IS NOT NULL, av.last_view_identifiable) AS identified
              FROM (SELECT * FROM audience_internal.app_viewers a
                     WHERE a.workspace_id = ws_id AND a.app_id = a_id
                     ORDER BY a.last_viewed_at DESC, a.viewer_id DESC
                     LIMIT recent_viewers.max_viewers) av
              JOIN audience_internal.workspaces w ON w.workspace_id = av.workspace_id
              JOIN audience_internal.viewers v
                ON v.workspace_id = av.workspace_id AND v.viewer_id = av.viewer_id
              LEFT JOIN audience_internal.members m
                ON m.workspace_id = av.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
           ) x
      JOIN audience_internal.workspace_keys k ON k.workspace_id = ws_id
     ORDER BY x.last_viewed_at DESC, x.viewer_id DESC;
END
$$;
COMMENT ON FUNCTION audience.recent_viewers(text, text, integer) IS
    'The most recent distinct viewers of an app, newest first: label (identity or pseudonym), stable opaque viewer_ref, whether the label is a pseudonym, time of the last view, that time in words, and the viewer''s number of views.';

COMMENT ON FUNCTION audience.relative_time(timestamptz, timestamptz) IS
    'How long before `now` the time `at` was, in words: just now, 5 minutes ago, yesterday, 4 days ago, 2 months ago.';
