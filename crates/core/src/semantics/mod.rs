//! The exact OpenTSDB 2.4 query semantics (`reference/api.md` §1.4, §1.6, §1.7), plus the
//! OVH/Erlenmeyer variant of downsampling (§2.3), in one place. Both sides of the product use
//! it: the client computes rollups with it, and the simulator answers queries with it, so the
//! two cannot drift apart.
//!
//! - [`time`]: durations (`5m`), query times (`1h-ago`, `2012/12/20`, RFC 3339), UTC formatting.
//! - [`aggregator`]: the aggregation functions and group-by across series with interpolation.
//! - [`downsample`](mod@downsample): downsample specs (`1h-avg-nan`), bucket alignment and the downsamplers.
//! - [`rollup`]: client-side rollups of raw points into many aggregates in one pass.

pub mod aggregator;
pub mod downsample;
pub mod rollup;
pub mod time;

pub use aggregator::{Aggregator, aggregate_series};
pub use downsample::{DownsampleSpec, FillPolicy, downsample, downsample_erlenmeyer};
pub use rollup::{Rollup, RollupColumn, RollupError, RollupOutput};
pub use time::{
    DurationUnit, TimeError, format_rfc3339, format_window_stamp, parse_duration, parse_time,
};
