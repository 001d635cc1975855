//! The kinds of requester (docs/spec.md §2) the reads are asked for, how each logs
//! in, and the model of who it is: plain SQL over members, app_access and
//! the role catalog, giving per workspace a `Ctx` (model.rs).

use crate::model::Ctx;
use crate::world::{role, World, TOKEN_SECRET, WORKSPACES};
use jsonwebtoken::Algorithm;
use pg_audience_integration::{epoch_seconds, sign_token};
use postgres::Client;
use serde_json::json;

pub struct Requester {
    pub label: &'static str,
    /// The suffix of its login role, or None for the superuser `postgres`.
    pub login: Option<&'static str>,
    /// A request token's subject and workspace claim, authenticated in the
    /// reading transaction.
    pub token: Option<(&'static str, Option<&'static str>)>,
}

#[rustfmt::skip]
pub static REQUESTERS: &[Requester] = &[
    Requester { label: "operator (superuser)", login: None, token: None },
    Requester { label: "operator (audience_manager)", login: Some("manager"), token: None },
    Requester { label: "admin", login: Some("admin"), token: None },
    Requester { label: "developer", login: Some("dev"), token: None },
    Requester { label: "member of the developer's role", login: Some("devmate"), token: None },
    Requester { label: "accepted viewer", login: Some("viewer"), token: None },
    Requester { label: "invited viewer, not accepted", login: Some("invited"), token: None },
    Requester { label: "viewer granted a private app", login: Some("granted"), token: None },
    Requester { label: "stranger", login: Some("stranger"), token: None },
    Requester { label: "token of the accepted viewer", login: Some("pooled"), token: Some(("  VIC@model.example", None)) },
    Requester { label: "token of the admin, for workspace wb", login: Some("pooled"), token: Some(("ada@model.example", Some("wb"))) },
    Requester { label: "token of nobody known", login: Some("pooled"), token: Some(("nobody@nowhere.example", None)) },
];

impl Requester {
    pub fn login_name(&self) -> String {
        self.login.map_or("postgres".to_string(), role)
    }

    pub fn connect(&self, world: &World) -> Client {
        match self.login {
            None => world.operator(),
            Some(l) => world.connect_as(l),
        }
    }
}

/// A fresh token (its own jti: a token is good for one transaction).
pub fn token(sub: &str, workspace: Option<&str>) -> String {
    let jti: u128 = rand::random();
    let mut claims = json!({"sub": sub, "exp": epoch_seconds() + 600, "jti": format!("{jti:032x}")});
    if let Some(w) = workspace {
        claims["workspace"] = json!(w);
    }
    sign_token(Algorithm::HS256, &claims, TOKEN_SECRET.as_bytes())
}

/// One membership the requester resolves to.
#[derive(Clone, Debug)]
pub struct Membership {
    pub ws_id: i64,
    pub ws: String,
    pub kind: String,
    pub identity: String,
    pub hash_hex: String,
}

/// Who a requester is, by the model.
#[derive(Debug)]
pub struct Resolved {
    pub operator: bool,
    pub caller_oid: i64,
    pub memberships: Vec<Membership>,
    /// The token's subject, normalised.
    pub subject: Option<String>,
}

/// How members.db_role refers to a role in this build: by name (0.1.0) or
/// by OID (a mapping that follows the role).
fn role_match(model: &mut Client) -> (String, bool) {
    let row = model
        .query_opt(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = 'audience_internal.members'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attname::text LIKE 'db_role%'
              ORDER BY a.attnum LIMIT 1",
            &[],
        )
        .unwrap()
        .expect("audience_internal.members has a db_role column");
    let (col, ty): (String, String) = (row.get(0), row.get(1));
    // Compared by name, which every node renders alike (on Citus each node
    // numbers its roles itself): a regrole renders as a quoted identifier.
    (format!("m.{col}::text = ANY ($1::text[])"), !(ty == "name" || ty == "text"))
}

