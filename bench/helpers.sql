-- Timing helpers of the benchmark, created in the benchmark's databases only
-- (never by the extension). Times are taken inside the server, so that a
-- sub-millisecond answer is not drowned in client round trips; each query is
-- planned at every run, as an ad-hoc client query would be.

-- The median time in milliseconds of `reps` runs of a query, after one run
-- to warm the caches. The query's rows are all produced, every column of
-- them (count(q.*), not count(*), which would let the planner skip calling
-- what no one reads).
CREATE OR REPLACE FUNCTION public.bench_median_ms(query text, reps integer)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz;
    times double precision[] := '{}';
    n bigint;
BEGIN
    EXECUTE 'SELECT count(q.*) FROM (' || query || ') q' INTO n;
    FOR i IN 1..reps LOOP
        started := clock_timestamp();
        EXECUTE 'SELECT count(q.*) FROM (' || query || ') q' INTO n;
        times := times || 1000 * extract(epoch FROM clock_timestamp() - started)::double precision;
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t);
END
$$;
GRANT EXECUTE ON FUNCTION public.bench_median_ms(text, integer) TO PUBLIC;

-- The WAL written so far, in bytes: this server's, or on a Citus cluster
-- the sum of every node's (each keeps its own WAL). The nodes are asked over
-- connections of their own, outside the caller's transaction.
CREATE OR REPLACE FUNCTION public.bench_wal_position()
RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_node') IS NULL THEN
        RETURN pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0');
    END IF;
    RETURN (SELECT sum(pg_wal_lsn_diff(r.result::pg_lsn, '0/0'))
              FROM pg_catalog.run_command_on_all_nodes('SELECT pg_current_wal_insert_lsn()') r);
END
$$;

-- The bytes on disk of a table with its indexes and TOAST: on a Citus
-- cluster, of a distributed or reference table, every shard's on every node.
CREATE OR REPLACE FUNCTION public.bench_table_bytes(rel regclass)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    is_citus boolean := false;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)' INTO is_citus USING rel;
    END IF;
    IF is_citus THEN
        RETURN (SELECT pg_catalog.citus_total_relation_size(rel));
    END IF;
    RETURN pg_total_relation_size(rel);
END
$$;

-- One COPY from a server-side file into `target`, undone afterwards (the
-- data set stays as built; its WAL stays written): its time in
-- milliseconds, the bytes of WAL it wrote, and the bytes on disk of
-- `target` per row copied (the size of a row for a table made empty for it).
CREATE OR REPLACE FUNCTION public.bench_copy(target text, file text,
    OUT ms double precision, OUT wal_bytes numeric, OUT bytes_per_row bigint)
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz;
    before numeric;
    n bigint;
BEGIN
    BEGIN
        before := public.bench_wal_position();
        started := clock_timestamp();
        EXECUTE format('COPY %s (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) FROM %L', target, file);
        GET DIAGNOSTICS n = ROW_COUNT;
        ms := 1000 * extract(epoch FROM clock_timestamp() - started)::double precision;
        wal_bytes := public.bench_wal_position() - before;
        -- (Of a table on this server: only the bare temporary table's is used.)
        bytes_per_row := pg_total_relation_size(target::regclass) / nullif(n, 0);
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'bench: undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;


-- The time in milliseconds of one import_connect of `records` Posit
-- records (and the content list they need) into workspace `workspace`,
-- undone afterwards. The records are made here: sessions and visits of the
-- last 30 days over 50 content items and 20,000 users, a third anonymous.
CREATE OR REPLACE FUNCTION public.bench_import_connect_ms(workspace text, records integer)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    usage jsonb;
    content jsonb;
    started timestamptz;
    elapsed double precision;
    result record;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('guid', 'bench-content-' || c, 'name', 'bench-content-' || c,
                                        'title', 'Bench content ' || c, 'access_type', 'all'))
      INTO content FROM generate_series(0, 49) c;
    SELECT jsonb_agg(CASE WHEN i % 5 = 0
               THEN jsonb_build_object('content_guid', 'bench-content-' || (i % 50),
                        'user_guid', CASE WHEN i % 3 = 0 THEN NULL ELSE 'u-' || (i * 7919 % 20000) END,
                        'time', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                        'variant_key', 'v', 'rendering_id', 1, 'bundle_id', 1, 'path', '/', 'data_version', 1)
               ELSE jsonb_build_object('content_guid', 'bench-content-' || (i % 50),
                        'user_guid', CASE WHEN i % 3 = 0 THEN NULL ELSE 'u-' || (i * 7919 % 20000) END,
                        'started', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                        'ended', to_char((t + (i % 600) * interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                        'data_version', 1) END)
      INTO usage
      FROM generate_series(1, records) i,
           LATERAL (SELECT now() - interval '30 days' + (i::double precision / records) * interval '29 days' AS t) x;
    BEGIN
        started := clock_timestamp();
        SELECT * INTO result FROM audience.import_connect(workspace, usage, NULL, content);
        elapsed := 1000 * extract(epoch FROM clock_timestamp() - started)::double precision;
        IF result.recorded <> records THEN
            RAISE EXCEPTION 'bench: import_connect recorded % of % records', result.recorded, records;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'bench: undo';
    EXCEPTION WHEN raise_exception THEN
        IF SQLERRM <> 'bench: undo' THEN
            RAISE;
        END IF;
    END;
    RETURN elapsed;
END
$$;


-- Bytes on disk per event of the data set as loaded, each table with its
-- indexes and TOAST: the events (every partition of view_events), the
-- viewers and rollups (every other table of the extension), and both.
CREATE OR REPLACE FUNCTION public.bench_bytes_per_event(events bigint)
RETURNS TABLE (event_bytes bigint, rollup_bytes bigint, all_bytes bigint) LANGUAGE sql AS $$
    WITH sizes AS (
        SELECT c.relispartition AS is_event, public.bench_table_bytes(c.oid) AS bytes
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('audience_internal', 'audience_ingest') AND c.relkind = 'r'
    )
    SELECT (sum(bytes) FILTER (WHERE is_event) / events)::bigint,
           (sum(bytes) FILTER (WHERE NOT is_event) / events)::bigint,
           (sum(bytes) / events)::bigint
      FROM sizes
$$;

