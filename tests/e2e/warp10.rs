//! `source.protocol = "warp10"`: the same pipeline read through Warp 10's own API
//! (`/api/v0/fetch`, `/api/v0/find`) gives the same files as through OpenTSDB's, and Warp's
//! failures (refused token, fetch limit, 429/503, cut bodies) end or recover like theirs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use crate::common::*;

const NOW: &str = "2026-11-03T00:00:00Z";
const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T06:00:00Z";
/// Every pipeline has this name: it is recorded in the files, and datasets are compared.
const NAME: &str = "warp";

/// `pipelines/demo.toml` with `source.protocol` set and its sink in `dir`.
fn demo_with(dir: &Path, protocol: &str) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml"))
        .unwrap();
    let sink = dir.join("out");
    let text = demo
        .replacen(
            "url = \"sim\"",
            &format!("url = \"sim\"\nprotocol = \"{protocol}\""),
            1,
        )
        .replacen(
            "url = \"./out\"",
            &format!("url = \"{}\"", sink.display()),
            1,
        );
    assert!(text.contains("protocol") && text.contains(&sink.display().to_string()));
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const DEMO_TABLES: [&str; 5] = [
    "vm_metrics",
    "host_metrics",
    "filer_metrics",
    "vm_metrics_1h",
    "host_metrics_1h",
];

/// The acceptance test: the demo pipeline once per protocol, the same files byte for
/// byte, among them points stamped exactly on a window's start (the demo's series with no phase
/// offset have one at 06:00, 12:00...), which each protocol must put in the window that starts
/// there and nowhere else.
#[test]
fn the_demo_pipeline_writes_the_same_files_through_both_protocols() {
    let mut datasets: Vec<BTreeMap<String, Vec<u8>>> = Vec::new();
    let mut dirs = Vec::new();
    for protocol in ["opentsdb", "warp10"] {
        let dir = tempfile::tempdir().unwrap();
        let p = demo_with(dir.path(), protocol);
        let out = run(&["run", p.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{protocol}\n{}", describe(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                dir.path()
                    .join("out")
                    .join(summary["manifest"].as_str().unwrap()),
            )
            .unwrap(),
        )
        .unwrap();
        let expected = if protocol == "warp10" {
            "warp10"
        } else {
            "ovh"
        };
        assert_eq!(manifest["dialect"], expected, "{protocol}: read through");
        let files = dataset(&dir.path().join("out"), &DEMO_TABLES);
        assert!(files.len() >= 16, "{protocol}: {} files", files.len());
        datasets.push(files);
        dirs.push(dir);
    }
    assert_eq!(
        datasets[0].keys().collect::<Vec<_>>(),
        datasets[1].keys().collect::<Vec<_>>(),
        "same files"
    );
    for (name, bytes) in &datasets[0] {
        assert!(
            datasets[1][name] == *bytes,
            "{name} differs between the protocols"
        );
    }
    // Points on a window boundary (06:00, epoch ms in the rows) are there, once.
    let rows = table_rows(&dirs[1].path().join("out"), "vm_metrics");
    let on_boundary = rows
        .iter()
        .filter(|r| r.contains("|1793512800000|"))
        .count();
    assert!(on_boundary > 0, "no point stamped on a window start");
    assert!(
        rows.windows(2).all(|w| w[0] != w[1]),
        "a row is written twice"
    );
}

/// A small pipeline through Warp 10, `sim` the `[source.sim]` extras and faults.
fn warp_source(extra: &str, faults: &[&str]) -> String {
    let list: Vec<String> = faults.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "url = \"sim\"\nprotocol = \"warp10\"\nrequests_per_second = 0\n{extra}\n[source.sim]\n\
         datacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 2\n\
         filers_per_datacenter = 1\nfault_seed = 11\nfaults = [{}]",
        list.join(", ")
    )
}

fn run_warp(source: &str) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(dir.path(), NAME, source, START, END, "2h", TABLES);
    let out = run(&["run", p.to_str().unwrap(), "--json", "--now", NOW]);
    (dir, out)
}

/// 429 (with `Retry-After`), 503 and cut bodies on `/api/v0/fetch` are retried, a fetch limit
/// splits the window: each run exits 0 with exactly the files of a run without fault.
#[test]
fn warp_faults_are_retried_or_split_and_change_no_byte() {
    let (clean_dir, clean) = run_warp(&warp_source("", &[]));
    assert_eq!(clean.status.code(), Some(0), "{}", describe(&clean));
    let want = dataset(&clean_dir.path().join("out"), &TABLE_NAMES);
    assert!(want.len() >= 4);
    for (faults, counter) in [
        (&["429:1@every=3"][..], "retries"),
        (&["503@every=4"][..], "retries"),
        (&["cut@every=3"][..], "retries"),
        (&["fetch-limit:1h"][..], "splits"),
    ] {
        let (dir, out) = run_warp(&warp_source("", faults));
        assert_eq!(out.status.code(), Some(0), "{faults:?}\n{}", describe(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                dir.path()
                    .join("out")
                    .join(summary["manifest"].as_str().unwrap()),
            )
            .unwrap(),
        )
        .unwrap();
        let seen = if faults[0].starts_with("429") {
            manifest["throttled"].as_u64().unwrap()
        } else {
            manifest[counter].as_u64().unwrap()
        };
        assert!(seen > 0, "{faults:?}: no {counter} in {manifest}");
        let got = dataset(&dir.path().join("out"), &TABLE_NAMES);
        // A split writes the window in parts: compare rows, not files, there.
        if counter == "splits" {
            for t in TABLE_NAMES {
                assert_eq!(
                    table_rows(&dir.path().join("out"), t),
                    table_rows(&clean_dir.path().join("out"), t),
                    "{faults:?} {t}"
                );
            }
        } else {
            assert_eq!(got.len(), want.len(), "{faults:?}: file count");
            assert!(got == want, "{faults:?}: the files differ from a clean run");
        }
    }
}

/// A token Warp 10 refuses (its 403) ends the run at once with exit 3, before anything is
/// written, and the token is printed nowhere.
#[test]
fn a_token_warp_refuses_ends_the_run_with_exit_3() {
    let token = "tok-warp-do-not-print";
    // The simulator requires "right" (`[source.sim]` has no token key: the pipeline's own token
    // is what it expects), so a standalone simulator serves here.
    let sim = SimProcess::start(&["--token", "right", "--datacenters", "1"]);
    let source = format!(
        "url = \"{}/warp10\"\nprotocol = \"warp10\"\ntoken = \"{token}\"\nrequests_per_second = 0",
        sim.url.trim_end_matches('/')
    );
    let (dir, out) = run_warp(&source);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the read token"), "{err}");
    assert!(err.contains("Invalid token"), "{err}");
    let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains(token), "the token leaked:\n{all}");
    for t in TABLE_NAMES {
        assert!(parquet_files(&dir.path().join("out"), t).is_empty(), "{t}");
    }
}
