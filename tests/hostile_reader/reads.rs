//! Reading, the plain way: whoami, every view (SELECT, count, COPY) and
//! every read function, asked about what the actor may see and about what it
//! may not; and the doors that must stay shut — the raw tables, sequences
//! and staging tables, the management, ingest and internal functions, and
//! every write. Of a workspace it may not see an actor learns nothing, not
//! even that it exists: it hears what it would hear of a workspace that does
//! not exist.

use crate::fixture::{
    json_rows_sql, Fixture, ALICE, APPS, COOKIES, NO_SUCH_APP, NO_SUCH_WORKSPACE, WORKSPACE_NAMES,
    WRONG_SECRET,
};
use crate::oracle::{ActorSpec, ACTORS};
use crate::probes::{
    copy_out, error_text, expect_denied, leaked, report, sqlstate, truncate, whoami,
};
use crate::surface::Func;
use pg_audience_integration::attempt;
use postgres::error::DbError;
use postgres::Transaction;
use std::collections::{BTreeMap, BTreeSet};

/// Every actor reads exactly the rows the rules allow, through every view
/// and every way of reading one, and every read function it may call
/// answers; about a workspace or app it may not see, a read function fails
/// as it does about one that does not exist.
#[test]
fn every_actor_reads_exactly_what_the_rules_allow() {
    let mut fx = Fixture::new("reads");
    let mut failures = Vec::new();
    for spec in ACTORS {
        let expected = fx.expected_state(spec, &fx.role(spec.login));
        let hidden = fx.hidden_strings(spec);
        let mut s = fx.session(spec);
        let who = s.label();
        let mut tx = s.begin();

        let got = whoami(&mut tx);
        if got != expected.whoami {
            failures.push(format!(
                "{who}: whoami {got:?}, expected {:?}",
                expected.whoami
            ));
        }
        views_give_the_allowed_rows(&mut tx, &fx, &who, &expected.views, &mut failures);
        read_functions_hide_what_is_not_allowed(&mut tx, &fx, spec, &who, &hidden, &mut failures);
        drop(tx);
    }
    // The operator can make every call above that an actor may not: the
    // calls are well formed, so the refusals are the privacy rules at work.
    let mut tx = fx.op.transaction().unwrap();
    for f in fx.catalog.reads() {
        for (ws, app, _, _) in APPS {
            let whole = if f.app_optional() { "" } else { app };
            for call in [f.read_call(ws, app), f.read_call(ws, whole)] {
                if let Err(e) = attempt(&mut tx, &call) {
                    failures.push(format!("operator: {call} failed: {e}"));
                }
            }
        }
    }
    drop(tx);
    report(failures);
}

/// Each view, read as a SELECT, a count and a COPY of a query, gives exactly
/// `want`; COPY of the view itself is refused by PostgreSQL.
fn views_give_the_allowed_rows(
    tx: &mut Transaction,
    fx: &Fixture,
    who: &str,
    want: &BTreeMap<String, Vec<String>>,
    failures: &mut Vec<String>,
) {
    for view in &fx.catalog.views {
        let want = &want[&view.name];
        let mut got: Vec<String> = attempt(tx, &json_rows_sql(&view.name)).unwrap_or_else(|e| {
            failures.push(format!("{who}: SELECT from audience.{}: {e}", view.name));
            Vec::new()
        });
        got.sort();
        if &got != want {
            failures.push(format!(
                "{who}: audience.{} gave {} rows, expected {}:\n  got  {got:?}\n  want {want:?}",
                view.name,
                got.len(),
                want.len()
            ));
        }
        match attempt(
            tx,
            &format!("SELECT count(*) FROM audience.\"{}\"", view.name),
        ) {
            Ok(n) if n == vec![want.len().to_string()] => {}
            other => failures.push(format!(
                "{who}: count(*) of audience.{}: {other:?}, expected {}",
                view.name,
                want.len()
            )),
        }
        // COPY (query) TO STDOUT: the same rows, and nothing else.
        match copy_out(
            tx,
            &format!("COPY ({}) TO STDOUT", json_rows_sql(&view.name)),
        ) {
            Ok(text) => {
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                lines.sort();
                if &lines != want {
                    failures.push(format!(
                        "{who}: COPY of audience.{} gave {lines:?}, expected {want:?}",
                        view.name
                    ));
                }
            }
            Err(e) => failures.push(format!("{who}: COPY of audience.{}: {e}", view.name)),
        }
        match copy_out(tx, &format!("COPY audience.\"{}\" TO STDOUT", view.name)) {
            Err(e) if sqlstate(&e) == "42809" => {}
            other => failures.push(format!(
                "{who}: COPY audience.{} TO STDOUT: {other:?}",
                view.name
            )),
        }
    }
}

