//! vscope-etl: exports OVHcloud vScope monitoring history (an OpenTSDB-compatible HTTP API) to
//! Hive-partitioned Parquet on local disk or any S3-compatible store.
//!
//! # Layout
//! - [`config`]: pipeline files, validated before any I/O.
//! - [`catalogue`] and [`schema`]: the vScope metrics and the declared output tables.
//! - [`plan`]: windows on a fixed grid and the work units in each.
//! - [`extract`]: the HTTP client, retries, `dps` decoding.
//! - [`transform`]: series into Arrow batches, client-side rollups.
//! - [`load`]: Parquet through `object_store`, the ledger and run manifests.
//! - [`run`]: the run that ties the stages together: session, plan, window, commit.
//! - [`preflight`]: `vscope-etl check` and the token check every run does first.
//! - [`ovh`]: OVHcloud API v6 (signed calls): the live inventory snapshots (`filers`, `hosts`,
//!   `vms`), inventory-based series discovery, and the metrics token.
//! - [`semantics`]: OpenTSDB time formats, durations, downsample specs, aggregators, rollups.
//! - [`sim`]: a faithful simulator of the vScope endpoints, for tests and the demo pipeline, and
//!   a replay mode serving pre-rendered answers (`sim --replay`, for `benches/e2e.sh`).
//! - `report` (feature `report`): the capacity-planning report over a dataset (polars).
//! - [`dialect`], [`secret`], [`error`], [`cli`], [`cpu`]: shared pieces.

pub mod catalogue;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod dialect;
pub mod error;
pub mod extract;
pub mod load;
pub mod ovh;
pub mod plan;
pub mod preflight;
#[cfg(feature = "report")]
pub mod report;
pub mod run;
pub mod schema;
pub mod secret;
pub mod semantics;
pub mod sim;
pub mod transform;
