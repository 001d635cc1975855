//! A request token says who one transaction runs for. Bad tokens — forged,
//! expired, unsigned, HS512, tampered — make nobody the requester and tell
//! nothing; a valid one makes its subject the requester until the
//! transaction ends; it names a member, never a role, and wins over the
//! role of the connection; membership is judged when asked, and a rotated
//! secret voids the tokens signed with the old one.

use crate::fixture::{
    valid_token, Fixture, Tok, ACME, ALICE, DANA, GARY, GLOBEX, IVY, TOKEN_SECRET, VICTOR,
    WRONG_SECRET,
};
use crate::oracle::{ActorSpec, State, ACTORS};
use crate::probes::{error_text, report, sqlstate, state_in};
use pg_audience_integration::attempt;
use postgres::Client;

/// A statement of a prelude that failed: (its SQL, SQLSTATE, error).
type Refused = (String, String, String);

/// What the requester of a new transaction reads after `prelude`, or the
/// first statement of it that failed.
fn read(client: &mut Client, prelude: &[String], views: &[String]) -> Result<State, Refused> {
    let mut tx = client.transaction().unwrap();
    for sql in prelude {
        if let Err(e) = attempt(&mut tx, sql) {
            return Err((sql.clone(), sqlstate(&e), e.to_string()));
        }
    }
    Ok(state_in(&mut tx, views))
}

fn auth(token: &str) -> String {
    format!("SELECT audience.authenticate('{token}')")
}

/// A token is good once: each use gets its own.
fn alice() -> String {
    Tok::Valid(ALICE, None).mint().unwrap()
}

fn pooled_spec() -> &'static ActorSpec {
    ACTORS
        .iter()
        .find(|s| s.login == "pooled" && matches!(s.token, Tok::None))
        .unwrap()
}

/// Bad tokens make no requester, in the same transaction and after; a valid
/// token's requester ends with its transaction, also inside a DO block that
/// commits; a used token is refused; a token limited to a workspace sees
/// only that one.
#[test]
fn tokens_set_the_requester_for_their_transaction_only() {
    let mut fx = Fixture::new("tokens");
    let nobody = fx.expected_state(pooled_spec(), &fx.role("pooled"));
    let alice_spec = ACTORS
        .iter()
        .find(|s| matches!(s.token, Tok::Valid(ALICE, None)))
        .unwrap();
    let as_alice = fx.expected_state(alice_spec, &fx.role("pooled"));
    let views: Vec<String> = nobody.views.keys().cloned().collect();
    let mut failures = Vec::new();
    let mut s = fx.session(pooled_spec());

    // A valid token is the positive control.
    match read(&mut s.client, &[auth(&alice())], &views) {
        Ok(st) if st == as_alice => {}
        other => failures.push(format!("alice's token: {other:?}")),
    }
    bad_tokens_make_no_requester(&mut s.client, &views, &nobody, &as_alice, &mut failures);
    // The requester ends with its transaction: committed, rolled back, or
    // autocommitted on its own.
    for (how, sql) in [
        ("COMMIT", format!("BEGIN; {}; COMMIT", auth(&alice()))),
        ("ROLLBACK", format!("BEGIN; {}; ROLLBACK", auth(&alice()))),
        ("autocommit", auth(&alice())),
    ] {
        s.client.batch_execute(&sql).unwrap();
        match read(&mut s.client, &[], &views) {
            Ok(st) if st == nobody => {}
            other => failures.push(format!(
                "after authenticate and {how}: {other:?}, expected nobody"
            )),
        }
    }
    // A DO block that commits starts a new transaction: the requester is gone.
    s.notices.lock().unwrap().clear();
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
    let said: Vec<String> = s
        .notices
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
    // In a later transaction, a fresh token makes alice the requester
    // again, for that transaction.
    match read(&mut s.client, &[auth(&alice())], &views) {
        Ok(st) if st == as_alice => {}
        other => failures.push(format!("alice's token again: {other:?}")),
    }
    // A token used in a committed transaction, presented again, is refused
    // (a use rolled back spends nothing: see tests/tokens.rs).
    let used = alice();
    s.client
        .batch_execute(&format!("BEGIN; {}; COMMIT", auth(&used)))
        .unwrap();
    match read(&mut s.client, &[auth(&used)], &views) {
        Err((sql, code, _)) if sql == auth(&used) && code == "28000" => {}
        other => failures.push(format!("alice's token, used before: {other:?}")),
    }
    // Limited to globex, dana cannot read acme even by naming it.
    let dana = Tok::Valid(DANA, Some(GLOBEX)).mint().unwrap();
    let acme = format!("SELECT * FROM audience.recent_viewers('{ACME}', 'acme-dash')");
    match read(&mut s.client, &[auth(&dana), acme.clone()], &views) {
        Err((sql, code, _)) if sql == acme && code == "42704" => {}
        other => failures.push(format!("dana's globex token reading acme: {other:?}")),
    }
    report(failures);
}

