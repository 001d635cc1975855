//! docs/spec.md §4: `audience.authenticate` "works through a transaction-pooling
//! PgBouncer". Two end users of one application, each on their own client
//! connection to a real PgBouncer (Debian's package) in transaction pooling
//! mode with ONE server connection, interleave their transactions on that
//! server connection: each sees only its own analytics, and a transaction
//! that does not authenticate sees nothing — the requester of the previous
//! transaction on the server connection never carries over.

use jsonwebtoken::Algorithm;
use pg_audience_integration::{
    config, epoch_seconds, on_roles, sign_token, test_host, test_port, Roles, TestDb,
};
use postgres::{Client, NoTls};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
const DB: &str = "it_pgbouncer";
const APP_ROLE: &str = "it_pgbouncer_app";
const SECRET: &str = "pgbouncer-test-platform-token-secret-0123456789";
const ALICE: &str = "alice@acme.example";
const GARY: &str = "gary@globex.example";

/// A PgBouncer of the test's own, listening only on a Unix socket in a
/// directory of its own, stopped when dropped (also when the test fails).
struct PgBouncer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl PgBouncer {
    /// Transaction pooling, one server connection for every client, in
    /// front of `dbname` on the test cluster; `user` is the only user.
    fn start(dbname: &str, user: &str) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} not found: install Debian's package `pgbouncer` (scripts/test does, in ensure_packages of scripts/lib.sh)"
        );
        let dir =
            std::env::temp_dir().join(format!("pg_audience-pgbouncer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // PgBouncer refuses to run as root; it runs as `postgres`, which
        // must write its socket, log and pid file here.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = 6432;
        let d = dir.display();
        let files = [
            ("userlist.txt", format!("\"{user}\" \"\"\n")),
            (
                "pgbouncer.ini",
                format!(
                    "[databases]
{dbname} = host={host} port={pg_port} dbname={dbname}

[pgbouncer]
; A Unix socket of its own only: no TCP.
listen_addr =
listen_port = {port}
unix_socket_dir = {d}
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = transaction
; One server connection, shared by every client.
default_pool_size = 1
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = 1
max_client_conn = 10
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
ignore_startup_parameters = extra_float_digits,options
",
                    host = test_host(),
                    pg_port = test_port(),
                ),
            ),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let ini = dir.join("pgbouncer.ini");
        let as_postgres = std::env::var("USER")
            .map(|u| u == "postgres")
            .unwrap_or(false);
        let mut command = if as_postgres {
            Command::new(PGBOUNCER)
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "-u", "postgres", PGBOUNCER]);
            c
        };
        // It logs to its log file too: the test's output stays readable.
        let child = command
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PGBOUNCER} as postgres: {e}"));
        let bouncer = PgBouncer { dir, port, child };
        // Ready when a client gets through to the database.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match bouncer.try_connect(dbname, user) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "PgBouncer did not come up: {e}\nits log:\n{}",
                        bouncer.log()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        bouncer
    }

    fn try_connect(&self, dbname: &str, user: &str) -> Result<Client, postgres::Error> {
        config(&self.dir.display().to_string(), self.port, dbname, user).connect(NoTls)
    }

    fn connect(&self, dbname: &str, user: &str) -> Client {
        self.try_connect(dbname, user).unwrap_or_else(|e| {
            panic!(
                "connecting through PgBouncer: {e}\nits log:\n{}",
                self.log()
            )
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM to sudo, which passes it on to pgbouncer.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            // Still there: end pgbouncer itself, by the id it wrote.
            if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("PgBouncer log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type WhoamiRow = (Option<String>, String, Option<String>, Option<String>);

/// What one transaction read, and on which server backend it ran.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    whoami: Vec<WhoamiRow>,
    views: BTreeMap<String, Vec<String>>,
}

/// One request of an end user: a transaction that authenticates with its
/// token (if any), reads whoami and every view, and commits.
fn request(client: &mut Client, views: &[String], token: Option<&str>) -> (i32, Answer) {
    let mut tx = client.transaction().unwrap();
    if let Some(token) = token {
        tx.query_one("SELECT audience.authenticate($1)", &[&token])
            .unwrap_or_else(|e| panic!("authenticate through PgBouncer: {e}"));
    }
    let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut whoami: Vec<WhoamiRow> = tx
        .query(
            "SELECT requester, resolved_by, workspace, kind FROM audience.whoami()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    whoami.sort();
    let views = views
        .iter()
        .map(|v| (v.clone(), view_rows(&mut tx, v)))
        .collect();
    tx.commit().unwrap();
    (pid, Answer { whoami, views })
}

/// A view's rows as JSON text, without the clock-dependent `last_viewed`.
fn view_rows(client: &mut impl postgres::GenericClient, view: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .query(
            &format!("SELECT (to_jsonb(v) - 'last_viewed')::text FROM audience.\"{view}\" v"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

fn token(sub: &str) -> String {
    sign_token(
        Algorithm::HS256,
        &json!({"sub": sub, "exp": epoch_seconds() + 3600}),
        SECRET.as_bytes(),
    )
}

#[test]
fn two_end_users_share_one_server_connection_and_see_only_their_own() {
    let (db, mut op) = TestDb::with_extension(DB);
    let _roles = Roles::create(&[(APP_ROLE.to_string(), "LOGIN")]);
    on_roles(&mut op, &format!("GRANT audience_reader TO {APP_ROLE}"));
    op.batch_execute(&format!(
        "SELECT audience.set_token_secret('{SECRET}');
         SELECT audience.create_workspace('acme');
         SELECT audience.create_app('acme', 'acme-dash', 'public');
         SELECT audience.create_app('acme', 'acme-vault', 'private');
         SELECT audience.add_member('acme', '{ALICE}', 'admin');
         SELECT audience.create_workspace('globex');
         SELECT audience.create_app('globex', 'globex-portal', 'public');
         SELECT audience.create_app('globex', 'globex-secret', 'private');
         SELECT audience.add_member('globex', '{GARY}', 'developer');
         SELECT audience.record_view('acme', 'acme-dash', '{ALICE}', now() - interval '3 days');
         SELECT audience.record_view('acme', 'acme-vault', 'olivia@outside.example', now() - interval '2 days');
         SELECT audience.record_view('acme', 'acme-dash', NULL, now() - interval '1 day', anonymous_id => 'cookie-1');
         SELECT audience.record_view('globex', 'globex-portal', '{GARY}', now() - interval '5 days');
         SELECT audience.record_view('globex', 'globex-secret', 'oscar@outside.example', now() - interval '4 days');"
    ))
    .unwrap();
    let views: Vec<String> = op
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        views.iter().any(|v| v == "recent_viewers"),
        "views: {views:?}"
    );

    // What each end user may see: the operator's rows of their workspace.
    let mut expected = |who: Option<(&str, &str, &str)>| -> Answer {
        let Some((sub, workspace, kind)) = who else {
            return Answer {
                whoami: vec![(None, "nobody".into(), None, None)],
                views: views.iter().map(|v| (v.clone(), Vec::new())).collect(),
            };
        };
        let views = views
            .iter()
            .map(|v| {
                let rows = view_rows(&mut op, v)
                    .into_iter()
                    .filter(|r| {
                        serde_json::from_str::<serde_json::Value>(r).unwrap()["workspace"]
                            == workspace
                    })
                    .collect();
                (v.clone(), rows)
            })
            .collect();
        Answer {
            whoami: vec![(
                Some(sub.into()),
                "token".into(),
                Some(workspace.into()),
                Some(kind.into()),
            )],
            views,
        }
    };
    let as_alice = expected(Some((ALICE, "acme", "admin")));
    let as_gary = expected(Some((GARY, "globex", "developer")));
    let as_nobody = expected(None);
    // The comparisons mean something only if the two answers differ and are not empty.
    assert!(
        as_alice.views["recent_viewers"].len() >= 2 && as_gary.views["recent_viewers"].len() >= 2
    );
    assert_ne!(as_alice, as_gary);

    let bouncer = PgBouncer::start(&db.name, APP_ROLE);
    let mut alice = bouncer.connect(&db.name, APP_ROLE);
    let mut gary = bouncer.connect(&db.name, APP_ROLE);


    // Interleaved requests: (who, with token?). Every transaction without a
    // token follows one with a token, of the same or the other end user.
    let script: [(&str, bool); 14] = [
        ("alice", true),
        ("gary", false),
        ("gary", true),
        ("alice", false),
        ("alice", true),
        ("alice", false),
        ("gary", true),
        ("gary", false),
        ("alice", true),
        ("gary", true),
        ("alice", true),
        ("gary", false),
        ("gary", true),
        ("alice", false),
    ];
    let mut pids = BTreeSet::new();
    let mut failures = Vec::new();
    for (step, (who, authenticated)) in script.iter().enumerate() {
        let (client, token, own) = match *who {
            "alice" => (&mut alice, token(ALICE), &as_alice),
            _ => (&mut gary, token(GARY), &as_gary),
        };
        let (pid, got) = request(client, &views, authenticated.then_some(token.as_str()));
        pids.insert(pid);
        let want = if *authenticated { own } else { &as_nobody };
        if &got != want {
            failures.push(format!(
                "step {step}: {who} (token: {authenticated}) read {got:?}, expected {want:?}"
            ));
        }
    }
    // The requester of a rolled-back transaction does not carry over either,
    // nor does one set by an autocommitted authenticate on its own.
    {
        let mut tx = alice.transaction().unwrap();
        tx.query_one("SELECT audience.authenticate($1)", &[&token(ALICE)])
            .unwrap();
        tx.rollback().unwrap();
    }
    let (pid, got) = request(&mut gary, &views, None);
    pids.insert(pid);
    if got != as_nobody {
        failures.push(format!(
            "after alice's rolled-back transaction, gary read {got:?}"
        ));
    }
    alice
        .batch_execute(&format!("SELECT audience.authenticate('{}')", token(ALICE)))
        .unwrap();
    for (who, client) in [("gary", &mut gary), ("alice", &mut alice)] {
        let (pid, got) = request(client, &views, None);
        pids.insert(pid);
        if got != as_nobody {
            failures.push(format!(
                "after alice's autocommitted authenticate, {who} read {got:?}"
            ));
        }
    }
    // One server connection carried every transaction of both clients: the
    // isolation above is between transactions, not between connections.
    assert_eq!(
        pids.len(),
        1,
        "transactions ran on server backends {pids:?}, expected one"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    drop((alice, gary));
    drop(bouncer);
    drop(op);
}
