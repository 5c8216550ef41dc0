//! No silent duplicates or holes (issue 16): what a careless user, a failing store or a crash
//! can do to a dataset, each compared with a clean run of the same pipeline (the real binary,
//! the in-process simulator; a real S3 server, moto, for the store failures).
//!
//! Rows are compared by content (`raw_rows` / `table_rows`), not by file: a window may be cut
//! into different files and still hold exactly the clean rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

const NOW: &str = "2026-11-03T00:00:00Z";
const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-02T00:00:00Z";

/// A small in-process simulator; `sim_extra` goes in `[source.sim]`.
fn source(sim_extra: &str) -> String {
    format!(
        "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\n\
         hosts_per_datacenter = 1\nvms_per_datacenter = 3\nfilers_per_datacenter = 1\n{sim_extra}"
    )
}

fn scope(window: &str) -> String {
    format!("start = \"{START}\"\nend = \"{END}\"\nwindow = \"{window}\"")
}

fn local_sink(dir: &Path, partition_by: &str) -> String {
    format!(
        "url = \"{}\"\npartition_by = {partition_by}",
        dir.join("out").display()
    )
}

fn run_with(p: &Path, env: &[(&str, &str)], flags: &[&str]) -> std::process::Output {
    run_pipeline_at(p, NOW, env, flags)
}

/// Rows by content of the standard tables, by table name.
fn rows_by_table(root: &Path) -> BTreeMap<String, Vec<String>> {
    TABLE_NAMES
        .iter()
        .map(|t| t.to_string())
        .zip(rows_by_content(root, &TABLE_NAMES))
        .collect()
}

/// The rows of a clean run of the standard tables over [START, END), computed once.
fn clean_rows() -> &'static BTreeMap<String, Vec<String>> {
    static CLEAN: std::sync::OnceLock<BTreeMap<String, Vec<String>>> = std::sync::OnceLock::new();
    CLEAN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = write_pipeline_with_sink(
            dir.path(),
            "clean",
            &source(""),
            &scope("6h"),
            TABLES,
            &local_sink(dir.path(), "[\"date\"]"),
        );
        let out = run_with(&p, &[], &[]);
        assert!(out.status.success(), "{}", describe(&out));
        let rows = rows_by_table(&dir.path().join("out"));
        assert!(
            rows.values().all(|r| !r.is_empty()),
            "the clean run wrote every table"
        );
        rows
    })
}

fn assert_clean(root: &Path, what: &str) {
    let got = rows_by_table(root);
    for (t, want) in clean_rows() {
        let rows = &got[t];
        let first_diff = rows.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            rows == want,
            "{what}: {t} has {} rows, the clean run {}; first difference at {first_diff:?}: {:?} vs {:?}",
            rows.len(),
            want.len(),
            first_diff.map(|i| &rows[i]),
            first_diff.map(|i| &want[i]),
        );
    }
}

fn parquet_names(root: &Path, table: &str) -> Vec<String> {
    parquet_files(root, table)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

/// Item 1: `scope.window` changed on an existing sink, both ways, with and without `--force`:
/// never two cuts of a time range, always the clean rows.
#[test]
fn changing_the_window_never_leaves_two_cuts() {
    for (first, second) in [("6h", "1d"), ("1d", "6h"), ("2h", "6h")] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let pipeline = |window: &str| {
            write_pipeline_with_sink(
                dir.path(),
                "w",
                &source(""),
                &scope(window),
                TABLES,
                &local_sink(dir.path(), "[\"date\"]"),
            )
        };
        let out = run_with(&pipeline(first), &[], &[]);
        assert!(out.status.success(), "{first}: {}", describe(&out));
        // An incremental run with the new window: the range is done, in the old cut.
        let out = run_with(&pipeline(second), &[], &[]);
        assert!(
            out.status.success(),
            "{first} -> {second}: {}",
            describe(&out)
        );
        assert_clean(&root, &format!("{first} -> {second}, incremental"));
        // Rewritten in the new cut: the old cut's files are gone.
        let out = run_with(&pipeline(second), &[], &["--force", "--start", START]);
        assert!(
            out.status.success(),
            "{first} -> {second} --force: {}",
            describe(&out)
        );
        assert_clean(&root, &format!("{first} -> {second}, --force"));
        let first_file = |w: &str| match w {
            "6h" => "part-20261101T000000Z-20261101T060000Z",
            "2h" => "part-20261101T000000Z-20261101T020000Z",
            _ => "part-20261101T000000Z-20261102T000000Z",
        };
        for t in TABLE_NAMES {
            let names = parquet_names(&root, t);
            assert!(
                names.iter().all(|n| !n.contains(first_file(first))),
                "{first} -> {second}: a file of the old cut is left in {t}: {names:?}"
            );
        }
        // A lateness-style refetch of only the last window still removes the larger old cut.
        let out = run_with(
            &pipeline(first),
            &[],
            &["--force", "--start", "2026-11-01T18:00:00Z"],
        );
        assert!(
            out.status.success(),
            "{second} -> {first} tail: {}",
            describe(&out)
        );
        assert_clean(&root, &format!("{second} -> {first}, last window only"));
    }
}

