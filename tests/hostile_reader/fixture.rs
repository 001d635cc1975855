//! The world every test attacks: two workspaces with public and private
//! apps; their members, reaching the database by request token only or
//! through LOGIN roles of the test's own; outsiders and anonymous visitors
//! who viewed every app; the platform's token secret; and what the operator
//! (superuser) reads of it all. Each test builds its own, in a database of
//! its own, since tests run in parallel.

use crate::oracle::{ActorSpec, State};
use crate::probes::state_in;
use crate::surface::Catalog;
use crate::usage_oracle::{self, OperatorRows};
use jsonwebtoken::Algorithm;
use pg_audience_integration::{
    citus_workers, connect_with_notices, epoch_seconds, on_roles, sign_token, unsigned_token, Notices, Roles, TestDb,
};
use postgres::{Client, Transaction};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const ACME: &str = "acme-corp";
pub const GLOBEX: &str = "globex-inc";
/// What a reader hears of a workspace it may not see must be what it hears of this one.
pub const NO_SUCH_WORKSPACE: &str = "no-such-workspace";
/// Likewise for an app it may not see.
pub const NO_SUCH_APP: &str = "no-such-app";

/// (workspace, slug, visibility, name). Names and slugs are distinctive so
/// that finding one in a NOTICE, a plan or a catalog means it leaked.
pub const APPS: [(&str, &str, &str, &str); 6] = [
    (ACME, "acme-dash", "public", "Acme Dashboard Board"),
    (ACME, "acme-docs", "public", "Acme Documentation Site"),
    (ACME, "acme-vault", "private", "Acme Vault Console"),
    (ACME, "acme-ledger", "private", "Acme Ledger Reports"),
    (GLOBEX, "globex-portal", "public", "Globex Partner Portal"),
    (GLOBEX, "globex-secret", "private", "Globex Secret Project"),
];
pub const WORKSPACE_NAMES: [(&str, &str); 2] =
    [(ACME, "Acme Corporation"), (GLOBEX, "Globex Incorporated")];

/// Admin of acme; reaches the database only through a request token.
pub const ALICE: &str = "alice@acme.example";
/// Admin of acme and developer of globex; token only.
pub const DANA: &str = "dana@both.example";
/// Accepted viewer member of acme (LOGIN role `victor`), granted the private acme-vault.
pub const VICTOR: &str = "victor@acme.example";
/// Invited to acme with acme-ledger (LOGIN role `ivy`), never accepted.
pub const IVY: &str = "ivy@acme.example";
/// Accepted viewer member of acme through the NOLOGIN role `team`.
pub const TINA: &str = "tina@acme.example";
/// Developer of globex (LOGIN role `gary`).
pub const GARY: &str = "gary@globex.example";
/// Developer of globex (LOGIN role `switch`, which is also a member of `team`).
pub const SAM: &str = "sam@globex.example";
/// Outsiders: members of nothing.
pub const OLIVIA: &str = "olivia@outside.example";
pub const OSCAR: &str = "oscar@outside.example";
/// Anonymous visitors: only ever stored as keyed hashes.
pub const COOKIES: [&str; 3] = ["cookie-a1f3e9", "cookie-b2e4d8", "cookie-c3d5c7"];
/// Every identity and visitor key the fixture uses.
pub const PEOPLE: [&str; 12] = [
    ALICE, DANA, VICTOR, IVY, TINA, GARY, SAM, OLIVIA, OSCAR, COOKIES[0], COOKIES[1], COOKIES[2],
];

/// The platform's HS256 secret, set with audience.set_token_secret.
pub const TOKEN_SECRET: &str = "hostile-reader-platform-token-secret-0123456789";
/// What a forger signs with instead.
pub const WRONG_SECRET: &str = "an-attacker-guess-at-the-token-secret-0123456";

/// The request token an actor presents, if any.
#[derive(Clone, Copy, Debug)]
pub enum Tok {
    None,
    /// Signed with the platform secret: (sub, workspace claim).
    Valid(&'static str, Option<&'static str>),
    /// sub alice, signed with another secret.
    Forged,
    /// sub alice, right secret, `exp` a minute ago.
    Expired,
    /// sub alice, `alg: none` and no signature.
    AlgNone,
    /// sub alice, right secret, HS512.
    Hs512,
    /// victor's valid token with its payload swapped for one naming alice.
    Tampered,
}

