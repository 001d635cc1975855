//! `#[pg_test]` units for who the requester is and what they see (docs/spec.md §2).
//! Each test runs in one transaction as a superuser and switches to
//! throwaway roles with SET ROLE, which is what resolution follows.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::test_sql::{assert_rollups_match_events, difference, one, run};
    use pgrx::prelude::*;

    /// The SQLSTATE `sql` fails with, or "ok"; runs as whoever is current.
    fn outcome(sql: &str) -> String {
        one::<String>(&format!("SELECT pg_temp.outcome({})", quote(sql)))
    }

    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    fn as_role<T>(role: &str, f: impl FnOnce() -> T) -> T {
        run(&format!("SET ROLE {role}"));
        let out = f();
        run("RESET ROLE");
        out
    }

    /// Two workspaces; acme has a public and a private app and four kinds of
    /// people, each with a login role: an admin, a viewer member granted the
    /// private app, a viewer member without the grant, an invited viewer, and
    /// an outsider.
    fn set_up() {
        run("CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$");
        run("CREATE FUNCTION pg_temp.plan(sql text) RETURNS SETOF text LANGUAGE plpgsql AS $$
             BEGIN RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || sql; END $$");
        for role in ["t_admin", "t_granted", "t_viewer", "t_invited", "t_outsider", "t_ops", "t_group_member"] {
            run(&format!("CREATE ROLE {role} LOGIN; GRANT audience_reader TO {role}"));
        }
        run("CREATE ROLE t_group NOLOGIN; GRANT t_group TO t_group_member; GRANT audience_manager TO t_ops");
        run("SELECT audience.create_workspace('acme');
             SELECT audience.create_workspace('globex');
             SELECT audience.create_app('acme', 'dash');
             SELECT audience.create_app('acme', 'vault', 'private');
             SELECT audience.create_app('globex', 'lab');
             SELECT audience.add_member('acme', 'admin@acme.example', 'admin', 't_admin');
             SELECT audience.add_member('acme', 'granted@acme.example', 'viewer', 't_granted');
             SELECT audience.grant_app_access('acme', 'vault', 'granted@acme.example');
             SELECT audience.add_member('acme', 'viewer@acme.example', 'viewer', 't_viewer');
             SELECT audience.invite_viewer('acme', 'invited@acme.example', 'vault', 't_invited');
             SELECT audience.add_member('globex', 'team@globex.example', 'developer', 't_group');
             SELECT audience.record_view('acme', 'dash', 'out@mail.example', now() - interval '1 day');
             SELECT audience.record_view('acme', 'vault', 'granted@acme.example', now() - interval '2 hours');
             SELECT audience.record_view('globex', 'lab', NULL, now() - interval '1 hour', 'cookie');");
    }

    /// (role, apps it sees as workspace/app, whoami's resolved_by)
    #[pg_test]
    fn each_requester_sees_what_the_rules_allow() {
        set_up();
        let cases: [(&str, &str, &str); 7] = [
            ("t_admin", "acme/dash,acme/vault", "role t_admin"),
            ("t_granted", "acme/dash,acme/vault", "role t_granted"),
            ("t_viewer", "acme/dash", "role t_viewer"),
            ("t_invited", "", "nobody"),
            ("t_outsider", "", "nobody"),
            ("t_group_member", "globex/lab", "role t_group_member"),
            ("t_ops", "acme/dash,acme/vault,globex/lab", "operator"),
        ];
        for (role, apps, resolved_by) in cases {
            let (seen, how) = as_role(role, || {
                (
                    one::<String>("SELECT coalesce(string_agg(workspace || '/' || app, ',' ORDER BY workspace, app), '') FROM audience.apps"),
                    one::<String>("SELECT min(resolved_by) FROM audience.whoami()"),
                )
            });
            assert_eq!(seen, apps, "{role} sees these apps");
            assert_eq!(how, resolved_by, "{role} is resolved");
        }
    }

    #[pg_test]
    fn hidden_workspaces_and_apps_look_like_missing_ones() {
        set_up();
        let cases = [
            ("t_outsider", "SELECT audience.app_total_viewers('acme', 'dash')", "42704"),
            ("t_invited", "SELECT * FROM audience.recent_viewers('acme', 'vault')", "42704"),
            ("t_viewer", "SELECT * FROM audience.recent_viewers('acme', 'vault')", "42704"),
            ("t_viewer", "SELECT * FROM audience.app_monthly_viewers('globex', 'lab')", "42704"),
            ("t_admin", "SELECT * FROM audience.workspace_monthly_viewers('globex')", "42704"),
            ("t_admin", "SELECT * FROM audience.recent_viewers('acme', 'nope')", "42704"),
            ("t_granted", "SELECT * FROM audience.recent_viewers('acme', 'vault')", "ok"),
            ("t_admin", "SELECT audience.create_app('acme', 'x')", "42501"),
            ("t_admin", "SELECT audience.record_view('acme', 'dash', 'x@y.example')", "42501"),
            ("t_admin", "SELECT * FROM audience_internal.members", "42501"),
            ("t_ops", "SELECT audience.create_app('acme', 'ops-made')", "ok"),
            ("t_ops", "SELECT audience.record_view('acme', 'dash', 'x@y.example')", "42501"),
        ];
        for (role, sql, expected) in cases {
            assert_eq!(as_role(role, || outcome(sql)), expected, "{role}: {sql}");
        }
        // The message for a hidden workspace is the one for a missing workspace.
        run("CREATE FUNCTION pg_temp.message(sql text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLERRM; END $$");
        let hidden = as_role("t_outsider", || one::<String>("SELECT pg_temp.message('SELECT audience.app_total_viewers(''acme'', ''dash'')')"));
        let missing = as_role("t_outsider", || one::<String>("SELECT pg_temp.message('SELECT audience.app_total_viewers(''acme2'', ''dash'')')"));
        assert_eq!(hidden.replace("acme", "X"), missing.replace("acme2", "X"));
    }

    #[pg_test]
    fn viewer_members_count_only_the_apps_they_see() {
        set_up();
        // The admin's month counts both apps; the viewer's counts only dash.
        let admin = as_role("t_admin", || one::<i64>("SELECT sum(unique_viewers)::bigint FROM audience.workspace_monthly_viewers('acme', 2)"));
        let viewer = as_role("t_viewer", || one::<i64>("SELECT sum(unique_viewers)::bigint FROM audience.workspace_monthly_viewers('acme', 2)"));
        assert_eq!(admin, 2);
        assert_eq!(viewer, 1);
    }

    /// A role granted the tables themselves, even an admin of the
    /// workspace, reads no row of them: row security lets nothing through,
    /// in one constant test per query (no per-row call, no subquery).
    #[pg_test]
    fn a_granted_table_gives_no_row() {
        set_up();
        let tables: Vec<String> = Spi::connect(|c| {
            c.select(
                "SELECT c.relname::text FROM pg_class c
                  WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
                  ORDER BY 1",
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
        });
        assert!(tables.len() > 10, "{tables:?}");
        run("GRANT USAGE ON SCHEMA audience_internal TO t_admin");
        for table in &tables {
            run(&format!("GRANT SELECT ON audience_internal.{table} TO t_admin"));
            let rows = as_role("t_admin", || one::<i64>(&format!("SELECT count(*) FROM audience_internal.{table}")));
            assert_eq!(rows, 0, "{table}");
        }
        let plan = |sql: &str| {
            as_role("t_admin", || one::<String>(&format!("SELECT string_agg(p, E'\\n') FROM pg_temp.plan({}) p", quote(sql))))
        };
        let whole = plan("SELECT * FROM audience_internal.apps");
        assert!(whole.contains("One-Time Filter: false"), "{whole}");
        // With a condition of the query's own, the constant comes first and
        // decides alone: nothing is called, no subquery runs.
        let narrowed = plan("SELECT * FROM audience_internal.apps WHERE workspace_id > 0");
        assert!(narrowed.contains("Filter: (false AND"), "{narrowed}");
        assert!(!narrowed.contains("SubPlan") && !narrowed.contains("InitPlan") && !narrowed.contains("audience_internal."), "{narrowed}");
        // The functions still answer for the admin.
        assert_eq!(as_role("t_admin", || one::<i64>("SELECT count(*) FROM audience.apps WHERE workspace = 'acme'")), 2);
    }

    #[pg_test]
    fn settings_never_decide_the_requester() {
        set_up();
        let spoofs = [
            "SELECT set_config('audience.requester', 'admin@acme.example', false)",
            "SELECT set_config('audience.workspace', 'acme', false)",
            "SELECT set_config('request.jwt.claims', '{\"sub\":\"admin@acme.example\"}', false)",
            "SET application_name = 'admin@acme.example'",
            "SELECT set_config('audience.token', 'x', false)",
        ];
        for spoof in spoofs {
            let seen = as_role("t_outsider", || {
                run(spoof);
                one::<i64>("SELECT count(*) FROM audience.apps")
            });
            assert_eq!(seen, 0, "after {spoof}");
        }
    }

    #[pg_test]
    fn a_refused_token_leaves_nobody() {
        set_up();
        run("SELECT audience.set_token_secret('0123456789abcdef0123456789abcdef')");
        let cases = [
            ("'garbage'", "28000"),
            ("NULL", "28000"),
            // {"alg":"none"} header with a payload naming the admin, no signature.
            ("'eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbkBhY21lLmV4YW1wbGUiLCJleHAiOjQxMDI0NDQ4MDB9.'", "28000"),
        ];
        for (token, code) in cases {
            let (got, seen) = as_role("t_outsider", || {
                (outcome(&format!("SELECT audience.authenticate({token})")), one::<i64>("SELECT count(*) FROM audience.apps"))
            });
            assert_eq!(got, code, "token {token}");
            assert_eq!(seen, 0, "after token {token}");
        }
        assert_eq!(
            as_role("t_outsider", || outcome("SELECT audience.set_token_secret('0123456789abcdef0123456789abcdef')")),
            "42501"
        );
        assert_eq!(outcome("SELECT audience.set_token_secret('too short')"), "22023");
    }

    #[pg_test]
    fn forgetting_a_viewer_keeps_every_other_answer_exact() {
        set_up();
        run("SELECT audience.record_view('acme', 'dash', 'granted@acme.example', now() - interval '40 days');
             SELECT audience.record_view('globex', 'lab', 'granted@acme.example', now() - interval '3 days');
             SELECT audience.record_view('acme', 'dash', 'out@mail.example', now() - interval '50 days');");
        let removed = one::<String>(
            "SELECT string_agg(workspace || ':' || events || '/' || apps || '/' || memberships || '/' || grants, ' ' ORDER BY workspace)
               FROM audience.forget_viewer('Granted@acme.example')",
        );
        assert_eq!(removed, "acme:2/2/1/1 globex:1/1/0/0");
        assert_eq!(one::<i64>("SELECT count(*) FROM audience_internal.members WHERE identity LIKE 'granted%'"), 0);
        assert_rollups_match_events("after forget_viewer");
    }

    #[pg_test]
    fn pseudonyms_can_rotate_monthly_and_be_scoped_per_requester() {
        set_up();
        run("SELECT audience.add_member('acme', 'admin2@acme.example', 'admin', 't_viewer');
             SELECT audience.create_app('acme', 'old');
             SELECT audience.record_view('acme', 'old', 'out@mail.example', now() - interval '70 days');");
        let label = |role: &str, app: &str| {
            as_role(role, || one::<String>(&format!("SELECT viewer || viewer_ref FROM audience.recent_viewers('acme', '{app}') WHERE pseudonymous")))
        };
        // Workspace-wide by default: same label in two apps and for two requesters.
        assert_eq!(label("t_admin", "dash"), label("t_admin", "old"));
        assert_eq!(label("t_admin", "dash"), label("t_viewer", "dash"));
        run("SELECT audience.configure_workspace('acme', pseudonym_rotation => 'monthly')");
        assert_ne!(label("t_admin", "dash"), label("t_admin", "old"), "views in different months");
        run("SELECT audience.configure_workspace('acme', pseudonym_rotation => 'none', pseudonym_scope => 'requester')");
        assert_ne!(label("t_admin", "dash"), label("t_viewer", "dash"), "different requesters");
        assert_eq!(label("t_admin", "dash"), label("t_admin", "old"), "one requester, one label");
    }

    /// A token the platform would mint for `sub`: HS256 with the test secret,
    /// valid a minute, with the token id `jti`.
    fn token(sub: &str, jti: &str) -> String {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": sub, "exp": exp, "jti": jti}),
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    fn requester() -> String {
        one::<String>("SELECT coalesce(string_agg(coalesce(requester, '-') || '/' || resolved_by, ','), '') FROM audience.whoami()")
    }

    #[pg_test]
    fn a_token_is_good_once_and_undone_with_its_savepoint() {
        set_up();
        run("SELECT audience.set_token_secret('0123456789abcdef0123456789abcdef')");
        let admin = token("admin@acme.example", "request-1");
        let viewer = token("viewer@acme.example", "request-2");
        as_role("t_outsider", || {
            assert_eq!(requester(), "-/nobody");
            // An exception block is a subtransaction: what it authenticated goes with it.
            run(&format!(
                "DO $$ BEGIN PERFORM audience.authenticate('{admin}'); RAISE EXCEPTION 'undo'; \
                 EXCEPTION WHEN raise_exception THEN NULL; END $$"
            ));
            assert_eq!(requester(), "-/nobody", "after the subtransaction that authenticated aborted");
            // Its use was undone too, so the token is still good, once.
            run(&format!("SELECT audience.authenticate('{admin}')"));
            assert_eq!(requester(), "admin@acme.example/token");
            // A refusal (here of a replay) caught in an exception block is
            // rolled back with it: the requester from before it stands.
            assert_eq!(outcome(&format!("SELECT audience.authenticate('{admin}')")), "28000", "replayed");
            assert_eq!(requester(), "admin@acme.example/token");
            run(&format!("SELECT audience.authenticate('{viewer}')"));
            assert_eq!(requester(), "viewer@acme.example/token");
            assert_eq!(outcome("SELECT audience.authenticate('not a token')"), "28000");
            assert_eq!(requester(), "viewer@acme.example/token");
        });
        assert_eq!(one::<i64>("SELECT count(*) FROM audience_internal.spent_tokens"), 2);
    }

    #[pg_test]
    fn a_role_mapping_follows_the_role_not_its_name() {
        set_up();
        run("ALTER ROLE t_admin RENAME TO t_admin_renamed");
        assert_eq!(as_role("t_admin_renamed", requester), "admin@acme.example/role t_admin_renamed");
        run("DROP OWNED BY t_admin_renamed; DROP ROLE t_admin_renamed");
        run("CREATE ROLE t_admin LOGIN; GRANT audience_reader TO t_admin");
        assert_eq!(as_role("t_admin", requester), "-/nobody", "a new role of the old name inherits nothing");
        assert_eq!(as_role("t_admin", || one::<i64>("SELECT count(*) FROM audience.apps")), 0);
    }

    /// The all-months view: each workspace and app from its first month with
    /// a view, months without views included, the same figures as the
    /// monthly functions over that many months, for whoever asks.
    #[pg_test]
    fn every_month_with_data_is_in_the_all_months_view() {
        set_up();
        run("SELECT audience.configure_workspace('acme', time_zone => 'Asia/Tokyo');
             SELECT audience.record_view('acme', 'dash', 'old@mail.example', now() - interval '20 months');
             SELECT audience.record_view('acme', 'vault', 'granted@acme.example', now() - interval '3 months');");
        // The months from the one `back` ago to the month in progress, in
        // Tokyo (where a month may already have begun that has not in UTC).
        let months_since = |back: &str| {
            1 + one::<i64>(&format!(
                "SELECT (extract(year FROM a) * 12 + extract(month FROM a))::bigint
                   FROM (SELECT age(date_trunc('month', now() AT TIME ZONE 'Asia/Tokyo'),
                                    date_trunc('month', (now() - interval '{back}') AT TIME ZONE 'Asia/Tokyo')) AS a) x"
            ))
        };
        let months = months_since("20 months");
        for role in ["t_admin", "t_viewer"] {
            as_role(role, || {
                let whole = difference(
                    "SELECT month, unique_viewers, views, complete FROM audience.all_monthly_viewers WHERE workspace = 'acme' AND app IS NULL",
                    &format!("SELECT * FROM audience.workspace_monthly_viewers('acme', {months})"),
                );
                assert_eq!(whole, 0, "{role}: the workspace's months");
                let dash = difference(
                    "SELECT month, unique_viewers, views, complete FROM audience.all_monthly_viewers WHERE workspace = 'acme' AND app = 'dash'",
                    &format!("SELECT * FROM audience.app_monthly_viewers('acme', 'dash', {months})"),
                );
                assert_eq!(dash, 0, "{role}: dash's months");
                let misplaced = one::<i64>(
                    "SELECT count(*) FROM audience.all_monthly_viewers
                      WHERE month_start <> month::timestamp AT TIME ZONE 'Asia/Tokyo'",
                );
                assert_eq!(misplaced, 0, "{role}: month_start is the month's first instant in Tokyo");
            });
        }
        // The vault from its own first month; the viewer member, who may not
        // open it, gets none of its rows.
        let vault = |role: &str| {
            as_role(role, || one::<i64>("SELECT count(*) FROM audience.all_monthly_viewers WHERE app = 'vault'"))
        };
        assert_eq!(vault("t_admin"), months_since("3 months"));
        assert_eq!(vault("t_viewer"), 0);
        assert_eq!(as_role("t_outsider", || one::<i64>("SELECT count(*) FROM audience.all_monthly_viewers")), 0);
    }
}
