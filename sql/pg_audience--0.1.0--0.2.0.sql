-- pg_audience 0.1.0 -> 0.2.0: the usage questions of Posit Connect
-- (app_sessions, top_apps, top_viewers, usage_over_time, viewer_trend,
-- app_access), the import of Posit Connect records (import_connect), the day
-- rollup they read, and one labelling function for every read; request
-- tokens good once (claim jti), member roles by OID, NFC identities, named
-- time zones only, views from 1970 on, writers at READ COMMITTED. The new
-- day rollup is filled from the events already stored; stored data that the
-- new rules refuse is handled at the end of this file.
\echo Use "ALTER EXTENSION pg_audience UPDATE TO '0.2.0'" to load this file. \quit

-- Schema audience becomes a member of the extension, as on a fresh install
-- of 0.2.0, so that DROP EXTENSION removes it. 0.1.0's control file named it
-- as the extension's schema, and PostgreSQL adds no schema to the extension
-- recorded in it: the extension is recorded in schema public instead, where
-- CREATE EXTENSION records it now.
UPDATE pg_catalog.pg_depend d
   SET refobjid = coalesce(pg_catalog.to_regnamespace('public'), 'pg_catalog'::regnamespace)
  FROM pg_catalog.pg_extension e
 WHERE e.extname = 'pg_audience' AND d.classid = 'pg_catalog.pg_extension'::regclass AND d.objid = e.oid
   AND d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = 'audience'::regnamespace;
UPDATE pg_catalog.pg_extension
   SET extnamespace = coalesce(pg_catalog.to_regnamespace('public'), 'pg_catalog'::regnamespace)
 WHERE extname = 'pg_audience';
ALTER EXTENSION pg_audience ADD SCHEMA audience;

-- Who recorded each event (sql/schema.sql): events stored so far have no
-- recorder, and only the operator ends them.
CREATE FUNCTION audience_internal."session_login"() RETURNS oid /* pg_sys :: Oid */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_login_wrapper';

ALTER TABLE audience_internal.view_events ADD COLUMN recorded_by oid;
ALTER TABLE audience_internal.view_events ALTER COLUMN recorded_by SET DEFAULT audience_internal.session_login();

-- Problems as data (sql/checks.sql), and the identity check they use (src/lib.rs).
-- A refused input as data: its SQLSTATE and message. A check that returns
-- one instead of raising can be asked about every row of a batch at once
-- (to find the first bad row, or all of them), and costs no subtransaction;
-- problem_message words it with where in a batch it was found. Each kind of
-- problem has one constructor below, so each message is written once.
CREATE TYPE audience_internal.problem AS (sqlstate text, message text);

CREATE FUNCTION audience_internal."identity_check"(
	"argument" TEXT, /* & str */
	"value" TEXT, /* & str */
	"anonymous" bool /* bool */
) RETURNS TEXT[] /* :: std :: option :: Option < Vec < String > > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'identity_check_wrapper';

CREATE FUNCTION audience_internal."rfc3339_time"(
	"text" TEXT /* & str */
) RETURNS timestamp with time zone /* Option < TimestampWithTimeZone > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rfc3339_time_wrapper';

CREATE FUNCTION audience_internal."viewer_set"(
	"viewer_ids" bigint[] /* Array < i64 > */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_set_wrapper';

