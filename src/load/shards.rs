//! Shard marks: what one shard of `--shard I/N` staged for a window, waiting for the others.
//!
//! Shards split a window's units (metric × datacenter) between them, so one window's files come
//! from N processes. Each shard writes its files under its own staging folder and then records a
//! mark, `_state/<pipeline>.shards/<window>/<I>of<N>.json`, listing them. Whichever shard finds
//! the marks of all N shards (its own last) publishes the whole window in one journaled step
//! ([`crate::load::publish`]): every shard's files moved in, any other cut of the window removed
//! (an unsharded run's file, another shard count's), the ledger written, the marks deleted.
//! Switching a window from one cut to another is therefore as atomic as it is for one process:
//! there is never a moment when half the new shards' files sit next to the old file (duplicates)
//! or the old file is gone before the last shard is in (a hole).
//!
//! Marks are written and read only under the pipeline lease (held for that short step), so two
//! shards never publish the same window, and a shard's mark never changes under a publisher.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::Ledger;
use super::store::{Sink, StoreError};
use super::writer::WrittenFile;

/// Mark format version.
pub const MARK_VERSION: u32 = 1;

/// One staged file of a shard: where it waits and where it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarkedFile {
    /// The staging key (below the sink, in the shard's staging folder).
    pub staging: String,
    /// The file, under the key it is published at.
    pub file: WrittenFile,
}

/// What one shard staged for one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardMark {
    /// Format version.
    pub version: u32,
    /// The pipeline.
    pub pipeline: String,
    /// This shard, `0..shards`.
    pub shard: u32,
    /// The shard count of the cut.
    pub shards: u32,
    /// The run that staged it.
    pub run_id: String,
    /// When (RFC 3339).
    pub staged_at: String,
    /// Window start in ms.
    pub start_ms: i64,
    /// Window end in ms (exclusive).
    pub end_ms: i64,
    /// Fetched up to here (`end_ms` unless the window was open).
    pub fetched_until_ms: i64,
    /// True when the whole window was fetched.
    pub complete: bool,
    /// A digest of every unit of the window (all shards'), as this shard planned it: shards
    /// that disagree (a datacenter appeared between their discoveries) would leave units out,
    /// so only marks with the publisher's digest are published together.
    pub units_digest: String,
    /// The files, every table.
    pub files: Vec<MarkedFile>,
    /// Per table, the partition folders where files of other cuts of the window are looked for.
    pub dirs: BTreeMap<String, Vec<String>>,
}

/// A mark could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarkError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A mark does not parse (written by another version, or damaged).
    #[error(
        "the shard mark {path} is not readable ({message}); delete it, then run that shard again"
    )]
    Corrupt {
        /// Its key.
        path: String,
        /// Why.
        message: String,
    },
}

impl ShardMark {
    /// The folder of a pipeline's marks.
    pub fn root(pipeline: &str) -> String {
        format!("_state/{pipeline}.shards")
    }

    /// The folder of one window's marks.
    pub fn window_dir(pipeline: &str, start_ms: i64, end_ms: i64) -> String {
        format!(
            "{}/{}",
            ShardMark::root(pipeline),
            Ledger::window_key(start_ms, end_ms)
        )
    }

    /// The file name of shard `shard` of `shards`.
    pub fn file_name(shard: u32, shards: u32) -> String {
        format!("{shard}of{shards}.json")
    }

    /// This mark's key.
    pub fn path(&self) -> String {
        format!(
            "{}/{}",
            ShardMark::window_dir(&self.pipeline, self.start_ms, self.end_ms),
            ShardMark::file_name(self.shard, self.shards)
        )
    }

    /// Writes the mark (replacing this shard's earlier one for the window).
    pub async fn save(&self, sink: &Sink) -> Result<(), StoreError> {
        sink.put(
            &self.path(),
            serde_json::to_vec_pretty(self).expect("mark serializes"),
        )
        .await
    }

