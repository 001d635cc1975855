//! docs/spec.md §2 and §4 for the Posit-style usage answers (app_sessions,
//! top_apps, top_viewers, usage_over_time, viewer_trend, app_access), as
//! functions and as views, asked over the socket by real login roles: an
//! admin, a viewer member granted one private app, an invited viewer who
//! never accepted, a stranger, a pooled role without a token and the same
//! pooled role with request tokens of the viewer member and of the admin.
//!
//! What each may see is written down here from docs/spec.md §2; the operator's
//! answers (a superuser's) and plain SQL over the raw events are the
//! oracles. Every failing case is gathered before judging.

use jsonwebtoken::Algorithm;
use pg_audience_integration::{attempt, connect_as, epoch_seconds, on_roles, sign_token, Roles, TestDb};
use postgres::{Client, Transaction};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const ACME: &str = "usage-acme";
const GLOBEX: &str = "usage-globex";
const NO_SUCH_WORKSPACE: &str = "no-such-workspace";
const NO_SUCH_APP: &str = "no-such-app";
/// (slug, visibility) of acme's apps.
const APPS: [(&str, &str); 4] = [
    ("acme-dash", "public"),
    ("acme-docs", "public"),
    ("acme-vault", "private"),
    ("acme-ledger", "private"),
];
/// What the viewer member may see: the public apps and the one it was granted.
const VIEWER_APPS: [&str; 3] = ["acme-dash", "acme-docs", "acme-vault"];

const ADMIN: &str = "ada@acme.example";
const VIEWER: &str = "vic@acme.example";
const INVITED: &str = "ivy@acme.example";
/// Outsiders: one viewed public apps only (never to be named to anyone),
/// one also the private ledger (named only where the ledger is seen).
const OUT_PUBLIC: &str = "olive@outside.example";
const OUT_BOTH: &str = "oscar@outside.example";
/// An outsider who opened only the private ledger: named only where the ledger is seen.
const LEDGER_ONLY: &str = "lee@ledger.example";
const COOKIES: [&str; 2] = ["cookie-7f3a91", "cookie-2b8e44"];
const TOKEN_SECRET: &str = "usage-privacy-platform-token-secret-0123456789";

/// One login and, optionally, the member a request token speaks for.
struct Actor {
    label: &'static str,
    login: &'static str,
    token_for: Option<&'static str>,
}

const ACTORS: [Actor; 7] = [
    Actor { label: "admin", login: "admin", token_for: None },
    Actor { label: "viewer member", login: "viewer", token_for: None },
    Actor { label: "invited viewer", login: "invited", token_for: None },
    Actor { label: "stranger", login: "stranger", token_for: None },
    Actor { label: "pooled role without a token", login: "pooled", token_for: None },
    Actor { label: "end user of the viewer member, by token", login: "pooled", token_for: Some(VIEWER) },
    Actor { label: "end user of the admin, by token", login: "pooled", token_for: Some(ADMIN) },
];

/// Rows (canonical JSON, sorted), or the error: (SQLSTATE, everything the client receives).
type Answer = Result<Vec<String>, (String, String)>;

/// A JSON value as text with object keys sorted, so that equal rows are equal text.
fn canon(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, canon(v))).collect();
            let fields: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{v}", Value::String(k.to_string()))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canon).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Runs `sql` in a savepoint of `tx` (see `attempt`), so that an error leaves `tx` usable.
fn ask(tx: &mut Transaction, sql: &str) -> Answer {
    match attempt(tx, &format!("SELECT to_jsonb(t)::text FROM ({sql}) t")) {
        Ok(rows) => {
            let mut rows: Vec<String> = rows.iter().map(|r| canon(&serde_json::from_str(r).unwrap())).collect();
            rows.sort();
            Ok(rows)
        }
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
            let text = format!("{} {:?} {:?} {:?}", db.message(), db.detail(), db.hint(), db.where_().map(without_assignments));
            Err((db.code().code().to_string(), text))
        }
    }
}

/// An error's context without its "PL/pgSQL assignment" entries: whether
/// PL/pgSQL names the assignment it was evaluating depends on how that
/// expression was last run in the transaction (after an earlier error in a
/// savepoint it is planned afresh), not on the arguments.
fn without_assignments(context: &str) -> String {
    let mut out = context.to_string();
    while let Some(start) = out.find("PL/pgSQL assignment \"") {
        let body = start + "PL/pgSQL assignment \"".len();
        let end = out[body..].find("\"\n").map_or(out.len(), |e| body + e + 2);
        out.replace_range(start..end, "");
    }
    out
}

