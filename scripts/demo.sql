-- What the platform operator reads off pg_audience for the Acme workspace:
-- the analytics a hosted-app platform shows in its analytics modal; then the
-- same analytics as different people see them.
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
    FOREACH r IN ARRAY ARRAY['demo_admin', 'demo_viewer', 'demo_invited', 'demo_outsider'] LOOP
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
