//! Generated operations: every mutating function of the product, with
//! arguments that are valid most of the time and sometimes not, and what
//! each may answer (applied by apply.rs).
//!
//! A connection's sequence is a pure function of (seed, connection): the
//! operations are generated up front. Only an `end_session` depends on what
//! ran before, as the k-th event this connection recorded.

use crate::world::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::fmt;

/// What an operation may answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Expect {
    /// Must succeed.
    Ok,
    /// Succeeds, or is refused because of what other operations did (a
    /// member removed, an event erased): 42704 or 22023.
    OkOrGone,
    /// Must be refused with a data exception (22xxx) or 42704.
    Refused,
    /// A product decision docs/spec.md does not pin: success or a refusal
    /// are both fine.
    Either,
}

/// One event, as every ingest path takes it.
#[derive(Clone, Debug)]
pub struct Ev {
    pub ws: String,
    pub app: String,
    pub viewer: Option<String>,
    pub anon: Option<String>,
    /// None: the default (now()).
    pub at: Option<i64>,
    pub ended: Option<i64>,
    /// None: the default ('session').
    pub kind: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Op {
    View(Ev),
    Views {
        events: Vec<Ev>,
        on_error: &'static str,
    },
    /// COPY into audience_ingest.view_imports, or (insert) a multi-row INSERT.
    Copy {
        rows: Vec<Ev>,
        insert: bool,
    },
    /// Ends the pick-th (modulo) event this connection recorded, at its
    /// start plus `after` (None: now()); `bad`: an event id that does not exist.
    EndSession {
        pick: usize,
        after: Option<i64>,
        bad: Option<i64>,
    },
    Import {
        ws: String,
        usage: Value,
        users: Option<Value>,
        content: Option<Value>,
    },
    Configure {
        ws: String,
        tz: Option<String>,
        identification_start: Option<String>,
        counting_start: Option<String>,
        rotation: Option<String>,
        scope: Option<String>,
    },
    Visibility {
        ws: String,
        app: String,
        visibility: String,
    },
    AddMember {
        ws: String,
        member: String,
        kind: String,
        role: Option<String>,
    },
    Invite {
        ws: String,
        member: String,
        app: Option<String>,
        role: Option<String>,
    },
    Accept {
        ws: String,
        member: String,
    },
    Remove {
        ws: String,
        member: String,
    },
    Grant {
        ws: String,
        app: String,
        member: String,
    },
    Rotate {
        ws: String,
    },
    Forget {
        identity: String,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::View(_) => "record_view",
            Op::Views { .. } => "record_views",
            Op::Copy { insert: false, .. } => "copy view_imports",
            Op::Copy { insert: true, .. } => "insert view_imports",
            Op::EndSession { .. } => "end_session",
            Op::Import { .. } => "import_connect",
            Op::Configure { .. } => "configure_workspace",
            Op::Visibility { .. } => "set_app_visibility",
            Op::AddMember { .. } => "add_member",
            Op::Invite { .. } => "invite_viewer",
            Op::Accept { .. } => "accept_invite",
            Op::Remove { .. } => "remove_member",
            Op::Grant { .. } => "grant_app_access",
            Op::Rotate { .. } => "rotate_pseudonym_key",
            Op::Forget { .. } => "forget_viewer",
        }
    }
}

/// A generated operation and what it may answer.
#[derive(Clone)]
pub struct Step {
    pub op: Op,
    pub expect: Expect,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} expecting {:?}", self.op, self.expect)
    }
}