/// Item 1: `partition_by` changed on an existing sink: the next run (no `--force`) rewrites
/// the range in the new layout and removes the old one; DuckDB reads one layout.
#[test]
fn changing_the_partitioning_rewrites_the_range_in_the_new_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let pipeline = |partition_by: &str| {
        write_pipeline_with_sink(
            dir.path(),
            "p",
            &source(""),
            &scope("6h"),
            TABLES,
            &local_sink(dir.path(), partition_by),
        )
    };
    let out = run_with(&pipeline("[\"date\"]"), &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_with(&pipeline("[\"metric\", \"date\"]"), &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    for t in TABLE_NAMES {
        let names = parquet_names(&root, t);
        assert!(
            names.iter().all(|n| n.contains("/metric=")),
            "{t}: files of the old layout are left: {names:?}"
        );
    }
    assert_clean(&root, "after the partitioning changed");
    let facts = duckdb_count(&root, "vm_metrics");
    assert_eq!(
        facts,
        clean_rows()["vm_metrics"].len() as u64,
        "DuckDB count"
    );
}

/// `count(*)` of a table through DuckDB with Hive partitioning, as an analyst reads it.
fn duckdb_count(root: &Path, table: &str) -> u64 {
    let script = format!(
        "import duckdb\nprint(duckdb.sql(\"select count(*) from read_parquet('{}/{table}/**/*.parquet', hive_partitioning = true)\").fetchone()[0])",
        root.display()
    );
    let out = std::process::Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Item 2: two pipelines writing the same table into one sink: the second is refused (exit 2,
/// naming the owner and the fix) and the first's data stays whole.
#[test]
fn a_second_pipeline_writing_the_same_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let table =
        |metrics: &str| format!("[[table]]\nname = \"vm_metrics\"\nmetrics = [\"{metrics}\"]\n");
    let a = write_pipeline_with_sink(
        dir.path(),
        "a",
        &source(""),
        &scope("6h"),
        &table("vscope.vm.cpu.*"),
        &local_sink(dir.path(), "[\"date\"]"),
    );
    let b = write_pipeline_with_sink(
        dir.path(),
        "b",
        &source(""),
        &scope("6h"),
        &table("vscope.vm.mem.*"),
        &local_sink(dir.path(), "[\"date\"]"),
    );
    let out = run_with(&a, &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let before = table_rows(&root, "vm_metrics");
    assert!(!before.is_empty());
    let out = run_with(&b, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to pipeline 'a'"), "{err}");
    assert_eq!(
        table_rows(&root, "vm_metrics"),
        before,
        "a's rows are untouched"
    );
    let out = run_with(&a, &[], &["--force", "--start", START]);
    assert!(
        out.status.success(),
        "the owner runs again: {}",
        describe(&out)
    );
}

/// Item 8: a table added to an existing pipeline is backfilled by the next run, without
/// `--force`, with or without an explicit range.
#[test]
fn a_table_added_to_a_pipeline_is_backfilled() {
    for flags in [&[][..], &["--start", START, "--end", END][..]] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let raw_only = TABLES
            .split("[[table]]")
            .filter(|t| !t.contains("vm_metrics_1h"))
            .collect::<Vec<_>>()
            .join("[[table]]");
        let p = |tables: &str| {
            write_pipeline_with_sink(
                dir.path(),
                "grow",
                &source(""),
                &scope("6h"),
                tables,
                &local_sink(dir.path(), "[\"date\"]"),
            )
        };
        let out = run_with(&p(&raw_only), &[], &[]);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(table_rows(&root, "vm_metrics_1h").is_empty());
        let out = run_with(&p(TABLES), &[], flags);
        assert!(out.status.success(), "{flags:?}: {}", describe(&out));
        let summary: serde_json::Value =
            serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert!(
            summary["units_done"].as_u64().unwrap() > 0,
            "{flags:?}: {summary}"
        );
        assert_clean(&root, &format!("table added, {flags:?}"));
    }
}

/// Item 3: a run killed at any point while publishing (after a fetch-limit split re-cut a
/// committed window, or on fresh windows), then an incremental run without `--force`: the
/// dataset is the clean one every time; nothing is left staged or journaled.
#[test]
fn a_run_killed_anywhere_in_a_publication_is_repaired_by_the_next_run() {
    // Steps of one publication: the journal, each move, each removal, the ledger. Points spread
    // over the whole run (three windows here, of a dozen to forty steps each), from a fixed seed.
    let mut rng = fastrand::Rng::with_seed(16);
    let mut points: Vec<u32> = vec![1, 2, 3];
    points.extend((0..9).map(|_| rng.u32(4..90)));
    for crash_after in points {
        for recut in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("out");
            let p = |sim: &str| {
                write_pipeline_with_sink(
                    dir.path(),
                    "crash",
                    &source(sim),
                    &scope("6h"),
                    TABLES,
                    &local_sink(dir.path(), "[\"date\"]"),
                )
            };
            let what = kill_while_publishing_then_rerun(&p, crash_after, recut, START, NOW);
            assert_clean(&root, &what);
            assert!(
                !root.join("_state/crash.publish.json").exists(),
                "{what}: journal left"
            );
            let staged: Vec<PathBuf> = std::fs::read_dir(root.join("_tmp/crash"))
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            assert!(staged.is_empty(), "{what}: staged files left: {staged:?}");
        }
    }
}
