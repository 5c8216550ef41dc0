//! `sim --replay` serves Warp 10's answers recorded by `benches/gen_answers.py --warp`
//! (`crates/sim/src/replay_warp.rs`): the bench's pipeline through `source.protocol = "warp10"`
//! writes the very files it writes through OpenTSDB from the same recorded data, every point
//! of it once, and a wrong Warp answer shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// After the recorded day (2026-11-01): every window is complete.
const NOW: &str = "2026-11-03T00:00:00Z";

/// The recorded data's sizes (`meta.json`).
struct Meta {
    series: i64,
    days: i64,
    start_ms: i64,
    end_ms: i64,
}

/// Records the answers of `series` series into `dir`, OpenTSDB's and Warp 10's.
fn generate(dir: &Path, series: usize) -> Meta {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/gen_answers.py"
        ))
        .arg(dir)
        .args(["--series", &series.to_string(), "--warp"])
        .output()
        .expect("python3 runs benches/gen_answers.py");
    assert!(out.status.success(), "{}", describe(&out));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let field = |k: &str| meta[k].as_i64().unwrap();
    Meta {
        series: field("series"),
        days: field("days"),
        start_ms: field("start_ms"),
        end_ms: field("end_ms"),
    }
}

/// The bench's pipeline (`benches/replay-lib.sh` `replay_pipeline`) through `protocol`,
/// its sink in `dir/out`.
fn pipeline(dir: &Path, url: &str, protocol: &str, meta: &Meta) -> PathBuf {
    let source = format!(
        "url = \"{url}\"\nprotocol = \"{protocol}\"\ndialect = \"opentsdb\"\ntoken = \"t0k3n-for-replay\"\n\
         requests_per_second = 0\ntimeout = \"60s\""
    );
    let tables = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]";
    let scope = format!(
        "start = \"{}\"\nend = \"{}\"\nwindow = \"1d\"\nmetrics = [\"vscope.vm.*\"]",
        meta.start_ms, meta.end_ms
    );
    let sink = format!(
        "url = \"{}\"\npartition_by = [\"date\"]\n",
        dir.join("out").display()
    );
    write_pipeline_with_sink(dir, "replay", &source, &scope, tables, &sink)
}

/// Exports the recorded range through `protocol`: the files written, by name.
fn export(url: &str, protocol: &str, meta: &Meta) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), url, protocol, meta);
    let out = run(&["run", p.to_str().unwrap(), "--json", "--now", NOW]);
    assert!(out.status.success(), "{protocol}\n{}", describe(&out));
    let files = dataset(&dir.path().join("out"), &["vm_metrics"]);
    assert!(!files.is_empty(), "{protocol}: no file written");
    files
}

/// The rows of every file below `root`'s `vm_metrics`.
fn rows(root: &Path) -> usize {
    parquet_files(root, "vm_metrics")
        .iter()
        .flat_map(|p| read_file(p))
        .map(|b| b.num_rows())
        .sum()
}

/// The lines of every recorded fetch answer: one per point.
fn recorded_points(dir: &Path) -> usize {
    crate::faults::all_files(&dir.join("fetch"))
        .iter()
        .map(|(_, bytes)| bytes.iter().filter(|&&c| c == b'\n').count())
        .sum()
}

/// The first recorded fetch answer (by name): its path.
fn first_fetch(dir: &Path) -> PathBuf {
    let mut p = dir.join("fetch");
    while p.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        p = names.remove(0);
    }
    p
}

#[test]
fn warp_answers_replay_the_same_files_as_opentsdb_ones() {
    let data = tempfile::tempdir().unwrap();
    let meta = generate(data.path(), 40);
    let points = (meta.series * meta.days * 86_400 / 20) as usize;
    assert_eq!(recorded_points(data.path()), points, "a line per point");
    let replay = SimProcess::start(&["--replay", data.path().to_str().unwrap()]);

    let opentsdb = export(&replay.url, "opentsdb", &meta);
    let warp = export(&replay.url, "warp10", &meta);
    assert_eq!(
        opentsdb.keys().collect::<Vec<_>>(),
        warp.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (name, bytes) in &opentsdb {
        assert!(warp[name] == *bytes, "{name} differs between the protocols");
    }
    // Every point of the data, once (the OpenTSDB answers hold none twice: one day, nothing
    // stamped on its end).
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &warp {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    assert_eq!(rows(dir.path()), points);

    // A wrong Warp answer (a value changed, a point missing) gives other files: the comparison
    // above would catch it.
    let fetch = first_fetch(data.path());
    let recorded = std::fs::read_to_string(&fetch).unwrap();
    let second_line = recorded.find('\n').unwrap() + 1;
    let third_line = second_line + recorded[second_line..].find('\n').unwrap() + 1;
    let value_at = second_line + recorded[second_line..third_line].rfind(' ').unwrap() + 1;
    let changed = format!("{}9{}", &recorded[..value_at], &recorded[value_at..]);
    let missing = format!("{}{}", &recorded[..second_line], &recorded[third_line..]);
    for (what, text) in [("a changed value", changed), ("a missing point", missing)] {
        std::fs::write(&fetch, text).unwrap();
        let wrong = export(&replay.url, "warp10", &meta);
        assert!(wrong != opentsdb, "{what} went unnoticed");
    }
}
