//! docs/spec.md §7: `pg_dump` and restore keep every workspace, app, member, event and
//! secret, so a restored database gives the same answers, the same
//! pseudonyms, and goes on numbering where the original stopped.

use pg_audience_integration::{pg_tool, snapshot, TestDb};
use postgres::Client;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

const APPS: [(&str, &str); 5] = [
    ("acme", "dash"),
    ("acme", "vault"),
    ("acme", "docs"),
    ("globex", "portal"),
    ("globex", "ledger"),
];
const MEMBERS: [&str; 6] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
    "erin@example.com",
    "frank@example.com",
];
/// An outsider whose last view of acme/dash is the newest one there.
const OUTSIDER: &str = "olivia.outsider@example.org";
/// An anonymous visitor whose last view of globex/portal is the newest one there.
const ANONYMOUS_ID: &str = "cookie-7f3a9";
const VIEWS: u32 = 400;

/// Two workspaces' history: public and private apps, members (one still
/// invited), an app made private midway, a rotated key, and views from
/// members, outsiders and anonymous visitors over about four months.
/// Returns the highest event id and the number of views per workspace.
fn populate(client: &mut Client) -> (i64, BTreeMap<&'static str, i64>) {
    client
        .batch_execute(
            "SELECT audience.create_workspace('acme', 'Acme Corp');
             SELECT audience.configure_workspace('acme', time_zone => 'Europe/Paris');
             SELECT audience.create_app('acme', 'dash', 'public');
             SELECT audience.create_app('acme', 'vault', 'private');
             SELECT audience.create_app('acme', 'docs', 'public');
             SELECT audience.add_member('acme', 'alice@example.com', 'admin');
             SELECT audience.add_member('acme', 'bob@example.com', 'developer');
             SELECT audience.add_member('acme', 'carol@example.com', 'viewer');
             SELECT audience.invite_viewer('acme', 'dave@example.com', 'vault');
             SELECT audience.create_workspace('globex');
             SELECT audience.configure_workspace('globex', identification_start => now() - interval '30 days');
             SELECT audience.create_app('globex', 'portal', 'public');
             SELECT audience.create_app('globex', 'ledger', 'private');
             SELECT audience.add_member('globex', 'erin@example.com', 'admin');
             SELECT audience.invite_viewer('globex', 'frank@example.com');
             SELECT audience.accept_invite('globex', 'frank@example.com');",
        )
        .unwrap();

    let record = client
        .prepare("SELECT audience.record_view($1, $2, $3, $4, $5)")
        .unwrap();
    let end_session = client
        .prepare("SELECT audience.end_session($1, $2)")
        .unwrap();
    let now: SystemTime = client.query_one("SELECT now()", &[]).unwrap().get(0);
    let mut max_event_id = 0;
    let mut views = BTreeMap::new();
    for i in 0..VIEWS {
        let (workspace, app) = APPS[i as usize % APPS.len()];
        // Members, outsiders and anonymous visitors in turn, few enough of
        // each that they come back across apps and months.
        let (viewer, anonymous_id) = match i % 3 {
            0 => (
                Some(MEMBERS[(i / 3) as usize % MEMBERS.len()].to_string()),
                None,
            ),
            1 => (Some(format!("outsider{}@example.org", i % 40)), None),
            _ => (None, Some(format!("cookie-{}", i % 50))),
        };
        // Oldest first, seven hours apart.
        let viewed_at = now - Duration::from_secs(3600 * 7 * u64::from(VIEWS - i));
        let id: i64 = client
            .query_one(
                &record,
                &[&workspace, &app, &viewer, &viewed_at, &anonymous_id],
            )
            .unwrap()
            .get(0);
        if i % 10 == 0 {
            client
                .execute(
                    &end_session,
                    &[&id, &(viewed_at + Duration::from_secs(20 * 60))],
                )
                .unwrap();
        }
        if i == VIEWS / 2 {
            client
                .batch_execute(
                    "SELECT audience.set_app_visibility('acme', 'docs', 'private');
                     SELECT audience.rotate_pseudonym_key('acme');",
                )
                .unwrap();
        }
        max_event_id = max_event_id.max(id);
        *views.entry(workspace).or_insert(0) += 1;
    }

    // The newest views: a member on the app now private, and the two
    // pseudonymous viewers whose labels must survive the restore.
    let latest: [(&str, &str, Option<&str>, Option<&str>); 3] = [
        ("acme", "docs", Some("carol@example.com"), None),
        ("acme", "dash", Some(OUTSIDER), None),
        ("globex", "portal", None, Some(ANONYMOUS_ID)),
    ];
    for (workspace, app, viewer, anonymous_id) in latest {
        let id: i64 = client
            .query_one(&record, &[&workspace, &app, &viewer, &now, &anonymous_id])
            .unwrap()
            .get(0);
        max_event_id = max_event_id.max(id);
        *views.entry(workspace).or_insert(0) += 1;
    }
    (max_event_id, views)
}

