//! What counts as an identity (an email or login) and as an anonymous visitor
//! key, so that the same person always hashes to the same stored reference.

use crate::error::AudienceError;

/// Longer than any email address (254) or platform login we know of.
pub const MAX_CHARS: usize = 256;

/// Identities compare case-insensitively and without surrounding blanks:
/// `Alice@Example.com ` and `alice@example.com` are one person.
pub fn normalize_identity(argument: &str, value: &str) -> Result<String, AudienceError> {
    check(argument, value.trim()).map(|v| v.to_lowercase())
}

/// Anonymous visitor keys (cookies, device ids) are opaque and case-sensitive;
/// only surrounding blanks are dropped.
pub fn normalize_anonymous_id(argument: &str, value: &str) -> Result<String, AudienceError> {
    check(argument, value.trim()).map(str::to_string)
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
