//! docs/spec.md §5: every bad input gets an error with a fitting SQLSTATE and a
//! message that names the argument, shows no identity, and changes nothing.

use pg_audience_integration::{expect_error, snapshot, TestDb};
use postgres::error::DbError;

/// The identity passed in many of the failing calls below: no error may show it.
const SECRET: &str = "secret.person@example.com";

/// Every case, one a line: see the top of the file for its columns and set-up.
/// pg_test/sql/bad_input.sql runs the same file.
const CASES: &str = include_str!("bad_input/cases.tsv");

struct Case {
    name: &'static str,
    code: &'static str,
    /// What the message must contain: the argument at fault.
    names: &'static str,
    sql: &'static str,
}

/// The cases of `CASES`: its lines that are neither blank nor comments.
fn cases() -> Vec<Case> {
    let cases: Vec<Case> = CASES
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(i, line)| match line.split('\t').collect::<Vec<_>>()[..] {
            [name, code, names, sql] if code.len() == 5 && !names.is_empty() && !sql.is_empty() => {
                Case {
                    name,
                    code,
                    names,
                    sql,
                }
            }
            _ => panic!(
                "cases.tsv line {}: not case, SQLSTATE, text, SQL: {line:?}",
                i + 1
            ),
        })
        .collect();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "cases.tsv states a case twice");
    }
    cases
}

/// Workspace `acme` (public `dash`, private `vault`, member alice, one view of
/// dash) and workspace `globex` (app `intranet`, to try apps across tenants):
/// the set-up the top of cases.tsv describes. Returns the id of the view.
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

/// A good record: a session of `dash` (content g-dash) by the user u1.
const GOOD_RECORD: &str = r#"{"content_guid": "g-dash", "user_guid": "u1", "started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:10:00Z"}"#;
/// u1 is the person whose identity no error may show.
const USERS: &str = r#"'[{"guid": "u1", "username": "secret", "email": "secret.person@example.com"}]'"#;
const CONTENT: &str = r#"'[{"guid": "g-dash", "name": "dash", "access_type": "all"}]'"#;

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
    let cases = cases();
    // The cases name the view by its id as the largest one.
    let largest: i64 = client
        .query_one(
            "SELECT max(event_id) FROM audience_internal.view_events",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(largest, event_id);
    // The identity check below means something only if identities are passed.
    assert!(cases.iter().filter(|c| c.sql.contains(SECRET)).count() >= 10);

    // Run every case before judging, so one run lists every failing case.
    let mut failures = Vec::new();
    for case in &cases {
        let before = snapshot(&mut client);
        match expect_error(&mut client, case.sql, case.code, case.names) {
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
        "INSERT INTO audience_ingest.view_imports (workspace, app, viewer) VALUES ('acme', 'dash', 'secret.person@example.com')".to_string(),
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
