//! `vscope-etl status PIPELINE`: what a pipeline's sink holds for its range, read from the sink
//! alone (the ledger and the lease; no request to the metrics endpoint): per window, committed
//! whole, committed open (fetched up to a time before its end), or missing, and which shard of
//! `--shards N` it belongs to (window k goes to shard k mod N, as `--shard I/N` splits them);
//! the watermark; and who holds the lease, until when. So an operator of an Indexed Job sees
//! which shard left which window undone, and whether a dead pod's lease still blocks the next.

use serde::Serialize;

use crate::config::{Pipeline, export_time};
use crate::error::Result;
use crate::load::Sink;
use crate::load::lease::{Lease, LeaseRecord};
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
    /// Shards the windows are shown split into.
    pub shards: u32,
    /// Windows committed whole.
    pub committed: usize,
    /// Windows committed while still open (fetched up to `fetched_until`): the next run
    /// fetches them again.
    pub open: usize,
    /// Windows not committed.
    pub missing: usize,
    /// Every window of the range that has begun, in time order.
    pub windows: Vec<WindowStatus>,
    /// The lease, when a run holds it (or a dead one left it).
    pub lease: Option<LeaseStatus>,
}

/// One window of the range.
#[derive(Debug, Serialize)]
pub struct WindowStatus {
    /// Window start (RFC 3339).
    pub start: String,
    /// Window end, exclusive.
    pub end: String,
    /// The shard that handles it (k mod N).
    pub shard: u32,
    /// `committed`, `open` or `missing`.
    pub state: &'static str,
    /// For an open window: fetched up to here.
    pub fetched_until: Option<String>,
    /// The run that committed it.
    pub run_id: Option<String>,
    /// When.
    pub committed_at: Option<String>,
    /// Rows, all tables.
    pub rows: u64,
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

/// Reads the ledger and the lease of `pipeline` from its sink and lays its range's windows
/// out (`start`/`end` override the scope's, `shards` splits them as `--shard I/N` does).
pub async fn status(
    pipeline: &Pipeline,
    start: Option<&str>,
    end: Option<&str>,
    shards: u32,
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
    let lease = Lease::holder(&sink, &pipeline.name)
        .await?
        .map(|record| LeaseStatus {
            expired: record.expires_ms <= now_ms,
            record,
        });
    let shards = shards.max(1);
    let window_ms = scope.window_ms;
    let windows: Vec<WindowStatus> = plan_windows(range_start, range_end, window_ms, now_ms, None)
        .into_iter()
        .map(|w| {
            let shard = w
                .start_ms
                .div_euclid(window_ms)
                .rem_euclid(i64::from(shards)) as u32;
            let committed = ledger.get(w.start_ms, w.end_ms);
            WindowStatus {
                start: format_rfc3339(w.start_ms),
                end: format_rfc3339(w.end_ms),
                shard,
                state: match committed {
                    Some(c) if c.complete => "committed",
                    Some(_) => "open",
                    None => "missing",
                },
                fetched_until: committed
                    .filter(|c| !c.complete)
                    .map(|c| format_rfc3339(c.fetched_until_ms)),
                run_id: committed.map(|c| c.run_id.clone()),
                committed_at: committed.map(|c| c.committed_at.clone()),
                rows: committed.map_or(0, |c| c.tables.values().map(|t| t.rows).sum()),
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
        missing: count("missing"),
        windows,
        lease,
    })
}

impl std::fmt::Display for StatusReport {
    /// The human form: a summary, the lease, then one line per window not committed whole
    /// (and per shard, how many it left).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "pipeline {}: {} to {}, {} window(s): {} committed, {} open, {} missing; watermark {}",
            self.pipeline,
            self.range_start,
            self.range_end,
            self.windows.len(),
            self.committed,
            self.open,
            self.missing,
            self.watermark.as_deref().unwrap_or("none"),
        )?;
        match &self.lease {
            None => writeln!(f, "lease: free")?,
            Some(l) => writeln!(
                f,
                "lease: held by run {} on host {} (pid {}) since {}, {} {}",
                l.record.run_id,
                l.record.host,
                l.record.pid,
                l.record.acquired,
                if l.expired { "expired at" } else { "until" },
                l.record.expires,
            )?,
        }
        if self.shards > 1 {
            for shard in 0..self.shards {
                let of = |state: &str| {
                    self.windows
                        .iter()
                        .filter(|w| w.shard == shard && w.state == state)
                        .count()
                };
                writeln!(
                    f,
                    "shard {shard}/{}: {} committed, {} open, {} missing",
                    self.shards,
                    of("committed"),
                    of("open"),
                    of("missing")
                )?;
            }
        }
        for w in self.windows.iter().filter(|w| w.state != "committed") {
            write!(
                f,
                "{} {} .. {} (shard {})",
                w.state, w.start, w.end, w.shard
            )?;
            if let Some(until) = &w.fetched_until {
                write!(f, ", fetched until {until}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
