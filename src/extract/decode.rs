//! Decoding an `/api/query` answer straight into per-series columns.
//!
//! The answer is a JSON array of series objects whose `dps` is either an object
//! `{"<ts>": value}` or an array `[[ts, value], ...]` (`arrays=true`). A serde visitor reads it in
//! one pass into `Vec<i64>` / `Vec<Option<f64>>` with no `serde_json::Value` tree and no
//! per-point allocation. The rules for odd input are documented on [`DecodeStats`]: a value
//! that is not a finite number never fails the answer (bare `NaN`, `Infinity`, `-Infinity` and
//! out-of-range numbers included, though they are not JSON), it becomes a null `value`,
//! counted.

use super::raw::{RawSeries, overflowing_number};
use super::stream::AnswerStream;

pub use vscope_core::series::{SeriesData, value_of};

/// What the decoder did with input that was not a plain in-window point. Each counter has one
/// documented rule, so the manifest can say exactly what happened to every point received:
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeStats {
    /// Points kept (rows produced).
    pub points: u64,
    /// `NaN` values (`"NaN"` as OpenTSDB quotes it, or bare `NaN` as Jackson writes it
    /// unquoted) and `null`s: kept as a null `value`, never a fake number.
    pub null_values: u64,
    /// `±Infinity` (quoted or bare), numbers beyond f64's range (`1e309`), booleans, objects
    /// or strings that are not numbers: kept as a null `value`, never a fake number.
    pub invalid_values: u64,
    /// Points outside the half-open window `[start, end)` (the server's end is inclusive, and a
    /// server that ignored `msResolution` shows up here): dropped.
    pub out_of_window: u64,
    /// Repeated timestamps within one series: the last one received wins.
    pub duplicates: u64,
}

impl DecodeStats {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &DecodeStats) {
        self.points += other.points;
        self.null_values += other.null_values;
        self.invalid_values += other.invalid_values;
        self.out_of_window += other.out_of_window;
        self.duplicates += other.duplicates;
    }
}

/// An answer that is not a valid `/api/query` response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes with a 200 status (Erlenmeyer writes the status before encoding).
    #[error("empty response body")]
    Empty,
    /// Not JSON of the expected shape; `snippet` is the start of the body.
    #[error("malformed query response ({message}); body starts with: {snippet}")]
    Malformed {
        /// The JSON parser's message.
        message: String,
        /// Up to 200 characters of the body, for the log (the caller scrubs secrets).
        snippet: String,
    },
    /// A series of the answer names another metric than the query asked for: the server, or a
    /// proxy or cache in front of it, answered another query. Its rows would be filed under
    /// the wrong metric (or, outside the window, dropped, leaving a hole), so none of the
    /// answer is kept.
    #[error(
        "the answer holds a series of metric '{answered}' to a query for metric '{asked}': the \
         server, or a proxy or cache in front of it, answered another query, so nothing of it is \
         kept; check that source.url is the metrics endpoint itself (no caching proxy); the unit \
         fails and the next run asks again"
    )]
    WrongMetric {
        /// The metric of the query (the catalogue name the unit asked for).
        asked: String,
        /// The metric the answer named.
        answered: String,
    },
}

/// Decodes the answer to a query for `metric`, keeping points with `start_ms <= ts < end_ms`:
/// [`decode_query_response`], plus the check that every series of the answer (with points in
/// the window or not) is of `metric` ([`DecodeError::WrongMetric`] otherwise). So rows always
/// carry the metric the unit asked for, never a name only the server gave.
pub fn decode_query_answer(
    body: &[u8],
    start_ms: i64,
    end_ms: i64,
    metric: &str,
) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
    decode(body, start_ms, end_ms, Some(metric))
}

/// Decodes an `/api/query` body, keeping points with `start_ms <= ts < end_ms`, whatever
/// metrics its series name (see [`decode_query_answer`] for the answer to one query).
pub fn decode_query_response(
    body: &[u8],
    start_ms: i64,
    end_ms: i64,
) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
    decode(body, start_ms, end_ms, None)
}

/// The whole body through [`AnswerStream`], as one piece.
fn decode(
    body: &[u8],
    start_ms: i64,
    end_ms: i64,
    asked: Option<&str>,
) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
    let mut stream = AnswerStream::new(start_ms, end_ms, asked);
    stream.push(body)?;
    stream.finish()
}

