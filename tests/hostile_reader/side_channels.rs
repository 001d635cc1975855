//! What a reader could learn around the answers rather than from them: a
//! leaky function the planner runs below the views' security barrier, an
//! error that fires only on a hidden value, the planner's statistics, and
//! EXPLAIN, DEBUG and plan-tree output.

use crate::fixture::{Fixture, Session, ALICE, APPS};
use crate::oracle::ACTORS;
use crate::probes::{error_text, expect_denied, leaked, notice_text, report, sqlstate, truncate};
use pg_audience_integration::{attempt, connect_where_rows_are};
use postgres::error::DbError;
use postgres::{Client, Transaction};
use std::collections::{BTreeMap, BTreeSet};

/// How RAISE NOTICE prints a NULL.
const NULL: &str = "<NULL>";

/// A leaky function — plpgsql, near-zero COST so the planner would run it
/// first, RAISE NOTICE with its argument — in a WHERE clause over each view
/// sees only rows the actor may read; and a division by zero that fires only
/// on a hidden value never fires.
#[test]
fn leaky_functions_and_error_oracles_see_only_allowed_rows() {
    let mut fx = Fixture::new("leaky");
    let mut failures = Vec::new();
    let views: Vec<(String, Vec<String>)> = fx
        .catalog
        .views
        .iter()
        .map(|v| (v.name.clone(), v.columns.clone()))
        .collect();
    for spec in ACTORS {
        let expected = fx.expected_views(spec);
        let hidden: Vec<String> = fx.hidden_strings(spec).into_iter().collect();
        let mut s = fx.session(spec);
        let who = s.label();
        let notices = s.notices.clone();
        create_probes(&mut s, &who);
        for (view, columns) in &views {
            let mut tx = s.begin();
            let rows = expected[view].len();
            let probe = LeakProbe {
                who: &who,
                view,
                columns,
                rows,
                hidden: &hidden,
            };
            probe.run(&mut tx, &notices, &mut failures);
        }
    }
    report(failures);
}

/// The leaky function and a table of the actor's own; and proof that both
/// probes work: over that table the function leaks and the division fires.
fn create_probes(s: &mut Session, who: &str) {
    let notices = s.notices.clone();
    s.client
        .batch_execute(
            "CREATE FUNCTION pg_temp.leak(col text, val text) RETURNS boolean
             LANGUAGE plpgsql COST 0.0000001 AS $$
             BEGIN RAISE NOTICE 'leak %=%', col, val; RETURN true; END $$;
             CREATE TEMP TABLE canary (c text);
             INSERT INTO canary VALUES ('canary-value');",
        )
        .unwrap();
    notices.lock().unwrap().clear();
    s.client
        .query("SELECT * FROM canary WHERE pg_temp.leak('c', c)", &[])
        .unwrap();
    let canary = notice_text(&notices.lock().unwrap());
    assert!(
        canary.contains("leak c=canary-value"),
        "{who}: the leaky function did not leak its canary: {canary:?}"
    );
    let div = "SELECT count(*) FROM canary WHERE CASE WHEN c = ANY ($1) THEN 1 / (length(c) - length(c)) = 1 ELSE true END";
    match s.client.query(div, &[&vec!["canary-value".to_string()]]) {
        Err(e) if sqlstate(&e) == "22012" => {}
        other => panic!("{who}: the division oracle did not fire on its canary: {other:?}"),
    }
}

/// The leaky function and the division oracle over one view, for one actor.
struct LeakProbe<'a> {
    who: &'a str,
    view: &'a str,
    columns: &'a [String],
    /// How many rows of the view the actor may read.
    rows: usize,
    hidden: &'a [String],
}