impl Tok {
    pub fn is_valid(self) -> bool {
        matches!(self, Tok::Valid(..))
    }

    pub fn mint(self) -> Option<String> {
        let secret = TOKEN_SECRET.as_bytes();
        let alive = epoch_seconds() + 3600;
        let alice = json!({"sub": ALICE, "exp": alive});
        Some(match self {
            Tok::None => return None,
            Tok::Valid(sub, workspace) => valid_token(sub, workspace),
            Tok::Forged => sign_token(Algorithm::HS256, &alice, WRONG_SECRET.as_bytes()),
            Tok::Expired => sign_token(
                Algorithm::HS256,
                &json!({"sub": ALICE, "exp": epoch_seconds() - 60}),
                secret,
            ),
            Tok::AlgNone => unsigned_token(&alice),
            Tok::Hs512 => sign_token(Algorithm::HS512, &alice, secret),
            Tok::Tampered => {
                let victor = sign_token(
                    Algorithm::HS256,
                    &json!({"sub": VICTOR, "exp": alive}),
                    secret,
                );
                let forged = sign_token(Algorithm::HS256, &alice, WRONG_SECRET.as_bytes());
                let v: Vec<&str> = victor.split('.').collect();
                let f: Vec<&str> = forged.split('.').collect();
                format!("{}.{}.{}", v[0], f[1], v[2])
            }
        })
    }
}

/// A token the platform would issue: HS256 with its secret, valid an hour.
pub fn valid_token(sub: &str, workspace: Option<&str>) -> String {
    let mut claims = json!({"sub": sub, "exp": epoch_seconds() + 3600});
    if let Some(w) = workspace {
        claims["workspace"] = json!(w);
    }
    sign_token(Algorithm::HS256, &claims, TOKEN_SECRET.as_bytes())
}

/// One test's database, roles and data, and the operator's view of it.
/// Field order is drop order: the database goes before the roles that own
/// objects in it.
pub struct Fixture {
    pub op: Client,
    pub db: TestDb,
    prefix: String,
    /// What the operator reads from each view: (JSON row, workspace, app).
    pub operator_rows: OperatorRows,
    pub catalog: Catalog,
    /// Hex of every workspace key, read as superuser.
    pub key_hex: Vec<String>,
    _roles: Roles,
}

/// The suffixes of the test's own roles (see `Fixture::role`); all LOGIN but
/// `team`, a NOLOGIN role people SET ROLE into to read as the team.
const LOGINS: [&str; 8] = [
    "outsider", "victor", "ivy", "gary", "analyst", "switch", "pooled", "team",
];

impl Fixture {
    pub fn new(short: &str) -> Fixture {
        let (db, mut op) = TestDb::with_extension(&format!("it_hostile_{short}"));
        let prefix = format!("it_hostile_{short}");
        let role = |suffix: &str| format!("{prefix}_{suffix}");
        let roles = create_roles(&mut op, &role);
        create_workspaces(&mut op, &role);
        record_views(&mut op);
        let key_hex = read_keys(&mut op);
        let catalog = Catalog::read(&mut op);
        let operator_rows = read_operator_rows(&mut op, &catalog);
        usage_oracle::check_recounts(&mut op, &catalog.views, &operator_rows);
        Fixture {
            op,
            db,
            prefix,
            operator_rows,
            catalog,
            key_hex,
            _roles: roles,
        }
    }

    /// The name of the test's role with this suffix; `audience_reader` is
    /// the capability role itself.
    pub fn role(&self, suffix: &str) -> String {
        match suffix {
            "audience_reader" => suffix.to_string(),
            _ => format!("{}_{suffix}", self.prefix),
        }
    }

    pub fn session(&self, spec: &'static ActorSpec) -> Session {
        let login = self.role(spec.login);
        let (client, notices) = connect_with_notices(&self.db.name, &login);
        Session {
            spec,
            login,
            client,
            notices,
        }
    }
}

fn create_roles(op: &mut Client, role: &dyn Fn(&str) -> String) -> Roles {
    let roles = Roles::create(
        &LOGINS
            .iter()
            .map(|l| (role(l), if *l == "team" { "NOLOGIN" } else { "LOGIN" }))
            .collect::<Vec<_>>(),
    );
    for login in LOGINS {
        on_roles(op, &format!("GRANT audience_reader TO \"{}\"", role(login)));
    }
    on_roles(
        op,
        &format!(
            "GRANT \"{team}\" TO \"{switch}\";
             GRANT pg_read_all_data TO \"{analyst}\";",
            team = role("team"),
            switch = role("switch"),
            analyst = role("analyst"),
        ),
    );
    roles
}

