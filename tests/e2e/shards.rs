//! Issue 19: the shards of one run side by side on one sink, as the pods of a Kubernetes
//! Indexed Job run them (`--shard auto`, `JOB_COMPLETION_INDEX`, `VSCOPE_SHARDS`): N processes
//! started together write the rows of a single run, every window published once and whole, on
//! local disk and on S3; a second round changes nothing; another shard count replaces the cut;
//! a shard killed on another node is replaced within the short lease TTL.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Two datacenters: 20 metrics × 2 = 40 units per window to deal.
const SIM: &str = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 2\nvms_per_datacenter = 3\nfilers_per_datacenter = 1";
const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T12:00:00Z";
const NOW: &str = "2026-11-01T12:05:00Z";

fn pipeline(dir: &Path, sink: &str, start: &str, end: &str, extra_sink: &str) -> PathBuf {
    write_pipeline_with_sink(
        dir,
        "shards",
        SIM,
        &format!("start = \"{start}\"\nend = \"{end}\"\nwindow = \"2h\""),
        TABLES,
        &format!("{sink}{extra_sink}"),
    )
}

fn local_pipeline(dir: &Path, start: &str, end: &str) -> PathBuf {
    let sink = format!("url = \"{}\"\n", dir.join("out").display());
    pipeline(dir, &sink, start, end, "")
}

fn spawn_pod(p: &Path, index: u32, count: u32, now: &str, flags: &[&str]) -> Child {
    bin()
        .args(["run", p.to_str().unwrap(), "--json", "--now", now])
        .args(["--shard", "auto"])
        .args(flags)
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .env("VSCOPE_SHARDS", count.to_string())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts the `count` pods of an Indexed Job at once and waits for them: their summaries.
fn indexed_job(p: &Path, count: u32, now: &str, flags: &[&str]) -> Vec<serde_json::Value> {
    let pods: Vec<Child> = (0..count)
        .map(|i| spawn_pod(p, i, count, now, flags))
        .collect();
    pods.into_iter()
        .enumerate()
        .map(|(i, pod)| {
            let out = pod.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "index {i}/{count}: {}",
                describe(&out)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect()
}

fn sum(summaries: &[serde_json::Value], key: &str) -> u64 {
    summaries.iter().map(|s| s[key].as_u64().unwrap()).sum()
}

fn ledger(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("_state/shards.json")).unwrap())
        .unwrap()
}

/// Files below `dir` (recursively), relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// What a finished sharded round leaves: every window of `windows` committed whole in the
/// ledger, no shard mark, nothing staged, no lease; with `count` > 1, only that cut's files.
fn assert_clean_after(root: &Path, count: u32, windows: usize) {
    let l = ledger(root);
    let committed = l["windows"].as_object().unwrap();
    assert_eq!(committed.len(), windows, "{l}");
    assert!(committed.values().all(|w| w["complete"] == true), "{l}");
    let stray: Vec<String> = files_below(root)
        .into_iter()
        .filter(|f| f.starts_with("_tmp/") || f.contains(".shards/") || f.ends_with(".lease"))
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");
    if count > 1 {
        for t in TABLE_NAMES {
            for f in parquet_files(root, t) {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    name.ends_with(&format!("of{count}.parquet")) && name.contains("-h"),
                    "{name} is not of the {count}-shard cut"
                );
            }
        }
    }
}

/// The tables under `root` hold exactly `want` (a failure prints sizes, not rows).
fn assert_same_rows(root: &Path, want: &[Vec<String>], what: &str) {
    let got = rows_by_content(root, &TABLE_NAMES);
    let sizes = |t: &[Vec<String>]| t.iter().map(Vec::len).collect::<Vec<_>>();
    assert!(
        got == want,
        "{what}: rows per table {:?}, expected {:?}",
        sizes(&got),
        sizes(want)
    );
}

