//! How a generated operation is applied, over the connections one writer
//! holds (an ingest login and a manager login, as a platform would use
//! them), and whether what it came to is what the operation allowed.

use crate::ops::{Ev, Expect, Op};
use crate::world::*;
use postgres::Client;
use serde_json::{json, Value};

/// What applying an operation came to.
pub enum Outcome {
    Done,
    /// Refused: SQLSTATE and message.
    Refused(String, String),
    /// Nothing to do (an end_session before this connection recorded anything).
    Skipped,
}

/// The connections one writer applies its operations through.
pub struct Writer {
    pub ingest: Client,
    pub manager: Client,
    /// Events this connection recorded with record_view: (id, viewed_at; None for now()).
    pub events: Vec<(i64, Option<i64>)>,
    pub start: i64,
}

fn copy_field(v: Option<&str>) -> String {
    match v {
        None => "\\N".to_string(),
        Some(s) => s
            .replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r"),
    }
}

fn ev_json(e: &Ev) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("workspace".into(), json!(e.ws));
    o.insert("app".into(), json!(e.app));
    o.insert("viewer".into(), json!(e.viewer));
    if let Some(a) = &e.anon {
        o.insert("anonymous_id".into(), json!(a));
    }
    if let Some(t) = e.at {
        o.insert("viewed_at".into(), json!(iso(t)));
    }
    if let Some(t) = e.ended {
        o.insert("ended_at".into(), json!(iso(t)));
    }
    if let Some(k) = &e.kind {
        o.insert("kind".into(), json!(k));
    }
    Value::Object(o)
}