/// Every read call the actor may make answers. About a workspace it may not
/// see: 42704 with the message a workspace that does not exist gets. About
/// an app it may not see in a workspace it sees: the message of an app that
/// does not exist. The error shows nothing hidden but the slugs typed.
fn read_functions_hide_what_is_not_allowed(
    tx: &mut Transaction,
    fx: &Fixture,
    spec: &ActorSpec,
    who: &str,
    hidden: &BTreeSet<String>,
    failures: &mut Vec<String>,
) {
    for f in fx.catalog.reads() {
        let (allowed, pairs) = read_cases(spec, f);
        for call in allowed {
            if let Err(e) = attempt(tx, &call) {
                failures.push(format!("{who}: {call} failed: {e}"));
            }
        }
        for (probe, control, subs) in pairs {
            match (attempt(tx, &probe), attempt(tx, &control)) {
                (Err(p), Err(c)) => {
                    let (p, c) = (p.as_db_error().unwrap(), c.as_db_error().unwrap());
                    let shape = |e: &DbError| {
                        format!("{} {}", e.code().code(), substitute(e.message(), &subs))
                    };
                    if p.code().code() != "42704" || shape(p) != shape(c) {
                        failures.push(format!(
                            "{who}: {probe} told apart from {control}: {:?} vs {:?}",
                            shape(p),
                            shape(c)
                        ));
                    }
                    // The slugs the actor typed come back in the message; nothing else may.
                    let l: Vec<&str> = leaked(&error_text(p), hidden)
                        .into_iter()
                        .filter(|h| !subs.iter().any(|(typed, _)| typed == h))
                        .collect();
                    if !l.is_empty() {
                        failures.push(format!("{who}: the error of {probe} shows {l:?}"));
                    }
                }
                other => failures.push(format!(
                    "{who}: {probe} / {control}: expected two errors, got {other:?}"
                )),
            }
        }
    }
}

