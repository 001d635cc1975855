//! The demo's Posit Connect workspace: a Connect server's users, content,
//! permissions and instrumentation records, written as the JSON its API
//! returns, for `audience.import_connect`. The workspace's events exist only
//! in these files; the psql script on standard output makes the workspace
//! and its members.
//!
//! Files, each a JSON array as the endpoint's results hold it, oldest
//! record first where records have a time:
//! - `users.json`: `GET /v1/users` (guid, email, username, first_name,
//!   last_name, user_role, created_time, ...);
//! - `content.json`: `GET /v1/content` (guid, name, title, access_type,
//!   app_mode, created_time, ...);
//! - `permissions.json`: `GET /v1/content/{guid}/permissions` of every
//!   content item, together (id, content_guid, principal_guid,
//!   principal_type, role);
//! - `shiny_usage.json`: `GET /v1/instrumentation/shiny/usage` (content_guid,
//!   user_guid, started, ended, data_version);
//! - `content_visits.json`: `GET /v1/instrumentation/content/visits`
//!   (content_guid, user_guid, variant_key, rendering_id, bundle_id, time,
//!   data_version, path).
//!
//! The records cover the 14 months since the server went live, busier as
//! it caught on, on working days and hours, quieter in August and over
//! Christmas. They hold what real exports hold: anonymous visitors on
//! content open to everyone (`user_guid` null), a user who has since been
//! deleted and one who signed up after the users were exported (both
//! absent from `users.json`), a user without an email, and Shiny sessions
//! still open (`ended` null).

use crate::{session_end, sql_literal, standard_normal, Zipf, DAY};
use chrono::{Datelike, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

pub const WORKSPACE: &str = "connect";
const WORKSPACE_NAME: &str = "Initech on Posit Connect";
const DOMAIN: &str = "initech.example";
const SERVER: &str = "https://connect.initech.example";
/// The server went live this many days before now.
const SPAN_DAYS: i64 = 425;
const RECORDS: usize = 9_000;

/// What a Connect user is in the workspace.
#[derive(Clone, Copy, PartialEq)]
enum Membership {
    Admin,
    Developer,
    Viewer,
    Invited,
    /// A Connect user who is not a member: an outsider to the workspace.
    None,
}

struct User {
    guid: String,
    username: String,
    first_name: String,
    last_name: String,
    email: Option<String>,
    user_role: &'static str,
    membership: Membership,
    created: i64,
}

impl User {
    /// How `import_connect` identifies the user: the email, else the username.
    fn identity(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.username)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Access {
    All,
    LoggedIn,
    Acl,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::All => "all",
            Access::LoggedIn => "logged_in",
            Access::Acl => "acl",
        }
    }
}

struct Content {
    name: &'static str,
    title: &'static str,
    app_mode: &'static str,
    access: Access,
    /// Share of all records.
    weight: f64,
    /// Deployed this many days before now.
    age_days: i64,
    /// Usernames granted the content (Connect's `viewer` role on it).
    viewers: &'static [&'static str],
    /// Paths a visitor opens in a static site.
    paths: &'static [&'static str],
    guid: String,
    created: i64,
    bundle_id: u32,
    /// Rendered documents are seen through a variant.
    variant_key: String,
}

impl Content {
    fn shiny(&self) -> bool {
        matches!(self.app_mode, "shiny" | "python-shiny" | "rmd-shiny" | "quarto-shiny")
    }

    /// Rendered documents have a variant and renderings; plain static
    /// content has neither.
    fn rendered(&self) -> bool {
        matches!(self.app_mode, "rmd-static" | "quarto-static" | "jupyter-static")
    }
}

#[allow(clippy::too_many_arguments)]
fn content(
    name: &'static str,
    title: &'static str,
    app_mode: &'static str,
    access: Access,
    weight: f64,
    age_days: i64,
    viewers: &'static [&'static str],
    paths: &'static [&'static str],
) -> Content {
    Content {
        name,
        title,
        app_mode,
        access,
        weight,
        age_days,
        viewers,
        paths,
        guid: String::new(),
        created: 0,
        bundle_id: 0,
        variant_key: String::new(),
    }
}

