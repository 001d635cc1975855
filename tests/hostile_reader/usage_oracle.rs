//! The oracle for the views whose rows depend on more than which apps a
//! requester sees. A requester who sees only some apps of a workspace (a
//! viewer member) gets workspace totals (`app` NULL, or no `app` column) over
//! those apps alone: they are counted here straight from the raw events, in
//! SQL written from what the product promises to answer, not from the
//! extension's rollups. And of audience.app_access such a requester gets
//! only its own rows.

use crate::fixture::{ACME, APPS, WORKSPACE_NAMES};
use crate::oracle::{ActorSpec, ACME_PUBLIC, VICTOR_APPS};
use crate::surface::View;
use postgres::Client;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the operator reads from each view: (JSON row, workspace, app).
pub type OperatorRows = BTreeMap<String, Vec<(String, String, Option<String>)>>;

/// Whether `view`'s rows for a whole workspace are totals over the apps the
/// requester sees, so that this module can count them for any set of apps.
pub fn recounted(view: &str, has_app: bool) -> bool {
    matches!(
        (view, has_app),
        ("workspace_monthly_viewers", false) | ("usage_over_time" | "viewer_trend" | "all_monthly_viewers", true)
    )
}

/// `view`'s rows for the whole of `ws` as a requester who sees `apps` of it
/// reads them; None for a view without such rows.
pub fn workspace_totals(
    op: &mut Client,
    view: &str,
    has_app: bool,
    ws: &str,
    apps: &[&str],
) -> Option<Vec<String>> {
    if !recounted(view, has_app) {
        return None;
    }
    Some(match view {
        "workspace_monthly_viewers" => monthly_from_raw_events(op, ws, apps),
        "usage_over_time" => usage_by_day_from_raw_events(op, ws, apps),
        "all_monthly_viewers" => all_months_from_raw_events(op, ws, apps),
        _ => trend_from_raw_events(op, ws, apps),
    })
}

/// The recounts are worth something only if, over every app of a
/// workspace, they give what the operator reads, and over the apps a viewer
/// member of acme sees, something else.
pub fn check_recounts(op: &mut Client, views: &[View], operator_rows: &OperatorRows) {
    for view in views {
        let has_app = view.columns.iter().any(|c| c == "app");
        if !recounted(&view.name, has_app) {
            continue;
        }
        let mut recount = |ws: &str, apps: &[&str]| {
            let mut rows = workspace_totals(op, &view.name, has_app, ws, apps).unwrap();
            rows.sort();
            rows
        };
        for (ws, _) in WORKSPACE_NAMES {
            let every: Vec<&str> = APPS.iter().filter(|a| a.0 == ws).map(|a| a.1).collect();
            let mut read: Vec<String> = operator_rows[&view.name]
                .iter()
                .filter(|(_, w, a)| w == ws && a.is_none())
                .map(|(json, _, _)| json.clone())
                .collect();
            read.sort();
            let counted = recount(ws, &every);
            assert!(
                !counted.is_empty(),
                "no rows of {} recounted for {ws}",
                view.name
            );
            assert_eq!(
                counted, read,
                "{} of {ws} recounted over every app differs from what the operator reads",
                view.name
            );
            if ws == ACME {
                for some in [VICTOR_APPS, ACME_PUBLIC] {
                    assert_ne!(
                        recount(ws, some),
                        counted,
                        "{} of {ws} over {some:?} is its total: the fixture cannot tell them apart",
                        view.name
                    );
                }
            }
        }
    }
}

/// Whether a row of `view` (JSON text), of an app that `spec` sees in `ws`,
/// is one that `spec` may read when it sees only some apps of `ws`. Of
/// app_access such a requester reads only the rows about itself: its
/// identity as a member of `ws`, as `spec.whoami` writes it down.
pub fn own_row(view: &str, json: &str, spec: &ActorSpec, ws: &str) -> bool {
    if view != "app_access" {
        return true;
    }
    let row: Value = serde_json::from_str(json).unwrap();
    let member = row["member"].as_str();
    spec.whoami
        .iter()
        .any(|(who, w, _)| *w == ws && member == Some(*who))
}

/// workspace_monthly_viewers rows of `ws` counted over `apps` only, straight
/// from the raw events (the oracle for a viewer member's workspace totals).
fn monthly_from_raw_events(op: &mut Client, ws: &str, apps: &[&str]) -> Vec<String> {
    let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    op.query(
        "SELECT jsonb_build_object(
                    'workspace', w.slug, 'month', m.month::date,
                    'unique_viewers', count(DISTINCT e.viewer_id), 'views', count(e.event_id),
                    'complete', m.month < date_trunc('month', now() AT TIME ZONE w.time_zone))::text
           FROM audience_internal.workspaces w
           CROSS JOIN LATERAL generate_series(
                    date_trunc('month', now() AT TIME ZONE w.time_zone) - interval '11 months',
                    date_trunc('month', now() AT TIME ZONE w.time_zone), interval '1 month') m(month)
           LEFT JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id AND a.slug = ANY ($2)
           LEFT JOIN audience_internal.view_events e
                  ON e.workspace_id = w.workspace_id AND e.app_id = a.app_id
                 AND date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone) = m.month
          WHERE w.slug = $1
          GROUP BY w.slug, w.time_zone, m.month",
        &[&ws, &apps],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// all_monthly_viewers rows of `ws` (app NULL) counted over `apps` only:
/// every month from the first with a view of those apps to the month in
/// progress, empty months included.
fn all_months_from_raw_events(op: &mut Client, ws: &str, apps: &[&str]) -> Vec<String> {
    let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    op.query(
        "WITH w AS (SELECT w.workspace_id, w.slug, w.time_zone,
                           date_trunc('month', now() AT TIME ZONE w.time_zone) AS cur
                      FROM audience_internal.workspaces w WHERE w.slug = $1),
              ev AS (SELECT e.viewer_id, e.event_id, date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone) AS month
                       FROM audience_internal.view_events e
                       JOIN w ON w.workspace_id = e.workspace_id
                       JOIN audience_internal.apps a ON a.workspace_id = e.workspace_id AND a.app_id = e.app_id
                      WHERE a.slug = ANY ($2))
         SELECT jsonb_build_object(
                    'workspace', w.slug, 'app', NULL::text, 'month', g.month::date,
                    'month_start', g.month AT TIME ZONE w.time_zone,
                    'unique_viewers', count(DISTINCT ev.viewer_id), 'views', count(ev.event_id),
                    'complete', g.month < w.cur)::text
           FROM w
           CROSS JOIN LATERAL generate_series((SELECT min(x.month) FROM ev x), w.cur, interval '1 month') g(month)
           LEFT JOIN ev ON ev.month = g.month
          GROUP BY w.slug, w.time_zone, w.cur, g.month",
        &[&ws, &apps],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// usage_over_time rows of `ws` (app NULL) counted over `apps` only: one per
/// day of the workspace's time zone that overlaps the last 30 days, empty
/// days included, counting the views inside that window. Session time is the
/// time of the ended sessions, in days and hours.
fn usage_by_day_from_raw_events(op: &mut Client, ws: &str, apps: &[&str]) -> Vec<String> {
    let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    op.query(
        "WITH win AS (SELECT now() - interval '30 days' AS since, now() AS until)
         SELECT jsonb_build_object(
                    'workspace', w.slug, 'app', NULL::text, 'period', d.day,
                    'views', count(e.event_id),
                    'sessions', count(e.event_id) FILTER (WHERE e.kind = 'session'),
                    'visits', count(e.event_id) FILTER (WHERE e.kind = 'visit'),
                    'unique_viewers', count(DISTINCT e.viewer_id),
                    'session_time', justify_hours(coalesce(
                        sum(e.ended_at - e.viewed_at) FILTER (WHERE e.kind = 'session'),
                        interval '0')))::text
           FROM win
          CROSS JOIN audience_internal.workspaces w
          CROSS JOIN LATERAL (
                SELECT g::date AS day FROM generate_series(
                    (win.since AT TIME ZONE w.time_zone)::date::timestamp,
                    ((win.until AT TIME ZONE w.time_zone) - interval '1 microsecond')::date::timestamp,
                    interval '1 day') g) d
           LEFT JOIN audience_internal.apps a ON a.workspace_id = w.workspace_id AND a.slug = ANY ($2)
           LEFT JOIN audience_internal.view_events e
                  ON e.workspace_id = w.workspace_id AND e.app_id = a.app_id
                 AND e.viewed_at >= win.since AND e.viewed_at < win.until
                 AND (e.viewed_at AT TIME ZONE w.time_zone)::date = d.day
          WHERE w.slug = $1
          GROUP BY w.slug, d.day",
        &[&ws, &apps],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// viewer_trend rows of `ws` (app NULL) counted over `apps` only: the last
/// 12 calendar months of the workspace's time zone, each with its distinct
/// viewers, the month before's, the change and the change in percent of the
/// month before (one decimal; NULL when that month had none).
fn trend_from_raw_events(op: &mut Client, ws: &str, apps: &[&str]) -> Vec<String> {
    let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    op.query(
        "SELECT jsonb_build_object(
                    'workspace', t.slug, 'app', NULL::text, 'month', t.month::date,
                    'unique_viewers', t.viewers, 'previous', t.previous,
                    'change', t.viewers - t.previous,
                    'change_pct', CASE WHEN t.previous > 0
                                       THEN round(100.0 * (t.viewers - t.previous) / t.previous, 1) END,
                    'complete', t.month < t.current)::text
           FROM (SELECT w.slug, m.month, c.current,
                        count(DISTINCT e.viewer_id) AS viewers,
                        lag(count(DISTINCT e.viewer_id)) OVER (ORDER BY m.month) AS previous
                   FROM audience_internal.workspaces w
                  CROSS JOIN LATERAL (SELECT date_trunc('month', now() AT TIME ZONE w.time_zone) AS current) c
                  CROSS JOIN LATERAL generate_series(c.current - interval '12 months', c.current,
                                                     interval '1 month') m(month)
                   LEFT JOIN audience_internal.apps a
                          ON a.workspace_id = w.workspace_id AND a.slug = ANY ($2)
                   LEFT JOIN audience_internal.view_events e
                          ON e.workspace_id = w.workspace_id AND e.app_id = a.app_id
                         AND date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone) = m.month
                  WHERE w.slug = $1
                  GROUP BY w.slug, m.month, c.current) t
          WHERE t.month > t.current - interval '12 months'",
        &[&ws, &apps],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}
