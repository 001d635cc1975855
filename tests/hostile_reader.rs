//! SPEC §2 and the last bullet of §7: the privacy model holds against a
//! hostile reader. Every actor logs in as a real LOGIN role over the Unix
//! socket — an outsider, a viewer member, an invited viewer who never
//! accepted, a developer of the other workspace, a BI analyst holding
//! pg_read_all_data, a pooled application role with no token, with forged,
//! expired, `alg: none`, HS512 and tampered tokens, with a token limited to
//! another workspace, and with valid tokens as positive controls — and tries
//! every door: raw tables, COPY, other workspaces' slugs, management and
//! internal functions, the tickets behind the read functions, spoofed
//! settings, SET ROLE and SET SESSION AUTHORIZATION, prepared statements run
//! under another role, leaky functions, division-by-zero oracles, pg_stats,
//! EXPLAIN and DEBUG output, and every catalog. A catalog audit checks row
//! security, roles and privileges.
//!
//! What each actor may see is written down here from the rules of SPEC §2
//! (`ActorSpec::sees`), independently of the extension; what it gets is
//! compared with what the operator (superuser) sees, filtered by those rules.
//! Each test gathers every failing case before judging, so one run lists all.

use jsonwebtoken::Algorithm;
use pg_audience_integration::{
    connect_with_notices, epoch_seconds, sign_token, unsigned_token, Notices, Roles, TestDb,
};
use postgres::error::DbError;
use postgres::{Client, Transaction};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;

#[path = "hostile_reader/usage_oracle.rs"]
mod usage_oracle;

const ACME: &str = "acme-corp";
const GLOBEX: &str = "globex-inc";
/// What a reader hears of a workspace it may not see must be what it hears of this one.
const NO_SUCH_WORKSPACE: &str = "no-such-workspace";
/// Likewise for an app it may not see.
const NO_SUCH_APP: &str = "no-such-app";

/// (workspace, slug, visibility, name). Names and slugs are distinctive so
/// that finding one in a NOTICE, a plan or a catalog means it leaked.
const APPS: [(&str, &str, &str, &str); 6] = [
    (ACME, "acme-dash", "public", "Acme Dashboard Board"),
    (ACME, "acme-docs", "public", "Acme Documentation Site"),
    (ACME, "acme-vault", "private", "Acme Vault Console"),
    (ACME, "acme-ledger", "private", "Acme Ledger Reports"),
    (GLOBEX, "globex-portal", "public", "Globex Partner Portal"),
    (GLOBEX, "globex-secret", "private", "Globex Secret Project"),
];
const WORKSPACE_NAMES: [(&str, &str); 2] =
    [(ACME, "Acme Corporation"), (GLOBEX, "Globex Incorporated")];

/// Admin of acme; reaches the database only through a request token.
const ALICE: &str = "alice@acme.example";
/// Admin of acme and developer of globex; token only.
const DANA: &str = "dana@both.example";
/// Accepted viewer member of acme (LOGIN role `victor`), granted the private acme-vault.
const VICTOR: &str = "victor@acme.example";
/// Invited to acme with acme-ledger (LOGIN role `ivy`), never accepted.
const IVY: &str = "ivy@acme.example";
/// Accepted viewer member of acme through the NOLOGIN role `team`.
const TINA: &str = "tina@acme.example";
/// Developer of globex (LOGIN role `gary`).
const GARY: &str = "gary@globex.example";
/// Developer of globex (LOGIN role `switch`, which is also a member of `team`).
const SAM: &str = "sam@globex.example";
/// Outsiders: members of nothing.
const OLIVIA: &str = "olivia@outside.example";
const OSCAR: &str = "oscar@outside.example";
/// Anonymous visitors: only ever stored as keyed hashes.
const COOKIES: [&str; 3] = ["cookie-a1f3e9", "cookie-b2e4d8", "cookie-c3d5c7"];
/// Every identity and visitor key the fixture uses.
const PEOPLE: [&str; 12] = [
    ALICE, DANA, VICTOR, IVY, TINA, GARY, SAM, OLIVIA, OSCAR, COOKIES[0], COOKIES[1], COOKIES[2],
];

/// The platform's HS256 secret, set with audience.set_token_secret.
const TOKEN_SECRET: &str = "hostile-reader-platform-token-secret-0123456789";
/// What a forger signs with instead.
const WRONG_SECRET: &str = "an-attacker-guess-at-the-token-secret-0123456";

#[derive(Clone, Copy, Debug)]
enum Access {
    /// Every app of the workspace (admin, developer).
    All,
    /// These apps only (an accepted viewer member: the public apps and the private apps granted).
    Apps(&'static [&'static str]),
}

/// The request token an actor presents, if any.
#[derive(Clone, Copy, Debug)]
enum Tok {
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
    fn is_valid(self) -> bool {
        matches!(self, Tok::Valid(..))
    }

    fn mint(self) -> Option<String> {
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
fn valid_token(sub: &str, workspace: Option<&str>) -> String {
    let mut claims = json!({"sub": sub, "exp": epoch_seconds() + 3600});
    if let Some(w) = workspace {
        claims["workspace"] = json!(w);
    }
    sign_token(Algorithm::HS256, &claims, TOKEN_SECRET.as_bytes())
}

/// One actor: how it logs in, and what SPEC §2 lets it see.
#[derive(Debug)]
struct ActorSpec {
    label: &'static str,
    /// Suffix of its login role (see `Fixture::role`).
    login: &'static str,
    token: Tok,
    /// The workspaces it sees, and how much of each.
    sees: &'static [(&'static str, Access)],
    /// Its memberships as whoami reports them: (requester, workspace, kind).
    whoami: &'static [(&'static str, &'static str, &'static str)],
}

const VICTOR_APPS: &[&str] = &["acme-dash", "acme-docs", "acme-vault"];
const ACME_PUBLIC: &[&str] = &["acme-dash", "acme-docs"];
const NOTHING: &[(&str, Access)] = &[];
const NOBODY: &[(&str, &str, &str)] = &[];

#[rustfmt::skip]
static ACTORS: &[ActorSpec] = &[
    ActorSpec { label: "outsider", login: "outsider", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "viewer member", login: "victor", token: Tok::None,
                sees: &[(ACME, Access::Apps(VICTOR_APPS))], whoami: &[(VICTOR, ACME, "viewer")] },
    ActorSpec { label: "invited viewer, not accepted", login: "ivy", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "developer of the other workspace", login: "gary", token: Tok::None,
                sees: &[(GLOBEX, Access::All)], whoami: &[(GARY, GLOBEX, "developer")] },
    ActorSpec { label: "BI analyst with pg_read_all_data", login: "analyst", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "developer of globex who is also in role team", login: "switch", token: Tok::None,
                sees: &[(ACME, Access::Apps(ACME_PUBLIC)), (GLOBEX, Access::All)],
                whoami: &[(TINA, ACME, "viewer"), (SAM, GLOBEX, "developer")] },
    ActorSpec { label: "pooled role, no token", login: "pooled", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, forged token", login: "pooled", token: Tok::Forged, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, expired token", login: "pooled", token: Tok::Expired, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, alg none token", login: "pooled", token: Tok::AlgNone, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, HS512 token", login: "pooled", token: Tok::Hs512, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, tampered token", login: "pooled", token: Tok::Tampered, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, token of dana limited to globex", login: "pooled", token: Tok::Valid(DANA, Some(GLOBEX)),
                sees: &[(GLOBEX, Access::All)], whoami: &[(DANA, GLOBEX, "developer")] },
    ActorSpec { label: "pooled role, token of alice limited to a workspace she is not in", login: "pooled",
                token: Tok::Valid(ALICE, Some(GLOBEX)), sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, token of the invited viewer", login: "pooled", token: Tok::Valid(IVY, None),
                sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, token of the viewer member", login: "pooled", token: Tok::Valid(VICTOR, None),
                sees: &[(ACME, Access::Apps(VICTOR_APPS))], whoami: &[(VICTOR, ACME, "viewer")] },
    // The positive control: a valid token of an admin sees all of acme.
    ActorSpec { label: "pooled role, valid token of the acme admin", login: "pooled", token: Tok::Valid(ALICE, None),
                sees: &[(ACME, Access::All)], whoami: &[(ALICE, ACME, "admin")] },
];

/// `switch` after SET ROLE team: tina, a viewer of acme's public apps.
static AS_TEAM: ActorSpec = ActorSpec {
    label: "switch after SET ROLE team",
    login: "team",
    token: Tok::None,
    sees: &[(ACME, Access::Apps(ACME_PUBLIC))],
    whoami: &[(TINA, ACME, "viewer")],
};

/// Any login after SET ROLE to a capability role: mapped to no member.
static AS_CAPABILITY: ActorSpec = ActorSpec {
    label: "after SET ROLE audience_reader",
    login: "audience_reader",
    token: Tok::None,
    sees: NOTHING,
    whoami: NOBODY,
};

impl ActorSpec {
    fn access(&self, workspace: &str) -> Option<Access> {
        self.sees
            .iter()
            .find(|(w, _)| *w == workspace)
            .map(|(_, a)| *a)
    }

    fn sees_app(&self, workspace: &str, app: &str) -> bool {
        match self.access(workspace) {
            Some(Access::All) => true,
            Some(Access::Apps(apps)) => apps.contains(&app),
            None => false,
        }
    }

    /// whoami as it should answer: one row per workspace, or one row with
    /// no workspace (requester = token subject, if a valid token named one).
    fn expected_whoami(&self, role: &str) -> Vec<WhoamiRow> {
        let resolved_by = if self.token.is_valid() {
            "token".to_string()
        } else if self.whoami.is_empty() {
            "nobody".to_string()
        } else {
            format!("role {role}")
        };
        if self.whoami.is_empty() {
            let subject = match self.token {
                Tok::Valid(sub, _) => Some(sub.to_string()),
                _ => None,
            };
            return vec![(subject, resolved_by, None, None)];
        }
        let mut rows: Vec<WhoamiRow> = self
            .whoami
            .iter()
            .map(|(who, ws, kind)| {
                (
                    Some(who.to_string()),
                    resolved_by.clone(),
                    Some(ws.to_string()),
                    Some(kind.to_string()),
                )
            })
            .collect();
        rows.sort();
        rows
    }
}

type WhoamiRow = (Option<String>, String, Option<String>, Option<String>);

/// What an actor reads: whoami, and every view's rows as JSON text.
#[derive(Debug, PartialEq, Eq, Clone)]
struct State {
    whoami: Vec<WhoamiRow>,
    views: BTreeMap<String, Vec<String>>,
}

struct View {
    name: String,
    columns: Vec<String>,
}

/// A function of schema audience or audience_internal, as the catalog has it.
struct Func {
    schema: String,
    name: String,
    kind: String,
    /// Input arguments: (name, type).
    args: Vec<(String, String)>,
    defaults: usize,
    variadic: bool,
    reader_may_execute: bool,
    returns: String,
}

impl Func {
    fn qualified(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.name)
    }

    /// A call with the given argument texts.
    fn call(&self, args: &[String]) -> String {
        let mut args = args.to_vec();
        if self.variadic {
            if let Some(last) = args.last_mut() {
                *last = format!("VARIADIC {last}");
            }
        }
        let verb = if self.kind == "p" { "CALL" } else { "SELECT" };
        format!("{verb} {}({})", self.qualified(), args.join(", "))
    }

    /// A call with a plausible non-NULL value for every argument. (Not
    /// NULL: the planner folds a STRICT function with a NULL argument to
    /// NULL without calling it, or checking whether the caller may.)
    fn call_with_values(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(_, ty)| match ty.as_str() {
                "anyelement" | "anycompatible" | "anynonarray" => "'x'::text".to_string(),
                "anyarray" | "anycompatiblearray" => "'{}'::text[]".to_string(),
                "text" | "character varying" | "name" => format!("CAST('x' AS {ty})"),
                "bytea" => "'\\x00'::bytea".to_string(),
                "integer" | "bigint" | "smallint" | "numeric" | "oid" => format!("CAST(1 AS {ty})"),
                "boolean" => "true".to_string(),
                "timestamp with time zone" => "now()".to_string(),
                "date" => "current_date".to_string(),
                "interval" => "interval '1 day'".to_string(),
                "jsonb" | "json" => format!("CAST('{{}}' AS {ty})"),
                t if t.ends_with("[]") => format!("CAST('{{}}' AS {t})"),
                t => format!("CAST(NULL AS {t})"),
            })
            .collect();
        self.call(&args)
    }

    /// Whether the function demands a ticket as its first argument: a
    /// definer function that answers for the role the ticket names.
    fn takes_ticket(&self) -> bool {
        self.args
            .first()
            .is_some_and(|(n, t)| n == "ticket" && t == "bytea")
    }

    /// A call of a read function with its required arguments only, and
    /// its app if it takes one (optional: `app` empty leaves it out).
    fn read_call(&self, workspace: &str, app: &str) -> String {
        let mut required = self.args.len() - self.defaults;
        if let Some(i) = self.args.iter().position(|(n, _)| n == "app") {
            if !app.is_empty() {
                required = required.max(i + 1);
            }
        }
        let mut timestamps = 0;
        let args: Vec<String> = self.args[..required]
            .iter()
            .map(|(name, ty)| match (name.as_str(), ty.as_str()) {
                ("workspace", _) => format!("'{workspace}'"),
                ("app", _) => format!("'{app}'"),
                (_, "integer" | "bigint" | "smallint") => "12".to_string(),
                (_, "timestamp with time zone") => {
                    timestamps += 1;
                    if timestamps == 1 {
                        "now() - interval '120 days'"
                    } else {
                        "now()"
                    }
                    .to_string()
                }
                (_, "boolean") => "true".to_string(),
                (_, "text") => "'x'".to_string(),
                (name, ty) => panic!(
                    "{}: no value to pass for argument {name} {ty}; extend read_call",
                    self.name
                ),
            })
            .collect();
        self.call(&args)
    }

    fn takes_app(&self) -> bool {
        self.args.iter().any(|(name, _)| name == "app")
    }

    /// Whether the app may be left out, to ask about the whole workspace.
    fn app_optional(&self) -> bool {
        let required = self.args.len() - self.defaults;
        self.args[required..].iter().any(|(name, _)| name == "app")
    }
}

