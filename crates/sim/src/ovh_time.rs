//! Erlenmeyer's own `start`/`end` parser (`proto/opentsdb/time.go`, `reference/api.md` §2.2),
//! which differs from OpenTSDB's in ways a client must survive:
//!
//! - relative times must match `^[0-9]+(ms|s|m|h|d|w|n|y|all)-ago$` exactly (case-sensitive);
//!   `now` is **not** accepted, and `0all-ago` / `5all-ago` mean now;
//! - integers matching `^[0-9]+(\.[0-9]{3})?$` are seconds when the integer part is below
//!   `0xFFFFFFFF` (a magnitude test, not OpenTSDB's length test), milliseconds otherwise; the
//!   result is built with `time.Unix(ms/1000, ms%1000)`, so the millisecond part becomes
//!   nanoseconds and is lost: integer times have **second precision**;
//! - the five OpenTSDB date layouts are read as UTC;
//! - anything else is `Invalid date: '<input>'`, which the JSON decoder turns into the generic
//!   `400 can't parse query`.
//!
//! Go's integer overflows are reproduced with wrapping arithmetic, and an integer too large for
//! an `i64` reads as 0, as Go's ignored `ParseInt` error does.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// The error text of Erlenmeyer's parser: `Invalid date: '<input>'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidDate(pub(crate) String);

impl std::fmt::Display for InvalidDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Invalid date: '{}'", self.0)
    }
}

/// Nanoseconds in one unit of the relative syntax, as Erlenmeyer's `durationUnits` map.
fn unit_nanos(unit: &str) -> Option<i64> {
    const MS: i64 = 1_000_000;
    Some(match unit {
        "ms" => MS,
        "s" => 1_000 * MS,
        "m" => 60_000 * MS,
        "h" => 3_600_000 * MS,
        "d" => 86_400_000 * MS,
        "w" => 7 * 86_400_000 * MS,
        "n" => 30 * 86_400_000 * MS,
        "y" => 365 * 86_400_000 * MS,
        "all" => 0,
        _ => return None,
    })
}

/// Splits `^([0-9]+)(ms|s|m|h|d|w|n|y|all)` + `rest`, trying the units in Go's alternation
/// order. Returns the digits, the unit and the rest.
pub(crate) fn split_duration(s: &str) -> Option<(&str, &str, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (number, tail) = s.split_at(digits);
    ["ms", "s", "m", "h", "d", "w", "n", "y", "all"]
        .into_iter()
        .find_map(|u| tail.strip_prefix(u).map(|rest| (number, u, rest)))
}

/// The length of an Erlenmeyer duration (`<digits><unit>`) in nanoseconds, with Go's
/// semantics: an unparsable (too large) integer is 0, the product wraps.
pub(crate) fn duration_nanos(number: &str, unit: &str) -> i64 {
    let n: i64 = number.parse().unwrap_or(0);
    n.wrapping_mul(unit_nanos(unit).unwrap_or(0))
}

/// Parses `data` (the JSON value's text with its quotes removed) like `TSDBTime.Parse`, with
/// `now_ms` as the clock. Returns ms since the epoch, UTC.
pub(crate) fn parse(data: &str, now_ms: i64) -> Result<i64, InvalidDate> {
    // Go removes at most two double quotes before matching.
    let data: String = {
        let mut removed = 0;
        data.chars()
            .filter(|&c| {
                if c == '"' && removed < 2 {
                    removed += 1;
                    false
                } else {
                    true
                }
            })
            .collect()
    };
    if let Some((number, unit, "-ago")) = split_duration(&data) {
        let now_ns = now_ms.wrapping_mul(1_000_000);
        let t_ns = now_ns.wrapping_sub(duration_nanos(number, unit));
        return Ok(t_ns.div_euclid(1_000_000));
    }
    if let Some(ms) = parse_integer(&data) {
        // time.Unix(ms/1000, ms%1000): the remainder becomes nanoseconds, i.e. is dropped.
        return Ok(ms / 1000 * 1000);
    }
    parse_layouts(&data).ok_or(InvalidDate(data))
}

