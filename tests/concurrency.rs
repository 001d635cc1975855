//! docs/spec.md §7: concurrent ingest from many connections with overlapping viewers
//! loses no update, raises no unique violation or deadlock to the caller,
//! and leaves the rollups equal to what the raw events say.

use pg_audience_integration::{rollups_differing_from_rebuild, TestDb};
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