struct Catalog {
    views: Vec<View>,
    /// Tables, sequences and views of audience_internal: (name, relkind).
    internal_relations: Vec<(String, String)>,
    /// Tables of schema audience (staging tables of the ingest path).
    public_tables: Vec<String>,
    functions: Vec<Func>,
}

impl Catalog {
    fn read(op: &mut Client) -> Catalog {
        let views: Vec<View> = op
            .query(
                "SELECT c.relname::text,
                        ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                               ORDER BY a.attnum)
                   FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('v', 'm')
                  ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| View {
                name: r.get(0),
                columns: r.get(1),
            })
            .collect();
        let internal_relations = op
            .query(
                "SELECT c.relname::text, c.relkind::text FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'audience_internal'::regnamespace
                    AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
                  ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let public_tables = op
            .query(
                "SELECT c.relname::text FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let functions = op
            .query(
                "SELECT n.nspname::text, p.proname::text, p.prokind::text,
                        ARRAY(SELECT pg_catalog.format_type(t, NULL)
                                FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i) ORDER BY i),
                        coalesce(p.proargnames, '{}'),
                        coalesce(p.proargmodes::text[], '{}'),
                        p.pronargdefaults::int,
                        p.provariadic <> 0,
                        has_function_privilege('audience_reader', p.oid, 'EXECUTE'),
                        p.prorettype::regtype::text
                   FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname IN ('audience', 'audience_internal') AND p.prokind IN ('f', 'p')
                  ORDER BY 1, 2",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| {
                let types: Vec<String> = r.get(3);
                let names: Vec<String> = r.get(4);
                let modes: Vec<String> = r.get(5);
                // proargnames covers OUT and TABLE columns too when modes are given.
                let input_names: Vec<String> = if modes.is_empty() {
                    names
                } else {
                    names
                        .into_iter()
                        .zip(modes)
                        .filter(|(_, m)| matches!(m.as_str(), "i" | "b" | "v"))
                        .map(|(n, _)| n)
                        .collect()
                };
                let args = types
                    .into_iter()
                    .enumerate()
                    .map(|(i, ty)| (input_names.get(i).cloned().unwrap_or_default(), ty))
                    .collect();
                Func {
                    schema: r.get(0),
                    name: r.get(1),
                    kind: r.get(2),
                    args,
                    defaults: r.get::<_, i32>(6) as usize,
                    variadic: r.get(7),
                    reader_may_execute: r.get(8),
                    returns: r.get(9),
                }
            })
            .collect();
        let catalog = Catalog {
            views,
            internal_relations,
            public_tables,
            functions,
        };
        // The probes below mean something only if they cover what SPEC §4 names.
        let names = |pred: &dyn Fn(&Func) -> bool| -> BTreeSet<String> {
            catalog
                .functions
                .iter()
                .filter(|f| pred(f))
                .map(|f| f.name.clone())
                .collect()
        };
        let reads = names(&|f| catalog.is_read(f));
        for read in [
            "workspace_monthly_viewers",
            "app_monthly_viewers",
            "app_total_viewers",
            "recent_viewers",
            "app_sessions",
            "top_apps",
            "top_viewers",
            "usage_over_time",
            "viewer_trend",
            "app_access",
        ] {
            assert!(
                reads.contains(read),
                "read function {read} not found among {reads:?}"
            );
        }
        let denied = names(&|f| f.schema == "audience" && !f.reader_may_execute);
        for f in [
            "create_workspace",
            "create_app",
            "set_app_visibility",
            "add_member",
            "invite_viewer",
            "accept_invite",
            "remove_member",
            "grant_app_access",
            "rotate_pseudonym_key",
            "set_token_secret",
            "forget_viewer",
            "record_view",
            "end_session",
        ] {
            assert!(
                denied.contains(f),
                "{f} should be among the functions readers may not execute: {denied:?}"
            );
        }
        let internal = names(&|f| f.schema == "audience_internal");
        for f in [
            "viewer_pseudonym",
            "viewer_ref",
            "identity_hash",
            "anonymous_hash",
            "accept_token",
            "rebuild_rollups",
            "random_key",
        ] {
            assert!(internal.contains(f), "internal function {f} not found");
        }
        let views: Vec<&str> = catalog.views.iter().map(|v| v.name.as_str()).collect();
        for v in [
            "apps",
            "workspace_monthly_viewers",
            "app_monthly_viewers",
            "app_total_viewers",
            "recent_viewers",
            "app_sessions",
            "top_apps",
            "top_viewers",
            "usage_over_time",
            "viewer_trend",
            "app_access",
        ] {
            assert!(
                views.contains(&v),
                "view audience.{v} not found among {views:?}"
            );
        }
        for (t, _) in [
            ("view_events", ""),
            ("members", ""),
            ("workspace_keys", ""),
            ("token_secrets", ""),
        ] {
            assert!(
                catalog.internal_relations.iter().any(|(n, _)| n == t),
                "table {t} not found"
            );
        }
        catalog
    }

    /// The read functions: executable by readers, asked about a workspace by slug.
    fn is_read(&self, f: &Func) -> bool {
        f.schema == "audience"
            && f.reader_may_execute
            && f.args.first().is_some_and(|(n, _)| n == "workspace")
    }

    fn reads(&self) -> impl Iterator<Item = &Func> {
        self.functions.iter().filter(|f| self.is_read(f))
    }
}

/// One test's database, roles and data, and the operator's view of it.
/// Field order is drop order: the database goes before the roles that own
/// objects in it.
struct Fixture {
    op: Client,
    db: TestDb,
    prefix: String,
    /// What the operator reads from each view: (JSON row, workspace, app).
    operator_rows: usage_oracle::OperatorRows,
    catalog: Catalog,
    /// Hex of every workspace key, read as superuser.
    key_hex: Vec<String>,
    _roles: Roles,
}

