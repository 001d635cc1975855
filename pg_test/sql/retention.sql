-- Retention: the raw events are kept in a partition per calendar month
-- (UTC); retire_events drops whole months, and every answer the rollups
-- hold stays. A person can still be erased from what is left.
begin;

-- A workspace on New York time, viewed by four people every other day from
-- January to April 2025, and by xavier twice.
do $$
begin
    perform audience.create_workspace('acme');
    perform audience.configure_workspace('acme', time_zone => 'America/New_York');
    perform audience.create_app('acme', 'dash');
    insert into audience_ingest.view_imports (workspace, app, viewer, viewed_at, ended_at)
    select 'acme', 'dash', 'user' || i % 4 || '@example.com',
           timestamptz '2025-01-02 15:00+00' + i * interval '2 days 1 hour',
           timestamptz '2025-01-02 15:00+00' + i * interval '2 days 1 hour' + interval '10 minutes'
      from generate_series(0, 55) i;
    perform audience.record_view('acme', 'dash', 'xavier@example.com', '2025-01-31 23:30+00');
    perform audience.record_view('acme', 'dash', 'xavier@example.com', '2025-03-10 12:00+00');
end $$;

-- A partition per UTC month, each with the events of that month (and one
-- made ahead for the month a week from now, not listed).
select c.relname as partition, pg_get_expr(c.relpartbound, c.oid) as bounds,
       (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %s', c.oid::regclass), false, true, '')))[1]::text as events
  from pg_inherits i join pg_class c on c.oid = i.inhrelid
 where i.inhparent = 'audience_internal.view_events'::regclass and c.relname like 'view\_events\_2025\_%'
 order by 1;

create temp table before as
select 'month' as what, to_jsonb(m) as answer from audience.workspace_monthly_viewers('acme', 1200) m where m.views > 0
union all select 'total', to_jsonb(audience.app_total_viewers('acme', 'dash'))
union all select 'month of usage', to_jsonb(u) from audience.usage_over_time('acme', 'dash', '2025-01-01 00:00 America/New_York',
                                                                             '2025-05-01 00:00 America/New_York', 'month') u;
select what, answer from before order by what, answer::text;

-- Retire everything before March 15: January and February are whole
-- months before it, March is not.
select * from audience.retire_events('2025-03-15');
select * from audience.retire_events('2025-03-15');

-- The same answers, from the rollups.
create temp table after as
select 'month' as what, to_jsonb(m) as answer from audience.workspace_monthly_viewers('acme', 1200) m where m.views > 0
union all select 'total', to_jsonb(audience.app_total_viewers('acme', 'dash'))
union all select 'month of usage', to_jsonb(u) from audience.usage_over_time('acme', 'dash', '2025-01-01 00:00 America/New_York',
                                                                             '2025-05-01 00:00 America/New_York', 'month') u;
select count(*) as changed_answers
  from ((table before except all table after) union all (table after except all table before)) d;

-- The sessions listed one by one came from the raw events: January's are gone.
select count(*) as january_sessions_listed
  from audience.app_sessions('acme', 'dash', '2025-01-01 00:00+00', '2025-02-01 00:00+00', max_sessions => 1000);

-- A time zone change would rebuild the rollups from raw events that are gone.
savepoint before_change;
\set SHOW_CONTEXT never
select audience.configure_workspace('acme', time_zone => 'Europe/Paris');
\set SHOW_CONTEXT errors
rollback to before_change;

-- Erasure reaches the retired days: xavier's January view leaves January's
-- uniques, though its raw event is gone; one raw event (March) was left.
select * from audience.forget_viewer('xavier@example.com');
select m.month, m.unique_viewers, m.views
  from audience.workspace_monthly_viewers('acme', 1200) m
 where m.views > 0
 order by m.month;
select b.answer as before_erasure
  from before b where b.what = 'month'
 order by b.answer ->> 'month';

rollback;