/// The serde path: serde_json reads the body; when it refuses it, and `dps` values hold bare
/// `NaN`, `Infinity`, `-Infinity` or numbers beyond f64's range (not JSON, but what Jackson
/// writes when it does not quote non-finite doubles, OpenTSDB under some fill policies, and
/// Python's `json`), those values are quoted as OpenTSDB quotes them by default
/// (`reference/api.md` §1.5) and the body read again, so they become a null value (`NaN`) or an
/// invalid value (the others) instead of failing the unit on every run. Bare words anywhere
/// else stay malformed. The error message is serde_json's, placed in the original body.
pub(super) fn serde_path(body: &[u8]) -> Result<Vec<RawSeries>, String> {
    let first = match serde_json::from_slice(body) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let Some(quoted) = quote_bare_values(body) else {
        return Err(first.to_string());
    };
    serde_json::from_slice(&quoted.body).map_err(|e| quoted.message_at_original_position(body, &e))
}

/// `body` with its bare non-finite `dps` values quoted, as the serde path reads them
/// ([`serde_path`]); `None` when it holds none. For other readers of `/api/query` answers
/// (the dialect probe), so that they accept what the decoder accepts.
pub(super) fn with_bare_values_quoted(body: &[u8]) -> Option<Vec<u8>> {
    quote_bare_values(body).map(|q| q.body)
}

/// A body whose bare non-finite `dps` values were quoted ([`quote_bare_values`]).
struct Quoted {
    body: Vec<u8>,
    /// Each replacement, in order: (offset in the original body, length there, length now).
    edits: Vec<(usize, usize, usize)>,
}

impl Quoted {
    /// serde_json's message for `e`, an error in the quoted body, with its position moved
    /// back to `original`, the body before quoting (no line break is ever added or removed,
    /// so only the column moves).
    fn message_at_original_position(&self, original: &[u8], e: &serde_json::Error) -> String {
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let Some(what) = text.strip_suffix(&suffix) else {
            return text;
        };
        // serde_json's column counts bytes from the start of the line.
        let line_start = |b: &[u8]| -> usize {
            b.iter()
                .enumerate()
                .filter(|&(_, &c)| c == b'\n')
                .nth(e.line().saturating_sub(2))
                .filter(|_| e.line() > 1)
                .map_or(0, |(at, _)| at + 1)
        };
        let pos = line_start(&self.body) + e.column();
        let mut shift: isize = 0;
        let mut at_original = None;
        for &(at, old_len, new_len) in &self.edits {
            let now_at = at.saturating_add_signed(shift);
            if pos < now_at {
                break;
            }
            if pos < now_at + new_len {
                // Inside a quoted value: its place in the original.
                at_original = Some(at + (pos - now_at).min(old_len));
                break;
            }
            shift += new_len as isize - old_len as isize;
        }
        let at_original = at_original.unwrap_or(pos.saturating_add_signed(-shift));
        let column = at_original.saturating_sub(line_start(original));
        format!("{what} at line {} column {column}", e.line())
    }
}

/// What a container of the answer is, to tell where a point value is expected.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// The answer's top-level array.
    Answer,
    /// One element of the answer.
    Series,
    /// A series' `dps`, object or array.
    Dps,
    /// One `[ts, value, ...]` of the array form.
    Pair,
    /// Anything else.
    Other,
}

struct Frame {
    role: Role,
    object: bool,
    /// Object: a member name comes next (after `{` or `,`).
    expecting_key: bool,
    /// Object: the current member is `dps`.
    key_is_dps: bool,
    /// Array: the element index.
    index: usize,
}

