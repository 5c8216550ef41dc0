//! The rightsizing section: the vCPU count and memory each running VM needs for its usage
//! (p95, or peak with `--rightsize-on peak`) to sit at the usable capacity, against its size
//! in the `vms` inventory, summed per datacenter; and the reclaimable VMs: idle ones (CPU and
//! network p95 below thresholds) and powered-off ones, with the resources they hold.

use std::collections::BTreeMap;

use super::super::data::{Component, Dataset, SeriesKey, Stats, TableInfo};
use super::super::inventory::{self, VmInventory};
use super::super::model::{Cell, Column, Section, Table};
use super::super::svg::BarChart;
use super::super::{Basis, ReportError, ReportOptions};
use super::*;

/// MB per GB (binary, as API v6's memory).
const MB_PER_GB: f64 = 1024.0;
/// VMs shown in the chart.
const CHART_VMS: usize = 20;

/// The vCPUs that put a VM whose `vcpu` run at `usage` % at `target` %: at least one.
pub(super) fn recommended_vcpu(vcpu: i64, usage: f64, target: f64) -> i64 {
    ((vcpu as f64 * usage / target - 1e-9).ceil() as i64).max(1)
}

/// The memory, whole GB, that puts `gb` used at `usage` % at `target` %: at least 1 GB.
pub(super) fn recommended_gb(gb: f64, usage: f64, target: f64) -> f64 {
    (gb * usage / target - 1e-9).ceil().max(1.0)
}

/// Per-datacenter sums.
#[derive(Default)]
struct Totals {
    sized: i64,
    vcpu: i64,
    vcpu_rec: i64,
    gb: f64,
    gb_rec: f64,
    reclaim_vms: i64,
    reclaim_vcpu: i64,
    reclaim_gb: f64,
}

