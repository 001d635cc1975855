-- Argument checks and lookups shared by every file: each raises the error
-- of its kind, naming the argument at fault and never echoing an identity.
--
-- Like every helper in audience_internal they are not SECURITY DEFINER, are
-- executable by no caller, and run inside the extension's definer functions
-- under their pinned search_path; they carry no SET clause of their own,
-- which would stop SQL helpers from being inlined and make every call save
-- and restore settings.

-- A refused input as data: its SQLSTATE and message. A check that returns
-- one instead of raising can be asked about every row of a batch at once
-- (to find the first bad row, or all of them), and costs no subtransaction;
-- problem_message words it with where in a batch it was found. Each kind of
-- problem has one constructor below, so each message is written once.
CREATE TYPE audience_internal.problem AS (sqlstate text, message text);

CREATE FUNCTION audience_internal.null_argument(argument text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('22004', format('argument "%s" must not be NULL', argument))::audience_internal.problem $$;

CREATE FUNCTION audience_internal.invalid_argument(argument text, reason text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('22023', format('invalid argument "%s": %s', argument, reason))::audience_internal.problem $$;

-- Clocks of web tiers drift; an hour ahead of the database is not a view yet.
CREATE FUNCTION audience_internal.in_the_future(argument text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audience_internal.invalid_argument(argument, 'more than an hour in the future') $$;

CREATE FUNCTION audience_internal.not_one_of(argument text, choices text[])
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audience_internal.invalid_argument(argument, 'expected one of ' || array_to_string(choices, ', ')) $$;

CREATE FUNCTION audience_internal.not_a_time(argument text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('22007', format('invalid argument "%s": not a valid time', argument))::audience_internal.problem $$;

-- A time given as JSON text, or NULL when it is not one: the batches
-- (record_views, import_connect) ask this of every time they carry and
-- report each NULL as not_a_time. The shape platform APIs write (RFC 3339
-- with an offset) is read in Rust, raising nothing; any other text is put to
-- PostgreSQL's own parser, which alone says whether and what time it is, at
-- the price of a subtransaction for that value only.
CREATE FUNCTION audience_internal.try_timestamptz(value text)
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

-- Why a key of a JSON object in an import is not the string it should be
-- (NULL when it is; `nullable`: a JSON null or no key is fine too).
CREATE FUNCTION audience_internal.not_a_json_string(item jsonb, key text, nullable boolean DEFAULT false)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN jsonb_typeof(item -> key) IS NOT DISTINCT FROM 'string' THEN NULL
                WHEN nullable AND jsonb_typeof(coalesce(item -> key, 'null')) = 'null' THEN NULL
                ELSE format('%s must be a JSON string%s', key, CASE WHEN nullable THEN ' or null' ELSE '' END)
           END
$$;

-- Names are cut to 63 characters: an error is no place to echo a long input.
CREATE FUNCTION audience_internal.missing_workspace(workspace text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW('42704', format('workspace "%s" does not exist', left(workspace, 63)))::audience_internal.problem $$;

CREATE FUNCTION audience_internal.missing_app(workspace text, app text)
RETURNS audience_internal.problem LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ROW('42704', format('app "%s" does not exist in workspace "%s"', left(app, 63), left(workspace, 63)))::audience_internal.problem
$$;

-- The message a problem is raised with. `place` says where in a batch it
-- was found (events[3], row 2 of this import), `within` which argument held
-- the batch. The public functions raise with it themselves
-- (RAISE ... USING ERRCODE = p.sqlstate, MESSAGE = problem_message(p, ...)),
-- so that the CONTEXT a caller sees names their function and no helper.
CREATE FUNCTION audience_internal.problem_message(problem audience_internal.problem, place text DEFAULT NULL, within text DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN within IS NULL THEN '' ELSE format('invalid argument "%s": ', within) END
           || (problem).message
           || CASE WHEN place IS NULL THEN '' ELSE format(' (%s)', place) END
$$;

-- The checks below raise their problem themselves, as does each function
-- that finds one, rather than through a helper that raises: each frame of a
-- call chain is a line of the error's CONTEXT, and a caller should see as
-- few of ours as can be.
CREATE FUNCTION audience_internal.require(value anyelement, argument text)
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

-- A workspace by its slug; one that does not exist is an error naming it.
CREATE FUNCTION audience_internal.workspace_id(workspace text)
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

-- An app of a workspace by its slug; one that does not exist is an error
-- naming it.
CREATE FUNCTION audience_internal.app_id(workspace_id bigint, workspace text, app text)
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

CREATE FUNCTION audience_internal.check_slug(value text, argument text)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF audience_internal.require(value, argument) !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid argument "%s": use 1 to 63 lowercase letters, digits, "-" or "_", starting with a letter or digit', argument);
    END IF;
    RETURN value;
END
$$;

CREATE FUNCTION audience_internal.check_name(value text, argument text)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF length(value) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22001',
            MESSAGE = format('argument "%s" is too long (at most 200 characters)', argument);
    END IF;
    IF value IS NOT NULL AND btrim(value) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid argument "%s": must not be empty', argument);
    END IF;
    RETURN value;
END
$$;

CREATE FUNCTION audience_internal.check_choice(value text, argument text, choices text[])
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

-- A member stands for a database role by the role's identity (its OID),
-- not its name: a mapped role that is renamed stays mapped, one that is
-- dropped maps nobody, and a new role given a dropped one's name inherits
-- nothing. (Stored as regrole, so pg_dump writes the name and a restore
-- finds the role of that name.)
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

-- Writers of events and rollups (ingest, import_connect, configure_workspace,
-- set_app_visibility, forget_viewer) update rows that concurrent writers of the same workspace
-- update too. Under REPEATABLE READ or SERIALIZABLE every such meeting is a
-- serialization failure, and retrying meets the next writer: refused up
-- front, the same way every time, rather than at random under load.
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

-- Months and days must mean the same on every server and every day: only
-- the zones of the IANA database by name, not the server's own 'localtime'
-- or 'posixrules', nor the duplicates under posix/ and right/.
CREATE FUNCTION audience_internal.named_time_zone(time_zone text)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_timezone_names z WHERE z.name = named_time_zone.time_zone)
       AND named_time_zone.time_zone !~ '^(posix|right)/'
       AND named_time_zone.time_zone NOT IN ('localtime', 'posixrules', 'Factory')
$$;

CREATE FUNCTION audience_internal.identity_key(workspace_id bigint)
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN (SELECT k.identity_key FROM audience_internal.workspace_keys k WHERE k.workspace_id = identity_key.workspace_id);
END
$$;
