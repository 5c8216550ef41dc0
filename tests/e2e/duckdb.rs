//! DuckDB reads what we wrote, with `hive_partitioning = true` and no cleaning (issue: analysts).

use std::process::Command;

use crate::common::*;

fn python() -> String {
    std::env::var("VSCOPE_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn duckdb_reads_the_dataset_as_analysts_query_it() {
    let py = python();
    assert!(
        std::path::Path::new(&py).exists(),
        "{py} is missing: run scripts/test.sh (or scripts/setup-python.sh) to create the venv with DuckDB"
    );
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\n[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 2\nvms_per_datacenter = 4\nfilers_per_datacenter = 1";
    let start = "2026-11-01T20:00:00Z";
    let end = "2026-11-02T04:00:00Z";
    let p = write_pipeline(dir.path(), "duck", source, start, end, "4h", TABLES);
    let out = run(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let sink = dir.path().join("out");
    let out = Command::new(&py)
        .arg(format!(
            "{}/tests/py/duckdb_facts.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&sink)
        .args([
            "vm_metrics",
            "host_metrics",
            "filer_metrics",
            "vm_metrics_1h",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cfg = sim_config(2, 2, 4, 1);
    for (table, prefix) in [
        ("vm_metrics", "vscope.vm."),
        ("host_metrics", "vscope.host."),
        ("filer_metrics", "vscope.filer."),
    ] {
        let f = &facts[table];
        let expected = expected_rows(&cfg, prefix, ms(start), ms(end));
        assert_eq!(
            f["rows"].as_u64().unwrap() as usize,
            expected.len(),
            "{table} row count in DuckDB"
        );
        assert_eq!(f["duplicates"], 0, "{table}");
        assert_eq!(f["rows_in_wrong_date_partition"], 0, "{table}");
        assert_eq!(f["types"]["ts"], "TIMESTAMP WITH TIME ZONE", "{table}");
        assert_eq!(f["types"]["value"], "DOUBLE", "{table}");
        assert_eq!(f["types"]["date"], "DATE", "{table}");
        assert_eq!(f["types"]["tags"], "MAP(VARCHAR, VARCHAR)", "{table}");
        assert_eq!(
            f["dates"],
            serde_json::json!(["2026-11-01", "2026-11-02"]),
            "{table}"
        );
        assert_eq!(
            f["ts_min_ms"].as_i64().unwrap(),
            expected.iter().map(|r| r.1).min().unwrap()
        );
        assert_eq!(
            f["tag_keys"],
            serde_json::json!(["env", "servicename", "servicetype"]),
            "{table}"
        );
        // Per-metric counts and averages equal the simulator's.
        for (metric, got) in f["per_metric"].as_object().unwrap() {
            let vals: Vec<f64> = expected
                .iter()
                .filter(|r| &r.0.0 == metric)
                .map(|r| r.2.unwrap())
                .collect();
            assert_eq!(got[0].as_u64().unwrap() as usize, vals.len(), "{metric}");
            let avg = vals.iter().sum::<f64>() / vals.len() as f64;
            assert!(
                (got[1].as_f64().unwrap() - avg).abs() <= 1e-6 * avg.abs().max(1.0),
                "{metric} avg"
            );
        }
    }
    let roll = &facts["vm_metrics_1h"];
    assert_eq!(roll["types"]["count"], "BIGINT");
    assert_eq!(roll["types"]["p95"], "DOUBLE");
    assert_eq!(roll["duplicates"], 0);
}