/// Every answer of the read API, for every workspace and app, as lines of
/// JSON by question. The relative `last_viewed` text depends on the clock,
/// so recent viewers are compared by `last_viewed_at` instead.
fn answers(client: &mut Client) -> BTreeMap<String, Vec<String>> {
    let mut answers = BTreeMap::new();
    let mut ask = |question: String, sql: &str, args: &[&(dyn postgres::types::ToSql + Sync)]| {
        let rows = client
            .query(sql, args)
            .unwrap_or_else(|e| panic!("{question}: {e}"));
        answers.insert(question, rows.iter().map(|row| row.get(0)).collect());
    };
    for workspace in ["acme", "globex"] {
        ask(
            format!("workspace_monthly_viewers({workspace})"),
            "SELECT to_jsonb(r)::text FROM audience.workspace_monthly_viewers($1, 12) r",
            &[&workspace],
        );
    }
    for (workspace, app) in APPS {
        ask(
            format!("app_monthly_viewers({workspace}, {app})"),
            "SELECT to_jsonb(r)::text FROM audience.app_monthly_viewers($1, $2, 12) r",
            &[&workspace, &app],
        );
        ask(
            format!("app_total_viewers({workspace}, {app})"),
            "SELECT audience.app_total_viewers($1, $2)::text",
            &[&workspace, &app],
        );
        ask(
            format!("recent_viewers({workspace}, {app})"),
            "SELECT (to_jsonb(r) - 'last_viewed')::text FROM audience.recent_viewers($1, $2, 1000) r",
            &[&workspace, &app],
        );
    }
    answers
}

/// The newest viewer of an app: label, viewer_ref, whether pseudonymous, views.
fn newest_viewer(client: &mut Client, workspace: &str, app: &str) -> (String, String, bool, i64) {
    let row = client
        .query_one(
            "SELECT viewer, viewer_ref, pseudonymous, views FROM audience.recent_viewers($1, $2, 1)",
            &[&workspace, &app],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// Runs a client program, failing the test with its stderr if it fails.
fn run(mut command: Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stderr}",
        output.status
    );
    if !stderr.is_empty() {
        eprintln!("{command:?} said:\n{stderr}");
    }
}

#[test]
fn dump_and_restore_keep_answers_pseudonyms_and_sequences() {
    let (source_db, mut source) = TestDb::with_extension("it_dump_restore_source");
    let (max_event_id, views) = populate(&mut source);

    let before = answers(&mut source);
    // The comparison below means something only if the answers do: every
    // view is counted, and dash shows both identities and pseudonyms.
    for (workspace, recorded) in &views {
        let counted: i64 = source
            .query_one(
                "SELECT sum(views)::bigint FROM audience.workspace_monthly_viewers($1, 12)",
                &[workspace],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            counted, *recorded,
            "views of {workspace} in its monthly answer"
        );
    }
    let (identified, pseudonymous): (bool, bool) = {
        let row = source
            .query_one(
                "SELECT bool_or(NOT pseudonymous), bool_or(pseudonymous) FROM audience.recent_viewers('acme', 'dash', 1000)",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        identified && pseudonymous,
        "acme/dash should show members by identity and outsiders by pseudonym"
    );
    let outsider = newest_viewer(&mut source, "acme", "dash");
    let anonymous = newest_viewer(&mut source, "globex", "portal");
    assert!(
        outsider.2 && anonymous.2,
        "the outsider and the anonymous visitor should be pseudonymous"
    );
    let stored = snapshot(&mut source);

    let dump = std::env::temp_dir().join(format!("pg_audience-it-{}.dump", std::process::id()));
    let mut pg_dump = pg_tool("pg_dump");
    pg_dump.args(["-Fc", "-f"]).arg(&dump).arg(&source_db.name);
    run(pg_dump);

    let restored_db = TestDb::empty("it_dump_restore_restored");
    let mut pg_restore = pg_tool("pg_restore");
    pg_restore.args(["-d", &restored_db.name]).arg(&dump);
    run(pg_restore);
    std::fs::remove_file(&dump).unwrap();
    let mut restored = restored_db.connect();

    // Every row, secrets included, and every answer are as they were.
    let restored_tables = snapshot(&mut restored);
    for (table, rows) in &stored {
        assert_eq!(
            restored_tables.get(table),
            Some(rows),
            "table {table} differs after restore (rows, digest)"
        );
    }
    assert_eq!(restored_tables.len(), stored.len());
    let after = answers(&mut restored);
    for (question, answer) in &before {
        assert_eq!(
            after.get(question),
            Some(answer),
            "{question} differs after restore"
        );
    }
    assert_eq!(after.len(), before.len());

    // The same viewers come back under the same labels: the keys were kept.
    for ((workspace, app, viewer, anonymous_id), was) in [
        (("acme", "dash", Some(OUTSIDER), None), &outsider),
        (("globex", "portal", None, Some(ANONYMOUS_ID)), &anonymous),
    ] {
        restored
            .execute(
                "SELECT audience.record_view($1, $2, $3, anonymous_id => $4)",
                &[&workspace, &app, &viewer, &anonymous_id],
            )
            .unwrap();
        let now = newest_viewer(&mut restored, workspace, app);
        assert_eq!(
            (&now.0, &now.1, now.2),
            (&was.0, &was.1, was.2),
            "label of the newest viewer of {workspace}/{app}"
        );
        assert_eq!(
            now.3,
            was.3 + 1,
            "the view of {workspace}/{app} went to another viewer"
        );
    }

    // Sequences go on where they stopped: new ids collide with no old row.
    let event_id: i64 = restored
        .query_one(
            "SELECT audience.record_view('acme', 'vault', 'alice@example.com')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        event_id > max_event_id,
        "event id {event_id} after restore is not above {max_event_id}"
    );
    restored
        .batch_execute(
            "SELECT audience.create_workspace('initech');
             SELECT audience.create_app('acme', 'reports', 'public');
             SELECT audience.add_member('acme', 'grace@example.com', 'developer');
             SELECT audience.record_view('acme', 'reports', 'newcomer@example.org');",
        )
        .expect("writing new workspaces, apps, members and viewers after restore");
}
