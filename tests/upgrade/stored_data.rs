//! Data a released version stored that the rules of the version being built
//! refuse on input: the update handles it, as README ("Updating") says.
//! - identities stored before NFC take their NFC spelling, with their views;
//! - views before 1970 are deleted and their workspace's rollups rebuilt;
//! - a time zone that is not a named IANA zone, an identity that is invisible
//!   or carries bidirectional controls, or one person under two spellings
//!   stop the update with an error that says what to do; nothing changes.

use super::{installed_version, RELEASED};
use pg_audience_integration::{connect_with_notices, TestDb};

/// 'jose' with a combining acute accent: what 0.1.0 stored as typed.
const DECOMPOSED: &str = "jose\u{301}@example.com";
const PRECOMPOSED: &str = "jos\u{e9}@example.com";

fn released_db(name: &str) -> TestDb {
    let (db, mut client) = TestDb::with_extension_version(name, Some(RELEASED));
    client
        .batch_execute(
            "SELECT audience.create_workspace('w');
             SELECT audience.create_app('w', 'vault', 'private');
             SELECT audience.create_app('w', 'dash', 'public');",
        )
        .unwrap();
    db
}

#[test]
fn update_renormalises_identities_and_drops_views_before_1970() {
    let db = released_db("it_upgrade_stored_data");
    let (mut client, notices) = connect_with_notices(&db.name, "postgres");
    client
        .execute("SELECT audience.add_member('w', $1, 'admin')", &[&DECOMPOSED])
        .unwrap();
    client
        .batch_execute(&format!(
            "SELECT audience.record_view('w', 'vault', '{DECOMPOSED}', now() - interval '2 days');
             SELECT audience.record_view('w', 'dash', '{DECOMPOSED}', now() - interval '1 day');
             SELECT audience.grant_app_access('w', 'vault', '{DECOMPOSED}');
             SELECT audience.record_view('w', 'dash', 'early@example.com', '1969-07-20 20:17:00+00');
             SELECT audience.record_view('w', 'dash', 'clock@example.com', '4714-12-01 00:00:00+00 BC');"
        ))
        .unwrap();
    client.batch_execute("ALTER EXTENSION pg_audience UPDATE").unwrap();
    assert_ne!(installed_version(&mut client), RELEASED);
    let said: Vec<String> = notices.lock().unwrap().iter().map(|n| n.message().to_string()).collect();
    for expected in ["stored identities now in Unicode NFC", "view event(s) before 1970 deleted"] {
        assert!(said.iter().any(|m| m.contains(expected)), "warnings {said:?} lack {expected:?}");
    }
    assert!(!said.iter().any(|m| m.contains("jos")), "a warning names a person: {said:?}");

    // The member, the grant and the views are the NFC person's now.
    let row = client
        .query_one(
            "SELECT (SELECT string_agg(identity, ',') FROM audience_internal.members),
                    (SELECT string_agg(identity, ',') FROM audience_internal.app_access),
                    (SELECT string_agg(viewer || ':' || pseudonymous, ',' ORDER BY viewer)
                       FROM audience.recent_viewers('w', 'vault'))",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), PRECOMPOSED);
    assert_eq!(row.get::<_, String>(1), PRECOMPOSED);
    assert_eq!(row.get::<_, String>(2), format!("{PRECOMPOSED}:false"));
    // Typed either way now, they are that one person.
    client
        .execute("SELECT audience.record_view('w', 'vault', $1)", &[&DECOMPOSED])
        .unwrap();
    let viewers: i64 = client
        .query_one("SELECT audience.app_total_viewers('w', 'vault')", &[])
        .unwrap()
        .get(0);
    assert_eq!(viewers, 1);

    // The views before 1970 are gone, and the rollups agree with what is left.
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM audience_internal.view_events WHERE viewed_at < '1970-01-01 00:00:00+00'),
                    audience.app_total_viewers('w', 'dash'),
                    (SELECT sum(views)::bigint FROM audience.app_monthly_viewers('w', 'dash', 24))",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    assert_eq!(row.get::<_, i64>(1), 1, "dash: the member's view only");
    assert_eq!(row.get::<_, i64>(2), 1);
    // A zone west of UTC, which the view of 4714 BC made fail, now works.
    client
        .batch_execute("SELECT audience.configure_workspace('w', time_zone => 'America/Los_Angeles')")
        .unwrap();
}

#[test]
fn update_stops_on_data_only_the_operator_can_decide() {
    let cases: [(&str, &str, &str); 3] = [
        (
            "it_upgrade_stored_zone",
            "SELECT audience.configure_workspace('w', time_zone => 'localtime')",
            "not a named IANA zone",
        ),
        (
            "it_upgrade_stored_bidi",
            "SELECT audience.add_member('w', U&'\\202Emoc.elpmaxe@ecila', 'viewer')",
            "bidirectional controls",
        ),
        (
            "it_upgrade_stored_twice",
            "SELECT audience.add_member('w', U&'jose\\0301@example.com', 'viewer');
             SELECT audience.add_member('w', U&'jos\\00E9@example.com', 'admin');",
            "two Unicode spellings",
        ),
    ];
    for (name, setup, message) in cases {
        let db = released_db(name);
        let (mut client, _notices) = connect_with_notices(&db.name, "postgres");
        client.batch_execute(setup).unwrap();
        let members_before: i64 = client
            .query_one("SELECT count(*) FROM audience_internal.members", &[])
            .unwrap()
            .get(0);
        let e = client
            .batch_execute("ALTER EXTENSION pg_audience UPDATE")
            .expect_err(name);
        let db_error = e.as_db_error().unwrap();
        assert_eq!(db_error.code().code(), "55000", "{name}: {e}");
        assert!(db_error.message().contains(message), "{name}: {}", db_error.message());
        assert!(db_error.hint().is_some(), "{name}: no hint");
        assert!(!db_error.message().contains("jos") && !db_error.message().contains("ecila"), "{name}: {e}");
        assert_eq!(installed_version(&mut client), RELEASED, "{name}");
        let members_after: i64 = client
            .query_one("SELECT count(*) FROM audience_internal.members", &[])
            .unwrap()
            .get(0);
        assert_eq!(members_after, members_before, "{name}");
    }
}
