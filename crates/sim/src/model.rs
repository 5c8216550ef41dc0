//! The synthetic private cloud (PCC) behind the simulator: which series exist and what their
//! stored points are.
//!
//! Nothing is stored. Every point is a pure function of `(seed, series identity, step index)`
//! computed with a splitmix64 hash, so any time range, past or future, costs only the points it
//! returns, two overlapping ranges always agree on the points they share, and two simulators
//! built from the same [`SimConfig`] serve byte-identical data.
//!
//! # Data model
//! - One series per (catalogue metric, datacenter, object[, nic]) with the labels the catalogue
//!   lists, plus `env=prod`, `servicename` and `servicetype=vscope` as on the real endpoint.
//! - Series `i` has a phase offset `o_i` (whole seconds in `0..step`): its points sit at
//!   `k * step + o_i` seconds for every integer `k`, so series are not all aligned on the same
//!   instants, as on a real collector.
//! - About 0.5 % of the points are missing (a hash decides), so clients see gaps.
//! - Values depend on the metric: percentages in `[0, 100]` with a daily sine and noise;
//!   `cpu.ready` in ms; rates, IO and latencies `>= 0`; packet counts are integers; a filer's
//!   `diskspace.used` (KB, an integer) grows linearly with a known slope
//!   ([`Pcc::growth_kb_per_sec`]) plus small noise, and `diskspace.used.perc` is that value over
//!   the filer's capacity.
//!
//! # Objects
//! [`PccObjects`] lists the same PCC as API v6 shows it: datacenter `N` has id `N` and the name
//! of its `datacenter` label, a host's name is its `host` label, a VM's moRef its `vm` label,
//! a filer's name its `datastore` label; VM `k` of a datacenter runs on host `k mod hosts` and
//! sits on filer `k mod filers`. `SimConfig::inventory_drift` makes the two disagree on purpose.

use std::collections::BTreeMap;
use std::ops::Range;

use vscope_core::catalogue::{Catalogue, Component};
use vscope_core::hash::stable_hash;

use super::SimConfig;

/// Share of points that are missing, in per mille (5 = 0.5 %).
const GAP_PER_MILLE: u64 = 5;

/// Seconds in a day, the period of the daily sine.
const DAY_SECS: i64 = 86_400;

/// Reference instant (2020-01-01T00:00:00Z, in seconds) of the filers' linear growth: the
/// `base` of a filer is its used space at this instant.
const GROWTH_EPOCH_SECS: i64 = 1_577_836_800;

/// Salts that keep the different random draws of one series or point independent.
const SALT_PARAMS: u64 = 0x5041_5241_4d53; // "PARAMS"
const SALT_GAP: u64 = 0x0047_4150; // "GAP"
const SALT_NOISE: u64 = 0x004e_4f49_5345; // "NOISE"

/// One series the simulator serves: a metric name and its full label set, as the real endpoint
/// returns them in `tags`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimSeries {
    /// Metric name, e.g. `vscope.vm.cpu.usage.perc`.
    pub metric: String,
    /// Every label of the series: the catalogue labels (`datacenter`, `host`, `vm`, `datastore`,
    /// `nicname`) plus `env`, `servicename` and `servicetype`.
    pub tags: BTreeMap<String, String>,
}

/// How a metric's values behave; decided from the metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A usage percentage in `[0, 100]`.
    Percent,
    /// `vscope.filer.datastore.diskspace.used`: KB, integer, linear growth.
    FilerUsed,
    /// `vscope.filer.datastore.diskspace.used.perc`: used over capacity, in percent.
    FilerPercent,
    /// `cpu.ready`, ms.
    CpuReady,
    /// `mem.tps`, KB of shared pages.
    MemTps,
    /// `net.rx` / `net.tx`, a throughput.
    NetRate,
    /// `net.packetsrx` / `net.packetstx`, an integer count.
    Packets,
    /// `disk.io.*`, IO per second.
    DiskIo,
    /// `disk.bandwidth.*`, a throughput.
    DiskBandwidth,
    /// `disk.latency.*`, ms.
    DiskLatency,
    /// A metric this model does not know (a catalogue added later): a positive float.
    Other,
}

