//! The synthetic dataset of the capacity-report benchmark (`benches/report.sh`, issue 22):
//!
//! ```text
//! cargo bench --bench report_data -- OUT --vms N --days D [--rollup] [--raw-step S] [--threads T]
//! ```
//!
//! (`--no-default-features` would skip building the report crate, but cargo builds a package's
//! binaries for its benches: the `vscope-etl` without `report` would then replace
//! `target/release/vscope-etl`, the binary `benches/report.sh` runs.)
//!
//! It writes a period of `D` days of `N` VMs (from 2025-11-01) into the directory `OUT`
//! (created; it must be empty) as the files `vscope-etl run` writes: the tables of a pipeline
//! parsed by the pipeline's own code (`vscope_etl::config::parse`, default sink settings), one
//! file per table and day (`<table>/date=YYYY-MM-DD/part-<day>-<next day>.parquet`, a window
//! of a day), each through the pipeline's [`PartWriter`] with its [`writer_properties`]: the
//! declared schemas, rows sorted by metric, labels, ts, ZSTD, page statistics, dictionary strings
//! (encoded from runs, the batches carry them as dictionaries like the pipeline's builders),
//! delta `ts`, PLAIN doubles, row groups of `sink.row_group_rows` closed where the metric
//! changes once they hold an eighth of that. The inventory snapshot at the end of the period
//! (`filers`, `hosts`, `vms`, every declared column) goes through `vscope_etl::ovh::snapshot`.
//!
//! Tables: with `--rollup` the 1h rollups `vm_metrics_1h` and `host_metrics_1h` (avg, min, max,
//! p95, count), otherwise the raw `vm_metrics` and `host_metrics` with a point every `S`
//! seconds (default 300); both write `filer_metrics` (raw, hourly: used space, growing). Series:
//! the 11 VM metrics the report reads (CPU, RAM, ready, disk, network), host CPU and RAM (one
//! host per 25 VMs, at least 4), the used space of 4 datastores; 2 datacenters. Values have a
//! daily cycle, a slow growth and uniform noise; 5 % of the VMs are idle, 3 % powered off (in
//! the inventory). Deterministic: every number comes from a splitmix64 hash of its series and
//! time. The model is the one of its DuckDB predecessor (`benches/report_data.py`, removed), with
//! other draws.
//!
//! Columns are generated straight into Arrow arrays, a metric at a time in batches of at most
//! 64 Ki rows, and days are written in parallel (`--threads`, default: every core). Prints the
//! rows, bytes and seconds per table (seconds summed over the threads), then the totals.
//!
//! Without `--bench` (`cargo test --all-targets`) it writes 40 VMs over 2 days, raw and
//! rollup, into a temporary directory and checks the row counts and the row groups.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, MapArray, StringArray,
    StructArray, TimestampMillisecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use vscope_etl::catalogue::Component;
use vscope_etl::config::{PartitionKey, Pipeline, TableSpec};
use vscope_etl::load::Sink;
use vscope_etl::load::partition::{part_file_name, partition_dir};
use vscope_etl::load::writer::{FileSettings, PartWriter, WrittenFile, writer_properties};
use vscope_etl::ovh::inventory::{DatacenterInventory, Inventory};
use vscope_etl::ovh::model::{Datacenter, Filer, Host, UnitAndValue, Vm, VmFiler};
use vscope_etl::schema::{UTC, raw_table_decl};
use vscope_etl::transform::{DAY_MS, physical_schema};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// First day of the period: 2025-11-01T00:00:00Z, ms.
const START_MS: i64 = 1_761_955_200_000;
/// The PCC: `servicename` tag, datacenter name prefix.
const SERVICE: &str = "pcc-bench";
/// Datacenters; object `i` is in datacenter `i % DATACENTERS`.
const DATACENTERS: usize = 2;
/// Datastores (filers), 8 TB each.
const FILERS: usize = 4;
const FILER_TB: i64 = 8;
/// The tags vScope series carry besides their labels (as the simulator and the real endpoint).
const EXTRA_TAGS: [(&str, &str); 3] = [
    ("env", "prod"),
    ("servicename", SERVICE),
    ("servicetype", "vscope"),
];
/// The VM metrics the report reads, in the order their draws are numbered.
const VM_METRICS: [&str; 11] = [
    "vscope.vm.cpu.usage.perc",
    "vscope.vm.mem.usage.perc",
    "vscope.vm.cpu.ready",
    "vscope.vm.disk.io.read",
    "vscope.vm.disk.io.write",
    "vscope.vm.disk.bandwidth.read",
    "vscope.vm.disk.bandwidth.write",
    "vscope.vm.disk.latency.read",
    "vscope.vm.disk.latency.write",
    "vscope.vm.net.rx",
    "vscope.vm.net.tx",
];
const HOST_METRICS: [&str; 2] = ["vscope.host.cpu.usage.perc", "vscope.host.mem.usage.perc"];
const FILER_METRICS: [&str; 1] = ["vscope.filer.datastore.diskspace.used"];
/// Points a rollup bucket summarises (an hour of 20 s points), its `count`.
const ROLLUP_COUNT: i64 = 180;
/// Rows per generated batch at most (the writer cuts row groups itself).
const BATCH_ROWS: usize = 1 << 16;

