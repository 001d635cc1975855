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
-- It writes the tables in the order every writer takes its row locks
-- (viewers, events, then the rollups, with the fold's steps in the same
-- statement), each in primary-key order, so concurrent batches and single events wait for each
-- other but never deadlock. Before any of them it locks the batch's
-- workspace rows, in workspace_id order (the lock order at the top of
-- sql/ingest.sql).

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

-- SECURITY DEFINER because the platform's web tier may write into the
-- staging table but holds no privilege on the tables in audience_internal;
-- search_path is pinned so that no object of the caller's can stand in for
-- one of ours.
--
-- session_replication_role = replica turns off the per-row foreign-key
-- checks for the statements of this function (which is why it must run with
-- the owner's rights: only a superuser may set it). Checked row by row they
-- would cost more than all the rest of the fold; instead the fold takes the
-- same locks set-wise (FOR KEY SHARE on the workspaces, apps and viewers it
-- refers to, as the checks would), so that no parent can disappear before
-- the batch commits, and it verifies that every row found its parents.
-- work_mem: a batch of a million events sorts and hashes in memory. The
-- join settings are listed so that the changes made below for big batches
-- end with the function rather than with the caller's transaction.
CREATE FUNCTION audience_internal.fold_view_imports()
RETURNS trigger LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
SET work_mem = '256MB'
SET enable_nestloop = on
SET enable_mergejoin = on
AS $$
DECLARE
    bad record;
    n_rows bigint;
    n_events bigint;
BEGIN
    PERFORM audience_internal.require_read_committed();
    -- The first bad row, by position, fails the statement: nothing is stored.
    SELECT i.pos, p.problem INTO bad
      FROM (SELECT row_number() OVER () AS pos, r.* FROM new_rows r) i
      LEFT JOIN audience_internal.workspaces w ON w.slug = i.workspace
      LEFT JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id AND a.slug = i.app
      CROSS JOIN LATERAL (SELECT audience_internal.view_problem(i.workspace, i.app, i.viewer, i.viewed_at,
                              i.anonymous_id, i.ended_at, i.kind, w.workspace_id, a.app_id)) p(problem)
     WHERE p.problem IS NOT NULL
     ORDER BY i.pos
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = (bad.problem).sqlstate,
            MESSAGE = audience_internal.problem_message(bad.problem, format('row %s of this import', bad.pos));
    END IF;

    SELECT count(*) INTO n_rows FROM new_rows;
    IF n_rows = 0 THEN
        RETURN NULL;
    END IF;
    -- The new rows have no statistics, so the planner guesses a few hundred
    -- of them whatever their number: for a big batch it would join by nested
    -- loops (quadratic) or by sorting, where hashing is what scales. (The
    -- settings end with this function.)
    IF n_rows > 1000 THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
    END IF;
    PERFORM audience_internal.add_event_month(m.at)
       FROM (SELECT min(r.viewed_at) AS at FROM new_rows r GROUP BY audience_internal.event_month(r.viewed_at) ORDER BY 1) m;

    -- One statement, planned for this batch. Each data-modifying step starts
    -- only once the previous one has finished (its result is counted in a
    -- one-time filter, or fully read by a sort or an aggregate), which keeps
    -- the lock order described at the top of this file.
    EXECUTE $fold$
    WITH targets AS MATERIALIZED (
        SELECT d.workspace, d.app, w.workspace_id, k.identity_key,
               a.app_id, a.visibility, a.visibility_since
          FROM (SELECT DISTINCT r.workspace, r.app FROM new_rows r) d
          JOIN audience_internal.workspaces w ON w.slug = d.workspace
          JOIN audience_internal.workspace_keys k ON k.workspace_id = w.workspace_id
          JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id AND a.slug = d.app
         -- Rows are locked in this order.
         ORDER BY w.workspace_id, a.app_id
           FOR KEY SHARE OF w, a
    ),
    ev AS MATERIALIZED (
        SELECT t.workspace_id, t.app_id, i.viewed_at, i.ended_at, i.kind, h.identity, h.viewer_hash,
               h.identity IS NOT NULL
                 AND CASE WHEN i.viewed_at < t.visibility_since
                          THEN audience_internal.visibility_at(t.workspace_id, t.app_id, i.viewed_at)
                          ELSE t.visibility END = 'private' AS identifiable
          FROM new_rows i
          JOIN targets t ON t.workspace = i.workspace AND t.app = i.app
         CROSS JOIN LATERAL (
              SELECT n.identity,
                     coalesce(audience_internal.identity_hash(t.identity_key, n.identity),
                              audience_internal.anonymous_hash(t.identity_key,
                                  audience_internal.normalize_anonymous_id('anonymous_id', i.anonymous_id))) AS viewer_hash
                FROM (SELECT audience_internal.normalize_identity('viewer', i.viewer) AS identity OFFSET 0) n
         ) h
    ),
    batch_viewers AS MATERIALIZED (
        SELECT ev.workspace_id, ev.viewer_hash, bool_and(ev.identity IS NULL) AS anonymous,
               max(ev.identity) FILTER (WHERE ev.identifiable) AS identity
          FROM ev GROUP BY ev.workspace_id, ev.viewer_hash
    ),
    -- Looked up one by one through the unique index: a batch meets a small
    -- part of a big viewers table. A viewer deleted meanwhile (forget_viewer)
    -- is not returned, and is added again below as a new viewer.
    viewer_ids AS MATERIALIZED (
        SELECT b.workspace_id, b.viewer_hash, b.anonymous, b.identity, k.viewer_id,
               -- Seen on a private app now, but stored without identity so far.
               b.identity IS NOT NULL AND k.viewer_id IS NOT NULL AND NOT k.has_identity AS gains_identity
          FROM batch_viewers b
          LEFT JOIN LATERAL (
              SELECT v.viewer_id, v.identity IS NOT NULL AS has_identity
                FROM audience_internal.viewers v
               WHERE v.workspace_id = b.workspace_id AND v.viewer_hash = b.viewer_hash
                 FOR KEY SHARE
          ) k ON true
    ),
    added_viewers AS (
        INSERT INTO audience_internal.viewers AS v (workspace_id, viewer_hash, anonymous, identity)
        SELECT b.workspace_id, b.viewer_hash, b.anonymous, b.identity
          FROM viewer_ids b
         WHERE b.viewer_id IS NULL OR b.gains_identity
         ORDER BY b.workspace_id, b.viewer_hash
        ON CONFLICT (workspace_id, viewer_hash) DO UPDATE
           SET identity = coalesce(v.identity, excluded.identity)
        RETURNING v.workspace_id, v.viewer_hash, v.viewer_id
    ),
    ids AS MATERIALIZED (
        SELECT b.workspace_id, b.viewer_hash, b.viewer_id FROM viewer_ids b
         WHERE b.viewer_id IS NOT NULL AND NOT b.gains_identity
        UNION ALL
        SELECT * FROM added_viewers
    ),
    identified AS MATERIALIZED (
        SELECT ev.*, ids.viewer_id
          FROM ev JOIN ids ON ids.workspace_id = ev.workspace_id AND ids.viewer_hash = ev.viewer_hash
    ),
    -- The events, and then the fold's steps over them (sql/rollups.sql):
    -- they reach the rollups in the statement that stores them.
    added AS (
        INSERT INTO audience_internal.view_events
               (workspace_id, app_id, viewer_id, viewed_at, ended_at, kind, identifiable)
        SELECT e.workspace_id, e.app_id, e.viewer_id, e.viewed_at, e.ended_at, e.kind, e.identifiable
          FROM identified e
         -- In the order of the largest index: neighbouring entries go in
         -- together, at a fraction of the cost of scattered ones.
         ORDER BY e.workspace_id, e.app_id, e.viewed_at
        RETURNING workspace_id, event_id, app_id, viewer_id, viewed_at, ended_at, kind, identifiable
    ),
    $fold$ || audience_internal.fold_steps() INTO n_events;

    -- Only an app or workspace deleted since the checks above can make a
    -- row miss its parent; the whole statement is then refused, to retry.
    IF n_events <> n_rows THEN
        RAISE EXCEPTION USING ERRCODE = '40001',
            MESSAGE = 'an app or workspace of this import was deleted meanwhile; retry the import';
    END IF;
    PERFORM audience_internal.close_months(ARRAY(
        SELECT w.workspace_id FROM audience_internal.workspaces w
         WHERE w.slug IN (SELECT r.workspace FROM new_rows r)));

    -- Every row this transaction can see here was inserted by this
    -- statement: earlier statements emptied the table the same way, and rows
    -- of transactions still in progress are not visible.
    DELETE FROM audience_ingest.view_imports;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION audience_internal.fold_view_imports() IS
    'Trigger of audience_ingest.view_imports: checks the rows a statement inserted, stores them as view events, updates every rollup, and empties the staging table.';

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
AS $$
#variable_conflict use_column
DECLARE
    n bigint;
    problems jsonb;
    first_problem jsonb;
    event_keys constant text[] := ARRAY['workspace', 'app', 'viewer', 'viewed_at', 'anonymous_id', 'ended_at', 'kind'];
BEGIN
    PERFORM audience_internal.require_read_committed();
    PERFORM audience_internal.check_choice(record_views.on_error, 'on_error', ARRAY['abort', 'skip']);
    IF jsonb_typeof(audience_internal.require(record_views.events, 'events')) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'invalid argument "events": must be a JSON array of objects';
    END IF;

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
                            p.anonymous_id, p.ended_at, p.kind, w.workspace_id, a.app_id)) AS problem
          FROM parsed p
          LEFT JOIN audience_internal.workspaces w ON w.slug = p.workspace
          LEFT JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id AND a.slug = p.app
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
