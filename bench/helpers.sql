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

-- The time in milliseconds of one COPY from a server-side file into
-- `target`, undone afterwards (the data set stays as built).
CREATE OR REPLACE FUNCTION public.bench_copy_ms(target text, file text)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz;
    elapsed double precision;
BEGIN
    BEGIN
        started := clock_timestamp();
        EXECUTE format('COPY %s (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) FROM %L', target, file);
        elapsed := 1000 * extract(epoch FROM clock_timestamp() - started)::double precision;
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'bench: undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN elapsed;
END
$$;

