-- The bulk write path (docs/spec.md §4, ingest): many events in one call
-- (audience.record_views) and COPY (audience_ingest.view_imports). Both end in
-- the statement trigger on audience_ingest.view_imports, which stores the
-- events set-wise with the rules of audience.record_view (sql/ingest.sql):
-- - the same checks, in the same order, with the same SQLSTATEs and messages
--   (audience_internal.view_problem, in sql/ingest.sql), plus the position
--   of the bad row;
-- - identities and anonymous ids normalised and hashed by the same Rust
--   helpers; the plaintext identity kept only for identifiable views;
-- - visibility at viewed_at;
-- and folds them into the rollups (sql/rollups.sql) in the statement that
-- stores them.
--
-- The statement's rows are taken from the transition table once, as
-- arrays; every later statement reads those, so that on Citus, where the
-- staging table stays on the coordinator, each runs as one server would run
-- it (docs/citus.md). It locks the batch's workspaces in workspace_id order,
-- then writes each workspace's rows in the order every writer takes its row
-- locks (viewers, events, then the rollups), each in primary-key order (the
-- lock order at the top of sql/ingest.sql), so concurrent batches and single
-- events wait for each other but never deadlock.

-- The COPY target has a schema of its own, usable by the ingest role alone,
-- so that readers, who use schema audience, list there only what they may
-- read.
CREATE SCHEMA audience_ingest;
REVOKE ALL ON SCHEMA audience_ingest FROM PUBLIC;
COMMENT ON SCHEMA audience_ingest IS
    'pg_audience ingest: COPY or INSERT view events into audience_ingest.view_imports. For the ingest role.';

-- The COPY path. Unlogged: rows live here only for the statement that
-- inserts them (the trigger below folds and removes them), so writing them to
-- the WAL would only slow ingest down; a crash loses nothing committed.
CREATE UNLOGGED TABLE audience_ingest.view_imports (
    workspace text,
    app text,
    viewer text,
    anonymous_id text,
    viewed_at timestamptz DEFAULT now(),
    ended_at timestamptz,
    kind text DEFAULT 'session'
);
COMMENT ON TABLE audience_ingest.view_imports IS
    'COPY or INSERT view events here, columns as the arguments of record_view: each statement stores its rows as events and updates every rollup, then leaves this table empty. A bad row fails the whole statement with the record_view error and its row number. Ingest only.';

-- The workspace and app each distinct (workspace, app) pair of slugs names,
-- for the checks of the bulk paths: workspace_id NULL for no such workspace, app_id
-- NULL for no such app (or a NULL slug). PL/pgSQL, called on its own: on
-- Citus a query over the transition table or a JSON batch cannot join the
-- distributed apps (docs/citus.md).
CREATE FUNCTION audience_internal.named_apps(workspaces text[], apps text[])
RETURNS TABLE (workspace text, app text, workspace_id bigint, app_id bigint)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
#variable_conflict use_column
DECLARE
    ws_slugs text[] := ARRAY(SELECT DISTINCT x FROM unnest(named_apps.workspaces) x WHERE x IS NOT NULL);
    app_slugs text[] := ARRAY(SELECT DISTINCT x FROM unnest(named_apps.apps) x WHERE x IS NOT NULL);
    found_slugs text[];
    found_ids bigint[];
    app_ws bigint[];
    app_found text[];
    app_found_ids bigint[];
BEGIN
    SELECT array_agg(w.slug), array_agg(w.workspace_id) INTO found_slugs, found_ids
      FROM audience_internal.workspaces w WHERE w.slug = ANY (ws_slugs);
    SELECT array_agg(a.workspace_id), array_agg(a.slug), array_agg(a.app_id) INTO app_ws, app_found, app_found_ids
      FROM audience_internal.apps a WHERE a.workspace_id = ANY (found_ids) AND a.slug = ANY (app_slugs);
    RETURN QUERY
    SELECT p.workspace, p.app, w.workspace_id, a.app_id
      FROM (SELECT DISTINCT x.workspace, x.app FROM unnest(named_apps.workspaces, named_apps.apps) x(workspace, app)) p
      LEFT JOIN unnest(found_slugs, found_ids) w(slug, workspace_id) ON w.slug = p.workspace
      LEFT JOIN unnest(app_ws, app_found, app_found_ids) a(workspace_id, slug, app_id)
        ON a.workspace_id = w.workspace_id AND a.slug = p.app;
