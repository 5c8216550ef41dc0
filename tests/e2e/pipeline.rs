//! End-to-end runs of `vscope-etl run` against the simulator: every point lands once, in the
//! declared schema, sorted; rollups equal an independent computation; reruns are identical.

use std::collections::{BTreeMap, HashSet};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
use vscope_etl::semantics::aggregator::Aggregator;

use crate::common::*;

const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T06:00:00Z";

fn run_ok(pipeline: &std::path::Path) -> serde_json::Value {
    let out = run(&["run", pipeline.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary is JSON ({e}): {}", describe(&out)))
}

/// Declared columns of `schemas/<table>.json`, read from disk (the contract file itself).
fn declared_columns(table: &str) -> Vec<(String, String, bool)> {
    let path = format!("{}/schemas/{table}.json", env!("CARGO_MANIFEST_DIR"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
                c["nullable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some(tz))
            if tz.as_ref() == "UTC" =>
        {
            "timestamp_ms_utc".into()
        }
        DataType::Utf8 => "utf8".into(),
        DataType::Float64 => "float64".into(),
        DataType::Int64 => "int64".into(),
        DataType::Map(f, false) => match f.data_type() {
            DataType::Struct(kv)
                if kv.len() == 2
                    && kv[0].data_type() == &DataType::Utf8
                    && kv[1].data_type() == &DataType::Utf8 =>
            {
                "map_utf8_utf8".into()
            }
            other => format!("map of {other}"),
        },
        other => other.to_string(),
    }
}

#[test]
fn raw_tables_hold_exactly_the_points_the_simulator_stores() {
    let sim = SimProcess::start(&["--dialect", "ovh", "--token", "read-token-1"]);
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"{}\"\ntoken = \"read-token-1\"\nrequests_per_second = 0",
        sim.url
    );
    let pipeline = write_pipeline(dir.path(), "raw", &source, START, END, "2h", TABLES);
    let summary = run_ok(&pipeline);
    let cfg = sim_config(2, 3, 12, 2);
    let out = dir.path().join("out");
    let mut total_rows = 0u64;
    for (table, prefix) in [
        ("vm_metrics", "vscope.vm."),
        ("host_metrics", "vscope.host."),
        ("filer_metrics", "vscope.filer."),
    ] {
        let files = parquet_files(&out, table);
        assert_eq!(
            files.len(),
            3,
            "one file per 2h window of one date in {table}: {files:?}"
        );
        let declared = declared_columns(table);
        let mut rows = Vec::new();
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with("part-20261101T") && name.ends_with(".parquet"),
                "{name}"
            );
            assert!(
                f.parent()
                    .unwrap()
                    .ends_with(format!("{table}/date=2026-11-01")),
                "{f:?}"
            );
            for batch in read_file(f) {
                let schema = batch.schema();
                let got: Vec<(String, String, bool)> = schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), type_name(f.data_type()), f.is_nullable()))
                    .collect();
                assert_eq!(
                    got, declared,
                    "{table} schema differs from schemas/{table}.json"
                );
                let file_rows = raw_rows(&batch);
                // Sorted by (metric, labels..., ts) inside each file.
                let label_names: Vec<String> = declared[2..declared.len() - 2]
                    .iter()
                    .map(|c| c.0.clone())
                    .collect();
                let key = |r: &RawRow| {
                    let labels: Vec<Option<String>> =
                        label_names.iter().map(|l| r.0.1.get(l).cloned()).collect();
                    (r.0.0.clone(), labels, r.1)
                };
                assert!(
                    file_rows.windows(2).all(|w| key(&w[0]) < key(&w[1])),
                    "{f:?} rows are not sorted and unique"
                );
                rows.extend(file_rows);
            }
        }
        let expected = expected_rows(&cfg, prefix, ms(START), ms(END));
        assert!(!expected.is_empty());
        let unique: HashSet<(String, BTreeMap<String, String>, i64)> = rows
            .iter()
            .map(|r| (r.0.0.clone(), r.0.1.clone(), r.1))
            .collect();
        assert_eq!(
            unique.len(),
            rows.len(),
            "duplicate (series, ts) in {table}"
        );
        let mut rows_sorted = rows.clone();
        rows_sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut expected_sorted = expected.clone();
        expected_sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            rows_sorted.len(),
            expected_sorted.len(),
            "{table}: row count differs from the simulator's points"
        );
        assert!(
            rows_sorted == expected_sorted,
            "{table}: rows differ from the simulator's points"
        );
        total_rows += rows.len() as u64;
    }
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["windows_committed"], 3);
    assert_eq!(
        summary["points"].as_u64().unwrap(),
        total_rows,
        "summary points = raw rows"
    );
    assert!(out.join("_state/raw.json").exists());
    let manifest = out.join(summary["manifest"].as_str().unwrap());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(m["failures"].as_array().unwrap().len(), 0);
    assert_eq!(m["files"].as_array().unwrap().len(), 12);
}

