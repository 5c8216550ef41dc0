//! The Delta log's costs (issue 20): `cargo bench --no-default-features --bench delta_log`.
//!
//! Commits `VSCOPE_BENCH_COMMITS` (default 1,000) windows to one table on a local sink, each as a
//! run publishes it (a `txn`, four added files, the four files of the window's previous cut
//! removed from the second pass on), with a checkpoint every 10 commits as in production, and
//! prints the commit cost (mean, p50, p95, max); then the time to open the table (our
//! `Snapshot::load`) with its checkpoint, and after the checkpoints are deleted (all commits
//! replayed). The table stays in cargo's `CARGO_TARGET_TMPDIR/delta-bench/` (printed) for `benches/delta.sh`, which
//! opens it with delta-rs too. Without `--bench` (`cargo test --all-targets`) it runs 25 commits
//! as a smoke test.

use std::time::Instant;

use vscope_etl::load::Sink;
use vscope_etl::load::delta::actions::Txn;
use vscope_etl::load::delta::{AddedFile, Snapshot, TableCommit, app_id, commit_table};

fn commit(window: u64, previous: Option<u64>) -> TableCommit {
    let day = |w: u64| {
        format!(
            "2026-{:02}-{:02}",
            1 + (w / 24 / 28) % 12,
            1 + (w / 24) % 28
        )
    };
    let files = |w: u64| -> Vec<String> {
        (0..4)
            .map(|s| format!("date={}/part-w{w:06}-h{s}of4-r{w:x}.parquet", day(w)))
            .collect()
    };
    TableCommit {
        table: "vm_metrics".into(),
        txn: Txn {
            app_id: app_id("bench"),
            version: window as i64 + 1,
            last_updated: None,
        },
        adds: files(window)
            .into_iter()
            .map(|path| AddedFile {
                path,
                size: 5_000_000,
                rows: 400_000,
                stats: None,
            })
            .collect(),
        removes: previous.map(files).unwrap_or_default(),
        data_change: true,
        operation: "WRITE".into(),
        schema_string: r#"{"type":"struct","fields":[{"name":"ts","type":"timestamp","nullable":false,"metadata":{}},{"name":"date","type":"date","nullable":true,"metadata":{}}]}"#.into(),
        partition_columns: vec!["date".into()],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let commits: u64 = if bench {
        std::env::var("VSCOPE_BENCH_COMMITS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000)
    } else {
        25
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("delta-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sink = Sink::open(dir.to_str().unwrap()).unwrap();
    let mut ms = Vec::with_capacity(commits as usize);
    // Windows 0..n/2, then the same windows again (a rewrite: removes + adds).
    let half = commits.div_ceil(2);
    for i in 0..commits {
        let window = i % half;
        let previous = (i >= half).then_some(window);
        let mut c = commit(window, previous);
        c.txn.version = i as i64 + 1;
        if let Some(w) = previous {
            // The rewrite's files get another run tag.
            for a in &mut c.adds {
                a.path = a.path.replace(&format!("-r{w:x}."), &format!("-r{w:x}b."));
            }
        }
        let t = Instant::now();
        commit_table(&sink, &c).await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let open = |label: &'static str| {
        let sink = sink.clone();
        async move {
            let mut best = f64::MAX;
            let mut files = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let snap = Snapshot::load(&sink, "vm_metrics").await.unwrap();
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
                files = snap.files.len();
            }
            println!("open {label}: {best:.1} ms (best of 5), {files} files listed");
            best
        }
    };
    println!(
        "{commits} commits: mean {mean:.2} ms, p50 {:.2}, p95 {:.2}, max {:.2} (checkpoint every 10)",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.95),
        percentile(&sorted, 1.0)
    );
    let with = open("with checkpoint").await;
    // The same table without its checkpoints: every commit replayed.
    for e in std::fs::read_dir(dir.join("vm_metrics/_delta_log")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains("checkpoint") {
            std::fs::rename(&p, dir.join(format!("saved-{name}"))).unwrap();
        }
    }
    let without = open("without checkpoint").await;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(orig) = name.strip_prefix("saved-") {
            std::fs::rename(&p, dir.join("vm_metrics/_delta_log").join(orig)).unwrap();
        }
    }
    println!(
        "delta commits={commits} commit_ms_mean={mean:.2} commit_ms_p95={:.2} open_ms_checkpoint={with:.1} open_ms_replay={without:.1} table={}",
        percentile(&sorted, 0.95),
        dir.join("vm_metrics").display()
    );
}
