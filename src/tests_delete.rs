//! `#[pg_test]` units for deleting a workspace: everything it stored goes,
//! through every table that holds a workspace's rows, and nothing of any
//! other workspace changes.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::test_sql::{assert_rollups_match_events, one, run};
    use pgrx::prelude::*;

    /// Rows of the workspace with id `id` in any table of audience_internal
    /// that has a workspace_id column, found in the catalog as
    /// delete_workspace finds them; and how many such tables there are.
    fn rows_of(id: i64) -> (i64, i64) {
        let sql = format!(
            "SELECT coalesce(sum((xpath('/row/n/text()',
                        query_to_xml(format('SELECT count(*) AS n FROM %s WHERE workspace_id = {id}', c.oid::regclass),
                                     false, true, '')))[1]::text::bigint), 0)::bigint,
                    count(*)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')"
        );
        Spi::get_two::<i64, i64>(&sql)
            .map(|(rows, tables)| (rows.unwrap(), tables.unwrap()))
            .expect("query failed")
    }

    /// A workspace written through every path: apps public and private, a
    /// member, an invitation with a grant, single events with an ended
    /// session, a batch, the COPY path, a Posit Connect import.
    fn fill(ws: &str) {
        run(&format!(
            "SELECT audience.create_workspace('{ws}');
             SELECT audience.create_app('{ws}', 'pub');
             SELECT audience.create_app('{ws}', 'priv', 'private');
             SELECT audience.add_member('{ws}', 'alice@example.com', 'admin');
             SELECT audience.invite_viewer('{ws}', 'guest@example.com', 'priv');
             SELECT audience.end_session(audience.record_view('{ws}', 'priv', 'guest@example.com', now() - interval '2 hours'));
             SELECT audience.record_view('{ws}', 'pub', NULL, now() - interval '40 days', anonymous_id => 'cookie-1');
             SELECT * FROM audience.record_views('[{{\"workspace\": \"{ws}\", \"app\": \"pub\", \"viewer\": \"bob@example.com\"}}]');
             INSERT INTO audience_ingest.view_imports (workspace, app, viewer, viewed_at)
                  VALUES ('{ws}', 'pub', 'carol@example.com', now() - interval '3 days');
             SELECT * FROM audience.import_connect('{ws}',
                 '[{{\"content_guid\": \"g-1\", \"user_guid\": \"u-1\", \"started\": \"2026-01-05T10:00:00Z\",
                    \"ended\": \"2026-01-05T10:30:00Z\"}}]',
                 '[{{\"guid\": \"u-1\", \"username\": \"dana\", \"email\": \"dana@example.com\"}}]',
                 '[{{\"guid\": \"g-1\", \"name\": \"report\", \"access_type\": \"acl\"}}]');"
        ));
    }

    #[pg_test]
    fn deleting_a_workspace_removes_what_it_stored_and_nothing_else() {
        fill("gone");
        fill("kept");
        let gone: i64 = one("SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'gone'");
        let kept: i64 = one("SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'kept'");
        let (stored, tables) = rows_of(gone);
        assert!(tables >= 15, "only {tables} tables hold workspace rows");
        assert!(stored >= 30, "the workspace stored only {stored} rows");
        let kept_before = rows_of(kept).0;
        let answers = "SELECT string_agg(x::text, ';' ORDER BY x::text) FROM (
                           SELECT to_jsonb(r) - 'last_viewed' AS x FROM audience.recent_viewers('kept', 'pub') r
                           UNION ALL SELECT to_jsonb(t) FROM audience.top_apps('kept') t
                           UNION ALL SELECT to_jsonb(m) FROM audience.app_monthly_viewers('kept', 'priv') m) s";
        let kept_answers: String = one(answers);
        let events: i64 = one(&format!("SELECT count(*) FROM audience_internal.view_events WHERE workspace_id = {gone}"));

        assert_eq!(one::<i64>("SELECT audience.delete_workspace('gone')"), events, "returns the events deleted");
        assert_eq!(rows_of(gone).0, 0, "rows of the deleted workspace are left");
        assert_eq!(rows_of(kept).0, kept_before, "rows of another workspace changed");
        assert_eq!(one::<String>(answers), kept_answers, "another workspace's answers changed");
        assert_rollups_match_events("after deleting a workspace");

        // The slug is free again, and nothing of the old workspace shows.
        fill("gone");
        assert_eq!(one::<i64>("SELECT count(*) FROM audience.recent_viewers('gone', 'pub')"), 3);
        assert_eq!(one::<i64>("SELECT audience.app_total_viewers('gone', 'priv')"), 1);
    }

    /// Only the operator may delete a workspace.
    #[pg_test]
    fn only_the_operator_deletes_a_workspace() {
        for (role, may) in [("audience_manager", true), ("audience_reader", false), ("audience_ingest", false), ("public", false)] {
            assert_eq!(
                one::<bool>(&format!(
                    "SELECT has_function_privilege('{role}', 'audience.delete_workspace(text)', 'EXECUTE')"
                )),
                may,
                "{role}"
            );
        }
    }
}