#[test]
fn rollups_equal_an_independent_computation_from_the_raw_points() {
    let aggs = [
        "avg", "min", "max", "sum", "count", "first", "last", "dev", "p50", "p95", "p999",
    ];
    rollups_match_the_raw_points(TABLES, &aggs);
}

#[test]
fn rollups_of_every_other_opentsdb_function_are_named_as_written() {
    // The names OpenTSDB users copy from their queries: the group-by variants (sum, min and
    // max within one series) and the functions Erlenmeyer lacks, each its own column.
    let aggs = [
        "zimsum",
        "pfsum",
        "mimmin",
        "mimmax",
        "median",
        "mult",
        "diff",
        "squareSum",
        "ep50r3",
        "ep95r7",
        "ep999r3",
        "count",
    ];
    let list: Vec<String> = aggs.iter().map(|a| format!("\"{a}\"")).collect();
    let table = format!(
        "[[table]]\nname = \"vm_metrics_1h\"\nmetrics = [\"vscope.vm.*\"]\ndownsample = \"1h\"\naggregates = [{}]\n",
        list.join(", ")
    );
    rollups_match_the_raw_points(&table, &aggs);
}

/// Runs `tables` (with a `vm_metrics_1h` rollup listing `aggs`) on a small simulated PCC and
/// checks every row of every aggregate column against [`Aggregator::aggregate`] of the raw
/// points of its (series, hour), and the columns' names and types against the declared schema.
fn rollups_match_the_raw_points(tables: &str, aggs: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 3\nfilers_per_datacenter = 1";
    let pipeline = write_pipeline(dir.path(), "roll", source, START, END, "3h", tables);
    run_ok(&pipeline);
    let cfg = sim_config(1, 1, 3, 1);
    let raw = expected_rows(&cfg, "vscope.vm.", ms(START), ms(END));
    // Independent computation: group raw points by (series, hour) and aggregate each bucket.
    let mut buckets: BTreeMap<(String, BTreeMap<String, String>, i64), Vec<f64>> = BTreeMap::new();
    for ((metric, tags), ts, v) in &raw {
        buckets
            .entry((metric.clone(), tags.clone(), ts - ts.rem_euclid(3_600_000)))
            .or_default()
            .push(v.unwrap());
    }
    let parsed: Vec<Aggregator> = aggs.iter().map(|a| a.parse().unwrap()).collect();
    let declared = vscope_etl::schema::rollup_schema(vscope_etl::catalogue::Component::Vm, &parsed);
    let mut seen = 0;
    for f in parquet_files(&dir.path().join("out"), "vm_metrics_1h") {
        for batch in read_file(&f) {
            vscope_etl::schema::check_conforms("vm_metrics_1h", &declared, &batch.schema())
                .unwrap();
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            let metric = batch.column_by_name("metric").unwrap().as_string::<i32>();
            let vm = batch.column_by_name("vm").unwrap().as_string::<i32>();
            for i in 0..batch.num_rows() {
                let (key, values) = buckets
                    .iter()
                    .find(|((m, t, b), _)| {
                        m == metric.value(i)
                            && t.get("vm").map(String::as_str) == Some(vm.value(i))
                            && *b == ts.value(i)
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "rollup row without raw points: {} {} {}",
                            metric.value(i),
                            vm.value(i),
                            ts.value(i)
                        )
                    });
                for (name, agg) in aggs.iter().zip(&parsed) {
                    let expected = agg.aggregate(values).unwrap();
                    let col = batch.column_by_name(name).unwrap();
                    let got = if *name == "count" {
                        col.as_primitive::<Int64Type>().value(i) as f64
                    } else {
                        col.as_primitive::<Float64Type>().value(i)
                    };
                    // Equal infinities (a long product) compare equal, not by difference.
                    assert!(
                        got == expected || (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                        "{name} of {key:?}: {got} != {expected}"
                    );
                }
                seen += 1;
            }
        }
    }
    assert_eq!(
        seen,
        buckets.len(),
        "one rollup row per non-empty (series, hour)"
    );
}

