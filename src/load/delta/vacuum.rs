//! `vacuum`: deletes the files of a Delta table that its latest version no longer lists and that
//! were written longer ago than the retention period, so that readers of versions within that
//! period (time travel, a query that opened an older snapshot) still find their files.

use futures::TryStreamExt;

use super::{DeltaError, Snapshot, uri_path};
use crate::load::store::{Sink, StoreError};

/// What a vacuum of one table found and did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VacuumReport {
    /// The table directory.
    pub table: String,
    /// The version whose files were kept.
    pub version: i64,
    /// Files the version lists.
    pub referenced: usize,
    /// Unreferenced files older than the retention: deleted (listed only with `dry_run`).
    pub deleted: Vec<String>,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Unreferenced files still within the retention period: kept.
    pub kept_recent: usize,
}

/// Vacuums the table at `table`: data files (not the log) that the latest version does not
/// list and that are older than `retain_ms` are deleted (only listed when `dry_run`). The
/// caller holds the pipeline's lease: a publication moves files in before its commit lists
/// them, and those must not be taken for garbage.
pub async fn vacuum(
    sink: &Sink,
    table: &str,
    retain_ms: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<VacuumReport, DeltaError> {
    let snap = Snapshot::load(sink, table).await?;
    let mut report = VacuumReport {
        table: table.to_string(),
        version: snap.version,
        referenced: snap.files.len(),
        ..VacuumReport::default()
    };
    if snap.version < 0 {
        return Ok(report); // not a Delta table (yet): nothing is garbage
    }
    let prefix = sink.key(table);
    let skip = prefix.parts().count();
    let objects: Vec<object_store::ObjectMeta> = sink
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| StoreError::Object {
            operation: "list",
            path: prefix.to_string(),
            source,
        })?;
    for o in objects {
        let relative: Vec<String> = o
            .location
            .parts()
            .skip(skip)
            .map(|p| p.as_ref().to_string())
            .collect();
        if relative.first().is_some_and(|p| p == "_delta_log") {
            continue;
        }
        let relative = relative.join("/");
        if snap.files.contains_key(&uri_path(&relative)) {
            continue;
        }
        if o.last_modified.timestamp_millis() > now_ms - retain_ms {
            report.kept_recent += 1;
            continue;
        }
        if !dry_run {
            sink.delete_if_exists(&format!("{table}/{relative}"))
                .await?;
        }
        report.deleted_bytes += o.size;
        report.deleted.push(relative);
    }
    report.deleted.sort();
    Ok(report)
}
