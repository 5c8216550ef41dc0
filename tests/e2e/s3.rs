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

    let facts = s3_facts(
        &moto,
        "exports/pcc",
        &["vm_metrics", "host_metrics", "filer_metrics"],
    );
    let tables = [
        ("vm_metrics", "vscope.vm."),
        ("host_metrics", "vscope.host."),
        ("filer_metrics", "vscope.filer."),
    ];
    assert_rows_as_served(&facts, &tables, start, end);
    for (table, _) in tables {
        assert_eq!(
            facts[table]["dates"],
            serde_json::json!(["2026-11-01", "2026-11-02"])
        );
    }
    // `status` reads the same ledger from S3: both 2h windows committed, the lease free.
    let status = run(&["status", p.to_str().unwrap(), "--json"]);
    assert!(status.status.success(), "{}", describe(&status));
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (&s["committed"], &s["missing"]),
        (&2.into(), &0.into()),
        "{s}"
    );
    assert_eq!(s["watermark"], end, "{s}");
    assert!(s["lease"].is_null(), "{s}");
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

/// Case 4 and 14 on S3: a window whose answers are too large is split, each part completed
/// under `_tmp/` as it comes and copied to its key with the rest of the window, so DuckDB reads
/// exactly the simulator's rows from the parts and nothing stays under `_tmp/`. A rerun that
/// takes the answers whole removes the parts (found by listing the partitions).
#[test]
fn split_answers_are_published_as_parts_on_s3_and_replaced_by_a_whole_rerun() {
    let moto = MotoServer::start("parts");
    let dir = tempfile::tempdir().unwrap();
    let (start, end) = ("2026-11-01T22:00:00Z", "2026-11-02T02:00:00Z");
    let scope = format!("start = \"{start}\"\nend = \"{end}\"\nwindow = \"2h\"");
    let tables = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n\
                  [[table]]\nname = \"host_metrics\"\nmetrics = [\"vscope.host.*\"]";
    let run_with = |source: &str| {
        let p = write_pipeline_with_sink(
            dir.path(),
            "parts",
            source,
            &scope,
            tables,
            &moto.sink_toml("p"),
        );
        let out = run(&[
            "run",
            p.to_str().unwrap(),
            "--json",
            "--force",
            "--start",
            start,
        ]);
        assert!(out.status.success(), "{}", describe(&out));
        out
    };
    let tables_served = [
        ("vm_metrics", "vscope.vm."),
        ("host_metrics", "vscope.host."),
    ];
    let check_rows = || {
        let facts = s3_facts(&moto, "p", &["vm_metrics", "host_metrics"]);
        assert_rows_as_served(&facts, &tables_served, start, end);
    };
    let parts = |keys: &[String]| keys.iter().filter(|k| k.ends_with("of2.parquet")).count();

    let split = format!("{SMALL_SIM}\nfaults = [\"fetch-limit:1h\"]");
    let out = run_with(&split);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["splits"], summary["units_done"], "{summary}");
    let keys = moto.keys();
    assert!(parts(&keys) > 0, "{keys:?}");
    for k in &keys {
        assert!(!k.starts_with("p/_tmp/"), "staged copy left: {k}");
        if k.ends_with(".parquet") {
            assert!(k.ends_with("of2.parquet"), "every unit was split: {k}");
        }
    }
    assert!(moto.pending_uploads("p/").is_empty());
    check_rows();

    run_with(SMALL_SIM);
    let keys = moto.keys();
    assert_eq!(parts(&keys), 0, "the parts were removed: {keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("p/_tmp/")), "{keys:?}");
    check_rows();
}

