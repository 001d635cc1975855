//! Pseudonyms ("Enigmatic Brownie") and opaque viewer references.
//!
//! Both are HMACs of the stored `viewer_hash` under the workspace's pseudonym
//! key, so they are stable within a workspace, unrelated across workspaces
//! (each has its own key), and gone after a key rotation.

use super::keys::{domain, mac};
use super::words::{ADJECTIVES, NOUNS};
use crate::error::AudienceError;

fn pick(words: &[&'static str], bytes: &[u8]) -> &'static str {
    let n = u64::from_be_bytes(bytes.try_into().expect("eight bytes"));
    // 64 random bits modulo a few hundred words: the bias is below 2^-54.
    words[(n % words.len() as u64) as usize]
}

/// `scope` is empty for a workspace-wide pseudonym, or names the month and/or
/// the requester it is limited to (the workspace's pseudonym settings). The
/// hash comes last and has a fixed length, so no two inputs run together.
pub fn pseudonym(pseudonym_key: &[u8], viewer_hash: &[u8], scope: &[u8]) -> Result<String, AudienceError> {
    let m = mac(pseudonym_key, "key", &[domain::PSEUDONYM, scope, viewer_hash])?;
    let adjective = pick(&ADJECTIVES, &m[0..8]);
    let noun = pick(&NOUNS, &m[8..16]);
    let mut out = String::with_capacity(adjective.len() + noun.len() + 1);
    capitalize_into(&mut out, adjective);
    out.push(' ');
    capitalize_into(&mut out, noun);
    Ok(out)
}

fn capitalize_into(out: &mut String, word: &str) {
    let mut chars = word.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
}

/// 16 hex digits (64 bits): collision-free in practice for the millions of
/// viewers of one workspace, and short enough for a BI tool's column.
///
/// A viewer shown by identity and the same viewer shown by pseudonym get
/// different references, so a reference never links a pseudonym to a name.
pub fn viewer_ref(
    pseudonym_key: &[u8],
    viewer_hash: &[u8],
    identified: bool,
    scope: &[u8],
) -> Result<String, AudienceError> {
    let d = if identified { domain::REF_IDENTIFIED } else { domain::REF_PSEUDONYMOUS };
    let m = mac(pseudonym_key, "key", &[d, scope, viewer_hash])?;
    Ok(m[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash(i: u32) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_be_bytes());
        h
    }

    #[test]
    fn pseudonyms_are_two_capitalised_words() {
        let p = pseudonym(&[3u8; 32], &hash(1), b"").unwrap();
        let words: Vec<&str> = p.split(' ').collect();
        assert_eq!(words.len(), 2, "{p}");
        for w in words {
            assert!(w.chars().next().unwrap().is_ascii_uppercase(), "{p}");
            assert!(w.chars().skip(1).all(|c| c.is_ascii_lowercase()), "{p}");
        }
    }

    #[test]
    fn deterministic_per_key_and_different_across_keys() {
        let (a, b) = ([3u8; 32], [4u8; 32]);
        let mut same_across_keys = 0;
        for i in 0..200 {
            assert_eq!(pseudonym(&a, &hash(i), b"").unwrap(), pseudonym(&a, &hash(i), b"").unwrap());
            if pseudonym(&a, &hash(i), b"").unwrap() == pseudonym(&b, &hash(i), b"").unwrap() {
                same_across_keys += 1;
            }
        }
        // A chance match is about 1 in 300,000 per viewer.
        assert!(same_across_keys <= 1, "{same_across_keys} of 200 pseudonyms survived a key change");
    }

    #[test]
    fn pseudonyms_spread_over_the_word_lists() {
        let key = [9u8; 32];
        let labels: HashSet<String> = (0..2000).map(|i| pseudonym(&key, &hash(i), b"").unwrap()).collect();
        // 2000 draws from ~300,000 combinations: only a handful may collide.
        assert!(labels.len() >= 1990, "only {} distinct of 2000", labels.len());
    }

    #[test]
    fn references_are_stable_opaque_and_split_by_label_kind() {
        let key = [5u8; 32];
        let r = viewer_ref(&key, &hash(1), false, b"").unwrap();
        assert_eq!(r.len(), 16);
        assert!(r.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(r, viewer_ref(&key, &hash(1), false, b"").unwrap());
        assert_ne!(r, viewer_ref(&key, &hash(1), true, b"").unwrap());
        assert_ne!(r, viewer_ref(&key, &hash(2), false, b"").unwrap());
        assert_ne!(r, viewer_ref(&[6u8; 32], &hash(1), false, b"").unwrap());
    }

    #[test]
    fn scopes_give_unrelated_labels() {
        let key = [5u8; 32];
        let scopes: [&[u8]; 4] = [b"", b"month:2026-10", b"month:2026-11", b"requester:ada"];
        let labels: HashSet<String> = scopes.iter().map(|s| viewer_ref(&key, &hash(1), false, s).unwrap()).collect();
        assert_eq!(labels.len(), scopes.len());
        assert_eq!(
            pseudonym(&key, &hash(1), b"month:2026-11").unwrap(),
            pseudonym(&key, &hash(1), b"month:2026-11").unwrap()
        );
    }
}
