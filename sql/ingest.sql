-- The write path (docs/spec.md §4, ingest): a single event is stored, with a
-- pending row that a later fold of its workspace (sql/rollups.sql) merges
-- into the rollups (the bulk paths of sql/bulk_ingest.sql fold in the
-- statement that stores their events); reads add the pending events to the
-- rollups, so every answer counts every committed event.
--
-- Every writer of events and rollups takes its locks in one order, so that
-- writers of one workspace wait for each other but never deadlock, and no
-- rollup is written under a workspace setting that changes before it
-- commits:
-- 0. The partitions of the events' months (sql/event_store.sql), made
--    before any row is locked: making one takes a lock on view_events that
--    other makers wait for, held until commit.
-- 1. The workspace's lock, before any other row of the workspace: its row of
--    workspace_keys (one per workspace, stored with the workspace's other
--    rows; on Citus a row lock on the replicated workspaces table would
--    lock that table whole, docs/citus.md). Ingest (record_view,
--    end_session, the bulk paths in sql/bulk_ingest.sql) and the fold take
--    it FOR KEY SHARE, and the fold reads the time zone and counting start
--    once it holds it; other ingest, and the FOR NO KEY UPDATE of
--    import_connect and of a member's addition (lock_members), do not
--    conflict with it. configure_workspace (with rebuild_rollups),
--    set_app_visibility, forget_viewer, delete_workspace, and an
--    import_connect that ends sessions stored open (it writes day rows
--    twice, sql/connect_import.sql) take it FOR UPDATE: they wait for the
--    ingest and folds of that workspace in progress, these wait for them,
--    and they take turns with each other. A writer of several workspaces
--    locks them in workspace_id order, and then writes them one after the
--    other, in the same order.
-- 2. Then the workspace's rows, table by table in this order: viewers,
--    view_events, pending_folds, app_viewers, app_totals, app_months,
--    workspace_months, app_days, workspace_days; within a table, in
--    primary-key order.
-- What a writer reads of the workspace's settings and apps it reads once it
-- holds the lock, in a statement of its own, so it is the latest committed
-- version: set_app_visibility and configure_workspace change them under
-- the lock FOR UPDATE.
--
-- SECURITY DEFINER because the platform's web tier holds no privilege on the
-- tables; search_path is pinned so that no object of the caller's can stand
-- in for one of ours.

-- The visibility an app had at a time: the current one for any view since
-- the last change, otherwise from the history. PL/pgSQL, called on its own:
-- on Citus a SQL function that reads a table cannot be part of another
-- query (docs/citus.md).
CREATE FUNCTION audience_internal.visibility_at(workspace_id bigint, app_id bigint, at timestamptz)
RETURNS text LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN (SELECT c.visibility
              FROM audience_internal.app_visibility_changes c
             WHERE c.workspace_id = visibility_at.workspace_id AND c.app_id = visibility_at.app_id
               AND c.changed_at <= visibility_at.at
             ORDER BY c.changed_at DESC
             LIMIT 1);
END
$$;

-- What the Rust normalisers (src/privacy/identity.rs) refuse in an identity
-- or anonymous id, as a problem, or NULL: the rules stay in Rust, and asking
-- raises nothing. (Written so that the planner inlines it: one call of the
-- check for a good value, the common case.)
CREATE FUNCTION audience_internal.identity_problem(argument text, value text, anonymous boolean)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN audience_internal.identity_check(argument, value, anonymous) IS NULL THEN NULL
                ELSE ROW((audience_internal.identity_check(argument, value, anonymous))[1],
                         (audience_internal.identity_check(argument, value, anonymous))[2])::audience_internal.problem
           END
$$;

-- Why a time cannot be a view's (NULL when it can): the rule for viewed_at,
-- which also says which months may get a partition (sql/event_store.sql).
CREATE FUNCTION audience_internal.time_problem(argument text, at timestamptz)
RETURNS audience_internal.problem LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN at IS NULL THEN audience_internal.null_argument(argument)
        WHEN NOT isfinite(at) THEN audience_internal.invalid_argument(argument, 'must be a finite time')
        WHEN at < '1970-01-01 00:00:00+00' THEN audience_internal.invalid_argument(argument, 'before 1970-01-01 00:00 UTC')
        WHEN at > now() + interval '1 hour' THEN audience_internal.in_the_future(argument)
    END