impl Kind {
    fn of(metric: &str) -> Kind {
        if metric.ends_with("diskspace.used") {
            Kind::FilerUsed
        } else if metric.ends_with("diskspace.used.perc") {
            Kind::FilerPercent
        } else if metric.ends_with(".perc") {
            Kind::Percent
        } else if metric.ends_with(".cpu.ready") {
            Kind::CpuReady
        } else if metric.ends_with(".mem.tps") {
            Kind::MemTps
        } else if metric.ends_with(".net.rx") || metric.ends_with(".net.tx") {
            Kind::NetRate
        } else if metric.contains(".net.packets") {
            Kind::Packets
        } else if metric.contains(".disk.io.") {
            Kind::DiskIo
        } else if metric.contains(".disk.bandwidth.") {
            Kind::DiskBandwidth
        } else if metric.contains(".disk.latency.") {
            Kind::DiskLatency
        } else {
            Kind::Other
        }
    }

    /// Whether stored values are integers (the `opentsdb` dialect prints them without `.0`).
    fn is_integer(self) -> bool {
        matches!(self, Kind::FilerUsed | Kind::Packets)
    }
}

/// The per-series constants drawn once from the seed.
#[derive(Debug, Clone)]
struct Params {
    kind: Kind,
    /// Identity hash of the series (seed, metric and labels), the root of every point draw.
    key: u64,
    /// Phase offset inside the step, whole seconds in `0..step`.
    offset_secs: i64,
    /// Mean level of the value.
    level: f64,
    /// Amplitude of the daily sine.
    amplitude: f64,
    /// Half-width of the uniform noise.
    noise: f64,
    /// Shift of the daily peak, in fractions of a day.
    phase: f64,
    /// Filers only: growth in KB per second (0 otherwise).
    slope_kb_per_sec: f64,
    /// Filers only: capacity in KB (0 otherwise).
    capacity_kb: f64,
}

/// A deterministic synthetic PCC: the series list and a point generator.
///
/// Built once from a [`SimConfig`]; cheap to query for any time range.
#[derive(Debug, Clone)]
pub struct Pcc {
    step_secs: i64,
    series: Vec<SimSeries>,
    params: Vec<Params>,
    /// Series of one metric are contiguous; this maps a metric to its index range.
    by_metric: BTreeMap<String, Range<usize>>,
}

impl Pcc {
    /// Builds the PCC described by `config`: for each catalogue metric (the 3 undocumented ones
    /// only when `include_undocumented`), one series per datacenter and object (and NIC for host
    /// network metrics). A `step_secs` below 1 is treated as 1.
    pub fn new(config: &SimConfig) -> Pcc {
        let step_secs = config.step_secs.max(1);
        let mut series = Vec::new();
        let mut params = Vec::new();
        let mut by_metric = BTreeMap::new();
        for def in Catalogue::builtin().metrics() {
            if !def.documented && !config.include_undocumented {
                continue;
            }
            let first = series.len();
            for dc in 0..config.datacenters {
                let datacenter = datacenter_name(&config.service_name, dc);
                let objects = match def.component {
                    Component::Filer => config.filers_per_datacenter,
                    Component::Host => config.hosts_per_datacenter,
                    Component::Vm => config.vms_per_datacenter,
                };
                for obj in 0..objects {
                    let nics = if def.labels.iter().any(|l| l == "nicname") {
                        config.nics_per_host
                    } else {
                        1
                    };
                    for nic in 0..nics {
                        let mut tags = BTreeMap::new();
                        for label in &def.labels {
                            let value = match label.as_str() {
                                "datacenter" => datacenter.clone(),
                                "host" => host_name(dc, obj, config.hosts_per_datacenter),
                                "vm" => vm_name(dc, obj, config.vms_per_datacenter),
                                "datastore" => {
                                    datastore_name(dc, obj, config.filers_per_datacenter)
                                }
                                "nicname" => format!("vmnic{nic}"),
                                other => format!("{other}-{dc}-{obj}"),
                            };
                            tags.insert(label.clone(), value);
                        }
                        tags.insert("env".to_owned(), "prod".to_owned());
                        tags.insert("servicename".to_owned(), config.service_name.clone());
                        tags.insert("servicetype".to_owned(), "vscope".to_owned());
                        let s = SimSeries {
                            metric: def.name.clone(),
                            tags,
                        };
                        params.push(Params::draw(config.seed, step_secs, &s));
                        series.push(s);
                    }
                }
            }
            by_metric.insert(def.name.clone(), first..series.len());
        }
        // The filer percentage must be consistent with the filer's used space: copy the used
        // series' growth parameters onto the matching percentage series.
        let used: Vec<(BTreeMap<String, String>, Params)> = series
            .iter()
            .zip(&params)
            .filter(|(_, p)| p.kind == Kind::FilerUsed)
            .map(|(s, p)| (s.tags.clone(), p.clone()))
            .collect();
        for (s, p) in series.iter().zip(params.iter_mut()) {
            if p.kind == Kind::FilerPercent
                && let Some((_, u)) = used.iter().find(|(tags, _)| *tags == s.tags)
            {
                let offset = p.offset_secs;
                *p = Params {
                    kind: Kind::FilerPercent,
                    offset_secs: offset,
                    ..u.clone()
                };
            }
        }
        Pcc {
            step_secs,
            series,
            params,
            by_metric,
        }
    }

