//! OpenTSDB time and duration strings, parsed exactly the way a TSD parses them
//! (`DateTime.parseDuration` and `DateTime.parseDateTimeString`, `reference/api.md` §1.4),
//! plus the UTC formatting we use in file names and logs.
//!
//! Everything here is in **milliseconds since the Unix epoch, UTC**: OpenTSDB works in ms
//! internally, and our Parquet `ts` column is ms too, so no other unit leaks out of this module.
//!
//! Deviations from OpenTSDB, all on inputs a TSD accepts only by accident:
//! - The unit of a duration is everything after the digits and must be exactly one of
//!   `ms s m h d w n y` (any case). OpenTSDB only looks at the last character, so it takes
//!   `1xs` as 1 s, and it checks the `m` of `ms` case-sensitively, so it takes `60MS` as 60 s;
//!   we reject `1xs` and read `60MS` as 60 ms.
//! - Formatted dates are checked strictly (fixed digit positions, real calendar dates).
//!   Java's lenient `SimpleDateFormat` rolls `2012/13/45` over into 2013 and ignores
//!   trailing text; we reject both.
//! - The formatted layouts are always read as UTC (we have no time-zone database).
//! - An empty string is an error (OpenTSDB returns -1, meaning "not given").
//! - RFC 3339 (`2026-11-01T00:00:00Z`, `2026-11-01T02:00:00+02:00`) is accepted before any
//!   OpenTSDB rule, because that is what our pipeline files use.

use std::fmt::Write as _;

/// Milliseconds in one second: the building block of every unit.
pub const SECOND_MS: i64 = 1_000;
/// Milliseconds in one minute.
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Milliseconds in one UTC day (no leap seconds, as in Unix time): the `date` partitions, the
/// `1d` windows and the calendar buckets all count days with it.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The layouts OpenTSDB accepts for absolute dates, listed in error messages so a user can fix
/// the input without reading the docs.
const DATE_LAYOUTS: &str = "'yyyy/MM/dd', 'yyyy/MM/dd HH:mm', 'yyyy/MM/dd HH:mm:ss' \
     ('-' may replace the space) or RFC 3339 such as '2026-11-01T00:00:00Z'";

/// The units a duration may use, listed in error messages.
const UNITS: &str = "ms, s, m, h, d, w, n or y";

/// A unit of an OpenTSDB duration (`<n><unit>`). Kept apart from the length in ms because
/// calendar downsampling (`1dc` vs `24hc`, `7dc` vs `1wc`) anchors buckets differently for
/// different units even when the lengths are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DurationUnit {
    /// `ms`: one millisecond.
    Millisecond,
    /// `s`: one second.
    Second,
    /// `m`: one minute.
    Minute,
    /// `h`: one hour.
    Hour,
    /// `d`: 24 hours (no DST or leap-second handling, as in OpenTSDB).
    Day,
    /// `w`: 7 days.
    Week,
    /// `n`: a 30-day "month" (OpenTSDB's average month; calendar mode uses real months).
    Month,
    /// `y`: a 365-day year (leap years ignored, as in OpenTSDB).
    Year,
}

impl DurationUnit {
    /// Every unit, smallest first; handy for choosing how to print an interval.
    pub const ALL: [DurationUnit; 8] = [
        DurationUnit::Millisecond,
        DurationUnit::Second,
        DurationUnit::Minute,
        DurationUnit::Hour,
        DurationUnit::Day,
        DurationUnit::Week,
        DurationUnit::Month,
        DurationUnit::Year,
    ];

    /// The nominal length of one unit in ms (`n` = 30 days, `y` = 365 days), as OpenTSDB's
    /// `parseDuration` multiplies it.
    pub fn millis(self) -> i64 {
        match self {
            DurationUnit::Millisecond => 1,
            DurationUnit::Second => SECOND_MS,
            DurationUnit::Minute => MINUTE_MS,
            DurationUnit::Hour => HOUR_MS,
            DurationUnit::Day => DAY_MS,
            DurationUnit::Week => 7 * DAY_MS,
            DurationUnit::Month => 30 * DAY_MS,
            DurationUnit::Year => 365 * DAY_MS,
        }
    }

