//! `#[pg_test]` units: the SQL surface inside a real backend.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::test_sql::{assert_rollups_match_events, attempt, difference, one, run};
    use pgrx::prelude::*;

    /// A workspace whose events cross month boundaries in UTC and in New York,
    /// with viewers seen in two apps and two months, and anonymous visitors.
    fn load_boundary_data(time_zone: &str) {
        run(&format!(
            "SELECT audience.create_workspace('edge');
             SELECT audience.configure_workspace('edge', time_zone => '{time_zone}');
             SELECT audience.create_app('edge', 'one');
             SELECT audience.create_app('edge', 'two', 'private');
             SELECT audience.add_member('edge', 'dev@example.com', 'developer');"
        ));
        // Each event at a time that is a month boundary, or a second either side of one.
        run("SELECT audience.record_view('edge', app, viewer, ts, anon)
               FROM (VALUES
                 ('one', 'a@example.com', '2026-03-01 00:00:00+00'::timestamptz, NULL),
                 ('one', 'a@example.com', '2026-02-28 23:59:59+00', NULL),
                 ('two', 'a@example.com', '2026-03-01 04:59:59+00', NULL),
                 ('two', 'a@example.com', '2026-03-01 05:00:00+00', NULL),
                 ('one', 'b@example.com', '2026-04-01 04:00:00+00', NULL),
                 ('one', 'b@example.com', '2026-04-01 03:59:59+00', NULL),
                 ('one', 'dev@example.com', '2026-01-31 12:00:00+00', NULL),
                 ('two', 'dev@example.com', '2026-02-01 12:00:00+00', NULL),
                 ('one', NULL, '2026-03-15 12:00:00+00', 'cookie-1'),
                 ('one', NULL, '2026-03-16 12:00:00+00', 'cookie-1'),
                 ('one', NULL, '2026-03-16 12:00:00+00', 'cookie-2'),
                 ('two', NULL, '2026-04-30 23:59:59+00', 'cookie-2')
               ) AS v(app, viewer, ts, anon)");
        // And a generated spread over 24 months, out of order on purpose.
        run("SELECT audience.record_view('edge', CASE WHEN i % 3 = 0 THEN 'two' ELSE 'one' END,
                    CASE WHEN i % 5 = 0 THEN NULL ELSE 'user' || (i * 7919 % 97) || '@example.com' END,
                    '2024-06-01 00:00:00+00'::timestamptz + ((i * 104729) % (730 * 86400)) * interval '1 second',
                    'anon-' || (i % 13))
               FROM generate_series(1, 3000) i");
    }

    fn assert_rollups_exact() {
        let cases = [
            (
                "workspace months",
                "SELECT month, unique_viewers, views FROM audience.workspace_monthly_viewers('edge', 36) WHERE views > 0",
                "SELECT date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone)::date, count(DISTINCT e.viewer_id), count(*)
                   FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)
                  WHERE w.slug = 'edge' GROUP BY 1",
            ),
            (
                "app months",
                "SELECT a.slug, m.month, m.unique_viewers, m.views FROM (VALUES ('one'), ('two')) a(slug),
                        audience.app_monthly_viewers('edge', a.slug, 36) m WHERE m.views > 0",
                "SELECT a.slug, date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone)::date, count(DISTINCT e.viewer_id), count(*)
                   FROM audience_internal.view_events e JOIN audience_internal.workspaces w USING (workspace_id)
                   JOIN audience_internal.apps a USING (workspace_id, app_id)
                  WHERE w.slug = 'edge' GROUP BY 1, 2",
            ),
            (
                "app totals",
                "SELECT a.slug, audience.app_total_viewers('edge', a.slug) FROM (VALUES ('one'), ('two')) a(slug)",
                "SELECT a.slug, count(DISTINCT e.viewer_id)
                   FROM audience_internal.view_events e JOIN audience_internal.apps a USING (workspace_id, app_id)
                   JOIN audience_internal.workspaces w USING (workspace_id)
                  WHERE w.slug = 'edge' GROUP BY 1",
            ),
            (
                "recent viewers",
                "SELECT last_viewed_at, views FROM audience.recent_viewers('edge', 'one', 20)",
                "SELECT max(e.viewed_at), count(*) FROM audience_internal.view_events e
                   JOIN audience_internal.apps a USING (workspace_id, app_id)
                  WHERE a.workspace_id = (SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'edge') AND a.slug = 'one' GROUP BY e.viewer_id ORDER BY 1 DESC LIMIT 20",
            ),
        ];
        for (name, ours, plain) in cases {
            assert_eq!(difference(ours, plain), 0, "{name} differ from plain SQL");
        }
    }

    /// The check every test of the write paths relies on sees a rollup row
    /// that differs from the rebuild, in every rollup table, names it, and
    /// leaves the rollups as it found them (the rebuild is undone).
    #[pg_test]
    fn the_rollup_check_sees_a_wrong_row_and_changes_nothing() {
        load_boundary_data("America/New_York");
        let check = "SELECT coalesce(string_agg(rollup || ':' || kept_only || ':' || rebuilt_only, ',' ORDER BY rollup), '')
                       FROM audience_internal.rollups_vs_rebuild(ARRAY(SELECT workspace_id FROM audience_internal.workspaces))";
        assert_eq!(one::<String>(check), "");
        let tables: Vec<String> = Spi::get_one::<Vec<String>>("SELECT audience_internal.rollup_tables()")
            .unwrap()
            .unwrap();
        assert_eq!(tables.len(), 6);
        for table in tables {
            // One row gone from the kept rollup: the rebuild has one row more.
            run(&format!(
                "CREATE TEMP TABLE gone (LIKE audience_internal.{table});
                 WITH d AS (DELETE FROM audience_internal.{table}
                             WHERE ctid = (SELECT min(ctid) FROM audience_internal.{table}) RETURNING *)
                 INSERT INTO gone SELECT * FROM d"
            ));
            let rows_before = one::<i64>(&format!("SELECT count(*) FROM audience_internal.{table}"));
            assert_eq!(one::<String>(check), format!("{table}:0:1"), "a row missing from {table}");
            assert_eq!(
                one::<i64>(&format!("SELECT count(*) FROM audience_internal.{table}")),
                rows_before,
                "the check left {table} rebuilt"
            );
            run(&format!("INSERT INTO audience_internal.{table} SELECT * FROM gone; DROP TABLE gone"));
        }
        assert_eq!(one::<String>(check), "");
    }

    #[pg_test]
    fn rollups_equal_plain_sql_in_utc() {
        load_boundary_data("UTC");
        assert_rollups_exact();
        // The first second of March is March, the last of February is February.
        assert_eq!(
            one::<i64>("SELECT views FROM audience.app_monthly_viewers('edge', 'one', 36) WHERE month = '2026-03-01'")
                - one::<i64>(
                    "SELECT count(*) FROM audience_internal.view_events e JOIN audience_internal.apps a USING (workspace_id, app_id)
                      WHERE a.workspace_id = (SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'edge') AND a.slug = 'one' AND e.viewed_at >= '2026-03-01 00:00+00' AND e.viewed_at < '2026-04-01 00:00+00'"
                ),
            0
        );
    }

    #[pg_test]
    fn rollups_equal_plain_sql_in_a_workspace_time_zone() {
        load_boundary_data("America/New_York");
        assert_rollups_exact();
        // 04:59:59 UTC on March 1st is still February in New York.
        assert_eq!(
            one::<i64>(
                "SELECT cardinality(audience_internal.viewer_set_ids(m.viewers))::bigint FROM audience_internal.app_months m JOIN audience_internal.apps a USING (workspace_id, app_id)
                  WHERE a.workspace_id = (SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'edge') AND a.slug = 'two' AND m.month = '2026-02-01'"
            ),
            one::<i64>(
                "SELECT count(DISTINCT viewer_id) FROM audience_internal.view_events e JOIN audience_internal.apps a USING (workspace_id, app_id)
                  WHERE a.workspace_id = (SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'edge') AND a.slug = 'two' AND e.viewed_at >= '2026-02-01 05:00+00' AND e.viewed_at < '2026-03-01 05:00+00'"
            )
        );
    }

    #[pg_test]
    fn changing_the_time_zone_rebuilds_months_exactly() {
        load_boundary_data("UTC");
        run("SELECT audience.configure_workspace('edge', time_zone => 'Asia/Tokyo')");
        assert_rollups_exact();
    }

    #[pg_test]
    fn rebuilding_rollups_changes_nothing() {
        load_boundary_data("UTC");
        assert_rollups_match_events("kept during ingest");
    }

    #[pg_test]
    fn counting_start_limits_totals_to_later_views() {
        load_boundary_data("UTC");
        run("SELECT audience.configure_workspace('edge', counting_start => '2026-03-01 00:00+00')");
        let expected = one::<i64>(
            "SELECT count(DISTINCT viewer_id) FROM audience_internal.view_events e JOIN audience_internal.apps a USING (workspace_id, app_id)
              WHERE a.workspace_id = (SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'edge') AND a.slug = 'one' AND e.viewed_at >= '2026-03-01 00:00+00'",
        );
        assert_eq!(one::<i64>("SELECT audience.app_total_viewers('edge', 'one')"), expected);
        // A viewer whose first counted view arrives after older ones enters the total once.
        run("SELECT audience.record_view('edge', 'one', 'late@example.com', '2025-01-01 00:00+00')");
        run("SELECT audience.record_view('edge', 'one', 'late@example.com', now() - interval '1 day')");
        run("SELECT audience.record_view('edge', 'one', 'late@example.com', now() - interval '2 days')");
        assert_eq!(one::<i64>("SELECT audience.app_total_viewers('edge', 'one')"), expected + 1);
    }

    /// (who viewed, app, what the label should be) for each rule of docs/spec.md §2.
    #[pg_test]
    fn labels_follow_the_privacy_rules() {
        run("SELECT audience.create_workspace('labels');
             SELECT audience.create_app('labels', 'pub');
             SELECT audience.create_app('labels', 'priv', 'private');
             SELECT audience.create_app('labels', 'was-pub');
             SELECT audience.add_member('labels', 'member@example.com', 'viewer');
             SELECT audience.invite_viewer('labels', 'invited@example.com');
             SELECT audience.record_view('labels', 'pub', 'member@example.com');
             SELECT audience.record_view('labels', 'pub', 'outsider@example.com');
             SELECT audience.record_view('labels', 'pub', 'invited@example.com');
             SELECT audience.record_view('labels', 'pub', NULL, anonymous_id => 'cookie');
             SELECT audience.record_view('labels', 'priv', 'granted@example.com');
             SELECT audience.record_view('labels', 'was-pub', 'early@example.com', now() - interval '1 day');
             SELECT audience.set_app_visibility('labels', 'was-pub', 'private');");
        let cases = [
            ("pub", "member@example.com", false),
            ("pub", "outsider@example.com", true),
            ("pub", "invited@example.com", true),
            ("priv", "granted@example.com", false),
            ("was-pub", "early@example.com", true),
        ];
        for (app, who, pseudonymous) in cases {
            let shown = one::<i64>(&format!(
                "SELECT count(*) FROM audience.recent_viewers('labels', '{app}') WHERE viewer = '{who}'"
            ));
            assert_eq!(shown, if pseudonymous { 0 } else { 1 }, "{who} on {app}");
            // Their own pseudonym (workspace scope, no rotation), not just any.
            let under_own_pseudonym = one::<i64>(&format!(
                "SELECT count(*) FROM audience.recent_viewers('labels', '{app}') r, audience_internal.workspace_keys k
                  JOIN audience_internal.workspaces w USING (workspace_id)
                  WHERE w.slug = 'labels' AND r.pseudonymous
                    AND r.viewer = audience_internal.viewer_pseudonym(
                            k.pseudonym_key, audience_internal.identity_hash(k.identity_key, '{who}'), '')"
            ));
            assert_eq!(under_own_pseudonym, if pseudonymous { 1 } else { 0 }, "{who} on {app}: under their pseudonym");
        }
        // The anonymous visitor and both outsiders: three pseudonyms on `pub`.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience.recent_viewers('labels', 'pub') WHERE pseudonymous AND viewer ~ '^[A-Z][a-z]+ [A-Z][a-z]+$'"),
            3
        );
        // The outsider becomes a member: shown by identity from then on.
        run("SELECT audience.add_member('labels', 'Outsider@Example.com', 'viewer')");
        assert_eq!(one::<i64>("SELECT count(*) FROM audience.recent_viewers('labels', 'pub') WHERE viewer = 'outsider@example.com'"), 1);
        // A member who leaves goes back to a pseudonym.
        run("SELECT audience.remove_member('labels', 'member@example.com')");
        assert_eq!(one::<i64>("SELECT count(*) FROM audience.recent_viewers('labels', 'pub') WHERE viewer = 'member@example.com'"), 0);
        // Views before the identification start are pseudonymous, whoever made them.
        run("SELECT audience.configure_workspace('labels', identification_start => now() + interval '1 minute')");
        assert_eq!(one::<i64>("SELECT count(*) FROM audience.recent_viewers('labels', 'priv') WHERE NOT pseudonymous"), 0);
    }

    #[pg_test]
    fn plaintext_identity_is_kept_only_for_private_app_views() {
        run("SELECT audience.create_workspace('minimal');
             SELECT audience.create_app('minimal', 'pub');
             SELECT audience.create_app('minimal', 'priv', 'private');
             SELECT audience.record_view('minimal', 'pub', 'outsider@example.com');
             SELECT audience.record_view('minimal', 'priv', 'granted@example.com');");
        let kept: Vec<String> = Spi::connect(|c| {
            c.select("SELECT identity FROM audience_internal.viewers WHERE identity IS NOT NULL", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        });
        assert_eq!(kept, vec!["granted@example.com".to_string()]);
        let anywhere = one::<i64>(
            "SELECT count(*) FROM audience_internal.viewers v WHERE position('outsider' in coalesce(v.identity, '')) > 0
                OR position(convert_to('outsider', 'UTF8') in v.viewer_hash) > 0",
        );
        assert_eq!(anywhere, 0);
    }

    #[pg_test]
    fn pseudonyms_are_stable_per_workspace_and_unlinkable_across() {
        run("SELECT audience.create_workspace('w1');
             SELECT audience.create_workspace('w2');
             SELECT audience.create_app('w1', 'app');
             SELECT audience.create_app('w2', 'app');
             SELECT audience.record_view('w1', 'app', 'same@example.com');
             SELECT audience.record_view('w2', 'app', 'same@example.com');");
        let label = |ws: &str| one::<String>(&format!("SELECT viewer || '/' || viewer_ref FROM audience.recent_viewers('{ws}', 'app')"));
        let first = label("w1");
        assert_eq!(first, label("w1"), "stable across queries");
        assert_ne!(first, label("w2"), "unrelated across workspaces");
        run("SELECT audience.record_view('w1', 'app', 'same@example.com')");
        assert_eq!(first, label("w1"), "stable across views");
        run("SELECT audience.rotate_pseudonym_key('w1')");
        let rotated = label("w1");
        let (old_name, old_ref) = first.split_once('/').unwrap();
        let (new_name, new_ref) = rotated.split_once('/').unwrap();
        assert_ne!(old_ref, new_ref, "viewer_ref changes with the key");
        assert_ne!(old_name, new_name, "pseudonym changes with the key");
    }

    #[pg_test]
    fn relative_time_reads_like_the_modal() {
        let cases = [
            ("0 seconds", "just now"),
            ("5 minutes", "5 minutes ago"),
            ("3 hours", "3 hours ago"),
            ("30 hours", "yesterday"),
            ("4 days", "4 days ago"),
            ("62 days", "2 months ago"),
        ];
        for (ago, words) in cases {
            let got = one::<String>(&format!(
                "SELECT audience.relative_time(now() - interval '{ago}', now())"
            ));
            assert_eq!(got, words, "{ago}");
        }
    }

    #[pg_test]
    fn keys_come_from_the_random_source_and_differ_per_workspace() {
        run("SELECT audience.create_workspace('k1'); SELECT audience.create_workspace('k2');");
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT identity_key) + count(DISTINCT pseudonym_key) FROM audience_internal.workspace_keys"),
            4
        );
    }

    #[pg_test]
    fn every_table_has_a_place_on_citus() {
        // A table left out would stay on the coordinator, where the workers'
        // queries cannot reach it.
        let unplaced = one::<String>(
            "SELECT coalesce(string_agg(c.relname, ', '), '') FROM pg_class c
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
                AND NOT c.relispartition
                AND c.relname NOT IN (SELECT p.table_name FROM audience_internal.citus_placement() p)",
        );
        assert_eq!(unplaced, "", "tables with no place on Citus");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience_internal.citus_placement() p
                         WHERE to_regclass('audience_internal.' || p.table_name) IS NULL"),
            0,
            "placed tables that do not exist"
        );
    }

    #[pg_test]
    fn distributing_without_citus_is_refused_and_changes_nothing() {
        run("SELECT audience.create_workspace('solo'); SELECT audience.create_app('solo', 'one');");
        assert_eq!(attempt("SELECT audience.distribute()"), "55000: Citus is not installed in this database");
        assert_eq!(one::<i64>("SELECT count(*) FROM audience_internal.apps"), 1);
    }
}
