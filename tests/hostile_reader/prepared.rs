//! SET ROLE to a role the login is a member of is allowed, and then the
//! requester is the role at execution: a statement prepared as one role and
//! executed as another — even as a cached generic plan, by SQL PREPARE or at
//! protocol level — answers for the role that executes it.

use crate::fixture::{json_rows_sql, Fixture, Session, ACME};
use pg_audience_integration::on_roles;
use crate::oracle::{ActorSpec, ACTORS, AS_CAPABILITY, AS_TEAM};
use crate::probes::report;
use crate::spoofing::check_state;
use postgres::Statement;

/// A statement prepared under one role and executed after SET ROLE to
/// another (one the login is a member of) answers for the role at execution
/// — even as a cached generic plan. `switch` is sam (developer of globex) and,
/// through role `team`, tina (viewer of acme's public apps); after SET ROLE
/// team it is tina alone. SET ROLE to a capability role makes nobody.
#[test]
fn prepared_statements_answer_for_the_role_at_execution() {
    let mut fx = Fixture::new("prepared");
    let switch_spec = ACTORS.iter().find(|s| s.login == "switch").unwrap();
    let team = fx.role("team");
    let mut failures = Vec::new();
    let (mut s, probe, direct) = direct_answers(&mut fx, switch_spec, &mut failures);

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
        ("SET ROLE team", "EXECUTE as_switch".into(), &direct.team),
        ("SET ROLE team", "EXECUTE as_team".into(), &direct.team),
        ("RESET ROLE", "EXECUTE as_team".into(), &direct.switch),
        ("RESET ROLE", "EXECUTE as_switch".into(), &direct.switch),
        (
            "SET ROLE audience_reader",
            "EXECUTE as_switch".into(),
            &direct.reader,
        ),
        (
            "SET ROLE audience_reader",
            "EXECUTE as_team".into(),
            &direct.reader,
        ),
        ("RESET ROLE", "EXECUTE as_team".into(), &direct.switch),
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
    within_one_transaction(&mut s, &team, &protocol_statement, &direct, &mut failures);
    report(failures);
}

/// What `switch` reads as itself, after SET ROLE team and after SET ROLE
/// audience_reader: every view's rows and whoami as one JSON text.
struct Direct {
    switch: String,
    team: String,
    reader: String,
}

fn answer(s: &mut Session, sql: &str) -> String {
    s.client.query_one(sql, &[]).unwrap().get(0)
}