/// Every question, by key: each function for the workspace and (where it
/// takes one) for each app and a missing app, and each view.
fn questions(ws: &str, since: &str, until: &str) -> Vec<(String, String)> {
    let w = format!("'{since}'::timestamptz, '{until}'::timestamptz");
    let mut q = vec![
        ("top_apps".to_string(), format!("SELECT * FROM audience.top_apps('{ws}', {w}, 100)")),
        ("top_viewers".to_string(), format!("SELECT * FROM audience.top_viewers('{ws}', NULL, {w}, 1000)")),
        ("usage_over_time".to_string(), format!("SELECT * FROM audience.usage_over_time('{ws}', NULL, {w}, 'day')")),
        ("usage_over_time by week".to_string(), format!("SELECT * FROM audience.usage_over_time('{ws}', NULL, {w}, 'week')")),
        ("viewer_trend".to_string(), format!("SELECT * FROM audience.viewer_trend('{ws}', NULL, 12)")),
        ("app_access".to_string(), format!("SELECT * FROM audience.app_access('{ws}')")),
    ];
    for app in APPS.iter().map(|(a, _)| *a).chain([NO_SUCH_APP]) {
        q.extend([
            (format!("app_sessions {app}"), format!("SELECT * FROM audience.app_sessions('{ws}', '{app}', {w}, NULL, 10000)")),
            (format!("top_viewers {app}"), format!("SELECT * FROM audience.top_viewers('{ws}', '{app}', {w}, 1000)")),
            (format!("usage_over_time {app}"), format!("SELECT * FROM audience.usage_over_time('{ws}', '{app}', {w}, 'day')")),
            (format!("viewer_trend {app}"), format!("SELECT * FROM audience.viewer_trend('{ws}', '{app}', 12)")),
            (format!("app_access {app}"), format!("SELECT * FROM audience.app_access('{ws}', '{app}')")),
        ]);
    }
    q
}

const VIEWS: [&str; 6] = ["app_sessions", "top_apps", "top_viewers", "usage_over_time", "viewer_trend", "app_access"];

struct Fixture {
    op: Client,
    db: TestDb,
    prefix: String,
    since: String,
    until: String,
    _roles: Roles,
}

