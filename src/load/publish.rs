//! Publishing a window: its staged files become visible, the files of the cut they replace are
//! removed, and the ledger records it, as one journaled step that a crash cannot leave half
//! done.
//!
//! Plain Parquet has no table log, so a reader globbing `table/**/*.parquet` sees files as they
//! appear. What can be guaranteed is that every run ends with exactly one cut of every window
//! visible, whatever happened in between:
//!
//! 1. every file of the window is written under the staging folder first (`_tmp/<pipeline>/`,
//!    on S3 too), so a failure before publication leaves nothing visible;
//! 2. the journal (`_state/<pipeline>.publish.json`) is written: the moves (staging key → final
//!    key), the files of other cuts to remove, the ledger windows they replace, and the ledger
//!    entry to record;
//! 3. the moves (a rename on local disk, a server-side copy then delete on S3), a check that
//!    every final file is there, the removals, the ledger (written only over the version the
//!    run read), then the journal is deleted.
//!
//! A run killed anywhere in 3 leaves the journal; the next run (holding the lease) carries it
//! out before anything else: every step is idempotent (a move whose staged copy is gone but
//! whose final file exists is done). Only if a staged file is gone and its final file too (the
//! store lost objects) can the publication not be completed: then every file of that window is
//! removed and its ledger windows dropped, so the window is fetched again (never half there).

use serde::{Deserialize, Serialize};

use super::state::{CommittedWindow, Ledger, LedgerError};
use super::store::{Sink, StoreError};

/// Journal format version.
pub const JOURNAL_VERSION: u32 = 1;

/// One staged file and where it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Move {
    /// The staging key (below the sink).
    pub from: String,
    /// The final key.
    pub to: String,
}

/// Everything one window's publication does, written before any of it is done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The pipeline.
    pub pipeline: String,
    /// The run that staged the files.
    pub run_id: String,
    /// Staged files to make visible.
    pub moves: Vec<Move>,
    /// Files of other cuts of this time range to remove (an earlier split, an older window size
    /// or partitioning, partitions without rows now).
    pub removals: Vec<String>,
    /// Ledger windows the publication replaces (their files are among `removals`).
    pub replaces: Vec<String>,
    /// The ledger entry recorded at the end.
    pub window: CommittedWindow,
    /// Shard marks of the window ([`crate::load::shards`]), deleted once the ledger is written
    /// (or when the publication is given up, so that every shard fetches the window again).
    /// Empty for an unsharded run's window that no shard marked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
    /// `sink.table_format = "delta"`: one commit per table, made after the files are in place
    /// and before the ledger ([`crate::load::delta`]); the replaced files of those tables are
    /// then kept (older versions read them) until `vacuum`, not deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delta: Vec<crate::load::delta::TableCommit>,
    /// Delta tables: files of the tables (not the staging or state folders) are never deleted
    /// by a publication, even one whose commit is deferred to a later window's: older versions
    /// list them; `vacuum` deletes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_table_files: bool,
}

/// A publication failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A store operation failed.
    #[error("publishing window {window}: {source}")]
    Store {
        /// The window key.
        window: String,
        /// What failed.
        source: StoreError,
    },
    /// A file was not where it was just moved to.
    #[error(
        "publishing window {window}: {path} is missing right after it was published (the store \
         lost it); the window is not committed and is fetched again by the next run"
    )]
    Missing {
        /// The window key.
        window: String,
        /// The missing file.
        path: String,
    },
    /// The ledger could not be written (or changed under the run).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A Delta commit could not be made (the files are in place; the next run completes the
    /// publication from the journal).
    #[error("publishing window {window}: {source}")]
    Delta {
        /// The window key.
        window: String,
        /// What failed.
        source: Box<crate::load::delta::DeltaError>,
    },
    /// The journal is not one this version can read.
    #[error(
        "the publication journal {path} is not readable ({message}); move it aside, then run again with --force over its window"
    )]
    Corrupt {
        /// Its key.
        path: String,
        /// Why.
        message: String,
    },
}

impl Journal {
    /// The journal key of a pipeline.
    pub fn path(pipeline: &str) -> String {
        format!("_state/{pipeline}.publish.json")
    }

    fn key(&self) -> String {
        Ledger::window_key(self.window.start_ms, self.window.end_ms)
    }