/// The rightsizing and reclaimable section; `vm` is the VM table and its statistics (CPU, RAM,
/// network), as the VMs section read them.
pub(super) fn rightsizing(
    ds: &Dataset,
    vm: Option<(&TableInfo, &BTreeMap<SeriesKey, Stats>)>,
    opts: &ReportOptions,
    findings: &mut Vec<Finding>,
) -> Result<Section, ReportError> {
    let inv_table = ds.inventory(Component::Vm);
    let inv = match inv_table {
        Some(t) => inventory::vms(ds, t)?,
        None => BTreeMap::new(),
    };
    let basis = opts.rightsize_on;
    let pick = |s: &Stats| match basis {
        Basis::P95 => s.p95,
        Basis::Peak => s.peak,
    };
    let b = basis.name();
    let mut sizing = Table {
        name: "rightsizing".into(),
        title: format!("Rightsizing: recommended vCPUs and memory per running VM (on its {b})"),
        note: format!(
            "recommended vCPU = max(1, ceil(vCPU × CPU {b} / {cpu})); recommended memory = max(1, ceil(memory GB × RAM {b} / {ram})) GB: the size at which the VM's {b} would sit at the usable capacity (CPU {cpu} %, RAM {ram} %). Configured sizes: the latest vms inventory snapshot of each datacenter (API v6 cpuNum, memoryMax); powered-on VMs with both metrics only.",
            cpu = opts.usable_cpu,
            ram = opts.usable_ram
        ),
        source: inv_table.map(|t| t.name.clone()),
        columns: vec![
            Column::new("datacenter", None),
            Column::new("vm", None),
            Column::new("name", None),
            Column::new("vcpu", None),
            Column::new(&format!("cpu_{b}"), Some("%")),
            Column::new("vcpu_recommended", None),
            Column::new("vcpu_delta", None),
            Column::new("memory", Some("GB")),
            Column::new(&format!("ram_{b}"), Some("%")),
            Column::new("memory_recommended", Some("GB")),
            Column::new("memory_delta", Some("GB")),
        ],
        rows: Vec::new(),
    };
    let has_net = vm.is_some_and(|(_, st)| st.keys().any(|k| k.0 == VM_NET_RX || k.0 == VM_NET_TX));
    let mut reclaim = Table {
        name: "reclaimable".into(),
        title: "Reclaimable VMs: idle or powered off".into(),
        note: format!(
            "idle = CPU p95 < {} %{}; powered off = powerState poweredOff in the latest vms inventory snapshot. vcpu and memory: configured (inventory).",
            opts.idle_cpu,
            if has_net {
                format!(
                    " and network rx p95 and tx p95 < {} (vScope units)",
                    opts.idle_net
                )
            } else {
                " (the VM table has no network metric: CPU only)".into()
            }
        ),
        source: vm.map(|(t, _)| t.name.clone()),
        columns: vec![
            Column::new("datacenter", None),
            Column::new("vm", None),
            Column::new("name", None),
            Column::new("power_state", None),
            Column::new("reason", None),
            Column::new("vcpu", None),
            Column::new("memory", Some("GB")),
            Column::new("cpu_p95", Some("%")),
            Column::new("net_rx_p95", None),
            Column::new("net_tx_p95", None),
        ],
        rows: Vec::new(),
    };
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let empty = BTreeMap::new();
    let st = vm.map_or(&empty, |(_, st)| st);
    let get = |m: &str, dc: &str, v: &str| {
        st.get(&(
            m.to_string(),
            vec![Some(dc.to_string()), Some(v.to_string())],
        ))
        .copied()
    };
    // Every VM: those with metrics and those only in the inventory (powered off).
    let mut keys: Vec<(String, String)> = st
        .keys()
        .filter_map(|k| Some((label(k, 0)?.to_string(), label(k, 1)?.to_string())))
        .collect();
    keys.extend(inv.keys().cloned());
    keys.sort();
    keys.dedup();
    let mut chart: Vec<(i64, String, i64, i64)> = Vec::new();
    for (dc, v) in &keys {
        let i: Option<&VmInventory> = inv.get(&(dc.clone(), v.clone()));
        let (cpu, ram) = (get(VM_CPU, dc, v), get(VM_RAM, dc, v));
        let (rx, tx) = (get(VM_NET_RX, dc, v), get(VM_NET_TX, dc, v));
        let vcpu = i.and_then(|i| i.vcpu);
        let gb = i.and_then(|i| i.memory_mb).map(|m| m / MB_PER_GB);
        let power = i.and_then(|i| i.power_state.clone());
        let name = i.and_then(|i| i.name.clone());
        let tot = totals.entry(dc.clone()).or_default();
        let running = power.as_deref() == Some("poweredOn");
        if let (true, Some(n), Some(g), Some(cu), Some(ru)) = (
            running,
            vcpu,
            gb,
            cpu.as_ref().and_then(pick),
            ram.as_ref().and_then(pick),
        ) {
            let rc = recommended_vcpu(n, cu, opts.usable_cpu);
            let rg = recommended_gb(g, ru, opts.usable_ram);
            tot.sized += 1;
            tot.vcpu += n;
            tot.vcpu_rec += rc;
            tot.gb += g;
            tot.gb_rec += rg;
            chart.push(((rc - n).abs(), format!("{dc}/{v}"), n, rc));
            sizing.rows.push(vec![
                Cell::Text(dc.clone()),
                Cell::Text(v.clone()),
                Cell::text(name.as_deref()),
                Cell::Int(n),
                Cell::Num(cu),
                Cell::Int(rc),
                Cell::Int(rc - n),
                Cell::Num(g),
                Cell::Num(ru),
                Cell::Num(rg),
                Cell::Num(rg - g),
            ]);
        }
        let cpu_p95 = cpu.and_then(|s| s.p95);
        let quiet = |s: Option<Stats>| s.and_then(|s| s.p95).is_some_and(|p| p < opts.idle_net);
        let idle = !matches!(power.as_deref(), Some("poweredOff"))
            && cpu_p95.is_some_and(|c| c < opts.idle_cpu)
            && (!has_net || (quiet(rx) && quiet(tx)));
        let reason = if power.as_deref() == Some("poweredOff") {
            Some("powered off".to_string())
        } else if idle {
            Some(format!(
                "idle: CPU p95 {:.2} % < {} %",
                cpu_p95.unwrap_or_default(),
                opts.idle_cpu
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            tot.reclaim_vms += 1;
            tot.reclaim_vcpu += vcpu.unwrap_or(0);
            tot.reclaim_gb += gb.unwrap_or(0.0);
            reclaim.rows.push(vec![
                Cell::Text(dc.clone()),
                Cell::Text(v.clone()),
                Cell::text(name.as_deref()),
                Cell::text(power.as_deref()),
                Cell::Text(reason),
                vcpu.map_or(Cell::Null, Cell::Int),
                Cell::num(gb),
                Cell::num(cpu_p95),
                Cell::num(rx.and_then(|s| s.p95)),
                Cell::num(tx.and_then(|s| s.p95)),
            ]);
        }
    }
    let mut summary = Table {
        name: "rightsizing_summary".into(),
        title: "Rightsizing and reclaimable resources per datacenter".into(),
        note: "Sums of the rightsizing and reclaimable tables: delta = recommended - configured (negative = can be reclaimed by resizing); reclaimable = resources held by idle and powered-off VMs.".into(),
        source: inv_table.map(|t| t.name.clone()),
        columns: vec![
            Column::new("datacenter", None),
            Column::new("vms_sized", None),
            Column::new("vcpu", None),
            Column::new("vcpu_recommended", None),
            Column::new("vcpu_delta", None),
            Column::new("memory", Some("GB")),
            Column::new("memory_recommended", Some("GB")),
            Column::new("memory_delta", Some("GB")),
            Column::new("reclaimable_vms", None),
            Column::new("reclaimable_vcpu", None),
            Column::new("reclaimable_memory", Some("GB")),
        ],
        rows: Vec::new(),
    };
    for (dc, t) in &totals {
        if t.vcpu_rec < t.vcpu {
            findings.push((
                3,
                "rightsizing",
                dc.clone(),
                format!(
                    "{} vCPUs and {:.0} GB could be reclaimed by rightsizing on the {b}",
                    t.vcpu - t.vcpu_rec,
                    (t.gb - t.gb_rec).max(0.0)
                ),
            ));
        }
        if t.reclaim_vms > 0 {
            findings.push((
                2,
                "reclaimable",
                dc.clone(),
                format!(
                    "{} idle or powered-off VMs hold {} vCPUs and {:.0} GB",
                    t.reclaim_vms, t.reclaim_vcpu, t.reclaim_gb
                ),
            ));
        }
        summary.rows.push(vec![
            Cell::Text(dc.clone()),
            Cell::Int(t.sized),
            Cell::Int(t.vcpu),
            Cell::Int(t.vcpu_rec),
            Cell::Int(t.vcpu_rec - t.vcpu),
            Cell::Num(t.gb),
            Cell::Num(t.gb_rec),
            Cell::Num(t.gb_rec - t.gb),
            Cell::Int(t.reclaim_vms),
            Cell::Int(t.reclaim_vcpu),
            Cell::Num(t.reclaim_gb),
        ]);
    }
    let mut text = Vec::new();
    if inv_table.is_none() {
        text.push("Recommendations need a vms inventory snapshot (vCPU, memory, power state from API v6: `vscope-etl inventory PIPELINE` into the same sink); this dataset has none, so only idle VMs are listed, without their configured resources.".to_string());
    }
    if vm.is_none() {
        text.push("No VM metric table: no usage to size on.".into());
    }
    text.push(format!(
        "{} VMs sized on their {b}, {} reclaimable.",
        sizing.rows.len(),
        reclaim.rows.len()
    ));
    chart.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    chart.truncate(CHART_VMS);
    let mut charts = Vec::new();
    if !chart.is_empty() {
        charts.push(
            BarChart {
                title: "vCPU: configured vs recommended, largest changes",
                value_label: "vCPUs",
                categories: chart.iter().map(|c| c.1.clone()).collect(),
                series: vec![
                    (
                        "configured".into(),
                        chart.iter().map(|c| Some(c.2 as f64)).collect(),
                    ),
                    (
                        "recommended".into(),
                        chart.iter().map(|c| Some(c.3 as f64)).collect(),
                    ),
                ],
                marker: None,
            }
            .render(),
        );
    }
    Ok(Section {
        id: "rightsizing".into(),
        title: "Rightsizing and reclaimable VMs".into(),
        text,
        charts,
        tables: vec![summary, sizing, reclaim],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_put_the_usage_at_the_target() {
        // 8 vCPUs at 20 % = 1.6 vCPU busy: 2 vCPUs run it at 80 %.
        assert_eq!(recommended_vcpu(8, 20.0, 80.0), 2);
        // Exactly at the target: unchanged (no rounding up from float noise).
        assert_eq!(recommended_vcpu(4, 80.0, 80.0), 4);
        // Busier than the target: more vCPUs.
        assert_eq!(recommended_vcpu(2, 100.0, 80.0), 3);
        assert_eq!(recommended_vcpu(4, 0.0, 80.0), 1);
        assert_eq!(recommended_gb(16.0, 30.0, 80.0), 6.0);
        assert_eq!(recommended_gb(2.0, 1.0, 80.0), 1.0);
    }
}
