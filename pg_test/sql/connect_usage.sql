-- The Posit Connect usage report of one workspace, as its administrator
-- reads it: imported from the JSON that Connect's Server API serves, then
-- asked the questions Connect administrators build dashboards for.
--
-- Labs runs a Connect server. Its content: a public Shiny app, a private
-- forecasting app and a static report. Grace is an admin, Alan a viewer
-- member granted the private app; others viewing the public app are outsiders
-- or anonymous. The workspace keeps its calendar in Europe/Berlin.
begin;
-- Times as a Connect administrator reads them.
set local timezone = 'UTC';
set local datestyle = 'ISO';
set local intervalstyle = 'postgres';

select audience.create_workspace('labs', 'Labs') > 0 as created;
select audience.configure_workspace('labs', time_zone => 'Europe/Berlin');
select audience.add_member('labs', 'grace@labs.example', 'admin');
select audience.add_member('labs', 'alan@labs.example', 'viewer');
select audience.invite_viewer('labs', 'ada@labs.example');

-- /v1/content and /v1/users as Connect returns them (fields trimmed).
\set content '[{"guid": "c-explorer", "name": "explorer", "title": "Data Explorer", "access_type": "all", "app_mode": "shiny"}, {"guid": "c-forecast", "name": "Forecast", "title": "Sales Forecast", "access_type": "acl", "app_mode": "shiny"}, {"guid": "c-report", "name": "weekly-report", "title": "Weekly Report", "access_type": "all", "app_mode": "rmd-static"}]'
\set users '[{"guid": "u-grace", "username": "grace", "email": "grace@labs.example"}, {"guid": "u-alan", "username": "alan", "email": "alan@labs.example"}, {"guid": "u-kim", "username": "kim", "email": ""}]'

-- /v1/instrumentation/shiny/usage (sessions) and
-- /v1/instrumentation/content/visits (visits). Times are UTC; 23:30 UTC on
-- 9 March is already 10 March in Berlin. One session is still open, one user
-- (u-zed) is not in the users list, one visitor is anonymous.
\set usage '[{"content_guid": "c-explorer", "user_guid": "u-grace", "started": "2026-03-09T08:00:00Z", "ended": "2026-03-09T08:20:00Z", "data_version": 1}, {"content_guid": "c-explorer", "user_guid": "u-kim", "started": "2026-03-09T23:30:00Z", "ended": "2026-03-10T00:15:00Z", "data_version": 1}, {"content_guid": "c-explorer", "user_guid": null, "started": "2026-03-10T09:00:00Z", "ended": "2026-03-10T09:00:04Z", "data_version": 1}, {"content_guid": "c-forecast", "user_guid": "u-alan", "started": "2026-03-10T10:00:00Z", "ended": "2026-03-10T11:30:00Z", "data_version": 1}, {"content_guid": "c-forecast", "user_guid": "u-zed", "started": "2026-03-11T10:00:00Z", "ended": null, "data_version": 1}, {"content_guid": "c-report", "user_guid": "u-alan", "time": "2026-03-11T07:00:00Z", "variant_key": "v1", "rendering_id": 7, "bundle_id": 3, "path": "/", "data_version": 1}, {"content_guid": "c-report", "user_guid": null, "time": "2026-03-12T07:00:00Z", "variant_key": "v1", "rendering_id": 7, "bundle_id": 3, "path": "/", "data_version": 1}]'

select * from audience.import_connect('labs', :'usage', :'users', :'content');
select audience.grant_app_access('labs', 'forecast', 'alan@labs.example');

-- The content became apps, named by their Posit names; private unless
-- access_type is "all".
select app, visibility from audience.visible_apps() where workspace = 'labs';

-- Importing an overlapping page again records nothing new. The session that
-- was open has ended by now: that page carries its end, and the import
-- gives the session its end. Content known from the first import needs no
-- content list.
select * from audience.import_connect('labs',
    '[{"content_guid": "c-forecast", "user_guid": "u-zed", "started": "2026-03-11T10:00:00Z", "ended": "2026-03-11T10:45:00Z", "data_version": 1},
      {"content_guid": "c-explorer", "user_guid": "u-grace", "started": "2026-03-09T08:00:00Z", "ended": "2026-03-09T08:20:00Z", "data_version": 1}]',
    :'users');

-- Sessions of the Data Explorer in March, newest first: members by
-- identity, everyone else under a pseudonym. Kim signed in but is not a
-- member: a pseudonym on a public app.
select case when pseudonymous then '(pseudonym)' else viewer end as viewer, pseudonymous,
       started_at, ended_at, duration, kind
  from audience.app_sessions('labs', 'explorer', '2026-03-01', '2026-04-01');

-- Posit's dashboards hide sessions under five seconds.
select count(*) as sessions_of_5s_or_more
  from audience.app_sessions('labs', 'explorer', '2026-03-01', '2026-04-01', min_duration => '5 seconds');

-- Top apps of March: views, sessions, visits, distinct viewers, time spent
-- in ended sessions.
select * from audience.top_apps('labs', '2026-03-01', '2026-04-01');

-- Most active viewers of the workspace in March. On the private forecasting
-- app, whoever opened it is shown by identity: its access is granted by the
-- workspace.
select case when pseudonymous then '(pseudonym)' else viewer end as viewer, views, sessions, session_time, last_viewed_at
  from audience.top_viewers('labs', since => '2026-03-01', until => '2026-04-01');

-- Usage per day, in Berlin: the late session of 9 March UTC counts on 10 March.
select * from audience.usage_over_time('labs', since => '2026-03-09', until => '2026-03-13');

-- The same by ISO week (from Monday) and for one app.
select * from audience.usage_over_time('labs', 'explorer', '2026-03-01', '2026-04-01', 'week');

-- Who may open which app: the admin everything, Alan the public apps as a
-- member and the forecast by grant, Ada (invited, not yet accepted) the
-- public apps once she accepts.
select * from audience.app_access('labs');

-- Is viewership increasing? (Only the months' shape is shown here: the
-- figures depend on today's date.)
select count(*) as months, bool_and(change_pct is null or change_pct = round(change_pct, 1)) as one_decimal
  from audience.viewer_trend('labs');

-- A window must not be empty, and a bucket must be one of day, week, month.
\set VERBOSITY terse
savepoint refused;
select * from audience.top_apps('labs', '2026-04-01', '2026-03-01');
rollback to savepoint refused;
select * from audience.usage_over_time('labs', bucket => 'fortnight');
rollback to savepoint refused;

-- A malformed record refuses the whole import, naming its index; nothing of
-- it is stored.
select * from audience.import_connect('labs',
    '[{"content_guid": "c-explorer", "user_guid": "u-grace", "started": "2026-03-20T08:00:00Z", "ended": null},
      {"content_guid": "c-explorer", "user_guid": "u-grace", "started": "yesterday-ish"}]');
rollback to savepoint refused;
select * from audience.import_connect('labs', '[{"content_guid": "c-unknown", "user_guid": null, "time": "2026-03-20T08:00:00Z"}]');
rollback to savepoint refused;
select count(*) as sessions_in_march from audience.app_sessions('labs', 'explorer', '2026-03-01', '2026-04-01');

rollback;
