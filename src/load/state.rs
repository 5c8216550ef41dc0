//! The ledger (`_state/<pipeline>.json`: which windows are committed, and the watermark). The
//! run manifest (`_runs/<run-id>.json`) is the run's own record: `crate::run::manifest`.
//!
//! A window is recorded only after its files for every table are written, so the ledger never
//! claims data that is not there; a crash before that leaves the window to the next run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::{Sink, StoreError};
use crate::semantics::time::{format_rfc3339, format_window_stamp};

/// Ledger format version, bumped on incompatible changes.
pub const LEDGER_VERSION: u32 = 1;

/// One committed window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommittedWindow {
    /// Window start (RFC 3339).
    pub start: String,
    /// Window end, exclusive (RFC 3339).
    pub end: String,
    /// Window start in ms.
    pub start_ms: i64,
    /// Window end in ms.
    pub end_ms: i64,
    /// Data was fetched only up to here (< `end_ms` for a window still open at run time).
    pub fetched_until_ms: i64,
    /// True when the whole window was fetched.
    pub complete: bool,
    /// Run that committed it.
    pub run_id: String,
    /// When it was committed (RFC 3339).
    pub committed_at: String,
    /// Rows and files per table (a table with no rows has no files: complete-empty).
    pub tables: BTreeMap<String, TableWindow>,
    /// `sink.partition_by` the files were written with (`None` in ledgers written before it was
    /// recorded: see [`CommittedWindow::layout`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<Vec<String>>,
}

impl CommittedWindow {
    /// The `partition_by` of the window's files: as recorded, or for older ledgers read from
    /// the files' paths (a `metric=` folder means `["metric", "date"]`).
    pub fn layout(&self) -> Vec<String> {
        if let Some(p) = &self.partition_by {
            return p.clone();
        }
        let by_metric = self
            .tables
            .values()
            .flat_map(|t| &t.files)
            .any(|f| f.contains("/metric="));
        if by_metric {
            vec!["metric".into(), "date".into()]
        } else {
            vec!["date".into()]
        }
    }

    /// Every file the window claims, all tables.
    pub fn files(&self) -> impl Iterator<Item = &String> {
        self.tables.values().flat_map(|t| &t.files)
    }

    /// True when the window was fetched whole, for every table of `tables`, with this layout:
    /// a run that finds it so has nothing to redo there.
    pub fn serves(&self, tables: &[String], partition_by: &[String]) -> bool {
        self.complete
            && tables.iter().all(|t| self.tables.contains_key(t))
            && self.layout() == partition_by
    }
}

/// A table's share of a committed window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TableWindow {
    /// Rows written.
    pub rows: u64,
    /// Files written, relative to the sink.
    pub files: Vec<String>,
}

/// The state of a pipeline in its sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ledger {
    /// Format version.
    pub version: u32,
    /// Pipeline name.
    pub pipeline: String,
    /// Start of the first window this pipeline ever committed: where the watermark walk begins.
    #[serde(default)]
    pub origin_ms: Option<i64>,
    /// End of contiguous committed data: every window from `origin_ms` to here is committed and
    /// was complete. Incremental runs continue from it; it never moves backwards.
    pub watermark_ms: Option<i64>,
    /// The watermark in RFC 3339.
    pub watermark: Option<String>,
    /// Committed windows by `<start>-<end>` stamp.
    pub windows: BTreeMap<String, CommittedWindow>,
    /// The version of the ledger object this was read from, so that it is only ever written
    /// over that version ([`Ledger::save`]).
    #[serde(skip)]
    stored: Stored,
}

/// What [`Ledger::save`] checks before writing: the store's version of the ledger as read or
/// last written (its e-tag on S3, its bytes on local disk, which has no conditional update),
/// or that there was none.
#[derive(Debug, Clone, Default)]
struct Stored {
    /// The ledger object existed.
    existed: bool,
    e_tag: Option<String>,
    version: Option<String>,
    bytes: Vec<u8>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(pipeline: &str) -> Ledger {
        Ledger {
            version: LEDGER_VERSION,
            pipeline: pipeline.to_string(),
            origin_ms: None,
            watermark_ms: None,
            watermark: None,
            windows: BTreeMap::new(),
            stored: Stored::default(),
        }
    }

