//! The inventory tables as the report needs them: the VMs of the `vms` table (OVHcloud API v6
//! `dedicatedCloud.Vm`: configured vCPUs and memory and the power state, from each datacenter's
//! latest snapshot; a VM missing from that snapshot no longer exists and is left out), and the
//! datastores' capacities of the `filers` table.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::ReportError;
use super::data::{Dataset, TableInfo, collect, floats, ints, strings};

/// One VM of the latest inventory snapshot of its datacenter.
#[derive(Debug, Clone, PartialEq)]
pub struct VmInventory {
    /// Display name (API `name`).
    pub name: Option<String>,
    /// API `powerState`: `poweredOn`, `poweredOff`, `suspended`, `deleted`.
    pub power_state: Option<String>,
    /// Configured vCPUs (API `cpuNum`).
    pub vcpu: Option<i64>,
    /// Configured memory, MB (API `memoryMax`).
    pub memory_mb: Option<f64>,
    /// When the snapshot was taken, ms UTC.
    pub snapshot_ms: i64,
}

/// The VMs of each datacenter's latest snapshot: `(datacenter, vm moRef) → VM`.
pub fn vms(
    ds: &Dataset,
    t: &TableInfo,
) -> Result<BTreeMap<(String, String), VmInventory>, ReportError> {
    let lf = ds.scan(&t.name)?.select([
        col("snapshot_ts").cast(DataType::Int64).alias("s"),
        col("datacenter"),
        col("vm"),
        col("name"),
        col("power_state"),
        col("cpu_num"),
        col("memory_max"),
    ]);
    let df = collect(lf, &t.name)?;
    let (s, dc, vm, name, power, vcpu, mem) = (
        ints(&df, "s")?,
        strings(&df, "datacenter")?,
        strings(&df, "vm")?,
        strings(&df, "name")?,
        strings(&df, "power_state")?,
        ints(&df, "cpu_num")?,
        floats(&df, "memory_max")?,
    );
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..df.height() {
        if let (Some(d), Some(s)) = (&dc[i], s[i]) {
            let e = latest.entry(d.clone()).or_insert(s);
            *e = (*e).max(s);
        }
    }
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(d), Some(v), Some(s)) = (&dc[i], &vm[i], s[i]) else {
            continue;
        };
        if latest.get(d) != Some(&s) {
            continue;
        }
        out.insert(
            (d.clone(), v.clone()),
            VmInventory {
                name: name[i].clone(),
                power_state: power[i].clone(),
                vcpu: vcpu[i],
                memory_mb: mem[i],
                snapshot_ms: s,
            },
        );
    }
    Ok(out)
}

/// The latest inventory capacity of each datastore, KB: `(datacenter, datastore) → KB`.
pub fn filer_capacities(
    ds: &Dataset,
    t: &TableInfo,
) -> Result<BTreeMap<(String, String), f64>, ReportError> {
    let lf = ds.scan(&t.name)?.select([
        col("snapshot_ts").cast(DataType::Int64).alias("s"),
        col("datacenter"),
        col("datastore"),
        col("size_value"),
        col("size_unit"),
    ]);
    let df = collect(lf, &t.name)?;
    let (s, dc, dsn, v, u) = (
        ints(&df, "s")?,
        strings(&df, "datacenter")?,
        strings(&df, "datastore")?,
        floats(&df, "size_value")?,
        strings(&df, "size_unit")?,
    );
    let mut latest: BTreeMap<(String, String), (i64, Option<f64>)> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(dc), Some(name)) = (dc[i].clone(), dsn[i].clone()) else {
            continue;
        };
        let kb = match (v[i], u[i].as_deref()) {
            (Some(v), Some(unit)) => super::unit_to_kb(unit).map(|f| v * f),
            _ => None,
        };
        let s = s[i].unwrap_or(i64::MIN);
        let e = latest.entry((dc, name)).or_insert((i64::MIN, None));
        if s >= e.0 {
            *e = (s, kb);
        }
    }
    Ok(latest
        .into_iter()
        .filter_map(|(k, (_, kb))| kb.map(|kb| (k, kb)))
        .collect())
}
