//! Every read question, asked by every requester in one transaction of its
//! own (after `authenticate` for a token), and compared with the model's
//! answer for the same requester at the same `now()`.

use crate::model::{self, Ctx, Win, Q};
use crate::requesters::{self, Requester, Resolved, REQUESTERS};
use crate::world::*;
use pg_audience_integration::attempt;
use postgres::{Client, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Rows (canonical JSON), or the SQLSTATE of the error.
pub type Answer = Result<Vec<String>, String>;

/// One question: its key, the read it runs, and what the model knows of it.
pub struct Question {
    pub key: String,
    pub sql: String,
    pub kind: Kind,
    /// Asked also of requesters who may not see its workspace (the others
    /// would only repeat "does not exist" for each app).
    pub representative: bool,
}

pub enum Kind {
    /// A question about one workspace.
    Ws(String, Q),
    /// A workspace that does not exist.
    Missing,
    VisibleApps,
    Whoami,
}

/// A JSON value as text with object keys sorted.
fn canon(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut fields: Vec<(String, String)> = map.iter().map(|(k, v)| (k.clone(), canon(v))).collect();
            fields.sort();
            let inner: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canon).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn rows_of(client: &mut impl postgres::GenericClient, sql: &str) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(&format!("SELECT to_jsonb(t)::text FROM ({sql}) t"), &[])?;
    Ok(rows
        .iter()
        .map(|r| canon(&serde_json::from_str(&r.get::<_, String>(0)).unwrap()))
        .collect())
}

/// The windows a seed's reads ask about (besides the default, the last 30
/// days): a random one of whole and partial days, one over everything, a
/// few hours of the last days.
pub fn windows(seed: u64, start: i64) -> [Win; 3] {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0f11);
    let since = start - rng.gen_range(2 * MICROS_PER_DAY..300 * MICROS_PER_DAY);
    let until = since + rng.gen_range(MICROS_PER_DAY..100 * MICROS_PER_DAY);
    let recent = start - rng.gen_range(3600 * MICROS_PER_SEC..3 * MICROS_PER_DAY);
    [
        Win::At(since, until),
        Win::At(start - 430 * MICROS_PER_DAY, start + 3600 * MICROS_PER_SEC),
        Win::At(
            recent,
            recent + rng.gen_range(3600 * MICROS_PER_SEC..12 * 3600 * MICROS_PER_SEC),
        ),
    ]
}

/// Every question, given the apps each workspace has now.
pub fn questions(apps: &BTreeMap<String, Vec<String>>, wins: &[Win; 3]) -> Vec<Question> {
    let [w1, w2, w3] = *wins;
    let mut out = vec![
        Question {
            key: "visible_apps".into(),
            sql: "SELECT * FROM audience.visible_apps()".into(),
            kind: Kind::VisibleApps,
            representative: true,
        },
        Question {
            key: "whoami".into(),
            sql: "SELECT * FROM audience.whoami()".into(),
            kind: Kind::Whoami,
            representative: true,
        },
        Question {
            key: "workspace_monthly_viewers of a missing workspace".into(),
            sql: "SELECT * FROM audience.workspace_monthly_viewers('no-such-workspace')".into(),
            kind: Kind::Missing,
            representative: true,
        },
    ];
    for (ws, slugs) in apps {
        let mut qs = vec![
            Q::Monthly {
                app: None,
                months: Some(15),
            },
            Q::Monthly {
                app: None,
                months: None,
            },
            Q::Trend { app: None, months: 14 },
            Q::TopApps {
                win: Win::Default,
                max: None,
            },
            Q::TopApps {
                win: w1,
                max: Some(100),
            },
            Q::TopApps { win: w2, max: Some(3) },
            Q::TopViewers {
                app: None,
                win: Win::Default,
            },
            Q::TopViewers { app: None, win: w1 },
            Q::TopViewers { app: None, win: w2 },
            Q::Usage {
                app: None,
                win: Win::Default,
                bucket: None,
            },
            Q::Usage {
                app: None,
                win: w1,
                bucket: Some("day"),
            },
            Q::Usage {
                app: None,
                win: w2,
                bucket: Some("week"),
            },
            Q::Usage {
                app: None,
                win: w2,
                bucket: Some("month"),
            },
            Q::Usage {
                app: None,
                win: w3,
                bucket: Some("day"),
            },
            Q::Access { app: None },
        ];
        let ws_level = qs.len();
        let first_app = ws_level + 11;
        for app in slugs.iter().cloned().chain(["no-such-app".to_string()]) {
            let a = Some(app.clone());
            qs.extend([
                Q::Monthly {
                    app: a.clone(),
                    months: Some(15),
                },
                Q::Total { app: app.clone() },
                Q::Recent {
                    app: app.clone(),
                    max: None,
                },
                Q::Recent {
                    app: app.clone(),
                    max: Some(3),
                },
                Q::Sessions {
                    app: app.clone(),
                    win: w2,
                    min_duration: None,
                    max: 10000,
                },
                Q::Sessions {
                    app: app.clone(),
                    win: w1,
                    min_duration: Some("10 minutes"),
                    max: 7,
                },
                Q::Sessions {
                    app: app.clone(),
                    win: Win::Default,
                    min_duration: None,
                    max: 100,
                },
                Q::TopViewers {
                    app: a.clone(),
                    win: w2,
                },
                Q::Usage {
                    app: a.clone(),
                    win: w1,
                    bucket: None,
                },
                Q::Trend {
                    app: a.clone(),
                    months: 14,
                },
                Q::Access { app: a },
            ]);
        }
        for (i, q) in qs.into_iter().enumerate() {
            let sql = model::call(&q, ws);
            out.push(Question {
                key: sql.trim_start_matches("SELECT * FROM ").to_string(),
                sql,
                kind: Kind::Ws(ws.clone(), q),
                representative: i < first_app,
            });
        }
    }
    out
}

