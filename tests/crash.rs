//! docs/spec.md §7: a crash — a backend killed with SIGKILL in the middle of ingest,
//! which makes the postmaster end every session and recover from the WAL —
//! leaves raw events and rollups consistent after restart: every rollup
//! equals a rebuild from the raw events, every event whose commit was
//! acknowledged is there, and none is there half. Events that were still
//! waiting for a fold (pending_folds) when the server died, and folds killed
//! half-way, leave nothing to repair: the pending rows are their events', and
//! every answer is the same before the next fold and after it.

use pg_audience_integration::{connect, rollups_differing_from_rebuild, TestDb};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// Crashes, each while every writer is mid-stream.
const ROUNDS: usize = 3;
/// Writers per round: single events, batches, the COPY path and end_session.
const WRITERS: usize = 4;
/// Events committed in a round before the crash (at least).
const BEFORE_CRASH: usize = 400;

/// What one writer did: events it saw committed, and its backend's pid.
struct Writer {
    acknowledged: Arc<AtomicUsize>,
    pid: i32,
    handle: thread::JoinHandle<Vec<String>>,
}

fn start_writer(db: &TestDb, kind: usize, round: usize, stop: Arc<AtomicBool>) -> Writer {
    let mut client = db.connect();
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&acknowledged);
    let handle = thread::spawn(move || {
        let mut unexpected = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let n = round * 1_000_003 + kind * 7919 + i * 104_729;
            let app = ["a", "b", "c"][n % 3];
            let viewer = format!("v{}@mail.example", n % 37);
            let at = format!("timestamptz '2026-03-31 20:00:00+00' + interval '{} seconds'", n % 14_400);
            let (sql, events) = match kind {
                0 => (format!("SELECT audience.record_view('busy', '{app}', '{viewer}', {at})"), 1),
                1 => (
                    format!(
                        "SELECT * FROM audience.record_views(jsonb_build_array(
                            jsonb_build_object('workspace', 'busy', 'app', '{app}', 'viewer', '{viewer}', 'viewed_at', {at}),
                            jsonb_build_object('workspace', 'busy', 'app', 'a', 'anonymous_id', 'cookie-{}', 'viewer', NULL, 'viewed_at', {at})))",
                        n % 11
                    ),
                    2,
                ),
                2 => (
                    format!(
                        "INSERT INTO audience_ingest.view_imports (workspace, app, viewer, viewed_at)
                         SELECT 'busy', '{app}', 'w' || g || '@mail.example', {at} FROM generate_series(1, 5) g"
                    ),
                    5,
                ),
                _ => (
                    format!(
                        "SELECT audience.end_session(audience.record_view('busy', '{app}', '{viewer}', {at}), {at} + interval '90 seconds')"
                    ),
                    1,
                ),
            };
            match client.batch_execute(&sql) {
                Ok(()) => {
                    count.fetch_add(events, Ordering::SeqCst);
                }
                // The crash: the connection is gone, and this writer with it.
                Err(e) if e.is_closed() || e.as_db_error().is_none() || e.code().map(|c| c.code()) == Some("57P01") => break,
                Err(e) if e.code().map(|c| c.code().starts_with("57")).unwrap_or(false) => break,
                Err(e) => {
                    unexpected.push(format!("{sql}: {e}"));
                    break;
                }
            }
        }
        unexpected
    });
    Writer { acknowledged, pid, handle }
}

fn events(db: &TestDb) -> usize {
    let n: i64 = db
        .connect()
        .query_one("SELECT count(*) FROM audience_internal.view_events", &[])
        .unwrap()
        .get(0);
    n as usize
}

/// Pending rows that are not exactly their stored event's (none may be).
fn pending_not_their_event(db: &TestDb) -> i64 {
    db.connect()
        .query_one(
            "SELECT count(*) FROM audience_internal.pending_folds p
               LEFT JOIN audience_internal.view_events e USING (workspace_id, event_id)
              WHERE (e.app_id, e.viewer_id, e.viewed_at, e.ended_at, e.kind, e.identifiable)
                    IS DISTINCT FROM (p.app_id, p.viewer_id, p.viewed_at, p.ended_at, p.kind, p.identifiable)",
            &[],
        )
        .unwrap()
        .get(0)
}

fn pending(db: &TestDb) -> i64 {
    db.connect()
        .query_one("SELECT count(*) FROM audience_internal.pending_folds", &[])
        .unwrap()
        .get(0)
}

