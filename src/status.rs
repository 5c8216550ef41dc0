//! `vscope-etl status PIPELINE`: what a pipeline's sink holds for its range, read from the sink
//! alone (the ledger, the shard marks and the leases; no request to the metrics endpoint): per
//! window, committed whole, committed open (fetched up to a time before its end), staged by some
//! shards of a sharded run and waiting for the others, or missing; the watermark; and who holds
//! the pipeline's lease and each shard's, until when. So an operator of an Indexed Job sees
//! which shard left which window undone, and whether a dead pod's lease still blocks the next.

use serde::Serialize;

use crate::config::{Pipeline, export_time};
use crate::error::Result;
use crate::load::Sink;
use crate::load::lease::{Lease, LeaseRecord, shard_holders};
use crate::load::shards::ShardMark;
use crate::load::state::Ledger;
use crate::plan::plan_windows;
use crate::semantics::time::format_rfc3339;

/// What `status` shows.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The pipeline.
    pub pipeline: String,
    /// The range looked at (RFC 3339): the scope's, or `--start`/`--end`.
    pub range_start: String,
    /// Its end (exclusive).
    pub range_end: String,
    /// The ledger's watermark: every window before it is committed whole.
    pub watermark: Option<String>,
    /// The shard count the windows' marks are read for (`--shards`, else the largest count
    /// found in the marks, else 1).
    pub shards: u32,
    /// Windows committed whole.
    pub committed: usize,
    /// Windows committed while still open (fetched up to `fetched_until`): the next run
    /// fetches them again.
    pub open: usize,
    /// Windows not committed that some shards have staged: published when the others have.
    pub staged: usize,
    /// Windows not committed, nothing staged.
    pub missing: usize,
    /// Every window of the range that has begun, in time order.
    pub windows: Vec<WindowStatus>,
    /// The pipeline's lease, when a run holds it (or a dead one left it). A sharded run's
    /// shards hold it only for a moment per window.
    pub lease: Option<LeaseStatus>,
    /// The shards' own leases, as the sink holds them.
    pub shard_leases: Vec<ShardLease>,
}

/// One window of the range.
#[derive(Debug, Serialize)]
pub struct WindowStatus {
    /// Window start (RFC 3339).
    pub start: String,
    /// Window end, exclusive.
    pub end: String,
    /// `committed`, `open`, `staged` or `missing`.
    pub state: &'static str,
    /// For an open window: fetched up to here.
    pub fetched_until: Option<String>,
    /// The run that committed it.
    pub run_id: Option<String>,
    /// When.
    pub committed_at: Option<String>,
    /// Rows, all tables (0 when `within` a larger window, which holds them).
    pub rows: u64,
    /// Committed as part of a larger ledger window (`start..end`): a compacted day or month,
    /// or a window of an older `scope.window`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// Shards (of `shards`) whose part of the window is staged and waits for the others.
    pub staged_by: Vec<u32>,
    /// For a window not committed, with more than one shard: the shards that have not staged
    /// it yet (rerun those).
    pub waiting_for: Vec<u32>,
}

/// The lease as the sink holds it.
#[derive(Debug, Serialize)]
pub struct LeaseStatus {
    /// The holder.
    #[serde(flatten)]
    pub record: LeaseRecord,
    /// True when it has expired: the next run takes it over.
    pub expired: bool,
}

/// One shard's lease.
#[derive(Debug, Serialize)]
pub struct ShardLease {
    /// The shard, `I/N`.
    pub shard: String,
    /// Its lease.
    #[serde(flatten)]
    pub lease: LeaseStatus,
}

