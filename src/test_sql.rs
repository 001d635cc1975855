//! Small helpers the `#[pg_test]` modules share.

use pgrx::prelude::*;

/// The single value `sql` returns; panics on error or NULL.
pub fn one<T: IntoDatum + FromDatum>(sql: &str) -> T {
    Spi::get_one::<T>(sql).expect("query failed").expect("query returned NULL")
}

pub fn run(sql: &str) {
    Spi::run(sql).expect("statement failed");
}

/// Rows of `a` missing from `b` plus rows of `b` missing from `a`.
pub fn difference(a: &str, b: &str) -> i64 {
    // Each side is computed once (a CTE used twice is materialized).
    one::<i64>(&format!(
        "WITH a AS ({a}), b AS ({b}) SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d"
    ))
}

pub const ROLLUPS: [&str; 7] = [
    "app_viewers",
    "app_totals",
    "app_month_viewers",
    "app_months",
    "workspace_month_viewers",
    "workspace_months",
    "app_day_viewers",
];

/// Asserts that every rollup equals what `rebuild_rollups` computes from the
/// raw events: the incremental write path is exact.
pub fn assert_rollups_match_events(context: &str) {
    for table in ROLLUPS {
        run(&format!("CREATE TEMP TABLE kept_{table} AS SELECT * FROM audience_internal.{table}"));
    }
    run("SELECT audience_internal.rebuild_rollups(workspace_id) FROM audience_internal.workspaces");
    for table in ROLLUPS {
        assert_eq!(
            difference(&format!("SELECT * FROM kept_{table}"), &format!("SELECT * FROM audience_internal.{table}")),
            0,
            "{table} {context} differs from a rebuild from raw events"
        );
        run(&format!("DROP TABLE kept_{table}"));
    }
}
