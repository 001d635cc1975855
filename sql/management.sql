-- Management functions (docs/spec.md §4), for the platform operator.
--
-- Every management and ingest function in schema audience is SECURITY
-- DEFINER: its callers hold no privilege on the tables in audience_internal,
-- so the function acts on their behalf with the extension owner's rights.
-- Each pins search_path so that no object a caller creates can stand in for
-- one of ours, and plan_cache_mode so that the caller's setting does not
-- choose its plans (on Citus, a generic plan of some of its statements
-- cannot be distributed). (The read functions are SECURITY INVOKER
-- wrappers over definer bodies, pinned alike: sql/requester.sql says why.)
--
-- The argument checks they use are in sql/checks.sql, the rollup rebuild in
-- sql/rollups.sql.

-- A workspace's keys are made where they are stored: on Citus,
-- audience.distribute() makes these two functions ones that Citus runs on the
-- worker holding the workspace (delegated by the workspace id, the only
-- argument), so that no key is written into a statement the coordinator
-- sends, where a failing statement's text is logged (docs/citus.md). On one
-- server they are plain calls. Callers call them in a FROM clause: the form
-- Citus delegates from inside another function.
CREATE FUNCTION audience_internal.add_keys(workspace_id bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    new_identity_key bytea := audience_internal.random_key();
    new_pseudonym_key bytea := audience_internal.random_key();
BEGIN
    INSERT INTO audience_internal.workspace_keys (workspace_id, identity_key, pseudonym_key)
    VALUES (add_keys.workspace_id, new_identity_key, new_pseudonym_key);
    RETURN add_keys.workspace_id;
END
$$;

-- Replaces a workspace's pseudonym key and returns the key's new version.
CREATE FUNCTION audience_internal.new_pseudonym_key(workspace_id bigint)
RETURNS integer LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    new_key bytea := audience_internal.random_key();
    new_version integer;
BEGIN
    UPDATE audience_internal.workspace_keys k
       SET pseudonym_key = new_key,
           pseudonym_key_version = k.pseudonym_key_version + 1,
           pseudonym_key_rotated_at = now()
     WHERE k.workspace_id = new_pseudonym_key.workspace_id
    RETURNING k.pseudonym_key_version INTO new_version;
    RETURN new_version;
END
$$;

CREATE FUNCTION audience.create_workspace(slug text, name text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    id bigint;
BEGIN
    PERFORM audience_internal.check_slug(slug, 'slug');
    PERFORM audience_internal.check_name(name, 'name');
    IF EXISTS (SELECT FROM audience_internal.workspaces w WHERE w.slug = create_workspace.slug) THEN
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = format('workspace "%s" already exists', slug);
    END IF;
    INSERT INTO audience_internal.workspaces (slug, name)
    VALUES (slug, coalesce(name, slug))
    RETURNING workspaces.workspace_id INTO id;
    PERFORM FROM audience_internal.add_keys(id);
    RETURN id;
END
$$;
COMMENT ON FUNCTION audience.create_workspace(text, text) IS
    'Creates a workspace (a tenant) with its own random keys and returns its id. Operator only.';

CREATE FUNCTION audience.configure_workspace(
    workspace text,
    time_zone text DEFAULT NULL,
    identification_start timestamptz DEFAULT NULL,
    counting_start timestamptz DEFAULT NULL,
    pseudonym_rotation text DEFAULT NULL,
    pseudonym_scope text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws audience_internal.workspaces;
    rebuild boolean := false;
BEGIN
    PERFORM audience_internal.require_read_committed();
    -- The workspace's lock first (the lock order at the top of
    -- sql/ingest.sql): ingest reads the time zone and counting start under a
    -- lock that conflicts with this one, so the change and its rebuild below
    -- and the workspace's ingest take turns. The row is read once the lock
    -- is held: the latest committed version.
    ws.workspace_id := audience_internal.workspace_id(workspace);
    PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws.workspace_id FOR UPDATE;
    SELECT * INTO ws FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id;
    IF time_zone IS NOT NULL AND time_zone IS DISTINCT FROM ws.time_zone THEN
        IF NOT audience_internal.named_time_zone(time_zone) THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = 'invalid argument "time_zone": not a named time zone (an IANA name such as Europe/Paris)';
        END IF;
        ws.time_zone := time_zone;
        rebuild := true;
    END IF;
    IF identification_start IS NOT NULL THEN
        ws.identification_start := identification_start;
    END IF;
    IF counting_start IS NOT NULL AND counting_start IS DISTINCT FROM ws.counting_start THEN
        ws.counting_start := counting_start;
        rebuild := true;
    END IF;
    IF pseudonym_rotation IS NOT NULL THEN
        ws.pseudonym_rotation := audience_internal.check_choice(pseudonym_rotation, 'pseudonym_rotation', ARRAY['none', 'monthly']);
    END IF;
    IF pseudonym_scope IS NOT NULL THEN
        ws.pseudonym_scope := audience_internal.check_choice(pseudonym_scope, 'pseudonym_scope', ARRAY['workspace', 'requester']);
    END IF;
    UPDATE audience_internal.workspaces w
       SET time_zone = ws.time_zone,
           identification_start = ws.identification_start,
           counting_start = ws.counting_start,
           pseudonym_rotation = ws.pseudonym_rotation,
           pseudonym_scope = ws.pseudonym_scope
     WHERE w.workspace_id = ws.workspace_id;
    IF rebuild THEN
        PERFORM audience_internal.rebuild_rollups(ws.workspace_id);
    END IF;
END
$$;
COMMENT ON FUNCTION audience.configure_workspace(text, text, timestamptz, timestamptz, text, text) IS
    'Sets a workspace''s time zone (months are counted in it), identification start (earlier views are pseudonymous), counting start (all-time totals count from it), pseudonym rotation (none or monthly) and pseudonym scope (workspace, or requester: each requester sees their own pseudonyms). NULL leaves a setting as it is. Operator only.';

CREATE FUNCTION audience.create_app(workspace text, slug text, visibility text DEFAULT 'public', name text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    id bigint;
BEGIN
    PERFORM audience_internal.check_slug(slug, 'slug');
    PERFORM audience_internal.check_choice(visibility, 'visibility', ARRAY['public', 'private']);
    PERFORM audience_internal.check_name(name, 'name');
    IF EXISTS (SELECT FROM audience_internal.apps a WHERE a.workspace_id = ws_id AND a.slug = create_app.slug) THEN
        RAISE EXCEPTION USING ERRCODE = '23505',
            MESSAGE = format('app "%s" already exists in workspace "%s"', slug, workspace);
    END IF;
    INSERT INTO audience_internal.apps (workspace_id, slug, name, visibility)
    VALUES (ws_id, slug, coalesce(name, slug), visibility)
    RETURNING apps.app_id INTO id;
    INSERT INTO audience_internal.app_visibility_changes (workspace_id, app_id, changed_at, visibility)
    VALUES (ws_id, id, '-infinity', visibility);
    RETURN id;
END
$$;
COMMENT ON FUNCTION audience.create_app(text, text, text, text) IS
    'Creates an app in a workspace, public or private, and returns its id. Operator only.';

CREATE FUNCTION audience.set_app_visibility(workspace text, app text, visibility text)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    a_id bigint := audience_internal.app_id(ws_id, workspace, app);
BEGIN
    PERFORM audience_internal.check_choice(visibility, 'visibility', ARRAY['public', 'private']);
    -- The public sets made again below read the rollups as the folds
    -- committed before this one left them: a snapshot per statement.
    PERFORM audience_internal.require_read_committed();
    -- The workspace's lock first, FOR UPDATE (the lock order of
    -- sql/ingest.sql): ingest and folds of the workspace in progress finish
    -- first, and those after, which read the app once they hold the lock,
    -- see the new visibility.
    PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws_id FOR UPDATE;
    UPDATE audience_internal.apps a
       SET visibility = set_app_visibility.visibility, visibility_since = now()
     WHERE a.workspace_id = ws_id AND a.app_id = a_id AND a.visibility <> set_app_visibility.visibility;
    IF FOUND THEN
        INSERT INTO audience_internal.app_visibility_changes AS c (workspace_id, app_id, changed_at, visibility)
        VALUES (ws_id, a_id, now(), visibility)
        ON CONFLICT (workspace_id, app_id, changed_at) DO UPDATE SET visibility = excluded.visibility;
        PERFORM audience_internal.remake_public_sets(ws_id);
    END IF;
END
$$;
COMMENT ON FUNCTION audience.set_app_visibility(text, text, text) IS
    'Makes an app public or private from now on. Views keep the visibility they were made under. Operator only.';

-- Adding a member takes the workspace's lock first (the lock order at the
-- top of sql/ingest.sql), FOR NO KEY UPDATE: ingest's key-share lock is not
-- held up, and two adds of one person take turns. A member is unique by
-- identity and by identity hash; an upsert resolves a conflict only on the
-- key it names, so two adds at once made the second fail on the other.
CREATE FUNCTION audience_internal.lock_members(workspace_id bigint)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = lock_members.workspace_id FOR NO KEY UPDATE;
END
$$;

CREATE FUNCTION audience.add_member(workspace text, member text, kind text, db_role name DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    ident text := audience_internal.normalize_identity('member', audience_internal.require(member, 'member'));
    role_id regrole;
BEGIN
    PERFORM audience_internal.check_choice(kind, 'kind', ARRAY['admin', 'developer', 'viewer']);
    role_id := audience_internal.check_role(db_role);
    PERFORM audience_internal.lock_members(ws_id);
    INSERT INTO audience_internal.members AS m
           (workspace_id, identity, identity_hash, kind, status, db_role, joined_at)
    VALUES (ws_id, ident, audience_internal.identity_hash(audience_internal.identity_key(ws_id), ident),
            kind, 'active', role_id, now())
    ON CONFLICT (workspace_id, identity) DO UPDATE
       SET kind = excluded.kind,
           status = 'active',
           db_role = coalesce(excluded.db_role, m.db_role),
           joined_at = coalesce(m.joined_at, excluded.joined_at);
END
$$;
COMMENT ON FUNCTION audience.add_member(text, text, text, name) IS
    'Adds a member (admin, developer or viewer) to a workspace, or changes an existing member''s kind; db_role maps the member to a database role (the role itself: renaming keeps the mapping, dropping ends it). Operator only.';

CREATE FUNCTION audience.invite_viewer(workspace text, member text, app text DEFAULT NULL, db_role name DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    ident text := audience_internal.normalize_identity('member', audience_internal.require(member, 'member'));
    a_id bigint;
    role_id regrole;
BEGIN
    IF app IS NOT NULL THEN
        a_id := audience_internal.app_id(ws_id, workspace, app);
    END IF;
    role_id := audience_internal.check_role(db_role);
    PERFORM audience_internal.lock_members(ws_id);
    -- An existing member keeps their kind and status: an invitation never demotes.
    INSERT INTO audience_internal.members AS m
           (workspace_id, identity, identity_hash, kind, status, db_role, invited_at)
    VALUES (ws_id, ident, audience_internal.identity_hash(audience_internal.identity_key(ws_id), ident),
            'viewer', 'invited', role_id, now())
    ON CONFLICT (workspace_id, identity) DO UPDATE
       SET db_role = coalesce(excluded.db_role, m.db_role);
    IF a_id IS NOT NULL THEN
        PERFORM audience.grant_app_access(workspace, app, ident);
    END IF;
END
$$;
COMMENT ON FUNCTION audience.invite_viewer(text, text, text, name) IS
    'Invites a viewer to a workspace (status invited until accept_invite), optionally granting one app. Operator only.';

CREATE FUNCTION audience.accept_invite(workspace text, member text)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    ident text := audience_internal.normalize_identity('member', audience_internal.require(member, 'member'));
    -- A variable, not now() in the statement: Citus runs the update where
    -- the row is, and takes no function there that is not immutable.
    accepted_at timestamptz := now();
BEGIN
    UPDATE audience_internal.members m
       SET status = 'active', joined_at = coalesce(m.joined_at, accepted_at)
     WHERE m.workspace_id = ws_id AND m.identity = ident;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('invalid argument "member": no such member or invitation in workspace "%s"', workspace);
    END IF;
END
$$;
COMMENT ON FUNCTION audience.accept_invite(text, text) IS
    'Marks an invited viewer as having accepted: from now on they are a member. Operator only.';

CREATE FUNCTION audience.remove_member(workspace text, member text)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    ident text := audience_internal.normalize_identity('member', audience_internal.require(member, 'member'));
BEGIN
    DELETE FROM audience_internal.members m WHERE m.workspace_id = ws_id AND m.identity = ident;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('invalid argument "member": no such member in workspace "%s"', workspace);
    END IF;
    DELETE FROM audience_internal.app_access g WHERE g.workspace_id = ws_id AND g.identity = ident;
END
$$;
COMMENT ON FUNCTION audience.remove_member(text, text) IS
    'Removes a member and their app grants; their views are shown under a pseudonym from now on. Operator only.';

CREATE FUNCTION audience.grant_app_access(workspace text, app text, member text)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
    a_id bigint := audience_internal.app_id(ws_id, workspace, app);
    ident text := audience_internal.normalize_identity('member', audience_internal.require(member, 'member'));
BEGIN
    INSERT INTO audience_internal.app_access (workspace_id, app_id, identity, identity_hash)
    VALUES (ws_id, a_id, ident, audience_internal.identity_hash(audience_internal.identity_key(ws_id), ident))
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION audience.grant_app_access(text, text, text) IS
    'Lets a member, or a person granted this app alone, open a private app. Operator only.';

CREATE FUNCTION audience.rotate_pseudonym_key(workspace text)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_variable
DECLARE
    ws_id bigint := audience_internal.workspace_id(workspace);
BEGIN
    PERFORM FROM audience_internal.new_pseudonym_key(ws_id);
END
$$;
COMMENT ON FUNCTION audience.rotate_pseudonym_key(text) IS
    'Replaces a workspace''s pseudonym key: no earlier pseudonym or viewer_ref appears again. Operator only.';

-- Deletes a workspace and everything stored for it: apps, members, grants,
-- keys, viewers, events, rollups, what Posit Connect imports remembered. For
-- a platform removing a tenant; its slug can be used again. Definer rights:
-- the caller holds no privilege on the tables. The workspace's lock is taken
-- first, FOR UPDATE (the lock order at the top of sql/ingest.sql): ingest in
-- progress commits first and is deleted too; ingest that waited then finds no
-- workspace. Every table with a workspace_id column is found in the catalog,
-- so that a table added later is not forgotten, and emptied of the
-- workspace's rows through its index by workspace. Foreign-key triggers are
-- off for this (session_replication_role): a cascade would look for each
-- viewer's and each app's rows one at a time.
CREATE FUNCTION audience.delete_workspace(workspace text)
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
SET session_replication_role = replica
AS $$
DECLARE
    ws_id bigint := audience_internal.workspace_id(delete_workspace.workspace);
    t regclass;
    n_events bigint;
BEGIN
    PERFORM audience_internal.require_read_committed();
    PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws_id FOR UPDATE;
    DELETE FROM audience_internal.view_events e WHERE e.workspace_id = ws_id;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    FOR t IN
        SELECT c.oid::regclass
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped
         WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND c.oid NOT IN ('audience_internal.workspaces'::regclass, 'audience_internal.view_events'::regclass)
         ORDER BY c.relname
    LOOP
        EXECUTE format('DELETE FROM %s x WHERE x.workspace_id = $1', t) USING ws_id;
    END LOOP;
    DELETE FROM audience_internal.workspaces w WHERE w.workspace_id = ws_id;
    RETURN n_events;
END
$$;
COMMENT ON FUNCTION audience.delete_workspace(text) IS
    'Deletes a workspace and everything stored for it (apps, members, grants, keys, viewers, events, rollups, imported Posit Connect records) and returns the number of view events deleted; the slug can be used again. Operator only.';
