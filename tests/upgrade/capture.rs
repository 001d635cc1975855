//! Everything a database answers and stores, as lines of text by question,
//! so that two captures compare line by line.

use crate::data::{APPS, LOGIN_ROLES, POOL_ROLE, TOKEN_SUBJECT, WORKSPACES};
use crate::diff::Lines;
use pg_audience_integration::{connect, connect_as};
use postgres::types::ToSql;
use postgres::Client;
use std::collections::BTreeMap;

/// The BI views of 0.1.0.
const VIEWS: [&str; 5] = [
    "apps",
    "workspace_monthly_viewers",
    "app_monthly_viewers",
    "app_total_viewers",
    "recent_viewers",
];

/// A row or an error, as one line: an error is an answer too (a hidden
/// workspace must stay hidden after the update).
pub fn ask(client: &mut Client, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Vec<String> {
    match client.query(sql, args) {
        Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
        Err(e) => vec![error_line(&e)],
    }
}

pub fn error_line(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR {}: {}", db.code().code(), db.message()),
        None => format!("ERROR {e}"),
    }
}

/// The 0.1.0 read API for one requester: (question, SQL, workspace, app).
fn questions() -> Vec<(String, String, Option<&'static str>, Option<&'static str>)> {
    let mut q = vec![
        (
            "whoami".into(),
            "SELECT to_jsonb(r)::text FROM audience.whoami() r".into(),
            None,
            None,
        ),
        (
            "visible_apps".into(),
            "SELECT to_jsonb(r)::text FROM audience.visible_apps() r".into(),
            None,
            None,
        ),
    ];
    for ws in WORKSPACES {
        q.push((
            format!("workspace_monthly_viewers({ws}, 24)"),
            "SELECT to_jsonb(r)::text FROM audience.workspace_monthly_viewers($1, 24) r".into(),
            Some(ws),
            None,
        ));
    }
    for (ws, app, _) in APPS {
        q.push((
            format!("app_monthly_viewers({ws}, {app}, 24)"),
            "SELECT to_jsonb(r)::text FROM audience.app_monthly_viewers($1, $2, 24) r".into(),
            Some(ws),
            Some(app),
        ));
        q.push((
            format!("app_total_viewers({ws}, {app})"),
            "SELECT audience.app_total_viewers($1, $2)::text".into(),
            Some(ws),
            Some(app),
        ));
        // last_viewed is last_viewed_at in words, relative to the clock.
        q.push((
            format!("recent_viewers({ws}, {app}, 1000)"),
            "SELECT (to_jsonb(r) - 'last_viewed')::text FROM audience.recent_viewers($1, $2, 1000) r".into(),
            Some(ws),
            Some(app),
        ));
    }
    for view in VIEWS {
        q.push((
            format!("view audience.{view}"),
            format!("SELECT (to_jsonb(v) - 'last_viewed')::text FROM audience.{view} v ORDER BY 1"),
            None,
            None,
        ));
    }
    q
}

/// Every answer of the 0.1.0 read API in database `db`, as the operator,
/// as each login role, and as the pooled role's end user by request token.
pub fn answers(db: &str, token: fn() -> String) -> Lines {
    let mut all = BTreeMap::new();
    let questions = questions();
    let requesters = std::iter::once(None).chain(LOGIN_ROLES.iter().map(Some));
    for role in requesters {
        let (mut client, who) = match role {
            None => (connect(db), "operator".to_string()),
            Some(role) => (connect_as(db, role), format!("role {role}")),
        };
        for (question, sql, ws, app) in &questions {
            let args: Vec<&(dyn ToSql + Sync)> = match (ws, app) {
                (Some(_), Some(_)) => vec![ws, app],
                (Some(_), None) => vec![ws],
                _ => vec![],
            };
            all.insert(format!("{question} as {who}"), ask(&mut client, sql, &args));
        }
    }
    // The requester lives for one transaction: each question gets its own.
    let mut client = connect_as(db, POOL_ROLE);
    for (question, sql, ws, app) in &questions {
        let args: Vec<&(dyn ToSql + Sync)> = match (ws, app) {
            (Some(_), Some(_)) => vec![ws, app],
            (Some(_), None) => vec![ws],
            _ => vec![],
        };
        let mut tx = client.transaction().unwrap();
        let subject: String = tx
            .query_one("SELECT audience.authenticate($1)", &[&token()])
            .expect("the request token should verify")
            .get(0);
        assert_eq!(subject, TOKEN_SUBJECT);
        let answer = match tx.query(sql.as_str(), &args) {
            Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
            Err(e) => vec![error_line(&e)],
        };
        all.insert(format!("{question} as token {TOKEN_SUBJECT}"), answer);
    }
    all
}