    /// Every series, in a deterministic order: catalogue metric order, then datacenter, object
    /// and NIC. Indexes into this slice are the `index` of the other methods.
    pub fn series(&self) -> &[SimSeries] {
        &self.series
    }

    /// The index range of the series of `metric` in [`Pcc::series`], or `None` when the
    /// simulator does not serve that metric.
    pub fn metric_series(&self, metric: &str) -> Option<Range<usize>> {
        self.by_metric.get(metric).cloned()
    }

    /// The names of the metrics served, sorted.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.by_metric.keys().map(String::as_str)
    }

    /// The step between two points of one series, in seconds.
    pub fn step_secs(&self) -> i64 {
        self.step_secs
    }

    /// The phase offset of series `index` inside the step, in seconds: its points sit at
    /// `k * step + offset`. `None` for an index out of range.
    pub fn offset_secs(&self, index: usize) -> Option<i64> {
        self.params.get(index).map(|p| p.offset_secs)
    }

    /// Whether series `index` stores integers (packet counts, filer KB). The `opentsdb` dialect
    /// prints such values as JSON integers.
    pub fn is_integer(&self, index: usize) -> bool {
        self.params.get(index).is_some_and(|p| p.kind.is_integer())
    }

    /// For a filer series, its capacity in KB (the `diskspace.used.perc` denominator), which API
    /// v6 reports as the filer's size. `None` for other series.
    pub fn filer_capacity_kb(&self, index: usize) -> Option<f64> {
        self.params
            .get(index)
            .filter(|p| matches!(p.kind, Kind::FilerUsed | Kind::FilerPercent))
            .map(|p| p.capacity_kb)
    }

    /// The latest stored value of series `index` at or before `at_ms` (looking back at most ten
    /// steps, so a gap does not hide it), for the live fields of API v6 objects.
    pub fn latest(&self, index: usize, at_ms: i64) -> Option<f64> {
        let back = self.step_secs.saturating_mul(10_000);
        self.points(index, at_ms.saturating_sub(back), at_ms)
            .last()
            .map(|p| p.1)
    }

    /// For a filer `diskspace.used` series, the slope of its linear growth in KB per second, so
    /// that a test can check a trend computed from exported data. `None` for other series.
    pub fn growth_kb_per_sec(&self, index: usize) -> Option<f64> {
        self.params
            .get(index)
            .filter(|p| p.kind == Kind::FilerUsed)
            .map(|p| p.slope_kb_per_sec)
    }

    /// Stored points of series `index` with `start_ms <= ts <= end_ms` (both inclusive),
    /// ascending. A deterministic function of (seed, series, ts): asking for `[a, b]` and
    /// `[b, c]` gives the same points as `[a, c]`, with a point at `b` in both. An unknown index
    /// or an empty range gives no points. The cost is proportional to the number of steps in the
    /// range, so callers bound the range first ([`Pcc::max_points`]).
    pub fn points(&self, index: usize, start_ms: i64, end_ms: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        self.points_into(index, start_ms, end_ms, &mut out);
        out
    }

    /// Like [`Pcc::points`] but appends to `out`, so a server can reuse one buffer.
    pub fn points_into(&self, index: usize, start_ms: i64, end_ms: i64, out: &mut Vec<(i64, f64)>) {
        let Some(p) = self.params.get(index) else {
            return;
        };
        let Some((k_lo, k_hi)) = self.step_range(p, start_ms, end_ms) else {
            return;
        };
        let step = i128::from(self.step_secs);
        let mut k = k_lo;
        while k <= k_hi {
            let ts_secs = k * step + i128::from(p.offset_secs);
            // The step range is clamped so that ts in ms fits in an i64.
            if let Ok(ts_secs) = i64::try_from(ts_secs)
                && let Some(v) = p.value(k as i64, ts_secs)
            {
                out.push((ts_secs * 1000, v));
            }
            k += 1;
        }
    }

    /// An upper bound of the number of points of series `index` in `[start_ms, end_ms]` (every
    /// step, gaps not subtracted), computed without generating them.
    pub fn max_points(&self, index: usize, start_ms: i64, end_ms: i64) -> u64 {
        let Some(p) = self.params.get(index) else {
            return 0;
        };
        match self.step_range(p, start_ms, end_ms) {
            Some((lo, hi)) => u64::try_from(hi - lo + 1).unwrap_or(u64::MAX),
            None => 0,
        }
    }

    /// The step indexes `k` whose instant `k * step + offset` (s) lies in `[start_ms, end_ms]`,
    /// clamped to instants representable in ms as an `i64`.
    fn step_range(&self, p: &Params, start_ms: i64, end_ms: i64) -> Option<(i128, i128)> {
        if start_ms > end_ms {
            return None;
        }
        let step_ms = i128::from(self.step_secs) * 1000;
        let offset_ms = i128::from(p.offset_secs) * 1000;
        // Keep ts_secs * 1000 inside i64.
        let start = i128::from(start_ms).max(i128::from(i64::MIN / 1000 * 1000 + 1000));
        let end = i128::from(end_ms).min(i128::from(i64::MAX / 1000 * 1000 - 1000));
        let lo = (start - offset_ms + step_ms - 1).div_euclid(step_ms);
        let hi = (end - offset_ms).div_euclid(step_ms);
        (lo <= hi).then_some((lo, hi))
    }
}