    /// The key of a window: `YYYYMMDDTHHMMSSZ-YYYYMMDDTHHMMSSZ`.
    pub fn window_key(start_ms: i64, end_ms: i64) -> String {
        format!(
            "{}-{}",
            format_window_stamp(start_ms),
            format_window_stamp(end_ms)
        )
    }

    /// The object key of a pipeline's ledger.
    pub fn path(pipeline: &str) -> String {
        format!("_state/{pipeline}.json")
    }

    /// Reads the ledger of `pipeline`, or an empty one.
    pub async fn load(sink: &Sink, pipeline: &str) -> Result<Ledger, LedgerError> {
        let path = Ledger::path(pipeline);
        match sink.get_versioned(&path).await? {
            None => Ok(Ledger::new(pipeline)),
            Some((bytes, version)) => {
                let mut ledger: Ledger =
                    serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if ledger.version != LEDGER_VERSION {
                    return Err(LedgerError::Corrupt {
                        path,
                        message: format!("version {} is not {LEDGER_VERSION}", ledger.version),
                    });
                }
                ledger.stored = Stored {
                    existed: true,
                    e_tag: version.e_tag,
                    version: version.version,
                    bytes: bytes.to_vec(),
                };
                Ok(ledger)
            }
        }
    }

    /// Writes the ledger in one PUT, only over the version it was read from (or last wrote):
    /// a ledger that changed or disappeared meanwhile (the bucket was recreated, the store lost
    /// objects, someone ran without the lease) is not overwritten with claims about files that
    /// may no longer exist. S3 checks the e-tag (`If-Match`, or `If-None-Match` for a new
    /// ledger); local disk compares the bytes under the sink's `_state` lock.
    pub async fn save(&mut self, sink: &Sink) -> Result<(), LedgerError> {
        let path = Ledger::path(&self.pipeline);
        let text = serde_json::to_vec_pretty(self).expect("ledger serializes");
        let expected = (self.stored.existed).then(|| object_store::UpdateVersion {
            e_tag: self.stored.e_tag.clone(),
            version: self.stored.version.clone(),
        });
        let previous = self.stored.existed.then_some(self.stored.bytes.as_slice());
        match sink
            .put_if_unchanged(&path, text.clone(), expected, previous)
            .await
        {
            Ok(version) => {
                self.stored = Stored {
                    existed: true,
                    e_tag: version.e_tag,
                    version: version.version,
                    bytes: text,
                };
                Ok(())
            }
            Err(StoreError::Changed { .. }) => Err(LedgerError::Changed { path }),
            Err(e) => Err(e.into()),
        }
    }

    /// Records a window and moves the watermark forward over the contiguous committed,
    /// complete windows that now follow it (never backwards). The first window ever committed
    /// sets the origin.
    pub fn commit(&mut self, window: CommittedWindow) {
        if self.origin_ms.is_none() {
            self.origin_ms = Some(window.start_ms);
        }
        self.windows
            .insert(Ledger::window_key(window.start_ms, window.end_ms), window);
        self.walk_watermark(self.watermark_ms);
    }

    /// Drops a window (its files were replaced by another cut, or are gone): the watermark
    /// moves back to the end of what is still contiguous from the origin, so that the next
    /// incremental run fetches the window again.
    pub fn remove(&mut self, key: &str) -> Option<CommittedWindow> {
        let removed = self.windows.remove(key)?;
        if self.watermark_ms.is_some_and(|w| removed.start_ms < w) {
            self.watermark_ms = None;
            self.watermark = None;
            self.walk_watermark(None);
        }
        Some(removed)
    }

