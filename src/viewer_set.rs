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
    RoaringTreemap::deserialize_from(bytes)
        .map_err(|_| AudienceError::invalid("viewers", "is not a viewer set"))
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
    let mut all = RoaringTreemap::new();
    for bytes in sets {
        all |= decode(bytes)?;
    }
    Ok(i64::try_from(all.len()).unwrap_or(i64::MAX))
}

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
