//! The definer functions behind the read functions, which readers may call
//! directly, answer for the role a *ticket* names: minted by
//! audience_internal.ticket() for the caller's role in the caller's
//! transaction, signed with a key of the backend. A reader cannot forge
//! one, replay its own from an earlier transaction, or borrow the
//! operator's.

use crate::fixture::{Fixture, Tok, ACME};
use crate::oracle::{WhoamiRow, ACTORS};
use crate::probes::{report, sqlstate, truncate, whoami};
use crate::surface::Func;
use pg_audience_integration::attempt;
use postgres::{Client, Transaction};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A ticket as an SQL bytea literal.
fn bytea(ticket: &[u8]) -> String {
    format!("decode('{}', 'hex')", hex(ticket))
}

/// The local transaction id a ticket is stamped with (bytes 4..8, big-endian).
fn ticket_xact(ticket: &[u8]) -> u32 {
    u32::from_be_bytes(ticket[4..8].try_into().unwrap())
}

fn mint(c: &mut impl postgres::GenericClient) -> Vec<u8> {
    c.query_one("SELECT audience_internal.ticket()", &[])
        .unwrap()
        .get(0)
}

/// Each ticket-taking function, called with `ticket_sql`, is refused: the
/// message says why, and no row comes back.
fn refused(
    tx: &mut Transaction,
    ticketed: &[&Func],
    who: &str,
    what: &str,
    ticket_sql: &str,
    failures: &mut Vec<String>,
) {
    for f in ticketed {
        let sql = f.ticket_call(ticket_sql, ACME, "acme-ledger");
        match attempt(tx, &sql) {
            Err(e)
                if e.as_db_error()
                    .is_some_and(|d| d.message().contains("ticket")) => {}
            other => failures.push(format!(
                "{who}: {what}: {sql}: {}",
                truncate(&format!("{other:?}"))
            )),
        }
    }
}

