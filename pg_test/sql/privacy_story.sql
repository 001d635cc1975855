-- The same question — who recently viewed Acme's apps? — asked by five
-- people. Each gets exactly what the privacy model allows, whatever client
-- they use: psql as a member, a BI tool as an analyst role, an application
-- sharing one pooled role among its end users.
begin;

-- Login roles as a platform would create them, holding the reader capability.
create role story_admin;
create role story_viewer;
create role story_invited;
create role story_outsider;
create role story_pool;
grant audience_reader to story_admin, story_viewer, story_invited, story_outsider, story_pool;

select audience.create_workspace('acme') > 0 as created;
select audience.create_app('acme', 'dashboard') > 0 as public_app;
select audience.create_app('acme', 'churn-model', 'private') > 0 as private_app;
select audience.create_workspace('globex') > 0 as other_tenant;
select audience.create_app('globex', 'lab') > 0 as created;

-- Ada, an admin, uses psql as story_admin; Ken, a viewer member, uses a BI
-- tool as story_viewer; Radia was invited but has not accepted; Tess uses the
-- web app, which connects as story_pool and vouches for her with a token.
select audience.add_member('acme', 'ada@acme.example', 'admin', 'story_admin');
select audience.add_member('acme', 'ken@acme.example', 'viewer', 'story_viewer');
select audience.invite_viewer('acme', 'radia@acme.example', 'churn-model', 'story_invited');
select audience.add_member('acme', 'tess@acme.example', 'viewer');
select audience.grant_app_access('acme', 'churn-model', 'tess@acme.example');

select count(audience.record_view(w, app, viewer, now() - ago::interval, anonymous_id)) as recorded
  from (values
    ('acme',   'dashboard',   'outsider@mail.example', '3 hours',    null),
    ('acme',   'dashboard',   null,                    '2 hours',    'cookie-9'),
    ('acme',   'dashboard',   'ken@acme.example',      '1 hour',     null),
    ('acme',   'churn-model', 'tess@acme.example',     '30 minutes', null),
    ('globex', 'lab',         'ada@acme.example',      '10 minutes', null)
  ) as v(w, app, viewer, ago, anonymous_id);

-- Ada, admin: every app of Acme, members by name, others as pseudonyms.
set role story_admin;
select requester, resolved_by, workspace, kind from audience.whoami();
select app, case when pseudonymous then '(pseudonym)' else viewer end as viewer, last_viewed
  from audience.recent_viewers order by app, last_viewed_at desc;
reset role;

-- Ken, viewer member: the public dashboard only; the private churn model,
-- which he was not granted, does not exist for him.
set role story_viewer;
select requester, resolved_by, workspace, kind from audience.whoami();
select app, case when pseudonymous then '(pseudonym)' else viewer end as viewer, last_viewed
  from audience.recent_viewers order by app, last_viewed_at desc;
select app, total_viewers from audience.app_total_viewers;
reset role;

-- Radia, invited but not yet a member: nothing, not even that Acme exists.
set role story_invited;
select requester, resolved_by, workspace, kind from audience.whoami();
select count(*) as rows_seen from audience.recent_viewers;
reset role;

-- An outsider: nothing either.
set role story_outsider;
select requester, resolved_by from audience.whoami();
select count(*) as rows_seen from audience.recent_viewers;
select count(*) as rows_seen from audience.workspace_monthly_viewers;
reset role;

-- The pooled application role on its own is nobody.
set role story_pool;
select requester, resolved_by from audience.whoami();
select count(*) as rows_seen from audience.apps;
reset role;

-- With a request token: the platform's operator sets the secret once; the
-- web app mints an HS256 token for Tess (here with pgcrypto) and presents it
-- at the start of each transaction.
select audience.set_token_secret('a secret of at least thirty-two bytes');
create extension pgcrypto;
create function pg_temp.jwt(claims jsonb, secret text) returns text language sql as $$
    select h || '.' || p || '.' || translate(encode(hmac(h || '.' || p, secret, 'sha256'), 'base64'), E'+/=\n', '-_')
      from (select translate(encode(convert_to('{"alg":"HS256","typ":"JWT"}', 'UTF8'), 'base64'), E'+/=\n', '-_') as h,
                   translate(encode(convert_to(claims::text, 'UTF8'), 'base64'), E'+/=\n', '-_') as p) parts
$$;
create temp table tokens as
  select pg_temp.jwt(jsonb_build_object('sub', 'tess@acme.example', 'exp', extract(epoch from now() + interval '5 minutes')::bigint,
                                        'jti', 'request-1'),
                     'a secret of at least thirty-two bytes') as good,
         pg_temp.jwt(jsonb_build_object('sub', 'ada@acme.example', 'exp', extract(epoch from now() + interval '5 minutes')::bigint,
                                        'jti', 'request-2'),
                     'a guessed secret, thirty-two bytes long') as forged,
         pg_temp.jwt(jsonb_build_object('sub', 'tess@acme.example', 'exp', extract(epoch from now() - interval '1 minute')::bigint,
                                        'jti', 'request-3'),
                     'a secret of at least thirty-two bytes') as expired;
grant select on tokens to story_pool;

set role story_pool;
-- A forged or expired token is refused, and the pooled role stays nobody.
savepoint before_forged;
select audience.authenticate(forged) from tokens;
rollback to before_forged;
savepoint before_expired;
select audience.authenticate(expired) from tokens;
rollback to before_expired;
select requester, resolved_by from audience.whoami();

-- Tess's token: she is a viewer member granted the churn model. Rolling
-- back to a savepoint undoes it, and undoes its use: a token is good once.
savepoint before_good;
select audience.authenticate(good) as authenticated from tokens;
rollback to before_good;
select requester, resolved_by from audience.whoami();
select audience.authenticate(good) as authenticated from tokens;
select requester, resolved_by, workspace, kind from audience.whoami();
select app, case when pseudonymous then '(pseudonym)' else viewer end as viewer, last_viewed
  from audience.recent_viewers order by app, last_viewed_at desc;
-- Used once, the token is spent: whoever replays it is refused.
savepoint replay;
select audience.authenticate(good) from tokens;
rollback to replay;
reset role;

rollback;