#[derive(Parser, Debug)]
#[command(about = "Writes the synthetic dataset of benches/report.sh")]
struct Args {
    /// Output directory (created; must be empty).
    out: Option<PathBuf>,
    /// VMs.
    #[arg(long, default_value_t = 1000)]
    vms: usize,
    /// Days, from 2025-11-01.
    #[arg(long, default_value_t = 365)]
    days: usize,
    /// Write the 1h rollup tables instead of the raw ones.
    #[arg(long)]
    rollup: bool,
    /// Seconds between two raw points (a divisor of 86,400).
    #[arg(long, default_value_t = 300)]
    raw_step: u32,
    /// Days written at once (default: the machine's parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Rows per row group (default: the pipeline's `sink.row_group_rows` default).
    #[arg(long)]
    row_group_rows: Option<usize>,
    /// Passed by `cargo bench`; without it a small smoke test runs instead.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------------------------------------
// Draws.

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) for `(seed, x)`.
fn u(seed: u64, x: u64) -> f64 {
    (splitmix64(seed ^ splitmix64(x)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One object of a table: a VM, a host or a datastore.
#[derive(Debug, Clone)]
struct Obj {
    /// Its number, which its draws and its datacenter come from.
    index: usize,
    name: String,
    idle: bool,
}

impl Obj {
    fn dc(&self) -> usize {
        self.index % DATACENTERS
    }
}

fn dc_name(dc: usize) -> String {
    format!("{SERVICE}_datacenter{}", dc + 1)
}

fn vm_objects(n: usize) -> Vec<Obj> {
    (0..n)
        .map(|i| Obj {
            index: i,
            name: format!("vm-{i:05}"),
            idle: u(5, i as u64) < 0.05,
        })
        .collect()
}

fn host_count(vms: usize) -> usize {
    (vms / 25).max(4)
}

fn host_objects(vms: usize) -> Vec<Obj> {
    (0..host_count(vms))
        .map(|i| Obj {
            index: i,
            name: format!("172.16.{}.{}", i / 250, i % 250 + 1),
            idle: false,
        })
        .collect()
}

fn filer_objects() -> Vec<Obj> {
    (0..FILERS)
        .map(|i| Obj {
            index: i,
            name: format!("pcc-{i:06}"),
            idle: false,
        })
        .collect()
}

/// Objects `0..count` of datacenter `dc`: the `j`-th one of the datacenter is `j * DCS + dc`.
fn nth_of_dc(count: usize, dc: usize, j: usize) -> usize {
    let of_dc = (count + DATACENTERS - 1 - dc) / DATACENTERS;
    (j % of_dc) * DATACENTERS + dc
}

/// The host of VM `i` (one of its datacenter's, in turn).
fn host_of(vms: usize, i: usize) -> usize {
    nth_of_dc(host_count(vms), i % DATACENTERS, i / DATACENTERS)
}

/// The datastore of VM `i`.
fn filer_of(i: usize) -> usize {
    nth_of_dc(FILERS, i % DATACENTERS, i / DATACENTERS)
}

/// The value model of one series of a VM or host metric: a level (percent metrics 5..45,
/// others 10..500) with a ±30 % daily cycle, a growth of up to 0.06 (percent) or 0.2 a day, and
/// uniform noise of ±1.5 or ±10; idle VMs at 2 % of all that.
#[derive(Debug, Clone, Copy)]
struct Series {
    seed: u64,
    base: f64,
    growth: f64,
    noise: f64,
    scale: f64,
    /// Spread of the points within an hour, for the rollups' min, max and p95.
    sd: f64,
}

impl Series {
    fn new(component: Component, obj: &Obj, metric: usize, pct: bool) -> Series {
        let table = match component {
            Component::Vm => 1u64,
            Component::Host => 2,
            Component::Filer => 3,
        };
        let seed = splitmix64((table << 56) ^ ((obj.index as u64) << 8) ^ metric as u64);
        let scale = if obj.idle { 0.02 } else { 1.0 };
        let (base, growth, noise, sd) = if pct {
            (5.0 + 40.0 * u(seed, 1), 0.06 * u(seed, 3), 3.0, 1.5)
        } else {
            (10.0 + 490.0 * u(seed, 2), 0.2 * u(seed, 3), 20.0, 10.0)
        };
        Series {
            seed: splitmix64(seed ^ 4),
            base,
            growth,
            noise,
            scale,
            sd: sd * scale,
        }
    }

    /// The value at step `k` of day `day` (`cycle[k]`: the daily factor, `per_day` steps a day).
    fn at(&self, day: usize, k: usize, per_day: usize, cycle: f64) -> f64 {
        let step = (day * per_day + k) as u64;
        (self.base * cycle
            + self.growth * (day as f64 + k as f64 / per_day as f64)
            + self.noise * (u(self.seed, step) - 0.5))
            * self.scale
    }
}

/// Used space of datastore `i` in KB at hour `hour` of day `day`: 1 to 4 TB, growing 0.2 % of
/// its level a day, with up to 1 GB of noise.
fn filer_used_kb(i: usize, day: usize, hour: usize) -> f64 {
    let seed = splitmix64((3 << 56) ^ ((i as u64) << 8));
    let level = (1.0 + 3.0 * u(seed, 6)) * 1_073_741_824.0;
    (level * (1.0 + 0.002 * (day as f64 + hour as f64 / 24.0))
        + 1e6 * u(seed ^ 7, (day * 24 + hour) as u64))
    .round()
}

// ---------------------------------------------------------------------------------------------
// Tables.

/// One table to write each day.
struct Table {
    spec: TableSpec,
    /// The declared schema and the one the batches are built with (dictionary strings).
    schema: SchemaRef,
    physical: SchemaRef,
    /// Metric names in file order (sorted), with their draw number and whether in percent.
    metrics: Vec<(&'static str, usize, bool)>,
    /// Objects in file order (datacenter, then name).
    objects: Vec<Obj>,
    /// The label column naming the object (`vm`, `host`, `datastore`).
    object_label: &'static str,
    /// The pipeline's partition levels (`date`).
    partition_by: Vec<PartitionKey>,
    step_s: usize,
}

impl Table {
    fn new(spec: &TableSpec, partition_by: &[PartitionKey], vms: usize, raw_step: usize) -> Table {
        let (names, mut objects, object_label): (&[&'static str], Vec<Obj>, _) =
            match spec.component {
                Component::Vm => (&VM_METRICS, vm_objects(vms), "vm"),
                Component::Host => (&HOST_METRICS, host_objects(vms), "host"),
                Component::Filer => (&FILER_METRICS, filer_objects(), "datastore"),
            };
        objects.sort_by(|a, b| (a.dc(), &a.name).cmp(&(b.dc(), &b.name)));
        let mut metrics: Vec<_> = (names.iter().enumerate())
            .map(|(i, m)| (*m, i, m.ends_with(".perc")))
            .collect();
        metrics.sort();
        let step_s = match (&spec.rollup, spec.component) {
            (Some(r), _) => (r.interval_ms / 1000) as usize,
            (None, Component::Filer) => 3600,
            (None, _) => raw_step,
        };
        let schema = spec.file_schema();
        Table {
            spec: spec.clone(),
            physical: physical_schema(&schema),
            schema,
            metrics,
            objects,
            object_label,
            partition_by: partition_by.to_vec(),
            step_s,
        }
    }

    fn per_day(&self) -> usize {
        86_400 / self.step_s
    }

    /// The rows of one metric for `objects`, on day `day`, as a batch of the physical schema.
    fn batch(
        &self,
        day: usize,
        metric: (&'static str, usize, bool),
        objects: &[Obj],
        cycle: &[f64],
    ) -> Result<RecordBatch> {
        let per_day = self.per_day();
        let rows = objects.len() * per_day;
        let day_ms = START_MS + day as i64 * DAY_MS;
        let step_ms = self.step_s as i64 * 1000;
        let mut ts = Vec::with_capacity(rows);
        let mut v = Vec::with_capacity(rows);
        let mut sd = Vec::with_capacity(objects.len());
        for o in objects {
            ts.extend((0..per_day as i64).map(|k| day_ms + k * step_ms));
            if self.spec.component == Component::Filer {
                v.extend((0..per_day).map(|k| filer_used_kb(o.index, day, k * self.step_s / 3600)));
                sd.push(0.0);
            } else {
                let s = Series::new(self.spec.component, o, metric.1, metric.2);
                v.extend((0..per_day).map(|k| s.at(day, k, per_day, cycle[k])));
                sd.push(s.sd);
            }
        }
        let dict = |keys: Int32Array, values: Vec<String>| -> Result<ArrayRef> {
            let values = Arc::new(StringArray::from(values));
            Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
                keys, values,
            )?))
        };
        let per_object = |key: &dyn Fn(usize, &Obj) -> i32| {
            let mut keys = Vec::with_capacity(rows);
            for (j, o) in objects.iter().enumerate() {
                keys.extend(std::iter::repeat_n(key(j, o), per_day));
            }
            Int32Array::from(keys)
        };
        // A rollup value: `avg` plus `sds` spreads, clamped at 0, two decimals.
        let spread = |sds: f64| -> ArrayRef {
            let mut out = Vec::with_capacity(rows);
            for (j, chunk) in v.chunks(per_day).enumerate() {
                out.extend(chunk.iter().map(|x| round2((x + sds * sd[j]).max(0.0))));
            }
            Arc::new(Float64Array::from(out))
        };
        let labels = raw_table_decl(self.spec.component).label_columns();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.physical.fields().len());
        for field in self.physical.fields() {
            let name = field.name().as_str();
            let column: ArrayRef = match name {
                "ts" => Arc::new(
                    TimestampMillisecondArray::from(std::mem::take(&mut ts)).with_timezone(UTC),
                ),
                "metric" => dict(Int32Array::from(vec![0; rows]), vec![metric.0.to_string()])?,
                "datacenter" => dict(
                    per_object(&|_, o| o.dc() as i32),
                    (0..DATACENTERS).map(dc_name).collect(),
                )?,
                "value" | "avg" => spread(0.0),
                "min" => spread(-2.0),
                "max" => spread(2.5),
                "p95" => spread(1.6),
                "count" => Arc::new(Int64Array::from(vec![ROLLUP_COUNT; rows])),
                "tags" => tags(field.data_type(), rows)?,
                label if label == self.object_label => dict(
                    per_object(&|j, _| j as i32),
                    objects.iter().map(|o| o.name.clone()).collect(),
                )?,
                // A label these series lack (`nicname` of the host CPU and RAM): null.
                label if labels.contains(&label) => {
                    let nulls = NullBuffer::new_null(rows);
                    dict(Int32Array::new(vec![0; rows].into(), Some(nulls)), vec![])?
                }
                other => return Err(format!("no generator for column {other}").into()),
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(self.physical.clone(), columns)?)
    }

    /// Writes day `day`'s file of this table.
    async fn write_day(
        &self,
        sink: &Sink,
        settings: &FileSettings,
        day: usize,
    ) -> Result<WrittenFile> {
        let day_ms = START_MS + day as i64 * DAY_MS;
        let window = (day_ms, day_ms + DAY_MS);
        let dir = partition_dir(&self.spec.name, &self.partition_by, "", day_ms);
        let path = format!("{dir}/{}", part_file_name(window.0, window.1));
        let props = writer_properties(&self.schema, settings, &self.spec.name, window);
        let mut w = PartWriter::create(sink, path, &self.spec.name, self.schema.clone(), props)?;
        let per_day = self.per_day();
        let cycle: Vec<f64> = (0..per_day)
            .map(|k| 1.0 + 0.3 * (2.0 * std::f64::consts::PI * k as f64 / per_day as f64).sin())
            .collect();
        let chunk = (BATCH_ROWS / per_day).max(1);
        for &metric in &self.metrics {
            for objects in self.objects.chunks(chunk) {
                let batch = self.batch(day, metric, objects, &cycle)?;
                if let Err(e) = w.write(&batch).await {
                    w.abort().await;
                    return Err(e.into());
                }
            }
        }
        Ok(w.finish().await?)
    }
}

/// The `tags` column: the same [`EXTRA_TAGS`] on every row, keys and values as dictionaries.
fn tags(map_type: &DataType, rows: usize) -> Result<ArrayRef> {
    let DataType::Map(entries_field, sorted) = map_type else {
        return Err(format!("tags is {map_type}, not a map").into());
    };
    let DataType::Struct(fields) = entries_field.data_type() else {
        return Err("tags entries are not a struct".into());
    };
    let n = EXTRA_TAGS.len();
    let keys: Vec<i32> = (0..rows).flat_map(|_| 0..n as i32).collect();
    let part = |values: [&str; 3]| -> Result<ArrayRef> {
        let values = StringArray::from_iter_values(values);
        Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(keys.clone()),
            Arc::new(values),
        )?))
    };
    let entries = StructArray::try_new(
        fields.clone(),
        vec![
            part(EXTRA_TAGS.map(|t| t.0))?,
            part(EXTRA_TAGS.map(|t| t.1))?,
        ],
        None,
    )?;
    let offsets = OffsetBuffer::new((0..=rows as i32).map(|r| r * n as i32).collect());
    Ok(Arc::new(MapArray::try_new(
        entries_field.clone(),
        offsets,
        entries,
        None,
        *sorted,
    )?))
}

/// The pipeline whose tables, schemas and file settings the dataset has.
fn pipeline(out: &Path, days: usize, row_group_rows: Option<usize>) -> Result<Pipeline> {
    let stamp = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let rows = row_group_rows.map_or(String::new(), |n| format!("row_group_rows = {n}\n"));
    let text = format!(
        r#"name = "report-bench"
[source]
url = "sim"
[scope]
start = "{start}"
end = "{end}"
window = "1d"
metrics = ["vscope.*"]
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[[table]]
name = "host_metrics"
metrics = ["vscope.host.*"]
[[table]]
name = "filer_metrics"
metrics = ["vscope.filer.*"]
[[table]]
name = "vm_metrics_1h"
metrics = ["vscope.vm.*"]
downsample = "1h"
aggregates = ["avg", "min", "max", "p95", "count"]
[[table]]
name = "host_metrics_1h"
metrics = ["vscope.host.*"]
downsample = "1h"
aggregates = ["avg", "min", "max", "p95", "count"]
[sink]
url = {url}
partition_by = ["date"]
{rows}"#,
        start = stamp(START_MS),
        end = stamp(START_MS + days as i64 * DAY_MS),
        url = serde_json::to_string(&out.display().to_string())?,
    );
    Ok(vscope_etl::config::parse(&text, "report_data", &|_| None)?)
}

// ---------------------------------------------------------------------------------------------
// Inventory.

/// The inventory snapshot at the end of the period (every column of `vms`, `hosts`, `filers`),
/// its usage figures the series' values at that instant.
fn inventory(vms: usize, days: usize) -> Inventory {
    let snapshot_ms = START_MS + days as i64 * DAY_MS;
    let live = |c: Component, o: &Obj, metric: &str| {
        let names: &[&str] = if c == Component::Vm {
            &VM_METRICS
        } else {
            &HOST_METRICS
        };
        let m = names
            .iter()
            .position(|n| *n == metric)
            .expect("known metric");
        let v = Series::new(c, o, m, metric.ends_with(".perc")).at(days, 0, 1, 1.0);
        round2(v.max(0.0))
    };
    let vm_objs = vm_objects(vms);
    let host_objs = host_objects(vms);
    let cpu_num = |i: usize| 1i64 << (splitmix64(9 ^ ((i as u64) << 8)) % 4);
    let memory_mb = |i: usize| 2048i64 << (splitmix64(10 ^ ((i as u64) << 8)) % 4);
    let powered_off = |i: usize| u(8, i as u64) < 0.03;
    let windows = |i: usize| u(11, i as u64) < 0.2;
    let mut datacenters = Vec::new();
    for dc in 0..DATACENTERS {
        let datacenter = Datacenter {
            datacenter_id: dc as i64 + 1,
            name: dc_name(dc),
            description: Some(format!("datacenter {}", dc + 1)),
            commercial_name: Some("SDDC".into()),
            commercial_range_name: Some("2018v".into()),
            version: Some("7.0".into()),
        };
        let mut hosts: Vec<Host> = (host_objs.iter().filter(|h| h.dc() == dc))
            .map(|h| {
                let (cores, mhz, ram_gb) = (24i64, 2600i64, 384i64);
                let on_it: Vec<usize> = (0..vms).filter(|&i| host_of(vms, i) == h.index).collect();
                let cpu = live(Component::Host, h, "vscope.host.cpu.usage.perc");
                let mem = live(Component::Host, h, "vscope.host.mem.usage.perc");
                Host {
                    host_id: 100 + h.index as i64,
                    name: h.name.clone(),
                    profile: Some("2018v-hpc-96".into()),
                    profile_code: Some("hpc96".into()),
                    rack: Some(format!("R{}", 1 + h.index / 8)),
                    state: Some("delivered".into()),
                    billing_type: Some("monthly".into()),
                    cpu: Some(UnitAndValue {
                        unit: "GHz".into(),
                        value: (cores * mhz) as f64 / 1000.0,
                    }),
                    ram: Some(UnitAndValue {
                        unit: "GB".into(),
                        value: ram_gb,
                    }),
                    cluster_name: Some(format!("Cluster{}", dc + 1)),
                    connection_state: Some("connected".into()),
                    cpu_max: Some(cores * mhz),
                    cpu_max_core: Some(mhz),
                    cpu_num: Some(cores),
                    cpu_used: Some((cpu / 100.0 * (cores * mhz) as f64).round() as i64),
                    in_maintenance: Some(false),
                    memory_used: Some((mem / 100.0 * (ram_gb * 1024) as f64).round()),
                    parent_host_id: Some(0),
                    resource_name: Some(format!("{SERVICE}-host-{}", 100 + h.index)),
                    uptime: Some(86_400 * 30 + (snapshot_ms - START_MS) / 1000),
                    vm_total: Some(on_it.len() as i64),
                    vm_vcpu_total: Some(on_it.iter().map(|&i| cpu_num(i)).sum()),
                }
            })
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut vm_list: Vec<Vm> =
            (vm_objs.iter().filter(|v| v.dc() == dc))
                .map(|o| {
                    let i = o.index;
                    let off = powered_off(i);
                    // Live figures: the series' value now, nothing when powered off.
                    let m = |metric: &str| {
                        if off {
                            0.0
                        } else {
                            live(Component::Vm, o, metric)
                        }
                    };
                    let cpu_max = (cpu_num(i) * 2600) as f64;
                    let ready = m("vscope.vm.cpu.ready");
                    Vm {
                        vm_id: 1000 + i as i64,
                        mo_ref: o.name.clone(),
                        power_state: Some(if off { "poweredOff" } else { "poweredOn" }.into()),
                        name: Some(format!("app-{i:05}")),
                        host_name: Some(host_objs[host_of(vms, i)].name.clone()),
                        cluster_name: Some(format!("Cluster{}", dc + 1)),
                        folder_name: Some("vm".into()),
                        guest_os_family: Some(
                            if windows(i) {
                                "windowsGuest"
                            } else {
                                "linuxGuest"
                            }
                            .into(),
                        ),
                        license: Some(if windows(i) { "windows" } else { "linux" }.into()),
                        cpu_num: Some(cpu_num(i)),
                        cpu_max: Some(cpu_max),
                        cpu_used: Some(
                            (m("vscope.vm.cpu.usage.perc") / 100.0 * cpu_max).round() as i64
                        ),
                        cpu_ready: Some(ready),
                        cpu_ready_percent: Some(round2(ready / 20_000.0 * 100.0)),
                        memory_max: Some(memory_mb(i)),
                        memory_used: Some(
                            (m("vscope.vm.mem.usage.perc") / 100.0 * memory_mb(i) as f64).round()
                                as i64,
                        ),
                        memory_tps: Some("0".into()),
                        net_rx: Some(m("vscope.vm.net.rx")),
                        net_tx: Some(m("vscope.vm.net.tx")),
                        net_packet_rx: Some(round2(m("vscope.vm.net.rx") / 1.2)),
                        net_packet_tx: Some(round2(m("vscope.vm.net.tx") / 1.2)),
                        read_latency: Some(m("vscope.vm.disk.latency.read")),
                        write_latency: Some(m("vscope.vm.disk.latency.write")),
                        read_per_second: Some(m("vscope.vm.disk.io.read")),
                        write_per_second: Some(m("vscope.vm.disk.io.write")),
                        read_rate: Some(m("vscope.vm.disk.bandwidth.read")),
                        write_rate: Some(m("vscope.vm.disk.bandwidth.write")),
                        snapshot_num: Some(0),
                        vmware_tools: Some(if off { "toolsNotRunning" } else { "toolsOk" }.into()),
                        vmware_tools_version: Some("12352".into()),
                        role_ft: Some("none".into()),
                        state_ft: Some("notConfigured".into()),
                        filers: Some(vec![VmFiler {
                            name: Some(format!("pcc-{:06}", filer_of(i))),
                            committed: Some((memory_mb(i) / 1024 * 20) as f64),
                        }]),
                    }
                })
                .collect();
        vm_list.sort_by(|a, b| a.mo_ref.cmp(&b.mo_ref));
        let mut filers: Vec<Filer> = (filer_objects().into_iter().filter(|f| f.dc() == dc))
            .map(|f| {
                let used_gb = round2(filer_used_kb(f.index, days, 0) / 1_048_576.0);
                let size_gb = (FILER_TB * 1024) as f64;
                Filer {
                    filer_id: 500 + f.index as i64,
                    name: f.name.clone(),
                    full_profile: Some("3t-hybrid".into()),
                    profile: Some("3t".into()),
                    master: Some(format!("nas-{}-a", 500 + f.index)),
                    slave: Some(format!("nas-{}-b", 500 + f.index)),
                    is_managed_by_ovh: Some(true),
                    size: Some(UnitAndValue {
                        unit: "TB".into(),
                        value: FILER_TB,
                    }),
                    state: Some("delivered".into()),
                    active_node: Some("master".into()),
                    connection_state: Some("online".into()),
                    billing_type: Some("monthly".into()),
                    resource_name: Some(format!("{SERVICE}-filer-{}", 500 + f.index)),
                    space_free: Some(round2(size_gb - used_gb)),
                    space_provisioned: Some(round2(used_gb * 1.25)),
                    space_used: Some(used_gb),
                    vm_total: Some((0..vms).filter(|&i| filer_of(i) == f.index).count() as i64),
                }
            })
            .collect();
        filers.sort_by(|a, b| a.name.cmp(&b.name));
        datacenters.push(DatacenterInventory {
            datacenter,
            hosts,
            vms: vm_list,
            filers,
        });
    }
    Inventory {
        service_name: SERVICE.into(),
        snapshot_ms,
        datacenters,
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// What was written of one table.
#[derive(Debug, Default, Clone)]
struct Totals {
    files: usize,
    rows: u64,
    bytes: u64,
    seconds: f64,
}

/// Writes the dataset; returns the totals per table, in the order written.
fn generate(args: &Args, out: &Path, quiet: bool) -> Result<Vec<(String, Totals)>> {
    if args.vms == 0 || args.days == 0 {
        return Err("--vms and --days must be at least 1".into());
    }
    if args.raw_step == 0 || !86_400u32.is_multiple_of(args.raw_step) {
        return Err(format!("--raw-step {} does not divide a day", args.raw_step).into());
    }
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} is not empty: remove it first", out.display()).into());
    }
    let pipeline = pipeline(out, args.days, args.row_group_rows)?;
    let settings = vscope_etl::load::writer::FileSettings::of(&pipeline);
    let wanted: &[&str] = if args.rollup {
        &["vm_metrics_1h", "host_metrics_1h", "filer_metrics"]
    } else {
        &["vm_metrics", "host_metrics", "filer_metrics"]
    };
    let tables: Vec<Table> = wanted
        .iter()
        .map(|name| {
            let spec = (pipeline.tables.iter().find(|t| t.name == *name))
                .ok_or_else(|| format!("no table {name} in the pipeline"))?;
            Ok(Table::new(
                spec,
                &pipeline.sink.partition_by,
                args.vms,
                args.raw_step as usize,
            ))
        })
        .collect::<Result<_>>()?;
    let sink = Sink::open(&out.display().to_string())?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, args.days);
    let t0 = Instant::now();
    if !quiet {
        println!(
            "report_data: {} VMs, {} hosts, {FILERS} datastores, {} days from {}, {}, row groups of {} rows, {threads} threads -> {}",
            args.vms,
            host_count(args.vms),
            args.days,
            vscope_etl::load::partition::date_string(START_MS),
            if args.rollup {
                "1h rollups".to_string()
            } else {
                format!("raw every {} s", args.raw_step)
            },
            settings.row_group_rows,
            out.display()
        );
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let every = (args.days / 20).max(1);
    let worker = || -> Result<Vec<Totals>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut totals = vec![Totals::default(); tables.len()];
        while !failed.load(Ordering::Relaxed) {
            let day = next.fetch_add(1, Ordering::Relaxed);
            if day >= args.days {
                break;
            }
            for (table, total) in tables.iter().zip(&mut totals) {
                let t = Instant::now();
                let written = rt.block_on(table.write_day(&sink, &settings, day));
                let written = written.inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
                total.files += 1;
                total.rows += written.rows;
                total.bytes += written.bytes;
                total.seconds += t.elapsed().as_secs_f64();
            }
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if !quiet && (n.is_multiple_of(every) || n == args.days) {
                println!(
                    "  {n}/{} days written, {:.1} s",
                    args.days,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        Ok(totals)
    };
    let results: Vec<Result<Vec<Totals>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut totals = vec![Totals::default(); tables.len()];
    for r in results {
        for (sum, t) in totals.iter_mut().zip(r?) {
            sum.files += t.files;
            sum.rows += t.rows;
            sum.bytes += t.bytes;
            sum.seconds += t.seconds;
        }
    }
    let mut report: Vec<(String, Totals)> = (tables.iter().map(|t| t.spec.name.clone()))
        .zip(totals)
        .collect();
    // The inventory snapshot at the end of the period.
    let t = Instant::now();
    let inv = inventory(args.vms, args.days);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let files = rt.block_on(vscope_etl::ovh::snapshot::write(&sink, &inv, &settings))?;
    let seconds = t.elapsed().as_secs_f64() / files.len().max(1) as f64;
    for f in files {
        report.push((
            f.table.clone(),
            Totals {
                files: 1,
                rows: f.rows,
                bytes: f.bytes,
                seconds,
            },
        ));
    }
    // The staging folder the writer renamed every file out of.
    let _ = std::fs::remove_dir_all(out.join(&sink.staging_dir));
    if !quiet {
        println!(
            "{:<16} {:>6} {:>14} {:>12} {:>10}",
            "table", "files", "rows", "MB", "seconds"
        );
        for (name, t) in &report {
            println!(
                "{name:<16} {:>6} {:>14} {:>12.1} {:>10.1}",
                t.files,
                t.rows,
                t.bytes as f64 / 1e6,
                t.seconds
            );
        }
        println!(
            "(seconds per table: generating and writing its files, summed over the {threads} threads)"
        );
        let rows: u64 = report.iter().map(|(_, t)| t.rows).sum();
        println!(
            "total rows={rows} bytes={} seconds={:.1}",
            dir_bytes(out)?,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(report)
}

/// Bytes of the files below `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `cargo test --all-targets`: 40 VMs over 2 days, raw and rollup, small row groups; checks
/// the rows of every table and that the VM tables' row groups each hold one metric.
fn smoke_test() -> Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir()?;
    for rollup in [false, true] {
        let out = dir.path().join(if rollup { "rollup" } else { "raw" });
        let args = Args::parse_from([
            "report_data",
            "--vms",
            "40",
            "--days",
            "2",
            "--row-group-rows",
            "4096",
            "--threads",
            "2",
        ]);
        let args = Args { rollup, ..args };
        let report = generate(&args, &out, true)?;
        let per_day = if rollup { 24 } else { 288 };
        let rows = |name: &str| report.iter().find(|(n, _)| n == name).map(|(_, t)| t.rows);
        let suffix = if rollup { "_1h" } else { "" };
        assert_eq!(
            rows(&format!("vm_metrics{suffix}")),
            Some(40 * 11 * per_day * 2)
        );
        assert_eq!(
            rows(&format!("host_metrics{suffix}")),
            Some(4 * 2 * per_day * 2)
        );
        assert_eq!(rows("filer_metrics"), Some(4 * 24 * 2));
        assert_eq!(rows("vms"), Some(40));
        assert_eq!(rows("hosts"), Some(4));
        assert_eq!(rows("filers"), Some(4));
        let file = out.join(format!(
            "vm_metrics{suffix}/date=2025-11-02/part-20251102T000000Z-20251103T000000Z.parquet"
        ));
        let reader = SerializedFileReader::new(std::fs::File::open(&file)?)?;
        let meta = reader.metadata();
        let metric = meta.file_metadata().schema_descr().column(1);
        assert_eq!(metric.name(), "metric");
        for g in meta.row_groups() {
            let stats = g.column(1).statistics().ok_or("no metric statistics")?;
            assert_eq!(
                stats.min_bytes_opt(),
                stats.max_bytes_opt(),
                "{file:?}: a row group holds two metrics"
            );
        }
        // 40 VMs × 288 = 11,520 rows a metric: 4,096, 4,096, 3,328; rollups: 960 a metric.
        assert_eq!(meta.num_row_groups(), if rollup { 11 } else { 33 });
    }
    println!("report_data: smoke test passed (40 VMs, 2 days, raw and rollup)");
    Ok(())
}

fn main() -> Result<()> {
    // `cargo test --all-targets` runs this without `--bench`, maybe with test-harness flags.
    if !std::env::args().any(|a| a == "--bench") {
        return smoke_test();
    }
    let args = Args::parse();
    let out = args.out.clone().ok_or(
        "usage: cargo bench --bench report_data -- OUT --vms N --days D [--rollup] [--raw-step S]",
    )?;
    generate(&args, &out, false)?;
    Ok(())
}
