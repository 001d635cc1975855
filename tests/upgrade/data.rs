//! The upgrade test's data set: three workspaces' history, written through
//! the 0.1.0 API only (management calls, record_view and end_session,
//! record_views, COPY and INSERT into the staging table), so that one
//! piece of code loads both a released install and a fresh one. Every time
//! is an offset from one instant taken when the test starts, and the events
//! come from a fixed seed: two loads store the same events.

use pg_audience_integration::{epoch_seconds, sign_token, Roles};
use postgres::Client;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::SystemTime;

pub const WORKSPACES: [&str; 3] = ["acme", "globex", "initech"];
/// (workspace, app, visibility at creation); acme/docs turns private at the end.
pub const APPS: [(&str, &str, &str); 8] = [
    ("acme", "dash", "public"),
    ("acme", "vault", "private"),
    ("acme", "docs", "public"),
    ("acme", "wiki", "public"),
    ("globex", "portal", "public"),
    ("globex", "ledger", "private"),
    ("initech", "tps", "public"),
    ("initech", "reports", "private"),
];

/// A NOLOGIN role a member is mapped to; it_upgrade_ivan reads through it.
const GROUP_ROLE: &str = "it_upgrade_ops";
/// Login roles that read analytics; it_upgrade_pool stands for no member.
pub const LOGIN_ROLES: [&str; 10] = [
    "it_upgrade_ada",
    "it_upgrade_bob",
    "it_upgrade_carol",
    "it_upgrade_dave",
    "it_upgrade_erin",
    "it_upgrade_frank",
    "it_upgrade_grace",
    "it_upgrade_hank",
    "it_upgrade_ivan",
    "it_upgrade_pool",
];
/// The pooled role's end user, who reads through a request token.
pub const POOL_ROLE: &str = "it_upgrade_pool";
pub const TOKEN_SUBJECT: &str = "zoe@initech.example";
const TOKEN_SECRET: &str = "upgrade-test-token-secret-0123456789abcdef";

/// Identities that view each workspace's apps: its members (dave only
/// invited, hank removed at the end) and people who are members elsewhere.
const PEOPLE: [(&str, &[&str]); 3] = [
    (
        "acme",
        &[
            "ada@acme.example",
            "bob@acme.example",
            "carol@acme.example",
            "dave@acme.example",
            "erin@acme.example",
            "gina@acme.example",
            "hank@acme.example",
            "frank@globex.example",
        ],
    ),
    (
        "globex",
        &[
            "frank@globex.example",
            "carol@globex.example",
            "ops@globex.example",
            "ada@acme.example",
        ],
    ),
    (
        "initech",
        &[
            "ada@acme.example",
            "grace@initech.example",
            "zoe@initech.example",
        ],
    ),
];

const EVENTS: i64 = 3000;
/// Events per ingest call; consecutive chunks take the four ingest paths in turn.
const CHUNK: i64 = 100;
/// Seconds between consecutive events, and the most each one is moved by:
/// every event has its own second, so "newest first" has no ties.
const SPACING: i64 = 18_000;
const JITTER: u64 = 9_000;

/// The test's roles, made before any database so that they outlive them.
pub fn create_roles() -> Roles {
    let mut specs = vec![(GROUP_ROLE.to_string(), "NOLOGIN")];
    for role in LOGIN_ROLES {
        let options = if role == "it_upgrade_ivan" {
            "LOGIN IN ROLE it_upgrade_ops"
        } else {
            "LOGIN"
        };
        specs.push((role.to_string(), options));
    }
    Roles::create(&specs)
}

/// A request token for the pooled role's end user, valid for the test and
/// good once.
pub fn token() -> String {
    let claims = serde_json::json!({ "sub": TOKEN_SUBJECT, "exp": epoch_seconds() + 3 * 3600 });
    sign_token(
        jsonwebtoken::Algorithm::HS256,
        &claims,
        TOKEN_SECRET.as_bytes(),
    )
}

/// A small deterministic generator (xorshift64*), so that no test dependency is needed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

/// One event: (workspace, app, viewer, anonymous_id, seconds before t0,
/// session seconds, kind, ended later by end_session).
type Event = (
    &'static str,
    &'static str,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    &'static str,
    bool,
);

