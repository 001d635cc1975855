//! Helpers shared by the integration tests. They talk, as a real client over a
//! Unix socket, to the throwaway cluster that `bash scripts/test` starts with
//! pg_audience installed, and that it describes in the environment.

use postgres::error::DbError;
use postgres::{Client, Config, NoTls};
use std::collections::BTreeMap;
use std::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `bash scripts/test`, which starts a cluster for them")
    })
}

/// A connection to `dbname` as the superuser `postgres` (trust auth on the socket).
pub fn connect(dbname: &str) -> Client {
    let port = env("PG_AUDIENCE_TEST_PORT");
    Config::new()
        // A host starting with "/" is the directory of the server's Unix socket.
        .host(&env("PG_AUDIENCE_TEST_HOST"))
        .port(
            port.parse()
                .expect("PG_AUDIENCE_TEST_PORT is a port number"),
        )
        .user("postgres")
        .dbname(dbname)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to database {dbname}: {e}"))
}

/// A PostgreSQL client program (pg_dump, pg_restore, psql) aimed at the test cluster.
pub fn pg_tool(program: &str) -> Command {
    let mut cmd = Command::new(std::path::Path::new(&env("PG_AUDIENCE_PG_BIN")).join(program));
    cmd.args([
        "-h",
        &env("PG_AUDIENCE_TEST_HOST"),
        "-p",
        &env("PG_AUDIENCE_TEST_PORT"),
        "-U",
        "postgres",
    ]);
    cmd
}

/// A database of one test's own, since tests run in parallel. It is dropped
/// when the test passes and kept for inspection when it fails; the next run
/// replaces it.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// An empty database called `name`.
    pub fn empty(name: &str) -> TestDb {
        let mut admin = connect("postgres");
        // Two statements: neither may run inside a (implicit) transaction block.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        TestDb {
            name: name.to_string(),
        }
    }

    /// A new database called `name` with pg_audience created in it, and a connection to it.
    pub fn with_extension(name: &str) -> (TestDb, Client) {
        let db = TestDb::empty(name);
        let mut client = db.connect();
        client
            .batch_execute("CREATE EXTENSION pg_audience")
            .unwrap_or_else(|e| panic!("CREATE EXTENSION pg_audience in {name}: {e}"));
        (db, client)
    }

    pub fn connect(&self) -> Client {
        connect(&self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping database {} for inspection", self.name);
            return;
        }
        // FORCE: the test's own connections may still be open.
        connect("postgres")
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .unwrap_or_else(|e| panic!("dropping database {}: {e}", self.name));
    }
}

/// Per table of schema audience_internal: its row count and a digest of its rows.
pub type Snapshot = BTreeMap<String, (i64, String)>;

/// Everything the extension stores, in a form that tells whether anything changed.
pub fn snapshot(client: &mut Client) -> Snapshot {
    let tables = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
              ORDER BY 1",
            &[],
        )
        .unwrap();
    assert!(!tables.is_empty(), "schema audience_internal has no tables");
    tables
        .iter()
        .map(|row| {
            let table: String = row.get(0);
            let sql = format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')
                   FROM audience_internal.\"{table}\" t"
            );
            let summary = client.query_one(&sql, &[]).unwrap();
            (table, (summary.get(0), summary.get(1)))
        })
        .collect()
}

/// Runs `sql`, which must fail with SQLSTATE `code` and a message containing
/// `needle`. Returns the server's error, or what went otherwise, so that a
/// table-driven test can report every failing case at once.
pub fn expect_error(
    client: &mut Client,
    sql: &str,
    code: &str,
    needle: &str,
) -> Result<DbError, String> {
    let err = match client.batch_execute(sql) {
        Ok(()) => return Err("succeeded".to_string()),
        Err(err) => err,
    };
    let db = err
        .as_db_error()
        .ok_or_else(|| format!("failed without a server error: {err}"))?;
    if db.code().code() != code {
        return Err(format!(
            "SQLSTATE {} instead of {code}: {}",
            db.code().code(),
            db.message()
        ));
    }
    if !db.message().contains(needle) {
        return Err(format!(
            "message {:?} does not contain {needle:?}",
            db.message()
        ));
    }
    Ok(db.clone())
}
