//! Load: Parquet files through `object_store` (local disk or S3), the ledger and run manifests.
//!
//! - [`store`]: a sink URL into an object store and a key prefix.
//! - [`partition`]: Hive-style partition paths and deterministic file names.
//! - [`writer`]: one Parquet file, written whole or not at all.
//! - [`runs`]: its series-constant string columns, encoded from runs of rows.
//! - [`lease`]: one run at a time per pipeline and sink.
//! - [`uploads`]: incomplete S3 multipart uploads left by killed runs, aborted at start.
//! - [`state`]: the ledger (`_state/<pipeline>.json`) and run manifests (`_runs/<id>.json`).
//! - [`publish`]: a window's files made visible, the old cut removed and the ledger written as
//!   one journaled step (`_state/<pipeline>.publish.json`).
//! - [`owner`]: which pipeline a table of the sink belongs to.
//! - [`delta`]: the Delta Lake log of each table (`sink.table_format = "delta"`).
//! - [`shards`]: what each shard of a sharded run staged for a window, until one publishes it.

pub mod delta;
pub mod lease;
pub mod owner;
pub mod partition;
pub mod publish;
pub mod runs;
pub mod shards;
pub mod state;
pub mod store;
pub mod store_error;
pub mod uploads;
pub mod writer;

pub use store::Sink;