/// The workspaces, apps, members (some mapped to the test's roles), a
/// grant, an invitation never accepted, and the token secret.
fn create_workspaces(op: &mut Client, role: &dyn Fn(&str) -> String) {
    for (slug, name) in WORKSPACE_NAMES {
        op.execute("SELECT audience.create_workspace($1, $2)", &[&slug, &name])
            .unwrap();
    }
    for (ws, app, visibility, name) in APPS {
        op.execute(
            "SELECT audience.create_app($1, $2, $3, $4)",
            &[&ws, &app, &visibility, &name],
        )
        .unwrap();
    }
    let member = "SELECT audience.add_member($1, $2, $3, $4)";
    let none: Option<String> = None;
    op.execute(member, &[&ACME, &ALICE, &"admin", &none])
        .unwrap();
    op.execute(member, &[&ACME, &DANA, &"admin", &none])
        .unwrap();
    op.execute(member, &[&GLOBEX, &DANA, &"developer", &none])
        .unwrap();
    op.execute(member, &[&ACME, &VICTOR, &"viewer", &Some(role("victor"))])
        .unwrap();
    op.execute(member, &[&ACME, &TINA, &"viewer", &Some(role("team"))])
        .unwrap();
    op.execute(member, &[&GLOBEX, &GARY, &"developer", &Some(role("gary"))])
        .unwrap();
    op.execute(
        member,
        &[&GLOBEX, &SAM, &"developer", &Some(role("switch"))],
    )
    .unwrap();
    op.execute(
        "SELECT audience.grant_app_access($1, 'acme-vault', $2)",
        &[&ACME, &VICTOR],
    )
    .unwrap();
    op.execute(
        "SELECT audience.invite_viewer($1, $2, 'acme-ledger', $3)",
        &[&ACME, &IVY, &role("ivy")],
    )
    .unwrap();
    op.execute("SELECT audience.set_token_secret($1)", &[&TOKEN_SECRET])
        .unwrap();
}

/// Everyone views every app, some twice, over the last three months:
/// members (shown by identity), outsiders on private apps (by identity) and
/// on public apps (pseudonyms), anonymous visitors. Some views are visits,
/// some sessions ended after up to ten hours (so that usage figures tell
/// sessions, visits and time apart).
fn record_views(op: &mut Client) {
    let record = op
        .prepare(
            "SELECT audience.record_view($1, $2, $3, v.at, anonymous_id => $6,
                    ended_at => CASE WHEN v.n % 3 = 0 AND v.n % 5 <> 1 AND $4 >= 1
                                     THEN v.at + make_interval(mins => v.n * 37 % 600 + 1) END,
                    kind => CASE WHEN v.n % 5 = 1 THEN 'visit' ELSE 'session' END)
               FROM (SELECT now() - make_interval(days => $4::int, hours => $5::int), $4::int + $5::int) v(at, n)",
        )
        .unwrap();
    for (a, (ws, app, _, _)) in APPS.iter().enumerate() {
        for (v, person) in PEOPLE.iter().enumerate() {
            let (viewer, cookie) = if person.starts_with("cookie-") {
                (None, Some(*person))
            } else {
                (Some(*person), None)
            };
            let days = ((a * 17 + v * 11) % 90) as i32;
            let hours = v as i32 + 1;
            op.execute(&record, &[ws, app, &viewer, &days, &hours, &cookie])
                .unwrap();
            if (a + v) % 4 == 0 {
                op.execute(&record, &[ws, app, &viewer, &(days + 1), &hours, &cookie])
                    .unwrap();
            }
        }
    }
}

