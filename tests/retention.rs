//! Retention (README, "Retention"): retire_events drops whole months of raw
//! events and every answer the rollups hold stays; erasure afterwards still
//! reaches a person's share of the retired days; and pg_cron runs it on a
//! schedule, as the README shows, as the manager's login role only. Each
//! case has a database of its own: dropping a partition locks view_events
//! against every other transaction that uses it.

use pg_audience_integration::{connect, Roles, TestDb};
use postgres::Client;
use std::time::{Duration, Instant};

const PERSON: &str = "xavier@example.com";

fn one(client: &mut Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// A workspace in New York time, written through every path, from
/// January to April 2026. Its local day of January 31 runs into the UTC
/// month of February, so that retiring January leaves half of that day
/// raw. With `person`, xavier views too, on both sides of that line.
fn fill(client: &mut Client, ws: &str, person: bool) {
    client.batch_execute(&format!(
        "SELECT audience.create_workspace('{ws}');
         SELECT audience.configure_workspace('{ws}', time_zone => 'America/New_York');
         SELECT audience.create_app('{ws}', 'pub');
         SELECT audience.create_app('{ws}', 'priv', 'private');
         SELECT audience.add_member('{ws}', 'alice@example.com', 'admin');
         SELECT audience.end_session(audience.record_view('{ws}', 'priv', 'alice@example.com', '2026-01-10 15:00+00'),
                                     '2026-01-10 15:20+00');
         SELECT audience.record_view('{ws}', 'pub', NULL, '2026-01-31 23:30+00', anonymous_id => 'cookie-1');
         SELECT audience.record_view('{ws}', 'pub', 'bob@example.com', '2026-02-01 02:00+00');
         SELECT * FROM audience.record_views('[{{\"workspace\": \"{ws}\", \"app\": \"pub\", \"viewer\": \"carol@example.com\",
                                                 \"viewed_at\": \"2026-01-20T12:00:00Z\", \"kind\": \"visit\"}},
                                                {{\"workspace\": \"{ws}\", \"app\": \"priv\", \"viewer\": \"alice@example.com\",
                                                 \"viewed_at\": \"2026-03-03T12:00:00Z\"}}]');
         INSERT INTO audience_ingest.view_imports (workspace, app, viewer, viewed_at, ended_at)
              VALUES ('{ws}', 'pub', 'bob@example.com', '2026-04-02 09:00+00', '2026-04-02 09:45+00');"
    ))
    .unwrap();
    if person {
        client.batch_execute(&format!(
            "SELECT audience.end_session(audience.record_view('{ws}', 'priv', '{PERSON}', '2026-01-31 22:00+00'),
                                         '2026-01-31 22:40+00');
             SELECT audience.record_view('{ws}', 'pub', '{PERSON}', '2026-02-01 03:00+00');
             SELECT * FROM audience.record_views('[{{\"workspace\": \"{ws}\", \"app\": \"pub\", \"viewer\": \"{PERSON}\",
                                                     \"viewed_at\": \"2026-01-05T08:00:00Z\", \"kind\": \"visit\"}},
                                                    {{\"workspace\": \"{ws}\", \"app\": \"pub\", \"viewer\": \"{PERSON}\",
                                                     \"viewed_at\": \"2026-03-10T08:00:00Z\"}}]');"
        ))
        .unwrap();
    }
}

/// What the rollups answer about a workspace, its counts only (labels
/// and pseudonyms differ between workspaces): whole local days and
/// months, top apps, totals, and how many recent viewers.
fn counts(client: &mut Client, ws: &str) -> String {
    one(client, &format!(
        "SELECT string_agg(x, ';' ORDER BY x) FROM (
             SELECT 'day ' || u::text AS x
               FROM audience.usage_over_time('{ws}', NULL, '2026-01-01 00:00 America/New_York',
                                             '2026-05-01 00:00 America/New_York', 'day') u
              WHERE u.views > 0 OR u.session_time > interval '0'
             UNION ALL SELECT 'month ' || m.month || ' ' || m.unique_viewers || ' ' || m.views
               FROM audience.workspace_monthly_viewers('{ws}', 1200) m WHERE m.views > 0
             UNION ALL SELECT 'app month ' || m.month || ' ' || m.unique_viewers || ' ' || m.views
               FROM audience.app_monthly_viewers('{ws}', 'pub', 1200) m WHERE m.views > 0
             UNION ALL SELECT 'top ' || t::text
               FROM audience.top_apps('{ws}', '2026-01-01 00:00 America/New_York', '2026-05-01 00:00 America/New_York') t
             -- None: January 20 (New York) has one view, at the window's
             -- end. Once January is retired no raw event says so, and the
             -- day's rollup row, which holds it, is not to stand for the
             -- cut day.
             UNION ALL SELECT 'cut day ' || t::text
               FROM audience.top_apps('{ws}', '2026-01-20 00:00 America/New_York', '2026-01-20 12:00+00') t
             UNION ALL SELECT 'total ' || a || ' ' || audience.app_total_viewers('{ws}', a)
               FROM unnest(ARRAY['pub', 'priv']) a
             UNION ALL SELECT 'recent ' || a || ' ' || (SELECT count(*) FROM audience.recent_viewers('{ws}', a))
               FROM unnest(ARRAY['pub', 'priv']) a) s"
    ))
}

/// Everything the operator is answered about a workspace, labels and
/// all, but the relative times, which move with the clock.
fn answers(client: &mut Client, ws: &str) -> String {
    one(client, &format!(
        "SELECT string_agg(x::text, ';' ORDER BY x::text) FROM (
             SELECT to_jsonb(r) - 'last_viewed' AS x FROM audience.recent_viewers('{ws}', 'pub') r
             UNION ALL SELECT to_jsonb(r) - 'last_viewed' FROM audience.recent_viewers('{ws}', 'priv') r
             UNION ALL SELECT to_jsonb(t) FROM audience.top_viewers('{ws}', NULL, '2026-01-01 00:00 America/New_York',
                                                                    '2026-05-01 00:00 America/New_York') t
             UNION ALL SELECT to_jsonb(v) FROM audience.viewer_trend('{ws}', 'pub', 1200) v) s"
    )) + &counts(client, ws)
}


fn partition_exists(client: &mut Client, month: &str) -> bool {
    client
        .query_one(&format!("SELECT to_regclass('audience_internal.view_events_{month}') IS NOT NULL"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn retiring_months_keeps_every_answer_of_the_rollups() {
    let (_db, mut op) = TestDb::with_extension("it_retention_answers");
    fill(&mut op, "acme", true);
    let before = answers(&mut op, "acme");
    let jan_events: i64 = op
        .query_one("SELECT count(*) FROM audience_internal.view_events_2026_01", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        one(&mut op, "SELECT string_agg(month || ' ' || events, ',') FROM audience.retire_events('2026-02-15')"),
        format!("2026-01-01 {jan_events}"),
        "January is whole before February 15, February is not"
    );
    assert!(!partition_exists(&mut op, "2026_01") && partition_exists(&mut op, "2026_02"));
    assert_eq!(
        one(&mut op, "SELECT count(*)::text FROM audience.retire_events('2026-02-15')"),
        "0",
        "nothing left to retire"
    );
    assert_eq!(answers(&mut op, "acme"), before, "an answer of the rollups changed");

    // What needs the raw events of January says so, and changes nothing.
    let refused = op
        .batch_execute("SELECT audience.configure_workspace('acme', time_zone => 'Europe/Paris')")
        .expect_err("the time zone changed without the events to rebuild from");
    assert_eq!(refused.code().map(|c| c.code()), Some("55000"), "{refused}");
    assert_eq!(answers(&mut op, "acme"), before);

    // A late event of a retired month is stored and counted like any other.
    op.batch_execute("SELECT audience.record_view('acme', 'pub', 'dave@example.com', '2026-01-15 12:00+00')")
        .unwrap();
    assert!(partition_exists(&mut op, "2026_01"));
    assert_ne!(answers(&mut op, "acme"), before);
}

/// Erasure after retirement: the person's share of the retired days comes
/// off the rollups too. The workspace then answers as a twin that never
/// had the person, retired alike, and no viewer set or packed counter
/// holds the person's id.
#[test]
fn forgetting_reaches_the_retired_days() {
    let (_db, mut op) = TestDb::with_extension("it_retention_forget");
    fill(&mut op, "acme", true);
    fill(&mut op, "twin", false);
    let person_id: i64 = op
        .query_one(
            "SELECT v.viewer_id FROM audience_internal.viewers v
               JOIN audience_internal.workspaces w USING (workspace_id)
              WHERE w.slug = 'acme' AND v.identity = $1",
            &[&PERSON],
        )
        .unwrap()
        .get(0);
    op.batch_execute("SELECT * FROM audience.retire_events('2026-02-01')").unwrap();
    assert_ne!(counts(&mut op, "acme"), counts(&mut op, "twin"));
    assert_eq!(
        one(&mut op, &format!("SELECT f::text FROM audience.forget_viewer('{PERSON}') f")),
        "(acme,2,2,0,0)",
        "two events were left raw (February and March), in two apps"
    );
    assert_eq!(counts(&mut op, "acme"), counts(&mut op, "twin"));
    let ws = "(SELECT workspace_id FROM audience_internal.workspaces WHERE slug = 'acme')";
    let left = one(
        &mut op,
        &format!(
            "SELECT (SELECT count(*) FROM (
                         SELECT viewers AS s FROM audience_internal.app_days WHERE workspace_id = {ws}
                         UNION ALL SELECT viewers FROM audience_internal.workspace_days WHERE workspace_id = {ws}
                         UNION ALL SELECT viewers FROM audience_internal.app_months WHERE workspace_id = {ws}
                         UNION ALL SELECT viewers FROM audience_internal.workspace_months WHERE workspace_id = {ws}
                         UNION ALL SELECT public_viewers FROM audience_internal.workspace_months WHERE workspace_id = {ws}) x
                      WHERE {person_id} = ANY (audience_internal.viewer_set_ids(x.s)))
                    || ' sets, ' ||
                    (SELECT count(*) FROM (
                         SELECT viewer_counts AS c FROM audience_internal.app_days WHERE workspace_id = {ws}
                         UNION ALL SELECT viewer_counts FROM audience_internal.workspace_days WHERE workspace_id = {ws}
                         UNION ALL SELECT viewer_counts FROM audience_internal.workspace_months WHERE workspace_id = {ws}) x
                      WHERE audience_internal.viewer_counts_of(x.c, {person_id}) IS NOT NULL)
                    || ' packed counters'"
        ),
    );
    assert_eq!(left, "0 sets, 0 packed counters", "still holding the person");
}

const DB: &str = "it_retention";
const MANAGER: &str = "it_retention_ops";
const READER: &str = "it_retention_reader";
const RETIRE: &str = "SELECT * FROM audience.retire_events('2025-04-01')";

/// What the rollups answer: monthly uniques, the all-time total, the
/// recent viewers (without their relative time) and usage by whole day.
fn weekly_answers(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT to_jsonb(m)::text FROM audience.workspace_monthly_viewers('acme', 1200) m
             UNION ALL SELECT audience.app_total_viewers('acme', 'dash')::text
             UNION ALL SELECT (to_jsonb(r) - 'last_viewed')::text FROM audience.recent_viewers('acme', 'dash', 100) r
             UNION ALL SELECT to_jsonb(u)::text
                 FROM audience.usage_over_time('acme', NULL, '2025-01-01 00:00+00', '2025-07-01 00:00+00', 'week') u",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The partitions of 2025 (besides them, the month a week ahead has one).
fn partitions(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'audience_internal.view_events'::regclass
                AND c.relname LIKE 'view\\_events\\_2025\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits for the first run of each job to end; returns (status, message) per job.
fn first_runs(cron: &mut Client, jobs: &[i64]) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let runs: Vec<(String, String)> = jobs
            .iter()
            .filter_map(|job| {
                cron.query_opt(
                    "SELECT status, coalesce(return_message, '') FROM cron.job_run_details
                      WHERE jobid = $1 AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1",
                    &[job],
                )
                .unwrap()
                .map(|r| (r.get(0), r.get(1)))
            })
            .collect();
        if runs.len() == jobs.len() {
            return runs;
        }
        assert!(Instant::now() < deadline, "pg_cron did not run the jobs within three minutes");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// pg_cron jobs that go, with their runs, when the test ends, failed or not:
/// a job left behind would run every minute.
struct Unschedule(Vec<i64>);

impl Drop for Unschedule {
    fn drop(&mut self) {
        let mut cron = connect("postgres");
        for job in &self.0 {
            cron.execute("SELECT cron.unschedule($1::bigint)", &[job]).unwrap();
        }
        cron.execute("DELETE FROM cron.job_run_details WHERE jobid = ANY ($1)", &[&self.0]).unwrap();
    }
}

#[test]
fn pg_cron_retires_old_months_as_the_manager_only() {
    let (_db, mut op) = TestDb::with_extension(DB);
    let _roles = Roles::create(&[
        (MANAGER.to_string(), "LOGIN IN ROLE audience_manager"),
        (READER.to_string(), "LOGIN IN ROLE audience_reader"),
    ]);
    // Seven people view an app about once a day from January to June 2025.
    op.batch_execute(
        "SELECT audience.create_workspace('acme');
         SELECT audience.create_app('acme', 'dash');
         INSERT INTO audience_ingest.view_imports (workspace, app, viewer, viewed_at, ended_at)
         SELECT 'acme', 'dash', 'user' || i % 7 || '@example.com',
                timestamptz '2025-01-03 12:00+00' + i * interval '25 hours',
                timestamptz '2025-01-03 12:00+00' + i * interval '25 hours' + (i % 5) * interval '7 minutes'
           FROM generate_series(0, 160) i;",
    )
    .unwrap();
    let before = weekly_answers(&mut op);
    assert!(before.len() > 20, "too few answers to compare: {before:?}");
    assert_eq!(partitions(&mut op).len(), 6, "January to June");

    let mut cron = connect("postgres");
    cron.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    let mut jobs = Vec::new();
    for (name, role) in [("it-retention-manager", MANAGER), ("it-retention-reader", READER)] {
        jobs.push(
            cron.query_one(
                "SELECT cron.schedule_in_database($1, '* * * * *', $2, $3, $4)",
                &[&name, &RETIRE, &DB, &role],
            )
            .unwrap()
            .get::<_, i64>(0),
        );
    }
    let _unscheduled_at_the_end = Unschedule(jobs.clone());
    let runs = first_runs(&mut cron, &jobs);

    assert_eq!(runs[0], ("succeeded".to_string(), "SELECT 3".to_string()), "the manager's job");
    assert_eq!(runs[1].0, "failed", "the reader's job: {runs:?}");
    assert!(runs[1].1.contains("permission denied"), "the reader's job: {runs:?}");
    assert_eq!(
        partitions(&mut op),
        ["view_events_2025_04", "view_events_2025_05", "view_events_2025_06"],
        "January to March retired"
    );
    let retired: Vec<String> = op
        .query("SELECT month::text FROM audience_internal.retired_months ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(retired, ["2025-01-01", "2025-02-01", "2025-03-01"]);
    assert_eq!(weekly_answers(&mut op), before, "an answer of the rollups changed");
}
