//! The benchmark data set of docs/spec.md §6: about 200 workspaces, 10,000 apps and
//! 2 million people over 24 months, popularity skewed as in real traffic (a
//! few workspaces and apps get most views, viewers come back), with anonymous
//! visitors and members.
//!
//! Two parts, both deterministic for a seed: `setup` is a psql script that
//! creates the workspaces, apps and members through the management
//! functions; `events` is tab-separated text for
//! `COPY audience_ingest.view_imports (workspace, app, viewer, anonymous_id,
//! viewed_at, ended_at, kind) FROM STDIN`.

use crate::Zipf;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{self, Write};

pub const WORKSPACES: usize = 200;
pub const APPS: usize = 10_000;
pub const PEOPLE: u64 = 2_000_000;
const DAY: i64 = 86_400;
const SPAN_DAYS: i64 = 730;
pub const SPAN_SECONDS: i64 = SPAN_DAYS * DAY;
/// Events of a given time are written from a per-day prefix; days are this
/// many in the cache (the span plus slack for the clock).
const DAYS_CACHED: usize = SPAN_DAYS as usize + 3;

/// The shape of the platform: which workspace owns which app, which apps are
/// private or static, who the members are. Drawn from its own stream so that
/// `setup` and `events` agree whatever the number of events.
struct Platform {
    app_workspace: Vec<usize>,
    app_private: Vec<bool>,
    app_visit: Vec<bool>,
    /// Members of each workspace, by person number: the people of that
    /// workspace who view the most.
    members: Vec<Vec<u64>>,
}

/// Person number of the person at `rank` of a workspace's popularity: a
/// bijection for each workspace (the multiplier is prime to PEOPLE), so that
/// each workspace has its own regulars and people overlap across workspaces.
fn person(workspace: usize, rank: u64) -> u64 {
    (rank.wrapping_mul(2_654_435_761) + workspace as u64 * 1_000_003) % PEOPLE
}

fn platform(seed: u64) -> Platform {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let workspace_pick = Zipf::new(WORKSPACES, 1.0);
    // Every workspace owns at least one app; the rest follow popularity.
    let mut app_workspace: Vec<usize> = (0..WORKSPACES).collect();
    while app_workspace.len() < APPS {
        app_workspace.push(workspace_pick.sample(&mut rng));
    }
    // Apps are numbered by popularity; shuffle ownership so that the most
    // popular apps are spread over workspaces, big ones more often.
    for i in (1..APPS).rev() {
        let j = rng.gen_range(0..=i);
        app_workspace.swap(i, j);
    }
    let app_private = (0..APPS).map(|_| rng.gen_range(0..10) == 0).collect();
    let app_visit = (0..APPS).map(|_| rng.gen_range(0..5) == 0).collect();
    let mut apps_per_workspace = vec![0usize; WORKSPACES];
    for &w in &app_workspace {
        apps_per_workspace[w] += 1;
    }
    let members = (0..WORKSPACES)
        .map(|w| {
            let n = (3 + apps_per_workspace[w] * 2).min(300) as u64;
            (0..n).map(|rank| person(w, rank)).collect()
        })
        .collect();
    Platform {
        app_workspace,
        app_private,
        app_visit,
        members,
    }
}

fn workspace_slug(w: usize) -> String {
    format!("ws-{w:03}")
}

fn app_slug(a: usize) -> String {
    format!("app-{a:05}")
}

fn identity(p: u64) -> String {
    format!("p{p}@mail.example")
}

/// Member kinds by position: an admin, two developers, viewers; one viewer in
/// ten has been invited and not yet accepted.
fn member_kind(i: usize) -> &'static str {
    match i {
        0 => "admin",
        1 | 2 => "developer",
        _ if i % 10 == 5 => "invited",
        _ => "viewer",
    }
}

pub fn setup(out: &mut impl Write, seed: u64) -> io::Result<()> {
    let p = platform(seed);
    writeln!(out, "\\set ON_ERROR_STOP 1\nBEGIN;")?;
    for w in 0..WORKSPACES {
        writeln!(
            out,
            "SELECT audience.create_workspace('{}', 'Workspace {w}');",
            workspace_slug(w)
        )?;
    }
    for a in 0..APPS {
        let visibility = if p.app_private[a] { "private" } else { "public" };
        writeln!(
            out,
            "SELECT audience.create_app('{}', '{}', '{visibility}');",
            workspace_slug(p.app_workspace[a]),
            app_slug(a)
        )?;
    }
    for (w, members) in p.members.iter().enumerate() {
        for (i, &m) in members.iter().enumerate() {
            let (ws, who) = (workspace_slug(w), identity(m));
            match member_kind(i) {
                "invited" => writeln!(out, "SELECT audience.invite_viewer('{ws}', '{who}');")?,
                kind => writeln!(out, "SELECT audience.add_member('{ws}', '{who}', '{kind}');")?,
            }
        }
    }
    writeln!(out, "COMMIT;")
}

