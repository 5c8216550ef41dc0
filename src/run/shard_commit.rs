//! Shard commit: a shard of a sharded run hands its staged window to the others, and the shard
//! that completes the set publishes the whole window ([`crate::load::shards`]).
//!
//! The step runs under the pipeline lease, taken for a moment (a shard holds its own lease,
//! `<pipeline>.s<I>of<N>`, for the whole run): it completes a publication a killed shard left,
//! reads the ledger and the window's marks, and either publishes every shard's files as one
//! journaled window, exactly as an unsharded run publishes its own, or records this shard's mark
//! and leaves the window to the last shard.

use std::time::Duration;

use super::RunCtx;
use super::commit::{CommitError, Committer, StagedWindow};
use crate::config::Pipeline;
use crate::error::Error;
use crate::load::Sink;
use crate::load::lease::{Lease, LeaseError, LeaseKeeper};
use crate::load::publish::Journal;
use crate::load::shards::{MARK_VERSION, MarkedFile, ShardMark};
use crate::load::state::Ledger;
use crate::load::writer::{StagedFile, WriteError, WrittenFile};
use crate::plan::{Shard, Window};
use crate::semantics::time::format_rfc3339;

/// What became of a shard's staged window.
pub(super) enum ShardCommit {
    /// This shard completed the set: the window is published and committed (all shards' files).
    Published(Vec<WrittenFile>),
    /// Marked: the window waits for these shards.
    Waiting(Vec<u32>),
}

/// Takes the pipeline lease for one step of a shard, kept by a heartbeat until released. A shard
/// waits for it while another holds it: another shard's step takes a moment, but a dead holder's
/// lease blocks until it expires (`sink.lease_ttl`), so the wait is the TTL and 30 s more; a
/// signal ends the wait.
async fn pipeline_lease(
    sink: &Sink,
    pipeline: &Pipeline,
    run_id: &str,
    cancel: &tokio::sync::watch::Receiver<bool>,
) -> Result<LeaseKeeper, LeaseError> {
    let ttl_ms = pipeline.sink.lease_ttl_ms;
    let wait = Duration::from_millis(ttl_ms.max(0) as u64) + Duration::from_secs(30);
    Lease::acquire_waiting(sink, &pipeline.name, run_id, ttl_ms, wait, cancel)
        .await
        .map(Lease::keep)
}

/// A digest of the units of every window as this process planned them (all shards' units):
/// shards publish together only what they planned alike.
fn units_digest(ctx: &RunCtx<'_>) -> String {
    let mut h = vscope_core::hash::StableHasher::new();
    for u in ctx.plan.units() {
        h = h
            .write(ctx.plan.metrics[u.metric].metric.as_bytes())
            .write(&[0])
            .write(u.datacenter.as_deref().unwrap_or("").as_bytes())
            .write(&[1]);
    }
    format!("{:016x}", h.finish())
}

impl Committer {
    /// A shard's start: takes the pipeline lease for a moment and completes the publication a
    /// killed shard left ([`Committer::recover_leased`]).
    pub(super) async fn recover_publication(
        &mut self,
        sink: &Sink,
        pipeline: &Pipeline,
        cancel: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let lease = pipeline_lease(sink, pipeline, &self.run_id, cancel).await?;
        let result = self.recover_leased(sink, &pipeline.name).await;
        lease.release_or_warn().await;
        result
    }

    /// Under the pipeline lease: reloads the ledger (other shards commit windows this process
    /// never saw) and carries out a publication journal a killed shard or run left. One that
    /// cannot be completed (its staged files are gone) clears its window and every shard's mark
    /// of it: recorded in `abandoned`, since every shard must fetch it again.
    async fn recover_leased(&mut self, sink: &Sink, pipeline: &str) -> Result<(), Error> {
        self.ledger = Ledger::load(sink, pipeline).await?;
        if let Some(journal) = Journal::load(sink, pipeline).await? {
            let completed = journal.recover(sink, &mut self.ledger, &self.crash).await?;
            let window = (journal.window.start_ms, journal.window.end_ms);
            tracing::warn!(
                window = %Ledger::window_key(window.0, window.1),
                completed,
                "finished the publication an interrupted run left"
            );
            if !completed {
                self.abandoned.push(window);
            }
        }
        Ok(())
    }