/// A reader's own ticket, in its transaction, is itself; forged, flipped,
/// truncated, empty, NULL or replayed in a later transaction, it is refused;
/// and the operator's is refused even in a transaction of the same local id.
#[test]
fn tickets_cannot_be_forged_replayed_or_borrowed() {
    let mut fx = Fixture::new("tickets");
    let ticketed: Vec<&Func> = fx
        .catalog
        .functions
        .iter()
        .filter(|f| f.schema == "audience_internal" && f.reader_may_execute && f.takes_ticket())
        .collect();
    let minter = fx.catalog.functions.iter().any(|f| {
        f.schema == "audience_internal"
            && f.name == "ticket"
            && f.args.is_empty()
            && f.reader_may_execute
    });
    if ticketed.is_empty() {
        // The design has no tickets (any more): nothing to forge.
        assert!(
            !minter,
            "readers may mint tickets, but no function takes one"
        );
        eprintln!("no ticket-taking function: nothing to test");
        return;
    }
    assert!(
        minter,
        "functions take tickets, but readers cannot mint one"
    );
    let superuser_oid: u32 = fx
        .op
        .query_one(
            "SELECT oid::int8 FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .map(|r| r.get::<_, i64>(0) as u32)
        .unwrap();
    let mut failures = Vec::new();
    let actors: Vec<_> = ACTORS
        .iter()
        .filter(|s| matches!(s.login, "outsider" | "victor" | "pooled") && matches!(s.token, Tok::None))
        .collect();
    // Readers hold no USAGE on audience_internal: they cannot so much as name
    // a ticket-taking function. The ticket is the defence behind that one;
    // the rest of this test grants USAGE, as a database that exposed the
    // schema by mistake would, and attacks the tickets themselves.
    for spec in &actors {
        let mut s = fx.session(spec);
        let who = s.label();
        let mut tx = s.client.transaction().unwrap();
        for f in &ticketed {
            let sql = f.ticket_call("NULL::bytea", ACME, "acme-ledger");
            match attempt(&mut tx, &sql) {
                Err(e) if sqlstate(&e) == "42501"
                    && e.as_db_error().is_some_and(|d| d.message() == "permission denied for schema audience_internal") => {}
                other => failures.push(format!(
                    "{who}: {sql} without USAGE on the schema: {}",
                    truncate(&format!("{other:?}"))
                )),
            }
        }
    }
    let roles: Vec<String> = actors.iter().map(|s| format!("\"{}\"", fx.role(s.login))).collect();
    fx.op
        .batch_execute(&format!("GRANT USAGE ON SCHEMA audience_internal TO {}", roles.join(", ")))
        .unwrap();
    // The operator's own ticket works for the operator: what a borrowed one would open.
    {
        let mut tx = fx.op.transaction().unwrap();
        let ticket = mint(&mut tx);
        for f in &ticketed {
            let sql = f.ticket_call(&bytea(&ticket), ACME, "acme-ledger");
            if let Err(e) = attempt(&mut tx, &sql) {
                failures.push(format!("operator: {sql} with its own ticket: {e}"));
            }
        }
    }
    for spec in actors {
        let mut s = fx.session(spec);
        let who = s.label();
        own_ticket_is_yours_alone(&mut s.client, &ticketed, &who, superuser_oid, &mut failures);
        operator_ticket_cannot_be_borrowed(
            &mut s.client,
            &mut fx.op,
            &ticketed,
            &who,
            &mut failures,
        );
    }
    report(failures);
}

/// Its own ticket, in its transaction, is itself: no more than whoami
/// says. Forged — the role swapped for the superuser's with the MAC kept, a
/// MAC bit flipped, cut short, empty, NULL — or replayed in a later
/// transaction, it is refused.
fn own_ticket_is_yours_alone(
    client: &mut Client,
    ticketed: &[&Func],
    who: &str,
    superuser_oid: u32,
    failures: &mut Vec<String>,
) {
    let mut tx = client.transaction().unwrap();
    let own = mint(&mut tx);
    let direct = whoami(&mut tx);
    let whoami_for = ticketed.iter().find(|f| f.name == "whoami_for");
    let whoami_for =
        whoami_for.expect("whoami_for takes a ticket: the check of an own ticket needs it");
    let mut via: Vec<WhoamiRow> = tx
        .query(&whoami_for.ticket_call(&bytea(&own), ACME, "x"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    via.sort();
    if via != direct {
        failures.push(format!(
            "{who}: whoami_for(own ticket) {via:?} differs from whoami() {direct:?}"
        ));
    }
    let mut forged = own.clone();
    forged[..4].copy_from_slice(&superuser_oid.to_be_bytes());
    let mut flipped = own.clone();
    *flipped.last_mut().unwrap() ^= 1;
    for (what, ticket_sql) in [
        ("own ticket naming the superuser", bytea(&forged)),
        ("own ticket with a flipped MAC bit", bytea(&flipped)),
        ("a truncated ticket", bytea(&own[..own.len() - 1])),
        ("an empty ticket", "'\\x'::bytea".to_string()),
        ("a NULL ticket", "NULL::bytea".to_string()),
    ] {
        refused(&mut tx, ticketed, who, what, &ticket_sql, failures);
    }
    tx.commit().unwrap();
    let mut tx = client.transaction().unwrap();
    let what = "own ticket of an earlier transaction";
    refused(&mut tx, ticketed, who, what, &bytea(&own), failures);
}

/// Borrowed: the operator's ticket, presented in the actor's transaction
/// that has the same local id (the actor advances its own transaction
/// counter to it), is refused; so is the operator's role with the actor's
/// own MAC.
fn operator_ticket_cannot_be_borrowed(
    client: &mut Client,
    op: &mut Client,
    ticketed: &[&Func],
    who: &str,
    failures: &mut Vec<String>,
) {
    let mut actor_xact = ticket_xact(&mint(client));
    let operator_ticket = loop {
        let t = mint(op);
        if ticket_xact(&t) > actor_xact + 2 {
            break t;
        }
    };
    let target = ticket_xact(&operator_ticket);
    loop {
        let mut tx = client.transaction().unwrap();
        let t = mint(&mut tx);
        actor_xact = ticket_xact(&t);
        assert!(
            actor_xact <= target,
            "{who}: overshot the operator's transaction id"
        );
        if actor_xact == target {
            let what = "the operator's ticket, same transaction id";
            refused(
                &mut tx,
                ticketed,
                who,
                what,
                &bytea(&operator_ticket),
                failures,
            );
            let mut mixed = operator_ticket.clone();
            mixed[8..].copy_from_slice(&t[8..]);
            let what = "the operator's role and the actor's MAC";
            refused(&mut tx, ticketed, who, what, &bytea(&mixed), failures);
            break;
        }
    }
}