impl Fixture {
    /// A database and roles of their own for the test called `short`.
    fn new(short: &str) -> Fixture {
        let (db, mut op) = TestDb::with_extension(&format!("it_usage_{short}"));
        let prefix = format!("it_usage_{short}");
        let role = |s: &str| format!("{prefix}_{s}");
        let roles = Roles::create(&[
            (role("admin"), "LOGIN"),
            (role("viewer"), "LOGIN"),
            (role("invited"), "LOGIN"),
            (role("stranger"), "LOGIN"),
            (role("pooled"), "LOGIN"),
            (role("ingest"), "LOGIN"),
            (role("manager"), "LOGIN"),
        ]);
        for login in ["admin", "viewer", "invited", "stranger", "pooled"] {
            on_roles(&mut op, &format!("GRANT audience_reader TO \"{}\"", role(login)));
        }
        on_roles(
            &mut op,
            &format!("GRANT audience_ingest TO \"{}\"; GRANT audience_manager TO \"{}\"", role("ingest"), role("manager")),
        );
        op.batch_execute(&format!(
            "SELECT audience.create_workspace('{ACME}');
             SELECT audience.configure_workspace('{ACME}', time_zone => 'Europe/Berlin');
             SELECT audience.create_workspace('{GLOBEX}');
             SELECT audience.create_app('{GLOBEX}', 'globex-portal');
             SELECT audience.add_member('{GLOBEX}', 'gus@globex.example', 'developer');"
        ))
        .unwrap();
        for (app, visibility) in APPS {
            op.execute("SELECT audience.create_app($1, $2, $3)", &[&ACME, &app, &visibility]).unwrap();
        }
        op.execute("SELECT audience.add_member($1, $2, 'admin', $3)", &[&ACME, &ADMIN, &role("admin")]).unwrap();
        op.execute("SELECT audience.add_member($1, $2, 'viewer', $3)", &[&ACME, &VIEWER, &role("viewer")]).unwrap();
        op.execute("SELECT audience.grant_app_access($1, 'acme-vault', $2)", &[&ACME, &VIEWER]).unwrap();
        op.execute("SELECT audience.invite_viewer($1, $2, 'acme-ledger', $3)", &[&ACME, &INVITED, &role("invited")]).unwrap();
        op.execute("SELECT audience.set_token_secret($1)", &[&TOKEN_SECRET]).unwrap();

        // Who opened what over the last three weeks; some sessions still open.
        let who: [(&str, &[&str]); 8] = [
            ("acme-dash", &[ADMIN, VIEWER, INVITED, OUT_PUBLIC, OUT_BOTH, COOKIES[0], COOKIES[1]]),
            ("acme-docs", &[VIEWER, OUT_PUBLIC, COOKIES[0]]),
            ("acme-vault", &[ADMIN, VIEWER]),
            ("acme-ledger", &[ADMIN, OUT_BOTH, LEDGER_ONLY]),
            ("globex-portal", &[OUT_PUBLIC, "gus@globex.example"]),
            ("acme-dash", &[VIEWER, OUT_PUBLIC]),
            ("acme-ledger", &[OUT_BOTH]),
            ("acme-vault", &[VIEWER]),
        ];
        let record = op
            .prepare(
                "SELECT audience.record_view($1, $2, $3, now() - make_interval(days => $4, hours => $5), $6,
                        CASE WHEN $7 THEN NULL ELSE now() - make_interval(days => $4, hours => $5) + make_interval(mins => $8) END,
                        CASE WHEN $2 = 'acme-docs' THEN 'visit' ELSE 'session' END)",
            )
            .unwrap();
        for (a, (app, people)) in who.iter().enumerate() {
            let ws = if app.starts_with("globex") { GLOBEX } else { ACME };
            for (p, person) in people.iter().enumerate() {
                let (viewer, cookie) = if person.starts_with("cookie-") { (None, Some(*person)) } else { (Some(*person), None) };
                for k in 0..3i32 {
                    let days = ((a * 7 + p * 3) as i32 + k * 5) % 20 + 1;
                    let hours = (p as i32 * 5 + k) % 24;
                    let open = (a + p + k as usize) % 4 == 0 || *app == "acme-docs";
                    let minutes = (a * 11 + p * 13) as i32 % 90 + 1;
                    op.execute(&record, &[&ws, app, &viewer, &days, &hours, &cookie, &open, &minutes]).unwrap();
                }
            }
        }
        // The window every function is asked about, fixed once for every actor.
        let row = op
            .query_one("SELECT (now() - interval '25 days')::text, (now() + interval '1 hour')::text", &[])
            .unwrap();
        let (since, until): (String, String) = (row.get(0), row.get(1));
        // The oracle: each view of acme with its local time and the label docs/spec.md §2 gives it.
        op.batch_execute(&format!(
            "CREATE TEMP VIEW usage_ev AS
             SELECT e.event_id, a.slug AS app, a.visibility, e.viewer_id, e.viewed_at, e.kind,
                    e.viewed_at AT TIME ZONE w.time_zone AS local_at, w.time_zone,
                    CASE WHEN e.kind = 'session' AND e.ended_at IS NOT NULL THEN e.ended_at - e.viewed_at END AS spent,
                    i.identified,
                    CASE WHEN i.identified THEN coalesce(m.identity, v.identity)
                         ELSE audience_internal.viewer_pseudonym(k.pseudonym_key, v.viewer_hash, '') END AS label,
                    audience_internal.viewer_ref(k.pseudonym_key, v.viewer_hash, i.identified, '') AS ref
               FROM audience_internal.view_events e
               JOIN audience_internal.workspaces w USING (workspace_id)
               JOIN audience_internal.workspace_keys k USING (workspace_id)
               JOIN audience_internal.apps a USING (workspace_id, app_id)
               JOIN audience_internal.viewers v USING (workspace_id, viewer_id)
               LEFT JOIN audience_internal.members m
                 ON m.workspace_id = e.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
              CROSS JOIN LATERAL (SELECT e.viewed_at >= w.identification_start
                                         AND (m.member_id IS NOT NULL OR e.identifiable) AS identified) i
              WHERE w.slug = '{ACME}'"
        ))
        .unwrap();
        Fixture { op, db, prefix, since, until, _roles: roles }
    }

    fn role(&self, login: &str) -> String {
        format!("{}_{login}", self.prefix)
    }

    /// Every question about `ws`, and every view, as `actor` asks them in one transaction.
    fn answers(&self, actor: &Actor, ws: &str) -> BTreeMap<String, Answer> {
        let mut client = connect_as(&self.db.name, &self.role(actor.login));
        self.answers_with(&mut client, actor.token_for, ws)
    }

    fn answers_with(&self, client: &mut Client, token_for: Option<&str>, ws: &str) -> BTreeMap<String, Answer> {
        let mut tx = client.transaction().unwrap();
        if let Some(sub) = token_for {
            let token = sign_token(
                Algorithm::HS256,
                &json!({"sub": sub, "exp": epoch_seconds() + 3600}),
                TOKEN_SECRET.as_bytes(),
            );
            let got: String = tx.query_one("SELECT audience.authenticate($1)", &[&token]).unwrap().get(0);
            assert_eq!(got, sub, "authenticate returned another subject");
        }
        let mut out = BTreeMap::new();
        for (key, sql) in questions(ws, &self.since, &self.until) {
            out.insert(key, ask(&mut tx, &sql));
        }
        for view in VIEWS {
            out.insert(format!("view {view}"), ask(&mut tx, &format!("SELECT * FROM audience.{view}")));
        }
        out
    }

    /// How many rows `rows` (JSON objects with `columns`) and `plain` do not share.
    fn mismatches(&mut self, rows: &[String], columns: &str, plain: &str) -> i64 {
        let json = format!("[{}]", rows.join(","));
        self.op
            .query_one(
                &format!(
                    "WITH a AS (SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS t({columns})), b AS ({plain})
                     SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d"
                ),
                &[&json],
            )
            .unwrap_or_else(|e| panic!("comparing with {plain}: {e}"))
            .get(0)
    }
}