/// Reads the ledger, the shard marks and the leases of `pipeline` from its sink and lays its
/// range's windows out (`start`/`end` override the scope's; `shards`, when given, is the shard
/// count whose missing shards are listed).
pub async fn status(
    pipeline: &Pipeline,
    start: Option<&str>,
    end: Option<&str>,
    shards: Option<u32>,
    now_ms: i64,
) -> Result<StatusReport> {
    let mut scope = pipeline.scope.clone();
    if let Some(s) = start {
        export_time("--start", s, now_ms)?;
        scope.start = s.to_string();
    }
    if let Some(e) = end {
        export_time("--end", e, now_ms)?;
        scope.end = e.to_string();
    }
    let (range_start, range_end) = scope.resolve_range(now_ms)?;
    let sink = Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3)?;
    let ledger = Ledger::load(&sink, &pipeline.name).await?;
    let lease_status = |record: LeaseRecord| LeaseStatus {
        expired: record.expires_ms <= now_ms,
        record,
    };
    let lease = Lease::holder(&sink, &pipeline.name)
        .await?
        .map(lease_status);
    let shard_leases = shard_holders(&sink, &pipeline.name)
        .await?
        .into_iter()
        .map(|(shard, _, record)| ShardLease {
            shard,
            lease: lease_status(record),
        })
        .collect();
    let marks = ShardMark::all(&sink, &pipeline.name).await?;
    let shards = shards
        .or_else(|| marks.iter().map(|m| m.shards).max())
        .unwrap_or(1)
        .max(1);
    let windows: Vec<WindowStatus> = plan_windows(range_start, range_end, scope.window_ms, now_ms)
        .into_iter()
        .map(|w| {
            // Its own ledger window, or a larger one that holds it: a compacted day or month,
            // or a window of an older, larger `scope.window` (its rows are that window's).
            let own = ledger.get(w.start_ms, w.end_ms);
            let within = match own {
                Some(_) => None,
                None => ledger
                    .overlapping(w.start_ms, w.end_ms)
                    .map(|(_, c)| c)
                    .find(|c| c.complete && c.start_ms <= w.start_ms && c.end_ms >= w.end_ms),
            };
            let committed = own.or(within);
            let mut staged_by: Vec<u32> = marks
                .iter()
                .filter(|m| m.start_ms == w.start_ms && m.end_ms == w.end_ms)
                .filter(|m| m.shards == shards)
                .map(|m| m.shard)
                .collect();
            staged_by.sort_unstable();
            let waiting_for = if committed.is_none() && shards > 1 {
                (0..shards).filter(|i| !staged_by.contains(i)).collect()
            } else {
                Vec::new()
            };
            WindowStatus {
                start: format_rfc3339(w.start_ms),
                end: format_rfc3339(w.end_ms),
                state: match committed {
                    Some(c) if c.complete => "committed",
                    Some(_) => "open",
                    None if !staged_by.is_empty() => "staged",
                    None => "missing",
                },
                fetched_until: committed
                    .filter(|c| !c.complete)
                    .map(|c| format_rfc3339(c.fetched_until_ms)),
                run_id: committed.map(|c| c.run_id.clone()),
                committed_at: committed.map(|c| c.committed_at.clone()),
                rows: own.map_or(0, |c| c.tables.values().map(|t| t.rows).sum()),
                within: within.map(|c| format!("{}..{}", c.start, c.end)),
                staged_by,
                waiting_for,
            }
        })
        .collect();
    let count = |state: &str| windows.iter().filter(|w| w.state == state).count();
    Ok(StatusReport {
        pipeline: pipeline.name.clone(),
        range_start: format_rfc3339(range_start),
        range_end: format_rfc3339(range_end),
        watermark: ledger.watermark.clone(),
        shards,
        committed: count("committed"),
        open: count("open"),
        staged: count("staged"),
        missing: count("missing"),
        windows,
        lease,
        shard_leases,
    })
}

fn lease_line(l: &LeaseStatus) -> String {
    format!(
        "held by run {} on host {} (pid {}) since {}, {} {}",
        l.record.run_id,
        l.record.host,
        l.record.pid,
        l.record.acquired,
        if l.expired { "expired at" } else { "until" },
        l.record.expires,
    )
}

impl std::fmt::Display for StatusReport {
    /// The human form: a summary, the leases, per shard what it left, then one line per window
    /// not committed whole.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "pipeline {}: {} to {}, {} window(s): {} committed, {} open, {} staged, {} missing; watermark {}",
            self.pipeline,
            self.range_start,
            self.range_end,
            self.windows.len(),
            self.committed,
            self.open,
            self.staged,
            self.missing,
            self.watermark.as_deref().unwrap_or("none"),
        )?;
        match &self.lease {
            None => writeln!(f, "lease: free")?,
            Some(l) => writeln!(f, "lease: {}", lease_line(l))?,
        }
        for l in &self.shard_leases {
            writeln!(f, "shard {} lease: {}", l.shard, lease_line(&l.lease))?;
        }
        if self.shards > 1 {
            let pending: Vec<&WindowStatus> = self
                .windows
                .iter()
                .filter(|w| matches!(w.state, "staged" | "missing"))
                .collect();
            for shard in 0..self.shards {
                let staged = pending
                    .iter()
                    .filter(|w| w.staged_by.contains(&shard))
                    .count();
                writeln!(
                    f,
                    "shard {shard}/{}: {staged} window(s) staged and waiting, {} not staged",
                    self.shards,
                    pending.len() - staged,
                )?;
            }
        }
        for w in self.windows.iter().filter(|w| w.state != "committed") {
            write!(f, "{} {} .. {}", w.state, w.start, w.end)?;
            if let Some(until) = &w.fetched_until {
                write!(f, ", fetched until {until}")?;
            }
            if !w.waiting_for.is_empty() {
                write!(
                    f,
                    ", waiting for shard(s) {:?} of {}",
                    w.waiting_for, self.shards
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
