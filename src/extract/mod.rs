//! Extract: talking to the OpenTSDB-compatible endpoint and decoding its answers.
//!
//! - [`client`]: requests and retries; [`error`]: what they fail with; [`split`]: answers too
//!   large to take whole, fetched in pieces.
//! - [`body`]: answer bodies read under a cap on their decoded size, gzip or plain.
//! - [`decode`]: `dps` straight into columns (fast path: the hand-rolled `scan` module);
//!   [`stream`]: the same, series by series while the body streams in.
//! - [`retry`]: failure classes and backoff.
//! - [`series_group`]: tag-filter groups that cover every series, for answers too large by time.
//! - [`ratelimit`]: request start spacing.
//! - [`throttle`]: fewer requests in flight while the server throttles (AIMD).
//! - [`server_rollup`]: rollup rows downsampled by the server (`source.query_downsample`).
//! - [`warp10`]: the same points and discovery through Warp 10's own API
//!   (`source.protocol = "warp10"`), decoded by [`gts_text`].

pub mod body;
pub mod client;
pub mod decode;
#[cfg(test)]
mod decode_tests;
pub mod error;
pub mod gts_text;
pub mod ratelimit;
mod raw;
pub mod retry;
mod scan;
pub mod series_group;
pub mod server_rollup;
pub mod split;
pub mod stream;
pub mod throttle;
pub mod warp10;

pub use client::{MetricsClient, RawAnswer};
pub use decode::{DecodeStats, SeriesData, value_of};
pub use error::FetchError;