    /// The suffix as OpenTSDB writes it (`ms`, `s`, ... `y`), used when printing specs back.
    pub fn suffix(self) -> &'static str {
        match self {
            DurationUnit::Millisecond => "ms",
            DurationUnit::Second => "s",
            DurationUnit::Minute => "m",
            DurationUnit::Hour => "h",
            DurationUnit::Day => "d",
            DurationUnit::Week => "w",
            DurationUnit::Month => "n",
            DurationUnit::Year => "y",
        }
    }

    /// Reads a suffix, case-insensitively (OpenTSDB lower-cases it). `None` for anything else.
    pub fn from_suffix(suffix: &str) -> Option<DurationUnit> {
        let unit = match suffix.to_ascii_lowercase().as_str() {
            "ms" => DurationUnit::Millisecond,
            "s" => DurationUnit::Second,
            "m" => DurationUnit::Minute,
            "h" => DurationUnit::Hour,
            "d" => DurationUnit::Day,
            "w" => DurationUnit::Week,
            "n" => DurationUnit::Month,
            "y" => DurationUnit::Year,
            _ => return None,
        };
        Some(unit)
    }
}

/// Why a time or duration string was refused. Each variant carries the input, and its message
/// says which rule was broken and what would be accepted, so a user can fix a pipeline file
/// from the message alone. [`TimeError::opentsdb_message`] gives the text a real TSD would put in
/// its 400 answer, for the simulator.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// No leading integer (`foo60s`, `-60s`, ``), or the integer does not fit in 64 bits.
    #[error(
        "invalid duration '{input}': must start with a positive integer, then a unit ({UNITS}), e.g. '5m'"
    )]
    DurationNumber {
        /// The duration as given.
        input: String,
    },
    /// Only digits (`60`): the unit is missing.
    #[error("invalid duration '{input}': missing unit after the integer (expected {UNITS})")]
    DurationMissingUnit {
        /// The duration as given.
        input: String,
    },
    /// The text after the digits is not a unit (`1j`, `60p`).
    #[error("invalid duration '{input}': unknown unit '{unit}' (expected {UNITS})")]
    DurationUnit {
        /// The duration as given.
        input: String,
        /// The text found after the digits.
        unit: String,
    },
    /// The integer is 0 (`0m`); a zero-length bucket or window means nothing.
    #[error(
        "invalid duration '{input}': zero or negative duration (the integer must be at least 1)"
    )]
    DurationZero {
        /// The duration as given.
        input: String,
    },
    /// The length in ms does not fit in an `i64` (`4611686018427387904y`).
    #[error(
        "invalid duration '{input}': longer than the largest duration, {} ms",
        i64::MAX
    )]
    DurationOverflow {
        /// The duration as given.
        input: String,
    },
    /// The empty string: OpenTSDB treats it as "not given", but every caller here needs a value.
    #[error(
        "invalid time '': empty (expected epoch seconds or ms, 'now', '<n><unit>-ago' or a date {DATE_LAYOUTS})"
    )]
    TimeEmpty,
    /// An integer timestamp below zero; OpenTSDB does not store data before 1970.
    #[error("invalid time '{input}': negative timestamps are not supported")]
    TimeNegative {
        /// The time as given.
        input: String,
    },
    /// A timestamp with a dot that is not `<10 digits>.<1 to 3 digits>`.
    #[error(
        "invalid time '{input}': a timestamp with a dot must be <10-digit seconds>.<ms, 1 to 3 digits>, e.g. '1355961603.418'"
    )]
    TimeDottedMs {
        /// The time as given.
        input: String,
    },
    /// Not a number and not one of the other accepted forms.
    #[error(
        "invalid time '{input}': expected epoch seconds (up to 10 digits) or ms (more digits), '<n>ms', 'now', '<n><unit>-ago' or a date {DATE_LAYOUTS}"
    )]
    TimeUnrecognized {
        /// The time as given.
        input: String,
    },
    /// Looks like a formatted date (has `/` or `:`) but has none of the accepted lengths.
    #[error("invalid time '{input}': an absolute date must be {DATE_LAYOUTS}")]
    TimeDateLayout {
        /// The time as given.
        input: String,
    },
    /// Has an accepted layout, but the fields are not digits or not a real date/time.
    #[error("invalid time '{input}': not a valid date/time for layout '{layout}' (UTC)")]
    TimeDate {
        /// The time as given.
        input: String,
        /// The layout the input was read against.
        layout: &'static str,
    },
    /// Starts like RFC 3339 (`yyyy-`) but is not valid RFC 3339.
    #[error(
        "invalid time '{input}': not a valid RFC 3339 timestamp ({reason}); expected e.g. '2026-11-01T00:00:00Z' or '2026-11-01T02:00:00+02:00'"
    )]
    TimeRfc3339 {
        /// The time as given.
        input: String,
        /// What the RFC 3339 parser objected to.
        reason: String,
    },
    /// `<n><unit>-ago` whose duration part is invalid.
    #[error("invalid time '{input}': {source}")]
    TimeAgo {
        /// The time as given.
        input: String,
        /// Why the duration before `-ago` was refused.
        source: Box<TimeError>,
    },
    /// A time of an export (scope, `--start`/`--end`/`--now`, a report period) before
    /// 1970-01-01T00:00:00Z: a negative timestamp, an earlier date, or a relative time that
    /// lands before it ([`parse_export_time`]). OpenTSDB stores nothing earlier, so such a
    /// range only means a typo (`3000y-ago`) and hundreds of thousands of empty windows.
    #[error(
        "invalid time '{input}': before 1970-01-01T00:00:00Z, where OpenTSDB's time starts; give \
         a time from 1970 on: epoch seconds or ms, '<n>ms', 'now', '<n><unit>-ago' that lands \
         after 1970 (units {UNITS}) or a date {DATE_LAYOUTS}"
    )]
    TimeBeforeEpoch {
        /// The time as given.
        input: String,
    },
    /// The result does not fit in an `i64` of ms (e.g. `now` minus a huge duration).
    #[error("invalid time '{input}': out of the representable range of ms since the epoch")]
    TimeOutOfRange {
        /// The time as given.
        input: String,
    },
}

