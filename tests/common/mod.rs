//! Helpers shared by the integration tests. They talk, as a real client over a
//! Unix socket, to the throwaway cluster that `bash scripts/test` starts with
//! pg_audience installed, and that it describes in the environment.

use postgres::error::DbError;
use postgres::{Client, Config, NoTls, Transaction};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `bash scripts/test`, which starts a cluster for them")
    })
}

/// The directory of the test cluster's Unix socket.
pub fn test_host() -> String {
    env("PG_AUDIENCE_TEST_HOST")
}

/// The test cluster's port (which names its socket file).
pub fn test_port() -> u16 {
    env("PG_AUDIENCE_TEST_PORT")
        .parse()
        .expect("PG_AUDIENCE_TEST_PORT is a port number")
}

/// The Citus workers of the test cluster, when it is a Citus coordinator
/// (scripts/citus-test): each one's socket directory and port, from
/// PG_AUDIENCE_TEST_CITUS_WORKERS ("dir:port,dir:port"); none on one server.
pub fn citus_workers() -> Vec<(String, u16)> {
    std::env::var("PG_AUDIENCE_TEST_CITUS_WORKERS")
        .unwrap_or_default()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (host, port) = w.rsplit_once(':').expect("PG_AUDIENCE_TEST_CITUS_WORKERS: dir:port,...");
            (host.to_string(), port.parse().expect("a worker's port is a number"))
        })
        .collect()
}

/// The test cluster's server, then its Citus workers if it has any: each
/// one's socket directory and port, and whether it is a worker.
fn nodes() -> Vec<(String, u16, bool)> {
    std::iter::once((test_host(), test_port(), false))
        .chain(citus_workers().into_iter().map(|(host, port)| (host, port, true)))
        .collect()
}

/// A connection to a node's `postgres` database as the superuser.
fn node_admin(host: &str, port: u16) -> Client {
    config(host, port, "postgres", "postgres")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the node on {host}:{port}: {e}"))
}

/// A connection to `dbname` as the superuser `postgres` (trust auth on the socket).
pub fn connect(dbname: &str) -> Client {
    connect_as(dbname, "postgres")
}

/// A connection to `dbname` as the login role `user` (trust auth on the socket).
pub fn connect_as(dbname: &str, user: &str) -> Client {
    config(&test_host(), test_port(), dbname, user)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to database {dbname} as {user}: {e}"))
}

/// The NOTICEs (and other non-error messages) a connection has received, in order.
pub type Notices = Arc<Mutex<Vec<DbError>>>;

/// Like `connect_as`, keeping every message the server sends besides results
/// (NOTICE, WARNING, DEBUG...), so that a test can tell what a query let slip.
pub fn connect_with_notices(dbname: &str, user: &str) -> (Client, Notices) {
    let notices: Notices = Arc::default();
    let sink = Arc::clone(&notices);
    let client = config(&test_host(), test_port(), dbname, user)
        .notice_callback(move |notice| sink.lock().unwrap().push(notice))
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to database {dbname} as {user}: {e}"));
    (client, notices)
}

/// A client configuration for a server listening on the Unix socket in `socket_dir`.
pub fn config(socket_dir: &str, port: u16, dbname: &str, user: &str) -> Config {
    let mut config = Config::new();
    // A host starting with "/" is the directory of the server's Unix socket.
    config.host(socket_dir).port(port).user(user).dbname(dbname);
    config
}

/// Database roles of one test's own, made afresh (roles are cluster-wide and
/// tests run in parallel, so each test names its own). Dropped when the guard
/// is, which must be after the test's database (the roles own objects there):
/// hold the guard in a field declared after the `TestDb`, or in a variable
/// declared before it. Kept, like the database, when the test fails.
pub struct Roles {
    pub names: Vec<String>,
}