    fn store_err(&self) -> impl Fn(StoreError) -> PublishError + '_ {
        move |source| PublishError::Store {
            window: self.key(),
            source,
        }
    }

    /// The journal a killed run left, if any.
    pub async fn load(sink: &Sink, pipeline: &str) -> Result<Option<Journal>, PublishError> {
        let path = Journal::path(pipeline);
        let bytes = sink
            .get_opt(&path)
            .await
            .map_err(|source| PublishError::Store {
                window: String::new(),
                source,
            })?;
        let Some(bytes) = bytes else { return Ok(None) };
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| PublishError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if j.version != JOURNAL_VERSION {
            return Err(PublishError::Corrupt {
                path,
                message: format!("version {} is not {JOURNAL_VERSION}", j.version),
            });
        }
        Ok(Some(j))
    }

    /// Publishes: writes the journal, then carries it out ([`Journal::complete`]).
    pub async fn publish(
        &self,
        sink: &Sink,
        ledger: &mut Ledger,
        crash: &CrashPoint,
    ) -> Result<(), PublishError> {
        sink.put(
            &Journal::path(&self.pipeline),
            serde_json::to_vec_pretty(self).expect("journal serializes"),
        )
        .await
        .map_err(self.store_err())?;
        crash.step();
        self.complete(sink, ledger, crash).await
    }

    /// Carries out a written journal, idempotently: moves, a check that every final file is
    /// there, removals, the ledger, and the journal's deletion.
    pub async fn complete(
        &self,
        sink: &Sink,
        ledger: &mut Ledger,
        crash: &CrashPoint,
    ) -> Result<(), PublishError> {
        let err = self.store_err();
        for m in &self.moves {
            if let Err(e) = sink.publish(&m.from, &m.to).await {
                if sink.exists(&m.from).await.map_err(&err)? {
                    return Err(err(e));
                }
                // Moved before a crash: the staged copy is gone, the final file is there; or
                // both are gone (the store lost them).
                if !sink.exists(&m.to).await.map_err(&err)? {
                    return Err(PublishError::Missing {
                        window: self.key(),
                        path: m.to.clone(),
                    });
                }
            }
            crash.step();
        }
        for m in &self.moves {
            if !sink.exists(&m.to).await.map_err(&err)? {
                return Err(PublishError::Missing {
                    window: self.key(),
                    path: m.to.clone(),
                });
            }
        }
        for r in self.removals.iter().filter(|r| !self.kept_by_delta(r)) {
            sink.delete_if_exists(r).await.map_err(&err)?;
            crash.step();
        }
        for c in &self.delta {
            crate::load::delta::commit_table(sink, c)
                .await
                .map_err(|source| PublishError::Delta {
                    window: self.key(),
                    source: Box::new(source),
                })?;
            crash.step();
        }
        for k in &self.replaces {
            ledger.remove(k);
        }
        ledger.commit(self.window.clone());
        ledger.save(sink).await?;
        crash.step();
        for m in &self.marks {
            sink.delete_if_exists(m).await.map_err(&err)?;
        }
        sink.delete_if_exists(&Journal::path(&self.pipeline))
            .await
            .map_err(&err)?;
        Ok(())
    }

    /// True for a file of a Delta table ([`Journal::keep_table_files`]): older versions may list
    /// it, so it stays until `vacuum`. Table files are the ones outside the sink's `_` folders.
    fn kept_by_delta(&self, path: &str) -> bool {
        (self.keep_table_files && !path.starts_with('_'))
            || self
                .delta
                .iter()
                .any(|c| crate::load::delta::in_table(path, &c.table).is_some())
    }

    /// What the next run does with a journal a killed run left: completes it; if that cannot
    /// be done because staged files are gone, removes every file of the window (the new cut's,
    /// the old cut's, what the ledger claims) and drops its ledger windows, so that the window
    /// is fetched again whole. Returns whether it was completed.
    pub async fn recover(
        &self,
        sink: &Sink,
        ledger: &mut Ledger,
        crash: &CrashPoint,
    ) -> Result<bool, PublishError> {
        match self.complete(sink, ledger, crash).await {
            Ok(()) => return Ok(true),
            Err(PublishError::Missing { .. }) => {}
            Err(e) => return Err(e),
        }
        tracing::warn!(window = %self.key(),
            "staged files of an interrupted publication are gone: removing the window's files so it is fetched again");
        self.abandon(sink, ledger).await?;
        Ok(false)
    }

    /// Gives the publication up: removes every file of the window (the new cut's, staged or
    /// moved, the old cut's, what the ledger claims) and drops its ledger windows, then the
    /// journal. The window is then simply not there, and the next run fetches it whole. Used
    /// when staged files are lost, or when a move keeps failing (a file in the way of a
    /// folder): never two cuts, never half of one. Idempotent, so a crash in the middle is
    /// finished by the next run.
    pub async fn abandon(&self, sink: &Sink, ledger: &mut Ledger) -> Result<(), PublishError> {
        let err = self.store_err();
        let key = self.key();
        let claimed: Vec<String> = std::iter::once(&key)
            .chain(&self.replaces)
            .filter_map(|k| ledger.windows.get(k))
            .flat_map(|w| w.files().cloned().collect::<Vec<_>>())
            .collect();
        // A Delta table still lists the old cut (no commit was made: a publication is given up
        // only before its commits), so those files stay; the new ones were never committed.
        let all = self
            .moves
            .iter()
            .flat_map(|m| [&m.from, &m.to])
            .chain(self.removals.iter().filter(|r| !self.kept_by_delta(r)))
            .chain(claimed.iter().filter(|r| !self.kept_by_delta(r)))
            .chain(&self.marks);
        for f in all {
            sink.delete_if_exists(f).await.map_err(&err)?;
        }
        for k in std::iter::once(&key).chain(&self.replaces) {
            ledger.remove(k);
        }
        ledger.save(sink).await?;
        sink.delete_if_exists(&Journal::path(&self.pipeline))
            .await
            .map_err(&err)?;
        Ok(())
    }
}