impl TimeError {
    /// The message OpenTSDB 2.4 puts in its `400` answer for the same input (as far as it
    /// rejects it too), so the simulator can answer like a real TSD. Inputs only we reject
    /// (strict dates, `1xs`) get the closest OpenTSDB message.
    pub fn opentsdb_message(&self) -> String {
        match self {
            TimeError::DurationNumber { input } => format!("Invalid duration (number): {input}"),
            TimeError::DurationMissingUnit { input } => {
                format!("Invalid duration, must have an integer and unit: {input}")
            }
            TimeError::DurationUnit { input, .. } => format!("Invalid duration (suffix): {input}"),
            TimeError::DurationZero { input } => format!("Zero or negative duration: {input}"),
            TimeError::DurationOverflow { input } => {
                format!("Duration must be < Long.MAX_VALUE ms: {input}")
            }
            TimeError::TimeEmpty => "Missing start time".to_owned(),
            TimeError::TimeNegative { input } | TimeError::TimeBeforeEpoch { input } => {
                format!("Invalid time: {input}. Negative timestamps are not supported.")
            }
            TimeError::TimeDottedMs { input } => format!(
                "Invalid time: {input}. Millisecond timestamps must be in the format \
                 <seconds>.<ms> where the milliseconds are limited to 3 digits"
            ),
            TimeError::TimeUnrecognized { input } | TimeError::TimeOutOfRange { input } => {
                format!("Invalid time: {input}. For input string: \"{input}\"")
            }
            TimeError::TimeDateLayout { input } => format!("Invalid absolute date: {input}"),
            TimeError::TimeDate { input, .. } | TimeError::TimeRfc3339 { input, .. } => {
                format!("Invalid date: {input}. Unparseable date: \"{input}\"")
            }
            TimeError::TimeAgo { source, .. } => source.opentsdb_message(),
        }
    }
}

/// Parses an OpenTSDB duration (`30s`, `5m`, `1h`, `60ms`, `2y`) into ms, following
/// `DateTime.parseDuration`: an integer ≥ 1, then a unit `ms s m h d w n y` (any case), with
/// `n` = 30 days and `y` = 365 days. Used for downsample intervals, `-ago` times and our own
/// window and rollup sizes, so that one string means the same thing everywhere.
///
/// ```
/// use vscope_core::semantics::time::parse_duration;
/// assert_eq!(parse_duration("15m"), Ok(900_000));
/// assert!(parse_duration("1j").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<i64, TimeError> {
    let (count, unit) = parse_duration_parts(s)?;
    count
        .checked_mul(unit.millis())
        .ok_or_else(|| TimeError::DurationOverflow {
            input: s.to_owned(),
        })
}

