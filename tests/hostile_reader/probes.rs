//! How the tests try a door and judge what came back: every case is run,
//! and every failing one gathered, before a test fails, so that one run
//! lists them all.

use crate::fixture::json_rows;
use crate::oracle::{State, WhoamiRow};
use postgres::error::DbError;
use postgres::Transaction;
use std::collections::{BTreeSet, HashSet};
use std::io::Read;

/// What audience.whoami() answers in `tx`, sorted.
pub fn whoami(tx: &mut Transaction) -> Vec<WhoamiRow> {
    let mut rows: Vec<WhoamiRow> = tx
        .query(
            "SELECT requester, resolved_by, workspace, kind FROM audience.whoami()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    rows.sort();
    rows
}

/// What the requester of `tx` reads: whoami, and each of `views`.
pub fn state_in(tx: &mut Transaction, views: &[String]) -> State {
    State {
        whoami: whoami(tx),
        views: views
            .iter()
            .map(|v| (v.clone(), json_rows(tx, v)))
            .collect(),
    }
}

/// COPY ... TO STDOUT in a savepoint: the text the client receives.
pub fn copy_out(tx: &mut Transaction, sql: &str) -> Result<String, postgres::Error> {
    let mut sp = tx.transaction()?;
    let mut text = String::new();
    // An error may come after the COPY began (on Citus, from a worker):
    // it is the statement's answer all the same.
    let result = sp.copy_out(sql).and_then(|mut reader| {
        reader.read_to_string(&mut text).map(|_| ()).map_err(|e| {
            *e.into_inner()
                .and_then(|inner| inner.downcast::<postgres::Error>().ok())
                .expect("reading COPY data")
        })
    });
    if result.is_ok() {
        sp.commit()?;
    }
    result.map(|_| text)
}

pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE ({e})"))
}

/// Fails the case unless `result` is a permission error (42501).
pub fn expect_denied<T: std::fmt::Debug>(
    failures: &mut Vec<String>,
    who: &str,
    what: &str,
    result: Result<T, postgres::Error>,
) {
    match result {
        Ok(v) => failures.push(format!(
            "{who}: {what} succeeded: {}",
            truncate(&format!("{v:?}"))
        )),
        Err(e) if sqlstate(&e) == "42501" => {}
        Err(e) => failures.push(format!(
            "{who}: {what} failed with {} instead of 42501: {e}",
            sqlstate(&e)
        )),
    }
}

pub fn truncate(s: &str) -> String {
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s.to_string()
    }
}

/// Every hidden string that `text` contains (case-insensitive).
///
/// The texts searched (plan trees above all) run to a hundred megabytes and
/// repeat themselves: a hidden string can only lie within a run of the bytes
/// hidden strings are made of (any byte of a non-ASCII character counting as
/// one), so only the distinct runs are searched, each once.
pub fn leaked<'a>(text: &str, hidden: &'a BTreeSet<String>) -> Vec<&'a str> {
    let text = text.to_lowercase();
    let needles: Vec<(String, &str)> = hidden
        .iter()
        .map(|h| (h.to_lowercase(), h.as_str()))
        .collect();
    let mut inside = [false; 256];
    inside[128..].fill(true);
    for b in needles.iter().flat_map(|(n, _)| n.bytes()) {
        inside[b as usize] = true;
    }
    let Some(outside) = (0..128u8).find(|b| !inside[*b as usize]) else {
        // Every ASCII byte is in some hidden string: no way to cut the text.
        return needles
            .iter()
            .filter(|(n, _)| text.contains(n.as_str()))
            .map(|(_, h)| *h)
            .collect();
    };
    // Cut at ASCII bytes only, so that every run is whole characters, and
    // joined again with a byte that no hidden string holds.
    let runs: HashSet<&[u8]> = text.as_bytes().split(|b| !inside[*b as usize]).collect();
    let runs = String::from_utf8(runs.into_iter().collect::<Vec<_>>().join(&outside)).unwrap();
    needles
        .iter()
        .filter(|(n, _)| runs.contains(n.as_str()))
        .map(|(_, h)| *h)
        .collect()
}

/// Everything the client receives with an error.
pub fn error_text(e: &DbError) -> String {
    format!(
        "{} {:?} {:?} {:?}",
        e.message(),
        e.detail(),
        e.hint(),
        e.where_()
    )
}

/// Fails the test with every failing case, if there is any.
pub fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// All the text a set of NOTICEs carries.
pub fn notice_text(notices: &[DbError]) -> String {
    notices
        .iter()
        .map(error_text)
        .collect::<Vec<_>>()
        .join("\n")
}
