-- Who a query runs for, and what they may see (docs/spec.md §2). This file is the one
-- place that decides both.
--
-- The requester is, in this order:
--   1. the subject of a request token verified in this transaction by
--      audience.authenticate (backend memory, never a setting);
--   2. otherwise the members mapped to the caller's database role
--      (current_user where the public function was called, carried into the
--      definer code by a ticket: src/privacy/requester.rs), or to a role it
--      is a member of;
--   3. otherwise nobody, who sees nothing.
-- A platform operator (a superuser, or a member of audience_manager) without
-- a token sees every workspace in full.
--
-- These helpers have no SET clauses, so that they run in the caller's
-- settings. Each that reads a table is PL/pgSQL, its plans kept for the
-- session, and is called on its own, never inside a query over the
-- extension's tables: Citus refuses a SQL function that reads its tables,
-- inlined or not, and a function called inside a query it sends to a worker
-- runs there, where it knows neither the requester nor the rows
-- (docs/citus.md). Callers keep what they return in variables. They are
-- only ever called by the SECURITY DEFINER functions of this extension,
-- whose search_path is pinned.

-- Whether a role is the platform operator's: a superuser, or a member of
-- audience_manager.
CREATE FUNCTION audience_internal.operator_role(role_id oid)
RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.oid = operator_role.role_id
                      AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'audience_manager', 'MEMBER')));
END
$$;

CREATE FUNCTION audience_internal.requester_is_operator()
RETURNS boolean LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT audience_internal.token_subject() IS NULL
       AND audience_internal.operator_role(audience_internal.caller_role())
$$;

-- The caller's role and every role it is a member of, directly or not.
-- PL/pgSQL so that its plan is cached for the session rather than made at
-- every call.
CREATE FUNCTION audience_internal.requester_roles()
RETURNS oid[] LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN ARRAY(
        WITH RECURSIVE r(oid) AS (
            SELECT audience_internal.caller_role()
            UNION
            SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN r ON a.member = r.oid
        )
        SELECT r.oid FROM r);
END
$$;

-- The requester's active memberships, in one workspace when
-- `only_workspace` is given: each branch an index lookup (members by
-- identity, by db_role), planned once a session. On a Citus cluster a
-- workspace named goes to that workspace's shard, not to every one.
CREATE FUNCTION audience_internal.requester_memberships(only_workspace bigint DEFAULT NULL)
RETURNS TABLE (workspace_id bigint, member_id bigint, kind text, identity text, identity_hash bytea)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 4
AS $$
#variable_conflict use_column
DECLARE
    subject text := audience_internal.token_subject();
    token_workspace text := audience_internal.token_workspace();
    token_workspace_id bigint;
    -- By name, not by number: on Citus each node numbers its roles, and
    -- the names are made roles again where the members' rows are.
    roles text[];
BEGIN
    IF subject IS NOT NULL THEN
        IF token_workspace IS NOT NULL THEN
            SELECT w.workspace_id INTO token_workspace_id
              FROM audience_internal.workspaces w WHERE w.slug = token_workspace;
            IF token_workspace_id IS NULL THEN
                RETURN;
            END IF;
        END IF;
        RETURN QUERY
        SELECT m.workspace_id, m.member_id, m.kind, m.identity, m.identity_hash
          FROM audience_internal.members m
         WHERE m.identity = subject AND m.status = 'active'
           AND (token_workspace_id IS NULL OR m.workspace_id = token_workspace_id)
           AND (requester_memberships.only_workspace IS NULL OR m.workspace_id = requester_memberships.only_workspace);
    ELSE
        roles := audience_internal.requester_roles()::regrole[]::text[];
        RETURN QUERY
        SELECT m.workspace_id, m.member_id, m.kind, m.identity, m.identity_hash
          FROM audience_internal.members m
         WHERE m.db_role = ANY (roles::regrole[]) AND m.status = 'active'
           AND (requester_memberships.only_workspace IS NULL OR m.workspace_id = requester_memberships.only_workspace);
    END IF;