impl LeakProbe<'_> {
    fn run(
        &self,
        tx: &mut Transaction,
        notices: &pg_audience_integration::Notices,
        failures: &mut Vec<String>,
    ) {
        let (who, view, columns) = (self.who, self.view, self.columns);
        notices.lock().unwrap().clear();
        let quals: Vec<String> = columns
            .iter()
            .map(|c| format!("pg_temp.leak('{c}', \"{c}\"::text)"))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM audience.\"{view}\" WHERE {}",
            quals.join(" AND ")
        );
        if let Err(e) = tx.query(&sql, &[]) {
            failures.push(format!("{who}: {sql}: {e}"));
            return;
        }
        let got: Vec<DbError> = notices.lock().unwrap().drain(..).collect();
        let allowed = self.allowed_values(tx);
        for n in &got {
            let msg = n.message();
            let Some((col, val)) = msg.strip_prefix("leak ").and_then(|m| m.split_once('=')) else {
                continue;
            };
            if !allowed.get(col).is_some_and(|a| a.contains(val)) {
                failures.push(format!("{who}: the leaky function over audience.{view} saw {col}={val:?}, not a row it may read"));
            }
        }
        let hidden_set: BTreeSet<String> = self.hidden.iter().cloned().collect();
        let l = leaked(&notice_text(&got), &hidden_set);
        if !l.is_empty() {
            failures.push(format!("{who}: NOTICEs over audience.{view} show {l:?}"));
        }
        let rows = self.rows;
        if rows == 0 && !got.is_empty() {
            failures.push(format!(
                "{who}: may read no row of audience.{view}, yet the leaky function ran {} times",
                got.len()
            ));
        }
        if rows > 0 && got.len() < rows {
            failures.push(format!(
                "{who}: the leaky function ran {} times over {rows} rows of audience.{view}",
                got.len()
            ));
        }
        self.division_oracle(tx, &allowed, failures);
    }

    /// What the actor may see of each column, as it reads it (a NULL as
    /// RAISE prints it).
    fn allowed_values(&self, tx: &mut Transaction) -> BTreeMap<String, BTreeSet<String>> {
        let mut allowed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in self.columns {
            let values = tx
                .query(
                    &format!("SELECT \"{c}\"::text FROM audience.\"{}\"", self.view),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| {
                    r.get::<_, Option<String>>(0)
                        .unwrap_or_else(|| NULL.to_string())
                })
                .collect();
            allowed.insert(c.clone(), values);
        }
        allowed
    }

    /// Division by zero on any hidden value, in each column: never fires; on
    /// a value the actor may see: fires.
    fn division_oracle(
        &self,
        tx: &mut Transaction,
        allowed: &BTreeMap<String, BTreeSet<String>>,
        failures: &mut Vec<String>,
    ) {
        let (who, view) = (self.who, self.view);
        for c in self.columns {
            let oracle = format!(
                "SELECT count(*) FROM audience.\"{view}\"
                  WHERE CASE WHEN \"{c}\"::text = ANY ($1) THEN 1 / (length(\"{c}\"::text) - length(\"{c}\"::text)) = 1 ELSE true END"
            );
            {
                let mut sp = tx.transaction().unwrap();
                match sp.query(&oracle, &[&self.hidden]) {
                    Ok(_) => sp.commit().unwrap(),
                    Err(e) => failures.push(format!(
                        "{who}: the division oracle on audience.{view}.{c} fired: {e}"
                    )),
                }
            }
            if let Some(v) = allowed[c].iter().find(|v| !v.is_empty() && *v != NULL) {
                let mut sp = tx.transaction().unwrap();
                match sp.query(&oracle, &[&vec![v.clone()]]) {
                    Err(e) if sqlstate(&e) == "22012" => {}
                    other => failures.push(format!(
                        "{who}: the division oracle on audience.{view}.{c} did not fire on visible {v:?}: {other:?}"
                    )),
                }
            }
        }
    }
}

/// The statistics views, as the operator reads them for audience_internal.
const STATS: [&str; 3] = [
    "SELECT s::text FROM pg_catalog.pg_stats s WHERE schemaname = 'audience_internal'",
    "SELECT s::text FROM pg_catalog.pg_stats_ext s WHERE schemaname = 'audience_internal'",
    "SELECT s::text FROM pg_catalog.pg_stats_ext_exprs s WHERE schemaname = 'audience_internal'",
];

