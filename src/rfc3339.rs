//! Times as JSON carries them, read without PostgreSQL's parser.
//!
//! Batches (record_views, import_connect) hold thousands of times as JSON
//! strings, nearly all in one shape: RFC 3339 with an explicit offset, as
//! every platform API writes them. That shape is read here, exactly as
//! PostgreSQL's `timestamptz` input reads it; anything else (another layout,
//! no offset, a leap second, `24:00`, a bad date) is left to PostgreSQL,
//! which alone decides whether and how it is a time. So this module never
//! refuses a value: it answers `None` for "not this shape", never for "not a
//! time", and a caller that gets `None` asks PostgreSQL.

use chrono::NaiveDate;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01 (UTC).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// `YYYY-MM-DD(T| )HH:MM:SS[.f{1,6}](Z|±HH:MM)`, years 1000 to 9999, offsets
/// up to 14 hours, as microseconds since 2000-01-01 00:00 UTC.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(&b[0..4])? as i32;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if year < 1000 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year, month, day)?;

    let mut rest = &b[19..];
    let mut micros = 0i64;
    if let Some((b'.', fraction)) = rest.split_first() {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return None;
        }
        micros = digits(&fraction[..n])? as i64 * 10i64.pow(6 - n as u32);
        rest = &fraction[n..];
    }
    let offset_seconds = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])? as i64;
            let minutes = digits(&[*m1, *m2])? as i64;
            if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
                return None;
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };

    let local_seconds = date.and_hms_opt(hour, minute, second)?.and_utc().timestamp();
    Some((local_seconds - offset_seconds) * 1_000_000 + micros - POSTGRES_EPOCH_UNIX_MICROS)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

#[cfg(test)]
mod tests {
    use super::parse;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn reads_the_shape_of_platform_apis() {
        let cases: &[(&str, i64)] = &[
            ("2000-01-01T00:00:00Z", 0),
            ("2000-01-01 00:00:00Z", 0),
            ("2000-01-01T00:00:00+00:00", 0),
            ("2000-01-01T01:00:00+01:00", 0),
            ("1999-12-31T23:00:00-01:00", 0),
            ("2000-01-01T00:00:00.5Z", 500_000),
            ("2000-01-01T00:00:00.000001Z", 1),
            ("2000-01-01T05:30:00+05:30", 0),
            ("2000-01-02T00:00:00+14:00", 10 * HOUR),
            ("1970-01-01T00:00:00Z", -946_684_800_000_000),
            ("2024-02-29T12:00:00Z", 762_523_200_000_000),
        ];
        for (text, micros) in cases {
            assert_eq!(parse(text), Some(*micros), "{text}");
        }
    }

    #[test]
    fn leaves_every_other_shape_to_postgres() {
        for text in [
            "",
            "2026-11-30",
            "2026-11-30T12:00:00",
            "2026-11-30T12:00:00z",
            "2026-11-30t12:00:00Z",
            "2026-11-30T12:00:00.Z",
            "2026-11-30T12:00:00.1234567Z",
            "2026-11-30T12:00:00+0100",
            "2026-11-30T12:00:00+01",
            "2026-11-30T12:00:00+14:30",
            "2026-11-30T12:00:00 UTC",
            "2026-11-30T24:00:00Z",
            "2026-11-30T23:59:60Z",
            "2026-02-30T12:00:00Z",
            "0999-01-01T00:00:00Z",
            "+2026-11-30T12:00:00Z",
            "2026-11-30T12:00:00Z ",
            "２０２６-11-30T12:00:00Z",
            "now",
            "infinity",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
