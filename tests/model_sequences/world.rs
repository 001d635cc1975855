//! The world one seed runs in: a database of its own with three workspaces,
//! their apps, the people and visitors the operations pick from, the login
//! roles the requesters use, and time helpers (every time is a number of
//! microseconds since the Unix epoch, rendered as ISO 8601 text in UTC).

use pg_audience_integration::{connect_as, on_roles, Roles, TestDb};
use postgres::Client;

/// Prefix of every role this test creates (roles are cluster-wide).
pub const ROLE_PREFIX: &str = "it_model";

/// The workspaces of every seed, most operations going to the first.
pub const WORKSPACES: [&str; 3] = ["wa", "wb", "wc"];

/// The apps created in every workspace at the start: (slug, visibility).
/// Ingest targets these; a Posit import adds `report` and `board`, and maps
/// its `dash` content onto the existing app.
pub const APPS: [(&str, &str); 5] = [
    ("dash", "public"),
    ("docs", "public"),
    ("lab", "public"),
    ("vault", "private"),
    ("ledger", "private"),
];

/// The HS256 secret request tokens are signed with.
pub const TOKEN_SECRET: &str = "model-sequences-token-secret-0123456789abcdef";

/// A person of the pool: the spellings an operation may use for them (all
/// one identity once normalised), and the login role that stands for them
/// when they are made a member (the requesters of requesters.rs).
pub struct Person {
    pub spellings: &'static [&'static str],
    pub role: Option<&'static str>,
}

pub const ADA: usize = 0;
pub const DEV: usize = 1;
pub const VIC: usize = 2;
pub const IVY: usize = 3;
pub const GIL: usize = 4;
/// Forgotten by the sequential step after the concurrent phase (and
/// sometimes by a generated forget_viewer).
pub const URSULA: usize = 5;

pub static PEOPLE: &[Person] = &[
    Person {
        spellings: &["ada@model.example", "  Ada@Model.Example "],
        role: Some("admin"),
    },
    Person {
        spellings: &["dev@model.example"],
        role: Some("dev"),
    },
    Person {
        spellings: &["vic@model.example", "VIC@model.example"],
        role: Some("viewer"),
    },
    Person {
        spellings: &["ivy@model.example"],
        role: Some("invited"),
    },
    Person {
        spellings: &["gil@model.example"],
        role: Some("granted"),
    },
    Person {
        spellings: &["ursula@model.example"],
        role: None,
    },
    Person {
        spellings: &["o1@out.example"],
        role: None,
    },
    Person {
        spellings: &["o2@out.example"],
        role: None,
    },
    Person {
        spellings: &["o3@out.example", "O3@OUT.EXAMPLE"],
        role: None,
    },
    Person {
        spellings: &["o4@out.example"],
        role: None,
    },
    Person {
        spellings: &["o5@out.example"],
        role: None,
    },
    Person {
        spellings: &["o6@out.example"],
        role: None,
    },
    Person {
        spellings: &["o7@out.example"],
        role: None,
    },
    Person {
        spellings: &["o8@out.example"],
        role: None,
    },
    // NFC: precomposed, decomposed and upper case are one person.
    Person {
        spellings: &[
            "jos\u{e9}@model.example",
            "jose\u{301}@model.example",
            "JOS\u{c9}@model.example",
        ],
        role: None,
    },
    Person {
        spellings: &["zo\u{eb}.k"],
        role: None,
    },
];

/// Anonymous visitor keys: case-sensitive, trimmed.
pub const COOKIES: [&str; 8] = ["ck-1", "ck-2", " ck-2 ", "CK-1", "ck-3", "ck-4", "dev-9f2a", "dev-77c1"];

/// Identities every write path must refuse (22xxx).
pub const BAD_IDENTITIES: [&str; 4] = ["", "   ", "a\u{7}b@x.example", "long"];
/// Identities that show nothing or can display as someone else's
/// (invisible characters only, bidirectional controls): refused too.
pub const INVISIBLE_OR_BIDI_IDENTITIES: [&str; 2] = ["\u{200B}", "bad\u{202E}live@x.example"];

/// Time zones a workspace may be set to: named IANA zones, with odd offsets.
pub const TIME_ZONES: [&str; 5] = [
    "UTC",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Europe/Berlin",
];

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// `micros` since the epoch as ISO 8601 in UTC, e.g. 2026-03-01T10:00:00.000000Z.
pub fn iso(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// A time as an SQL literal.
pub fn ts(micros: i64) -> String {
    format!("'{}'::timestamptz", iso(micros))
}

/// A text as an SQL literal (standard_conforming_strings is on).
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn opt_lit(s: Option<&str>) -> String {
    s.map_or("NULL".to_string(), lit)
}

/// The full name of one of this test's roles.
pub fn role(suffix: &str) -> String {
    format!("{ROLE_PREFIX}_{suffix}")
}

/// The login roles of every requester and writer, created once per run.
pub fn create_roles() -> Roles {
    let specs: Vec<(String, &str)> = [
        "admin", "dev", "devmate", "viewer", "invited", "granted", "stranger", "pooled", "ingest", "manager",
    ]
    .iter()
    .map(|s| (role(s), "LOGIN"))
    .collect();
    let roles = Roles::create(&specs);
    let mut admin = pg_audience_integration::connect("postgres");
    // devmate holds no mapping of its own: it is a member of dev's role, so
    // it is whoever dev's role stands for (docs/spec.md §2: "or a role current_user
    // is a member of").
    pg_audience_integration::on_roles(&mut admin, &format!("GRANT \"{}\" TO \"{}\"", role("dev"), role("devmate")));
    roles
}

/// One seed's database, its start time and the windows the reads ask about.
pub struct World {
    pub db: TestDb,
    /// The database's now() when the seed started: every generated time is
    /// before it, so that no generated view is later than a visibility change
    /// made while the operations run.
    pub start: i64,
}

impl World {
    /// A fresh database named for `seed`, with pg_audience, the workspaces,
    /// apps, capability grants and the token secret.
    pub fn create(seed: u64) -> World {
        let (db, mut op) = TestDb::with_extension(&format!("it_model_s{seed}"));
        for r in [
            "admin", "dev", "devmate", "viewer", "invited", "granted", "stranger", "pooled",
        ] {
            on_roles(&mut op, &format!("GRANT audience_reader TO \"{}\"", role(r)));
        }
        on_roles(
            &mut op,
            &format!("GRANT audience_ingest TO \"{}\"; GRANT audience_manager TO \"{}\"", role("ingest"), role("manager")),
        );
        for ws in WORKSPACES {
            op.execute("SELECT audience.create_workspace($1)", &[&ws]).unwrap();
            for (app, visibility) in APPS {
                op.execute("SELECT audience.create_app($1, $2, $3)", &[&ws, &app, &visibility])
                    .unwrap();
            }
        }
        op.execute("SELECT audience.set_token_secret($1)", &[&TOKEN_SECRET])
            .unwrap();
        let start: i64 = op
            .query_one(
                "SELECT (extract(epoch FROM date_trunc('second', now())) * 1000000)::bigint",
                &[],
            )
            .unwrap()
            .get(0);
        World { db, start }
    }

    pub fn operator(&self) -> Client {
        self.db.connect()
    }

    pub fn connect_as(&self, role_suffix: &str) -> Client {
        connect_as(&self.db.name, &role(role_suffix))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_renders_utc() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::iso(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(super::iso(1_709_287_200_000_000), "2024-03-01T10:00:00.000000Z");
    }
}
