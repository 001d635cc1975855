//! `#[pg_test]` units for the bulk write path (sql/bulk_ingest.sql): COPY
//! into audience_ingest.view_imports and audience.record_views keep every rollup
//! exact, agree with record_view event for event, and refuse bad rows as
//! record_view does.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::test_sql::{assert_rollups_match_events, attempt, difference, one, run};
    use pgrx::prelude::*;

    /// Two workspaces (one counting months in New York, from a counting
    /// start), a public app, a private app, and an app that was public until
    /// now and is private from now on.
    fn set_up() {
        run("SELECT audience.create_workspace('bulk');
             SELECT audience.configure_workspace('bulk', time_zone => 'America/New_York',
                                                 counting_start => '2025-06-01 00:00+00');
             SELECT audience.create_workspace('other');
             SELECT audience.create_app('bulk', 'pub');
             SELECT audience.create_app('bulk', 'priv', 'private');
             SELECT audience.create_app('bulk', 'turns');
             SELECT audience.create_app('other', 'pub');
             SELECT audience.add_member('bulk', 'member@example.com', 'viewer');
             SELECT audience.set_app_visibility('bulk', 'turns', 'private');");
    }

    /// Events as (workspace, app, viewer, anonymous_id, viewed_at, ended_at,
    /// kind): month boundaries in UTC and New York, before and after the
    /// counting start, the same viewer in several apps, months and batches,
    /// a viewer first seen on a public app and later on a private one, an
    /// app's views from before and after it turned private, anonymous
    /// visitors, identities differing only in case and blanks, and events
    /// out of order.
    const EVENTS: &str = "SELECT * FROM (VALUES
        ('bulk', 'pub', 'a@example.com', NULL, '2026-03-01 00:00:00+00'::timestamptz, NULL::timestamptz, 'session'),
        ('bulk', 'pub', 'A@Example.com ', NULL, '2026-02-28 23:59:59+00', '2026-03-01 00:30:00+00', 'session'),
        ('bulk', 'priv', 'a@example.com', NULL, '2026-03-01 04:59:59+00', NULL, 'session'),
        ('bulk', 'priv', 'a@example.com', NULL, '2026-03-01 05:00:00+00', NULL, 'session'),
        ('bulk', 'pub', 'b@example.com', NULL, '2025-05-31 23:59:59+00', NULL, 'visit'),
        ('bulk', 'pub', 'b@example.com', NULL, '2025-06-01 00:00:00+00', NULL, 'visit'),
        ('bulk', 'pub', 'early@example.com', NULL, '2025-01-01 00:00:00+00', NULL, 'session'),
        ('bulk', 'pub', NULL, 'cookie-1', '2026-03-15 12:00:00+00', NULL, 'visit'),
        ('bulk', 'pub', NULL, ' cookie-1', '2026-03-16 12:00:00+00', NULL, 'visit'),
        ('bulk', 'priv', NULL, 'cookie-2', '2026-04-30 23:59:59+00', NULL, 'session'),
        ('bulk', 'turns', 'c@example.com', NULL, now() - interval '1 day', NULL, 'session'),
        ('bulk', 'turns', 'c@example.com', NULL, now() + interval '5 minutes', NULL, 'session'),
        ('bulk', 'turns', 'd@example.com', NULL, now() + interval '5 minutes', NULL, 'session'),
        ('bulk', 'turns', 'd@example.com', NULL, now() - interval '2 days', NULL, 'session'),
        ('bulk', 'pub', 'member@example.com', NULL, '2026-01-31 12:00:00+00', NULL, 'session'),
        ('other', 'pub', 'a@example.com', NULL, '2026-03-01 00:00:00+00', NULL, 'session')
      ) AS e(workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)
      UNION ALL
      SELECT 'bulk', CASE WHEN i % 3 = 0 THEN 'priv' ELSE 'pub' END,
             CASE WHEN i % 5 = 0 THEN NULL ELSE 'user' || (i * 7919 % 97) || '@example.com' END,
             'anon-' || (i % 13),
             '2024-06-01 00:00:00+00'::timestamptz + ((i * 104729) % (730 * 86400)) * interval '1 second',
             NULL, 'session'
        FROM generate_series(1, 1500) i";

    /// The answers a reader gets, as plain SQL over the raw events.
    fn assert_answers_equal_plain_sql() {
        let cases = [
            (
                "app months",
                "SELECT a.slug, m.month, m.unique_viewers, m.views FROM (VALUES ('pub'), ('priv'), ('turns')) a(slug),
                        audience.app_monthly_viewers('bulk', a.slug, 60) m WHERE m.views > 0",
                // Up to the current month, as the function reports: a view
                // minutes ahead may already fall in the next month.
                "SELECT a.slug, date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone)::date, count(DISTINCT e.viewer_id), count(*)
                   FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)
                   JOIN audience_internal.apps a USING (workspace_id, app_id)
                  WHERE w.slug = 'bulk'
                    AND date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone) <= date_trunc('month', now() AT TIME ZONE w.time_zone)
                  GROUP BY 1, 2",
            ),
            (
                "app totals",
                "SELECT a.slug, audience.app_total_viewers('bulk', a.slug) FROM (VALUES ('pub'), ('priv'), ('turns')) a(slug)",
                "SELECT a.slug, count(DISTINCT e.viewer_id) FILTER (WHERE e.viewed_at >= w.counting_start)
                   FROM audience_internal.apps a JOIN audience_internal.workspaces w USING (workspace_id)
                   LEFT JOIN audience_internal.view_events e USING (workspace_id, app_id)
                  WHERE w.slug = 'bulk' GROUP BY 1",
            ),
            (
                "recent viewers",
                "SELECT last_viewed_at, views FROM audience.recent_viewers('bulk', 'pub', 50)",
                "SELECT max(e.viewed_at), count(*) FROM audience_internal.view_events e
                   JOIN audience_internal.apps a USING (workspace_id, app_id) JOIN audience_internal.workspaces w USING (workspace_id)
                  WHERE w.slug = 'bulk' AND a.slug = 'pub' GROUP BY e.viewer_id ORDER BY 1 DESC, e.viewer_id DESC LIMIT 50",
            ),
        ];
        for (name, ours, plain) in cases {
            assert_eq!(difference(ours, plain), 0, "{name} differ from plain SQL");
        }
    }

    fn staged() -> i64 {
        one::<i64>("SELECT count(*) FROM audience_ingest.view_imports")
    }

    fn events() -> i64 {
        one::<i64>("SELECT count(*) FROM audience_internal.view_events")
    }

    /// The events of EVENTS as a JSON array for record_views.
    fn events_json(filter: &str) -> String {
        format!(
            "(SELECT jsonb_agg(jsonb_strip_nulls(to_jsonb(e)) ORDER BY e.viewed_at DESC) FROM ({EVENTS}) e WHERE {filter})"
        )
    }

    #[pg_test]
    fn copy_keeps_every_rollup_exact() {
        set_up();
        // What COPY does, row for row: one statement inserting into the staging table.
        run(&format!("INSERT INTO audience_ingest.view_imports ({EVENTS} ORDER BY 5)"));
        assert_eq!(staged(), 0, "the staging table keeps nothing");
        assert_eq!(events(), 1516);
        // The settings the fold uses for a big batch end with it.
        assert_eq!(
            one::<String>("SELECT current_setting('enable_nestloop') || current_setting('enable_mergejoin') || current_setting('session_replication_role')"),
            "ononorigin"
        );
        assert_rollups_match_events("after a COPY");
        assert_answers_equal_plain_sql();
        // A second import on top, the same events again, in another order.
        run(&format!("INSERT INTO audience_ingest.view_imports ({EVENTS} ORDER BY 5 DESC)"));
        assert_eq!(events(), 2 * 1516);
        assert_rollups_match_events("after a second COPY");
        assert_answers_equal_plain_sql();
        // Folded also where ordinary triggers do not fire (a restore, a replica).
        run("SET LOCAL session_replication_role = replica;
             INSERT INTO audience_ingest.view_imports (workspace, app, viewer) VALUES ('bulk', 'pub', 'late@example.com');
             SET LOCAL session_replication_role = origin;");
        assert_eq!((events(), staged()), (2 * 1516 + 1, 0));
    }

    #[pg_test]
    fn a_batch_keeps_every_rollup_exact() {
        set_up();
        let recorded = one::<i64>(&format!(
            "SELECT recorded FROM audience.record_views({})",
            events_json("true")
        ));
        assert_eq!(recorded, 1516);
        assert_rollups_match_events("after a batch");
        assert_answers_equal_plain_sql();
        // Single events and batches mix: one more of each.
        run("SELECT audience.record_view('bulk', 'pub', 'a@example.com', '2026-03-02 00:00+00')");
        run(&format!(
            "SELECT audience.record_views({})",
            events_json("e.app = 'priv'")
        ));
        assert_rollups_match_events("after single events and another batch");
        assert_answers_equal_plain_sql();
    }

    /// Everything a batch stores, by content rather than by generated id,
    /// with every pending event folded (single events wait for a fold; the
    /// rollups compared are those after it).
    fn snapshot(into: &str) {
        run(&format!(
            "SELECT audience_internal.fold_pending(ARRAY(SELECT workspace_id FROM audience_internal.workspaces));
             CREATE TEMP TABLE {into}_viewers AS
                 SELECT w.slug, v.viewer_hash, v.anonymous, v.identity FROM audience_internal.viewers v JOIN audience_internal.workspaces w USING (workspace_id);
             CREATE TEMP TABLE {into}_events AS
                 SELECT a.slug, v.viewer_hash, e.viewed_at, e.ended_at, e.kind, e.identifiable
                   FROM audience_internal.view_events e JOIN audience_internal.apps a USING (workspace_id, app_id)
                   JOIN audience_internal.viewers v USING (workspace_id, viewer_id);
             CREATE TEMP TABLE {into}_app_viewers AS
                 SELECT a.slug, v.viewer_hash, x.first_viewed_at, x.last_viewed_at, x.last_view_identifiable, x.views, x.counted_views
                   FROM audience_internal.app_viewers x JOIN audience_internal.apps a USING (workspace_id, app_id)
                   JOIN audience_internal.viewers v USING (workspace_id, viewer_id);
             CREATE TEMP TABLE {into}_app_totals AS
                 SELECT a.slug, x.viewers, x.views FROM audience_internal.app_totals x JOIN audience_internal.apps a USING (workspace_id, app_id);
             CREATE TEMP TABLE {into}_app_month_viewers AS
                 SELECT a.slug, x.month, v.viewer_hash FROM audience_internal.app_months x
                  CROSS JOIN unnest(audience_internal.viewer_set_ids(x.viewers)) s(viewer_id)
                   JOIN audience_internal.apps a USING (workspace_id, app_id)
                   JOIN audience_internal.viewers v ON v.workspace_id = x.workspace_id AND v.viewer_id = s.viewer_id;
             CREATE TEMP TABLE {into}_app_months AS
                 SELECT a.slug, x.month, x.unique_viewers, x.views FROM audience_internal.app_months x JOIN audience_internal.apps a USING (workspace_id, app_id);
             CREATE TEMP TABLE {into}_workspace_month_viewers AS
                 SELECT x.workspace_id, x.month, v.viewer_hash FROM audience_internal.workspace_months x
                  CROSS JOIN unnest(audience_internal.viewer_set_ids(x.viewers)) s(viewer_id)
                   JOIN audience_internal.viewers v ON v.workspace_id = x.workspace_id AND v.viewer_id = s.viewer_id;
             CREATE TEMP TABLE {into}_workspace_months AS
                 SELECT x.workspace_id, x.month, x.unique_viewers, x.views FROM audience_internal.workspace_months x;
             CREATE TEMP TABLE {into}_app_day_viewers AS
                 SELECT a.slug, x.day, v.viewer_hash, t.identified AS identifiable, t.sessions, t.visits, t.session_micros,
                        t.last_viewed_at
                   FROM audience_internal.app_days x
                  CROSS JOIN LATERAL audience_internal.viewer_counts_top(
                            ARRAY[x.viewer_counts], ARRAY[false], ARRAY[false, true, false, true], ARRAY[NULL, NULL, NULL, NULL]::timestamptz[],
                            '{{}}', 1000000) t
                   JOIN audience_internal.apps a USING (workspace_id, app_id)
                   JOIN audience_internal.viewers v ON v.workspace_id = x.workspace_id AND v.viewer_id = t.viewer_id;"
        ));
    }

    /// Every event, viewer and rollup row goes; workspaces, apps and members stay.
    fn forget_all_views() {
        run("DO $$
             DECLARE
                 t text;
             BEGIN
                 DELETE FROM audience_internal.view_events;
                 FOREACH t IN ARRAY audience_internal.rollup_tables() LOOP
                     EXECUTE format('DELETE FROM audience_internal.%I', t);
                 END LOOP;
                 DELETE FROM audience_internal.viewers;
             END
             $$");
    }

    #[pg_test]
    fn a_batch_stores_what_the_same_events_one_by_one_store() {
        set_up();
        // In two halves, so that the second batch meets viewers and rollup
        // rows the first one made.
        run(&format!(
            "SELECT audience.record_views({})",
            events_json("e.viewed_at < '2025-09-01'")
        ));
        run(&format!(
            "SELECT audience.record_views({})",
            events_json("e.viewed_at >= '2025-09-01'")
        ));
        snapshot("batch");
        forget_all_views();
        run(&format!(
            "SELECT count(audience.record_view(e.workspace, e.app, e.viewer, e.viewed_at, e.anonymous_id, e.ended_at, e.kind))
               FROM ({EVENTS}) e"
        ));
        snapshot("single");
        for table in [
            "viewers",
            "events",
            "app_viewers",
            "app_totals",
            "app_month_viewers",
            "app_months",
            "workspace_month_viewers",
            "workspace_months",
            "app_day_viewers",
        ] {
            assert_eq!(
                difference(&format!("TABLE batch_{table}"), &format!("TABLE single_{table}")),
                0,
                "{table}: a batch differs from the same events one by one"
            );
        }
        // Data minimisation holds the same way: only private-app viewers keep an identity.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM batch_viewers WHERE identity IS NOT NULL"),
            one::<i64>("SELECT count(DISTINCT viewer_hash) FROM batch_events WHERE identifiable")
        );
    }

    /// The error record_view raises for these arguments.
    fn single_error(args: &str) -> String {
        attempt(&format!("SELECT audience.record_view({args})"))
    }

    #[pg_test]
    fn bad_events_get_the_errors_of_record_view() {
        set_up();
        // (record_view's arguments, the same event as JSON)
        let cases = [
            ("'bulk', 'pub', NULL", r#"{"workspace": "bulk", "app": "pub"}"#),
            (
                "'bulk', 'pub', ''",
                r#"{"workspace": "bulk", "app": "pub", "viewer": ""}"#,
            ),
            (
                "'bulk', 'pub', repeat('x', 257)",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "XXX"}"#,
            ),
            (
                "'bulk', 'pub', E'a\\nb'",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a\nb"}"#,
            ),
            (
                "'bulk', 'pub', NULL, anonymous_id => '  '",
                r#"{"workspace": "bulk", "app": "pub", "anonymous_id": "  "}"#,
            ),
            (
                "'nowhere', 'pub', 'a@example.com'",
                r#"{"workspace": "nowhere", "app": "pub", "viewer": "a@example.com"}"#,
            ),
            (
                "'bulk', 'nope', 'a@example.com'",
                r#"{"workspace": "bulk", "app": "nope", "viewer": "a@example.com"}"#,
            ),
            (
                "NULL, 'pub', 'a@example.com'",
                r#"{"workspace": null, "app": "pub", "viewer": "a@example.com"}"#,
            ),
            (
                "'bulk', NULL, 'a@example.com'",
                r#"{"workspace": "bulk", "app": null, "viewer": "a@example.com"}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', NULL",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "viewed_at": null}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', 'infinity'",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "viewed_at": "infinity"}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', now() + interval '2 hours'",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "viewed_at": "FUTURE"}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', '2026-01-02', ended_at => '2026-01-01'",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "viewed_at": "2026-01-02", "ended_at": "2026-01-01"}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', '2026-01-02', ended_at => now() + interval '2 hours'",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "viewed_at": "2026-01-02", "ended_at": "FUTURE"}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', kind => 'stream'",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "kind": "stream"}"#,
            ),
            (
                "'bulk', 'pub', 'a@example.com', kind => NULL",
                r#"{"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "kind": null}"#,
            ),
        ];
        let future = one::<String>("SELECT (now() + interval '2 hours')::text");
        for (args, json) in cases {
            let json = json.replace("XXX", &"x".repeat(257)).replace("FUTURE", &future);
            let expected = single_error(args);
            assert_ne!(expected, "ok", "record_view accepted {args}");
            // Alone, and after a good event: the position is the event's index.
            let batch = format!(r#"[{{"workspace": "bulk", "app": "pub", "viewer": "good@example.com"}}, {json}]"#);
            let got = attempt(&format!("SELECT audience.record_views('{batch}')"));
            assert_eq!(got, format!("{expected} (events[1])"), "record_views on {json}");
            // The same as the second row of an import, absent columns defaulted as COPY does.
            let copy = attempt(&format!(
                "INSERT INTO audience_ingest.view_imports
                     SELECT (jsonb_populate_record(ROW(NULL, NULL, NULL, NULL, now(), NULL, 'session')::audience_ingest.view_imports, e)).*
                       FROM jsonb_array_elements('{batch}') e"
            ));
            assert_eq!(copy, format!("{expected} (row 2 of this import)"), "COPY of {json}");
            assert!(
                !got.contains("good@example.com") && !got.contains("a@example.com"),
                "an identity in {got}"
            );
        }
        assert_eq!(events(), 0, "a refused batch stores nothing");
        assert_eq!(staged(), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM audience_internal.viewers"), 0);
    }

    #[pg_test]
    fn a_bad_row_fails_the_whole_import() {
        set_up();
        run(&format!("INSERT INTO audience_ingest.view_imports ({EVENTS})"));
        let before = events();
        assert_rollups_match_events("before a refused import");
        for table in ["app_viewers", "workspace_months"] {
            run(&format!(
                "CREATE TEMP TABLE before_{table} AS SELECT * FROM audience_internal.{table}"
            ));
        }
        let outcome = attempt(&format!(
            "INSERT INTO audience_ingest.view_imports
                 ({EVENTS} UNION ALL SELECT 'bulk', 'pub', 'x@example.com', NULL, now(), NULL, 'stream')"
        ));
        assert_eq!(
            outcome,
            "22023: invalid argument \"kind\": expected one of session, visit (row 1517 of this import)"
        );
        assert_eq!(events(), before);
        assert_eq!(staged(), 0);
        for table in ["app_viewers", "workspace_months"] {
            assert_eq!(
                difference(
                    &format!("TABLE before_{table}"),
                    &format!("TABLE audience_internal.{table}")
                ),
                0,
                "{table} changed by a refused import"
            );
        }
    }

    #[pg_test]
    fn skip_mode_stores_the_good_events_and_reports_the_bad() {
        set_up();
        let row = one::<pgrx::JsonB>(
            r#"SELECT to_jsonb(r) FROM audience.record_views('[
                 {"workspace": "bulk", "app": "pub", "viewer": "a@example.com", "viewed_at": "2026-01-01 00:00+00"},
                 {"workspace": "bulk", "app": "nope", "viewer": "a@example.com"},
                 {"workspace": "bulk", "app": "pub", "viewer": "b@example.com", "viewed_at": "not a time"},
                 7,
                 {"workspace": "bulk", "app": "pub", "viewr": "c@example.com"},
                 {"workspace": "bulk", "app": "pub", "viewer": 12},
                 {"workspace": "bulk", "app": "priv", "anonymous_id": "cookie", "viewed_at": "2026-01-02 00:00+00"}
               ]', on_error => 'skip') r"#,
        );
        let r = row.0;
        assert_eq!(r["recorded"], 2);
        let skipped: Vec<(i64, String)> = r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["index"].as_i64().unwrap(),
                    s["sqlstate"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: Vec<(i64, String)> = [(1, "42704"), (2, "22007"), (3, "22023"), (4, "22023"), (5, "22023")]
            .iter()
            .map(|(i, s)| (*i, s.to_string()))
            .collect();
        assert_eq!(skipped, expected, "{}", r["skipped"]);
        assert!(r["skipped"][0]["message"].as_str().unwrap().contains("app \"nope\""));
        assert_eq!(events(), 2);
        assert_rollups_match_events("after a batch with skipped events");
        // Nothing to store is fine.
        assert_eq!(one::<i64>("SELECT recorded FROM audience.record_views('[]')"), 0);
        // A batch that is no array, or an unknown on_error: tests/bad_input/cases.tsv.
    }

    /// A time in a batch means what PostgreSQL's own parser makes of it,
    /// whichever reads it: the RFC 3339 shape read in Rust and every other
    /// text handed to PostgreSQL agree with a plain cast, in any session
    /// time zone, and what is no time is NULL (reported as not_a_time).
    #[pg_test]
    fn batch_times_read_as_postgresql_reads_them() {
        let texts = [
            "2026-11-30T12:00:00Z",
            "2026-11-30 12:00:00Z",
            "2026-11-30T12:00:00.5+05:30",
            "2026-11-30T12:00:00.123456-09:00",
            "2026-11-30T12:00:00+14:00",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999Z",
            "9999-12-31T23:59:59Z",
            "2026-11-30T12:00:00",
            "2026-11-30 12:00",
            "2026-11-30",
            "2026-11-30T12:00:00+0530",
            "2026-11-30T12:00:00 Europe/Berlin",
            "2026-11-30T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2026-11-30T12:00:00.1234567Z",
            "Mon, 30 Nov 2026 12:00:00 GMT",
            "epoch",
            "infinity",
        ];
        for zone in ["UTC", "America/New_York", "Asia/Kolkata"] {
            run(&format!("SET LOCAL TimeZone = '{zone}'"));
            for text in texts {
                let same: bool = one(&format!(
                    "SELECT audience_internal.as_time('{text}') IS NOT DISTINCT FROM '{text}'::timestamptz"
                ));
                assert!(same, "{text:?} in {zone}");
            }
        }
        for not_a_time in ["", "nope", "2026-02-30T12:00:00Z", "2026-13-01T00:00:00Z", "2026-11-30T12:00:00+25:00"] {
            let is_null: bool = one(&format!("SELECT audience_internal.as_time('{not_a_time}') IS NULL"));
            assert!(is_null, "{not_a_time:?}");
        }
        let null_is_null: bool = one("SELECT audience_internal.as_time(NULL) IS NULL");
        assert!(null_is_null);
    }
}