/// No actor reads a row of audience_internal or of the staging tables, by
/// SELECT or COPY; writes nothing anywhere; and calls no management, ingest
/// or internal function — not even with real-looking arguments.
#[test]
fn raw_tables_internal_functions_and_writes_are_closed() {
    let mut fx = Fixture::new("closed");
    // A column of each table to UPDATE: one the table has, so that the
    // statement reaches the privilege check.
    let first_columns: BTreeMap<String, String> = fx
        .op
        .query(
            "SELECT c.relname::text, a.attname::text FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1
              WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut failures = Vec::new();
    for spec in ACTORS {
        let hidden = fx.hidden_strings(spec);
        let mut s = fx.session(spec);
        let who = s.label();
        let analyst = spec.login == "analyst";
        let mut tx = s.begin();
        internal_relations_give_nothing(&mut tx, &fx, &who, analyst, &hidden, &mut failures);
        internal_functions_are_refused(&mut tx, &fx, &who, &mut failures);
        writes_are_refused(&mut tx, &fx, &who, &first_columns, &mut failures);
        staging_tables_give_nothing(&mut tx, &fx, &who, analyst, &mut failures);
        drop(tx);
    }
    report(failures);
}

/// Base tables, views and sequences of audience_internal: permission
/// denied. The analyst's pg_read_all_data passes the privilege check, and
/// then row-level security must give it nothing (an error or no rows).
fn internal_relations_give_nothing(
    tx: &mut Transaction,
    fx: &Fixture,
    who: &str,
    analyst: bool,
    hidden: &BTreeSet<String>,
    failures: &mut Vec<String>,
) {
    for (rel, kind) in &fx.catalog.internal_relations {
        let select = attempt(tx, &format!("SELECT * FROM audience_internal.\"{rel}\""));
        let copy_table = (kind == "r" || kind == "p")
            .then(|| copy_out(tx, &format!("COPY audience_internal.\"{rel}\" TO STDOUT")));
        let copy_query = copy_out(
            tx,
            &format!("COPY (SELECT * FROM audience_internal.\"{rel}\") TO STDOUT"),
        );
        if analyst && kind == "S" {
            // Sequences have no row-level security, and pg_read_all_data
            // bypasses their ACL: the analyst reads platform-wide counters
            // (last_value), which the extension cannot revoke. They must be
            // counters only, nothing hidden.
            for (what, r) in [
                ("SELECT", select.map(|v| v.join("\n"))),
                ("COPY (SELECT)", copy_query),
            ] {
                match r {
                    Err(e) if sqlstate(&e) == "42501" => {}
                    Ok(text) if leaked(&text, hidden).is_empty() => {}
                    other => failures.push(format!(
                        "{who}: {what} audience_internal.{rel}: {}",
                        truncate(&format!("{other:?}"))
                    )),
                }
            }
        } else if analyst {
            for (what, r) in [
                ("SELECT", select.map(|v| v.join("\n"))),
                ("COPY (SELECT)", copy_query),
            ]
            .into_iter()
            .chain(copy_table.map(|c| ("COPY", c)))
            {
                match r {
                    Err(e) if sqlstate(&e) == "42501" => {}
                    Ok(text) if text.is_empty() => {}
                    other => failures.push(format!(
                        "{who}: {what} audience_internal.{rel}: {}",
                        truncate(&format!("{other:?}"))
                    )),
                }
            }
        } else {
            let what = format!("SELECT * FROM audience_internal.{rel}");
            expect_denied(failures, who, &what, select);
            let what = format!("COPY (SELECT * FROM audience_internal.{rel})");
            expect_denied(failures, who, &what, copy_query);
            if let Some(c) = copy_table {
                expect_denied(failures, who, &format!("COPY audience_internal.{rel}"), c);
            }
        }
    }
}

/// Management, ingest and internal functions: permission denied, the
/// internal ones already for their schema (the definer functions behind the
/// read functions answer only to a ticket besides: tickets.rs). Testing a guessed identity against the pseudonym and hashing
/// code with real-looking arguments is refused too.
fn internal_functions_are_refused(
    tx: &mut Transaction,
    fx: &Fixture,
    who: &str,
    failures: &mut Vec<String>,
) {
    for f in fx
        .catalog
        .functions
        .iter()
        .filter(|f| f.schema == "audience_internal" || !f.reader_may_execute)
    {
        if f.returns == "trigger" || f.returns == "event_trigger" {
            continue; // Not callable at all but as a trigger.
        }
        let sql = f.call_with_values();
        // A reader may execute ticket() and the functions that take a
        // ticket, through the wrappers, but cannot name them: no USAGE on
        // audience_internal (the tickets themselves: tickets.rs).
        if f.reader_may_execute && !f.takes_ticket() && f.name != "ticket" {
            failures.push(format!(
                "{who}: may execute internal function {} that takes no ticket",
                f.name
            ));
        }
        let result = attempt(tx, &sql);
        // pg_read_all_data grants USAGE on every schema: the analyst reaches
        // ticket(), which mints its own harmless ticket, and the functions
        // that take one, which refuse a forged ticket.
        let ticket_refused = f.takes_ticket()
            && matches!(&result, Err(e) if e.as_db_error().is_some_and(|d| d.message().contains("ticket")));
        let own_ticket = f.name == "ticket" && f.reader_may_execute && result.is_ok();
        if !ticket_refused && !own_ticket {
            expect_denied(failures, who, &sql, result);
        }
    }
    let key = &fx.key_hex[0];
    for sql in [
        format!("SELECT audience_internal.viewer_pseudonym(decode('{key}', 'hex'), decode('00', 'hex'), '')"),
        format!("SELECT audience_internal.identity_hash(decode('{key}', 'hex'), '{ALICE}')"),
        format!("SELECT audience_internal.anonymous_hash(decode('{key}', 'hex'), '{}')", COOKIES[0]),
        format!("SELECT audience_internal.accept_token('x', convert_to('{WRONG_SECRET}', 'UTF8'))"),
        "SELECT audience_internal.rebuild_rollups(1)".to_string(),
        "SELECT audience_internal.workspace_access(1)".to_string(),
        "SELECT * FROM audience_internal.requester_apps()".to_string(),
    ] {
        expect_denied(failures, who, &sql, attempt(tx, &sql));
    }
}

/// DELETE, UPDATE and TRUNCATE of every table: denied (the analyst's
/// pg_read_all_data reads only).
fn writes_are_refused(
    tx: &mut Transaction,
    fx: &Fixture,
    who: &str,
    first_columns: &BTreeMap<String, String>,
    failures: &mut Vec<String>,
) {
    for (rel, kind) in &fx.catalog.internal_relations {
        if kind == "r" || kind == "p" {
            let column = &first_columns[rel];
            for sql in [
                format!("DELETE FROM audience_internal.\"{rel}\""),
                format!("UPDATE audience_internal.\"{rel}\" SET \"{column}\" = \"{column}\""),
                format!("TRUNCATE audience_internal.\"{rel}\""),
            ] {
                expect_denied(failures, who, &sql, attempt(tx, &sql));
            }
        }
    }
}

/// The staging tables of the ingest path: nothing to read, no way to write.
fn staging_tables_give_nothing(
    tx: &mut Transaction,
    fx: &Fixture,
    who: &str,
    analyst: bool,
    failures: &mut Vec<String>,
) {
    for table in &fx.catalog.staging_tables {
        let select = attempt(tx, &format!("SELECT * FROM {table}"));
        let copy = copy_out(tx, &format!("COPY {table} TO STDOUT"));
        if analyst {
            for (what, r) in [("SELECT", select.map(|v| v.join("\n"))), ("COPY", copy)] {
                match r {
                    Ok(text) if text.is_empty() => {}
                    Err(e) if sqlstate(&e) == "42501" => {}
                    other => failures.push(format!(
                        "{who}: {what} {table}: {}",
                        truncate(&format!("{other:?}"))
                    )),
                }
            }
        } else {
            let what = format!("SELECT * FROM {table}");
            expect_denied(failures, who, &what, select);
            expect_denied(
                failures,
                who,
                &format!("COPY {table} TO STDOUT"),
                copy,
            );
        }
        let insert = attempt(
            tx,
            &format!("INSERT INTO {table} DEFAULT VALUES"),
        );
        expect_denied(
            failures,
            who,
            &format!("INSERT INTO {table}"),
            insert,
        );
    }
}

/// The whole error a client receives — message, but also CONTEXT (where),
/// detail, hint — is the same for a workspace that exists and one that does
/// not; otherwise any reader could enumerate workspace slugs by calling a
/// read function.
#[test]
fn errors_do_not_tell_a_hidden_workspace_from_a_missing_one() {
    let fx = Fixture::new("errors");
    let mut failures = Vec::new();
    for spec in ACTORS {
        let mut s = fx.session(spec);
        let who = s.label();
        let mut tx = s.begin();
        for f in fx.catalog.reads() {
            for (probe, control, subs) in read_cases(spec, f).1 {
                // PL/pgSQL reports an extra CONTEXT line while an expression's
                // plan is not yet cached: compare warm calls, as an attacker
                // who repeats them would.
                for _ in 0..6 {
                    let _ = (attempt(&mut tx, &probe), attempt(&mut tx, &control));
                }
                match (attempt(&mut tx, &probe), attempt(&mut tx, &control)) {
                    (Err(p), Err(c)) => {
                        let (p, c) = (
                            error_shape(p.as_db_error().unwrap(), &subs),
                            error_shape(c.as_db_error().unwrap(), &subs),
                        );
                        if p != c {
                            failures.push(format!(
                                "{who}: {probe} vs {control}:\n  exists:  {p}\n  missing: {c}"
                            ));
                        }
                    }
                    other => failures.push(format!(
                        "{who}: {probe} / {control}: expected two errors, got {other:?}"
                    )),
                }
            }
        }
    }
    report(failures);
}

type Subs = Vec<(&'static str, &'static str)>;

/// The read calls `spec` may make, and the pairs (a call about something it
/// may not see, the same call about something that does not exist) that
/// must fail alike, with the slugs to blank out when comparing them.
fn read_cases(spec: &ActorSpec, f: &Func) -> (Vec<String>, Vec<(String, String, Subs)>) {
    let subs = |ws: &'static str, app: &'static str| -> Subs {
        vec![
            (ws, "<workspace>"),
            (NO_SUCH_WORKSPACE, "<workspace>"),
            (app, "<app>"),
            (NO_SUCH_APP, "<app>"),
        ]
    };
    let mut allowed = Vec::new();
    let mut pairs = Vec::new();
    for (ws, _) in WORKSPACE_NAMES {
        let sees_workspace = spec.access(ws).is_some();
        if !f.takes_app() || f.app_optional() {
            if sees_workspace {
                allowed.push(f.read_call(ws, ""));
            } else {
                pairs.push((
                    f.read_call(ws, ""),
                    f.read_call(NO_SUCH_WORKSPACE, ""),
                    subs(ws, NO_SUCH_APP),
                ));
            }
            if !f.takes_app() {
                continue;
            }
        }
        for (app_ws, app, _, _) in APPS {
            if !sees_workspace {
                if app_ws == ws {
                    pairs.push((
                        f.read_call(ws, app),
                        f.read_call(NO_SUCH_WORKSPACE, app),
                        subs(ws, app),
                    ));
                }
            } else if app_ws == ws && spec.sees_app(ws, app) {
                allowed.push(f.read_call(ws, app));
            } else {
                // A hidden app of a workspace it sees, or an app of another workspace.
                pairs.push((
                    f.read_call(ws, app),
                    f.read_call(ws, NO_SUCH_APP),
                    subs(ws, app),
                ));
            }
        }
    }
    (allowed, pairs)
}

fn substitute(text: &str, subs: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (from, to) in subs {
        text = text.replace(&format!("\"{from}\""), &format!("\"{to}\""));
    }
    text
}

/// Everything the client receives with an error, with the slugs it typed replaced.
fn error_shape(e: &DbError, subs: &[(&str, &str)]) -> String {
    format!(
        "code={} severity={} message={} detail={:?} hint={:?} position={:?} where={:?} schema={:?} table={:?} column={:?} datatype={:?} constraint={:?} file={:?} line={:?} routine={:?}",
        e.code().code(),
        e.severity(),
        substitute(e.message(), subs),
        e.detail().map(|d| substitute(d, subs)),
        e.hint().map(|h| substitute(h, subs)),
        e.position(),
        e.where_().map(|w| substitute(w, subs)),
        e.schema(),
        e.table(),
        e.column(),
        e.datatype(),
        e.constraint(),
        e.file(),
        e.line(),
        e.routine(),
    )
}
