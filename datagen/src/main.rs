//! Generates a realistic, deterministic data set for pg_audience as a psql
//! script on standard output: workspaces, apps, members and invitations made
//! through the management functions, then view events loaded through the
//! bulk path (`COPY` into a staging table, then one insert into
//! `audience_ingest.view_imports`). Sessions last as real ones do: most a quick
//! look, some a working session, a few hours; recent ones may still be open.
//! Static content is opened as a `visit`, without an end.
//!
//! Usage: pg_audience-datagen [--events N] [--seed S] [--now UNIX_SECONDS] [--posit-dir DIR]
//!
//! With `--posit-dir DIR`, also a Posit Connect workspace whose events are
//! only in JSON files written to DIR, in Connect's API shapes, for
//! `audience.import_connect` (see posit.rs); the script makes the workspace
//! and its members.
//!
//! With `--profile bench --part setup|events`, the benchmark data set
//! instead (see bench.rs): the management calls, or the events as COPY text;
//! `--stream K` draws another sample of events for the same platform.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

mod bench;
mod posit;

const DAY: i64 = 86_400;
const SPAN_DAYS: i64 = 730;

struct App {
    slug: &'static str,
    name: &'static str,
    private: bool,
    /// Static content is a `visit`; interactive apps are a `session`.
    visit: bool,
}

struct Workspace {
    slug: &'static str,
    name: &'static str,
    domain: &'static str,
    apps: Vec<App>,
    admins: Vec<&'static str>,
    developers: Vec<&'static str>,
    viewers: Vec<&'static str>,
    invited: Vec<&'static str>,
    /// Granted one private app without being a member.
    guests: Vec<&'static str>,
    /// Share of all events.
    weight: f64,
    outsiders: usize,
    anonymous: usize,
}

fn app(slug: &'static str, name: &'static str, private: bool, visit: bool) -> App {
    App { slug, name, private, visit }
}

fn workspaces() -> Vec<Workspace> {
    vec![
        Workspace {
            slug: "acme",
            name: "Acme Analytics",
            domain: "acme.example",
            apps: vec![
                app("sales-dashboard", "Sales dashboard", false, false),
                app("churn-model", "Churn model", true, false),
                app("forecast-explorer", "Forecast explorer", false, false),
                app("data-docs", "Data documentation", false, true),
                app("pricing-simulator", "Pricing simulator", false, false),
                app("board-report", "Board report", true, false),
            ],
            admins: vec!["ada", "grace"],
            developers: vec!["linus", "guido", "barbara"],
            viewers: vec!["ken", "margaret", "edsger", "frances", "john"],
            invited: vec!["radia", "dennis"],
            guests: vec!["auditor@ledger.example"],
            weight: 0.55,
            outsiders: 3_000,
            anonymous: 4_000,
        },
        Workspace {
            slug: "northwind",
            name: "Northwind Traders",
            domain: "northwind.example",
            apps: vec![
                app("inventory", "Inventory tracker", true, false),
                app("shipping-map", "Shipping map", false, false),
                app("supplier-portal", "Supplier portal", false, true),
            ],
            admins: vec!["nancy"],
            developers: vec!["andrew", "janet"],
            viewers: vec!["steven", "laura"],
            invited: vec!["robert"],
            guests: vec!["inspector@customs.example"],
            weight: 0.30,
            outsiders: 1_500,
            anonymous: 2_000,
        },
        Workspace {
            slug: "globex",
            name: "Globex Research",
            domain: "globex.example",
            apps: vec![
                app("lab-notebook", "Lab notebook", true, false),
                app("public-results", "Public results", false, true),
            ],
            admins: vec!["hank"],
            developers: vec!["frank"],
            viewers: vec!["mindy"],
            invited: vec!["lisa"],
            guests: vec![],
            weight: 0.15,
            outsiders: 800,
            anonymous: 1_200,
        },
    ]
}

