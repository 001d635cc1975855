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