    /// Every mark of one window, any shard count, by key.
    pub async fn of_window(
        sink: &Sink,
        pipeline: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<ShardMark>, MarkError> {
        let dir = ShardMark::window_dir(pipeline, start_ms, end_ms);
        let mut marks = Vec::new();
        for name in sink.list_dir(&dir).await? {
            if !name.ends_with(".json") {
                continue;
            }
            if let Some(m) = ShardMark::read(sink, &format!("{dir}/{name}")).await? {
                marks.push(m);
            }
        }
        Ok(marks)
    }

    /// Every mark of a pipeline (for `status`, and for a shard's start-of-run clean-up).
    pub async fn all(sink: &Sink, pipeline: &str) -> Result<Vec<ShardMark>, MarkError> {
        let mut marks = Vec::new();
        for path in sink.list_below(&ShardMark::root(pipeline)).await? {
            if path.ends_with(".json")
                && let Some(m) = ShardMark::read(sink, &path).await?
            {
                marks.push(m);
            }
        }
        Ok(marks)
    }

    async fn read(sink: &Sink, path: &str) -> Result<Option<ShardMark>, MarkError> {
        let Some(bytes) = sink.get_opt(path).await? else {
            return Ok(None); // published and deleted since the listing
        };
        let corrupt = |message: String| MarkError::Corrupt {
            path: path.to_string(),
            message,
        };
        let mark: ShardMark = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if mark.version != MARK_VERSION {
            return Err(corrupt(format!(
                "version {} is not {MARK_VERSION}",
                mark.version
            )));
        }
        Ok(Some(mark))
    }
}

/// Which shard of how many the run is (`--shard I/N`), as it names its files, lease and staging
/// folder.
pub fn shard_tag(shard: u32, shards: u32) -> String {
    format!("s{shard}of{shards}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(shard: u32, shards: u32) -> ShardMark {
        ShardMark {
            version: MARK_VERSION,
            pipeline: "p".into(),
            shard,
            shards,
            run_id: format!("r{shard}"),
            staged_at: "2026-11-01T00:00:00Z".into(),
            start_ms: 0,
            end_ms: 3_600_000,
            fetched_until_ms: 3_600_000,
            complete: true,
            units_digest: "d".into(),
            files: vec![MarkedFile {
                staging: format!("_tmp/p.s{shard}of{shards}/x"),
                file: WrittenFile {
                    path: format!("t/date=1970-01-01/part-x-h{shard}of{shards}.parquet"),
                    table: "t".into(),
                    rows: 3,
                    bytes: 10,
                    stats: None,
                },
            }],
            dirs: BTreeMap::from([("t".into(), vec!["t/date=1970-01-01".into()])]),
        }
    }

    #[tokio::test]
    async fn marks_are_listed_per_window_and_for_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        for (i, n) in [(0, 2), (1, 2), (3, 4)] {
            mark(i, n).save(&sink).await.unwrap();
        }
        let mut other = mark(0, 2);
        other.start_ms = 3_600_000;
        other.end_ms = 7_200_000;
        other.save(&sink).await.unwrap();
        let mut of_first = ShardMark::of_window(&sink, "p", 0, 3_600_000)
            .await
            .unwrap();
        of_first.sort_by_key(|m| (m.shards, m.shard));
        let got: Vec<(u32, u32)> = of_first.iter().map(|m| (m.shard, m.shards)).collect();
        assert_eq!(got, vec![(0, 2), (1, 2), (3, 4)]);
        assert_eq!(of_first[1], mark(1, 2));
        assert_eq!(ShardMark::all(&sink, "p").await.unwrap().len(), 4);
        assert!(ShardMark::all(&sink, "q").await.unwrap().is_empty());
        sink.put(&mark(1, 2).path(), b"{".to_vec()).await.unwrap();
        let err = ShardMark::of_window(&sink, "p", 0, 3_600_000)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("run that shard again"), "{err}");
    }
}
