//! The properties each fuzz target checks, shared by the libFuzzer targets (`fuzz_targets/`,
//! nightly) and the bounded stable loops (`tests/stable.rs`). Each check panics on a violation,
//! which both drivers report with the input.

use vscope_etl::extract::stream::decode_query_response;
use vscope_etl::load::partition::{escape_path_value, unescape_path_value};
use vscope_etl::semantics::downsample::DownsampleSpec;

/// The `dps` decoder on arbitrary bytes: never panics; when it accepts the input, every series
/// is sorted, unique, inside the window, with as many values as times.
pub fn check_dps(data: &[u8]) {
    let (start, end) = window(data);
    if let Ok((series, stats)) = decode_query_response(data, start, end) {
        let mut points = 0u64;
        for s in &series {
            assert_eq!(s.ts.len(), s.values.len(), "one value per time");
            assert!(!s.ts.is_empty(), "empty series are dropped");
            assert!(s.ts.windows(2).all(|w| w[0] < w[1]), "strictly ascending");
            assert!(
                s.ts.iter().all(|t| (start..end).contains(t)),
                "in [start, end)"
            );
            assert!(
                s.values.iter().all(|v| v.is_finite() || v.is_nan()),
                "non-finite values become null (NaN held)"
            );
            points += s.ts.len() as u64;
        }
        assert_eq!(stats.points, points, "points counter");
    }
}

/// A window derived from the input, so both wide and narrow windows are explored.
fn window(data: &[u8]) -> (i64, i64) {
    match data.first() {
        Some(b) if b % 2 == 0 => (i64::MIN, i64::MAX),
        Some(b) => (i64::from(*b) * 1000, 2_000_000_000_000),
        None => (0, 1),
    }
}

/// The downsample spec parsers (OpenTSDB and Erlenmeyer rules) on arbitrary text: never panic;
/// an accepted spec prints back to a spec that parses to the same value.
pub fn check_downsample(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = text.parse::<DownsampleSpec>() {
        let printed = spec.to_string();
        let again: DownsampleSpec = printed
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again, spec, "{text:?} → {printed:?}");
        assert!(
            spec.run_all || spec.interval_ms > 0,
            "{text:?}: empty interval"
        );
    }
    if let Ok(spec) = DownsampleSpec::parse_ovh(text) {
        assert!(
            spec.run_all || spec.interval_ms > 0,
            "{text:?}: empty interval"
        );
        assert!(!spec.calendar, "Erlenmeyer has no calendar mode");
    }
}

/// The partition-path encoder on arbitrary text: the escaped value is one valid object-store
/// path segment (`metric=<escaped>`), survives a round trip through `object_store::Path`, and
/// decodes back to the original.
pub fn check_partition(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let escaped = escape_path_value(value);
    assert!(
        !escaped.contains('/'),
        "{value:?} → {escaped:?} spans segments"
    );
    let segment = format!("metric={escaped}");
    object_store::path::PathPart::parse(&segment)
        .unwrap_or_else(|e| panic!("{value:?} → invalid segment {segment:?}: {e}"));
    let path = object_store::path::Path::parse(format!("t/{segment}/date=2026-11-01/p.parquet"))
        .unwrap_or_else(|e| panic!("{value:?} → invalid path: {e}"));
    let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_string()).collect();
    assert_eq!(parts.len(), 4, "{value:?} → {parts:?}");
    let back = parts[1].strip_prefix("metric=").expect("key kept");
    if !value.is_empty() {
        assert_eq!(unescape_path_value(back), value, "round trip of {value:?}");
    }
}
