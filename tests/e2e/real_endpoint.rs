//! What the real OVH endpoint does that plain OpenTSDB does not (issue 15), through the real
//! binary and the in-process simulator in its `ovh` dialect:
//! - Warp 10's fetch range is (start, end]: points stamped on window boundaries are kept once;
//! - Erlenmeyer HEAD answers every Warp error as an opaque `500 invalid character 'E' ...`:
//!   fetch limits are still split, a refused token still ends the run with exit 3;
//! - a throttling, half-available server is ridden out;
//! - a fetch limit below one bucket of a datacenter is met by splitting series;
//! - a token or endpoint that sees no series commits nothing;
//! - `vscope-etl check` names each problem with its fix.
//!
//! Every run that must recover is compared row by row with a clean run of the same pipeline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use vscope_etl::sim::SimConfig;

const NOW: &str = "2026-11-03T00:00:00Z";
const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T06:00:00Z";
const NAME: &str = "real";
const ALL_TABLES: [&str; 4] = [
    "vm_metrics",
    "host_metrics",
    "filer_metrics",
    "vm_metrics_1h",
];

/// An `ovh`-dialect simulator source: `extra` in `[source]`, `sim_extra` in `[source.sim]`.
fn source(extra: &str, sim_extra: &str) -> String {
    format!(
        "url = \"sim\"\nrequests_per_second = 0\n{extra}\n[source.sim]\ndialect = \"ovh\"\n\
         datacenters = 1\nhosts_per_datacenter = 1\nvms_per_datacenter = 4\n\
         filers_per_datacenter = 1\nstep = \"10s\"\nfault_seed = 5\n{sim_extra}"
    )
}

struct Run {
    out: std::process::Output,
    elapsed: Duration,
    root: PathBuf,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    fn describe(&self) -> String {
        describe(&self.out)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// The newest run manifest.
    fn manifest(&self) -> serde_json::Value {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.join("_runs"))
            .unwrap_or_else(|e| panic!("no manifest: {e}\n{}", self.describe()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        serde_json::from_slice(&std::fs::read(files.last().unwrap()).unwrap()).unwrap()
    }
}

fn run_in(dir: &Path, source: &str, tables: &str, flags: &[&str]) -> Run {
    let p = write_pipeline(dir, NAME, source, START, END, "2h", tables);
    let t0 = Instant::now();
    let out = bin()
        .args(["run", p.to_str().unwrap(), "--json", "--now", NOW])
        .args(flags)
        .env_remove("RUST_LOG")
        .output()
        .expect("binary runs");
    Run {
        out,
        elapsed: t0.elapsed(),
        root: dir.join("out"),
    }
}

/// Rows of every table of a clean run of `tables` (no fault, same simulator).
fn clean_rows(tables: &str, table_names: &[&str]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &source("", ""), tables, &[]);
    assert_eq!(r.code(), Some(0), "clean run\n{}", r.describe());
    table_names.iter().map(|t| table_rows(&r.root, t)).collect()
}

fn assert_rows_as_clean(r: &Run, tables: &str, table_names: &[&str], what: &str) {
    let want = clean_rows(tables, table_names);
    for (t, want) in table_names.iter().zip(want) {
        let got = table_rows(&r.root, t);
        assert!(!want.is_empty(), "{what}: the clean run wrote {t}");
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            got == want,
            "{what}: rows of {t}: {} vs {} clean, first difference at {first_diff:?}: {:?} vs {:?}\n{}",
            got.len(),
            want.len(),
            first_diff.map(|i| &got[i]),
            first_diff.map(|i| &want[i]),
            r.describe()
        );
    }
}

