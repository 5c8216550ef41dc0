//! vscope-etl: exports OVHcloud vScope monitoring history (an OpenTSDB-compatible HTTP API) to
//! Hive-partitioned Parquet on local disk or any S3-compatible store.
//!
//! # Layout
//! - [`catalogue`]: the vScope metrics and their labels (`schemas/metrics.json`).
//! - [`dialect`]: reference OpenTSDB vs OVH's Erlenmeyer endpoint.
//! - [`semantics`]: OpenTSDB time formats, durations, downsample specs, aggregators, rollups.
//! - [`sim`]: a faithful simulator of the vScope endpoints, for tests and the demo pipeline.

pub mod catalogue;
pub mod dialect;
pub mod semantics;
pub mod sim;
