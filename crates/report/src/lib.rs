//! vscope-report: the capacity-planning report (`vscope-etl report`) over a dataset the
//! pipeline wrote.
//!
//! Reads the Hive-partitioned Parquet in streaming passes (the period prunes `date=`
//! partitions and row groups, only the needed columns are read, every per-series statistic is
//! kept as a small mergeable state, percentiles exactly by histogram refinement, so memory is
//! bounded by the number of series, not by the period), uses polars for the small reads
//! (inventory, a table's first and last partitions), builds the sections (summary, capacity,
//! hosts, VMs, datastores, rightsizing), and writes them as self-contained HTML with SVG
//! charts, Markdown, CSV and JSON.
//!
//! # Layout
//! - [`data`]: the dataset (which tables a sink holds, local or copied from an object store),
//!   lazy scans with the period pushed down, the per-series statistics the sections ask for.
//! - [`scan`]: one streaming pass over a table's Parquet files (arrow-rs), in parallel runs of
//!   files merged in time order.
//! - [`profile`]: what the passes compute: the per-series profile, the exact percentiles,
//!   hourly sums.
//! - [`layout`]: what a table's layout tells without a full scan (date partitions, time range,
//!   metrics).
//! - [`inventory`]: the inventory tables: the VMs of the latest `vms` snapshot (size, power
//!   state), the datastores' capacities of the `filers` one.
//! - [`sections`]: the report's sections built from those statistics.
//! - [`stats`]: percentile, trend and forecast in plain Rust (the reference the tests pin).
//! - [`model`]: the report as tables of cells, the one thing every format renders.
//! - [`render`]: HTML, Markdown, CSV and JSON.
//! - [`svg`]: the charts, as inline SVG.
//!
//! # Why a crate of its own
//! polars is the heaviest dependency of the workspace (minutes of a cold build): it is built
//! for this crate only, and only when vscope-etl's `report` feature (on by default) asks for
//! it. The report reads what the pipeline wrote and nothing else: it takes the day and the
//! inventory tables from `vscope-core`, and the object store of an S3 sink from its caller,
//! which opens it with the pipeline's own sink settings ([`Location::Store`]), so it needs
//! nothing of the ETL crate, which depends on it.

pub mod completeness;
pub mod data;
pub mod inventory;
pub mod layout;
pub mod model;
pub mod profile;
pub mod render;
pub mod scan;
pub mod sections;
pub mod stats;
pub mod svg;

use std::path::{Path, PathBuf};

pub use data::Location;
pub use render::Format;

/// How the percentiles are defined, printed in every report.
pub const PERCENTILE_DOC: &str = "p95 = 95th percentile with linear interpolation between the closest ranks ((n-1)*0.95, \
     'type 7': polars QuantileMethod::Linear, DuckDB quantile_cont, numpy default) over the raw points of the \
     period; on a rollup table, the same percentile over the buckets' p95 values (an approximation of the raw p95).";

/// A report that cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Nothing to report on at the given location.
    #[error("no dataset: {0}")]
    NoDataset(String),
    /// A polars query failed.
    #[error("query on {what}: {message}")]
    Query {
        /// The table or column involved.
        what: String,
        /// polars' message.
        message: String,
    },
    /// The S3 sink could not be listed or read.
    #[error("S3: {0}")]
    Store(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An option is invalid (e.g. an empty period).
    #[error("{0}")]
    Invalid(String),
}

/// KB per unit of a capacity (binary units, as vScope's KB and API v6's GB are).
pub fn unit_to_kb(unit: &str) -> Option<f64> {
    match unit.trim().to_ascii_uppercase().as_str() {
        "KB" | "KIB" => Some(1.0),
        "MB" | "MIB" => Some(1024.0),
        "GB" | "GIB" => Some(1024.0 * 1024.0),
        "TB" | "TIB" => Some(1024.0 * 1024.0 * 1024.0),
        "PB" | "PIB" => Some(1024.0 * 1024.0 * 1024.0 * 1024.0),
        _ => None,
    }
}

/// Parses a capacity such as `10TB`, `500 GB` or `1048576KB` into KB.
pub fn parse_capacity(s: &str) -> Result<f64, ReportError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| {
        ReportError::Invalid(format!("--capacity '{s}': expected e.g. 10TB or 500GB"))
    })?;
    let unit = if unit.trim().is_empty() { "KB" } else { unit };
    let f = unit_to_kb(unit).ok_or_else(|| {
        ReportError::Invalid(format!(
            "--capacity '{s}': unit must be KB, MB, GB, TB or PB"
        ))
    })?;
    if v <= 0.0 {
        return Err(ReportError::Invalid(format!(
            "--capacity '{s}' must be positive"
        )));
    }
    Ok(v * f)
}

