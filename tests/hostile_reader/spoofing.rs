//! Who the requester is cannot be talked into being someone else: not by
//! settings anyone can SET (GUCs, set_config), nor by objects shadowing the
//! internals on the caller's search_path, nor by SET ROLE or SET SESSION
//! AUTHORIZATION to a role the login is not a member of. (SET ROLE to a role
//! it is a member of: see prepared.rs.)

use crate::fixture::{Fixture, Session, Tok, ACME, ALICE, DANA, GLOBEX};
use crate::oracle::{State, ACTORS};
use crate::probes::{expect_denied, leaked, report, sqlstate, state_in, truncate};
use pg_audience_integration::attempt;
use serde_json::json;
use std::collections::BTreeSet;

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

/// Settings that anyone can SET never decide who the requester is. Each actor sets every plausible setting, at
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
pub fn check_state(
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

/// Which switch of identity a test tries.
#[derive(Clone, Copy)]
enum Switch {
    Role,
    SessionAuthorization,
}

/// SET ROLE to a role the login is not a member of is refused — bare, in a
/// transaction rolled back, as SET LOCAL, and through set_config — and
/// leaves the actor exactly what it was. To a role it is a member of, it
/// is allowed, and reads no more.
#[test]
fn set_role_is_refused_and_changes_nothing() {
    let mut fx = Fixture::new("setrole");
    let mut failures = Vec::new();
    switches_are_refused(&mut fx, Switch::Role, &mut failures);
    as_pg_read_all_data_the_analyst_reads_nothing(&mut fx, &mut failures);
    report(failures);
}

/// SET SESSION AUTHORIZATION to anyone else is refused — bare, in a
/// transaction rolled back, and through set_config — and leaves the actor
/// exactly what it was.
#[test]
fn set_session_authorization_is_refused_and_changes_nothing() {
    let mut fx = Fixture::new("setsession");
    let mut failures = Vec::new();
    switches_are_refused(&mut fx, Switch::SessionAuthorization, &mut failures);
    report(failures);
}

/// Every actor tries `switch` to every role it is not a member of; each is
/// refused, and after each the actor is what it was and reads what it read.
fn switches_are_refused(fx: &mut Fixture, switch: Switch, failures: &mut Vec<String>) {
    // Every role but the capability role audience_reader, which every
    // login holds.
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
                // Allowed: switch → team (see prepared.rs), analyst →
                // pg_read_all_data (see as_pg_read_all_data_the_analyst_reads_nothing).
                continue;
            }
            for (step, statements) in switch_steps(switch, target, first_of_login) {
                for sql in &statements {
                    let r = s.client.batch_execute(sql);
                    if sql.starts_with("BEGIN")
                        || sql.starts_with("ROLLBACK")
                        || sql.starts_with("COMMIT")
                    {
                        r.unwrap_or_else(|e| panic!("{who}: {sql}: {e}"));
                    } else {
                        denials += 1;
                        expect_denied(failures, &who, sql, r);
                    }
                }
                // A refused statement inside a transaction leaves it aborted
                // until the ROLLBACK/COMMIT above, which rolls back.
                check_state(failures, &who, &step, &mut s, &expected);
            }
        }
        // Harmless resets are allowed and change nothing either.
        s.client
            .batch_execute("RESET ROLE; SET ROLE NONE; RESET SESSION AUTHORIZATION")
            .unwrap();
        check_state(
            failures,
            &who,
            "RESET ROLE; SET ROLE NONE; RESET SESSION AUTHORIZATION",
            &mut s,
            &expected,
        );
    }
    assert!(denials > 100, "only {denials} refusals were tried");
}

/// The ways of `switch`ing to `target`, each a step of statements: bare;
/// and, once per login (the token actors share one), in a transaction
/// rolled back, as SET LOCAL (a role only), and through set_config.
fn switch_steps(switch: Switch, target: &str, first_of_login: bool) -> Vec<(String, Vec<String>)> {
    let (bare, setting) = match switch {
        Switch::Role => ("SET ROLE", "role"),
        Switch::SessionAuthorization => ("SET SESSION AUTHORIZATION", "session_authorization"),
    };
    let mut steps: Vec<(String, Vec<String>)> = vec![(
        format!("{bare} {target}"),
        vec![format!("{bare} \"{target}\"")],
    )];
    if first_of_login {
        steps.push((
            format!("BEGIN; {bare} {target}; ROLLBACK"),
            vec![
                "BEGIN".into(),
                format!("{bare} \"{target}\""),
                "ROLLBACK".into(),
            ],
        ));
        if let Switch::Role = switch {
            steps.push((
                format!("BEGIN; SET LOCAL ROLE {target}; COMMIT"),
                vec![
                    "BEGIN".into(),
                    format!("SET LOCAL ROLE \"{target}\""),
                    "COMMIT".into(),
                ],
            ));
        }
        steps.push((
            format!("set_config('{setting}', {target})"),
            vec![format!("SELECT set_config('{setting}', '{target}', false)")],
        ));
    }
    steps
}

/// The analyst may SET ROLE pg_read_all_data, a role it is a member of; as
/// that role alone (no member, not even audience_reader) it reads no row of
/// a view or of a table of audience_internal, and no sequence holds anything
/// hidden.
fn as_pg_read_all_data_the_analyst_reads_nothing(fx: &mut Fixture, failures: &mut Vec<String>) {
    let spec = ACTORS.iter().find(|s| s.login == "analyst").unwrap();
    let hidden = fx.hidden_strings(spec);
    let mut s = fx.session(spec);
    let who = format!("{} after SET ROLE pg_read_all_data", s.label());
    let mut tx = s.client.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE pg_read_all_data").unwrap();
    let relations = fx
        .catalog
        .views
        .iter()
        .map(|v| (format!("audience.\"{}\"", v.name), "v".to_string()))
        .chain(
            fx.catalog
                .internal_relations
                .iter()
                .map(|(rel, kind)| (format!("audience_internal.\"{rel}\""), kind.clone())),
        );
    for (rel, kind) in relations {
        // A sequence's one row has no composite type to print whole.
        let sql = if kind == "S" {
            format!("SELECT format('%s %s %s', last_value, log_cnt, is_called) FROM {rel}")
        } else {
            format!("SELECT t::text FROM {rel} t")
        };
        match attempt(&mut tx, &sql) {
            Err(e) if sqlstate(&e) == "42501" => {}
            Ok(rows) if rows.is_empty() => {}
            Ok(rows) if kind == "S" && leaked(&rows.join("\n"), &hidden).is_empty() => {}
            other => failures.push(format!(
                "{who}: SELECT from {rel}: {}",
                truncate(&format!("{other:?}"))
            )),
        }
    }
}