/// Members of the workspace, by Connect username: (username, first, last,
/// Connect role, membership). The demo maps some of them to login roles.
const MEMBERS: [(&str, &str, &str, &str, Membership); 7] = [
    ("ohart", "Olivia", "Hart", "administrator", Membership::Admin),
    ("nberg", "Noah", "Berg", "publisher", Membership::Developer),
    ("aokafor", "Amara", "Okafor", "viewer", Membership::Viewer),
    ("ksato", "Kenji", "Sato", "viewer", Membership::Viewer),
    ("srossi", "Sofia", "Rossi", "viewer", Membership::Viewer),
    ("lmeyer", "Lucas", "Meyer", "publisher", Membership::Viewer),
    ("pnair", "Priya", "Nair", "viewer", Membership::Invited),
];

const FIRST_NAMES: [&str; 24] = [
    "Aiden", "Beatriz", "Chen", "Dalia", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Jonas", "Keira", "Leon",
    "Maya", "Nikolai", "Oona", "Pedro", "Quinn", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Wren", "Yusuf",
];
const LAST_NAMES: [&str; 20] = [
    "Abbott", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jensen", "Kowalski",
    "Lindqvist", "Moreau", "Novak", "Olsen", "Petrov", "Quiroga", "Reyes", "Silva", "Tanaka",
];
/// Connect users who are not members of the workspace.
const OUTSIDERS: usize = 60;

fn catalogue() -> Vec<Content> {
    vec![
        content("sales-forecast", "Sales Forecast", "shiny", Access::All, 0.34, 420, &[], &[]),
        content("ops-monitor", "Operations Monitor", "python-shiny", Access::LoggedIn, 0.20, 300, &[], &[]),
        content("exec-kpis", "Executive KPIs", "shiny", Access::Acl, 0.08, 380, &["aokafor", "pnair", "auditor"], &[]),
        content("quarterly-report", "Quarterly Report", "rmd-static", Access::All, 0.17, 410, &[], &[]),
        content(
            "api-guide",
            "Data API Guide",
            "static",
            Access::All,
            0.14,
            400,
            &[],
            &["/", "/index.html", "/reference/", "/reference/orders.html", "/changelog.html"],
        ),
        content("churn-model-card", "Churn Model Card", "jupyter-static", Access::Acl, 0.05, 200, &["srossi"], &[]),
        // An API: Connect records no visits to it, but lists it.
        content("pricing-api", "Pricing API", "python-fastapi", Access::LoggedIn, 0.0, 90, &[], &[]),
    ]
}

/// A random RFC 4122 version 4 GUID, as Connect writes them.
fn guid(rng: &mut StdRng) -> String {
    let v: u128 = (rng.gen::<u128>() & !(0xf000u128 << 64) & !(0xc000u128 << 48)) | (0x4000u128 << 64) | (0x8000u128 << 48);
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Connect's timestamps: RFC 3339 in UTC, to the second.
fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), json_string)
}

/// A JSON array with one object per line, as the pairs give them.
fn write_array(path: &Path, rows: &[Vec<(&str, String)>]) -> io::Result<()> {
    let mut text = String::from("[\n");
    for (i, row) in rows.iter().enumerate() {
        text.push_str("  {");
        for (j, (key, value)) in row.iter().enumerate() {
            let _ = write!(text, "{}{}: {}", if j > 0 { ", " } else { "" }, json_string(key), value);
        }
        text.push_str(if i + 1 < rows.len() { "},\n" } else { "}\n" });
    }
    text.push_str("]\n");
    std::fs::write(path, text)
}