/// Quotes the bare `NaN`, `Infinity`, `-Infinity` and overflowing numbers found where a
/// `dps` value is expected (an object-form member value, or the second element of an
/// array-form pair); `None` when there is none. Only a lexer: it follows the nesting to know
/// the positions and leaves every other byte as it is, so anything malformed stays malformed
/// for serde_json to report.
fn quote_bare_values(b: &[u8]) -> Option<Quoted> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut edits = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\n' | b'\r' | b'\t' | b':' => i += 1,
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    break;
                }
                if let Some(f) = stack.last_mut().filter(|f| f.object && f.expecting_key) {
                    f.expecting_key = false;
                    f.key_is_dps = &b[start..j] == b"dps";
                }
                i = j + 1;
            }
            b',' => {
                if let Some(f) = stack.last_mut() {
                    if f.object {
                        f.expecting_key = true;
                        f.key_is_dps = false;
                    } else {
                        f.index += 1;
                    }
                }
                i += 1;
            }
            c @ (b'{' | b'[') => {
                let role = match stack.last() {
                    None if c == b'[' => Role::Answer,
                    Some(f) if f.role == Role::Answer && c == b'{' => Role::Series,
                    Some(f) if f.role == Role::Series && !f.expecting_key && f.key_is_dps => {
                        Role::Dps
                    }
                    Some(f) if f.role == Role::Dps && !f.object && c == b'[' => Role::Pair,
                    _ => Role::Other,
                };
                stack.push(Frame {
                    role,
                    object: c == b'{',
                    expecting_key: true,
                    key_is_dps: false,
                    index: 0,
                });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            _ => {
                let end = b[i..]
                    .iter()
                    .position(|c| {
                        matches!(
                            c,
                            b' ' | b'\n'
                                | b'\r'
                                | b'\t'
                                | b','
                                | b':'
                                | b'['
                                | b']'
                                | b'{'
                                | b'}'
                                | b'"'
                        )
                    })
                    .map_or(b.len(), |p| i + p);
                let point = stack.last().is_some_and(|f| match f.role {
                    Role::Dps => f.object && !f.expecting_key,
                    Role::Pair => f.index == 1,
                    _ => false,
                });
                if point && let Some(quoted) = quoted_value(&b[i..end]) {
                    out.extend_from_slice(&b[copied..i]);
                    out.extend_from_slice(quoted);
                    edits.push((i, end - i, quoted.len()));
                    copied = end;
                }
                i = end;
            }
        }
    }
    if edits.is_empty() {
        return None;
    }
    out.extend_from_slice(&b[copied..]);
    Some(Quoted { body: out, edits })
}

