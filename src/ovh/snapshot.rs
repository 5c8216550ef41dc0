//! The inventory as snapshot tables `filers`, `hosts` and `vms` (design §3): Arrow batches that
//! match `schemas/{filers,hosts,vms}.json`, written through the same load path as the metrics
//! (`PartWriter`: ZSTD, statistics, atomic publication, schema check).
//!
//! Layout: `<table>/date=YYYY-MM-DD/part-<snapshot stamp>.parquet`, the date and stamp of the
//! snapshot time in UTC. Each snapshot adds a file (a snapshot taken in the same second replaces
//! it); a table with no object gets no file.
//!
//! The declared schema is the single source of truth for column order and types: each object
//! is turned into named cells, and [`build_batch`] checks names and types against the
//! declaration, so the code and the JSON cannot drift apart silently.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::record_batch::RecordBatch;

use super::inventory::Inventory;
use crate::load::Sink;
use crate::load::partition::date_string;
use crate::load::writer::{FileSettings, PartWriter, WriteError, WrittenFile, writer_properties};
use crate::schema::{INVENTORY_TABLES, SchemaMismatch, UTC, inventory_schema};
use crate::semantics::time::format_window_stamp;
use crate::transform::DAY_MS;

/// One typed value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// `timestamp_ms_utc`.
    Ts(i64),
    /// `utf8`.
    Str(Option<String>),
    /// `int64`.
    I64(Option<i64>),
    /// `float64`.
    F64(Option<f64>),
    /// `bool`.
    Bool(Option<bool>),
    /// `list_utf8`.
    List(Option<Vec<String>>),
}

impl Cell {
    fn type_name(&self) -> &'static str {
        match self {
            Cell::Ts(_) => "timestamp_ms_utc",
            Cell::Str(_) => "utf8",
            Cell::I64(_) => "int64",
            Cell::F64(_) => "float64",
            Cell::Bool(_) => "bool",
            Cell::List(_) => "list_utf8",
        }
    }
}

