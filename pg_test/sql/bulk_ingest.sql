-- Bulk ingest: COPY into audience_ingest.view_imports, and record_views for a JSON
-- batch. Both keep every rollup current in the same statement, with the
-- rules and the errors of record_view. Views are at fixed past times, so the
-- output reads the same on any day.
\set VERBOSITY terse
begin;

select audience.create_workspace('acme') > 0 as created;
select audience.create_app('acme', 'dashboard') > 0 as created;
select audience.create_app('acme', 'vault', 'private') > 0 as created;
select audience.add_member('acme', 'ada@acme.example', 'admin');

-- The platform streams events with COPY; the staging table keeps nothing.
copy audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) from stdin;
acme	dashboard	ada@acme.example	\N	2025-01-31 23:59:59+00	2025-02-01 00:10:00+00	session
acme	dashboard	Outsider@Mail.example	\N	2025-02-01 00:00:00+00	\N	session
acme	dashboard	\N	cookie-7f3a	2025-02-03 12:00:00+00	\N	visit
acme	dashboard	\N	cookie-7f3a	2025-02-04 12:00:00+00	\N	visit
acme	vault	auditor@ledger.example	\N	2025-02-05 09:00:00+00	\N	session
\.
select count(*) as staged from audience_ingest.view_imports;

-- Every rollup is current: months, all-time totals, last views.
select a.slug as app, m.month, m.unique_viewers, m.views
  from audience_internal.app_months m join audience_internal.apps a using (workspace_id, app_id)
 order by app, month;
select month, unique_viewers, views from audience_internal.workspace_months order by month;
select app, audience.app_total_viewers('acme', app) as all_time
  from (values ('dashboard'), ('vault')) a(app) order by app;
-- The outsider's identity was normalised and hashed, never stored; the
-- auditor's is kept, having been seen on a private app.
select anonymous, identity from audience_internal.viewers order by anonymous, identity;

-- A JSON batch, with the arguments of record_view as keys and its defaults.
select * from audience.record_views($$[
  {"workspace": "acme", "app": "dashboard", "viewer": "ada@acme.example", "viewed_at": "2025-02-10 08:00:00+00"},
  {"workspace": "acme", "app": "vault", "viewer": "ADA@acme.example", "viewed_at": "2025-02-10 08:05:00+00",
   "ended_at": "2025-02-10 08:35:00+00"},
  {"workspace": "acme", "app": "dashboard", "anonymous_id": "cookie-9c1d", "viewed_at": "2025-03-01 00:00:00+00", "kind": "visit"}
]$$);
select month, unique_viewers, views from audience_internal.workspace_months order by month;

-- One bad event fails the whole batch, naming the argument and the event's
-- position (from 0), never the identity; nothing is stored.
savepoint before_batch;
select * from audience.record_views($$[
  {"workspace": "acme", "app": "dashboard", "viewer": "new@mail.example", "viewed_at": "2025-03-02 00:00:00+00"},
  {"workspace": "acme", "app": "dashboard", "viewer": "   ", "viewed_at": "2025-03-02 00:00:00+00"}
]$$);
rollback to savepoint before_batch;
select count(*) as events from audience_internal.view_events;

-- With on_error => 'skip', the good events are stored and the bad reported.
select recorded, jsonb_pretty(skipped) as skipped from audience.record_views($$[
  {"workspace": "acme", "app": "dashboard", "viewer": "new@mail.example", "viewed_at": "2025-03-02 00:00:00+00"},
  {"workspace": "acme", "app": "nowhere", "viewer": "new@mail.example"},
  {"workspace": "acme", "app": "dashboard", "viewer": "new@mail.example", "viewed_at": "next tuesday"},
  {"workspace": "acme", "app": "dashboard", "viewer": "new@mail.example", "viewed_at": "2025-03-02 00:00:00+00",
   "ended_at": "2025-03-01 00:00:00+00"},
  {"workspace": "acme", "app": "dashboard"},
  {"workspace": "acme", "app": "dashboard", "viewr": "typo@mail.example"},
  "not an event"
]$$, on_error => 'skip');
select count(*) as events from audience_internal.view_events;

-- A bad row in a COPY fails the COPY, with the row's number.
savepoint before_copy;
copy audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) from stdin;
acme	dashboard	late@mail.example	\N	2025-03-03 00:00:00+00	\N	session
acme	dashboard	late@mail.example	\N	2025-03-03 00:00:00+00	\N	stream
\.
rollback to savepoint before_copy;
select count(*) as events, (select count(*) from audience_ingest.view_imports) as staged
  from audience_internal.view_events;

rollback;
