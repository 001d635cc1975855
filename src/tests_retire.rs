//! `#[pg_test]` units for the event store's months: events land in a
//! partition per UTC month, and retire_events takes a finite date from the
//! manager. Retiring itself is tested in tests/retention.rs, each case in a
//! database of its own: dropping a partition locks view_events against the
//! other tests' transactions, which all run in one database here.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::test_sql::{assert_rollups_match_events, one, run};
    use pgrx::prelude::*;

    fn partition(month: &str) -> bool {
        one::<bool>(&format!("SELECT to_regclass('audience_internal.view_events_{month}') IS NOT NULL"))
    }

    #[pg_test]
    fn events_land_in_a_partition_per_utc_month() {
        // Every ingest path, in New York time, whose January 31 evening
        // is February 1 in UTC.
        run("SELECT audience.create_workspace('acme');
             SELECT audience.configure_workspace('acme', time_zone => 'America/New_York');
             SELECT audience.create_app('acme', 'pub');
             SELECT audience.record_view('acme', 'pub', 'alice@example.com', '2026-01-31 23:30+00');
             SELECT audience.record_view('acme', 'pub', 'bob@example.com', '2026-02-01 02:00+00');
             SELECT * FROM audience.record_views('[{\"workspace\": \"acme\", \"app\": \"pub\", \"viewer\": \"carol@example.com\",
                                                     \"viewed_at\": \"2026-02-01T03:00:00Z\"},
                                                    {\"workspace\": \"acme\", \"app\": \"pub\", \"viewer\": \"carol@example.com\",
                                                     \"viewed_at\": \"2026-03-03T12:00:00Z\"}]');
             INSERT INTO audience_ingest.view_imports (workspace, app, viewer, viewed_at)
                  VALUES ('acme', 'pub', 'bob@example.com', '2026-04-02 09:00+00');");
        for (month, exists) in [("2026_01", true), ("2026_02", true), ("2026_03", true), ("2026_04", true), ("2026_05", false)] {
            assert_eq!(partition(month), exists, "partition {month}");
        }
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience_internal.view_events_2026_02"),
            2,
            "a view at 02:00 UTC on February 1 is February's, though New York still has January 31"
        );
        // A partition is read through view_events only.
        assert!(one::<bool>(
            "SELECT bool_and(c.relrowsecurity AND c.relforcerowsecurity AND c.relacl IS NULL)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'audience_internal.view_events'::regclass"
        ));
        assert_rollups_match_events("with events in four partitions");
    }

    #[pg_test]
    fn retiring_needs_a_finite_date_and_the_manager() {
        for (call, state) in [("NULL", "22004"), ("'infinity'", "22023"), ("'-infinity'", "22023")] {
            run(&format!(
                "DO $$ BEGIN PERFORM audience.retire_events({call}); RAISE 'accepted'; EXCEPTION WHEN OTHERS THEN
                     PERFORM set_config('test.state', SQLSTATE, true); END $$"
            ));
            assert_eq!(one::<String>("SELECT current_setting('test.state')"), state, "retire_events({call})");
        }
        for (role, may) in [("audience_manager", true), ("audience_reader", false), ("audience_ingest", false), ("public", false)] {
            assert_eq!(
                one::<bool>(&format!("SELECT has_function_privilege('{role}', 'audience.retire_events(date)', 'EXECUTE')")),
                may,
                "{role}"
            );
        }
    }
}
