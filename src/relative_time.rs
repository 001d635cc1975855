//! "5 minutes ago": how long ago something happened, in the words the
//! analytics modal of a hosted-app platform uses.

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Months and years are counted as 30 and 365 days: the text is a rough
/// reading aid next to an exact timestamp, not a calendar computation.
const MONTH: i64 = 30 * DAY;
const YEAR: i64 = 365 * DAY;

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Describes an elapsed time in seconds. A time slightly in the future (clock
/// skew between the web tier and the database) reads as "just now".
pub fn describe(elapsed_seconds: i64) -> String {
    let s = elapsed_seconds;
    if s < MINUTE {
        "just now".to_string()
    } else if s < HOUR {
        plural(s / MINUTE, "minute")
    } else if s < DAY {
        plural(s / HOUR, "hour")
    } else if s < 2 * DAY {
        "yesterday".to_string()
    } else if s < MONTH {
        plural(s / DAY, "day")
    } else if s < YEAR {
        plural(s / MONTH, "month")
    } else {
        plural(s / YEAR, "year")
    }
}

/// Describes the time from `at` to `now`, both in microseconds since the same
/// epoch. Any two finite PostgreSQL timestamps are at most about 2^58
/// microseconds apart, so the difference is taken where it cannot overflow.
pub fn between(at_micros: i64, now_micros: i64) -> String {
    let seconds = (i128::from(now_micros) - i128::from(at_micros)).div_euclid(1_000_000);
    describe(i64::try_from(seconds).unwrap_or(if seconds < 0 { i64::MIN } else { i64::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_range() {
        let cases: &[(i64, &str)] = &[
            (-300, "just now"),
            (0, "just now"),
            (59, "just now"),
            (60, "1 minute ago"),
            (5 * MINUTE + 30, "5 minutes ago"),
            (HOUR - 1, "59 minutes ago"),
            (HOUR, "1 hour ago"),
            (3 * HOUR, "3 hours ago"),
            (DAY - 1, "23 hours ago"),
            (DAY, "yesterday"),
            (2 * DAY - 1, "yesterday"),
            (2 * DAY, "2 days ago"),
            (4 * DAY, "4 days ago"),
            (29 * DAY, "29 days ago"),
            (MONTH, "1 month ago"),
            (2 * MONTH + DAY, "2 months ago"),
            (364 * DAY, "12 months ago"),
            (YEAR, "1 year ago"),
            (3 * YEAR, "3 years ago"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(describe(*seconds), *expected, "for {seconds} seconds");
        }
    }

    #[test]
    fn the_widest_span_does_not_overflow() {
        // About PostgreSQL's last and first timestamps, in microseconds since 2000.
        let last = 9_223_371_331_199_000_000;
        let first = -211_813_488_000_000_000;
        assert_eq!(between(first, last), "299187 years ago");
        assert_eq!(between(last, first), "just now");
        assert_eq!(between(i64::MIN, i64::MAX), "584942 years ago");
    }
}