#[test]
fn rerunning_a_range_rewrites_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\n[source.sim]\ndatacenters = 1\nvms_per_datacenter = 4";
    let pipeline = write_pipeline(dir.path(), "rerun", source, START, END, "2h", TABLES);
    let snapshot = |root: &std::path::Path| {
        dataset(
            root,
            &[
                "vm_metrics",
                "host_metrics",
                "filer_metrics",
                "vm_metrics_1h",
            ],
        )
    };
    run_ok(&pipeline);
    let first = snapshot(&dir.path().join("out"));
    assert_eq!(first.len(), 12);
    run_ok(&pipeline);
    let second = snapshot(&dir.path().join("out"));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>(),
        "same files"
    );
    assert!(first == second, "a rerun must rewrite byte-identical files");
    let runs = std::fs::read_dir(dir.path().join("out/_runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 2, "one manifest per run");
}

#[test]
fn both_dialects_produce_the_same_dataset() {
    let mut contents = Vec::new();
    for dialect in ["ovh", "opentsdb"] {
        let dir = tempfile::tempdir().unwrap();
        let source = format!(
            "url = \"sim\"\n[source.sim]\ndialect = \"{dialect}\"\ndatacenters = 2\nvms_per_datacenter = 2\nhosts_per_datacenter = 1"
        );
        let pipeline = write_pipeline(
            dir.path(),
            "dialects",
            &source,
            START,
            "2026-11-01T02:00:00Z",
            "1h",
            TABLES,
        );
        run_ok(&pipeline);
        let root = dir.path().join("out");
        let files = dataset(
            &root,
            &[
                "vm_metrics",
                "host_metrics",
                "filer_metrics",
                "vm_metrics_1h",
            ],
        );
        assert!(!files.is_empty());
        contents.push(files);
    }
    assert!(
        contents[0] == contents[1],
        "ovh and opentsdb dialects must give byte-identical files"
    );
}

#[test]
fn a_window_across_midnight_writes_one_file_per_date() {
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 1\nfilers_per_datacenter = 1\nstep = \"600s\"";
    // A 2-day window: [2026-11-01, 2026-11-03) on the 2-day grid since the epoch.
    let pipeline = write_pipeline(
        dir.path(),
        "midnight",
        source,
        "2026-11-02T12:00:00Z",
        "2026-11-02T13:00:00Z",
        "2d",
        TABLES,
    );
    run_ok(&pipeline);
    let files = parquet_files(&dir.path().join("out"), "vm_metrics");
    let dates: Vec<String> = files
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(dates, ["date=2026-11-01", "date=2026-11-02"]);
    for f in &files {
        assert!(
            f.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("part-20261101T000000Z-20261103T000000Z")
        );
        let date = &f.parent().unwrap().file_name().unwrap().to_str().unwrap()[5..];
        for batch in read_file(f) {
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            for t in ts.values() {
                let d = chrono::DateTime::from_timestamp_millis(*t)
                    .unwrap()
                    .format("%Y-%m-%d")
                    .to_string();
                assert_eq!(d, date, "row in the wrong date partition");
            }
        }
    }
}

/// gzip (`source.gzip`, on by default; the simulator answers gzip to requests that accept it
/// where the real server does: OpenTSDB's own server, not OVH's Erlenmeyer): the run manifest
/// records `bytes_on_wire` well under `bytes_received` (the decoded JSON); with gzip off on
/// either side (`source.gzip = false`, a server that ignores `Accept-Encoding`, or the `ovh`
/// dialect, whose Erlenmeyer answers plain) the two are equal. The `--json` summary says the
/// same, and the files are byte-identical in all four runs.
#[test]
fn gzip_cuts_the_bytes_on_the_wire_and_changes_no_data() {
    let tables = [
        "vm_metrics",
        "host_metrics",
        "filer_metrics",
        "vm_metrics_1h",
    ];
    let mut datasets = Vec::new();
    for (case, dialect, extra) in [
        ("gzip", "opentsdb", ""),
        ("client-off", "opentsdb", "gzip = false\n"),
        ("server-off", "opentsdb", "[source.sim]\ngzip = false\n"),
        ("erlenmeyer", "ovh", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let source = format!(
            // A fixed dialect: no /api/version 404 (an error page counts on the wire only).
            "url = \"sim\"\ndialect = \"{dialect}\"\n{extra}{}dialect = \"{dialect}\"\n\
             datacenters = 1\nvms_per_datacenter = 4",
            if extra.contains("[source.sim]") {
                ""
            } else {
                "[source.sim]\n"
            }
        );
        let pipeline = write_pipeline(dir.path(), "gzip", &source, START, END, "2h", TABLES);
        let summary = run_ok(&pipeline);
        let root = dir.path().join("out");
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join(summary["manifest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let received = manifest["bytes_received"].as_u64().unwrap();
        let wire = manifest["bytes_on_wire"].as_u64().unwrap();
        assert_eq!(summary["bytes_received"], received, "{case}");
        assert_eq!(summary["bytes_on_wire"], wire, "{case}");
        assert!(received > 100_000, "{case}: {received} bytes received");
        if case == "gzip" {
            assert!(
                wire * 2 < received,
                "{case}: {wire} bytes on the wire for {received} decoded"
            );
        } else {
            assert_eq!(wire, received, "{case}");
        }
        let files = dataset(&root, &tables);
        assert_eq!(files.len(), 12, "{case}");
        datasets.push(files);
    }
    assert!(
        datasets.iter().all(|d| *d == datasets[0]),
        "gzip must not change a byte of the data"
    );
}
