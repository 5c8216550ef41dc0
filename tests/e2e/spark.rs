//! Spark reads the dataset as analysts do (`spark.read.parquet`), with the types the contract
//! promises: `ts` timestamp, `tags` map, partition column `date` discovered; and the same rows
//! from the reader layout of large PCCs (`partition_by = ["metric", "date"]`, lz4 pages of
//! 64 KiB, issue 21) and from compacted month files (`partition_by = ["month"]`).

use std::process::Command;

use crate::common::*;

#[test]
fn spark_reads_raw_and_rollup_tables() {
    let py = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let source = "url = \"sim\"\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 2\nfilers_per_datacenter = 1";
    let (start, end) = ("2026-11-01T22:00:00Z", "2026-11-02T02:00:00Z");
    let p = write_pipeline(dir.path(), "spark", source, start, end, "1h", TABLES);
    let out = run(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let sink = dir.path().join("out");
    let by_metric = dir.path().join("by_metric");
    std::fs::create_dir(&by_metric).unwrap();
    let p2 = write_pipeline(&by_metric, "spark", source, start, end, "1h", TABLES);
    use_reader_layout(&p2);
    let out = run(&["run", p2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    // Month files, compacted (the range ends on 11-02: November is compacted as far as it goes).
    let by_month = dir.path().join("by_month");
    std::fs::create_dir(&by_month).unwrap();
    let p3 = write_pipeline(&by_month, "spark", source, start, end, "1h", TABLES);
    use_month_layout(&p3, false);
    let out = run(&["run", p3.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&[
        "compact",
        p3.to_str().unwrap(),
        "--until",
        "2026-12-01",
        "--json",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let compacted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        compacted["periods"],
        serde_json::json!(["2026-11"]),
        "{compacted}"
    );
    let out = Command::new(&py)
        .arg(format!(
            "{}/tests/py/spark_check.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&sink)
        .args(["vm_metrics", "vm_metrics_1h"])
        .arg(by_metric.join("out"))
        .arg(by_month.join("out"))
        .env("PYSPARK_PYTHON", &py)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("SPARK_FACTS "))
        .unwrap_or_else(|| panic!("{}", describe(&out)));
    let facts: serde_json::Value = serde_json::from_str(&line["SPARK_FACTS ".len()..]).unwrap();

    for table in ["vm_metrics", "vm_metrics_1h"] {
        assert_eq!(
            facts[format!("{table}@1")],
            facts[table],
            "{table}: the metric-partitioned lz4 layout reads as the same rows"
        );
        // Month files: the same rows, days and first row; `month` (a string) for `date`.
        let (mut month, mut day) = (facts[format!("{table}@2")].clone(), facts[table].clone());
        assert_eq!(month["months"], serde_json::json!(["2026-11"]), "{table}");
        assert_eq!(month["types"]["month"], "string", "{table}");
        for facts in [&mut month, &mut day] {
            let o = facts.as_object_mut().unwrap();
            o.remove("months");
            let types = o["types"].as_object_mut().unwrap();
            types.remove("month");
            types.remove("date");
        }
        assert_eq!(month, day, "{table}: month files read as the same rows");
    }
    let raw = &facts["vm_metrics"];
    assert_eq!(raw["types"]["ts"], "timestamp");
    assert_eq!(raw["types"]["value"], "double");
    assert_eq!(raw["types"]["tags"], "map<string,string>");
    assert_eq!(
        raw["types"]["date"], "date",
        "partition column discovered as a date"
    );
    assert_eq!(
        raw["dates"],
        serde_json::json!(["2026-11-01", "2026-11-02"])
    );
    let cfg = sim_config(1, 1, 2, 1);
    let mut expected = expected_rows(&cfg, "vscope.vm.", ms(start), ms(end));
    assert_eq!(raw["rows"].as_u64().unwrap() as usize, expected.len());
    // The first row in (metric, datacenter, vm, ts) order, value for value.
    expected.sort_by(|a, b| {
        (&a.0.0, a.0.1.get("datacenter"), a.0.1.get("vm"), a.1).cmp(&(
            &b.0.0,
            b.0.1.get("datacenter"),
            b.0.1.get("vm"),
            b.1,
        ))
    });
    let first = &raw["first_row"];
    let e = &expected[0];
    assert_eq!(first["metric"], e.0.0.as_str());
    assert_eq!(first["vm"], e.0.1["vm"].as_str());
    assert_eq!(first["ts_ms"].as_i64().unwrap(), e.1);
    assert_eq!(first["value"].as_f64().unwrap(), e.2.unwrap());
    assert_eq!(first["env"], "prod");

    let roll = &facts["vm_metrics_1h"];
    assert_eq!(roll["types"]["count"], "bigint");
    assert_eq!(roll["types"]["ts"], "timestamp");
    assert_eq!(roll["types"]["date"], "date");
    let first_bucket: Vec<f64> = expected
        .iter()
        .filter(|r| r.0 == e.0 && r.1 < e.1 - e.1.rem_euclid(3_600_000) + 3_600_000)
        .map(|r| r.2.unwrap())
        .collect();
    assert_eq!(
        roll["first_row"]["count"].as_u64().unwrap() as usize,
        first_bucket.len()
    );
    let avg = first_bucket.iter().sum::<f64>() / first_bucket.len() as f64;
    assert!((roll["first_row"]["avg"].as_f64().unwrap() - avg).abs() < 1e-9 * avg.abs().max(1.0));
}