/// Like [`parse_duration`], but returns the integer and the unit as written, for callers that
/// must remember the unit (calendar downsampling, printing a spec back as the user wrote it).
/// The product `count * unit.millis()` is checked to fit in an `i64`.
pub fn parse_duration_parts(s: &str) -> Result<(i64, DurationUnit), TimeError> {
    let input = || s.to_owned();
    let digits_end = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits_end == 0 {
        return Err(TimeError::DurationNumber { input: input() });
    }
    if digits_end == s.len() {
        return Err(TimeError::DurationMissingUnit { input: input() });
    }
    // Digits are ASCII, so `digits_end` is a char boundary.
    let (number, suffix) = s.split_at(digits_end);
    let count: i64 = number
        .parse()
        .map_err(|_| TimeError::DurationNumber { input: input() })?;
    let unit = DurationUnit::from_suffix(suffix).ok_or_else(|| TimeError::DurationUnit {
        input: input(),
        unit: suffix.to_owned(),
    })?;
    if count <= 0 {
        return Err(TimeError::DurationZero { input: input() });
    }
    if count.checked_mul(unit.millis()).is_none() {
        return Err(TimeError::DurationOverflow { input: input() });
    }
    Ok((count, unit))
}

/// Parses a query time the way OpenTSDB's `parseDateTimeString` does, in UTC, after first
/// trying RFC 3339. `now_ms` is the clock for `now` and `-ago` (injected so that tests and
/// reruns are deterministic). Returns ms since the epoch.
///
/// Accepted, in this order:
/// 1. RFC 3339, any offset (`2026-11-01T00:00:00Z`): our extension.
/// 2. `<digits>ms`: absolute ms.
/// 3. `now`, any case.
/// 4. `<n><unit>-ago`, any case: `now_ms` minus [`parse_duration`] of `<n><unit>`.
/// 5. If the text has `/` or `:`: `yyyy/MM/dd` (length 10), `yyyy/MM/dd HH:mm` or
///    `yyyy/MM/dd-HH:mm` (16), `yyyy/MM/dd HH:mm:ss` or `yyyy/MM/dd-HH:mm:ss` (19), as UTC.
/// 6. An integer: **by string length**, 10 characters or fewer are seconds, longer are ms
///    (`13559616000` is ms). Negative is refused.
/// 7. `<10 digits>.<1-3 digits>`: the dot is simply removed and the result read as ms. This is
///    OpenTSDB's quirk, kept on purpose: `1355961603.41` is `135596160341`, not `...3410`.
///
/// ```
/// use vscope_core::semantics::time::parse_time;
/// assert_eq!(parse_time("1355961600", 0), Ok(1_355_961_600_000));
/// assert_eq!(parse_time("1h-ago", 7_200_000), Ok(3_600_000));
/// assert_eq!(parse_time("2026-11-01T00:00:00Z", 0), Ok(1_793_491_200_000));
/// ```
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, TimeError> {
    let input = || s.to_owned();
    if s.is_empty() {
        return Err(TimeError::TimeEmpty);
    }
    if looks_like_rfc3339(s) {
        return chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| TimeError::TimeRfc3339 {
                input: input(),
                reason: e.to_string(),
            });
    }
    if let Some(digits) = s.strip_suffix("ms")
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return digits
            .parse()
            .map_err(|_| TimeError::TimeOutOfRange { input: input() });
    }
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(duration) = strip_suffix_ignore_case(s, "-ago") {
        let ago = parse_duration(duration).map_err(|e| TimeError::TimeAgo {
            input: input(),
            source: Box::new(e),
        })?;
        return now_ms
            .checked_sub(ago)
            .ok_or_else(|| TimeError::TimeOutOfRange { input: input() });
    }
    if s.contains('/') || s.contains(':') {
        return parse_formatted(s);
    }
    parse_epoch(s)
}

