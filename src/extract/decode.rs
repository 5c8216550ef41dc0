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
