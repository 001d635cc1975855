//! The read functions of 0.2.0 (Posit Connect's usage questions), asked as
//! the operator over a window that holds every event. Their answers come
//! from rollups the update has to backfill from the events of 0.1.0, so an
//! upgraded database must answer them as a fresh install with the same
//! events does. Labels and viewer_refs are dropped, since pseudonym keys are
//! random per database; an answer whose row order they decide (ties in
//! top_viewers) is compared as a sorted set.

use crate::capture::error_line;
use crate::data::{APPS, WORKSPACES};
use crate::diff::Lines;
use postgres::types::ToSql;
use postgres::Client;
use std::time::SystemTime;

/// (signature, call of p.ws, p.app, p.since and p.until, whether it is
/// asked per workspace with app NULL too, whether its order may depend on
/// labels: top_viewers breaks ties in views by them).
pub const FUNCTIONS: [(&str, &str, bool, bool); 6] = [
    (
        "audience.top_apps(text,timestamptz,timestamptz,integer)",
        "audience.top_apps(p.ws, p.since, p.until, 100)",
        false,
        false,
    ),
    (
        "audience.usage_over_time(text,text,timestamptz,timestamptz,text)",
        "audience.usage_over_time(p.ws, p.app, p.since, p.until, 'month')",
        true,
        false,
    ),
    (
        "audience.top_viewers(text,text,timestamptz,timestamptz,integer)",
        "audience.top_viewers(p.ws, p.app, p.since, p.until, 1000)",
        true,
        true,
    ),
    (
        "audience.viewer_trend(text,text,integer)",
        "audience.viewer_trend(p.ws, p.app, 24)",
        true,
        false,
    ),
    (
        "audience.app_sessions(text,text,timestamptz,timestamptz,interval,integer)",
        "audience.app_sessions(p.ws, p.app, p.since, p.until, NULL, 1000)",
        false,
        false,
    ),
    (
        "audience.app_access(text,text)",
        "audience.app_access(p.ws, p.app)",
        true,
        false,
    ),
];

pub fn exists(client: &mut Client, signature: &str) -> bool {
    client
        .query_one("SELECT to_regprocedure($1) IS NOT NULL", &[&signature])
        .unwrap()
        .get(0)
}

/// The answers of function `index` of FUNCTIONS, for every workspace (top_apps
/// and the functions that take app NULL) and every app (all but top_apps).
pub fn answers(client: &mut Client, index: usize, since: SystemTime, until: SystemTime) -> Lines {
    let (signature, call, per_workspace, sort) = FUNCTIONS[index];
    let name = &signature[..signature.find('(').unwrap()];
    let takes_app = !name.ends_with("top_apps");
    let mut targets: Vec<(&str, Option<&str>)> = Vec::new();
    if per_workspace || !takes_app {
        targets.extend(WORKSPACES.iter().map(|ws| (*ws, None)));
    }
    if takes_app {
        targets.extend(APPS.iter().map(|(ws, app, _)| (*ws, Some(*app))));
    }
    let sql = format!(
        "SELECT (to_jsonb(r) - 'viewer' - 'viewer_ref')::text
           FROM (SELECT $1::text AS ws, $2::text AS app, $3::timestamptz AS since, $4::timestamptz AS until) p,
                LATERAL {call} r"
    );
    let mut lines = Lines::new();
    for (ws, app) in targets {
        let args: [&(dyn ToSql + Sync); 4] = [&ws, &app, &since, &until];
        let mut rows = match client.query(&sql, &args) {
            Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
            Err(e) => vec![error_line(&e)],
        };
        if sort {
            rows.sort();
        }
        lines.insert(format!("{name}({ws}, {})", app.unwrap_or("NULL")), rows);
    }
    lines
}
