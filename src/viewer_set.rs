//! Exact sets of viewer ids, as the day rollups keep them: a compressed
//! bitmap (roaring), so that the distinct viewers of a window are the union
//! of a few sets instead of a distinct count over one row per viewer and day.
//!
//! A set is stored as its serialized form, and every function here returns
//! the one form a set has (the rollups are compared with a rebuild byte for
//! byte): roaring chooses each container's layout from its contents alone,
//! and no function here asks for the run-length layout.

use crate::error::AudienceError;
use roaring::RoaringTreemap;

fn encode(set: &RoaringTreemap) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut bytes)
        .expect("writing to memory cannot fail");
    bytes
}

fn decode(bytes: &[u8]) -> Result<RoaringTreemap, AudienceError> {
    RoaringTreemap::deserialize_from(bytes).map_err(|_| not_a_set())
}

fn id(viewer_id: i64) -> Result<u64, AudienceError> {
    u64::try_from(viewer_id)
        .map_err(|_| AudienceError::invalid("viewer_id", "must not be negative"))
}

/// The set of these ids (repeats count once).
pub fn of_ids(ids: impl IntoIterator<Item = i64>) -> Result<Vec<u8>, AudienceError> {
    let mut set = RoaringTreemap::new();
    for viewer_id in ids {
        set.insert(id(viewer_id)?);
    }
    Ok(encode(&set))
}

/// The union of these sets.
pub fn union<'a>(sets: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, AudienceError> {
    let mut all = RoaringTreemap::new();
    for bytes in sets {
        all |= decode(bytes)?;
    }
    Ok(encode(&all))
}

/// How many viewers the union of these sets holds.
pub fn union_count<'a>(sets: impl IntoIterator<Item = &'a [u8]>) -> Result<i64, AudienceError> {
    let mut sets = sets.into_iter();
    let Some(first) = sets.next() else {
        return Ok(0);
    };
    let Some(second) = sets.next() else {
        return count(first);
    };
    let mut all = decode(first)?;
    all |= decode(second)?;
    for bytes in sets {
        all |= decode(bytes)?;
    }
    Ok(i64::try_from(all.len()).unwrap_or(i64::MAX))
}

/// How many viewers one set holds, read from the containers' headers: a
/// month's set of a busy workspace has some 30,000 viewers, and decoding
/// it to count them took 0.6 ms where the headers take microseconds.
fn count(bytes: &[u8]) -> Result<i64, AudienceError> {
    let mut input = Reader { bytes, at: 0 };
    let mut total: u64 = 0;
    for _ in 0..input.u64()? {
        input.skip(4)?; // the high 32 bits of the ids
        // Only the layout without run containers is read here; this module
        // never writes the other (see the top of the file).
        if input.u32()? != NO_RUN_CONTAINERS {
            return Ok(i64::try_from(decode(bytes)?.len()).unwrap_or(i64::MAX));
        }
        let containers = input.u32()? as usize;
        let descriptions = input.take(containers * 4)?;
        input.skip(containers * 4)?; // offsets
        for description in descriptions.chunks_exact(4) {
            let size = u64::from(u16::from_le_bytes([description[2], description[3]])) + 1;
            total += size;
            input.skip(if size <= ARRAY_LIMIT { size as usize * 2 } else { 8192 })?;
        }
    }
    if input.at != bytes.len() {
        return Err(not_a_set());
    }
    Ok(i64::try_from(total).unwrap_or(i64::MAX))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AudienceError> {
        let part = self.bytes.get(self.at..self.at.saturating_add(n)).ok_or_else(not_a_set)?;
        self.at += n;
        Ok(part)
    }

    fn skip(&mut self, n: usize) -> Result<(), AudienceError> {
        self.take(n).map(|_| ())
    }

    fn u32(&mut self) -> Result<u32, AudienceError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, AudienceError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}

fn not_a_set() -> AudienceError {
    AudienceError::invalid("viewers", "is not a viewer set")
}

/// The roaring format's mark of a bitmap without run containers, and the
/// most ids a container holds as a sorted array (more make a bitset).
const NO_RUN_CONTAINERS: u32 = 12346;
const ARRAY_LIMIT: u64 = 4096;

/// The union of a rollup row's kept set and the set a fold adds to it, and
/// how many viewers that holds.
pub fn merge(kept: &[u8], added: &[u8]) -> Result<(Vec<u8>, i64), AudienceError> {
    let mut all = decode(kept)?;
    all |= decode(added)?;
    Ok((encode(&all), i64::try_from(all.len()).unwrap_or(i64::MAX)))
}

