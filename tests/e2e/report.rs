//! `vscope-etl report` (issue 8) on a dataset the simulator produced: every number of the JSON
//! output equals the same statistic computed independently in DuckDB SQL on the same Parquet
//! (tests/py/report_check.py), the other formats are written, the forecast uses the inventory
//! capacity and the simulator's known growth, and bad input fails clearly.

use std::path::Path;
use std::process::Command;

use vscope_etl::sim::Pcc;

use crate::common::*;

const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-02T00:00:00Z";
const KB_PER_GB: f64 = 1024.0 * 1024.0;

/// Raw tables, a VM rollup (the VM section reads it) and a host rollup left out (the host
/// section reads raw): both code paths are checked.
fn dataset(dir: &Path) -> std::path::PathBuf {
    dataset_in(dir, Layout::Date)
}

/// The layouts the report must read alike.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// The default, `["date"]`.
    Date,
    /// The reader layout of large PCCs ([`use_reader_layout`]).
    Reader,
    /// Compacted month files ([`use_month_layout`], `["metric", "month"]`).
    Month,
}

/// [`dataset`], in `layout`.
fn dataset_in(dir: &Path, layout: Layout) -> std::path::PathBuf {
    let source = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 2\nvms_per_datacenter = 4\nfilers_per_datacenter = 1\n[source.ovh]\nservice_name = \"pcc-37-187-228-180\"";
    let p = write_pipeline(dir, "report", source, START, END, "6h", TABLES);
    match layout {
        Layout::Date => {}
        Layout::Reader => use_reader_layout(&p),
        Layout::Month => use_month_layout(&p, true),
    }
    let out = run(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    if layout == Layout::Month {
        let merged = compact(&p, &["--until", "2026-12-01"]);
        assert_eq!(
            merged["periods"],
            serde_json::json!(["2026-11"]),
            "{merged}"
        );
    }
    let out = run(&["inventory", p.to_str().unwrap(), "--now", END]);
    assert!(out.status.success(), "{}", describe(&out));
    dir.join("out")
}

fn report(sink: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "report",
        "--data",
        sink.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", describe(&o));
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn duckdb_check(sink: &Path, json: &Path) -> serde_json::Value {
    let out = Command::new(venv_python())
        .arg(format!(
            "{}/tests/py/report_check.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(sink)
        .arg(json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_number_of_the_report_matches_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dataset(dir.path());
    let out = dir.path().join("report");
    // Thresholds chosen so that every list has members on this synthetic PCC.
    let j = report(
        &sink,
        &out,
        &[
            "--format",
            "json",
            "--threshold",
            "50",
            "--over-cpu",
            "35",
            "--over-ram",
            "45",
            "--ready-ms",
            "150",
            "--idle-cpu",
            "30",
            "--idle-net",
            "1e12",
        ],
    );
    let t = &j["tables"];
    assert_eq!(j["period"]["from"], START);
    assert_eq!(j["period"]["to"], END);
    assert_eq!(t["host_usage"]["source"], "host_metrics");
    assert_eq!(t["vm_usage"]["source"], "vm_metrics_1h", "rollup preferred");
    assert_eq!(t["host_usage"]["rows"].as_array().unwrap().len(), 4);
    assert_eq!(t["vm_usage"]["rows"].as_array().unwrap().len(), 8);
    assert_eq!(t["datastore_forecast"]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(t["time_remaining"]["rows"].as_array().unwrap().len(), 4);
    assert_eq!(t["headroom_n1"]["rows"].as_array().unwrap().len(), 4);
    assert_eq!(
        t["datastore_time_remaining"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        t["rightsizing_summary"]["rows"].as_array().unwrap().len(),
        2
    );
    for list in [
        "vm_over_provisioned",
        "vm_under_provisioned",
        "rightsizing",
        "reclaimable",
    ] {
        assert!(
            !t[list]["rows"].as_array().unwrap().is_empty(),
            "{list} is empty: the check would prove little"
        );
    }
    assert!(
        t["host_usage"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["cpu_hours_above"].as_f64().unwrap() > 0.0
                || r["ram_hours_above"].as_f64().unwrap() > 0.0),
        "no host above 50 %: hours_above untested"
    );
    let facts = duckdb_check(&sink, &out.join("report.json"));
    assert_eq!(facts["error_count"], 0, "{facts}");
    assert!(facts["checked"].as_u64().unwrap() > 500, "{facts}");

    // Rightsizing on the peak, and the raw tables below.
    let out_peak = dir.path().join("report-peak");
    let j = report(
        &sink,
        &out_peak,
        &[
            "--format",
            "json",
            "--rightsize-on",
            "peak",
            "--usable-cpu",
            "70",
        ],
    );
    assert!(j["tables"]["rightsizing"]["rows"][0]["cpu_peak"].is_number());
    let facts = duckdb_check(&sink, &out_peak.join("report.json"));
    assert_eq!(facts["error_count"], 0, "{facts}");

    // The same on the raw VM table (--raw): exact percentiles of every point.
    let out_raw = dir.path().join("report-raw");
    let j = report(&sink, &out_raw, &["--format", "json", "--raw"]);
    assert_eq!(j["tables"]["vm_usage"]["source"], "vm_metrics");
    let facts = duckdb_check(&sink, &out_raw.join("report.json"));
    assert_eq!(facts["error_count"], 0, "{facts}");

    // A sub-period: only its points count (date partition pruning and ts filter).
    let out_sub = dir.path().join("report-sub");
    let j = report(
        &sink,
        &out_sub,
        &[
            "--format",
            "json",
            "--from",
            "2026-11-01T06:00:00Z",
            "--to",
            "2026-11-01T12:00:00Z",
        ],
    );
    assert_eq!(j["period"]["from"], "2026-11-01T06:00:00Z");
    let facts = duckdb_check(&sink, &out_sub.join("report.json"));
    assert_eq!(facts["error_count"], 0, "{facts}");
}

#[test]
fn forecast_uses_inventory_capacity_and_the_known_growth() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dataset(dir.path());
    let out = dir.path().join("report");
    let j = report(&sink, &out, &["--format", "all"]);
    for f in [
        "report.html",
        "report.md",
        "report.json",
        "host_usage.csv",
        "datastore_forecast.csv",
        "completeness.csv",
        "findings.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 8, "a chart per section");
    assert!(html.contains("time (UTC)") && html.contains("used space growth (GB)"));
    // The capacity charts: history, trend, shaded band, usable capacity, period end.
    assert!(html.contains("CPU and RAM demand, trend and 95 % band"));
    assert!(html.contains("fill-opacity=\"0.18\"") && html.contains("usable 80 %"));
    assert!(html.contains("period end"));
    for external in ["<script", "<link", " src=", "<img"] {
        assert!(!html.contains(external), "self-contained: {external}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Datastores") && md.contains("| datacenter | datastore |"));

    let cfg = sim_config(2, 2, 4, 1);
    let pcc = Pcc::new(&cfg);
    for row in j["tables"]["datastore_forecast"]["rows"]
        .as_array()
        .unwrap()
    {
        let ds = row["datastore"].as_str().unwrap();
        let index = pcc
            .series()
            .iter()
            .position(|s| {
                s.metric == "vscope.filer.datastore.diskspace.used"
                    && s.tags.get("datastore").map(String::as_str) == Some(ds)
            })
            .unwrap();
        let cap_gb = (pcc.filer_capacity_kb(index).unwrap() / KB_PER_GB).round();
        assert_eq!(row["capacity_source"], "inventory");
        assert_eq!(row["capacity"].as_f64().unwrap(), cap_gb, "{ds}");
        let slope_gb_day = pcc.growth_kb_per_sec(index).unwrap() * 86_400.0 / KB_PER_GB;
        let got = row["slope"].as_f64().unwrap();
        assert!(
            (got - slope_gb_day).abs() < 0.02 * slope_gb_day,
            "{ds}: slope {got} GB/day, simulator {slope_gb_day}"
        );
        assert!(row["r2"].as_f64().unwrap() > 0.9, "{row}");
        assert!(row["days_until_full"].as_f64().unwrap() > 1000.0, "{row}");
    }
    // A capacity below the used space: already full, and a critical finding.
    let out2 = dir.path().join("full");
    let j = report(&sink, &out2, &["--format", "json", "--capacity", "1GB"]);
    for row in j["tables"]["datastore_forecast"]["rows"]
        .as_array()
        .unwrap()
    {
        assert_eq!(row["forecast"], "already full");
        assert_eq!(row["capacity_source"], "--capacity");
    }
    assert_eq!(j["tables"]["findings"]["rows"][0]["severity"], "critical");
}

/// Time remaining of the datastores follows the simulator's known growth: with a usable
/// capacity set 30 days of growth above a datastore's last p95, the forecast says about 30 days
/// and the band holds it. Without a `vms` inventory snapshot, rightsizing says it needs one.
#[test]
fn time_remaining_follows_the_simulated_growth() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dataset(dir.path());
    let j = report(&sink, &dir.path().join("r1"), &["--format", "json"]);
    let row = &j["tables"]["datastore_time_remaining"]["rows"][0];
    let ds = row["datastore"].as_str().unwrap();
    let pcc = Pcc::new(&sim_config(2, 2, 4, 1));
    let index = pcc
        .series()
        .iter()
        .position(|s| {
            s.metric == "vscope.filer.datastore.diskspace.used"
                && s.tags.get("datastore").map(String::as_str) == Some(ds)
        })
        .unwrap();
    let slope = pcc.growth_kb_per_sec(index).unwrap() * 86_400.0 / KB_PER_GB;
    let got = row["slope"].as_f64().unwrap();
    assert!(
        (got - slope).abs() < 0.05 * slope,
        "slope {got}, simulator {slope}"
    );
    // Usable = 90 % of the capacity = last p95 + 30 days of the simulator's growth.
    let usable_gb = row["last_p95"].as_f64().unwrap() + 30.0 * slope;
    let capacity = format!("{}KB", (usable_gb / 0.9 * KB_PER_GB).round());
    let j = report(
        &sink,
        &dir.path().join("r2"),
        &["--format", "json", "--capacity", &capacity],
    );
    let row = &j["tables"]["datastore_time_remaining"]["rows"][0];
    assert_eq!(row["datastore"], ds);
    assert_eq!(row["status"], "in_days", "{row}");
    let days = row["days_remaining"].as_f64().unwrap();
    assert!((days - 30.0).abs() < 3.0, "{row}");
    let truth = "2026-12-02"; // END + 30 days
    let (early, late) = (
        row["earliest_date"].as_str().unwrap(),
        row["latest_date"].as_str().unwrap_or("9999-12-31"),
    );
    assert!(early <= truth && truth <= late, "{row}");
    let facts = duckdb_check(&sink, &dir.path().join("r2/report.json"));
    assert_eq!(facts["error_count"], 0, "{facts}");

    // The same sink without its vms inventory table.
    std::fs::remove_dir_all(sink.join("vms")).unwrap();
    let out = dir.path().join("r3");
    let j = report(&sink, &out, &["--format", "json,md"]);
    assert!(
        j["tables"]["rightsizing"]["rows"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        j["tables"]["rightsizing"]["source"],
        serde_json::Value::Null
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("Recommendations need a vms inventory snapshot"),
        "{md}"
    );
}

/// The report reads the S3 sink a pipeline wrote (sink and credentials from the pipeline file)
/// and gives the same tables as on a local copy of the same data.
/// polars (the report's reader) reads the metric-partitioned lz4 layout and compacted month
/// files as the default layout: the same report, number for number; and DuckDB, reading the
/// same files, agrees with it.
#[test]
fn the_report_is_the_same_on_the_reader_layout_and_on_month_files() {
    let dir = tempfile::tempdir().unwrap();
    let by_date = dir.path().join("date");
    std::fs::create_dir(&by_date).unwrap();
    let a = report(
        &dataset_in(&by_date, Layout::Date),
        &by_date.join("r"),
        &["--format", "json"],
    );
    assert!(
        a["tables"]["vm_usage"]["rows"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    for (layout, folder) in [
        (Layout::Reader, "/date="),
        (Layout::Month, "/month=2026-11/"),
    ] {
        let root = dir.path().join(format!("{layout:?}"));
        std::fs::create_dir(&root).unwrap();
        let sink = dataset_in(&root, layout);
        let files = parquet_files(&sink, "vm_metrics");
        assert!(
            files.iter().all(|f| {
                let f = f.to_string_lossy();
                f.contains("/metric=") && f.contains(folder)
            }),
            "{layout:?}: {files:?}"
        );
        let b = report(&sink, &root.join("r"), &["--format", "json"]);
        let facts = duckdb_check(&sink, &root.join("r").join("report.json"));
        assert_eq!(facts["error_count"], 0, "{layout:?}: {facts}");
        assert!(facts["checked"].as_u64().unwrap() > 100, "{facts}");
        assert_eq!(a["period"], b["period"], "{layout:?}");
        let tables = a["tables"].as_object().unwrap();
        assert_eq!(tables.len(), b["tables"].as_object().unwrap().len());
        for (name, table) in tables {
            same_numbers(table, &b["tables"][name], &format!("{layout:?}: {name}"));
        }
    }
}

/// `a` and `b` are the same JSON, numbers equal to 1e-9 relative: polars sums a column in
/// the order its files come, which the partitioning changes (the last bits of an average), and
/// a forecast divides by a fitted slope, which amplifies them (a datastore 800,000 days from
/// full differed by 8e-12 between daily and month files). A point missing or counted twice
/// moves an average of these few thousand points by about 1e-4.
fn same_numbers(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                "{path}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same_numbers(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{path}"
            );
            for (k, x) in x {
                same_numbers(x, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn report_reads_the_s3_sink_of_a_pipeline() {
    let moto = MotoServer::start("reports");
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 2\nvms_per_datacenter = 3\nfilers_per_datacenter = 1";
    let scope = "start = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-01T06:00:00Z\"\nwindow = \"6h\"";
    let s3 = write_pipeline_with_sink(
        dir.path(),
        "s3rep",
        source,
        scope,
        TABLES,
        &moto.sink_toml("data"),
    );
    let out = run(&["run", s3.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let local_sink = dir.path().join("local");
    let local = write_pipeline_with_sink(
        dir.path(),
        "localrep",
        source,
        scope,
        TABLES,
        &format!("url = \"{}\"", local_sink.display()),
    );
    let out = run(&["run", local.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));

    let from_s3 = dir.path().join("r-s3");
    let o = run(&[
        "report",
        "--pipeline",
        s3.to_str().unwrap(),
        "--out",
        from_s3.to_str().unwrap(),
        "--format",
        "json",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-11-01T06:00:00Z",
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from_s3.join("report.json")).unwrap()).unwrap();
    let b = report(
        &local_sink,
        &dir.path().join("r-local"),
        &[
            "--format",
            "json",
            "--from",
            "2026-11-01T00:00:00Z",
            "--to",
            "2026-11-01T06:00:00Z",
        ],
    );
    assert!(
        a["parameters"]["dataset"]
            .as_str()
            .unwrap()
            .starts_with("s3://reports/data")
    );
    assert_eq!(a["tables"], b["tables"]);
    assert_eq!(a["tables"]["vm_usage"]["rows"].as_array().unwrap().len(), 3);
}

#[test]
fn report_fails_clearly_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = run(&["report", "--data", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a directory"));
    let o = run(&["report", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no vScope tables"),
        "{}",
        describe(&o)
    );
    let o = run(&["report", "--data", ".", "--format", "pdf"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["report"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--data"));
}
