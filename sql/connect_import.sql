-- Import of Posit Connect's instrumentation records, as its Server API
-- returns them: `/v1/instrumentation/shiny/usage` (sessions: content_guid,
-- user_guid, started, ended) and `/v1/instrumentation/content/visits`
-- (visits: content_guid, user_guid, time), with `/v1/users` to name users
-- and `/v1/content` to name content.
--
-- New records are stored through the bulk path (audience_ingest.view_imports, so
-- with record_view's checks and rollups); a record imported before is
-- recognised by its natural key (content, user, start, kind) and counted as
-- a duplicate, except that a session first seen open and now ended gets its
-- end. Concurrent imports into one workspace take turns (a lock on the
-- workspace that ingest does not conflict with); an import that ends a
-- session stored open also waits for the workspace's other writers, and they
-- for it (connect_ends_open_session).

-- How a Posit user is keyed in connect_records: a keyed hash of its guid
-- (the empty key for an anonymous record), so that the table holds no
-- Posit identifier in clear.
CREATE FUNCTION audience_internal.connect_user_ref(identity_key bytea, user_guid text)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN user_guid IS NULL THEN '\x'::bytea
                ELSE audience_internal.anonymous_hash(identity_key, 'connect-user:' || user_guid) END
$$;

-- Whether a page of usage records ends a session an earlier import stored
-- open. Ending one changes that session's day rows after the page's new
-- records have been folded, that is it comes back to rollup tables earlier
-- in the writers' lock order (the top of sql/ingest.sql) than ones it
-- holds; a concurrent writer of the same rows could deadlock with it. Such
-- an import therefore takes the workspace's lock FOR UPDATE, as
-- configure_workspace does, before it writes anything, so that no other
-- writer of the workspace runs meanwhile. Records malformed in any way are
-- passed over here; the import refuses them later.
CREATE FUNCTION audience_internal.connect_ends_open_session(workspace_id bigint, usage jsonb)
RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    -- The identity key is read where it is stored, not passed in: on Citus
    -- this query runs on a worker, and an argument would be written into
    -- the text of the statement sent there.
    RETURN EXISTS (
        SELECT FROM audience_internal.workspace_keys k
         CROSS JOIN jsonb_array_elements(connect_ends_open_session.usage) r(rec)
          JOIN audience_internal.connect_records c
            ON c.workspace_id = connect_ends_open_session.workspace_id
           AND c.content_guid = r.rec ->> 'content_guid'
           AND c.user_ref = audience_internal.connect_user_ref(k.identity_key, r.rec ->> 'user_guid')
           AND c.started = audience_internal.as_time(r.rec ->> 'started')
           AND c.kind = 'session' AND c.ended IS NULL
         WHERE k.workspace_id = connect_ends_open_session.workspace_id
           AND jsonb_typeof(r.rec) = 'object' AND r.rec ->> 'ended' IS NOT NULL);
END
$$;

-- One record of an import, checked: `problem` is why it is refused, or NULL.
CREATE TYPE audience_internal.connect_import_row AS (
    idx bigint, content_guid text, user_guid text, kind text, started timestamptz, ended timestamptz,
    app text, app_id bigint, viewer text, anonymous_id text, problem audience_internal.problem);

-- SECURITY DEFINER because the platform's ingest role holds no privilege on
-- the tables; search_path pinned so that no object of the caller's can stand
-- in for one of ours.
CREATE FUNCTION audience.import_connect(workspace text, usage jsonb, users jsonb DEFAULT NULL, content jsonb DEFAULT NULL)
RETURNS TABLE (recorded bigint, duplicates bigint, apps_created bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws_id bigint := audience_internal.workspace_id(import_connect.workspace);
    ikey bytea := audience_internal.identity_key(ws_id);
    bad record;
    item record;
    app_slug text;
    a_id bigint;
    n_apps bigint := 0;
    n_records bigint;
    n_new bigint;
    batch audience_internal.connect_import_row[];
    end_ids bigint[];
    end_times timestamptz[];
    known_guids text[];
    known_app_ids bigint[];
    known_apps text[];
    ended_guids text[];
    ended_refs bytea[];
    ended_apps bigint[];
    ended_hashes bytea[];
    ended_starts timestamptz[];
    ended_ends timestamptz[];
BEGIN
    PERFORM audience_internal.require_read_committed();
    IF jsonb_typeof(audience_internal.require(import_connect.usage, 'usage')) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "usage": must be a JSON array of records';
    END IF;
    IF jsonb_typeof(import_connect.users) IS DISTINCT FROM 'array' AND import_connect.users IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "users": must be a JSON array of users';
    END IF;
    IF jsonb_typeof(import_connect.content) IS DISTINCT FROM 'array' AND import_connect.content IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "content": must be a JSON array of content items';
    END IF;
    -- The partitions of the records' months before any row lock
    -- (sql/event_store.sql); a record whose time is not one is refused
    -- below.
    PERFORM audience_internal.add_event_month(m.at)
       FROM (SELECT min(t.at) AS at
               FROM jsonb_array_elements(import_connect.usage) r
              CROSS JOIN LATERAL (SELECT audience_internal.as_time(coalesce(r ->> 'started', r ->> 'time')) AS at) t
              WHERE jsonb_typeof(r) = 'object' AND t.at IS NOT NULL
              GROUP BY audience_internal.event_month(t.at)) m
      ORDER BY m.at;
    -- Asked before the lock and again under it: another import may store
    -- an open session this page ends in between (the lock is then made
    -- FOR UPDATE before any write). Deciding first spares most such imports
    -- the change of lock, which waits with a lock already held.
    IF audience_internal.connect_ends_open_session(ws_id, import_connect.usage) THEN
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws_id FOR UPDATE;
    ELSE
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws_id FOR NO KEY UPDATE;
        IF audience_internal.connect_ends_open_session(ws_id, import_connect.usage) THEN
            PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws_id FOR UPDATE;
        END IF;
    END IF;

    SELECT c.idx, c.problem INTO bad
      FROM (SELECT c.i - 1 AS idx,
                   CASE WHEN jsonb_typeof(c.item) <> 'object' THEN 'each content item must be a JSON object'
                        ELSE coalesce(audience_internal.not_a_json_string(c.item, 'guid'),
                                      audience_internal.not_a_json_string(c.item, 'name'),
                                      audience_internal.not_a_json_string(c.item, 'title', nullable => true),
                                      audience_internal.not_a_json_string(c.item, 'access_type', nullable => true))
                   END AS problem
              FROM jsonb_array_elements(coalesce(import_connect.content, '[]')) WITH ORDINALITY c(item, i)) c
     WHERE c.problem IS NOT NULL
     ORDER BY c.idx LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid argument "content": %s (content[%s])', bad.problem, bad.idx);
    END IF;

    -- Content not seen before becomes an app named by its Posit name (an
    -- app of that name already in the workspace is taken as it).
    FOR item IN
        SELECT DISTINCT ON (c.item ->> 'guid') c.i - 1 AS idx, c.item ->> 'guid' AS guid, c.item ->> 'name' AS name,
               nullif(btrim(left(c.item ->> 'title', 200)), '') AS title,
               CASE WHEN c.item ->> 'access_type' = 'all' THEN 'public' ELSE 'private' END AS visibility
          FROM jsonb_array_elements(coalesce(import_connect.content, '[]')) WITH ORDINALITY c(item, i)
         WHERE NOT EXISTS (SELECT FROM audience_internal.connect_content k
                            WHERE k.workspace_id = ws_id AND k.content_guid = c.item ->> 'guid')
         ORDER BY c.item ->> 'guid', c.i
    LOOP
        app_slug := audience_internal.check_slug(lower(item.name), format('content[%s].name', item.idx));
        SELECT a.app_id INTO a_id FROM audience_internal.apps a WHERE a.workspace_id = ws_id AND a.slug = app_slug;
        IF NOT FOUND THEN
            a_id := audience.create_app(import_connect.workspace, app_slug, item.visibility, item.title);
            n_apps := n_apps + 1;
        END IF;
        INSERT INTO audience_internal.connect_content (workspace_id, content_guid, app_id)
        VALUES (ws_id, item.guid, a_id);
    END LOOP;

    SELECT u.idx, u.problem INTO bad
      FROM (SELECT u.i - 1 AS idx,
                   CASE WHEN jsonb_typeof(u.item) <> 'object' THEN 'each user must be a JSON object'
                        WHEN audience_internal.not_a_json_string(u.item, 'guid') IS NOT NULL
                            THEN audience_internal.not_a_json_string(u.item, 'guid')
                        WHEN jsonb_typeof(coalesce(u.item -> 'email', 'null')) NOT IN ('string', 'null')
                          OR jsonb_typeof(coalesce(u.item -> 'username', 'null')) NOT IN ('string', 'null')
                            THEN 'email and username must be JSON strings or null'
                        WHEN coalesce(nullif(u.item ->> 'email', ''), nullif(u.item ->> 'username', '')) IS NULL
                            THEN 'has neither an email nor a username'
                   END AS problem
              FROM jsonb_array_elements(coalesce(import_connect.users, '[]')) WITH ORDINALITY u(item, i)) u
     WHERE u.problem IS NOT NULL
     ORDER BY u.idx LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid argument "users": %s (users[%s])', bad.problem, bad.idx);
    END IF;

    -- The apps the records' content is known as, looked up on their own:
    -- on Citus a query over the records cannot join the distributed tables
    -- (docs/citus.md).
    SELECT array_agg(k.content_guid), array_agg(a.app_id), array_agg(a.slug)
      INTO known_guids, known_app_ids, known_apps
      FROM audience_internal.connect_content k
      JOIN audience_internal.apps a ON a.workspace_id = k.workspace_id AND a.app_id = k.app_id
     WHERE k.workspace_id = ws_id
       AND k.content_guid = ANY (ARRAY(SELECT DISTINCT r ->> 'content_guid' FROM jsonb_array_elements(import_connect.usage) r
                                        WHERE jsonb_typeof(r) = 'object'));

    batch := ARRAY(
    WITH users AS MATERIALIZED (
        SELECT DISTINCT ON (u.item ->> 'guid') u.item ->> 'guid' AS guid,
               coalesce(nullif(u.item ->> 'email', ''), u.item ->> 'username') AS identity
          FROM jsonb_array_elements(coalesce(import_connect.users, '[]')) u(item)
         ORDER BY u.item ->> 'guid'
    ),
    parsed AS MATERIALIZED (
        SELECT r.i - 1 AS idx, r.rec,
               CASE WHEN jsonb_typeof(r.rec) <> 'object' THEN 'each record must be a JSON object'
                    ELSE coalesce(
                        audience_internal.not_a_json_string(r.rec, 'content_guid'),
                        audience_internal.not_a_json_string(r.rec, 'user_guid', nullable => true),
                        CASE WHEN r.rec ? 'started' AND r.rec ? 'time'
                                 THEN 'a record has either "started" (a session) or "time" (a visit), not both'
                             WHEN NOT (r.rec ? 'started' OR r.rec ? 'time')
                                 THEN 'a record needs "started" (a session) or "time" (a visit)' END,
                        audience_internal.not_a_json_string(r.rec, CASE WHEN r.rec ? 'time' THEN 'time' ELSE 'started' END),
                        audience_internal.not_a_json_string(r.rec, 'ended', nullable => true),
                        CASE WHEN r.rec ? 'time' AND r.rec ->> 'ended' IS NOT NULL THEN 'a visit has no "ended"' END)
               END AS shape_problem,
               r.rec ->> 'content_guid' AS content_guid,
               r.rec ->> 'user_guid' AS user_guid,
               CASE WHEN r.rec ? 'time' THEN 'visit' ELSE 'session' END AS kind,
               coalesce(r.rec ->> 'started', r.rec ->> 'time') AS started_text,
               r.rec ->> 'ended' AS ended_text
          FROM jsonb_array_elements(import_connect.usage) WITH ORDINALITY r(rec, i)
    ),
    timed AS MATERIALIZED (
        SELECT p.*,
               CASE WHEN p.shape_problem IS NULL THEN audience_internal.as_time(p.started_text) END AS started,
               CASE WHEN p.shape_problem IS NULL THEN audience_internal.as_time(p.ended_text) END AS ended
          FROM parsed p
    ),
    named AS (
        SELECT t.idx, t.content_guid, t.user_guid, t.kind, t.started, t.ended, a.slug AS app, a.app_id,
               CASE WHEN t.user_guid IS NOT NULL THEN coalesce(u.identity, t.user_guid) END AS viewer,
               -- Posit records carry no visitor id: each anonymous
               -- record is a visitor of its own.
               CASE WHEN t.user_guid IS NULL
                    THEN format('connect:%s:%s', t.content_guid, extract(epoch FROM t.started)) END AS anonymous_id,
               coalesce(
                   t.shape_problem,
                   CASE WHEN t.started IS NULL THEN CASE WHEN t.kind = 'visit' THEN 'time' ELSE 'started' END
                        WHEN t.ended_text IS NOT NULL AND t.ended IS NULL THEN 'ended'
                   END || ' is not a valid time',
                   CASE WHEN a.app_id IS NULL
                       THEN 'content_guid is neither in "content" nor known from an earlier import' END
               ) AS shape_problem
          FROM timed t
          LEFT JOIN users u ON u.guid = t.user_guid
          LEFT JOIN unnest(known_guids, known_app_ids, known_apps) a(content_guid, app_id, slug)
            ON a.content_guid = t.content_guid
    )
    SELECT ROW(n.idx, n.content_guid, n.user_guid, n.kind, n.started, n.ended, n.app, n.app_id,
               n.viewer, n.anonymous_id,
               -- Then record_view's own checks: a record is refused
               -- for what an event would be refused for.
               CASE WHEN n.shape_problem IS NOT NULL
                    THEN ROW('22023', n.shape_problem)::audience_internal.problem
                    ELSE audience_internal.view_problem(import_connect.workspace, n.app, n.viewer, n.started,
                             n.anonymous_id, n.ended, n.kind, ws_id, n.app_id) END
           )::audience_internal.connect_import_row
      FROM named n
     ORDER BY n.idx);

    SELECT b.idx, b.problem INTO bad FROM unnest(batch) b WHERE b.problem IS NOT NULL ORDER BY b.idx LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = (bad.problem).sqlstate,
            MESSAGE = audience_internal.problem_message(bad.problem, format('usage[%s]', bad.idx), within => 'usage');
    END IF;

    n_records := cardinality(batch);
    WITH keyed AS (
        SELECT DISTINCT ON (b.content_guid, r.user_ref, b.started, b.kind) b.*, r.user_ref,
               coalesce(audience_internal.identity_hash(ikey, audience_internal.normalize_identity('viewer', b.viewer)),
                        audience_internal.anonymous_hash(ikey,
                            audience_internal.normalize_anonymous_id('anonymous_id', b.anonymous_id))) AS viewer_hash
          FROM unnest(batch) b
         CROSS JOIN LATERAL (SELECT audience_internal.connect_user_ref(ikey, b.user_guid) AS user_ref) r
         -- Of two copies of a record in one import, the one with an end.
         ORDER BY b.content_guid, r.user_ref, b.started, b.kind, b.ended IS NULL, b.idx
    ),
    added AS (
        INSERT INTO audience_internal.connect_records AS c
               (workspace_id, content_guid, user_ref, started, kind, ended, viewer_hash)
        SELECT ws_id, k.content_guid, k.user_ref, k.started, k.kind, k.ended, k.viewer_hash FROM keyed k
         ORDER BY k.content_guid, k.user_ref, k.started, k.kind
        ON CONFLICT (workspace_id, content_guid, user_ref, started, kind) DO NOTHING
        RETURNING c.content_guid, c.user_ref, c.started, c.kind
    ),
    stored AS (
        INSERT INTO audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)
        SELECT import_connect.workspace, k.app, k.viewer, k.anonymous_id, k.started, k.ended, k.kind
          FROM keyed k
          JOIN added d ON d.content_guid = k.content_guid AND d.user_ref = k.user_ref
                      AND d.started = k.started AND d.kind = k.kind
        RETURNING 1
    )
    SELECT count(*) FROM stored INTO n_new;

    -- Sessions imported while open that this page shows ended, once the new
    -- records are stored and folded (by the statement above): the day rows
    -- are taken a second time, which is safe because the workspace's lock is
    -- held FOR UPDATE when there is any (connect_ends_open_session). They
    -- are keyed as stored in a statement of their own: the identity key
    -- stays out of the statement that updates (on Citus, the one sent to a
    -- worker).
    SELECT array_agg(k.content_guid), array_agg(k.user_ref), array_agg(k.started), array_agg(k.ended), array_agg(k.app_id)
      INTO ended_guids, ended_refs, ended_starts, ended_ends, ended_apps
      FROM (SELECT DISTINCT ON (b.content_guid, r.user_ref, b.started) b.content_guid, r.user_ref, b.started,
                   b.ended, b.app_id
              FROM unnest(batch) b
             CROSS JOIN LATERAL (SELECT audience_internal.connect_user_ref(ikey, b.user_guid) AS user_ref) r
             WHERE b.kind = 'session' AND b.ended IS NOT NULL
             ORDER BY b.content_guid, r.user_ref, b.started, b.idx) k;
    WITH ended AS (
        UPDATE audience_internal.connect_records c SET ended = k.ended
          FROM unnest(ended_guids, ended_refs, ended_starts, ended_ends, ended_apps)
               k(content_guid, user_ref, started, ended, app_id)
         WHERE c.workspace_id = ws_id AND c.content_guid = k.content_guid AND c.user_ref = k.user_ref
           AND c.started = k.started AND c.kind = 'session' AND c.ended IS NULL
        RETURNING k.app_id, c.viewer_hash, k.started, k.ended
    )
    SELECT array_agg(x.app_id), array_agg(x.viewer_hash), array_agg(x.started), array_agg(x.ended)
      INTO ended_apps, ended_hashes, ended_starts, ended_ends
      FROM ended x;
    -- Each ended record's open session event, the first by id.
    SELECT array_agg(e.event_id ORDER BY e.event_id), array_agg(e.ended ORDER BY e.event_id)
      INTO end_ids, end_times
      FROM (SELECT DISTINCT ON (x.i) x.i, ev.event_id, x.ended
              FROM unnest(ended_apps, ended_hashes, ended_starts, ended_ends) WITH ORDINALITY
                   x(app_id, viewer_hash, started, ended, i)
              JOIN audience_internal.viewers v ON v.workspace_id = ws_id AND v.viewer_hash = x.viewer_hash
              JOIN audience_internal.view_events ev
                ON ev.workspace_id = ws_id AND ev.app_id = x.app_id AND ev.viewed_at = x.started
               AND ev.viewer_id = v.viewer_id AND ev.kind = 'session' AND ev.ended_at IS NULL
             ORDER BY x.i, ev.event_id) e;
    FOR i IN 1 .. coalesce(cardinality(end_ids), 0) LOOP
        PERFORM audience_internal.set_view_end(ws_id, end_ids[i], end_times[i]);
    END LOOP;

    recorded := n_new;
    duplicates := n_records - n_new;
    apps_created := n_apps;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION audience.import_connect(text, jsonb, jsonb, jsonb) IS
    'Imports Posit Connect instrumentation records into a workspace: usage is an array of /v1/instrumentation/shiny/usage records (content_guid, user_guid, started, ended: sessions) and /v1/instrumentation/content/visits records (content_guid, user_guid, time: visits); users the /v1/users list (a user is identified by email, else username; an unknown user_guid is kept as the identity; a null one is an anonymous visitor); content the /v1/content list (unknown content becomes an app named by its name, public when access_type is all). A record imported before is a duplicate, except that an open session now ended gets its end. A malformed record refuses the whole call, naming its index. Returns recorded, duplicates and apps_created. Ingest and operator only.';
