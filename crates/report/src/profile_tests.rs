//! The streaming profile and the exact percentile against the plain-Rust reference
//! ([`crate::stats::percentile`]) on all the values at once: series larger than
//! [`super::COLLECT_MAX`] (the histogram passes run), ties, a constant series with spikes,
//! nulls, a hole, files that cut a series' day in two, and a period that cuts files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::data::{Dataset, Location, SeriesKey, series_stats, trend_sums};
use crate::stats::percentile;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00Z
const STEP: i64 = 10_000;

/// (series key, ts, value) rows, written one file per (day, half of the day).
type Row = (SeriesKey, i64, Option<f64>);

fn value(vm: usize, i: usize) -> Option<f64> {
    let r = fastrand::Rng::with_seed((vm * 1_000_003 + i) as u64).f64();
    match vm {
        // Spread values with two decimals (many ties).
        0 => Some((r * 10_000.0).round() / 100.0),
        // Constant zero with rare spikes: the percentile sits on the constant.
        1 => Some(if i.is_multiple_of(997) { 50.0 + r } else { 0.0 }),
        // Two values only.
        2 => Some(if r < 0.9 { 1.5 } else { 7.25 }),
        // Nulls, negative values, and a hole of two hours on the second day.
        _ => {
            let t = i as i64 * STEP;
            if (DAY + 3_600_000..DAY + 3 * 3_600_000).contains(&t) || i.is_multiple_of(13) {
                None
            } else {
                Some(r * 200.0 - 100.0)
            }
        }
    }
}

fn rows() -> Vec<Row> {
    let mut out = Vec::new();
    for metric in ["vscope.vm.cpu.usage.perc", "vscope.vm.mem.usage.perc"] {
        for vm in 0..4 {
            let key = (
                metric.to_string(),
                vec![Some("dc1".to_string()), Some(format!("vm-{vm}"))],
            );
            for i in 0..(3 * DAY / STEP) as usize {
                let v = value(vm, i);
                // The hole: no row at all, not a null.
                if vm == 3 && v.is_none() && !i.is_multiple_of(13) {
                    continue;
                }
                out.push((key.clone(), T0 + i as i64 * STEP, v));
            }
        }
    }
    out
}

fn write(root: &Path, rows: &[Row], row_group_rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("metric", DataType::Utf8, false),
        Field::new("datacenter", DataType::Utf8, true),
        Field::new("vm", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]));
    let mut files: BTreeMap<(i64, i64), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let day = (r.1 - T0) / DAY;
        files
            .entry((day, (r.1 - T0) % DAY / (DAY / 2)))
            .or_default()
            .push(r);
    }
    for ((day, half), rs) in files {
        let dir = root.join(format!("vm_metrics/date=2026-01-0{}", day + 1));
        std::fs::create_dir_all(&dir).unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(rs.iter().map(|r| r.1).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(
                    rs.iter().map(|r| r.0.0.as_str()),
                )),
                Arc::new(StringArray::from(
                    rs.iter().map(|r| r.0.1[0].clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rs.iter().map(|r| r.0.1[1].clone()).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rs.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(dir.join(format!("part-{half}.parquet"))).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
}

fn open(root: &Path) -> Dataset {
    tokio_free_block_on(Dataset::open(
        Location::Local(root.display().to_string()),
        None,
    ))
    .unwrap()
}

/// `Dataset::open` is async only for object stores; a local open never awaits.
fn tokio_free_block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a local dataset open awaited"),
    }
}

#[test]
fn streamed_statistics_equal_the_reference_on_all_values() {
    // Row groups that mix metrics (no first histogram in the profile pass), and row groups
    // within one series (every series' half day is a multiple of 240 rows: one metric per row
    // group, so the profile pass counts the first histogram).
    for row_group_rows in [10_000, 240] {
        check_against_reference(row_group_rows);
    }
}

fn check_against_reference(row_group_rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let all = rows();
    write(dir.path(), &all, row_group_rows);
    let ds = open(dir.path());
    let t = ds
        .tables
        .get("vm_metrics")
        .expect("the table is found")
        .clone();
    // A period that cuts the first and the last day.
    let (from, to) = (T0 + 6 * 3_600_000, T0 + 2 * DAY + 20 * 3_600_000);
    let metrics = ["vscope.vm.cpu.usage.perc", "vscope.vm.mem.usage.perc"];
    let stats = series_stats(&ds, &t, &metrics, from, to).unwrap();
    let trends = trend_sums(&ds, &t, metrics[0], from, to).unwrap();
    let complete = crate::completeness::completeness(&ds, &t, from, to).unwrap();
    let mut by_series: BTreeMap<SeriesKey, Vec<(i64, Option<f64>)>> = BTreeMap::new();
    for (k, ts, v) in &all {
        if (from..to).contains(ts) {
            by_series.entry(k.clone()).or_default().push((*ts, *v));
        }
    }
    assert_eq!(stats.len(), by_series.len());
    for (k, pts) in &by_series {
        let vals: Vec<f64> = pts.iter().filter_map(|p| p.1).collect();
        assert!(
            vals.len() > super::COLLECT_MAX as usize,
            "the histogram passes run"
        );
        let s = stats.get(k).unwrap();
        let want = percentile(&vals, 0.95).unwrap();
        assert_eq!(s.p95.unwrap().to_bits(), want.to_bits(), "{k:?} p95");
        assert_eq!(s.points, vals.len() as i64);
        let peak = vals.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(s.peak, Some(peak));
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!((s.avg.unwrap() - mean).abs() < 1e-9 * mean.abs().max(1.0));
        // Completeness: present points, median step, gaps over 1.5 steps.
        let present: Vec<i64> = pts.iter().filter(|p| p.1.is_some()).map(|p| p.0).collect();
        let diffs: Vec<f64> = present.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let step = percentile(&diffs, 0.5).unwrap();
        let c = complete.get(k).unwrap();
        assert_eq!(c.present, present.len() as i64);
        assert_eq!(c.step_ms, Some(step));
        assert_eq!(
            c.gaps,
            diffs.iter().filter(|d| **d > step * 1.5).count() as i64,
            "{k:?} gaps"
        );
        assert_eq!(
            (c.first_ms, c.last_ms),
            (present[0], *present.last().unwrap())
        );
        if k.0 == metrics[0] {
            let tr = trends.get(k).unwrap();
            let xy: Vec<(f64, f64)> = pts
                .iter()
                .filter_map(|p| p.1.map(|v| ((p.0 - from) as f64 / DAY as f64, v)))
                .collect();
            let n = xy.len() as f64;
            let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
            let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
            let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
            let sxx: f64 = xy.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
            assert_eq!(tr.n, xy.len() as u64);
            assert!((tr.mean_x - mx).abs() < 1e-9 && (tr.mean_y - my).abs() < 1e-6);
            assert!(
                (tr.sxy - sxy).abs() < 1e-6 * sxy.abs().max(1.0),
                "{k:?} sxy"
            );
            assert!((tr.sxx - sxx).abs() < 1e-6 * sxx);
            assert_eq!(tr.last, xy.last().map(|p| p.1));
            assert_eq!(tr.first, xy.first().map(|p| p.1));
        }
    }
}
