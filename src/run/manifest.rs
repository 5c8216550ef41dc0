//! The run manifest (`_runs/<run-id>.json`): what one run planned, fetched, wrote and failed,
//! throttling and memory included. Written at the end of every run, also when it stops early.

use serde::{Deserialize, Serialize};

use crate::extract::DecodeStats;
use crate::load::store::{Sink, StoreError};
use crate::load::writer::WrittenFile;

/// A work unit that failed, named so a person can rerun or investigate it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedUnit {
    /// Metric.
    pub metric: String,
    /// Datacenter filter, if any.
    pub datacenter: Option<String>,
    /// Window start (RFC 3339).
    pub window_start: String,
    /// Window end (RFC 3339).
    pub window_end: String,
    /// Why (server messages scrubbed of secrets).
    pub error: String,
}

/// What one run did; written to `_runs/<run-id>.json` at the end of every run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Run id (start time and a random suffix).
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// vscope-etl version.
    pub tool_version: String,
    /// Dialect used; `warp10` when the points were read through Warp 10's own API
    /// (`source.protocol = "warp10"`, no OpenTSDB dialect).
    pub dialect: String,
    /// Run start (RFC 3339).
    pub started: String,
    /// Run end (RFC 3339).
    pub finished: String,
    /// Wall time.
    pub seconds: f64,
    /// Requested range start (RFC 3339), after widening to whole windows.
    pub range_start: String,
    /// Requested range end (RFC 3339).
    pub range_end: String,
    /// Windows planned.
    pub windows_planned: usize,
    /// Windows committed.
    pub windows_committed: usize,
    /// Windows not started because the run deadline (`source.deadline`) passed; the next run
    /// picks them up from the ledger.
    #[serde(default)]
    pub windows_deferred: usize,
    /// Sharded runs (`--shard I/N`): windows this shard staged and marked, left for the last
    /// shard to publish (see `vscope-etl status`); each is in the dataset once every shard has
    /// staged it.
    #[serde(default)]
    pub windows_staged: usize,
    /// Sharded runs: which shard this run was (`I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Work units planned.
    pub units_planned: usize,
    /// Work units whose data was fully fetched and handed to the writers (every part of a
    /// split answer written): counted even when their window then failed to commit (see
    /// `windows_committed` and `failures`), never for a failed unit.
    pub units_done: usize,
    /// Series discovered.
    pub series_discovered: usize,
    /// Series received.
    pub series: u64,
    /// HTTP requests (retries included).
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Window splits after too-large answers.
    pub splits: u64,
    /// Answers that were 429 (the server throttled): waited out, never counted as failures.
    #[serde(default)]
    pub throttled: u64,
    /// Seconds requests spent waiting after a 429, summed over requests.
    #[serde(default)]
    pub throttle_wait_seconds: f64,
    /// The fewest requests in flight the client slowed down to while the server throttled
    /// (`source.concurrency` when it never did).
    #[serde(default)]
    pub min_in_flight: usize,
    /// Units that waited for memory (`source.memory_limit`) before their request was sent.
    #[serde(default)]
    pub memory_waits: u64,
    /// The most memory the answers held at once, in MiB (reserved against
    /// `source.memory_limit`; the files being written are not counted).
    #[serde(default)]
    pub memory_reserved_peak_mb: f64,
    /// Decoded bytes of the metrics answers (2xx) handed to the JSON decoder as they streamed in
    /// (an answer cut short counts what came of it).
    pub bytes_received: u64,
    /// Body bytes received from the metrics endpoint as they crossed the network (compressed
    /// when the server answered gzip), for every answer read, refused, cut or error page
    /// included (such as the 404 of `/api/version` when `source.dialect = "auto"` finds OVH's
    /// endpoint). Without gzip and without such failures, equal to `bytes_received`.
    #[serde(default)]
    pub bytes_on_wire: u64,
    /// What the decoder did with each point.
    pub points: DecodeStats,
    /// Files written.
    pub files: Vec<WrittenFile>,
    /// Units that failed.
    pub failures: Vec<FailedUnit>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// The live inventory snapshot (`[source.ovh]`): objects, files, and the series the
    /// inventory has but the metrics server does not, and the reverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<crate::ovh::InventoryReport>,
}

impl Manifest {
    /// Writes the manifest to `_runs/<run_id>.json`.
    pub async fn save(&self, sink: &Sink) -> Result<String, StoreError> {
        let path = format!("_runs/{}.json", self.run_id);
        sink.put(
            &path,
            serde_json::to_vec_pretty(self).expect("manifest serializes"),
        )
        .await?;
        Ok(path)
    }

    /// Total rows written.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Total bytes written.
    pub fn bytes_written(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}