/// The model of requester resolution (docs/spec.md §2): a token's subject (members
/// by identity, in the token's workspace if it names one); otherwise the
/// members mapped to the login role or a role it is a member of; a
/// superuser or member of audience_manager without a token is the operator.
pub fn resolve(model: &mut Client, r: &Requester) -> Resolved {
    let login = r.login_name();
    let (operator, caller_oid): (bool, i64) = {
        let row = model
            .query_one(
                "SELECT p.rolsuper OR pg_catalog.pg_has_role(p.oid, 'audience_manager', 'MEMBER'), p.oid::bigint
                   FROM pg_catalog.pg_roles p WHERE p.rolname = $1",
                &[&login],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let rows = match r.token {
        Some((sub, ws)) => model
            .query(
                "SELECT m.workspace_id, w.slug, m.kind, m.identity, encode(m.identity_hash, 'hex')
                   FROM audience_internal.members m JOIN audience_internal.workspaces w USING (workspace_id)
                  WHERE m.status = 'active' AND m.identity = audience_internal.normalize_identity('token', $1)
                    AND ($2::text IS NULL OR w.slug = $2)
                  ORDER BY w.slug, m.identity",
                &[&sub, &ws],
            )
            .unwrap(),
        None => {
            let (matches, quoted) = role_match(model);
            // The login's roles first, in a query of their own over the
            // catalog: on Citus a recursive query cannot be joined to the
            // distributed members.
            let roles: Vec<String> = model
                .query_one(
                    "WITH RECURSIVE r(oid) AS (
                        SELECT p.oid FROM pg_catalog.pg_roles p WHERE p.rolname = $1
                        UNION
                        SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN r ON a.member = r.oid)
                     SELECT coalesce(array_agg(CASE WHEN $2 THEN quote_ident(p.rolname) ELSE p.rolname::text END), '{}')
                       FROM r JOIN pg_catalog.pg_roles p ON p.oid = r.oid",
                    &[&login, &quoted],
                )
                .unwrap()
                .get(0);
            let sql = format!(
                "SELECT m.workspace_id, w.slug, m.kind, m.identity, encode(m.identity_hash, 'hex')
                   FROM audience_internal.members m JOIN audience_internal.workspaces w USING (workspace_id)
                  WHERE m.status = 'active' AND {matches}
                  ORDER BY w.slug, m.identity"
            );
            model.query(&sql, &[&roles]).unwrap()
        }
    };
    let subject = r.token.map(|(sub, _)| {
        model
            .query_one("SELECT audience_internal.normalize_identity('token', $1)", &[&sub])
            .unwrap()
            .get::<_, String>(0)
    });
    Resolved {
        operator: operator && r.token.is_none(),
        caller_oid,
        memberships: rows
            .iter()
            .map(|row| Membership {
                ws_id: row.get(0),
                ws: row.get(1),
                kind: row.get(2),
                identity: row.get(3),
                hash_hex: row.get(4),
            })
            .collect(),
        subject,
    }
}

/// What a resolved requester sees of each workspace: every app (operator,
/// admin, developer), the public apps and the private apps granted to it
/// (accepted viewer member), or nothing.
pub fn contexts(model: &mut Client, who: &Resolved) -> Vec<Ctx> {
    WORKSPACES
        .iter()
        .map(|ws| {
            let ws_id: i64 = model
                .query_one(
                    "SELECT workspace_id FROM audience_internal.workspaces WHERE slug = $1",
                    &[ws],
                )
                .unwrap()
                .get(0);
            let mine: Vec<&Membership> = who.memberships.iter().filter(|m| m.ws_id == ws_id).collect();
            let access = if who.operator || mine.iter().any(|m| m.kind == "admin" || m.kind == "developer") {
                Some("all")
            } else if !mine.is_empty() {
                Some("some")
            } else {
                None
            };
            let own: Vec<String> = mine.iter().map(|m| m.hash_hex.clone()).collect();
            let visible = match access {
                None => Vec::new(),
                Some(a) => model
                    .query(
                        "SELECT a.app_id, a.slug FROM audience_internal.apps a
                          WHERE a.workspace_id = $1
                            AND ($2 = 'all' OR a.visibility = 'public'
                                 OR EXISTS (SELECT FROM audience_internal.app_access g
                                             WHERE g.workspace_id = a.workspace_id AND g.app_id = a.app_id
                                               AND encode(g.identity_hash, 'hex') = ANY ($3)))
                          ORDER BY a.slug",
                        &[&ws_id, &a, &own],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect(),
            };
            let req_scope = match mine.first() {
                Some(m) => format!("requester:{}", m.hash_hex),
                None => format!("requester:role:{}", who.caller_oid),
            };
            Ctx {
                ws: ws.to_string(),
                ws_id,
                access,
                visible,
                own,
                req_scope,
            }
        })
        .collect()
}