fn rows<'a>(answers: &'a BTreeMap<String, Answer>, key: &str) -> Result<&'a Vec<String>, String> {
    match &answers[key] {
        Ok(rows) => Ok(rows),
        Err(e) => Err(format!("{key} failed: {e:?}")),
    }
}

/// The rows of `rows` whose `field` is one of `keep` (or, with None, NULL).
fn filtered(rows: &[String], field: &str, keep: &[Option<&str>]) -> Vec<String> {
    rows.iter()
        .filter(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            keep.contains(&v[field].as_str())
        })
        .cloned()
        .collect()
}

/// What every actor of the fixture got from every question about acme, and
/// what the operator got: the material of the tests below, each of which
/// checks one rule of docs/spec.md §2 against it.
struct Observed {
    fx: Fixture,
    operator: BTreeMap<String, Answer>,
    /// The operator's answers about a workspace that does not exist: the
    /// errors everyone who may not see acme must get instead.
    missing_workspace: BTreeMap<String, Answer>,
    answers: Vec<BTreeMap<String, Answer>>,
}

impl Observed {
    fn new(short: &str) -> Observed {
        let fx = Fixture::new(short);
        let operator = fx.answers_with(&mut fx.db.connect(), None, ACME);
        let missing_workspace = fx.answers_with(&mut fx.db.connect(), None, NO_SUCH_WORKSPACE);
        let answers = ACTORS.iter().map(|a| fx.answers(a, ACME)).collect();
        Observed { fx, operator, missing_workspace, answers }
    }