impl Params {
    /// Draws the constants of series `s` from the seed and the series identity.
    fn draw(seed: u64, step_secs: i64, s: &SimSeries) -> Params {
        let mut id = String::with_capacity(128);
        id.push_str(&s.metric);
        for (k, v) in &s.tags {
            id.push('\u{1f}');
            id.push_str(k);
            id.push('=');
            id.push_str(v);
        }
        let key = mix(seed ^ stable_hash(id.as_bytes()));
        let mut draws = (0u64..).map(|i| unit(hash3(key, SALT_PARAMS, i)));
        let mut next = move || draws.next().unwrap_or(0.5);
        let offset_secs = (hash3(key, SALT_PARAMS, u64::MAX) % step_secs.unsigned_abs()) as i64;
        let kind = Kind::of(&s.metric);
        let host = s.metric.starts_with("vscope.host.");
        let between = |u: f64, lo: f64, hi: f64| lo + u * (hi - lo);
        let (level, amp_ratio, noise_ratio) = match kind {
            Kind::Percent => (between(next(), 5.0, 65.0), 0.35, 0.06),
            Kind::CpuReady => (between(next(), 10.0, 300.0), 0.4, 0.2),
            Kind::MemTps => (between(next(), 1.0e5, 4.0e6), 0.02, 0.01),
            Kind::NetRate if host => (between(next(), 1_000.0, 50_000.0), 0.6, 0.25),
            Kind::NetRate => (between(next(), 5.0, 5_000.0), 0.6, 0.25),
            Kind::Packets if host => (between(next(), 1_000.0, 80_000.0), 0.6, 0.2),
            Kind::Packets => (between(next(), 10.0, 8_000.0), 0.6, 0.2),
            Kind::DiskIo => (between(next(), 1.0, 400.0), 0.5, 0.3),
            Kind::DiskBandwidth => (between(next(), 10.0, 40_000.0), 0.5, 0.3),
            Kind::DiskLatency => (between(next(), 0.3, 15.0), 0.3, 0.3),
            // Level = used KB at GROWTH_EPOCH_SECS: 1 to 3 TB.
            Kind::FilerUsed | Kind::FilerPercent => (between(next(), 1.0e9, 3.0e9), 0.0, 0.0),
            Kind::Other => (between(next(), 1.0, 1_000.0), 0.3, 0.1),
        };
        let (slope_kb_per_sec, capacity_kb, noise) =
            if matches!(kind, Kind::FilerUsed | Kind::FilerPercent) {
                // 10 to 50 MB per day, a capacity of 8 to 12 TB, a noise of +/- 2 MB: linear
                // and positive from 1970 to well past 2100.
                let per_day = between(next(), 1.0e4, 5.0e4);
                (
                    per_day / DAY_SECS as f64,
                    between(next(), 8.0e9, 1.2e10),
                    2_000.0,
                )
            } else {
                (0.0, 0.0, level * noise_ratio)
            };
        Params {
            kind,
            key,
            offset_secs,
            level,
            amplitude: level * amp_ratio * between(next(), 0.5, 1.0),
            noise,
            phase: between(next(), -0.05, 0.05),
            slope_kb_per_sec,
            capacity_kb,
        }
    }