CREATE FUNCTION audience_internal."viewer_set_union"(
	"sets" bytea[] /* Array < & [u8] > */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_set_union_wrapper';

CREATE FUNCTION audience_internal."viewer_set_count"(
	"sets" bytea[] /* Array < & [u8] > */
) RETURNS bigint /* i64 */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_set_count_wrapper';

CREATE FUNCTION audience_internal."viewer_set_without"(
	"set" bytea, /* & [u8] */
	"viewer_id" bigint /* i64 */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_set_without_wrapper';

CREATE FUNCTION audience_internal."viewer_set_merge"(
	"kept" bytea, /* & [u8] */
	"added" bytea /* & [u8] */
) RETURNS TABLE (
	"viewers" bytea,  /* Vec < u8 > */
	"viewer_count" bigint  /* i64 */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_set_merge_wrapper';

CREATE FUNCTION audience_internal."viewer_set_ids"(
	"set" bytea /* & [u8] */
) RETURNS bigint[] /* Vec < i64 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_set_ids_wrapper';

CREATE FUNCTION audience_internal."micros_between"(
	"start" timestamp with time zone, /* TimestampWithTimeZone */
	"end" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS bigint /* i64 */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'micros_between_wrapper';

CREATE FUNCTION audience_internal."app_counts"(
	"app_ids" bigint[], /* Array < i64 > */
	"sessions" bigint[], /* Array < i64 > */
	"visits" bigint[], /* Array < i64 > */
	"session_micros" bigint[] /* Array < i64 > */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'app_counts_wrapper';

CREATE FUNCTION audience_internal."viewer_counts"(
	"viewer_ids" bigint[], /* Array < i64 > */
	"identifiable" bool[], /* Array < bool > */
	"sessions" bigint[], /* Array < i64 > */
	"visits" bigint[], /* Array < i64 > */
	"session_micros" bigint[], /* Array < i64 > */
	"last_viewed_at" timestamp with time zone[] /* Array < TimestampWithTimeZone > */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_counts_wrapper';

CREATE FUNCTION audience_internal."packed_counts_add"(
	"kept" bytea, /* & [u8] */
	"added" bytea /* & [u8] */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'packed_counts_add_wrapper';

CREATE FUNCTION audience_internal."packed_counts_sum"(
	"packed" bytea[] /* Option < Array < & [u8] > > */
) RETURNS bytea /* Option < Vec < u8 > > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'packed_counts_sum_wrapper';

CREATE FUNCTION audience_internal."packed_counts_subtract"(
	"kept" bytea, /* & [u8] */
	"gone" bytea /* & [u8] */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'packed_counts_subtract_wrapper';

CREATE FUNCTION audience_internal."viewer_counts_without"(
	"counts" bytea, /* & [u8] */
	"viewer_id" bigint /* i64 */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_counts_without_wrapper';

CREATE FUNCTION audience_internal."viewer_counts_of"(
	"counts" bytea, /* & [u8] */
	"viewer_id" bigint /* i64 */
) RETURNS bigint[] /* :: std :: option :: Option < Vec < i64 > > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_counts_of_wrapper';

CREATE FUNCTION audience_internal."app_counts_sum"(
	"packed" bytea[], /* Option < Array < & [u8] > > */
	"minus" bytea[], /* Option < Array < & [u8] > > */
	"apps" bigint[] /* Option < Array < i64 > > */
) RETURNS TABLE (
	"app_id" bigint,  /* i64 */
	"sessions" bigint,  /* i64 */
	"visits" bigint,  /* i64 */
	"session_micros" bigint  /* i64 */
)
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'app_counts_sum_wrapper';

CREATE FUNCTION audience_internal."viewer_counts_top"(
	"packed" bytea[], /* :: std :: option :: Option < Array < & [u8] > > */
	"take_off" bool[], /* :: std :: option :: Option < Array < bool > > */
	"identified" bool[], /* :: std :: option :: Option < Array < bool > > */
	"label_at" timestamp with time zone[], /* :: std :: option :: Option < Array < TimestampWithTimeZone > > */
	"members" bigint[], /* :: std :: option :: Option < Array < i64 > > */
	"max_viewers" INT /* i32 */
) RETURNS TABLE (
	"viewer_id" bigint,  /* i64 */
	"identified" bool,  /* bool */
	"label_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"sessions" bigint,  /* i64 */
	"visits" bigint,  /* i64 */
	"session_micros" bigint,  /* i64 */
	"last_viewed_at" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'viewer_counts_top_wrapper';
-- At most max_viewers rows (10 unless asked): planned for pgrx's default of
-- 1,000, the labels of ten viewers hashed every viewer of the workspace.
ALTER FUNCTION audience_internal.viewer_counts_top(bytea[], boolean[], boolean[], timestamptz[], bigint[], integer) ROWS 10;

-- New tables and indexes (sql/schema.sql).
-- Request tokens already used, by a digest of their id (claim jti), until
-- they expire: a token is good for one transaction, so that one seen by
-- someone else (in pg_stat_activity, a log, a proxy) is worth nothing.
CREATE TABLE audience_internal.spent_tokens (
    token_id bytea PRIMARY KEY CHECK (length(token_id) = 32),
    expires_at timestamptz NOT NULL
);
CREATE INDEX spent_tokens_expiry ON audience_internal.spent_tokens (expires_at);
COMMENT ON TABLE audience_internal.spent_tokens IS 'Ids of request tokens already used, kept until the tokens expire.';

-- A member's database role by OID (sql/management.sql, check_role); a
-- mapping to a role that no longer exists maps nobody.
ALTER TABLE audience_internal.members
    ALTER COLUMN db_role TYPE regrole USING pg_catalog.to_regrole(pg_catalog.quote_ident(db_role));
ALTER TABLE audience_internal.spent_tokens ALTER COLUMN token_id SET STATISTICS 0;

-- Each app month's and workspace month's viewers as a set, which replaces
-- the rows per viewer and month (filled from them below, then dropped).
ALTER TABLE audience_internal.app_months ADD COLUMN viewers bytea;
COMMENT ON TABLE audience_internal.app_months IS 'Rollup: unique viewers, views and the set of viewers per app per month.';
ALTER TABLE audience_internal.app_months ALTER COLUMN viewers SET STATISTICS 0;
-- And, once a month is over, the sums of its days' packed counters (made
-- below, by close_months, once the day rollups are).
ALTER TABLE audience_internal.workspace_months
    ADD COLUMN public_viewers bytea, ADD COLUMN public_views bigint, ADD COLUMN viewers bytea,
    ADD COLUMN apps bytea, ADD COLUMN viewer_counts bytea;
COMMENT ON TABLE audience_internal.workspace_months IS
    'Rollup: unique viewers, views and the set of viewers per workspace per month, the viewers and views of its apps public now, and, once the month is over, the packed counters of its apps and viewers.';
ALTER TABLE audience_internal.workspace_months
    ALTER COLUMN public_viewers SET STATISTICS 0,
    ALTER COLUMN viewers SET STATISTICS 0,
    ALTER COLUMN apps SET STATISTICS 0,
    ALTER COLUMN viewer_counts SET STATISTICS 0;

-- Rollups for the usage questions' totals (sql/usage.sql): per app and day,
-- and per workspace and day, the sessions, visits and ended session time,
-- and the exact set of viewers (audience_internal.viewer_set, a compressed
-- bitmap of viewer ids). A window's distinct viewers are the union of its
-- days' sets, and its counts a sum over a row per day, however many viewers
-- those days had. An app's day also packs each viewer's counters
-- (viewer_counts, src/packed_counts.rs: sessions, visits, ended session
-- time and latest view, identifiable views apart from the others), which
-- the questions about people read for some apps: one value per app and
-- day, where a row per viewer made a batch write as many rows as events.
CREATE TABLE audience_internal.app_days (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    day date NOT NULL,
    sessions bigint NOT NULL,
    visits bigint NOT NULL,
    session_micros bigint NOT NULL,
    viewers bytea NOT NULL,
    viewer_counts bytea NOT NULL,
    PRIMARY KEY (workspace_id, app_id, day),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
CREATE INDEX app_days_day ON audience_internal.app_days (workspace_id, day);
COMMENT ON TABLE audience_internal.app_days IS
    'Rollup: sessions, visits, ended session time, the set of viewers and each viewer''s counters of each app per day.';

CREATE TABLE audience_internal.workspace_days (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    day date NOT NULL,
    sessions bigint NOT NULL,
    visits bigint NOT NULL,
    session_micros bigint NOT NULL,
    viewers bytea NOT NULL,
    -- The same counters per app, packed (audience_internal.app_counts): a
    -- window's most viewed apps are a sum over a row per day, not over a row
    -- per app and day.
    apps bytea NOT NULL,
    -- The counters of each viewer, identifiable views apart, with the time
    -- of their latest view, packed (audience_internal.viewer_counts): a
    -- window's most active viewers are a sum over a row per day too.
    viewer_counts bytea NOT NULL,
    PRIMARY KEY (workspace_id, day)
);
COMMENT ON TABLE audience_internal.workspace_days IS
    'Rollup: sessions, visits, ended session time and the set of viewers of each workspace per day, and the counters of each app and of each viewer that day.';
ALTER TABLE audience_internal.app_days
    ALTER COLUMN viewers SET STATISTICS 0,
    ALTER COLUMN viewer_counts SET STATISTICS 0;
ALTER TABLE audience_internal.workspace_days
    ALTER COLUMN viewers SET STATISTICS 0,
    ALTER COLUMN apps SET STATISTICS 0,
    ALTER COLUMN viewer_counts SET STATISTICS 0;

-- Which Posit Connect content item is which app, so that later imports of
-- the same content find their app without the content list.
CREATE TABLE audience_internal.connect_content (
    workspace_id bigint NOT NULL,
    content_guid text NOT NULL,
    app_id bigint NOT NULL,
    PRIMARY KEY (workspace_id, content_guid),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
COMMENT ON TABLE audience_internal.connect_content IS 'Posit Connect content guids and the apps they were imported as.';

-- Every Posit Connect record imported, by its natural key, so that an
-- overlapping page records nothing twice. The user is kept as a keyed hash
-- (empty for an anonymous record): a guid names a person as well as an email
-- does.
CREATE TABLE audience_internal.connect_records (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    content_guid text NOT NULL,
    user_ref bytea NOT NULL,
    started timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('session', 'visit')),
    ended timestamptz,
    -- The viewer_hash of the event it became, so that erasure
    -- (forget_viewer) finds it.
    viewer_hash bytea NOT NULL,
    PRIMARY KEY (workspace_id, content_guid, user_ref, started, kind)
);
CREATE INDEX connect_records_viewer ON audience_internal.connect_records (workspace_id, viewer_hash);
COMMENT ON TABLE audience_internal.connect_records IS
    'Posit Connect instrumentation records already imported (content, hashed user, start, kind), and the end seen so far.';

-- Events stored but not yet folded into the rollups (sql/rollups.sql): a copy
-- of what the fold needs, kept until a fold moves them into the rollups in
-- one transaction. A single event (record_view) writes only this one row
-- beside the event, and no rollup row, so that concurrent writers of a
-- workspace do not queue on its counters (the bulk paths fold their own
-- events in the statement that stores them); every read adds what is here to what the rollups hold, so that
-- answers stay exact at the snapshot of the read (a fold's commit takes rows
-- out of here and puts them into the rollups at once). end_session keeps
-- ended_at equal to the event's.
CREATE TABLE audience_internal.pending_folds (
    workspace_id bigint NOT NULL,
    event_id bigint NOT NULL,
    app_id bigint NOT NULL,
    viewer_id bigint NOT NULL,
    viewed_at timestamptz NOT NULL,
    ended_at timestamptz,
    kind text NOT NULL,
    identifiable boolean NOT NULL,
    PRIMARY KEY (workspace_id, event_id)
);
COMMENT ON TABLE audience_internal.pending_folds IS
    'Events stored but not yet folded into the rollups; reads add them to what the rollups hold.';

ALTER TABLE audience_internal.connect_records
    ALTER COLUMN user_ref SET STATISTICS 0,
    ALTER COLUMN viewer_hash SET STATISTICS 0;

-- The type an import checks its records in (sql/connect_import.sql).
-- One record of an import, checked: `problem` is why it is refused, or NULL.
CREATE TYPE audience_internal.connect_import_row AS (
    idx bigint, content_guid text, user_guid text, kind text, started timestamptz, ended timestamptz,
    app text, app_id bigint, viewer text, anonymous_id text, problem audience_internal.problem);

-- The COPY target moves to a schema of its own, for the ingest role
-- (sql/bulk_ingest.sql): readers list in schema audience only what they may read.
CREATE SCHEMA audience_ingest;
REVOKE ALL ON SCHEMA audience_ingest FROM PUBLIC;
COMMENT ON SCHEMA audience_ingest IS
    'pg_audience ingest: COPY or INSERT view events into audience_ingest.view_imports. For the ingest role.';
ALTER TABLE audience.view_imports SET SCHEMA audience_ingest;

-- The read functions return named row types (sql/analytics.sql, sql/usage.sql):
-- the views over the released ones go first and come back below.
DROP VIEW audience.apps, audience.workspace_monthly_viewers, audience.app_monthly_viewers,
          audience.app_total_viewers, audience.recent_viewers;

CREATE TYPE audience.whoami_row AS (
    requester text,
    resolved_by text,
    workspace text,
    kind text);
COMMENT ON TYPE audience.whoami_row IS
    'One workspace of whoami.';

CREATE TYPE audience.monthly_viewers_row AS (
    month date,
    unique_viewers bigint,
    views bigint,
    complete boolean);
COMMENT ON TYPE audience.monthly_viewers_row IS
    'One calendar month of workspace_monthly_viewers and app_monthly_viewers.';

CREATE TYPE audience.all_monthly_viewers_row AS (
    workspace text,
    app text,
    month date,
    month_start timestamptz,
    unique_viewers bigint,
    views bigint,
    complete boolean);
COMMENT ON TYPE audience.all_monthly_viewers_row IS
    'One month of a workspace (app NULL) or of an app, as all_monthly_viewers answers.';

CREATE TYPE audience.recent_viewers_row AS (
    viewer text,
    viewer_ref text,
    pseudonymous boolean,
    last_viewed_at timestamptz,
    last_viewed text,
    views bigint);
COMMENT ON TYPE audience.recent_viewers_row IS
    'One viewer of recent_viewers.';

CREATE TYPE audience.visible_apps_row AS (
    workspace text,
    app text,
    name text,
    visibility text);
COMMENT ON TYPE audience.visible_apps_row IS
    'One app of visible_apps.';

CREATE TYPE audience.app_sessions_row AS (
    viewer text,
    viewer_ref text,
    pseudonymous boolean,
    started_at timestamptz,
    ended_at timestamptz,
    duration interval,
    kind text);
COMMENT ON TYPE audience.app_sessions_row IS
    'One view of app_sessions.';

CREATE TYPE audience.top_apps_row AS (
    app text,
    visibility text,
    views bigint,
    sessions bigint,
    visits bigint,
    unique_viewers bigint,
    session_time interval);
COMMENT ON TYPE audience.top_apps_row IS
    'One app of top_apps.';

CREATE TYPE audience.top_viewers_row AS (
    viewer text,
    viewer_ref text,
    pseudonymous boolean,
    views bigint,
    sessions bigint,
    session_time interval,
    last_viewed_at timestamptz);
COMMENT ON TYPE audience.top_viewers_row IS
    'One viewer of top_viewers.';

CREATE TYPE audience.usage_over_time_row AS (
    period date,
    views bigint,
    sessions bigint,
    visits bigint,
    unique_viewers bigint,
    session_time interval);
COMMENT ON TYPE audience.usage_over_time_row IS
    'One period of usage_over_time.';

CREATE TYPE audience.viewer_trend_row AS (
    month date,
    unique_viewers bigint,
    previous bigint,
    change bigint,
    change_pct numeric,
    complete boolean);
COMMENT ON TYPE audience.viewer_trend_row IS
    'One month of viewer_trend.';

CREATE TYPE audience.app_access_row AS (
    app text,
    member text,
    kind text,
    status text,
    via text);
COMMENT ON TYPE audience.app_access_row IS
    'One way one member may open one app, as app_access answers.';

-- sql/checks.sql
CREATE FUNCTION audience_internal.null_argument(argument text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('22004', format('argument "%s" must not be NULL', argument))::audience_internal.problem $$;

CREATE FUNCTION audience_internal.invalid_argument(argument text, reason text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('22023', format('invalid argument "%s": %s', argument, reason))::audience_internal.problem $$;

CREATE FUNCTION audience_internal.in_the_future(argument text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audience_internal.invalid_argument(argument, 'more than an hour in the future') $$;

CREATE FUNCTION audience_internal.not_one_of(argument text, choices text[])
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audience_internal.invalid_argument(argument, 'expected one of ' || array_to_string(choices, ', ')) $$;

CREATE FUNCTION audience_internal.not_a_time(argument text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('22007', format('invalid argument "%s": not a valid time', argument))::audience_internal.problem $$;

CREATE OR REPLACE FUNCTION audience_internal.try_timestamptz(value text)
RETURNS timestamptz LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION audience_internal.try_timestamptz(text) IS
    'The text as a timestamptz, or NULL when it is not a valid time.';

CREATE FUNCTION audience_internal.as_time(value text)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(audience_internal.rfc3339_time(value), audience_internal.try_timestamptz(value)) $$;
COMMENT ON FUNCTION audience_internal.as_time(text) IS
    'A time given as JSON text, or NULL when it is not a valid time.';

CREATE FUNCTION audience_internal.not_a_json_string(item jsonb, key text, nullable boolean DEFAULT false)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN jsonb_typeof(item -> key) IS NOT DISTINCT FROM 'string' THEN NULL
                WHEN nullable AND jsonb_typeof(coalesce(item -> key, 'null')) = 'null' THEN NULL
                ELSE format('%s must be a JSON string%s', key, CASE WHEN nullable THEN ' or null' ELSE '' END)
           END
$$;

CREATE FUNCTION audience_internal.missing_workspace(workspace text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('42704', format('workspace "%s" does not exist', left(workspace, 63)))::audience_internal.problem $$;

CREATE FUNCTION audience_internal.missing_app(workspace text, app text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ROW('42704', format('app "%s" does not exist in workspace "%s"', left(app, 63), left(workspace, 63)))::audience_internal.problem
$$;

CREATE FUNCTION audience_internal.problem_message(problem audience_internal.problem, place text DEFAULT NULL, within text DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN within IS NULL THEN '' ELSE format('invalid argument "%s": ', within) END
           || (problem).message
           || CASE WHEN place IS NULL THEN '' ELSE format(' (%s)', place) END
$$;

CREATE OR REPLACE FUNCTION audience_internal.require(value anyelement, argument text)
RETURNS anyelement LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    problem audience_internal.problem;
BEGIN
    IF value IS NULL THEN
        problem := audience_internal.null_argument(argument);
        RAISE EXCEPTION USING ERRCODE = (problem).sqlstate, MESSAGE = (problem).message;
    END IF;
    RETURN value;
END
$$;

CREATE OR REPLACE FUNCTION audience_internal.workspace_id(workspace text)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    id bigint;
    problem audience_internal.problem;
BEGIN
    IF workspace IS NULL THEN
        problem := audience_internal.null_argument('workspace');
    ELSE
        SELECT w.workspace_id INTO id FROM audience_internal.workspaces w WHERE w.slug = workspace;
        IF NOT FOUND THEN
            problem := audience_internal.missing_workspace(workspace);
        END IF;
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = (problem).sqlstate, MESSAGE = (problem).message;
    END IF;
    RETURN id;
END
$$;

CREATE OR REPLACE FUNCTION audience_internal.app_id(workspace_id bigint, workspace text, app text)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    id bigint;
    problem audience_internal.problem;
BEGIN
    IF app IS NULL THEN
        problem := audience_internal.null_argument('app');
    ELSE
        SELECT a.app_id INTO id
          FROM audience_internal.apps a
         WHERE a.workspace_id = app_id.workspace_id AND a.slug = app;
        IF NOT FOUND THEN
            problem := audience_internal.missing_app(workspace, app);
        END IF;
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = (problem).sqlstate, MESSAGE = (problem).message;
    END IF;
    RETURN id;
END
$$;

CREATE OR REPLACE FUNCTION audience_internal.check_choice(value text, argument text, choices text[])
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    problem audience_internal.problem;
BEGIN
    IF value IS NULL THEN
        problem := audience_internal.null_argument(argument);
    ELSIF NOT (value = ANY (choices)) THEN
        problem := audience_internal.not_one_of(argument, choices);
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = (problem).sqlstate, MESSAGE = (problem).message;
    END IF;
    RETURN value;
END
$$;

DROP FUNCTION audience_internal.check_role;
CREATE FUNCTION audience_internal.check_role(db_role name)
RETURNS regrole LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    role_id oid;
BEGIN
    IF db_role IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT r.oid INTO role_id FROM pg_catalog.pg_roles r WHERE r.rolname = db_role;
    IF role_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('invalid argument "db_role": role "%s" does not exist', db_role);
    END IF;
    -- Every reader is a member of the capability roles: mapping a member to
    -- one would make every reader that member.
    IF db_role IN ('audience_manager', 'audience_ingest', 'audience_reader') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'invalid argument "db_role": a capability role cannot stand for a member';
    END IF;
    RETURN role_id::regrole;
END
$$;

CREATE FUNCTION audience_internal.require_read_committed()
RETURNS void LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = format('pg_audience writes run at READ COMMITTED isolation, not %s',
                             upper(pg_catalog.current_setting('transaction_isolation'))),
            HINT = 'Start the transaction with BEGIN ISOLATION LEVEL READ COMMITTED, or give the writing role that default: ALTER ROLE ... SET default_transaction_isolation = ''read committed''.';
    END IF;
END
$$;

CREATE FUNCTION audience_internal.named_time_zone(time_zone text)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_timezone_names z WHERE z.name = named_time_zone.time_zone)
       AND named_time_zone.time_zone !~ '^(posix|right)/'
       AND named_time_zone.time_zone NOT IN ('localtime', 'posixrules', 'Factory')
$$;

CREATE OR REPLACE FUNCTION audience_internal.identity_key(workspace_id bigint)
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN (SELECT k.identity_key FROM audience_internal.workspace_keys k WHERE k.workspace_id = identity_key.workspace_id);
END
$$;

-- sql/event_store.sql
-- The raw event store (audience_internal.view_events, sql/schema.sql): a
-- partition per calendar month in UTC, added when the first event of the
-- month arrives, dropped whole when the month is retired.
--
-- Partitions are months in UTC, not in each workspace's time zone: they are
-- shared by every workspace. The rollups keep their own calendar (the
-- workspace's), so what a retirement removes is raw events only; every
-- figure the rollups hold stays.

-- The months retired, and how many events each had: a partition dropped is
-- gone, and what needs raw events (erasure, a rebuild of the rollups) must
-- know that the events before retired_before() are not there to read.
CREATE TABLE audience_internal.retired_months (
    month date PRIMARY KEY CHECK (month = date_trunc('month', month)),
    events bigint NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audience_internal.retired_months IS
    'Calendar months (UTC) whose raw events were retired by audience.retire_events, and how many there were.';

-- The end of the last retired month, NULL when nothing was retired: raw
-- events before it may be missing, though the rollups count them.
CREATE FUNCTION audience_internal.retired_before()
RETURNS timestamptz LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN (SELECT (max(r.month) + interval '1 month') AT TIME ZONE 'UTC' FROM audience_internal.retired_months r);
END
$$;

-- The month whose partition holds a view at `at`: calendar months in UTC,
-- shared by every workspace (the rollups keep the workspace's own calendar,
-- month_of in sql/rollups.sql).
CREATE FUNCTION audience_internal.event_month(at timestamptz)
RETURNS timestamp LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT date_trunc('month', event_month.at AT TIME ZONE 'UTC') $$;

-- The name of a month's partition; retire_events reads the month back
-- from it.
CREATE FUNCTION audience_internal.event_partition(month timestamp)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT 'view_events_' || to_char(event_partition.month, 'YYYY_MM') $$;

-- The insert's lock on view_events or on partitions of it, taken ahead on
-- this node only. What a writer waits for with it (a retirement dropping
-- partitions, a partition being made) holds its own lock here until its
-- transaction has ended on every node. On a Citus coordinator a LOCK TABLE
-- of a distributed table would also go to every worker: a round trip to
-- each per write, for nothing. Where Citus is not loaded the setting is an
-- unused placeholder.
CREATE FUNCTION audience_internal.lock_for_writing(tables regclass[])
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET citus.enable_ddl_propagation = off
AS $$
BEGIN
    EXECUTE format('LOCK TABLE ONLY %s IN ROW EXCLUSIVE MODE', array_to_string(tables::text[], ', '));
END
$$;

-- Makes sure the partition of the month of `at` exists before a writer
-- stores events of that month, and the partition of the month a week from
-- now, so that the writers of a new month find it made rather than all
-- make it at its first second. Called before any row lock is taken (the
-- lock order at the top of sql/ingest.sql). A time no view may have gets
-- no partition: the writer refuses it afterwards.
CREATE FUNCTION audience_internal.add_event_month(at timestamptz)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    month timestamp;
    part regclass;
    found regclass[] := '{}';
BEGIN
    IF audience_internal.time_problem('at', at) IS NOT NULL THEN
        RETURN;
    END IF;
    -- The lock the insert takes anyway, taken before looking: a retirement
    -- in progress holds view_events while it drops partitions, and a
    -- partition seen before it commits would be gone for the insert.
    PERFORM audience_internal.lock_for_writing('{audience_internal.view_events}');
    FOREACH month IN ARRAY ARRAY[audience_internal.event_month(at),
                                 audience_internal.event_month(now() + interval '7 days')] LOOP
        part := pg_catalog.to_regclass('audience_internal.' || audience_internal.event_partition(month));
        IF part IS NULL THEN
            PERFORM audience_internal.create_event_month(month);
        ELSE
            found := found || part;
        END IF;
    END LOOP;
    -- A partition found made may be one whose maker is still committing.
    -- On a Citus cluster the coordinator shows it once its own commit is
    -- done, before the workers have committed theirs (two-phase commit),
    -- and an insert planned earlier in this session went to a worker's
    -- shard that had no partition for the event yet. The maker holds the
    -- new table until every node has committed: the insert's lock, taken
    -- here, waits for that.
    IF cardinality(found) > 0 THEN
        PERFORM audience_internal.lock_for_writing(found);
    END IF;
END
$$;

-- A month's partition, made as a table and then attached: ATTACH takes a
-- lock on view_events that lets reads and writes go on, where CREATE
-- TABLE ... PARTITION OF would lock them out until the writer commits.
-- That lock conflicts with itself, so creators take turns; taking it also
-- brings this session's catalog up to date, so that a partition another
-- creator committed meanwhile is found, not made twice. The storage
-- settings are the database's, whatever the calling session set.
CREATE FUNCTION audience_internal.create_event_month(month timestamp)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET default_tablespace = ''
SET default_table_access_method = 'heap'
AS $$
DECLARE
    part text := audience_internal.event_partition(month);
BEGIN
    LOCK TABLE ONLY audience_internal.view_events IN SHARE UPDATE EXCLUSIVE MODE;
    IF pg_catalog.to_regclass('audience_internal.' || part) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE audience_internal.%I (LIKE audience_internal.view_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    -- end_session finds an event by its id alone; the fold and the reads
    -- of one app by app and time; erasure (forget_viewer) a person's events
    -- without scanning the workspace.
    EXECUTE format('ALTER TABLE audience_internal.%1$I ADD CONSTRAINT %1$I_pkey PRIMARY KEY (workspace_id, event_id)', part);
    EXECUTE format('CREATE INDEX %1$I_event_id ON audience_internal.%1$I (event_id)', part);
    EXECUTE format('CREATE INDEX %1$I_app_time ON audience_internal.%1$I (workspace_id, app_id, viewed_at)', part);
    EXECUTE format('CREATE INDEX %1$I_viewer ON audience_internal.%1$I (workspace_id, viewer_id)', part);
    -- The partial days at the edges of a window are read from the raw
    -- events of every app of a workspace at once, with every column those
    -- reads use: an index-only scan, where fetching each event from the
    -- table went to a page per event (3,900 events of the busiest workspace
    -- at 10M read 9.7 to 13 ms that way and 3.8 ms from the index). It
    -- makes the index about 28 bytes an event larger, and an end_session
    -- update is no longer HOT.
    EXECUTE format('CREATE INDEX %1$I_time ON audience_internal.%1$I (workspace_id, viewed_at)
                        INCLUDE (app_id, viewer_id, kind, ended_at, identifiable)', part);
    -- Read through view_events only: no role holds a privilege on a
    -- partition, and its row security lets nothing through if one were
    -- granted (the policy of view_events does not apply to a partition read
    -- directly).
    EXECUTE format('ALTER TABLE audience_internal.%I ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('ALTER TABLE audience_internal.%I FORCE ROW LEVEL SECURITY', part);
    EXECUTE format('ALTER TABLE audience_internal.view_events ATTACH PARTITION audience_internal.%I FOR VALUES FROM (%L) TO (%L)',
                   part, month::text || '+00', (month + interval '1 month')::text || '+00');
    -- A partition made by ALTER EXTENSION UPDATE (which moves older events
    -- into partitions) would be part of the extension, and could then be
    -- neither dropped by retire_events nor kept by pg_dump: it is a table of
    -- data, like those made later.
    IF EXISTS (SELECT FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_catalog.pg_class'::regclass
                  AND d.objid = ('audience_internal.' || part)::regclass AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION pg_audience DROP TABLE audience_internal.%I', part);
    END IF;
END
$$;

-- Retention (docs/spec.md §4): the raw events of every whole calendar
-- month (UTC) before `before` go, a partition dropped per month, not rows
-- deleted. The rollups keep what they count: monthly uniques, totals,
-- recent viewers, and the usage questions over whole days. What reads raw
-- events loses the retired months: the sessions listed by app_sessions,
-- the partial first and last days of a usage window, and a rebuild of the
-- rollups (refused from then on). Erasure reads a person's share of the
-- retired days from the rollups, so forget_viewer still reaches everything.
CREATE FUNCTION audience.retire_events(before date)
RETURNS TABLE (month date, events bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
-- Definer rights: it drops partitions of a table the caller holds no
-- privilege on.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    until timestamptz;
    parts text[];
    months date[];
    counts bigint[];
    n bigint;
    i int;
BEGIN
    PERFORM audience_internal.require_read_committed();
    IF NOT isfinite(audience_internal.require(retire_events.before, 'before')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "before": must be a finite date';
    END IF;
    -- The month in progress is never whole: a date past its first day is
    -- a mistake (a year mistyped), which would retire every month there is.
    IF retire_events.before > audience_internal.event_month(now())::date THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'invalid argument "before": after the first day of the current month (UTC)';
    END IF;
    until := retire_events.before::timestamp AT TIME ZONE 'UTC';
    -- Writers wait from here (readers go on) while the months are counted,
    -- so that the counts are what goes: a write in progress commits first
    -- and is counted, a later one waits and finds its month gone (and makes
    -- it anew). The drops then wait for the reads in progress.
    LOCK TABLE ONLY audience_internal.view_events IN SHARE ROW EXCLUSIVE MODE;
    SELECT coalesce(array_agg(p.relname ORDER BY p.month), '{}'), coalesce(array_agg(p.month ORDER BY p.month), '{}')
      INTO parts, months
      FROM (SELECT c.relname::text AS relname,
                   to_date(substr(c.relname, length('view_events_') + 1), 'YYYY_MM') AS month
              FROM pg_catalog.pg_inherits h
              JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
             WHERE h.inhparent = 'audience_internal.view_events'::regclass) p
     WHERE (p.month + interval '1 month') AT TIME ZONE 'UTC' <= until;
    counts := '{}';
    FOR i IN 1 .. cardinality(parts) LOOP
        EXECUTE format('SELECT count(*) FROM audience_internal.%I', parts[i]) INTO n;
        counts := counts || n;
    END LOOP;
    IF cardinality(parts) > 0 THEN
        LOCK TABLE ONLY audience_internal.view_events IN ACCESS EXCLUSIVE MODE;
    END IF;
    FOR i IN 1 .. cardinality(parts) LOOP
        EXECUTE format('DROP TABLE audience_internal.%I', parts[i]);
        INSERT INTO audience_internal.retired_months AS r (month, events) VALUES (months[i], counts[i])
        ON CONFLICT (month) DO UPDATE SET events = r.events + excluded.events, retired_at = excluded.retired_at;
        month := months[i];
        events := counts[i];
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audience.retire_events(date) IS
    'Drops the raw view events of every whole calendar month (UTC) before a date, a partition per month, and returns each month removed with its number of events. Monthly uniques, totals, recent viewers and whole-day usage stay as the rollups hold them; sessions listed by app_sessions and rebuilds from raw events lose those months. Manager only.';

-- sql/rollups.sql
-- A day's month is the month of each of its instants.
CREATE FUNCTION audience_internal.day_of(at timestamptz, time_zone text)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (day_of.at AT TIME ZONE day_of.time_zone)::date $$;

CREATE FUNCTION audience_internal.month_of_day(day date)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT date_trunc('month', month_of_day.day)::date $$;

CREATE FUNCTION audience_internal.month_of(at timestamptz, time_zone text)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audience_internal.month_of_day(audience_internal.day_of(month_of.at, month_of.time_zone)) $$;

CREATE FUNCTION audience_internal.rollup_tables()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['app_viewers', 'app_totals', 'app_months', 'workspace_months', 'app_days', 'workspace_days']
$$;

CREATE OR REPLACE FUNCTION audience_internal.rebuild_rollups(workspace_id bigint)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ws_id bigint;
    retired timestamptz;
    t text;
    app_ids bigint[];
    viewer_ids bigint[];
    viewed_ats timestamptz[];
    ended_ats timestamptz[];
    kinds text[];
    identifiables boolean[];
BEGIN
    SELECT k.workspace_id INTO ws_id FROM audience_internal.workspace_keys k
     WHERE k.workspace_id = rebuild_rollups.workspace_id FOR UPDATE;
    -- The rollups hold the retired months' events (audience.retire_events),
    -- the raw events no longer: rebuilt, those counts would be lost. Asked
    -- under a lock that a retirement in progress takes first: it commits,
    -- and is seen, before the events are read. Whether the workspace has
    -- an event before the retired instant, whatever its time zone was.
    LOCK TABLE ONLY audience_internal.view_events IN ACCESS SHARE MODE;
    retired := audience_internal.retired_before();
    IF EXISTS (SELECT FROM audience_internal.app_viewers av
                WHERE av.workspace_id = ws_id AND av.first_viewed_at < retired)
       OR EXISTS (SELECT FROM audience_internal.pending_folds p
                   WHERE p.workspace_id = ws_id AND p.viewed_at < retired) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('the time zone and counting start of this workspace cannot change: its rollups would be rebuilt from its raw events, and those before %s UTC were retired (retire_events)',
                             to_char(retired AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'));
    END IF;
    DELETE FROM audience_internal.pending_folds p WHERE p.workspace_id = ws_id;
    FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
        EXECUTE format('DELETE FROM audience_internal.%I t WHERE t.workspace_id = $1', t) USING ws_id;
    END LOOP;
    SELECT array_agg(e.app_id), array_agg(e.viewer_id), array_agg(e.viewed_at), array_agg(e.ended_at),
           array_agg(e.kind), array_agg(e.identifiable)
      INTO app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables
      FROM audience_internal.view_events e WHERE e.workspace_id = ws_id;
    PERFORM audience_internal.fold_batch(ws_id, app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables);
END
$$;

CREATE FUNCTION audience_internal.rollups_vs_rebuild(workspace_ids bigint[])
RETURNS TABLE (workspace_id bigint, rollup text, kept_only bigint, rebuilt_only bigint, sample jsonb)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ids bigint[];
    id bigint;
    t text;
    kept bigint;
    rebuilt bigint;
    rows_found jsonb;
    differences jsonb := '[]';
BEGIN
    ids := ARRAY(SELECT DISTINCT k.workspace_id FROM audience_internal.workspace_keys k
                  WHERE k.workspace_id = ANY (rollups_vs_rebuild.workspace_ids)
                  ORDER BY k.workspace_id);
    FOREACH id IN ARRAY ids LOOP
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = id FOR UPDATE;
    END LOOP;
    -- What the fold keeps is checked with every pending event folded, and
    -- every month that is over given its sums (as a rebuild gives them).
    PERFORM audience_internal.fold_pending(ids);
    PERFORM audience_internal.close_months(ids);
    BEGIN
        FOREACH id IN ARRAY ids LOOP
            FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
                EXECUTE format('CREATE TEMP TABLE rollup_kept_%s_%s AS SELECT * FROM audience_internal.%I x WHERE x.workspace_id = $1',
                               t, id, t)
                  USING id;
            END LOOP;
            PERFORM audience_internal.rebuild_rollups(id);
            FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
                EXECUTE format(
                    'WITH kept AS (SELECT * FROM rollup_kept_%1$s_%2$s),
                          rebuilt AS (SELECT * FROM audience_internal.%1$I x WHERE x.workspace_id = $1),
                          kept_only AS (TABLE kept EXCEPT ALL TABLE rebuilt),
                          rebuilt_only AS (TABLE rebuilt EXCEPT ALL TABLE kept)
                     SELECT (SELECT count(*) FROM kept_only), (SELECT count(*) FROM rebuilt_only),
                            coalesce((SELECT jsonb_agg(jsonb_build_object(''kept'', to_jsonb(k)))
                                        FROM (SELECT * FROM kept_only LIMIT 2) k), ''[]'')
                            || coalesce((SELECT jsonb_agg(jsonb_build_object(''rebuilt'', to_jsonb(r)))
                                           FROM (SELECT * FROM rebuilt_only LIMIT 2) r), ''[]'')',
                    t, id)
                  INTO kept, rebuilt, rows_found USING id;
                IF kept + rebuilt > 0 THEN
                    differences := differences || jsonb_build_object(
                        'workspace_id', id, 'rollup', t, 'kept_only', kept, 'rebuilt_only', rebuilt, 'sample', rows_found);
                END IF;
            END LOOP;
        END LOOP;
        -- Undoes the rebuilds and the copies.
        RAISE SQLSTATE 'RB000';
    EXCEPTION WHEN SQLSTATE 'RB000' THEN
        NULL;
    END;
    RETURN QUERY
    SELECT (d ->> 'workspace_id')::bigint, d ->> 'rollup', (d ->> 'kept_only')::bigint,
           (d ->> 'rebuilt_only')::bigint, d -> 'sample'
      FROM jsonb_array_elements(differences) d;
END
$$;

-- sql/requester.sql
CREATE FUNCTION audience_internal.operator_role(role_id oid)
RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.oid = operator_role.role_id
                      AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'audience_manager', 'MEMBER')));
END
$$;

CREATE OR REPLACE FUNCTION audience_internal.requester_is_operator()
RETURNS boolean LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT audience_internal.token_subject() IS NULL
       AND audience_internal.operator_role(audience_internal.caller_role())
$$;

DROP FUNCTION audience_internal.requester_roles;
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

DROP FUNCTION audience_internal.requester_memberships();
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

CREATE OR REPLACE FUNCTION audience_internal.workspace_access(workspace_id bigint)
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

CREATE OR REPLACE FUNCTION audience_internal.app_visible(workspace_id bigint, app_id bigint, access text)
RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM audience_internal.visible_apps(app_visible.workspace_id, app_visible.access,
                                                              app_visible.app_id));
END
$$;

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

DROP FUNCTION audience_internal.requester_apps();
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

DROP FUNCTION audience_internal.whoami_for;
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

DROP FUNCTION audience.whoami;
CREATE FUNCTION audience.whoami()
RETURNS SETOF audience.whoami_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 2
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.whoami_for(audience_internal.ticket());
END;
COMMENT ON FUNCTION audience.whoami() IS
    'Who the current query runs for (by request token, database role, or as operator) and which workspaces it sees, one row per workspace; resolved_by nobody when it sees none.';

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

CREATE OR REPLACE FUNCTION audience.authenticate(token text)
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

-- sql/labels.sql
CREATE OR REPLACE FUNCTION audience_internal.is_identified(
    viewed_at timestamptz,
    identification_start timestamptz,
    is_member boolean,
    identifiable_view boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT viewed_at >= identification_start AND (coalesce(is_member, false) OR coalesce(identifiable_view, false))
$$;

CREATE OR REPLACE FUNCTION audience_internal.viewer_label(
    identified boolean, identity text, pseudonym_key bytea, viewer_hash bytea, scope text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN identified THEN identity ELSE audience_internal.viewer_pseudonym(pseudonym_key, viewer_hash, scope) END
$$;

CREATE OR REPLACE FUNCTION audience_internal.latest_identifiable(
    kept_at timestamptz, kept boolean, new_at timestamptz, new boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN new_at > kept_at THEN new WHEN new_at = kept_at THEN kept OR new ELSE kept END
$$;

DROP FUNCTION audience_internal.pseudonym_scope(bigint, timestamptz);
CREATE FUNCTION audience_internal.pseudonym_scope(
    pseudonym_rotation text, time_zone text, requester text, viewed_at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT concat_ws('|',
             CASE WHEN pseudonym_scope.pseudonym_rotation = 'monthly'
                  THEN 'month:' || to_char(audience_internal.month_of(pseudonym_scope.viewed_at, pseudonym_scope.time_zone),
                                           'YYYY-MM') END,
             pseudonym_scope.requester)
$$;

CREATE FUNCTION audience_internal.requester_scope(workspace_id bigint)
RETURNS text LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM audience_internal.workspaces w
                    WHERE w.workspace_id = requester_scope.workspace_id AND w.pseudonym_scope = 'requester') THEN
        RETURN NULL;
    END IF;
    RETURN 'requester:' || coalesce(
        (SELECT encode(m.identity_hash, 'hex') FROM audience_internal.requester_memberships(requester_scope.workspace_id) m
          LIMIT 1),
        'role:' || audience_internal.caller_role()::text);
END
$$;

CREATE FUNCTION audience_internal.member_viewer_ids(workspace_id bigint)
RETURNS bigint[] LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN ARRAY(SELECT v.viewer_id
                   FROM audience_internal.members m
                   JOIN audience_internal.viewers v
                     ON v.workspace_id = m.workspace_id AND v.viewer_hash = m.identity_hash
                  WHERE m.workspace_id = member_viewer_ids.workspace_id AND m.status = 'active');
END
$$;

CREATE FUNCTION audience_internal.label_key(
    workspace audience_internal.workspaces, is_member boolean, at timestamptz, identifiable boolean)
RETURNS TABLE (identified boolean, label_at timestamptz) LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 1
AS $$
    SELECT i.identified,
           CASE WHEN (label_key.workspace).pseudonym_rotation = 'monthly' AND NOT i.identified
                THEN audience_internal.month_of(label_key.at, (label_key.workspace).time_zone)::timestamp
                     AT TIME ZONE (label_key.workspace).time_zone END
      FROM (SELECT audience_internal.is_identified(label_key.at, (label_key.workspace).identification_start,
                                                   label_key.is_member, label_key.identifiable) AS identified) i
$$;

CREATE FUNCTION audience_internal.labels(
    workspace_id bigint, viewer_ids bigint[], identified boolean[], ats timestamptz[], identifiable boolean[])
RETURNS TABLE (n bigint, viewer text, viewer_ref text, pseudonymous boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
AS $$
#variable_conflict use_column
DECLARE
    requester text := audience_internal.requester_scope(labels.workspace_id);
BEGIN
    -- The workspace's settings and key are read once (a plan for any
    -- workspace, kept for the session, otherwise reads them per viewer).
    RETURN QUERY
    WITH w AS MATERIALIZED (
        SELECT x.identification_start, x.pseudonym_rotation, x.time_zone, k.pseudonym_key
          FROM audience_internal.workspaces x
          JOIN audience_internal.workspace_keys k ON k.workspace_id = x.workspace_id
         WHERE x.workspace_id = labels.workspace_id AND k.workspace_id = labels.workspace_id
    )
    SELECT u.n,
           audience_internal.viewer_label(s.identified, coalesce(m.identity, v.identity), w.pseudonym_key,
                                          v.viewer_hash, s.scope),
           audience_internal.viewer_ref(w.pseudonym_key, v.viewer_hash, s.identified, s.scope),
           NOT s.identified
      FROM w
     CROSS JOIN unnest(labels.viewer_ids, labels.identified, labels.ats, labels.identifiable)
               WITH ORDINALITY u(viewer_id, identified, at, identifiable, n)
      JOIN audience_internal.viewers v ON v.workspace_id = labels.workspace_id AND v.viewer_id = u.viewer_id
      LEFT JOIN audience_internal.members m
        ON m.workspace_id = labels.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
     CROSS JOIN LATERAL (
          SELECT coalesce(u.identified,
                          audience_internal.is_identified(u.at, w.identification_start, m.member_id IS NOT NULL,
                                                          u.identifiable)) AS identified,
                 audience_internal.pseudonym_scope(w.pseudonym_rotation, w.time_zone, requester, u.at) AS scope) s;
END
$$;

-- sql/management.sql
CREATE OR REPLACE FUNCTION audience.configure_workspace(
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

-- The views and the viewer set of the apps public now, for every month of
-- one workspace (workspace_months.public_views and public_viewers), made
-- again from the apps' month rollups: set_app_visibility runs it after a
-- change, under the workspace row's lock (the fold keeps them for the
-- events it merges, and events not folded yet are folded under the
-- visibility of their fold), and the 0.1.0 update fills them with it.
CREATE FUNCTION audience_internal.remake_public_sets(workspace_id bigint)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    UPDATE audience_internal.workspace_months wm
       SET public_viewers = p.viewers, public_views = p.views
      FROM (SELECT m.month,
                   audience_internal.viewer_set_union(
                       coalesce(array_agg(am.viewers) FILTER (WHERE a.visibility = 'public'), '{}')) AS viewers,
                   coalesce(sum(am.views) FILTER (WHERE a.visibility = 'public'), 0) AS views
              FROM audience_internal.workspace_months m
              LEFT JOIN audience_internal.app_months am ON am.workspace_id = m.workspace_id AND am.month = m.month
              LEFT JOIN audience_internal.apps a ON a.workspace_id = am.workspace_id AND a.app_id = am.app_id
             WHERE m.workspace_id = remake_public_sets.workspace_id
             GROUP BY m.month) p
     WHERE wm.workspace_id = remake_public_sets.workspace_id AND wm.month = p.month;
END
$$;

CREATE OR REPLACE FUNCTION audience.set_app_visibility(workspace text, app text, visibility text)
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

-- Adding a member takes the workspace row first (the lock order at the top
-- of sql/ingest.sql), FOR NO KEY UPDATE: ingest's key-share lock is not
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

CREATE OR REPLACE FUNCTION audience.add_member(workspace text, member text, kind text, db_role name DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION audience.invite_viewer(workspace text, member text, app text DEFAULT NULL, db_role name DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

-- sql/ingest.sql
CREATE OR REPLACE FUNCTION audience_internal.visibility_at(workspace_id bigint, app_id bigint, at timestamptz)
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

CREATE FUNCTION audience_internal.session_micros(kind text, viewed_at timestamptz, ended_at timestamptz)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN session_micros.kind = 'session' AND session_micros.ended_at IS NOT NULL
                THEN audience_internal.micros_between(session_micros.viewed_at, session_micros.ended_at) ELSE 0 END
$$;

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

DROP FUNCTION audience_internal.view_problem;
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

CREATE OR REPLACE FUNCTION audience.record_view(
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

CREATE OR REPLACE FUNCTION audience.end_session(event_id bigint, ended_at timestamptz DEFAULT now())
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

-- sql/rollups.sql: the fold
-- Merges a batch of one workspace's events into every rollup and returns how
-- many it merged: the pending events of a fold (fold_pending), all of a
-- workspace's raw events (rebuild_rollups), or the events a bulk statement
-- stores (sql/bulk_ingest.sql). The batch comes as arrays of one length, an
-- entry per event, taken once by the caller; each rollup is then written by
-- a statement of its own, over the batch and the workspace's rows only, in
-- the lock order of sql/ingest.sql, each rollup row once and in primary-key
-- order. So it runs alike on one server and on Citus, which routes each
-- statement to the shards of the workspace (docs/citus.md): no statement
-- reads a table and writes another, and ON CONFLICT calls only functions of
-- the rows' columns.
--
-- The caller holds the workspace's lock (the lock order at the top of
-- sql/ingest.sql); the settings and the apps' visibility read here are
-- therefore the latest committed ones, as every statement of a function
-- takes a new snapshot. Only a definer function of the extension can call
-- this: session_replication_role = replica leaves the rollup rows' foreign
-- keys unchecked row by row (the caller's lock keeps every parent).
-- work_mem is for batches of a million events, and each statement is
-- planned for its batch.
CREATE FUNCTION audience_internal.fold_batch(
    workspace_id bigint, app_ids bigint[], viewer_ids bigint[], viewed_ats timestamptz[],
    ended_ats timestamptz[], kinds text[], identifiables boolean[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET session_replication_role = replica
SET work_mem = '256MB'
SET plan_cache_mode = force_custom_plan
SET enable_nestloop = on
SET enable_mergejoin = on
AS $$
#variable_conflict use_column
DECLARE
    ws bigint := fold_batch.workspace_id;
    tz text;
    counting_from timestamptz;
    public_ids bigint[];
    days date[];
    -- The batch's counters per app, day, viewer and kind of view: the
    -- entries of the day rows' packed counters.
    d_apps bigint[];
    d_days date[];
    d_viewers bigint[];
    d_identifiable boolean[];
    d_sessions bigint[];
    d_visits bigint[];
    d_micros bigint[];
    d_last timestamptz[];
    t_apps bigint[];
    t_viewers bigint[];
    t_views bigint[];
    closed date[];
BEGIN
    IF coalesce(cardinality(fold_batch.app_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- The planner guesses the size of a join with rows just written: for a
    -- big batch it would join by nested loops (quadratic) or by sorting,
    -- where hashing is what scales. (The settings end with this function.)
    IF cardinality(fold_batch.app_ids) > 1000 THEN
        PERFORM set_config('enable_nestloop', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
    END IF;
    SELECT w.time_zone, w.counting_start INTO tz, counting_from
      FROM audience_internal.workspaces w WHERE w.workspace_id = ws;
    public_ids := ARRAY(SELECT a.app_id FROM audience_internal.apps a
                         WHERE a.workspace_id = ws AND a.visibility = 'public'
                           AND a.app_id = ANY (ARRAY(SELECT DISTINCT x FROM unnest(fold_batch.app_ids) x)));
    days := ARRAY(SELECT audience_internal.day_of(x, tz) FROM unnest(fold_batch.viewed_ats) x);

    -- A viewer's row per app; a viewer enters the app's all-time total with
    -- its first counted view, that is when all its counted views so far are
    -- in this batch: its count after the merge equals the batch's.
    WITH b AS MATERIALIZED (
        SELECT e.app_id, e.viewer_id, min(e.viewed_at) AS first_viewed_at, max(e.viewed_at) AS last_viewed_at,
               -- latest_identifiable over a set: the latest view's, and of
               -- views at the same instant, either one identifiable counts.
               (array_agg(e.identifiable ORDER BY e.viewed_at DESC, e.identifiable DESC))[1] AS last_view_identifiable,
               count(*) AS views, count(*) FILTER (WHERE e.viewed_at >= counting_from) AS counted_views
          FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, fold_batch.viewed_ats, fold_batch.identifiables)
               e(app_id, viewer_id, viewed_at, identifiable)
         GROUP BY e.app_id, e.viewer_id
    ),
    merged AS (
        INSERT INTO audience_internal.app_viewers AS av
               (workspace_id, app_id, viewer_id, first_viewed_at, last_viewed_at,
                last_view_identifiable, views, counted_views)
        SELECT ws, b.app_id, b.viewer_id, b.first_viewed_at, b.last_viewed_at,
               b.last_view_identifiable, b.views, b.counted_views
          FROM b
         ORDER BY b.app_id, b.viewer_id
        ON CONFLICT (workspace_id, app_id, viewer_id) DO UPDATE
           SET first_viewed_at = least(av.first_viewed_at, excluded.first_viewed_at),
               last_viewed_at = greatest(av.last_viewed_at, excluded.last_viewed_at),
               last_view_identifiable = audience_internal.latest_identifiable(
                   av.last_viewed_at, av.last_view_identifiable, excluded.last_viewed_at, excluded.last_view_identifiable),
               views = av.views + excluded.views,
               counted_views = av.counted_views + excluded.counted_views
        RETURNING av.app_id, av.viewer_id, av.counted_views
    )
    SELECT array_agg(t.app_id), array_agg(t.viewers), array_agg(t.views) INTO t_apps, t_viewers, t_views
      FROM (SELECT b.app_id, count(*) FILTER (WHERE m.counted_views = b.counted_views) AS viewers,
                   sum(b.counted_views)::bigint AS views
              FROM b JOIN merged m ON m.app_id = b.app_id AND m.viewer_id = b.viewer_id
             WHERE b.counted_views > 0
             GROUP BY b.app_id
             ORDER BY b.app_id) t;

    INSERT INTO audience_internal.app_totals AS t (workspace_id, app_id, viewers, views)
    SELECT ws, x.app_id, x.viewers, x.views
      FROM unnest(t_apps, t_viewers, t_views) x(app_id, viewers, views)
     ORDER BY x.app_id
    ON CONFLICT (workspace_id, app_id) DO UPDATE
       SET viewers = t.viewers + excluded.viewers, views = t.views + excluded.views;

    -- A month's distinct viewers are its viewer set's size: the batch's set
    -- is merged into the kept one (viewer_set_merge), which gives both.
    INSERT INTO audience_internal.app_months AS m (workspace_id, app_id, month, unique_viewers, views, viewers)
    SELECT ws, e.app_id, e.month, count(DISTINCT e.viewer_id), count(*), audience_internal.viewer_set(array_agg(e.viewer_id))
      FROM (SELECT x.app_id, x.viewer_id, audience_internal.month_of_day(x.day) AS month
              FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, days) x(app_id, viewer_id, day)) e
     GROUP BY e.app_id, e.month
     ORDER BY e.app_id, e.month
    ON CONFLICT (workspace_id, app_id, month) DO UPDATE
       SET (viewers, unique_viewers) =
           (SELECT u.viewers, u.viewer_count FROM audience_internal.viewer_set_merge(m.viewers, excluded.viewers) u),
           views = m.views + excluded.views;

    WITH merged AS (
        INSERT INTO audience_internal.workspace_months AS m
               (workspace_id, month, unique_viewers, views, viewers, public_viewers, public_views)
        SELECT ws, e.month, count(DISTINCT e.viewer_id), count(*),
               audience_internal.viewer_set(array_agg(e.viewer_id)),
               audience_internal.viewer_set(coalesce(array_agg(e.viewer_id) FILTER (WHERE e.app_id = ANY (public_ids)), '{}')),
               count(*) FILTER (WHERE e.app_id = ANY (public_ids))
          FROM (SELECT x.app_id, x.viewer_id, audience_internal.month_of_day(x.day) AS month
                  FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, days) x(app_id, viewer_id, day)) e
         GROUP BY e.month
         ORDER BY e.month
        ON CONFLICT (workspace_id, month) DO UPDATE
           SET (viewers, unique_viewers) =
               (SELECT u.viewers, u.viewer_count FROM audience_internal.viewer_set_merge(m.viewers, excluded.viewers) u),
               views = m.views + excluded.views,
               public_viewers = audience_internal.viewer_set_union(ARRAY[m.public_viewers, excluded.public_viewers]),
               public_views = m.public_views + excluded.public_views
        RETURNING m.month, m.viewer_counts IS NOT NULL AS closed
    )
    SELECT array_agg(merged.month) FILTER (WHERE merged.closed) INTO closed FROM merged;

    SELECT array_agg(v.app_id), array_agg(v.day), array_agg(v.viewer_id), array_agg(v.identifiable),
           array_agg(v.sessions), array_agg(v.visits), array_agg(v.session_micros), array_agg(v.last_viewed_at)
      INTO d_apps, d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last
      FROM (SELECT e.app_id, e.day, e.viewer_id, e.identifiable,
                   count(*) FILTER (WHERE e.kind = 'session') AS sessions, count(*) FILTER (WHERE e.kind = 'visit') AS visits,
                   sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at))::bigint AS session_micros,
                   max(e.viewed_at) AS last_viewed_at
              FROM unnest(fold_batch.app_ids, fold_batch.viewer_ids, fold_batch.viewed_ats, fold_batch.ended_ats,
                          fold_batch.kinds, fold_batch.identifiables, days)
                   e(app_id, viewer_id, viewed_at, ended_at, kind, identifiable, day)
             GROUP BY e.app_id, e.day, e.viewer_id, e.identifiable) v;

    -- A month that is over has the sums of its days' packed counters
    -- (close_months), which the batch's days add to, under the month row's
    -- lock taken just above.
    IF closed IS NOT NULL THEN
        UPDATE audience_internal.workspace_months m
           SET apps = audience_internal.packed_counts_add(m.apps, p.apps),
               viewer_counts = audience_internal.packed_counts_add(m.viewer_counts, p.viewer_counts)
          FROM (SELECT x.month,
                       audience_internal.app_counts(array_agg(x.app_id), array_agg(x.sessions), array_agg(x.visits),
                                                    array_agg(x.session_micros)) AS apps,
                       audience_internal.viewer_counts(array_agg(x.viewer_id), array_agg(x.identifiable),
                                                       array_agg(x.sessions), array_agg(x.visits),
                                                       array_agg(x.session_micros), array_agg(x.last_viewed_at)) AS viewer_counts
                  FROM (SELECT audience_internal.month_of_day(y.day) AS month, y.*
                          FROM unnest(d_apps, d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last)
                               y(app_id, day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)) x
                 WHERE x.month = ANY (closed)
                 GROUP BY x.month) p
         WHERE m.workspace_id = ws AND m.month = p.month;
    END IF;

    -- A day row's counters add up and its viewer sets and packed counters
    -- unite; a workspace day's are those of its apps' day rows in the
    -- batch, and of its viewers' (a viewer's views of several apps in one
    -- entry).
    INSERT INTO audience_internal.app_days AS d
           (workspace_id, app_id, day, sessions, visits, session_micros, viewers, viewer_counts)
    SELECT ws, v.app_id, v.day, sum(v.sessions)::bigint, sum(v.visits)::bigint, sum(v.session_micros)::bigint,
           audience_internal.viewer_set(array_agg(v.viewer_id)),
           audience_internal.viewer_counts(array_agg(v.viewer_id), array_agg(v.identifiable), array_agg(v.sessions),
                                           array_agg(v.visits), array_agg(v.session_micros), array_agg(v.last_viewed_at))
      FROM unnest(d_apps, d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last)
           v(app_id, day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)
     GROUP BY v.app_id, v.day
     ORDER BY v.app_id, v.day
    ON CONFLICT (workspace_id, app_id, day) DO UPDATE
       SET sessions = d.sessions + excluded.sessions, visits = d.visits + excluded.visits,
           session_micros = d.session_micros + excluded.session_micros,
           viewers = audience_internal.viewer_set_union(ARRAY[d.viewers, excluded.viewers]),
           viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, excluded.viewer_counts);

    INSERT INTO audience_internal.workspace_days AS d
           (workspace_id, day, sessions, visits, session_micros, viewers, apps, viewer_counts)
    SELECT ws, a.day, a.sessions, a.visits, a.session_micros, v.viewers, a.apps, v.viewer_counts
      FROM (SELECT x.day, sum(x.sessions)::bigint AS sessions, sum(x.visits)::bigint AS visits,
                   sum(x.session_micros)::bigint AS session_micros,
                   audience_internal.app_counts(array_agg(x.app_id), array_agg(x.sessions), array_agg(x.visits),
                                                array_agg(x.session_micros)) AS apps
              FROM (SELECT y.day, y.app_id, sum(y.sessions)::bigint AS sessions, sum(y.visits)::bigint AS visits,
                           sum(y.session_micros)::bigint AS session_micros
                      FROM unnest(d_apps, d_days, d_sessions, d_visits, d_micros) y(app_id, day, sessions, visits, session_micros)
                     GROUP BY y.day, y.app_id) x
             GROUP BY x.day) a
      JOIN (SELECT y.day, audience_internal.viewer_set(array_agg(y.viewer_id)) AS viewers,
                   audience_internal.viewer_counts(array_agg(y.viewer_id), array_agg(y.identifiable), array_agg(y.sessions),
                                                   array_agg(y.visits), array_agg(y.session_micros),
                                                   array_agg(y.last_viewed_at)) AS viewer_counts
              FROM unnest(d_days, d_viewers, d_identifiable, d_sessions, d_visits, d_micros, d_last)
                   y(day, viewer_id, identifiable, sessions, visits, session_micros, last_viewed_at)
             GROUP BY y.day) v ON v.day = a.day
     ORDER BY a.day
    ON CONFLICT (workspace_id, day) DO UPDATE
       SET sessions = d.sessions + excluded.sessions, visits = d.visits + excluded.visits,
           session_micros = d.session_micros + excluded.session_micros,
           viewers = audience_internal.viewer_set_union(ARRAY[d.viewers, excluded.viewers]),
           apps = audience_internal.packed_counts_add(d.apps, excluded.apps),
           viewer_counts = audience_internal.packed_counts_add(d.viewer_counts, excluded.viewer_counts);

    PERFORM audience_internal.close_months(ARRAY[ws]);
    RETURN cardinality(fold_batch.app_ids);
END
$$;

-- Gives the months of these workspaces that are over in their time zone
-- their packed counters (workspace_months.apps and viewer_counts): the sums
-- of their days'. From then on every write that changes a day of the month
-- changes them too: the fold (fold_batch), end_session and forget_viewer,
-- each under the month row's lock. Run after each fold, in its
-- transaction. A month row that another transaction holds is skipped, for
-- a later fold to do: that transaction is changing the month's days (it
-- holds the row as the fold and end_session do, before they change a day
-- row), and waiting for it could deadlock, as it may wait for a day row
-- this one holds. The days are read after the lock is taken, by a
-- statement of their own, so they include every change committed before.
CREATE FUNCTION audience_internal.close_months(workspace_ids bigint[])
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT m.workspace_id, m.month
               FROM audience_internal.workspace_months m
               JOIN audience_internal.workspaces w ON w.workspace_id = m.workspace_id
              WHERE m.workspace_id = ANY (close_months.workspace_ids) AND m.viewer_counts IS NULL
                AND m.month < audience_internal.month_of(now(), w.time_zone)
              ORDER BY m.workspace_id, m.month
    LOOP
        PERFORM FROM audience_internal.workspace_months m
          WHERE m.workspace_id = r.workspace_id AND m.month = r.month AND m.viewer_counts IS NULL
            FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE audience_internal.workspace_months m
               SET (apps, viewer_counts) =
                   (SELECT audience_internal.packed_counts_sum(array_agg(d.apps)),
                           audience_internal.packed_counts_sum(array_agg(d.viewer_counts))
                      FROM audience_internal.workspace_days d
                     WHERE d.workspace_id = r.workspace_id
                       AND d.day >= r.month AND d.day < (r.month + interval '1 month')::date)
             WHERE m.workspace_id = r.workspace_id AND m.month = r.month;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION audience_internal.fold_every()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 64 $$;

CREATE FUNCTION audience_internal.fold_pending(workspace_ids bigint[])
RETURNS bigint LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := ARRAY(SELECT DISTINCT x FROM unnest(fold_pending.workspace_ids) x WHERE x IS NOT NULL ORDER BY 1);
    ws bigint;
    n_folded bigint := 0;
    app_ids bigint[];
    viewer_ids bigint[];
    viewed_ats timestamptz[];
    ended_ats timestamptz[];
    kinds text[];
    identifiables boolean[];
BEGIN
    FOREACH ws IN ARRAY ids LOOP
        PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws FOR KEY SHARE;
    END LOOP;
    FOREACH ws IN ARRAY ids LOOP
        WITH taken AS (
            DELETE FROM audience_internal.pending_folds p WHERE p.workspace_id = ws RETURNING p.*
        )
        SELECT array_agg(t.app_id), array_agg(t.viewer_id), array_agg(t.viewed_at), array_agg(t.ended_at),
               array_agg(t.kind), array_agg(t.identifiable)
          INTO app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables
          FROM taken t;
        n_folded := n_folded + audience_internal.fold_batch(ws, app_ids, viewer_ids, viewed_ats, ended_ats, kinds, identifiables);
    END LOOP;
    RETURN n_folded;
END
$$;
COMMENT ON FUNCTION audience_internal.fold_pending(bigint[]) IS
    'Merges the pending events of these workspaces into every rollup, set-wise, and returns how many it folded.';

-- sql/bulk_ingest.sql: the bulk paths, on the fold of one workspace's batch
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

-- sql/bulk_ingest.sql
CREATE OR REPLACE FUNCTION audience_internal.import_views(r_workspaces text[], r_apps text[], r_viewers text[],
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

CREATE OR REPLACE FUNCTION audience_internal.fold_view_imports()
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

CREATE OR REPLACE FUNCTION audience.record_views(events jsonb, on_error text DEFAULT 'abort')
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

-- sql/analytics.sql
DROP FUNCTION audience_internal.recent_months(bigint, integer);

DROP FUNCTION audience_internal.monthly_viewers;
CREATE FUNCTION audience_internal.monthly_viewers(workspace_id bigint, apps bigint[], months integer)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
-- Planned for a thousand months (generate_series, when the number of
-- months is not known, as in a plan kept for the session) and a viewer
-- member's thousand apps, the query's estimate passes the default
-- jit_above_cost: compiling it took 290 ms of a 2 ms read.
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    tz text := (SELECT w.time_zone FROM audience_internal.workspaces w
                 WHERE w.workspace_id = monthly_viewers.workspace_id);
    current_month timestamp := audience_internal.month_of(now(), tz);
BEGIN
    RETURN QUERY
    WITH shown AS MATERIALIZED (
        -- For several apps: whether they include every public app, and those
        -- of them that are not public.
        SELECT coalesce(bool_and(s.app_id IS NOT NULL) FILTER (WHERE a.visibility = 'public'), true) AS all_public,
               coalesce(array_agg(a.app_id) FILTER (WHERE s.app_id IS NOT NULL AND a.visibility <> 'public'), '{}') AS others
          FROM audience_internal.apps a
          LEFT JOIN unnest(monthly_viewers.apps) s(app_id) ON s.app_id = a.app_id
         WHERE cardinality(monthly_viewers.apps) > 1 AND a.workspace_id = monthly_viewers.workspace_id
    ),
    pending AS MATERIALIZED (
        SELECT p.app_id, p.viewer_id, audience_internal.month_of(p.viewed_at, tz) AS month
          FROM audience_internal.pending_folds p
         WHERE p.workspace_id = monthly_viewers.workspace_id
           AND (monthly_viewers.apps IS NULL OR p.app_id = ANY (monthly_viewers.apps))
    )
    SELECT r.month, coalesce(c.unique_viewers, n.viewer_count), coalesce(c.views, 0) + n.views, r.complete
      -- The first days of the last `months` months, the current one last:
      -- counted in integers, whose series the planner sizes from its bounds
      -- when they are known. On a Citus worker, which runs this query with
      -- its own settings (not the function's jit = off) and the bounds
      -- known, a series of timestamps, guessed at a thousand rows, made the
      -- plan's cost pass jit_above_cost.
      FROM (SELECT (current_month + make_interval(months => k))::date AS month, k < 0 AS complete
              FROM generate_series(1 - monthly_viewers.months, 0) k) r
     CROSS JOIN LATERAL (
          SELECT count(*) AS views, count(DISTINCT p.viewer_id) AS viewer_count,
                 audience_internal.viewer_set(array_agg(p.viewer_id)) AS viewers
            FROM pending p WHERE p.month = r.month
     ) n
      -- The month's rollup row, its set united with the pending viewers'
      -- when there are any.
      LEFT JOIN LATERAL (
          SELECT CASE WHEN n.viewers IS NULL THEN wm.unique_viewers
                      ELSE audience_internal.viewer_set_count(ARRAY[wm.viewers, n.viewers]) END AS unique_viewers,
                 wm.views
            FROM audience_internal.workspace_months wm
           WHERE monthly_viewers.apps IS NULL AND wm.workspace_id = monthly_viewers.workspace_id AND wm.month = r.month
          UNION ALL
          SELECT CASE WHEN n.viewers IS NULL THEN am.unique_viewers
                      ELSE audience_internal.viewer_set_count(ARRAY[am.viewers, n.viewers]) END,
                 am.views
            FROM audience_internal.app_months am
           WHERE cardinality(monthly_viewers.apps) = 1 AND am.workspace_id = monthly_viewers.workspace_id AND am.app_id = monthly_viewers.apps[1] AND am.month = r.month
          UNION ALL
          -- Several apps: the union of their month sets (or of the public
          -- apps' set and the others') and of the pending events' viewers.
          SELECT audience_internal.viewer_set_count(array_agg(x.viewers) || n.viewers),
                 coalesce(sum(x.views), 0)::bigint
            FROM shown,
                 LATERAL (SELECT wm.public_viewers AS viewers, wm.public_views AS views
                            FROM audience_internal.workspace_months wm
                           WHERE shown.all_public AND cardinality(monthly_viewers.apps) > 1 AND wm.workspace_id = monthly_viewers.workspace_id AND wm.month = r.month
                          UNION ALL
                          SELECT am.viewers, am.views
                            FROM audience_internal.app_months am
                           WHERE shown.all_public AND cardinality(monthly_viewers.apps) > 1 AND am.workspace_id = monthly_viewers.workspace_id
                             AND am.app_id = ANY (shown.others) AND am.month = r.month
                          UNION ALL
                          SELECT am.viewers, am.views
                            FROM audience_internal.app_months am
                           WHERE NOT shown.all_public AND am.workspace_id = monthly_viewers.workspace_id
                             AND am.app_id = ANY (monthly_viewers.apps) AND am.month = r.month) x
          HAVING cardinality(monthly_viewers.apps) <> 1
      ) c ON true
     ORDER BY r.month;
END
$$;

DROP FUNCTION audience_internal.workspace_monthly_viewers_for;
CREATE FUNCTION audience_internal.workspace_monthly_viewers_for(ticket bytea, workspace text, months integer)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 12
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    ws record;
BEGIN
    ws := audience_internal.read_scope(ticket, workspace, NULL, false);
    PERFORM audience_internal.check_count(months, 'months', 1200);
    RETURN QUERY SELECT * FROM audience_internal.monthly_viewers(ws.workspace_id, ws.app_ids, months);
END
$$;

DROP FUNCTION audience.workspace_monthly_viewers;
CREATE FUNCTION audience.workspace_monthly_viewers(workspace text, months integer DEFAULT 12)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 12
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.workspace_monthly_viewers_for(audience_internal.ticket(), workspace, months);
END;
COMMENT ON FUNCTION audience.workspace_monthly_viewers(text, integer) IS
    'Per calendar month (in the workspace''s time zone), the number of distinct viewers of the workspace''s apps that the requester may see, and of views, for the last `months` months; complete is false for the month in progress.';

DROP FUNCTION audience_internal.app_monthly_viewers_for;
CREATE FUNCTION audience_internal.app_monthly_viewers_for(ticket bytea, workspace text, app text, months integer)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 12
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    ws record;
BEGIN
    ws := audience_internal.read_scope(ticket, workspace, app, true);
    PERFORM audience_internal.check_count(months, 'months', 1200);
    RETURN QUERY SELECT * FROM audience_internal.monthly_viewers(ws.workspace_id, ws.app_ids, months);
END
$$;

DROP FUNCTION audience.app_monthly_viewers;
CREATE FUNCTION audience.app_monthly_viewers(workspace text, app text, months integer DEFAULT 12)
RETURNS SETOF audience.monthly_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 12
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.app_monthly_viewers_for(audience_internal.ticket(), workspace, app, months);
END;
COMMENT ON FUNCTION audience.app_monthly_viewers(text, text, integer) IS
    'Per calendar month (in the workspace''s time zone), the number of distinct viewers of one app and of its views, for the last `months` months; complete is false for the month in progress.';

CREATE OR REPLACE FUNCTION audience_internal.app_total_viewers_for(ticket bytea, workspace text, app text)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    ws record;
BEGIN
    ws := audience_internal.read_scope(ticket, workspace, app, true);
    -- The rollup's count, and the viewers of events not folded yet who have
    -- no counted view in it.
    RETURN coalesce((SELECT t.viewers FROM audience_internal.app_totals t
                      WHERE t.workspace_id = ws.workspace_id AND t.app_id = ws.app_ids[1]), 0)
         + (SELECT count(DISTINCT p.viewer_id)
              FROM audience_internal.pending_folds p
              JOIN audience_internal.workspaces w ON w.workspace_id = p.workspace_id
             WHERE p.workspace_id = ws.workspace_id AND p.app_id = ws.app_ids[1] AND p.viewed_at >= w.counting_start
               AND NOT EXISTS (SELECT FROM audience_internal.app_viewers av
                                WHERE av.workspace_id = p.workspace_id AND av.app_id = p.app_id
                                  AND av.viewer_id = p.viewer_id AND av.counted_views > 0));
END
$$;

CREATE OR REPLACE FUNCTION audience.app_total_viewers(workspace text, app text)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT audience_internal.app_total_viewers_for(audience_internal.ticket(), workspace, app);
END;
COMMENT ON FUNCTION audience.app_total_viewers(text, text) IS
    'All-time number of distinct viewers of an app, counted from the workspace''s counting start.';

CREATE FUNCTION audience_internal.first_month(workspace_id bigint, apps bigint[])
RETURNS date LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    tz text := (SELECT w.time_zone FROM audience_internal.workspaces w WHERE w.workspace_id = first_month.workspace_id);
BEGIN
    RETURN least((SELECT min(am.month) FROM audience_internal.app_months am
                   WHERE am.workspace_id = first_month.workspace_id AND am.app_id = ANY (first_month.apps)),
                 (SELECT min(audience_internal.month_of(p.viewed_at, tz))
                    FROM audience_internal.pending_folds p
                   WHERE p.workspace_id = first_month.workspace_id AND p.app_id = ANY (first_month.apps)));
END
$$;

CREATE FUNCTION audience_internal.all_monthly_viewers_for(ticket bytea)
RETURNS SETOF audience.all_monthly_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 240
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    tz text;
    current_month date;
    shown_app text;
    shown_ids bigint[];
    since date;
BEGIN
    PERFORM audience_internal.enter(ticket);
    FOR ws IN
        SELECT r.workspace_id, r.workspace, bool_and(r.access = 'all') AS whole,
               array_agg(r.app_id ORDER BY r.app) AS app_ids, array_agg(r.app ORDER BY r.app) AS apps
          FROM audience_internal.requester_apps() r
         GROUP BY r.workspace_id, r.workspace
         ORDER BY r.workspace
    LOOP
        tz := (SELECT w.time_zone FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id);
        current_month := audience_internal.month_of(now(), tz);
        -- The workspace as a whole (0), then each app.
        FOR i IN 0 .. cardinality(ws.app_ids) LOOP
            shown_app := ws.apps[i];
            shown_ids := CASE WHEN i > 0 THEN ARRAY[ws.app_ids[i]] WHEN NOT ws.whole THEN ws.app_ids END;
            since := audience_internal.first_month(ws.workspace_id, coalesce(shown_ids, ws.app_ids));
            CONTINUE WHEN since IS NULL;
            RETURN QUERY
            SELECT ws.workspace, shown_app, m.month, m.month::timestamp AT TIME ZONE tz,
                   m.unique_viewers, m.views, m.complete
              FROM audience_internal.monthly_viewers(
                       ws.workspace_id, shown_ids,
                       least(1200, (extract(year FROM age(current_month, since)) * 12
                                    + extract(month FROM age(current_month, since)))::integer + 1)) m;
        END LOOP;
    END LOOP;
END
$$;

CREATE FUNCTION audience.all_monthly_viewers()
RETURNS SETOF audience.all_monthly_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 240
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.all_monthly_viewers_for(audience_internal.ticket());
END;
COMMENT ON FUNCTION audience.all_monthly_viewers() IS
    'Every month with data, for each workspace the requester sees (app NULL: its apps the requester may see, together) and each app, from the first month with a view to the month in progress: distinct viewers, views, month_start (the month''s first instant in the workspace''s time zone), complete.';

DROP FUNCTION audience_internal.recent_viewers_for;
CREATE FUNCTION audience_internal.recent_viewers_for(ticket bytea, workspace text, app text, max_viewers integer)
RETURNS SETOF audience.recent_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 20
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    viewer_ids bigint[];
    seen_at timestamptz[];
    seen_identifiable boolean[];
    view_counts bigint[];
BEGIN
    ws := audience_internal.read_scope(recent_viewers_for.ticket, recent_viewers_for.workspace, recent_viewers_for.app, true);
    PERFORM audience_internal.check_count(recent_viewers_for.max_viewers, 'max_viewers', 1000);
    -- The most recent viewers of the rollup, and every viewer of an event
    -- not folded yet, merged as the fold would merge them: no other viewer
    -- can be among the most recent. Then their labels.
    WITH pending AS MATERIALIZED (
        SELECT p.workspace_id, p.viewer_id, max(p.viewed_at) AS last_viewed_at,
               (array_agg(p.identifiable ORDER BY p.viewed_at DESC, p.identifiable DESC))[1] AS last_view_identifiable,
               count(*) AS views
          FROM audience_internal.pending_folds p
         WHERE p.workspace_id = ws.workspace_id AND p.app_id = ws.app_ids[1]
         GROUP BY p.workspace_id, p.viewer_id
    ),
    merged AS (
        SELECT coalesce(a.workspace_id, p.workspace_id) AS workspace_id, coalesce(a.viewer_id, p.viewer_id) AS viewer_id,
               greatest(a.last_viewed_at, p.last_viewed_at) AS last_viewed_at,
               CASE WHEN a.viewer_id IS NULL THEN p.last_view_identifiable
                    WHEN p.viewer_id IS NULL THEN a.last_view_identifiable
                    ELSE audience_internal.latest_identifiable(a.last_viewed_at, a.last_view_identifiable,
                                                               p.last_viewed_at, p.last_view_identifiable) END
                   AS last_view_identifiable,
               coalesce(a.views, 0) + coalesce(p.views, 0) AS views
          FROM ((SELECT x.workspace_id, x.viewer_id, x.last_viewed_at, x.last_view_identifiable, x.views
                   FROM audience_internal.app_viewers x
                  WHERE x.workspace_id = ws.workspace_id AND x.app_id = ws.app_ids[1]
                  ORDER BY x.last_viewed_at DESC, x.viewer_id DESC
                  LIMIT recent_viewers_for.max_viewers)
                UNION
                -- A lookup per pending viewer, whatever the plan: a generic
                -- plan, which guesses one row of the app's viewers, would
                -- read them all to join them to a pending set that is
                -- mostly empty.
                SELECT x.workspace_id, x.viewer_id, x.last_viewed_at, x.last_view_identifiable, x.views
                  FROM pending q
                 CROSS JOIN LATERAL (
                      SELECT y.* FROM audience_internal.app_viewers y
                       WHERE y.workspace_id = ws.workspace_id AND y.app_id = ws.app_ids[1] AND y.viewer_id = q.viewer_id
                       LIMIT 1) x) a
          FULL JOIN pending p ON p.viewer_id = a.viewer_id
    )
    SELECT array_agg(m.viewer_id ORDER BY m.last_viewed_at DESC, m.viewer_id DESC),
           array_agg(m.last_viewed_at ORDER BY m.last_viewed_at DESC, m.viewer_id DESC),
           array_agg(m.last_view_identifiable ORDER BY m.last_viewed_at DESC, m.viewer_id DESC),
           array_agg(m.views ORDER BY m.last_viewed_at DESC, m.viewer_id DESC)
      INTO viewer_ids, seen_at, seen_identifiable, view_counts
      FROM (SELECT * FROM merged ORDER BY merged.last_viewed_at DESC, merged.viewer_id DESC
             LIMIT recent_viewers_for.max_viewers) m;
    RETURN QUERY
    SELECT l.viewer, l.viewer_ref, l.pseudonymous, seen_at[l.n], audience.relative_time(seen_at[l.n], now()), view_counts[l.n]
      FROM audience_internal.labels(ws.workspace_id, viewer_ids, NULL, seen_at, seen_identifiable) l
     ORDER BY l.n;
END
$$;

DROP FUNCTION audience.recent_viewers;
CREATE FUNCTION audience.recent_viewers(workspace text, app text, max_viewers integer DEFAULT 20)
RETURNS SETOF audience.recent_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.recent_viewers_for(audience_internal.ticket(), workspace, app, max_viewers);
END;
COMMENT ON FUNCTION audience.recent_viewers(text, text, integer) IS
    'The most recent distinct viewers of an app, newest first: label (identity or pseudonym), stable opaque viewer_ref, whether the label is a pseudonym, time of the last view, that time in words, and the viewer''s number of views.';

DROP FUNCTION audience_internal.visible_apps_for;
CREATE FUNCTION audience_internal.visible_apps_for(ticket bytea)
RETURNS SETOF audience.visible_apps_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER ROWS 50
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
    PERFORM audience_internal.enter(ticket);
    RETURN QUERY
    SELECT r.workspace, r.app, r.name, r.visibility
      FROM audience_internal.requester_apps() r
     ORDER BY r.workspace, r.app;
END
$$;

DROP FUNCTION audience.visible_apps;
CREATE FUNCTION audience.visible_apps()
RETURNS SETOF audience.visible_apps_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 50
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.visible_apps_for(audience_internal.ticket());
END;
COMMENT ON FUNCTION audience.visible_apps() IS
    'The apps whose analytics the requester may see: workspace, app, name and current visibility.';

-- sql/usage.sql
CREATE FUNCTION audience_internal.check_window(since timestamptz, until timestamptz)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF NOT isfinite(audience_internal.require(since, 'since')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "since": must be a finite time';
    END IF;
    IF NOT isfinite(audience_internal.require(until, 'until')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "until": must be a finite time';
    END IF;
    IF until <= since THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'invalid argument "until": must be later than "since" (the window is empty)';
    END IF;
END
$$;

CREATE FUNCTION audience_internal.micros_interval(micros numeric)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT justify_hours(coalesce(micros_interval.micros, 0)::bigint * interval '1 microsecond')
$$;

-- How a window [since, until) splits in a workspace's days: the whole days
-- first_day <= day < end_day (none when first_day >= end_day), and the day
-- the identification start falls in (NULL without one), whose views are on
-- both sides of it. A first or last day that the window cuts counts as
-- whole when no view of it lies outside the window: a window up to now
-- leaves none of today's views out, and the day's rollup row then answers
-- for the day, where its raw events were read one by one. The raw events
-- are the witness, so a day of a retired month (retired_before) is never
-- taken whole. Each probe is planned for its bounds: it then reads one
-- partition's index, where a generic plan scanned every partition.
--
-- A read that can take views off (`subtract_first`) may also take a cut
-- first day whole when less of it lies before the window than in it:
-- `minus_before` is then `since`, and the raw views of first_day before it
-- come with their counts negated (unfolded_views). Counts subtract; a
-- viewer set does not, and such a read takes the day's viewers from its raw
-- events in the window. A window of 30 days up to now begins at the time
-- of day it is asked: for half of the day, most of its first day is in it,
-- and those views were read one by one.
CREATE FUNCTION audience_internal.window_days(
    workspace_id bigint, since timestamptz, until timestamptz, subtract_first boolean DEFAULT false)
RETURNS TABLE (time_zone text, first_day date, end_day date, identification_day date, minus_before timestamptz)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 1
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    w audience_internal.workspaces;
    starts timestamptz;
    ends timestamptz;
    raw_from timestamptz := coalesce(audience_internal.retired_before(), '-infinity');
BEGIN
    SELECT * INTO w FROM audience_internal.workspaces x WHERE x.workspace_id = window_days.workspace_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    time_zone := w.time_zone;
    identification_day := CASE WHEN isfinite(w.identification_start)
                               THEN audience_internal.day_of(w.identification_start, w.time_zone) END;
    first_day := audience_internal.day_of(window_days.since, w.time_zone);
    starts := first_day::timestamp AT TIME ZONE w.time_zone;
    ends := (first_day + 1)::timestamp AT TIME ZONE w.time_zone;
    IF starts < window_days.since
       AND (starts < raw_from
            OR EXISTS (SELECT FROM audience_internal.view_events x
                        WHERE x.workspace_id = window_days.workspace_id
                          AND x.viewed_at >= starts AND x.viewed_at < window_days.since)) THEN
        IF window_days.subtract_first AND starts >= raw_from AND ends <= window_days.until
           AND first_day IS DISTINCT FROM identification_day
           AND window_days.since - starts < ends - window_days.since THEN
            minus_before := window_days.since;
        ELSE
            first_day := first_day + 1;
        END IF;
    END IF;
    end_day := audience_internal.day_of(window_days.until, w.time_zone);
    starts := end_day::timestamp AT TIME ZONE w.time_zone;
    IF starts < window_days.until AND starts >= raw_from
       AND NOT EXISTS (SELECT FROM audience_internal.view_events x
                        WHERE x.workspace_id = window_days.workspace_id
                          AND x.viewed_at >= window_days.until
                          AND x.viewed_at < (end_day + 1)::timestamp AT TIME ZONE w.time_zone) THEN
        end_day := end_day + 1;
    END IF;
    RETURN NEXT;
END
$$;

-- The parts of a window outside its whole days: the time ranges whose raw
-- events a read adds to the day rollups (none beside a cut day taken whole).
CREATE FUNCTION audience_internal.window_edges(
    since timestamptz, until timestamptz, time_zone text, first_day date, end_day date)
RETURNS TABLE (lo timestamptz, hi timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT e.lo, e.hi
      FROM (SELECT window_edges.since AS lo,
                   CASE WHEN window_edges.first_day < window_edges.end_day
                        THEN window_edges.first_day::timestamp AT TIME ZONE window_edges.time_zone
                        ELSE window_edges.until END AS hi
            UNION ALL
            SELECT window_edges.end_day::timestamp AT TIME ZONE window_edges.time_zone, window_edges.until
             WHERE window_edges.first_day < window_edges.end_day) e
     WHERE e.lo < e.hi
$$;

-- The packed counters (every app's, every viewer's) that answer for a
-- window's whole days first_day <= day < end_day, each with the day or
-- month it starts (`at`): the sums of the months that are over
-- (workspace_months.apps and viewer_counts, kept by close_months) that the
-- window holds whole, and of the one it starts in when it holds more of
-- that month's days than it leaves out before first_day; the days of that
-- month before the window, to be taken off (`take_off`); and each other
-- whole day (workspace_days). A month's views taken off are earlier than
-- the window's, so each viewer's latest view in it is one in the window.
-- The day `apart` is in no value, and its month is not summed (top_viewers
-- labels that day's views two ways: the identification start falls in it).
CREATE FUNCTION audience_internal.window_values(workspace_id bigint, first_day date, end_day date, apart date)
RETURNS TABLE (at date, monthly boolean, take_off boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    WITH months AS MATERIALIZED (
        SELECT m.month
          FROM audience_internal.workspace_months m
         WHERE m.workspace_id = window_values.workspace_id AND m.viewer_counts IS NOT NULL
           AND m.month >= audience_internal.month_of_day(window_values.first_day)
           AND (m.month + interval '1 month')::date <= window_values.end_day
           AND window_values.first_day - m.month < (m.month + interval '1 month')::date - window_values.first_day
           AND m.month IS DISTINCT FROM audience_internal.month_of_day(window_values.apart)
    )
    SELECT m.month, true, false
      FROM months m
    UNION ALL
    SELECT d.day, false, true
      FROM months m
      JOIN audience_internal.workspace_days d
        ON d.workspace_id = window_values.workspace_id AND d.day >= m.month AND d.day < window_values.first_day
    UNION ALL
    SELECT d.day, false, false
      FROM audience_internal.workspace_days d
     WHERE d.workspace_id = window_values.workspace_id
       AND d.day >= window_values.first_day AND d.day < window_values.end_day
       AND d.day IS DISTINCT FROM window_values.apart
       AND audience_internal.month_of_day(d.day) NOT IN (SELECT m.month FROM months m);
END
$$;

-- The views of some apps of one workspace in a window (`apps` NULL: every
-- app) that the day rollups do not hold, given the window's days as the
-- caller had them from window_days (whose probes are then not run twice):
-- the raw events of its edges, and the events of its whole days not
-- folded yet (pending_folds). A read that
-- cannot use the rollup of one whole day (`raw_day`) has its raw events
-- too. With `minus_before`, the raw events of first_day before it come
-- with their counts negated (sessions, visits and session time below
-- zero): the day's rollup and pending rows hold them, and the window does
-- not. Each range of raw events is planned for its own bounds, so that only
-- its partition is planned: planning every month's partition for bounds
-- known only when the query runs took longer than reading the events.
CREATE FUNCTION audience_internal.unfolded_views(
    workspace_id bigint, apps bigint[], since timestamptz, until timestamptz,
    time_zone text, first_day date, end_day date, raw_day date DEFAULT NULL, minus_before timestamptz DEFAULT NULL)
RETURNS TABLE (app_id bigint, day date, viewer_id bigint, sessions integer, visits integer, session_micros bigint,
               identifiable boolean, viewed_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    -- The ranges of raw events (sign -1: taken off), and then the pending rows.
    FOR r IN SELECT e.lo, e.hi, 1 AS sign, false AS pending
               FROM audience_internal.window_edges(unfolded_views.since, unfolded_views.until,
                                                    unfolded_views.time_zone, unfolded_views.first_day, unfolded_views.end_day) e
             UNION ALL
             SELECT unfolded_views.raw_day::timestamp AT TIME ZONE unfolded_views.time_zone,
                    (unfolded_views.raw_day + 1)::timestamp AT TIME ZONE unfolded_views.time_zone, 1, false
              WHERE unfolded_views.raw_day >= unfolded_views.first_day AND unfolded_views.raw_day < unfolded_views.end_day
             UNION ALL
             SELECT unfolded_views.first_day::timestamp AT TIME ZONE unfolded_views.time_zone, unfolded_views.minus_before, -1, false
              WHERE unfolded_views.minus_before IS NOT NULL
             UNION ALL
             SELECT NULL, NULL, 1, true
    LOOP
        RETURN QUERY
        SELECT x.app_id, audience_internal.day_of(x.viewed_at, unfolded_views.time_zone), x.viewer_id,
               r.sign * (x.kind = 'session')::integer, r.sign * (x.kind = 'visit')::integer,
               r.sign * audience_internal.session_micros(x.kind, x.viewed_at, x.ended_at), x.identifiable, x.viewed_at
          FROM (SELECT x.app_id, x.viewer_id, x.kind, x.viewed_at, x.ended_at, x.identifiable
                  FROM audience_internal.view_events x
                 WHERE NOT r.pending AND x.workspace_id = unfolded_views.workspace_id
                   AND (unfolded_views.apps IS NULL OR x.app_id = ANY (unfolded_views.apps))
                   AND x.viewed_at >= r.lo AND x.viewed_at < r.hi
                UNION ALL
                SELECT p.app_id, p.viewer_id, p.kind, p.viewed_at, p.ended_at, p.identifiable
                  FROM audience_internal.pending_folds p
                 WHERE r.pending AND p.workspace_id = unfolded_views.workspace_id
                   AND (unfolded_views.apps IS NULL OR p.app_id = ANY (unfolded_views.apps))
                   AND audience_internal.day_of(p.viewed_at, unfolded_views.time_zone) >= unfolded_views.first_day
                   AND audience_internal.day_of(p.viewed_at, unfolded_views.time_zone) < unfolded_views.end_day
                   AND audience_internal.day_of(p.viewed_at, unfolded_views.time_zone) IS DISTINCT FROM unfolded_views.raw_day) x;
    END LOOP;
END
$$;

-- The set of viewers of each of some apps of one workspace in [lo, hi),
-- from the raw events; planned for its bounds, so for one partition.
CREATE FUNCTION audience_internal.app_viewers_between(
    workspace_id bigint, apps bigint[], lo timestamptz, hi timestamptz)
RETURNS TABLE (app_id bigint, viewers bytea)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT x.app_id, audience_internal.viewer_set(array_agg(x.viewer_id))
      FROM audience_internal.view_events x
     WHERE x.workspace_id = app_viewers_between.workspace_id AND x.app_id = ANY (app_viewers_between.apps)
       AND x.viewed_at >= app_viewers_between.lo AND x.viewed_at < app_viewers_between.hi
     GROUP BY x.app_id;
END
$$;

-- Sessions, visits, ended session time and the set of viewers of some apps
-- of one workspace in a window (`apps` NULL: every app), by day, and by app
-- where `by_app` or `apps` asks for it (otherwise app_id is NULL and the
-- whole days are the workspace's own rows): the day rollups for the whole
-- days, and what they do not hold yet (unfolded_views). A day may have a row
-- from each, which the caller sums and unites (viewer_set_count).
CREATE FUNCTION audience_internal.usage_days(
    workspace_id bigint, apps bigint[], since timestamptz, until timestamptz, by_app boolean)
RETURNS TABLE (app_id bigint, day date, sessions bigint, visits bigint, session_micros bigint, viewers bytea)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
#variable_conflict use_column
DECLARE
    b record;
BEGIN
    SELECT * INTO b FROM audience_internal.window_days(usage_days.workspace_id, usage_days.since, usage_days.until);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT NULL::bigint, d.day, d.sessions, d.visits, d.session_micros, d.viewers
      FROM audience_internal.workspace_days d
     WHERE usage_days.apps IS NULL AND NOT usage_days.by_app
       AND d.workspace_id = usage_days.workspace_id AND d.day >= b.first_day AND d.day < b.end_day
    UNION ALL
    SELECT d.app_id, d.day, d.sessions, d.visits, d.session_micros, d.viewers
      FROM audience_internal.app_days d
     WHERE usage_days.apps IS NULL AND usage_days.by_app
       AND d.workspace_id = usage_days.workspace_id AND d.day >= b.first_day AND d.day < b.end_day
    UNION ALL
    SELECT d.app_id, d.day, d.sessions, d.visits, d.session_micros, d.viewers
      FROM audience_internal.app_days d
     WHERE usage_days.apps IS NOT NULL
       AND d.workspace_id = usage_days.workspace_id AND d.app_id = ANY (usage_days.apps)
       AND d.day >= b.first_day AND d.day < b.end_day;
    RETURN QUERY
    SELECT CASE WHEN usage_days.by_app OR usage_days.apps IS NOT NULL THEN u.app_id END, u.day,
           sum(u.sessions)::bigint, sum(u.visits)::bigint, sum(u.session_micros)::bigint,
           audience_internal.viewer_set(array_agg(u.viewer_id))
      FROM audience_internal.unfolded_views(usage_days.workspace_id, usage_days.apps, usage_days.since,
                                            usage_days.until, b.time_zone, b.first_day, b.end_day) u
     GROUP BY 1, 2;
END
$$;

CREATE FUNCTION audience_internal.app_sessions_for(
    ticket bytea, workspace text, app text, since timestamptz, until timestamptz,
    min_duration interval, max_sessions integer)
RETURNS SETOF audience.app_sessions_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    viewer_ids bigint[];
    seen_at timestamptz[];
    seen_identifiable boolean[];
    kinds text[];
    ended timestamptz[];
BEGIN
    ws := audience_internal.read_scope(app_sessions_for.ticket, app_sessions_for.workspace, app_sessions_for.app, true);
    PERFORM audience_internal.check_window(app_sessions_for.since, app_sessions_for.until);
    PERFORM audience_internal.check_count(app_sessions_for.max_sessions, 'max_sessions', 10000);
    IF app_sessions_for.min_duration < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid argument "min_duration": must not be negative';
    END IF;
    -- The views shown, planned for this call's arguments (EXECUTE): a
    -- generic plan cannot know that max_sessions is small, and sorts the
    -- app's whole window instead of reading its index newest first. Their
    -- labels (labels) are planned once a session: planned with the views at
    -- each call, the join took about 7 ms to plan and 1 to run. A visit has
    -- no end, whatever an ingest call may have given it.
    EXECUTE 'SELECT array_agg(s.viewer_id ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(s.viewed_at ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(s.identifiable ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(s.kind ORDER BY s.viewed_at DESC, s.event_id DESC),
                    array_agg(CASE WHEN s.kind = ''session'' THEN s.ended_at END ORDER BY s.viewed_at DESC, s.event_id DESC)
               FROM (SELECT x.event_id, x.viewer_id, x.viewed_at, x.identifiable, x.kind, x.ended_at
                       FROM audience_internal.view_events x
                      WHERE x.workspace_id = $1 AND x.app_id = $2 AND x.viewed_at >= $3 AND x.viewed_at < $4
                        AND ($5 IS NULL OR x.kind <> ''session'' OR x.ended_at IS NULL OR x.ended_at - x.viewed_at >= $5)
                      ORDER BY x.viewed_at DESC, x.event_id DESC
                      LIMIT $6) s'
       INTO viewer_ids, seen_at, seen_identifiable, kinds, ended
      USING ws.workspace_id, ws.app_ids[1], app_sessions_for.since, app_sessions_for.until,
            app_sessions_for.min_duration, app_sessions_for.max_sessions;
    RETURN QUERY
    SELECT l.viewer, l.viewer_ref, l.pseudonymous, seen_at[l.n], ended[l.n], ended[l.n] - seen_at[l.n], kinds[l.n]
      FROM audience_internal.labels(ws.workspace_id, viewer_ids, NULL, seen_at, seen_identifiable) l
     ORDER BY l.n;
END
$$;

CREATE FUNCTION audience.app_sessions(
    workspace text,
    app text,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    min_duration interval DEFAULT NULL,
    max_sessions integer DEFAULT 100)
RETURNS SETOF audience.app_sessions_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 100
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.app_sessions_for(audience_internal.ticket(), workspace, app, since, until, min_duration, max_sessions);
END;
COMMENT ON FUNCTION audience.app_sessions(text, text, timestamptz, timestamptz, interval, integer) IS
    'Every view of an app in the window [since, until), newest first, at most max_sessions: who (identity or pseudonym, viewer_ref, whether pseudonymous), start, end, duration and kind (session or visit). A visit and an open session have no end. min_duration drops ended sessions shorter than it.';

CREATE FUNCTION audience_internal.top_apps_for(
    ticket bytea, workspace text, since timestamptz, until timestamptz, max_apps integer)
RETURNS SETOF audience.top_apps_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Planned for the arguments of each call: the generic plan that the plan
-- cache turns to after five calls took half as long again (a busy
-- workspace's 30 days, 17 ms against 11 ms).
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
    b record;
    whole_from date;
    whole_to date;
    value_at date[];
    value_monthly boolean[];
    value_taken_off boolean[];
    unfolded_counts bytea;
    unfolded_ids bigint[];
    unfolded_sets bytea[];
    candidates bigint[];
    candidate_sessions bigint[];
    candidate_visits bigint[];
    candidate_micros bigint[];
    top_ids bigint[];
    top_slugs text[];
    top_visibility text[];
    top_sessions bigint[];
    top_visits bigint[];
    top_micros bigint[];
    cut_ids bigint[];
    cut_sets bytea[];
BEGIN
    ws := audience_internal.read_scope(top_apps_for.ticket, top_apps_for.workspace, NULL, false);
    PERFORM audience_internal.check_window(top_apps_for.since, top_apps_for.until);
    PERFORM audience_internal.check_count(top_apps_for.max_apps, 'max_apps', 10000);
    apps := ws.app_ids;
    -- The window's whole days, and the whole months among them:
    -- whole_from <= month < whole_to. A cut first day may come as its day
    -- value and the views before the window negated (window_days,
    -- subtract_first); its viewers, which a set cannot take off, are then
    -- those of the shown apps' raw events in the window.
    SELECT * INTO b FROM audience_internal.window_days(ws.workspace_id, top_apps_for.since, top_apps_for.until, true);
    whole_from := CASE WHEN audience_internal.month_of_day(b.first_day) = b.first_day AND b.minus_before IS NULL
                       THEN b.first_day
                       ELSE (audience_internal.month_of_day(b.first_day) + interval '1 month')::date END;
    whole_to := audience_internal.month_of_day(b.end_day);
    -- The apps' counters are summed in one call: the packed values of the
    -- window's whole days (window_values), and one made of the views those
    -- do not hold, whose viewers are kept as a set per app.
    SELECT array_agg(v.at), array_agg(v.monthly), array_agg(v.take_off)
      INTO value_at, value_monthly, value_taken_off
      FROM audience_internal.window_values(ws.workspace_id, b.first_day, b.end_day, NULL) v;
    WITH u AS MATERIALIZED (
        SELECT * FROM audience_internal.unfolded_views(ws.workspace_id, apps, top_apps_for.since, top_apps_for.until,
                                                       b.time_zone, b.first_day, b.end_day, NULL, b.minus_before)
    )
    SELECT (SELECT audience_internal.app_counts(array_agg(u.app_id), array_agg(u.sessions::bigint),
                                                array_agg(u.visits::bigint), array_agg(u.session_micros))
              FROM u),
           array_agg(s.app_id), array_agg(s.viewers)
      INTO unfolded_counts, unfolded_ids, unfolded_sets
      FROM (SELECT u.app_id, audience_internal.viewer_set(array_agg(u.viewer_id)) AS viewers
              FROM u
             WHERE u.sessions + u.visits > 0 AND u.viewed_at >= top_apps_for.since
             GROUP BY u.app_id) s;
    -- The apps with at least as many views as the last one shown (an app
    -- seen only before the window on its cut first day has none); then
    -- their slugs, which break ties.
    SELECT array_agg(c.app_id), array_agg(c.sessions), array_agg(c.visits), array_agg(c.session_micros)
      INTO candidates, candidate_sessions, candidate_visits, candidate_micros
      FROM (SELECT c.*, rank() OVER (ORDER BY c.sessions + c.visits DESC) AS place
              FROM (SELECT array_agg(coalesce(m.apps, d.apps) ORDER BY k.n) FILTER (WHERE NOT k.take_off) AS added,
                           array_agg(coalesce(m.apps, d.apps) ORDER BY k.n) FILTER (WHERE k.take_off) AS taken_off
                      FROM unnest(value_at, value_monthly, value_taken_off) WITH ORDINALITY k(at, monthly, take_off, n)
                      LEFT JOIN audience_internal.workspace_months m
                        ON k.monthly AND m.workspace_id = ws.workspace_id AND m.month = k.at
                      LEFT JOIN audience_internal.workspace_days d
                        ON NOT k.monthly AND d.workspace_id = ws.workspace_id AND d.day = k.at) v
             CROSS JOIN LATERAL audience_internal.app_counts_sum(v.added || unfolded_counts, v.taken_off, apps) c
             WHERE c.sessions + c.visits > 0) c
     WHERE c.place <= top_apps_for.max_apps;
    SELECT array_agg(t.app_id ORDER BY t.n), array_agg(t.slug ORDER BY t.n), array_agg(t.visibility ORDER BY t.n),
           array_agg(t.sessions ORDER BY t.n), array_agg(t.visits ORDER BY t.n), array_agg(t.micros ORDER BY t.n)
      INTO top_ids, top_slugs, top_visibility, top_sessions, top_visits, top_micros
      FROM (SELECT c.*, a.slug, a.visibility, row_number() OVER (ORDER BY c.sessions + c.visits DESC, a.slug) AS n
              FROM unnest(candidates, candidate_sessions, candidate_visits, candidate_micros)
                       c(app_id, sessions, visits, micros)
              JOIN audience_internal.apps a ON a.workspace_id = ws.workspace_id AND a.app_id = c.app_id) t
     WHERE t.n <= top_apps_for.max_apps;
    IF b.minus_before IS NOT NULL THEN
        SELECT array_agg(v.app_id), array_agg(v.viewers)
          INTO cut_ids, cut_sets
          FROM audience_internal.app_viewers_between(ws.workspace_id, top_ids, b.minus_before,
                                                     (b.first_day + 1)::timestamp AT TIME ZONE b.time_zone) v;
    END IF;
    -- A shown app's distinct viewers: the sets of the window's whole
    -- months (app_months, the union of their days' sets), of its other
    -- whole days, and of the views the day rollups do not hold; a year is
    -- then a few dozen sets to unite, not 365.
    RETURN QUERY
    SELECT t.slug, t.visibility, t.sessions + t.visits, t.sessions, t.visits,
           (SELECT audience_internal.viewer_set_count(array_agg(s.viewers))
              FROM (SELECT m.viewers
                      FROM audience_internal.app_months m
                     WHERE m.workspace_id = ws.workspace_id AND m.app_id = t.app_id
                       AND m.month >= whole_from AND m.month < whole_to
                    UNION ALL
                    SELECT d.viewers
                      FROM audience_internal.app_days d
                     WHERE d.workspace_id = ws.workspace_id AND d.app_id = t.app_id
                       AND d.day >= b.first_day AND d.day < b.end_day
                       AND (d.day < whole_from OR d.day >= whole_to)
                       AND (d.day > b.first_day OR b.minus_before IS NULL)
                    UNION ALL
                    SELECT x.viewers FROM unnest(unfolded_ids, unfolded_sets) x(app_id, viewers) WHERE x.app_id = t.app_id
                    UNION ALL
                    SELECT x.viewers FROM unnest(cut_ids, cut_sets) x(app_id, viewers) WHERE x.app_id = t.app_id) s),
           audience_internal.micros_interval(t.micros)
      FROM unnest(top_ids, top_slugs, top_visibility, top_sessions, top_visits, top_micros)
               WITH ORDINALITY t(app_id, slug, visibility, sessions, visits, micros, n)
     ORDER BY t.n;
END
$$;

CREATE FUNCTION audience.top_apps(
    workspace text,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    max_apps integer DEFAULT 10)
RETURNS SETOF audience.top_apps_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.top_apps_for(audience_internal.ticket(), workspace, since, until, max_apps);
END;
COMMENT ON FUNCTION audience.top_apps(text, timestamptz, timestamptz, integer) IS
    'The most viewed apps of a workspace in the window [since, until) among those the requester may see, most views first (ties by app): views, sessions, visits, distinct viewers and the time of ended sessions. Apps without a view in the window are left out.';

CREATE FUNCTION audience_internal.top_viewers_for(
    ticket bytea, workspace text, app text, since timestamptz, until timestamptz, max_viewers integer)
RETURNS SETOF audience.top_viewers_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    w audience_internal.workspaces;
    b record;
    shown_apps bigint[];
    value_at date[];
    value_monthly boolean[];
    take_off boolean[];
    unfolded bytea[];
    counted_at timestamptz[];
    class_identified boolean[];
    class_label_at timestamptz[];
    members bigint[];
    viewer_ids bigint[];
    identified boolean[];
    label_at timestamptz[];
    sessions bigint[];
    visits bigint[];
    micros bigint[];
    last_at timestamptz[];
BEGIN
    ws := audience_internal.read_scope(top_viewers_for.ticket, top_viewers_for.workspace, top_viewers_for.app, false);
    shown_apps := ws.app_ids;
    PERFORM audience_internal.check_window(top_viewers_for.since, top_viewers_for.until);
    PERFORM audience_internal.check_count(top_viewers_for.max_viewers, 'max_viewers', 1000);
    SELECT * INTO w FROM audience_internal.workspaces x WHERE x.workspace_id = ws.workspace_id;
    SELECT * INTO b FROM audience_internal.window_days(ws.workspace_id, top_viewers_for.since, top_viewers_for.until, true);
    -- The window as packed viewer counters: for every app, those of its
    -- whole days (window_values, the day of the identification start
    -- apart); for some apps, a value per whole day and shown app (app_days);
    -- and a value per day and side of the identification start of the
    -- views the day rollups do not hold. Each comes with the time its views
    -- are labelled at: all views of a value are on one side of the
    -- identification start and in one month. A cut first day may come as
    -- its day value and the views before the window negated (window_days,
    -- subtract_first): the sums are exact, and so is each viewer's latest
    -- view, as the views taken off are earlier than any in the window; a
    -- viewer seen only before it sums to no views and is not shown. The
    -- rollups' values are named here and read by the statement that sums
    -- them (window_values).
    IF shown_apps IS NULL THEN
        SELECT array_agg(v.at), array_agg(v.monthly), array_agg(v.take_off)
          INTO value_at, value_monthly, take_off
          FROM audience_internal.window_values(ws.workspace_id, b.first_day, b.end_day, b.identification_day) v;
    ELSE
        SELECT array_agg(d.day ORDER BY d.app_id, d.day), array_agg(false)
          INTO value_at, take_off
          FROM audience_internal.app_days d
         WHERE d.workspace_id = ws.workspace_id AND d.app_id = ANY (shown_apps)
           AND d.day >= b.first_day AND d.day < b.end_day AND d.day IS DISTINCT FROM b.identification_day;
    END IF;
    counted_at := ARRAY(SELECT x.at::timestamp AT TIME ZONE b.time_zone FROM unnest(value_at) WITH ORDINALITY x(at, n)
                         ORDER BY x.n);
    SELECT array_agg(u.value), counted_at || array_agg(u.at)
      INTO unfolded, counted_at
      FROM (SELECT audience_internal.viewer_counts(array_agg(u.viewer_id), array_agg(u.identifiable),
                                                   array_agg(u.sessions::bigint), array_agg(u.visits::bigint),
                                                   array_agg(u.session_micros), array_agg(u.viewed_at)) AS value,
                   CASE WHEN u.after_start
                        THEN greatest(u.day::timestamp AT TIME ZONE b.time_zone, w.identification_start)
                        ELSE u.day::timestamp AT TIME ZONE b.time_zone END AS at
              FROM (SELECT u.*, coalesce(u.viewed_at >= w.identification_start, false) AS after_start
                      FROM audience_internal.unfolded_views(
                               ws.workspace_id, shown_apps, top_viewers_for.since, top_viewers_for.until,
                               b.time_zone, b.first_day, b.end_day, b.identification_day, b.minus_before) u) u
             GROUP BY u.day, u.after_start) u;
    take_off := take_off || array_fill(false, ARRAY[coalesce(cardinality(unfolded), 0)]);
    -- The labelling rule decides, per value, how each kind of view is
    -- labelled (by a member now or not, identifiable or not); one call sums
    -- the values per viewer and label and keeps the top.
    SELECT array_agg(k.identified ORDER BY p.n, c.kind), array_agg(k.label_at ORDER BY p.n, c.kind)
      INTO class_identified, class_label_at
      FROM unnest(counted_at) WITH ORDINALITY p(at, n)
     CROSS JOIN (VALUES (0, false, false), (1, false, true), (2, true, false), (3, true, true))
                c(kind, is_member, identifiable)
     CROSS JOIN LATERAL audience_internal.label_key(w, c.is_member, p.at, c.identifiable) k;
    members := audience_internal.member_viewer_ids(ws.workspace_id);
    SELECT array_agg(t.viewer_id ORDER BY t.place), array_agg(t.identified ORDER BY t.place),
           array_agg(coalesce(t.label_at, t.last_viewed_at) ORDER BY t.place),
           array_agg(t.sessions ORDER BY t.place), array_agg(t.visits ORDER BY t.place),
           array_agg(t.session_micros ORDER BY t.place), array_agg(t.last_viewed_at ORDER BY t.place)
      INTO viewer_ids, identified, label_at, sessions, visits, micros, last_at
      FROM (SELECT t.*, row_number() OVER (ORDER BY t.sessions + t.visits DESC, t.last_viewed_at DESC, t.viewer_id,
                                                    t.identified, t.label_at) AS place
              -- The rollups' values in the order of their keys above.
              FROM (SELECT array_agg(coalesce(m.viewer_counts, d.viewer_counts) ORDER BY k.n) AS rolled_up
                      FROM unnest(value_at, value_monthly) WITH ORDINALITY k(at, monthly, n)
                      LEFT JOIN audience_internal.workspace_months m
                        ON k.monthly AND m.workspace_id = ws.workspace_id AND m.month = k.at
                      LEFT JOIN audience_internal.workspace_days d
                        ON NOT k.monthly AND d.workspace_id = ws.workspace_id AND d.day = k.at
                    HAVING shown_apps IS NULL
                    UNION ALL
                    SELECT array_agg(d.viewer_counts ORDER BY d.app_id, d.day)
                      FROM audience_internal.app_days d
                     WHERE d.workspace_id = ws.workspace_id AND d.app_id = ANY (shown_apps)
                       AND d.day >= b.first_day AND d.day < b.end_day AND d.day IS DISTINCT FROM b.identification_day
                    HAVING shown_apps IS NOT NULL) v
             CROSS JOIN LATERAL audience_internal.viewer_counts_top(v.rolled_up || unfolded, take_off, class_identified,
                                                                    class_label_at, members,
                                                                    top_viewers_for.max_viewers) t) t;
    -- A name is the same every month; its viewer_ref, like
    -- recent_viewers', is that of the month of the last view.
    RETURN QUERY
    SELECT l.viewer, l.viewer_ref, l.pseudonymous, sessions[l.n] + visits[l.n], sessions[l.n],
           audience_internal.micros_interval(micros[l.n]), last_at[l.n]
      FROM audience_internal.labels(ws.workspace_id, viewer_ids, identified, label_at, NULL) l
     ORDER BY l.n;
END
$$;

CREATE FUNCTION audience.top_viewers(
    workspace text,
    app text DEFAULT NULL,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    max_viewers integer DEFAULT 10)
RETURNS SETOF audience.top_viewers_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.top_viewers_for(audience_internal.ticket(), workspace, app, since, until, max_viewers);
END;
COMMENT ON FUNCTION audience.top_viewers(text, text, timestamptz, timestamptz, integer) IS
    'The most active viewers in the window [since, until) of one app, or (app NULL) of every app of the workspace the requester may see, most views first: label, viewer_ref, views, sessions, time of ended sessions and last view. A person''s identified and pseudonymous views are separate rows with unrelated viewer_refs.';

CREATE FUNCTION audience_internal.usage_over_time_for(
    ticket bytea, workspace text, app text, since timestamptz, until timestamptz, bucket text)
RETURNS SETOF audience.usage_over_time_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
    tz text;
BEGIN
    ws := audience_internal.read_scope(usage_over_time_for.ticket, usage_over_time_for.workspace, usage_over_time_for.app, false);
    apps := ws.app_ids;
    PERFORM audience_internal.check_window(usage_over_time_for.since, usage_over_time_for.until);
    PERFORM audience_internal.check_choice(usage_over_time_for.bucket, 'bucket', ARRAY['day', 'week', 'month']);
    tz := (SELECT w.time_zone FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id);
    RETURN QUERY
    SELECT p.period::date, coalesce(u.views, 0), coalesce(u.sessions, 0), coalesce(u.visits, 0),
           coalesce(u.unique_viewers, 0), coalesce(u.session_time, interval '0')
      FROM generate_series(date_trunc(usage_over_time_for.bucket, usage_over_time_for.since AT TIME ZONE tz),
                           date_trunc(usage_over_time_for.bucket,
                                      (usage_over_time_for.until AT TIME ZONE tz) - interval '1 microsecond'),
                           ('1 ' || usage_over_time_for.bucket)::interval) p(period)
      LEFT JOIN (SELECT date_trunc(usage_over_time_for.bucket, f.day)::date AS period,
                        sum(f.sessions + f.visits)::bigint AS views, sum(f.sessions)::bigint AS sessions,
                        sum(f.visits)::bigint AS visits, audience_internal.viewer_set_count(array_agg(f.viewers)) AS unique_viewers,
                        audience_internal.micros_interval(sum(f.session_micros)) AS session_time
                   FROM audience_internal.usage_days(ws.workspace_id, apps,
                            usage_over_time_for.since, usage_over_time_for.until, false) f
                  GROUP BY 1) u ON u.period = p.period::date
     ORDER BY p.period;
END
$$;

CREATE FUNCTION audience.usage_over_time(
    workspace text,
    app text DEFAULT NULL,
    since timestamptz DEFAULT now() - interval '30 days',
    until timestamptz DEFAULT now(),
    bucket text DEFAULT 'day')
RETURNS SETOF audience.usage_over_time_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 31
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.usage_over_time_for(audience_internal.ticket(), workspace, app, since, until, bucket);
END;
COMMENT ON FUNCTION audience.usage_over_time(text, text, timestamptz, timestamptz, text) IS
    'Usage of one app, or (app NULL) of every app of the workspace the requester may see, per day, week (ISO, from Monday) or month of the workspace''s time zone, for every bucket that overlaps the window [since, until), empty ones included, oldest first: views, sessions, visits, distinct viewers and time of ended sessions, counting only views inside the window.';

CREATE FUNCTION audience_internal.viewer_trend_for(ticket bytea, workspace text, app text, months integer)
RETURNS SETOF audience.viewer_trend_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
BEGIN
    ws := audience_internal.read_scope(viewer_trend_for.ticket, viewer_trend_for.workspace, viewer_trend_for.app, false);
    apps := ws.app_ids;
    PERFORM audience_internal.check_count(viewer_trend_for.months, 'months', 1200);
    RETURN QUERY
    SELECT t.month, t.unique_viewers, t.previous, t.unique_viewers - t.previous,
           CASE WHEN t.previous > 0 THEN round(100.0 * (t.unique_viewers - t.previous) / t.previous, 1) END,
           t.complete
      FROM (SELECT m.month, m.unique_viewers, lag(m.unique_viewers) OVER (ORDER BY m.month) AS previous,
                   m.complete
              FROM audience_internal.monthly_viewers(ws.workspace_id, apps, viewer_trend_for.months + 1) m) t
     ORDER BY t.month
    OFFSET 1;
END
$$;

CREATE FUNCTION audience.viewer_trend(workspace text, app text DEFAULT NULL, months integer DEFAULT 12)
RETURNS SETOF audience.viewer_trend_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 12
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.viewer_trend_for(audience_internal.ticket(), workspace, app, months);
END;
COMMENT ON FUNCTION audience.viewer_trend(text, text, integer) IS
    'Is viewership increasing: for the last `months` calendar months (workspace time zone), distinct viewers of one app or (app NULL) of the apps of the workspace the requester may see, the previous month''s figure, the change, the change in percent of the previous month rounded to one decimal (NULL when the previous month had no viewers); complete is false for the month in progress.';

CREATE FUNCTION audience_internal.app_access_for(ticket bytea, workspace text, app_slug text)
RETURNS SETOF audience.app_access_row
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ws record;
    apps bigint[];
    own bytea[];
BEGIN
    ws := audience_internal.read_scope(app_access_for.ticket, app_access_for.workspace, app_access_for.app_slug, false);
    apps := ws.app_ids;
    -- A viewer member sees only their own rows.
    IF ws.access = 'some' THEN
        own := ARRAY(SELECT m.identity_hash FROM audience_internal.requester_memberships(ws.workspace_id) m);
    END IF;
    RETURN QUERY
    SELECT DISTINCT ON (a.slug, x.identity) a.slug, x.identity, x.kind, x.status, x.via
      FROM audience_internal.apps a
      CROSS JOIN LATERAL (
          -- Admins and developers open every app; accepted viewer members and
          -- invitees (once they accept) the public ones; grants one app each.
          -- A person with several ways in is listed by the strongest.
          SELECT m.identity, m.identity_hash, m.kind, m.status,
                 CASE WHEN m.status = 'invited' THEN 'invitation'
                      WHEN m.kind = 'viewer' THEN 'member' ELSE m.kind END AS via,
                 CASE WHEN m.status = 'invited' THEN 5 WHEN m.kind = 'viewer' THEN 4 ELSE 1 END AS strength
            FROM audience_internal.members m
           WHERE m.workspace_id = a.workspace_id AND (m.kind <> 'viewer' OR a.visibility = 'public')
          UNION ALL
          SELECT g.identity, g.identity_hash, m.kind, coalesce(m.status, 'active'),
                 CASE WHEN m.status = 'invited' THEN 'invitation' ELSE 'grant' END,
                 CASE WHEN m.status = 'invited' THEN 3 ELSE 2 END
            FROM audience_internal.app_access g
            LEFT JOIN audience_internal.members m
              ON m.workspace_id = g.workspace_id AND m.identity_hash = g.identity_hash
           WHERE g.workspace_id = a.workspace_id AND g.app_id = a.app_id
      ) x
     WHERE a.workspace_id = ws.workspace_id AND (apps IS NULL OR a.app_id = ANY (apps))
       AND (own IS NULL OR x.identity_hash = ANY (own))
     ORDER BY a.slug, x.identity, x.strength;
END
$$;

CREATE FUNCTION audience.app_access(workspace text, app text DEFAULT NULL)
RETURNS SETOF audience.app_access_row
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 100
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM audience_internal.app_access_for(audience_internal.ticket(), workspace, app);
END;
COMMENT ON FUNCTION audience.app_access(text, text) IS
    'Who may open which app of a workspace (one app, or every app the requester may see): member identity, member kind (NULL for a person who holds only a grant), status (active or invited) and via (admin, developer, member for a viewer member on a public app, grant, invitation for one not yet accepted). Admins and developers see every row; a viewer member only their own.';

-- sql/connect_import.sql
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
-- an import therefore locks the workspace row FOR UPDATE, as
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

-- sql/forget.sql
CREATE OR REPLACE FUNCTION audience.forget_viewer(identity text)
RETURNS TABLE (workspace text, events bigint, apps bigint, memberships bigint, grants bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 3
-- Definer rights: it reads every workspace's identity key and deletes rows
-- the caller holds no privilege on.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ident text := audience_internal.normalize_identity('identity', audience_internal.require(forget_viewer.identity, 'identity'));
    ws record;
    tz text;
    v_id bigint;
    n_events bigint;
    n_apps bigint;
    n_members bigint;
    n_grants bigint;
    -- The person's share of each counter.
    gone_totals audience_internal.app_totals[];
    gone_app_months audience_internal.app_months[];
    gone_months audience_internal.workspace_months[];
    gone_days audience_internal.app_days[];
    retired timestamptz;
BEGIN
    PERFORM audience_internal.require_read_committed();
    -- Where the raw events stop (audience.retire_events), asked under a lock
    -- that a retirement in progress takes first: it commits, and is seen,
    -- before any event is read.
    LOCK TABLE ONLY audience_internal.view_events IN ACCESS SHARE MODE;
    retired := audience_internal.retired_before();
    FOR ws IN
        SELECT w.workspace_id, w.slug, audience_internal.identity_hash(k.identity_key, ident) AS hash
          FROM audience_internal.workspaces w
          JOIN audience_internal.workspace_keys k ON k.workspace_id = w.workspace_id
         ORDER BY w.workspace_id
    LOOP
        n_events := 0;
        n_apps := 0;
        v_id := NULL;
        -- A workspace where the person has viewed is locked as
        -- configure_workspace locks it, first and FOR UPDATE (the
        -- lock order at the top of sql/ingest.sql): its ingest in progress
        -- commits first and is erased too, and later ingest waits for the
        -- erasure and records the person anew. Other workspaces are not
        -- locked, so that their ingest goes on; a first view of the person
        -- there not yet committed when looked for here is kept, as one
        -- recorded after the erasure.
        IF EXISTS (SELECT FROM audience_internal.viewers v
                    WHERE v.workspace_id = ws.workspace_id AND v.viewer_hash = ws.hash) THEN
            PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws.workspace_id FOR UPDATE;
            SELECT w.time_zone INTO tz FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id;
            SELECT v.viewer_id INTO v_id FROM audience_internal.viewers v
             WHERE v.workspace_id = ws.workspace_id AND v.viewer_hash = ws.hash
               FOR UPDATE;
        END IF;
        IF v_id IS NOT NULL THEN
            -- The person's pending events first go where the counters below
            -- are read from.
            PERFORM audience_internal.fold_pending(ARRAY[ws.workspace_id]);
            -- What the person adds to each counter, read before their rows go
            -- (no other writer of this workspace runs while it is locked), so
            -- that every other answer stays what the remaining events say.
            SELECT count(*),
                   coalesce(array_agg(ROW(av.workspace_id, av.app_id, 1, av.counted_views)::audience_internal.app_totals)
                                FILTER (WHERE av.counted_views > 0), '{}')
              INTO n_apps, gone_totals
              FROM audience_internal.app_viewers av
             WHERE av.workspace_id = ws.workspace_id AND av.viewer_id = v_id;
            -- Their counters of each app and day: from their events, and
            -- for the days whose events may have been retired
            -- (retire_events), from the day's packed counters, which hold
            -- them whole. Months and workspace totals are sums of these.
            SELECT coalesce(array_agg(ROW(ws.workspace_id, d.app_id, d.day, d.sessions, d.visits, d.session_micros,
                                          NULL, NULL)::audience_internal.app_days), '{}')
              INTO gone_days
              FROM (SELECT e.app_id, audience_internal.day_of(e.viewed_at, tz) AS day,
                           count(*) FILTER (WHERE e.kind = 'session') AS sessions,
                           count(*) FILTER (WHERE e.kind = 'visit') AS visits,
                           sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at))::bigint AS session_micros
                      FROM audience_internal.view_events e
                     WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id
                       AND (retired IS NULL OR audience_internal.day_of(e.viewed_at, tz) > audience_internal.day_of(retired, tz))
                     GROUP BY 1, 2
                    UNION ALL
                    SELECT d.app_id, d.day, c.share[1], c.share[2], c.share[3]
                      FROM audience_internal.app_days d
                     CROSS JOIN LATERAL (SELECT audience_internal.viewer_counts_of(d.viewer_counts, v_id) AS share) c
                     WHERE d.workspace_id = ws.workspace_id AND d.day <= audience_internal.day_of(retired, tz)
                       AND c.share IS NOT NULL) d;
            SELECT coalesce(array_agg(ROW(ws.workspace_id, g.app_id, g.month, 1, g.n, NULL)::audience_internal.app_months), '{}')
              INTO gone_app_months
              FROM (SELECT g.app_id, audience_internal.month_of_day(g.day) AS month, sum(g.sessions + g.visits) AS n
                      FROM unnest(gone_days) g
                     GROUP BY 1, 2) g;
            -- A month's apps: what its packed counters of apps lose, if the
            -- month is over (close_months).
            SELECT coalesce(array_agg(ROW(ws.workspace_id, m.month, 1, m.n, NULL, m.public_n, NULL, p.apps, NULL)
                                          ::audience_internal.workspace_months), '{}')
              INTO gone_months
              FROM (SELECT g.month, sum(g.views) AS n, coalesce(sum(g.views) FILTER (WHERE a.visibility = 'public'), 0) AS public_n
                      FROM unnest(gone_app_months) g
                      JOIN audience_internal.apps a ON a.workspace_id = ws.workspace_id AND a.app_id = g.app_id
                     GROUP BY 1) m
              JOIN (SELECT audience_internal.month_of_day(g.day) AS month,
                           audience_internal.app_counts(array_agg(g.app_id), array_agg(g.sessions), array_agg(g.visits),
                                                        array_agg(g.session_micros)) AS apps
                      FROM unnest(gone_days) g
                     GROUP BY 1) p ON p.month = m.month;

            -- Then every row of the person goes, table by table in the lock
            -- order (rather than by the ON DELETE CASCADE of the viewer,
            -- whose order is not defined), the viewer row last. A counter
            -- left at zero is a row that the events no longer justify.
            DELETE FROM audience_internal.view_events e WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id;
            GET DIAGNOSTICS n_events = ROW_COUNT;
            DELETE FROM audience_internal.app_viewers av WHERE av.workspace_id = ws.workspace_id AND av.viewer_id = v_id;
            UPDATE audience_internal.app_totals t
               SET viewers = t.viewers - g.viewers, views = t.views - g.views
              FROM unnest(gone_totals) g
             WHERE t.workspace_id = ws.workspace_id AND t.app_id = g.app_id;
            DELETE FROM audience_internal.app_totals t USING unnest(gone_totals) g
             WHERE t.workspace_id = ws.workspace_id AND t.app_id = g.app_id AND t.views = 0;
            UPDATE audience_internal.app_months am
               SET unique_viewers = am.unique_viewers - g.unique_viewers, views = am.views - g.views,
                   viewers = audience_internal.viewer_set_without(am.viewers, v_id)
              FROM unnest(gone_app_months) g
             WHERE am.workspace_id = ws.workspace_id AND am.app_id = g.app_id AND am.month = g.month;
            DELETE FROM audience_internal.app_months am USING unnest(gone_app_months) g
             WHERE am.workspace_id = ws.workspace_id AND am.app_id = g.app_id AND am.month = g.month AND am.views = 0;
            UPDATE audience_internal.workspace_months wm
               SET unique_viewers = wm.unique_viewers - g.unique_viewers, views = wm.views - g.views,
                   viewers = audience_internal.viewer_set_without(wm.viewers, v_id),
                   public_viewers = audience_internal.viewer_set_without(wm.public_viewers, v_id),
                   public_views = wm.public_views - g.public_views,
                   apps = audience_internal.packed_counts_subtract(wm.apps, g.apps),
                   viewer_counts = audience_internal.viewer_counts_without(wm.viewer_counts, v_id)
              FROM unnest(gone_months) g
             WHERE wm.workspace_id = ws.workspace_id AND wm.month = g.month;
            DELETE FROM audience_internal.workspace_months wm USING unnest(gone_months) g
             WHERE wm.workspace_id = ws.workspace_id AND wm.month = g.month AND wm.views = 0;
            UPDATE audience_internal.app_days d
               SET sessions = d.sessions - g.sessions, visits = d.visits - g.visits,
                   session_micros = d.session_micros - g.session_micros,
                   viewers = audience_internal.viewer_set_without(d.viewers, v_id),
                   viewer_counts = audience_internal.viewer_counts_without(d.viewer_counts, v_id)
              FROM unnest(gone_days) g
             WHERE d.workspace_id = ws.workspace_id AND d.app_id = g.app_id AND d.day = g.day;
            DELETE FROM audience_internal.app_days d USING unnest(gone_days) g
             WHERE d.workspace_id = ws.workspace_id AND d.app_id = g.app_id AND d.day = g.day
               AND d.sessions + d.visits = 0;
            UPDATE audience_internal.workspace_days d
               SET sessions = d.sessions - g.sessions, visits = d.visits - g.visits,
                   session_micros = d.session_micros - g.session_micros,
                   viewers = audience_internal.viewer_set_without(d.viewers, v_id),
                   apps = audience_internal.packed_counts_subtract(d.apps, g.apps),
                   viewer_counts = audience_internal.viewer_counts_without(d.viewer_counts, v_id)
              FROM (SELECT g.day, sum(g.sessions) AS sessions, sum(g.visits) AS visits,
                           sum(g.session_micros) AS session_micros,
                           audience_internal.app_counts(array_agg(g.app_id), array_agg(g.sessions),
                                                        array_agg(g.visits), array_agg(g.session_micros)) AS apps
                      FROM unnest(gone_days) g GROUP BY 1) g
             WHERE d.workspace_id = ws.workspace_id AND d.day = g.day;
            DELETE FROM audience_internal.workspace_days d USING unnest(gone_days) g
             WHERE d.workspace_id = ws.workspace_id AND d.day = g.day AND d.sessions + d.visits = 0;
            DELETE FROM audience_internal.viewers v WHERE v.workspace_id = ws.workspace_id AND v.viewer_id = v_id;
        END IF;
        DELETE FROM audience_internal.members m WHERE m.workspace_id = ws.workspace_id AND m.identity_hash = ws.hash;
        GET DIAGNOSTICS n_members = ROW_COUNT;
        DELETE FROM audience_internal.app_access g WHERE g.workspace_id = ws.workspace_id AND g.identity_hash = ws.hash;
        GET DIAGNOSTICS n_grants = ROW_COUNT;
        -- What a Posit import remembers of their sessions goes too (a later
        -- import of the same records would record them again).
        DELETE FROM audience_internal.connect_records c WHERE c.workspace_id = ws.workspace_id AND c.viewer_hash = ws.hash;
        IF n_events + n_apps + n_members + n_grants > 0 THEN
            workspace := ws.slug;
            events := n_events;
            apps := n_apps;
            memberships := n_members;
            grants := n_grants;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audience.forget_viewer(text) IS
    'Erases a person (by identity) from every workspace: their view events, their rows in every rollup, memberships and app grants; every other answer stays consistent. Returns, per workspace, how many events, app rollup rows, memberships and grants were removed. Operator only.';

-- Rust functions with the rules of this version (src/lib.rs); the symbols of
-- 0.1.0 keep its rules for databases not yet updated.
CREATE OR REPLACE FUNCTION audience_internal."normalize_identity"(
	"argument" TEXT, /* & str */
	"value" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'normalize_identity_nfc_wrapper';

CREATE OR REPLACE FUNCTION audience_internal."accept_token"(
	"token" TEXT, /* Option < & str > */
	"secret" bytea /* Option < & [u8] > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'accept_token_once_wrapper';

-- Replaced by audience_internal.identity_problem, which raises nothing, and by
-- audience_internal.read_scope and the lookups of sql/checks.sql, which raise their own refusals.
DROP FUNCTION audience_internal.id_problem(text, text, boolean);
DROP FUNCTION audience_internal.plainly_valid_id(text);
DROP FUNCTION audience_internal.readable_workspace(text);
DROP FUNCTION audience_internal.readable_app(bigint, text, text, text);
DROP FUNCTION audience_internal.no_such_workspace(text);
DROP FUNCTION audience_internal.no_such_app(text, text);
-- The usage views (sql/usage.sql).
-- Views for BI tools over the last 30 days, answering for whoever queries
-- them, as in sql/analytics.sql. Where a function answers for an app or
-- (app NULL) for a whole workspace, its view has both: the grouping sets
-- list each visible app and each workspace that has one.

CREATE VIEW audience.app_sessions WITH (security_barrier) AS
    SELECT a.workspace, a.app, s.viewer, s.viewer_ref, s.pseudonymous, s.started_at, s.ended_at, s.duration, s.kind
      FROM audience.visible_apps() a,
           LATERAL audience.app_sessions(a.workspace, a.app) s;
COMMENT ON VIEW audience.app_sessions IS
    'For each app the current requester sees: its views of the last 30 days (at most 100 per app, newest first), labelled, with start, end, duration and kind.';

CREATE VIEW audience.top_apps WITH (security_barrier) AS
    SELECT w.workspace, t.app, t.visibility, t.views, t.sessions, t.visits, t.unique_viewers, t.session_time
      FROM (SELECT DISTINCT v.workspace FROM audience.visible_apps() v) w,
           LATERAL audience.top_apps(w.workspace, max_apps => 10000) t;
COMMENT ON VIEW audience.top_apps IS
    'For each workspace the current requester sees: every app with views in the last 30 days, most views first, with sessions, visits, distinct viewers and session time.';

CREATE VIEW audience.top_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, t.viewer, t.viewer_ref, t.pseudonymous, t.views, t.sessions, t.session_time,
           t.last_viewed_at
      FROM audience.visible_apps() a,
           LATERAL audience.top_viewers(a.workspace, a.app) t;
COMMENT ON VIEW audience.top_viewers IS
    'For each app the current requester sees: its 10 most active viewers of the last 30 days, labelled, with views, sessions, session time and last view.';

CREATE VIEW audience.usage_over_time WITH (security_barrier) AS
    SELECT s.workspace, s.app, u.period, u.views, u.sessions, u.visits, u.unique_viewers, u.session_time
      FROM (SELECT v.workspace, v.app FROM audience.visible_apps() v
             GROUP BY GROUPING SETS ((v.workspace, v.app), (v.workspace))) s,
           LATERAL audience.usage_over_time(s.workspace, s.app) u;
COMMENT ON VIEW audience.usage_over_time IS
    'Usage per day over the last 30 days, for each app the current requester sees and (app NULL) for each of their workspaces as a whole: views, sessions, visits, distinct viewers, session time; days without views included.';

CREATE VIEW audience.viewer_trend WITH (security_barrier) AS
    SELECT s.workspace, s.app, t.month, t.unique_viewers, t.previous, t.change, t.change_pct, t.complete
      FROM (SELECT v.workspace, v.app FROM audience.visible_apps() v
             GROUP BY GROUPING SETS ((v.workspace, v.app), (v.workspace))) s,
           LATERAL audience.viewer_trend(s.workspace, s.app) t;
COMMENT ON VIEW audience.viewer_trend IS
    'Month-over-month change of distinct viewers over the last 12 months, for each app the current requester sees and (app NULL) for each of their workspaces as a whole.';

CREATE VIEW audience.app_access WITH (security_barrier) AS
    SELECT w.workspace, x.app, x.member, x.kind, x.status, x.via
      FROM (SELECT DISTINCT v.workspace FROM audience.visible_apps() v) w,
           LATERAL audience.app_access(w.workspace) x;
COMMENT ON VIEW audience.app_access IS
    'Who may open which app, for each workspace the current requester sees (a viewer member: only their own rows).';

-- The views over the read functions (sql/analytics.sql).
-- Views for BI tools: browsable like tables, each answering for whoever
-- queries it. Their rows come from the functions above, which apply the
-- privacy rules before any row exists, so no predicate of the caller's (a
-- leaky function in a WHERE clause) ever sees a row it should not; they are
-- security barriers besides.

CREATE VIEW audience.apps WITH (security_barrier) AS
    SELECT * FROM audience.visible_apps();
COMMENT ON VIEW audience.apps IS 'The apps whose analytics the current requester may see.';

CREATE VIEW audience.workspace_monthly_viewers WITH (security_barrier) AS
    SELECT w.workspace, m.month, m.unique_viewers, m.views, m.complete
      FROM (SELECT DISTINCT workspace FROM audience.visible_apps()) w,
           LATERAL audience.workspace_monthly_viewers(w.workspace) m;
COMMENT ON VIEW audience.workspace_monthly_viewers IS
    'For each workspace the current requester sees: distinct viewers and views per calendar month, last 12 months; complete is false for the month in progress.';

CREATE VIEW audience.app_monthly_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, m.month, m.unique_viewers, m.views, m.complete
      FROM audience.visible_apps() a,
           LATERAL audience.app_monthly_viewers(a.workspace, a.app) m;
COMMENT ON VIEW audience.app_monthly_viewers IS
    'For each app the current requester sees: distinct viewers and views per calendar month, last 12 months; complete is false for the month in progress.';

CREATE VIEW audience.app_total_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, audience.app_total_viewers(a.workspace, a.app) AS total_viewers
      FROM audience.visible_apps() a;
COMMENT ON VIEW audience.app_total_viewers IS
    'For each app the current requester sees: all-time distinct viewers since the workspace''s counting start.';

CREATE VIEW audience.recent_viewers WITH (security_barrier) AS
    SELECT a.workspace, a.app, r.viewer, r.viewer_ref, r.pseudonymous, r.last_viewed_at, r.last_viewed, r.views
      FROM audience.visible_apps() a,
           LATERAL audience.recent_viewers(a.workspace, a.app) r;
COMMENT ON VIEW audience.recent_viewers IS
    'For each app the current requester sees: its 20 most recent distinct viewers, labelled by identity or pseudonym, with viewer_ref, last view and number of views.';

-- Every month with data, for charts over the whole history.
CREATE VIEW audience.all_monthly_viewers WITH (security_barrier) AS
    SELECT * FROM audience.all_monthly_viewers();
COMMENT ON VIEW audience.all_monthly_viewers IS
    'For each workspace the current requester sees (app NULL) and each of its apps: distinct viewers and views of every calendar month from the first with a view to the month in progress, with month_start for a time axis; complete is false for the month in progress.';

-- What every column of the BI views means (sql/view_columns.sql).
-- What each column of the BI views means, for the column lists of the tools
-- that browse them (JDBC REMARKS in Metabase, SQLAlchemy comments in
-- Superset, \d+ in psql). A column name means the same in every view, except
-- where a line names the view. Creating the extension fails if a view has a
-- column without a meaning here, so that no new column ships unexplained.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        WITH meaning(view_name, column_name, remark) AS (VALUES
            (NULL, 'workspace', 'Slug of the workspace.'),
            (NULL, 'app', 'Slug of the app.'),
            ('usage_over_time', 'app', 'Slug of the app; NULL in the rows for the workspace as a whole.'),
            ('viewer_trend', 'app', 'Slug of the app; NULL in the rows for the workspace as a whole.'),
            ('all_monthly_viewers', 'app', 'Slug of the app; NULL in the rows for the workspace as a whole (its apps the requester may see).'),
            (NULL, 'month_start', 'The month''s first instant in the workspace''s time zone, to place the month on a chart''s time axis.'),
            (NULL, 'name', 'Display name of the app.'),
            (NULL, 'visibility', 'public (anyone with the link may open the app) or private (members and people granted it), as it is now.'),
            (NULL, 'month', 'A calendar month in the workspace''s time zone, as its first day.'),
            (NULL, 'unique_viewers', 'Distinct viewers (people and anonymous visitors) in the row''s period.'),
            (NULL, 'views', 'Views (each opening of an app, sessions and visits) in the row''s period.'),
            ('top_viewers', 'views', 'Views by this viewer in the last 30 days.'),
            ('recent_viewers', 'views', 'Views of the app by this viewer, all time.'),
            (NULL, 'complete', 'false for the month in progress, whose figures still grow.'),
            (NULL, 'total_viewers', 'Distinct viewers of the app since the workspace''s counting start.'),
            (NULL, 'viewer', 'Who viewed: their identity when the view is identified to the requester, otherwise a pseudonym such as Enigmatic Brownie.'),
            (NULL, 'viewer_ref', 'A stable reference to the viewer of this row, for counting and joining; a person''s identified and pseudonymous rows have unrelated references.'),
            (NULL, 'pseudonymous', 'true when viewer is a pseudonym.'),
            (NULL, 'last_viewed_at', 'Time of the latest view.'),
            (NULL, 'last_viewed', 'The latest view in words, e.g. 5 minutes ago.'),
            (NULL, 'started_at', 'When the view began.'),
            (NULL, 'ended_at', 'When the session ended; NULL for a visit or a session still open.'),
            (NULL, 'duration', 'ended_at - started_at; NULL for a visit or a session still open.'),
            ('app_sessions', 'kind', 'session (an opening of a running app) or visit (a view of static content).'),
            (NULL, 'sessions', 'Views that are sessions, in the row''s period.'),
            (NULL, 'visits', 'Views that are visits, in the row''s period.'),
            (NULL, 'session_time', 'Total duration of the ended sessions in the row''s period.'),
            (NULL, 'period', 'Start of the day in the workspace''s time zone.'),
            (NULL, 'previous', 'unique_viewers of the month before.'),
            (NULL, 'change', 'unique_viewers - previous.'),
            (NULL, 'change_pct', 'change as a percentage of previous; NULL when previous is 0.'),
            (NULL, 'member', 'Identity of the person who may open the app.'),
            ('app_access', 'kind', 'Member kind: admin, developer or viewer; NULL for a person who holds only a grant.'),
            (NULL, 'status', 'active, or invited until the invitation is accepted.'),
            (NULL, 'via', 'Why the person may open the app: admin, developer, member (a viewer member, public app), grant, or invitation.')
        )
        SELECT v.oid::regclass AS view, a.attname AS column_name,
               coalesce(own.remark, general.remark) AS remark
          FROM pg_catalog.pg_class v
          JOIN pg_catalog.pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN meaning own ON own.view_name = v.relname AND own.column_name = a.attname
          LEFT JOIN meaning general ON general.view_name IS NULL AND general.column_name = a.attname
         WHERE v.relnamespace = 'audience'::regnamespace AND v.relkind = 'v'
    LOOP
        IF c.remark IS NULL THEN
            RAISE EXCEPTION 'column %.% has no meaning in sql/view_columns.sql', c.view, c.column_name;
        END IF;
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', c.view, c.column_name, c.remark);
    END LOOP;
END
$$;

COMMENT ON SCHEMA audience IS
    'Viewer analytics of an app-hosting platform (pg_audience), answered for whoever asks: views for BI tools, and the read, ingest and management functions.';

-- Row-level security on the new tables, as on every table, and no policy
-- on any (sql/policies.sql): 0.1.0's policies, which looked the requester
-- up, go with their lookups.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT p.policyname, p.tablename FROM pg_catalog.pg_policies p WHERE p.schemaname = 'audience_internal' LOOP
        EXECUTE format('DROP POLICY %I ON audience_internal.%I', t.policyname, t.tablename);
    END LOOP;
END
$$;
DROP FUNCTION audience_internal.visible_workspace_ids();
DROP FUNCTION audience_internal.managed_workspace_ids();
DROP FUNCTION audience_internal.visible_app_ids();
ALTER TABLE audience_internal.app_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.app_days FORCE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.workspace_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.workspace_days FORCE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.connect_content ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.connect_content FORCE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.pending_folds ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.pending_folds FORCE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.retired_months ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.retired_months FORCE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.spent_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.spent_tokens FORCE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.connect_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.connect_records FORCE ROW LEVEL SECURITY;


-- Privileges (sql/privileges.sql).
REVOKE ALL ON ALL TABLES IN SCHEMA audience_internal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA audience_internal FROM PUBLIC;
-- sql/management.sql, sql/requester.sql: now() out of the statements Citus runs where the rows are
CREATE OR REPLACE FUNCTION audience.accept_invite(workspace text, member text)
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

CREATE OR REPLACE FUNCTION audience.set_token_secret(secret text)
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

-- sql/management.sql: the management functions not replaced above pin
-- plan_cache_mode too.
ALTER FUNCTION audience.create_app(text, text, text, text) SET plan_cache_mode = auto;
ALTER FUNCTION audience.invite_viewer(text, text, text, name) SET plan_cache_mode = auto;
ALTER FUNCTION audience.remove_member(text, text) SET plan_cache_mode = auto;
ALTER FUNCTION audience.grant_app_access(text, text, text) SET plan_cache_mode = auto;

-- sql/management.sql: keys made where they are stored
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

CREATE OR REPLACE FUNCTION audience.create_workspace(slug text, name text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION audience.rotate_pseudonym_key(workspace text)
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

-- sql/citus.sql
-- The placement: reference tables (a copy on every node) for what has no
-- workspace in its keys or is a row or a few for the whole database, and
-- every other table hashed on workspace_id in one colocation group, so that
-- a workspace's rows of every table are on one node. view_imports stays on
-- the coordinator: its statement trigger reads a transition table, which a
-- shard's trigger cannot. In foreign-key order.
CREATE FUNCTION audience_internal.citus_placement()
RETURNS TABLE (table_name text, reference boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT t, true FROM unnest(ARRAY['workspaces', 'token_secrets', 'spent_tokens', 'retired_months']) t
    UNION ALL
    SELECT t, false
      FROM unnest(ARRAY['apps', 'workspace_keys', 'members', 'app_access', 'app_visibility_changes', 'viewers',
                        'view_events', 'connect_content', 'connect_records', 'pending_folds', 'app_viewers',
                        'app_totals', 'app_months', 'workspace_months', 'app_days', 'workspace_days']) t
$$;

-- Run on the coordinator once, after CREATE EXTENSION citus and adding the
-- workers; data already stored moves to the workers. SECURITY INVOKER:
-- Citus lets only the tables' owner distribute them.
CREATE FUNCTION audience.distribute()
RETURNS void LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    roles jsonb;
    m record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = 'Citus is not installed in this database',
            HINT = 'Run CREATE EXTENSION citus and add the workers first.';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'only a superuser may distribute pg_audience';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition d
                WHERE d.logicalrelid = 'audience_internal.workspaces'::regclass) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'pg_audience is distributed already';
    END IF;
    -- A member's database role is stored by number, and every node numbers
    -- its roles itself: the members' roles are kept by name, and given again
    -- by name once the rows are on the workers.
    roles := (SELECT jsonb_agg(jsonb_build_array(x.workspace_id, x.member_id, x.db_role::text))
                FROM audience_internal.members x WHERE x.db_role IS NOT NULL);
    -- Without it, Citus would make the tables that refer to workspaces
    -- local Citus tables under new names, which the workers' own copies of
    -- the extension's tables then collide with.
    PERFORM set_config('citus.enable_local_reference_table_foreign_keys', 'off', true);
    PERFORM set_config('citus.shard_replication_factor', '1', true);
    FOR p IN SELECT * FROM audience_internal.citus_placement() LOOP
        IF p.reference THEN
            EXECUTE 'SELECT create_reference_table($1)' USING ('audience_internal.' || p.table_name)::regclass;
        ELSE
            EXECUTE 'SELECT create_distributed_table($1, ''workspace_id'', colocate_with => $2)'
              USING ('audience_internal.' || p.table_name)::regclass,
                    CASE WHEN p.table_name = 'apps' THEN 'default' ELSE 'audience_internal.apps' END;
        END IF;
    END LOOP;
    -- On a cluster the lookup of the requester's memberships is planned for
    -- each call: the generic plan a session's lookups come to, kept for any
    -- role names, cannot be distributed. (On one server it is planned once
    -- a session.)
    ALTER FUNCTION audience_internal.requester_memberships(bigint) SET plan_cache_mode = force_custom_plan;
    -- Keys are made on the worker that stores them (sql/management.sql).
    EXECUTE 'SELECT create_distributed_function($1, ''$1'', colocate_with => ''audience_internal.workspace_keys'', force_delegation => true)'
      USING 'audience_internal.add_keys(bigint)'::regprocedure;
    EXECUTE 'SELECT create_distributed_function($1, ''$1'', colocate_with => ''audience_internal.workspace_keys'', force_delegation => true)'
      USING 'audience_internal.new_pseudonym_key(bigint)'::regprocedure;
    -- Citus copies the stored rows to the workers and leaves the
    -- originals on the coordinator, where no query reads them and no
    -- erasure (forget_viewer, delete_workspace) would reach them.
    FOR p IN SELECT * FROM audience_internal.citus_placement() x ORDER BY x.reference, x.table_name LOOP
        EXECUTE 'SELECT truncate_local_data_after_distributing_table($1)'
          USING ('audience_internal.' || p.table_name)::regclass;
    END LOOP;
    FOR m IN SELECT (r ->> 0)::bigint AS workspace_id, (r ->> 1)::bigint AS member_id, r ->> 2 AS db_role
               FROM jsonb_array_elements(coalesce(roles, '[]')) r LOOP
        UPDATE audience_internal.members x SET db_role = m.db_role::regrole
         WHERE x.workspace_id = m.workspace_id AND x.member_id = m.member_id;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audience.distribute() IS
    'Distributes this database''s pg_audience tables over a Citus cluster: run once on the coordinator by a superuser, after CREATE EXTENSION citus and adding the workers. Events, viewers and every rollup are hashed on workspace_id in one colocation group; workspaces and the token and retirement tables become reference tables. Stored data moves to the workers.';

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA audience_internal FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA audience FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA audience FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audience.relative_time(timestamptz, timestamptz) TO PUBLIC;
GRANT USAGE ON SCHEMA audience TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    audience.create_workspace(text, text),
    audience.configure_workspace(text, text, timestamptz, timestamptz, text, text),
    audience.create_app(text, text, text, text),
    audience.set_app_visibility(text, text, text),
    audience.add_member(text, text, text, name),
    audience.invite_viewer(text, text, text, name),
    audience.accept_invite(text, text),
    audience.remove_member(text, text),
    audience.grant_app_access(text, text, text),
    audience.rotate_pseudonym_key(text),
    audience.set_token_secret(text),
    audience.forget_viewer(text),
    audience.delete_workspace(text),
    audience.retire_events(date)
TO audience_manager;

GRANT EXECUTE ON FUNCTION
    audience.record_view(text, text, text, timestamptz, text, timestamptz, text),
    audience.record_views(jsonb, text),
    audience.end_session(bigint, timestamptz)
TO audience_ingest;
GRANT EXECUTE ON FUNCTION audience.import_connect(text, jsonb, jsonb, jsonb) TO audience_ingest, audience_manager;
-- The COPY path: rows written here are folded into the model by a trigger
-- in the same statement; the staging table never keeps them.
GRANT USAGE ON SCHEMA audience_ingest TO audience_ingest;
-- SELECT too, so that the one table the ingest role lists is one it may
-- read: it is always empty to anyone (rows live only within the statement
-- that inserts them).
GRANT SELECT, INSERT ON audience_ingest.view_imports TO audience_ingest;

-- The operator reads every workspace in full through the same functions.
-- The read functions are SECURITY INVOKER wrappers around definer functions
-- in audience_internal (sql/analytics.sql): the caller needs EXECUTE on
-- those, and no USAGE on the schema (the wrappers name them by OID), so
-- a schema browser that lists what a reader may use shows nothing there.
REVOKE USAGE ON SCHEMA audience_internal FROM audience_reader, audience_manager;
GRANT EXECUTE ON FUNCTION
    audience_internal.ticket(),
    audience_internal.workspace_monthly_viewers_for(bytea, text, integer),
    audience_internal.app_monthly_viewers_for(bytea, text, text, integer),
    audience_internal.app_total_viewers_for(bytea, text, text),
    audience_internal.recent_viewers_for(bytea, text, text, integer),
    audience_internal.visible_apps_for(bytea),
    audience_internal.all_monthly_viewers_for(bytea),
    audience_internal.whoami_for(bytea),
    audience_internal.app_sessions_for(bytea, text, text, timestamptz, timestamptz, interval, integer),
    audience_internal.top_apps_for(bytea, text, timestamptz, timestamptz, integer),
    audience_internal.top_viewers_for(bytea, text, text, timestamptz, timestamptz, integer),
    audience_internal.usage_over_time_for(bytea, text, text, timestamptz, timestamptz, text),
    audience_internal.viewer_trend_for(bytea, text, text, integer),
    audience_internal.app_access_for(bytea, text, text)
TO audience_reader, audience_manager;
GRANT EXECUTE ON FUNCTION
    audience.workspace_monthly_viewers(text, integer),
    audience.app_monthly_viewers(text, text, integer),
    audience.app_total_viewers(text, text),
    audience.recent_viewers(text, text, integer),
    audience.visible_apps(),
    audience.all_monthly_viewers(),
    audience.whoami(),
    audience.authenticate(text),
    audience.app_sessions(text, text, timestamptz, timestamptz, interval, integer),
    audience.top_apps(text, timestamptz, timestamptz, integer),
    audience.top_viewers(text, text, timestamptz, timestamptz, integer),
    audience.usage_over_time(text, text, timestamptz, timestamptz, text),
    audience.viewer_trend(text, text, integer),
    audience.app_access(text, text)
TO audience_reader, audience_manager;
GRANT SELECT ON
    audience.apps,
    audience.workspace_monthly_viewers,
    audience.app_monthly_viewers,
    audience.app_total_viewers,
    audience.recent_viewers,
    audience.all_monthly_viewers,
    audience.app_sessions,
    audience.top_apps,
    audience.top_viewers,
    audience.usage_over_time,
    audience.viewer_trend,
    audience.app_access
TO audience_reader, audience_manager;

SELECT pg_catalog.pg_extension_config_dump('audience_internal.app_days', '');
SELECT pg_catalog.pg_extension_config_dump('audience_internal.workspace_days', '');
SELECT pg_catalog.pg_extension_config_dump('audience_internal.pending_folds', '');
SELECT pg_catalog.pg_extension_config_dump('audience_internal.spent_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('audience_internal.connect_content', '');
SELECT pg_catalog.pg_extension_config_dump('audience_internal.connect_records', '');
SELECT pg_catalog.pg_extension_config_dump('audience_internal.retired_months', '');


-- Stored data that the rules of 0.2.0 refuse. Nothing a person can be
-- recognised by is printed: only counts.
DO $$
DECLARE
    n bigint;
    renamed bigint;
    affected bigint[];
    r record;
BEGIN
    -- Time zones: a workspace on the server's own zone ('localtime'...) would
    -- have its months move with the host; there is no telling which named
    -- zone was meant, so the operator chooses.
    SELECT count(*) INTO n FROM audience_internal.workspaces w
     WHERE NOT audience_internal.named_time_zone(w.time_zone);
    IF n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('cannot update pg_audience: %s workspace(s) use a time zone that is not a named IANA zone', n),
            HINT = 'Before updating, give each such workspace a named zone with audience.configure_workspace(workspace, time_zone => ''Europe/Paris'').';
    END IF;

    -- Identities the normaliser now refuses (only invisible characters,
    -- bidirectional controls): the operator removes or erases them first.
    SELECT (SELECT count(*) FROM audience_internal.members m
             WHERE audience_internal.identity_problem('member', m.identity, false) IS NOT NULL)
         + (SELECT count(*) FROM audience_internal.app_access g
             WHERE audience_internal.identity_problem('member', g.identity, false) IS NOT NULL)
         + (SELECT count(*) FROM audience_internal.viewers v
             WHERE v.identity IS NOT NULL AND audience_internal.identity_problem('viewer', v.identity, false) IS NOT NULL)
      INTO n;
    IF n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('cannot update pg_audience: %s stored identities are invisible or carry bidirectional controls', n),
            HINT = 'Before updating, remove such members (audience.remove_member) and erase such viewers (audience.forget_viewer).';
    END IF;

    -- Identities stored before NFC: each takes its NFC spelling and hash,
    -- with the viewer rows of that person, so that their views stay theirs.
    renamed := 0;
    FOR r IN
        SELECT DISTINCT x.workspace_id, n.identity AS new_identity,
               audience_internal.identity_hash(k.identity_key, x.identity) AS old_hash,
               audience_internal.identity_hash(k.identity_key, n.identity) AS new_hash
          FROM (SELECT m.workspace_id, m.identity FROM audience_internal.members m
                UNION SELECT g.workspace_id, g.identity FROM audience_internal.app_access g
                UNION SELECT v.workspace_id, v.identity FROM audience_internal.viewers v WHERE v.identity IS NOT NULL) x
          JOIN audience_internal.workspace_keys k ON k.workspace_id = x.workspace_id
          CROSS JOIN LATERAL (SELECT audience_internal.normalize_identity('member', x.identity) AS identity) n
         WHERE n.identity <> x.identity
    LOOP
        -- One person under two spellings is two members or two viewers
        -- today; which is which is the operator's call.
        IF EXISTS (SELECT FROM audience_internal.members m
                    WHERE m.workspace_id = r.workspace_id AND m.identity_hash = r.new_hash)
           OR EXISTS (SELECT FROM audience_internal.app_access g
                       WHERE g.workspace_id = r.workspace_id AND g.identity_hash = r.new_hash)
           OR EXISTS (SELECT FROM audience_internal.viewers v
                       WHERE v.workspace_id = r.workspace_id AND v.viewer_hash = r.new_hash) THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = 'cannot update pg_audience: some people are stored under two Unicode spellings of one identity',
                HINT = 'Before updating, remove one of the two members (audience.remove_member) or erase the viewer (audience.forget_viewer).';
        END IF;
        UPDATE audience_internal.members m SET identity = r.new_identity, identity_hash = r.new_hash
         WHERE m.workspace_id = r.workspace_id AND m.identity_hash = r.old_hash;
        UPDATE audience_internal.app_access g SET identity = r.new_identity, identity_hash = r.new_hash
         WHERE g.workspace_id = r.workspace_id AND g.identity_hash = r.old_hash;
        UPDATE audience_internal.viewers v
           SET viewer_hash = r.new_hash, identity = CASE WHEN v.identity IS NOT NULL THEN r.new_identity END
         WHERE v.workspace_id = r.workspace_id AND v.viewer_hash = r.old_hash AND NOT v.anonymous;
        renamed := renamed + 1;
    END LOOP;
    IF renamed > 0 THEN
        RAISE WARNING 'pg_audience: % stored identities now in Unicode NFC', renamed;
    END IF;

    -- Views before 1970, which no ingest path accepts any more: the dates
    -- of a broken clock, which also break the monthly rollups of zones west
    -- of UTC. They are deleted and their workspaces' rollups rebuilt below.
    WITH gone AS (
        DELETE FROM audience_internal.view_events e WHERE e.viewed_at < '1970-01-01 00:00:00+00'
        RETURNING e.workspace_id)
    SELECT count(*), array_agg(DISTINCT g.workspace_id) INTO n, affected FROM gone g;
    IF n > 0 THEN
        RAISE WARNING 'pg_audience: % view event(s) before 1970 deleted', n;
    END IF;

    -- The viewer sets of the month rollup.
    UPDATE audience_internal.app_months am SET viewers = v.viewers
      FROM (SELECT mv.workspace_id, mv.app_id, mv.month, audience_internal.viewer_set(array_agg(mv.viewer_id)) AS viewers
              FROM audience_internal.app_month_viewers mv
             GROUP BY 1, 2, 3) v
     WHERE am.workspace_id = v.workspace_id AND am.app_id = v.app_id AND am.month = v.month;
    ALTER TABLE audience_internal.app_months ALTER COLUMN viewers SET NOT NULL;
    UPDATE audience_internal.workspace_months wm SET viewers = v.viewers
      FROM (SELECT mv.workspace_id, mv.month, audience_internal.viewer_set(array_agg(mv.viewer_id)) AS viewers
              FROM audience_internal.workspace_month_viewers mv
             GROUP BY 1, 2) v
     WHERE wm.workspace_id = v.workspace_id AND wm.month = v.month;
    ALTER TABLE audience_internal.workspace_months ALTER COLUMN viewers SET NOT NULL;
    -- The views and viewers of the apps public now, per workspace and month.
    PERFORM audience_internal.remake_public_sets(w.workspace_id) FROM audience_internal.workspaces w;
    ALTER TABLE audience_internal.workspace_months
        ALTER COLUMN public_viewers SET NOT NULL, ALTER COLUMN public_views SET NOT NULL;

    -- The day rollups of the events stored so far: per app and per
    -- workspace, their totals, viewer sets and each viewer's counters.
    WITH day_viewers AS MATERIALIZED (
        SELECT e.workspace_id, e.app_id, (e.viewed_at AT TIME ZONE w.time_zone)::date AS day, e.viewer_id, e.identifiable,
               count(*) FILTER (WHERE e.kind = 'session') AS sessions, count(*) FILTER (WHERE e.kind = 'visit') AS visits,
               sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at))::bigint AS session_micros,
               max(e.viewed_at) AS last_viewed_at
          FROM audience_internal.view_events e
          JOIN audience_internal.workspaces w ON w.workspace_id = e.workspace_id
         GROUP BY 1, 2, 3, 4, 5
    ),
    app_days AS (
        INSERT INTO audience_internal.app_days
        SELECT d.workspace_id, d.app_id, d.day, sum(d.sessions), sum(d.visits), sum(d.session_micros),
               audience_internal.viewer_set(array_agg(d.viewer_id)),
               audience_internal.viewer_counts(array_agg(d.viewer_id), array_agg(d.identifiable),
                                               array_agg(d.sessions), array_agg(d.visits),
                                               array_agg(d.session_micros), array_agg(d.last_viewed_at))
          FROM day_viewers d
         GROUP BY 1, 2, 3
        RETURNING *
    )
    INSERT INTO audience_internal.workspace_days
    SELECT d.workspace_id, d.day, d.sessions, d.visits, d.session_micros, d.viewers, d.apps, v.viewer_counts
      FROM (SELECT d.workspace_id, d.day, sum(d.sessions) AS sessions, sum(d.visits) AS visits,
                   sum(d.session_micros) AS session_micros,
                   audience_internal.viewer_set_union(array_agg(d.viewers)) AS viewers,
                   audience_internal.app_counts(array_agg(d.app_id), array_agg(d.sessions), array_agg(d.visits),
                                                array_agg(d.session_micros)) AS apps
              FROM app_days d
             GROUP BY 1, 2) d
      JOIN (SELECT v.workspace_id, v.day,
                   audience_internal.viewer_counts(array_agg(v.viewer_id), array_agg(v.identifiable),
                                                   array_agg(v.sessions), array_agg(v.visits),
                                                   array_agg(v.session_micros), array_agg(v.last_viewed_at)) AS viewer_counts
              FROM day_viewers v
             GROUP BY 1, 2) v ON v.workspace_id = d.workspace_id AND v.day = d.day;

    PERFORM audience_internal.close_months(ARRAY(SELECT w.workspace_id FROM audience_internal.workspaces w));
    IF affected IS NOT NULL THEN
        PERFORM audience_internal.rebuild_rollups(a) FROM unnest(affected) a;
    END IF;
END
$$;

-- The rows per viewer and month, now in the month rows' viewer sets (filled
-- above). Taken out of the extension first, so that they leave its list of
-- tables pg_dump copies with them.
ALTER EXTENSION pg_audience DROP TABLE audience_internal.app_month_viewers;
ALTER EXTENSION pg_audience DROP TABLE audience_internal.workspace_month_viewers;
DROP TABLE audience_internal.app_month_viewers, audience_internal.workspace_month_viewers;

-- The raw events move into a partition per calendar month in UTC
-- (sql/schema.sql, sql/event_store.sql), each with its own keys and
-- indexes, without foreign keys. The table of 0.1.0 leaves the extension
-- first, so that it leaves the list of tables pg_dump copies with it.
ALTER EXTENSION pg_audience DROP TABLE audience_internal.view_events;
ALTER TABLE audience_internal.view_events RENAME TO view_events_0_1_0;
-- Its checks' names go to the new table.
ALTER TABLE audience_internal.view_events_0_1_0
    DROP CONSTRAINT view_events_check, DROP CONSTRAINT view_events_kind_check;
CREATE TABLE audience_internal.view_events (
    workspace_id bigint NOT NULL,
    event_id bigint NOT NULL DEFAULT nextval('audience_internal.event_id_seq'),
    app_id bigint NOT NULL,
    viewer_id bigint NOT NULL,
    viewed_at timestamptz NOT NULL,
    ended_at timestamptz,
    kind text NOT NULL CHECK (kind IN ('session', 'visit')),
    -- An authenticated view of the app while it was private: its viewer may
    -- be shown by identity.
    identifiable boolean NOT NULL,
    -- The database login that recorded the event (audience_internal.session_login,
    -- by OID), to which alone end_session answers about it: no other login
    -- learns when it was viewed, or that it exists. NULL for events stored
    -- before 0.2.0, which only the operator can end.
    recorded_by oid DEFAULT audience_internal.session_login(),
    CHECK (ended_at IS NULL OR ended_at >= viewed_at)
) PARTITION BY RANGE (viewed_at);
COMMENT ON TABLE audience_internal.view_events IS
    'One opening of one app by one viewer: the raw events, a partition per calendar month (UTC).';
SELECT audience_internal.add_event_month(m.at)
  FROM (SELECT min(e.viewed_at) AS at FROM audience_internal.view_events_0_1_0 e
         GROUP BY audience_internal.event_month(e.viewed_at) ORDER BY 1) m;
INSERT INTO audience_internal.view_events
SELECT * FROM audience_internal.view_events_0_1_0 e ORDER BY e.workspace_id, e.app_id, e.viewed_at;
DROP TABLE audience_internal.view_events_0_1_0;
ALTER TABLE audience_internal.view_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audience_internal.view_events FORCE ROW LEVEL SECURITY;
REVOKE ALL ON audience_internal.view_events FROM PUBLIC;