impl Roles {
    /// Creates each `(name, options)` role, e.g. `("it_x_reader", "LOGIN")`,
    /// dropping a leftover of an earlier failed run first. On Citus, on
    /// every node: a member's role is given by name on the worker that
    /// stores the member.
    pub fn create(specs: &[(String, &str)]) -> Roles {
        for (host, port, _) in nodes() {
            let mut admin = node_admin(&host, port);
            for (name, options) in specs {
                admin
                    .batch_execute(&format!(
                        "DROP ROLE IF EXISTS \"{name}\"; CREATE ROLE \"{name}\" {options}"
                    ))
                    .unwrap_or_else(|e| panic!("creating role {name}: {e}"));
            }
        }
        Roles {
            names: specs.iter().map(|(name, _)| name.clone()).collect(),
        }
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping roles {} for inspection", self.names.join(", "));
            return;
        }
        for (host, port, _) in nodes() {
            let mut admin = node_admin(&host, port);
            for name in &self.names {
                admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                    .unwrap_or_else(|e| panic!("dropping role {name}: {e}"));
            }
        }
    }
}

/// Superuser connections to `dbname` where its rows are: on Citus every
/// worker, with the shards shown in the catalog (Citus hides them from
/// clients; the coordinator's tables are empty shells), else the server.
pub fn connect_where_rows_are(dbname: &str) -> Vec<Client> {
    let workers = citus_workers();
    if workers.is_empty() {
        return vec![connect(dbname)];
    }
    workers
        .iter()
        .map(|(host, port)| {
            let mut c = config(host, *port, dbname, "postgres")
                .connect(NoTls)
                .unwrap_or_else(|e| panic!("cannot connect to {dbname} on the worker {host}:{port}: {e}"));
            c.batch_execute("SET citus.show_shards_for_app_name_prefixes = '*'").unwrap();
            c
        })
        .collect()
}

/// Runs `sql`, statements about roles (`GRANT role TO role`), on `client`
/// and, on Citus, on every worker too: a worker checks the privileges of
/// what a login runs there (a COPY of a table, for one), and the roles of
/// these tests, made outside any database with Citus, are not roles whose
/// grants Citus forwards.
pub fn on_roles(client: &mut Client, sql: &str) {
    client.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    for (host, port) in citus_workers() {
        node_admin(&host, port)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql} on the worker {host}:{port}: {e}"));
    }
}