/// [`parse_time`] for the times of an export: `scope.start`/`scope.end`, `--start`/`--end`,
/// `--now`, report periods. The same forms, read the same way, and the time must be at or
/// after 1970-01-01T00:00:00Z ([`TimeError::TimeBeforeEpoch`] otherwise, which a negative
/// integer such as `-5` also gets here). [`parse_time`] itself keeps OpenTSDB's rules, which
/// the simulator answers with (OpenTSDB reads `1960/01/01` or `3000y-ago` as negative times).
///
/// ```
/// use vscope_core::semantics::time::{parse_export_time, TimeError};
/// assert_eq!(parse_export_time("1970/01/01", 0), Ok(0));
/// assert!(matches!(
///     parse_export_time("3000y-ago", 1_793_491_200_000),
///     Err(TimeError::TimeBeforeEpoch { .. })
/// ));
/// ```
pub fn parse_export_time(s: &str, now_ms: i64) -> Result<i64, TimeError> {
    match parse_time(s, now_ms) {
        Ok(ms) if ms >= 0 => Ok(ms),
        Ok(_) | Err(TimeError::TimeNegative { .. }) => Err(TimeError::TimeBeforeEpoch {
            input: s.to_owned(),
        }),
        Err(e) => Err(e),
    }
}

/// True when `s` starts `dddd-` (a year then a dash), which no OpenTSDB form does, so the
/// input is meant as RFC 3339 and its errors should be reported as such.
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// `s` without `suffix`, comparing ASCII case-insensitively (for `-ago`).
fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    if !s.is_char_boundary(cut) {
        return None;
    }
    let (head, tail) = s.split_at(cut);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

/// Step 5 of [`parse_time`]: the `yyyy/MM/dd[( |-)HH:mm[:ss]]` layouts, read as UTC.
fn parse_formatted(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    let layout = match (b.len(), s.contains('-')) {
        (10, _) => "yyyy/MM/dd",
        (16, true) => "yyyy/MM/dd-HH:mm",
        (16, false) => "yyyy/MM/dd HH:mm",
        (19, true) => "yyyy/MM/dd-HH:mm:ss",
        (19, false) => "yyyy/MM/dd HH:mm:ss",
        _ => {
            return Err(TimeError::TimeDateLayout {
                input: s.to_owned(),
            });
        }
    };
    let bad = || TimeError::TimeDate {
        input: s.to_owned(),
        layout,
    };
    let field = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, want: &[u8]| b.get(at).is_some_and(|c| want.contains(c));
    if !(sep(4, b"/") && sep(7, b"/")) {
        return Err(bad());
    }
    let (year, month, day) = match (field(0, 4), field(5, 2), field(8, 2)) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(bad()),
    };
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    if b.len() >= 16 {
        if !(sep(10, b" -") && sep(13, b":")) {
            return Err(bad());
        }
        hour = field(11, 2).ok_or_else(bad)?;
        minute = field(14, 2).ok_or_else(bad)?;
    }
    if b.len() == 19 {
        if !sep(16, b":") {
            return Err(bad());
        }
        second = field(17, 2).ok_or_else(bad)?;
    }
    let year = i32::try_from(year).map_err(|_| bad())?;
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)?;
    let time = date.and_hms_opt(hour, minute, second).ok_or_else(bad)?;
    Ok(time.and_utc().timestamp_millis())
}

/// Steps 6 and 7 of [`parse_time`]: integer seconds/ms by length, and the dotted-ms quirk.
fn parse_epoch(s: &str) -> Result<i64, TimeError> {
    let input = || s.to_owned();
    let value: i64 = if s.contains('.') {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
        let valid = secs.len() == 10
            && (1..=3).contains(&frac.len())
            && all_digits(secs)
            && all_digits(frac);
        if !valid {
            return Err(TimeError::TimeDottedMs { input: input() });
        }
        // OpenTSDB removes the dot and reads the rest as ms, whatever the number of decimals.
        format!("{secs}{frac}")
            .parse()
            .map_err(|_| TimeError::TimeDottedMs { input: input() })?
    } else {
        // Same grammar as OpenTSDB's `Tags.parseLong`: optional sign, ASCII digits, fits i64.
        let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
        if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
            return Err(TimeError::TimeUnrecognized { input: input() });
        }
        s.parse()
            .map_err(|_| TimeError::TimeOutOfRange { input: input() })?
    };
    if value < 0 {
        return Err(TimeError::TimeNegative { input: input() });
    }
    // OpenTSDB's "nasty hack": decided on the length of the text, not on the value.
    if s.len() <= 10 {
        // At most 10 characters, so at most 9_999_999_999 s: the product fits.
        Ok(value * SECOND_MS)
    } else {
        Ok(value)
    }
}