/// Nothing at all under the sink but, at most, empty folders and the lease: no table file,
/// no ledger, no manifest.
fn assert_nothing_written(r: &Run) {
    let mut found = Vec::new();
    if r.root.exists() {
        for e in walk(&r.root) {
            let rel = e.strip_prefix(&r.root).unwrap().display().to_string();
            if !rel.starts_with("_state/") || rel.ends_with(".json") {
                found.push(rel);
            }
        }
    }
    assert!(found.is_empty(), "written: {found:?}\n{}", r.describe());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Warp's FETCH drops a point stamped exactly `start`. With 10 s steps and phases in whole
/// seconds, some series have points on every window boundary (00:00, 02:00, 04:00); each must
/// be written exactly once, and the dataset must equal the simulator's points of [START, END).
#[test]
fn points_on_window_boundaries_are_written_once_with_warps_range() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &source("", ""), TABLES, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let cfg = SimConfig {
        dialect: vscope_etl::dialect::Dialect::Ovh,
        datacenters: 1,
        hosts_per_datacenter: 1,
        vms_per_datacenter: 4,
        filers_per_datacenter: 1,
        step_secs: 10,
        ..SimConfig::default()
    };
    let (start, end) = (ms(START), ms(END));
    let boundaries = [start, start + 7_200_000, start + 14_400_000];
    let mut on_boundaries = 0;
    for (table, prefix) in [
        ("vm_metrics", "vscope.vm."),
        ("host_metrics", "vscope.host."),
        ("filer_metrics", "vscope.filer."),
    ] {
        let mut want = expected_rows(&cfg, prefix, start, end);
        on_boundaries += want.iter().filter(|r| boundaries.contains(&r.1)).count();
        let mut got: Vec<RawRow> = parquet_files(&r.root, table)
            .iter()
            .flat_map(|p| read_file(p))
            .flat_map(|b| raw_rows(&b))
            .collect();
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(got.len(), want.len(), "{table}: rows");
        assert!(
            got == want,
            "{table}: rows differ from the simulator's points"
        );
    }
    assert!(
        on_boundaries > 0,
        "the data has points on window boundaries"
    );
}

