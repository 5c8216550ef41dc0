//! Memory bounded by what is in flight, not by the size of the PCC (issue 18): the same day,
//! window `1d`, from a simulator with 10 times more VMs, must not take more memory. The
//! simulator runs as its own process, and the peak is the run's own (`VmHWM`, which `exec`
//! resets, from its `run finished` log line): `wait4`'s `ru_maxrss` would also count the test
//! process the run was spawned from.

use crate::common::*;

/// Peak RSS (MiB) of a run over one day, window `1d`, against a simulator of `vms` VMs, and
/// the rows it wrote.
fn peak_for(vms: usize) -> (f64, usize, serde_json::Value) {
    let sim = SimProcess::start(&[
        "--datacenters",
        "1",
        "--hosts",
        "1",
        "--vms",
        &vms.to_string(),
        "--filers",
        "1",
        "--step",
        "60",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"{}\"\ntoken = \"any\"\ndialect = \"ovh\"\nrequests_per_second = 0\nmemory_limit = \"24MiB\"\nmax_answer_size = \"6MiB\"",
        sim.url
    );
    let tables = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n\
                  [[table]]\nname = \"vm_metrics_1h\"\nmetrics = [\"vscope.vm.*\"]\n\
                  downsample = \"1h\"\naggregates = [\"avg\", \"max\", \"p95\", \"count\"]\n";
    let p = write_pipeline(
        dir.path(),
        "mem",
        &source,
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        "1d",
        tables,
    );
    let out = bin()
        .args([
            "run",
            p.to_str().unwrap(),
            "--json",
            "--now",
            "2026-11-03T00:00:00Z",
        ])
        .env("RUST_LOG", "vscope_etl=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{vms} VMs: {}", describe(&out));
    let peak = logged_peak_rss_mb(&out.stderr);
    let summary: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let rows = summary["rows"].as_u64().unwrap() as usize;
    (peak, rows, summary)
}

/// 30 then 300 VMs: ten times the series and points in the same window; the peak memory of
/// the run stays within a quarter (and 16 MiB) of the small one's, while the big one's units
/// are larger than `source.max_answer_size` and its answers wait for memory. What is in flight
/// is the budget (24 MiB) and one answer over it (the unit the writer waits for never waits),
/// so the answer size is set to a quarter of the budget, as small pods would: by default it is
/// half (12 MiB here, measured 121 MB instead of 78 MB in this debug build).
#[test]
fn peak_memory_does_not_grow_with_the_series_of_a_window() {
    let (small, small_rows, _) = peak_for(30);
    let (big, big_rows, summary) = peak_for(300);
    assert!(
        big_rows >= 9 * small_rows,
        "{big_rows} rows vs {small_rows}"
    );
    eprintln!(
        "30 VMs: {small_rows} rows, {small:.1} MiB; 300 VMs: {big_rows} rows, {big:.1} MiB; {summary}"
    );
    assert!(
        big <= small * 1.25 + 16.0,
        "peak RSS grew with the series: {small:.1} MiB for 30 VMs, {big:.1} MiB for 300"
    );
}