END
$$;

-- Stores a batch of one workspace's view events and folds them into the
-- rollups (fold_batch), and returns how many it stored: the rows of one
-- workspace of a bulk statement, already checked (view_problem), as arrays
-- of one length. The caller holds the workspace's lock (the lock order at
-- the top of sql/ingest.sql), so the apps' visibility read here is the
-- latest committed one. Rows whose app is not found are not stored (the
-- caller compares the count). Identities and anonymous ids are hashed
-- here, with the key read from where it is stored, so that on Citus the
-- key never travels in a statement sent to a worker.
-- session_replication_role = replica: the viewers' and events' foreign keys
-- are not checked row by row, which would cost more than all the rest of
-- the fold; the caller's lock keeps every parent.
CREATE FUNCTION audience_internal.store_events(
    workspace_id bigint, apps text[], viewers text[], anonymous_ids text[], viewed_ats timestamptz[],
    ended_ats timestamptz[], kinds text[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET session_replication_role = replica
SET work_mem = '256MB'
SET plan_cache_mode = force_custom_plan
SET enable_nestloop = on
SET enable_mergejoin = on
AS $$
#variable_conflict use_column
DECLARE
    ws bigint := store_events.workspace_id;
    ikey bytea;
    -- The batch's apps, and the history of their visibility.
    b_slugs text[];
    b_ids bigint[];
    b_visibility text[];
    b_since timestamptz[];
    h_apps bigint[];
    h_at timestamptz[];
    h_visibility text[];
    -- The events, and the batch's viewers, those stored already and all.
    e_apps bigint[];
    e_identities text[];
    e_hashes bytea[];
    e_viewed timestamptz[];
    e_ended timestamptz[];
    e_kinds text[];
    e_identifiable boolean[];
    n_hashes bytea[];
    n_anonymous boolean[];
    n_identities text[];
    k_hashes bytea[];
    k_ids bigint[];
    k_identified boolean[];
    v_hashes bytea[];
    v_ids bigint[];
    e_viewers bigint[];
    n_stored bigint;
    login oid := audience_internal.session_login();
BEGIN
    -- As in fold_batch: hashing is what scales for a big batch.
    IF cardinality(store_events.apps) > 1000 THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
    END IF;
    SELECT k.identity_key INTO ikey FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws;
    b_slugs := ARRAY(SELECT DISTINCT x FROM unnest(store_events.apps) x);
    SELECT array_agg(a.slug), array_agg(a.app_id), array_agg(a.visibility), array_agg(a.visibility_since)
      INTO b_slugs, b_ids, b_visibility, b_since
      FROM audience_internal.apps a WHERE a.workspace_id = ws AND a.slug = ANY (b_slugs);
    SELECT array_agg(c.app_id), array_agg(c.changed_at), array_agg(c.visibility) INTO h_apps, h_at, h_visibility
      FROM audience_internal.app_visibility_changes c WHERE c.workspace_id = ws AND c.app_id = ANY (b_ids);

    -- Identifiable: a named viewer on an app private when viewed (its
    -- visibility then, from the history, for a view before the last change).
    SELECT array_agg(a.app_id), array_agg(h.identity), array_agg(h.viewer_hash), array_agg(i.viewed_at),
           array_agg(i.ended_at), array_agg(i.kind),
           array_agg(h.identity IS NOT NULL
                     AND CASE WHEN i.viewed_at < a.since
                              THEN (SELECT c.visibility
                                      FROM unnest(h_apps, h_at, h_visibility) c(app_id, changed_at, visibility)
                                     WHERE c.app_id = a.app_id AND c.changed_at <= i.viewed_at
                                     ORDER BY c.changed_at DESC LIMIT 1)
                              ELSE a.visibility END = 'private')
      INTO e_apps, e_identities, e_hashes, e_viewed, e_ended, e_kinds, e_identifiable
      FROM unnest(store_events.apps, store_events.viewers, store_events.anonymous_ids, store_events.viewed_ats,
                  store_events.ended_ats, store_events.kinds) i(app, viewer, anonymous_id, viewed_at, ended_at, kind)
      JOIN unnest(b_slugs, b_ids, b_visibility, b_since) a(slug, app_id, visibility, since) ON a.slug = i.app
     CROSS JOIN LATERAL (
          SELECT n.identity,
                 coalesce(audience_internal.identity_hash(ikey, n.identity),
                          audience_internal.anonymous_hash(ikey,
                              audience_internal.normalize_anonymous_id('anonymous_id', i.anonymous_id))) AS viewer_hash
            FROM (SELECT audience_internal.normalize_identity('viewer', i.viewer) AS identity OFFSET 0) n
     ) h;

    SELECT array_agg(b.viewer_hash), array_agg(b.anonymous), array_agg(b.identity)
      INTO n_hashes, n_anonymous, n_identities
      FROM (SELECT x.viewer_hash, bool_and(x.identity IS NULL) AS anonymous,
                   max(x.identity) FILTER (WHERE x.identifiable) AS identity
              FROM unnest(e_hashes, e_identities, e_identifiable) x(viewer_hash, identity, identifiable)
             GROUP BY x.viewer_hash) b;
    -- Looked up through the unique index (a batch meets a small part of a
    -- big viewers table), and held as their foreign keys would hold them.
    SELECT array_agg(s.viewer_hash), array_agg(s.viewer_id), array_agg(s.has_identity)
      INTO k_hashes, k_ids, k_identified
      FROM (SELECT v.viewer_hash, v.viewer_id, v.identity IS NOT NULL AS has_identity
              FROM audience_internal.viewers v
             WHERE v.workspace_id = ws AND v.viewer_hash = ANY (n_hashes)
             ORDER BY v.viewer_hash
               FOR KEY SHARE) s;
    -- New viewers, and those seen on a private app now but stored without
    -- identity so far.
    WITH added AS (
        INSERT INTO audience_internal.viewers AS v (workspace_id, viewer_hash, anonymous, identity)
        SELECT ws, n.viewer_hash, n.anonymous, n.identity
          FROM unnest(n_hashes, n_anonymous, n_identities) n(viewer_hash, anonymous, identity)
          LEFT JOIN unnest(k_hashes, k_ids, k_identified) k(viewer_hash, viewer_id, has_identity)
            ON k.viewer_hash = n.viewer_hash
         WHERE k.viewer_id IS NULL OR (n.identity IS NOT NULL AND NOT k.has_identity)
         ORDER BY n.viewer_hash
        ON CONFLICT (workspace_id, viewer_hash) DO UPDATE
           SET identity = coalesce(v.identity, excluded.identity)
        RETURNING v.viewer_hash, v.viewer_id
    )
    SELECT array_agg(x.viewer_hash), array_agg(x.viewer_id) INTO v_hashes, v_ids
      FROM (SELECT k.viewer_hash, k.viewer_id FROM unnest(k_hashes, k_ids) k(viewer_hash, viewer_id)
            UNION
            SELECT a.viewer_hash, a.viewer_id FROM added a) x;

    -- Each array below comes from one aggregate pass, so they stay aligned.
    SELECT array_agg(e.app_id), array_agg(m.viewer_id), array_agg(e.viewed_at), array_agg(e.ended_at),
           array_agg(e.kind), array_agg(e.identifiable)
      INTO e_apps, e_viewers, e_viewed, e_ended, e_kinds, e_identifiable
      FROM unnest(e_apps, e_hashes, e_viewed, e_ended, e_kinds, e_identifiable)
           e(app_id, viewer_hash, viewed_at, ended_at, kind, identifiable)
      JOIN unnest(v_hashes, v_ids) m(viewer_hash, viewer_id) ON m.viewer_hash = e.viewer_hash;

    -- The login that records them named here: on Citus a default could be
    -- computed on a worker, whose session is not this login's.
    INSERT INTO audience_internal.view_events
           (workspace_id, app_id, viewer_id, viewed_at, ended_at, kind, identifiable, recorded_by)
    SELECT ws, e.app_id, e.viewer_id, e.viewed_at, e.ended_at, e.kind, e.identifiable, login
      FROM unnest(e_apps, e_viewers, e_viewed, e_ended, e_kinds, e_identifiable)
           e(app_id, viewer_id, viewed_at, ended_at, kind, identifiable)
     -- In the order of the largest index: neighbouring entries go in
     -- together, at a fraction of the cost of scattered ones.
     ORDER BY e.app_id, e.viewed_at;
    GET DIAGNOSTICS n_stored = ROW_COUNT;

    -- Into the rollups in the statement that stores them: a batch is
    -- already a set, so a pending copy of it would only be written and
    -- deleted again.
    PERFORM audience_internal.fold_batch(ws, e_apps, e_viewers, e_viewed, e_ended, e_kinds, e_identifiable);
    RETURN n_stored;
END
$$;

-- The work of the trigger below: checks a statement's rows, stores them
-- and folds them. A function of its own because the trigger fires after
-- its statement has run, where a Citus coordinator takes each statement of
-- a trigger as a top-level one: a read routed to one shard would run on
-- the worker outside any transaction block, and a workspace's FOR KEY
-- SHARE lock would end with it. The statements of a function called by a
-- query run in the transaction Citus opens on the workers
-- (docs/citus.md, "How the writes run on both").
CREATE FUNCTION audience_internal.import_views(r_workspaces text[], r_apps text[], r_viewers text[],
    r_anonymous text[], r_viewed timestamptz[], r_ended timestamptz[], r_kinds text[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET work_mem = '256MB'
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    bad record;
    n_rows bigint;
    n_events bigint := 0;
    -- The workspaces and apps they name.
    n_workspaces text[];
    n_apps text[];
    n_workspace_ids bigint[];
    n_app_ids bigint[];
    -- Each workspace named, and its id.
    w_names text[];
    w_ids bigint[];
    ws_ids bigint[];
    ws bigint;
    s_apps text[];
    s_viewers text[];
    s_anonymous text[];
    s_viewed timestamptz[];
    s_ended timestamptz[];
    s_kinds text[];
BEGIN
    n_rows := coalesce(cardinality(r_workspaces), 0);
    IF n_rows = 0 THEN
        RETURN 0;
    END IF;

    SELECT array_agg(n.workspace), array_agg(n.app), array_agg(n.workspace_id), array_agg(n.app_id)
      INTO n_workspaces, n_apps, n_workspace_ids, n_app_ids
      FROM audience_internal.named_apps(r_workspaces, r_apps) n;
    SELECT array_agg(x.workspace), array_agg(x.workspace_id) INTO w_names, w_ids
      FROM (SELECT DISTINCT y.workspace, y.workspace_id
              FROM unnest(n_workspaces, n_workspace_ids) y(workspace, workspace_id)) x;
    -- The first bad row, by position, fails the statement: nothing is stored.
    -- Every row is checked first (a MATERIALIZED query, planned for all of
    -- them), with the names looked up by hashing: planned for the first bad
    -- row only, the lookup became a nested loop over every pair of names
    -- for each row when no row was bad.
    WITH problems AS MATERIALIZED (
        SELECT i.pos, p.problem
          FROM unnest(r_workspaces, r_apps, r_viewers, r_anonymous, r_viewed, r_ended, r_kinds) WITH ORDINALITY
               i(workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind, pos)
          LEFT JOIN unnest(w_names, w_ids) w(workspace, workspace_id) ON w.workspace = i.workspace
          LEFT JOIN unnest(n_workspaces, n_apps, n_app_ids) n(workspace, app, app_id)
            ON n.workspace = i.workspace AND n.app = i.app
          CROSS JOIN LATERAL (SELECT audience_internal.view_problem(i.workspace, i.app, i.viewer, i.viewed_at,
                                  i.anonymous_id, i.ended_at, i.kind, w.workspace_id, n.app_id)) p(problem)
         WHERE p.problem IS NOT NULL
    )
    SELECT x.pos, x.problem INTO bad FROM problems x ORDER BY x.pos LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = (bad.problem).sqlstate,
            MESSAGE = audience_internal.problem_message(bad.problem, format('row %s of this import', bad.pos));
    END IF;

    PERFORM audience_internal.add_event_month(m.at)
       FROM (SELECT min(x) AS at FROM unnest(r_viewed) x GROUP BY audience_internal.event_month(x) ORDER BY 1) m;

    -- The workspaces' locks, in workspace_id order, then each workspace's
    -- rows, workspace after workspace (the lock order at the top of
    -- sql/ingest.sql). A workspace deleted since the checks has no lock to
    -- take, and an app deleted since is not found by store_events: the
    -- whole statement is then refused, to retry.
    ws_ids := ARRAY(SELECT x FROM unnest(w_ids) x ORDER BY 1);
    FOREACH ws IN ARRAY ws_ids LOOP
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = '40001',
                MESSAGE = 'an app or workspace of this import was deleted meanwhile; retry the import';
        END IF;
    END LOOP;
    IF cardinality(ws_ids) = 1 THEN
        n_events := audience_internal.store_events(ws_ids[1], r_apps, r_viewers, r_anonymous, r_viewed, r_ended, r_kinds);
    ELSE
        -- Each workspace's rows, in their order, split off in one pass over
        -- the statement's rows (a pass per workspace would read them all
        -- once for each).
        FOR ws, s_apps, s_viewers, s_anonymous, s_viewed, s_ended, s_kinds IN
            SELECT w.workspace_id, array_agg(i.app ORDER BY i.pos), array_agg(i.viewer ORDER BY i.pos),
                   array_agg(i.anonymous_id ORDER BY i.pos), array_agg(i.viewed_at ORDER BY i.pos),
                   array_agg(i.ended_at ORDER BY i.pos), array_agg(i.kind ORDER BY i.pos)
              FROM unnest(r_workspaces, r_apps, r_viewers, r_anonymous, r_viewed, r_ended, r_kinds) WITH ORDINALITY
                   i(workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind, pos)
              JOIN unnest(w_names, w_ids) w(workspace, workspace_id) ON w.workspace = i.workspace
             GROUP BY w.workspace_id
             ORDER BY w.workspace_id
        LOOP
            n_events := n_events
                        + audience_internal.store_events(ws, s_apps, s_viewers, s_anonymous, s_viewed, s_ended, s_kinds);
        END LOOP;
    END IF;
    IF n_events <> n_rows THEN
        RAISE EXCEPTION USING ERRCODE = '40001',
            MESSAGE = 'an app or workspace of this import was deleted meanwhile; retry the import';
    END IF;

    -- Every row this transaction can see here was inserted by this
    -- statement: earlier statements emptied the table the same way, and rows
    -- of transactions still in progress are not visible.
    DELETE FROM audience_ingest.view_imports;
    RETURN n_events;
END
$$;

COMMENT ON FUNCTION audience_internal.import_views(text[], text[], text[], text[], timestamptz[], timestamptz[], text[]) IS
    'The work of the view_imports trigger: checks the rows of one statement (in order, one array per column), stores them as view events, updates every rollup, and empties the staging table. Returns the number of events stored.';

-- SECURITY DEFINER because the platform's web tier may write into the
-- staging table but holds no privilege on the tables in audience_internal;
-- search_path is pinned so that no object of the caller's can stand in for
-- one of ours (and the functions it calls set session_replication_role,
-- which only a superuser may).
CREATE FUNCTION audience_internal.fold_view_imports()
RETURNS trigger LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    -- The statement's rows, in order, taken once from the transition table.
    r_workspaces text[];
    r_apps text[];
    r_viewers text[];
    r_anonymous text[];
    r_viewed timestamptz[];
    r_ended timestamptz[];
    r_kinds text[];
BEGIN
    PERFORM audience_internal.require_read_committed();
    SELECT array_agg(r.workspace), array_agg(r.app), array_agg(r.viewer), array_agg(r.anonymous_id),
           array_agg(r.viewed_at), array_agg(r.ended_at), array_agg(r.kind)
      INTO r_workspaces, r_apps, r_viewers, r_anonymous, r_viewed, r_ended, r_kinds
      FROM new_rows r;
    IF r_workspaces IS NULL THEN
        RETURN NULL;
    END IF;
    -- Called from a query, not as an expression: PL/pgSQL evaluates a bare
    -- call without the executor, and Citus would take the function's
    -- statements for top-level ones again (above).
    PERFORM FROM audience_internal.import_views(r_workspaces, r_apps, r_viewers, r_anonymous,
                                                r_viewed, r_ended, r_kinds);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION audience_internal.fold_view_imports() IS
    'Trigger of audience_ingest.view_imports: hands the rows a statement inserted to import_views, which checks, stores and folds them.';

CREATE TRIGGER fold_view_imports
    AFTER INSERT ON audience_ingest.view_imports
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audience_internal.fold_view_imports();
-- Also in a session with session_replication_role = replica (a restore, a
-- replication worker): a row that reached the table unfolded would be lost.
ALTER TABLE audience_ingest.view_imports ENABLE ALWAYS TRIGGER fold_view_imports;
COMMENT ON TRIGGER fold_view_imports ON audience_ingest.view_imports IS
    'Folds each COPY or INSERT into the events and rollups, set-wise, in the same statement.';

-- SECURITY DEFINER because the platform's web tier holds no privilege on the
-- tables (nor on the staging table); search_path is pinned so that no object
-- of the caller's can stand in for one of ours.
CREATE FUNCTION audience.record_views(events jsonb, on_error text DEFAULT 'abort')
RETURNS TABLE (recorded bigint, skipped jsonb)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    n bigint;
    problems jsonb;
    first_problem jsonb;
    event_keys constant text[] := ARRAY['workspace', 'app', 'viewer', 'viewed_at', 'anonymous_id', 'ended_at', 'kind'];
    n_workspaces text[];
    n_apps text[];
    n_workspace_ids bigint[];
    n_app_ids bigint[];
BEGIN
    PERFORM audience_internal.require_read_committed();
    PERFORM audience_internal.check_choice(record_views.on_error, 'on_error', ARRAY['abort', 'skip']);
    IF jsonb_typeof(audience_internal.require(record_views.events, 'events')) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'invalid argument "events": must be a JSON array of objects';
    END IF;

    -- The workspaces and apps the events name, looked up on their own.
    SELECT array_agg(n.workspace), array_agg(n.app), array_agg(n.workspace_id), array_agg(n.app_id)
      INTO n_workspaces, n_apps, n_workspace_ids, n_app_ids
      FROM audience_internal.named_apps(
               ARRAY(SELECT e ->> 'workspace' FROM jsonb_array_elements(record_views.events) e
                      WHERE jsonb_typeof(e) = 'object'),
               ARRAY(SELECT e ->> 'app' FROM jsonb_array_elements(record_views.events) e
                      WHERE jsonb_typeof(e) = 'object')) n;

    WITH parsed AS MATERIALIZED (
        SELECT e.i - 1 AS idx,
               CASE
                 WHEN jsonb_typeof(e.ev) <> 'object'
                   THEN audience_internal.invalid_argument('events', 'each event must be a JSON object')
                 WHEN EXISTS (SELECT FROM jsonb_object_keys(e.ev) k WHERE k <> ALL (event_keys))
                   THEN audience_internal.invalid_argument('events', format('unknown key "%s"',
                           (SELECT left(min(k), 63) FROM jsonb_object_keys(e.ev) k WHERE k <> ALL (event_keys))))
                 ELSE (SELECT audience_internal.invalid_argument(f, 'must be a JSON string')
                         FROM unnest(event_keys) f
                        WHERE jsonb_typeof(e.ev -> f) NOT IN ('string', 'null')
                        LIMIT 1)
               END AS shape_problem,
               e.ev ->> 'workspace' AS workspace,
               e.ev ->> 'app' AS app,
               e.ev ->> 'viewer' AS viewer,
               CASE WHEN e.ev ? 'viewed_at' THEN audience_internal.as_time(e.ev ->> 'viewed_at') ELSE now() END AS viewed_at,
               e.ev ->> 'anonymous_id' AS anonymous_id,
               audience_internal.as_time(e.ev ->> 'ended_at') AS ended_at,
               CASE WHEN e.ev ? 'kind' THEN e.ev ->> 'kind' ELSE 'session' END AS kind,
               e.ev
          FROM jsonb_array_elements(record_views.events) WITH ORDINALITY e(ev, i)
    ),
    checked AS MATERIALIZED (
        SELECT p.*,
               coalesce(p.shape_problem,
                        CASE WHEN p.ev ->> 'viewed_at' IS NOT NULL AND p.viewed_at IS NULL
                               THEN audience_internal.not_a_time('viewed_at') END,
                        CASE WHEN p.ev ->> 'ended_at' IS NOT NULL AND p.ended_at IS NULL
                               THEN audience_internal.not_a_time('ended_at') END,
                        audience_internal.view_problem(p.workspace, p.app, p.viewer, p.viewed_at,
                            p.anonymous_id, p.ended_at, p.kind, n.workspace_id, n.app_id)) AS problem
          FROM parsed p
          LEFT JOIN unnest(n_workspaces, n_apps, n_workspace_ids, n_app_ids) n(workspace, app, workspace_id, app_id)
            ON n.workspace = p.workspace AND n.app IS NOT DISTINCT FROM p.app
    ),
    stored AS (
        INSERT INTO audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)
        SELECT c.workspace, c.app, c.viewer, c.anonymous_id, c.viewed_at, c.ended_at, c.kind
          FROM checked c
         WHERE c.problem IS NULL
           AND (record_views.on_error = 'skip' OR NOT EXISTS (SELECT FROM checked x WHERE x.problem IS NOT NULL))
         ORDER BY c.idx
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored),
           coalesce((SELECT jsonb_agg(jsonb_build_object('index', c.idx, 'sqlstate', (c.problem).sqlstate,
                                                         'message', (c.problem).message) ORDER BY c.idx)
                       FROM checked c WHERE c.problem IS NOT NULL), '[]')
      INTO n, problems;

    IF record_views.on_error = 'abort' AND jsonb_array_length(problems) > 0 THEN
        first_problem := problems -> 0;
        RAISE EXCEPTION USING ERRCODE = first_problem ->> 'sqlstate',
            MESSAGE = audience_internal.problem_message(
                ROW(first_problem ->> 'sqlstate', first_problem ->> 'message')::audience_internal.problem,
                format('events[%s]', first_problem ->> 'index'));
    END IF;
    recorded := n;
    skipped := problems;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION audience.record_views(jsonb, text) IS
    'Records a batch of view events in one call: events is a JSON array of objects with the arguments of record_view as keys (workspace, app, viewer, viewed_at, anonymous_id, ended_at, kind; the same defaults). Returns recorded, the number of events stored, and skipped, a JSON array of {index, sqlstate, message} for the events refused (index counts from 0). on_error ''abort'' (the default) stores nothing if any event is bad and raises that event''s error; ''skip'' stores the good events and reports the bad. Ingest only.';