/// Runs `sql` in a savepoint (see `attempt`), so that an error leaves the transaction usable.
fn ask(tx: &mut Transaction, sql: &str) -> Answer {
    match attempt(tx, &format!("SELECT to_jsonb(t)::text FROM ({sql}) t")) {
        Ok(rows) => Ok(rows.iter().map(|r| canon(&serde_json::from_str(r).unwrap())).collect()),
        Err(e) => Err(e
            .as_db_error()
            .map_or_else(|| format!("client: {e}"), |db| db.code().code().to_string())),
    }
}

/// What `r` hears: every answer, and the now() of its transaction. A token
/// that is refused is itself a failure, reported as the answer to "authenticate".
pub fn answers(world: &World, r: &Requester, qs: &[&Question]) -> (String, Vec<Answer>, Option<String>) {
    let mut client = r.connect(world);
    let mut tx = client.transaction().unwrap();
    let mut refused = None;
    if let Some((sub, ws)) = r.token {
        let tok = requesters::token(sub, ws);
        if let Err(e) = tx.query_one("SELECT audience.authenticate($1)", &[&tok]) {
            refused = Some(format!("authenticate refused a fresh token of {sub:?}: {e}"));
        }
    }
    let now: String = tx.query_one("SELECT now()::text", &[]).unwrap().get(0);
    let mut timing: BTreeMap<String, (u32, std::time::Duration)> = BTreeMap::new();
    let got = qs
        .iter()
        .map(|q| {
            let t = std::time::Instant::now();
            let a = ask(&mut tx, &q.sql);
            let head = format!(
                "{} {}",
                q.key.split('(').next().unwrap_or(""),
                if a.is_err() { "err" } else { "ok" }
            );
            let e = timing.entry(head).or_default();
            e.0 += 1;
            e.1 += t.elapsed();
            a
        })
        .collect();
    if std::env::var("PG_AUDIENCE_MODEL_TIMING").is_ok() {
        eprintln!(
            "{}: {:?}",
            r.label,
            timing
                .iter()
                .map(|(k, (n, d))| format!("{k} {n}x {:.1}ms", d.as_secs_f64() * 1000.0 / *n as f64))
                .collect::<Vec<_>>()
        );
    }
    tx.commit().unwrap();
    (now, got, refused)
}

/// The model's answers, shared between requesters whose context makes the
/// same SQL.
pub struct Model<'a> {
    pub client: &'a mut Client,
    cache: HashMap<String, Vec<String>>,
    pub queries: usize,
}