/// A UTC civil date and time split out of ms since the epoch, for formatting without any
/// range limit (chrono stops at ±262 143 years; an `i64` of ms reaches ±292 million).
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
}

impl Civil {
    /// Splits `ms` into UTC fields. Total: works for every `i64`.
    fn from_millis(ms: i64) -> Civil {
        let days = ms.div_euclid(DAY_MS);
        let rem = ms.rem_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: rem / HOUR_MS,
            minute: rem % HOUR_MS / MINUTE_MS,
            second: rem % MINUTE_MS / SECOND_MS,
            millis: rem % SECOND_MS,
        }
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian
/// (year, month, day). Pure integer arithmetic, total over the `i64 / 86_400_000` range.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}

/// Howard Hinnant's `days_from_civil`: the inverse of [`civil_from_days`]. Used by calendar
/// bucketing to find the 1st of a month or of a year.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400); // [0, 399]
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Formats `ms` as `YYYYMMDDTHHMMSSZ` in UTC (e.g. `20261101T000000Z`): the compact ISO 8601
/// basic form, chosen for file names because it sorts as text, has no `:` (illegal on
/// Windows, awkward in URLs) and states its zone. Sub-second parts are dropped (floor).
/// Total over every `i64`; years beyond 9999 simply get more digits.
pub fn format_window_stamp(ms: i64) -> String {
    let c = Civil::from_millis(ms);
    let mut out = String::with_capacity(16);
    push_year(&mut out, c.year);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:02}{:02}T{:02}{:02}{:02}Z",
        c.month, c.day, c.hour, c.minute, c.second
    );
    out
}

/// The 1st of the UTC month holding `ms`, 00:00, in ms (the start of a `month=` partition).
/// Total over every `i64` (saturating at the ends): integer calendar arithmetic
/// (`civil_from_days`), no chrono range.
pub fn month_start_ms(ms: i64) -> i64 {
    let day = ms.div_euclid(DAY_MS);
    let (_, _, day_of_month) = civil_from_days(day);
    (day - i64::from(day_of_month - 1)).saturating_mul(DAY_MS)
}

/// The `YYYY-MM-DD` UTC date of a day start in ms (the `date=` partition value);
/// `invalid-date` beyond chrono's range.
pub fn date_string(day_start_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day_start_ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "invalid-date".into())
}

/// Formats `ms` as RFC 3339 in UTC: `2026-11-01T00:00:00Z`, with `.sss` only when `ms` is not
/// a whole second, so that the common case stays short and every value round-trips through
/// [`parse_time`] exactly. Total over every `i64` (years outside 0000..=9999 are printed with
/// more digits or a sign, which is no longer strict RFC 3339).
pub fn format_rfc3339(ms: i64) -> String {
    let c = Civil::from_millis(ms);
    let mut out = String::with_capacity(24);
    push_year(&mut out, c.year);
    let _ = write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.month, c.day, c.hour, c.minute, c.second
    );
    if c.millis != 0 {
        let _ = write!(out, ".{:03}", c.millis);
    }
    out.push('Z');
    out
}