/// A time a person at work opens something, between `from` and `now`:
/// busier towards now as the server caught on, mostly on working days and
/// hours (UTC, a European team), quieter in August and at Christmas.
fn working_time(rng: &mut StdRng, from: i64, now: i64) -> i64 {
    let first_day = from.div_euclid(DAY);
    let days = now.div_euclid(DAY) - first_day + 1;
    loop {
        // Density rising linearly, from a ninth of today's at the start.
        let x: f64 = if rng.gen_range(0..5) == 0 { rng.gen() } else { rng.gen::<f64>().sqrt() };
        let day_start = (first_day + (days as f64 * x) as i64) * DAY;
        let date = chrono::DateTime::from_timestamp(day_start, 0).expect("time in range").date_naive();
        let busy = match date.weekday() {
            Weekday::Sat | Weekday::Sun => 0.2,
            _ => 1.0,
        } * match (date.month(), date.day()) {
            (8, _) => 0.6,
            (12, d) if d >= 22 => 0.35,
            (1, d) if d <= 2 => 0.35,
            _ => 1.0,
        };
        if rng.gen::<f64>() >= busy {
            continue;
        }
        let hour = (11.0 + 2.5 * standard_normal(rng)).clamp(0.0, 23.99);
        let t = day_start + (hour * 3600.0) as i64;
        if t >= from && t < now - 60 {
            return t;
        }
    }
}