END
$$;

-- How much of a workspace the requester sees: 'all' its apps (operator,
-- admin, developer), 'some' (an accepted viewer member), or NULL: nothing,
-- not even that it exists.
CREATE FUNCTION audience_internal.workspace_access(workspace_id bigint)
RETURNS text LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN CASE WHEN audience_internal.requester_is_operator() THEN 'all'
                ELSE (SELECT CASE WHEN bool_or(m.kind IN ('admin', 'developer')) THEN 'all'
                                  WHEN count(*) > 0 THEN 'some' END
                        FROM audience_internal.requester_memberships(workspace_access.workspace_id) m)
           END;
END
$$;

-- The apps of one workspace the requester sees, given their access to it:
-- every app with 'all'; with 'some', as viewer members have, the public apps
-- and the private apps granted to them; none otherwise. `only_app` narrows
-- the answer to that app. The rule is stated here once: app_visible asks it
-- about one app, readable_app_ids lists it. Planned for each call's
-- arguments, so that asking about one app reads that app's rows only.
CREATE FUNCTION audience_internal.visible_apps(workspace_id bigint, access text, only_app bigint DEFAULT NULL)
RETURNS TABLE (app_id bigint)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    own bytea[];
BEGIN
    IF visible_apps.access = 'some' THEN
        own := ARRAY(SELECT m.identity_hash FROM audience_internal.requester_memberships(visible_apps.workspace_id) m);
    END IF;
    RETURN QUERY
    SELECT a.app_id
      FROM audience_internal.apps a
     WHERE a.workspace_id = visible_apps.workspace_id
       AND (visible_apps.only_app IS NULL OR a.app_id = visible_apps.only_app)
       AND (visible_apps.access = 'all' OR (visible_apps.access = 'some' AND a.visibility = 'public'))
    UNION
    SELECT g.app_id
      FROM audience_internal.app_access g
     WHERE g.workspace_id = visible_apps.workspace_id
       AND (visible_apps.only_app IS NULL OR g.app_id = visible_apps.only_app)
       AND g.identity_hash = ANY (own);
END
$$;

-- Whether the requester sees one app, given their access to its workspace.
CREATE FUNCTION audience_internal.app_visible(workspace_id bigint, app_id bigint, access text)
RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM audience_internal.visible_apps(app_visible.workspace_id, app_visible.access,
                                                              app_visible.app_id));
END
$$;

