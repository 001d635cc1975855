//! Counters of many keys packed in one value: per workspace and day, those
//! of every app (workspace_days.apps) and those of every viewer
//! (workspace_days.viewer_counts). Which apps are the most viewed in a
//! window, or which viewers, is then a sum over a row per day, not over a
//! row per app (or viewer) and day, of which a busy workspace has thousands
//! a day.
//!
//! A packed value is a run of entries sorted by key, each five integers as
//! zigzag LEB128 varints: the key's distance from the previous entry's (from
//! 0 for the first), sessions, visits, ended session time in microseconds,
//! and the latest view's time (PostgreSQL's microseconds, as the distance
//! from the previous entry's, the first from `NO_VIEW_TIME`, which is also
//! the time of every entry of a value that does not keep it). About 9 bytes an app entry and 14 a viewer entry, where fixed-width
//! words took 32 and made the days of a year of a busy workspace megabytes to
//! read. A key without views that day has no entry, so a day's value has one
//! form, and the rollups compare byte for byte with a rebuild.
//!
//! A viewer's key also says whether the views were identifiable
//! (`viewer_key`): the two kinds are labelled apart, view by view, and never
//! share an entry.

use crate::error::AudienceError;
use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// The latest-view time of an entry whose value does not keep one (apps),
/// and of an end_session change, which adds session time but no view.
pub const NO_VIEW_TIME: i64 = i64::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub sessions: i64,
    pub visits: i64,
    pub session_micros: i64,
    pub last_viewed_at: i64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts { sessions: 0, visits: 0, session_micros: 0, last_viewed_at: NO_VIEW_TIME }
    }
}

impl Counts {
    /// Counters add up (or, for erasure, come off); the latest view is the
    /// later one, and erasure leaves it: a key whose views go leaves whole.
    fn add(&mut self, other: Counts, sign: i64) {
        self.sessions += sign * other.sessions;
        self.visits += sign * other.visits;
        self.session_micros += sign * other.session_micros;
        if sign > 0 {
            self.last_viewed_at = self.last_viewed_at.max(other.last_viewed_at);
        }
    }

    pub fn views(&self) -> i64 {
        self.sessions + self.visits
    }
}

/// The key of a viewer's entry: its id, and whether the views were
/// identifiable.
pub fn viewer_key(viewer_id: i64, identifiable: bool) -> i64 {
    viewer_id.wrapping_mul(2) | i64::from(identifiable)
}

fn viewer_of(key: i64) -> (i64, bool) {
    (key >> 1, key & 1 == 1)
}

fn damaged() -> AudienceError {
    AudienceError::invalid("packed", "is not a packed set of counters")
}

fn put(bytes: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        bytes.push((v as u8) | 0x80);
        v >>= 7;
    }
    bytes.push(v as u8);
}

fn take(bytes: &[u8], at: &mut usize) -> Result<i64, AudienceError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or_else(damaged)?;
        *at += 1;
        // The tenth byte holds the last bit of 64.
        if shift == 63 && byte > 1 {
            return Err(damaged());
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    Err(damaged())
}

/// The entries of a packed value, one at a time, in key order (a value
/// whose keys are not in order was not made here).
struct Entries<'a> {
    bytes: &'a [u8],
    at: usize,
    key: i64,
    last: i64,
}

impl<'a> Entries<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Entries { bytes, at: 0, key: 0, last: NO_VIEW_TIME }
    }

    fn next_entry(&mut self) -> Result<Option<(i64, Counts)>, AudienceError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let first = self.at == 0;
        let step = take(self.bytes, &mut self.at)?;
        if !first && step <= 0 {
            return Err(damaged());
        }
        self.key = self.key.wrapping_add(step);
        let (sessions, visits, session_micros) =
            (take(self.bytes, &mut self.at)?, take(self.bytes, &mut self.at)?, take(self.bytes, &mut self.at)?);
        self.last = self.last.wrapping_add(take(self.bytes, &mut self.at)?);
        Ok(Some((self.key, Counts { sessions, visits, session_micros, last_viewed_at: self.last })))
    }
}

/// Calls `each` with every entry of a packed value, in key order.
fn entries(bytes: &[u8], mut each: impl FnMut(i64, Counts)) -> Result<(), AudienceError> {
    let mut all = Entries::new(bytes);
    while let Some((key, counts)) = all.next_entry()? {
        each(key, counts);
    }
    Ok(())
}

