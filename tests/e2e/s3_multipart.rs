//! Large files on S3 (issue 4): files bigger than `sink.s3.part_size` go up as multipart
//! uploads and come out byte-identical to the local sink's; runs killed with SIGKILL in the
//! middle of uploads leave nothing visible, and the rerun aborts the uploads they left, takes
//! over their lease, and ends with the clean run's dataset.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::*;

/// moto, like S3, refuses parts under 5 MiB but the last; lowered so that test-sized files
/// (hundreds of KiB) need several parts.
const MOTO_ENV: [(&str, &str); 1] = [("S3_UPLOAD_PART_MIN_SIZE", "1024")];
const PART_SIZE: &str = "64KiB";
const SIM: &str = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 1\nvms_per_datacenter = 12\nfilers_per_datacenter = 1";
const SCOPE: &str =
    "start = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-02T00:00:00Z\"\nwindow = \"6h\"";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The same pipeline on the local disk, for the expected bytes (same name: it is in files).
fn local_dataset(name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("url = \"{}\"", dir.path().join("out").display());
    let p = write_pipeline_with_sink(dir.path(), name, SIM, SCOPE, TABLES, &sink);
    let out = run(&["run", p.to_str().unwrap(), "--now", "2026-11-03T00:00:00Z"]);
    assert!(out.status.success(), "{}", describe(&out));
    dataset(&dir.path().join("out"), &TABLE_NAMES)
}

/// Every table object under the sink: key relative to the sink → bytes.
fn s3_dataset(moto: &MotoServer, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let sink = moto.sink(prefix);
    runtime().block_on(async {
        let mut out = BTreeMap::new();
        for table in TABLE_NAMES {
            let mut list = sink.store.list(Some(&sink.key(table)));
            while let Some(meta) = list.next().await {
                let key = meta.unwrap().location;
                let bytes = sink.store.get(&key).await.unwrap().bytes().await.unwrap();
                let relative = key.as_ref().strip_prefix(&format!("{prefix}/")).unwrap();
                out.insert(relative.to_string(), bytes.to_vec());
            }
        }
        out
    })
}

fn s3_pipeline(dir: &Path, moto: &MotoServer, name: &str, prefix: &str) -> std::path::PathBuf {
    let sink = format!(
        "{}part_size = \"{PART_SIZE}\"\nallow_small_parts = true\n",
        moto.sink_toml(prefix)
    );
    write_pipeline_with_sink(dir, name, SIM, SCOPE, TABLES, &sink)
}

/// Files go up staged under `_tmp/<pipeline>/` and are copied into place when their window is
/// published, so the multipart uploads are seen on the staged objects: the run is stopped right
/// after its first publication journal is written (`VSCOPE_ETL_TEST_CRASH_AFTER=1`), when that
/// window's files are all staged and none is visible yet. The next run completes the
/// publication and the dataset equals the local sink's byte for byte.
#[test]
fn files_larger_than_a_part_are_multipart_uploads_identical_to_local_files() {
    let moto = MotoServer::start_with_env("multipart", &MOTO_ENV);
    let dir = tempfile::tempdir().unwrap();
    let p = s3_pipeline(dir.path(), &moto, "big", "x");
    let args = ["run", p.to_str().unwrap(), "--now", "2026-11-03T00:00:00Z"];
    let stopped = bin()
        .args(args)
        .env("VSCOPE_ETL_TEST_CRASH_AFTER", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(stopped.status.code(), Some(137), "{}", describe(&stopped));
    assert!(
        s3_dataset(&moto, "x").is_empty(),
        "nothing visible before publication"
    );
    // A multipart object's ETag is `<md5 of the part md5s>-<parts>`: count the parts.
    let sink = moto.sink("x");
    let staged: Vec<(usize, usize)> = runtime().block_on(async {
        let mut out = Vec::new();
        let mut list = sink.store.list(Some(&sink.key("_tmp")));
        while let Some(meta) = list.next().await {
            let meta = meta.unwrap();
            let etag = meta.e_tag.unwrap_or_default();
            let n = etag
                .trim_matches('"')
                .rsplit_once('-')
                .map_or(1, |(_, n)| n.parse().unwrap());
            out.push((meta.size as usize, n));
        }
        out
    });
    let big: Vec<&(usize, usize)> = staged.iter().filter(|(len, _)| *len > 64 * 1024).collect();
    assert!(
        !big.is_empty(),
        "test data has files over one part: {staged:?}"
    );
    assert!(
        big.iter().all(|(_, parts)| *parts >= 2),
        "every file over 64 KiB went up in parts ({staged:?})"
    );

    let out = run(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let got = s3_dataset(&moto, "x");
    let expected = local_dataset("big");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        got == expected,
        "S3 objects equal the local files byte for byte"
    );
    assert!(
        moto.pending_uploads("x/").is_empty(),
        "every upload completed"
    );
    assert!(
        moto.keys().iter().all(|k| !k.contains("/_tmp/")),
        "nothing left staged"
    );
}

#[test]
fn killed_s3_runs_leave_nothing_visible_and_the_rerun_cleans_up() {
    let moto = MotoServer::start_with_env("crashes", &MOTO_ENV);
    let dir = tempfile::tempdir().unwrap();
    let p = s3_pipeline(dir.path(), &moto, "crash", "c");
    let sink = moto.sink("c");

    // An upload a killed run left in a table folder (created by hand so the test does not
    // depend on where a kill lands), and one outside our tables that must stay untouched.
    runtime().block_on(async {
        for key in ["vm_metrics/date=2026-11-01/orphan.parquet", "other/x.bin"] {
            let mut upload = sink.store.put_multipart(&sink.key(key)).await.unwrap();
            upload
                .put_part(PutPayload::from(vec![7u8; 2048]))
                .await
                .unwrap();
            drop(upload); // never completed nor aborted, like a SIGKILL
        }
    });
    assert_eq!(moto.pending_uploads("c/").len(), 2);

    for delay_ms in [300u64, 900, 1800] {
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
        // Whatever is visible is a whole Parquet file at its final key.
        for (key, bytes) in s3_dataset(&moto, "c") {
            assert!(key.ends_with(".parquet"), "temporary object visible: {key}");
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes),
            )
            .unwrap_or_else(|e| panic!("torn object {key}: {e}"));
        }
    }

    // The rerun takes over the dead runs' lease, aborts the uploads left in its tables, and
    // completes the dataset.
    let out = run(&["run", p.to_str().unwrap(), "--now", "2026-11-03T00:00:00Z"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        moto.pending_uploads("c/"),
        vec!["c/other/x.bin".to_string()],
        "uploads in the pipeline's tables are aborted, others left alone"
    );
    let got = s3_dataset(&moto, "c");
    let expected = local_dataset("crash");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        got == expected,
        "after the kills and a rerun: the clean dataset"
    );
    assert!(
        !moto.keys().iter().any(|k| k.ends_with(".lease")),
        "lease released"
    );
}

