//! Table maintenance commands that are not a run: `vscope-etl compact` (any table) and
//! `vscope-etl vacuum` (Delta tables). Each takes the pipeline's lease for its whole duration,
//! so it never runs during a run or a shard's publication (whose files are in the table before
//! its commit lists them); a run started meanwhile is refused (exit 1) and its scheduler
//! retries it.

pub mod compact;
mod merge;

use crate::config::{ConfigError, Pipeline, TableFormat};
use crate::error::Result;
use crate::load::Sink;
use crate::load::delta::vacuum::{VacuumReport, vacuum as vacuum_table};
use crate::load::lease::Lease;

/// Refuses `command` unless the pipeline's tables are Delta tables, saying why it needs them.
fn require_delta(pipeline: &Pipeline, command: &str) -> std::result::Result<(), ConfigError> {
    if pipeline.sink.table_format == TableFormat::Delta {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key: "sink.table_format".into(),
        message: format!(
            "`{command}` works on Delta tables: set table_format = \"delta\" in [sink] (plain \
             Parquet has no log of the files that are no longer part of the table)"
        ),
    })
}

/// The pipeline's sink, its files staged under the pipeline's folder.
fn pipeline_sink(pipeline: &Pipeline) -> std::result::Result<Sink, crate::load::store::StoreError> {
    Ok(Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3)?.for_pipeline(&pipeline.name))
}

/// Vacuums every table of `pipeline` ([`crate::load::delta::vacuum`]) under its lease.
pub async fn vacuum(
    pipeline: &Pipeline,
    retain_ms: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<Vec<VacuumReport>> {
    require_delta(pipeline, "vacuum")?;
    let sink = pipeline_sink(pipeline)?;
    let run_id = format!("vacuum-{:08x}", fastrand::u32(..));
    let lease = Lease::acquire(&sink, &pipeline.name, &run_id, pipeline.sink.lease_ttl_ms)
        .await?
        .keep();
    let mut reports = Vec::new();
    let mut result = Ok(());
    for t in &pipeline.tables {
        match vacuum_table(&sink, &t.name, retain_ms, now_ms, dry_run).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    lease.release_or_warn().await;
    result?;
    Ok(reports)
}

/// Compacts the pipeline's tables ([`compact::compact`]) under its lease.
pub async fn compact(
    pipeline: &Pipeline,
    opts: &compact::CompactOptions,
) -> Result<compact::CompactReport> {
    let sink = pipeline_sink(pipeline)?;
    let run_id = format!(
        "{}-{:08x}",
        crate::semantics::time::format_window_stamp(chrono::Utc::now().timestamp_millis()),
        fastrand::u32(..)
    );
    let lease = Lease::acquire(&sink, &pipeline.name, &run_id, pipeline.sink.lease_ttl_ms)
        .await?
        .keep();
    let result = compact::compact(pipeline, &sink, opts, &run_id).await;
    lease.release_or_warn().await;
    result
}