impl Writer {
    pub fn apply(&mut self, op: &Op) -> Outcome {
        let result = match op {
            Op::View(e) => {
                let mut args = vec![lit(&e.ws), lit(&e.app), opt_lit(e.viewer.as_deref())];
                if let Some(t) = e.at {
                    args.push(format!("viewed_at => {}", ts(t)));
                }
                if let Some(a) = &e.anon {
                    args.push(format!("anonymous_id => {}", lit(a)));
                }
                if let Some(t) = e.ended {
                    args.push(format!("ended_at => {}", ts(t)));
                }
                if let Some(k) = &e.kind {
                    args.push(format!("kind => {}", lit(k)));
                }
                let sql = format!("SELECT audience.record_view({})", args.join(", "));
                match self.ingest.query_one(&sql, &[]) {
                    Ok(row) => {
                        self.events.push((row.get(0), e.at));
                        Ok(())
                    }
                    Err(err) => Err(err),
                }
            }
            Op::Views { events, on_error } => {
                let body = Value::Array(events.iter().map(ev_json).collect()).to_string();
                self.ingest
                    .query_one("SELECT recorded FROM audience.record_views($1::text::jsonb, $2)", &[&body, on_error])
                    .map(|_| ())
            }
            Op::Copy { rows, insert: false } => {
                let mut text = String::new();
                for e in rows {
                    let at = e.at.map(iso);
                    let ended = e.ended.map(iso);
                    let fields = [
                        Some(e.ws.as_str()),
                        Some(e.app.as_str()),
                        e.viewer.as_deref(),
                        e.anon.as_deref(),
                        at.as_deref(),
                        ended.as_deref(),
                        Some(e.kind.as_deref().unwrap_or("session")),
                    ];
                    text.push_str(&fields.iter().map(|f| copy_field(*f)).collect::<Vec<_>>().join("\t"));
                    text.push('\n');
                }
                (|| {
                    use std::io::Write;
                    let mut w = self.ingest.copy_in(
                        "COPY audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) FROM STDIN",
                    )?;
                    w.write_all(text.as_bytes()).expect("writing COPY data");
                    w.finish().map(|_| ())
                })()
            }
            Op::Copy { rows, insert: true } => {
                let values: Vec<String> = rows
                    .iter()
                    .map(|e| {
                        format!(
                            "({}, {}, {}, {}, {}, {}, {})",
                            lit(&e.ws),
                            lit(&e.app),
                            opt_lit(e.viewer.as_deref()),
                            opt_lit(e.anon.as_deref()),
                            e.at.map_or("now()".to_string(), ts),
                            e.ended.map_or("NULL".to_string(), ts),
                            lit(e.kind.as_deref().unwrap_or("session"))
                        )
                    })
                    .collect();
                self.ingest
                    .batch_execute(&format!(
                        "INSERT INTO audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) VALUES {}",
                        values.join(", ")
                    ))
            }
            Op::EndSession { pick, after, bad } => {
                let (id, started) = match bad {
                    Some(id) => (*id, None),
                    None if self.events.is_empty() => return Outcome::Skipped,
                    None => self.events[pick % self.events.len()],
                };
                let ended = match (after, started) {
                    (None, _) => "now()".to_string(),
                    (Some(d), Some(t)) => ts((t + d).min(self.start + 60 * MICROS_PER_SEC)),
                    // Started at now(): ended some seconds after the run started.
                    (Some(d), None) if *d < 0 => ts(self.start - 3600 * MICROS_PER_SEC),
                    (Some(_), None) => "now()".to_string(),
                };
                self.ingest
                    .batch_execute(&format!("SELECT audience.end_session({id}, {ended})"))
            }
            Op::Import { ws, usage, users, content } => {
                let j = |v: &Option<Value>| v.as_ref().map(|v| v.to_string());
                self.ingest
                    .query_one(
                        "SELECT recorded FROM audience.import_connect($1, $2::text::jsonb, $3::text::jsonb, $4::text::jsonb)",
                        &[ws, &usage.to_string(), &j(users), &j(content)],
                    )
                    .map(|_| ())
            }
            Op::Configure { ws, tz, identification_start, counting_start, rotation, scope } => self.manager.execute(
                "SELECT audience.configure_workspace($1, time_zone => $2, identification_start => $3::text::timestamptz,
                        counting_start => $4::text::timestamptz, pseudonym_rotation => $5, pseudonym_scope => $6)",
                &[ws, tz, identification_start, counting_start, rotation, scope],
            ).map(|_| ()),
            Op::Visibility { ws, app, visibility } => self
                .manager
                .execute("SELECT audience.set_app_visibility($1, $2, $3)", &[ws, app, visibility])
                .map(|_| ()),
            Op::AddMember { ws, member, kind, role } => self
                .manager
                .execute("SELECT audience.add_member($1, $2, $3, $4::text::name)", &[ws, member, kind, role])
                .map(|_| ()),
            Op::Invite { ws, member, app, role } => self
                .manager
                .execute("SELECT audience.invite_viewer($1, $2, $3, $4::text::name)", &[ws, member, app, role])
                .map(|_| ()),
            Op::Accept { ws, member } => {
                self.manager.execute("SELECT audience.accept_invite($1, $2)", &[ws, member]).map(|_| ())
            }
            Op::Remove { ws, member } => {
                self.manager.execute("SELECT audience.remove_member($1, $2)", &[ws, member]).map(|_| ())
            }
            Op::Grant { ws, app, member } => self
                .manager
                .execute("SELECT audience.grant_app_access($1, $2, $3)", &[ws, app, member])
                .map(|_| ()),
            Op::Rotate { ws } => {
                self.manager.execute("SELECT audience.rotate_pseudonym_key($1)", &[ws]).map(|_| ())
            }
            Op::Forget { identity } => {
                self.manager.query("SELECT * FROM audience.forget_viewer($1)", &[identity]).map(|_| ())
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(err) => match err.as_db_error() {
                Some(db) => Outcome::Refused(db.code().code().to_string(), db.message().to_string()),
                None => Outcome::Refused("client".to_string(), err.to_string()),
            },
        }
    }
}

/// Why an outcome is wrong for what the operation expects, if it is.
pub fn judge(expect: Expect, outcome: &Outcome) -> Option<String> {
    let refusal = |code: &str| code.starts_with("22") || code == "42704";
    match (expect, outcome) {
        (_, Outcome::Skipped) => None,
        (Expect::Ok, Outcome::Done) | (Expect::OkOrGone, Outcome::Done) | (Expect::Either, Outcome::Done) => None,
        (Expect::Refused, Outcome::Done) => Some("succeeded, but must be refused".to_string()),
        (Expect::Ok, Outcome::Refused(code, msg)) => Some(format!("refused with {code}: {msg}")),
        (Expect::OkOrGone, Outcome::Refused(code, msg)) => {
            (code != "42704").then(|| format!("refused with {code}: {msg}"))
        }
        (Expect::Refused | Expect::Either, Outcome::Refused(code, msg)) => {
            (!refusal(code)).then(|| format!("failed with {code} (not a refusal of bad input): {msg}"))
        }
    }
}
