//! The requester a request token named, kept in this backend's memory for the
//! current transaction only.
//!
//! The value is stamped with the transaction's local id and is ignored (and
//! dropped) as soon as another transaction reads it, so it cannot outlive a
//! commit or an abort, and a transaction-pooling PgBouncer handing the server
//! connection to another client cannot pass it on. Nothing but
//! `audience.authenticate` writes it: there is no setting behind it.

use pgrx::pg_sys;
use std::cell::RefCell;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequester {
    pub subject: String,
    pub workspace: Option<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<(pg_sys::LocalTransactionId, TokenRequester)>> = const { RefCell::new(None) };
}

fn transaction() -> pg_sys::LocalTransactionId {
    // SAFETY: MyProc is set for the life of every backend that runs SQL.
    unsafe { (*pg_sys::MyProc).lxid }
}

pub fn set(requester: TokenRequester) {
    CURRENT.with(|c| *c.borrow_mut() = Some((transaction(), requester)));
}

pub fn clear() {
    CURRENT.with(|c| *c.borrow_mut() = None);
}

pub fn get() -> Option<TokenRequester> {
    let now = transaction();
    CURRENT.with(|c| {
        let mut slot = c.borrow_mut();
        match &*slot {
            Some((xact, r)) if *xact == now => Some(r.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    })
}

/// The role the query runs as, as the caller sees it: inside a SECURITY
/// DEFINER function `current_user` is the function's owner, but the outer
/// user id is the session's role (after any SET ROLE, which PostgreSQL checks).
pub fn outer_role() -> pg_sys::Oid {
    // SAFETY: plain read of backend state.
    unsafe { pg_sys::GetOuterUserId() }
}