fn events() -> Vec<Event> {
    let mut rng = Rng(0x5EED_0010_2026);
    let mut events = Vec::new();
    for i in 0..EVENTS {
        let workspace = match rng.below(10) {
            0..=4 => "acme",
            5..=7 => "globex",
            _ => "initech",
        };
        let apps: Vec<_> = APPS.iter().filter(|a| a.0 == workspace).collect();
        let (_, app, visibility) = *apps[rng.below(apps.len() as u64) as usize];
        let people = PEOPLE.iter().find(|p| p.0 == workspace).unwrap().1;
        let who = rng.below(100);
        let (viewer, anonymous_id) = if who < 35 {
            let person = people[rng.below(people.len() as u64) as usize];
            // The platform does not always spell an identity the same way.
            let person = if rng.below(20) == 0 {
                person.to_uppercase()
            } else {
                person.to_string()
            };
            (Some(person), None)
        } else if who < 65 || visibility == "private" {
            (Some(format!("visitor{}@example.org", rng.below(80))), None)
        } else {
            (None, Some(format!("cookie-{:04x}", rng.below(120))))
        };
        let kind = if rng.below(5) == 0 {
            "visit"
        } else {
            "session"
        };
        let offset = (EVENTS - i) * SPACING + rng.below(JITTER) as i64;
        let duration = (kind == "session" && rng.below(10) < 6).then(|| 5 + rng.below(3600) as i64);
        let end_later = duration.is_some() && rng.below(2) == 0;
        events.push((
            workspace,
            app,
            viewer,
            anonymous_id,
            offset,
            duration,
            kind,
            end_later,
        ));
    }
    // After acme/docs turned private: members, an invitee and outsiders,
    // half an hour after t0 (within the hour ahead that ingest accepts).
    let late = [
        "carol@acme.example",
        "erin@acme.example",
        "ada@acme.example",
        "visitor3@example.org",
        "visitor7@example.org",
        "dave@acme.example",
    ];
    for k in 0..40 {
        let viewer = late[k as usize % late.len()].to_string();
        events.push((
            "acme",
            "docs",
            Some(viewer),
            None,
            -(1800 + 7 * k),
            None,
            "session",
            false,
        ));
    }
    events
}

