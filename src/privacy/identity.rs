//! What counts as an identity (an email or login) and as an anonymous visitor
//! key, so that the same person always hashes to the same stored reference.

use crate::error::AudienceError;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Longer than any email address (254) or platform login we know of.
pub const MAX_CHARS: usize = 256;

/// Identities compare case-insensitively, without surrounding blanks and in
/// Unicode NFC: `Alice@Example.com `, `alice@example.com` are one person, and
/// so are `josé` typed with a precomposed `é` and with `e` and a combining
/// accent. An identity must show something (not only invisible or format
/// characters) and must not carry bidirectional controls, which can make one
/// name display as another.
pub fn normalize_identity(argument: &str, value: &str) -> Result<String, AudienceError> {
    let v = check(argument, value.trim())?;
    if v.chars().all(invisible) {
        return Err(AudienceError::invalid(argument, "must contain a visible character"));
    }
    if v.chars().any(bidi_control) {
        return Err(AudienceError::invalid(argument, "must not contain bidirectional control characters"));
    }
    let folded: String = v.to_lowercase().nfc().collect();
    if folded.chars().count() > MAX_CHARS {
        return Err(AudienceError::TooLong { argument: argument.to_string(), max_chars: MAX_CHARS });
    }
    Ok(folded)
}

/// The rule as released in 0.1.0 (case and blanks only), which databases
/// not yet updated keep until `ALTER EXTENSION pg_audience UPDATE`: their
/// stored hashes were made by it.
pub fn normalize_identity_0_1(argument: &str, value: &str) -> Result<String, AudienceError> {
    check(argument, value.trim()).map(|v| v.to_lowercase())
}

/// What `normalize_identity` (or, for an anonymous id,
/// `normalize_anonymous_id`) would refuse in `value`, without normalising a
/// value that surely passes: printable ASCII, not blank, short enough.
pub fn problem(argument: &str, value: &str, anonymous: bool) -> Option<AudienceError> {
    let plain = value.len() <= MAX_CHARS
        && value.bytes().all(|b| (b' '..=b'~').contains(&b))
        && value.bytes().any(|b| b != b' ');
    if plain {
        return None;
    }
    let checked = if anonymous {
        normalize_anonymous_id(argument, value)
    } else {
        normalize_identity(argument, value)
    };
    checked.err()
}

/// Anonymous visitor keys (cookies, device ids) are opaque and case-sensitive;
/// only surrounding blanks are dropped.
pub fn normalize_anonymous_id(argument: &str, value: &str) -> Result<String, AudienceError> {
    check(argument, value.trim()).map(str::to_string)
}

/// Blank or format characters (zero-width spaces, joiners, the byte order
/// mark...) and the Hangul fillers, which render as nothing.
fn invisible(c: char) -> bool {
    matches!(c.general_category_group(), GeneralCategoryGroup::Separator)
        || c.general_category() == unicode_properties::GeneralCategory::Format
        || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// The explicit directional marks, embeddings, overrides and isolates of
/// Unicode's bidirectional algorithm.
fn bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn check<'a>(argument: &str, v: &'a str) -> Result<&'a str, AudienceError> {
    if v.is_empty() {
        return Err(AudienceError::invalid(argument, "must not be empty"));
    }
    if v.chars().count() > MAX_CHARS {
        return Err(AudienceError::TooLong { argument: argument.to_string(), max_chars: MAX_CHARS });
    }
    if v.chars().any(char::is_control) {
        return Err(AudienceError::invalid(argument, "must not contain control characters"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_fold_case_and_blanks() {
        let cases = [
            ("alice@example.com", "alice@example.com"),
            ("  Alice@Example.COM\t", "alice@example.com"),
            ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_identity("member", input).unwrap(), expected);
        }
    }

    #[test]
    fn identities_are_nfc() {
        let precomposed = "jos\u{e9}@example.com";
        let decomposed = "jose\u{301}@example.com";
        assert_eq!(normalize_identity("member", decomposed).unwrap(), precomposed);
        assert_eq!(normalize_identity("member", precomposed).unwrap(), precomposed);
        assert_eq!(normalize_identity("member", "JOSE\u{301}@EXAMPLE.COM").unwrap(), precomposed);
    }

    #[test]
    fn invisible_and_bidi_identities_are_refused() {
        let visible = AudienceError::invalid("member", "must contain a visible character");
        let bidi = AudienceError::invalid("member", "must not contain bidirectional control characters");
        let cases = [
            ("\u{200B}", &visible),
            ("\u{FEFF}", &visible),
            ("\u{200B}\u{2060}\u{00AD}", &visible),
            ("\u{3164}", &visible),
            ("\u{202E}moc.elpmaxe@ecila", &bidi),
            ("alice\u{2066}@example.com", &bidi),
            ("\u{200F}alice", &bidi),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_identity("member", input).as_ref(), Err(expected), "{input:?}");
        }
        // A joiner inside a visible name is part of how some scripts are written.
        assert!(normalize_identity("member", "\u{0915}\u{094D}\u{200D}\u{0937}@example.in").is_ok());
    }

    #[test]
    fn problems_are_the_normalisers_refusals() {
        let long = "a".repeat(MAX_CHARS + 1);
        for (value, anonymous) in [
            ("alice@example.com", false),
            ("  Alice@Example.COM  ", false),
            ("jose\u{301}@example.com", false),
            ("", false),
            ("   ", true),
            ("a\tb", true),
            ("\u{200B}", false),
            ("\u{200B}", true),
            ("\u{202E}x", false),
            (long.as_str(), false),
            ("cookie-7f3a", true),
        ] {
            let expected = if anonymous {
                normalize_anonymous_id("viewer", value).err()
            } else {
                normalize_identity("viewer", value).err()
            };
            assert_eq!(problem("viewer", value, anonymous), expected, "{value:?}");
        }
    }

    #[test]
    fn anonymous_ids_keep_case() {
        assert_eq!(normalize_anonymous_id("anonymous_id", " AbC ").unwrap(), "AbC");
    }

    #[test]
    fn rejects_bad_values_naming_the_argument() {
        let long = "a".repeat(MAX_CHARS + 1);
        let cases: [(&str, AudienceError); 4] = [
            ("", AudienceError::invalid("viewer", "must not be empty")),
            ("   ", AudienceError::invalid("viewer", "must not be empty")),
            (&long, AudienceError::TooLong { argument: "viewer".into(), max_chars: MAX_CHARS }),
            ("a\nb", AudienceError::invalid("viewer", "must not contain control characters")),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_identity("viewer", input), Err(expected.clone()));
            assert!(expected.to_string().contains("\"viewer\""));
        }
        assert!(normalize_identity("viewer", &"a".repeat(MAX_CHARS)).is_ok());
    }
}