/// A session of `switch`, the one statement that reads everything (to be
/// prepared), and what it answers unprepared for each role — each checked
/// against the oracle first.
fn direct_answers(
    fx: &mut Fixture,
    switch_spec: &'static ActorSpec,
    failures: &mut Vec<String>,
) -> (Session, String, Direct) {
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
    // Every view's rows, and whoami, as one JSON text: one statement to prepare.
    let probe = format!(
        "SELECT jsonb_build_object('whoami', (SELECT jsonb_agg(w ORDER BY w.requester, w.workspace) FROM audience.whoami() w), {})::text",
        views
            .iter()
            .map(|v| format!("'{v}', (SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]') FROM ({}) r(r))", json_rows_sql(v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let switch = answer(&mut s, &probe);
    check_state(failures, "switch", "connecting", &mut s, &as_switch);
    s.client
        .batch_execute(&format!("SET ROLE \"{team}\""))
        .unwrap();
    let team = answer(&mut s, &probe);
    if s.state() != as_team {
        failures.push(format!(
            "after SET ROLE team, read {:?}, expected {as_team:?}",
            s.state()
        ));
    }
    s.client.batch_execute("SET ROLE audience_reader").unwrap();
    let reader = answer(&mut s, &probe);
    if s.state() != as_reader {
        failures.push(format!(
            "after SET ROLE audience_reader, read {:?}, expected {as_reader:?}",
            s.state()
        ));
    }
    s.client.batch_execute("RESET ROLE").unwrap();
    assert_ne!(switch, team);
    (
        s,
        probe,
        Direct {
            switch,
            team,
            reader,
        },
    )
}

/// Within one transaction: a generic plan made and cached as switch, then
/// executed after SET LOCAL ROLE team, answers for team; SET LOCAL ROLE ends
/// with its transaction, and so does its answer; SET ROLE rolled back
/// leaves switch.
fn within_one_transaction(
    s: &mut Session,
    team: &str,
    protocol_statement: &Statement,
    direct: &Direct,
    failures: &mut Vec<String>,
) {
    s.client.batch_execute("BEGIN").unwrap();
    for _ in 0..6 {
        answer(s, "EXECUTE as_switch");
        let _: String = s.client.query_one(protocol_statement, &[]).unwrap().get(0);
    }
    s.client
        .batch_execute(&format!("SET LOCAL ROLE \"{team}\""))
        .unwrap();
    let same_transaction = answer(s, "EXECUTE as_switch");
    let same_transaction_protocol: String =
        s.client.query_one(protocol_statement, &[]).unwrap().get(0);
    s.client.batch_execute("COMMIT").unwrap();
    if same_transaction != direct.team || same_transaction_protocol != direct.team {
        failures.push(format!(
            "in one transaction, after SET LOCAL ROLE team: {same_transaction} / {same_transaction_protocol}, expected {}",
            direct.team
        ));
    }
    s.client
        .batch_execute(&format!("BEGIN; SET LOCAL ROLE \"{team}\""))
        .unwrap();
    let inside = answer(s, "EXECUTE as_switch");
    s.client.batch_execute("COMMIT").unwrap();
    let outside = answer(s, "EXECUTE as_switch");
    if (inside.as_str(), outside.as_str()) != (direct.team.as_str(), direct.switch.as_str()) {
        failures.push(format!(
            "SET LOCAL ROLE team: inside {inside}, after COMMIT {outside}"
        ));
    }
    s.client
        .batch_execute(&format!("BEGIN; SET ROLE \"{team}\"; ROLLBACK"))
        .unwrap();
    let after_rollback = answer(s, "EXECUTE as_team");
    if after_rollback != direct.switch {
        failures.push(format!(
            "after BEGIN; SET ROLE team; ROLLBACK: {after_rollback}"
        ));
    }
}

/// A plan a reader prepared, run after SET ROLE to a role the login is a
/// member of but that may not read: refused for the public function or view
/// the statement names — nothing internal (a helper, the ticket) in any text
/// of the error, and no row.
#[test]
fn a_plan_run_without_read_rights_names_only_public_objects() {
    let mut fx = Fixture::new("prepared_denied");
    let victor = ACTORS.iter().find(|s| s.login == "victor").unwrap();
    let nobody = fx.role("no_rights");
    let grant = format!(
        "DROP ROLE IF EXISTS \"{nobody}\"; CREATE ROLE \"{nobody}\" NOLOGIN; GRANT \"{nobody}\" TO \"{}\"",
        fx.role(victor.login)
    );
    on_roles(&mut fx.op, &grant);
    let mut s = fx.session(victor);
    s.client
        .batch_execute(&format!(
            "SET plan_cache_mode = force_generic_plan;
             PREPARE by_function AS SELECT count(*) FROM audience.recent_viewers('{ACME}', 'acme-dash');
             PREPARE by_view AS SELECT count(*) FROM audience.recent_viewers;
             EXECUTE by_function; EXECUTE by_view;
             SET ROLE \"{nobody}\""
        ))
        .unwrap();
    let mut failures = Vec::new();
    for (statement, names) in [
        ("EXECUTE by_function", "permission denied for function recent_viewers"),
        ("EXECUTE by_view", "permission denied for view recent_viewers"),
    ] {
        for run in 0..3 {
            match s.client.simple_query(statement) {
                Err(e) => {
                    let db = e.as_db_error().expect("a server error");
                    let texts: Vec<&str> = [Some(db.message()), db.detail(), db.hint(), db.where_()]
                        .into_iter()
                        .flatten()
                        .collect();
                    if db.code().code() != "42501" || db.message() != names {
                        failures.push(format!("{statement} (run {run}): {} {:?}", db.code().code(), db.message()));
                    }
                    for text in texts {
                        if ["audience_internal", "ticket", "_for"].iter().any(|w| text.contains(w)) {
                            failures.push(format!("{statement} (run {run}) shows an internal name: {text:?}"));
                        }
                    }
                }
                Ok(_) => failures.push(format!("{statement} (run {run}) answered without read rights")),
            }
        }
    }
    report(failures);
}
