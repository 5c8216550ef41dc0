//! A decoded series: what the client's decoder makes of one series of an `/api/query` answer,
//! and what everything after it works on (rollups here, Arrow batches and Parquet in the root
//! crate). Sources differ up to this type only.

use std::collections::BTreeMap;

/// One series of an answer: its identity and its points, sorted by time and de-duplicated.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Metric name: the query's (the decoder refuses an answer naming another).
    pub metric: String,
    /// Every tag of the series, sorted by key.
    pub tags: BTreeMap<String, String>,
    /// Point times in ms since the epoch, strictly ascending.
    pub ts: Vec<i64>,
    /// Point values, NaN where the server sent NaN, null, an infinity or a non-number (a null
    /// `value` in the files). Decoded values are otherwise always finite, so NaN is free to
    /// mean "no value", and a point costs 8 bytes here instead of an `Option<f64>`'s 16 (the
    /// decoded points are most of what a run holds, issue 18). [`value_of`] reads one back.
    pub values: Vec<f64>,
}

/// A held value as what it means: `None` for the NaN that stands for "no value".
#[inline]
pub fn value_of(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}