$$;

-- What record_view would refuse in these arguments (NULL when it would accept
-- them): the checks of every write path, in one place. workspace_id and
-- app_id are the looked-up ids of workspace and app (NULL when unknown). A
-- plain SQL function without SET clauses so that the planner inlines it into
-- the set-wise checks.
CREATE FUNCTION audience_internal.view_problem(
    workspace text,
    app text,
    viewer text,
    viewed_at timestamptz,
    anonymous_id text,
    ended_at timestamptz,
    kind text,
    workspace_id bigint,
    app_id bigint)
RETURNS audience_internal.problem LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(audience_internal.time_problem('viewed_at', viewed_at), CASE
        WHEN ended_at < viewed_at THEN audience_internal.invalid_argument('ended_at', 'before "viewed_at"')
        WHEN ended_at > now() + interval '1 hour' THEN audience_internal.in_the_future('ended_at')
        WHEN kind IS NULL THEN audience_internal.null_argument('kind')
        WHEN kind NOT IN ('session', 'visit') THEN audience_internal.not_one_of('kind', ARRAY['session', 'visit'])
        WHEN viewer IS NULL AND anonymous_id IS NULL
            THEN ROW('22004', 'argument "anonymous_id" must not be NULL when "viewer" is NULL (anonymous view)')::audience_internal.problem
        WHEN workspace IS NULL THEN audience_internal.null_argument('workspace')
        WHEN workspace_id IS NULL THEN audience_internal.missing_workspace(workspace)
        WHEN app IS NULL THEN audience_internal.null_argument('app')
        WHEN app_id IS NULL THEN audience_internal.missing_app(workspace, app)
        WHEN viewer IS NOT NULL THEN audience_internal.identity_problem('viewer', viewer, false)
        ELSE audience_internal.identity_problem('anonymous_id', anonymous_id, true)
    END)
$$;
COMMENT ON FUNCTION audience_internal.view_problem(text, text, text, timestamptz, text, timestamptz, text, bigint, bigint) IS
    'What record_view would refuse in these arguments, as a problem (SQLSTATE and message), or NULL.';

CREATE FUNCTION audience.record_view(
    workspace text,
    app text,
    viewer text,
    viewed_at timestamptz DEFAULT now(),
    anonymous_id text DEFAULT NULL,
    ended_at timestamptz DEFAULT NULL,
    kind text DEFAULT 'session')
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws_id bigint;
    ikey bytea;
    a_id bigint;
    a_visibility text;
    a_since timestamptz;
    ident text;
    v_hash bytea;
    v_id bigint;
    v_has_identity boolean;
    is_identifiable boolean;
    ev_id bigint;
    problem audience_internal.problem;
