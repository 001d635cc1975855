//! Small helpers the `#[pg_test]` modules share.

use pgrx::prelude::*;

/// The single value `sql` returns; panics on error or NULL.
pub fn one<T: IntoDatum + FromDatum>(sql: &str) -> T {
    Spi::get_one::<T>(sql).expect("query failed").expect("query returned NULL")
}

pub fn run(sql: &str) {
    Spi::run(sql).expect("statement failed");
}

/// "ok", or the SQLSTATE and message of the error `sql` raises (what it did
/// is then undone: it runs in a subtransaction).
pub fn attempt(sql: &str) -> String {
    run("CREATE OR REPLACE FUNCTION pg_temp.attempt_once(sql text) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$");
    one::<String>(&format!("SELECT pg_temp.attempt_once($attempt${sql}$attempt$)"))
}

/// Rows of `a` missing from `b` plus rows of `b` missing from `a`.
pub fn difference(a: &str, b: &str) -> i64 {
    // Each side is computed once (a CTE used twice is materialized).
    one::<i64>(&format!(
        "WITH a AS ({a}), b AS ({b}) SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d"
    ))
}

/// Asserts that every rollup equals what `rebuild_rollups` computes from the
/// raw events (`audience_internal.rollups_vs_rebuild`, which undoes its
/// rebuild): the incremental write paths are exact.
pub fn assert_rollups_match_events(context: &str) {
    let differing = Spi::get_one::<String>(
        "SELECT string_agg(format('%s of workspace %s: %s rows only kept, %s only rebuilt, e.g. %s',
                                  rollup, workspace_id, kept_only, rebuilt_only, sample), E'\n')
           FROM audience_internal.rollups_vs_rebuild(ARRAY(SELECT workspace_id FROM audience_internal.workspaces))",
    )
    .expect("query failed");
    assert!(differing.is_none(), "rollups {context} differ from a rebuild from raw events:\n{}", differing.unwrap());
}