    /// The stored value at step `k` (instant `ts_secs`), or `None` when that point is missing.
    fn value(&self, k: i64, ts_secs: i64) -> Option<f64> {
        let k = k as u64;
        if hash3(self.key, SALT_GAP, k) % 1000 < GAP_PER_MILLE {
            return None;
        }
        // Triangular noise in [-1, 1]: the sum of two uniforms, centred.
        let h = hash3(self.key, SALT_NOISE, k);
        let noise = unit(h) + unit(mix(h)) - 1.0;
        let v = match self.kind {
            Kind::FilerUsed => self.used_kb(ts_secs, noise).round(),
            Kind::FilerPercent => {
                let used = self.used_kb(ts_secs, noise).round();
                round2((used / self.capacity_kb * 100.0).clamp(0.0, 100.0))
            }
            kind => {
                let tod = ts_secs.rem_euclid(DAY_SECS) as f64 / DAY_SECS as f64;
                // Peak around 14:00 UTC, trough around 02:00.
                let daily = (std::f64::consts::TAU * (tod - 8.0 / 24.0 + self.phase)).sin();
                let raw = (self.level + self.amplitude * daily + self.noise * noise).max(0.0);
                match kind {
                    Kind::Packets => raw.round(),
                    Kind::Percent => round2(raw.min(100.0)),
                    _ => round2(raw),
                }
            }
        };
        Some(v)
    }

    /// Used space of a filer in KB at `ts_secs`, before rounding.
    fn used_kb(&self, ts_secs: i64, noise: f64) -> f64 {
        let t = (ts_secs - GROWTH_EPOCH_SECS) as f64;
        (self.level + self.slope_kb_per_sec * t + self.noise * noise).max(0.0)
    }
}

/// A datacenter of [`PccObjects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcObjects {
    /// API `datacenterId`: the `N` of its name.
    pub id: i64,
    /// API `name`, the `datacenter` label.
    pub name: String,
    /// Its hosts.
    pub hosts: Vec<HostObject>,
    /// Its VMs (series-less ones from the drift last).
    pub vms: Vec<VmObject>,
    /// Its filers.
    pub filers: Vec<FilerObject>,
}

/// A host of [`PccObjects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostObject {
    /// API `hostId`.
    pub id: i64,
    /// API `name`: the host IP, its `host` label.
    pub name: String,
}

/// A VM of [`PccObjects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmObject {
    /// API `vmId`.
    pub id: i64,
    /// API `moRef`, its `vm` label.
    pub mo_ref: String,
    /// API `name`, a display name.
    pub name: String,
    /// Its host's name, when the datacenter has hosts.
    pub host: Option<String>,
    /// Its filer's name, when the datacenter has filers.
    pub filer: Option<String>,
    /// vCPUs.
    pub cpu_num: i64,
    /// Memory, MB.
    pub memory_mb: i64,
    /// Whether the metrics have series for it (false for VMs added by the drift).
    pub has_series: bool,
}

/// A filer (datastore) of [`PccObjects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilerObject {
    /// API `filerId`.
    pub id: i64,
    /// API `name`, its `datastore` label.
    pub name: String,
}

/// The objects of the synthetic PCC as API v6 lists them, labels equal to the series'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PccObjects {
    /// Datacenters in id order.
    pub datacenters: Vec<DcObjects>,
}