/// Writes the files into `dir` and the psql calls that make the workspace
/// and its members to `out`.
pub fn generate(out: &mut impl Write, dir: &Path, seed: u64, now: i64) -> io::Result<()> {
    // Its own stream: the other workspaces' data is the same with or
    // without this one.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0c0f_fee5_7a7e_5eed);
    let start = now - SPAN_DAYS * DAY;
    let created_near = |rng: &mut StdRng, days_ago: i64| now - days_ago * DAY + rng.gen_range(0..DAY / 2);
    // People signed up in the server's first weeks.
    let joined = |rng: &mut StdRng| {
        let days_ago = SPAN_DAYS - rng.gen_range(0..40);
        created_near(rng, days_ago)
    };

    let mut users: Vec<User> = Vec::new();
    for (username, first, last, role, membership) in MEMBERS {
        users.push(User {
            guid: guid(&mut rng),
            username: username.to_string(),
            first_name: first.to_string(),
            last_name: last.to_string(),
            email: Some(format!("{}.{}@{DOMAIN}", first.to_lowercase(), last.to_lowercase())),
            user_role: role,
            membership,
            created: joined(&mut rng),
        });
    }
    for i in 0..OUTSIDERS {
        // Unique names: every first name starts with its own letter, and a
        // first name comes back with another last name.
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        let last = LAST_NAMES[(i + (i / FIRST_NAMES.len()) * 7) % LAST_NAMES.len()];
        users.push(User {
            guid: guid(&mut rng),
            username: format!("{}{}", &first[..1].to_lowercase(), last.to_lowercase()),
            first_name: first.to_string(),
            last_name: last.to_string(),
            email: Some(format!("{}.{}@{DOMAIN}", first.to_lowercase(), last.to_lowercase())),
            user_role: if i % 9 == 0 { "publisher" } else { "viewer" },
            membership: Membership::None,
            created: joined(&mut rng),
        });
    }
    // An external reviewer granted one dashboard, and a service account
    // without an email (it is known by its username).
    users.push(User {
        guid: guid(&mut rng),
        username: "auditor".into(),
        first_name: "External".into(),
        last_name: "Auditor".into(),
        email: Some("reviewer@audit-partners.example".into()),
        user_role: "viewer",
        membership: Membership::None,
        created: created_near(&mut rng, 390),
    });
    users.push(User {
        guid: guid(&mut rng),
        username: "svc-reporting".into(),
        first_name: String::new(),
        last_name: String::new(),
        email: None,
        user_role: "viewer",
        membership: Membership::None,
        created: created_near(&mut rng, 380),
    });
    let by_username = |name: &str| users.iter().position(|u| u.username == name).expect("known username");
    // Neither is in users.json: one deleted since, one created after the
    // users were exported.
    let departed = guid(&mut rng);
    let newcomer = guid(&mut rng);
    let departed_until = now - 150 * DAY;
    let newcomer_from = now - 6 * DAY;

    let mut apps = catalogue();
    for (i, c) in apps.iter_mut().enumerate() {
        c.guid = guid(&mut rng);
        c.created = created_near(&mut rng, c.age_days);
        c.bundle_id = 100 + 37 * i as u32 + rng.gen_range(0..30);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        c.variant_key = (0..8).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    }

    // Who opens what: members work with the content daily, the other
    // Connect users now and then, the regulars most.
    let members: Vec<usize> = (0..users.len())
        .filter(|&i| !matches!(users[i].membership, Membership::None | Membership::Invited))
        .collect();
    let member_pick = Zipf::new(members.len(), 0.6);
    let outsider_ids: Vec<usize> = (0..users.len()).filter(|&i| users[i].membership == Membership::None).collect();
    let outsider_pick = Zipf::new(outsider_ids.len(), 1.0);
    let total_weight: f64 = apps.iter().map(|c| c.weight).sum();
    let mut shiny = Vec::new();
    let mut visits = Vec::new();
    // A record is known by its content, user and time: no two share them,
    // not even two anonymous visitors.
    let mut seen = HashSet::new();
    for (ci, c) in apps.iter().enumerate() {
        let n = (RECORDS as f64 * c.weight / total_weight).round() as usize;
        let granted: Vec<usize> = c.viewers.iter().map(|u| by_username(u)).collect();
        for _ in 0..n {
            let mut t = working_time(&mut rng, c.created.max(start), now);
            let r = rng.gen_range(0..100);
            let user: Option<String> = match c.access {
                Access::Acl => {
                    // The owners (admin and developer) and those granted.
                    let who = if r < 45 { by_username(["ohart", "nberg"][r % 2]) } else { granted[r % granted.len()] };
                    Some(users[who].guid.clone())
                }
                _ if r < 3 && t < departed_until => Some(departed.clone()),
                _ if r < 6 && t >= newcomer_from => Some(newcomer.clone()),
                _ if r < 30 => Some(users[members[member_pick.sample(&mut rng)]].guid.clone()),
                Access::All if r >= 62 => None,
                _ => Some(users[outsider_ids[outsider_pick.sample(&mut rng)]].guid.clone()),
            };
            while !seen.insert((ci, user.clone(), t)) {
                t += 1;
            }
            if c.shiny() {
                shiny.push((t, c.guid.clone(), user, session_end(&mut rng, t, now)));
            } else {
                let path = if c.paths.is_empty() { "/" } else { c.paths[rng.gen_range(0..c.paths.len())] };
                visits.push((t, c, user, path));
            }
        }
    }
    shiny.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    visits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.guid.cmp(&b.1.guid)));

    std::fs::create_dir_all(dir)?;
    let user_rows: Vec<_> = users
        .iter()
        .map(|u| {
            vec![
                ("email", json_opt(u.email.as_deref())),
                ("username", json_string(&u.username)),
                ("first_name", json_string(&u.first_name)),
                ("last_name", json_string(&u.last_name)),
                ("user_role", json_string(u.user_role)),
                ("created_time", json_string(&time(u.created))),
                ("updated_time", json_string(&time(u.created + 3600))),
                ("active_time", json_string(&time(now - 3 * DAY + u.created.rem_euclid(2 * DAY)))),
                ("confirmed", "true".into()),
                ("locked", "false".into()),
                ("guid", json_string(&u.guid)),
            ]
        })
        .collect();
    write_array(&dir.join("users.json"), &user_rows)?;

    let owner = users[by_username("nberg")].guid.clone();
    let content_rows: Vec<_> = apps
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let python = c.app_mode.starts_with("python") || c.app_mode == "jupyter-static";
            vec![
                ("guid", json_string(&c.guid)),
                ("name", json_string(c.name)),
                ("title", json_string(c.title)),
                ("description", json_string("")),
                ("access_type", json_string(c.access.as_str())),
                ("locked", "false".into()),
                ("created_time", json_string(&time(c.created))),
                ("last_deployed_time", json_string(&time(c.created.max(now - (3 + 11 * i as i64) * DAY)))),
                ("bundle_id", json_string(&c.bundle_id.to_string())),
                ("app_mode", json_string(c.app_mode)),
                ("content_category", json_string("")),
                ("parameterized", "false".into()),
                ("r_version", if python || c.app_mode == "static" { "null".into() } else { json_string("4.4.1") }),
                ("py_version", if python { json_string("3.12.4") } else { "null".into() }),
                ("quarto_version", "null".into()),
                ("run_as", "null".into()),
                ("run_as_current_user", "false".into()),
                ("owner_guid", json_string(&owner)),
                ("content_url", json_string(&format!("{SERVER}/content/{}/", c.guid))),
                ("dashboard_url", json_string(&format!("{SERVER}/connect/#/apps/{}", c.guid))),
                ("app_role", json_string("viewer")),
                ("id", json_string(&(4_100 + i).to_string())),
            ]
        })
        .collect();
    write_array(&dir.join("content.json"), &content_rows)?;

    let mut permission_rows = Vec::new();
    for c in apps.iter().filter(|c| c.access == Access::Acl) {
        let holders = std::iter::once((owner.as_str(), "owner"))
            .chain(c.viewers.iter().map(|u| (users[by_username(u)].guid.as_str(), "viewer")));
        for (principal, role) in holders {
            permission_rows.push(vec![
                ("id", json_string(&(9_000 + permission_rows.len()).to_string())),
                ("content_guid", json_string(&c.guid)),
                ("principal_guid", json_string(principal)),
                ("principal_type", json_string("user")),
                ("role", json_string(role)),
            ]);
        }
    }
    write_array(&dir.join("permissions.json"), &permission_rows)?;

    let shiny_rows: Vec<_> = shiny
        .iter()
        .map(|(t, content_guid, user, ended)| {
            vec![
                ("content_guid", json_string(content_guid)),
                ("user_guid", json_opt(user.as_deref())),
                ("started", json_string(&time(*t))),
                ("ended", ended.map_or_else(|| "null".to_string(), |e| json_string(&time(e)))),
                ("data_version", "1".into()),
            ]
        })
        .collect();
    write_array(&dir.join("shiny_usage.json"), &shiny_rows)?;

    let visit_rows: Vec<_> = visits
        .iter()
        .map(|(t, c, user, path)| {
            // Rendered documents are re-rendered every week.
            let rendering = c.rendered().then(|| (310 + (t - c.created) / (7 * DAY)).to_string());
            let variant = c.rendered().then_some(c.variant_key.as_str());
            vec![
                ("content_guid", json_string(&c.guid)),
                ("user_guid", json_opt(user.as_deref())),
                ("variant_key", json_opt(variant)),
                ("rendering_id", json_opt(rendering.as_deref())),
                ("bundle_id", json_string(&c.bundle_id.to_string())),
                ("time", json_string(&time(*t))),
                ("data_version", "1".into()),
                ("path", json_string(path)),
            ]
        })
        .collect();
    write_array(&dir.join("content_visits.json"), &visit_rows)?;

    // The workspace and its members; the apps come with the import.
    writeln!(out, "SELECT audience.create_workspace('{WORKSPACE}', {});", sql_literal(WORKSPACE_NAME))?;
    for u in &users {
        let kind = match u.membership {
            Membership::Admin => "admin",
            Membership::Developer => "developer",
            Membership::Viewer => "viewer",
            Membership::Invited => {
                writeln!(out, "SELECT audience.invite_viewer('{WORKSPACE}', {});", sql_literal(u.identity()))?;
                continue;
            }
            Membership::None => continue,
        };
        writeln!(out, "SELECT audience.add_member('{WORKSPACE}', {}, '{kind}');", sql_literal(u.identity()))?;
    }
    // The team works in Berlin: its days and months are Berlin's.
    writeln!(out, "SELECT audience.configure_workspace('{WORKSPACE}', time_zone => 'Europe/Berlin');")?;
    Ok(())
}
