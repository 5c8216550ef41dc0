//! `source.query_downsample = true` (issue 3): rollup tables filled from the server's own
//! downsampling give the same files as the client-side rollup of the raw points, on both
//! dialects, without a single raw query; an aggregate the server computes differently is
//! refused before any request.

use crate::common::*;

const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T06:00:00Z";

fn rollup_table(aggregates: &str) -> String {
    format!(
        "[[table]]\nname = \"vm_metrics_1h\"\nmetrics = [\"vscope.vm.*\"]\ndownsample = \"1h\"\naggregates = [{aggregates}]\n"
    )
}

fn run_json(pipeline: &std::path::Path) -> serde_json::Value {
    let out = run(&["run", pipeline.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn server_side_rollups_equal_client_side_rollups_in_both_dialects() {
    for (dialect, aggregates) in [
        (
            "opentsdb",
            r#""avg", "min", "max", "sum", "count", "first", "last", "dev", "p50", "p95", "mimmax", "median", "diff", "ep95r7""#,
        ),
        (
            "ovh",
            r#""avg", "min", "max", "sum", "count", "first", "last", "zimsum", "mimmin", "mimmax""#,
        ),
    ] {
        let mut datasets = Vec::new();
        let mut requests: Vec<(u64, u64)> = Vec::new();
        for server_side in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let source = format!(
                "url = \"sim\"\ndialect = \"{dialect}\"\nquery_downsample = {server_side}\n[source.sim]\ndialect = \"{dialect}\"\ndatacenters = 2\nvms_per_datacenter = 3\nhosts_per_datacenter = 1"
            );
            // One name for both runs: it is recorded in every file.
            let pipeline = write_pipeline(
                dir.path(),
                "sside",
                &source,
                START,
                END,
                "3h",
                &rollup_table(aggregates),
            );
            let summary = run_json(&pipeline);
            assert_eq!(summary["retries"], 0);
            requests.push((
                summary["requests"].as_u64().unwrap(),
                summary["units_planned"].as_u64().unwrap(),
            ));
            let files = dataset(&dir.path().join("out"), &["vm_metrics_1h"]);
            assert!(!files.is_empty(), "{dialect}: files written");
            datasets.push(files);
        }
        assert_eq!(
            datasets[0].keys().collect::<Vec<_>>(),
            datasets[1].keys().collect::<Vec<_>>(),
            "{dialect}: same files"
        );
        for (path, bytes) in &datasets[0] {
            let a = read_rows(bytes);
            let b = read_rows(&datasets[1][path]);
            assert_eq!(a.len(), b.len(), "{dialect} {path}: row count");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.0, y.0, "{dialect} {path}: row keys");
                for (u, v) in x.1.iter().zip(&y.1) {
                    match (u, v) {
                        (Some(u), Some(v)) => assert!(
                            (u - v).abs() <= 1e-9 * u.abs().max(1.0),
                            "{dialect} {path} {:?}: client {u} != server {v}",
                            x.0
                        ),
                        _ => assert_eq!(u, v, "{dialect} {path} {:?}", x.0),
                    }
                }
            }
        }
        // Client side: one raw query per unit (metric, datacenter, window); server side: one
        // per aggregate instead, and no raw one. Discovery requests are the same in both.
        let aggregates = aggregates.split(',').count() as u64;
        let (client, units) = requests[0];
        assert_eq!(units, requests[1].1);
        assert_eq!(
            requests[1].0 - client,
            units * (aggregates - 1),
            "{dialect}: one request per aggregate and unit, no raw query ({requests:?})"
        );
    }
}

/// A rollup row: (metric, vm, ts) and every aggregate column as f64.
type RollupRow = ((String, String, i64), Vec<Option<f64>>);

/// Rows of a rollup file.
fn read_rows(bytes: &[u8]) -> Vec<RollupRow> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::copy_from_slice(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ts = batch
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let metric = batch.column_by_name("metric").unwrap().as_string::<i32>();
        let vm = batch.column_by_name("vm").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            let mut values = Vec::new();
            for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
                match f.data_type() {
                    DataType::Float64 => {
                        let c = col.as_primitive::<Float64Type>();
                        values.push(c.is_valid(i).then(|| c.value(i)));
                    }
                    DataType::Int64 => {
                        values.push(Some(col.as_primitive::<Int64Type>().value(i) as f64))
                    }
                    _ => {}
                }
            }
            rows.push((
                (
                    metric.value(i).to_string(),
                    vm.value(i).to_string(),
                    ts.value(i),
                ),
                values,
            ));
        }
    }
    rows
}

#[test]
fn an_aggregate_the_ovh_server_computes_otherwise_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\ndialect = \"ovh\"\nquery_downsample = true";
    let pipeline = write_pipeline(
        dir.path(),
        "refused",
        source,
        START,
        END,
        "3h",
        &rollup_table(r#""avg", "p95""#),
    );
    let out = run(&["run", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "source.query_downsample",
        "vm_metrics_1h",
        "p95",
        "nearest rank",
        "query_downsample = false",
    ] {
        assert!(err.contains(needle), "error names {needle}: {err}");
    }
    assert!(!dir.path().join("out").exists(), "nothing written");
}