BEGIN
    PERFORM audience_internal.require_read_committed();
    -- The partition of its month before any row lock (sql/event_store.sql).
    PERFORM audience_internal.add_event_month(record_view.viewed_at);
    -- The workspace's lock first (the lock order at the top of this file): a
    -- change of time zone or counting start either committed before this
    -- event, or waits for its transaction (the fold reads the settings). A
    -- workspace deleted meanwhile has no lock to take, and is not found.
    SELECT w.workspace_id INTO ws_id FROM audience_internal.workspaces w WHERE w.slug = record_view.workspace;
    SELECT k.identity_key INTO ikey
      FROM audience_internal.workspace_keys k
     WHERE k.workspace_id = ws_id
       FOR KEY SHARE;
    IF NOT FOUND THEN
        ws_id := NULL;
    END IF;
    SELECT a.app_id, a.visibility, a.visibility_since
      INTO a_id, a_visibility, a_since
      FROM audience_internal.apps a
     WHERE a.workspace_id = ws_id AND a.slug = record_view.app;
    problem := audience_internal.view_problem(record_view.workspace, record_view.app, record_view.viewer,
                                              record_view.viewed_at, record_view.anonymous_id,
                                              record_view.ended_at, record_view.kind, ws_id, a_id);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = problem.sqlstate, MESSAGE = audience_internal.problem_message(problem);
    END IF;

    IF record_view.viewer IS NOT NULL THEN
        ident := audience_internal.normalize_identity('viewer', record_view.viewer);
        v_hash := audience_internal.identity_hash(ikey, ident);
    ELSE
        v_hash := audience_internal.anonymous_hash(ikey,
                      audience_internal.normalize_anonymous_id('anonymous_id', record_view.anonymous_id));
    END IF;

    IF record_view.viewed_at < a_since THEN
        a_visibility := audience_internal.visibility_at(ws_id, a_id, record_view.viewed_at);
    END IF;
    is_identifiable := ident IS NOT NULL AND a_visibility = 'private';

    SELECT v.viewer_id, v.identity IS NOT NULL INTO v_id, v_has_identity
      FROM audience_internal.viewers v
     WHERE v.workspace_id = ws_id AND v.viewer_hash = v_hash;
    IF NOT FOUND OR (is_identifiable AND NOT v_has_identity) THEN
        INSERT INTO audience_internal.viewers AS v (workspace_id, viewer_hash, anonymous, identity)
        VALUES (ws_id, v_hash, ident IS NULL, CASE WHEN is_identifiable THEN ident END)
        ON CONFLICT (workspace_id, viewer_hash) DO UPDATE
           SET identity = coalesce(v.identity, excluded.identity)
        RETURNING v.viewer_id INTO v_id;
    END IF;

    INSERT INTO audience_internal.view_events
           (workspace_id, app_id, viewer_id, viewed_at, ended_at, kind, identifiable)
    VALUES (ws_id, a_id, v_id, record_view.viewed_at, record_view.ended_at, record_view.kind, is_identifiable)
    RETURNING event_id INTO ev_id;

    -- Into the rollups with the next fold of its workspace (sql/rollups.sql);
    -- until then reads find it here.
    INSERT INTO audience_internal.pending_folds
           (workspace_id, event_id, app_id, viewer_id, viewed_at, ended_at, kind, identifiable)
    VALUES (ws_id, ev_id, a_id, v_id, record_view.viewed_at, record_view.ended_at, record_view.kind, is_identifiable);
    IF ev_id % audience_internal.fold_every() = 0 THEN
        PERFORM audience_internal.fold_pending(ARRAY[ws_id]);
    END IF;

    RETURN ev_id;
END
$$;
COMMENT ON FUNCTION audience.record_view(text, text, text, timestamptz, text, timestamptz, text) IS
    'Records one opening of an app and returns the event id. viewer is the authenticated identity, or NULL for an anonymous visitor identified by anonymous_id. kind is session (interactive) or visit (static). Ingest only.';

-- Gives a stored view its end, keeping the day rollups' session time equal
-- to what the events say. The caller holds the workspace's lock (the
-- lock order at the top of this file); the event row is locked next, then
-- its pending row, then its rollup rows. An event not folded yet takes its
-- end to the fold in its pending row; a fold in progress has deleted that
-- row, so the update waits for it and then finds the event folded, in the
-- day rows it wrote.
CREATE FUNCTION audience_internal.set_view_end(workspace_id bigint, event_id bigint, ended_at timestamptz)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    ev audience_internal.view_events;
    ev_day date;
    added bigint;
    viewer_added bytea;
    app_added bytea;
    month_closed boolean;
