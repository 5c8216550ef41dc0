//! The S3 sink against a real S3-compatible server (moto on loopback): the pipeline writes the
//! dataset there, DuckDB reads it back through httpfs, nothing temporary stays behind, and two
//! overlapping runs cannot both write (the lease is a conditional put).

use std::process::{Command, Stdio};

use crate::common::*;

const SMALL_SIM: &str = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 1\nvms_per_datacenter = 3\nfilers_per_datacenter = 1";

#[test]
fn s3_sink_holds_exactly_what_the_simulator_served() {
    let moto = MotoServer::start("vscope");
    let dir = tempfile::tempdir().unwrap();
    let (start, end) = ("2026-11-01T22:00:00Z", "2026-11-02T02:00:00Z");
    let scope = format!("start = \"{start}\"\nend = \"{end}\"\nwindow = \"2h\"");
    let p = write_pipeline_with_sink(
        dir.path(),
        "s3run",
        SMALL_SIM,
        &scope,
        TABLES,
        &moto.sink_toml("exports/pcc"),
    );
    let out = run(&["run", p.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", describe(&out));

    let keys = moto.keys();
    assert!(
        keys.iter().any(|k| k == "exports/pcc/_state/s3run.json"),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("exports/pcc/_runs/")),
        "{keys:?}"
    );
    for k in &keys {
        let ok = k.ends_with(".parquet") && k.contains("/date=")
            || k.starts_with("exports/pcc/_state/") && k.ends_with(".json")
            || k.starts_with("exports/pcc/_runs/");
        assert!(ok, "unexpected object {k}: temporary or misplaced");
        assert!(!k.ends_with(".lease"), "the lease is released at the end");
    }

    let py = venv_python();
    let out = Command::new(&py)
        .arg(format!(
            "{}/tests/py/duckdb_facts.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!("s3://{}/exports/pcc", moto.bucket))
        .args(["vm_metrics", "host_metrics", "filer_metrics"])
        .env("S3_ENDPOINT", &moto.endpoint)
        .env("S3_KEY", "testing")
        .env("S3_SECRET", "testing")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cfg = sim_config(2, 1, 3, 1);
    for (table, prefix) in [
        ("vm_metrics", "vscope.vm."),
        ("host_metrics", "vscope.host."),
        ("filer_metrics", "vscope.filer."),
    ] {
        let expected = expected_rows(&cfg, prefix, ms(start), ms(end));
        assert_eq!(
            facts[table]["rows"].as_u64().unwrap() as usize,
            expected.len(),
            "{table} rows read from S3"
        );
        assert_eq!(facts[table]["duplicates"], 0);
        assert_eq!(
            facts[table]["dates"],
            serde_json::json!(["2026-11-01", "2026-11-02"])
        );
    }
}

#[test]
fn a_second_overlapping_run_refuses_to_start_and_the_first_completes() {
    let moto = MotoServer::start("leases");
    let dir = tempfile::tempdir().unwrap();
    // Slow enough to overlap: 2 requests per second over 24 units.
    let source = "url = \"sim\"\nrequests_per_second = 4\nconcurrency = 2\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 1\nfilers_per_datacenter = 1";
    let scope = "start = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-01T02:00:00Z\"\nwindow = \"1h\"";
    let tables = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.cpu.*\", \"vscope.vm.mem.*\", \"vscope.vm.net.*\"]";
    let p = write_pipeline_with_sink(
        dir.path(),
        "overlap",
        source,
        scope,
        tables,
        &moto.sink_toml("x"),
    );
    let first = bin()
        .args(["run", p.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lease.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !moto.keys().iter().any(|k| k.ends_with("overlap.lease")) {
        assert!(
            std::time::Instant::now() < deadline,
            "first run never took the lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = run(&["run", p.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another run of this pipeline is in progress"),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", describe(&first));
    assert!(
        !moto.keys().iter().any(|k| k.ends_with(".lease")),
        "lease released"
    );
    let manifests = moto.keys().iter().filter(|k| k.contains("/_runs/")).count();
    assert_eq!(manifests, 1, "the refused run wrote nothing");
}
