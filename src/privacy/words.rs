//! The word lists pseudonyms are made of, shipped inside the library.

use std::sync::LazyLock;

fn lines(text: &'static str) -> Vec<&'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

pub static ADJECTIVES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| lines(include_str!("words/adjectives.txt")));
pub static NOUNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| lines(include_str!("words/nouns.txt")));

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn lists_are_large_unique_and_plain() {
        for (name, list) in [("adjectives", &*ADJECTIVES), ("nouns", &*NOUNS)] {
            assert!(list.len() >= 500, "{name}: only {} words", list.len());
            let unique: HashSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len(), "{name} has duplicates");
            for w in list.iter() {
                assert!(
                    (3..=12).contains(&w.len()) && w.chars().all(|c| c.is_ascii_lowercase()),
                    "{name}: {w:?}"
                );
            }
        }
    }
}