/// Writes entries given in key order. Entries without views are dropped
/// from a sum of values (`viewed_only`), not from a value built from
/// counters: a change of session time alone is an entry without views that
/// a sum adds to one with.
struct Writer {
    bytes: Vec<u8>,
    previous: i64,
    last: i64,
    viewed_only: bool,
}

impl Writer {
    fn new(capacity: usize, viewed_only: bool) -> Self {
        Writer { bytes: Vec::with_capacity(capacity), previous: 0, last: NO_VIEW_TIME, viewed_only }
    }

    fn push(&mut self, key: i64, c: Counts) {
        if self.viewed_only && c.views() == 0 {
            return;
        }
        for value in [key.wrapping_sub(self.previous), c.sessions, c.visits, c.session_micros, c.last_viewed_at.wrapping_sub(self.last)] {
            put(&mut self.bytes, value);
        }
        (self.previous, self.last) = (key, c.last_viewed_at);
    }
}

fn write(all: &BTreeMap<i64, Counts>, viewed_only: bool) -> Vec<u8> {
    let mut out = Writer::new(all.len() * 10, viewed_only);
    for (key, c) in all {
        out.push(*key, *c);
    }
    out.bytes
}

/// The packed counters of these keys (a key named twice adds up).
pub fn of(entries: impl IntoIterator<Item = (i64, Counts)>) -> Vec<u8> {
    let mut all = BTreeMap::new();
    for (key, counts) in entries {
        all.entry(key).or_insert_with(Counts::default).add(counts, 1);
    }
    write(&all, false)
}

/// The sum of many values, packed: a month's counters from its days'
/// (entries without views dropped, as `combine` drops them, so a month's
/// value has one form however its days were added).
pub fn total<'a>(packed: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, AudienceError> {
    let sums = sum(packed, None)?;
    let mut out = Writer::new(sums.len() * 10, true);
    for (key, counts) in sums {
        out.push(key, counts);
    }
    Ok(out.bytes)
}

/// `kept` plus `added` (the fold), or minus it (erasure): a key whose
/// views reach zero leaves. Both are in key order and are merged in one
/// pass: a fold adds a few entries to a busy day's value of thousands, and
/// adding them up in a tree took 8 ms for a day of 15,000 viewers.
pub fn combine(kept: &[u8], other: &[u8], sign: Sign) -> Result<Vec<u8>, AudienceError> {
    let sign = sign.factor();
    let (mut kept, mut other) = (Entries::new(kept), Entries::new(other));
    let mut out = Writer::new(kept.bytes.len() + other.bytes.len(), true);
    let (mut k, mut o) = (kept.next_entry()?, other.next_entry()?);
    loop {
        let mut sum = Counts::default();
        match (k, o) {
            (None, None) => return Ok(out.bytes),
            (Some((key, counts)), rest) if rest.is_none_or(|(other_key, _)| key < other_key) => {
                sum.add(counts, 1);
                out.push(key, sum);
                k = kept.next_entry()?;
            }
            (Some((key, counts)), Some((other_key, other_counts))) if key == other_key => {
                sum.add(counts, 1);
                sum.add(other_counts, sign);
                out.push(key, sum);
                (k, o) = (kept.next_entry()?, other.next_entry()?);
            }
            (_, Some((other_key, other_counts))) => {
                sum.add(other_counts, sign);
                out.push(other_key, sum);
                o = other.next_entry()?;
            }
            (Some(_), None) => unreachable!("taken by the first arm"),
        }
    }
}

/// A value of viewer counters without one viewer's entries (both of its
/// keys, identifiable or not), every other entry as it was: erasure.
pub fn without_viewer(bytes: &[u8], viewer_id: i64) -> Result<Vec<u8>, AudienceError> {
    let gone = [viewer_key(viewer_id, false), viewer_key(viewer_id, true)];
    let mut kept = Writer::new(bytes.len(), false);
    entries(bytes, |key, counts| {
        if !gone.contains(&key) {
            kept.push(key, counts);
        }
    })?;
    Ok(kept.bytes)
}

