//! Stage figures for the hot path, without a bench framework (`cargo bench --bench stages`):
//! an OpenTSDB answer of `SERIES` series × `POINTS` points is decoded into columns (the
//! hand-rolled scanner, then the serde_json path for comparison), built into Arrow batches,
//! rolled up (1h avg/min/max/p95/count), and written as a Parquet file through the production
//! [`PartWriter`] (columns encoded on every core) into a temporary directory. Prints points per
//! second for each stage and bytes per point. Sizes: `VSCOPE_BENCH_SERIES`,
//! `VSCOPE_BENCH_POINTS` (defaults 200 × 4320 = 0.86 M points, one day at 20 s).

use std::time::Instant;

use vscope_etl::catalogue::Component;
use vscope_etl::extract::decode::decode_query_response;
use vscope_etl::load::Sink;
use vscope_etl::load::writer::{FileSettings, PartWriter, encode_threads, writer_properties};
use vscope_etl::schema::raw_schema;
use vscope_etl::semantics::aggregator::Aggregator;
use vscope_etl::semantics::rollup::Rollup;
use vscope_etl::transform::{RawBatchBuilder, sort_series};

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

fn main() {
    let series = env_usize("VSCOPE_BENCH_SERIES", 200);
    let points = env_usize("VSCOPE_BENCH_POINTS", 4320);
    let start = 1_793_491_200_000i64;
    let end = start + points as i64 * 20_000;
    let body = answer(series, points, start);
    let total = (series * points) as f64;
    println!(
        "answer: {series} series x {points} points = {total} points, {} bytes of JSON; {} encode threads",
        body.len(),
        encode_threads()
    );

    let t = Instant::now();
    let (mut decoded, stats) = decode_query_response(&body, start, end).expect("valid answer");
    let decode_s = t.elapsed().as_secs_f64();
    assert_eq!(stats.points as f64, total);

    // The serde_json path, for comparison: the same body with one escaped character in the
    // first metric name makes the scanner hand it over.
    let escaped =
        String::from_utf8(body.clone())
            .expect("utf8")
            .replacen("vscope.vm", "vscope\\u002evm", 1);
    let t = Instant::now();
    let (serde_decoded, _) =
        decode_query_response(escaped.as_bytes(), start, end).expect("valid answer");
    let serde_s = t.elapsed().as_secs_f64();
    assert_eq!(serde_decoded.len(), decoded.len());
    drop(serde_decoded);

    let t = Instant::now();
    sort_series(&mut decoded, &["datacenter", "vm"]);
    let mut builder = RawBatchBuilder::new(Component::Vm);
    let mut batches = Vec::new();
    for s in &decoded {
        builder.append(s, 0..s.ts.len());
        if builder.len() >= 65_536 {
            batches.push(builder.finish().expect("batch"));
        }
    }
    batches.push(builder.finish().expect("batch"));
    let build_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
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
    let mut rows = 0;
    for s in &decoded {
        let mut out = rollup.output();
        rollup.apply_into(&s.ts, &s.values, &mut out);
        rows += out.len();
    }
    let rollup_s = t.elapsed().as_secs_f64();
    assert!(rows > 0);

    let dir = tempfile::tempdir().expect("temp dir");
    let sink = Sink::open(dir.path().to_str().expect("utf8 path")).expect("sink");
    let schema = raw_schema(Component::Vm);
    let settings = FileSettings {
        pipeline: "bench".into(),
        zstd_level: 1,
        row_group_rows: 1 << 20,
    };
    let props = writer_properties(&schema, &settings, "vm_metrics", (start, end));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let t = Instant::now();
    let written = rt.block_on(async {
        let mut w = PartWriter::create(&sink, "bench.parquet".into(), "vm_metrics", schema, props)
            .expect("writer");
        for b in &batches {
            w.write(b).await.expect("write");
        }
        w.finish().await.expect("finish")
    });
    let encode_s = t.elapsed().as_secs_f64();

    let mpts = |s: f64| total / s / 1e6;
    println!("{:<34} {:>8} {:>10}", "stage", "seconds", "Mpoints/s");
    let row = |name: &str, s: f64| println!("{name:<34} {s:>8.3} {:>10.2}", mpts(s));
    row("decode dps -> columns (scanner)", decode_s);
    row("decode, serde_json path", serde_s);
    row("build Arrow batches", build_s);
    row("rollup 1h avg/min/max/p95/count", rollup_s);
    row("encode + write Parquet (ZSTD 1)", encode_s);
    let all = decode_s + build_s + encode_s;
    row("total raw (decode+build+encode)", all);
    println!(
        "stages points_per_s={:.0} bytes_per_point={:.3}",
        total / all,
        written.bytes as f64 / total
    );
}