-- Every app the requester sees, with their access to its workspace: for the
-- operator, every app in one query; otherwise the apps of each workspace
-- the requester is a member of.
CREATE FUNCTION audience_internal.requester_apps()
RETURNS TABLE (workspace_id bigint, workspace text, app_id bigint, app text, name text, visibility text, access text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
#variable_conflict use_column
DECLARE
    ws bigint;
    ws_access text;
    ids bigint[];
BEGIN
    IF audience_internal.requester_is_operator() THEN
        RETURN QUERY
        SELECT w.workspace_id, w.slug, a.app_id, a.slug, a.name, a.visibility, 'all'::text
          FROM audience_internal.workspaces w
          JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id;
        RETURN;
    END IF;
    FOR ws IN SELECT DISTINCT m.workspace_id FROM audience_internal.requester_memberships() m LOOP
        ws_access := audience_internal.workspace_access(ws);
        CONTINUE WHEN ws_access IS NULL;
        ids := audience_internal.readable_app_ids(ws, ws_access);
        RETURN QUERY
        SELECT w.workspace_id, w.slug, a.app_id, a.slug, a.name, a.visibility, ws_access
          FROM audience_internal.workspaces w
          JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id
         WHERE w.workspace_id = ws AND a.workspace_id = ws AND (ids IS NULL OR a.app_id = ANY (ids));
    END LOOP;
END
$$;

-- The apps of a workspace the requester may see, given their access to it;
-- NULL when that is every app (the reads then use the indexes by workspace
-- rather than by app).
CREATE FUNCTION audience_internal.readable_app_ids(workspace_id bigint, access text)
RETURNS bigint[] LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    IF readable_app_ids.access IS NOT DISTINCT FROM 'all' THEN
        RETURN NULL;
    END IF;
    RETURN ARRAY(SELECT v.app_id FROM audience_internal.visible_apps(readable_app_ids.workspace_id, readable_app_ids.access) v
                  ORDER BY v.app_id);
END
$$;

-- What a read may see of the workspace and app a reader names: the
-- workspace, the requester's access to it, and the apps to count: the app
-- named, or, when the read allows no app (`app_required` false), the apps of
-- the workspace the requester sees, NULL meaning every one. A workspace or
-- app the requester may not see gets the same error as one that does not
-- exist, raised here, so that not even the error's context tells them apart
-- and the context shows one helper.
CREATE FUNCTION audience_internal.read_scope(
    ticket bytea, workspace text, app text, app_required boolean,
    OUT workspace_id bigint, OUT access text, OUT app_ids bigint[])
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    problem audience_internal.problem;
    named_app bigint;
BEGIN
    PERFORM audience_internal.enter(read_scope.ticket);
    IF read_scope.workspace IS NULL THEN
        problem := audience_internal.null_argument('workspace');
    ELSE
        SELECT w.workspace_id INTO read_scope.workspace_id
          FROM audience_internal.workspaces w WHERE w.slug = read_scope.workspace;
        IF read_scope.workspace_id IS NOT NULL THEN
            read_scope.access := audience_internal.workspace_access(read_scope.workspace_id);
        END IF;
        IF read_scope.access IS NULL THEN
            problem := audience_internal.missing_workspace(read_scope.workspace);
        ELSIF read_scope.app IS NOT NULL THEN
            -- The app first, then whether it is visible, each on its own: a
            -- function that reads tables is not called inside another
            -- query's rows (on Citus such a call would run on a worker,
            -- docs/citus.md).
            SELECT a.app_id INTO named_app FROM audience_internal.apps a
             WHERE a.workspace_id = read_scope.workspace_id AND a.slug = read_scope.app;
            IF named_app IS NOT NULL AND audience_internal.app_visible(read_scope.workspace_id, named_app, read_scope.access) THEN
                read_scope.app_ids := ARRAY[named_app];
            ELSE
                problem := audience_internal.missing_app(read_scope.workspace, read_scope.app);
            END IF;
        ELSIF read_scope.app_required THEN
            problem := audience_internal.null_argument('app');
        ELSE
            read_scope.app_ids := audience_internal.readable_app_ids(read_scope.workspace_id, read_scope.access);
        END IF;
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = (problem).sqlstate, MESSAGE = (problem).message;
    END IF;
END
$$;

CREATE TYPE audience.whoami_row AS (
    requester text,
    resolved_by text,
    workspace text,
    kind text);
COMMENT ON TYPE audience.whoami_row IS
    'One workspace of whoami.';

CREATE FUNCTION audience_internal.whoami_for(ticket bytea)
RETURNS SETOF audience.whoami_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 2
-- Definer rights: members are not readable by the caller.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    caller_name text;
    resolved_by text;
    ws_ids bigint[];
    identities text[];
    kinds text[];
BEGIN
    PERFORM audience_internal.enter(ticket);
    caller_name := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = audience_internal.caller_role());
    IF audience_internal.requester_is_operator() THEN
        RETURN QUERY SELECT caller_name, 'operator'::text, w.slug, 'operator'::text
                       FROM audience_internal.workspaces w ORDER BY w.slug;
        RETURN;
    END IF;
    resolved_by := CASE WHEN audience_internal.token_subject() IS NOT NULL THEN 'token' ELSE 'role ' || caller_name END;
    SELECT array_agg(m.workspace_id), array_agg(m.identity), array_agg(m.kind)
      INTO ws_ids, identities, kinds
      FROM audience_internal.requester_memberships() m;
    RETURN QUERY
    SELECT m.identity, resolved_by, w.slug, m.kind
      FROM unnest(ws_ids, identities, kinds) m(workspace_id, identity, kind)
      JOIN audience_internal.workspaces w ON w.workspace_id = m.workspace_id
     ORDER BY w.slug;
    IF NOT FOUND THEN
        RETURN QUERY SELECT audience_internal.token_subject(),
                            CASE WHEN audience_internal.token_subject() IS NOT NULL THEN 'token' ELSE 'nobody' END,
                            NULL::text, NULL::text;
    END IF;