/// What the report covers and the thresholds of its findings.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Period start, ms UTC (default: the first point of the data, floored to the hour).
    pub from_ms: Option<i64>,
    /// Period end, exclusive (default: after the last point, rounded up to the hour).
    pub to_ms: Option<i64>,
    /// Host/VM usage threshold, percent (hours above it, under-provisioning).
    pub threshold: f64,
    /// A VM is over-provisioned when its CPU p95 is below this (percent)...
    pub over_cpu: f64,
    /// ...and its RAM p95 below this (percent).
    pub over_ram: f64,
    /// A VM is under-provisioned when its CPU ready p95 is at least this (ms), or a usage p95
    /// reaches `threshold`.
    pub ready_ms: f64,
    /// Datastore capacity in KB overriding the inventory's (`--capacity`).
    pub capacity_kb: Option<f64>,
    /// Read raw tables even when rollups exist.
    pub raw_only: bool,
    /// Usable share of a datacenter's CPU, percent: time remaining and N+1 headroom are
    /// measured against it (vROps' "usable capacity" after buffer), and rightsizing aims a
    /// VM's CPU at it.
    pub usable_cpu: f64,
    /// Usable share of a datacenter's RAM, percent (as `usable_cpu`).
    pub usable_ram: f64,
    /// Usable share of a datastore, percent: its time remaining is to this fill level.
    pub usable_datastore: f64,
    /// Which statistic of a VM's usage rightsizing sizes for.
    pub rightsize_on: Basis,
    /// A VM is idle (reclaimable) when its CPU p95 is below this percent...
    pub idle_cpu: f64,
    /// ...and both its network rx and tx p95 below this (vScope units, KB/s in API v6).
    pub idle_net: f64,
}

/// The usage statistic rightsizing sizes a VM for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The 95th percentile: sized for normal busy hours, the usual choice (vROps' default
    /// "demand" is a percentile too).
    P95,
    /// The peak: sized so that even the busiest point fits, for VMs whose peaks matter.
    Peak,
}

impl Basis {
    /// Parses `p95` or `peak`.
    pub fn parse(s: &str) -> Result<Basis, ReportError> {
        match s {
            "p95" => Ok(Basis::P95),
            "peak" | "max" => Ok(Basis::Peak),
            other => Err(ReportError::Invalid(format!(
                "--rightsize-on '{other}': use p95 or peak"
            ))),
        }
    }

    /// The name in tables and parameters.
    pub fn name(self) -> &'static str {
        match self {
            Basis::P95 => "p95",
            Basis::Peak => "peak",
        }
    }
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            from_ms: None,
            to_ms: None,
            threshold: 80.0,
            over_cpu: 20.0,
            over_ram: 30.0,
            ready_ms: 1000.0,
            capacity_kb: None,
            raw_only: false,
            usable_cpu: 80.0,
            usable_ram: 80.0,
            usable_datastore: 90.0,
            rightsize_on: Basis::P95,
            idle_cpu: 5.0,
            idle_net: 1.0,
        }
    }
}

/// Opens the dataset at `location`, copying from an object store only the date partitions of
/// the period when one is given.
pub async fn open(location: Location, opts: &ReportOptions) -> Result<data::Dataset, ReportError> {
    let dates = match (opts.from_ms, opts.to_ms) {
        (Some(f), Some(t)) if t > f => Some(data::date_bounds(f, t)),
        _ => None,
    };
    data::Dataset::open(location, dates).await
}

/// Writes the report in `formats` into `out` (created); returns the files written.
pub fn write(
    report: &model::Report,
    out: &Path,
    formats: &[Format],
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(out).map_err(|e| ReportError::Io {
        path: out.display().to_string(),
        source: e,
    })?;
    let mut written = Vec::new();
    let mut put = |name: String, text: String| -> Result<(), ReportError> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| ReportError::Io {
            path: p.display().to_string(),
            source: e,
        })?;
        written.push(p);
        Ok(())
    };
    for f in formats {
        match f {
            Format::Html => put("report.html".into(), render::html(report))?,
            Format::Markdown => put("report.md".into(), render::markdown(report))?,
            Format::Json => put(
                "report.json".into(),
                serde_json::to_string_pretty(&render::json(report)).unwrap_or_default() + "\n",
            )?,
            Format::Csv => {
                for t in report.tables() {
                    put(format!("{}.csv", t.name), t.csv())?;
                }
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_parse_in_binary_units() {
        assert_eq!(parse_capacity("1GB").unwrap(), 1_048_576.0);
        assert_eq!(parse_capacity("2 TB").unwrap(), 2.0 * 1024.0 * 1_048_576.0);
        assert_eq!(parse_capacity("512").unwrap(), 512.0);
        assert!(parse_capacity("10XB").is_err());
        assert!(parse_capacity("GB").is_err());
        assert!(parse_capacity("0GB").is_err());
    }
}