/// The operator's answers about the workspace, every kind of read: months,
/// totals, recent viewers and the usage questions over the events' window
/// (rows compared as sets: ties may come in either order; no relative
/// time, which moves with the clock).
fn answers(db: &TestDb) -> String {
    db.connect()
        .query_one(
            "SELECT jsonb_build_object(
                 'months', (SELECT jsonb_agg(m ORDER BY m::text) FROM audience.workspace_monthly_viewers('busy', 120) m),
                 'apps', (SELECT jsonb_agg(jsonb_build_object(
                              'app', a,
                              'total', audience.app_total_viewers('busy', a),
                              'months', (SELECT jsonb_agg(m ORDER BY m::text) FROM audience.app_monthly_viewers('busy', a, 120) m),
                              'recent', (SELECT jsonb_agg(r ORDER BY r::text)
                                          FROM (SELECT viewer, viewer_ref, pseudonymous, last_viewed_at, views
                                                  FROM audience.recent_viewers('busy', a, 20)) r)))
                            FROM unnest(ARRAY['a', 'b', 'c']) a),
                 'days', (SELECT jsonb_agg(u ORDER BY u::text) FROM audience.usage_over_time('busy', NULL,
                              '2026-03-30', '2026-04-03', 'day') u),
                 'viewers', (SELECT jsonb_agg(v ORDER BY v::text) FROM audience.top_viewers('busy', NULL,
                              '2026-03-30', '2026-04-03', 100) v))::text",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Waits for the server to accept connections again after crash recovery.
fn wait_for_recovery(db: &TestDb) {
    for _ in 0..600 {
        if let Ok(mut c) = pg_audience_integration::config(
            &pg_audience_integration::test_host(),
            pg_audience_integration::test_port(),
            &db.name,
            "postgres",
        )
        .connect(postgres::NoTls)
        {
            if c.batch_execute("SELECT 1").is_ok() {
                return;
            }
        }
        thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the server did not come back after the crash");
}

#[test]
fn a_backend_killed_mid_ingest_leaves_events_and_rollups_consistent() {
    let (db, mut admin) = TestDb::with_extension("it_crash");
    admin
        .batch_execute(
            "SELECT audience.create_workspace('busy');
             SELECT audience.configure_workspace('busy', time_zone => 'Europe/Berlin');
             SELECT audience.create_app('busy', 'a');
             SELECT audience.create_app('busy', 'b', 'private');
             SELECT audience.create_app('busy', 'c');",
        )
        .unwrap();
    drop(admin);
    let mut committed = 0;
    for round in 0..ROUNDS {
        let before = events(&db);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<Writer> = (0..WRITERS).map(|k| start_writer(&db, k, round, Arc::clone(&stop))).collect();
        // Crash once the writers are well under way.
        while events(&db) < before + BEFORE_CRASH {
            thread::sleep(std::time::Duration::from_millis(20));
        }
        let victim = writers[round % WRITERS].pid;
        // The shell's own kill: a minimal system may have no kill program.
        let killed = std::process::Command::new("sh")
            .args(["-c", &format!("kill -KILL {victim}")])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -KILL {victim} (the test must run as root or as the server's user)");
        stop.store(true, Ordering::Relaxed);
        let mut acknowledged = 0;
        for w in writers {
            let unexpected = w.handle.join().unwrap();
            assert!(unexpected.is_empty(), "round {round}: {unexpected:?}");
            acknowledged += w.acknowledged.load(Ordering::SeqCst);
        }
        wait_for_recovery(&db);

        let after = events(&db) - before;
        // Acknowledged commits survive; at most one statement per writer was
        // in flight, and it is there whole or not at all (at most 5 events).
        assert!(after >= acknowledged, "round {round}: {after} events stored, {acknowledged} acknowledged");
        assert!(after <= acknowledged + WRITERS * 5, "round {round}: {after} events stored, {acknowledged} acknowledged");
        assert_eq!(pending_not_their_event(&db), 0, "round {round}: pending rows that are not their event's");
        let waiting = pending(&db);
        let read_with_pending = answers(&db);
        // rollups_vs_rebuild folds what is pending first.
        let differing = rollups_differing_from_rebuild(&mut connect(&db.name));
        assert!(differing.is_empty(), "round {round}: rollups that differ from the raw events: {differing:?}");
        assert_eq!(pending(&db), 0, "round {round}: the fold left events pending");
        assert_eq!(answers(&db), read_with_pending, "round {round}: a fold after the crash changed an answer");
        committed += after;
        eprintln!(
            "crash round {round}: {after} events stored, {acknowledged} acknowledged before the crash, {waiting} waiting for a fold"
        );
    }
    assert!(committed >= ROUNDS * BEFORE_CRASH);
}