    fn by_label(&self, label: &str) -> &BTreeMap<String, Answer> {
        &self.answers[ACTORS.iter().position(|a| a.label == label).unwrap()]
    }
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// The viewer member's answer to `key` about an app that does not exist,
/// with the app's name blanked: what an app it may not see must give.
fn missing_app(answers: &BTreeMap<String, Answer>, key: &str) -> Option<String> {
    answers[&format!("{key} {NO_SUCH_APP}")].clone().err().map(|(c, t)| format!("{c} {}", t.replace(NO_SUCH_APP, "APP")))
}

/// The viewer member's own access rows, one per app it may open.
fn own_access() -> Vec<String> {
    [("acme-dash", "active", "member"), ("acme-docs", "active", "member"), ("acme-vault", "active", "grant")]
        .map(|(app, status, via)| canon(&json!({"app": app, "member": VIEWER, "kind": "viewer", "status": status, "via": via})))
        .to_vec()
}

#[test]
fn the_admin_sees_acme_as_the_operator_does() {
    let o = Observed::new("admin");
    let (operator, mut failures) = (&o.operator, Vec::new());
    // The comparisons below mean something only if the operator sees every
    // app with views, and the viewer member's apps are not all of them.
    let op_top = rows(operator, "top_apps").unwrap().clone();
    assert_eq!(op_top.len(), 4, "the operator's top apps: {op_top:?}");
    assert!(filtered(&op_top, "app", &[Some("acme-ledger")]).len() == 1);
    for (key, answer) in operator {
        let ok = match answer {
            Ok(rows) => !rows.is_empty() && !key.contains(NO_SUCH_APP),
            Err((code, _)) => code == "42704" && key.contains(NO_SUCH_APP),
        };
        assert!(ok, "the operator's {key}: {answer:?}");
    }

    // The admin: every app of acme, exactly as the operator sees it; the
    // views too, but nothing of globex.
    let admin = o.by_label("admin");
    for (key, answer) in operator {
        let want = if key.starts_with("view ") {
            answer.clone().map(|r| filtered(&r, "workspace", &[Some(ACME)]))
        } else {
            answer.clone()
        };
        if &admin[key] != &want {
            failures.push(format!("admin: {key}: {:?}\n  operator: {want:?}", admin[key]));
        }
    }
    if let Ok(r) = &operator["view top_apps"] {
        if filtered(r, "workspace", &[Some(GLOBEX)]).is_empty() {
            failures.push("the operator's view top_apps has no globex row: the admin's comparison proves nothing".into());
        }
    }

    report(failures);
}

#[test]
fn a_viewer_member_gets_the_operators_answer_for_its_apps_only() {
    let o = Observed::new("viewer_apps");
    let (operator, viewer, mut failures) = (&o.operator, o.by_label("viewer member"), Vec::new());
    for question in ["app_sessions", "top_viewers", "usage_over_time", "viewer_trend"] {
        for (app, _) in APPS {
            let key = format!("{question} {app}");
            if VIEWER_APPS.contains(&app) {
                if viewer[&key] != operator[&key] {
                    failures.push(format!("viewer member: {key}: {:?}\n  operator: {:?}", viewer[&key], operator[&key]));
                }
            } else {
                let got = viewer[&key].clone().err().map(|(c, t)| format!("{c} {}", t.replace(app, "APP")));
                if got.is_none() || got != missing_app(viewer, question) {
                    failures.push(format!("viewer member: {key} should be a missing app: {got:?}\n  a missing app: {:?}", missing_app(viewer, question)));
                }
            }
        }
    }
    // Its own access rows per app; none for an app it may not see.
    for (app, _) in APPS {
        let key = format!("app_access {app}");
        let want: Option<Vec<String>> = VIEWER_APPS.contains(&app).then(|| {
            vec![canon(&json!({"app": app, "member": VIEWER, "kind": "viewer", "status": "active",
                                "via": if app == "acme-vault" { "grant" } else { "member" }}))]
        });
        let ok = match (&viewer[&key], want) {
            (Ok(got), Some(want)) => got == &want,
            (Err((c, t)), None) => Some(format!("{c} {}", t.replace(app, "APP"))) == missing_app(viewer, "app_access"),
            _ => false,
        };
        if !ok {
            failures.push(format!("viewer member: {key}: {:?}", viewer[&key]));
        }
    }
    report(failures);
}

#[test]
fn a_viewer_members_workspace_answers_count_only_its_apps() {
    let mut o = Observed::new("viewer_workspace");
    let mut failures = Vec::new();
    // Its workspace answers count only those apps.
    let visible = format!("e.app IN ({})", VIEWER_APPS.map(|a| format!("'{a}'")).join(", "));
    let (s, u) = (format!("'{}'::timestamptz", o.fx.since), format!("'{}'::timestamptz", o.fx.until));
    let window = format!("e.viewed_at >= {s} AND e.viewed_at < {u}");
    let oracles = [
        (
            "top_apps",
            "app text, visibility text, views bigint, sessions bigint, visits bigint, unique_viewers bigint, session_time interval",
            format!("SELECT e.app, e.visibility, count(*), count(*) FILTER (WHERE e.kind = 'session'), count(*) FILTER (WHERE e.kind = 'visit'),
                            count(DISTINCT e.viewer_id), justify_hours(coalesce(sum(e.spent), interval '0'))
                       FROM usage_ev e WHERE {window} AND {visible} GROUP BY 1, 2"),
        ),
        (
            "top_viewers",
            "viewer text, viewer_ref text, pseudonymous boolean, views bigint, sessions bigint, session_time interval, last_viewed_at timestamptz",
            format!("SELECT e.label, e.ref, NOT e.identified, count(*), count(*) FILTER (WHERE e.kind = 'session'),
                            justify_hours(coalesce(sum(e.spent), interval '0')), max(e.viewed_at)
                       FROM usage_ev e WHERE {window} AND {visible} GROUP BY e.viewer_id, e.identified, e.label, e.ref"),
        ),
        (
            "usage_over_time",
            "period date, views bigint, sessions bigint, visits bigint, unique_viewers bigint, session_time interval",
            format!("SELECT d::date, count(e.event_id), count(e.event_id) FILTER (WHERE e.kind = 'session'),
                            count(e.event_id) FILTER (WHERE e.kind = 'visit'), count(DISTINCT e.viewer_id),
                            justify_hours(coalesce(sum(e.spent), interval '0'))
                       FROM generate_series(({s} AT TIME ZONE 'Europe/Berlin')::date::timestamp,
                                            ({u} AT TIME ZONE 'Europe/Berlin')::date::timestamp, interval '1 day') d
                       LEFT JOIN usage_ev e ON e.local_at::date = d::date AND {window} AND {visible}
                      GROUP BY 1"),
        ),
        (
            "viewer_trend",
            "month date, unique_viewers bigint, previous bigint, change bigint, change_pct numeric, complete boolean",
            format!("WITH m AS (SELECT k, (date_trunc('month', now() AT TIME ZONE 'Europe/Berlin') - make_interval(months => k))::date AS month
                                  FROM generate_series(0, 12) k),
                          c AS (SELECT m.k, m.month, count(DISTINCT e.viewer_id) AS n
                                  FROM m LEFT JOIN usage_ev e ON date_trunc('month', e.local_at)::date = m.month AND {visible}
                                 GROUP BY m.k, m.month)
                     SELECT c.month, c.n, p.n, c.n - p.n, CASE WHEN p.n > 0 THEN round(100.0 * (c.n - p.n) / p.n, 1) END, c.k > 0
                       FROM c JOIN c p ON p.k = c.k + 1 WHERE c.k < 12"),
        ),
    ];
    for (key, columns, plain) in &oracles {
        for label in ["viewer member", "end user of the viewer member, by token"] {
            match rows(o.by_label(label), key).cloned() {
                Ok(r) => {
                    let n = o.fx.mismatches(&r, columns, plain);
                    if n != 0 {
                        failures.push(format!("{label}: {key}: {n} rows differ from plain SQL over its apps: {r:?}"));
                    }
                }
                Err(e) => failures.push(format!("{label}: {e}")),
            }
        }
        // And the operator's is another answer: the comparison can fail.
        if { let r = rows(&o.operator, key).unwrap().clone(); o.fx.mismatches(&r, columns, plain) } == 0 {
            failures.push(format!("operator: {key} equals the viewer member's oracle: the comparison proves nothing"));
        }
    }
    report(failures);
}

#[test]
fn a_viewer_member_browses_views_of_its_apps_and_its_own_access() {
    let o = Observed::new("viewer_views");
    let (operator, viewer, mut failures) = (&o.operator, o.by_label("viewer member"), Vec::new());
    // Its own access only.
    let own = own_access();
    if viewer["app_access"].as_ref() != Ok(&own) {
        failures.push(format!("viewer member: app_access {:?}, expected {own:?}", viewer["app_access"]));
    }
    // The views: the operator's rows of the apps it sees; its own
    // workspace-wide rows; its own access rows.
    for view in ["app_sessions", "top_viewers", "usage_over_time", "viewer_trend", "top_apps"] {
        let key = format!("view {view}");
        let keep: Vec<Option<&str>> = VIEWER_APPS.iter().map(|a| Some(*a)).collect();
        let want = rows(operator, &key).map(|r| filtered(r, "app", &keep));
        let got = rows(viewer, &key).map(|r| filtered(r, "app", &keep));
        if want != got {
            failures.push(format!("viewer member: {key} per app: {got:?}\n  expected {want:?}"));
        }
        let all = rows(viewer, &key).map(|r| r.len()).unwrap_or(0);
        let outside = rows(viewer, &key).map(|r| r.len() - filtered(r, "app", &keep).len() - filtered(r, "app", &[None]).len()).unwrap_or(1);
        if all == 0 || outside != 0 {
            failures.push(format!("viewer member: {key} has {all} rows, {outside} of apps it may not see"));
        }
    }
    let whole = rows(viewer, "view usage_over_time").map(|r| filtered(r, "app", &[None]).len()).unwrap_or(0);
    let trend = rows(viewer, "view viewer_trend").map(|r| filtered(r, "app", &[None]).len()).unwrap_or(0);
    if whole < 30 || trend != 12 {
        failures.push(format!("viewer member: {whole} workspace rows of usage_over_time, {trend} of viewer_trend"));
    }
    let access_view: Vec<String> = own
        .iter()
        .map(|r| {
            let mut v: Value = serde_json::from_str(r).unwrap();
            v["workspace"] = json!(ACME);
            canon(&v)
        })
        .collect();
    if viewer["view app_access"].as_ref() != Ok(&access_view) {
        failures.push(format!("viewer member: view app_access {:?}", viewer["view app_access"]));
    }

    report(failures);
}

#[test]
fn who_may_not_see_acme_gets_the_error_of_a_missing_workspace() {
    let o = Observed::new("nothing");
    let mut failures = Vec::new();
    // Those who see nothing of acme: the error of a missing workspace from
    // every function, naming only the workspace; no row from any view.
    for label in ["invited viewer", "stranger", "pooled role without a token"] {
        let got = o.by_label(label);
        for (key, answer) in got {
            if key.starts_with("view ") {
                if answer != &Ok(vec![]) {
                    failures.push(format!("{label}: {key} gave {answer:?}, expected no row"));
                }
                continue;
            }
            let want = o.missing_workspace[key].clone().map_err(|(c, t)| (c, t.replace(NO_SUCH_WORKSPACE, "WS")));
            let have = answer.clone().map_err(|(c, t)| (c, t.replace(ACME, "WS")));
            match (&have, &want) {
                (Err((code, text)), Err(_)) if code == "42704" && have == want => {
                    if APPS.iter().any(|(a, _)| text.contains(a)) {
                        failures.push(format!("{label}: {key}: the error names an app: {text}"));
                    }
                }
                _ => failures.push(format!("{label}: {key}: {have:?}, expected the missing workspace's {want:?}")),
            }
        }
    }

    // An end user by token sees what its member sees.
    for (token, member) in [("end user of the viewer member, by token", "viewer member"), ("end user of the admin, by token", "admin")] {
        for (key, answer) in o.by_label(token) {
            if answer != &o.by_label(member)[key] {
                failures.push(format!("{token}: {key}: {answer:?}\n  its member: {:?}", o.by_label(member)[key]));
            }
        }
    }

    // globex is no workspace to acme's admin or viewer member.
    for label in ["admin", "viewer member"] {
        let actor = ACTORS.iter().find(|a| a.label == label).unwrap();
        for (key, answer) in o.fx.answers(actor, GLOBEX) {
            if !key.starts_with("view ") && answer.clone().map_err(|(c, t)| (c, t.replace(GLOBEX, "WS")))
                != o.missing_workspace[&key].clone().map_err(|(c, t)| (c, t.replace(NO_SUCH_WORKSPACE, "WS")))
            {
                failures.push(format!("{label}: {key} of globex: {answer:?}"));
            }
        }
    }

    report(failures);
}

#[test]
fn no_one_is_shown_an_outsiders_identity() {
    let o = Observed::new("identities");
    let mut failures = Vec::new();
    // No one is ever shown the identity of an outsider on a public app, an
    // invited viewer's views or a visitor key; the ledger's outsider only
    // where the ledger is seen. Pseudonyms are two capitalised words.
    let pseudonym = |s: &str| {
        let words: Vec<&str> = s.split(' ').collect();
        words.len() == 2 && words.iter().all(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && w[1..].chars().all(|c| c.is_ascii_lowercase()))
    };
    let mut pseudonyms = 0;
    let mut ledger_outsider_shown = BTreeSet::new();
    for (who, got) in ACTORS.iter().map(|a| a.label).zip(&o.answers).chain([("operator", &o.operator)]) {
        for (key, answer) in got {
            let text = format!("{answer:?}").to_lowercase();
            for hidden in [OUT_PUBLIC, COOKIES[0], COOKIES[1]] {
                if text.contains(hidden) {
                    failures.push(format!("{who}: {key} shows {hidden}"));
                }
            }
            if !key.contains("app_access") && text.contains(INVITED) {
                failures.push(format!("{who}: {key} shows the invited viewer's identity"));
            }
            for ledger_viewer in [OUT_BOTH, LEDGER_ONLY] {
                if text.contains(ledger_viewer) {
                    ledger_outsider_shown.insert((who, ledger_viewer));
                }
            }
            for row in answer.as_ref().map(|r| r.as_slice()).unwrap_or(&[]) {
                let v: Value = serde_json::from_str(row).unwrap();
                if v["pseudonymous"] == json!(true) {
                    pseudonyms += 1;
                    if !v["viewer"].as_str().is_some_and(pseudonym) {
                        failures.push(format!("{who}: {key}: a pseudonymous row labelled {}", v["viewer"]));
                    }
                }
            }
        }
    }
    let expected_shown: BTreeSet<(&str, &str)> = ["admin", "end user of the admin, by token", "operator"]
        .into_iter()
        .flat_map(|who| [(who, OUT_BOTH), (who, LEDGER_ONLY)])
        .collect();
    if ledger_outsider_shown != expected_shown {
        failures.push(format!("the ledger's outsider is shown to {ledger_outsider_shown:?}, expected {expected_shown:?}"));
    }
    if pseudonyms < 50 {
        failures.push(format!("only {pseudonyms} pseudonymous rows: the label checks prove little"));
    }

    report(failures);
}

#[test]
fn only_ingest_and_the_operator_may_import_posit_records() {
    let fx = Fixture::new("import");
    let page = |n: usize| {
        format!(
            r#"[{{"content_guid": "c-dash", "user_guid": "u-{n}", "started": "2026-03-0{n}T10:00:00Z", "ended": "2026-03-0{n}T10:30:00Z"}}]"#
        )
    };
    let content = r#"[{"guid": "c-dash", "name": "acme-dash", "access_type": "all"}]"#;
    let mut failures = Vec::new();
    let logins = [("ingest", true), ("manager", true), ("admin", false), ("viewer", false), ("stranger", false), ("pooled", false)];
    for (n, (login, allowed)) in logins.iter().enumerate() {
        let mut client = connect_as(&fx.db.name, &fx.role(login));
        let got = client.query(
            "SELECT recorded, duplicates, apps_created FROM audience.import_connect($1, $2::text::jsonb, NULL, $3::text::jsonb)",
            &[&ACME, &page(n + 1), &content],
        );
        match (got, allowed) {
            (Ok(r), true) if r.len() == 1 && r[0].get::<_, i64>(0) == 1 => {}
            (Err(e), false) if e.code().map(|c| c.code()) == Some("42501") => {}
            (other, _) => failures.push(format!("{login}: {other:?}")),
        }
    }
    // A reader with a valid token is still a reader.
    let mut pooled = connect_as(&fx.db.name, &fx.role("pooled"));
    let mut tx = pooled.transaction().unwrap();
    let token = sign_token(Algorithm::HS256, &json!({"sub": ADMIN, "exp": epoch_seconds() + 3600}), TOKEN_SECRET.as_bytes());
    tx.query_one("SELECT audience.authenticate($1)", &[&token]).unwrap();
    match tx.query("SELECT * FROM audience.import_connect($1, '[]')", &[&ACME]) {
        Err(e) if e.code().map(|c| c.code()) == Some("42501") => {}
        other => failures.push(format!("pooled role with the admin's token: {other:?}")),
    }
    drop(tx);
    let imported: i64 = fx
        .db
        .connect()
        .query_one("SELECT count(*) FROM audience_internal.connect_records", &[])
        .unwrap()
        .get(0);
    if imported != 2 {
        failures.push(format!("{imported} records imported, expected the two of ingest and manager"));
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