/// How to read one relation of audience_internal: its columns, and the
/// columns that order its rows (the primary key).
pub type Layout = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// The tables and sequences of schema audience_internal as they are now.
pub fn layout(client: &mut Client) -> Layout {
    client
        .query(
            "SELECT c.relname::text,
                    CASE WHEN c.relkind = 'S' THEN ARRAY['last_value', 'is_called']
                         ELSE ARRAY(SELECT quote_ident(a.attname) FROM pg_attribute a
                                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                     ORDER BY a.attnum) END,
                    ARRAY(SELECT quote_ident(a.attname)
                            FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n), pg_attribute a
                           WHERE i.indrelid = c.oid AND i.indisprimary
                             AND a.attrelid = c.oid AND a.attnum = k.attnum
                           ORDER BY k.n)
               FROM pg_class c
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p', 'S')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// Relations of the released version that a later one holds in another
/// form, and the same rows read from that form: the rows per viewer and
/// month are the month rows' viewer sets.
const REPLACED: &[(&str, &str)] = &[
    (
        "app_month_viewers",
        "SELECT json_build_object('workspace_id', m.workspace_id, 'app_id', m.app_id, 'month', m.month, 'viewer_id', s.viewer_id)::text
           FROM audience_internal.app_months m CROSS JOIN unnest(audience_internal.viewer_set_ids(m.viewers)) s(viewer_id)
          ORDER BY m.workspace_id, m.app_id, m.month, s.viewer_id",
    ),
    (
        "workspace_month_viewers",
        "SELECT json_build_object('workspace_id', m.workspace_id, 'month', m.month, 'viewer_id', s.viewer_id)::text
           FROM audience_internal.workspace_months m CROSS JOIN unnest(audience_internal.viewer_set_ids(m.viewers)) s(viewer_id)
          ORDER BY m.workspace_id, m.month, s.viewer_id",
    ),
];

/// The rows of every relation of `layout`, only its columns, in key order
/// (by every column where there is no primary key); a relation a later
/// version replaced, from its new form (REPLACED).
pub fn contents(client: &mut Client, layout: &Layout) -> Lines {
    layout
        .iter()
        .map(|(relation, (columns, key))| {
            let gone: bool = client
                .query_one("SELECT to_regclass('audience_internal.' || quote_ident($1)) IS NULL", &[relation])
                .unwrap()
                .get(0);
            if let Some((_, sql)) = REPLACED.iter().find(|(name, _)| gone && name == relation) {
                return (format!("audience_internal.{relation}"), ask(client, sql, &[]));
            }
            let object: Vec<String> = columns.iter().map(|c| format!("{}, t.{c}", quote_literal(c))).collect();
            let order = if key.is_empty() { "1".to_string() } else { key.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ") };
            let sql = format!(
                "SELECT json_build_object({})::text FROM audience_internal.\"{relation}\" t ORDER BY {order}",
                object.join(", ")
            );
            (format!("audience_internal.{relation}"), ask(client, &sql, &[]))
        })
        .collect()
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.trim_matches('"').replace('\'', "''"))
}