impl PccObjects {
    /// The objects of the PCC `config` describes (see the module docs).
    pub fn new(config: &SimConfig) -> PccObjects {
        let hosts_n = config.hosts_per_datacenter;
        let vms_n = config.vms_per_datacenter;
        let filers_n = config.filers_per_datacenter;
        let drift = config.inventory_drift.min(vms_n);
        let display = ["web", "db", "app", "cache", "batch", "proxy"];
        let datacenters = (0..config.datacenters)
            .map(|dc| {
                let hosts: Vec<HostObject> = (0..hosts_n)
                    .map(|h| HostObject {
                        id: 500 + (dc * hosts_n + h) as i64,
                        name: host_name(dc, h, hosts_n),
                    })
                    .collect();
                let filers: Vec<FilerObject> = (0..filers_n)
                    .map(|f| FilerObject {
                        id: 2000 + (dc * filers_n + f) as i64,
                        name: datastore_name(dc, f, filers_n),
                    })
                    .collect();
                let vm = |k: usize, mo_ref: String, g: usize, has_series: bool| {
                    let h = hash3(config.seed, 0x564d, g as u64);
                    VmObject {
                        id: 10_000 + g as i64,
                        mo_ref,
                        name: format!("{}-{g:03}", display[k % display.len()]),
                        host: hosts.get(k % hosts_n.max(1)).map(|x| x.name.clone()),
                        filer: filers.get(k % filers_n.max(1)).map(|x| x.name.clone()),
                        cpu_num: 1 << (h % 4),
                        memory_mb: 2048 << (mix(h) % 4),
                        has_series,
                    }
                };
                let mut vms: Vec<VmObject> = (0..vms_n - drift)
                    .map(|k| vm(k, vm_name(dc, k, vms_n), dc * vms_n + k, true))
                    .collect();
                // New VMs only the API knows, numbered past every VM that has series.
                let total = config.datacenters * vms_n;
                vms.extend((0..drift).map(|j| {
                    let g = total + dc * drift + j;
                    vm(vms_n + j, format!("vm-{:05}", 1254 + 3 * g), g, false)
                }));
                DcObjects {
                    id: 869 + dc as i64,
                    name: datacenter_name(&config.service_name, dc),
                    hosts,
                    vms,
                    filers,
                }
            })
            .collect();
        PccObjects { datacenters }
    }
}

/// `<service>_datacenter<N>` with N = 869, 870, ... as on the real PCC of the vScope guide.
fn datacenter_name(service: &str, dc: usize) -> String {
    format!("{service}_datacenter{}", 869 + dc)
}

/// A host's label is its IP: 172.17.86.51, 172.17.86.52, ... unique across datacenters.
fn host_name(dc: usize, obj: usize, per_dc: usize) -> String {
    let g = dc * per_dc + obj;
    format!("172.17.{}.{}", 86 + g / 200, 51 + g % 200)
}

/// A VM's label is its vSphere moRef: vm-01254, vm-01257, ... unique across datacenters.
fn vm_name(dc: usize, obj: usize, per_dc: usize) -> String {
    format!("vm-{:05}", 1254 + 3 * (dc * per_dc + obj))
}

/// A datastore's label is the filer name: pcc-000443, pcc-000444, ...
fn datastore_name(dc: usize, obj: usize, per_dc: usize) -> String {
    format!("pcc-{:06}", 443 + dc * per_dc + obj)
}

/// Rounds to 2 decimals, the precision vScope shows.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The splitmix64 finaliser: a bijective 64-bit mix with good avalanche.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of three words, order-sensitive.
fn hash3(a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(a) ^ b) ^ c)
}