/// "YYYY-MM-DD " for each day from `start_day` on.
fn day_prefixes(start_day: i64) -> Vec<String> {
    (0..DAYS_CACHED as i64)
        .map(|d| {
            chrono::DateTime::from_timestamp((start_day + d) * DAY, 0)
                .expect("time in range")
                .format("%Y-%m-%d ")
                .to_string()
        })
        .collect()
}

struct Clock {
    start_day: i64,
    days: Vec<String>,
}

impl Clock {
    fn write(&self, buf: &mut Vec<u8>, unix: i64) {
        let day = unix.div_euclid(DAY);
        let s = unix.rem_euclid(DAY);
        buf.extend_from_slice(self.days[(day - self.start_day) as usize].as_bytes());
        two(buf, s / 3600);
        buf.push(b':');
        two(buf, s / 60 % 60);
        buf.push(b':');
        two(buf, s % 60);
        buf.extend_from_slice(b"+00");
    }
}

fn two(buf: &mut Vec<u8>, n: i64) {
    buf.push(b'0' + (n / 10) as u8);
    buf.push(b'0' + (n % 10) as u8);
}

fn number(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// `stream` 0 is the data set itself; other streams are further events on
/// the same platform, for timing ingest on top of it. `recent`: the events
/// fall evenly in that many seconds before `now`, as a platform's steady
/// ingest brings them, rather than over the two years.
pub fn events(out: &mut impl Write, seed: u64, stream: u64, events: usize, now: i64, recent: Option<i64>) -> io::Result<()> {
    let p = platform(seed);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(stream.wrapping_mul(0x2545_f491_4f6c_dd1d)));
    let app_pick = Zipf::new(APPS, 1.05);
    // Within a workspace, a few people view most; most people come once or twice.
    let people_pick = Zipf::new(PEOPLE as usize, 1.1);
    let start = now - SPAN_DAYS * DAY;
    let clock = Clock {
        start_day: start.div_euclid(DAY),
        days: day_prefixes(start.div_euclid(DAY)),
    };
    let workspace_slugs: Vec<String> = (0..WORKSPACES).map(workspace_slug).collect();
    let app_slugs: Vec<String> = (0..APPS).map(app_slug).collect();

    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    for _ in 0..events {
        let a = app_pick.sample(&mut rng);
        let w = p.app_workspace[a];
        let t = match recent {
            Some(span) => now - 1 - (span as f64 * rng.gen::<f64>()) as i64,
            // Traffic grows over the two years: density rises linearly.
            None => start + ((SPAN_DAYS * DAY) as f64 * rng.gen::<f64>().sqrt()) as i64 - 60,
        };
        let members = &p.members[w];
        let roll = rng.gen_range(0..100);
        buf.extend_from_slice(workspace_slugs[w].as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(app_slugs[a].as_bytes());
        buf.push(b'\t');
        if p.app_private[a] || roll < 10 {
            // A member.
            buf.push(b'p');
            number(&mut buf, members[rng.gen_range(0..members.len())]);
            buf.extend_from_slice(b"@mail.example\t\\N\t");
        } else if roll < 45 {
            // An anonymous visitor.
            buf.extend_from_slice(b"\\N\tanon-");
            number(&mut buf, person(w, people_pick.sample(&mut rng) as u64));
            buf.push(b'\t');
        } else {
            // Someone signed in who is not a member.
            buf.push(b'p');
            number(&mut buf, person(w, people_pick.sample(&mut rng) as u64));
            buf.extend_from_slice(b"@mail.example\t\\N\t");
        }
        clock.write(&mut buf, t);
        buf.push(b'\t');
        if p.app_visit[a] {
            buf.extend_from_slice(b"\\N\tvisit\n");
        } else if t > now - 3600 {
            // Still open.
            buf.extend_from_slice(b"\\N\tsession\n");
        } else {
            // Sessions last minutes, sometimes an hour: exponential, mean 6 minutes.
            clock.write(&mut buf, t + (-(1.0 - rng.gen::<f64>()).ln() * 360.0) as i64 + 5);
            buf.extend_from_slice(b"\tsession\n");
        }
        if buf.len() > (1 << 20) - 512 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}
