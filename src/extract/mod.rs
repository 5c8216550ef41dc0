//! Extract: talking to the OpenTSDB-compatible endpoint and decoding its answers.
//!
//! - [`client`]: requests, retries, splitting of too-large windows.
//! - [`decode`]: `dps` straight into columns (fast path: the hand-rolled `scan` module).
//! - [`retry`]: failure classes and backoff.
//! - [`ratelimit`]: request start spacing.
//! - [`server_rollup`]: rollup rows downsampled by the server (`source.query_downsample`).

pub mod client;
pub mod decode;
pub mod ratelimit;
pub mod retry;
mod scan;
pub mod server_rollup;

pub use client::{FetchError, MetricsClient, RawAnswer};
pub use decode::{DecodeStats, SeriesData};
