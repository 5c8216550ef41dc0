//! Declared output schemas (`schemas/*.json`) turned into Arrow schemas, and the check that a
//! batch matches its declared schema before anything is written.
//!
//! The JSON files are the contract analysts rely on (design §3); they are compiled into the
//! binary and the tests compare written Parquet files against them. Two families share the
//! format: the metric tables (`*_metrics.json`, and rollups derived from them) and the live
//! inventory snapshots (`filers.json`, `hosts.json`, `vms.json`, [`inventory_schema`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::catalogue::Component;
use crate::semantics::aggregator::Aggregator;

/// Name of the UTC time zone stored in `ts` columns.
pub const UTC: &str = "UTC";

const FILER_JSON: &str = include_str!("../../../schemas/filer_metrics.json");
const HOST_JSON: &str = include_str!("../../../schemas/host_metrics.json");
const VM_JSON: &str = include_str!("../../../schemas/vm_metrics.json");
const FILERS_JSON: &str = include_str!("../../../schemas/filers.json");
const HOSTS_JSON: &str = include_str!("../../../schemas/hosts.json");
const VMS_JSON: &str = include_str!("../../../schemas/vms.json");

/// The live inventory snapshot tables (design §3), one per component, in component order.
pub const INVENTORY_TABLES: [&str; 3] = ["filers", "hosts", "vms"];

/// One column of a declared table schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDecl {
    /// Column name.
    pub name: String,
    /// Declared type: `timestamp_ms_utc`, `utf8`, `float64`, `int64`, `bool`, `list_utf8` or
    /// `map_utf8_utf8`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether nulls are allowed.
    pub nullable: bool,
    /// What the column holds (documentation only).
    #[allow(dead_code)]
    doc: String,
}

/// A declared raw table (`schemas/<table>.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    /// Table name, e.g. `vm_metrics`.
    pub table: String,
    /// What the table holds.
    pub description: String,
    /// The component whose metrics feed this table.
    pub component: Component,
    /// Row order inside every file.
    pub sort_key: Vec<String>,
    /// Columns in file order.
    pub columns: Vec<ColumnDecl>,
}

impl TableDecl {
    /// The label columns (between `metric` and `value`), e.g. `datacenter`, `vm`.
    pub fn label_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !matches!(*n, "ts" | "metric" | "value" | "tags"))
            .collect()
    }
}

/// The declared raw table of a component.
pub fn raw_table_decl(component: Component) -> &'static TableDecl {
    static DECLS: OnceLock<HashMap<Component, TableDecl>> = OnceLock::new();
    let decls = DECLS.get_or_init(|| {
        [
            (Component::Filer, FILER_JSON),
            (Component::Host, HOST_JSON),
            (Component::Vm, VM_JSON),
        ]
        .into_iter()
        .map(|(c, text)| {
            let decl: TableDecl = serde_json::from_str(text)
                .expect("schemas/*_metrics.json are valid (checked by tests)");
            (c, decl)
        })
        .collect()
    });
    &decls[&component]
}

/// The declared inventory snapshot table `table` (`filers`, `hosts` or `vms`), or `None` for
/// another name.
pub fn inventory_table_decl(table: &str) -> Option<&'static TableDecl> {
    static DECLS: OnceLock<Vec<TableDecl>> = OnceLock::new();
    let decls = DECLS.get_or_init(|| {
        [FILERS_JSON, HOSTS_JSON, VMS_JSON]
            .into_iter()
            .map(|text| {
                serde_json::from_str(text)
                    .expect("schemas/{filers,hosts,vms}.json are valid (checked by tests)")
            })
            .collect()
    });
    decls.iter().find(|d| d.table == table)
}

/// The Arrow schema of an inventory snapshot table (`filers`, `hosts` or `vms`).
pub fn inventory_schema(table: &str) -> Option<SchemaRef> {
    inventory_table_decl(table).map(|decl| {
        Arc::new(Schema::new(
            decl.columns.iter().map(field).collect::<Vec<_>>(),
        ))
    })
}

/// The Arrow type of a declared column type name.
pub fn arrow_type(ty: &str) -> Option<DataType> {
    Some(match ty {
        "timestamp_ms_utc" => DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
        "utf8" => DataType::Utf8,
        "float64" => DataType::Float64,
        "int64" => DataType::Int64,
        "bool" => DataType::Boolean,
        // Arrow's default list item field (`item`, nullable), as `ListBuilder` produces it.
        "list_utf8" => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        "map_utf8_utf8" => tags_type(),
        _ => return None,
    })
}

/// `Map<Utf8, Utf8>` with the Parquet-spec field names (`key_value`, `key`, `value`), which
/// Spark, DuckDB and pyarrow all read as a map.
pub fn tags_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(tags_entry_fields()),
            false,
        )),
        false,
    )
}

/// The fields of one `tags` map entry.
pub fn tags_entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ])
}

fn field(col: &ColumnDecl) -> Field {
    let ty = arrow_type(&col.ty).unwrap_or_else(|| panic!("unknown declared type {}", col.ty));
    Field::new(&col.name, ty, col.nullable)
}

/// The Arrow schema of a component's raw table.
pub fn raw_schema(component: Component) -> SchemaRef {
    let decl = raw_table_decl(component);
    Arc::new(Schema::new(
        decl.columns.iter().map(field).collect::<Vec<_>>(),
    ))
}