/// Creates the workspaces, apps and members, and loads every event. Returns
/// the number of events per workspace.
pub fn load(client: &mut Client, t0: SystemTime) -> BTreeMap<&'static str, i64> {
    let grants: String = LOGIN_ROLES
        .iter()
        .chain([&GROUP_ROLE])
        .map(|r| format!("GRANT audience_reader TO {r};"))
        .collect();
    client
        .batch_execute(&grants)
        .expect("granting audience_reader");
    client
        .batch_execute(
            "SELECT audience.create_workspace('acme', 'Acme Analytics');
             SELECT audience.create_workspace('globex');
             SELECT audience.create_workspace('initech', 'Initech');
             SELECT audience.configure_workspace('initech', time_zone => 'Asia/Kolkata', pseudonym_scope => 'requester');",
        )
        .expect("creating the workspaces");
    for sql in [
        "SELECT audience.configure_workspace('acme', time_zone => 'America/New_York',
                                             identification_start => $1::timestamptz - interval '200 days')",
        "SELECT audience.configure_workspace('globex', pseudonym_rotation => 'monthly',
                                             counting_start => $1::timestamptz - interval '400 days')",
    ] {
        client.execute(sql, &[&t0]).expect("configuring a workspace");
    }
    client
        .execute("SELECT audience.set_token_secret($1)", &[&TOKEN_SECRET])
        .expect("setting the token secret");
    for (workspace, app, visibility) in APPS {
        client
            .execute(
                "SELECT audience.create_app($1, $2, $3)",
                &[&workspace, &app, &visibility],
            )
            .expect("creating an app");
    }
    client
        .batch_execute(
            "SELECT audience.add_member('acme', 'ada@acme.example', 'admin', 'it_upgrade_ada');
             SELECT audience.add_member('acme', 'bob@acme.example', 'developer', 'it_upgrade_bob');
             SELECT audience.invite_viewer('acme', 'carol@acme.example', 'vault', 'it_upgrade_carol');
             SELECT audience.accept_invite('acme', 'carol@acme.example');
             SELECT audience.invite_viewer('acme', 'dave@acme.example', 'vault', 'it_upgrade_dave');
             SELECT audience.add_member('acme', 'erin@acme.example', 'viewer', 'it_upgrade_erin');
             SELECT audience.add_member('acme', 'gina@acme.example', 'developer');
             SELECT audience.add_member('acme', 'hank@acme.example', 'developer', 'it_upgrade_hank');
             SELECT audience.grant_app_access('acme', 'vault', 'visitor5@example.org');
             SELECT audience.add_member('globex', 'frank@globex.example', 'admin', 'it_upgrade_frank');
             SELECT audience.add_member('globex', 'carol@globex.example', 'viewer', 'it_upgrade_carol');
             SELECT audience.grant_app_access('globex', 'ledger', 'carol@globex.example');
             SELECT audience.add_member('globex', 'ops@globex.example', 'developer', 'it_upgrade_ops');
             SELECT audience.add_member('initech', 'ada@acme.example', 'developer', 'it_upgrade_ada');
             SELECT audience.invite_viewer('initech', 'grace@initech.example', 'reports', 'it_upgrade_grace');
             SELECT audience.accept_invite('initech', 'grace@initech.example');
             SELECT audience.add_member('initech', 'zoe@initech.example', 'admin');
             CREATE TEMP TABLE upgrade_events (
                 i bigint PRIMARY KEY, chunk bigint, workspace text, app text, viewer text, anonymous_id text,
                 viewed_at timestamptz, ended_at timestamptz, kind text, end_later boolean);",
        )
        .expect("adding members");

    let events = events();
    let mut counts = BTreeMap::new();
    for e in &events {
        *counts.entry(e.0).or_insert(0) += 1;
    }
    let column = |f: &dyn Fn(&Event) -> Option<String>| events.iter().map(f).collect::<Vec<_>>();
    client
        .execute(
            "INSERT INTO upgrade_events
             SELECT u.n - 1, CASE WHEN u.n - 1 < $2 THEN (u.n - 1) / $3 ELSE -1 END, u.w, u.a, u.v, u.anon,
                    $1::timestamptz - u.off * interval '1 second',
                    $1::timestamptz - (u.off - u.dur) * interval '1 second', u.kind, u.later
               FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                           $10::text[], $11::boolean[]) WITH ORDINALITY u(w, a, v, anon, off, dur, kind, later, n)",
            &[
                &t0, &EVENTS, &CHUNK,
                &column(&|e| Some(e.0.to_string())),
                &column(&|e| Some(e.1.to_string())),
                &column(&|e| e.2.clone()),
                &column(&|e| e.3.clone()),
                &events.iter().map(|e| e.4).collect::<Vec<_>>(),
                &events.iter().map(|e| e.5).collect::<Vec<_>>(),
                &column(&|e| Some(e.6.to_string())),
                &events.iter().map(|e| e.7).collect::<Vec<_>>(),
            ],
        )
        .expect("staging the generated events");

    let staging = staging_table(client);
    for chunk in 0..EVENTS / CHUNK {
        match chunk % 4 {
            0 => one_by_one(client, chunk),
            1 => {
                let recorded: i64 = client
                    .query_one(
                        "SELECT recorded FROM audience.record_views((
                             SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                        'workspace', workspace, 'app', app, 'viewer', viewer,
                                        'anonymous_id', anonymous_id, 'viewed_at', viewed_at,
                                        'ended_at', ended_at, 'kind', kind)) ORDER BY i)
                               FROM upgrade_events WHERE chunk = $1))",
                        &[&chunk],
                    )
                    .expect("record_views")
                    .get(0);
                assert_eq!(recorded, CHUNK, "record_views stored part of a batch");
            }
            2 => {
                // The COPY text comes from the server, in its own formats.
                let mut text = Vec::new();
                client
                    .copy_out(&format!(
                        "COPY (SELECT workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind
                                 FROM upgrade_events WHERE chunk = {chunk} ORDER BY i) TO STDOUT"
                    ))
                    .expect("copying events out")
                    .read_to_end(&mut text)
                    .expect("copying events out");
                let mut writer = client
                    .copy_in(&format!("COPY {staging} (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind) FROM STDIN"))
                    .expect("COPY into the staging table");
                writer.write_all(&text).unwrap();
                assert_eq!(
                    writer.finish().expect("COPY into the staging table"),
                    CHUNK as u64
                );
            }
            _ => {
                client
                    .execute(
                        &format!(
                            "INSERT INTO {staging} (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)
                             SELECT workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind
                               FROM upgrade_events WHERE chunk = $1 ORDER BY i"
                        ),
                        &[&chunk],
                    )
                    .expect("INSERT into the staging table");
            }
        }
        if chunk == EVENTS / CHUNK / 2 {
            client
                .batch_execute("SELECT audience.rotate_pseudonym_key('initech')")
                .unwrap();
        }
    }
    client
        .batch_execute(
            "SELECT audience.set_app_visibility('acme', 'docs', 'private');
             SELECT audience.grant_app_access('acme', 'docs', 'visitor7@example.org');",
        )
        .unwrap();
    one_by_one(client, -1);
    client
        .batch_execute("SELECT audience.remove_member('acme', 'hank@acme.example'); DROP TABLE upgrade_events;")
        .unwrap();
    counts
}

/// The web tier's way: one record_view per event, sessions ended later by end_session.
fn one_by_one(client: &mut Client, chunk: i64) {
    let ids: Vec<(i64, bool)> = client
        .query("SELECT i, end_later AND ended_at IS NOT NULL FROM upgrade_events WHERE chunk = $1 ORDER BY i", &[&chunk])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (i, end_later) in ids {
        let event_id: i64 = client
            .query_one(
                "SELECT audience.record_view(workspace, app, viewer, viewed_at, anonymous_id,
                                             CASE WHEN end_later THEN NULL ELSE ended_at END, kind)
                   FROM upgrade_events WHERE i = $1",
                &[&i],
            )
            .expect("record_view")
            .get(0);
        if end_later {
            client
                .execute(
                    "SELECT audience.end_session($1, ended_at) FROM upgrade_events WHERE i = $2",
                    &[&event_id, &i],
                )
                .expect("end_session");
        }
    }
}

/// The COPY target of the installed version: audience.view_imports in 0.1.0,
/// audience_ingest.view_imports since 0.2.0.
fn staging_table(client: &mut Client) -> &'static str {
    let moved: bool = client
        .query_one("SELECT to_regclass('audience_ingest.view_imports') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    if moved {
        "audience_ingest.view_imports"
    } else {
        "audience.view_imports"
    }
}