/// One viewer's counters in a value of viewer counters, both of its keys
/// added up; None when it has no entry: what erasure takes off a day whose
/// raw events were retired.
pub fn viewer_share(bytes: &[u8], viewer_id: i64) -> Result<Option<Counts>, AudienceError> {
    let keys = [viewer_key(viewer_id, false), viewer_key(viewer_id, true)];
    let mut share: Option<Counts> = None;
    entries(bytes, |key, counts| {
        if keys.contains(&key) {
            share.get_or_insert_with(Counts::default).add(counts, 1);
        }
    })?;
    Ok(share)
}

/// The sums of many days' counters, per key, for the keys in `only` (all
/// when None), in key order. Summed in a hash map and sorted once: a key
/// is in many of the values, so the map stays small while the entries
/// read are many.
pub fn sum<'a>(
    packed: impl IntoIterator<Item = &'a [u8]>,
    only: Option<&[i64]>,
) -> Result<Vec<(i64, Counts)>, AudienceError> {
    sum_less(packed, [], only)
}

/// The same, less the values of `minus`: a month's sums less the days of
/// it that a window leaves out before its start (their views are earlier
/// than the window's, so each key's latest view stays the month's).
pub fn sum_less<'a>(
    packed: impl IntoIterator<Item = &'a [u8]>,
    minus: impl IntoIterator<Item = &'a [u8]>,
    only: Option<&[i64]>,
) -> Result<Vec<(i64, Counts)>, AudienceError> {
    let mut all: HashMap<i64, Counts, BuildHasherDefault<IdHasher>> = HashMap::default();
    for bytes in packed {
        entries(bytes, |key, counts| all.entry(key).or_default().add(counts, 1))?;
    }
    for bytes in minus {
        entries(bytes, |key, counts| all.entry(key).or_default().add(counts, -1))?;
    }
    let only = only.map(|keys| {
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted
    });
    let mut sums: Vec<(i64, Counts)> = all
        .into_iter()
        .filter(|(key, _)| only.as_ref().is_none_or(|keys| keys.binary_search(key).is_ok()))
        .collect();
    sums.sort_unstable_by_key(|(key, _)| *key);
    Ok(sums)
}

/// How the views of one packed value of viewer counters are labelled, for
/// each of the four kinds of views (`Classes::index`): whether they are
/// shown by identity, and the label time (a monthly pseudonym's month) of
/// those that are not. The caller decides these with the labelling rule
/// (sql/labels.sql); this module only groups by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class {
    pub identified: bool,
    pub label_at: Option<i64>,
}

pub struct Classes(pub [Class; 4]);

/// Whether a value's views are added to a sum, or taken off it: erasure
/// (combine), and a month's sums less the days of it before a window
/// (top_viewers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Add,
    TakeOff,
}

impl Sign {
    fn factor(self) -> i64 {
        match self {
            Sign::Add => 1,
            Sign::TakeOff => -1,
        }
    }
}

impl Classes {
    /// The kind of a view: by a member of the workspace now, and
    /// identifiable as stored.
    pub fn index(is_member: bool, identifiable: bool) -> usize {
        usize::from(is_member) * 2 + usize::from(identifiable)
    }
}

/// The hash of the sums of top_viewers, keyed by viewer id (numbered by the
/// database, not chosen by a caller) and label number: a multiply and a
/// shift, where the standard hasher's SipHash took most of a sum over a
/// month of a busy workspace's days.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

/// A row of `top_viewers`: a viewer's views under one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub viewer_id: i64,
    pub class: Class,
    pub counts: Counts,
}