struct Args {
    events: usize,
    seed: u64,
    now: i64,
    bench_part: Option<String>,
    /// Another sample of events on the same platform (bench only).
    stream: u64,
    /// Events of the last this many seconds only, as steady ingest brings
    /// them, instead of the two years of the data set (bench only).
    recent: Option<i64>,
    /// Where the Posit Connect workspace's JSON goes (demo only).
    posit_dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        bench_part: None,
        stream: 0,
        recent: None,
        posit_dir: None,
        events: 120_000,
        seed: 20_261_126,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64,
    };
    let mut profile = String::from("demo");
    let mut part = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = || value.parse::<i64>().unwrap_or_else(|_| usage(&format!("{flag} takes a number")));
        match flag.as_str() {
            "--events" => args.events = number() as usize,
            "--seed" => args.seed = number() as u64,
            "--now" => args.now = number(),
            "--profile" => profile = value.clone(),
            "--part" => part = Some(value.clone()),
            "--stream" => args.stream = number() as u64,
            "--recent" if (1..=bench::SPAN_SECONDS).contains(&number()) => args.recent = Some(number()),
            "--recent" => usage("--recent takes a number of seconds from 1 to two years"),
            "--posit-dir" => args.posit_dir = Some(value.clone().into()),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    match (profile.as_str(), part.as_deref()) {
        (_, part) if args.recent.is_some() && part != Some("events") => {
            usage("--recent belongs to the bench profile's events")
        }
        ("demo", None) => {}
        ("bench", _) if args.posit_dir.is_some() => usage("--posit-dir belongs to the demo profile"),
        ("bench", Some("setup" | "events")) => args.bench_part = part,
        ("bench", _) => usage("--profile bench needs --part setup or --part events"),
        _ => usage(&format!("unknown profile {profile} (demo or bench)")),
    }
    args
}

fn usage(problem: &str) -> ! {
    eprintln!("pg_audience-datagen: {problem}\nusage: pg_audience-datagen [--events N] [--seed S] [--now UNIX_SECONDS] [--posit-dir DIR]\n\
         \x20      pg_audience-datagen --profile bench --part setup|events [--events N] [--seed S] [--stream K] [--recent SECONDS] [--now UNIX_SECONDS]");
    std::process::exit(2)
}

/// Index drawn with probability proportional to 1/(i+1)^s: a few items get
/// most of the traffic, as apps and viewers do.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let x = rng.gen::<f64>() * self.cumulative.last().copied().unwrap_or(0.0);
        self.cumulative.partition_point(|&c| c < x).min(self.cumulative.len() - 1)
    }
}

/// A draw from the standard normal distribution (Box-Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.gen::<f64>();
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// How long a session lasts, in seconds. Real sessions are skewed: most are
/// a glance (a few seconds to a minute), about a third a working session
/// (3 to 30 minutes), a few an app kept open for hours.
fn session_seconds(rng: &mut StdRng) -> i64 {
    let (median, spread) = match rng.gen_range(0..100) {
        0..=59 => (20.0, 0.7),
        60..=92 => (600.0, 0.6),
        _ => (5_400.0, 0.6),
    };
    ((median * (spread * standard_normal(rng)).exp()) as i64).clamp(2, 12 * 3600)
}