/// The quoted form of a bare non-finite `dps` value, as OpenTSDB quotes it by default.
fn quoted_value(token: &[u8]) -> Option<&'static [u8]> {
    match token {
        b"NaN" => Some(br#""NaN""#),
        b"Infinity" => Some(br#""Infinity""#),
        b"-Infinity" => Some(br#""-Infinity""#),
        _ => match overflowing_number(token)? {
            v if v > 0.0 => Some(br#""Infinity""#),
            _ => Some(br#""-Infinity""#),
        },
    }
}

/// Clips to `[start, end)`, sorts by time (stable, so among equal times the later one received
/// stays last) and keeps the last of each run of equal times.
pub(super) fn normalize(
    ts: &mut Vec<i64>,
    values: &mut Vec<f64>,
    start_ms: i64,
    end_ms: i64,
) -> (Vec<i64>, Vec<f64>, u64, u64) {
    let total = ts.len();
    let sorted = ts.windows(2).all(|w| w[0] < w[1]);
    let (mut out_ts, mut out_v);
    if sorted {
        out_ts = std::mem::take(ts);
        out_v = std::mem::take(values);
        let lo = out_ts.partition_point(|&t| t < start_ms);
        let hi = out_ts.partition_point(|&t| t < end_ms);
        out_ts.truncate(hi);
        out_v.truncate(hi);
        out_ts.drain(..lo);
        out_v.drain(..lo);
        let kept = out_ts.len();
        return (out_ts, out_v, (total - kept) as u64, 0);
    }
    let mut idx: Vec<usize> = (0..total)
        .filter(|&i| ts[i] >= start_ms && ts[i] < end_ms)
        .collect();
    let dropped = (total - idx.len()) as u64;
    idx.sort_by_key(|&i| ts[i]);
    out_ts = Vec::with_capacity(idx.len());
    out_v = Vec::with_capacity(idx.len());
    let mut dups = 0u64;
    for i in idx {
        if out_ts.last() == Some(&ts[i]) {
            *out_v.last_mut().expect("same length") = values[i];
            dups += 1;
        } else {
            out_ts.push(ts[i]);
            out_v.push(values[i]);
        }
    }
    (out_ts, out_v, dropped, dups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Held values as what they mean (NaN is no value).
    fn opt(values: &[f64]) -> Vec<Option<f64>> {
        values.iter().map(|&v| value_of(v)).collect()
    }

    fn decode(body: &str) -> (Vec<SeriesData>, DecodeStats) {
        decode_query_response(body.as_bytes(), 0, i64::MAX).unwrap()
    }

    #[test]
    fn object_form_with_every_value_kind() {
        let (s, st) = decode(
            r#"[{"metric":"m","tags":{"vm":"vm-1","env":"prod"},"aggregateTags":[],"query":{"index":0},
               "dps":{"1000":1,"2000":2.5,"3000":"NaN","4000":null,"5000":"Infinity","6000":true,"7000":"4.25","8000":1e3}}]"#,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].metric, "m");
        assert_eq!(s[0].tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(s[0].ts, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000]);
        assert_eq!(
            opt(&s[0].values),
            [
                Some(1.0),
                Some(2.5),
                None,
                None,
                None,
                None,
                Some(4.25),
                Some(1000.0)
            ]
        );
        assert_eq!(st.null_values, 2);
        assert_eq!(st.invalid_values, 2);
        assert_eq!(st.points, 8);
    }

    #[test]
    fn the_scanner_takes_the_plain_shape_and_hands_odd_input_to_serde() {
        let plain = br#"[{"metric":"m","tags":{"vm":"vm-1"},"aggregateTags":[],"query":{"index":0,"tags":{}},
            "dps":{"1000":1,"2000":2.5,"3000":"NaN","4000":null,"5000":-0.25e2}},{"metric":"m","dps":[[1,2]]}]"#;
        let fast = super::super::scan::scan(plain).expect("plain shape");
        assert_eq!(fast[0].dps.ts, [1000, 2000, 3000, 4000, 5000]);
        assert_eq!(fast[0].dps.values[4], -25.0);
        assert_eq!(fast[1].dps.ts, [1]);
        // An escape, a duplicate field, trailing garbage: the scanner gives up...
        for odd in [
            &br#"[{"metric":"m\u0041","dps":{}}]"#[..],
            br#"[{"metric":"m","metric":"n","dps":{}}]"#,
            br#"[{"metric":"m","dps":{}}] x"#,
        ] {
            assert!(super::super::scan::scan(odd).is_none());
        }
        // ...and the serde path decides: the escape is read, the others are errors.
        assert_eq!(
            decode(r#"[{"metric":"m\u0041","dps":{"1":1}}]"#).0[0].metric,
            "mA"
        );
        assert!(decode_query_response(br#"[{"metric":"m","metric":"n","dps":{}}]"#, 0, 9).is_err());
    }

    #[test]
    fn array_form() {
        let (s, _) =
            decode(r#"[{"metric":"m","tags":{},"dps":[[1000,1],[2000,"NaN"],[3000,3.5]]}]"#);
        assert_eq!(s[0].ts, [1000, 2000, 3000]);
        assert_eq!(opt(&s[0].values), [Some(1.0), None, Some(3.5)]);
    }

    /// Bare `NaN`, `Infinity`, `-Infinity` (what Jackson writes with quoting off, and Python's
    /// `json`) and numbers beyond f64's range, in both forms and with whitespace, read by both
    /// decode paths: NaN is a null value, the others invalid values; the unit does not fail.
    #[test]
    fn bare_non_finite_values_and_overflowing_numbers_are_null_values_in_both_paths() {
        let expected_values = [Some(1.0), None, None, None, None, None, Some(2.5)];
        for dps in [
            r#"{"1":1,"2":NaN,"3":Infinity,"4":-Infinity,"5":1e309,"6":-1E+400,"7":2.5}"#,
            "{ \"1\" : 1 , \"2\" :\tNaN ,\n\"3\":  Infinity\r\n, \"4\": -Infinity , \"5\" : 1e309 ,\"6\":-1E+400 , \"7\" : 2.5 }",
            "[[1,1],[2,NaN],[3,Infinity],[4,-Infinity],[5,1e309],[6,-1E+400],[7,2.5]]",
            "[ [1, 1] , [ 2 , NaN ] ,[3,\tInfinity],[4 ,-Infinity ],\n[5, 1e309], [6,-1E+400,\"x\"], [7,2.5] ]",
            // A 400-digit integer overflows too.
            &format!(
                "[[1,1],[2,NaN],[3,Infinity],[4,-Infinity],[5,1{}],[6,-1e400],[7,2.5]]",
                "0".repeat(400)
            ),
        ] {
            // The plain shape goes through the scanner; an escaped metric name sends the same
            // answer through the serde path.
            for (path, metric) in [("scanner", "m"), ("serde", "\\u006d")] {
                let body = format!(r#"[{{"metric":"{metric}","tags":{{}},"dps":{dps}}}]"#);
                assert_eq!(
                    super::super::scan::scan(body.as_bytes()).is_some(),
                    path == "scanner",
                    "{path}: {body}"
                );
                let (s, st) = decode_query_response(body.as_bytes(), 0, 100)
                    .unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
                assert_eq!(s.len(), 1, "{path}: {body}");
                assert_eq!(s[0].metric, "m");
                assert_eq!(s[0].ts, [1, 2, 3, 4, 5, 6, 7], "{path}: {body}");
                assert_eq!(opt(&s[0].values), expected_values, "{path}: {body}");
                assert_eq!(st.null_values, 1, "{path}: NaN is a null value: {body}");
                assert_eq!(
                    st.invalid_values, 4,
                    "{path}: infinities are invalid: {body}"
                );
                assert_eq!(st.points, 7);
            }
        }
    }

    /// Bare words are read where a point value is expected, and nowhere else: a bare NaN as a
    /// metric name, a tag value or a key, a misspelt word, or a non-finite word inside an
    /// ignored field is malformed (the scanner gives up and serde_json refuses), so an odd
    /// answer is never read leniently by accident.
    #[test]
    fn bare_non_finite_words_elsewhere_are_malformed() {
        for body in [
            r#"[{"metric":NaN,"tags":{},"dps":{"1":1}}]"#,
            r#"[{"metric":"m","tags":{"a":NaN},"dps":{"1":1}}]"#,
            r#"[{"metric":"m","tags":{},"dps":{NaN:1}}]"#,
            r#"[{"metric":"m","tags":{},"dps":[[NaN,1]]}]"#,
            r#"[{"metric":"m","tags":{},"dps":{"1":nan}}]"#,
            r#"[{"metric":"m","tags":{},"dps":{"1":NaNx}}]"#,
            r#"[{"metric":"m","tags":{},"dps":{"1":-NaN}}]"#,
            r#"[{"metric":"m","tags":{},"dps":{"1":+Infinity}}]"#,
            r#"[{"metric":"m","tags":{},"dps":{"1":Inf}}]"#,
            r#"[{"metric":"m","tags":{},"dps":{"1":01e999}}]"#,
            r#"[{"metric":"m","tags":{},"query":{"x":NaN},"dps":{"1":1}}]"#,
            r#"[{"metric":"m","tags":{},"dps":[[1,2,Infinity]]}]"#,
            r#"[{"metric":"m","tags":{},"dps":NaN}]"#,
            r#"[NaN]"#,
        ] {
            assert!(
                super::super::scan::scan(body.as_bytes()).is_none(),
                "{body}"
            );
            let err = decode_query_response(body.as_bytes(), 0, 100)
                .map(|(s, _)| s)
                .expect_err(body);
            assert!(
                matches!(err, DecodeError::Malformed { .. }),
                "{body}: {err}"
            );
        }
        // An overflowing number where a value is ignored is skipped, as serde_json skips it.
        let (s, _) =
            decode(r#"[{"metric":"m","tags":{},"query":{"x":1e999},"dps":[[1,NaN,1e999]]}]"#);
        assert_eq!(opt(&s[0].values), [None]);
    }

    /// A malformed answer that also holds bare words is reported where the original body is
    /// wrong, not where the rewritten one would be.
    #[test]
    fn malformed_answers_with_bare_words_report_the_original_position() {
        let body = "[{\"metric\":\"\\u006d\",\"dps\":{\"1\":NaN,\"2\":Infinity,\"3\":x}}]";
        let err = decode_query_response(body.as_bytes(), 0, 100).unwrap_err();
        let column = body.find('x').unwrap() + 1;
        assert!(
            err.to_string().contains(&format!("line 1 column {column}")),
            "{err} (x is at column {column})"
        );
        // On a later line, after values quoted on earlier lines and on its own.
        let body = "[{\"metric\":\"\\u006d\",\"dps\":{\"1\":-1e999,\n \"2\":NaN, \"3\":Infinity,\"4\":y}}]";
        let err = decode_query_response(body.as_bytes(), 0, 100).unwrap_err();
        let line2 = &body[body.find('\n').unwrap() + 1..];
        let column = line2.find(":y").unwrap() + 2;
        assert!(
            err.to_string().contains(&format!("line 2 column {column}")),
            "{err} (y is at line 2 column {column})"
        );
    }

    /// An answer is about the metric asked for: a series naming another one (with points, or
    /// with none in the window, as an answer to another query would be) is an error naming
    /// both metrics, in both decode paths; a summary element without a metric is not a series.
    #[test]
    fn a_series_of_another_metric_is_an_error_naming_both() {
        for body in [
            r#"[{"metric":"vscope.vm.cpu.ready","tags":{},"dps":{"5":1}}]"#,
            r#"[{"metric":"vscope.vm.cpu.usage.perc","tags":{},"dps":{"5":1}},{"metric":"vscope.vm.cpu.ready","tags":{},"dps":{"500":1}}]"#,
            r#"[{"metric":"vscope.vm.cpu.ready","tags":{},"dps":{}}]"#,
            r#"[{"metric":"vscope.vm.cpu.read\u0079","tags":{},"dps":[[5,1]]}]"#,
        ] {
            let err = decode_query_answer(body.as_bytes(), 0, 100, "vscope.vm.cpu.usage.perc")
                .map(|(s, _)| s)
                .expect_err(body);
            assert!(
                matches!(err, DecodeError::WrongMetric { .. }),
                "{body}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("'vscope.vm.cpu.ready'") && msg.contains("'vscope.vm.cpu.usage.perc'"),
                "names both metrics: {msg}"
            );
        }
        let (s, _) = decode_query_answer(
            br#"[{"metric":"m","tags":{},"dps":{"5":1}},{"statsSummary":{}}]"#,
            0,
            100,
            "m",
        )
        .unwrap();
        assert_eq!(s[0].metric, "m");
    }

    #[test]
    fn clips_half_open_sorts_numerically_and_keeps_last_duplicate() {
        // Go sorts map keys as strings: "10000" < "9000". The end (10000) is inclusive on the
        // server but belongs to the next window here.
        let body =
            r#"[{"metric":"m","tags":{},"dps":{"10000":9,"5000":1,"9000":2,"4000":0,"9000":3}}]"#;
        let (s, st) = decode_query_response(body.as_bytes(), 5000, 10000).unwrap();
        assert_eq!(s[0].ts, [5000, 9000]);
        assert_eq!(opt(&s[0].values), [Some(1.0), Some(3.0)]);
        assert_eq!(st.out_of_window, 2);
        assert_eq!(st.duplicates, 1);
    }

    #[test]
    fn empty_answers_and_summary_elements() {
        assert!(decode("[]").0.is_empty());
        let (s, _) = decode(r#"[{"metric":"m","tags":{},"dps":{}},{"statsSummary":{"x":1}}]"#);
        assert!(s.is_empty());
        assert!(matches!(
            decode_query_response(b"", 0, 1),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            decode_query_response(b"<html>502</html>", 0, 1),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(decode_query_response(br#"[{"metric":"m","dps":{"x1":1}}]"#, 0, 1).is_err());
        assert!(decode_query_response(br#"[{"metric":"m","dps":{"1":1}"#, 0, 1).is_err());
    }

    /// The scanner, whenever it answers, agrees with the serde path (serde_json, with bare
    /// non-finite `dps` values quoted).
    fn check_scanner_agrees(body: &[u8]) -> Result<(), TestCaseError> {
        let serde = serde_path(body);
        if let Some(fast) = super::super::scan::scan(body) {
            let serde = serde.map_err(|e| {
                TestCaseError::fail(format!(
                    "scanner accepted what the serde path refuses ({e}): {}",
                    String::from_utf8_lossy(body)
                ))
            })?;
            prop_assert_eq!(fast.len(), serde.len());
            for (f, s) in fast.iter().zip(&serde) {
                prop_assert_eq!(&f.metric, &s.metric);
                prop_assert_eq!(&f.tags, &s.tags);
                prop_assert_eq!(&f.dps.ts, &s.dps.ts);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(
                    bits(&f.dps.values),
                    bits(&s.dps.values),
                    "{}",
                    String::from_utf8_lossy(body)
                );
                prop_assert_eq!(f.dps.null_values, s.dps.null_values);
                prop_assert_eq!(f.dps.invalid_values, s.dps.invalid_values);
            }
        }
        Ok(())
    }

    /// The streamed decoder, fed `body` in pieces cut at `cuts`, reads what serde_json reads
    /// from the whole body: both refuse it, or both give the same series, value bits and
    /// counters.
    fn check_stream_agrees(body: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
        let mut stream = AnswerStream::new(0, i64::MAX, None);
        let mut from = 0;
        let mut pieces: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        pieces.sort_unstable();
        pieces.push(body.len());
        let mut streamed = Ok(());
        for to in pieces {
            streamed = stream.push(&body[from..to]);
            from = to;
            if streamed.is_err() {
                break;
            }
        }
        let streamed = streamed.and_then(|()| stream.finish());
        let whole = if body.iter().all(u8::is_ascii_whitespace) {
            Err("empty".to_string())
        } else {
            serde_path(body)
        };
        let text = String::from_utf8_lossy(body);
        match (streamed, whole) {
            (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) => {
                prop_assert!(false, "streamed accepts what serde refuses ({e}): {text}")
            }
            (Err(e), Ok(_)) => {
                prop_assert!(false, "streamed refuses what serde reads ({e}): {text}")
            }
            (Ok((series, stats)), Ok(raw)) => {
                let mut expected = Vec::new();
                let (mut nulls, mut invalid) = (0, 0);
                for mut r in raw.into_iter().filter(|r| r.metric.is_some()) {
                    nulls += r.dps.null_values;
                    invalid += r.dps.invalid_values;
                    let (ts, values, _, _) =
                        normalize(&mut r.dps.ts, &mut r.dps.values, 0, i64::MAX);
                    if !ts.is_empty() {
                        expected.push((r.metric, r.tags, ts, values));
                    }
                }
                prop_assert_eq!(series.len(), expected.len(), "{}", text);
                for (s, (metric, tags, ts, values)) in series.iter().zip(&expected) {
                    prop_assert_eq!(Some(&s.metric), metric.as_ref());
                    prop_assert_eq!(&s.tags, tags);
                    prop_assert_eq!(&s.ts, ts);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    prop_assert_eq!(bits(&s.values), bits(values));
                }
                prop_assert_eq!((stats.null_values, stats.invalid_values), (nulls, invalid));
            }
        }
        Ok(())
    }

    /// A JSON number in one of the many ways servers print them.
    fn number_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|x| format!("{x:?}")),
            any::<f64>().prop_map(|x| format!("{x:e}")),
            (-1e7f64..1e7).prop_map(|x| format!("{}", (x * 100.0).round() / 100.0)),
            any::<i64>().prop_map(|x| x.to_string()),
            any::<u64>().prop_map(|x| x.to_string()),
            ("-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,4})?").prop_map(|s| s),
            Just("-0".to_string()),
            Just("-0.0".to_string()),
            Just("1e400".to_string()),
            Just("-1e309".to_string()),
            Just(format!("1{}", "0".repeat(309))),
            Just("1.7976931348623157e308".to_string()),
            Just("1.7976931348623159e308".to_string()),
            Just("01".to_string()),
            Just("01e999".to_string()),
        ]
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => number_strategy(),
            1 => prop_oneof![
                Just("\"NaN\"".to_string()),
                Just("\"Infinity\"".to_string()),
                Just("\"-Infinity\"".to_string()),
                Just("\" 4.25\"".to_string()),
                Just("\"nan\"".to_string()),
                Just("\"x\\u0041\"".to_string()),
                Just("null".to_string()),
                Just("NaN".to_string()),
                Just("Infinity".to_string()),
                Just("-Infinity".to_string()),
                Just("NaNx".to_string()),
                Just("-NaN".to_string()),
                Just("nan".to_string()),
                Just("true".to_string()),
                Just("false".to_string()),
                Just("{\"a\":[1,{}]}".to_string()),
                Just("{\"a\":NaN}".to_string()),
                Just("[1e999,Infinity]".to_string()),
                Just("[]".to_string()),
            ],
        ]
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\n\t ")]
    }

    fn point_strategy() -> impl Strategy<Value = (String, String, &'static str)> {
        let key = prop_oneof![
            8 => (0i64..2_000_000_000_000).prop_map(|t| t.to_string()),
            1 => any::<i64>().prop_map(|t| t.to_string()),
            1 => Just("+5".to_string()),
            1 => Just("12a".to_string()),
            1 => Just("99999999999999999999".to_string()),
        ];
        (key, value_strategy(), ws())
    }

    fn answer_strategy() -> impl Strategy<Value = String> {
        let dps_obj = proptest::collection::vec(point_strategy(), 0..8).prop_map(|pts| {
            let body: Vec<String> = pts
                .iter()
                .map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}"))
                .collect();
            format!("{{{}}}", body.join(","))
        });
        let dps_arr = proptest::collection::vec(point_strategy(), 0..8).prop_map(|pts| {
            let body: Vec<String> = pts
                .iter()
                .map(|(k, v, w)| {
                    // Now and then an element after the value, which both paths ignore.
                    let extra = if *w == " " {
                        ",1e999"
                    } else if w.len() > 1 {
                        ",NaN"
                    } else {
                        ""
                    };
                    format!("[{k},{w}{v}{extra}]")
                })
                .collect();
            format!("[{}]", body.join(","))
        });
        let dps = prop_oneof![6 => dps_obj, 2 => dps_arr, 1 => Just("null".to_string())];
        let metric = prop_oneof![
            "[a-z.]{1,12}".prop_map(|m| format!("\"{m}\"")),
            Just("null".to_string()),
            Just("\"caf\u{e9}\"".to_string()),
            Just("\"esc\\\"aped\"".to_string()),
        ];
        let tags =
            proptest::collection::btree_map("[a-z]{1,5}", "[a-z0-9-]{0,6}", 0..4).prop_map(|t| {
                let body: Vec<String> = t.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
                format!("{{{}}}", body.join(","))
            });
        // Fields both paths skip: an overflowing number is skipped, a bare word is malformed
        // there (also under a key named `dps` that is not the series').
        let extra = prop_oneof![
            4 => Just(""),
            4 => Just(",\"aggregateTags\":[],\"query\":{\"index\":0,\"x\":[1.5,null,1e999]}"),
            1 => Just(",\"query\":{\"dps\":{\"1\":NaN}}"),
        ];
        let series = (metric, tags, dps, ws(), extra).prop_map(|(m, t, d, w, extra)| {
            format!("{{{w}\"metric\"{w}:{w}{m},\"tags\":{t}{extra},\"dps\":{d}{w}}}")
        });
        (proptest::collection::vec(series, 0..4), ws())
            .prop_map(|(s, w)| format!("{w}[{}]{w}", s.join(",")))
    }

    proptest! {
        #[test]
        fn decoded_series_are_sorted_unique_and_in_window(
            pts in proptest::collection::vec((0i64..1000, proptest::option::of(-1e6f64..1e6)), 0..60),
            start in 0i64..500, len in 1i64..600,
        ) {
            let body = format!(
                "[{{\"metric\":\"m\",\"tags\":{{}},\"dps\":{{{}}}}}]",
                pts.iter()
                    .map(|(t, v)| format!("\"{t}\":{}", v.map_or("null".to_string(), |x| format!("{x:?}"))))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let (s, st) = decode_query_response(body.as_bytes(), start, start + len).unwrap();
            let mut expected: BTreeMap<i64, Option<f64>> = BTreeMap::new();
            for (t, v) in &pts {
                if *t >= start && *t < start + len {
                    expected.insert(*t, *v);
                }
            }
            let got: BTreeMap<i64, Option<f64>> = s.iter()
                .flat_map(|s| s.ts.iter().copied().zip(opt(&s.values)))
                .collect();
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(st.points as usize, expected.len());
            for series in &s {
                prop_assert!(series.ts.windows(2).all(|w| w[0] < w[1]));
            }
        }

        /// The hand-rolled scanner, whenever it answers, reads exactly what serde_json reads:
        /// same series, tags, timestamps, value bits and counters.
        #[test]
        fn scanner_equals_serde_json_on_generated_answers(body in answer_strategy()) {
            check_scanner_agrees(body.as_bytes())?;
        }

        /// Same on corrupted answers (one byte changed or cut): the scanner gives up or agrees.
        #[test]
        fn scanner_equals_serde_json_on_corrupted_answers(
            body in answer_strategy(), pos in any::<prop::sample::Index>(), byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let mut b = body.into_bytes();
            let i = pos.index(b.len());
            if cut { b.truncate(i); } else { b[i] = byte; }
            check_scanner_agrees(&b)?;
        }

        /// Decoded as it streams in, in pieces cut anywhere, an answer reads as serde_json
        /// reads it whole.
        #[test]
        fn streamed_answers_equal_serde_json_on_the_whole_body(
            body in answer_strategy(), cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            check_stream_agrees(body.as_bytes(), &cuts)?;
        }

        /// Same on corrupted answers (one byte changed or cut): both refuse, or both agree.
        #[test]
        fn streamed_answers_equal_serde_json_on_corrupted_answers(
            body in answer_strategy(), pos in any::<prop::sample::Index>(), byte in any::<u8>(),
            cut in any::<bool>(), cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut b = body.into_bytes();
            let i = pos.index(b.len());
            if cut { b.truncate(i); } else { b[i] = byte; }
            check_stream_agrees(&b, &cuts)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_query_response(&body, 0, 100);
        }
    }
}