/// A test hook: `VSCOPE_ETL_TEST_CRASH_AFTER=N` ends the process at once (no clean-up, as a
/// `kill -9` would) after the N-th publication step (journal written, each move, each removal,
/// ledger written), so the crash tests can stop a run at every point of a publication.
#[derive(Debug, Default)]
pub struct CrashPoint {
    after: Option<u64>,
    steps: std::sync::atomic::AtomicU64,
}

impl CrashPoint {
    /// Reads the environment variable.
    pub fn from_env() -> CrashPoint {
        CrashPoint {
            after: std::env::var("VSCOPE_ETL_TEST_CRASH_AFTER")
                .ok()
                .and_then(|v| v.parse().ok()),
            steps: Default::default(),
        }
    }

    fn step(&self) {
        let Some(after) = self.after else { return };
        let n = self.steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n >= after {
            eprintln!("VSCOPE_ETL_TEST_CRASH_AFTER={after}: stopping at publication step {n}");
            std::process::exit(137);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn window(start: i64, end: i64, files: &[&str]) -> CommittedWindow {
        let mut tables = BTreeMap::new();
        tables.insert(
            "t".to_string(),
            super::super::state::TableWindow {
                rows: 1,
                files: files.iter().map(|f| f.to_string()).collect(),
            },
        );
        CommittedWindow {
            start: String::new(),
            end: String::new(),
            start_ms: start,
            end_ms: end,
            fetched_until_ms: end,
            complete: true,
            run_id: "r".into(),
            committed_at: String::new(),
            tables,
            partition_by: Some(vec!["date".into()]),
        }
    }

    async fn put(sink: &Sink, path: &str) {
        sink.put(path, path.as_bytes().to_vec()).await.unwrap();
    }

    /// A journal completed after a crash at any step ends in the same state as an
    /// uninterrupted publication: new files visible, old cut gone, ledger updated, no journal.
    #[tokio::test]
    async fn a_journal_is_completed_from_any_point() {
        const D: i64 = 86_400_000;
        for crash_after in 0..=6 {
            let dir = tempfile::tempdir().unwrap();
            let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
            let mut ledger = Ledger::new("p");
            // The old cut: four 6 h windows.
            for k in 0..4 {
                let f = format!("t/date=1970-01-01/part-{k}.parquet");
                put(&sink, &f).await;
                ledger.commit(window(k * D / 4, (k + 1) * D / 4, &[&f]));
            }
            ledger.save(&sink).await.unwrap();
            for k in 0..2 {
                put(&sink, &format!("_tmp/p/new-{k}")).await;
            }
            let journal = Journal {
                version: JOURNAL_VERSION,
                pipeline: "p".into(),
                run_id: "r".into(),
                moves: (0..2)
                    .map(|k| Move {
                        from: format!("_tmp/p/new-{k}"),
                        to: format!("t/date=1970-01-01/day-s{k}.parquet"),
                    })
                    .collect(),
                removals: (0..4)
                    .map(|k| format!("t/date=1970-01-01/part-{k}.parquet"))
                    .collect(),
                replaces: (0..4)
                    .map(|k| Ledger::window_key(k * D / 4, (k + 1) * D / 4))
                    .collect(),
                window: window(
                    0,
                    D,
                    &[
                        "t/date=1970-01-01/day-s0.parquet",
                        "t/date=1970-01-01/day-s1.parquet",
                    ],
                ),
                // The two shards' marks that handed these files over.
                delta: Vec::new(),
                keep_table_files: false,
                marks: vec![
                    "_state/p.shards/w/0of2.json".into(),
                    "_state/p.shards/w/1of2.json".into(),
                ],
            };
            for m in &journal.marks {
                put(&sink, m).await;
            }
            // Stop after `crash_after` steps: write the journal and do that many steps.
            sink.put(&Journal::path("p"), serde_json::to_vec(&journal).unwrap())
                .await
                .unwrap();
            for m in journal.moves.iter().take(crash_after) {
                sink.publish(&m.from, &m.to).await.unwrap();
            }
            for r in journal.removals.iter().take(crash_after.saturating_sub(2)) {
                sink.delete_if_exists(r).await.unwrap();
            }
            // The next run.
            let mut ledger = Ledger::load(&sink, "p").await.unwrap();
            let found = Journal::load(&sink, "p").await.unwrap().unwrap();
            assert!(
                found
                    .recover(&sink, &mut ledger, &CrashPoint::default())
                    .await
                    .unwrap()
            );
            let mut files = sink.list_dir("t/date=1970-01-01").await.unwrap();
            files.sort();
            assert_eq!(
                files,
                ["day-s0.parquet", "day-s1.parquet"],
                "after {crash_after}"
            );
            assert!(sink.list_dir("_tmp/p").await.unwrap().is_empty());
            assert!(Journal::load(&sink, "p").await.unwrap().is_none());
            let l = Ledger::load(&sink, "p").await.unwrap();
            assert_eq!(l.windows.len(), 1, "after {crash_after}");
            assert!(l.get(0, D).is_some());
            assert!(
                sink.list_below("_state/p.shards").await.unwrap().is_empty(),
                "marks deleted"
            );
        }
    }

    /// A staged file lost with its final file: the window's files are all removed and its
    /// ledger windows dropped, so it is fetched again; nothing of it stays half there.
    #[tokio::test]
    async fn a_journal_whose_staged_files_are_lost_clears_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let mut ledger = Ledger::new("p");
        put(&sink, "t/old.parquet").await;
        ledger.commit(window(0, 1000, &["t/old.parquet"]));
        ledger.save(&sink).await.unwrap();
        put(&sink, "_tmp/p/a").await;
        let journal = Journal {
            version: JOURNAL_VERSION,
            pipeline: "p".into(),
            run_id: "r".into(),
            moves: vec![
                Move {
                    from: "_tmp/p/a".into(),
                    to: "t/a.parquet".into(),
                },
                Move {
                    from: "_tmp/p/b".into(),
                    to: "t/b.parquet".into(),
                },
            ],
            removals: vec!["t/old.parquet".into()],
            replaces: vec![],
            window: window(0, 1000, &["t/a.parquet", "t/b.parquet"]),
            marks: vec!["_state/p.shards/w/0of2.json".into()],
            delta: Vec::new(),
            keep_table_files: false,
        };
        put(&sink, &journal.marks[0]).await;
        sink.put(&Journal::path("p"), serde_json::to_vec(&journal).unwrap())
            .await
            .unwrap();
        let completed = journal
            .recover(&sink, &mut ledger, &CrashPoint::default())
            .await
            .unwrap();
        assert!(!completed);
        assert!(sink.list_dir("t").await.unwrap().is_empty());
        // The shards' marks go too: every shard fetches the window again.
        assert!(sink.list_below("_state/p.shards").await.unwrap().is_empty());
        assert!(Ledger::load(&sink, "p").await.unwrap().windows.is_empty());
        assert!(Journal::load(&sink, "p").await.unwrap().is_none());
    }
}
