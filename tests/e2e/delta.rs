//! Issue 20: Delta Lake tables (`sink.table_format = "delta"`) read by two readers we did not
//! write, delta-rs (the `deltalake` package) and DuckDB's `delta` extension, hold exactly the
//! rows of the plain Parquet layout written by the same runs: first run, a rerun with lateness,
//! `--force`, concurrent shards; time travel gives an older version's rows; runs killed at any
//! point never leave a half-written snapshot; `vacuum` removes only unreferenced files.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const SIM: &str = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 1\nvms_per_datacenter = 3\nfilers_per_datacenter = 1";
const SCOPE: &str =
    "start = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-02T00:00:00Z\"\nwindow = \"2h\"";

/// The pipeline `d` writing to `dir/out` in `format`.
fn pipeline(dir: &Path, format: &str) -> PathBuf {
    let sink = format!(
        "url = \"{}\"\ntable_format = \"{format}\"\n",
        dir.join("out").display()
    );
    write_pipeline_with_sink(dir, "d", SIM, SCOPE, TABLES, &sink)
}

fn run_ok(p: &Path, now: &str, flags: &[&str]) -> serde_json::Value {
    let out = run_pipeline_at(p, now, &[], flags);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `tests/py/delta_facts.py KIND SINK TABLE [VERSION]`.
fn facts(kind: &str, sink: &Path, table: &str, version: Option<i64>) -> serde_json::Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(format!(
        "{}/tests/py/delta_facts.py",
        env!("CARGO_MANIFEST_DIR")
    ))
    .args([kind, sink.to_str().unwrap(), table]);
    if let Some(v) = version {
        cmd.arg(v.to_string());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every table of the Delta sink, read by both readers, holds the Parquet sink's rows (same
/// count, no duplicate, same digest); returns each table's version.
fn assert_delta_equals_parquet(delta: &Path, parquet: &Path, what: &str) -> Vec<i64> {
    TABLE_NAMES
        .iter()
        .map(|t| {
            let want = &facts("parquet", parquet, t, None)["parquet"];
            assert!(want["rows"].as_u64().unwrap() > 0, "{what}: {t} is empty");
            assert_eq!(want["rows"], want["distinct"], "{what}: {t}");
            let got = facts("delta", delta, t, None);
            for reader in ["deltalake", "duckdb"] {
                assert_eq!(&got[reader], want, "{what}: {t} read by {reader}");
            }
            got["version"].as_i64().unwrap()
        })
        .collect()
}

/// Data files on disk below a table (not the log).
fn data_files(root: &Path, table: &str) -> usize {
    parquet_files(root, table)
        .iter()
        .filter(|f| !f.to_string_lossy().contains("/_delta_log/"))
        .count()
}

#[test]
fn delta_tables_hold_the_parquet_layouts_rows_through_lateness_force_and_time_travel() {
    let (d, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (delta, parquet) = (pipeline(d.path(), "delta"), pipeline(p.path(), "parquet"));
    let (droot, proot) = (d.path().join("out"), p.path().join("out"));
    // A first run that ends in the open window, then a later one: lateness rewrites the last
    // windows (incremental), then --force rewrites a range.
    let rounds: [(&str, &[&str]); 3] = [
        ("2026-11-01T17:30:00Z", &[]),
        ("2026-11-02T01:00:00Z", &[]),
        (
            "2026-11-02T01:00:00Z",
            &[
                "--force",
                "--start",
                "2026-11-01T04:00:00Z",
                "--end",
                "2026-11-01T10:00:00Z",
            ],
        ),
    ];
    let mut versions = Vec::new();
    for (now, flags) in rounds {
        run_ok(&delta, now, flags);
        run_ok(&parquet, now, flags);
        versions.push(assert_delta_equals_parquet(
            &droot,
            &proot,
            &format!("{now} {flags:?}"),
        ));
    }
    // Every add carries the file's statistics (rows, min/max of ts and the labels).
    let first =
        std::fs::read_to_string(droot.join("vm_metrics/_delta_log/00000000000000000000.json"))
            .unwrap();
    for line in first.lines().filter(|l| l.starts_with("{\"add\"")) {
        let add: serde_json::Value = serde_json::from_str(line).unwrap();
        let stats: serde_json::Value =
            serde_json::from_str(add["add"]["stats"].as_str().unwrap()).unwrap();
        assert!(stats["numRecords"].as_u64().unwrap() > 0, "{stats}");
        assert!(
            stats["minValues"]["ts"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-01T"),
            "{stats}"
        );
        assert!(
            stats["maxValues"]["vm"]
                .as_str()
                .unwrap()
                .starts_with("vm-"),
            "{stats}"
        );
        assert_eq!(stats["nullCount"]["ts"], 0, "{stats}");
    }
    // One commit per published window and table: 12 windows, then 2 re-fetched, then 3 forced.
    assert!(versions[2][0] > versions[1][0] && versions[1][0] > versions[0][0]);
    let log = droot.join("vm_metrics/_delta_log");
    assert!(
        log.join("_last_checkpoint").exists(),
        "a checkpoint every 10 commits"
    );
    // Time travel: the version before --force reads as the table did then (the replaced files
    // are still there for it).
    let before_force = facts("delta", &droot, "vm_metrics", Some(versions[1][0]));
    let latest = facts("delta", &droot, "vm_metrics", None);
    assert_eq!(before_force["version"], versions[1][0]);
    assert_eq!(
        before_force["deltalake"], latest["deltalake"],
        "same rows, other files"
    );
    // Vacuum: only the files no version keeps are deleted, and only past the retention.
    let files_before = data_files(&droot, "vm_metrics");
    let listed = latest["files"].as_u64().unwrap() as usize;
    assert!(
        files_before > listed,
        "replaced files are kept for time travel"
    );
    let kept = run(&["vacuum", delta.to_str().unwrap(), "--json"]);
    assert!(kept.status.success(), "{}", describe(&kept));
    assert_eq!(
        data_files(&droot, "vm_metrics"),
        files_before,
        "7d retention"
    );
    let vac = run(&["vacuum", delta.to_str().unwrap(), "--retain", "0", "--json"]);
    assert!(vac.status.success(), "{}", describe(&vac));
    let report: serde_json::Value = serde_json::from_slice(&vac.stdout).unwrap();
    let vm = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "vm_metrics")
        .unwrap();
    assert_eq!(
        vm["deleted"].as_array().unwrap().len(),
        files_before - listed
    );
    assert_eq!(data_files(&droot, "vm_metrics"), listed);
    assert_delta_equals_parquet(&droot, &proot, "after vacuum");
    // A Parquet sink has no log: vacuum says what it needs.
    let refused = run(&["vacuum", parquet.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("table_format = \"delta\""));
}

#[test]
fn concurrent_shards_commit_delta_tables_equal_to_one_parquet_run() {
    let (d, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (delta, parquet) = (pipeline(d.path(), "delta"), pipeline(p.path(), "parquet"));
    let now = "2026-11-02T01:00:00Z";
    run_ok(&parquet, now, &[]);
    let pods: Vec<_> = (0..3)
        .map(|i| {
            bin()
                .args(["run", delta.to_str().unwrap(), "--json", "--now", now])
                .args(["--shard", &format!("{i}/3")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for pod in pods {
        let out = pod.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    }
    let versions =
        assert_delta_equals_parquet(&d.path().join("out"), &p.path().join("out"), "3 shards");
    // Each window is published once, whole: one commit per window and table.
    assert!(versions.iter().all(|v| *v == 11), "{versions:?}");
}

/// Runs killed at every step of a publication (journal, moves, Delta commits, ledger) while
/// `--force` rewrites committed windows, and at random moments of a run: at each stop, both
/// readers see a whole snapshot with the clean rows (a window's rewrite is one commit, never
/// half), and after the rerun and a vacuum no unreferenced file is left.
#[test]
fn runs_killed_anywhere_never_leave_a_half_written_snapshot() {
    let (d, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (delta, parquet) = (pipeline(d.path(), "delta"), pipeline(p.path(), "parquet"));
    let (droot, proot) = (d.path().join("out"), p.path().join("out"));
    let now = "2026-11-02T01:00:00Z";
    run_ok(&parquet, now, &[]);
    run_ok(&delta, now, &[]);
    assert_delta_equals_parquet(&droot, &proot, "clean");
    let force = ["--force", "--start", "2026-11-01T00:00:00Z"];
    for crash_after in [1, 2, 5, 8, 9, 10, 11, 12, 20] {
        let out = bin()
            .args(["run", delta.to_str().unwrap(), "--json", "--now", now])
            .args(force)
            .env("VSCOPE_ETL_TEST_CRASH_AFTER", crash_after.to_string())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{crash_after}: {}", describe(&out));
        assert_delta_equals_parquet(&droot, &proot, &format!("killed after step {crash_after}"));
    }
    for delay_ms in [300, 900, 1500] {
        let args = ["run", delta.to_str().unwrap(), "--now", now, "--force"];
        run_and_kill(&args, std::time::Duration::from_millis(delay_ms));
        assert_delta_equals_parquet(&droot, &proot, &format!("SIGKILL after {delay_ms} ms"));
    }
    run_ok(&delta, now, &[]);
    assert_delta_equals_parquet(&droot, &proot, "after the rerun");
    vacuum_all(&delta, &droot, &proot);
}

/// `vacuum --retain 0`, then: only the files each table lists are left, and both readers still
/// read the Parquet layout's rows.
fn vacuum_all(delta: &Path, droot: &Path, proot: &Path) {
    let vac = run(&["vacuum", delta.to_str().unwrap(), "--retain", "0"]);
    assert!(vac.status.success(), "{}", describe(&vac));
    for t in TABLE_NAMES {
        let listed = facts("delta", droot, t, None)["files"].as_u64().unwrap() as usize;
        assert_eq!(
            data_files(droot, t),
            listed,
            "{t}: only listed files remain; vacuum said {}",
            String::from_utf8_lossy(&vac.stdout)
        );
    }
    assert_delta_equals_parquet(droot, proot, "after vacuum");
}

/// Two days of 2 h windows written to Delta and to plain Parquet by the same runs.
fn two_days() -> (tempfile::TempDir, tempfile::TempDir, PathBuf, PathBuf) {
    let (d, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let scope = SCOPE.replace("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z");
    let sink = |dir: &Path, format: &str| {
        format!(
            "url = \"{}\"\ntable_format = \"{format}\"\n",
            dir.join("out").display()
        )
    };
    let delta =
        write_pipeline_with_sink(d.path(), "d", SIM, &scope, TABLES, &sink(d.path(), "delta"));
    let parquet = write_pipeline_with_sink(
        p.path(),
        "d",
        SIM,
        &scope,
        TABLES,
        &sink(p.path(), "parquet"),
    );
    for pipeline in [&delta, &parquet] {
        run_ok(pipeline, "2026-11-03T03:00:00Z", &[]);
    }
    (d, p, delta, parquet)
}

#[test]
fn compaction_merges_each_day_into_sorted_files_with_the_same_rows_and_history() {
    let (d, p, delta, parquet) = two_days();
    let (droot, proot) = (d.path().join("out"), p.path().join("out"));
    let before = assert_delta_equals_parquet(&droot, &proot, "before compaction");
    let files_before: Vec<u64> = TABLE_NAMES
        .iter()
        .map(|t| facts("delta", &droot, t, None)["files"].as_u64().unwrap())
        .collect();
    // By default only days no run rewrites by itself: the watermark (11-03) minus the 2 h
    // lateness leaves 11-01.
    let first = compact(&delta, &[]);
    // (`--until` takes a plain date too: see the next call.)
    assert_eq!(
        first["periods"],
        serde_json::json!(["2026-11-01"]),
        "{first}"
    );
    let all = compact(&delta, &["--until", "2026-11-03"]);
    assert_eq!(all["periods"], serde_json::json!(["2026-11-02"]), "{all}");
    let after = assert_delta_equals_parquet(&droot, &proot, "after compaction");
    for (i, t) in TABLE_NAMES.iter().enumerate() {
        let f = facts("delta", &droot, t, None);
        assert_eq!(
            f["files"], 2,
            "{t}: one file per day (was {})",
            files_before[i]
        );
        assert_eq!(after[i], before[i] + 2, "{t}: one commit per day");
        // Time travel: the version before compaction has the same rows.
        let old = facts("delta", &droot, t, Some(before[i]));
        assert_eq!(old["deltalake"], f["deltalake"], "{t}");
        assert_eq!(old["files"].as_u64(), Some(files_before[i]));
    }
    for t in TABLE_NAMES {
        for f in parquet_files(&droot, t) {
            if f.to_string_lossy().contains("-c0-") {
                assert_eq!(
                    out_of_order(&f),
                    0,
                    "{f:?} is sorted like one window's file"
                );
            }
        }
    }
    // Idempotent.
    let again = compact(&delta, &["--until", "2026-11-03T00:00:00Z"]);
    assert_eq!(again["periods"], serde_json::json!([]), "{again}");
    assert_eq!(
        assert_delta_equals_parquet(&droot, &proot, "second compaction"),
        after
    );
    // Rewriting part of a compacted day re-fetches the day, in one commit per table.
    let force = [
        "--force",
        "--start",
        "2026-11-01T04:00:00Z",
        "--end",
        "2026-11-01T06:00:00Z",
    ];
    let rewrite = run_ok(&delta, "2026-11-03T03:00:00Z", &force);
    assert_eq!(rewrite["windows_committed"], 12, "the whole day: {rewrite}");
    run_ok(&parquet, "2026-11-03T03:00:00Z", &force);
    let rewritten = assert_delta_equals_parquet(&droot, &proot, "force over a compacted day");
    for (i, t) in TABLE_NAMES.iter().enumerate() {
        assert_eq!(
            rewritten[i],
            after[i] + 1,
            "{t}: the day's windows in one commit"
        );
    }
    vacuum_all(&delta, &droot, &proot);
    // Plain Parquet: no log to keep the replaced files for; `vacuum` has nothing to do there.
    let refused = run(&["vacuum", parquet.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
}

/// A compaction killed at every step of its publication, or at a random moment: readers see
/// the day whole (old files or merged ones), and the next compaction completes it.
#[test]
fn a_compaction_killed_anywhere_leaves_whole_snapshots() {
    let (d, p, delta, _parquet) = two_days();
    let (droot, proot) = (d.path().join("out"), p.path().join("out"));
    let until = ["--until", "2026-11-03T00:00:00Z"];
    for crash_after in [1, 3, 6, 9, 12] {
        let out = bin()
            .args(["compact", delta.to_str().unwrap()])
            .args(until)
            .env("VSCOPE_ETL_TEST_CRASH_AFTER", crash_after.to_string())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{crash_after}: {}", describe(&out));
        assert_delta_equals_parquet(
            &droot,
            &proot,
            &format!("compaction killed at {crash_after}"),
        );
        // The next one completes what the killed one journaled, then goes on.
        compact(&delta, &until);
        assert_delta_equals_parquet(&droot, &proot, &format!("completed after {crash_after}"));
        // Back to window files for the next round: a forced run rewrites both days.
        run_ok(
            &delta,
            "2026-11-03T03:00:00Z",
            &["--force", "--start", "2026-11-01T00:00:00Z"],
        );
    }
    let args = [
        "compact",
        delta.to_str().unwrap(),
        "--until",
        "2026-11-03T00:00:00Z",
    ];
    run_and_kill(&args, std::time::Duration::from_millis(150));
    assert_delta_equals_parquet(&droot, &proot, "compaction SIGKILLed");
    compact(&delta, &until);
    vacuum_all(&delta, &droot, &proot);
    for t in TABLE_NAMES {
        assert_eq!(data_files(&droot, t), 2, "{t}: compacted, one file a day");
    }
}

/// On S3 (moto): the log's conditional puts work there too, and the tables read the same.
#[test]
fn delta_tables_on_s3_read_like_the_parquet_layout() {
    let moto = MotoServer::start("delta");
    let (d, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // After the `url` line, before `[sink.s3]`.
    let sink = moto
        .sink_toml("lake")
        .replacen('\n', "\ntable_format = \"delta\"\n", 1);
    let delta = write_pipeline_with_sink(d.path(), "d", SIM, SCOPE, TABLES, &sink);
    let parquet = pipeline(p.path(), "parquet");
    let now = "2026-11-02T01:00:00Z";
    run_ok(&delta, now, &[]);
    run_ok(&delta, now, &["--force", "--start", "2026-11-01T10:00:00Z"]);
    run_ok(&parquet, now, &[]);
    let copy = tempfile::tempdir().unwrap();
    moto.download("lake", copy.path());
    let versions = assert_delta_equals_parquet(copy.path(), &p.path().join("out"), "on S3");
    assert!(versions.iter().all(|v| *v == 11 + 7), "{versions:?}");
}