/// Hex of every workspace key, read as superuser: what no output may show.
fn read_keys(op: &mut Client) -> Vec<String> {
    let key_hex = op
        .query(
            "SELECT encode(k.identity_key, 'hex') FROM audience_internal.workspace_keys k
             UNION ALL
             SELECT encode(k.pseudonym_key, 'hex') FROM audience_internal.workspace_keys k",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect::<Vec<String>>();
    assert_eq!(key_hex.len(), 4, "two workspaces, two keys each");
    key_hex
}

/// Every view's rows as the operator reads them, each with its workspace and app.
fn read_operator_rows(op: &mut Client, catalog: &Catalog) -> OperatorRows {
    let mut operator_rows = BTreeMap::new();
    for view in &catalog.views {
        let rows = json_rows(op, &view.name)
            .iter()
            .map(|text| {
                let v: Value = serde_json::from_str(text).unwrap();
                let ws = v["workspace"]
                    .as_str()
                    .unwrap_or_else(|| {
                        panic!(
                            "view {} has no workspace column: extend the oracle",
                            view.name
                        )
                    })
                    .to_string();
                let app = v.get("app").and_then(|a| a.as_str()).map(str::to_string);
                (text.clone(), ws, app)
            })
            .collect::<Vec<_>>();
        operator_rows.insert(view.name.clone(), rows);
    }
    // The comparisons mean something only if the operator sees every app.
    for (ws, app, _, _) in APPS {
        assert!(
            operator_rows["recent_viewers"]
                .iter()
                .any(|(_, w, a)| w == ws && a.as_deref() == Some(app)),
            "the operator sees no recent viewer of {ws}/{app}"
        );
    }
    operator_rows
}

/// A view's rows as JSON text, without the clock-dependent `last_viewed`.
pub fn json_rows_sql(view: &str) -> String {
    format!("SELECT (to_jsonb(v) - 'last_viewed')::text FROM audience.\"{view}\" v")
}

pub fn json_rows(client: &mut impl postgres::GenericClient, view: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .query(&json_rows_sql(view), &[])
        .unwrap_or_else(|e| panic!("reading audience.{view}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

/// One actor's connection.
pub struct Session {
    pub spec: &'static ActorSpec,
    pub login: String,
    pub client: Client,
    pub notices: Notices,
}

impl Session {
    pub fn label(&self) -> String {
        format!("{} ({})", self.spec.label, self.login)
    }

    /// A transaction that runs for this actor: it authenticates with a token
    /// minted for it (a token is good once), if it has one, in a savepoint,
    /// so that a refused token leaves the transaction usable — and must leave
    /// nobody as requester.
    pub fn begin(&mut self) -> Transaction<'_> {
        self.begin_with("")
    }

    /// Such a transaction that may run EXPLAIN ANALYZE after reading. On a
    /// Citus coordinator, which holds a copy of the reference tables, Citus
    /// refuses EXPLAIN ANALYZE once the transaction has read such a copy
    /// locally (authenticate reads the secret), unless local execution is
    /// off from the transaction's start: docs/citus.md.
    pub fn begin_explaining(&mut self) -> Transaction<'_> {
        if citus_workers().is_empty() {
            self.begin_with("")
        } else {
            self.begin_with("SET LOCAL citus.enable_local_execution = off")
        }
    }

    fn begin_with(&mut self, first: &str) -> Transaction<'_> {
        let label = format!("{} ({})", self.spec.label, self.login);
        let mut tx = self.client.transaction().unwrap();
        if !first.is_empty() {
            tx.batch_execute(first).unwrap();
        }
        if let Some(token) = self.spec.token.mint() {
            let mut sp = tx.transaction().unwrap();
            match (
                sp.query_one("SELECT audience.authenticate($1)", &[&token]),
                self.spec.token,
            ) {
                (Ok(row), Tok::Valid(sub, _)) => {
                    assert_eq!(
                        row.get::<_, String>(0),
                        sub,
                        "{label}: authenticate returned another subject"
                    );
                    sp.commit().unwrap();
                }
                (Ok(row), _) => panic!(
                    "{label}: authenticate accepted a bad token and made {:?} the requester",
                    row.get::<_, String>(0)
                ),
                (Err(e), Tok::Valid(..)) => {
                    panic!("{label}: authenticate refused a valid token: {e}")
                }
                (Err(e), _) => {
                    let code = e.code().map(|c| c.code().to_string());
                    assert_eq!(
                        code.as_deref(),
                        Some("28000"),
                        "{label}: a bad token should fail with 28000: {e}"
                    );
                }
            }
        }
        tx
    }

    /// What the actor reads, in a transaction of its own.
    pub fn state(&mut self) -> State {
        let views: Vec<String> = {
            // The views are in the database, not in the spec.
            let rows = self
                .client
                .query(
                    "SELECT c.relname::text FROM pg_catalog.pg_class c
                      WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1",
                    &[],
                )
                .unwrap();
            rows.iter().map(|r| r.get(0)).collect()
        };
        let mut tx = self.begin();
        state_in(&mut tx, &views)
    }
}