/// The `max` viewers with the most views in these packed values of viewer
/// counters, each value labelled by its classes, a viewer's views summed
/// per label: most views first, then the latest view, then viewer id with
/// pseudonymous before identified (a total order, so the rows chosen are
/// those SQL's ORDER BY ... LIMIT picks). `members` are the viewer ids of
/// the workspace's members now. A value taken off (`Sign::TakeOff`) must
/// hold views earlier than every added one of its keys (the days of a month
/// before a window), as a key's latest view is kept from the added ones.
pub fn top_viewers<'a>(
    packed: impl IntoIterator<Item = (&'a [u8], &'a Classes, Sign)>,
    members: &[i64],
    max: usize,
) -> Result<Vec<Labelled>, AudienceError> {
    let mut members = members.to_vec();
    members.sort_unstable();
    // A window has few labels (two, and one a month for monthly
    // pseudonyms): each gets a number, and each value maps its four kinds
    // of views to theirs.
    let mut labels: Vec<Class> = Vec::new();
    // Each value's reader, its label numbers, its sign, and its entry in
    // the heap.
    let mut values: Vec<(Entries<'a>, [u32; 4], i64, Counts)> = Vec::new();
    for (bytes, classes, sign) in packed {
        let numbers = classes.0.map(|class| match labels.iter().position(|c| *c == class) {
            Some(n) => n as u32,
            None => {
                labels.push(class);
                (labels.len() - 1) as u32
            }
        });
        values.push((Entries::new(bytes), numbers, sign.factor(), Counts::default()));
    }
    let order = |a: &Labelled, b: &Labelled| {
        b.counts
            .views()
            .cmp(&a.counts.views())
            .then(b.counts.last_viewed_at.cmp(&a.counts.last_viewed_at))
            .then(a.viewer_id.cmp(&b.viewer_id))
            .then(a.class.identified.cmp(&b.class.identified))
            .then(a.class.label_at.cmp(&b.class.label_at))
    };
    // The first `max` in that order, kept as the sums are made: a sum is
    // looked at further only when it has at least the views of the last
    // one kept.
    let mut rows: Vec<Labelled> = Vec::with_capacity(max + 1);
    let mut keep = |viewer_id: i64, label: u32, counts: Counts| {
        if counts.views() == 0 || max == 0 || (rows.len() == max && counts.views() < rows[max - 1].counts.views()) {
            return;
        }
        let row = Labelled { viewer_id, class: labels[label as usize], counts };
        let at = rows.partition_point(|kept| order(kept, &row).is_lt());
        if at < max {
            rows.insert(at, row);
            rows.truncate(max);
        }
    };
    // Each value's keys ascend, and a viewer's two keys (identifiable or
    // not) are neighbours: merged in key order, the values give each viewer's
    // entries together, and a viewer's sums per label are complete when the
    // next viewer comes. A hash map of every viewer of the window was
    // several times slower: a month of a busy workspace has tens of
    // thousands.
    let mut heap = BinaryHeap::with_capacity(values.len());
    for (n, (value, _, _, current)) in values.iter_mut().enumerate() {
        if let Some((key, counts)) = value.next_entry()? {
            *current = counts;
            heap.push(Reverse((key, n)));
        }
    }
    let mut viewer: Option<i64> = None;
    let mut sums: Vec<(u32, Counts)> = Vec::new();
    let mut next_member = 0;
    let mut is_member = false;
    while let Some(mut top) = heap.peek_mut() {
        let Reverse((key, n)) = *top;
        let (counts, sign) = (values[n].3, values[n].2);
        let (viewer_id, identifiable) = viewer_of(key);
        if viewer != Some(viewer_id) {
            for (label, sum) in sums.drain(..) {
                keep(viewer.unwrap_or_default(), label, sum);
            }
            viewer = Some(viewer_id);
            while next_member < members.len() && members[next_member] < viewer_id {
                next_member += 1;
            }
            is_member = members.get(next_member) == Some(&viewer_id);
        }
        let label = values[n].1[Classes::index(is_member, identifiable)];
        match sums.iter_mut().find(|(l, _)| *l == label) {
            Some((_, sum)) => sum.add(counts, sign),
            None => {
                let mut sum = Counts::default();
                sum.add(counts, sign);
                sums.push((label, sum));
            }
        }
        // The value's next entry takes its place in the heap.
        match values[n].0.next_entry()? {
            Some((next_key, next)) => {
                values[n].3 = next;
                *top = Reverse((next_key, n));
            }
            None => {
                PeekMut::pop(top);
            }
        }
    }
    for (label, sum) in sums.drain(..) {
        keep(viewer.unwrap_or_default(), label, sum);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sessions: i64, visits: i64, session_micros: i64) -> Counts {
        Counts { sessions, visits, session_micros, last_viewed_at: NO_VIEW_TIME }
    }

    fn at(counts: Counts, last_viewed_at: i64) -> Counts {
        Counts { last_viewed_at, ..counts }
    }

    #[test]
    fn days_add_up_per_key() {
        let monday = of([(7, c(1, 0, 5)), (3, c(0, 2, 0)), (7, c(1, 0, 1))]);
        let tuesday = of([(3, c(1, 0, 9))]);
        assert_eq!(monday.len(), 10, "an entry per key, each five one-byte varints");
        assert_eq!(sum([monday.as_slice(), tuesday.as_slice()], None).unwrap(), vec![(3, c(1, 2, 9)), (7, c(2, 0, 6))]);
        assert_eq!(sum([monday.as_slice()], Some(&[7, 99])).unwrap(), vec![(7, c(2, 0, 6))]);
    }

    #[test]
    fn a_total_is_the_values_added_one_by_one() {
        let days = [
            of([(7, at(c(1, 0, 5), 100)), (3, c(0, 2, 0))]),
            of([(3, at(c(1, 0, 9), 50)), (9, c(0, 1, 0))]),
            of([(7, at(c(2, 1, 0), 40))]),
        ];
        let mut by_fold = days[0].clone();
        for day in &days[1..] {
            by_fold = combine(&by_fold, day, Sign::Add).unwrap();
        }
        assert_eq!(total(days.iter().map(|d| d.as_slice())).unwrap(), by_fold);
        assert_eq!(total(std::iter::empty()).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn the_latest_view_is_the_later_one() {
        let a = of([(4, at(c(1, 0, 0), 1_000)), (4, at(c(0, 1, 0), 900))]);
        let b = of([(4, at(c(1, 0, 0), 1_500))]);
        assert_eq!(sum([a.as_slice(), b.as_slice()], None).unwrap(), vec![(4, at(c(2, 1, 0), 1_500))]);
        // A change of session time alone keeps it.
        let ended = of([(4, c(0, 0, 30))]);
        assert_eq!(combine(&a, &ended, Sign::Add).unwrap(), of([(4, at(c(1, 1, 30), 1_000))]));
    }

    #[test]
    fn a_value_has_one_form_whatever_built_it() {
        let a = of([(1, c(1, 0, 0)), (2, c(0, 1, 0))]);
        let b = of([(2, c(0, 1, 0)), (5, c(3, 0, 7))]);
        let both = combine(&a, &b, Sign::Add).unwrap();
        assert_eq!(both, of([(5, c(3, 0, 7)), (2, c(0, 2, 0)), (1, c(1, 0, 0))]));
        // Taking b out again gives a, byte for byte: key 5 leaves.
        assert_eq!(combine(&both, &b, Sign::TakeOff).unwrap(), a);
        assert_eq!(combine(&a, &a, Sign::TakeOff).unwrap(), Vec::<u8>::new());
        // Session time alone (end_session) adds to a key's entry.
        let ended = of([(5, c(0, 0, 3))]);
        assert_eq!(sum([ended.as_slice()], None).unwrap(), vec![(5, c(0, 0, 3))]);
        assert_eq!(combine(&both, &ended, Sign::Add).unwrap(), of([(5, c(3, 0, 10)), (2, c(0, 2, 0)), (1, c(1, 0, 0))]));
    }

    #[test]
    fn a_viewer_leaves_whole_and_the_rest_as_it_was() {
        let day = of([
            (viewer_key(4, false), at(c(1, 0, 5), 100)),
            (viewer_key(4, true), at(c(0, 2, 0), 120)),
            (viewer_key(7, false), at(c(3, 0, 9), 90)),
            (viewer_key(9, true), at(c(0, 1, 0), 130)),
        ]);
        let without = without_viewer(&day, 4).unwrap();
        assert_eq!(
            without,
            of([(viewer_key(7, false), at(c(3, 0, 9), 90)), (viewer_key(9, true), at(c(0, 1, 0), 130))]),
            "the form a value made of the others alone has"
        );
        assert_eq!(without_viewer(&day, 8).unwrap(), day, "a viewer without entries changes nothing");
        assert_eq!(without_viewer(&without_viewer(&without, 7).unwrap(), 9).unwrap(), Vec::<u8>::new());
        assert!(without_viewer(&[0x80], 4).is_err(), "a damaged value is refused");
        assert_eq!(viewer_share(&day, 4).unwrap(), Some(at(c(1, 2, 5), 120)), "both kinds of views add up");
        assert_eq!(viewer_share(&day, 9).unwrap(), Some(at(c(0, 1, 0), 130)));
        assert_eq!(viewer_share(&day, 8).unwrap(), None, "no entry, no share");
        assert_eq!(viewer_share(&without, 4).unwrap(), None);
        assert!(viewer_share(&[0x80], 4).is_err(), "a damaged value is refused");
    }

    fn read(bytes: &[u8], into: &mut BTreeMap<i64, Counts>, sign: i64) -> Result<(), AudienceError> {
        entries(bytes, |key, counts| into.entry(key).or_default().add(counts, sign))
    }

    /// The one-pass merge gives the bytes that adding every entry up in key
    /// order gives, whatever keys the two values share.
    #[test]
    fn combining_in_one_pass_equals_adding_up_in_a_tree() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..300 {
            let spread = [5, 50, 5_000][round % 3];
            let mut value = |n: usize| {
                of((0..n).map(|_| {
                    let counts = c(rng.gen_range(0..3), rng.gen_range(0..2), rng.gen_range(-5..500));
                    (rng.gen_range(0..spread), at(counts, rng.gen_range(-1_000..1_000_000)))
                }))
            };
            let (kept, other) = (value(round % 40), value(round % 7));
            for sign in [Sign::Add, Sign::TakeOff] {
                let mut tree = BTreeMap::new();
                read(&kept, &mut tree, 1).unwrap();
                read(&other, &mut tree, sign.factor()).unwrap();
                assert_eq!(combine(&kept, &other, sign).unwrap(), write(&tree, true), "round {round}, {sign:?}");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_packed_counters() {
        // An entry cut short, a varint that never ends, one of more than
        // 64 bits, and keys out of order (the second entry's step is -1).
        assert_eq!(combine(&[2, 2, 0], &[], Sign::Add), Err(damaged()));
        assert_eq!(combine(&of([(1, c(1, 0, 0))]), &[2, 2, 0], Sign::Add), Err(damaged()));
        assert_eq!(sum([[0xffu8; 11].as_slice()], None), Err(damaged()));
        let too_wide = [[0xffu8; 9].as_slice(), &[0x02, 0, 0, 0, 0]].concat();
        assert_eq!(sum([too_wide.as_slice()], None), Err(damaged()));
        assert_eq!(sum([[4u8, 2, 0, 0, 0, 1, 2, 0, 0, 0].as_slice()], None), Err(damaged()));
    }

    #[test]
    fn large_and_negative_values_round_trip() {
        let big = of([(i64::MAX / 2, at(c(1, 0, i64::MAX / 4), i64::MAX)), (1, at(c(0, 1, -5), -7))]);
        assert_eq!(
            sum([big.as_slice()], None).unwrap(),
            vec![(1, at(c(0, 1, -5), -7)), (i64::MAX / 2, at(c(1, 0, i64::MAX / 4), i64::MAX))]
        );
    }

    const PSEUDONYM: Class = Class { identified: false, label_at: None };
    const NAME: Class = Class { identified: true, label_at: None };

    fn month(label_at: i64) -> Class {
        Class { identified: false, label_at: Some(label_at) }
    }

    #[test]
    fn top_viewers_label_view_by_view() {
        // Day one: only a member's views are identified. Day two: an
        // identifiable view is too.
        let day_one = Classes([PSEUDONYM, PSEUDONYM, NAME, NAME]);
        let day_two = Classes([PSEUDONYM, NAME, NAME, NAME]);
        let one = of([
            (viewer_key(10, false), at(c(2, 0, 5), 100)),
            (viewer_key(10, true), at(c(1, 0, 0), 110)),
            (viewer_key(20, false), at(c(0, 1, 0), 120)),
        ]);
        let two = of([(viewer_key(10, true), at(c(0, 1, 0), 200)), (viewer_key(30, false), at(c(1, 0, 0), 50))]);
        let rows = top_viewers([(one.as_slice(), &day_one, Sign::Add), (two.as_slice(), &day_two, Sign::Add)], &[20], 10).unwrap();
        let got: Vec<(i64, Class, i64, i64)> =
            rows.iter().map(|r| (r.viewer_id, r.class, r.counts.views(), r.counts.last_viewed_at)).collect();
        assert_eq!(
            got,
            vec![
                // Viewer 10's views on day one are one pseudonym, whether
                // identifiable or not; its identifiable view of day two is
                // shown by name, apart.
                (10, PSEUDONYM, 3, 110),
                (10, NAME, 1, 200),
                // A member is shown by name.
                (20, NAME, 1, 120),
                (30, PSEUDONYM, 1, 50),
            ]
        );
        assert_eq!(top_viewers([(one.as_slice(), &day_one, Sign::Add)], &[], 1).unwrap().len(), 1);
    }

    #[test]
    fn top_viewers_keep_monthly_pseudonyms_apart_and_break_ties_by_id() {
        let march = Classes([month(1); 4]);
        let april = Classes([month(2); 4]);
        let m = of([(viewer_key(8, false), at(c(1, 0, 0), 5)), (viewer_key(9, false), at(c(1, 0, 0), 5))]);
        let a = of([(viewer_key(8, false), at(c(1, 0, 0), 6))]);
        let rows = top_viewers([(m.as_slice(), &march, Sign::Add), (a.as_slice(), &april, Sign::Add)], &[], 2).unwrap();
        let got: Vec<(i64, Class)> = rows.iter().map(|r| (r.viewer_id, r.class)).collect();
        assert_eq!(got, vec![(8, month(2)), (8, month(1))], "two pseudonyms; the later first, then id 8 before 9");
    }

    #[test]
    fn a_month_less_its_first_days_is_its_other_days() {
        // Days in time order: a viewer's views of later days are later.
        let classes = Classes([PSEUDONYM, NAME, NAME, NAME]);
        let days: Vec<Vec<u8>> = (0..8i64)
            .map(|d| of((0..30i64).filter(|v| (v * 5 + d) % 4 != 0).map(|v| (viewer_key(v, v % 3 == 0), at(c(v % 2 + 1, d % 2, v), 1000 * d + v)))))
            .collect();
        let month = total(days.iter().map(|d| d.as_slice())).unwrap();
        let (first, rest) = days.split_at(3);
        let less = top_viewers(
            std::iter::once((month.as_slice(), &classes, Sign::Add)).chain(first.iter().map(|d| (d.as_slice(), &classes, Sign::TakeOff))),
            &[5],
            1000,
        )
        .unwrap();
        let other = top_viewers(rest.iter().map(|d| (d.as_slice(), &classes, Sign::Add)), &[5], 1000).unwrap();
        assert!(other.len() > 20);
        assert_eq!(less, other, "the same rows, latest views included");
        assert_eq!(
            sum_less([month.as_slice()], first.iter().map(|d| d.as_slice()), None)
                .unwrap()
                .into_iter()
                .filter(|(_, c)| c.views() != 0)
                .collect::<Vec<_>>(),
            sum(rest.iter().map(|d| d.as_slice()), None).unwrap()
        );
    }

    #[test]
    fn top_viewers_keep_the_first_rows_of_the_whole_order() {
        // Many ties in views and times: the rows kept while reading are the
        // first of the order that sorting every sum gives.
        let classes = Classes([PSEUDONYM, NAME, NAME, NAME]);
        let days: Vec<Vec<u8>> = (0..6i64)
            .map(|d| of((0..40i64).filter(|v| (v * 7 + d) % 3 != 0).map(|v| (viewer_key(v, v % 4 == 0), at(c(v % 3, d % 2, 0), 100 + v % 5)))))
            .collect();
        let all = top_viewers(days.iter().map(|d| (d.as_slice(), &classes, Sign::Add)), &[5, 9], 1000).unwrap();
        assert!(all.len() > 30);
        let key = |r: &Labelled| (-r.counts.views(), -r.counts.last_viewed_at, r.viewer_id, r.class.identified);
        assert!(all.windows(2).all(|w| key(&w[0]) < key(&w[1])), "every sum, in the order of the result");
        let with_views = sum(days.iter().map(|d| d.as_slice()), None).unwrap().iter().filter(|(_, c)| c.views() > 0).count();
        assert!(all.len() >= with_views / 2 && all.len() <= with_views, "a row per viewer and label");
        for max in [0, 1, 2, 5, 10, 29] {
            let top = top_viewers(days.iter().map(|d| (d.as_slice(), &classes, Sign::Add)), &[5, 9], max).unwrap();
            assert_eq!(top, all[..max.min(all.len())].to_vec(), "max {max}");
        }
    }
}
