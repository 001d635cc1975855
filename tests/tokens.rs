//! docs/spec.md §2, §7: a request token seen by someone else is worth nothing. An
//! application shares one pooled database role among its end users and says
//! who each transaction runs for with `audience.authenticate(token)`. Another
//! session of that role can read pg_stat_activity, and an operator reads the
//! server log; neither may hand them a token they can use:
//! - passed as a bind parameter, the token is not in pg_stat_activity;
//! - a token is good once: copied from anywhere and replayed, it is refused;
//! - a refused token is not written to the server log with its statement;
//! - rolling back to a savepoint undoes the authenticate made after it.

use pg_audience_integration::{connect_as, epoch_seconds, on_roles, sign_token, Roles, TestDb};
use postgres::Client;
use serde_json::json;

const SECRET: &str = "tokens-test-platform-secret-0123456789abcdef";
const ADA: &str = "ada@acme.example";

fn token(sub: &str) -> String {
    sign_token(
        jsonwebtoken::Algorithm::HS256,
        &json!({"sub": sub, "exp": epoch_seconds() + 600}),
        SECRET.as_bytes(),
    )
}

/// (requester, resolved_by) of the first whoami row.
fn whoami(client: &mut impl postgres::GenericClient) -> (Option<String>, String) {
    let row = client
        .query_one("SELECT requester, resolved_by FROM audience.whoami() LIMIT 1", &[])
        .unwrap();
    (row.get(0), row.get(1))
}

fn nobody() -> (Option<String>, String) {
    (None, "nobody".to_string())
}

fn ada() -> (Option<String>, String) {
    (Some(ADA.to_string()), "token".to_string())
}

fn sqlstate(e: &postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// Database `name` with workspace acme and its admin ada, and the pooled
/// login role `name`_pool that the application shares among end users.
fn set_up(name: &str) -> (Roles, TestDb, Client, String) {
    let pool = format!("{name}_pool");
    let roles = Roles::create(&[(pool.clone(), "LOGIN")]);
    let (db, mut op) = TestDb::with_extension(name);
    on_roles(&mut op, &format!("GRANT audience_reader TO {pool}"));
    op.batch_execute(&format!(
        "SELECT audience.set_token_secret('{SECRET}');
         SELECT audience.create_workspace('acme');
         SELECT audience.create_app('acme', 'dash');
         SELECT audience.add_member('acme', '{ADA}', 'admin');"
    ))
    .unwrap();
    (roles, db, op, pool)
}

#[test]
fn a_token_seen_by_another_session_is_worth_nothing() {
    let (_roles, db, _op, pool) = set_up("it_tokens_seen");
    let mut victim = connect_as(&db.name, &pool);
    let mut other = connect_as(&db.name, &pool);
    let victim_pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let what_other_sees = |other: &mut Client| -> String {
        other
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&victim_pid])
            .unwrap()
            .get(0)
    };

    // As a bind parameter (the extended protocol), the token stays out of
    // the statement text that pg_stat_activity shows.
    let bound = token(ADA);
    let mut tx = victim.transaction().unwrap();
    tx.query_one("SELECT audience.authenticate($1)", &[&bound]).unwrap();
    let seen = what_other_sees(&mut other);
    assert!(seen.contains("authenticate($1)") && !seen.contains(&bound), "pg_stat_activity shows {seen:?}");
    assert_eq!(whoami(&mut tx), ada());
    tx.commit().unwrap();

    // As a literal it is there to read; once its transaction is over, the
    // copy is refused, and the other session stays nobody.
    let literal = token(ADA);
    let mut tx = victim.transaction().unwrap();
    tx.batch_execute(&format!("SELECT audience.authenticate('{literal}')")).unwrap();
    let seen = what_other_sees(&mut other);
    assert!(seen.contains(&literal), "the literal should be visible: {seen:?}");
    tx.commit().unwrap();
    let mut tx = other.transaction().unwrap();
    match tx.query_one("SELECT audience.authenticate($1)", &[&literal]) {
        Err(e) if sqlstate(&e) == "28000" => {
            let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
            assert!(message.contains("already been used"), "{message}");
        }
        other => panic!("a replayed token: {other:?}"),
    }
    drop(tx);
    assert_eq!(whoami(&mut other), nobody());

    // Good once also for the session that used it.
    let mut tx = victim.transaction().unwrap();
    let again = tx.query_one("SELECT audience.authenticate($1)", &[&bound]);
    assert_eq!(again.as_ref().map_err(sqlstate).err().as_deref(), Some("28000"), "{again:?}");
}

