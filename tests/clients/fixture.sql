-- What the client tests read, loaded by scripts/test into a database of its
-- own (psql -v db=...). Two workspaces; in acme a public and a private app;
-- three login roles as a BI tool would use them: an admin of acme, a viewer
-- member of acme, and a login that is nobody's; and the pooled login of the
-- dashboard, with the secret its request tokens are signed with. Among the viewers, people no
-- reader may see by identity: a visitor from outside (public app, so a
-- pseudonym for everyone), a viewer of the private app (shown to acme's
-- admin only), and globex's admin (nothing of globex shows to acme).
-- The login roles have passwords: the JDBC client connects over TCP, as
-- Metabase does.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

DROP DATABASE IF EXISTS :"db";
DROP ROLE IF EXISTS clients_admin, clients_viewer, clients_outsider, clients_pool;
CREATE ROLE clients_admin LOGIN PASSWORD 'clients-admin-pw' IN ROLE audience_reader;
CREATE ROLE clients_viewer LOGIN PASSWORD 'clients-viewer-pw' IN ROLE audience_reader;
CREATE ROLE clients_outsider LOGIN PASSWORD 'clients-outsider-pw' IN ROLE audience_reader;
-- The dashboard's pooled login: a person per request, by token.
CREATE ROLE clients_pool LOGIN PASSWORD 'clients-pool-pw' IN ROLE audience_reader;
CREATE DATABASE :"db";
\connect :"db"
CREATE EXTENSION pg_audience;

SELECT audience.set_token_secret('clients-dashboard-token-secret-0123456789');
SELECT audience.create_workspace('acme', 'Acme Corporation');
SELECT audience.create_app('acme', 'sales', 'public', 'Sales Dashboard');
SELECT audience.create_app('acme', 'payroll', 'private', 'Payroll Explorer');
SELECT audience.add_member('acme', 'ada@acme.example', 'admin', 'clients_admin');
SELECT audience.add_member('acme', 'vic@acme.example', 'viewer', 'clients_viewer');
SELECT audience.grant_app_access('acme', 'payroll', 'pat.payroll@acme.example');
SELECT audience.create_workspace('globex', 'Globex Inc');
SELECT audience.create_app('globex', 'intranet', 'private', 'Globex Intranet');
SELECT audience.add_member('globex', 'gina@globex.example', 'admin');

-- Views over the last 100 days, a few a day, through the COPY path's table.
INSERT INTO audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)
SELECT v.workspace, v.app, v.viewer, v.anonymous_id, t.viewed_at, t.viewed_at + interval '7 minutes', 'session'
  FROM generate_series(1, 100) d,
       LATERAL (VALUES
           ('acme', 'sales', 'ada@acme.example', NULL),
           ('acme', 'sales', 'vic@acme.example', NULL),
           ('acme', 'sales', 'olga.outsider@elsewhere.example', NULL),
           ('acme', 'sales', NULL, 'cookie-' || (d % 7)),
           ('acme', 'payroll', 'ada@acme.example', NULL),
           ('acme', 'payroll', 'pat.payroll@acme.example', NULL),
           ('globex', 'intranet', 'gina@globex.example', NULL)) v(workspace, app, viewer, anonymous_id),
       LATERAL (SELECT now() - make_interval(days => d, hours => length(coalesce(v.viewer, v.anonymous_id))) AS viewed_at) t
 WHERE d % 3 <> 0 OR v.viewer IS NOT NULL;
