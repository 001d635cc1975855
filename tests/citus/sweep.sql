-- One sweep of every read for whoever runs it (tests/citus/reads.sql).
SELECT 'whoami', requester, resolved_by, workspace, kind FROM audience.whoami();
SELECT 'apps', * FROM audience.apps ORDER BY workspace, app;
SELECT 'months', w.workspace, m.* FROM (SELECT DISTINCT workspace FROM audience.apps) w,
       LATERAL audience.workspace_monthly_viewers(w.workspace, 14) m ORDER BY 2, 3;
SELECT 'app months', a.workspace, a.app, m.* FROM audience.apps a,
       LATERAL audience.app_monthly_viewers(a.workspace, a.app, 14) m ORDER BY 2, 3, 4;
SELECT 'all months', * FROM audience.all_monthly_viewers ORDER BY 2, 3 NULLS FIRST, 4;
SELECT 'totals', * FROM audience.app_total_viewers ORDER BY 2, 3;
SELECT 'recent', a.workspace, a.app, r.viewer, r.viewer_ref, r.pseudonymous, r.last_viewed_at, r.views
  FROM audience.apps a, LATERAL audience.recent_viewers(a.workspace, a.app, 25) r;
SELECT 'sessions', a.workspace, a.app, s.*
  FROM audience.apps a, LATERAL audience.app_sessions(a.workspace, a.app, :'t0'::timestamptz - interval '10 days', :'t0', NULL, 12) s;
SELECT 'top apps', w.workspace, d, t.*
  FROM (SELECT DISTINCT workspace FROM audience.apps) w, unnest(ARRAY[30, 365]) d,
       LATERAL audience.top_apps(w.workspace, :'t0'::timestamptz - d * interval '1 day' + interval '7 hours', :'t0') t;
SELECT 'top viewers', w.workspace, NULL AS app, d, t.*
  FROM (SELECT DISTINCT workspace FROM audience.apps) w, unnest(ARRAY[30, 400]) d,
       LATERAL audience.top_viewers(w.workspace, NULL, :'t0'::timestamptz - d * interval '1 day' - interval '5 hours', :'t0', 12) t;
SELECT 'top viewers', a.workspace, a.app, 60, t.*
  FROM audience.apps a, LATERAL audience.top_viewers(a.workspace, a.app, :'t0'::timestamptz - interval '60 days', :'t0', 5) t;
SELECT 'usage', s.workspace, s.app, b, u.*
  FROM (SELECT workspace, app FROM audience.apps GROUP BY GROUPING SETS ((workspace, app), (workspace))) s,
       unnest(ARRAY['day', 'week', 'month']) b,
       LATERAL audience.usage_over_time(s.workspace, s.app, :'t0'::timestamptz - interval '45 days' + interval '3 hours', :'t0', b) u;
SELECT 'trend', s.workspace, s.app, t.*
  FROM (SELECT workspace, app FROM audience.apps GROUP BY GROUPING SETS ((workspace, app), (workspace))) s,
       LATERAL audience.viewer_trend(s.workspace, s.app) t;
SELECT 'access', * FROM audience.app_access ORDER BY 2, 3, 4;
