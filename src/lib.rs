//! vscope-etl: exports OVHcloud vScope monitoring history (an OpenTSDB-compatible HTTP API) to
//! Hive-partitioned Parquet on local disk or any S3-compatible store.
//!
//! # Layout
//! - [`config`]: pipeline files, validated before any I/O.
//! - [`plan`]: windows on a fixed grid and the work units in each.
//! - [`extract`]: the HTTP client, retries, `dps` decoding.
//! - [`transform`]: series into Arrow batches, client-side rollups.
//! - [`load`]: Parquet through `object_store`, the ledger and run manifests.
//! - [`run`]: the run that ties the stages together: session, plan, window, commit.
//! - [`preflight`]: `vscope-etl check` and the token check every run does first.
//! - [`commands`]: `vscope-etl inventory` and `vscope-etl token` (API v6, no run).
//! - [`status`]: `vscope-etl status` (the ledger and the lease, read from the sink).
//! - [`ovh`]: OVHcloud API v6 (signed calls): the live inventory snapshots (`filers`, `hosts`,
//!   `vms`), inventory-based series discovery, and the metrics token.
//! - `report` (feature `report`): the capacity report of `vscope-report`, with an S3 sink
//!   opened like the pipeline's.
//! - [`error`], [`cli`], [`cpu`]: shared pieces.
//!
//! Modules import downwards only, in the order a run uses them: [`config`] → [`extract`] →
//! [`plan`], [`transform`] → [`load`] → [`ovh`] → [`run`] → [`preflight`], [`commands`],
//! [`status`]. The
//! stages report their own typed errors; [`error::Error`] gathers them for the edge (run,
//! preflight, commands, the binary), and no stage imports it.
//!
//! Re-exported from the other crates of the workspace, under the paths this crate has always
//! used: [`catalogue`], [`schema`], [`dialect`], [`semantics`], [`secret`] (`vscope-core`: the
//! vScope metrics, the declared output tables, OpenTSDB semantics; no I/O) and [`sim`]
//! (`vscope-sim`: the simulator of the vScope endpoints and of API v6, for tests and the demo
//! pipeline, and a replay mode for `benches/e2e.sh`).
//!
//! # Why this crate
//! It is the application: everything that does I/O for an export (HTTP, files, object stores)
//! and the binary. It depends on the core, the simulator and (feature `report`) the report;
//! none of them depends on it.

pub mod cli;
pub mod commands;
pub mod config;
pub mod cpu;
pub mod error;
pub mod extract;
pub mod load;
pub mod maintenance;
pub mod ovh;
pub mod plan;
pub mod preflight;
#[cfg(feature = "report")]
pub mod report;
pub mod run;
pub mod status;
pub mod transform;

// The pure core (crates/core), under the paths the modules here have always used.
pub use vscope_core::{catalogue, dialect, schema, secret, semantics};
// The simulator (crates/sim): `source.url = "sim"`, `vscope-etl sim`, the tests.
pub use vscope_sim as sim;

#[cfg(test)]
mod sim_client_tests;
