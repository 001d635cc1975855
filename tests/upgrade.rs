//! docs/spec.md §7: `ALTER EXTENSION pg_audience UPDATE` from every released version
//! keeps data. A database made with the released 0.1.0 (its install script
//! is kept in sql/released/, which scripts/lib.sh installs next to the
//! scripts of the version being built) and loaded through the 0.1.0 API is
//! updated to the version being built. Then:
//! - every answer of the 0.1.0 read API, as the operator, as each member's
//!   login role and as a token-authenticated end user, and every row and
//!   sequence of the 0.1.0 tables, keys included, is what it was before;
//! - the extension's catalog (every member object, with its definition,
//!   privileges and comments) is that of a fresh install, so that the
//!   hand-written update script does what the install script does;
//! - the read functions added since answer as on a fresh install loaded with
//!   the same events: the update filled the rollups they read.
//!
//! Every difference is listed before the test fails.

#[path = "upgrade/capture.rs"]
mod capture;
#[path = "upgrade/catalog.rs"]
mod catalog;
#[path = "upgrade/data.rs"]
mod data;
#[path = "upgrade/diff.rs"]
mod diff;
#[path = "upgrade/stored_data.rs"]
mod stored_data;
#[path = "upgrade/usage.rs"]
mod usage;

use diff::{diff, Lines};
use pg_audience_integration::{connect, TestDb};
use postgres::Client;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The released version whose databases must update.
const RELEASED: &str = "0.1.0";

/// Written past the test harness's capture: a part of the test that did not
/// run must show in the output of `bash scripts/test`.
fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "upgrade test: {message}");
}

/// The version being built, from the extension's Cargo.toml.
fn current_version() -> String {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \"")?.strip_suffix('"'))
        .expect("a version in Cargo.toml")
        .to_string()
}

