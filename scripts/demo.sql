-- What the platform operator reads off pg_audience for the Acme workspace:
-- the analytics a hosted-app platform shows in its analytics modal.
\pset footer off
\echo
\echo '== Data set'
SELECT w.slug AS workspace, count(DISTINCT a.app_id) AS apps,
       (SELECT count(*) FROM audience_internal.members m WHERE m.workspace_id = w.workspace_id) AS members,
       (SELECT count(*) FROM audience_internal.view_events e WHERE e.workspace_id = w.workspace_id) AS events
  FROM audience_internal.workspaces w JOIN audience_internal.apps a USING (workspace_id)
 GROUP BY w.workspace_id, w.slug ORDER BY w.workspace_id;

\echo '== acme: monthly unique viewers (the current month is in progress)'
SELECT to_char(month, 'YYYY-MM') AS month, unique_viewers, views,
       CASE WHEN complete THEN '' ELSE 'in progress' END AS note
  FROM audience.workspace_monthly_viewers('acme', 12);

\echo '== acme: all-time unique viewers per app'
SELECT a.slug AS app, a.visibility, audience.app_total_viewers('acme', a.slug) AS total_viewers
  FROM audience_internal.apps a JOIN audience_internal.workspaces w USING (workspace_id)
 WHERE w.slug = 'acme' ORDER BY total_viewers DESC;

\echo '== acme / sales-dashboard (public): recent viewers'
SELECT viewer, viewer_ref, pseudonymous, last_viewed, views FROM audience.recent_viewers('acme', 'sales-dashboard');

\echo '== acme / churn-model (private): recent viewers'
SELECT viewer, viewer_ref, pseudonymous, last_viewed, views FROM audience.recent_viewers('acme', 'churn-model');

\echo '== acme / forecast-explorer (public for two years, private since today): recent viewers'
SELECT viewer, viewer_ref, pseudonymous, last_viewed, views FROM audience.recent_viewers('acme', 'forecast-explorer', 8);
