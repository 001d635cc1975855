//! `#[pg_test]` units for the Posit-style usage answers (sql/usage.sql):
//! every answer equals plain SQL over the raw events, for windows aligned to
//! the workspace's local midnight and windows that start and end mid-day,
//! in a time zone behind UTC and one ahead of it, after events arrive by
//! every write path, after sessions end, after a Posit Connect import and
//! after a viewer is forgotten.

use pgrx::prelude::*;

use crate::test_sql::{assert_rollups_match_events, difference, one, run};

/// Workspace `use` in `time_zone`, with apps `pub` (public), `priv`
/// (private), `turns` (public until now, private from now on) and `quiet`
/// (never viewed); an admin, two viewer members (`straddle@example.com`,
/// whose views straddle the identification start, and `user7@example.com`,
/// also a generated viewer) and an invited viewer. Workspace `other` sees
/// one of the same viewers. Views arrive by record_view, record_views and
/// COPY (a third each); then some sessions are ended, some ended again.
///
/// `pg_temp.local(days, clock)` is the time `clock` after local midnight `days`
/// days ago in the workspace's zone. The identification start is
/// `local(5, '13:27:11')`.
pub(crate) fn load_usage_data(time_zone: &str) {
    run(&format!(
        "SELECT audience.create_workspace('use');
         SELECT audience.configure_workspace('use', time_zone => '{time_zone}');
         SELECT audience.create_workspace('other');
         SELECT audience.create_app('other', 'pub');
         SELECT audience.create_app('use', 'pub');
         SELECT audience.create_app('use', 'priv', 'private');
         SELECT audience.create_app('use', 'turns');
         SELECT audience.create_app('use', 'quiet');
         SELECT audience.add_member('use', 'admin@example.com', 'admin');
         SELECT audience.add_member('use', 'straddle@example.com', 'viewer');
         SELECT audience.add_member('use', 'user7@example.com', 'viewer');
         SELECT audience.invite_viewer('use', 'invited@example.com');
         SELECT audience.set_app_visibility('use', 'turns', 'private');
         CREATE FUNCTION pg_temp.local(days integer, clock interval DEFAULT '0') RETURNS timestamptz
         LANGUAGE sql STABLE AS $$
             SELECT ((date_trunc('day', now() AT TIME ZONE w.time_zone) - make_interval(days => days)) + clock)
                    AT TIME ZONE w.time_zone
               FROM audience_internal.workspaces w WHERE w.slug = 'use'
         $$;
         SELECT audience.configure_workspace('use', identification_start => pg_temp.local(5, '13:27:11'));"
    ));
    run("CREATE TEMP TABLE t_events (
             n serial, workspace text DEFAULT 'use', app text, viewer text, anonymous_id text,
             viewed_at timestamptz, ended_at timestamptz, kind text);
         INSERT INTO t_events (app, viewer, anonymous_id, viewed_at, ended_at, kind) VALUES
         -- A second either side of local midnight ten days ago; a session across it.
         ('pub', 'a@example.com', NULL, pg_temp.local(10) - interval '1 second', pg_temp.local(10) + interval '10 minutes', 'session'),
         ('pub', 'a@example.com', NULL, pg_temp.local(10), pg_temp.local(10) + interval '1 hour', 'session'),
         ('pub', 'b@example.com', NULL, pg_temp.local(10) + interval '1 second', NULL, 'session'),
         ('pub', NULL, 'cookie-1', pg_temp.local(10) - interval '1 second', NULL, 'visit'),
         ('pub', NULL, 'cookie-1', pg_temp.local(9), NULL, 'visit'),
         -- Longer than a day: session time in days and hours.
         ('priv', 'a@example.com', NULL, pg_temp.local(10) - interval '1 second', pg_temp.local(10) + interval '26 hours', 'session'),
         -- An outsider in two apps: by identity on the private one, a pseudonym on the public one.
         ('priv', 'both@example.com', NULL, pg_temp.local(3, '08:00'), pg_temp.local(3, '08:45'), 'session'),
         ('pub', 'both@example.com', NULL, pg_temp.local(3, '09:00'), pg_temp.local(3, '09:00:03'), 'session'),
         ('pub', 'both@example.com', NULL, pg_temp.local(3, '09:30'), NULL, 'visit'),
         ('pub', 'both@example.com', NULL, pg_temp.local(2, '09:30'), pg_temp.local(2, '09:30:01'), 'visit'),
         -- A member on both sides of the identification start (local(5, '13:27:11')).
         ('pub', 'straddle@example.com', NULL, pg_temp.local(5, '13:27:10'), pg_temp.local(5, '13:40'), 'session'),
         ('pub', 'straddle@example.com', NULL, pg_temp.local(5, '13:27:11'), NULL, 'session'),
         ('pub', 'straddle@example.com', NULL, pg_temp.local(6, '23:59:59'), pg_temp.local(5, '00:00:01'), 'session'),
         ('pub', 'straddle@example.com', NULL, pg_temp.local(4, '12:00'), pg_temp.local(4, '12:30'), 'session'),
         ('priv', 'straddle@example.com', NULL, pg_temp.local(5, '01:00'), NULL, 'visit'),
         -- The app that turned private now: public before, private after.
         ('turns', 'c@example.com', NULL, now() - interval '2 days', now() - interval '47 hours', 'session'),
         ('turns', 'c@example.com', NULL, now() + interval '10 minutes', NULL, 'session'),
         ('turns', 'straddle@example.com', NULL, now() - interval '1 day', NULL, 'visit'),
         ('turns', NULL, 'cookie-2', now() + interval '5 minutes', NULL, 'visit');
         INSERT INTO t_events (workspace, app, viewer, viewed_at, ended_at, kind)
         VALUES ('other', 'pub', 'a@example.com', pg_temp.local(10), pg_temp.local(10) + interval '2 hours', 'session');
         CREATE TEMP TABLE t_fixture AS SELECT viewed_at FROM t_events;
         -- A spread over 14 months, out of order, with open and ended sessions and visits.
         INSERT INTO t_events (app, viewer, anonymous_id, viewed_at, ended_at, kind)
         SELECT (ARRAY['pub', 'pub', 'priv', 'turns'])[1 + i % 4],
                CASE WHEN i % 5 = 0 THEN NULL ELSE 'user' || (i * 7919 % 37) || '@example.com' END,
                'anon-' || (i % 11), t,
                CASE WHEN i % 6 = 0 OR i % 4 = 1 THEN NULL ELSE t + ((i * 31) % 9000) * interval '1 second' END,
                CASE WHEN i % 6 = 0 THEN 'visit' ELSE 'session' END
           FROM generate_series(1, 1500) i,
                LATERAL (SELECT now() - interval '2 hours' - ((i * 104729) % (420 * 86400)) * interval '1 second' AS t) x;");
    // A third of the events each way: one by one, as a JSON batch, by COPY.
    run("SELECT count(audience.record_view(workspace, app, viewer, viewed_at, anonymous_id, ended_at, kind))
           FROM (SELECT * FROM t_events WHERE n % 3 = 0 ORDER BY n) e");
    assert_rollups_match_events("after record_view");
    run("SELECT audience.record_views(jsonb_agg(jsonb_strip_nulls(to_jsonb(e) - 'n') ORDER BY e.n))
           FROM t_events e WHERE n % 3 = 1");
    assert_rollups_match_events("after record_views");
    run("INSERT INTO audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)
         SELECT workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind FROM t_events WHERE n % 3 = 2 ORDER BY n");
    assert_eq!(
        one::<i64>("SELECT count(*) FROM audience_internal.view_events"),
        one::<i64>("SELECT count(*) FROM t_events"),
        "every event stored"
    );
    assert_rollups_match_events("after COPY");
    // Sessions ended later, some of them ended a second time (not the
    // fixture's, which the tests below read as written).
    run("DO $$
         DECLARE r record;
         BEGIN
             FOR r IN SELECT e.event_id, e.viewed_at + (e.event_id % 50 + 1) * interval '1 minute' AS ended
                        FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)
                       WHERE w.slug = 'use' AND e.kind = 'session' AND e.event_id % 3 = 0
                         AND e.viewed_at < now() - interval '1 hour'
                         AND e.viewed_at NOT IN (SELECT viewed_at FROM t_fixture)
                       ORDER BY e.event_id
             LOOP
                 PERFORM audience.end_session(r.event_id, r.ended);
             END LOOP;
         END $$");
    assert_rollups_match_events("after end_session");
    // The oracle: every view of workspace `use`, with its local time, its
    // ended-session time, and the label docs/spec.md §2 gives it.
    run("CREATE TEMP VIEW usage_ev AS
         SELECT e.event_id, a.slug AS app, a.visibility, e.viewer_id, e.viewed_at, e.ended_at, e.kind,
                e.viewed_at AT TIME ZONE w.time_zone AS local_at,
                CASE WHEN e.kind = 'session' AND e.ended_at IS NOT NULL THEN e.ended_at - e.viewed_at END AS spent,
                CASE WHEN e.kind = 'session' THEN e.ended_at END AS session_end,
                i.identified,
                CASE WHEN i.identified THEN coalesce(m.identity, v.identity)
                     ELSE audience_internal.viewer_pseudonym(k.pseudonym_key, v.viewer_hash, '') END AS label,
                audience_internal.viewer_ref(k.pseudonym_key, v.viewer_hash, i.identified, '') AS ref
           FROM audience_internal.view_events e
           JOIN audience_internal.workspaces w USING (workspace_id)
           JOIN audience_internal.workspace_keys k USING (workspace_id)
           JOIN audience_internal.apps a USING (workspace_id, app_id)
           JOIN audience_internal.viewers v USING (workspace_id, viewer_id)
           LEFT JOIN audience_internal.members m
             ON m.workspace_id = e.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
          CROSS JOIN LATERAL (SELECT e.viewed_at >= w.identification_start
                                     AND (m.member_id IS NOT NULL OR e.identifiable) AS identified) i
          WHERE w.slug = 'use'");
}

/// Windows (name, since, until) as SQL: aligned to local midnight, starting
/// or ending mid-day, starting just after views of its first day (which a
/// read that only counts takes whole, less those views), within one day, a second either side of midnight,
/// containing the identification start, around now, up to now (views of
/// today after it), whole months and parts of two, everything, UTC
/// midnights, and none of the data.
pub(crate) const WINDOWS: [(&str, &str, &str); 15] = [
    ("30 whole local days", "pg_temp.local(30)", "pg_temp.local(0)"),
    ("mid-day to mid-day", "pg_temp.local(20, '07:13')", "pg_temp.local(2, '16:00')"),
    ("just after a midnight with views", "pg_temp.local(10) + interval '500 milliseconds'", "pg_temp.local(3, '08:30')"),
    ("within the identification day", "pg_temp.local(5, '01:00')", "pg_temp.local(5, '20:00')"),
    ("a second either side of midnight", "pg_temp.local(10) - interval '1 second'", "pg_temp.local(10) + interval '1 second'"),
    ("ending at midnight", "pg_temp.local(12, '18:00')", "pg_temp.local(10)"),
    ("starting at midnight, ending mid-day", "pg_temp.local(10)", "pg_temp.local(3, '08:30')"),
    ("whole days around the identification day", "pg_temp.local(6)", "pg_temp.local(4)"),
    ("identification day to mid-day", "pg_temp.local(5)", "pg_temp.local(4, '12:00')"),
    ("around now", "now() - interval '3 days'", "now() + interval '2 hours'"),
    ("up to now, the day's latest views after it", "now() - interval '20 days'", "now()"),
    ("whole months and parts of two", "pg_temp.local(100, '12:00')", "pg_temp.local(20, '12:00')"),
    ("everything", "now() - interval '430 days'", "now() + interval '1 hour'"),
    ("UTC midnights", "(current_date - 15)::timestamp AT TIME ZONE 'UTC'", "(current_date - 1)::timestamp AT TIME ZONE 'UTC'"),
    ("no data", "pg_temp.local(1000)", "pg_temp.local(999, '12:00')"),
];

/// The time `sql` denotes now, as a literal that means the same in any session.
pub(crate) fn literal(sql: &str) -> String {
    format!("'{}'::timestamptz", one::<String>(&format!("SELECT to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")))
}

/// The apps of workspace `use`, and None for every app at once.
fn app_choices() -> Vec<Option<String>> {
    let mut apps: Vec<Option<String>> = Spi::connect(|c| {
        c.select("SELECT a.slug FROM audience_internal.apps a JOIN audience_internal.workspaces w USING (workspace_id)
                   WHERE w.slug = 'use' ORDER BY 1", None, &[])
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap())
            .collect()
    });
    apps.insert(0, None);
    apps
}

fn sql_text(app: &Option<String>) -> String {
    app.as_ref().map_or("NULL".to_string(), |a| format!("'{a}'"))
}

/// top_apps of workspace `use` in [s, u), and the same in plain SQL over
/// the views that satisfy `only` (a condition on `e`, a row of usage_ev).
pub(crate) fn top_apps_sql(s: &str, u: &str, only: &str) -> (String, String) {
    (
        format!("SELECT app, visibility, views, sessions, visits, unique_viewers, session_time
                   FROM audience.top_apps('use', {s}, {u}, 100)"),
        format!("SELECT e.app, e.visibility, count(*), count(*) FILTER (WHERE e.kind = 'session'),
                        count(*) FILTER (WHERE e.kind = 'visit'), count(DISTINCT e.viewer_id),
                        justify_hours(coalesce(sum(e.spent), interval '0'))
                   FROM usage_ev e WHERE e.viewed_at >= {s} AND e.viewed_at < {u} AND {only} GROUP BY e.app, e.visibility"),
    )
}

/// usage_over_time, with the row order: in plain SQL, one row per bucket
/// that holds a local day overlapping the window, empty ones too.
pub(crate) fn usage_sql(time_zone: &str, app: &str, s: &str, u: &str, bucket: &str, only: &str) -> (String, String) {
    (
        format!("SELECT period, views, sessions, visits, unique_viewers, session_time, ord
                   FROM audience.usage_over_time('use', {app}, {s}, {u}, '{bucket}')
                        WITH ORDINALITY t(period, views, sessions, visits, unique_viewers, session_time, ord)"),
        format!("WITH days AS (
                     SELECT d FROM generate_series(({s} AT TIME ZONE '{time_zone}')::date::timestamp,
                                                   ({u} AT TIME ZONE '{time_zone}'), interval '1 day') d
                      WHERE d < ({u} AT TIME ZONE '{time_zone}')
                        AND d + interval '1 day' > ({s} AT TIME ZONE '{time_zone}')),
                 periods AS (SELECT DISTINCT date_trunc('{bucket}', d)::date AS period FROM days)
                 SELECT p.period, count(e.event_id), count(e.event_id) FILTER (WHERE e.kind = 'session'),
                        count(e.event_id) FILTER (WHERE e.kind = 'visit'), count(DISTINCT e.viewer_id),
                        justify_hours(coalesce(sum(e.spent), interval '0')),
                        row_number() OVER (ORDER BY p.period)
                   FROM periods p
                   LEFT JOIN usage_ev e ON date_trunc('{bucket}', e.local_at)::date = p.period
                         AND e.viewed_at >= {s} AND e.viewed_at < {u} AND {only}
                  GROUP BY p.period"),
    )
}

/// top_viewers: one row per viewer and label.
pub(crate) fn top_viewers_sql(app: &str, s: &str, u: &str, only: &str) -> (String, String) {
    (
        format!("SELECT viewer, viewer_ref, pseudonymous, views, sessions, session_time, last_viewed_at
                   FROM audience.top_viewers('use', {app}, {s}, {u}, 1000)"),
        format!("SELECT e.label, e.ref, NOT e.identified, count(*), count(*) FILTER (WHERE e.kind = 'session'),
                        justify_hours(coalesce(sum(e.spent), interval '0')), max(e.viewed_at)
                   FROM usage_ev e WHERE e.viewed_at >= {s} AND e.viewed_at < {u} AND {only}
                  GROUP BY e.viewer_id, e.identified, e.label, e.ref"),
    )
}

/// viewer_trend over `months` months, with the row order: distinct viewers
/// per local month, against the month before.
pub(crate) fn trend_sql(time_zone: &str, app: &str, months: i32, only: &str) -> (String, String) {
    (
        format!("SELECT month, unique_viewers, previous, change, change_pct, complete, ord
                   FROM audience.viewer_trend('use', {app}, {months})
                        WITH ORDINALITY t(month, unique_viewers, previous, change, change_pct, complete, ord)"),
        format!("WITH cur AS (SELECT date_trunc('month', now() AT TIME ZONE '{time_zone}') AS cur),
                 counts AS (
                     SELECT k, (cur - make_interval(months => k))::date AS month,
                            (SELECT count(DISTINCT e.viewer_id) FROM usage_ev e
                              WHERE date_trunc('month', e.local_at) = cur - make_interval(months => k) AND {only}) AS n
                       FROM cur, generate_series(0, {months}) k)
                 SELECT c.month, c.n, p.n, c.n - p.n,
                        CASE WHEN p.n > 0 THEN round(100.0 * (c.n - p.n) / p.n, 1) END, c.k > 0, {months} - c.k
                   FROM counts c JOIN counts p ON p.k = c.k + 1
                  WHERE c.k < {months}"),
    )
}

/// The rows of `ours` and `plain`, which must be the same multiset.
pub(crate) fn assert_same(what: &str, ours: &str, plain: &str) {
    let n = difference(ours, plain);
    if n != 0 {
        let show = |sql: &str| one::<String>(&format!("SELECT coalesce(string_agg(t::text, E'\\n'), '(none)') FROM ({sql}) t"));
        panic!("{what}: {n} rows differ\nours:\n{}\nplain SQL:\n{}", show(ours), show(plain));
    }
}

/// Every usage answer of workspace `use` equals plain SQL over the raw events.
pub(crate) fn assert_usage_equals_plain_sql(context: &str) {
    let time_zone = one::<String>("SELECT time_zone FROM audience_internal.workspaces WHERE slug = 'use'");
    let apps = app_choices();
    let mut nonempty = 0;
    for (name, since, until) in WINDOWS {
        let (s, u) = (literal(since), literal(until));
        let window = format!("e.viewed_at >= {s} AND e.viewed_at < {u}");
        let what = |f: &str| format!("{context}, {name}: {f}");
        nonempty += one::<i64>(&format!("SELECT count(*) FROM usage_ev e WHERE {window}"));

        let (ours, plain) = top_apps_sql(&s, &u, "true");
        assert_same(&what("top_apps"), &ours, &plain);
        // Most views first, ties by app; max_apps keeps the first rows.
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM audience.top_apps('use', {s}, {u}, 100) WITH ORDINALITY t
                  WHERE t.ordinality <> (SELECT count(*) FROM audience.top_apps('use', {s}, {u}, 100) x
                                          WHERE x.views > t.views OR (x.views = t.views AND x.app <= t.app))"
            )),
            0,
            "{}",
            what("top_apps order")
        );
        assert_same(
            &what("top_apps max_apps"),
            &format!("SELECT t.* FROM audience.top_apps('use', {s}, {u}, 2) WITH ORDINALITY t(a, b, c, d, e, f, g, o)"),
            &format!("SELECT t.* FROM audience.top_apps('use', {s}, {u}, 100) WITH ORDINALITY t(a, b, c, d, e, f, g, o) WHERE o <= 2"),
        );

        for app in &apps {
            let only = app.as_ref().map_or("true".to_string(), |a| format!("e.app = '{a}'"));
            let app_sql = sql_text(app);
            for bucket in ["day", "week", "month"] {
                let (ours, plain) = usage_sql(&time_zone, &app_sql, &s, &u, bucket, &only);
                assert_same(&what(&format!("usage_over_time {app_sql} by {bucket}")), &ours, &plain);
            }
            if app.as_deref() == Some("quiet") {
                continue;
            }
            // Per viewer and per label: identified and pseudonymous views apart.
            let (ours, plain) = top_viewers_sql(&app_sql, &s, &u, &only);
            assert_same(&what(&format!("top_viewers {app_sql}")), &ours, &plain);
            assert_eq!(
                one::<i64>(&format!(
                    "SELECT count(*) FROM (SELECT views, last_viewed_at, lag(views) OVER w AS pv, lag(last_viewed_at) OVER w AS pl
                                             FROM audience.top_viewers('use', {app_sql}, {s}, {u}, 1000) WITH ORDINALITY t
                                           WINDOW w AS (ORDER BY ordinality)) x
                      WHERE views > pv OR (views = pv AND last_viewed_at > pl)"
                )),
                0,
                "{}",
                what(&format!("top_viewers {app_sql} order"))
            );
            assert_same(
                &what(&format!("top_viewers {app_sql} max_viewers")),
                &format!("SELECT t.* FROM audience.top_viewers('use', {app_sql}, {s}, {u}, 3) WITH ORDINALITY t(a, b, c, d, e, f, g, o)"),
                &format!("SELECT t.* FROM audience.top_viewers('use', {app_sql}, {s}, {u}, 1000)
                                 WITH ORDINALITY t(a, b, c, d, e, f, g, o) WHERE o <= 3"),
            );
            let Some(app) = app else { continue };
            // Every view a row, newest first; min_duration drops only ended sessions shorter than it.
            for min in ["NULL", "interval '5 seconds'", "interval '20 minutes'"] {
                assert_same(
                    &what(&format!("app_sessions {app} min_duration {min}")),
                    &format!("SELECT t.* FROM audience.app_sessions('use', '{app}', {s}, {u}, {min}, 10000)
                                     WITH ORDINALITY t(a, b, c, d, e, f, g, o)"),
                    &format!("SELECT e.label, e.ref, NOT e.identified, e.viewed_at, e.session_end, e.session_end - e.viewed_at, e.kind,
                                     row_number() OVER (ORDER BY e.viewed_at DESC, e.event_id DESC)
                                FROM usage_ev e
                               WHERE {window} AND e.app = '{app}'
                                 AND NOT (e.kind = 'session' AND e.ended_at IS NOT NULL
                                          AND e.ended_at - e.viewed_at < coalesce({min}, interval '0'))"),
                );
            }
            assert_same(
                &what(&format!("app_sessions {app} max_sessions")),
                &format!("SELECT t.* FROM audience.app_sessions('use', '{app}', {s}, {u}, NULL, 4) WITH ORDINALITY t(a, b, c, d, e, f, g, o)"),
                &format!("SELECT t.* FROM audience.app_sessions('use', '{app}', {s}, {u}, NULL, 10000)
                                 WITH ORDINALITY t(a, b, c, d, e, f, g, o) WHERE o <= 4"),
            );
        }
    }
    assert!(nonempty > 1000, "{context}: the windows hold only {nonempty} views");

    // Month over month, in the workspace's zone: 16 months reach back before the data.
    for app in &apps {
        let only = app.as_ref().map_or("true".to_string(), |a| format!("e.app = '{a}'"));
        let app_sql = sql_text(app);
        for months in [1, 16] {
            let (ours, plain) = trend_sql(&time_zone, &app_sql, months, &only);
            assert_same(&format!("{context}: viewer_trend {app_sql} {months} months"), &ours, &plain);
        }
    }
    // The figures compared above include a month after an empty one and percentages.
    assert!(
        one::<i64>("SELECT count(*) FILTER (WHERE previous = 0 AND change_pct IS NULL) * count(*) FILTER (WHERE change_pct IS NOT NULL)
                      FROM audience.viewer_trend('use', NULL, 16)") > 0,
        "{context}: viewer_trend covers no empty previous month or no percentage"
    );
}

/// Posit Connect records into `use`: sessions a second either side of local
/// midnight eight days ago, one left open, visits, an anonymous visitor, a
/// user missing from the users list, on a known app (`pub`, matched by
/// name) and on a new private one; then an overlapping page that ends the
/// open session.
pub(crate) fn import_posit_records() {
    let users = r#"'[{"guid": "u-a", "username": "a", "email": "a@example.com"},
                    {"guid": "u-s", "username": "straddle", "email": "straddle@example.com"},
                    {"guid": "u-k", "username": "kim", "email": ""}]'"#;
    let content = r#"'[{"guid": "g-pub", "name": "pub", "title": "Public", "access_type": "all"},
                      {"guid": "g-new", "name": "Imported", "title": "Imported App", "access_type": "acl"}]'"#;
    let first = one::<String>(&format!(
        "SELECT r::text FROM audience.import_connect('use', jsonb_build_array(
             jsonb_build_object('content_guid', 'g-pub', 'user_guid', 'u-a', 'started', pg_temp.local(8) - interval '1 second',
                                'ended', pg_temp.local(8) + interval '5 minutes', 'data_version', 1),
             jsonb_build_object('content_guid', 'g-pub', 'user_guid', 'u-s', 'started', pg_temp.local(8), 'ended', NULL),
             jsonb_build_object('content_guid', 'g-new', 'user_guid', 'u-zed', 'started', pg_temp.local(7, '10:00'),
                                'ended', pg_temp.local(7, '10:00:02')),
             jsonb_build_object('content_guid', 'g-new', 'user_guid', NULL, 'time', pg_temp.local(7, '11:00'),
                                'variant_key', 'v1', 'rendering_id', 7, 'bundle_id', 3, 'path', '/'),
             jsonb_build_object('content_guid', 'g-pub', 'user_guid', NULL, 'time', pg_temp.local(8) + interval '1 second'),
             jsonb_build_object('content_guid', 'g-pub', 'user_guid', 'u-k', 'time', pg_temp.local(6, '23:59:59'))),
           {users}, {content}) r"
    ));
    assert_eq!(first, "(6,0,1)", "recorded, duplicates, apps_created of the first page");
    assert_rollups_match_events("after import_connect");
    let second = one::<String>(&format!(
        "SELECT r::text FROM audience.import_connect('use', jsonb_build_array(
             jsonb_build_object('content_guid', 'g-pub', 'user_guid', 'u-s', 'started', pg_temp.local(8),
                                'ended', pg_temp.local(8) + interval '3 hours'),
             jsonb_build_object('content_guid', 'g-pub', 'user_guid', 'u-a', 'started', pg_temp.local(8) - interval '1 second',
                                'ended', pg_temp.local(8) + interval '5 minutes'),
             jsonb_build_object('content_guid', 'g-new', 'user_guid', 'u-zed', 'started', pg_temp.local(7, '12:00'),
                                'ended', pg_temp.local(7, '12:30'))),
           {users}) r"
    ));
    assert_eq!(second, "(1,2,0)", "recorded, duplicates, apps_created of the overlapping page");
    assert_eq!(
        one::<String>("SELECT ended_at - started_at || ' ' || kind FROM audience.app_sessions('use', 'pub', pg_temp.local(8), pg_temp.local(8) + interval '1 second')"),
        "03:00:00 session",
        "the session imported open got its end"
    );
    assert_rollups_match_events("after an overlapping import_connect");
}

/// Every viewer set of the rollups holds exactly the viewers of its events,
/// per app and day, workspace and day, and app and month, and every packed
/// viewer counter their views, against the raw events themselves (rollups_vs_rebuild compares with a rebuild by the
/// same fold).
pub(crate) fn assert_viewer_sets_equal_events(context: &str) {
    one::<i64>("SELECT audience_internal.fold_pending(ARRAY(SELECT workspace_id FROM audience_internal.workspaces))");
    let events = "SELECT DISTINCT e.workspace_id, e.app_id, audience_internal.day_of(e.viewed_at, w.time_zone) AS day, e.viewer_id
                    FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)";
    let per_app = difference(
        "SELECT d.workspace_id, d.app_id, d.day, unnest(audience_internal.viewer_set_ids(d.viewers)) FROM audience_internal.app_days d",
        events,
    );
    let per_workspace = difference(
        "SELECT d.workspace_id, d.day, unnest(audience_internal.viewer_set_ids(d.viewers)) FROM audience_internal.workspace_days d",
        &format!("SELECT DISTINCT workspace_id, day, viewer_id FROM ({events}) e"),
    );
    let per_app_month = difference(
        "SELECT m.workspace_id, m.app_id, m.month, unnest(audience_internal.viewer_set_ids(m.viewers)) FROM audience_internal.app_months m",
        "SELECT DISTINCT e.workspace_id, e.app_id, audience_internal.month_of(e.viewed_at, w.time_zone), e.viewer_id
           FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)",
    );
    // A workspace day's packed viewer counters, against the same value made
    // from its raw events one by one (a packed value has one form).
    let viewer_counts = difference(
        "SELECT d.workspace_id, d.day, d.viewer_counts FROM audience_internal.workspace_days d",
        "SELECT e.workspace_id, audience_internal.day_of(e.viewed_at, w.time_zone),
                audience_internal.viewer_counts(array_agg(e.viewer_id), array_agg(e.identifiable),
                    array_agg((e.kind = 'session')::int::bigint), array_agg((e.kind = 'visit')::int::bigint),
                    array_agg(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at)), array_agg(e.viewed_at))
           FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)
          GROUP BY 1, 2",
    );
    assert_eq!(
        (per_app, per_workspace, per_app_month, viewer_counts),
        (0, 0, 0, 0),
        "viewer sets or counters {context} differ from the events' viewers"
    );
}

#[pg_schema]
mod tests {
    use super::*;

    fn answers_equal_plain_sql_in(time_zone: &str) {
        load_usage_data(time_zone);
        assert_usage_equals_plain_sql(&format!("{time_zone}, after ingest"));
        assert_viewer_sets_equal_events("after ingest");
        import_posit_records();
        assert_usage_equals_plain_sql(&format!("{time_zone}, after import_connect"));
        let removed = one::<String>(
            "SELECT string_agg(workspace || ':' || events, ' ' ORDER BY workspace) FROM audience.forget_viewer('A@example.com')",
        );
        assert!(removed.starts_with("other:1 use:"), "forget_viewer removed {removed}");
        assert_rollups_match_events("after forget_viewer");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience.top_viewers('use', NULL, now() - interval '430 days', now() + interval '1 hour', 1000)
                         WHERE viewer = 'a@example.com'"),
            0
        );
        assert_usage_equals_plain_sql(&format!("{time_zone}, after forget_viewer"));
        assert_viewer_sets_equal_events("after forget_viewer");
    }

    #[pg_test(error = "invalid argument \"viewers\": is not a viewer set")]
    fn a_damaged_viewer_set_is_an_error_not_a_count() {
        one::<i64>("SELECT audience_internal.viewer_set_count(ARRAY['\\x0102'::bytea])");
    }

    /// The top of packed viewer counters takes, per value, one sign and four
    /// labels: arrays that do not line up with the values are refused, and
    /// the error names the argument.
    #[pg_test]
    fn viewer_counts_top_refuses_arrays_that_do_not_line_up() {
        let value = "audience_internal.viewer_counts(ARRAY[1]::bigint[], ARRAY[true], ARRAY[1]::bigint[], ARRAY[0]::bigint[],
                                                     ARRAY[0]::bigint[], ARRAY[now()])";
        let four = "ARRAY[false, true, false, true]";
        let times = "ARRAY[NULL, NULL, NULL, NULL]::timestamptz[]";
        for (take_off, identified, label_at, expected) in [
            ("ARRAY[false, false]", format!("{four} || {four}"), format!("{times} || {times}"), "ok"),
            ("ARRAY[false, true]", format!("{four} || {four}"), format!("{times} || {times}"), "ok"),
            ("ARRAY[false]", format!("{four} || {four}"), format!("{times} || {times}"),
             "22023: invalid argument \"take_off\": must have one entry per packed value"),
            ("NULL", format!("{four} || {four}"), format!("{times} || {times}"),
             "22023: invalid argument \"take_off\": must have one entry per packed value"),
            ("ARRAY[false, false]", four.to_string(), format!("{times} || {times}"),
             "22023: invalid argument \"identified\": must have four entries per packed value"),
            ("ARRAY[false, false]", format!("{four} || {four}"), times.to_string(),
             "22023: invalid argument \"label_at\": must have four entries per packed value"),
        ] {
            let call = format!(
                "SELECT * FROM audience_internal.viewer_counts_top(ARRAY[{value}, {value}], {take_off}, {identified}, {label_at}, '{{}}', 10)"
            );
            assert_eq!(crate::test_sql::attempt(&call), expected, "take_off {take_off}, identified {identified}");
        }
        // A value taken off as often as it is added leaves no viewer.
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM audience_internal.viewer_counts_top(ARRAY[{value}, {value}], ARRAY[false, true],
                                                                           {four} || {four}, {times} || {times}, '{{}}', 10)"
            )),
            0
        );
    }

    #[pg_test]
    fn usage_answers_equal_plain_sql_in_new_york() {
        answers_equal_plain_sql_in("America/New_York");
    }

    #[pg_test]
    fn usage_answers_equal_plain_sql_in_tokyo() {
        answers_equal_plain_sql_in("Asia/Tokyo");
    }

    #[pg_test]
    fn day_boundaries_are_local() {
        load_usage_data("Asia/Tokyo");
        // The views a second before and at local midnight ten days ago fall on two local days.
        let days = one::<String>(
            "SELECT string_agg(period - (pg_temp.local(10) AT TIME ZONE 'Asia/Tokyo')::date || ':' || views, ' ' ORDER BY period)
               FROM audience.usage_over_time('use', 'pub', pg_temp.local(10) - interval '1 second',
                                             pg_temp.local(10) + interval '1 second')",
        );
        assert_eq!(days, "-1:2 0:1", "the day before midnight has two views, the day of it one");
        // A session across midnight counts, whole, on the day it started.
        assert_eq!(
            one::<String>("SELECT string_agg(period - (pg_temp.local(10) AT TIME ZONE 'Asia/Tokyo')::date || ':' || session_time, ' ')
                             FROM audience.usage_over_time('use', 'priv', pg_temp.local(10) - interval '2 seconds', pg_temp.local(10))"),
            "-1:1 day 02:00:01"
        );
        // Weeks start on Monday, months on the 1st, in local time.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience.usage_over_time('use', NULL, now() - interval '200 days', now(), 'week')
                         WHERE extract(isodow FROM period) <> 1"),
            0
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience.usage_over_time('use', NULL, now() - interval '200 days', now(), 'month')
                         WHERE extract(day FROM period) <> 1"),
            0
        );
    }

    #[pg_test]
    fn a_cut_day_counts_whole_only_when_the_window_holds_all_its_views() {
        load_usage_data("America/New_York");
        // The fixture's latest views are at now() + 5 and + 10 minutes, and
        // its earliest more than 420 days ago; one is at local midnight ten
        // days ago. Days as offsets from the local date of now().
        let offset = |sql: &str| format!("(({sql}) AT TIME ZONE 'America/New_York')::date - (now() AT TIME ZONE 'America/New_York')::date");
        for (name, since, until, first_day, end_day) in [
            ("today after its last view", "pg_temp.local(20)", "now() + interval '2 hours'",
             "-20".to_string(), format!("{} + 1", offset("now() + interval '2 hours'"))),
            // Whole only if the later views fell on the next local day.
            ("today before its last views", "pg_temp.local(20)", "now()",
             "-20".to_string(), format!("{} + ({} > {})::integer", offset("now()"), offset("now() + interval '5 minutes'"), offset("now()"))),
            ("a first day without a view before the window", "now() - interval '430 days'", "pg_temp.local(0)",
             offset("now() - interval '430 days'"), "0".to_string()),
            ("a first day with a view before the window", "pg_temp.local(10) + interval '1 second'", "pg_temp.local(9)",
             "-9".to_string(), "-9".to_string()),
        ] {
            assert_eq!(
                one::<String>(&format!(
                    "SELECT (d.first_day - (now() AT TIME ZONE w.time_zone)::date) || ' ' || (d.end_day - (now() AT TIME ZONE w.time_zone)::date)
                       FROM audience_internal.workspaces w,
                            audience_internal.window_days(w.workspace_id, {since}, {until}) d
                      WHERE w.slug = 'use'"
                )),
                one::<String>(&format!("SELECT ({first_day}) || ' ' || ({end_day})")),
                "{name}"
            );
        }
        // A read that only counts takes a cut first day whole, less the views
        // before the window, when less of the day lies before it than in it;
        // not when more does, nor when the window ends within that day, nor
        // on the identification day (local(5)).
        for (name, since, until, first_day, minus_before) in [
            ("a second into a day", "pg_temp.local(10) + interval '1 second'", "pg_temp.local(9)", "-10", true),
            ("a second into a day, ending in it", "pg_temp.local(10) + interval '1 second'", "pg_temp.local(10, '12:00')", "-9", false),
            ("late in a day", "pg_temp.local(10, '23:00')", "pg_temp.local(8)", "-9", false),
            ("the identification day", "pg_temp.local(5, '01:00:01')", "pg_temp.local(3)", "-4", false),
        ] {
            assert_eq!(
                one::<String>(&format!(
                    "SELECT (d.first_day - (now() AT TIME ZONE w.time_zone)::date) || ' ' || (d.minus_before IS NOT DISTINCT FROM {since})
                       FROM audience_internal.workspaces w,
                            audience_internal.window_days(w.workspace_id, {since}, {until}, true) d
                      WHERE w.slug = 'use'"
                )),
                format!("{first_day} {minus_before}"),
                "{name}, subtracting"
            );
        }
    }

    #[pg_test]
    fn sessions_list_open_ones_and_keep_them_out_of_session_time() {
        load_usage_data("America/New_York");
        let (s, u) = (literal("pg_temp.local(10) - interval '1 second'"), literal("pg_temp.local(10) + interval '2 seconds'"));
        // b's session started a second after midnight and is still open.
        assert_eq!(
            one::<String>(&format!(
                "SELECT coalesce(ended_at::text, 'open') || '/' || coalesce(duration::text, 'none')
                   FROM audience.app_sessions('use', 'pub', {s}, {u}) WHERE started_at = pg_temp.local(10) + interval '1 second'"
            )),
            "open/none"
        );
        // Three sessions count, two of them ended: 10 minutes and 1 hour (+1 second).
        assert_eq!(
            one::<String>(&format!("SELECT sessions || ' ' || visits || ' ' || session_time FROM audience.top_apps('use', {s}, {u}) WHERE app = 'pub'")),
            "3 1 01:10:01"
        );
        // A 3-second session is hidden by min_duration; the visits stay, and a
        // visit given an end at ingest is still shown without one.
        let (s, u) = (literal("pg_temp.local(3)"), literal("pg_temp.local(1)"));
        let kinds = |min: &str| {
            one::<String>(&format!(
                "SELECT string_agg(kind || coalesce('+' || duration, ''), ',' ORDER BY started_at)
                   FROM audience.app_sessions('use', 'pub', {s}, {u}, {min}) s
                  WHERE started_at IN (pg_temp.local(3, '09:00'), pg_temp.local(3, '09:30'), pg_temp.local(2, '09:30'))"
            ))
        };
        assert_eq!(kinds("NULL"), "session+00:00:03,visit,visit");
        assert_eq!(kinds("interval '5 seconds'"), "visit,visit");
        assert_eq!(kinds("interval '0'"), "session+00:00:03,visit,visit");
    }

    #[pg_test]
    fn one_persons_identified_and_pseudonymous_views_are_separate_rows() {
        load_usage_data("America/New_York");
        let (s, u) = (literal("pg_temp.local(7)"), literal("pg_temp.local(3)"));
        // straddle, a member: two views before the identification start, two after.
        let straddle = "(SELECT ref FROM usage_ev WHERE viewer_id IN (SELECT viewer_id FROM usage_ev WHERE label = 'straddle@example.com'))";
        let rows = one::<String>(&format!(
            "SELECT string_agg(CASE WHEN pseudonymous THEN 'pseudonym' ELSE viewer END || ':' || views, ' ' ORDER BY pseudonymous)
                    || ' ' || count(DISTINCT viewer_ref)
               FROM audience.top_viewers('use', 'pub', {s}, {u}, 1000) WHERE viewer_ref IN {straddle}"
        ));
        assert_eq!(rows, "straddle@example.com:2 pseudonym:2 2", "two rows, with unrelated viewer_refs");
        // Pseudonymous rows never carry a name: two capitalised words.
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM audience.top_viewers('use', NULL, {s}, {u}, 1000)
                  WHERE pseudonymous AND viewer !~ '^[A-Z][a-z]+ [A-Z][a-z]+$'"
            )),
            0
        );
        // Sessions are labelled view by view the same way, with the same refs.
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(pseudonymous::text, ',' ORDER BY started_at) FROM audience.app_sessions('use', 'pub', {s}, {u})
                  WHERE started_at IN (pg_temp.local(5, '13:27:10'), pg_temp.local(5, '13:27:11'))"
            )),
            "true,false"
        );
        assert_eq!(
            difference(
                &format!("SELECT DISTINCT viewer, viewer_ref FROM audience.app_sessions('use', 'pub', {s}, {u}, NULL, 10000)"),
                &format!("SELECT viewer, viewer_ref FROM audience.top_viewers('use', 'pub', {s}, {u}, 1000)"),
            ),
            0,
            "app_sessions and top_viewers label alike"
        );
        // The outsider seen in two apps: by identity for the private app, a
        // pseudonym for the public one; never by name on the public one.
        let (s, u) = (literal("pg_temp.local(11)"), literal("pg_temp.local(1)"));
        let both = "(SELECT ref FROM usage_ev WHERE viewer_id IN (SELECT viewer_id FROM usage_ev WHERE label = 'both@example.com'))";
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(CASE WHEN pseudonymous THEN 'pseudonym' ELSE viewer END || ':' || views || ':' || sessions, ' '
                                   ORDER BY pseudonymous)
                   FROM audience.top_viewers('use', NULL, {s}, {u}, 1000) WHERE viewer_ref IN {both}"
            )),
            "both@example.com:1:1 pseudonym:3:1"
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(pseudonymous::text, ',') FROM audience.top_viewers('use', 'pub', {s}, {u}, 1000)
                  WHERE viewer_ref IN {both} OR viewer_ref IN (SELECT ref FROM usage_ev WHERE app = 'pub' AND viewed_at = pg_temp.local(10) + interval '1 second')"
            )),
            "true,true",
            "outsiders on a public app are pseudonyms"
        );
    }
}