/// Each bad token: 28000, no identity or secret in the error, and no
/// requester made by it. Refused in a savepoint that is rolled back, it
/// leaves the requester from before that savepoint (as tests/tokens.rs
/// states): nobody, or alice when her valid token was accepted earlier in
/// the transaction. (Every bad token names alice: the first case tells a
/// refusal from an acceptance.)
fn bad_tokens_make_no_requester(
    client: &mut Client,
    views: &[String],
    nobody: &State,
    as_alice: &State,
    failures: &mut Vec<String>,
) {
    for bad in [
        Tok::Forged,
        Tok::Expired,
        Tok::AlgNone,
        Tok::Hs512,
        Tok::Tampered,
    ] {
        let token = bad.mint().unwrap();
        for prelude in [vec![], vec![auth(&alice())]] {
            let mut tx = client.transaction().unwrap();
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
            let st = state_in(&mut tx, views);
            let (want, who) = if prelude.is_empty() {
                (nobody, "nobody")
            } else {
                (as_alice, "alice")
            };
            if &st != want {
                failures.push(format!(
                    "{bad:?} after {prelude:?}: read {st:?}, expected {who}"
                ));
            }
        }
    }
}

/// A token wins over the role; the operator presenting a token is that end
/// user only; a token names a member, never a role; membership is judged
/// when asked; after the secret is rotated, tokens signed with the old one
/// are refused.
#[test]
fn a_token_names_a_member_judged_when_asked() {
    let mut fx = Fixture::new("tokenmember");
    let gary_spec = ACTORS.iter().find(|s| s.login == "gary").unwrap();
    let gary_views = fx.expected_views(gary_spec);
    let views: Vec<String> = gary_views.keys().cloned().collect();
    let mut failures = Vec::new();

    // Victor presenting gary's token is gary, as a token resolves him.
    let victor_spec = ACTORS.iter().find(|s| s.login == "victor").unwrap();
    let mut v = fx.session(victor_spec);
    let as_gary = State {
        whoami: vec![(
            Some(GARY.to_string()),
            "token".to_string(),
            Some(GLOBEX.to_string()),
            Some("developer".to_string()),
        )],
        views: gary_views,
    };
    let gary = Tok::Valid(GARY, None).mint().unwrap();
    match read(&mut v.client, &[auth(&gary)], &views) {
        Ok(st) if st == as_gary => {}
        other => failures.push(format!("victor with gary's token: {other:?}")),
    }
    drop(v);
    // The operator presenting an invited viewer's token is that viewer: nothing.
    let nothing_for = |sub: &str, st: &State| {
        st.views.values().all(Vec::is_empty)
            && st.whoami == vec![(Some(sub.to_string()), "token".to_string(), None, None)]
    };
    let ivy = Tok::Valid(IVY, None).mint().unwrap();
    match read(&mut fx.op, &[auth(&ivy)], &views) {
        Ok(st) if nothing_for(IVY, &st) => {}
        other => failures.push(format!("the operator with ivy's token: {other:?}")),
    }
    // A token whose subject is the superuser's, a capability role's or a
    // mapped role's name is nobody.
    let mut p = fx.session(pooled_spec());
    for sub in [
        "postgres".to_string(),
        "audience_manager".to_string(),
        fx.role("victor"),
    ] {
        let t = valid_token(&sub, None);
        match read(&mut p.client, &[auth(&t)], &views) {
            Ok(st) if nothing_for(&sub, &st) => {}
            other => failures.push(format!("a token for {sub}: {other:?}")),
        }
    }
    // Alice's token, still valid, sees nothing once she has left acme.
    fx.op
        .execute("SELECT audience.remove_member($1, $2)", &[&ACME, &ALICE])
        .unwrap();
    match read(&mut p.client, &[auth(&alice())], &views) {
        Ok(st) if nothing_for(ALICE, &st) => {}
        other => failures.push(format!("alice's token after she left acme: {other:?}")),
    }
    fx.op
        .execute("SELECT audience.set_token_secret($1)", &[&WRONG_SECRET])
        .unwrap();
    let gary_again = Tok::Valid(GARY, None).mint().unwrap(); // signed with TOKEN_SECRET
    match read(&mut p.client, &[auth(&gary_again)], &views) {
        Err((sql, code, _)) if sql == auth(&gary_again) && code == "28000" => {}
        other => failures.push(format!(
            "a token signed with the replaced secret: {other:?}"
        )),
    }
    report(failures);
}