/// Four-digit year, or a sign and more digits when out of 0..=9999.
fn push_year(out: &mut String, year: i64) {
    let _ = if (0..=9999).contains(&year) {
        write!(out, "{year:04}")
    } else {
        write!(out, "{year:+05}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B = 2013-01-01T00:00:00Z, the base of OpenTSDB's own test vectors.
    const B: i64 = 1_356_998_400_000;

    #[test]
    fn durations_from_opentsdb_tests() {
        // reference/api.md §1.11 item 4.
        let cases = [
            ("60ms", 60),
            ("60s", 60_000),
            ("60S", 60_000),
            ("60m", 3_600_000),
            ("24h", 86_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1n", 2_592_000_000),
            ("2y", 63_072_000_000),
            ("4294967296ms", 4_294_967_296),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_durations_from_opentsdb_tests() {
        let number = |s: &str| TimeError::DurationNumber { input: s.into() };
        assert_eq!(parse_duration("-60s"), Err(number("-60s")));
        assert_eq!(parse_duration("foo60s"), Err(number("foo60s")));
        assert_eq!(
            parse_duration("60p"),
            Err(TimeError::DurationUnit {
                input: "60p".into(),
                unit: "p".into()
            })
        );
        assert_eq!(
            parse_duration("4611686018427387904y"),
            Err(TimeError::DurationOverflow {
                input: "4611686018427387904y".into()
            })
        );
        assert_eq!(
            parse_duration("6393590450230209347573980s"),
            Err(number("6393590450230209347573980s"))
        );
    }

    #[test]
    fn duration_edge_cases() {
        assert_eq!(
            parse_duration("0m"),
            Err(TimeError::DurationZero { input: "0m".into() })
        );
        assert_eq!(
            parse_duration("60"),
            Err(TimeError::DurationMissingUnit { input: "60".into() })
        );
        assert_eq!(
            parse_duration(""),
            Err(TimeError::DurationNumber { input: "".into() })
        );
        assert_eq!(parse_duration("60MS"), Ok(60));
        assert_eq!(parse_duration("2H"), Ok(7_200_000));
        assert!(
            parse_duration("1xs").is_err(),
            "strict unit, see module docs"
        );
        assert_eq!(parse_duration_parts("7d"), Ok((7, DurationUnit::Day)));
        assert_eq!(
            parse_duration(&format!("{}ms", i64::MAX)),
            Ok(i64::MAX),
            "the largest duration fits"
        );
    }

    #[test]
    fn duration_error_messages_name_input_and_rule() {
        let err = parse_duration("1j").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration '1j': unknown unit 'j' (expected ms, s, m, h, d, w, n or y)"
        );
        assert_eq!(err.opentsdb_message(), "Invalid duration (suffix): 1j");
        assert_eq!(
            parse_duration("0s").unwrap_err().opentsdb_message(),
            "Zero or negative duration: 0s"
        );
    }

    #[test]
    fn times_from_opentsdb_tests() {
        // reference/api.md §1.11 item 5 (formatted dates in GMT).
        let cases = [
            ("1355961600", 1_355_961_600_000),
            ("0", 0),
            ("13559616000", 13_559_616_000),
            ("1355961603418", 1_355_961_603_418),
            ("1355961603.418", 1_355_961_603_418),
            ("1355961603.41", 135_596_160_341),
            ("1355961603.4", 13_559_616_034),
            ("123123ms", 123_123),
            ("2012/12/20", 1_355_961_600_000),
            ("2012/12/20 12:42", 1_356_007_320_000),
            ("2012/12/20-12:42", 1_356_007_320_000),
            ("2012/12/20 12:42:42", 1_356_007_362_000),
            ("2012/12/20-12:42:42", 1_356_007_362_000),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input, 0), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_times_from_opentsdb_tests() {
        for input in [
            "135596160.418",
            "1355961603.4180",
            "1234567890.2.4",
            "-135596160",
            "2012/12/",
            "1s",
            "1355961603587168438418",
            "",
        ] {
            assert!(parse_time(input, 0).is_err(), "{input}");
        }
        assert_eq!(
            parse_time("-135596160", 0),
            Err(TimeError::TimeNegative {
                input: "-135596160".into()
            })
        );
    }

    #[test]
    fn relative_times_use_the_injected_clock() {
        let now = B;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("NoW", now), Ok(now));
        assert_eq!(parse_time("1h-ago", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("2D-AGO", now), Ok(now - 2 * 86_400_000));
        assert_eq!(parse_time("100ms-ago", now), Ok(now - 100));
        let err = parse_time("1j-ago", now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid time '1j-ago': invalid duration '1j': unknown unit 'j' (expected ms, s, m, h, d, w, n or y)"
        );
        assert!(parse_time(&format!("{}ms-ago", i64::MAX), -10).is_err());
    }

    /// Times of an export cannot be before 1970, whatever the form; OpenTSDB's own parsing
    /// (the simulator's) still reads them.
    #[test]
    fn export_times_before_1970_are_refused_and_opentsdbs_parsing_is_kept() {
        let now = 1_793_491_200_000; // 2026-11-01
        for early in [
            "1969-12-31T23:59:59.999Z",
            "1960/01/01",
            "1969/12/31-23:59:59",
            "3000y-ago",
            "57y-ago",
            "-5",
        ] {
            let got = parse_export_time(early, now);
            assert_eq!(
                got,
                Err(TimeError::TimeBeforeEpoch {
                    input: early.into()
                }),
                "{early}"
            );
            let msg = got.unwrap_err().to_string();
            assert!(msg.contains("1970") && msg.contains("-ago"), "{msg}");
        }
        assert!(parse_time("1960/01/01", now).unwrap() < 0);
        assert!(parse_time("3000y-ago", now).unwrap() < 0);
        assert!(matches!(
            parse_time("-5", now),
            Err(TimeError::TimeNegative { .. })
        ));
        for ok in [
            "1970-01-01T00:00:00Z",
            "1970/01/01",
            "0",
            "0ms",
            "56y-ago",
            "now",
        ] {
            assert_eq!(parse_export_time(ok, now), parse_time(ok, now), "{ok}");
            assert!(parse_export_time(ok, now).is_ok(), "{ok}");
        }
        // Other errors stay as they are.
        assert!(matches!(
            parse_export_time("1x-ago", now),
            Err(TimeError::TimeAgo { .. })
        ));
    }

    #[test]
    fn rfc3339_is_accepted_first() {
        assert_eq!(parse_time("2013-01-01T00:00:00Z", 0), Ok(B));
        assert_eq!(parse_time("2013-01-01T02:00:00+02:00", 0), Ok(B));
        assert_eq!(parse_time("2013-01-01T00:00:00.250Z", 0), Ok(B + 250));
        assert!(matches!(
            parse_time("2013-01-01T25:00:00Z", 0),
            Err(TimeError::TimeRfc3339 { .. })
        ));
        assert!(matches!(
            parse_time("2013-01-01", 0),
            Err(TimeError::TimeRfc3339 { .. })
        ));
    }

    #[test]
    fn formatted_dates_are_strict() {
        for input in [
            "2012/13/20",
            "2012/02/30",
            "2012/12/20 24:00",
            "2012/12/2x",
            "20121220/1",
        ] {
            assert!(parse_time(input, 0).is_err(), "{input}");
        }
        assert_eq!(parse_time("2012/02/29", 0), Ok(1_330_473_600_000));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_window_stamp(B), "20130101T000000Z");
        assert_eq!(format_window_stamp(B + 3_723_999), "20130101T010203Z");
        assert_eq!(format_rfc3339(B), "2013-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(B + 5), "2013-01-01T00:00:00.005Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_793_491_200_000), "2026-11-01T00:00:00Z");
        // Total over i64: no panic at the extremes.
        assert!(format_rfc3339(i64::MIN).starts_with('-'));
        assert!(format_window_stamp(i64::MAX).starts_with('+'));
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [
            -1_000_000_i64,
            -719_468,
            -1,
            0,
            1,
            15_706,
            2_932_896,
            100_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(15_706), (2013, 1, 1));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_duration_never_panics(s in any::<String>()) {
                let _ = parse_duration(&s);
            }

            #[test]
            fn parse_duration_never_panics_on_likely_shapes(s in "[0-9+-]{0,25}[a-zA-Z]{0,3}") {
                let _ = parse_duration(&s);
            }

            #[test]
            fn parse_time_never_panics(s in any::<String>(), now in any::<i64>()) {
                let _ = parse_time(&s, now);
            }

            #[test]
            fn parse_time_never_panics_on_likely_shapes(
                s in "[0-9./: -]{0,22}(ms|-ago|Z|[+-][0-9]{2}:[0-9]{2})?",
                now in any::<i64>(),
            ) {
                let _ = parse_time(&s, now);
            }

            #[test]
            fn rfc3339_round_trips(ms in -62_135_596_800_000_i64..253_402_300_799_999) {
                prop_assert_eq!(parse_time(&format_rfc3339(ms), 0), Ok(ms));
            }

            #[test]
            fn civil_round_trips(days in -100_000_000_000_i64..100_000_000_000) {
                let (y, m, d) = civil_from_days(days);
                prop_assert_eq!(days_from_civil(y, m, d), days);
            }
        }
    }
}
