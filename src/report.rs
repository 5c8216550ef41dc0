//! `vscope-etl report`: the capacity-planning report of `vscope-report` (crates/report), with
//! the one thing it leaves to its caller: opening an S3 sink, which is done here like the
//! pipeline's own sink (the same `[sink.s3]` settings and `AWS_*` variables).

pub use vscope_report::*;

use crate::load::store::{S3Options, Sink};

/// Opens the dataset at `url` (a local path, `file://` or `s3://`), copying from S3 only the
/// date partitions of the period when one is given.
pub async fn open(
    url: &str,
    s3: &S3Options,
    opts: &ReportOptions,
) -> Result<data::Dataset, ReportError> {
    let location = if url.starts_with("s3://") {
        let sink = Sink::open_with(url, s3).map_err(|e| ReportError::Store(e.to_string()))?;
        Location::Store {
            store: sink.store,
            prefix: sink.prefix,
            url: url.to_string(),
        }
    } else {
        Location::Local(url.to_string())
    };
    vscope_report::open(location, opts).await
}
