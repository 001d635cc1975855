//! SPEC §5: every bad input gets an error with a fitting SQLSTATE and a
//! message that names the argument, shows no identity, and changes nothing.

use pg_audience_integration::{expect_error, snapshot, TestDb};
use postgres::error::DbError;

/// The identity passed in many of the failing calls below: no error may show it.
const SECRET: &str = "secret.person@example.com";

struct Case {
    name: &'static str,
    sql: String,
    code: &'static str,
    /// What the message must contain: the argument at fault.
    names: &'static str,
}

fn case(
    name: &'static str,
    sql: impl Into<String>,
    code: &'static str,
    names: &'static str,
) -> Case {
    Case {
        name,
        sql: sql.into(),
        code,
        names,
    }
}

/// Workspace `acme` (public `dash`, private `vault`, member alice, one view of
/// dash) and workspace `globex` (app `intranet`, to try apps across tenants).
/// Returns the id of the view.
fn set_up(client: &mut postgres::Client) -> i64 {
    client
        .batch_execute(
            "SELECT audience.create_workspace('acme');
             SELECT audience.create_app('acme', 'dash', 'public');
             SELECT audience.create_app('acme', 'vault', 'private');
             SELECT audience.add_member('acme', 'alice@example.com', 'admin');
             SELECT audience.create_workspace('globex');
             SELECT audience.create_app('globex', 'intranet', 'private');",
        )
        .unwrap();
    client
        .query_one(
            "SELECT audience.record_view('acme', 'dash', 'alice@example.com', now() - interval '1 day')",
            &[],
        )
        .unwrap()
        .get(0)
}