/// `^([0-9]+)(\.([0-9]{3}))?$` read as `ParseOpenTsdbTimeStamp` does; ms.
fn parse_integer(s: &str) -> Option<i64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match frac {
        None => {
            let v: i64 = int.parse().unwrap_or(0);
            // int64toMicroSec(v) / 1000.
            let micros = if v < 0xFFFF_FFFF {
                v.wrapping_mul(1_000_000)
            } else {
                v.wrapping_mul(1_000)
            };
            Some(micros / 1000)
        }
        Some(f) if f.len() == 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let secs: i64 = int.parse().unwrap_or(0);
            let ms: i64 = f.parse().unwrap_or(0);
            Some(secs.wrapping_mul(1000).wrapping_add(ms))
        }
        Some(_) => None,
    }
}

/// The five layouts `2006/01/02-15:04:05`, `2006/01/02 15:04:05`, `2006/01/02-15:04`,
/// `2006/01/02 15:04`, `2006/01/02`, strictly (fixed digit counts), as UTC.
fn parse_layouts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if !matches!(b.len(), 10 | 16 | 19) || b.get(4) != Some(&b'/') || b.get(7) != Some(&b'/') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?;
    let time = if b.len() == 10 {
        NaiveTime::MIN
    } else {
        if !matches!(b[10], b'-' | b' ') || b[13] != b':' {
            return None;
        }
        let sec = if b.len() == 19 {
            if b[16] != b':' {
                return None;
            }
            num(17..19)?
        } else {
            0
        };
        NaiveTime::from_hms_opt(num(11..13)?, num(14..16)?, sec)?
    };
    Some(NaiveDateTime::new(date, time).and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_123;

    #[test]
    fn relative_times() {
        assert_eq!(parse("1h-ago", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse("\"1h-ago\"", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse("30ms-ago", NOW), Ok(NOW - 30));
        assert_eq!(parse("2d-ago", NOW), Ok(NOW - 2 * 86_400_000));
        assert_eq!(parse("1n-ago", NOW), Ok(NOW - 30 * 86_400_000));
        assert_eq!(parse("5all-ago", NOW), Ok(NOW));
        // Case-sensitive, and `now` is not accepted.
        assert!(parse("1H-ago", NOW).is_err());
        assert!(parse("now", NOW).is_err());
        assert!(parse("1h-ago ", NOW).is_err());
    }

    #[test]
    fn integers_use_a_magnitude_test_and_lose_milliseconds() {
        assert_eq!(parse("1564407950", NOW), Ok(1_564_407_950_000));
        // 11 digits but below 2^32 - 1: still seconds (OpenTSDB would read ms).
        assert_eq!(parse("4294967294", NOW), Ok(4_294_967_294_000));
        assert_eq!(parse("4294967295", NOW), Ok(4_294_967_000));
        assert_eq!(parse("1564407950123", NOW), Ok(1_564_407_950_000));
        assert_eq!(parse("1564407950.123", NOW), Ok(1_564_407_950_000));
        assert_eq!(parse("0", NOW), Ok(0));
        assert!(parse("1564407950.12", NOW).is_err());
        assert!(parse("-5", NOW).is_err());
        assert!(parse("1.5e9", NOW).is_err());
    }

    #[test]
    fn date_layouts_are_utc() {
        assert_eq!(parse("2012/12/20", NOW), Ok(1_355_961_600_000));
        assert_eq!(parse("2012/12/20 12:42", NOW), Ok(1_356_007_320_000));
        assert_eq!(parse("2012/12/20-12:42", NOW), Ok(1_356_007_320_000));
        assert_eq!(parse("2012/12/20 12:42:42", NOW), Ok(1_356_007_362_000));
        assert_eq!(parse("2012/12/20-12:42:42", NOW), Ok(1_356_007_362_000));
        assert!(parse("2012/13/20", NOW).is_err());
        assert!(parse("2012/12/2", NOW).is_err());
        assert!(parse("2012-12-20", NOW).is_err());
        assert!(parse("2026-11-01T00:00:00Z", NOW).is_err());
        assert_eq!(
            parse("tomorrow", NOW).unwrap_err().to_string(),
            "Invalid date: 'tomorrow'"
        );
    }

    #[test]
    fn overflow_wraps_instead_of_panicking() {
        assert!(parse("99999999999999999999999", NOW).is_ok());
        assert!(parse("9999999999999y-ago", NOW).is_ok());
        assert!(parse("99999999999999999999y-ago", NOW).is_ok());
    }
}