BEGIN
    SELECT * INTO ev FROM audience_internal.view_events e
     WHERE e.workspace_id = set_view_end.workspace_id AND e.event_id = set_view_end.event_id
       FOR UPDATE;
    UPDATE audience_internal.view_events e SET ended_at = set_view_end.ended_at
     WHERE e.workspace_id = ev.workspace_id AND e.event_id = ev.event_id;
    UPDATE audience_internal.pending_folds p SET ended_at = set_view_end.ended_at
     WHERE p.workspace_id = ev.workspace_id AND p.event_id = ev.event_id;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT audience_internal.day_of(ev.viewed_at, w.time_zone) INTO ev_day
      FROM audience_internal.workspaces w WHERE w.workspace_id = ev.workspace_id;
    added := audience_internal.session_micros(ev.kind, ev.viewed_at, set_view_end.ended_at)
             - audience_internal.session_micros(ev.kind, ev.viewed_at, ev.ended_at);
    -- The viewer's counters gain the time and no view.
    viewer_added := audience_internal.viewer_counts(ARRAY[ev.viewer_id], ARRAY[ev.identifiable], ARRAY[0::bigint],
                                                    ARRAY[0::bigint], ARRAY[added], ARRAY[NULL::timestamptz]);
    app_added := audience_internal.app_counts(ARRAY[ev.app_id], ARRAY[0::bigint], ARRAY[0::bigint], ARRAY[added]);
    -- So do the sums of a month that is over (close_months). Its row is
    -- locked first, as a fold locks it before the day rows.
    SELECT m.viewer_counts IS NOT NULL INTO month_closed
      FROM audience_internal.workspace_months m
     WHERE m.workspace_id = ev.workspace_id AND m.month = audience_internal.month_of_day(ev_day)
       FOR NO KEY UPDATE;
    IF month_closed THEN
        UPDATE audience_internal.workspace_months m
           SET apps = audience_internal.packed_counts_add(m.apps, app_added),
               viewer_counts = audience_internal.packed_counts_add(m.viewer_counts, viewer_added)
         WHERE m.workspace_id = ev.workspace_id AND m.month = audience_internal.month_of_day(ev_day);
    END IF;
    UPDATE audience_internal.app_days d
       SET session_micros = d.session_micros + added,
           viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, viewer_added)
     WHERE d.workspace_id = ev.workspace_id AND d.app_id = ev.app_id AND d.day = ev_day;
    UPDATE audience_internal.workspace_days d
       SET session_micros = d.session_micros + added,
           apps = audience_internal.packed_counts_add(d.apps, app_added),
           viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, viewer_added)
     WHERE d.workspace_id = ev.workspace_id AND d.day = ev_day;
END
$$;

CREATE FUNCTION audience.end_session(event_id bigint, ended_at timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws_id bigint;
    started timestamptz;
    -- Taken here, not in the query below: on Citus that query runs on the
    -- workers, whose sessions are not this login's.
    login oid := audience_internal.session_login();
    operator boolean;
    problem audience_internal.problem;
BEGIN
    PERFORM audience_internal.require_read_committed();
    PERFORM audience_internal.require(end_session.event_id, 'event_id');
    PERFORM audience_internal.require(end_session.ended_at, 'ended_at');
    -- A login hears about the events it recorded, and of no other: not when
    -- one was viewed (by an ended_at refused as too early), nor that it
    -- exists. The operator ends any.
    operator := audience_internal.operator_role(login);
    -- The event's workspace is locked before the event (the lock order at
    -- the top of this file), so that no rebuild of its rollups (a new time
    -- zone) and no erasure of its viewer runs between the event and its
    -- day row; the event is then looked up again under that lock.
    SELECT e.workspace_id INTO ws_id
      FROM audience_internal.view_events e
     WHERE e.event_id = end_session.event_id
       AND (operator OR e.recorded_by = login);
    PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws_id FOR KEY SHARE;
    SELECT e.viewed_at INTO started
      FROM audience_internal.view_events e
     WHERE e.workspace_id = ws_id AND e.event_id = end_session.event_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('invalid argument "event_id": no view event %s recorded by this login', end_session.event_id);
    END IF;
    problem := CASE WHEN end_session.ended_at < started
                         THEN audience_internal.invalid_argument('ended_at', 'before the session started')
                    WHEN end_session.ended_at > now() + interval '1 hour'
                         THEN audience_internal.in_the_future('ended_at') END;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = problem.sqlstate, MESSAGE = audience_internal.problem_message(problem);
    END IF;
    PERFORM audience_internal.set_view_end(ws_id, end_session.event_id, end_session.ended_at);
END
$$;
COMMENT ON FUNCTION audience.end_session(bigint, timestamptz) IS
    'Sets the end of a session recorded by record_view, so that it has a duration. Ingest only, and only for the events this database login recorded (the operator: any).';
