-- How labels follow the history of an app and the workspace's settings.
begin;

select audience.create_workspace('globex') > 0 as created;
select audience.create_app('globex', 'lab-notebook') > 0 as created;
select audience.add_member('globex', 'hank@globex.example', 'developer');

-- While the notebook is public, an outsider views it.
select audience.record_view('globex', 'lab-notebook', 'visitor@mail.example', now() - interval '2 days') > 0 as recorded;

-- Then it becomes private, and the outsider, now granted, views it again.
select audience.set_app_visibility('globex', 'lab-notebook', 'private');
select audience.grant_app_access('globex', 'lab-notebook', 'visitor@mail.example');
select audience.record_view('globex', 'lab-notebook', 'visitor@mail.example') > 0 as recorded;

-- Their latest view was made while the app was private: shown by identity.
select viewer, pseudonymous, views from audience.recent_viewers('globex', 'lab-notebook');

-- A view from before the change that arrives late keeps the visibility it was
-- made under; it does not make the viewer's latest view any older.
select audience.record_view('globex', 'lab-notebook', 'late@mail.example', now() - interval '3 days') > 0 as recorded;
select case when pseudonymous then '(pseudonym)' else viewer end as viewer, last_viewed
  from audience.recent_viewers('globex', 'lab-notebook');

-- Views before the identification start are shown under a pseudonym, whoever
-- made them.
select audience.configure_workspace('globex', identification_start => now() + interval '1 second');
select count(*) filter (where pseudonymous) as pseudonyms, count(*) as viewers
  from audience.recent_viewers('globex', 'lab-notebook');
select audience.configure_workspace('globex', identification_start => '-infinity');

-- Rotating the pseudonym key: no earlier pseudonym or viewer_ref appears again.
create temp table before_rotation as
  select viewer, viewer_ref from audience.recent_viewers('globex', 'lab-notebook') where pseudonymous;
select audience.rotate_pseudonym_key('globex');
select count(*) as reappearing
  from audience.recent_viewers('globex', 'lab-notebook') r
  join before_rotation b on b.viewer = r.viewer or b.viewer_ref = r.viewer_ref;

-- A member who leaves goes back to a pseudonym, and an identity shown by name
-- and the same person under a pseudonym never share a viewer_ref, so a
-- reference cannot link a pseudonym to a name.
select audience.create_app('globex', 'wiki') > 0 as created;
select audience.record_view('globex', 'wiki', 'hank@globex.example') > 0 as recorded;
create temp table as_member as select viewer, viewer_ref from audience.recent_viewers('globex', 'wiki');
select viewer from as_member;
select audience.remove_member('globex', 'hank@globex.example');
select r.pseudonymous, r.viewer = m.viewer as same_label, r.viewer_ref = m.viewer_ref as same_ref
  from audience.recent_viewers('globex', 'wiki') r, as_member m;

-- The same person has unrelated pseudonyms in two workspaces.
select audience.create_workspace('initech') > 0 as created;
select audience.create_app('initech', 'reports') > 0 as created;
select audience.create_app('globex', 'reports') > 0 as created;
select audience.record_view(w, 'reports', 'someone@mail.example') > 0 as recorded
  from (values ('globex'), ('initech')) v(w);
select count(distinct viewer) as labels, count(distinct viewer_ref) as refs
  from (select * from audience.recent_viewers('globex', 'reports')
        union all select * from audience.recent_viewers('initech', 'reports')) both_workspaces;

rollback;