impl<'a> Model<'a> {
    pub fn new(client: &'a mut Client) -> Model<'a> {
        Model {
            client,
            cache: HashMap::new(),
            queries: 0,
        }
    }

    fn run(&mut self, sql: String) -> Vec<String> {
        if let Some(rows) = self.cache.get(&sql) {
            return rows.clone();
        }
        self.queries += 1;
        let rows = rows_of(self.client, &sql).unwrap_or_else(|e| panic!("the model's query failed: {e}\n{sql}"));
        self.cache.insert(sql, rows.clone());
        rows
    }

    /// What `who` (logging in as `login`) should hear to `q` at `now`.
    pub fn expect(&mut self, q: &Question, who: &Resolved, login: &str, ctxs: &[Ctx], now: &str) -> Answer {
        let now = format!("'{now}'::timestamptz");
        match &q.kind {
            Kind::Missing => Err("42704".into()),
            Kind::Ws(ws, question) => {
                let ctx = ctxs.iter().find(|c| &c.ws == ws).expect("a context per workspace");
                // Labels scoped per requester are the only thing beyond the
                // visible apps that differs between requesters; a model
                // query without them is shared (its text is its key).
                let mut ctx = ctx.clone();
                if !model::labelled(question) {
                    ctx.req_scope.clear();
                }
                match model::sql(question, &ctx, &now) {
                    None => Err("42704".into()),
                    Some(sql) => Ok(self.run(sql)),
                }
            }
            Kind::VisibleApps => {
                let ids: Vec<String> = ctxs
                    .iter()
                    .flat_map(|c| c.visible.iter().map(|(id, _)| id.to_string()))
                    .collect();
                let mut rows = self.run(format!(
                    "SELECT w.slug AS workspace, a.slug AS app, a.name, a.visibility
                       FROM audience_internal.apps a JOIN audience_internal.workspaces w USING (workspace_id)
                      WHERE a.app_id = ANY ('{{{}}}'::bigint[]) ORDER BY 1, 2",
                    ids.join(",")
                ));
                // Sorted here too: on Citus this query's rows came back out
                // of its ORDER BY (the slugs are ASCII: the same order).
                rows.sort_by_key(|r| {
                    let v: Value = serde_json::from_str(r).expect("a row as JSON");
                    (v["workspace"].as_str().unwrap_or_default().to_string(), v["app"].as_str().unwrap_or_default().to_string())
                });
                Ok(rows)
            }
            Kind::Whoami => {
                let rows: Vec<Value> = if who.operator {
                    WORKSPACES
                        .iter()
                        .map(|w| json!({"requester": login, "resolved_by": "operator", "workspace": w, "kind": "operator"}))
                        .collect()
                } else if !who.memberships.is_empty() {
                    let by = if who.subject.is_some() {
                        "token".to_string()
                    } else {
                        format!("role {login}")
                    };
                    who.memberships
                        .iter()
                        .map(|m| json!({"requester": m.identity, "resolved_by": by, "workspace": m.ws, "kind": m.kind}))
                        .collect()
                } else {
                    let by = if who.subject.is_some() { "token" } else { "nobody" };
                    vec![json!({"requester": who.subject, "resolved_by": by, "workspace": null, "kind": null})]
                };
                Ok(rows.iter().map(canon).collect())
            }
        }
    }
}

/// Whether rows are compared in order.
pub fn ordered(q: &Question) -> bool {
    match &q.kind {
        Kind::Ws(_, question) => model::ordered(question),
        Kind::Whoami => false,
        _ => true,
    }
}

/// One answer that differs from the model's.
pub struct Diff {
    pub requester: &'static str,
    pub question: String,
    pub expected: Answer,
    pub got: Answer,
}

/// Asks every requester every question and compares with the model.
/// Returns the differences and how many answers were compared.
pub fn check_all(
    world: &World,
    model_client: &mut Client,
    apps: &BTreeMap<String, Vec<String>>,
    wins: &[Win; 3],
) -> (Vec<Diff>, Stats) {
    let qs = questions(apps, wins);
    model_client.batch_execute(model::EVENTS).unwrap();
    let mut model = Model::new(model_client);
    let mut diffs = Vec::new();
    let mut stats = Stats::default();
    // Who each requester is, and so what it is asked: of a workspace it may
    // not see, each function once.
    let plans: Vec<(Resolved, Vec<Ctx>, Vec<&Question>)> = REQUESTERS
        .iter()
        .map(|r| {
            let who = requesters::resolve(model.client, r);
            let ctxs = requesters::contexts(model.client, &who);
            let asked: Vec<&Question> = qs
                .iter()
                .filter(|q| match &q.kind {
                    Kind::Ws(ws, _) => q.representative || ctxs.iter().any(|c| &c.ws == ws && c.access.is_some()),
                    _ => true,
                })
                .collect();
            (who, ctxs, asked)
        })
        .collect();
    // The requesters read in READERS threads while this one computes the
    // model's answers for those that are done.
    const READERS: usize = 2;
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        let (send, received) = std::sync::mpsc::channel();
        for part in 0..READERS {
            let send = send.clone();
            let plans = &plans;
            s.spawn(move || {
                for i in (part..REQUESTERS.len()).step_by(READERS) {
                    let answer = answers(world, &REQUESTERS[i], &plans[i].2);
                    if send.send((i, answer)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(send);
        for (i, (now, got, refused)) in received {
            let r = &REQUESTERS[i];
            let (who, ctxs, asked) = &plans[i];
            let t = std::time::Instant::now();
            if let Some(why) = refused {
                diffs.push(Diff {
                    requester: r.label,
                    question: "authenticate".into(),
                    expected: Ok(vec![]),
                    got: Err(why),
                });
                continue;
            }
            let login = r.login_name();
            for (q, mut got) in asked.iter().zip(got) {
                let mut expected = model.expect(q, who, &login, ctxs, &now);
                if !ordered(q) {
                    if let Ok(rows) = &mut expected {
                        rows.sort();
                    }
                    if let Ok(rows) = &mut got {
                        rows.sort();
                    }
                }
                stats.compared += 1;
                match &got {
                    Ok(rows) if !rows.is_empty() => stats.with_rows += 1,
                    Ok(_) => {}
                    Err(_) => stats.errors += 1,
                }
                if expected != got {
                    diffs.push(Diff {
                        requester: r.label,
                        question: q.key.clone(),
                        expected,
                        got,
                    });
                }
            }
            stats.modelling += t.elapsed();
        }
    });
    stats.reading = t0.elapsed();
    stats.model_queries = model.queries;
    (diffs, stats)
}

/// How much the check compared, and where its time went.
#[derive(Default)]
pub struct Stats {
    pub compared: usize,
    /// Answers with at least one row, and errors (a workspace or app the
    /// requester may not see).
    pub with_rows: usize,
    pub errors: usize,
    pub model_queries: usize,
    /// Wall time of the reads (the model's time overlaps it).
    pub reading: std::time::Duration,
    pub modelling: std::time::Duration,
}

/// The first rows where two answers part, for a readable report.
pub fn describe(d: &Diff) -> String {
    let show = |a: &Answer| match a {
        Err(code) => format!("error {code}"),
        Ok(rows) => format!("{} rows", rows.len()),
    };
    let mut out = format!(
        "requester: {}\nquestion:  {}\nexpected (model): {}\ngot (function):   {}\n",
        d.requester,
        d.question,
        show(&d.expected),
        show(&d.got)
    );
    if let (Ok(e), Ok(g)) = (&d.expected, &d.got) {
        let only_e: Vec<&String> = e.iter().filter(|r| !g.contains(r)).take(4).collect();
        let only_g: Vec<&String> = g.iter().filter(|r| !e.contains(r)).take(4).collect();
        if only_e.is_empty() && only_g.is_empty() {
            out.push_str("same rows in another order:\n");
            for (i, (x, y)) in e.iter().zip(g).enumerate().filter(|(_, (x, y))| x != y).take(3) {
                out.push_str(&format!("  row {i}: model    {x}\n  row {i}: function {y}\n"));
            }
        }
        for r in only_e {
            out.push_str(&format!("  only in the model:    {r}\n"));
        }
        for r in only_g {
            out.push_str(&format!("  only in the function: {r}\n"));
        }
    }
    out
}
