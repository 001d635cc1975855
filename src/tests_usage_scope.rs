//! `#[pg_test]` units for whom the usage answers (sql/usage.sql) are
//! about and what Posit Connect imports store: a viewer member's answers
//! cover only the apps it may see, app_access lists who may open what,
//! monthly pseudonyms label sessions and top viewers alike, and
//! import_connect recognises records, users and content as docs/spec.md §4 says.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::test_sql::{assert_rollups_match_events, difference, one, run};
    use crate::tests_usage::{
        assert_same, literal, load_usage_data, top_apps_sql, top_viewers_sql, trend_sql, usage_sql,
    };
    use pgrx::prelude::*;

    fn as_role<T>(role: &str, f: impl FnOnce() -> T) -> T {
        run(&format!("SET ROLE {role}"));
        let out = f();
        run("RESET ROLE");
        out
    }

    /// Two viewer members of `use` with login roles: straddle (sees the
    /// public apps `pub` and `quiet`) and user7, granted the private `priv`.
    /// Neither sees `turns`, private since now.
    fn set_up_members() {
        load_usage_data("America/New_York");
        run("CREATE ROLE t_u_viewer LOGIN; GRANT audience_reader TO t_u_viewer;
             CREATE ROLE t_u_granted LOGIN; GRANT audience_reader TO t_u_granted;
             SELECT audience.add_member('use', 'straddle@example.com', 'viewer', 't_u_viewer');
             SELECT audience.add_member('use', 'user7@example.com', 'viewer', 't_u_granted');
             SELECT audience.grant_app_access('use', 'priv', 'user7@example.com');");
    }

    #[pg_test]
    fn a_viewer_members_answers_cover_only_the_apps_it_sees() {
        set_up_members();
        let (s, u) = (literal("now() - interval '430 days'"), literal("now() + interval '1 hour'"));
        let (ms, mu) = (literal("pg_temp.local(20, '07:13')"), literal("pg_temp.local(2, '16:00')"));
        // (role, the apps it sees)
        for (role, apps) in [("t_u_viewer", "('pub', 'quiet')"), ("t_u_granted", "('pub', 'quiet', 'priv')")] {
            let only = format!("e.app IN {apps}");
            // The comparison means something only if the hidden apps have views.
            assert!(
                one::<i64>(&format!("SELECT count(*) FROM usage_ev e WHERE NOT {only}")) > 100,
                "{role}: the apps it may not see have no views"
            );
            let queries = [
                ("top_apps", top_apps_sql(&s, &u, &only)),
                ("top_apps mid-day", top_apps_sql(&ms, &mu, &only)),
                ("usage_over_time by day", usage_sql("America/New_York", "NULL", &ms, &mu, "day", &only)),
                ("usage_over_time by month", usage_sql("America/New_York", "NULL", &s, &u, "month", &only)),
                ("top_viewers", top_viewers_sql("NULL", &s, &u, &only)),
                ("top_viewers mid-day", top_viewers_sql("NULL", &ms, &mu, &only)),
                ("top_viewers of pub", top_viewers_sql("'pub'", &ms, &mu, "e.app = 'pub'")),
                ("viewer_trend", trend_sql("America/New_York", "NULL", 16, &only)),
            ];
            for (i, (what, (ours, plain))) in queries.iter().enumerate() {
                // Answered for the role; judged as the superuser.
                as_role(role, || run(&format!("CREATE TEMP TABLE ours_{role}_{i} AS {ours}")));
                assert_same(&format!("{role}: {what}"), &format!("TABLE ours_{role}_{i}"), plain);
                // And it is not what the operator gets.
                if !what.contains("of pub") {
                    assert_ne!(difference(&format!("TABLE ours_{role}_{i}"), ours), 0, "{role}: {what} is the operator's answer");
                }
            }
        }
        // A viewer member's monthly figures are the month set of the public
        // apps united with its private apps' sets: an app that turns private
        // leaves that set, and one that turns public joins it.
        for (i, (change, apps)) in [("private", "('pub', 'priv')"), ("public", "('pub', 'quiet', 'priv')")].iter().enumerate() {
            run(&format!("SELECT audience.set_app_visibility('use', 'quiet', '{change}')"));
            let (ours, plain) = trend_sql("America/New_York", "NULL", 16, &format!("e.app IN {apps}"));
            as_role("t_u_granted", || run(&format!("CREATE TEMP TABLE flip_{i} AS {ours}")));
            assert_same(&format!("t_u_granted: viewer_trend once quiet is {change}"), &format!("TABLE flip_{i}"), &plain);
            assert_rollups_match_events(&format!("once quiet is {change}"));
        }
        // A private app it was not granted is no app at all; a granted one is.
        run("CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM; END $$");
        let cases = [
            ("t_u_viewer", "SELECT * FROM audience.top_viewers('use', 'priv')", "42704 app \"priv\" does not exist in workspace \"use\""),
            ("t_u_viewer", "SELECT * FROM audience.app_sessions('use', 'turns')", "42704 app \"turns\" does not exist in workspace \"use\""),
            ("t_u_viewer", "SELECT * FROM audience.usage_over_time('use', 'priv')", "42704 app \"priv\" does not exist in workspace \"use\""),
            ("t_u_viewer", "SELECT * FROM audience.viewer_trend('use', 'priv')", "42704 app \"priv\" does not exist in workspace \"use\""),
            ("t_u_viewer", "SELECT * FROM audience.app_access('use', 'priv')", "42704 app \"priv\" does not exist in workspace \"use\""),
            ("t_u_viewer", "SELECT * FROM audience.top_apps('other')", "42704 workspace \"other\" does not exist"),
            ("t_u_granted", "SELECT * FROM audience.top_viewers('use', 'priv')", "ok"),
            ("t_u_granted", "SELECT * FROM audience.app_sessions('use', 'turns')", "42704 app \"turns\" does not exist in workspace \"use\""),
            ("t_u_viewer", "SELECT * FROM audience.import_connect('use', '[]')", "42501 permission denied for function import_connect"),
        ];
        for (role, sql, expected) in cases {
            let got = as_role(role, || one::<String>(&format!("SELECT pg_temp.outcome($q${sql}$q$)")));
            assert_eq!(got, expected, "{role}: {sql}");
        }
    }

    #[pg_test]
    fn app_access_lists_who_may_open_which_app() {
        run("SELECT audience.create_workspace('acc');
             SELECT audience.create_app('acc', 'pub');
             SELECT audience.create_app('acc', 'priv', 'private');
             SELECT audience.create_app('acc', 'priv2', 'private');
             CREATE ROLE t_acc_admin; CREATE ROLE t_acc_v1; CREATE ROLE t_acc_v2; CREATE ROLE t_acc_inv;
             GRANT audience_reader TO t_acc_admin, t_acc_v1, t_acc_v2, t_acc_inv;
             SELECT audience.add_member('acc', 'admin@acc.example', 'admin', 't_acc_admin');
             SELECT audience.add_member('acc', 'dev@acc.example', 'developer');
             SELECT audience.add_member('acc', 'v1@acc.example', 'viewer', 't_acc_v1');
             SELECT audience.grant_app_access('acc', 'priv', 'v1@acc.example');
             SELECT audience.add_member('acc', 'v2@acc.example', 'viewer', 't_acc_v2');
             SELECT audience.invite_viewer('acc', 'inv@acc.example', 'priv2', 't_acc_inv');
             SELECT audience.grant_app_access('acc', 'priv', 'granted@elsewhere.example');");
        let all = "SELECT * FROM (VALUES
            ('priv', 'admin@acc.example', 'admin', 'active', 'admin'),
            ('priv', 'dev@acc.example', 'developer', 'active', 'developer'),
            ('priv', 'granted@elsewhere.example', NULL, 'active', 'grant'),
            ('priv', 'v1@acc.example', 'viewer', 'active', 'grant'),
            ('priv2', 'admin@acc.example', 'admin', 'active', 'admin'),
            ('priv2', 'dev@acc.example', 'developer', 'active', 'developer'),
            ('priv2', 'inv@acc.example', 'viewer', 'invited', 'invitation'),
            ('pub', 'admin@acc.example', 'admin', 'active', 'admin'),
            ('pub', 'dev@acc.example', 'developer', 'active', 'developer'),
            ('pub', 'inv@acc.example', 'viewer', 'invited', 'invitation'),
            ('pub', 'v1@acc.example', 'viewer', 'active', 'member'),
            ('pub', 'v2@acc.example', 'viewer', 'active', 'member')) t(app, member, kind, status, via)";
        // (role, query, expected rows)
        let cases = [
            ("", "SELECT * FROM audience.app_access('acc')".to_string(), all.to_string()),
            ("t_acc_admin", "SELECT * FROM audience.app_access('acc')".to_string(), all.to_string()),
            ("t_acc_admin", "SELECT * FROM audience.app_access('acc', 'priv')".to_string(), format!("{all} WHERE app = 'priv'")),
            ("t_acc_admin", "SELECT app, member, kind, status, via FROM audience.app_access WHERE workspace = 'acc'".to_string(), all.to_string()),
            ("t_acc_v1", "SELECT * FROM audience.app_access('acc')".to_string(), format!("{all} WHERE member = 'v1@acc.example'")),
            ("t_acc_v1", "SELECT app, member, kind, status, via FROM audience.app_access".to_string(), format!("{all} WHERE member = 'v1@acc.example'")),
            ("t_acc_v2", "SELECT * FROM audience.app_access('acc')".to_string(), format!("{all} WHERE member = 'v2@acc.example'")),
            ("t_acc_v2", "SELECT * FROM audience.app_access('acc', 'pub')".to_string(), format!("{all} WHERE member = 'v2@acc.example'")),
            ("t_acc_inv", "SELECT app, member, kind, status, via FROM audience.app_access".to_string(), format!("{all} WHERE false")),
        ];
        for (i, (role, ours, expected)) in cases.iter().enumerate() {
            let create = format!("CREATE TEMP TABLE access_{i} AS {ours}");
            if role.is_empty() {
                run(&create); // as the operator
            } else {
                as_role(role, || run(&create));
            }
            assert_same(&format!("{role}: {ours}"), &format!("TABLE access_{i}"), expected);
        }
        // Order: by app, then member.
        assert_eq!(
            one::<String>("SELECT string_agg(app || '/' || member, ' ') FROM audience.app_access('acc', 'priv2')"),
            "priv2/admin@acc.example priv2/dev@acc.example priv2/inv@acc.example"
        );
        // Accepting the invitation makes the invitee a member of the public app.
        run("SELECT audience.accept_invite('acc', 'inv@acc.example')");
        assert_eq!(
            one::<String>("SELECT string_agg(app || ':' || status || ':' || via, ' ' ORDER BY app)
                             FROM audience.app_access('acc') WHERE member = 'inv@acc.example'"),
            "priv2:active:grant pub:active:member"
        );
    }

    #[pg_test]
    fn monthly_pseudonyms_label_sessions_and_top_viewers_alike() {
        load_usage_data("Asia/Tokyo");
        run("SELECT audience.configure_workspace('use', pseudonym_rotation => 'monthly')");
        let (s, u) = (literal("now() - interval '100 days'"), literal("now()"));
        for app in ["pub", "priv", "turns"] {
            assert_eq!(
                difference(
                    &format!("SELECT DISTINCT viewer, viewer_ref FROM audience.app_sessions('use', '{app}', {s}, {u}, NULL, 10000)"),
                    &format!("SELECT viewer, viewer_ref FROM audience.top_viewers('use', '{app}', {s}, {u}, 1000)"),
                ),
                0,
                "{app}: labels differ between app_sessions and top_viewers"
            );
        }
        // A pseudonymous visitor of several months is one row per month's pseudonym.
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM audience.top_viewers('use', 'pub', {s}, {u}, 1000)
                  WHERE pseudonymous AND viewer_ref IN (SELECT ref FROM usage_ev)"
            )),
            0,
            "a monthly pseudonym's viewer_ref is not the unrotated one"
        );
        assert!(
            one::<i64>(&format!("SELECT count(*) FROM audience.top_viewers('use', 'pub', {s}, {u}, 1000) WHERE pseudonymous"))
                > one::<i64>(&format!(
                    "SELECT count(DISTINCT viewer_id) FROM usage_ev e
                      WHERE app = 'pub' AND NOT identified AND viewed_at >= {s} AND viewed_at < {u}"
                )),
            "monthly pseudonyms split a visitor's views by month"
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT sum(views)::bigint FROM audience.top_viewers('use', 'pub', {s}, {u}, 1000) WHERE pseudonymous"
            )),
            one::<i64>(&format!("SELECT count(*) FROM usage_ev e WHERE app = 'pub' AND NOT identified AND viewed_at >= {s} AND viewed_at < {u}"))
        );
    }

    /// What an import may leave behind.
    fn stored() -> String {
        one::<String>(
            "SELECT (SELECT count(*) FROM audience_internal.view_events) || '/' || (SELECT count(*) FROM audience_internal.connect_records)
                    || '/' || (SELECT count(*) FROM audience_internal.connect_content) || '/' || (SELECT count(*) FROM audience_internal.apps)
                    || '/' || (SELECT count(*) FROM audience_internal.viewers)",
        )
    }

    #[pg_test]
    fn import_connect_recognises_records_users_and_content() {
        run("SELECT audience.create_workspace('posit');
             SELECT audience.create_app('posit', 'known');
             SELECT audience.add_member('posit', 'grace@labs.example', 'admin');
             CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM; END $$");
        let users = r#"[{"guid": "u-g", "username": "grace", "email": "grace@labs.example"},
                        {"guid": "u-k", "username": "kim", "email": ""},
                        {"guid": "u-o", "username": "olga", "email": "olga@outside.example"}]"#;
        let content = r#"[{"guid": "c-known", "name": "known", "access_type": "all"},
                          {"guid": "c-open", "name": "Open-App", "title": "Open App", "access_type": "all"},
                          {"guid": "c-acl", "name": "acl-app", "title": "  ", "access_type": "acl"},
                          {"guid": "c-logged", "name": "logged-app", "access_type": "logged_in"}]"#;
        let usage = r#"[
            {"content_guid": "c-known", "user_guid": "u-g", "started": "2026-03-09T08:00:00Z", "ended": "2026-03-09T08:20:00Z", "data_version": 1},
            {"content_guid": "c-open", "user_guid": "u-k", "started": "2026-03-09T23:30:00Z", "ended": null, "data_version": 1},
            {"content_guid": "c-open", "user_guid": "u-k", "started": "2026-03-09T23:30:00Z", "ended": "2026-03-10T00:15:00Z", "data_version": 1},
            {"content_guid": "c-open", "user_guid": "u-o", "time": "2026-03-10T09:00:00Z", "variant_key": "v1", "path": "/"},
            {"content_guid": "c-open", "user_guid": null, "time": "2026-03-10T09:00:00Z"},
            {"content_guid": "c-open", "user_guid": null, "time": "2026-03-10T09:00:01Z"},
            {"content_guid": "c-acl", "user_guid": "u-zed", "started": "2026-03-11T10:00:00+01:00", "ended": "2026-03-11T10:45:00+01:00"},
            {"content_guid": "c-acl", "user_guid": "u-o", "time": "2026-03-11T11:00:00Z"},
            {"content_guid": "c-logged", "user_guid": "u-zed", "time": "2026-03-12T11:00:00Z"}]"#;
        let import = |usage: &str, users: &str, content: &str| {
            one::<String>(&format!("SELECT r::text FROM audience.import_connect('posit', $j${usage}$j$, {users}, {content}) r"))
        };
        let j = |s: &str| format!("$j${s}$j$");
        // The same record twice in one page: once, with its end.
        assert_eq!(import(usage, &j(users), &j(content)), "(8,1,3)");
        assert_rollups_match_events("after import_connect");
        let apps = "SELECT a.slug || ':' || a.visibility || ':' || a.name FROM audience_internal.apps a
                      JOIN audience_internal.workspaces w USING (workspace_id) WHERE w.slug = 'posit' ORDER BY 1";
        assert_eq!(
            one::<String>(&format!("SELECT string_agg(x, ' ') FROM ({apps}) t(x)")),
            "acl-app:private:acl-app known:public:known logged-app:private:logged-app open-app:public:Open App"
        );
        let window = "'2026-03-01', '2026-04-01'";
        // Labels: the member by identity; kim (username, no email) and olga,
        // outsiders on a public app, under pseudonyms; on the private app olga
        // and u-zed (not in the users list: the guid is the identity) by identity.
        let labels = |app: &str| {
            one::<String>(&format!(
                "SELECT string_agg(CASE WHEN pseudonymous THEN 'pseudonym' ELSE viewer END || ':' || kind
                                   || ':' || coalesce(duration::text, 'open'), ' ' ORDER BY started_at, pseudonymous, viewer)
                   FROM audience.app_sessions('posit', '{app}', {window})"
            ))
        };
        assert_eq!(labels("known"), "grace@labs.example:session:00:20:00");
        assert_eq!(labels("open-app"), "pseudonym:session:00:45:00 pseudonym:visit:open pseudonym:visit:open pseudonym:visit:open");
        assert_eq!(labels("acl-app"), "u-zed:session:00:45:00 olga@outside.example:visit:open");
        // Each anonymous record is a visitor of its own.
        assert_eq!(one::<i64>(&format!("SELECT unique_viewers FROM audience.top_apps('posit', {window}) WHERE app = 'open-app'")), 4);
        // Outsiders on public apps are stored as keyed hashes only.
        assert_eq!(
            one::<String>("SELECT coalesce(string_agg(identity, ' ' ORDER BY identity), '') FROM audience_internal.viewers v
                             JOIN audience_internal.workspaces w USING (workspace_id) WHERE w.slug = 'posit' AND identity IS NOT NULL"),
            "olga@outside.example u-zed"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audience_internal.connect_records c, unnest(ARRAY['u-zed', 'u-g', 'u-k', 'u-o', 'olga']) g
                         WHERE position(convert_to(g, 'UTF8') in c.user_ref) > 0"),
            0,
            "a Posit user guid is kept only as a keyed hash"
        );

        // The same page again: nothing new, and known content needs no content list.
        assert_eq!(import(usage, &j(users), "NULL"), "(0,9,0)");
        assert_eq!(import(usage, "NULL", "NULL"), "(0,9,0)", "records are recognised without the users list");
        // An open session ended by a later page gets its end; only once.
        let page = r#"[{"content_guid": "c-acl", "user_guid": "u-new", "started": "2026-03-20T10:00:00Z"}]"#;
        assert_eq!(import(page, "NULL", "NULL"), "(1,0,0)");
        let ended = r#"[{"content_guid": "c-acl", "user_guid": "u-new", "started": "2026-03-20T10:00:00Z", "ended": "2026-03-20T10:07:00Z"}]"#;
        assert_eq!(import(ended, "NULL", "NULL"), "(0,1,0)");
        let later = r#"[{"content_guid": "c-acl", "user_guid": "u-new", "started": "2026-03-20T10:00:00Z", "ended": "2026-03-20T11:00:00Z"}]"#;
        assert_eq!(import(later, "NULL", "NULL"), "(0,1,0)");
        assert_eq!(
            one::<String>(&format!("SELECT duration::text FROM audience.app_sessions('posit', 'acl-app', {window}) WHERE viewer = 'u-new'")),
            "00:07:00"
        );
        assert_eq!(
            one::<String>(&format!("SELECT session_time::text FROM audience.top_apps('posit', {window}) WHERE app = 'acl-app'")),
            "00:52:00"
        );
        assert_rollups_match_events("after an import that ends a session");

        // A refused import stores nothing: no event, record, content or app.
        let before = stored();
        let new_content = r#"[{"guid": "c-brand-new", "name": "brand-new", "access_type": "all"}]"#;
        let bad = r#"[{"content_guid": "c-brand-new", "user_guid": "u-g", "started": "2026-03-21T10:00:00Z"},
                      {"content_guid": "c-open", "user_guid": null, "time": "2026-03-21T10:00:00Z"},
                      {"content_guid": "c-open", "user_guid": "u-g", "started": "2026-03-21T10:00:00Z", "ended": "2026-03-21T09:00:00Z"}]"#;
        assert_eq!(
            one::<String>(&format!(
                "SELECT pg_temp.outcome($q$SELECT * FROM audience.import_connect('posit', {}, {}, {})$q$)",
                j(bad),
                j(users),
                j(new_content)
            )),
            "22023 invalid argument \"usage\": invalid argument \"ended_at\": before \"viewed_at\" (usage[2])"
        );
        assert_eq!(stored(), before);
        // Ingest and the operator may import; a reader may not.
        run("CREATE ROLE t_posit_ingest; GRANT audience_ingest TO t_posit_ingest;
             CREATE ROLE t_posit_manager; GRANT audience_manager TO t_posit_manager;
             CREATE ROLE t_posit_reader; GRANT audience_reader TO t_posit_reader;");
        let page = |n: i32| format!(r#"[{{"content_guid": "c-known", "user_guid": "u-{n}", "time": "2026-03-2{n}T10:00:00Z"}}]"#);
        for (n, role, expected) in [(1, "t_posit_ingest", "ok"), (2, "t_posit_manager", "ok"), (3, "t_posit_reader", "42501")] {
            let got = as_role(role, || {
                one::<String>(&format!(
                    "SELECT split_part(pg_temp.outcome($q$SELECT * FROM audience.import_connect('posit', {})$q$), ' ', 1)",
                    j(&page(n))
                ))
            });
            assert_eq!(got, expected, "{role} calling import_connect");
        }
        assert_rollups_match_events("after imports by several roles");
    }
}