/// Seconds since the Unix epoch, for token claims.
pub fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token id (claim jti) no other token of this test run carries, as a
/// platform mints one per request.
pub fn fresh_token_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// A JWT with `claims`, signed with `secret` by `algorithm` (HS256 is what
/// audience.authenticate accepts). A token is good once, so each gets a
/// fresh `jti` unless `claims` has one (`"jti": null` leaves it out).
pub fn sign_token(
    algorithm: jsonwebtoken::Algorithm,
    claims: &serde_json::Value,
    secret: &[u8],
) -> String {
    let mut claims = claims.clone();
    if let Some(map) = claims.as_object_mut() {
        match map.get("jti") {
            None => {
                map.insert("jti".into(), fresh_token_id().into());
            }
            Some(serde_json::Value::Null) => {
                map.remove("jti");
            }
            Some(_) => {}
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("signing a token")
}

/// An unsigned JWT: header `{"alg":"none","typ":"JWT"}`, `claims`, and an empty signature.
pub fn unsigned_token(claims: &serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
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

static EXTENSION_LOCK: Mutex<()> = Mutex::new(());

/// A database of one test's own, since tests run in parallel. It is dropped
/// when the test passes and kept for inspection when it fails; the next run
/// replaces it.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// An empty database called `name`.
    pub fn empty(name: &str) -> TestDb {
        // On Citus (scripts/citus-test), the same database on every worker,
        // with Citus in it. One test at a time: CREATE EXTENSION citus in two
        // databases of a node at once can collide ("tuple concurrently
        // updated"), and fail the joining of its node.
        let _one_at_a_time = EXTENSION_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (host, port, worker) in nodes() {
            let mut admin = node_admin(&host, port);
            // Two statements: neither may run inside a (implicit) transaction block.
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .unwrap();
            if worker {
                config(&host, port, name, "postgres")
                    .connect(NoTls)
                    .unwrap()
                    .batch_execute("CREATE EXTENSION citus")
                    .unwrap();
            }
        }
        TestDb {
            name: name.to_string(),
        }
    }

    /// A new database called `name` with pg_audience created in it, and a connection to it.
    pub fn with_extension(name: &str) -> (TestDb, Client) {
        TestDb::with_extension_version(name, None)
    }

    /// Like `with_extension`, at an installed `version` of the extension
    /// (None: the default version of the control file).
    pub fn with_extension_version(name: &str, version: Option<&str>) -> (TestDb, Client) {
        let db = TestDb::empty(name);
        let mut client = db.connect();
        let sql = match version {
            Some(version) => format!("CREATE EXTENSION pg_audience VERSION '{version}'"),
            None => "CREATE EXTENSION pg_audience".to_string(),
        };
        {
            // CREATE EXTENSION creates or comments on the cluster-wide
            // capability roles, and on Citus the joining of the workers
            // writes on them: two at once in parallel tests of one binary
            // could collide ("tuple concurrently updated").
            let _one_at_a_time = EXTENSION_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let workers = citus_workers();
            if !workers.is_empty() {
                let mut join = format!(
                    "CREATE EXTENSION citus; SELECT citus_set_coordinator_host('{}', {});",
                    test_host(),
                    test_port()
                );
                for (host, port) in &workers {
                    join.push_str(&format!("SELECT citus_add_node('{host}', {port});"));
                }
                client.batch_execute(&join).unwrap_or_else(|e| panic!("joining the Citus workers in {name}: {e:?}"));
            }
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql} in {name}: {e}"));
        }
        // Only the current version is distributed: 0.1.0 cannot be (Citus
        // refuses its policies), and a database is distributed once updated.
        // A version named explicitly keeps the database on the coordinator,
        // as the update tests, which compare catalogs, want.
        if !citus_workers().is_empty() && version.is_none() {
            client
                .batch_execute("SELECT audience.distribute()")
                .unwrap_or_else(|e| panic!("distributing the tables of {name}: {e}"));
        }
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
        for (host, port, _) in nodes() {
            config(&host, port, "postgres", "postgres")
                .connect(NoTls)
                .and_then(|mut admin| {
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
                })
                .unwrap_or_else(|e| panic!("dropping database {} on {host}: {e}", self.name));
        }
    }
}

/// Runs `sql` (one statement or several) in a savepoint of `tx`, released if
/// it succeeds and rolled back if it fails, so that an expected error leaves
/// `tx` usable. Returns the first column of every row as text ("NULL" for a
/// NULL), or the error.
pub fn attempt(tx: &mut Transaction, sql: &str) -> Result<Vec<String>, postgres::Error> {
    let mut sp = tx.transaction()?;
    let result = sp.simple_query(sql).map(|messages| {
        messages
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .collect()
    });
    if result.is_ok() {
        sp.commit()?;
    }
    result
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

/// Per workspace and rollup table that differs from its rebuild from the raw
/// events (`audience_internal.rollups_vs_rebuild`): how many rows only the
/// kept rollup has, how many only the rebuild has, and a few of them. Run as
/// the superuser; one workspace per transaction, each rebuild undone, so the
/// rollups the writers kept are what later checks see.
pub fn rollups_differing_from_rebuild(op: &mut Client) -> Vec<String> {
    let workspaces: Vec<(i64, String)> = op
        .query("SELECT workspace_id, slug FROM audience_internal.workspaces ORDER BY workspace_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut problems = Vec::new();
    for (id, slug) in workspaces {
        for row in op
            .query(
                "SELECT rollup, kept_only, rebuilt_only, sample::text
                   FROM audience_internal.rollups_vs_rebuild(ARRAY[$1::bigint])",
                &[&id],
            )
            .unwrap()
        {
            let (rollup, kept, rebuilt, sample): (String, i64, i64, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            problems.push(format!(
                "workspace {slug}: rollup {rollup} differs from its rebuild: {kept} rows only kept, {rebuilt} only rebuilt\n    {sample}"
            ));
        }
    }
    problems
}