fn single_run_rows(start: &str, end: &str, now: &str) -> Vec<Vec<String>> {
    let once = tempfile::tempdir().unwrap();
    let out = run_pipeline_at(&local_pipeline(once.path(), start, end), now, &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let rows = rows_by_content(&once.path().join("out"), &TABLE_NAMES);
    assert!(rows.iter().all(|t| !t.is_empty()));
    rows
}

#[test]
fn one_two_or_four_shards_side_by_side_write_the_single_runs_rows() {
    let single = single_run_rows(START, END, NOW);
    let mut units_of_one = 0;
    for count in [1u32, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let p = local_pipeline(dir.path(), START, END);
        let root = dir.path().join("out");
        let first = indexed_job(&p, count, NOW, &[]);
        // Every window published once, by one shard; the others staged it for that one.
        assert_eq!(sum(&first, "windows_committed"), 6, "{count}: {first:?}");
        assert_eq!(
            sum(&first, "windows_staged"),
            6 * u64::from(count - 1),
            "{first:?}"
        );
        // Each shard fetched its own units: together, each unit once.
        if count == 1 {
            units_of_one = sum(&first, "units_done");
        }
        assert_eq!(sum(&first, "units_planned"), units_of_one, "{first:?}");
        assert_eq!(sum(&first, "units_done"), units_of_one, "{first:?}");
        assert_same_rows(
            &root,
            &single,
            &format!("{count} shard(s): the single run's rows, none twice, none missing"),
        );
        assert_clean_after(&root, count, 6);
        assert_eq!(ledger(&root)["watermark"], END);
        let status = run(&["status", p.to_str().unwrap(), "--json", "--now", NOW]);
        let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(
            (&s["committed"], &s["missing"], &s["staged"]),
            (&6.into(), &0.into(), &0.into()),
            "{s}"
        );
        assert!(
            s["lease"].is_null() && s["shard_leases"] == serde_json::json!([]),
            "{s}"
        );

        // A second round: the same files, byte for byte.
        let files = dataset(&root, &TABLE_NAMES);
        indexed_job(&p, count, NOW, &[]);
        assert!(
            dataset(&root, &TABLE_NAMES) == files,
            "{count}: second round changed files"
        );
        assert_clean_after(&root, count, 6);
    }
}

/// A one-window range in two scheduled rounds (the window open, then complete), and a rerun
/// of the whole range with another shard count, which replaces the old cut in one publication
/// per window.
#[test]
fn a_one_window_range_spreads_over_the_shards_and_another_count_replaces_the_cut() {
    let (start, end) = ("2026-11-01T12:00:00Z", "2026-11-01T14:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let p = local_pipeline(dir.path(), start, end);
    let root = dir.path().join("out");
    let open = indexed_job(&p, 2, "2026-11-01T13:05:00Z", &[]);
    assert!(open.iter().all(|s| s["windows_planned"] == 1), "{open:?}");
    assert!(
        open.iter().all(|s| s["units_done"].as_u64().unwrap() > 0),
        "both shards had units: {open:?}"
    );
    let l = ledger(&root);
    let w = l["windows"].as_object().unwrap().values().next().unwrap();
    assert_eq!(w["complete"], false, "the window is open: {l}");
    let done = "2026-11-01T14:05:00Z";
    indexed_job(&p, 2, done, &[]);
    assert_same_rows(&root, &single_run_rows(start, end, done), "after the round");
    assert_clean_after(&root, 2, 1);

    indexed_job(&p, 4, done, &["--force"]);
    assert_same_rows(&root, &single_run_rows(start, end, done), "after the round");
    assert_clean_after(&root, 4, 1);
    // And back to one process: its files replace the shards'.
    let out = run_pipeline_at(&p, done, &[], &["--force"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_rows(&root, &single_run_rows(start, end, done), "after the round");
    for t in TABLE_NAMES {
        for f in parquet_files(&root, t) {
            assert!(
                !f.to_string_lossy().contains("-h"),
                "{f:?} of a shard cut left"
            );
        }
    }
}

/// A whole-pipeline run while shards run would remove what they stage: refused, naming the
/// shard.
#[test]
fn a_whole_pipeline_run_is_refused_while_a_shard_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = local_pipeline(dir.path(), START, "2026-11-08T00:00:00Z");
    let lease = dir.path().join("out/_state/shards.s1of2.lease");
    let mut pod = spawn_pod(&p, 1, 2, "2026-11-08T00:05:00Z", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lease.exists() {
        assert!(Instant::now() < deadline, "the shard never took its lease");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_pipeline_at(&p, "2026-11-08T00:05:00Z", &[], &[]);
    let _ = pod.kill();
    let _ = pod.wait();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shards.s1of2.lease"), "{stderr}");
}

/// A pod SIGKILLed mid-run on another node: the other shard finishes and leaves its windows
/// staged, the rerun of the killed index starts within the short lease TTL (3 s), publishes
/// every window, and the dataset is the single run's with nothing stray.
#[test]
fn a_shard_killed_on_another_node_is_rerun_within_the_ttl_and_the_dataset_is_whole() {
    let (start, end, now) = (START, "2026-11-04T00:00:00Z", "2026-11-04T00:05:00Z");
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("url = \"{}\"\n", dir.path().join("out").display());
    let p = pipeline(dir.path(), &sink, start, end, "lease_ttl = \"3s\"\n");
    let root = dir.path().join("out");
    let lease = root.join("_state/shards.s1of2.lease");
    let survivor = spawn_pod(&p, 0, 2, now, &[]);
    let mut victim = spawn_pod(&p, 1, 2, now, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Killed once it has staged or published a few windows.
    while files_below(&root.join("_state"))
        .iter()
        .filter(|f| f.contains(".shards/") && f.ends_with("1of2.json"))
        .count()
        < 2
        && ledger_windows(&root) < 2
    {
        assert!(Instant::now() < deadline, "the shard never staged a window");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = victim.kill();
    let _ = victim.wait();
    let out = survivor.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // As if the pod had run on another node: no same-host shortcut, the TTL decides.
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    record["host"] = "another-node".into();
    std::fs::write(&lease, serde_json::to_vec(&record).unwrap()).unwrap();
    let expires_ms = record["expires_ms"].as_i64().unwrap();
    let status = run(&["status", p.to_str().unwrap(), "--now", now]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        text.contains("shard 1/2 lease: held by run") && text.contains("another-node"),
        "{text}"
    );
    assert!(text.contains("waiting for shard(s) [1] of 2"), "{text}");
    // The rerun of index 1, retried as backoffLimitPerIndex would: in within the TTL.
    let rerun_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = spawn_pod(&p, 1, 2, now, &[]).wait_with_output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("another run of this pipeline"),
            "{}",
            describe(&out)
        );
        assert!(
            Instant::now() < rerun_deadline,
            "not taken over: {}",
            describe(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started_after_expiry_ms = chrono::Utc::now().timestamp_millis() - expires_ms;
    assert!(
        started_after_expiry_ms < 15_000,
        "{started_after_expiry_ms} ms after expiry"
    );
    assert_same_rows(&root, &single_run_rows(start, end, now), "after the round");
    assert_clean_after(&root, 2, 36);
}

fn ledger_windows(root: &Path) -> usize {
    std::fs::read_to_string(root.join("_state/shards.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map_or(0, |l| l["windows"].as_object().map_or(0, |w| w.len()))
}

#[test]
fn shards_side_by_side_on_s3_write_the_single_runs_rows() {
    let single = single_run_rows(START, END, NOW);
    let moto = MotoServer::start("shards");
    for count in [1u32, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("n{count}");
        let p = pipeline(dir.path(), &moto.sink_toml(&prefix), START, END, "");
        let first = indexed_job(&p, count, NOW, &[]);
        assert_eq!(sum(&first, "windows_committed"), 6, "{count}: {first:?}");
        let copy = tempfile::tempdir().unwrap();
        let keys = moto.download(&prefix, copy.path());
        assert_same_rows(copy.path(), &single, &format!("{count} on S3"));
        assert_clean_after(copy.path(), count, 6);
        assert!(
            moto.pending_uploads(&format!("{prefix}/")).is_empty(),
            "{count}"
        );
        // A second round: the same objects.
        let files = dataset(copy.path(), &TABLE_NAMES);
        indexed_job(&p, count, NOW, &[]);
        let again = tempfile::tempdir().unwrap();
        let keys_again = moto.download(&prefix, again.path());
        assert!(
            dataset(again.path(), &TABLE_NAMES) == files,
            "{count}: second round on S3"
        );
        let data = |k: &Vec<String>| {
            k.iter()
                .filter(|k| k.ends_with(".parquet"))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(data(&keys), data(&keys_again));
    }
}

/// The last shard killed at every step of its publication of a window (journal written, each
/// move, each removal, ledger written): the pipeline lease it held is taken over at once (same
/// host, dead), the journal is completed by the next step, and the dataset is the single run's.
#[test]
fn the_last_shard_killed_while_publishing_leaves_a_window_the_rerun_completes() {
    let single = single_run_rows(START, END, NOW);
    for crash_after in [1u32, 2, 4, 7] {
        let dir = tempfile::tempdir().unwrap();
        let p = local_pipeline(dir.path(), START, END);
        let root = dir.path().join("out");
        // Shard 0 first: it marks every window; shard 1 then publishes each one.
        let out = spawn_pod(&p, 0, 2, NOW, &[]).wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let crashed = bin()
            .args([
                "run",
                p.to_str().unwrap(),
                "--json",
                "--now",
                NOW,
                "--shard",
                "1/2",
            ])
            .env("VSCOPE_ETL_TEST_CRASH_AFTER", crash_after.to_string())
            .output()
            .unwrap();
        assert!(
            !crashed.status.success(),
            "{crash_after}: {}",
            describe(&crashed)
        );
        assert!(
            root.join("_state/shards.publish.json").exists(),
            "{crash_after}: the journal stays for the next step"
        );
        let out = spawn_pod(&p, 1, 2, NOW, &[]).wait_with_output().unwrap();
        assert!(out.status.success(), "{crash_after}: {}", describe(&out));
        assert_same_rows(&root, &single, &format!("after step {crash_after}"));
        assert_clean_after(&root, 2, 6);
        assert!(!root.join("_state/shards.publish.json").exists());
    }
}
