-- Every bad input is refused with a SQLSTATE and a message that names the
-- argument, shows no identity, and changes nothing. The cases are the lines
-- of tests/bad_input/cases.tsv (case, SQLSTATE, text the message must
-- contain, SQL), which tests/bad_input.rs runs over a socket too. Here each
-- case runs in a savepoint and its message is shown: the output below is the
-- catalogue of every error message the product gives.
begin;

-- The set-up the cases expect (the top of cases.tsv describes it).
do $$
begin
    perform audience.create_workspace('acme');
    perform audience.create_app('acme', 'dash', 'public');
    perform audience.create_app('acme', 'vault', 'private');
    perform audience.add_member('acme', 'alice@example.com', 'admin');
    perform audience.create_workspace('globex');
    perform audience.create_app('globex', 'intranet', 'private');
    perform audience.record_view('acme', 'dash', 'alice@example.com', now() - interval '1 day');
end $$;

-- The file is read by psql, not by the server: pg_regress names its input
-- directory (pg_test) in PG_ABS_SRCDIR.
\set cases_file `cat "$PG_ABS_SRCDIR/../tests/bad_input/cases.tsv"`
create temp table cases as
  select n, f[1] as name, f[2] as expected, f[3] as names, f[4] as sql,
         cardinality(f) as fields
    from regexp_split_to_table(:'cases_file', E'\n') with ordinality as l(line, n),
         string_to_array(line, E'\t') as s(f)
   where line !~ '^(#|\s*$)';

-- Every line is a case of four fields, each case named once; many pass an
-- identity, which no error may show.
select count(*) as cases,
       count(*) filter (where fields <> 4) as malformed,
       count(*) - count(distinct name) as named_twice,
       count(*) filter (where strpos(sql, 'secret.person@example.com') > 0) as passing_an_identity
  from cases;

-- What an error of a call shows the client: its SQLSTATE, message, and all
-- of message, detail, hint and context. The context leaves out the frame of
-- this function's EXECUTE, which quotes the call itself: a client sending the
-- call gets no such frame.
create function pg_temp.attempt(call text, out code text, out message text, out shown text)
language plpgsql as $$
declare
    detail text;
    hint text;
    context text;
begin
    execute call;
    code := 'accepted';
exception when others then
    get stacked diagnostics code = returned_sqlstate, message = message_text,
        detail = pg_exception_detail, hint = pg_exception_hint, context = pg_exception_context;
    context := replace(context, format('SQL statement "%s"', call), '');
    shown := concat_ws(E'\n', message, detail, hint, context);
end $$;

-- Every table of audience_internal: its rows and a digest of them.
create function pg_temp.snapshot() returns table (tbl text, rows bigint, digest text)
language plpgsql as $$
declare
    t text;
begin
    for t in select c.relname from pg_catalog.pg_class c
              where c.relnamespace = 'audience_internal'::regnamespace and c.relkind in ('r', 'p')
              order by 1 loop
        return query execute format(
            'select %L::text, count(*), coalesce(md5(string_agg(x::text, '','' order by x::text)), '''')
               from audience_internal.%I x', t, t);
    end loop;
end $$;

create temp table before as select * from pg_temp.snapshot();

create temp table outcomes as
  select c.n, c.name, c.expected, c.names, a.*
    from cases c, lateral pg_temp.attempt(c.sql) a;

-- The catalogue: each case, the SQLSTATE it got and the message.
select name as "case", code as sqlstate, message from outcomes order by n;

-- Cases not refused as the table says: another SQLSTATE, a message that does
-- not name the argument, or an identity shown.
select name as "case", expected, code, message
  from outcomes
 where code is distinct from expected
    or strpos(message, names) = 0
    or strpos(lower(shown), 'secret.person@example.com') > 0
 order by n;

-- Nothing changed; and the snapshot does see a change when there is one.
select * from pg_temp.snapshot() except select * from before;
select audience.record_view('acme', 'dash', 'alice@example.com') > 0 as recorded;
select count(*) > 0 as snapshot_changed
  from (select * from pg_temp.snapshot() except select * from before) as changed;

rollback;
