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
    /// Point values, `None` where the server sent NaN, null, an infinity or a non-number.
    pub values: Vec<Option<f64>>,
}