/// When a session that started at `started` ended, or None while it is
/// still open at `now`: running past now, or in a tab opened in the last
/// three hours that has not reported its end yet (half of those).
fn session_end(rng: &mut StdRng, started: i64, now: i64) -> Option<i64> {
    let ended = started + session_seconds(rng);
    let open = ended >= now || (now - started < 3 * 3600 && rng.gen_range(0..2) == 0);
    (!open).then_some(ended)
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn email(name: &str, domain: &str) -> String {
    format!("{name}@{domain}")
}

fn timestamp(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time in range")
        .format("%Y-%m-%d %H:%M:%S+00")
        .to_string()
}

fn main() -> io::Result<()> {
    let args = parse_args();
    if let Some(part) = &args.bench_part {
        let out = io::stdout();
        let mut out = BufWriter::new(out.lock());
        match part.as_str() {
            "setup" => bench::setup(&mut out, args.seed)?,
            _ => bench::events(&mut out, args.seed, args.stream, args.events, args.now, args.recent)?,
        }
        return out.flush();
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let spaces = workspaces();
    let out = io::stdout();
    let mut out = BufWriter::new(out.lock());

    writeln!(out, "\\set ON_ERROR_STOP 1\nBEGIN;")?;
    for ws in &spaces {
        writeln!(out, "SELECT audience.create_workspace({}, {});", sql_literal(ws.slug), sql_literal(ws.name))?;
        for a in &ws.apps {
            let visibility = if a.private { "private" } else { "public" };
            writeln!(
                out,
                "SELECT audience.create_app({}, {}, '{visibility}', {});",
                sql_literal(ws.slug),
                sql_literal(a.slug),
                sql_literal(a.name)
            )?;
        }
        for (kind, people) in [("admin", &ws.admins), ("developer", &ws.developers), ("viewer", &ws.viewers)] {
            for p in people {
                writeln!(
                    out,
                    "SELECT audience.add_member({}, {}, '{kind}');",
                    sql_literal(ws.slug),
                    sql_literal(&email(p, ws.domain))
                )?;
            }
        }
        for p in &ws.invited {
            writeln!(out, "SELECT audience.invite_viewer({}, {});", sql_literal(ws.slug), sql_literal(&email(p, ws.domain)))?;
        }
        if let Some(private_app) = ws.apps.iter().find(|a| a.private) {
            // Viewer members see the private app they were granted.
            for p in ws.viewers.iter().take(2) {
                writeln!(
                    out,
                    "SELECT audience.grant_app_access({}, {}, {});",
                    sql_literal(ws.slug),
                    sql_literal(private_app.slug),
                    sql_literal(&email(p, ws.domain))
                )?;
            }
            for g in &ws.guests {
                writeln!(
                    out,
                    "SELECT audience.grant_app_access({}, {}, {});",
                    sql_literal(ws.slug),
                    sql_literal(private_app.slug),
                    sql_literal(g)
                )?;
            }
        }
    }

    // Acme names viewers only from 18 months ago on; Northwind counts its
    // months in New York time.
    writeln!(
        out,
        "SELECT audience.configure_workspace('acme', identification_start => {});",
        sql_literal(&timestamp(args.now - 540 * DAY))
    )?;
    writeln!(out, "SELECT audience.configure_workspace('northwind', time_zone => 'America/New_York');")?;
    if let Some(dir) = &args.posit_dir {
        posit::generate(&mut out, dir, args.seed, args.now)?;
    }

    writeln!(
        out,
        "CREATE TEMP TABLE demo_events (workspace text, app text, viewer text, anonymous_id text,\n\
         \x20   viewed_at timestamptz, ended_at timestamptz, kind text);\nCOPY demo_events FROM STDIN;"
    )?;

    let start = args.now - SPAN_DAYS * DAY;
    let total_weight: f64 = spaces.iter().map(|w| w.weight).sum();
    let mut line = String::new();
    for ws in &spaces {
        let n = ((args.events as f64) * ws.weight / total_weight).round() as usize;
        let app_pick = Zipf::new(ws.apps.len(), 1.1);
        let outsider_pick = Zipf::new(ws.outsiders, 0.9);
        let anonymous_pick = Zipf::new(ws.anonymous, 0.8);
        let insiders: Vec<String> = ws
            .admins
            .iter()
            .chain(&ws.developers)
            .chain(&ws.viewers)
            .chain(&ws.invited)
            .map(|p| email(p, ws.domain))
            .chain(ws.guests.iter().map(|g| g.to_string()))
            .collect();
        for _ in 0..n {
            let a = &ws.apps[app_pick.sample(&mut rng)];
            // Traffic grows over the two years: density rises linearly.
            let t = start + ((SPAN_DAYS * DAY) as f64 * rng.gen::<f64>().sqrt()) as i64 - 60;
            let (viewer, anonymous_id) = if a.private {
                (Some(insiders[rng.gen_range(0..insiders.len())].clone()), None)
            } else {
                match rng.gen_range(0..100) {
                    0..=14 => (Some(insiders[rng.gen_range(0..insiders.len())].clone()), None),
                    15..=54 => (Some(format!("viewer{}@mail.example", outsider_pick.sample(&mut rng))), None),
                    _ => (None, Some(format!("anon-{:08x}", anonymous_pick.sample(&mut rng) as u32 ^ 0x5bd1_e995))),
                }
            };
            let ended = if a.visit { None } else { session_end(&mut rng, t, args.now) };
            line.clear();
            let _ = writeln!(
                line,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                ws.slug,
                a.slug,
                viewer.as_deref().unwrap_or("\\N"),
                anonymous_id.as_deref().unwrap_or("\\N"),
                timestamp(t),
                ended.map(timestamp).as_deref().unwrap_or("\\N"),
                if a.visit { "visit" } else { "session" }
            );
            out.write_all(line.as_bytes())?;
        }
    }
    writeln!(out, "\\.")?;
    // Through the bulk path: the insert is folded into events and rollups in
    // the same statement, exactly as record_view would store each event.
    writeln!(
        out,
        "INSERT INTO audience_ingest.view_imports (workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind)\n\
         \x20 SELECT workspace, app, viewer, anonymous_id, viewed_at, ended_at, kind FROM demo_events ORDER BY viewed_at;"
    )?;
    // An app that was public for two years becomes private today; the views
    // that follow are identifiable, the earlier ones stay pseudonymous.
    writeln!(out, "SELECT audience.set_app_visibility('acme', 'forecast-explorer', 'private');")?;
    for p in ["margaret", "linus", "auditor"] {
        let who = if p == "auditor" { "auditor@ledger.example".to_string() } else { email(p, "acme.example") };
        writeln!(out, "SELECT audience.record_view('acme', 'forecast-explorer', {});", sql_literal(&who))?;
    }
    writeln!(out, "COMMIT;")?;
    out.flush()
}
