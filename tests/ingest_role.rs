//! docs/spec.md §2, §7: the ingest role reads nothing, and learns nothing through the
//! one function that names a stored event. `end_session(event_id, ended_at)`
//! answers a database login about the events that login recorded (it sent
//! their times itself, and received their ids) and about no other: for an
//! event of another login, or an event erased since, it gives exactly the
//! error of an id that never existed, whatever `ended_at` it is given; so no
//! bisection of `ended_at` finds when someone else's view began.

use pg_audience_integration::{connect_as, Roles, TestDb};
use postgres::Client;

fn end_session(client: &mut Client, event_id: i64, ended_at: &str) -> Result<(), (String, String)> {
    client
        .execute(
            &format!("SELECT audience.end_session($1, timestamptz '{ended_at}')"),
            &[&event_id],
        )
        .map(|_| ())
        .map_err(|e| {
            let db = e.as_db_error().expect("a server error");
            (db.code().code().to_string(), db.message().replace(&event_id.to_string(), "N"))
        })
}

#[test]
fn end_session_answers_only_the_login_that_recorded_the_event() {
    let roles = Roles::create(&[
        ("it_ingest_web".to_string(), "LOGIN IN ROLE audience_ingest"),
        ("it_ingest_other".to_string(), "LOGIN IN ROLE audience_ingest"),
    ]);
    let (db, mut op) = TestDb::with_extension("it_ingest_role");
    op.batch_execute(
        "SELECT audience.create_workspace('acme');
         SELECT audience.create_app('acme', 'dash');",
    )
    .unwrap();
    let mut web = connect_as(&db.name, &roles.names[0]);
    let mut other = connect_as(&db.name, &roles.names[1]);
    let id: i64 = web
        .query_one(
            "SELECT audience.record_view('acme', 'dash', 'ada@acme.example', timestamptz '2026-03-01 12:00:00+00')",
            &[],
        )
        .unwrap()
        .get(0);
    let erased: i64 = web
        .query_one(
            "SELECT audience.record_view('acme', 'dash', 'gone@acme.example', timestamptz '2026-03-01 12:00:00+00')",
            &[],
        )
        .unwrap()
        .get(0);
    op.batch_execute("SELECT * FROM audience.forget_viewer('gone@acme.example')").unwrap();
    let never: i64 = op
        .query_one("SELECT max(event_id) + 1000 FROM audience_internal.view_events", &[])
        .unwrap()
        .get(0);

    // The other login: one answer for every event and every time, before the
    // view began or after it.
    let missing = end_session(&mut other, never, "2026-03-01 13:00:00+00").unwrap_err();
    assert_eq!(missing.0, "42704");
    for ended_at in ["2026-03-01 11:59:59+00", "2026-03-01 12:00:00+00", "2026-03-01 13:00:00+00", "1970-01-01 00:00:00+00"] {
        for event in [id, erased, never] {
            assert_eq!(end_session(&mut other, event, ended_at), Err(missing.clone()), "event {event}, ended_at {ended_at}");
        }
    }
    // The recording login learns what it sent: its view began at noon.
    let early = end_session(&mut web, id, "2026-03-01 11:59:59+00").unwrap_err();
    assert_eq!(early.0, "22023");
    assert_eq!(end_session(&mut web, erased, "2026-03-01 13:00:00+00"), Err(missing.clone()));
    end_session(&mut web, id, "2026-03-01 12:30:00+00").unwrap();
    let ended: bool = op
        .query_one("SELECT ended_at IS NOT NULL FROM audience_internal.view_events WHERE event_id = $1", &[&id])
        .unwrap()
        .get(0);
    assert!(ended);
    // The operator ends any event.
    end_session(&mut op, id, "2026-03-01 12:45:00+00").unwrap();
    drop((web, other));
    drop(db);
    drop(roles);
}

/// The ingest role's catalog, as a tool that lists what a login may use
/// shows it: the COPY target in schema audience_ingest, which it may insert
/// into and read (always empty), nothing of the readers' views, no schema of
/// internals.
#[test]
fn the_ingest_role_sees_its_surface() {
    let roles = Roles::create(&[("it_ingest_surface".to_string(), "LOGIN IN ROLE audience_ingest")]);
    let (db, _op) = TestDb::with_extension("it_ingest_surface");
    let mut web = connect_as(&db.name, &roles.names[0]);
    let usable: Vec<String> = web
        .query(
            "SELECT nspname::text FROM pg_namespace
              WHERE has_schema_privilege(oid, 'USAGE') AND nspname LIKE 'audience%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(usable, ["audience", "audience_ingest"]);
    let tables: Vec<String> = web
        .query(
            // Relations of other extensions (Citus's views on a cluster)
            // are not pg_audience's surface.
            "SELECT t.table_schema || '.' || t.table_name FROM information_schema.tables t
              WHERE t.table_schema NOT IN ('pg_catalog', 'information_schema')
                AND NOT EXISTS (
                    SELECT FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
                     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
                       AND d.deptype = 'e' AND x.extname <> 'pg_audience'
                       AND d.objid = format('%I.%I', t.table_schema, t.table_name)::regclass)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["audience_ingest.view_imports"]);
    let rows: i64 = web
        .query_one("SELECT count(*) FROM audience_ingest.view_imports", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}
