//! The pure half of OVHcloud API v6 (`reference/api.md` §3), shared by the client (root crate,
//! `ovh`) and the simulator (`vscope-sim`), so the two cannot disagree:
//!
//! - [`model`]: the `dedicatedCloud` objects read, as serde types.
//! - [`sign`]: the `$1$` SHA-1 request signature and the region endpoints.

pub mod model;
pub mod sign;