/// A row: `(column name, value)` in declared column order.
pub type Row = Vec<(&'static str, Cell)>;

fn s(v: &Option<String>) -> Cell {
    Cell::Str(v.clone())
}

/// The rows of table `table` (`filers`, `hosts`, `vms`), sorted by (datacenter, label) like the
/// inventory itself.
pub fn rows(inventory: &Inventory, table: &str) -> Vec<Row> {
    let ts = inventory.snapshot_ms;
    let mut out = Vec::new();
    for d in &inventory.datacenters {
        let dc = Cell::Str(Some(d.datacenter.name.clone()));
        let dc_id = Cell::I64(Some(d.datacenter.datacenter_id));
        match table {
            "filers" => {
                for f in &d.filers {
                    out.push(vec![
                        ("snapshot_ts", Cell::Ts(ts)),
                        ("datacenter", dc.clone()),
                        ("filer_id", Cell::I64(Some(f.filer_id))),
                        ("datastore", Cell::Str(Some(f.name.clone()))),
                        ("datacenter_id", dc_id.clone()),
                        ("full_profile", s(&f.full_profile)),
                        ("profile", s(&f.profile)),
                        ("master", s(&f.master)),
                        ("slave", s(&f.slave)),
                        ("is_managed_by_ovh", Cell::Bool(f.is_managed_by_ovh)),
                        ("size_value", Cell::I64(f.size.as_ref().map(|x| x.value))),
                        (
                            "size_unit",
                            Cell::Str(f.size.as_ref().map(|x| x.unit.clone())),
                        ),
                        ("state", s(&f.state)),
                        ("active_node", s(&f.active_node)),
                        ("connection_state", s(&f.connection_state)),
                        ("billing_type", s(&f.billing_type)),
                        ("resource_name", s(&f.resource_name)),
                        ("space_free", Cell::F64(f.space_free)),
                        ("space_provisioned", Cell::F64(f.space_provisioned)),
                        ("space_used", Cell::F64(f.space_used)),
                        ("vm_total", Cell::I64(f.vm_total)),
                    ]);
                }
            }
            "hosts" => {
                for h in &d.hosts {
                    out.push(vec![
                        ("snapshot_ts", Cell::Ts(ts)),
                        ("datacenter", dc.clone()),
                        ("host_id", Cell::I64(Some(h.host_id))),
                        ("host", Cell::Str(Some(h.name.clone()))),
                        ("datacenter_id", dc_id.clone()),
                        ("profile", s(&h.profile)),
                        ("profile_code", s(&h.profile_code)),
                        ("rack", s(&h.rack)),
                        ("state", s(&h.state)),
                        ("billing_type", s(&h.billing_type)),
                        ("cpu_value", Cell::F64(h.cpu.as_ref().map(|x| x.value))),
                        (
                            "cpu_unit",
                            Cell::Str(h.cpu.as_ref().map(|x| x.unit.clone())),
                        ),
                        ("ram_value", Cell::I64(h.ram.as_ref().map(|x| x.value))),
                        (
                            "ram_unit",
                            Cell::Str(h.ram.as_ref().map(|x| x.unit.clone())),
                        ),
                        ("cluster_name", s(&h.cluster_name)),
                        ("connection_state", s(&h.connection_state)),
                        ("cpu_max", Cell::I64(h.cpu_max)),
                        ("cpu_max_core", Cell::I64(h.cpu_max_core)),
                        ("cpu_num", Cell::I64(h.cpu_num)),
                        ("cpu_used", Cell::I64(h.cpu_used)),
                        ("in_maintenance", Cell::Bool(h.in_maintenance)),
                        ("memory_used", Cell::F64(h.memory_used)),
                        ("parent_host_id", Cell::I64(h.parent_host_id)),
                        ("resource_name", s(&h.resource_name)),
                        ("uptime", Cell::I64(h.uptime)),
                        ("vm_total", Cell::I64(h.vm_total)),
                        ("vm_vcpu_total", Cell::I64(h.vm_vcpu_total)),
                    ]);
                }
            }
            "vms" => {
                for v in &d.vms {
                    let datastores = v
                        .filers
                        .as_ref()
                        .map(|fs| fs.iter().filter_map(|f| f.name.clone()).collect::<Vec<_>>());
                    out.push(vec![
                        ("snapshot_ts", Cell::Ts(ts)),
                        ("datacenter", dc.clone()),
                        ("vm_id", Cell::I64(Some(v.vm_id))),
                        ("vm", Cell::Str(Some(v.mo_ref.clone()))),
                        ("name", s(&v.name)),
                        ("datacenter_id", dc_id.clone()),
                        ("power_state", s(&v.power_state)),
                        ("host", s(&v.host_name)),
                        ("cluster_name", s(&v.cluster_name)),
                        ("folder_name", s(&v.folder_name)),
                        ("guest_os_family", s(&v.guest_os_family)),
                        ("license", s(&v.license)),
                        ("cpu_num", Cell::I64(v.cpu_num)),
                        ("cpu_max", Cell::F64(v.cpu_max)),
                        ("cpu_used", Cell::I64(v.cpu_used)),
                        ("cpu_ready", Cell::F64(v.cpu_ready)),
                        ("cpu_ready_percent", Cell::F64(v.cpu_ready_percent)),
                        ("memory_max", Cell::I64(v.memory_max)),
                        ("memory_used", Cell::I64(v.memory_used)),
                        ("memory_tps", s(&v.memory_tps)),
                        ("net_rx", Cell::F64(v.net_rx)),
                        ("net_tx", Cell::F64(v.net_tx)),
                        ("net_packet_rx", Cell::F64(v.net_packet_rx)),
                        ("net_packet_tx", Cell::F64(v.net_packet_tx)),
                        ("read_latency", Cell::F64(v.read_latency)),
                        ("write_latency", Cell::F64(v.write_latency)),
                        ("read_per_second", Cell::F64(v.read_per_second)),
                        ("write_per_second", Cell::F64(v.write_per_second)),
                        ("read_rate", Cell::F64(v.read_rate)),
                        ("write_rate", Cell::F64(v.write_rate)),
                        ("snapshot_num", Cell::I64(v.snapshot_num)),
                        ("vmware_tools", s(&v.vmware_tools)),
                        ("vmware_tools_version", s(&v.vmware_tools_version)),
                        ("role_ft", s(&v.role_ft)),
                        ("state_ft", s(&v.state_ft)),
                        ("datastores", Cell::List(datastores)),
                    ]);
                }
            }
            _ => {}
        }
    }
    out
}

/// Builds the batch of `table` from rows, checking every cell's name and type against the
/// declared schema (and, through Arrow, that non-null columns hold no null).
pub fn build_batch(table: &str, rows: &[Row]) -> Result<RecordBatch, WriteError> {
    let mismatch = |detail: String| {
        WriteError::Schema(SchemaMismatch {
            table: table.to_string(),
            detail,
        })
    };
    let schema = inventory_schema(table)
        .ok_or_else(|| mismatch(format!("'{table}' is not an inventory table")))?;
    let decl = crate::schema::inventory_table_decl(table)
        .ok_or_else(|| mismatch(format!("'{table}' is not an inventory table")))?;
    for row in rows {
        if row.len() != decl.columns.len() {
            return Err(mismatch(format!(
                "{} columns declared, row has {}",
                decl.columns.len(),
                row.len()
            )));
        }
        for ((name, cell), col) in row.iter().zip(&decl.columns) {
            if *name != col.name || cell.type_name() != col.ty {
                return Err(mismatch(format!(
                    "column declared as {} {}, row has {} {}",
                    col.name,
                    col.ty,
                    name,
                    cell.type_name()
                )));
            }
        }
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(decl.columns.len());
    for (i, col) in decl.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| &r[i].1);
        let array: ArrayRef = match col.ty.as_str() {
            "timestamp_ms_utc" => Arc::new(
                TimestampMillisecondArray::from(
                    cells
                        .map(|c| match c {
                            Cell::Ts(t) => *t,
                            _ => 0,
                        })
                        .collect::<Vec<_>>(),
                )
                .with_timezone(UTC),
            ),
            "utf8" => Arc::new(StringArray::from(
                cells
                    .map(|c| match c {
                        Cell::Str(v) => v.clone(),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            "int64" => Arc::new(Int64Array::from(
                cells
                    .map(|c| match c {
                        Cell::I64(v) => *v,
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            "float64" => Arc::new(Float64Array::from(
                cells
                    .map(|c| match c {
                        Cell::F64(v) => *v,
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            "bool" => Arc::new(BooleanArray::from(
                cells
                    .map(|c| match c {
                        Cell::Bool(v) => *v,
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            "list_utf8" => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for c in cells {
                    match c {
                        Cell::List(Some(items)) => {
                            for item in items {
                                b.values().append_value(item);
                            }
                            b.append(true);
                        }
                        _ => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            other => return Err(mismatch(format!("unsupported declared type {other}"))),
        };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// The key of a snapshot file: `<table>/date=YYYY-MM-DD/part-<YYYYMMDDTHHMMSSZ>.parquet`.
pub fn snapshot_path(table: &str, snapshot_ms: i64) -> String {
    let day = snapshot_ms.div_euclid(DAY_MS) * DAY_MS;
    format!(
        "{table}/date={}/part-{}.parquet",
        date_string(day),
        format_window_stamp(snapshot_ms)
    )
}

/// Writes the three snapshot tables of `inventory` to `sink`; tables without objects get no
/// file. A failure aborts the file being written (nothing partial becomes visible); files of
/// tables already written stay, since each is a complete snapshot of its table.
pub async fn write(
    sink: &Sink,
    inventory: &Inventory,
    settings: &FileSettings,
) -> Result<Vec<WrittenFile>, WriteError> {
    let mut files = Vec::new();
    for table in INVENTORY_TABLES {
        let rows = rows(inventory, table);
        if rows.is_empty() {
            continue;
        }
        let batch = build_batch(table, &rows)?;
        let schema = batch.schema();
        let props = writer_properties(
            &schema,
            settings,
            table,
            (inventory.snapshot_ms, inventory.snapshot_ms),
        );
        let mut writer = PartWriter::create(
            sink,
            snapshot_path(table, inventory.snapshot_ms),
            table,
            schema,
            props,
        )?;
        if let Err(e) = writer.write(&batch).await {
            writer.abort().await;
            return Err(e);
        }
        files.push(writer.finish().await?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovh::inventory::DatacenterInventory;
    use crate::ovh::model::Datacenter;

    fn inventory() -> Inventory {
        let vm = |id: i64, mo: &str, filers: serde_json::Value| {
            serde_json::from_value(serde_json::json!({
                "vmId": id, "moRef": mo, "name": format!("web-{id}"), "powerState": "poweredOn",
                "cpuNum": 2, "cpuMax": 4600.0, "filers": filers}))
            .unwrap()
        };
        Inventory {
            service_name: "pcc".into(),
            snapshot_ms: 1_793_491_200_000 + 3_723_000,
            datacenters: vec![DatacenterInventory {
                datacenter: Datacenter {
                    datacenter_id: 869,
                    name: "pcc_datacenter869".into(),
                    description: None,
                    commercial_name: None,
                    commercial_range_name: None,
                    version: None,
                },
                hosts: vec![
                    serde_json::from_value(
                        serde_json::json!({"hostId": 1, "name": "172.17.86.51", "inMaintenance": false,
                            "cpu": {"unit": "GHz", "value": 35.2}, "ram": {"unit": "GB", "value": 256}}),
                    )
                    .unwrap(),
                ],
                vms: vec![
                    vm(7, "vm-01254", serde_json::json!([{"name": "pcc-000443"}])),
                    vm(8, "vm-01257", serde_json::Value::Null),
                ],
                filers: Vec::new(),
            }],
        }
    }

    #[test]
    fn batches_match_the_declared_schemas() {
        let inv = inventory();
        for table in INVENTORY_TABLES {
            let rows = rows(&inv, table);
            let batch = build_batch(table, &rows).unwrap();
            let declared = inventory_schema(table).unwrap();
            crate::schema::check_conforms(table, &declared, &batch.schema()).unwrap();
            assert_eq!(batch.num_rows(), rows.len());
        }
        let vms = build_batch("vms", &rows(&inv, "vms")).unwrap();
        assert_eq!(vms.num_rows(), 2);
        let ds = vms
            .column_by_name("datastores")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap();
        assert_eq!(ds.value_length(0), 1);
        assert!(arrow::array::Array::is_null(ds, 1));
    }

    #[test]
    fn drift_between_code_and_schema_is_an_error() {
        let inv = inventory();
        let mut rows = rows(&inv, "hosts");
        rows[0][3].0 = "hostname";
        let err = build_batch("hosts", &rows).unwrap_err().to_string();
        assert!(err.contains("hostname"), "{err}");
        let mut rows = super::rows(&inv, "hosts");
        rows[0][3].1 = Cell::Str(None);
        assert!(
            build_batch("hosts", &rows).is_err(),
            "null in a non-null column"
        );
    }

    #[test]
    fn snapshot_paths_follow_the_layout() {
        assert_eq!(
            snapshot_path("vms", 1_793_491_200_000 + 3_723_000),
            "vms/date=2026-11-01/part-20261101T010203Z.parquet"
        );
    }

    #[tokio::test]
    async fn writes_one_file_per_non_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
        let settings = FileSettings {
            pipeline: "p".into(),
            compression: crate::config::PageCompression::Zstd(1),
            row_group_rows: 1 << 20,
            value_page_bytes: crate::config::VALUE_PAGE_BYTES,
        };
        let files = write(&sink, &inventory(), &settings).await.unwrap();
        let tables: Vec<&str> = files.iter().map(|f| f.table.as_str()).collect();
        assert_eq!(
            tables,
            ["hosts", "vms"],
            "no file for a table without objects"
        );
        for f in &files {
            assert!(dir.path().join(&f.path).exists(), "{}", f.path);
        }
    }
}