/// The Arrow schema of a rollup table: the raw table's key columns (`ts` = bucket start), one
/// column per aggregate in the listed order (`count` is Int64, the others Float64), then `tags`.
pub fn rollup_schema(component: Component, aggregates: &[Aggregator]) -> SchemaRef {
    let decl = raw_table_decl(component);
    let mut fields: Vec<Field> = decl
        .columns
        .iter()
        .filter(|c| c.name != "value" && c.name != "tags")
        .map(field)
        .collect();
    for agg in aggregates {
        let ty = if *agg == Aggregator::Count {
            DataType::Int64
        } else {
            DataType::Float64
        };
        fields.push(Field::new(agg.name(), ty, *agg != Aggregator::Count));
    }
    let tags = decl
        .columns
        .iter()
        .find(|c| c.name == "tags")
        .expect("declared tags column");
    fields.push(field(tags));
    Arc::new(Schema::new(fields))
}

/// Checks that `actual` is exactly `declared` (names, types, nullability, order). The writer
/// calls this before writing a batch so a code change can never silently change the contract.
pub fn check_conforms(
    table: &str,
    declared: &Schema,
    actual: &Schema,
) -> Result<(), SchemaMismatch> {
    if declared.fields().len() != actual.fields().len() {
        return Err(SchemaMismatch {
            table: table.to_string(),
            detail: format!(
                "{} columns declared, batch has {}",
                declared.fields().len(),
                actual.fields().len()
            ),
        });
    }
    for (d, a) in declared.fields().iter().zip(actual.fields()) {
        if d.name() != a.name()
            || d.data_type() != a.data_type()
            || d.is_nullable() != a.is_nullable()
        {
            return Err(SchemaMismatch {
                table: table.to_string(),
                detail: format!(
                    "column declared as {} {} (nullable {}), batch has {} {} (nullable {})",
                    d.name(),
                    d.data_type(),
                    d.is_nullable(),
                    a.name(),
                    a.data_type(),
                    a.is_nullable()
                ),
            });
        }
    }
    Ok(())
}

/// A batch whose schema differs from the declared one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("batch for table '{table}' does not match its declared schema: {detail}")]
pub struct SchemaMismatch {
    /// The table being written.
    pub table: String,
    /// Which column differs and how.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_schemas_parse_and_have_the_contract_columns() {
        let vm = raw_schema(Component::Vm);
        let names: Vec<&str> = vm.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "metric", "datacenter", "vm", "value", "tags"]);
        let host = raw_schema(Component::Host);
        let names: Vec<&str> = host.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "ts",
                "metric",
                "datacenter",
                "host",
                "nicname",
                "value",
                "tags"
            ]
        );
        let filer = raw_schema(Component::Filer);
        let names: Vec<&str> = filer.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["ts", "metric", "datacenter", "datastore", "value", "tags"]
        );
        assert_eq!(
            vm.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(
            raw_table_decl(Component::Host).label_columns(),
            ["datacenter", "host", "nicname"]
        );
    }

    #[test]
    fn rollup_schema_orders_aggregates_as_listed() {
        let s = rollup_schema(
            Component::Vm,
            &[Aggregator::P95, Aggregator::Count, Aggregator::Avg],
        );
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "ts",
                "metric",
                "datacenter",
                "vm",
                "p95",
                "count",
                "avg",
                "tags"
            ]
        );
        assert_eq!(s.field(5).data_type(), &DataType::Int64);
    }

    #[test]
    fn rollup_json_lists_every_downsampling_function_and_its_type() {
        // schemas/rollup.json documents the rollup contract; it must not drift from the code.
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/rollup.json")).unwrap();
        let listed: Vec<&str> = doc["aggregates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let all: Vec<Aggregator> = Aggregator::ALL
            .into_iter()
            .filter(|a| *a != Aggregator::None)
            .collect();
        let names: Vec<&str> = all.iter().map(|a| a.name()).collect();
        assert_eq!(listed, names);
        let s = rollup_schema(Component::Filer, &all);
        for a in &all {
            let declared = doc["aggregate_types"]
                .get(a.name())
                .unwrap_or(&doc["aggregate_types"]["*"]);
            let want = match declared.as_str().unwrap() {
                "int64" => DataType::Int64,
                _ => DataType::Float64,
            };
            assert_eq!(
                s.field_with_name(a.name()).unwrap().data_type(),
                &want,
                "{a}"
            );
        }
    }

    #[test]
    fn inventory_schemas_parse_and_start_with_the_contract_columns() {
        for (table, component, id, label) in [
            ("filers", Component::Filer, "filer_id", "datastore"),
            ("hosts", Component::Host, "host_id", "host"),
            ("vms", Component::Vm, "vm_id", "vm"),
        ] {
            let decl = inventory_table_decl(table).unwrap();
            assert_eq!(decl.component, component);
            assert_eq!(decl.sort_key, ["datacenter", label]);
            let schema = inventory_schema(table).unwrap();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(
                names[..4],
                ["snapshot_ts", "datacenter", id, label],
                "{table}"
            );
            for f in &schema.fields()[..4] {
                assert!(!f.is_nullable(), "{table}.{}", f.name());
            }
            for c in &decl.columns {
                assert!(arrow_type(&c.ty).is_some(), "{table}.{}: {}", c.name, c.ty);
            }
        }
        assert!(inventory_table_decl("vm_metrics").is_none());
        let vms = inventory_schema("vms").unwrap();
        assert_eq!(
            vms.field_with_name("datastores").unwrap().data_type(),
            &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
        );
    }

    #[test]
    fn mismatch_names_the_column() {
        let a = raw_schema(Component::Vm);
        let b = raw_schema(Component::Filer);
        let err = check_conforms("vm_metrics", &a, &b).unwrap_err();
        assert!(err.to_string().contains("vm"), "{err}");
        assert!(check_conforms("vm_metrics", &a, &a).is_ok());
    }
}