/// Case 21, S3 side: a server that refuses every request with `RequestTimeTooSkewed` (this
/// machine's clock is off) makes the run fail at once with a message that names the clock,
/// after one request per operation (no retry storm), with nothing written.
#[test]
fn a_skewed_clock_refused_by_s3_fails_fast_and_names_the_clock() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    counted.fetch_add(1, Ordering::SeqCst);
                    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message><RequestTime>20261123T090000Z</RequestTime><ServerTime>2026-11-23T09:20:00Z</ServerTime><MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>";
                    let reply = format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "url = \"s3://skewed/p\"\n[sink.s3]\nendpoint = \"http://{addr}\"\nregion = \"us-east-1\"\n\
         allow_http = true\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n"
    );
    let scope = "start = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-01T02:00:00Z\"\nwindow = \"1h\"";
    let tables = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.cpu.*\"]";
    let p = write_pipeline_with_sink(dir.path(), "skew", SMALL_SIM, scope, tables, &sink);
    let t0 = std::time::Instant::now();
    let out = run(&["run", p.to_str().unwrap()]);
    let elapsed = t0.elapsed();
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RequestTimeTooSkewed") && err.contains("synchronise the clock"),
        "{err}"
    );
    let n = requests.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&n),
        "{n} requests: refused requests are not retried"
    );
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
}

/// What DuckDB (httpfs) reads of `tables` under `s3://bucket/prefix` (`tests/py/duckdb_facts.py`).
fn s3_facts(moto: &MotoServer, prefix: &str, tables: &[&str]) -> serde_json::Value {
    let out = Command::new(venv_python())
        .arg(format!(
            "{}/tests/py/duckdb_facts.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!("s3://{}/{prefix}", moto.bucket))
        .args(tables)
        .env("S3_ENDPOINT", &moto.endpoint)
        .env("S3_KEY", "testing")
        .env("S3_SECRET", "testing")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each table holds as many rows as the simulator (`sim_config(2, 1, 3, 1)`) served for its
/// metric prefix over `[start, end)`, none twice.
fn assert_rows_as_served(
    facts: &serde_json::Value,
    tables: &[(&str, &str)],
    start: &str,
    end: &str,
) {
    let cfg = sim_config(2, 1, 3, 1);
    for (table, prefix) in tables {
        let expected = expected_rows(&cfg, prefix, ms(start), ms(end));
        assert_eq!(
            facts[*table]["rows"].as_u64().unwrap() as usize,
            expected.len(),
            "{table} rows read from S3"
        );
        assert_eq!(facts[*table]["duplicates"], 0, "{table}");
    }
}

/// Issue 19, the heartbeat on a real S3 server: renewals are conditional updates (the e-tag of
/// the last write), so a 600 ms lease is kept for three times its TTL while another run is
/// refused; once another run has rewritten it (a takeover after expiry), the next beat's
/// conditional update fails and `check` says the lease is lost; release then leaves the
/// other run's lease alone.
#[test]
fn the_lease_heartbeat_renews_on_s3_and_sees_a_takeover() {
    use vscope_etl::load::lease::{Lease, LeaseError};
    let moto = MotoServer::start("heartbeat");
    let sink = moto.sink("hb");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let keeper = Lease::acquire(&sink, "p", "kept", 600)
            .await
            .unwrap()
            .keep();
        tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
        keeper.check().unwrap();
        let refused = Lease::acquire(&sink, "p", "other", 600).await.unwrap_err();
        assert!(matches!(refused, LeaseError::Held { .. }), "{refused}");
        // Another run's lease replaces it, as a takeover does.
        let path = Lease::path("p");
        let mut record: serde_json::Value =
            serde_json::from_slice(&sink.get_opt(&path).await.unwrap().unwrap()).unwrap();
        record["run_id"] = "usurper".into();
        sink.put(&path, serde_json::to_vec(&record).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let lost = keeper.check().unwrap_err();
        assert!(
            matches!(lost, LeaseError::Lost { .. }),
            "the conditional renewal failed: {lost}"
        );
        keeper.release().await.unwrap();
        let left: serde_json::Value =
            serde_json::from_slice(&sink.get_opt(&path).await.unwrap().unwrap()).unwrap();
        assert_eq!(left["run_id"], "usurper", "not ours: left to its holder");
    });
}
