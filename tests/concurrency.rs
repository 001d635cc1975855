//! docs/spec.md §7: concurrent ingest from many connections with overlapping viewers
//! loses no update, raises no unique violation or deadlock to the caller,
//! and leaves the rollups equal to what the raw events say.

use pg_audience_integration::{citus_workers, config, connect_where_rows_are, rollups_differing_from_rebuild, TestDb};
use postgres::error::SqlState;
use postgres::NoTls;
use std::thread;

const CONNECTIONS: usize = 8;
const EVENTS_PER_CONNECTION: usize = 250;

#[test]
fn concurrent_single_event_ingest_keeps_rollups_exact() {
    let (db, mut admin) = TestDb::with_extension("it_concurrency");
    admin
        .batch_execute(
            "SELECT audience.create_workspace('busy');
             SELECT audience.configure_workspace('busy', time_zone => 'Europe/Berlin');
             SELECT audience.create_app('busy', 'a');
             SELECT audience.create_app('busy', 'b', 'private');
             SELECT audience.create_app('busy', 'c');",
        )
        .unwrap();

    // Every connection records views of the same few apps by the same small
    // pool of viewers, around a month boundary, so that every rollup row is
    // contended and many first-views race each other.
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let mut client = db.connect();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..EVENTS_PER_CONNECTION {
                    let n = worker * 7919 + i * 104_729;
                    let app = ["a", "b", "c"][n % 3];
                    let viewer = if n % 5 == 0 { None } else { Some(format!("v{}@mail.example", n % 23)) };
                    let anonymous = format!("cookie-{}", n % 11);
                    // Four hours from 20:00 UTC on March 31st: Berlin (UTC+2 in summer) enters April at 22:00 UTC.
                    let seconds = n % 14_400;
                    let viewer = viewer.map(|v| format!("'{v}'")).unwrap_or_else(|| "NULL".into());
                    let sql = format!(
                        "SELECT audience.record_view('busy', '{app}', {viewer},
                                timestamptz '2026-03-31 20:00:00+00' + interval '{seconds} seconds', '{anonymous}')"
                    );
                    if let Err(e) = client.batch_execute(&sql) {
                        failures.push(format!("{sql}: {e}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(failures.is_empty(), "{} calls failed, first: {:?}", failures.len(), failures.first());

    let events: i64 = admin
        .query_one("SELECT count(*) FROM audience_internal.view_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(events as usize, CONNECTIONS * EVENTS_PER_CONNECTION, "no event lost");

    // Rollups kept under contention equal a rebuild from the raw events.
    let differing = rollups_differing_from_rebuild(&mut admin);
    assert!(differing.is_empty(), "rollups that differ from the raw events:\n{}", differing.join("\n"));

    // And the month boundary was crossed in the workspace's zone: both months have views.
    let months: i64 = admin
        .query_one("SELECT count(*) FROM audience_internal.workspace_months", &[])
        .unwrap()
        .get(0);
    assert_eq!(months, 2);
}

/// Operators adding and inviting the same people at the same moment: a
/// member is unique by identity and by identity hash, and each second add of
/// a person waits for the first and then changes the member, where an upsert
/// alone failed on the key it did not name.
#[test]
fn concurrent_adds_of_one_member_raise_no_unique_violation() {
    let (db, mut admin) = TestDb::with_extension("it_concurrency_members");
    admin.batch_execute("SELECT audience.create_workspace('team');").unwrap();
    const ROUNDS: usize = 150;
    // All connections start each round together and add the round's person.
    let start = std::sync::Arc::new(std::sync::Barrier::new(CONNECTIONS));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let mut client = db.connect();
            let start = start.clone();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for round in 0..ROUNDS {
                    start.wait();
                    let sql = if worker % 2 == 0 {
                        format!("SELECT audience.add_member('team', 'p{round}@mail.example', 'developer')")
                    } else {
                        format!("SELECT audience.invite_viewer('team', 'p{round}@mail.example')")
                    };
                    if let Err(e) = client.batch_execute(&sql) {
                        failures.push(format!("{sql}: {e}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(failures.is_empty(), "{} calls failed, first: {:?}", failures.len(), failures.first());
    // An addition after an invitation makes the person active, and an
    // invitation never demotes: every person ends a developer.
    let (members, developers): (i64, i64) = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE kind = 'developer' AND status = 'active') FROM audience_internal.members",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((members, developers), (ROUNDS as i64, ROUNDS as i64));
}

/// The first events of a month from two connections, on a cluster. The
/// coordinator shows a new month's partition once its own commit is done,
/// while the workers are still committing theirs, and an insert planned
/// earlier in a session went to a worker's shard that had no partition for
/// its event yet (23514, "no partition ... found for row"). Here every
/// worker commits this database's transactions a tenth of a second late,
/// which holds that window open, and the second writer writes as soon as
/// the coordinator's catalog shows the partition. On one server there is
/// no such window: both events are stored.
#[test]
fn a_month_made_by_one_writer_takes_anothers_events_meanwhile() {
    let (db, mut admin) = TestDb::with_extension("it_concurrency_new_month");
    admin
        .batch_execute("SELECT audience.create_workspace('w'); SELECT audience.create_app('w', 'a');")
        .unwrap();
    for (host, port) in citus_workers() {
        // New connections only: the ones the writers below make.
        config(&host, port, &db.name, "postgres")
            .connect(NoTls)
            .unwrap()
            .batch_execute(&format!(
                "SET citus.enable_ddl_propagation = off;
                 ALTER DATABASE \"{0}\" SET commit_delay = 100000;
                 ALTER DATABASE \"{0}\" SET commit_siblings = 0;",
                db.name
            ))
            .unwrap();
    }
    // The follower's record_view has run, and planned its statements,
    // before the month is made.
    let mut follower = db.connect();
    for day in 1..=8 {
        follower
            .batch_execute(&format!("SELECT audience.record_view('w', 'a', 'warm{day}@mail.example', '2026-10-0{day}')"))
            .unwrap();
    }
    let mut maker_client = db.connect();
    let maker = thread::spawn(move || {
        maker_client.batch_execute("SELECT audience.record_view('w', 'a', 'maker@mail.example', '2025-03-05')")
    });
    let made = "SELECT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = 'view_events_2025_03')";
    let mut polls = 0;
    while !follower.query_one(made, &[]).unwrap().get::<_, bool>(0) {
        polls += 1;
        assert!(polls < 100_000, "the partition of March 2025 never appeared");
        thread::yield_now();
    }
    let followed = follower.batch_execute("SELECT audience.record_view('w', 'a', 'follower@mail.example', '2025-03-06')");
    maker.join().unwrap().expect("the maker's event is stored");
    followed.expect("the follower's event, written once the partition was seen, is stored");
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM audience_internal.view_events WHERE viewed_at >= '2025-03-01' AND viewed_at < '2025-04-01'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 2);
}

/// An INSERT or COPY into the staging table holds each workspace it writes
/// to until it ends, as record_view does: configure_workspace and
/// forget_viewer, which take the workspace FOR UPDATE, wait for it rather
/// than change what it is folding. On a Citus coordinator the staging
/// table's trigger runs after its statement has finished, where a lock
/// taken by a statement routed to one worker once ended with that statement
/// (docs/citus.md). Here the import is held halfway, waiting for a viewer's
/// row that another session holds, and the workspace's lock is tried
/// meanwhile.
#[test]
fn an_import_holds_its_workspace_until_it_ends() {
    let (db, mut admin) = TestDb::with_extension("it_concurrency_import_lock");
    admin
        .batch_execute(
            "SELECT audience.create_workspace('w');
             SELECT audience.create_app('w', 'a');
             SELECT audience.record_view('w', 'a', 'again@mail.example', '2026-10-04 12:00+00');",
        )
        .unwrap();
    let ws: i64 = admin
        .query_one("SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'w'", &[])
        .unwrap()
        .get(0);
    let mut holder = db.connect();
    holder
        .batch_execute(&format!("BEGIN; SELECT FROM audience_internal.viewers WHERE workspace_id = {ws} FOR UPDATE;"))
        .unwrap();
    let mut importer = db.connect();
    let import = thread::spawn(move || {
        importer.batch_execute(
            "INSERT INTO audience_ingest.view_imports (workspace, app, viewer, viewed_at)
             VALUES ('w', 'a', 'again@mail.example', '2026-10-05 12:00+00')",
        )
    });
    let mut nodes = vec![db.connect()];
    if !citus_workers().is_empty() {
        nodes.extend(connect_where_rows_are(&db.name));
    }
    let waiting = "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity
                                   WHERE datname = current_database() AND wait_event_type = 'Lock')";
    let mut polls = 0;
    while !nodes.iter_mut().any(|n| n.query_one(waiting, &[]).unwrap().get::<_, bool>(0)) {
        assert!(!import.is_finished(), "the import did not wait for the viewer's row");
        polls += 1;
        assert!(polls < 100_000, "the import never waited for the viewer's row");
        thread::yield_now();
    }
    let tried = db
        .connect()
        .batch_execute(&format!("SELECT FROM audience_internal.workspace_keys WHERE workspace_id = {ws} FOR UPDATE NOWAIT"));
    holder.batch_execute("COMMIT").unwrap();
    import.join().unwrap().expect("the import ends once the viewer's row is free");
    let refused = tried.expect_err("the workspace's lock was free while an import into it was still running");
    assert_eq!(refused.code(), Some(&SqlState::LOCK_NOT_AVAILABLE), "{refused}");
    let differing = rollups_differing_from_rebuild(&mut admin);
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    let stored: i64 = admin
        .query_one("SELECT count(*) FROM audience_internal.view_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 2);
}