#[test]
fn rolling_back_to_a_savepoint_undoes_authenticate() {
    let (_roles, db, _op, pool) = set_up("it_tokens_savepoint");
    let mut client = connect_as(&db.name, &pool);
    let first = token(ADA);
    let mut tx = client.transaction().unwrap();
    let mut savepoint = tx.savepoint("before_token").unwrap();
    savepoint.query_one("SELECT audience.authenticate($1)", &[&first]).unwrap();
    assert_eq!(whoami(&mut savepoint), ada());
    savepoint.rollback().unwrap();
    assert_eq!(whoami(&mut tx), nobody(), "after ROLLBACK TO SAVEPOINT");
    // The rolled-back use spent nothing: the token is still good, once.
    tx.query_one("SELECT audience.authenticate($1)", &[&first]).unwrap();
    assert_eq!(whoami(&mut tx), ada());
    // A released savepoint keeps what was done in it; a later one rolled
    // back restores the requester from before it.
    let mut released = tx.savepoint("released").unwrap();
    let refused = released.query_one("SELECT audience.authenticate($1)", &[&first]);
    assert_eq!(refused.map_err(|e| sqlstate(&e)).err().as_deref(), Some("28000"));
    released.rollback().unwrap();
    assert_eq!(whoami(&mut tx), ada(), "the refusal was rolled back with its savepoint");
    tx.commit().unwrap();
}

#[test]
fn a_refused_token_is_not_in_the_server_log() {
    let (_roles, db, _op, pool) = set_up("it_tokens_log");
    let log_path = std::env::var("PG_AUDIENCE_TEST_LOG")
        .expect("PG_AUDIENCE_TEST_LOG is not set: run the integration tests with `bash scripts/test`");
    let mut client = connect_as(&db.name, &pool);
    let forged = sign_token(
        jsonwebtoken::Algorithm::HS256,
        &json!({"sub": ADA, "exp": epoch_seconds() + 600}),
        b"a-guess-at-the-platform-secret-0123456789ab",
    );
    let used = token(ADA);
    client.batch_execute(&format!("SELECT audience.authenticate('{used}')")).unwrap();
    // Only what the server writes from here on is read.
    let start = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    // A statement that fails on its own is logged with its text: the marker
    // proves the log is the one this server writes, and is written now.
    let marker = format!("tokens-test-marker-{}", epoch_seconds());
    for literal in [&forged, &used] {
        let e = client
            .batch_execute(&format!("SELECT audience.authenticate('{literal}')"))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "28000", "{e}");
    }
    client.batch_execute(&format!("SELECT 1/0 AS \"{marker}\"")).unwrap_err();
    let log = wait_for_log(&log_path, start, &marker);
    assert!(log.contains("invalid argument \"token\""), "the refusals are logged, without the token");
    for literal in [&forged, &used] {
        let payload = literal.split('.').nth(1).unwrap();
        assert!(!log.contains(payload), "the server log shows a refused token");
    }
}

/// The server log from byte `start` on, once it holds `marker` (the logging
/// of a statement reaches the file right after the error is sent).
fn wait_for_log(path: &str, start: u64, marker: &str) -> String {
    use std::io::{Read, Seek, SeekFrom};
    for _ in 0..100 {
        let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        file.seek(SeekFrom::Start(start)).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        let log = String::from_utf8_lossy(&bytes).into_owned();
        if log.contains(marker) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{path} never showed the marker statement");
}
