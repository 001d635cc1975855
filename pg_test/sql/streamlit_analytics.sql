-- The Streamlit-style analytics of one workspace, told as a story.
--
-- Acme hosts two apps. Ada is an admin, Ken an accepted viewer member, Radia
-- an invited viewer who has not accepted yet. People outside Acme and
-- anonymous visitors open the public dashboard; the churn model is private.
begin;

select audience.create_workspace('acme', 'Acme Analytics') > 0 as created;
select audience.create_app('acme', 'dashboard') > 0 as public_app;
select audience.create_app('acme', 'churn-model', 'private') > 0 as private_app;
select audience.add_member('acme', 'ada@acme.example', 'admin');
select audience.add_member('acme', 'ken@acme.example', 'viewer');
select audience.invite_viewer('acme', 'radia@acme.example');
select audience.grant_app_access('acme', 'churn-model', 'auditor@ledger.example');

-- Views, newest last. Times are relative to now so that "5 minutes ago"
-- reads the same on any day.
select count(audience.record_view('acme', app, viewer, now() - ago::interval, anonymous_id)) as recorded
  from (values
    ('dashboard',   'ada@acme.example',       '40 days',    null),
    ('dashboard',   'ken@acme.example',       '4 days',     null),
    ('dashboard',   'outsider@mail.example',  '30 hours',   null),
    ('dashboard',   'radia@acme.example',     '3 hours',    null),
    ('dashboard',   null,                     '20 minutes', 'cookie-7f3a'),
    ('dashboard',   null,                     '6 minutes',  'cookie-7f3a'),
    ('dashboard',   'ada@acme.example',       '5 minutes',  null),
    ('churn-model', 'auditor@ledger.example', '2 hours',    null),
    ('churn-model', 'ken@acme.example',       '10 seconds', null)
  ) as v(app, viewer, ago, anonymous_id);

-- Recent viewers of the public dashboard. Members are shown by identity;
-- the outsider, the anonymous visitor and the not-yet-accepted invitee get a
-- pseudonym (two capitalised words) and an opaque viewer_ref.
select case when pseudonymous then '(pseudonym)' else viewer end as viewer,
       pseudonymous,
       viewer ~ '^[A-Z][a-z]+ [A-Z][a-z]+$' as two_words,
       length(viewer_ref) as ref_length,
       last_viewed,
       views
  from audience.recent_viewers('acme', 'dashboard');

-- On the private app, whoever opened it is shown by identity, member or not:
-- access to a private app is granted by the workspace.
select viewer, pseudonymous, last_viewed, views
  from audience.recent_viewers('acme', 'churn-model');

-- The same viewer keeps the same pseudonym across queries.
select count(distinct viewer) = 1 and count(distinct viewer_ref) = 1 as stable
  from (select viewer, viewer_ref from audience.recent_viewers('acme', 'dashboard') where pseudonymous and views = 2
        union all
        select viewer, viewer_ref from audience.recent_viewers('acme', 'dashboard') where pseudonymous and views = 2) twice;

-- When Radia accepts, she is shown by identity from then on: membership is
-- judged when the question is asked.
select audience.accept_invite('acme', 'radia@acme.example');
select viewer, pseudonymous from audience.recent_viewers('acme', 'dashboard') where last_viewed = '3 hours ago';

-- The two most recent viewers only.
select case when pseudonymous then '(pseudonym)' else viewer end as viewer, last_viewed
  from audience.recent_viewers('acme', 'dashboard', 2);

-- All-time unique viewers of each app.
select app, audience.app_total_viewers('acme', app) as all_time
  from (values ('dashboard'), ('churn-model')) a(app) order by app;

-- Monthly unique viewers, in a workspace of its own whose views sit at
-- fixed places around month boundaries (UTC), so that the answer reads the
-- same on any day: the first instant of this month, the last second of last
-- month, and a viewer seen in both months and in two apps.
select audience.create_workspace('monthly') > 0 as created;
select audience.create_app('monthly', 'one') > 0 as created;
select audience.create_app('monthly', 'two') > 0 as created;
create temp table month_start as
  select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' as this_month;
select count(audience.record_view('monthly', app, viewer, at, anonymous_id)) as recorded
  from month_start, lateral (values
    ('one', 'a@mail.example', this_month,                                 null),
    ('one', 'b@mail.example', this_month - interval '1 second',           null),
    ('two', 'a@mail.example', this_month - interval '10 days',            null),
    ('one', 'a@mail.example', this_month - interval '11 days',            null),
    ('one', null,             this_month - interval '12 days',            'cookie-1'),
    ('two', 'c@mail.example', this_month - interval '1 month 5 days',     null)
  ) as v(app, viewer, at, anonymous_id);

select case months_back when 0 then 'this month' when 1 then 'last month' else months_back || ' months ago' end as month,
       unique_viewers, views, complete
  from (select (12 * (extract(year from m.this_month at time zone 'UTC') - extract(year from month))
                + extract(month from m.this_month at time zone 'UTC') - extract(month from month))::int as months_back, r.*
          from month_start m, audience.workspace_monthly_viewers('monthly', 4) r) x
 order by months_back desc;

select app, unique_viewers, views
  from (values ('one'), ('two')) a(app), audience.app_monthly_viewers('monthly', app, 2) r, month_start m
 where r.month < (m.this_month at time zone 'UTC')::date
 order by app;

-- A session ends: its duration is kept with the event.
select audience.end_session(audience.record_view('acme', 'dashboard', 'ken@acme.example', now() - interval '15 minutes'),
                            now() - interval '5 minutes');
select ended_at - viewed_at as duration
  from audience_internal.view_events order by event_id desc limit 1;


rollback;
