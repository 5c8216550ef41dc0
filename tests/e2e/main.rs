//! Black-box tests: the real `vscope-etl` binary against the simulator, reading back what it
//! wrote (Parquet through the parquet crate, and DuckDB through Python).

mod cli;
mod common;
mod data_fidelity;
mod delta;
mod deploy;
mod duckdb;
mod faults;
mod integrity;
mod integrity_s3;
mod inventory;
mod memory;
mod month_files;
mod pipeline;
mod real_endpoint;
mod replay_warp;
#[cfg(feature = "report")]
mod report;
mod s3;
mod s3_multipart;
mod scheduled;
mod server_downsample;
mod shards;
mod spark;
mod warp10;
mod write_side;