// One line per case reads as a table.
#[rustfmt::skip]
fn cases(event_id: i64) -> Vec<Case> {
    const TOO_LONG: &str = "repeat('a', 245) || '@example.com'"; // 257 characters
    vec![
        // Unknown workspace.
        case("create_app: unknown workspace", "SELECT audience.create_app('nope', 'new-app')", "42704", "workspace"),
        case("record_view: unknown workspace", "SELECT audience.record_view('nope', 'dash', 'secret.person@example.com')", "42704", "workspace"),
        case("recent_viewers: unknown workspace", "SELECT * FROM audience.recent_viewers('nope', 'dash')", "42704", "workspace"),
        case("app_total_viewers: unknown workspace", "SELECT audience.app_total_viewers('nope', 'dash')", "42704", "workspace"),
        case("workspace_monthly_viewers: unknown workspace", "SELECT * FROM audience.workspace_monthly_viewers('nope')", "42704", "workspace"),
        case("add_member: unknown workspace", "SELECT audience.add_member('nope', 'secret.person@example.com', 'viewer')", "42704", "workspace"),
        case("configure_workspace: unknown workspace", "SELECT audience.configure_workspace('nope', time_zone => 'UTC')", "42704", "workspace"),
        case("rotate_pseudonym_key: unknown workspace", "SELECT audience.rotate_pseudonym_key('nope')", "42704", "workspace"),
        // Unknown app, including one that exists in another workspace.
        case("record_view: unknown app", "SELECT audience.record_view('acme', 'nope', 'secret.person@example.com')", "42704", "app"),
        case("record_view: app of another workspace", "SELECT audience.record_view('acme', 'intranet', 'secret.person@example.com')", "42704", "app"),
        case("recent_viewers: unknown app", "SELECT * FROM audience.recent_viewers('acme', 'nope')", "42704", "app"),
        case("recent_viewers: app of another workspace", "SELECT * FROM audience.recent_viewers('acme', 'intranet')", "42704", "app"),
        case("set_app_visibility: unknown app", "SELECT audience.set_app_visibility('acme', 'nope', 'private')", "42704", "app"),
        case("app_monthly_viewers: unknown app", "SELECT * FROM audience.app_monthly_viewers('acme', 'nope')", "42704", "app"),
        case("app_total_viewers: unknown app", "SELECT audience.app_total_viewers('acme', 'nope')", "42704", "app"),
        case("grant_app_access: unknown app", "SELECT audience.grant_app_access('acme', 'nope', 'secret.person@example.com')", "42704", "app"),
        case("invite_viewer: unknown app", "SELECT audience.invite_viewer('acme', 'secret.person@example.com', 'nope')", "42704", "app"),
        // Visibility.
        case("create_app: invalid visibility", "SELECT audience.create_app('acme', 'new-app', 'hidden')", "22023", "visibility"),
        case("set_app_visibility: invalid visibility", "SELECT audience.set_app_visibility('acme', 'dash', 'hidden')", "22023", "visibility"),
        case("set_app_visibility: NULL visibility", "SELECT audience.set_app_visibility('acme', 'dash', NULL)", "22004", "visibility"),
        // Kinds.
        case("add_member: invalid kind", "SELECT audience.add_member('acme', 'secret.person@example.com', 'owner')", "22023", "kind"),
        case("add_member: NULL kind", "SELECT audience.add_member('acme', 'secret.person@example.com', NULL)", "22004", "kind"),
        case("record_view: invalid kind", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', kind => 'pageview')", "22023", "kind"),
        // Viewer and anonymous_id.
        case("record_view: NULL viewer without anonymous_id", "SELECT audience.record_view('acme', 'dash', NULL)", "22004", "anonymous_id"),
        case("record_view: empty anonymous_id", "SELECT audience.record_view('acme', 'dash', NULL, anonymous_id => '')", "22023", "anonymous_id"),
        case("record_view: blank anonymous_id", "SELECT audience.record_view('acme', 'dash', NULL, anonymous_id => '   ')", "22023", "anonymous_id"),
        case("record_view: anonymous_id too long", "SELECT audience.record_view('acme', 'dash', NULL, anonymous_id => repeat('x', 257))", "22001", "anonymous_id"),
        case("record_view: empty viewer", "SELECT audience.record_view('acme', 'dash', '')", "22023", "viewer"),
        case("record_view: blank viewer", "SELECT audience.record_view('acme', 'dash', '   ')", "22023", "viewer"),
        case("record_view: viewer too long", format!("SELECT audience.record_view('acme', 'dash', {TOO_LONG})"), "22001", "viewer"),
        case("record_view: viewer with a control character", "SELECT audience.record_view('acme', 'dash', E'secret.person\\n@example.com')", "22023", "viewer"),
        case("add_member: empty member", "SELECT audience.add_member('acme', '', 'viewer')", "22023", "member"),
        case("add_member: blank member", "SELECT audience.add_member('acme', '   ', 'viewer')", "22023", "member"),
        case("add_member: member too long", format!("SELECT audience.add_member('acme', {TOO_LONG}, 'viewer')"), "22001", "member"),
        case("add_member: NULL member", "SELECT audience.add_member('acme', NULL, 'viewer')", "22004", "member"),
        case("invite_viewer: empty member", "SELECT audience.invite_viewer('acme', '')", "22023", "member"),
        // View times.
        case("record_view: ended_at before viewed_at", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', now() - interval '1 hour', ended_at => now() - interval '2 hours')", "22023", "ended_at"),
        case("record_view: ended_at 2 days in the future", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', now(), ended_at => now() + interval '2 days')", "22023", "ended_at"),
        case("record_view: viewed_at 2 days in the future", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', now() + interval '2 days')", "22023", "viewed_at"),
        case("record_view: viewed_at infinity", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', 'infinity')", "22023", "viewed_at"),
        case("record_view: NULL viewed_at", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', NULL)", "22004", "viewed_at"),
        // Duplicates.
        case("create_workspace: duplicate slug", "SELECT audience.create_workspace('acme')", "23505", "workspace"),
        case("create_app: duplicate slug", "SELECT audience.create_app('acme', 'dash')", "23505", "app"),
        case("create_app: duplicate slug, other visibility", "SELECT audience.create_app('acme', 'vault', 'public')", "23505", "app"),
        // Slugs and names.
        case("create_workspace: bad slug", "SELECT audience.create_workspace('Bad Slug!')", "22023", "slug"),
        case("create_workspace: empty slug", "SELECT audience.create_workspace('')", "22023", "slug"),
        case("create_workspace: slug of 64 characters", "SELECT audience.create_workspace(repeat('a', 64))", "22023", "slug"),
        case("create_workspace: NULL slug", "SELECT audience.create_workspace(NULL)", "22004", "slug"),
        case("create_app: bad slug", "SELECT audience.create_app('acme', 'Bad Slug!')", "22023", "slug"),
        case("create_workspace: blank name", "SELECT audience.create_workspace('new-ws', '   ')", "22023", "name"),
        case("create_workspace: name too long", "SELECT audience.create_workspace('new-ws', repeat('n', 201))", "22001", "name"),
        // Counts.
        case("workspace_monthly_viewers: months = 0", "SELECT * FROM audience.workspace_monthly_viewers('acme', 0)", "22023", "months"),
        case("workspace_monthly_viewers: months = 5000", "SELECT * FROM audience.workspace_monthly_viewers('acme', 5000)", "22023", "months"),
        case("workspace_monthly_viewers: NULL months", "SELECT * FROM audience.workspace_monthly_viewers('acme', NULL)", "22004", "months"),
        case("app_monthly_viewers: months = 0", "SELECT * FROM audience.app_monthly_viewers('acme', 'dash', 0)", "22023", "months"),
        case("app_monthly_viewers: months = 5000", "SELECT * FROM audience.app_monthly_viewers('acme', 'dash', 5000)", "22023", "months"),
        case("recent_viewers: max_viewers = 0", "SELECT * FROM audience.recent_viewers('acme', 'dash', 0)", "22023", "max_viewers"),
        case("recent_viewers: NULL max_viewers", "SELECT * FROM audience.recent_viewers('acme', 'dash', NULL)", "22004", "max_viewers"),
        // NULL workspace or app.
        case("create_app: NULL workspace", "SELECT audience.create_app(NULL, 'new-app')", "22004", "workspace"),
        case("record_view: NULL workspace", "SELECT audience.record_view(NULL, 'dash', 'secret.person@example.com')", "22004", "workspace"),
        case("workspace_monthly_viewers: NULL workspace", "SELECT * FROM audience.workspace_monthly_viewers(NULL)", "22004", "workspace"),
        case("recent_viewers: NULL workspace", "SELECT * FROM audience.recent_viewers(NULL, 'dash')", "22004", "workspace"),
        case("record_view: NULL app", "SELECT audience.record_view('acme', NULL, 'secret.person@example.com')", "22004", "app"),
        // Sessions.
        case("end_session: nonexistent event_id", "SELECT audience.end_session(999999999)", "42704", "event_id"),
        case("end_session: NULL event_id", "SELECT audience.end_session(NULL)", "22004", "event_id"),
        case("end_session: ended_at before the start", format!("SELECT audience.end_session({event_id}, now() - interval '2 days')"), "22023", "ended_at"),
        case("end_session: ended_at 2 days in the future", format!("SELECT audience.end_session({event_id}, now() + interval '2 days')"), "22023", "ended_at"),
        // Roles, time zones, membership.
        case("add_member: unknown db_role", "SELECT audience.add_member('acme', 'secret.person@example.com', 'developer', 'no_such_role')", "42704", "db_role"),
        case("invite_viewer: unknown db_role", "SELECT audience.invite_viewer('acme', 'secret.person@example.com', db_role => 'no_such_role')", "42704", "db_role"),
        case("configure_workspace: unknown time_zone", "SELECT audience.configure_workspace('acme', time_zone => 'Mars/Olympus')", "22023", "time_zone"),
        case("accept_invite: not a member", "SELECT audience.accept_invite('acme', 'secret.person@example.com')", "42704", "member"),
        case("remove_member: not a member", "SELECT audience.remove_member('acme', 'secret.person@example.com')", "42704", "member"),
        case("remove_member: member of another workspace", "SELECT audience.remove_member('globex', 'alice@example.com')", "42704", "member"),
        case("add_member: a capability role as db_role", "SELECT audience.add_member('acme', 'secret.person@example.com', 'viewer', 'audience_reader')", "22023", "db_role"),
        case("configure_workspace: unknown pseudonym_rotation", "SELECT audience.configure_workspace('acme', pseudonym_rotation => 'weekly')", "22023", "pseudonym_rotation"),
        case("configure_workspace: unknown pseudonym_scope", "SELECT audience.configure_workspace('acme', pseudonym_scope => 'everyone')", "22023", "pseudonym_scope"),
        case("forget_viewer: NULL identity", "SELECT * FROM audience.forget_viewer(NULL)", "22004", "identity"),
        case("forget_viewer: empty identity", "SELECT * FROM audience.forget_viewer('  ')", "22023", "identity"),
        case("forget_viewer: identity too long", format!("SELECT * FROM audience.forget_viewer({TOO_LONG})"), "22001", "identity"),
        case("set_token_secret: NULL", "SELECT audience.set_token_secret(NULL)", "22004", "secret"),
        case("set_token_secret: shorter than 32 bytes", "SELECT audience.set_token_secret('thirty-one bytes are too few!!')", "22023", "secret"),
        case("authenticate: no secret set yet", "SELECT audience.authenticate('a.b.c')", "55000", "secret"),
    ]
}

/// Whether any text the client receives with the error shows `identity`.
fn shows(err: &DbError, identity: &str) -> bool {
    [Some(err.message()), err.detail(), err.hint(), err.where_()]
        .into_iter()
        .flatten()
        .any(|text| text.to_lowercase().contains(identity))
}

#[test]
fn every_bad_input_is_refused_and_changes_nothing() {
    let (_db, mut client) = TestDb::with_extension("it_bad_input");
    let event_id = set_up(&mut client);
    let cases = cases(event_id);
    // The identity check below means something only if identities are passed.
    assert!(cases.iter().filter(|c| c.sql.contains(SECRET)).count() >= 10);

    // Run every case before judging, so one run lists every failing case.
    let mut failures = Vec::new();
    for case in &cases {
        let before = snapshot(&mut client);
        match expect_error(&mut client, &case.sql, case.code, case.names) {
            Ok(err) if shows(&err, SECRET) => failures.push(format!(
                "{}: the error shows the identity: {err:?}",
                case.name
            )),
            Ok(_) => {}
            Err(what) => failures.push(format!("{}: {what}", case.name)),
        }
        let after = snapshot(&mut client);
        let changed: Vec<&str> = after
            .iter()
            .filter(|(table, rows)| before.get(*table) != Some(rows))
            .map(|(table, _)| table.as_str())
            .collect();
        if !changed.is_empty() {
            failures.push(format!("{}: changed {}", case.name, changed.join(", ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The snapshot does see a change when there is one.
    let before = snapshot(&mut client);
    client
        .batch_execute("SELECT audience.record_view('acme', 'dash', 'alice@example.com')")
        .unwrap();
    assert_ne!(
        snapshot(&mut client),
        before,
        "a recorded view left the snapshot unchanged"
    );
}