END
$$;

CREATE FUNCTION audience.whoami()
RETURNS SETOF audience.whoami_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 2
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.whoami_for(audience_internal.ticket());
END;
COMMENT ON FUNCTION audience.whoami() IS
    'Who the current query runs for (by request token, database role, or as operator) and which workspaces it sees, one row per workspace; resolved_by nobody when it sees none.';

CREATE FUNCTION audience.set_token_secret(secret text)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
-- Definer rights: the secret table is readable by no caller.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
    IF octet_length(audience_internal.require(secret, 'secret')) < 32 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "secret": must be at least 32 bytes';
    END IF;
    INSERT INTO audience_internal.token_secrets AS t (secret) VALUES (convert_to(secret, 'UTF8'))
    ON CONFLICT (singleton) DO UPDATE SET secret = excluded.secret, set_at = excluded.set_at;
END
$$;
COMMENT ON FUNCTION audience.set_token_secret(text) IS
    'Sets or rotates the HS256 secret (at least 32 bytes) that audience.authenticate checks request tokens against. Operator only.';

-- Spends a request token (by the digest of its id, until it expires): true
-- the first time, NULL once spent. A token in use by a transaction not yet
-- committed makes a second use wait, then be refused; if that transaction
-- rolls back, the token was never spent. Each call also clears two spent
-- tokens that have expired, so the table holds about as many rows as there
-- are tokens alive. Called by accept_token (src/lib.rs).
CREATE FUNCTION audience_internal.spend_token(token_id bytea, expires_epoch bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_column
DECLARE
    spent boolean;
BEGIN
    DELETE FROM audience_internal.spent_tokens s
     WHERE s.token_id IN (SELECT x.token_id FROM audience_internal.spent_tokens x
                           WHERE x.expires_at < now()
                           ORDER BY x.expires_at LIMIT 2
                             FOR UPDATE SKIP LOCKED);
    INSERT INTO audience_internal.spent_tokens (token_id, expires_at)
    VALUES (spend_token.token_id, to_timestamp(least(spend_token.expires_epoch, 253402300799)))
    ON CONFLICT (token_id) DO NOTHING
    RETURNING true INTO spent;
    RETURN spent;
END
$$;

CREATE FUNCTION audience.authenticate(token text)
RETURNS text LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
-- Definer rights: the secret is readable by no caller, nor are spent tokens.
-- A refused token must not reach the server log with the statement that
-- carried it (log_min_error_statement), whatever else the operator logs.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
SET log_min_error_statement = panic
AS $$
DECLARE
    -- Read in a statement of its own: on a Citus cluster, a query over the
    -- secret's reference table that also called accept_token could be sent
    -- whole to a node, where the token's spending is a nested distributed
    -- query that Citus refuses.
    secret bytea := (SELECT t.secret FROM audience_internal.token_secrets t);
BEGIN
    RETURN audience_internal.accept_token(token, secret);
END
$$;
COMMENT ON FUNCTION audience.authenticate(text) IS
    'Verifies a request token (HS256 JWT with claims sub, exp, jti and optionally workspace) and makes its subject the requester for the current transaction only (undone by rolling back to a savepoint taken before); returns the subject. A token is good once: a second use, from any session, is refused. A bad signature, another algorithm, an expired, reused or malformed token is an error, leaves no requester and is not logged with its statement. Pass the token as a bind parameter, so that it is not in pg_stat_activity.';
