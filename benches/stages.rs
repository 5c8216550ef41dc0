//! Stage figures for the hot path, without a bench framework (`cargo bench --bench stages`):
//! an OpenTSDB answer of `SERIES` series × `POINTS` points is decoded into columns, built into
//! Arrow batches, and encoded to Parquet in memory with the production writer settings. Prints
//! points per second for each stage and bytes per point. Sizes: `VSCOPE_BENCH_SERIES`,
//! `VSCOPE_BENCH_POINTS` (defaults 200 × 4320 = 0.86 M points, one day at 20 s).

use std::time::Instant;

use parquet::arrow::ArrowWriter;
use vscope_etl::catalogue::Component;
use vscope_etl::extract::decode::decode_query_response;
use vscope_etl::load::writer::{FileSettings, writer_properties};
use vscope_etl::schema::raw_schema;
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
    let body = answer(series, points, start);
    let total = (series * points) as f64;
    println!(
        "answer: {series} series x {points} points = {total} points, {} bytes of JSON",
        body.len()
    );

    let t = Instant::now();
    let (mut decoded, stats) =
        decode_query_response(&body, start, start + points as i64 * 20_000).expect("valid answer");
    let decode_s = t.elapsed().as_secs_f64();
    assert_eq!(stats.points as f64, total);

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
    let schema = raw_schema(Component::Vm);
    let settings = FileSettings {
        pipeline: "bench".into(),
        zstd_level: 1,
        row_group_rows: 1 << 20,
    };
    let props = writer_properties(
        &schema,
        &settings,
        "vm_metrics",
        (start, start + 86_400_000),
    );
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props)).expect("writer");
    for b in &batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    let encode_s = t.elapsed().as_secs_f64();

    let mpts = |s: f64| total / s / 1e6;
    println!("{:<28} {:>8} {:>10}", "stage", "seconds", "Mpoints/s");
    println!(
        "{:<28} {:>8.3} {:>10.2}",
        "decode dps -> columns",
        decode_s,
        mpts(decode_s)
    );
    println!(
        "{:<28} {:>8.3} {:>10.2}",
        "build Arrow batches",
        build_s,
        mpts(build_s)
    );
    println!(
        "{:<28} {:>8.3} {:>10.2}",
        "encode Parquet (ZSTD 1)",
        encode_s,
        mpts(encode_s)
    );
    let all = decode_s + build_s + encode_s;
    println!(
        "{:<28} {:>8.3} {:>10.2}",
        "total (one core)",
        all,
        mpts(all)
    );
    println!(
        "stages points_per_s={:.0} bytes_per_point={:.3}",
        total / all,
        buf.len() as f64 / total
    );
}
