//! Criterion benches of the hot path, one per stage (`cargo bench --no-default-features --bench
//! stages`; a name filter after `--` runs some, e.g. `-- rollup`):
//!
//! - `decode_dps`: an OpenTSDB answer of `SERIES` series × `POINTS` points decoded into columns
//!   by the hand-rolled scanner (`src/extract/scan.rs`);
//! - `decode_dps_serde`: the same answer through the serde_json path (one escaped character in
//!   the first metric name makes the scanner hand it over), for comparison;
//! - `build_batches`: series sorted and built into 65,536-row Arrow batches;
//! - `rollup`: the 1h avg/min/max/p95/count rollup of every series;
//! - `encode_write`: the batches written as one Parquet file (ZSTD 1) through the production
//!   [`PartWriter`] (columns encoded on every core) into a temporary directory.
//!
//! Every bench declares `Throughput::Elements(points)`, so criterion's `thrpt` line is in
//! points per second (`Melem/s` = M points/s). Sizes: `VSCOPE_BENCH_SERIES`,
//! `VSCOPE_BENCH_POINTS` (defaults 200 × 4320 = 0.86 M points, one day at 20 s).
//! `cargo test --all-targets` runs each bench once as a smoke test (criterion's test mode).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vscope_etl::catalogue::Component;
use vscope_etl::extract::SeriesData;
use vscope_etl::extract::stream::decode_query_response;
use vscope_etl::load::Sink;
use vscope_etl::load::writer::{FileSettings, PartWriter, WrittenFile, writer_properties};
use vscope_etl::schema::raw_schema;
use vscope_etl::semantics::aggregator::Aggregator;
use vscope_etl::semantics::rollup::Rollup;
use vscope_etl::transform::{RawBatchBuilder, sort_series};

/// Start of the answers' window, ms (2026-11-01T00:00:00Z).
const START_MS: i64 = 1_793_491_200_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic answer like vScope's: random-walk values with two decimals.
fn answer(series: usize, points: usize, start_ms: i64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = String::from("[");
    for s in 0..series {
        if s > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"metric\":\"vscope.vm.cpu.usage.perc\",\"tags\":{{\"datacenter\":\"pcc-1_datacenter{}\",\"vm\":\"vm-{:05}\",\"env\":\"prod\",\"servicename\":\"pcc-1\",\"servicetype\":\"vscope\"}},\"query\":{{\"index\":0}},\"aggregateTags\":[],\"dps\":{{",
            s % 4,
            s
        ));
        let mut v = 50.0f64;
        for p in 0..points {
            if p > 0 {
                out.push(',');
            }
            v = (v + rng.f64() * 2.0 - 1.0).clamp(0.0, 100.0);
            out.push_str(&format!("\"{}\":{:.2}", start_ms + p as i64 * 20_000, v));
        }
        out.push_str("}}");
    }
    out.push(']');
    out.into_bytes()
}

/// Sorts the series and builds them into 65,536-row batches, as the pipeline does.
fn build(series: &mut [SeriesData]) -> Vec<arrow::record_batch::RecordBatch> {
    sort_series(series, &["datacenter", "vm"]);
    let mut builder = RawBatchBuilder::new(Component::Vm);
    let mut batches = Vec::new();
    for s in series.iter() {
        builder.append(s, 0..s.ts.len());
        if builder.len() >= 65_536 {
            batches.push(builder.finish().expect("batch"));
        }
    }
    batches.push(builder.finish().expect("batch"));
    batches
}

/// Writes `batches` as one Parquet file below `sink`.
fn write(
    rt: &tokio::runtime::Runtime,
    sink: &Sink,
    batches: &[arrow::record_batch::RecordBatch],
    window: (i64, i64),
) -> WrittenFile {
    let schema = raw_schema(Component::Vm);
    let settings = FileSettings {
        pipeline: "bench".into(),
        compression: vscope_etl::config::PageCompression::Zstd(1),
        row_group_rows: 1 << 20,
        value_page_bytes: vscope_etl::config::VALUE_PAGE_BYTES,
    };
    let props = writer_properties(&schema, &settings, "vm_metrics", window);
    rt.block_on(async {
        let mut w = PartWriter::create(sink, "bench.parquet".into(), "vm_metrics", schema, props)
            .expect("writer");
        for b in batches {
            w.write(b).await.expect("write");
        }
        w.finish().await.expect("finish")
    })
}

fn stages(c: &mut Criterion) {
    let series = env_usize("VSCOPE_BENCH_SERIES", 200);
    let points = env_usize("VSCOPE_BENCH_POINTS", 4320);
    let end = START_MS + points as i64 * 20_000;
    let body = answer(series, points, START_MS);
    let total = (series * points) as u64;
    // The serde_json path gets the same body with one escaped character in the first name.
    let escaped = String::from_utf8(body.clone())
        .expect("utf8")
        .replacen("vscope.vm", "vscope\\u002evm", 1)
        .into_bytes();
    let (decoded, stats) = decode_query_response(&body, START_MS, end).expect("valid answer");
    assert_eq!(stats.points, total);
    let rollup = Rollup::new(
        3_600_000,
        vec![
            Aggregator::Avg,
            Aggregator::Min,
            Aggregator::Max,
            Aggregator::P95,
            Aggregator::Count,
        ],
    )
    .expect("rollup");
    let batches = build(&mut decoded.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = Sink::open(dir.path().to_str().expect("utf8 path")).expect("sink");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let written = write(&rt, &sink, &batches, (START_MS, end));
    eprintln!(
        "answer: {series} series x {points} points = {total} points, {} bytes of JSON; \
         Parquet {:.3} bytes/point",
        body.len(),
        written.bytes as f64 / total as f64
    );

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(total));
    g.sample_size(10);
    g.bench_function("decode_dps", |b| {
        b.iter(|| decode_query_response(black_box(&body), START_MS, end).expect("valid"))
    });
    g.bench_function("decode_dps_serde", |b| {
        b.iter(|| decode_query_response(black_box(&escaped), START_MS, end).expect("valid"))
    });
    g.bench_function("build_batches", |b| {
        b.iter_batched_ref(|| decoded.clone(), |s| build(s), BatchSize::LargeInput)
    });
    g.bench_function("rollup", |b| {
        b.iter(|| {
            let mut out = rollup.output();
            for s in &decoded {
                rollup.apply_into(&s.ts, &s.values, &mut out);
            }
            out
        })
    });
    g.bench_function("encode_write", |b| {
        b.iter(|| write(&rt, &sink, black_box(&batches), (START_MS, end)))
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