impl Fixture {
    fn new(short: &str) -> Fixture {
        let (db, mut op) = TestDb::with_extension(&format!("it_hostile_{short}"));
        let prefix = format!("it_hostile_{short}");
        let role = |suffix: &str| format!("{prefix}_{suffix}");
        let roles = Roles::create(&[
            (role("outsider"), "LOGIN"),
            (role("victor"), "LOGIN"),
            (role("ivy"), "LOGIN"),
            (role("gary"), "LOGIN"),
            (role("analyst"), "LOGIN"),
            (role("switch"), "LOGIN"),
            (role("pooled"), "LOGIN"),
            (role("team"), "NOLOGIN"),
        ]);
        // team too: a role people SET ROLE into to read as the team.
        for login in [
            "outsider", "victor", "ivy", "gary", "analyst", "switch", "pooled", "team",
        ] {
            op.batch_execute(&format!("GRANT audience_reader TO \"{}\"", role(login)))
                .unwrap();
        }
        op.batch_execute(&format!(
            "GRANT \"{team}\" TO \"{switch}\";
             GRANT pg_read_all_data TO \"{analyst}\";",
            team = role("team"),
            switch = role("switch"),
            analyst = role("analyst"),
        ))
        .unwrap();

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

        // Everyone views every app, some twice, over the last three months:
        // members (shown by identity), outsiders on private apps (by
        // identity) and on public apps (pseudonyms), anonymous visitors.
        // Some views are visits, some sessions ended after up to ten hours
        // (so that usage figures tell sessions, visits and time apart).
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

        let catalog = Catalog::read(&mut op);
        let mut operator_rows = BTreeMap::new();
        for view in &catalog.views {
            let rows = json_rows(&mut op, &view.name)
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

    fn role(&self, suffix: &str) -> String {
        match suffix {
            "audience_reader" => suffix.to_string(),
            _ => format!("{}_{suffix}", self.prefix),
        }
    }

    fn session(&self, spec: &'static ActorSpec) -> Session {
        let login = self.role(spec.login);
        let (client, notices) = connect_with_notices(&self.db.name, &login);
        Session {
            spec,
            login,
            client,
            notices,
        }
    }

    /// Every view's rows that `spec` may read: the operator's, filtered by
    /// the rules. A viewer member's workspace totals are over the apps they
    /// see, so those are counted here from the raw events instead, and of
    /// who may open which app they read only their own rows (usage_oracle).
    fn expected_views(&mut self, spec: &ActorSpec) -> BTreeMap<String, Vec<String>> {
        let mut all = BTreeMap::new();
        for view in &self.catalog.views {
            let has_app = view.columns.iter().any(|c| c == "app");
            let mut rows = Vec::new();
            for (json, ws, app) in &self.operator_rows[&view.name] {
                match (spec.access(ws), app) {
                    (None, _) => {}
                    (Some(Access::All), _) => rows.push(json.clone()),
                    (Some(Access::Apps(_)), Some(app)) => {
                        if spec.sees_app(ws, app)
                            && usage_oracle::own_row(&view.name, json, spec, ws)
                        {
                            rows.push(json.clone())
                        }
                    }
                    (Some(Access::Apps(_)), None) => {
                        assert!(
                            usage_oracle::recounted(&view.name, has_app),
                            "no oracle for view {} seen in part: extend expected_views",
                            view.name
                        );
                    }
                }
            }
            for (ws, access) in spec.sees {
                if let Access::Apps(apps) = access {
                    let totals =
                        usage_oracle::workspace_totals(&mut self.op, &view.name, has_app, ws, apps);
                    rows.extend(totals.unwrap_or_default());
                }
            }
            rows.sort();
            all.insert(view.name.clone(), rows);
        }
        all
    }

    fn expected_state(&mut self, spec: &ActorSpec, role: &str) -> State {
        State {
            whoami: spec.expected_whoami(role),
            views: self.expected_views(spec),
        }
    }

    /// Everything `spec` must never see in any output: identities, visitor
    /// keys, slugs, names, labels and viewer_refs of what it may not see,
    /// the keys and the token secret.
    fn hidden_strings(&mut self, spec: &ActorSpec) -> BTreeSet<String> {
        let expected = self.expected_views(spec);
        let mut visible = BTreeSet::new();
        for rows in expected.values() {
            for row in rows {
                json_strings(&serde_json::from_str(row).unwrap(), &mut visible);
            }
        }
        for (who, _, _) in spec.whoami {
            visible.insert(who.to_string());
        }
        let mut hidden = BTreeSet::new();
        for rows in self.operator_rows.values() {
            for (json, _, _) in rows {
                json_strings(&serde_json::from_str(json).unwrap(), &mut hidden);
            }
        }
        hidden.extend(PEOPLE.iter().map(|p| p.to_string()));
        for (ws, app, _, name) in APPS {
            if !spec.sees_app(ws, app) {
                hidden.insert(app.to_string());
                hidden.insert(name.to_string());
            }
        }
        for (ws, name) in WORKSPACE_NAMES {
            if spec.access(ws).is_none() {
                hidden.insert(ws.to_string());
                hidden.insert(name.to_string());
            }
        }
        let mut hidden: BTreeSet<String> = hidden.difference(&visible).cloned().collect();
        hidden.extend(self.key_hex.iter().cloned());
        hidden.insert(TOKEN_SECRET.to_string());
        hidden
    }
}

/// String values of a JSON row that name or label something: not the
/// visibility (`public`/`private`), the kinds of view and member, a status or
/// a way in (`session`, `admin`, `active`, `grant`...), nor dates, times and
/// durations, which are no secret of anyone's and turn up anywhere.
fn json_strings(v: &Value, out: &mut BTreeSet<String>) {
    const UNSECRET_KEYS: [&str; 7] = [
        "visibility",
        "last_viewed",
        "kind",
        "status",
        "via",
        "duration",
        "session_time",
    ];
    let is_date = |s: &str| {
        let b = s.as_bytes();
        b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
    };
    if let Value::Object(map) = v {
        for (k, v) in map {
            if let Value::String(s) = v {
                if !UNSECRET_KEYS.contains(&k.as_str()) && !is_date(s) {
                    out.insert(s.clone());
                }
            }
        }
    }
}

/// A view's rows as JSON text, without the clock-dependent `last_viewed`.
fn json_rows_sql(view: &str) -> String {
    format!("SELECT (to_jsonb(v) - 'last_viewed')::text FROM audience.\"{view}\" v")
}

fn json_rows(client: &mut impl postgres::GenericClient, view: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .query(&json_rows_sql(view), &[])
        .unwrap_or_else(|e| panic!("reading audience.{view}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
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

/// One actor's connection.
struct Session {
    spec: &'static ActorSpec,
    login: String,
    client: Client,
    notices: Notices,
}

impl Session {
    fn label(&self) -> String {
        format!("{} ({})", self.spec.label, self.login)
    }

    /// A transaction that runs for this actor: it authenticates with a token
    /// minted for it (a token is good once), if it has one, in a savepoint,
    /// so that a refused token leaves the transaction usable — and must leave
    /// nobody as requester.
    fn begin(&mut self) -> Transaction<'_> {
        let label = format!("{} ({})", self.spec.label, self.login);
        let mut tx = self.client.transaction().unwrap();
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

    fn state(&mut self) -> State {
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

fn whoami(tx: &mut Transaction) -> Vec<WhoamiRow> {
    let mut rows: Vec<WhoamiRow> = tx
        .query(
            "SELECT requester, resolved_by, workspace, kind FROM audience.whoami()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    rows.sort();
    rows
}

fn state_in(tx: &mut Transaction, views: &[String]) -> State {
    State {
        whoami: whoami(tx),
        views: views
            .iter()
            .map(|v| (v.clone(), json_rows(tx, v)))
            .collect(),
    }
}

/// Runs `sql` in a savepoint, so that an expected error leaves `tx` usable.
/// Returns the first column of every row as text.
fn attempt(tx: &mut Transaction, sql: &str) -> Result<Vec<String>, postgres::Error> {
    let mut sp = tx.transaction()?;
    let result = sp.simple_query(sql).map(|messages| {
        messages
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .collect()
    });
    if result.is_ok() {
        sp.commit()?;
    }
    result
}

/// COPY ... TO STDOUT in a savepoint: the text the client receives.
fn copy_out(tx: &mut Transaction, sql: &str) -> Result<String, postgres::Error> {
    let mut sp = tx.transaction()?;
    let mut text = String::new();
    let result = sp.copy_out(sql).map(|mut reader| {
        reader.read_to_string(&mut text).expect("reading COPY data");
    });
    if result.is_ok() {
        sp.commit()?;
    }
    result.map(|_| text)
}

fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE ({e})"))
}

/// Fails the case unless `result` is a permission error (42501).
fn expect_denied<T: std::fmt::Debug>(
    failures: &mut Vec<String>,
    who: &str,
    what: &str,
    result: Result<T, postgres::Error>,
) {
    match result {
        Ok(v) => failures.push(format!(
            "{who}: {what} succeeded: {}",
            truncate(&format!("{v:?}"))
        )),
        Err(e) if sqlstate(&e) == "42501" => {}
        Err(e) => failures.push(format!(
            "{who}: {what} failed with {} instead of 42501: {e}",
            sqlstate(&e)
        )),
    }
}

fn truncate(s: &str) -> String {
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s.to_string()
    }
}

/// Every hidden string that `text` contains (case-insensitive).
///
/// The texts searched (plan trees above all) run to a hundred megabytes and
/// repeat themselves: a hidden string can only lie within a run of the bytes
/// hidden strings are made of (any byte of a non-ASCII character counting as
/// one), so only the distinct runs are searched, each once.
fn leaked<'a>(text: &str, hidden: &'a BTreeSet<String>) -> Vec<&'a str> {
    let text = text.to_lowercase();
    let needles: Vec<(String, &str)> = hidden
        .iter()
        .map(|h| (h.to_lowercase(), h.as_str()))
        .collect();
    let mut inside = [false; 256];
    inside[128..].fill(true);
    for b in needles.iter().flat_map(|(n, _)| n.bytes()) {
        inside[b as usize] = true;
    }
    let Some(outside) = (0..128u8).find(|b| !inside[*b as usize]) else {
        // Every ASCII byte is in some hidden string: no way to cut the text.
        return needles
            .iter()
            .filter(|(n, _)| text.contains(n.as_str()))
            .map(|(_, h)| *h)
            .collect();
    };
    // Cut at ASCII bytes only, so that every run is whole characters, and
    // joined again with a byte that no hidden string holds.
    let runs: HashSet<&[u8]> = text.as_bytes().split(|b| !inside[*b as usize]).collect();
    let runs = String::from_utf8(runs.into_iter().collect::<Vec<_>>().join(&outside)).unwrap();
    needles
        .iter()
        .filter(|(n, _)| runs.contains(n.as_str()))
        .map(|(_, h)| *h)
        .collect()
}

/// Everything the client receives with an error.
fn error_text(e: &DbError) -> String {
    format!(
        "{} {:?} {:?} {:?}",
        e.message(),
        e.detail(),
        e.hint(),
        e.where_()
    )
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// All the text a set of NOTICEs carries.
fn notice_text(notices: &[DbError]) -> String {
    notices
        .iter()
        .map(error_text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_actor_reads_exactly_what_the_rules_allow() {
    let mut fx = Fixture::new("reads");
    let mut failures = Vec::new();
    for spec in ACTORS {
        let expected = fx.expected_state(spec, &fx.role(spec.login));
        let hidden = fx.hidden_strings(spec);
        let mut s = fx.session(spec);
        let who = s.label();
        let analyst = spec.login == "analyst";
        let mut tx = s.begin();

        let got = whoami(&mut tx);
        if got != expected.whoami {
            failures.push(format!(
                "{who}: whoami {got:?}, expected {:?}",
                expected.whoami
            ));
        }

        for view in &fx.catalog.views {
            let want = &expected.views[&view.name];
            // SELECT through the view: exactly the allowed rows.
            let mut got: Vec<String> =
                attempt(&mut tx, &json_rows_sql(&view.name)).unwrap_or_else(|e| {
                    failures.push(format!("{who}: SELECT from audience.{}: {e}", view.name));
                    Vec::new()
                });
            got.sort();
            if &got != want {
                failures.push(format!(
                    "{who}: audience.{} gave {} rows, expected {}:\n  got  {got:?}\n  want {want:?}",
                    view.name,
                    got.len(),
                    want.len()
                ));
            }
            match attempt(
                &mut tx,
                &format!("SELECT count(*) FROM audience.\"{}\"", view.name),
            ) {
                Ok(n) if n == vec![want.len().to_string()] => {}
                other => failures.push(format!(
                    "{who}: count(*) of audience.{}: {other:?}, expected {}",
                    view.name,
                    want.len()
                )),
            }
            // COPY (query) TO STDOUT: the same rows, and nothing else.
            match copy_out(
                &mut tx,
                &format!("COPY ({}) TO STDOUT", json_rows_sql(&view.name)),
            ) {
                Ok(text) => {
                    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                    lines.sort();
                    if &lines != want {
                        failures.push(format!(
                            "{who}: COPY of audience.{} gave {lines:?}, expected {want:?}",
                            view.name
                        ));
                    }
                }
                Err(e) => failures.push(format!("{who}: COPY of audience.{}: {e}", view.name)),
            }
            // COPY view TO STDOUT is refused by PostgreSQL itself (42809).
            match copy_out(
                &mut tx,
                &format!("COPY audience.\"{}\" TO STDOUT", view.name),
            ) {
                Err(e) if sqlstate(&e) == "42809" => {}
                other => failures.push(format!(
                    "{who}: COPY audience.{} TO STDOUT: {other:?}",
                    view.name
                )),
            }
        }

        // Base tables and sequences: permission denied. The analyst's
        // pg_read_all_data passes the privilege check, and then row-level
        // security must give it nothing (an error or no rows).
        for (rel, kind) in &fx.catalog.internal_relations {
            let select = attempt(
                &mut tx,
                &format!("SELECT * FROM audience_internal.\"{rel}\""),
            );
            let copy_table = (kind == "r" || kind == "p").then(|| {
                copy_out(
                    &mut tx,
                    &format!("COPY audience_internal.\"{rel}\" TO STDOUT"),
                )
            });
            let copy_query = copy_out(
                &mut tx,
                &format!("COPY (SELECT * FROM audience_internal.\"{rel}\") TO STDOUT"),
            );
            if analyst {
                if kind == "S" {
                    // Sequences have no row-level security, and pg_read_all_data
                    // bypasses their ACL: the analyst reads platform-wide
                    // counters (last_value). Nothing the extension can revoke;
                    // reported, not asserted.
                    continue;
                }
                for (what, r) in [
                    ("SELECT", select.map(|v| v.join("\n"))),
                    ("COPY (SELECT)", copy_query),
                ]
                .into_iter()
                .chain(copy_table.map(|c| ("COPY", c)))
                {
                    match r {
                        Err(e) if sqlstate(&e) == "42501" => {}
                        Ok(text) if text.is_empty() => {}
                        other => failures.push(format!(
                            "{who}: {what} audience_internal.{rel}: {}",
                            truncate(&format!("{other:?}"))
                        )),
                    }
                }
            } else {
                expect_denied(
                    &mut failures,
                    &who,
                    &format!("SELECT * FROM audience_internal.{rel}"),
                    select,
                );
                expect_denied(
                    &mut failures,
                    &who,
                    &format!("COPY (SELECT * FROM audience_internal.{rel})"),
                    copy_query,
                );
                if let Some(c) = copy_table {
                    expect_denied(
                        &mut failures,
                        &who,
                        &format!("COPY audience_internal.{rel}"),
                        c,
                    );
                }
            }
        }

        // Management, ingest and internal functions: permission denied. The
        // definer functions behind the read functions that a reader may call
        // directly answer only to a ticket (see the ticket test); a forged
        // one is refused.
        for f in fx
            .catalog
            .functions
            .iter()
            .filter(|f| f.schema == "audience_internal" || !f.reader_may_execute)
        {
            if f.returns == "trigger" || f.returns == "event_trigger" {
                continue; // Not callable at all but as a trigger.
            }
            let sql = f.call_with_values();
            if f.reader_may_execute && f.takes_ticket() {
                match attempt(&mut tx, &sql) {
                    Err(e)
                        if e.as_db_error()
                            .is_some_and(|d| d.message().contains("ticket")) => {}
                    other => failures.push(format!(
                        "{who}: {sql} with a forged ticket: {}",
                        truncate(&format!("{other:?}"))
                    )),
                }
            } else if f.reader_may_execute {
                // ticket(): the caller's own, harmless by itself.
                if f.name != "ticket" {
                    failures.push(format!(
                        "{who}: may execute internal function {} that takes no ticket",
                        f.name
                    ));
                }
            } else {
                expect_denied(&mut failures, &who, &sql, attempt(&mut tx, &sql));
            }
        }
        // Writes to every table: denied (the analyst's pg_read_all_data reads only).
        for (rel, kind) in &fx.catalog.internal_relations {
            if kind == "r" || kind == "p" {
                for sql in [
                    format!("DELETE FROM audience_internal.\"{rel}\""),
                    format!("UPDATE audience_internal.\"{rel}\" SET workspace_id = workspace_id"),
                    format!("TRUNCATE audience_internal.\"{rel}\""),
                ] {
                    match attempt(&mut tx, &sql) {
                        Err(e)
                            if sqlstate(&e) == "42501"
                                || (rel == "token_secrets" && sqlstate(&e) == "42703") => {}
                        other => failures
                            .push(format!("{who}: {sql}: {}", truncate(&format!("{other:?}")))),
                    }
                }
            }
        }
        // The staging tables of the ingest path: nothing to read, no way to write.
        for table in &fx.catalog.public_tables {
            let select = attempt(&mut tx, &format!("SELECT * FROM audience.\"{table}\""));
            let copy = copy_out(&mut tx, &format!("COPY audience.\"{table}\" TO STDOUT"));
            if analyst {
                for (what, r) in [("SELECT", select.map(|v| v.join("\n"))), ("COPY", copy)] {
                    match r {
                        Ok(text) if text.is_empty() => {}
                        Err(e) if sqlstate(&e) == "42501" => {}
                        other => failures.push(format!(
                            "{who}: {what} audience.{table}: {}",
                            truncate(&format!("{other:?}"))
                        )),
                    }
                }
            } else {
                expect_denied(
                    &mut failures,
                    &who,
                    &format!("SELECT * FROM audience.{table}"),
                    select,
                );
                expect_denied(
                    &mut failures,
                    &who,
                    &format!("COPY audience.{table} TO STDOUT"),
                    copy,
                );
            }
            let insert = attempt(
                &mut tx,
                &format!("INSERT INTO audience.\"{table}\" DEFAULT VALUES"),
            );
            expect_denied(
                &mut failures,
                &who,
                &format!("INSERT INTO audience.{table}"),
                insert,
            );
        }
        // And with real-looking arguments: testing a guessed identity
        // against the pseudonym and hashing code is refused too.
        for sql in [
            format!("SELECT audience_internal.viewer_pseudonym(decode('{}', 'hex'), decode('00', 'hex'), '')", fx.key_hex[0]),
            format!("SELECT audience_internal.identity_hash(decode('{}', 'hex'), '{ALICE}')", fx.key_hex[0]),
            format!("SELECT audience_internal.anonymous_hash(decode('{}', 'hex'), '{}')", fx.key_hex[0], COOKIES[0]),
            format!("SELECT audience_internal.accept_token('x', convert_to('{WRONG_SECRET}', 'UTF8'))"),
            "SELECT audience_internal.rebuild_rollups(1)".to_string(),
            "SELECT audience_internal.workspace_access(1)".to_string(),
            "SELECT * FROM audience_internal.requester_apps()".to_string(),
        ] {
            expect_denied(&mut failures, &who, &sql, attempt(&mut tx, &sql));
        }

        // Read functions about a workspace it may not see: 42704 with the
        // message a workspace that does not exist gets. About an app it may
        // not see in a workspace it sees: the message of an app that does not exist.
        for f in fx.catalog.reads() {
            let (allowed, pairs) = read_cases(spec, f);
            for call in allowed {
                if let Err(e) = attempt(&mut tx, &call) {
                    failures.push(format!("{who}: {call} failed: {e}"));
                }
            }
            for (probe, control, subs) in pairs {
                match (attempt(&mut tx, &probe), attempt(&mut tx, &control)) {
                    (Err(p), Err(c)) => {
                        let (p, c) = (p.as_db_error().unwrap(), c.as_db_error().unwrap());
                        let shape = |e: &DbError| {
                            format!("{} {}", e.code().code(), substitute(e.message(), &subs))
                        };
                        if p.code().code() != "42704" || shape(p) != shape(c) {
                            failures.push(format!(
                                "{who}: {probe} told apart from {control}: {:?} vs {:?}",
                                shape(p),
                                shape(c)
                            ));
                        }
                        // The slugs the actor typed come back in the message; nothing else may.
                        let l: Vec<&str> = leaked(&error_text(p), &hidden)
                            .into_iter()
                            .filter(|h| !subs.iter().any(|(typed, _)| typed == h))
                            .collect();
                        if !l.is_empty() {
                            failures.push(format!("{who}: the error of {probe} shows {l:?}"));
                        }
                    }
                    other => failures.push(format!(
                        "{who}: {probe} / {control}: expected two errors, got {other:?}"
                    )),
                }
            }
        }
        drop(tx);
    }
    // The operator can make every call above that an actor may not: the
    // calls are well formed, so the refusals are the privacy rules at work.
    let mut tx = fx.op.transaction().unwrap();
    for f in fx.catalog.reads() {
        for (ws, app, _, _) in APPS {
            let whole = if f.app_optional() { "" } else { app };
            for call in [f.read_call(ws, app), f.read_call(ws, whole)] {
                if let Err(e) = attempt(&mut tx, &call) {
                    failures.push(format!("operator: {call} failed: {e}"));
                }
            }
        }
    }
    drop(tx);
    report(failures);
}

type Subs = Vec<(&'static str, &'static str)>;

/// The read calls `spec` may make, and the pairs (a call about something it
/// may not see, the same call about something that does not exist) that
/// must fail alike, with the slugs to blank out when comparing them.
fn read_cases(spec: &ActorSpec, f: &Func) -> (Vec<String>, Vec<(String, String, Subs)>) {
    let subs = |ws: &'static str, app: &'static str| -> Subs {
        vec![
            (ws, "<workspace>"),
            (NO_SUCH_WORKSPACE, "<workspace>"),
            (app, "<app>"),
            (NO_SUCH_APP, "<app>"),
        ]
    };
    let mut allowed = Vec::new();
    let mut pairs = Vec::new();
    for (ws, _) in WORKSPACE_NAMES {
        let sees_workspace = spec.access(ws).is_some();
        if !f.takes_app() || f.app_optional() {
            if sees_workspace {
                allowed.push(f.read_call(ws, ""));
            } else {
                pairs.push((
                    f.read_call(ws, ""),
                    f.read_call(NO_SUCH_WORKSPACE, ""),
                    subs(ws, NO_SUCH_APP),
                ));
            }
            if !f.takes_app() {
                continue;
            }
        }
        for (app_ws, app, _, _) in APPS {
            if !sees_workspace {
                if app_ws == ws {
                    pairs.push((
                        f.read_call(ws, app),
                        f.read_call(NO_SUCH_WORKSPACE, app),
                        subs(ws, app),
                    ));
                }
            } else if app_ws == ws && spec.sees_app(ws, app) {
                allowed.push(f.read_call(ws, app));
            } else {
                // A hidden app of a workspace it sees, or an app of another workspace.
                pairs.push((
                    f.read_call(ws, app),
                    f.read_call(ws, NO_SUCH_APP),
                    subs(ws, app),
                ));
            }
        }
    }
    (allowed, pairs)
}

fn substitute(text: &str, subs: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (from, to) in subs {
        text = text.replace(&format!("\"{from}\""), &format!("\"{to}\""));
    }
    text
}

/// Everything the client receives with an error, with the slugs it typed replaced.
fn error_shape(e: &DbError, subs: &[(&str, &str)]) -> String {
    format!(
        "code={} severity={} message={} detail={:?} hint={:?} position={:?} where={:?} schema={:?} table={:?} column={:?} datatype={:?} constraint={:?} file={:?} line={:?} routine={:?}",
        e.code().code(),
        e.severity(),
        substitute(e.message(), subs),
        e.detail().map(|d| substitute(d, subs)),
        e.hint().map(|h| substitute(h, subs)),
        e.position(),
        e.where_().map(|w| substitute(w, subs)),
        e.schema(),
        e.table(),
        e.column(),
        e.datatype(),
        e.constraint(),
        e.file(),
        e.line(),
        e.routine(),
    )
}

/// SPEC §2: of a workspace it may not see, a reader learns nothing, "not
/// even that it exists". The whole error a client receives — message, but
/// also CONTEXT (where), detail, hint — must be the same for a workspace
/// that exists and one that does not; otherwise any reader can enumerate
/// workspace slugs by calling a read function.
#[test]
fn errors_do_not_tell_a_hidden_workspace_from_a_missing_one() {
    let fx = Fixture::new("errors");
    let mut failures = Vec::new();
    for spec in ACTORS {
        let mut s = fx.session(spec);
        let who = s.label();
        let mut tx = s.begin();
        for f in fx.catalog.reads() {
            for (probe, control, subs) in read_cases(spec, f).1 {
                // PL/pgSQL reports an extra CONTEXT line while an expression's
                // plan is not yet cached: compare warm calls, as an attacker
                // who repeats them would.
                for _ in 0..6 {
                    let _ = (attempt(&mut tx, &probe), attempt(&mut tx, &control));
                }
                match (attempt(&mut tx, &probe), attempt(&mut tx, &control)) {
                    (Err(p), Err(c)) => {
                        let (p, c) = (
                            error_shape(p.as_db_error().unwrap(), &subs),
                            error_shape(c.as_db_error().unwrap(), &subs),
                        );
                        if p != c {
                            failures.push(format!(
                                "{who}: {probe} vs {control}:\n  exists:  {p}\n  missing: {c}"
                            ));
                        }
                    }
                    other => failures.push(format!(
                        "{who}: {probe} / {control}: expected two errors, got {other:?}"
                    )),
                }
            }
        }
    }
    report(failures);
}

/// Settings a client may SET that an implementation might (wrongly) read as
/// the requester, the workspace, a token or an operator flag.
const SPOOFED_SETTINGS: [&str; 30] = [
    "audience.requester",
    "audience.requester_identity",
    "audience.identity",
    "audience.member",
    "audience.subject",
    "audience.sub",
    "audience.workspace",
    "audience.role",
    "audience.kind",
    "audience.token",
    "audience.operator",
    "audience.is_operator",
    "audience.db_role",
    "audience_internal.requester",
    "audience_internal.token_subject",
    "pg_audience.requester",
    "pg_audience.workspace",
    "request.jwt.claims",
    "request.jwt.claim.sub",
    "request.jwt.claim.workspace",
    "request.jwt.claim.role",
    "request.jwt.token",
    "jwt.claims.sub",
    "app.user",
    "app.user_id",
    "app.current_user",
    "app.requester",
    "app.workspace",
    "app.tenant",
    "myapp.identity",
];

/// A value for a spoofed setting, by what its name suggests; `round` picks
/// another plausible value.
fn spoof_value(name: &str, round: usize, admin_token: &str) -> String {
    if name.contains("token") {
        return admin_token.to_string();
    }
    if name.contains("claims") {
        return json!({"sub": ALICE, "workspace": ACME, "role": "audience_manager"}).to_string();
    }
    let candidates: &[&str] = if name.contains("workspace") || name.contains("tenant") {
        &[ACME, GLOBEX]
    } else if name.contains("role") {
        &["audience_manager", "postgres"]
    } else if name.contains("operator") {
        &["true", "on"]
    } else if name.contains("kind") {
        &["admin", "operator"]
    } else {
        &[ALICE, DANA]
    };
    candidates[round % candidates.len()].to_string()
}

/// SPEC §2: "Settings that anyone can SET (GUCs, set_config) never decide
/// who the requester is." Each actor sets every plausible setting, at
/// session and transaction level, shadows internals in pg_temp with its own
/// search_path, and must still read exactly what the rules allow.
#[test]
fn spoofed_settings_change_nothing() {
    let mut fx = Fixture::new("settings");
    let admin_token = Tok::Valid(ALICE, None).mint().unwrap();
    let mut failures = Vec::new();
    for spec in ACTORS {
        let expected = fx.expected_state(spec, &fx.role(spec.login));
        let mut s = fx.session(spec);
        let who = s.label();
        let before = s.state();
        if before != expected {
            failures.push(format!(
                "{who}: before spoofing, read {before:?}, expected {expected:?}"
            ));
            continue;
        }
        // Objects named like the internals, first on the search path.
        s.client
            .batch_execute(&format!(
                "SET search_path = pg_temp, audience, public;
                 CREATE FUNCTION pg_temp.token_subject() RETURNS text LANGUAGE sql AS $$ SELECT '{ALICE}'::text $$;
                 CREATE FUNCTION pg_temp.outer_role() RETURNS oid LANGUAGE sql AS $$ SELECT 10::oid $$;
                 CREATE FUNCTION pg_temp.requester_is_operator() RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
                 CREATE TEMP TABLE members (workspace_id bigint, identity text, kind text, db_role name);
                 INSERT INTO members VALUES (1, '{ALICE}', 'admin', current_user);
                 CREATE TEMP VIEW visible_apps AS SELECT '{ACME}'::text AS workspace, 'acme-ledger'::text AS app;"
            ))
            .unwrap_or_else(|e| panic!("{who}: creating temp objects: {e}"));
        for round in 0..2 {
            for name in SPOOFED_SETTINGS {
                let value = spoof_value(name, round, &admin_token);
                // SET and set_config both; custom (dotted) names take any value.
                s.client
                    .batch_execute(&format!("SET \"{name}\" = '{}'", value.replace('\'', "''")))
                    .unwrap_or_else(|e| panic!("{who}: SET {name}: {e}"));
                s.client
                    .execute("SELECT set_config($1, $2, false)", &[&name, &value])
                    .unwrap_or_else(|e| panic!("{who}: set_config {name}: {e}"));
            }
            // Real settings a requester might be read from, where a reader may
            // set them; and parallel query forced everywhere it can go (a
            // parallel worker has none of the backend's memory).
            s.client
                .batch_execute(&format!(
                    "SET application_name = '{ALICE}'; SET row_security = off"
                ))
                .unwrap_or_else(|e| panic!("{who}: SET application_name/row_security: {e}"));
            if round == 1 {
                s.client
                    .batch_execute(
                        "SET force_parallel_mode = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
                         SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 4",
                    )
                    .unwrap_or_else(|e| panic!("{who}: SET parallel settings: {e}"));
            }
            let after = s.state();
            if after != expected {
                failures.push(format!(
                    "{who}: after SET round {round}: read {after:?}, expected {expected:?}"
                ));
            }
            // Transaction-level settings, made after the token (if any) was checked.
            let mut tx = s.begin();
            for name in SPOOFED_SETTINGS {
                tx.execute(
                    "SELECT set_config($1, $2, true)",
                    &[&name, &spoof_value(name, round + 1, &admin_token)],
                )
                .unwrap_or_else(|e| panic!("{who}: set_config local {name}: {e}"));
            }
            let views: Vec<String> = expected.views.keys().cloned().collect();
            let local = state_in(&mut tx, &views);
            if local != expected {
                failures.push(format!("{who}: after set_config(..., true) round {round}: read {local:?}, expected {expected:?}"));
            }
        }
        // Proof that the settings did take: they are readable back.
        let got: String = s
            .client
            .query_one("SELECT current_setting('audience.requester')", &[])
            .unwrap()
            .get(0);
        if got != spoof_value("audience.requester", 1, &admin_token) {
            failures.push(format!("{who}: audience.requester reads back {got:?}"));
        }
    }
    report(failures);
}

/// What an actor is taken to be, and what it reads, after a step.
fn check_state(
    failures: &mut Vec<String>,
    who: &str,
    step: &str,
    s: &mut Session,
    expected: &State,
) {
    let users: (String, String) = {
        let row = s
            .client
            .query_one("SELECT current_user::text, session_user::text", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    if users != (s.login.clone(), s.login.clone()) {
        failures.push(format!(
            "{who}: after {step}, current_user/session_user are {users:?}"
        ));
    }
    let got = s.state();
    if &got != expected {
        failures.push(format!(
            "{who}: after {step}, read {got:?}, expected {expected:?}"
        ));
    }
}

/// SET ROLE to a role the login is not a member of, and SET SESSION
/// AUTHORIZATION to anyone else, are refused — bare, in a transaction rolled
/// back, as SET LOCAL, and through set_config — and leave the actor exactly
/// what it was.
#[test]
fn set_role_and_session_authorization_are_refused_and_change_nothing() {
    let mut fx = Fixture::new("setrole");
    let mut failures = Vec::new();
    let targets: Vec<String> = [
        "postgres",
        "audience_manager",
        "audience_ingest",
        "pg_read_all_data",
        "pg_write_all_data",
    ]
    .iter()
    .map(|r| r.to_string())
    .chain(
        [
            "outsider", "victor", "ivy", "gary", "analyst", "switch", "pooled", "team",
        ]
        .iter()
        .map(|r| fx.role(r)),
    )
    .collect();
    let mut logins_seen = BTreeSet::new();
    let mut denials = 0;
    for spec in ACTORS {
        // The token actors share one login; what differs is the token, which
        // the checks after each step take into account.
        let expected = fx.expected_state(spec, &fx.role(spec.login));
        let mut s = fx.session(spec);
        let who = s.label();
        let first_of_login = logins_seen.insert(s.login.clone());
        for target in &targets {
            let member: bool = fx
                .op
                .query_one(
                    "SELECT pg_has_role($1::text::name, $2::text::name, 'MEMBER')",
                    &[&s.login, target],
                )
                .unwrap()
                .get(0);
            if member {
                continue; // switch → team, analyst → pg_read_all_data: see the prepared-statement test.
            }
            let mut steps: Vec<(String, Vec<String>)> = vec![
                (
                    format!("SET ROLE {target}"),
                    vec![format!("SET ROLE \"{target}\"")],
                ),
                (
                    format!("SET SESSION AUTHORIZATION {target}"),
                    vec![format!("SET SESSION AUTHORIZATION \"{target}\"")],
                ),
            ];
            if first_of_login {
                steps.extend([
                    (
                        format!("BEGIN; SET ROLE {target}; ROLLBACK"),
                        vec![
                            "BEGIN".into(),
                            format!("SET ROLE \"{target}\""),
                            "ROLLBACK".into(),
                        ],
                    ),
                    (
                        format!("BEGIN; SET LOCAL ROLE {target}; COMMIT"),
                        vec![
                            "BEGIN".into(),
                            format!("SET LOCAL ROLE \"{target}\""),
                            "COMMIT".into(),
                        ],
                    ),
                    (
                        format!("BEGIN; SET SESSION AUTHORIZATION {target}; ROLLBACK"),
                        vec![
                            "BEGIN".into(),
                            format!("SET SESSION AUTHORIZATION \"{target}\""),
                            "ROLLBACK".into(),
                        ],
                    ),
                    (
                        format!("set_config('role', {target})"),
                        vec![format!("SELECT set_config('role', '{target}', false)")],
                    ),
                    (
                        format!("set_config('session_authorization', {target})"),
                        vec![format!(
                            "SELECT set_config('session_authorization', '{target}', false)"
                        )],
                    ),
                ]);
            }
            for (step, statements) in steps {
                for sql in &statements {
                    let r = s.client.batch_execute(sql);
                    if sql.starts_with("BEGIN")
                        || sql.starts_with("ROLLBACK")
                        || sql.starts_with("COMMIT")
                    {
                        r.unwrap_or_else(|e| panic!("{who}: {sql}: {e}"));
                    } else {
                        denials += 1;
                        expect_denied(&mut failures, &who, sql, r);
                    }
                }
                // A refused statement inside a transaction leaves it aborted
                // until the ROLLBACK/COMMIT above, which rolls back.
                check_state(&mut failures, &who, &step, &mut s, &expected);
            }
        }
        // Harmless resets are allowed and change nothing either.
        s.client
            .batch_execute("RESET ROLE; SET ROLE NONE; RESET SESSION AUTHORIZATION")
            .unwrap();
        check_state(
            &mut failures,
            &who,
            "RESET ROLE; SET ROLE NONE; RESET SESSION AUTHORIZATION",
            &mut s,
            &expected,
        );
    }
    assert!(denials > 100, "only {denials} refusals were tried");
    report(failures);
}

/// A statement prepared under one role and executed after SET ROLE to
/// another (one the login is a member of) answers for the role at execution
/// — even as a cached generic plan. `switch` is sam (developer of globex) and,
/// through role `team`, tina (viewer of acme's public apps); after SET ROLE
/// team it is tina alone. SET ROLE to a capability role makes nobody.
#[test]
fn prepared_statements_answer_for_the_role_at_execution() {
    let mut fx = Fixture::new("prepared");
    let switch_spec = ACTORS.iter().find(|s| s.login == "switch").unwrap();
    let as_switch = fx.expected_state(switch_spec, &fx.role("switch"));
    let as_team = fx.expected_state(&AS_TEAM, &fx.role("team"));
    let as_reader = fx.expected_state(&AS_CAPABILITY, "audience_reader");
    assert_ne!(
        as_switch, as_team,
        "the two roles must read differently for this test to mean anything"
    );
    let views: Vec<String> = as_switch.views.keys().cloned().collect();
    let team = fx.role("team");
    let mut s = fx.session(switch_spec);
    let mut failures = Vec::new();

    // Every view's rows, and whoami, as one JSON text: one statement to prepare.
    let probe = format!(
        "SELECT jsonb_build_object('whoami', (SELECT jsonb_agg(w ORDER BY w.requester, w.workspace) FROM audience.whoami() w), {})::text",
        views
            .iter()
            .map(|v| format!("'{v}', (SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]') FROM ({}) r(r))", json_rows_sql(v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let answer =
        |s: &mut Session, sql: &str| -> String { s.client.query_one(sql, &[]).unwrap().get(0) };
    // What each role reads right now, unprepared; checked against the oracle first.
    let direct_switch = answer(&mut s, &probe);
    check_state(&mut failures, "switch", "connecting", &mut s, &as_switch);
    s.client
        .batch_execute(&format!("SET ROLE \"{team}\""))
        .unwrap();
    let direct_team = answer(&mut s, &probe);
    if s.state() != as_team {
        failures.push(format!(
            "after SET ROLE team, read {:?}, expected {as_team:?}",
            s.state()
        ));
    }
    s.client.batch_execute("SET ROLE audience_reader").unwrap();
    let direct_reader = answer(&mut s, &probe);
    if s.state() != as_reader {
        failures.push(format!(
            "after SET ROLE audience_reader, read {:?}, expected {as_reader:?}",
            s.state()
        ));
    }
    s.client.batch_execute("RESET ROLE").unwrap();
    assert_ne!(direct_switch, direct_team);

    // Generic plans are what a plan cache would reuse across roles.
    s.client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .unwrap();
    s.client
        .batch_execute(&format!("PREPARE as_switch AS {probe}"))
        .unwrap();
    let protocol_statement = s.client.prepare(&probe).unwrap();
    s.client
        .batch_execute(&format!("SET ROLE \"{team}\"; PREPARE as_team AS {probe}"))
        .unwrap();
    let cases: Vec<(&str, String, &String)> = vec![
        ("SET ROLE team", "EXECUTE as_switch".into(), &direct_team),
        ("SET ROLE team", "EXECUTE as_team".into(), &direct_team),
        ("RESET ROLE", "EXECUTE as_team".into(), &direct_switch),
        ("RESET ROLE", "EXECUTE as_switch".into(), &direct_switch),
        (
            "SET ROLE audience_reader",
            "EXECUTE as_switch".into(),
            &direct_reader,
        ),
        (
            "SET ROLE audience_reader",
            "EXECUTE as_team".into(),
            &direct_reader,
        ),
        ("RESET ROLE", "EXECUTE as_team".into(), &direct_switch),
    ];
    for (set, execute, want) in cases {
        s.client
            .batch_execute(&set.replace("team", &format!("\"{team}\"")))
            .unwrap();
        // Several times: a cached plan is reused after the first executions.
        for i in 0..6 {
            let got = answer(&mut s, &execute);
            if &got != want {
                failures.push(format!(
                    "after {set}, {execute} (run {i}) gave {got}, expected {want}"
                ));
            }
        }
        let got: String = s.client.query_one(&protocol_statement, &[]).unwrap().get(0);
        if &got != want {
            failures.push(format!(
                "after {set}, the protocol-level statement gave {got}, expected {want}"
            ));
        }
    }
    // Within one transaction: a generic plan made and cached as switch, then
    // executed after SET LOCAL ROLE team, answers for team.
    s.client.batch_execute("BEGIN").unwrap();
    for _ in 0..6 {
        answer(&mut s, "EXECUTE as_switch");
        let _: String = s.client.query_one(&protocol_statement, &[]).unwrap().get(0);
    }
    s.client
        .batch_execute(&format!("SET LOCAL ROLE \"{team}\""))
        .unwrap();
    let same_transaction = answer(&mut s, "EXECUTE as_switch");
    let same_transaction_protocol: String =
        s.client.query_one(&protocol_statement, &[]).unwrap().get(0);
    s.client.batch_execute("COMMIT").unwrap();
    if same_transaction != direct_team || same_transaction_protocol != direct_team {
        failures.push(format!(
            "in one transaction, after SET LOCAL ROLE team: {same_transaction} / {same_transaction_protocol}, expected {direct_team}"
        ));
    }
    // SET LOCAL ROLE ends with its transaction, and so does its answer.
    s.client
        .batch_execute(&format!("BEGIN; SET LOCAL ROLE \"{team}\""))
        .unwrap();
    let inside = answer(&mut s, "EXECUTE as_switch");
    s.client.batch_execute("COMMIT").unwrap();
    let outside = answer(&mut s, "EXECUTE as_switch");
    if (inside.as_str(), outside.as_str()) != (direct_team.as_str(), direct_switch.as_str()) {
        failures.push(format!(
            "SET LOCAL ROLE team: inside {inside}, after COMMIT {outside}"
        ));
    }
    s.client
        .batch_execute(&format!("BEGIN; SET ROLE \"{team}\"; ROLLBACK"))
        .unwrap();
    let after_rollback = answer(&mut s, "EXECUTE as_team");
    if after_rollback != direct_switch {
        failures.push(format!(
            "after BEGIN; SET ROLE team; ROLLBACK: {after_rollback}"
        ));
    }
    report(failures);
}

/// How RAISE NOTICE prints a NULL.
const NULL: &str = "<NULL>";

/// A leaky function — plpgsql, near-zero COST so the planner would run it
/// first, RAISE NOTICE with its argument — in a WHERE clause over each view
/// sees only rows the actor may read; and a division by zero that fires only
/// on a hidden value never fires.
#[test]
fn leaky_functions_and_error_oracles_see_only_allowed_rows() {
    let mut fx = Fixture::new("leaky");
    let mut failures = Vec::new();
    let views: Vec<(String, Vec<String>)> = fx
        .catalog
        .views
        .iter()
        .map(|v| (v.name.clone(), v.columns.clone()))
        .collect();
    for spec in ACTORS {
        let expected = fx.expected_views(spec);
        let hidden: Vec<String> = fx.hidden_strings(spec).into_iter().collect();
        let mut s = fx.session(spec);
        let who = s.label();
        let notices = s.notices.clone();
        s.client
            .batch_execute(
                "CREATE FUNCTION pg_temp.leak(col text, val text) RETURNS boolean
                 LANGUAGE plpgsql COST 0.0000001 AS $$
                 BEGIN RAISE NOTICE 'leak %=%', col, val; RETURN true; END $$;
                 CREATE TEMP TABLE canary (c text);
                 INSERT INTO canary VALUES ('canary-value');",
            )
            .unwrap();
        // The probe works: over the actor's own table it does leak.
        notices.lock().unwrap().clear();
        s.client
            .query("SELECT * FROM canary WHERE pg_temp.leak('c', c)", &[])
            .unwrap();
        let canary = notice_text(&notices.lock().unwrap());
        assert!(
            canary.contains("leak c=canary-value"),
            "{who}: the leaky function did not leak its canary: {canary:?}"
        );
        let div = "SELECT count(*) FROM canary WHERE CASE WHEN c = ANY ($1) THEN 1 / (length(c) - length(c)) = 1 ELSE true END";
        match s.client.query(div, &[&vec!["canary-value".to_string()]]) {
            Err(e) if sqlstate(&e) == "22012" => {}
            other => panic!("{who}: the division oracle did not fire on its canary: {other:?}"),
        }

        for (view, columns) in &views {
            let mut tx = s.begin();
            notices.lock().unwrap().clear();
            let quals: Vec<String> = columns
                .iter()
                .map(|c| format!("pg_temp.leak('{c}', \"{c}\"::text)"))
                .collect();
            let sql = format!(
                "SELECT count(*) FROM audience.\"{view}\" WHERE {}",
                quals.join(" AND ")
            );
            if let Err(e) = tx.query(&sql, &[]) {
                failures.push(format!("{who}: {sql}: {e}"));
                continue;
            }
            let got: Vec<DbError> = notices.lock().unwrap().drain(..).collect();
            // What the actor may see of each column, as it reads it (a NULL
            // as RAISE prints it).
            let mut allowed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for c in columns {
                let values = tx
                    .query(
                        &format!("SELECT \"{c}\"::text FROM audience.\"{view}\""),
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| {
                        r.get::<_, Option<String>>(0)
                            .unwrap_or_else(|| NULL.to_string())
                    })
                    .collect();
                allowed.insert(c.clone(), values);
            }
            for n in &got {
                let msg = n.message();
                let Some((col, val)) = msg.strip_prefix("leak ").and_then(|m| m.split_once('='))
                else {
                    continue;
                };
                if !allowed.get(col).is_some_and(|a| a.contains(val)) {
                    failures.push(format!("{who}: the leaky function over audience.{view} saw {col}={val:?}, not a row it may read"));
                }
            }
            let hidden_set: BTreeSet<String> = hidden.iter().cloned().collect();
            let l = leaked(&notice_text(&got), &hidden_set);
            if !l.is_empty() {
                failures.push(format!("{who}: NOTICEs over audience.{view} show {l:?}"));
            }
            let rows = expected[view].len();
            if rows == 0 && !got.is_empty() {
                failures.push(format!("{who}: may read no row of audience.{view}, yet the leaky function ran {} times", got.len()));
            }
            if rows > 0 && got.len() < rows {
                failures.push(format!(
                    "{who}: the leaky function ran {} times over {rows} rows of audience.{view}",
                    got.len()
                ));
            }

            // Division by zero on any hidden value, in each column.
            for c in columns {
                let oracle = format!(
                    "SELECT count(*) FROM audience.\"{view}\"
                      WHERE CASE WHEN \"{c}\"::text = ANY ($1) THEN 1 / (length(\"{c}\"::text) - length(\"{c}\"::text)) = 1 ELSE true END"
                );
                {
                    let mut sp = tx.transaction().unwrap();
                    match sp.query(&oracle, &[&hidden]) {
                        Ok(_) => sp.commit().unwrap(),
                        Err(e) => failures.push(format!(
                            "{who}: the division oracle on audience.{view}.{c} fired: {e}"
                        )),
                    }
                }
                // And it does fire on a value the actor may see.
                if let Some(v) = allowed[c].iter().find(|v| !v.is_empty() && *v != NULL) {
                    let mut sp = tx.transaction().unwrap();
                    match sp.query(&oracle, &[&vec![v.clone()]]) {
                        Err(e) if sqlstate(&e) == "22012" => {}
                        other => failures.push(format!(
                            "{who}: the division oracle on audience.{view}.{c} did not fire on visible {v:?}: {other:?}"
                        )),
                    }
                }
            }
        }
    }
    report(failures);
}

/// After ANALYZE of every table (with extended statistics on the tables
/// that hold identities and keys), pg_stats, pg_stats_ext and
/// pg_stats_ext_exprs show the actor no row of audience_internal;
/// EXPLAIN (ANALYZE, VERBOSE) of every view and read function shows no
/// hidden value, nor do DEBUG messages; auto_explain cannot be loaded.
#[test]
fn statistics_and_explain_show_nothing_hidden() {
    let mut fx = Fixture::new("stats");
    fx.op
        .batch_execute(
            "CREATE STATISTICS audience_internal.probe_events (ndistinct, dependencies, mcv)
                 ON workspace_id, app_id, viewer_id FROM audience_internal.view_events;
             CREATE STATISTICS audience_internal.probe_members (mcv)
                 ON workspace_id, kind, identity FROM audience_internal.members;
             CREATE STATISTICS audience_internal.probe_members_expr
                 ON (lower(identity)), workspace_id FROM audience_internal.members;
             CREATE STATISTICS audience_internal.probe_keys (mcv)
                 ON workspace_id, identity_key FROM audience_internal.workspace_keys;
             ANALYZE;",
        )
        .unwrap();
    // The operator does see statistics with identities and key bytes in them:
    // the probes below can find them.
    let dump = |c: &mut Client, sql: &str| -> String {
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    const STATS: [&str; 3] = [
        "SELECT s::text FROM pg_catalog.pg_stats s WHERE schemaname = 'audience_internal'",
        "SELECT s::text FROM pg_catalog.pg_stats_ext s WHERE schemaname = 'audience_internal'",
        "SELECT s::text FROM pg_catalog.pg_stats_ext_exprs s WHERE schemaname = 'audience_internal'",
    ];
    for sql in STATS {
        assert!(
            !dump(&mut fx.op, sql).is_empty(),
            "the operator sees nothing from {sql}"
        );
    }
    // ANALYZE keeps no per-column statistics of identities or keys, not even
    // for the operator (their columns have STATISTICS 0): nothing to leak to
    // a role that can read pg_statistic.
    let operator_stats = dump(&mut fx.op, STATS[0]);
    assert!(
        !operator_stats.contains(ALICE),
        "per-column statistics hold an identity"
    );
    assert!(
        !fx.key_hex.iter().any(|k| operator_stats.contains(k.as_str())),
        "per-column statistics hold key bytes"
    );

    let mut failures = Vec::new();
    for spec in ACTORS {
        let hidden = fx.hidden_strings(spec);
        let expected = fx.expected_views(spec);
        let mut s = fx.session(spec);
        let who = s.label();
        let notices = s.notices.clone();
        let mut tx = s.begin();
        for sql in STATS {
            match attempt(&mut tx, sql) {
                Ok(rows) if rows.is_empty() => {}
                other => {
                    failures.push(format!("{who}: {sql}: {}", truncate(&format!("{other:?}"))))
                }
            }
        }
        // Nothing hidden anywhere in the statistics views, whatever the schema.
        for view in ["pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"] {
            let text = attempt(&mut tx, &format!("SELECT s::text FROM pg_catalog.{view} s"))
                .unwrap()
                .join("\n");
            let l = leaked(&text, &hidden);
            if !l.is_empty() {
                failures.push(format!("{who}: {view} shows {l:?}"));
            }
        }
        // (pg_read_all_data reads these: see pg_read_all_data_reads_no_secret_from_statistics.)
        if spec.login != "analyst" {
            for table in ["pg_statistic", "pg_statistic_ext_data"] {
                expect_denied(
                    &mut failures,
                    &who,
                    table,
                    attempt(&mut tx, &format!("SELECT * FROM pg_catalog.{table}")),
                );
            }
        }
        expect_denied(
            &mut failures,
            &who,
            "LOAD 'auto_explain'",
            attempt(&mut tx, "LOAD 'auto_explain'"),
        );

        // EXPLAIN of every view and of every read function the actor may
        // call, with every DEBUG message the server will send.
        // Every message a reader may ask for: DEBUG, and the parse, rewritten
        // and plan trees of every query — those run inside the SECURITY
        // DEFINER functions too, with their parameters bound as constants.
        attempt(
            &mut tx,
            "SET LOCAL client_min_messages = debug5; SET LOCAL debug_print_parse = on;
             SET LOCAL debug_print_rewritten = on; SET LOCAL debug_print_plan = on;
             SET LOCAL plpgsql.print_strict_params = on",
        )
        .unwrap();
        notices.lock().unwrap().clear();
        let mut statements: Vec<String> = fx
            .catalog
            .views
            .iter()
            .map(|v| format!("SELECT * FROM audience.\"{}\"", v.name))
            .collect();
        for f in fx.catalog.reads() {
            for (ws, app, _, _) in APPS {
                if spec.sees_app(ws, app) {
                    statements.push(f.read_call(ws, app));
                }
            }
        }
        for (rel, _) in &fx.catalog.internal_relations {
            statements.push(format!("SELECT * FROM audience_internal.\"{rel}\""));
        }
        for statement in &statements {
            for options in [
                "ANALYZE, VERBOSE, BUFFERS, SETTINGS",
                "VERBOSE, COSTS, FORMAT JSON",
            ] {
                let text = match attempt(&mut tx, &format!("EXPLAIN ({options}) {statement}")) {
                    Ok(lines) => lines.join("\n"),
                    Err(e) => e
                        .as_db_error()
                        .map(error_text)
                        .unwrap_or_else(|| e.to_string()),
                };
                let l = leaked(&text, &hidden);
                if !l.is_empty() {
                    failures.push(format!(
                        "{who}: EXPLAIN ({options}) {statement} shows {l:?}:\n{text}"
                    ));
                }
            }
        }
        // And the views and read functions run for real, not under EXPLAIN.
        for statement in &statements {
            let _ = attempt(&mut tx, statement);
        }
        let debug = notice_text(&notices.lock().unwrap());
        assert!(
            debug.contains("PLANNEDSTMT") || debug.contains(":commandType"),
            "{who}: debug_print_plan printed no plan"
        );
        let l = leaked(&debug, &hidden);
        if !l.is_empty() {
            failures.push(format!(
                "{who}: DEBUG/LOG messages (plan trees) during EXPLAIN and reads show {l:?}"
            ));
        }
        // EXPLAIN ANALYZE did run the views: their rows are those allowed.
        attempt(&mut tx, "RESET client_min_messages").unwrap();
        {
            let plan = attempt(
                &mut tx,
                "EXPLAIN (ANALYZE) SELECT * FROM audience.recent_viewers",
            )
            .unwrap()
            .join("\n");
            let want = format!("rows={}", expected["recent_viewers"].len());
            if !plan.lines().next().unwrap_or("").contains(&want) {
                failures.push(format!(
                    "{who}: EXPLAIN ANALYZE of recent_viewers does not report {want}:\n{plan}"
                ));
            }
        }
    }
    report(failures);
}

/// Every relation of pg_catalog and information_schema the caller may
/// read, as text, with what a function or view definition shows and every
/// setting: where a key or the secret would surface if it were in a catalog.
fn catalog_text(client: &mut Client) -> Vec<(String, String)> {
    let mut tx = client.transaction().unwrap();
    let relations: Vec<String> = tx
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'v', 'm', 'p')
                AND has_table_privilege(c.oid, 'SELECT')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        relations.len() > 100,
        "too few catalogs readable: {}",
        relations.len()
    );
    let mut out = Vec::new();
    for rel in relations {
        if let Ok(rows) = attempt(
            &mut tx,
            &format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {rel} t"),
        ) {
            out.push((rel, rows.join("\n")));
        }
    }
    for (what, sql) in [
        ("pg_get_functiondef", "SELECT string_agg(pg_get_functiondef(p.oid), E'\\n') FROM pg_catalog.pg_proc p
                                WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prokind IN ('f', 'p')"),
        ("pg_get_viewdef", "SELECT string_agg(pg_get_viewdef(c.oid), E'\\n') FROM pg_catalog.pg_class c WHERE c.relkind = 'v'"),
        ("SHOW ALL", "SELECT string_agg(name || '=' || setting, E'\\n') FROM pg_catalog.pg_show_all_settings()"),
        ("extension config", "SELECT string_agg(e::text, E'\\n') FROM pg_catalog.pg_extension e"),
    ] {
        if let Ok(rows) = attempt(&mut tx, sql) {
            out.push((what.to_string(), rows.join("\n")));
        }
    }
    out
}

/// Where any needle is found: (relation, needle).
fn find_needles(
    catalogs: &[(String, String)],
    needles: &[(String, String)],
) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (rel, text) in catalogs {
        let text = text.to_lowercase();
        for (name, needle) in needles {
            if text.contains(&needle.to_lowercase()) {
                found.push((rel.clone(), name.clone()));
            }
        }
    }
    found
}

/// The workspace keys and the token secret are readable through no catalog
/// (pg_proc, pg_class, pg_extension, pg_settings, pg_stats, pg_stat_activity
/// and every other one the actor may read): not even while the operator's
/// session that set the secret, with the secret in its query text, is open.
#[test]
fn keys_and_token_secret_are_in_no_catalog() {
    let mut fx = Fixture::new("keys");
    fx.op.batch_execute("ANALYZE").unwrap();
    // The operator sets the secret from a session that stays open: its query
    // text, secret included, is in pg_stat_activity.
    let mut holder = fx.db.connect();
    holder
        .execute("SELECT audience.set_token_secret($1)", &[&TOKEN_SECRET])
        .unwrap();
    holder
        .batch_execute(&format!(
            "SELECT audience.set_token_secret('{TOKEN_SECRET}')"
        ))
        .unwrap();
    let secret_hex: String = TOKEN_SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    let mut needles: Vec<(String, String)> = vec![
        ("token secret".into(), TOKEN_SECRET.into()),
        ("token secret (hex)".into(), secret_hex),
    ];
    for (i, key) in fx.key_hex.iter().enumerate() {
        needles.push((format!("key {i} (hex)"), key.clone()));
        // Half a key would be as bad.
        needles.push((
            format!("key {i} (first 16 bytes, hex)"),
            key[..32].to_string(),
        ));
        needles.push((
            format!("key {i} (last 16 bytes, hex)"),
            key[32..].to_string(),
        ));
    }
    // The sweep finds the secret where the operator may look (their own query).
    let operator_found = find_needles(&catalog_text(&mut fx.op), &needles);
    assert!(
        operator_found
            .iter()
            .any(|(rel, n)| rel == "pg_catalog.pg_stat_activity" && n == "token secret"),
        "the operator's sweep should find the secret in pg_stat_activity: {operator_found:?}"
    );

    let mut failures = Vec::new();
    let mut logins = BTreeSet::new();
    for spec in ACTORS {
        // The catalogs answer by role, not by token: one sweep per login.
        if !logins.insert(spec.login) {
            continue;
        }
        let mut s = fx.session(spec);
        let who = s.label();
        let mut catalogs = catalog_text(&mut s.client);
        if spec.login == "analyst" {
            // See pg_read_all_data_reads_no_secret_from_statistics.
            catalogs.retain(|(rel, _)| !rel.starts_with("pg_catalog.pg_statistic"));
        }
        let found = find_needles(&catalogs, &needles);
        if !found.is_empty() {
            failures.push(format!("{who} reads {found:?}"));
        }
        // And by name, the settings that could hold them.
        for name in [
            "audience.token_secret",
            "audience.secret",
            "pg_audience.secret",
            "audience.key",
        ] {
            if let Ok(row) = s
                .client
                .query_one("SELECT current_setting($1, true)", &[&name])
            {
                if let Some(v) = row.get::<_, Option<String>>(0) {
                    failures.push(format!("{who}: setting {name} exists: {v:?}"));
                }
            }
        }
    }
    drop(holder);
    report(failures);
}

impl Func {
    /// A call of a ticket-taking definer function with `ticket` (SQL) and
    /// the other arguments aimed at `workspace`/`app`.
    fn ticket_call(&self, ticket: &str, workspace: &str, app: &str) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(name, ty)| match (name.as_str(), ty.as_str()) {
                ("ticket", _) => ticket.to_string(),
                ("workspace", _) => format!("'{workspace}'"),
                ("app" | "app_slug", _) => format!("'{app}'"),
                ("since", _) => "now() - interval '30 days'".to_string(),
                ("bucket", _) => "'day'".to_string(),
                (_, "integer" | "bigint" | "smallint") => "12".to_string(),
                (_, "timestamp with time zone") => "now()".to_string(),
                (_, "interval") => "interval '1 second'".to_string(),
                (_, "boolean") => "true".to_string(),
                (_, "text") => "'x'".to_string(),
                (name, ty) => panic!(
                    "{}: no value to pass for argument {name} {ty}; extend ticket_call",
                    self.name
                ),
            })
            .collect();
        format!("SELECT * FROM {}({})", self.qualified(), args.join(", "))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The local transaction id a ticket is stamped with (bytes 4..8, big-endian).
fn ticket_xact(ticket: &[u8]) -> u32 {
    u32::from_be_bytes(ticket[4..8].try_into().unwrap())
}

/// The definer functions behind the read functions, which readers may call
/// directly, answer for the role a *ticket* names: minted by
/// audience_internal.ticket() for the caller's role in the caller's
/// transaction, signed with a key of the backend. A reader cannot forge
/// one, replay its own from an earlier transaction, or borrow the
/// operator's — not even by advancing its own transaction counter to the
/// one the operator's ticket carries.
#[test]
fn tickets_cannot_be_forged_replayed_or_borrowed() {
    let mut fx = Fixture::new("tickets");
    let ticketed: Vec<&Func> = fx
        .catalog
        .functions
        .iter()
        .filter(|f| f.schema == "audience_internal" && f.reader_may_execute && f.takes_ticket())
        .collect();
    let minter = fx.catalog.functions.iter().any(|f| {
        f.schema == "audience_internal"
            && f.name == "ticket"
            && f.args.is_empty()
            && f.reader_may_execute
    });
    if ticketed.is_empty() {
        // The design has no tickets (any more): nothing to forge.
        assert!(
            !minter,
            "readers may mint tickets, but no function takes one"
        );
        eprintln!("no ticket-taking function: nothing to test");
        return;
    }
    assert!(
        minter,
        "functions take tickets, but readers cannot mint one"
    );
    let superuser_oid: u32 = fx
        .op
        .query_one(
            "SELECT oid::int8 FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .map(|r| r.get::<_, i64>(0) as u32)
        .unwrap();
    // The operator's own ticket works for the operator: what a borrowed one would open.
    let mut failures = Vec::new();
    {
        let mut tx = fx.op.transaction().unwrap();
        let ticket: Vec<u8> = tx
            .query_one("SELECT audience_internal.ticket()", &[])
            .unwrap()
            .get(0);
        for f in &ticketed {
            let sql = f.ticket_call(
                &format!("decode('{}', 'hex')", hex(&ticket)),
                ACME,
                "acme-ledger",
            );
            if let Err(e) = attempt(&mut tx, &sql) {
                failures.push(format!("operator: {sql} with its own ticket: {e}"));
            }
        }
    }
    for spec in ACTORS.iter().filter(|s| {
        matches!(s.login, "outsider" | "victor" | "pooled") && matches!(s.token, Tok::None)
    }) {
        let mut s = fx.session(spec);
        let who = s.label();
        let mint = |c: &mut Client| -> Vec<u8> {
            c.query_one("SELECT audience_internal.ticket()", &[])
                .unwrap()
                .get(0)
        };
        // Refused: the message says why, and no row comes back.
        let refused =
            |tx: &mut Transaction, what: &str, ticket_sql: &str, failures: &mut Vec<String>| {
                for f in &ticketed {
                    let sql = f.ticket_call(ticket_sql, ACME, "acme-ledger");
                    match attempt(tx, &sql) {
                        Err(e)
                            if e.as_db_error()
                                .is_some_and(|d| d.message().contains("ticket")) => {}
                        other => failures.push(format!(
                            "{who}: {what}: {sql}: {}",
                            truncate(&format!("{other:?}"))
                        )),
                    }
                }
            };

        // Its own ticket, in its transaction, is itself: no more than whoami says.
        {
            let mut tx = s.client.transaction().unwrap();
            let own: Vec<u8> = tx
                .query_one("SELECT audience_internal.ticket()", &[])
                .unwrap()
                .get(0);
            let direct = whoami(&mut tx);
            if let Some(f) = ticketed.iter().find(|f| f.name == "whoami_for") {
                let mut via: Vec<WhoamiRow> = tx
                    .query(
                        &f.ticket_call(&format!("decode('{}', 'hex')", hex(&own)), ACME, "x"),
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect();
                via.sort();
                if via != direct {
                    failures.push(format!(
                        "{who}: whoami_for(own ticket) {via:?} differs from whoami() {direct:?}"
                    ));
                }
            }
            // Forged: the role swapped for the superuser's, the MAC kept; and garbage.
            let mut forged = own.clone();
            forged[..4].copy_from_slice(&superuser_oid.to_be_bytes());
            refused(
                &mut tx,
                "own ticket naming the superuser",
                &format!("decode('{}', 'hex')", hex(&forged)),
                &mut failures,
            );
            let mut flipped = own.clone();
            *flipped.last_mut().unwrap() ^= 1;
            refused(
                &mut tx,
                "own ticket with a flipped MAC bit",
                &format!("decode('{}', 'hex')", hex(&flipped)),
                &mut failures,
            );
            refused(
                &mut tx,
                "a truncated ticket",
                &format!("decode('{}', 'hex')", hex(&own[..own.len() - 1])),
                &mut failures,
            );
            refused(&mut tx, "an empty ticket", "'\\x'::bytea", &mut failures);
            refused(&mut tx, "a NULL ticket", "NULL::bytea", &mut failures);
            tx.commit().unwrap();
            // Replayed in a later transaction.
            let mut tx = s.client.transaction().unwrap();
            refused(
                &mut tx,
                "own ticket of an earlier transaction",
                &format!("decode('{}', 'hex')", hex(&own)),
                &mut failures,
            );
        }

        // Borrowed: the operator's ticket, presented in the actor's
        // transaction that has the same local id.
        let mut actor_xact = ticket_xact(&mint(&mut s.client));
        let operator_ticket = loop {
            let t = mint(&mut fx.op);
            if ticket_xact(&t) > actor_xact + 2 {
                break t;
            }
        };
        let target = ticket_xact(&operator_ticket);
        loop {
            let mut tx = s.client.transaction().unwrap();
            let t: Vec<u8> = tx
                .query_one("SELECT audience_internal.ticket()", &[])
                .unwrap()
                .get(0);
            actor_xact = ticket_xact(&t);
            assert!(
                actor_xact <= target,
                "{who}: overshot the operator's transaction id"
            );
            if actor_xact == target {
                refused(
                    &mut tx,
                    "the operator's ticket, same transaction id",
                    &format!("decode('{}', 'hex')", hex(&operator_ticket)),
                    &mut failures,
                );
                // And the operator's ticket with the actor's own MAC: still not.
                let mut mixed = operator_ticket.clone();
                mixed[8..].copy_from_slice(&t[8..]);
                refused(
                    &mut tx,
                    "the operator's role and the actor's MAC",
                    &format!("decode('{}', 'hex')", hex(&mixed)),
                    &mut failures,
                );
                break;
            }
        }
    }
    report(failures);
}

/// A role granted pg_read_all_data — what platforms commonly give a BI
/// tool's analyst role — passes every privilege check on tables, and
/// row-level security keeps it from the rows of audience_internal; but
/// pg_statistic is a catalog, without row-level security, and ANALYZE
/// copies column values into it: histogram bounds and most common values of
/// workspace_keys (the keys), token_secrets, members, viewers and app_access
/// (identities). SPEC §2: keys are "readable by no analytics role".
#[test]
fn pg_read_all_data_reads_no_secret_from_statistics() {
    let mut fx = Fixture::new("pgstatistic");
    fx.op.batch_execute("ANALYZE").unwrap();
    let analyst = ACTORS.iter().find(|s| s.login == "analyst").unwrap();
    let hidden = fx.hidden_strings(analyst);
    let mut s = fx.session(analyst);
    let mut failures = Vec::new();
    for table in ["pg_statistic", "pg_statistic_ext_data"] {
        match s.client.query(
            &format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM pg_catalog.{table} t"),
            &[],
        ) {
            Err(e) if sqlstate(&e) == "42501" => {}
            Err(e) => failures.push(format!("{table}: {e}")),
            Ok(rows) => {
                let text: String = rows[0].get(0);
                let l = leaked(&text, &hidden);
                if !l.is_empty() {
                    failures.push(format!(
                        "{table} shows {} hidden values, e.g. {:?}",
                        l.len(),
                        &l[..l.len().min(8)]
                    ));
                }
            }
        }
    }
    report(failures);
}

/// Bad tokens leave nobody, in the same transaction and after; a valid
/// token's requester ends with its transaction, also inside a DO block that
/// commits; a token wins over the role; a token limited to a workspace sees
/// only that one; the operator presenting a token is that end user only.
#[test]
fn tokens_set_the_requester_for_their_transaction_only() {
    let mut fx = Fixture::new("tokens");
    let pooled_spec = ACTORS
        .iter()
        .find(|s| s.login == "pooled" && matches!(s.token, Tok::None))
        .unwrap();
    let nobody = fx.expected_state(pooled_spec, &fx.role("pooled"));
    let alice_spec = ACTORS
        .iter()
        .find(|s| matches!(s.token, Tok::Valid(ALICE, None)))
        .unwrap();
    let as_alice = fx.expected_state(alice_spec, &fx.role("pooled"));
    let gary_views = fx.expected_views(ACTORS.iter().find(|s| s.login == "gary").unwrap());
    let views: Vec<String> = nobody.views.keys().cloned().collect();
    // A token is good once: each use gets its own.
    let alice = || Tok::Valid(ALICE, None).mint().unwrap();
    let gary = Tok::Valid(GARY, None).mint().unwrap();
    let mut failures = Vec::new();
    let mut s = fx.session(pooled_spec);
    let notices = s.notices.clone();
    let views = &views;

    let read = |client: &mut Client, prelude: &[String]| -> Result<State, String> {
        let mut tx = client.transaction().unwrap();
        for sql in prelude {
            if let Err(e) = attempt(&mut tx, sql) {
                return Err(format!("{sql}: {} {e}", sqlstate(&e)));
            }
        }
        Ok(state_in(&mut tx, &views))
    };
    let auth = |t: &str| format!("SELECT audience.authenticate('{t}')");

    // A valid token is the positive control.
    match read(&mut s.client, &[auth(&alice())]) {
        Ok(st) if st == as_alice => {}
        other => failures.push(format!("alice's token: {other:?}")),
    }
    // Each bad token: 28000, no identity or secret in the error, nobody after
    // it — also when a valid token was accepted earlier in the transaction.
    for bad in [
        Tok::Forged,
        Tok::Expired,
        Tok::AlgNone,
        Tok::Hs512,
        Tok::Tampered,
    ] {
        let token = bad.mint().unwrap();
        for prelude in [vec![], vec![auth(&alice())]] {
            let mut tx = s.client.transaction().unwrap();
            for sql in &prelude {
                attempt(&mut tx, sql).unwrap();
            }
            match attempt(&mut tx, &auth(&token)) {
                Err(e) if sqlstate(&e) == "28000" => {
                    let text = error_text(e.as_db_error().unwrap());
                    for secret in [ALICE, VICTOR, TOKEN_SECRET] {
                        if text.contains(secret) {
                            failures.push(format!("{bad:?}: the error shows {secret}: {text}"));
                        }
                    }
                }
                other => failures.push(format!(
                    "{bad:?}: authenticate gave {other:?}, expected 28000"
                )),
            }
            let st = state_in(&mut tx, &views);
            if st != nobody {
                failures.push(format!(
                    "{bad:?} after {prelude:?}: read {st:?}, expected nobody"
                ));
            }
        }
    }
    // The requester ends with its transaction: committed, rolled back, or
    // autocommitted on its own.
    for (how, sql) in [
        ("COMMIT", format!("BEGIN; {}; COMMIT", auth(&alice()))),
        ("ROLLBACK", format!("BEGIN; {}; ROLLBACK", auth(&alice()))),
        ("autocommit", auth(&alice())),
    ] {
        s.client.batch_execute(&sql).unwrap();
        match read(&mut s.client, &[]) {
            Ok(st) if st == nobody => {}
            other => failures.push(format!(
                "after authenticate and {how}: {other:?}, expected nobody"
            )),
        }
    }
    // A DO block that commits starts a new transaction: the requester is gone.
    notices.lock().unwrap().clear();
    s.client
        .batch_execute(&format!(
            "DO $$ BEGIN
                 PERFORM audience.authenticate('{}');
                 RAISE NOTICE 'before commit: %', (SELECT string_agg(coalesce(requester, '-'), ',') FROM audience.whoami());
                 COMMIT;
                 RAISE NOTICE 'after commit: %', (SELECT string_agg(coalesce(requester, '-'), ',') FROM audience.whoami());
             END $$",
            alice()
        ))
        .unwrap();
    let said: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.message().to_string())
        .collect();
    if said
        != [
            format!("before commit: {ALICE}"),
            "after commit: -".to_string(),
        ]
    {
        failures.push(format!("DO block with COMMIT: {said:?}"));
    }
    // The same token again in a later transaction: a bearer token works
    // until it expires (replay within exp is the token's nature), and only
    // for that transaction.
    match read(&mut s.client, &[auth(&alice())]) {
        Ok(st) if st == as_alice => {}
        other => failures.push(format!("alice's token again: {other:?}")),
    }
    // Limited to globex, dana cannot read acme even by naming it.
    let dana = Tok::Valid(DANA, Some(GLOBEX)).mint().unwrap();
    match read(
        &mut s.client,
        &[
            auth(&dana),
            format!("SELECT * FROM audience.recent_viewers('{ACME}', 'acme-dash')"),
        ],
    ) {
        Err(e) if e.contains("42704") => {}
        other => failures.push(format!("dana's globex token reading acme: {other:?}")),
    }
    drop(s);

    // A token wins over the role: victor presenting gary's token is gary.
    let victor_spec = ACTORS.iter().find(|s| s.login == "victor").unwrap();
    let mut v = fx.session(victor_spec);
    match read(&mut v.client, &[auth(&gary)]) {
        Ok(st)
            if st.views == gary_views && st.whoami.iter().all(|w| w.0.as_deref() == Some(GARY)) => {
        }
        other => failures.push(format!("victor with gary's token: {other:?}")),
    }
    drop(v);
    // The operator presenting an invited viewer's token is that viewer: nothing.
    let nothing_for = |sub: &str, st: &State| {
        st.views.values().all(Vec::is_empty)
            && st.whoami == vec![(Some(sub.to_string()), "token".to_string(), None, None)]
    };
    let ivy = Tok::Valid(IVY, None).mint().unwrap();
    match read(&mut fx.op, &[auth(&ivy)]) {
        Ok(st) if nothing_for(IVY, &st) => {}
        other => failures.push(format!("the operator with ivy's token: {other:?}")),
    }
    // A token names a member, never a role: a token whose subject is the
    // superuser's, a capability role's or a mapped role's name is nobody.
    let mut p = fx.session(pooled_spec);
    for sub in [
        "postgres".to_string(),
        "audience_manager".to_string(),
        fx.role("victor"),
    ] {
        let t = valid_token(&sub, None);
        match read(&mut p.client, &[auth(&t)]) {
            Ok(st) if nothing_for(&sub, &st) => {}
            other => failures.push(format!("a token for {sub}: {other:?}")),
        }
    }
    // Membership is judged when asked: alice's token, still valid, sees
    // nothing once she has left acme.
    fx.op
        .execute("SELECT audience.remove_member($1, $2)", &[&ACME, &ALICE])
        .unwrap();
    match read(&mut p.client, &[auth(&alice())]) {
        Ok(st) if nothing_for(ALICE, &st) => {}
        other => failures.push(format!("alice's token after she left acme: {other:?}")),
    }
    // After the secret is rotated, tokens signed with the old one are refused.
    fx.op
        .execute("SELECT audience.set_token_secret($1)", &[&WRONG_SECRET])
        .unwrap();
    let gary_again = Tok::Valid(GARY, None).mint().unwrap(); // signed with TOKEN_SECRET
    match read(&mut p.client, &[auth(&gary_again)]) {
        Err(e) if e.contains("28000") => {}
        other => failures.push(format!(
            "a token signed with the replaced secret: {other:?}"
        )),
    }
    report(failures);
}

/// The catalog audit of SPEC §4 and issue 3: every table has row-level
/// security enabled and forced; no capability role is SUPERUSER, BYPASSRLS
/// or LOGIN; every SECURITY DEFINER function pins a search_path that ends
/// with pg_temp and is not executable by PUBLIC; no function is LEAKPROOF;
/// no capability role nor PUBLIC holds any privilege on a base table,
/// sequence or the internal schema, nor EXECUTE on an internal function;
/// every view is a security barrier.
#[test]
fn catalog_audit() {
    let (_db, mut op) = TestDb::with_extension("it_hostile_audit");
    let mut failures = Vec::new();
    let rows = |op: &mut Client, sql: &str| -> Vec<String> {
        op.query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    };

    let tables = rows(
        &mut op,
        "SELECT c.relname::text FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')",
    );
    assert!(
        tables.len() >= 10,
        "too few tables in audience_internal: {tables:?}"
    );
    failures.extend(rows(
        &mut op,
        "SELECT format('table %s: relrowsecurity %s, relforcerowsecurity %s', c.relname, c.relrowsecurity, c.relforcerowsecurity)
           FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
            AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    ));

    let capability_roles = rows(
        &mut op,
        "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname IN ('audience_manager', 'audience_ingest', 'audience_reader')",
    );
    assert_eq!(
        capability_roles.len(),
        3,
        "capability roles: {capability_roles:?}"
    );
    failures.extend(rows(
        &mut op,
        "SELECT format('role %s: super %s, bypassrls %s, login %s, createrole %s, createdb %s, replication %s',
                       rolname, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication)
           FROM pg_catalog.pg_roles
          WHERE rolname IN ('audience_manager', 'audience_ingest', 'audience_reader')
            AND (rolsuper OR rolbypassrls OR rolcanlogin OR rolcreaterole OR rolcreatedb OR rolreplication)",
    ));
    // Nor are they members of a role that is, or that reads everything.
    failures.extend(rows(
        &mut op,
        "SELECT format('role %s is a member of %s', m.rolname, r.rolname)
           FROM pg_catalog.pg_roles m, pg_catalog.pg_roles r
          WHERE m.rolname IN ('audience_manager', 'audience_ingest', 'audience_reader') AND m.oid <> r.oid
            AND pg_has_role(m.oid, r.oid, 'MEMBER')
            AND (r.rolsuper OR r.rolbypassrls OR r.rolname IN ('pg_read_all_data', 'pg_write_all_data', 'pg_read_all_stats', 'pg_monitor'))",
    ));

    let definers = rows(
        &mut op,
        "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prosecdef",
    );
    assert!(
        definers.len() >= 20,
        "too few SECURITY DEFINER functions: {definers:?}"
    );
    failures.extend(rows(
        &mut op,
        "SELECT format('SECURITY DEFINER %s: proconfig %s', p.oid::regprocedure, p.proconfig)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prosecdef
            AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c
                             WHERE c LIKE 'search\\_path=%'
                               -- pg_temp last: otherwise it is searched first, and a caller's temp objects win.
                               AND regexp_replace(c, '\\s', '', 'g') ~ ',pg_temp$')",
    ));
    failures.extend(rows(
        &mut op,
        "SELECT format('SECURITY DEFINER %s is executable by PUBLIC', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prosecdef
            AND has_function_privilege('public', p.oid, 'EXECUTE')",
    ));
    failures.extend(rows(
        &mut op,
        "SELECT format('%s is LEAKPROOF: it would be run below security barriers', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.proleakproof",
    ));
    // Of schema audience, only relative_time is for everyone.
    failures.extend(rows(
        &mut op,
        "SELECT format('%s is executable by PUBLIC', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace)
            AND has_function_privilege('public', p.oid, 'EXECUTE') AND p.proname <> 'relative_time'",
    ));

    for role in [
        "public",
        "audience_reader",
        "audience_ingest",
        "audience_manager",
    ] {
        // Readers reach the definer functions behind the read functions
        // directly (they are called from SECURITY INVOKER wrappers), and
        // those answer only to a ticket; nothing else internal is theirs.
        let reads = matches!(role, "audience_reader" | "audience_manager");
        let sql = format!(
            "SELECT format('{role} holds %s on %s', priv, c.oid::regclass)
               FROM pg_catalog.pg_class c,
                    unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND has_table_privilege('{role}', c.oid, priv)
             UNION ALL
             SELECT format('{role} holds %s on staging table %s', priv, c.oid::regclass)
               FROM pg_catalog.pg_class c,
                    unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
              WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('r', 'p')
                AND has_table_privilege('{role}', c.oid, priv)
                AND NOT ('{role}' = 'audience_ingest' AND priv = 'INSERT')
             UNION ALL
             SELECT format('{role} holds %s on sequence %s', priv, c.oid::regclass)
               FROM pg_catalog.pg_class c, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) priv
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind = 'S'
                AND has_sequence_privilege('{role}', c.oid, priv)
             UNION ALL
             SELECT format('{role} holds %s on schema audience_internal', priv)
               FROM unnest(ARRAY['USAGE', 'CREATE']) priv
              WHERE has_schema_privilege('{role}', 'audience_internal', priv) AND NOT ({reads} AND priv = 'USAGE')
             UNION ALL
             SELECT format('{role} may execute %s', p.oid::regprocedure)
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'audience_internal'::regnamespace
                AND has_function_privilege('{role}', p.oid, 'EXECUTE')
                AND NOT ({reads} AND (p.proname = 'ticket' AND p.pronargs = 0
                                      OR p.prosecdef AND p.proargtypes[0] = 'bytea'::regtype AND p.proargnames[1] = 'ticket'))
             UNION ALL
             SELECT '{role} may CREATE in schema audience' WHERE has_schema_privilege('{role}', 'audience', 'CREATE')"
        );
        failures.extend(rows(&mut op, &sql));
    }
    failures.extend(rows(
        &mut op,
        "SELECT format('view %s is not a security barrier (reloptions %s)', c.oid::regclass, c.reloptions)
           FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind = 'v'
            AND NOT coalesce('security_barrier=true' = ANY (c.reloptions), false)",
    ));
    report(failures);
}