    /// Moves the watermark from `from` (or the origin) over contiguous complete windows.
    fn walk_watermark(&mut self, from: Option<i64>) {
        let Some(origin) = self.origin_ms else { return };
        let complete_by_start: BTreeMap<i64, i64> = self
            .windows
            .values()
            .filter(|w| w.complete)
            .map(|w| (w.start_ms, w.end_ms))
            .collect();
        let mut t = from.unwrap_or(origin);
        while let Some(&end) = complete_by_start.get(&t) {
            t = end;
        }
        if self.watermark_ms.is_none_or(|w| w < t) && t != origin {
            self.watermark_ms = Some(t);
            self.watermark = Some(format_rfc3339(t));
        }
    }

    /// The committed window with these bounds.
    pub fn get(&self, start_ms: i64, end_ms: i64) -> Option<&CommittedWindow> {
        self.windows.get(&Ledger::window_key(start_ms, end_ms))
    }

    /// The committed windows that overlap `[start_ms, end_ms)`, with their keys.
    pub fn overlapping(
        &self,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = (&String, &CommittedWindow)> {
        self.windows
            .iter()
            .filter(move |(_, w)| w.start_ms < end_ms && start_ms < w.end_ms)
    }

    /// True when committed windows that each [`CommittedWindow::serves`] `tables` with this
    /// layout cover `[start_ms, end_ms)` without a gap: nothing there to fetch again.
    pub fn covers(
        &self,
        start_ms: i64,
        end_ms: i64,
        tables: &[String],
        partition_by: &[String],
    ) -> bool {
        let mut spans: Vec<(i64, i64)> = self
            .overlapping(start_ms, end_ms)
            .filter(|(_, w)| w.serves(tables, partition_by))
            .map(|(_, w)| (w.start_ms, w.end_ms))
            .collect();
        spans.sort_unstable();
        let mut t = start_ms;
        for (s, e) in spans {
            if s > t {
                return false;
            }
            t = t.max(e);
        }
        t >= end_ms
    }
}

impl PartialEq for Stored {
    /// Two ledgers are equal by what they say, wherever they were read from.
    fn eq(&self, _: &Stored) -> bool {
        true
    }
}

/// The ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger changed or disappeared since this run read it: it is not overwritten.
    #[error(
        "the ledger {path} changed or disappeared while this run held the lease (was the bucket \
         recreated, did the store lose objects, or did a run ignore the lease?): it was not \
         overwritten, and the window being committed is not claimed; run again, the next run \
         checks what is there and fetches what is missing"
    )]
    Changed {
        /// Its key.
        path: String,
    },
    /// The ledger exists but is not one we can read.
    #[error("ledger {path} is not readable ({message}); move it aside to start over")]
    Corrupt {
        /// Its key.
        path: String,
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: i64, end: i64, complete: bool) -> CommittedWindow {
        CommittedWindow {
            start: format_rfc3339(start),
            end: format_rfc3339(end),
            start_ms: start,
            end_ms: end,
            fetched_until_ms: end,
            complete,
            run_id: "r".into(),
            committed_at: "now".into(),
            tables: BTreeMap::new(),
            partition_by: None,
        }
    }

    #[test]
    fn watermark_moves_only_forward_over_complete_contiguous_windows() {
        // Windows are at least a minute long; keys have second resolution.
        const M: i64 = 60_000;
        let mut l = Ledger::new("p");
        l.commit(window(0, 10 * M, true));
        assert_eq!((l.origin_ms, l.watermark_ms), (Some(0), Some(10 * M)));
        l.commit(window(10 * M, 20 * M, false));
        assert_eq!(
            l.watermark_ms,
            Some(10 * M),
            "an open window does not move it"
        );
        l.commit(window(20 * M, 30 * M, true));
        assert_eq!(l.watermark_ms, Some(10 * M), "a gap stops it");
        l.commit(window(10 * M, 20 * M, true));
        assert_eq!(
            l.watermark_ms,
            Some(30 * M),
            "closing the gap moves it over both"
        );
        l.commit(window(-10 * M, 0, true));
        assert_eq!(
            l.watermark_ms,
            Some(30 * M),
            "a backfill before the origin never moves it back"
        );
        assert!(l.get(10 * M, 20 * M).unwrap().complete);
    }

    #[tokio::test]
    async fn ledger_round_trips_through_a_sink() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let mut l = Ledger::load(&sink, "p").await.unwrap();
        assert!(l.windows.is_empty());
        l.commit(window(0, 86_400_000, true));
        l.save(&sink).await.unwrap();
        assert_eq!(Ledger::load(&sink, "p").await.unwrap(), l);
        std::fs::write(dir.path().join("_state/p.json"), b"{").unwrap();
        assert!(matches!(
            Ledger::load(&sink, "p").await,
            Err(LedgerError::Corrupt { .. })
        ));
    }

    /// Item 5 of issue 16: a ledger that disappeared or changed under the run (the bucket was
    /// recreated, the store lost it) is never overwritten with claims about files that may be
    /// gone; one that did not change is written again and again.
    #[tokio::test]
    async fn the_ledger_is_only_written_over_the_version_it_was_read_from() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let mut l = Ledger::load(&sink, "p").await.unwrap();
        l.commit(window(0, 60_000, true));
        l.save(&sink).await.unwrap();
        l.commit(window(60_000, 120_000, true));
        l.save(&sink).await.unwrap();
        // Lost meanwhile.
        std::fs::remove_file(dir.path().join("_state/p.json")).unwrap();
        l.commit(window(120_000, 180_000, true));
        assert!(matches!(
            l.save(&sink).await,
            Err(LedgerError::Changed { .. })
        ));
        assert!(Ledger::load(&sink, "p").await.unwrap().windows.is_empty());
        // Changed meanwhile by someone else.
        let mut a = Ledger::load(&sink, "p").await.unwrap();
        let mut b = Ledger::load(&sink, "p").await.unwrap();
        a.commit(window(0, 60_000, true));
        a.save(&sink).await.unwrap();
        b.commit(window(60_000, 120_000, true));
        let err = b.save(&sink).await.unwrap_err();
        assert!(err.to_string().contains("changed or disappeared"), "{err}");
        assert_eq!(Ledger::load(&sink, "p").await.unwrap(), a);
    }

    /// What counts as done: complete windows, for every table asked, in the layout asked,
    /// covering the range whatever their sizes; dropping one moves the watermark back.
    #[test]
    fn coverage_counts_any_cut_and_a_removed_window_moves_the_watermark_back() {
        const H: i64 = 3_600_000;
        let tables = ["t".to_string()];
        let date = ["date".to_string()];
        let with_table = |start, end| {
            let mut w = window(start, end, true);
            w.tables.insert("t".into(), TableWindow::default());
            w
        };
        let mut l = Ledger::new("p");
        for k in 0..4 {
            l.commit(with_table(k * 6 * H, (k + 1) * 6 * H));
        }
        assert!(
            l.covers(0, 24 * H, &tables, &date),
            "four 6 h windows cover a day"
        );
        assert!(l.covers(7 * H, 8 * H, &tables, &date), "an hour inside one");
        assert!(!l.covers(0, 25 * H, &tables, &date));
        assert!(
            !l.covers(0, 6 * H, &["t".into(), "u".into()], &date),
            "a new table"
        );
        assert!(
            !l.covers(0, 6 * H, &tables, &["metric".into(), "date".into()]),
            "another partitioning"
        );
        assert_eq!(l.watermark_ms, Some(24 * H));
        l.remove(&Ledger::window_key(6 * H, 12 * H)).unwrap();
        assert_eq!(l.watermark_ms, Some(6 * H), "back to the hole");
        assert!(!l.covers(0, 24 * H, &tables, &date));
        l.commit(with_table(6 * H, 12 * H));
        assert_eq!(l.watermark_ms, Some(24 * H));
        assert_eq!(l.overlapping(5 * H, 7 * H).count(), 2);
    }
}