/// A fixture whose every table is analyzed, with extended statistics on the
/// tables that hold identities and keys.
fn analyzed_fixture(short: &str) -> Fixture {
    let mut fx = Fixture::new(short);
    fx.op
        .batch_execute(
            "CREATE STATISTICS audience_internal.probe_events (ndistinct, dependencies, mcv)
                 ON workspace_id, app_id, viewer_id FROM audience_internal.view_events;
             CREATE STATISTICS audience_internal.probe_members (mcv)
                 ON workspace_id, kind, identity FROM audience_internal.members;
             CREATE STATISTICS audience_internal.probe_members_expr
                 ON (lower(identity)), workspace_id FROM audience_internal.members;
             CREATE STATISTICS audience_internal.probe_keys (mcv)
                 ON workspace_id, identity_key FROM audience_internal.workspace_keys;
             ANALYZE;",
        )
        .unwrap();
    fx
}

/// Every row of `sql`'s first column, as one text.
fn dump(c: &mut Client, sql: &str) -> String {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// After ANALYZE of every table (with extended statistics on the tables
/// that hold identities and keys), pg_stats, pg_stats_ext and
/// pg_stats_ext_exprs show the actor no row of audience_internal and
/// nothing hidden anywhere; pg_statistic itself is closed to it.
#[test]
fn statistics_show_nothing_hidden() {
    let mut fx = analyzed_fixture("stats");
    // The operator does see statistics of audience_internal: the actors'
    // empty answers below are not for want of any. (On Citus, where the
    // rows are: a worker's tables; the coordinator's hold none.)
    let mut rows_nodes = connect_where_rows_are(&fx.db.name);
    let mut dump_all = |sql: &str| rows_nodes.iter_mut().map(|c| dump(c, sql)).collect::<Vec<_>>().join("\n");
    for sql in STATS {
        assert!(
            !dump_all(sql).trim().is_empty(),
            "the operator sees nothing from {sql}"
        );
    }
    // ANALYZE keeps no per-column statistics of identities or keys, not even
    // for the operator (their columns have STATISTICS 0): nothing to leak to
    // a role that can read pg_statistic.
    let operator_stats = dump_all(STATS[0]);
    assert!(
        !operator_stats.contains(ALICE),
        "per-column statistics hold an identity"
    );
    assert!(
        !fx.key_hex
            .iter()
            .any(|k| operator_stats.contains(k.as_str())),
        "per-column statistics hold key bytes"
    );

    let mut failures = Vec::new();
    for spec in ACTORS {
        let hidden = fx.hidden_strings(spec);
        let mut s = fx.session(spec);
        let who = s.label();
        let mut tx = s.begin();
        for sql in STATS {
            match attempt(&mut tx, sql) {
                Ok(rows) if rows.is_empty() => {}
                other => {
                    failures.push(format!("{who}: {sql}: {}", truncate(&format!("{other:?}"))))
                }
            }
        }
        // Nothing hidden anywhere in the statistics views, whatever the schema.
        for view in ["pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"] {
            let text = attempt(&mut tx, &format!("SELECT s::text FROM pg_catalog.{view} s"))
                .unwrap()
                .join("\n");
            let l = leaked(&text, &hidden);
            if !l.is_empty() {
                failures.push(format!("{who}: {view} shows {l:?}"));
            }
        }
        // (pg_read_all_data reads these: see secrets.rs.)
        if spec.login != "analyst" {
            for table in ["pg_statistic", "pg_statistic_ext_data"] {
                let r = attempt(&mut tx, &format!("SELECT * FROM pg_catalog.{table}"));
                expect_denied(&mut failures, &who, table, r);
            }
        }
    }
    report(failures);
}

/// EXPLAIN (ANALYZE, VERBOSE) of every view, read function and internal
/// relation, with every DEBUG message and plan tree a reader may ask the
/// server for, shows no hidden value; auto_explain cannot be loaded; and
/// EXPLAIN ANALYZE counts only the rows the actor may read.
#[test]
fn explain_and_debug_output_show_nothing_hidden() {
    let mut fx = analyzed_fixture("explain");
    let mut failures = Vec::new();
    for spec in ACTORS {
        let hidden = fx.hidden_strings(spec);
        let expected = fx.expected_views(spec);
        let mut s = fx.session(spec);
        let who = s.label();
        let notices = s.notices.clone();
        let mut tx = s.begin_explaining();
        let r = attempt(&mut tx, "LOAD 'auto_explain'");
        expect_denied(&mut failures, &who, "LOAD 'auto_explain'", r);

        // Every message a reader may ask for: DEBUG, and the parse, rewritten
        // and plan trees of every query — those run inside the SECURITY
        // DEFINER functions too, with their parameters bound as constants.
        attempt(
            &mut tx,
            "SET LOCAL client_min_messages = debug5; SET LOCAL debug_print_parse = on;
             SET LOCAL debug_print_rewritten = on; SET LOCAL debug_print_plan = on;
             SET LOCAL plpgsql.print_strict_params = on",
        )
        .unwrap();
        notices.lock().unwrap().clear();
        let statements = explained_statements(&fx, spec);
        explain_shows_nothing_hidden(&mut tx, &statements, &who, &hidden, &mut failures);
        // And the views and read functions run for real, not under EXPLAIN.
        for statement in &statements {
            let _ = attempt(&mut tx, statement);
        }
        let debug = notice_text(&notices.lock().unwrap());
        assert!(
            debug.contains("PLANNEDSTMT") || debug.contains(":commandType"),
            "{who}: debug_print_plan printed no plan"
        );
        let l = leaked(&debug, &hidden);
        if !l.is_empty() {
            failures.push(format!(
                "{who}: DEBUG/LOG messages (plan trees) during EXPLAIN and reads show {l:?}"
            ));
        }
        attempt(&mut tx, "RESET client_min_messages").unwrap();
        explain_analyze_counts_the_allowed_rows(
            &mut tx,
            &who,
            expected["recent_viewers"].len(),
            &mut failures,
        );
    }
    report(failures);
}

/// Every view, every read call `spec` may make, and every relation of
/// audience_internal.
fn explained_statements(fx: &Fixture, spec: &crate::oracle::ActorSpec) -> Vec<String> {
    let mut statements: Vec<String> = fx
        .catalog
        .views
        .iter()
        .map(|v| format!("SELECT * FROM audience.\"{}\"", v.name))
        .collect();
    for f in fx.catalog.reads() {
        for (ws, app, _, _) in APPS {
            if spec.sees_app(ws, app) {
                statements.push(f.read_call(ws, app));
            }
        }
    }
    for (rel, _) in &fx.catalog.internal_relations {
        statements.push(format!("SELECT * FROM audience_internal.\"{rel}\""));
    }
    statements
}

/// EXPLAIN of each statement, run and not, as text and as JSON: its output,
/// or its error, shows nothing hidden.
fn explain_shows_nothing_hidden(
    tx: &mut Transaction,
    statements: &[String],
    who: &str,
    hidden: &BTreeSet<String>,
    failures: &mut Vec<String>,
) {
    for statement in statements {
        for options in [
            "ANALYZE, VERBOSE, BUFFERS, SETTINGS",
            "VERBOSE, COSTS, FORMAT JSON",
        ] {
            let text = match attempt(tx, &format!("EXPLAIN ({options}) {statement}")) {
                Ok(lines) => lines.join("\n"),
                Err(e) => e
                    .as_db_error()
                    .map(error_text)
                    .unwrap_or_else(|| e.to_string()),
            };
            let l = leaked(&text, hidden);
            if !l.is_empty() {
                failures.push(format!(
                    "{who}: EXPLAIN ({options}) {statement} shows {l:?}:\n{text}"
                ));
            }
        }
    }
}

/// EXPLAIN ANALYZE did run the views: the top node of recent_viewers
/// actually returned the `rows` rows the actor may read (the planner's
/// estimate, also printed as `rows=`, does not count).
fn explain_analyze_counts_the_allowed_rows(
    tx: &mut Transaction,
    who: &str,
    rows: usize,
    failures: &mut Vec<String>,
) {
    let plan = attempt(
        tx,
        "EXPLAIN (ANALYZE) SELECT * FROM audience.recent_viewers",
    )
    .unwrap()
    .join("\n");
    let top = plan.lines().next().unwrap_or("");
    let actual = top
        .split_once("(actual ")
        .and_then(|(_, a)| a.split_once(" rows="))
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    if actual != Some(rows) {
        failures.push(format!(
            "{who}: EXPLAIN ANALYZE of recent_viewers returned {actual:?} rows, not {rows}:\n{plan}"
        ));
    }
}
