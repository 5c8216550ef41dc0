//! Month files (issue 21): with `partition_by = ["metric", "month"]` a run writes a file per
//! window into its month folders, and `vscope-etl compact` merges each finished month into one
//! sorted file per folder. Through runs, compaction, a backfill before the first run's range,
//! a forced rewrite of part of a compacted month and compactions killed at any step, the rows
//! stay exactly those the default layout gets from the same runs.

use std::path::{Path, PathBuf};

use crate::common::*;

const SIM: &str = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 2\nfilers_per_datacenter = 1";

/// The pipeline `m` in `dir`, from `start` on (incremental), in 6 h windows; month files when
/// `month`, else the default layout.
fn pipeline(dir: &Path, start: &str, month: bool) -> PathBuf {
    pipeline_in_windows(dir, start, "6h", month)
}

/// [`pipeline`] with windows of `window`.
fn pipeline_in_windows(dir: &Path, start: &str, window: &str, month: bool) -> PathBuf {
    let scope = format!("start = \"{start}\"\nwindow = \"{window}\"\nlateness = \"2h\"");
    let sink = format!("url = \"{}\"\n", dir.join("out").display());
    let p = write_pipeline_with_sink(dir, "m", SIM, &scope, TABLES, &sink);
    if month {
        use_month_layout(&p, true);
    }
    p
}

fn run_ok(p: &Path, now: &str, flags: &[&str]) -> serde_json::Value {
    let out = run_pipeline_at(p, now, &[], flags);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The data files of every table under `month=<m>` folders.
fn month_files(root: &Path, month: &str) -> Vec<PathBuf> {
    TABLE_NAMES
        .iter()
        .flat_map(|t| parquet_files(root, t))
        .filter(|f| f.to_string_lossy().contains(&format!("/month={month}/")))
        .collect()
}

/// The folders `files` are in.
fn folders_of(files: &[PathBuf]) -> std::collections::BTreeSet<PathBuf> {
    files
        .iter()
        .map(|f| f.parent().unwrap().to_owned())
        .collect()
}

/// Both pipelines run at `now` with `flags`; then the rows must be the same.
fn run_both(month: &Path, date: &Path, now: &str, flags: &[&str], what: &str) -> serde_json::Value {
    let summary = run_ok(month, now, flags);
    run_ok(date, now, flags);
    assert_same_rows(month, date, what);
    summary
}

fn assert_same_rows(month: &Path, date: &Path, what: &str) {
    let root = |p: &Path| p.parent().unwrap().join("out");
    let (m, d) = (
        rows_by_content(&root(month), &TABLE_NAMES),
        rows_by_content(&root(date), &TABLE_NAMES),
    );
    for (i, t) in TABLE_NAMES.iter().enumerate() {
        assert!(!d[i].is_empty(), "{t}: rows expected ({what})");
        assert!(
            m[i] == d[i],
            "{t}: month files hold other rows than the date layout ({what}): {} vs {}",
            m[i].len(),
            d[i].len()
        );
    }
}

#[test]
fn month_files_hold_the_rows_of_the_date_layout_through_compaction_backfill_and_rewrite() {
    let (m, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let month = pipeline(m.path(), "2026-10-30T18:00:00Z", true);
    let date = pipeline(d.path(), "2026-10-30T18:00:00Z", false);
    let out = m.path().join("out");
    let first = run_both(&month, &date, "2026-11-01T06:00:00Z", &[], "first run");
    // October is not finished: the watermark (11-01T00: the window after it is still open)
    // minus the lateness is before its end. A file per window (and metric) in its folders.
    assert_eq!(first["compacted"], serde_json::json!([]), "{first}");
    assert_eq!(compact(&month, &[])["periods"], serde_json::json!([]));
    let files = month_files(&out, "2026-10");
    assert!(files.len() > 2 * TABLE_NAMES.len(), "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.to_string_lossy().contains("/metric="))
    );

    // The run that finishes October compacts it: one sorted file per folder, named by the span
    // its windows covered (not the whole month).
    let second = run_both(&month, &date, "2026-11-01T12:00:00Z", &[], "second run");
    assert_eq!(
        second["compacted"],
        serde_json::json!(["2026-10"]),
        "{second}"
    );
    let merged = month_files(&out, "2026-10");
    let folders = folders_of(&merged);
    assert_eq!(
        merged.len(),
        folders.len(),
        "one file per folder: {merged:?}"
    );
    for f in &merged {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with("part-20261030T180000Z-20261101T000000Z-c0-"),
            "{name}"
        );
        assert_eq!(out_of_order(f), 0, "{f:?} is sorted like one window's file");
    }
    assert_eq!(
        compact(&month, &[])["periods"],
        serde_json::json!([]),
        "idempotent"
    );
    // `status` counts October's windows committed, within the merged files' ledger window.
    let shown = run(&[
        "status",
        month.to_str().unwrap(),
        "--json",
        "--now",
        "2026-11-01T12:00:00Z",
    ]);
    assert!(shown.status.success(), "{}", describe(&shown));
    let status: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(status["missing"], 0, "{status}");
    assert_eq!(status["windows"][0]["state"], "committed", "{status}");
    assert_eq!(
        status["windows"][0]["within"], "2026-10-30T18:00:00Z..2026-11-01T00:00:00Z",
        "{status}"
    );

    // The next runs leave the compacted month alone.
    run_both(&month, &date, "2026-11-02T00:00:00Z", &[], "next run");
    assert_eq!(month_files(&out, "2026-10"), merged);

    // A backfill before the first run's range: fetched, though the month was compacted, then
    // compacted with it.
    for (p, dir, is_month) in [(&month, m.path(), true), (&date, d.path(), false)] {
        assert_eq!(&pipeline(dir, "2026-10-30T00:00:00Z", is_month), p);
    }
    let backfill = run_both(&month, &date, "2026-11-02T00:00:00Z", &[], "backfill");
    assert_eq!(
        backfill["compacted"],
        serde_json::json!(["2026-10"]),
        "{backfill}"
    );
    for f in month_files(&out, "2026-10") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("part-20261030T000000Z-20261101T000000Z-c0-"),
            "{name}"
        );
    }

    // Rewriting part of a compacted month re-fetches what the merged files stand for
    // (`--no-compact`: left as window files).
    let force = [
        "--force",
        "--no-compact",
        "--start",
        "2026-10-31T06:00:00Z",
        "--end",
        "2026-10-31T12:00:00Z",
    ];
    let rewrite = run_both(
        &month,
        &date,
        "2026-11-02T00:00:00Z",
        &force,
        "forced rewrite",
    );
    assert_eq!(
        rewrite["windows_committed"], 8,
        "two days of 6 h windows: {rewrite}"
    );
    assert_eq!(rewrite["compacted"], serde_json::json!([]), "{rewrite}");
    assert!(
        month_files(&out, "2026-10")
            .iter()
            .all(|f| !f.to_string_lossy().contains("-c0-"))
    );

    // Compactions killed at steps of their publication: the next one completes the journal.
    for crash_after in [1, 4, 9] {
        let killed = bin()
            .args(["compact", month.to_str().unwrap()])
            .env("VSCOPE_ETL_TEST_CRASH_AFTER", crash_after.to_string())
            .output()
            .unwrap();
        assert!(
            !killed.status.success(),
            "{crash_after}: {}",
            describe(&killed)
        );
        compact(&month, &[]);
        assert_same_rows(
            &month,
            &date,
            &format!("compaction killed after {crash_after} steps"),
        );
        run_both(
            &month,
            &date,
            "2026-11-02T00:00:00Z",
            &force,
            "back to window files",
        );
    }
}

