//! The counters of every app of a workspace on one day, packed in one value
//! (workspace_days.apps): which apps are the most viewed in a window is then
//! a sum over a row per day, not over a row per app and day, of which a busy
//! workspace has thousands in a month.
//!
//! A packed value is a run of entries sorted by app id, each four
//! little-endian i64s: app id, sessions, visits, ended session time in
//! microseconds. An app without views that day has no entry, so a day's
//! value has one form, and the rollups compare byte for byte with a rebuild.

use crate::error::AudienceError;
use std::collections::BTreeMap;

const ENTRY: usize = 32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sessions: i64,
    pub visits: i64,
    pub session_micros: i64,
}

impl Counts {
    fn add(&mut self, other: Counts, sign: i64) {
        self.sessions += sign * other.sessions;
        self.visits += sign * other.visits;
        self.session_micros += sign * other.session_micros;
    }
}

fn damaged() -> AudienceError {
    AudienceError::invalid("apps", "is not a packed set of app counters")
}

fn read(bytes: &[u8], into: &mut BTreeMap<i64, Counts>, sign: i64) -> Result<(), AudienceError> {
    if bytes.len() % ENTRY != 0 {
        return Err(damaged());
    }
    for entry in bytes.chunks_exact(ENTRY) {
        let word = |i: usize| i64::from_le_bytes(entry[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let counts = Counts { sessions: word(1), visits: word(2), session_micros: word(3) };
        into.entry(word(0)).or_default().add(counts, sign);
    }
    Ok(())
}

/// Entries without views are dropped from a sum of values (`viewed_only`),
/// not from a value built from counters: a change of session time alone is
/// an entry without views that a sum adds to one with.
fn write(all: &BTreeMap<i64, Counts>, viewed_only: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(all.len() * ENTRY);
    for (app_id, c) in all.iter().filter(|(_, c)| !viewed_only || c.sessions != 0 || c.visits != 0) {
        for word in [*app_id, c.sessions, c.visits, c.session_micros] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    bytes
}

/// The packed counters of these apps (an app named twice adds up).
pub fn of(entries: impl IntoIterator<Item = (i64, Counts)>) -> Vec<u8> {
    let mut all = BTreeMap::new();
    for (app_id, counts) in entries {
        all.entry(app_id).or_insert_with(Counts::default).add(counts, 1);
    }
    write(&all, false)
}

/// `kept` plus `added` (the fold), or minus it (erasure): an app whose
/// views reach zero leaves.
pub fn combine(kept: &[u8], other: &[u8], subtract: bool) -> Result<Vec<u8>, AudienceError> {
    let mut all = BTreeMap::new();
    read(kept, &mut all, 1)?;
    read(other, &mut all, if subtract { -1 } else { 1 })?;
    Ok(write(&all, true))
}

/// The sums of many days' counters, per app, for the apps in `only` (all
/// when None), in app id order.
pub fn sum<'a>(
    packed: impl IntoIterator<Item = &'a [u8]>,
    only: Option<&[i64]>,
) -> Result<Vec<(i64, Counts)>, AudienceError> {
    let mut all = BTreeMap::new();
    for bytes in packed {
        read(bytes, &mut all, 1)?;
    }
    let only = only.map(|apps| {
        let mut sorted = apps.to_vec();
        sorted.sort_unstable();
        sorted
    });
    Ok(all.into_iter().filter(|(app_id, _)| only.as_ref().is_none_or(|apps| apps.binary_search(app_id).is_ok())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sessions: i64, visits: i64, session_micros: i64) -> Counts {
        Counts { sessions, visits, session_micros }
    }

    #[test]
    fn days_add_up_per_app() {
        let monday = of([(7, c(1, 0, 5)), (3, c(0, 2, 0)), (7, c(1, 0, 1))]);
        let tuesday = of([(3, c(1, 0, 9))]);
        assert_eq!(monday.len(), 2 * ENTRY, "one entry per app");
        assert_eq!(sum([monday.as_slice(), tuesday.as_slice()], None).unwrap(), vec![(3, c(1, 2, 9)), (7, c(2, 0, 6))]);
        assert_eq!(sum([monday.as_slice()], Some(&[7, 99])).unwrap(), vec![(7, c(2, 0, 6))]);
    }

    #[test]
    fn a_value_has_one_form_whatever_built_it() {
        let a = of([(1, c(1, 0, 0)), (2, c(0, 1, 0))]);
        let b = of([(2, c(0, 1, 0)), (5, c(3, 0, 7))]);
        let both = combine(&a, &b, false).unwrap();
        assert_eq!(both, of([(5, c(3, 0, 7)), (2, c(0, 2, 0)), (1, c(1, 0, 0))]));
        // Taking b out again gives a, byte for byte: app 5 leaves.
        assert_eq!(combine(&both, &b, true).unwrap(), a);
        assert_eq!(combine(&a, &a, true).unwrap(), Vec::<u8>::new());
        // Session time alone (end_session) adds to an app's entry.
        let ended = of([(5, c(0, 0, 3))]);
        assert_eq!(ended.len(), ENTRY);
        assert_eq!(combine(&both, &ended, false).unwrap(), of([(5, c(3, 0, 10)), (2, c(0, 2, 0)), (1, c(1, 0, 0))]));
    }

    #[test]
    fn refuses_what_is_not_packed_counters() {
        assert_eq!(combine(&[1, 2, 3], &[], false), Err(damaged()));
        assert_eq!(sum([[0u8; 31].as_slice()], None), Err(damaged()));
    }
}
