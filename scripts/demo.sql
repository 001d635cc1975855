-- What the platform operator reads off pg_audience for the Acme workspace:
-- the analytics a hosted-app platform shows in its analytics modal; then the
-- same analytics as different people see them; then the usage report Posit
-- Connect's administrators know, for the workspace imported from Connect,
-- as its admin, a viewer member and outsiders see it.
\set QUIET on
SET client_min_messages = warning;
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

-- The same analytics, as different people see them. Each person logs in with
-- a database role mapped to their membership; the privacy rules do the rest.
\o /dev/null
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['demo_admin', 'demo_viewer', 'demo_invited', 'demo_outsider',
                             'demo_connect_admin', 'demo_connect_developer', 'demo_connect_viewer',
                             'demo_connect_invited'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format('GRANT audience_reader TO %I', r);
    END LOOP;
END
$$;
SELECT audience.add_member('acme', 'grace@acme.example', 'admin', 'demo_admin');
SELECT audience.add_member('acme', 'edsger@acme.example', 'viewer', 'demo_viewer');
SELECT audience.invite_viewer('acme', 'radia@acme.example', db_role => 'demo_invited');
SELECT audience.add_member('connect', 'olivia.hart@initech.example', 'admin', 'demo_connect_admin');
SELECT audience.add_member('connect', 'noah.berg@initech.example', 'developer', 'demo_connect_developer');
SELECT audience.add_member('connect', 'amara.okafor@initech.example', 'viewer', 'demo_connect_viewer');
SELECT audience.invite_viewer('connect', 'priya.nair@initech.example', db_role => 'demo_connect_invited');
\o

\echo '== Grace (admin of acme, role demo_admin): who am I, and what do I see?'
SET ROLE demo_admin;
SELECT requester, resolved_by, workspace, kind FROM audience.whoami();
SELECT app, total_viewers FROM audience.app_total_viewers ORDER BY total_viewers DESC;
RESET ROLE;

\echo '== Edsger (viewer member of acme, no private app granted, role demo_viewer)'
SET ROLE demo_viewer;
SELECT requester, resolved_by, workspace, kind FROM audience.whoami();
SELECT app, total_viewers FROM audience.app_total_viewers ORDER BY total_viewers DESC;
SELECT to_char(month, 'YYYY-MM') AS month, unique_viewers, views
  FROM audience.workspace_monthly_viewers WHERE month >= date_trunc('month', now() - interval '2 months');
SELECT viewer, pseudonymous, last_viewed, views FROM audience.recent_viewers('acme', 'data-docs', 5);
RESET ROLE;

\echo '== Radia (invited, not yet accepted, role demo_invited) and an outsider: nothing'
SET ROLE demo_invited;
SELECT requester, resolved_by FROM audience.whoami();
SELECT count(*) AS rows_seen FROM audience.recent_viewers;
RESET ROLE;
SET ROLE demo_outsider;
SELECT count(*) AS rows_seen FROM audience.apps;
RESET ROLE;

-- The usage report of Posit Connect's dashboards, over the last 30 days, for
-- the workspace whose events were imported from Connect's JSON. Days are the
-- workspace's (Europe/Berlin).
\echo
\echo '======== connect (imported from Posit Connect): usage report, last 30 days'
\echo '== As Olivia (admin of connect, role demo_connect_admin)'
SET ROLE demo_connect_admin;
SELECT requester, resolved_by, workspace, kind FROM audience.whoami();

\echo '== Top apps'
SELECT app, visibility, views, sessions, visits, unique_viewers,
       CASE WHEN sessions > 0 THEN round(extract(epoch FROM session_time) / 3600, 1) END AS session_hours
  FROM audience.top_apps('connect');

\echo '== Sessions per day (█ sessions, ░ visits)'
SELECT to_char(period, 'Dy DD Mon') AS day, sessions, visits, unique_viewers AS viewers,
       repeat('█', round(sessions * 60.0 / greatest(max(views) OVER (), 1))::int)
       || repeat('░', round(visits * 60.0 / greatest(max(views) OVER (), 1))::int) AS chart
  FROM audience.usage_over_time('connect', bucket => 'day');

\echo '== sales-forecast (public Shiny app): sessions by viewer, top 5'
SELECT viewer, pseudonymous, sessions, round(extract(epoch FROM session_time) / 60) AS session_minutes,
       repeat('█', round(sessions * 40.0 / greatest(max(sessions) OVER (), 1))::int) AS chart
  FROM audience.top_viewers('connect', 'sales-forecast', max_viewers => 5);

\echo '== sales-forecast: how long sessions last'
SELECT length, count(*) AS sessions, repeat('█', round(count(*) * 40.0 / max(count(*)) OVER ())::int) AS chart
  FROM (SELECT CASE WHEN duration IS NULL THEN 7
                    WHEN duration < interval '5 seconds' THEN 1
                    WHEN duration < interval '1 minute' THEN 2
                    WHEN duration < interval '5 minutes' THEN 3
                    WHEN duration < interval '30 minutes' THEN 4
                    WHEN duration < interval '2 hours' THEN 5
                    ELSE 6 END AS bucket
          FROM audience.app_sessions('connect', 'sales-forecast', max_sessions => 10000)) s
  JOIN (VALUES (1, 'under 5 seconds'), (2, '5 seconds to 1 minute'), (3, '1 to 5 minutes'),
               (4, '5 to 30 minutes'), (5, '30 minutes to 2 hours'), (6, '2 hours or more'),
               (7, 'still open')) b(bucket, length) USING (bucket)
 GROUP BY bucket, length ORDER BY bucket;

\echo '== sales-forecast: latest sessions (shorter than 5 seconds left out, as Connect does)'
SELECT viewer, pseudonymous, audience.relative_time(started_at) AS started,
       coalesce(date_trunc('second', duration)::text, 'still open') AS duration
  FROM audience.app_sessions('connect', 'sales-forecast', min_duration => interval '5 seconds', max_sessions => 8);

\echo '== Top viewers, every app (views under a pseudonym and views by name are separate rows)'
SELECT viewer, pseudonymous, views, sessions, round(extract(epoch FROM session_time) / 3600, 1) AS session_hours,
       audience.relative_time(last_viewed_at) AS last_viewed
  FROM audience.top_viewers('connect');

\echo '== Is viewership growing? Unique viewers month over month'
SELECT to_char(month, 'YYYY-MM') AS month, unique_viewers, previous, change,
       CASE WHEN change_pct > 0 THEN '+' ELSE '' END || change_pct || ' %' AS change_pct,
       CASE WHEN NOT complete THEN 'in progress' ELSE '' END AS note
  FROM audience.viewer_trend('connect');

\echo '== Who may open which app (people of initech.example by the name before the @)'
SELECT app, via,
       string_agg(replace(member, '@initech.example', '') || CASE WHEN status = 'invited' THEN ' (invited)' ELSE '' END,
                  ', ' ORDER BY member) AS who
  FROM audience.app_access('connect')
 GROUP BY app, via
 ORDER BY app, array_position(ARRAY['admin', 'developer', 'member', 'grant', 'invitation'], via);
RESET ROLE;

\echo '== As Amara (viewer member of connect, granted exec-kpis, role demo_connect_viewer): the public apps and hers'
SET ROLE demo_connect_viewer;
SELECT app, visibility, views, unique_viewers FROM audience.top_apps('connect');
SELECT app, member, kind, status, via FROM audience.app_access('connect');
RESET ROLE;

\echo '== As Priya (invited to connect, not yet accepted, role demo_connect_invited) and an outsider: nothing'
SET ROLE demo_connect_invited;
SELECT (SELECT count(*) FROM audience.top_apps) AS top_apps_rows, (SELECT count(*) FROM audience.app_access) AS app_access_rows;
RESET ROLE;
SET ROLE demo_outsider;
SELECT (SELECT count(*) FROM audience.top_apps) AS top_apps_rows, (SELECT count(*) FROM audience.app_access) AS app_access_rows;
RESET ROLE;