/// Generates the operations of one connection.
pub struct Gen {
    rng: StdRng,
    start: i64,
    /// Posit records this connection imported, per workspace, to import
    /// again (duplicates, and open sessions that have ended since).
    imported: Vec<(String, Value)>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

impl Gen {
    pub fn new(seed: u64, connection: usize, start: i64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(connection as u64)),
            start,
            imported: Vec::new(),
        }
    }

    pub fn sequence(&mut self, n: usize) -> Vec<Step> {
        (0..n).map(|_| self.step()).collect()
    }

    fn ws(&mut self) -> String {
        let r = self.rng.gen_range(0..10);
        WORKSPACES[if r < 5 {
            0
        } else if r < 8 {
            1
        } else {
            2
        }]
        .to_string()
    }

    fn app(&mut self) -> String {
        pick(&mut self.rng, &APPS).0.to_string()
    }

    fn person(&mut self) -> usize {
        self.rng.gen_range(0..PEOPLE.len())
    }

    fn spelling(&mut self, person: usize) -> String {
        pick(&mut self.rng, PEOPLE[person].spellings).to_string()
    }

    fn someone(&mut self) -> String {
        let p = self.person();
        self.spelling(p)
    }

    /// A time before the start: mostly over the last 14 months, some in the
    /// last days and hours; whole seconds, sometimes with microseconds.
    fn past(&mut self) -> i64 {
        let r = self.rng.gen_range(0..100);
        let back = if r < 70 {
            self.rng.gen_range(60 * MICROS_PER_SEC..425 * MICROS_PER_DAY)
        } else if r < 88 {
            self.rng.gen_range(60 * MICROS_PER_SEC..3 * MICROS_PER_DAY)
        } else {
            self.rng.gen_range(MICROS_PER_SEC..3600 * MICROS_PER_SEC)
        };
        let t = self.start - back;
        if self.rng.gen_bool(0.7) {
            t - t.rem_euclid(MICROS_PER_SEC)
        } else {
            t
        }
    }

    /// An identification or counting start: within the last 300 days.
    fn setting_time(&mut self) -> i64 {
        let t = self.start - self.rng.gen_range(MICROS_PER_SEC..300 * MICROS_PER_DAY);
        t - t.rem_euclid(MICROS_PER_SEC)
    }

    /// A session length, at most up to the start.
    fn end_after(&mut self, at: i64) -> i64 {
        let d = if self.rng.gen_bool(0.2) {
            self.rng.gen_range(0..10 * MICROS_PER_SEC)
        } else {
            self.rng.gen_range(MICROS_PER_SEC..3 * 3600 * MICROS_PER_SEC)
        };
        (at + d).min(self.start)
    }

    /// A valid event; `now`: with the default time.
    fn event(&mut self, ws: String, now: bool) -> Ev {
        let anonymous = self.rng.gen_bool(0.3);
        let (viewer, anon) = if anonymous {
            (None, Some(pick(&mut self.rng, &COOKIES).to_string()))
        } else {
            (Some(self.someone()), None)
        };
        let at = if now { None } else { Some(self.past()) };
        let kind = match self.rng.gen_range(0..10) {
            0..=5 => None,
            6 => Some("session".to_string()),
            _ => Some("visit".to_string()),
        };
        let ended = match at {
            Some(t) if self.rng.gen_bool(0.5) => Some(self.end_after(t)),
            _ => None,
        };
        Ev {
            ws,
            app: self.app(),
            viewer,
            anon,
            at,
            ended,
            kind,
        }
    }

    /// An event every ingest path must refuse, and whether that refusal is
    /// only of a newer rule.
    fn bad_event(&mut self, ws: String) -> (Ev, Expect) {
        let mut ev = self.event(ws, false);
        let expect = match self.rng.gen_range(0..9) {
            0 => {
                ev.app = "no-such-app".into();
                Expect::Refused
            }
            1 => {
                ev.ws = "no-such-workspace".into();
                Expect::Refused
            }
            2 => {
                ev.viewer = None;
                ev.anon = None;
                Expect::Refused
            }
            3 => {
                let at = ev.at.unwrap();
                ev.ended = Some(at - MICROS_PER_SEC);
                Expect::Refused
            }
            4 => {
                ev.at = Some(self.start + 30 * MICROS_PER_DAY);
                ev.ended = None;
                Expect::Refused
            }
            5 => {
                ev.kind = Some("stream".into());
                Expect::Refused
            }
            6 => {
                let bad = *pick(&mut self.rng, &BAD_IDENTITIES);
                ev.viewer = Some(if bad == "long" {
                    "x".repeat(300)
                } else {
                    bad.to_string()
                });
                ev.anon = None;
                Expect::Refused
            }
            7 => {
                ev.viewer = Some(pick(&mut self.rng, &INVISIBLE_OR_BIDI_IDENTITIES).to_string());
                ev.anon = None;
                Expect::Refused
            }
            _ => {
                // Before 1970: the documented lower bound.
                ev.at = Some(-self.rng.gen_range(MICROS_PER_DAY..400 * MICROS_PER_DAY));
                ev.ended = None;
                Expect::Refused
            }
        };
        (ev, expect)
    }

    fn step(&mut self) -> Step {
        let ws = self.ws();
        let bad = self.rng.gen_bool(0.08);
        let roll = self.rng.gen_range(0..100);
        let (op, expect) = match roll {
            0..=21 if !bad => (Op::View(self.event(ws, false)), Expect::Ok),
            0..=21 => {
                let (ev, e) = self.bad_event(ws);
                (Op::View(ev), e)
            }
            22..=24 => (Op::View(self.event(ws, true)), Expect::Ok),
            25..=33 => {
                let n = self.rng.gen_range(1..8);
                let mut events: Vec<Ev> = (0..n)
                    .map(|_| {
                        let ws = self.ws();
                        let now = self.rng.gen_bool(0.05);
                        self.event(ws, now)
                    })
                    .collect();
                let on_error = if self.rng.gen_bool(0.3) { "skip" } else { "abort" };
                let mut expect = Expect::Ok;
                if bad {
                    let (ev, e) = self.bad_event(ws);
                    let at = self.rng.gen_range(0..=events.len());
                    events.insert(at, ev);
                    // Skipping stores the good events and reports the bad.
                    expect = if on_error == "skip" { Expect::Ok } else { e };
                }
                (Op::Views { events, on_error }, expect)
            }
            34..=39 => {
                let n = self.rng.gen_range(1..10);
                let mut rows: Vec<Ev> = (0..n)
                    .map(|_| {
                        let ws = self.ws();
                        self.event(ws, false)
                    })
                    .collect();
                let mut expect = Expect::Ok;
                if bad {
                    let (mut ev, e) = self.bad_event(ws);
                    // COPY text cannot carry a control character unescaped
                    // as data we want to test here; keep the other faults.
                    if ev.viewer.as_deref().is_some_and(|v| v.contains('\u{7}')) {
                        ev.viewer = Some(String::new());
                    }
                    let at = self.rng.gen_range(0..=rows.len());
                    rows.insert(at, ev);
                    expect = e;
                }
                (
                    Op::Copy {
                        rows,
                        insert: self.rng.gen_bool(0.3),
                    },
                    expect,
                )
            }
            40..=45 => self.import(ws, bad),
            46..=53 => {
                let after = if self.rng.gen_bool(0.2) {
                    None
                } else {
                    Some(self.rng.gen_range(0..2 * 3600 * MICROS_PER_SEC))
                };
                if bad {
                    if self.rng.gen_bool(0.5) {
                        let id = 9_000_000_000 + self.rng.gen_range(0..1000);
                        (
                            Op::EndSession {
                                pick: 0,
                                after,
                                bad: Some(id),
                            },
                            Expect::Either,
                        )
                    } else {
                        // Before the session started.
                        let pick = self.rng.gen_range(0..usize::MAX);
                        (
                            Op::EndSession {
                                pick,
                                after: Some(-MICROS_PER_SEC),
                                bad: None,
                            },
                            Expect::Either,
                        )
                    }
                } else {
                    let pick = self.rng.gen_range(0..usize::MAX);
                    (Op::EndSession { pick, after, bad: None }, Expect::OkOrGone)
                }
            }
            54..=57 => self.configure(ws, bad),
            58..=62 => {
                let visibility = if bad {
                    "secret"
                } else {
                    *pick(&mut self.rng, &["public", "private"])
                };
                let app = self.app();
                let e = if bad { Expect::Refused } else { Expect::Ok };
                (
                    Op::Visibility {
                        ws,
                        app,
                        visibility: visibility.into(),
                    },
                    e,
                )
            }
            63..=67 => {
                let p = self.person();
                let member = if bad { String::new() } else { self.spelling(p) };
                let kind = if bad && self.rng.gen_bool(0.5) {
                    "owner"
                } else {
                    *pick(&mut self.rng, &["admin", "developer", "viewer", "viewer"])
                };
                let role = self.role_for(p);
                let e = if bad { Expect::Refused } else { Expect::Ok };
                (
                    Op::AddMember {
                        ws,
                        member,
                        kind: kind.into(),
                        role,
                    },
                    e,
                )
            }
            68..=71 => {
                let p = self.person();
                let member = self.spelling(p);
                let app = match self.rng.gen_range(0..3) {
                    0 => Some(pick(&mut self.rng, &["vault", "ledger"]).to_string()),
                    1 if bad => Some("no-such-app".to_string()),
                    _ => None,
                };
                let role = self.role_for(p);
                let e = if app.as_deref() == Some("no-such-app") {
                    Expect::Refused
                } else {
                    Expect::Ok
                };
                (Op::Invite { ws, member, app, role }, e)
            }
            72..=75 => {
                let member = self.someone();
                (Op::Accept { ws, member }, Expect::OkOrGone)
            }
            76..=78 => {
                let member = self.someone();
                (Op::Remove { ws, member }, Expect::OkOrGone)
            }
            79..=83 => {
                let member = self.someone();
                let app = if bad { "no-such-app".to_string() } else { self.app() };
                let e = if bad { Expect::Refused } else { Expect::Ok };
                (Op::Grant { ws, app, member }, e)
            }
            84..=85 => {
                if bad {
                    (
                        Op::Rotate {
                            ws: "no-such-workspace".into(),
                        },
                        Expect::Either,
                    )
                } else {
                    (Op::Rotate { ws }, Expect::Ok)
                }
            }
            86..=87 => {
                // Mostly outsiders and the person the sequential step forgets
                // anyway; now and then anyone.
                let p = if self.rng.gen_bool(0.7) {
                    *pick(&mut self.rng, &[URSULA, 6, 7, 8, 9, 14])
                } else {
                    self.person()
                };
                let identity = if bad { "   ".to_string() } else { self.spelling(p) };
                let e = if bad { Expect::Refused } else { Expect::Ok };
                (Op::Forget { identity }, e)
            }
            _ => (Op::View(self.event(ws, false)), Expect::Ok),
        };
        Step { op, expect }
    }

    /// The login role a person's membership maps to, usually.
    fn role_for(&mut self, person: usize) -> Option<String> {
        PEOPLE[person].role.filter(|_| self.rng.gen_bool(0.7)).map(role)
    }

    fn configure(&mut self, ws: String, bad: bool) -> (Op, Expect) {
        let mut tz = None;
        let mut identification_start = None;
        let mut counting_start = None;
        let mut rotation = None;
        let mut scope = None;
        while tz.is_none()
            && identification_start.is_none()
            && counting_start.is_none()
            && rotation.is_none()
            && scope.is_none()
        {
            if self.rng.gen_bool(0.4) {
                tz = Some(pick(&mut self.rng, &TIME_ZONES).to_string());
            }
            // Starts within the last 300 days, so that they cut the events.
            if self.rng.gen_bool(0.3) {
                identification_start = Some(if self.rng.gen_bool(0.15) {
                    "-infinity".to_string()
                } else {
                    iso(self.setting_time())
                });
            }
            if self.rng.gen_bool(0.3) {
                counting_start = Some(if self.rng.gen_bool(0.15) {
                    "-infinity".to_string()
                } else {
                    iso(self.setting_time())
                });
            }
            if self.rng.gen_bool(0.25) {
                rotation = Some(pick(&mut self.rng, &["none", "monthly", "monthly"]).to_string());
            }
            if self.rng.gen_bool(0.25) {
                scope = Some(pick(&mut self.rng, &["workspace", "requester"]).to_string());
            }
        }
        let expect = if bad { Expect::Refused } else { Expect::Ok };
        if bad {
            match self.rng.gen_range(0..4) {
                0 => tz = Some("Mars/Olympus_Mons".into()),
                1 => rotation = Some("weekly".into()),
                2 => scope = Some("team".into()),
                _ => {
                    // Not a named IANA zone: its months would follow the host.
                    tz = Some(pick(&mut self.rng, &["localtime", "posixrules"]).to_string());
                }
            }
        }
        (
            Op::Configure {
                ws,
                tz,
                identification_start,
                counting_start,
                rotation,
                scope,
            },
            expect,
        )
    }

    /// A page of Posit Connect records: new ones, and some this connection
    /// imported before (duplicates, or open sessions now ended).
    fn import(&mut self, ws: String, bad: bool) -> (Op, Expect) {
        let users = json!([
            {"guid": "u-ada", "email": "ada@model.example", "username": "ada"},
            {"guid": "u-o1", "email": "o1@out.example", "username": "o1"},
            {"guid": "u-zoe", "email": "", "username": "zo\u{eb}.k"},
            {"guid": "u-vic", "email": "VIC@model.example", "username": null},
            {"guid": "u-ursula", "email": "ursula@model.example"}
        ]);
        let content = json!([
            {"guid": format!("c-report-{ws}"), "name": "report", "title": "Quarterly report", "access_type": "acl"},
            {"guid": "c-board", "name": "Board", "title": null, "access_type": "all"},
            {"guid": "c-dash", "name": "dash", "access_type": "all"}
        ]);
        let guids = [format!("c-report-{ws}"), "c-board".to_string(), "c-dash".to_string()];
        let user_guids = ["u-ada", "u-o1", "u-zoe", "u-vic", "u-ursula", "u-ghost"];
        let n = self.rng.gen_range(1..6);
        let mut usage = Vec::new();
        for _ in 0..n {
            let guid = pick(&mut self.rng, &guids).clone();
            let user = if self.rng.gen_bool(0.25) {
                Value::Null
            } else {
                json!(pick(&mut self.rng, &user_guids))
            };
            let started = self.past();
            let rec = if self.rng.gen_bool(0.7) {
                let ended = if self.rng.gen_bool(0.5) {
                    json!(iso(self.end_after(started)))
                } else {
                    Value::Null
                };
                json!({"content_guid": guid, "user_guid": user, "started": iso(started), "ended": ended, "data_version": 1})
            } else {
                json!({"content_guid": guid, "user_guid": user, "time": iso(started), "variant_key": "v1",
                       "rendering_id": 7, "bundle_id": 3, "path": "/", "data_version": 1})
            };
            self.imported.push((ws.clone(), rec.clone()));
            usage.push(rec);
        }
        // Again: the same records, an open session now with an end.
        let mine: Vec<Value> = self
            .imported
            .iter()
            .filter(|(w, _)| *w == ws)
            .map(|(_, r)| r.clone())
            .collect();
        if !mine.is_empty() && self.rng.gen_bool(0.4) {
            for _ in 0..self.rng.gen_range(1..3) {
                let mut rec = pick(&mut self.rng, &mine).clone();
                if rec.get("ended") == Some(&Value::Null) && self.rng.gen_bool(0.6) {
                    let started = rec["started"].as_str().unwrap().to_string();
                    // Ended an hour after it started, or at the start of the run.
                    rec["ended"] = json!(ended_after_text(&started, self.start));
                }
                usage.push(rec);
            }
        }
        let with_users = self.rng.gen_bool(0.8);
        let mut expect = Expect::Ok;
        if bad {
            let i = self.rng.gen_range(0..=usage.len());
            let broken = match self.rng.gen_range(0..3) {
                0 => json!({"content_guid": "c-board", "user_guid": "u-o1"}),
                1 => json!({"content_guid": "c-unknown", "user_guid": "u-o1", "time": iso(self.past())}),
                _ => {
                    let s = self.past();
                    json!({"content_guid": "c-board", "user_guid": null, "started": iso(s), "ended": iso(s - MICROS_PER_SEC)})
                }
            };
            usage.insert(i, broken);
            expect = Expect::Refused;
        }
        let op = Op::Import {
            ws,
            usage: Value::Array(usage),
            users: with_users.then_some(users),
            content: Some(content),
        };
        (op, expect)
    }
}

/// The end of a session that started at `started` (ISO text from `iso`):
/// an hour later, at most the start of the run.
fn ended_after_text(started: &str, start: i64) -> String {
    // The text is ours (iso), so parse it back through the epoch.
    let micros = parse_iso(started);
    iso((micros + 3600 * MICROS_PER_SEC).min(start))
}

/// The inverse of `iso`.
fn parse_iso(s: &str) -> i64 {
    let num = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (num(0, 4), num(5, 7), num(8, 10));
    let (hh, mm, ss, us) = (num(11, 13), num(14, 16), num(17, 19), num(20, 26));
    // days_from_civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hh * 3600 + mm * 60 + ss) * MICROS_PER_SEC) + us
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_round_trips() {
        for t in [0i64, -1, 1_709_287_200_123_456, -86_400_000_001] {
            assert_eq!(super::parse_iso(&crate::world::iso(t)), t);
        }
    }
}
