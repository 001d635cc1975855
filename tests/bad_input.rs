//! docs/spec.md §5: every bad input gets an error with a fitting SQLSTATE and a
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
        // Views from 1970 on, on every ingest path, with the index or row at fault.
        case("record_view: viewed_at before 1970", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', '1969-12-31 23:59:59+00')", "22023", r#""viewed_at": before 1970"#),
        case("record_view: viewed_at the first day PostgreSQL knows", "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com', '4714-11-24 00:00:00+00 BC')", "22023", r#""viewed_at": before 1970"#),
        case("record_views: viewed_at before 1970", r#"SELECT * FROM audience.record_views('[{"workspace": "acme", "app": "dash", "viewer": "secret.person@example.com", "viewed_at": "1969-07-20T20:17:00Z"}]')"#, "22023", "(events[0])"),
        case("COPY path: viewed_at before 1970", "INSERT INTO audience.view_imports (workspace, app, viewer, viewed_at) VALUES ('acme', 'dash', 'secret.person@example.com', now()), ('acme', 'dash', 'secret.person@example.com', '4714-12-01 00:00:00+00 BC')", "22023", "(row 2 of this import)"),
        case("import_connect: started before 1970", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "1969-01-01T00:00:00Z"}"#), "22023", "usage[1]"),
        // Identities that show nothing, or can display as someone else's.
        case("record_view: viewer a zero-width space", "SELECT audience.record_view('acme', 'dash', U&'\\200B')", "22023", r#""viewer": must contain a visible character"#),
        case("record_view: viewer a byte order mark", "SELECT audience.record_view('acme', 'dash', U&'\\FEFF')", "22023", r#""viewer": must contain a visible character"#),
        case("record_view: viewer with a right-to-left override", "SELECT audience.record_view('acme', 'dash', U&'\\202Emoc.elpmaxe@nosrep.terces')", "22023", r#""viewer": must not contain bidirectional"#),
        case("add_member: member only invisible characters", "SELECT audience.add_member('acme', U&'\\200B\\2060', 'viewer')", "22023", r#""member": must contain a visible character"#),
        case("grant_app_access: member with a bidirectional isolate", "SELECT audience.grant_app_access('acme', 'vault', U&'secret.person\\2066@example.com')", "22023", r#""member": must not contain bidirectional"#),
        case("forget_viewer: identity only invisible characters", "SELECT * FROM audience.forget_viewer(U&'\\FEFF')", "22023", r#""identity": must contain a visible character"#),
        // Named IANA zones only: months must not move with the host.
        case("configure_workspace: time_zone localtime", "SELECT audience.configure_workspace('acme', time_zone => 'localtime')", "22023", "time_zone"),
        case("configure_workspace: time_zone posixrules", "SELECT audience.configure_workspace('acme', time_zone => 'posixrules')", "22023", "time_zone"),
        case("configure_workspace: time_zone under posix/", "SELECT audience.configure_workspace('acme', time_zone => 'posix/Europe/Paris')", "22023", "time_zone"),
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
        // Usage windows: [since, until), neither NULL, infinite nor empty.
        case("app_sessions: until before since", "SELECT * FROM audience.app_sessions('acme', 'dash', now(), now() - interval '1 day')", "22023", r#"argument "until""#),
        case("app_sessions: until = since", "SELECT * FROM audience.app_sessions('acme', 'dash', '2026-01-01', '2026-01-01')", "22023", r#"argument "until""#),
        case("app_sessions: NULL since", "SELECT * FROM audience.app_sessions('acme', 'dash', NULL, now())", "22004", r#"argument "since""#),
        case("app_sessions: NULL until", "SELECT * FROM audience.app_sessions('acme', 'dash', now() - interval '1 day', NULL)", "22004", r#"argument "until""#),
        case("app_sessions: since -infinity", "SELECT * FROM audience.app_sessions('acme', 'dash', '-infinity', now())", "22023", r#"argument "since""#),
        case("app_sessions: until infinity", "SELECT * FROM audience.app_sessions('acme', 'dash', now(), 'infinity')", "22023", r#"argument "until""#),
        case("top_apps: until before since", "SELECT * FROM audience.top_apps('acme', '2026-04-01', '2026-03-01')", "22023", r#"argument "until""#),
        case("top_apps: NULL since", "SELECT * FROM audience.top_apps('acme', NULL)", "22004", r#"argument "since""#),
        case("top_apps: NULL until", "SELECT * FROM audience.top_apps('acme', until => NULL)", "22004", r#"argument "until""#),
        case("top_apps: since infinity", "SELECT * FROM audience.top_apps('acme', 'infinity', 'infinity')", "22023", r#"argument "since""#),
        case("top_viewers: until = since", "SELECT * FROM audience.top_viewers('acme', NULL, '2026-03-01 12:00+00', '2026-03-01 12:00+00')", "22023", r#"argument "until""#),
        case("top_viewers: NULL until", "SELECT * FROM audience.top_viewers('acme', 'dash', now() - interval '1 day', NULL)", "22004", r#"argument "until""#),
        case("top_viewers: until -infinity", "SELECT * FROM audience.top_viewers('acme', 'dash', now() - interval '1 day', '-infinity')", "22023", r#"argument "until""#),
        case("usage_over_time: until before since", "SELECT * FROM audience.usage_over_time('acme', NULL, now(), now() - interval '1 second')", "22023", r#"argument "until""#),
        case("usage_over_time: NULL since", "SELECT * FROM audience.usage_over_time('acme', 'dash', NULL)", "22004", r#"argument "since""#),
        case("usage_over_time: until infinity", "SELECT * FROM audience.usage_over_time('acme', 'dash', now(), 'infinity')", "22023", r#"argument "until""#),
        // Buckets and counts of the usage answers.
        case("usage_over_time: unknown bucket", "SELECT * FROM audience.usage_over_time('acme', bucket => 'fortnight')", "22023", r#"argument "bucket""#),
        case("usage_over_time: bucket in capitals", "SELECT * FROM audience.usage_over_time('acme', bucket => 'Day')", "22023", r#"argument "bucket""#),
        case("usage_over_time: NULL bucket", "SELECT * FROM audience.usage_over_time('acme', bucket => NULL)", "22004", r#"argument "bucket""#),
        case("top_apps: max_apps = 0", "SELECT * FROM audience.top_apps('acme', max_apps => 0)", "22023", r#"argument "max_apps""#),
        case("top_apps: max_apps = 100000", "SELECT * FROM audience.top_apps('acme', max_apps => 100000)", "22023", r#"argument "max_apps""#),
        case("top_apps: NULL max_apps", "SELECT * FROM audience.top_apps('acme', max_apps => NULL)", "22004", r#"argument "max_apps""#),
        case("top_viewers: max_viewers = 0", "SELECT * FROM audience.top_viewers('acme', max_viewers => 0)", "22023", r#"argument "max_viewers""#),
        case("top_viewers: max_viewers = 100000", "SELECT * FROM audience.top_viewers('acme', 'dash', max_viewers => 100000)", "22023", r#"argument "max_viewers""#),
        case("app_sessions: max_sessions = 0", "SELECT * FROM audience.app_sessions('acme', 'dash', max_sessions => 0)", "22023", r#"argument "max_sessions""#),
        case("app_sessions: max_sessions = 100000", "SELECT * FROM audience.app_sessions('acme', 'dash', max_sessions => 100000)", "22023", r#"argument "max_sessions""#),
        case("app_sessions: NULL max_sessions", "SELECT * FROM audience.app_sessions('acme', 'dash', max_sessions => NULL)", "22004", r#"argument "max_sessions""#),
        case("app_sessions: negative min_duration", "SELECT * FROM audience.app_sessions('acme', 'dash', min_duration => interval '-1 second')", "22023", r#"argument "min_duration""#),
        case("viewer_trend: months = 0", "SELECT * FROM audience.viewer_trend('acme', months => 0)", "22023", r#"argument "months""#),
        case("viewer_trend: months = 5000", "SELECT * FROM audience.viewer_trend('acme', 'dash', 5000)", "22023", r#"argument "months""#),
        case("viewer_trend: NULL months", "SELECT * FROM audience.viewer_trend('acme', NULL, NULL)", "22004", r#"argument "months""#),
        // Unknown or NULL workspace and app in the usage answers.
        case("app_sessions: unknown workspace", "SELECT * FROM audience.app_sessions('nope', 'dash')", "42704", r#"workspace "nope""#),
        case("top_apps: unknown workspace", "SELECT * FROM audience.top_apps('nope')", "42704", r#"workspace "nope""#),
        case("top_viewers: unknown workspace", "SELECT * FROM audience.top_viewers('nope')", "42704", r#"workspace "nope""#),
        case("usage_over_time: unknown workspace", "SELECT * FROM audience.usage_over_time('nope')", "42704", r#"workspace "nope""#),
        case("viewer_trend: unknown workspace", "SELECT * FROM audience.viewer_trend('nope')", "42704", r#"workspace "nope""#),
        case("app_access: unknown workspace", "SELECT * FROM audience.app_access('nope')", "42704", r#"workspace "nope""#),
        case("top_apps: NULL workspace", "SELECT * FROM audience.top_apps(NULL)", "22004", r#"argument "workspace""#),
        case("app_sessions: unknown app", "SELECT * FROM audience.app_sessions('acme', 'nope')", "42704", r#"app "nope""#),
        case("app_sessions: app of another workspace", "SELECT * FROM audience.app_sessions('acme', 'intranet')", "42704", r#"app "intranet""#),
        case("app_sessions: NULL app", "SELECT * FROM audience.app_sessions('acme', NULL)", "22004", r#"argument "app""#),
        case("top_viewers: unknown app", "SELECT * FROM audience.top_viewers('acme', 'nope')", "42704", r#"app "nope""#),
        case("usage_over_time: unknown app", "SELECT * FROM audience.usage_over_time('acme', 'nope')", "42704", r#"app "nope""#),
        case("viewer_trend: unknown app", "SELECT * FROM audience.viewer_trend('acme', 'nope')", "42704", r#"app "nope""#),
        case("app_access: unknown app", "SELECT * FROM audience.app_access('acme', 'nope')", "42704", r#"app "nope""#),
        // Posit Connect imports: a malformed argument, or record N of usage, refuses the whole call.
        case("import_connect: unknown workspace", import_connect("nope", "'[]'", "NULL", "NULL"), "42704", r#"workspace "nope""#),
        case("import_connect: NULL usage", import_connect("acme", "NULL", "NULL", "NULL"), "22004", r#"argument "usage""#),
        case("import_connect: usage not an array", import_connect("acme", "'{}'", "NULL", "NULL"), "22023", r#"argument "usage""#),
        case("import_connect: users not an array", import_connect("acme", "'[]'", "'{}'", "NULL"), "22023", r#"argument "users""#),
        case("import_connect: content not an array", import_connect("acme", "'[]'", "NULL", "'\"x\"'"), "22023", r#"argument "content""#),
        case("import_connect: content item not an object", import_connect("acme", "'[]'", "NULL", "'[1]'"), "22023", "content[0]"),
        case("import_connect: content name not a slug", import_connect("acme", "'[]'", "NULL", r#"'[{"guid": "g-x", "name": "Not A Slug!"}]'"#), "22023", "content[0].name"),
        case("import_connect: user without email or username", import_connect("acme", "'[]'", r#"'[{"guid": "u1", "email": ""}]'"#, "NULL"), "22023", "users[0]"),
        case("import_connect: record not an object", import_record("7"), "22023", "usage[1]"),
        case("import_connect: record without content_guid", import_record(r#"{"user_guid": "u1", "started": "2026-01-02T00:00:00Z"}"#), "22023", "usage[1]"),
        case("import_connect: user_guid not a string", import_record(r#"{"content_guid": "g-dash", "user_guid": 7, "started": "2026-01-02T00:00:00Z"}"#), "22023", "usage[1]"),
        case("import_connect: started not a time", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "yesterday-ish"}"#), "22023", "usage[1]"),
        case("import_connect: started not a string", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "started": 1767225600}"#), "22023", "usage[1]"),
        case("import_connect: ended not a time", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "2026-01-02T00:00:00Z", "ended": "later"}"#), "22023", "usage[1]"),
        case("import_connect: both started and time", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "2026-01-02T00:00:00Z", "time": "2026-01-02T00:00:00Z"}"#), "22023", "usage[1]"),
        case("import_connect: neither started nor time", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1"}"#), "22023", "usage[1]"),
        case("import_connect: unknown content_guid", import_record(r#"{"content_guid": "g-unknown", "user_guid": "u1", "started": "2026-01-02T00:00:00Z"}"#), "22023", "usage[1]"),
        case("import_connect: ended before started", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "2026-01-02T00:00:00Z", "ended": "2026-01-01T23:00:00Z"}"#), "22023", "usage[1]"),
        case("import_connect: a visit with ended", import_record(r#"{"content_guid": "g-dash", "user_guid": "u1", "time": "2026-01-02T00:00:00Z", "ended": "2026-01-02T00:05:00Z"}"#), "22023", "usage[1]"),
        case("import_connect: started 2 days in the future", format!("SELECT * FROM audience.import_connect('acme', jsonb_build_array('{GOOD_RECORD}'::jsonb, jsonb_build_object('content_guid', 'g-dash', 'user_guid', 'u1', 'started', now() + interval '2 days')), {USERS}, {CONTENT})"), "22023", "usage[1]"),
        case("import_connect: a bad record with new content", format!("SELECT * FROM audience.import_connect('acme', '[{{\"content_guid\": \"g-new\", \"user_guid\": \"u1\", \"time\": \"2026-01-02T00:00:00Z\"}}, 7]', {USERS}, '[{{\"guid\": \"g-new\", \"name\": \"brand-new\", \"access_type\": \"all\"}}]')"), "22023", "usage[1]"),
    ]
}

/// A good record: a session of `dash` (content g-dash) by the user u1.
const GOOD_RECORD: &str = r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:10:00Z"}"#;
/// u1 is the person whose identity no error may show.
const USERS: &str = r#"'[{"guid": "u1", "username": "secret", "email": "secret.person@example.com"}]'"#;
const CONTENT: &str = r#"'[{"guid": "g-dash", "name": "dash", "access_type": "all"}]'"#;

fn import_connect(workspace: &str, usage: &str, users: &str, content: &str) -> String {
    format!("SELECT * FROM audience.import_connect('{workspace}', {usage}, {users}, {content})")
}

/// An import of the good record and then `record` (usage[1]), with the users and content lists.
fn import_record(record: &str) -> String {
    format!(
        "SELECT * FROM audience.import_connect('acme', '[{GOOD_RECORD}, {record}]', {USERS}, {CONTENT})"
    )
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

/// Identities in Unicode NFC: the precomposed and the decomposed spelling of
/// one name are one member and one viewer.
#[test]
fn identities_are_one_person_in_any_unicode_spelling() {
    let (_db, mut client) = TestDb::with_extension("it_bad_input_nfc");
    set_up(&mut client);
    client
        .batch_execute(
            "SELECT audience.add_member('acme', U&'jos\\00E9@example.com', 'viewer');
             SELECT audience.add_member('acme', U&'JOSE\\0301@EXAMPLE.COM', 'admin');
             SELECT audience.record_view('acme', 'vault', U&'jose\\0301@example.com');
             SELECT audience.record_view('acme', 'vault', U&'jos\\00E9@example.com');",
        )
        .unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT string_agg(identity || ':' || kind, ',') FROM audience_internal.members WHERE identity LIKE 'jos%'),
                    (SELECT count(*) FROM audience_internal.viewers WHERE identity LIKE 'jos%'),
                    (SELECT identity = U&'jos\\00E9@example.com' FROM audience_internal.members WHERE identity LIKE 'jos%')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "jos\u{e9}@example.com:admin", "one member, changed to admin");
    assert_eq!(row.get::<_, i64>(1), 1, "one viewer");
    assert!(row.get::<_, bool>(2), "stored precomposed");
}

/// relative_time is executable by anyone: no pair of times makes it fail.
#[test]
fn relative_time_answers_for_the_widest_span() {
    let (_db, mut client) = TestDb::with_extension("it_bad_input_relative");
    let row = client
        .query_one(
            "SELECT audience.relative_time('294276-12-31 23:59:59+00', '4713-01-01 00:00:00+00 BC'),
                    audience.relative_time('4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59+00')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "just now");
    assert_eq!(row.get::<_, String>(1), "299187 years ago");
}

/// Every writer of events and rollups refuses REPEATABLE READ and SERIALIZABLE
/// the same way (0A000 and a hint), changes nothing, and works at READ COMMITTED.
#[test]
fn writers_need_read_committed() {
    let (_db, mut client) = TestDb::with_extension("it_bad_input_isolation");
    let event_id = set_up(&mut client);
    let writers = [
        "SELECT audience.record_view('acme', 'dash', 'secret.person@example.com')".to_string(),
        r#"SELECT * FROM audience.record_views('[{"workspace": "acme", "app": "dash", "viewer": "secret.person@example.com"}]')"#.to_string(),
        "INSERT INTO audience.view_imports (workspace, app, viewer) VALUES ('acme', 'dash', 'secret.person@example.com')".to_string(),
        format!("SELECT audience.end_session({event_id})"),
        format!("SELECT * FROM audience.import_connect('acme', '[{GOOD_RECORD}]', {USERS}, {CONTENT})"),
        "SELECT audience.configure_workspace('acme', time_zone => 'Europe/Paris')".to_string(),
        "SELECT * FROM audience.forget_viewer('secret.person@example.com')".to_string(),
    ];
    let mut failures = Vec::new();
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        for sql in &writers {
            let before = snapshot(&mut client);
            let mut tx = client.build_transaction().isolation_level(match level {
                "SERIALIZABLE" => postgres::IsolationLevel::Serializable,
                _ => postgres::IsolationLevel::RepeatableRead,
            }).start().unwrap();
            match tx.batch_execute(sql) {
                Ok(()) => failures.push(format!("{level}: {sql}: succeeded")),
                Err(e) => {
                    let db = e.as_db_error().unwrap();
                    if db.code().code() != "0A000" || !db.message().contains(level) || !db.hint().unwrap_or("").contains("READ COMMITTED") {
                        failures.push(format!("{level}: {sql}: {db:?}"));
                    }
                }
            }
            drop(tx);
            if snapshot(&mut client) != before {
                failures.push(format!("{level}: {sql}: changed something"));
            }
        }
    }
    for sql in &writers {
        if let Err(e) = client.batch_execute(sql) {
            failures.push(format!("READ COMMITTED: {sql}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