/// A hash mapped to `[0, 1)` with 53 bits of precision.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcc() -> Pcc {
        Pcc::new(&SimConfig::default())
    }

    #[test]
    fn default_pcc_has_the_expected_series_and_labels() {
        let p = pcc();
        // 2 filer metrics x 2 dc x 2 filers + 3 host metrics x 2 x 3 + 4 host net x 2 x 3 x 4
        // + 14 vm metrics x 2 x 12.
        assert_eq!(p.series().len(), 8 + 18 + 96 + 336);
        let first = &p.series()[0];
        assert_eq!(first.metric, "vscope.filer.datastore.diskspace.used");
        assert_eq!(first.tags["datacenter"], "pcc-37-187-228-180_datacenter869");
        assert_eq!(first.tags["datastore"], "pcc-000443");
        assert_eq!(first.tags["env"], "prod");
        assert_eq!(first.tags["servicename"], "pcc-37-187-228-180");
        assert_eq!(first.tags["servicetype"], "vscope");
        let net = p.metric_series("vscope.host.net.rx").unwrap();
        let s = &p.series()[net.start];
        assert_eq!(s.tags["host"], "172.17.86.51");
        assert_eq!(s.tags["nicname"], "vmnic0");
        assert_eq!(s.tags.len(), 6);
        let vm = p.metric_series("vscope.vm.cpu.ready").unwrap();
        assert_eq!(p.series()[vm.start].tags["vm"], "vm-01254");
        // Labels are unique per metric.
        let mut seen = std::collections::BTreeSet::new();
        for s in p.series() {
            assert!(seen.insert(s.clone()), "duplicate series {s:?}");
        }
    }

    #[test]
    fn undocumented_metrics_can_be_left_out() {
        let p = Pcc::new(&SimConfig {
            include_undocumented: false,
            ..SimConfig::default()
        });
        assert!(p.metric_series("vscope.vm.mem.tps").is_none());
        assert!(p.metric_series("vscope.vm.mem.tps").is_none());
        assert!(pcc().metric_series("vscope.vm.mem.tps").is_some());
        assert_eq!(p.metric_names().count(), 20);
    }

    #[test]
    fn points_are_deterministic_and_split_ranges_agree() {
        let a = pcc();
        let b = pcc();
        let start = 1_793_491_200_000; // 2026-11-01
        let mid = start + 3_600_000 * 5 + 17_000;
        let end = start + 86_400_000;
        for i in [0, 9, 30, 200, a.series().len() - 1] {
            let whole = a.points(i, start, end);
            assert_eq!(whole, b.points(i, start, end));
            let mut left = a.points(i, start, mid);
            let right = a.points(i, mid, end);
            if left.last().map(|p| p.0) == Some(mid) {
                assert_eq!(right.first().map(|p| p.0), Some(mid));
                left.pop();
            }
            left.extend(right);
            assert_eq!(left, whole);
        }
    }

    #[test]
    fn range_is_inclusive_on_both_ends() {
        let p = pcc();
        let all = p.points(3, 1_700_000_000_000, 1_700_000_600_000);
        let (t0, _) = all[1];
        let (t1, _) = all[3];
        let got = p.points(3, t0, t1);
        assert_eq!(got.first().unwrap().0, t0);
        assert_eq!(got.last().unwrap().0, t1);
        assert_eq!(p.points(3, t0, t0).len(), 1);
        assert!(p.points(3, t0 + 1, t0 + 1).is_empty());
        assert!(p.points(3, t1, t0).is_empty());
        assert!(p.points(usize::MAX, t0, t1).is_empty());
    }

    #[test]
    fn timestamps_follow_the_step_and_offset() {
        let p = pcc();
        let day = p.points(40, 1_600_000_000_000, 1_600_086_400_000);
        let offset = p.offset_secs(40).unwrap();
        assert!((0..60).contains(&offset));
        for (ts, _) in &day {
            assert_eq!(ts % 1000, 0);
            assert_eq!((ts / 1000 - offset).rem_euclid(60), 0);
        }
        // ~0.5 % missing out of 1440 steps.
        let missing = 1440 - day.len();
        assert!(missing < 30, "{missing} missing");
        // Offsets differ between series.
        let offsets: std::collections::BTreeSet<i64> =
            (0..50).filter_map(|i| p.offset_secs(i)).collect();
        assert!(offsets.len() > 10);
    }

    #[test]
    fn about_half_a_percent_of_points_are_missing() {
        let p = pcc();
        let start = 1_700_000_000_000;
        let end = start + 30 * 86_400_000;
        let got = p.points(100, start, end).len() as f64;
        let steps = p.max_points(100, start, end) as f64;
        let missing = 1.0 - got / steps;
        assert!((0.002..0.009).contains(&missing), "{missing}");
    }

    #[test]
    fn values_are_realistic_per_metric() {
        let p = pcc();
        let start = 1_700_000_000_000;
        let end = start + 2 * 86_400_000;
        for (i, s) in p.series().iter().enumerate() {
            let pts = p.points(i, start, end);
            assert!(!pts.is_empty());
            for &(_, v) in &pts {
                assert!(v.is_finite() && v >= 0.0, "{} {v}", s.metric);
                if s.metric.ends_with(".perc") {
                    assert!(v <= 100.0, "{} {v}", s.metric);
                }
                if p.is_integer(i) {
                    assert_eq!(v, v.round(), "{} {v}", s.metric);
                } else {
                    assert_eq!(v, round2(v), "{} {v}", s.metric);
                }
            }
        }
        let packets = p.metric_series("vscope.vm.net.packetsrx").unwrap();
        assert!(p.is_integer(packets.start));
        let cpu = p.metric_series("vscope.vm.cpu.usage.perc").unwrap();
        assert!(!p.is_integer(cpu.start));
        // Percentages move over a day.
        let pts = p.points(cpu.start, start, end);
        let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let max = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        assert!(max - min > 1.0);
    }

    #[test]
    fn filer_used_space_grows_with_the_published_slope() {
        let p = pcc();
        let idx = p
            .metric_series("vscope.filer.datastore.diskspace.used")
            .unwrap()
            .start;
        let slope = p.growth_kb_per_sec(idx).unwrap();
        assert!(slope > 0.0);
        let start = 1_793_491_200_000;
        let end = start + 7 * 86_400_000;
        let pts = p.points(idx, start, end);
        // Least-squares slope over a week.
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0 as f64 / 1000.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = pts
            .iter()
            .map(|p| (p.0 as f64 / 1000.0 - mx) * (p.1 - my))
            .sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 as f64 / 1000.0 - mx).powi(2)).sum();
        let fitted = sxy / sxx;
        assert!((fitted - slope).abs() / slope < 0.01, "{fitted} vs {slope}");
        // Far past and future still have points.
        assert!(!p.points(idx, 0, 3_600_000).is_empty());
        assert!(
            !p.points(idx, 4_102_444_800_000, 4_102_448_400_000)
                .is_empty()
        );
        assert!(p.growth_kb_per_sec(idx + 100).is_none());
        // The percentage follows the used space.
        let perc = p
            .metric_series("vscope.filer.datastore.diskspace.used.perc")
            .unwrap()
            .start;
        let v = p.points(perc, start, end);
        assert!(v.iter().all(|p| (0.0..=100.0).contains(&p.1)));
        assert!(v.last().unwrap().1 >= v.first().unwrap().1);
    }

    #[test]
    fn seed_changes_values_but_not_labels() {
        let a = pcc();
        let b = Pcc::new(&SimConfig {
            seed: 7,
            ..SimConfig::default()
        });
        assert_eq!(a.series(), b.series());
        let range = (1_700_000_000_000, 1_700_003_600_000);
        assert_ne!(a.points(5, range.0, range.1), b.points(5, range.0, range.1));
    }

    #[test]
    fn objects_carry_the_series_labels() {
        let cfg = SimConfig::default();
        let p = pcc();
        let objects = PccObjects::new(&cfg);
        let label_values = |label: &str| -> std::collections::BTreeSet<(String, String)> {
            p.series()
                .iter()
                .filter_map(|s| Some((s.tags["datacenter"].clone(), s.tags.get(label)?.clone())))
                .collect()
        };
        let listed = |f: &dyn Fn(&DcObjects) -> Vec<String>| -> std::collections::BTreeSet<(String, String)> {
            objects
                .datacenters
                .iter()
                .flat_map(|d| f(d).into_iter().map(|v| (d.name.clone(), v)))
                .collect()
        };
        assert_eq!(
            label_values("vm"),
            listed(&|d| d.vms.iter().map(|v| v.mo_ref.clone()).collect())
        );
        assert_eq!(
            label_values("host"),
            listed(&|d| d.hosts.iter().map(|v| v.name.clone()).collect())
        );
        assert_eq!(
            label_values("datastore"),
            listed(&|d| d.filers.iter().map(|v| v.name.clone()).collect())
        );
        assert_eq!(objects.datacenters[0].id, 869);
        // Drift: as many series-less VMs as VMs missing from the API, per datacenter.
        let drifted = PccObjects::new(&SimConfig {
            inventory_drift: 2,
            ..cfg
        });
        for (a, b) in objects.datacenters.iter().zip(&drifted.datacenters) {
            assert_eq!(a.vms.len(), b.vms.len());
            assert_eq!(b.vms.iter().filter(|v| !v.has_series).count(), 2);
            assert_eq!(a.vms[..a.vms.len() - 2], b.vms[..b.vms.len() - 2]);
        }
        let all: std::collections::BTreeSet<&str> = drifted
            .datacenters
            .iter()
            .flat_map(|d| d.vms.iter().map(|v| v.mo_ref.as_str()))
            .collect();
        assert_eq!(all.len(), 24, "moRefs stay unique");
        let filer = p
            .metric_series("vscope.filer.datastore.diskspace.used")
            .unwrap()
            .start;
        assert!(p.filer_capacity_kb(filer).unwrap() > 8.0e9);
        assert!(p.latest(filer, 1_793_491_200_000).is_some());
    }

    #[test]
    fn extreme_ranges_do_not_panic() {
        let p = pcc();
        assert_eq!(p.points(0, i64::MIN, i64::MIN + 10), vec![]);
        assert!(p.max_points(0, i64::MIN, i64::MAX) > 1 << 40);
        let tail = p.points(0, i64::MAX - 200_000, i64::MAX);
        assert!(tail.len() <= 4);
        let zero_step = Pcc::new(&SimConfig {
            step_secs: 0,
            ..SimConfig::default()
        });
        assert_eq!(zero_step.step_secs(), 1);
    }
}