/// The set without one viewer (erasure).
pub fn without(bytes: &[u8], viewer_id: i64) -> Result<Vec<u8>, AudienceError> {
    let mut set = decode(bytes)?;
    set.remove(id(viewer_id)?);
    Ok(encode(&set))
}

/// The ids of a set, smallest first.
pub fn ids(bytes: &[u8]) -> Result<Vec<i64>, AudienceError> {
    Ok(decode(bytes)?.iter().map(|v| v as i64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_ids(rng: &mut rand::rngs::StdRng, n: usize, spread: i64) -> Vec<i64> {
        (0..n).map(|_| rng.gen_range(0..spread)).collect()
    }

    #[test]
    fn a_set_has_one_form_whatever_built_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Sizes on both sides of roaring's array/bitmap boundary (4,096 per
        // container), ids beyond 2^32 too.
        for &(n, spread) in &[
            (0, 10),
            (3, 10),
            (500, 70_000),
            (9_000, 20_000),
            (6_000, 1 << 40),
        ] {
            let a = random_ids(&mut rng, n, spread);
            let b = random_ids(&mut rng, n / 2 + 1, spread);
            let mut both: Vec<i64> = a.iter().chain(&b).copied().collect();
            let direct = of_ids(both.iter().copied()).unwrap();
            let merged = union([
                of_ids(a.clone()).unwrap().as_slice(),
                of_ids(b.clone()).unwrap().as_slice(),
            ])
            .unwrap();
            assert_eq!(direct, merged, "n = {n}");
            let (kept_and_added, size) = merge(&of_ids(a.clone()).unwrap(), &of_ids(b.clone()).unwrap()).unwrap();
            assert_eq!(kept_and_added, direct, "n = {n}");
            both.sort_unstable();
            both.dedup();
            assert_eq!(ids(&direct).unwrap(), both);
            assert_eq!(size, both.len() as i64, "n = {n}");
            assert_eq!(union_count([direct.as_slice()]).unwrap(), both.len() as i64);
            assert_eq!(count(&direct).unwrap(), both.len() as i64);
            // Taking ids out gives the form of the smaller set built afresh.
            let mut rest = direct.clone();
            for gone in both.iter().take(both.len() / 2 + 1) {
                rest = without(&rest, *gone).unwrap();
            }
            let kept: Vec<i64> = both.iter().skip(both.len() / 2 + 1).copied().collect();
            assert_eq!(rest, of_ids(kept.iter().copied()).unwrap(), "n = {n}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_set_or_an_id() {
        assert_eq!(
            union([b"nonsense".as_slice()]),
            Err(AudienceError::invalid("viewers", "is not a viewer set"))
        );
        assert_eq!(
            merge(&of_ids([1]).unwrap(), b"nonsense"),
            Err(AudienceError::invalid("viewers", "is not a viewer set"))
        );
        let set = of_ids([1, 2, 70_000]).unwrap();
        for cut in [0, 7, 12, set.len() - 1] {
            assert_eq!(
                union_count([&set[..cut]]),
                Err(AudienceError::invalid("viewers", "is not a viewer set")),
                "cut at {cut}"
            );
        }
        let mut longer = set.clone();
        longer.push(0);
        assert_eq!(
            union_count([longer.as_slice()]),
            Err(AudienceError::invalid("viewers", "is not a viewer set"))
        );
        assert_eq!(
            of_ids([-1]),
            Err(AudienceError::invalid("viewer_id", "must not be negative"))
        );
        assert_eq!(
            without(&of_ids([1, 2]).unwrap(), -5),
            Err(AudienceError::invalid("viewer_id", "must not be negative"))
        );
    }

    #[test]
    fn a_set_in_the_run_layout_is_counted_too() {
        let mut set: RoaringTreemap = (10..20_000u64).chain(1 << 33..(1 << 33) + 5).collect();
        assert!(set.optimize());
        let mut bytes = Vec::new();
        set.serialize_into(&mut bytes).unwrap();
        assert_eq!(count(&bytes).unwrap(), 19_995);
    }

    #[test]
    fn empty_sets_count_nothing() {
        let empty = of_ids([]).unwrap();
        assert_eq!(
            union_count([empty.as_slice(), empty.as_slice()]).unwrap(),
            0
        );
        assert_eq!(union_count(std::iter::empty()).unwrap(), 0);
        assert_eq!(without(&of_ids([4]).unwrap(), 4).unwrap(), empty);
    }
}
