//! vscope-core: what vscope-etl knows about vScope and OpenTSDB, without any I/O.
//!
//! # Layout
//! - [`catalogue`]: the vScope metrics (`schemas/metrics.json`), their component and labels.
//! - [`schema`]: the declared output tables (`schemas/*.json`) as Arrow schemas, and the check
//!   that a batch matches its table.
//! - [`dialect`]: which server flavour answers (reference OpenTSDB, or OVH's Erlenmeyer).
//! - [`semantics`]: OpenTSDB time formats, durations, downsample specs, aggregators, rollups.
//! - [`series`]: a decoded series, the type every stage after the decoder works on.
//! - [`ovh`]: the OVHcloud API v6 object model and request signature.
//! - [`secret`]: secrets that no log line or message can print.
//! - [`hash`]: the one stable hash (file names, the simulator's deterministic draws).
//!
//! # Why a crate of its own
//! The client (the root crate) and the simulator (`vscope-sim`) must agree on these rules to
//! the bit: the simulator answers queries with the same semantics the client computes rollups
//! with, and verifies the signatures the client makes. Here both depend on one copy, and
//! neither depends on the other. No I/O (no tokio, no HTTP, no object store): everything is a
//! pure function or a type, tested in isolation, quick to build.

pub mod catalogue;
pub mod dialect;
pub mod hash;
pub mod ovh;
pub mod path_value;
pub mod schema;
pub mod secret;
pub mod semantics;
pub mod series;
