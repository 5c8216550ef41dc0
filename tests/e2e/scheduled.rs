//! Scheduled use: incremental runs as the clock advances equal one run over the whole range;
//! a run killed with SIGKILL at any point and then rerun leaves the same dataset as a clean run,
//! with nothing partial or temporary visible in between.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const SIM: &str = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 2\nfilers_per_datacenter = 1";

fn pipeline(dir: &Path, name: &str, end: &str) -> std::path::PathBuf {
    write_pipeline(dir, name, SIM, "2026-11-01T00:00:00Z", end, "2h", TABLES)
}

fn run_at(p: &Path, now: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", p.to_str().unwrap(), "--json", "--now", now];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ledger(root: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(root.join(format!("_state/{name}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn three_incremental_runs_equal_one_run_over_the_whole_range() {
    let inc = tempfile::tempdir().unwrap();
    // A fixed end; "now" (the --now clock) cuts the open window.
    let p = pipeline(inc.path(), "inc", "2026-11-02T00:00:00Z");
    // The clock advances: mid-window, later mid-window, then past the end of the day.
    let first = run_at(&p, "2026-11-01T05:30:00Z", &[]);
    assert_eq!(
        first["windows_planned"], 3,
        "[0,2) [2,4) and the open [4,6)"
    );
    let l = ledger(&inc.path().join("out"), "inc");
    assert_eq!(
        l["watermark"], "2026-11-01T04:00:00Z",
        "the open window does not move the watermark"
    );
    let second = run_at(&p, "2026-11-01T11:10:00Z", &[]);
    // Restarts at watermark (04:00) minus lateness (2h): [2,4) .. [10,12).
    assert_eq!(second["windows_planned"], 5);
    let third = run_at(&p, "2026-11-02T00:05:00Z", &[]);
    assert_eq!(
        third["windows_planned"], 8,
        "from 08:00 (10:00 − 2h) to midnight"
    );
    assert_eq!(
        ledger(&inc.path().join("out"), "inc")["watermark"],
        "2026-11-02T00:00:00Z"
    );

    let once = tempfile::tempdir().unwrap();
    // Same pipeline name: it is recorded in every file's metadata.
    let p1 = pipeline(once.path(), "inc", "2026-11-02T00:00:00Z");
    run_at(&p1, "2026-11-02T00:05:00Z", &[]);
    let a = dataset(&inc.path().join("out"), &TABLE_NAMES);
    let b = dataset(&once.path().join("out"), &TABLE_NAMES);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(
        a == b,
        "incremental runs and a single run must give byte-identical files"
    );

    // A backfill of committed windows skips them (unless --force) and never moves the watermark back.
    let backfill = run_at(
        &p,
        "2026-11-02T12:00:00Z",
        &[
            "--start",
            "2026-11-01T00:00:00Z",
            "--end",
            "2026-11-01T04:00:00Z",
        ],
    );
    assert_eq!(backfill["windows_planned"], 0);
    let forced = run_at(
        &p,
        "2026-11-02T12:00:00Z",
        &[
            "--start",
            "2026-11-01T00:00:00Z",
            "--end",
            "2026-11-01T04:00:00Z",
            "--force",
        ],
    );
    assert_eq!(forced["windows_planned"], 2);
    assert_eq!(
        ledger(&inc.path().join("out"), "inc")["watermark"],
        "2026-11-02T00:00:00Z"
    );
    assert!(
        dataset(&inc.path().join("out"), &TABLE_NAMES) == b,
        "a forced rerun rewrites identical files"
    );
}

/// Everything a reader could see: every visible file below the tables must be a whole Parquet
/// file, and nothing but `.parquet` files may sit in table folders.
fn assert_nothing_partial_visible(root: &Path) {
    for t in TABLE_NAMES {
        for f in parquet_files(root, t) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.ends_with(".parquet") && !name.contains('#'),
                "temporary file visible: {f:?}"
            );
            let _ = read_file(&f); // panics on a torn file
        }
    }
}

#[test]
fn killed_runs_then_a_rerun_give_the_clean_dataset() {
    let clean = tempfile::tempdir().unwrap();
    let pc = pipeline(clean.path(), "crash", "2026-11-01T12:00:00Z");
    run_at(&pc, "2026-11-03T00:00:00Z", &[]);
    let expected = dataset(&clean.path().join("out"), &TABLE_NAMES);

    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "crash", "2026-11-01T12:00:00Z");
    let root = dir.path().join("out");
    for (i, delay_ms) in [40u64, 150, 400, 900, 1500].into_iter().enumerate() {
        run_and_kill(
            &[
                "run",
                p.to_str().unwrap(),
                "--now",
                "2026-11-03T00:00:00Z",
                "--force",
            ],
            Duration::from_millis(delay_ms),
        );
        assert_nothing_partial_visible(&root);
        if i % 2 == 1 {
            // Sometimes the next run is a plain incremental one, sometimes a forced one.
            run_at(&p, "2026-11-03T00:00:00Z", &[]);
            assert_nothing_partial_visible(&root);
        }
    }
    run_at(&p, "2026-11-03T00:00:00Z", &[]);
    let got = dataset(&root, &TABLE_NAMES);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        got == expected,
        "after the kills and a rerun the dataset equals a clean run"
    );
    // Staged files live in `_tmp/<pipeline>/`: none may be left.
    let leftovers = parquet_files(&root, "_tmp");
    assert!(
        leftovers.is_empty(),
        "temporary files are cleaned by the next run: {leftovers:?}"
    );
    assert!(!root.join("_state/crash.lease").exists(), "lease released");
}

/// Issue 19: a pod killed (SIGKILL) while it holds the lease, on another node, blocks the next
/// run at most `sink.lease_ttl` after its last heartbeat, not for a fixed half hour: the next
/// run is refused while the lease is fresh and takes it over once it has expired.
#[test]
fn a_run_killed_on_another_host_blocks_the_next_one_at_most_the_lease_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "hb", "2026-11-08T00:00:00Z");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("lease_ttl = \"3s\"\n");
    std::fs::write(&p, text).unwrap();
    let lease = dir.path().join("out/_state/hb.lease");
    let args = ["run", p.to_str().unwrap(), "--now", "2026-11-08T00:05:00Z"];
    let mut child = bin()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed a while after it took the lease: the heartbeat renewed it in between.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !lease.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never took its lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    // As if the pod had run on another node: no same-host shortcut.
    record["host"] = "another-node".into();
    std::fs::write(&lease, serde_json::to_vec(&record).unwrap()).unwrap();
    let expires_ms = record["expires_ms"].as_i64().unwrap();
    let now_ms = || chrono::Utc::now().timestamp_millis();
    assert!(
        expires_ms - now_ms() <= 3_000,
        "the lease lasts at most its TTL from the last heartbeat: {record}"
    );
    if expires_ms - now_ms() > 500 {
        // `status` names the holder and says until when.
        let shown = run(&[
            "status",
            p.to_str().unwrap(),
            "--now",
            "2026-11-08T00:05:00Z",
        ]);
        let text = String::from_utf8_lossy(&shown.stdout).into_owned();
        assert!(
            text.contains("lease: held by run") && text.contains("another-node"),
            "{text}"
        );
        let refused = run(&args);
        assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("another run of this pipeline"),
            "{}",
            describe(&refused)
        );
    }
    while now_ms() <= expires_ms {
        std::thread::sleep(Duration::from_millis(50));
    }
    let next = run(&args);
    assert!(next.status.success(), "{}", describe(&next));
    assert!(!lease.exists(), "released at the end");
}
