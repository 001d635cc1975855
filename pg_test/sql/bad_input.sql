-- Every bad input is refused with a SQLSTATE and a message that names the
-- argument, and changes nothing.
begin;
select audience.create_workspace('acme') > 0 as created;
select audience.create_app('acme', 'dashboard') > 0 as created;

create function pg_temp.attempt(call text) returns text language plpgsql as $$
begin
    execute call;
    return 'accepted';
exception when others then
    return sqlstate || ': ' || sqlerrm;
end $$;

create temp table before as
  select (select count(*) from audience_internal.view_events) as events,
         (select count(*) from audience_internal.apps) as apps,
         (select count(*) from audience_internal.members) as members,
         (select count(*) from audience_internal.workspaces) as workspaces;

select call, pg_temp.attempt(call) as outcome from (values
  ($$select audience.create_app('nowhere', 'x')$$),
  ($$select audience.create_app('acme', 'dashboard')$$),
  ($$select audience.create_app('acme', 'Bad Slug!')$$),
  ($$select audience.create_app('acme', 'x', 'secret')$$),
  ($$select audience.create_workspace('acme')$$),
  ($$select audience.set_app_visibility('acme', 'nope', 'private')$$),
  ($$select audience.add_member('acme', 'x@example.com', 'owner')$$),
  ($$select audience.add_member('acme', '', 'admin')$$),
  ($$select audience.add_member('acme', 'x@example.com', 'admin', 'no_such_role')$$),
  ($$select audience.add_member('acme', 'x@example.com', 'admin', 'audience_reader')$$),
  ($$select audience.remove_member('acme', 'stranger@example.com')$$),
  ($$select audience.record_view('acme', 'dashboard', null)$$),
  ($$select audience.record_view('acme', 'dashboard', repeat('x', 257))$$),
  ($$select audience.record_view('acme', 'dashboard', 'a@example.com', now(), ended_at => now() - interval '1 hour')$$),
  ($$select audience.record_view('acme', 'dashboard', 'a@example.com', now() + interval '2 days')$$),
  ($$select audience.record_view('acme', 'dashboard', 'a@example.com', kind => 'stream')$$),
  ($$select audience.record_view(null, 'dashboard', 'a@example.com')$$),
  ($$select audience.end_session(-1)$$),
  ($$select * from audience.workspace_monthly_viewers('acme', 0)$$),
  ($$select * from audience.recent_viewers('acme', 'dashboard', 0)$$),
  ($$select audience.configure_workspace('acme', time_zone => 'Mars/Olympus')$$)
) as c(call);

select (select count(*) from audience_internal.view_events) as events,
       (select count(*) from audience_internal.apps) as apps,
       (select count(*) from audience_internal.members) as members,
       (select count(*) from audience_internal.workspaces) as workspaces,
       (select row(b.*)::text from before b) as before;

rollback;
