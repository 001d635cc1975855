//! Who is asking, as backend memory that no SQL setting can reach.
//!
//! Two facts, each stamped with the transaction's local id and ignored (and
//! dropped) as soon as another transaction reads it, so that neither can
//! outlive a commit or an abort, nor pass through a transaction-pooling
//! PgBouncer to the next client of the server connection:
//!
//! - the requester a request token named (written only by
//!   `audience.authenticate`, and undone with the savepoint it was made
//!   under);
//! - the caller's role. Inside a SECURITY DEFINER function `current_user` is
//!   the function's owner, so each public read function is a thin
//!   SECURITY INVOKER wrapper that mints a *ticket* — the caller's
//!   `current_user` and the transaction, signed with a key that lives only in
//!   this backend — and hands it to the definer function behind it, which
//!   checks it and records the role. A ticket names only the role that
//!   minted it, so calling the definer function directly gains nothing, and
//!   a SECURITY DEFINER function of someone else's that calls ours is
//!   answered as its owner, as PostgreSQL answers it everywhere else.

use crate::error::AudienceError;
use crate::privacy::keys;
use hmac::{Hmac, Mac};
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::Sha256;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequester {
    pub subject: String,
    pub workspace: Option<String>,
}

/// What `authenticate` made of the requester in this transaction, one entry
/// per call (None: refused), each with the subtransaction it was made in, so
/// that rolling back to a savepoint undoes the calls made after it.
struct Authenticated {
    xact: pg_sys::LocalTransactionId,
    calls: Vec<(pg_sys::SubTransactionId, Option<TokenRequester>)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Authenticated>> = const { RefCell::new(None) };
    static WATCHING_SAVEPOINTS: Cell<bool> = const { Cell::new(false) };
}

fn transaction() -> pg_sys::LocalTransactionId {
    // SAFETY: MyProc is set for the life of every backend that runs SQL.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// A subtransaction (savepoint, PL/pgSQL exception block) that aborts takes
/// with it what was authenticated in it and in the subtransactions under it:
/// those are the ones with an id at least its own, since every subtransaction
/// begun while it was open is one of its descendants.
#[pg_guard]
unsafe extern "C-unwind" fn on_subtransaction(
    event: pg_sys::SubXactEvent::Type,
    aborted: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    if event != pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        return;
    }
    CURRENT.with(|c| {
        if let Some(a) = c.borrow_mut().as_mut() {
            a.calls.retain(|(made_in, _)| *made_in < aborted);
        }
    });
}

fn record(requester: Option<TokenRequester>) {
    if !WATCHING_SAVEPOINTS.get() {
        // SAFETY: registers a guarded callback for the life of the backend.
        unsafe { pg_sys::RegisterSubXactCallback(Some(on_subtransaction), std::ptr::null_mut()) };
        WATCHING_SAVEPOINTS.set(true);
    }
    let xact = transaction();
    // SAFETY: plain read of backend state.
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    CURRENT.with(|c| {
        let mut slot = c.borrow_mut();
        match slot.as_mut() {
            Some(a) if a.xact == xact => a.calls.push((sub, requester)),
            _ => *slot = Some(Authenticated { xact, calls: vec![(sub, requester)] }),
        }
    });
}

pub fn set(requester: TokenRequester) {
    record(Some(requester));
}

pub fn clear() {
    record(None);
}

pub fn get() -> Option<TokenRequester> {
    let now = transaction();
    CURRENT.with(|c| {
        let mut slot = c.borrow_mut();
        match slot.as_ref() {
            Some(a) if a.xact == now => a.calls.last().and_then(|(_, r)| r.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    })
}

thread_local! {
    static TICKET_KEY: [u8; keys::KEY_LEN] = keys::new_key();
    static CALLER: RefCell<Option<(pg_sys::LocalTransactionId, pg_sys::Oid)>> = const { RefCell::new(None) };
}

const TICKET_MAC_LEN: usize = 16;

fn ticket_mac(role: u32, xact: u32) -> Hmac<Sha256> {
    let mut m = TICKET_KEY.with(|k| Hmac::<Sha256>::new_from_slice(k).expect("any key length"));
    m.update(b"pg_audience/ticket\0");
    m.update(&role.to_be_bytes());
    m.update(&xact.to_be_bytes());
    m
}

/// A ticket for the current role in the current transaction.
pub fn ticket() -> Vec<u8> {
    // SAFETY: plain read of backend state.
    let role = unsafe { pg_sys::GetUserId() }.to_u32();
    let xact = transaction();
    let mut out = Vec::with_capacity(8 + TICKET_MAC_LEN);
    out.extend_from_slice(&role.to_be_bytes());
    out.extend_from_slice(&xact.to_be_bytes());
    out.extend_from_slice(&ticket_mac(role, xact).finalize().into_bytes()[..TICKET_MAC_LEN]);
    out
}

/// Checks a ticket (constant-time) and makes its role the caller for the
/// definer code that follows in this transaction.
pub fn enter(ticket: &[u8]) -> Result<pg_sys::Oid, AudienceError> {
    let refused = AudienceError::invalid("ticket", "not issued to this caller in this transaction");
    if ticket.len() != 8 + TICKET_MAC_LEN {
        return Err(refused);
    }
    let role = u32::from_be_bytes(ticket[0..4].try_into().expect("four bytes"));
    let xact = u32::from_be_bytes(ticket[4..8].try_into().expect("four bytes"));
    if xact != transaction() || ticket_mac(role, xact).verify_truncated_left(&ticket[8..]).is_err() {
        return Err(refused);
    }
    let role = pg_sys::Oid::from(role);
    CALLER.with(|c| *c.borrow_mut() = Some((xact, role)));
    Ok(role)
}

/// The caller's role. Inside a SECURITY DEFINER function, the role recorded
/// by the last `enter` of this transaction (none: nobody). Anywhere else —
/// a row-level security policy evaluated for a query on a table — the
/// current user, who is then the one asking.
pub fn caller_role() -> Option<pg_sys::Oid> {
    // SAFETY: plain reads of backend state.
    if !unsafe { pg_sys::InLocalUserIdChange() } {
        return Some(unsafe { pg_sys::GetUserId() });
    }
    let now = transaction();
    CALLER.with(|c| match *c.borrow() {
        Some((xact, role)) if xact == now => Some(role),
        _ => None,
    })
}