fn installed_version(client: &mut Client) -> String {
    client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_audience'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Some answers that must hold for the comparisons to mean anything: both
/// kinds of label, a requester who sees nothing, a viewer member kept out of
/// a private app, a token requester who sees its workspace, stored rows.
fn check_meaningful(answers: &Lines, stored: &Lines) {
    let get = |key: &str| {
        answers
            .get(key)
            .unwrap_or_else(|| panic!("no answer to {key}"))
    };
    let labels = get("recent_viewers(acme, dash, 1000) as operator");
    for pseudonymous in [true, false] {
        assert!(
            labels
                .iter()
                .any(|l| l.contains(&format!("\"pseudonymous\": {pseudonymous}"))),
            "acme/dash should have viewers with pseudonymous = {pseudonymous}: {labels:?}"
        );
    }
    for key in [
        "workspace_monthly_viewers(acme, 24) as role it_upgrade_dave",
        "workspace_monthly_viewers(globex, 24) as role it_upgrade_pool",
        "recent_viewers(acme, docs, 1000) as role it_upgrade_erin",
    ] {
        assert!(
            get(key)[0].starts_with("ERROR 42704"),
            "{key} should be refused: {:?}",
            get(key)
        );
    }
    let whoami = get(&format!("whoami as token {}", data::TOKEN_SUBJECT));
    assert!(
        whoami.iter().any(|l| l.contains("initech")),
        "the token's end user should see initech: {whoami:?}"
    );
    let viewers = get("recent_viewers(initech, reports, 1000) as role it_upgrade_grace");
    assert!(
        viewers.len() > 5 && !viewers[0].starts_with("ERROR"),
        "grace should see initech/reports: {viewers:?}"
    );
    for (table, rows) in stored {
        assert!(
            !rows.is_empty(),
            "{table} is empty: the data set should fill every 0.1.0 table"
        );
        assert!(
            !rows[0].starts_with("ERROR"),
            "reading {table}: {}",
            rows[0]
        );
    }
}

#[test]
fn update_from_0_1_0_keeps_every_answer_and_equals_a_fresh_install() {
    let _roles = data::create_roles();
    let current = current_version();
    {
        let mut admin = connect("postgres");
        let row = admin
            .query_one(
                "SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_audience'),
                        EXISTS (SELECT FROM pg_available_extension_versions WHERE name = 'pg_audience' AND version = $1)",
                &[&RELEASED],
            )
            .unwrap();
        let default: Option<String> = row.get(0);
        assert_eq!(
            default.as_deref(),
            Some(current.as_str()),
            "the installed pg_audience is not the version of this working tree: install it first (bash scripts/test does)"
        );
        assert!(
            row.get::<_, bool>(1),
            "pg_audience {RELEASED} cannot be installed: scripts/lib.sh (install_extension) copies sql/released/ \
             into the server's extension directory"
        );
    }
    if current == RELEASED {
        note(&format!(
            "the version being built is {RELEASED}, the released one: the update changes nothing"
        ));
    }
    let mut problems: Vec<String> = Vec::new();
    let t0: SystemTime = connect("postgres")
        .query_one("SELECT date_trunc('second', now())", &[])
        .unwrap()
        .get(0);

    // a. A released install, used through its own API.
    let (upgraded_db, mut upgraded) =
        TestDb::with_extension_version("it_upgrade_released", Some(RELEASED));
    assert_eq!(installed_version(&mut upgraded), RELEASED);
    let loaded = data::load(&mut upgraded, t0);
    for (workspace, events) in &loaded {
        let views: i64 = upgraded
            .query_one(
                "SELECT sum(views)::bigint FROM audience.workspace_monthly_viewers($1, 24)",
                &[workspace],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            views, *events,
            "views of {workspace} in its monthly answer: not every event was stored"
        );
    }

    // b. Everything it answers and stores.
    let answers_before = capture::answers(&upgraded_db.name, data::token);
    let layout = capture::layout(&mut upgraded);
    let stored_before = capture::contents(&mut upgraded, &layout);
    check_meaningful(&answers_before, &stored_before);

    // c. The update keeps all of it.
    upgraded
        .batch_execute("ALTER EXTENSION pg_audience UPDATE")
        .unwrap_or_else(|e| {
            panic!(
                "ALTER EXTENSION pg_audience UPDATE from {RELEASED}: {}",
                capture::error_line(&e)
            )
        });
    // A new session: nothing planned before the update is reused.
    let mut upgraded = upgraded_db.connect();
    let version = installed_version(&mut upgraded);
    if version != current {
        problems.push(format!(
            "after ALTER EXTENSION pg_audience UPDATE the version is {version}, not {current}"
        ));
    }
    let answers_after = capture::answers(&upgraded_db.name, data::token);
    problems.extend(diff(
        "answers before the update",
        "answers after the update",
        &answers_before,
        &answers_after,
    ));
    let stored_after = capture::contents(&mut upgraded, &layout);
    problems.extend(diff(
        "0.1.0 tables before the update",
        "the same after the update",
        &stored_before,
        &stored_after,
    ));

    // d. The upgraded catalog is a fresh install's.
    let (_fresh_db, mut fresh) = TestDb::with_extension_version("it_upgrade_fresh", Some(&current));
    let fresh_catalog = catalog::describe(&mut fresh);
    assert!(
        fresh_catalog.contains_key("table audience_internal.view_events")
            && fresh_catalog.contains_key("function audience.record_view(text,text,text,timestamp with time zone,text,timestamp with time zone,text)"),
        "the catalog description misses objects of a fresh install: {:?}",
        fresh_catalog.keys().collect::<Vec<_>>()
    );
    let upgraded_catalog = catalog::describe(&mut upgraded);
    problems.extend(diff(
        &format!("catalog updated from {RELEASED}"),
        &format!("catalog of a fresh install of {current}"),
        &upgraded_catalog,
        &fresh_catalog,
    ));

    // e. The functions added since 0.1.0 find their rollups filled.
    let (_loaded_db, mut fresh_loaded) = TestDb::with_extension_version("it_upgrade_fresh_loaded", Some(&current));
    data::load(&mut fresh_loaded, t0);
    let since = UNIX_EPOCH + Duration::from_secs(946_684_800); // 2000-01-01
    let until = t0 + Duration::from_secs(2 * 3600);
    for (index, (signature, ..)) in usage::FUNCTIONS.iter().enumerate() {
        match (
            usage::exists(&mut upgraded, signature),
            usage::exists(&mut fresh_loaded, signature),
        ) {
            (false, false) => {
                note(&format!(
                    "{signature} does not exist yet: its answers are not compared"
                ));
                continue;
            }
            (true, true) => {}
            (up, new) => {
                problems.push(format!(
                    "{signature} exists after the update: {up}; in a fresh install: {new}"
                ));
                continue;
            }
        }
        let expected = usage::answers(&mut fresh_loaded, index, since, until);
        let errors: Vec<_> = expected
            .iter()
            .filter(|(_, rows)| rows.iter().any(|r| r.starts_with("ERROR")))
            .collect();
        if !errors.is_empty() {
            problems.push(format!("{signature} fails on a fresh install: {errors:?}"));
        }
        if expected.values().all(Vec::is_empty) {
            problems.push(format!("{signature} answers nothing about the data set on a fresh install: comparing proves nothing"));
        }
        let got = usage::answers(&mut upgraded, index, since, until);
        problems.extend(diff(
            &format!("{signature} updated from {RELEASED}"),
            "the same on a fresh install with the same events",
            &got,
            &expected,
        ));
    }

    assert!(
        problems.is_empty(),
        "{} problems:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// DROP EXTENSION removes every schema of the extension with it, whether the
/// extension was created at this version or updated to it from 0.1.0 (whose
/// control file made schema audience outside the extension).
#[test]
fn drop_extension_leaves_no_schema_behind() {
    for (name, version) in [("it_upgrade_drop_fresh", None), ("it_upgrade_drop_updated", Some("0.1.0"))] {
        let (_db, mut client) = TestDb::with_extension_version(name, version);
        if version.is_some() {
            client.batch_execute("ALTER EXTENSION pg_audience UPDATE").unwrap();
        }
        let schemas = |c: &mut Client| -> Vec<String> {
            c.query("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'audience%' ORDER BY 1", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        assert_eq!(schemas(&mut client), ["audience", "audience_ingest", "audience_internal"], "{name}");
        let members: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
                  WHERE e.extname = 'pg_audience' AND d.deptype = 'e' AND d.classid = 'pg_namespace'::regclass",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(members, 3, "{name}: the three schemas are members");
        // On Citus the coordinator's copies of the reference tables belong to
        // the schema, not to the extension: CASCADE takes them too, on every
        // node (docs/citus.md).
        let drop = if version.is_none() && !pg_audience_integration::citus_workers().is_empty() {
            "DROP EXTENSION pg_audience CASCADE"
        } else {
            "DROP EXTENSION pg_audience"
        };
        client.batch_execute(drop).unwrap();
        assert!(schemas(&mut client).is_empty(), "{name}: left {:?}", schemas(&mut client));
    }
}