    /// Hands this shard's `staged` files of `window` over: under the pipeline lease, publishes
    /// the window if every other shard of the cut has marked it, else marks it for them.
    pub(super) async fn commit_shard(
        &mut self,
        ctx: &RunCtx<'_>,
        window: &Window,
        staged: StagedWindow,
        shard: Shard,
        cancel: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<ShardCommit, CommitError> {
        let sink = ctx.sink;
        let pipeline = &ctx.pipeline.name;
        let mine = ShardMark {
            version: MARK_VERSION,
            pipeline: pipeline.clone(),
            shard: shard.index,
            shards: shard.count,
            run_id: self.run_id.clone(),
            staged_at: format_rfc3339(chrono::Utc::now().timestamp_millis()),
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            fetched_until_ms: window.fetch_end_ms,
            complete: window.complete(),
            units_digest: units_digest(ctx),
            files: staged
                .files
                .iter()
                .map(|f| MarkedFile {
                    staging: f
                        .staging
                        .clone()
                        .expect("window files are always staged before publication"),
                    file: f.file.clone(),
                })
                .collect(),
            dirs: staged.dirs.clone(),
        };
        let lease = match pipeline_lease(sink, ctx.pipeline, &self.run_id, cancel).await {
            Ok(l) => l,
            Err(e) => {
                for f in staged.files {
                    f.discard(sink).await;
                }
                return Err(CommitError::Window(WriteError::NotStaged(format!(
                    "the pipeline lease for handing the window to the other shards was not \
                     obtained: {e}"
                ))));
            }
        };
        let result = self.commit_shard_leased(ctx, window, staged, mine).await;
        lease.release_or_warn().await;
        result
    }

    async fn commit_shard_leased(
        &mut self,
        ctx: &RunCtx<'_>,
        window: &Window,
        staged: StagedWindow,
        mine: ShardMark,
    ) -> Result<ShardCommit, CommitError> {
        let sink = ctx.sink;
        let pipeline = &ctx.pipeline.name;
        // What a killed shard (or run) left half published is completed first, against the
        // ledger as it is now (other shards commit windows this process never saw).
        self.recover_leased(sink, pipeline)
            .await
            .map_err(CommitError::Fatal)?;
        let marks = match ShardMark::of_window(sink, pipeline, window.start_ms, window.end_ms).await
        {
            Ok(m) => m,
            Err(e) => {
                for f in staged.files {
                    f.discard(sink).await;
                }
                return Err(CommitError::Window(WriteError::NotStaged(e.to_string())));
            }
        };
        let (mut peers, mut stale) = (Vec::new(), Vec::new());
        let mut replaced_own = Vec::new();
        for m in marks {
            if m.shards == mine.shards && m.shard == mine.shard {
                replaced_own.push(m); // this shard's earlier mark of the window
            } else if m.shards == mine.shards && m.units_digest == mine.units_digest {
                peers.push(m);
            } else {
                stale.push(m);
            }
        }
        let missing: Vec<u32> = (0..mine.shards)
            .filter(|i| *i != mine.shard && !peers.iter().any(|p| p.shard == *i))
            .collect();
        // The staged files of this shard's earlier mark are replaced by today's.
        let own_old: Vec<String> = replaced_own
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.staging.clone()))
            .collect();
        if !missing.is_empty() {
            if let Err(e) = mine.save(sink).await {
                for f in staged.files {
                    f.discard(sink).await;
                }
                return Err(CommitError::Window(WriteError::NotStaged(format!(
                    "the shard mark {} could not be written: {e}",
                    mine.path()
                ))));
            }
            for f in &own_old {
                if let Err(e) = sink.delete_if_exists(f).await {
                    tracing::warn!(path = %f, error = %e, "removing a replaced staged file failed");
                }
            }
            return Ok(ShardCommit::Waiting(missing));
        }
        // The last shard: publish every shard's files as one window.
        let fetch_end_ms = peers
            .iter()
            .map(|p| p.fetched_until_ms)
            .chain([window.fetch_end_ms])
            .min()
            .unwrap_or(window.fetch_end_ms);
        // An open window (any shard's part fetched short of its end) stays open.
        let whole = Window {
            fetch_end_ms,
            ..*window
        };
        let mut files = staged.files;
        let mut dirs = staged.dirs;
        for p in &peers {
            files.extend(p.files.iter().map(|f| StagedFile {
                staging: Some(f.staging.clone()),
                file: f.file.clone(),
            }));
            for (table, ds) in &p.dirs {
                let entry = dirs.entry(table.clone()).or_default();
                entry.extend(ds.iter().cloned());
                entry.sort();
                entry.dedup();
            }
        }
        let marks: Vec<String> = peers
            .iter()
            .chain(&stale)
            .chain(&replaced_own)
            .map(ShardMark::path)
            .chain([mine.path()])
            .collect();
        let stale_files: Vec<String> = stale
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.staging.clone()))
            .chain(own_old)
            .collect();
        let written = self
            .commit(
                ctx,
                &whole,
                StagedWindow {
                    files,
                    dirs,
                    marks,
                    stale: stale_files,
                },
            )
            .await?;
        Ok(ShardCommit::Published(written))
    }
}