/// Erlenmeyer HEAD hides every Warp error behind `500 invalid character 'E' ...`. With a fetch
/// limit smaller than a 2 h window, the client retries a little, checks that the token works
/// with a one-second query, takes the opaque 500 for a fetch limit and splits: the dataset is
/// the clean one.
#[test]
fn head_errors_and_a_small_fetch_limit_give_the_clean_dataset() {
    let dir = tempfile::tempdir().unwrap();
    // 4 VMs (or NICs) at 10 s: 1,440 points an hour per metric; 2,000 fit one hour, not two.
    let r = run_in(
        dir.path(),
        &source("", "errors = \"head\"\nmax_fetch_points = 2000"),
        TABLES,
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let m = r.manifest();
    assert!(m["splits"].as_u64().unwrap() > 0, "answers were split: {m}");
    assert_rows_as_clean(&r, TABLES, &ALL_TABLES, "head errors + fetch limit");
}

/// A wrong token behind Erlenmeyer HEAD gets only opaque 500s: the run stops within a minute
/// with exit 3, writes nothing, and prints no secret.
#[test]
fn a_wrong_token_behind_head_errors_stops_at_once_with_exit_3() {
    let sim = SimProcess::start(&[
        "--dialect",
        "ovh",
        "--errors",
        "head",
        "--token",
        "tok-right-e2e-15",
        "--datacenters",
        "1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let sent = "tok-wrong-e2e-15-do-not-print";
    let src = format!(
        "url = \"{}\"\ntoken = \"{sent}\"\ndialect = \"ovh\"\nrequests_per_second = 0",
        sim.url
    );
    let r = run_in(dir.path(), &src, TABLES, &[]);
    assert_eq!(r.code(), Some(3), "{}", r.describe());
    assert!(r.elapsed < Duration::from_secs(60), "took {:?}", r.elapsed);
    let err = r.stderr();
    assert!(err.contains("token"), "names the token: {err}");
    let all = format!("{}{err}", String::from_utf8_lossy(&r.out.stdout));
    assert!(!all.contains(sent), "the token leaked:\n{all}");
    assert_nothing_written(&r);
}

/// A shared endpoint throttling about 1 request in 7 (429, `Retry-After: 1`) and unavailable
/// for 1 in 5 (503): the run slows down, waits, and finishes with the clean dataset; the
/// manifest says how often it was throttled and how long it waited.
#[test]
fn a_throttling_half_available_server_is_ridden_out() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &source(
            "concurrency = 4",
            "faults = [\"429:1@rate=0.15\", \"503@rate=0.2\"]",
        ),
        TABLES,
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let m = r.manifest();
    assert!(m["throttled"].as_u64().unwrap() > 0, "{m}");
    assert!(m["throttle_wait_seconds"].as_f64().unwrap() >= 1.0, "{m}");
    assert!(m["retries"].as_u64().unwrap() > 0, "503s were retried: {m}");
    assert_rows_as_clean(&r, TABLES, &ALL_TABLES, "429 + 503");
}

/// A fetch limit below one bucket of one datacenter's series (the 1 h rollup forbids cutting
/// time below an hour): the run splits the series into groups by a tag filter and completes
/// with the clean dataset.
#[test]
fn a_fetch_limit_below_one_bucket_is_met_by_splitting_series() {
    let dir = tempfile::tempdir().unwrap();
    // One hour of one VM metric: 4 series × 360 points = 1,440 > 500; one series: 360 <= 500.
    // The host's 4 NICs are one host: they are told apart by `nicname`.
    let r = run_in(
        dir.path(),
        &source("", "max_fetch_points = 500"),
        TABLES,
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let files: Vec<String> = parquet_files(&r.root, "vm_metrics")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.contains("-g")),
        "some files hold a group of series: {files:?}"
    );
    assert_rows_as_clean(&r, TABLES, &ALL_TABLES, "series split");
}

/// A token (or endpoint) that sees no series at all: exit 2, nothing committed; a following
/// good run into the same sink, without `--force`, writes everything.
#[test]
fn a_token_that_sees_no_series_commits_nothing_and_the_next_good_run_writes_all() {
    let dir = tempfile::tempdir().unwrap();
    let blind = source("", "").replace("datacenters = 1", "datacenters = 0");
    let r = run_in(dir.path(), &blind, TABLES, &[]);
    assert_eq!(r.code(), Some(2), "{}", r.describe());
    let err = r.stderr();
    assert!(
        err.contains("no series") && err.contains("region") && err.contains("PCC"),
        "names the likely causes: {err}"
    );
    assert_nothing_written(&r);
    let r = run_in(dir.path(), &source("", ""), TABLES, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    assert_rows_as_clean(&r, TABLES, &ALL_TABLES, "good run after a blind one");
}

/// `vscope-etl check`: everything fine on a healthy simulator; the refused token (behind
/// opaque errors) and the blind token each named, with the fix and the right exit code.
#[test]
fn check_names_each_problem_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let check = |source: &str| {
        let p = write_pipeline(dir.path(), NAME, source, START, END, "2h", TABLES);
        run(&["check", p.to_str().unwrap(), "--now", NOW])
    };
    let out = check(&source("", ""));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for check in ["endpoint", "token", "series", "answer size", "sink"] {
        assert!(text.contains(check), "{check} in:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("dialect ovh"), "{text}");

    let sim = SimProcess::start(&[
        "--dialect",
        "ovh",
        "--errors",
        "head",
        "--token",
        "tok-right",
        "--datacenters",
        "1",
    ]);
    let out = check(&format!(
        "url = \"{}\"\ntoken = \"tok-wrong\"\nrequests_per_second = 0",
        sim.url
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(text.contains("FAIL  token"), "{text}");
    assert!(text.contains("fix:"), "{text}");
    assert!(!text.contains("tok-wrong"), "{text}");

    let blind = source("", "").replace("datacenters = 1", "datacenters = 0");
    let out = check(&blind);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text.contains("FAIL  series"), "{text}");
    assert!(text.contains("opentsdbEndpoint"), "{text}");
}

/// `vscope-etl check` says whether the answers come compressed: through the `ovh` dialect
/// (Erlenmeyer answers plain whatever is asked) it warns, names Warp 10's API as the fix, and
/// still exits 0; from OpenTSDB's own server (dialect `opentsdb`) it reports the ratio; with
/// `source.gzip = false` it says compression was not asked.
#[test]
fn check_tells_whether_the_answers_come_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let check = |source: &str| {
        let p = write_pipeline(dir.path(), NAME, source, START, END, "2h", TABLES);
        let out = run(&["check", p.to_str().unwrap(), "--now", NOW]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let erlenmeyer = source("", "").replace("vms_per_datacenter = 4", "vms_per_datacenter = 30");
    let text = check(&erlenmeyer);
    assert!(
        text.contains("warn  compression")
            && text.contains("uncompressed although gzip was asked")
            && text.contains("source.protocol = \"warp10\""),
        "{text}"
    );
    let text = check(&erlenmeyer.replace("dialect = \"ovh\"", "dialect = \"opentsdb\""));
    assert!(
        text.contains("ok    compression  answers come gzip"),
        "{text}"
    );
    let text = check(&erlenmeyer.replace(
        "requests_per_second = 0",
        "requests_per_second = 0\ngzip = false",
    ));
    assert!(text.contains("ok    compression  not asked"), "{text}");
}