/// Issue 19, pod eviction on S3: SIGTERM while multipart uploads are open (a stalled answer
/// holds the run in its second window) stops the run within the grace period, and the run
/// itself aborts its open uploads and releases its lease: nothing pending, nothing partial
/// visible. The rerun ends with the local sink's dataset byte for byte.
#[test]
fn sigterm_with_open_multipart_uploads_aborts_them_and_releases_the_lease() {
    use std::process::Stdio;
    let moto = MotoServer::start_with_env("sigterm", &MOTO_ENV);
    let dir = tempfile::tempdir().unwrap();
    // Row groups of 1,024 rows go to the upload as they fill, so uploads are open mid-window.
    let rows = "row_group_rows = 1024\n";
    let stalled = format!("{SIM}\nfaults = [\"stall:120s@requests=60\"]");
    // `row_group_rows` belongs to `[sink]`, before the `[sink.s3]` table.
    let (url, s3) = moto
        .sink_toml("t")
        .split_once('\n')
        .map(|(u, s)| (u.to_string(), s.to_string()))
        .unwrap();
    let sink = format!("{url}\n{rows}{s3}part_size = \"{PART_SIZE}\"\nallow_small_parts = true\n");
    let p = write_pipeline_with_sink(dir.path(), "evicted", &stalled, SCOPE, TABLES, &sink);
    let now = "2026-11-03T00:00:00Z";
    let mut child = bin()
        .args(["run", p.to_str().unwrap(), "--now", now])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while moto.pending_uploads("t/").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no multipart upload was ever open"
        );
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("the run ended first: {}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = std::time::Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "stopped within Kubernetes' grace period: {:?}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        moto.pending_uploads("t/"),
        Vec::<String>::new(),
        "the run aborted its own uploads"
    );
    assert!(
        !moto.keys().iter().any(|k| k.ends_with(".lease")),
        "lease released"
    );

    // The rerun (no stall) completes; the local sink with the same settings is the reference.
    let clean = write_pipeline_with_sink(dir.path(), "evicted", SIM, SCOPE, TABLES, &sink);
    let again = run(&["run", clean.to_str().unwrap(), "--now", now]);
    assert!(again.status.success(), "{}", describe(&again));
    let local = tempfile::tempdir().unwrap();
    let local_sink = format!("url = \"{}\"\n{rows}", local.path().join("out").display());
    let lp = write_pipeline_with_sink(local.path(), "evicted", SIM, SCOPE, TABLES, &local_sink);
    let reference = run(&["run", lp.to_str().unwrap(), "--now", now]);
    assert!(reference.status.success(), "{}", describe(&reference));
    let expected = dataset(&local.path().join("out"), &TABLE_NAMES);
    assert!(!expected.is_empty());
    assert!(
        s3_dataset(&moto, "t") == expected,
        "after SIGTERM and a rerun, S3 holds the local sink's files"
    );
}
