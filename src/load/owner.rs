//! Which pipeline a table of a sink belongs to: `_state/tables/<table>.json`.
//!
//! Two pipelines writing the same table into one sink would overwrite each other's files
//! (the file names are the window's, not the pipeline's) and both ledgers would claim every
//! window. So a table belongs to the first pipeline that writes it: the claim is created with a
//! conditional put (one of two racing runs wins), and a run of another pipeline refuses to
//! start (exit 2) naming the owner and the fix.

use serde::{Deserialize, Serialize};

use super::store::{Sink, StoreError};
use crate::semantics::time::format_rfc3339;

/// The claim on a table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableOwner {
    /// The table.
    pub table: String,
    /// The pipeline that writes it.
    pub pipeline: String,
    /// When the claim was made (RFC 3339).
    pub claimed: String,
}

/// A table cannot be written by this pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// Another pipeline writes this table in this sink.
    #[error(
        "table {table} in {sink} belongs to pipeline '{owner}' (since {since}); pipeline \
         '{pipeline}' would overwrite its files. Give this pipeline's table another name, or \
         another sink.url; if '{owner}' was renamed to '{pipeline}', rename \
         _state/{owner}.json to _state/{pipeline}.json and delete {path}"
    )]
    Taken {
        /// The table.
        table: String,
        /// The sink, as configured.
        sink: String,
        /// The owning pipeline.
        owner: String,
        /// This pipeline.
        pipeline: String,
        /// When the owner claimed it.
        since: String,
        /// The claim's key.
        path: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The claim key of a table.
pub fn path(table: &str) -> String {
    format!(
        "_state/tables/{}.json",
        crate::load::partition::escape_path_value(table)
    )
}

/// Makes sure every table in `tables` belongs to `pipeline`, claiming those nobody owns yet
/// (unless `claim` is false: a dry run only checks).
pub async fn claim_tables(
    sink: &Sink,
    pipeline: &str,
    tables: &[String],
    claim: bool,
) -> Result<(), OwnerError> {
    for table in tables {
        let path = path(table);
        loop {
            match read(sink, &path).await? {
                Some(owner) if owner.pipeline == pipeline => break,
                Some(owner) => {
                    return Err(OwnerError::Taken {
                        table: table.clone(),
                        sink: sink.display.clone(),
                        owner: owner.pipeline,
                        pipeline: pipeline.to_string(),
                        since: owner.claimed,
                        path,
                    });
                }
                None if !claim => break,
                None => {
                    let mine = TableOwner {
                        table: table.clone(),
                        pipeline: pipeline.to_string(),
                        claimed: format_rfc3339(chrono::Utc::now().timestamp_millis()),
                    };
                    let body = serde_json::to_vec_pretty(&mine).expect("claim serializes");
                    if sink.create(&path, body).await?.is_some() {
                        break;
                    }
                    // Claimed by a racing run: read who won.
                }
            }
        }
    }
    Ok(())
}

async fn read(sink: &Sink, path: &str) -> Result<Option<TableOwner>, StoreError> {
    Ok(sink
        .get_opt(path)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 2 of issue 16: the first pipeline claims its tables; another pipeline writing one
    /// of them is refused with the owner's name and the fix; the owner runs again freely; a
    /// dry run claims nothing.
    #[tokio::test]
    async fn a_table_belongs_to_the_first_pipeline_that_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let t = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        claim_tables(&sink, "b", &t(&["vm_metrics"]), false)
            .await
            .unwrap();
        assert!(sink.get_opt(&path("vm_metrics")).await.unwrap().is_none());
        claim_tables(&sink, "a", &t(&["vm_metrics", "host_metrics"]), true)
            .await
            .unwrap();
        claim_tables(&sink, "a", &t(&["vm_metrics"]), true)
            .await
            .unwrap();
        let err = claim_tables(&sink, "b", &t(&["filers", "vm_metrics"]), true)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("belongs to pipeline 'a'"), "{msg}");
        assert!(msg.contains("another name"), "{msg}");
        claim_tables(&sink, "b", &t(&["filers"]), true)
            .await
            .unwrap();
    }
}