/// More window files in a folder than one merge reads at once (72 hourly windows against 64):
/// merged in passes, into one sorted file per folder with the rows of the date layout, and no
/// intermediate file left.
#[test]
fn a_folder_of_more_files_than_one_merge_reads_is_merged_in_passes() {
    let (m, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let month = pipeline_in_windows(m.path(), "2026-10-29T00:00:00Z", "1h", true);
    let date = pipeline_in_windows(d.path(), "2026-10-29T00:00:00Z", "1h", false);
    let out = m.path().join("out");
    run_both(
        &month,
        &date,
        "2026-11-01T06:00:00Z",
        &["--no-compact"],
        "hourly windows",
    );
    let files = month_files(&out, "2026-10");
    let folders = folders_of(&files);
    assert!(
        files.len() >= 72 * folders.len(),
        "{} files in {} folders",
        files.len(),
        folders.len()
    );
    let report = compact(&month, &[]);
    assert_eq!(
        report["periods"],
        serde_json::json!(["2026-10"]),
        "{report}"
    );
    assert_same_rows(&month, &date, "merged in passes");
    let merged = month_files(&out, "2026-10");
    assert_eq!(
        merged.len(),
        folders.len(),
        "one file per folder: {merged:?}"
    );
    for f in &merged {
        assert_eq!(out_of_order(f), 0, "{f:?} is sorted like one window's file");
    }
    let staging: Vec<_> = std::fs::read_dir(out.join("_tmp"))
        .map(|d| {
            d.flat_map(|e| std::fs::read_dir(e.unwrap().path()).into_iter().flatten())
                .collect()
        })
        .unwrap_or_default();
    assert!(staging.is_empty(), "intermediate files left: {staging:?}");
}
