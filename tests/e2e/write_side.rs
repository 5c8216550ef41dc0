//! Reliability on the write side and in the data (`docs/reliability.md`, cases 7-10, 14, 16,
//! 17): a failing object store under the real writer (disk full, each multipart stage), points
//! of every kind through Parquet and back, second keys, and a 10 M-point series under a memory
//! cap.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::*;
use crate::faults::all_files;

// ---------------------------------------------------------------------------------------------
// Cases 16 and 17: the write side, through a failing object store.

mod store {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
    };

    /// Where the store fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Stage {
        /// Never.
        None,
        /// A single PUT (a small file, or the staging file on local disk): disk full.
        Put,
        /// Starting a multipart upload.
        Create,
        /// Uploading a part.
        Part,
        /// Completing the upload.
        Complete,
        /// The rename that publishes a staged local file.
        Rename,
    }

    /// A store that fails at one stage, and records whether an upload was aborted.
    #[derive(Debug)]
    pub struct FailingStore {
        pub inner: Arc<dyn ObjectStore>,
        pub stage: Stage,
        pub aborted: Arc<AtomicBool>,
    }

    impl std::fmt::Display for FailingStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FailingStore({:?}, {})", self.stage, self.inner)
        }
    }

    pub fn error(what: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "FailingStore",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("{what}: No space left on device (os error 28)"),
            )),
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FailingStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if self.stage == Stage::Put {
                return Err(error("put"));
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            if self.stage == Stage::Create {
                return Err(error("create multipart upload"));
            }
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(FailingUpload {
                inner,
                stage: self.stage,
                aborted: Arc::clone(&self.aborted),
            }))
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(
            &self,
            from: &Path,
            to: &Path,
            options: RenameOptions,
        ) -> object_store::Result<()> {
            if self.stage == Stage::Rename {
                return Err(error("rename"));
            }
            self.inner.rename_opts(from, to, options).await
        }
    }

    #[derive(Debug)]
    struct FailingUpload {
        inner: Box<dyn MultipartUpload>,
        stage: Stage,
        aborted: Arc<AtomicBool>,
    }

    #[async_trait::async_trait]
    impl MultipartUpload for FailingUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            if self.stage == Stage::Part {
                return Box::pin(async { Err(error("upload part")) });
            }
            self.inner.put_part(data)
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            if self.stage == Stage::Complete {
                return Err(error("complete multipart upload"));
            }
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.aborted.store(true, Ordering::SeqCst);
            self.inner.abort().await
        }
    }
}

fn test_batch(rows: usize) -> arrow::record_batch::RecordBatch {
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
    ]));
    let mut rng = fastrand::Rng::with_seed(5);
    arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..rows as i64).map(|i| i * 1000),
            )),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|_| rng.f64()))),
        ],
    )
    .unwrap()
}

/// Writes `batch` through a `PartWriter` on `sink` to `relative`.
fn write_part(
    sink: &vscope_etl::load::Sink,
    relative: &str,
    batch: &arrow::record_batch::RecordBatch,
) -> Result<vscope_etl::load::writer::WrittenFile, vscope_etl::load::writer::WriteError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let props = parquet::file::properties::WriterProperties::builder().build();
        let mut w = vscope_etl::load::writer::PartWriter::create(
            sink,
            relative.to_string(),
            "t",
            batch.schema(),
            props,
        )?;
        w.write(batch).await?;
        w.finish().await
    })
}

/// Case 16: disk full while writing to a local sink (the staging PUT fails with ENOSPC), or
/// while publishing it: the write errors, no file is left anywhere (no staging debris), and
/// once space is back the same write gives a whole, readable file.
#[test]
fn disk_full_on_a_local_sink_leaves_nothing_and_a_retry_succeeds() {
    use store::{FailingStore, Stage};
    let batch = test_batch(1000);
    for stage in [Stage::Put, Stage::Rename, Stage::None] {
        let dir = tempfile::tempdir().unwrap();
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
            .unwrap()
            .with_automatic_cleanup(true);
        let sink = vscope_etl::load::Sink {
            store: Arc::new(FailingStore {
                inner: Arc::new(local),
                stage,
                aborted: Default::default(),
            }),
            prefix: object_store::path::Path::default(),
            display: dir.path().display().to_string(),
            local_root: Some(dir.path().to_path_buf()),
            part_size: vscope_etl::load::store::DEFAULT_PART_SIZE,
            uploads: None,
            staging_dir: "_tmp".into(),
        };
        let result = write_part(&sink, "t/date=2026-11-01/part.parquet", &batch);
        let files = all_files(dir.path());
        if stage == Stage::None {
            let written = result.unwrap();
            assert_eq!(written.rows, 1000);
            assert_eq!(files.len(), 1, "{files:?}");
            let rows: usize = read_file(&dir.path().join("t/date=2026-11-01/part.parquet"))
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert_eq!(rows, 1000);
        } else {
            let e = result.expect_err("the write must fail");
            assert!(
                format!("{e}").contains("No space left")
                    || format!("{e:?}").contains("No space left"),
                "{stage:?}: {e}"
            );
            assert!(
                files.is_empty(),
                "{stage:?}: files left behind: {:?}",
                files.iter().map(|f| &f.0).collect::<Vec<_>>()
            );
        }
    }
}

/// Case 17: an S3-style multipart upload failing at each stage (create, part, complete): the
/// write errors, an upload that was started is aborted, and no object is ever visible.
#[test]
fn multipart_failures_at_each_stage_abort_and_leave_no_object() {
    use futures::TryStreamExt;
    use store::{FailingStore, Stage};
    // Over the 64 KiB part size given to the sink below, so the upload is multipart.
    let batch = test_batch(200_000);
    for stage in [Stage::Create, Stage::Part, Stage::Complete, Stage::None] {
        let mem: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let aborted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink = vscope_etl::load::Sink {
            store: Arc::new(FailingStore {
                inner: Arc::clone(&mem),
                stage,
                aborted: Arc::clone(&aborted),
            }),
            prefix: object_store::path::Path::from("prefix"),
            display: "memory://prefix".into(),
            local_root: None,
            part_size: 64 * 1024,
            uploads: None,
            staging_dir: "_tmp".into(),
        };
        let result = write_part(&sink, "t/date=2026-11-01/part.parquet", &batch);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let objects: Vec<_> = rt.block_on(mem.list(None).try_collect::<Vec<_>>()).unwrap();
        let was_aborted = aborted.load(std::sync::atomic::Ordering::SeqCst);
        match stage {
            Stage::None => {
                assert!(result.is_ok());
                assert_eq!(objects.len(), 1);
                assert!(
                    objects[0].size > 2 * 64 * 1024,
                    "several parts: {}",
                    objects[0].size
                );
            }
            _ => {
                assert!(result.is_err(), "{stage:?}");
                assert!(objects.is_empty(), "{stage:?}: {objects:?}");
                if stage != Stage::Create {
                    assert!(was_aborted, "{stage:?}: the upload was not aborted");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip: points as a server sends them → decoder → Arrow → Parquet (`PartWriter`) → read
// back, against an independent model of the decode rules (cases 7, 9, 10).

/// A point value as it may appear in `dps`.
#[derive(Debug, Clone)]
enum Wire {
    Num(f64),
    NaNText,
    Null,
    Inf,
    Text,
}

impl Wire {
    fn json(&self) -> String {
        match self {
            // `{:?}` prints the shortest text that reads back to the same f64.
            Wire::Num(v) => format!("{v:?}"),
            Wire::NaNText => "\"NaN\"".into(),
            Wire::Null => "null".into(),
            Wire::Inf => "\"-Infinity\"".into(),
            Wire::Text => "\"abc\"".into(),
        }
    }

    /// The documented rule: finite numbers are kept exactly, everything else is a null value.
    fn expected(&self) -> Option<f64> {
        match self {
            Wire::Num(v) => Some(*v),
            _ => None,
        }
    }
}

fn wire() -> impl proptest::strategy::Strategy<Value = Wire> {
    use proptest::prelude::*;
    prop_oneof![
        6 => any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(Wire::Num),
        2 => (-1_000_000i64..1_000_000).prop_map(|v| Wire::Num(v as f64 / 8.0)),
        1 => Just(Wire::NaNText),
        1 => Just(Wire::Null),
        1 => Just(Wire::Inf),
        1 => Just(Wire::Text),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Points (any order, duplicates, out-of-window times, every value kind) decode, go through
    /// the raw batch builder and a Parquet file, and read back exactly as the model says: in
    /// window, sorted, last duplicate wins, finite values bit-exact, the rest null.
    #[test]
    fn points_round_trip_through_parquet_exactly(
        points in proptest::collection::vec((0i64..7_200, wire()), 1..120),
        extra_tag in "[a-z]{1,3}",
    ) {
        use vscope_etl::catalogue::Component;
        use vscope_etl::extract::stream::decode_query_response;
        let (start, end) = (1_793_491_200_000i64, 1_793_491_200_000 + 3_600_000);
        let base = start - 1_800_000;
        let dps: Vec<String> = points
            .iter()
            .map(|(s, w)| format!("\"{}\":{}", base + s * 1000, w.json()))
            .collect();
        let body = format!(
            r#"[{{"metric":"vscope.vm.cpu.usage.perc","tags":{{"datacenter":"dc1","vm":"vm-1","x":"{extra_tag}"}},"dps":{{{}}}}}]"#,
            dps.join(",")
        );
        let mut model: BTreeMap<i64, Option<f64>> = BTreeMap::new();
        for (s, w) in &points {
            let t = base + s * 1000;
            if (start..end).contains(&t) {
                model.insert(t, w.expected());
            }
        }
        let (series, _) = decode_query_response(body.as_bytes(), start, end).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sink = vscope_etl::load::Sink::open(dir.path().to_str().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let written = rt.block_on(async {
            let mut b = vscope_etl::transform::RawBatchBuilder::new(Component::Vm);
            for s in &series {
                b.append(s, 0..s.ts.len());
            }
            let batch = b.finish().unwrap();
            let props = parquet::file::properties::WriterProperties::builder().build();
            let mut w = vscope_etl::load::writer::PartWriter::create(
                &sink,
                "vm/part.parquet".into(),
                "vm_metrics",
                vscope_etl::schema::raw_schema(Component::Vm),
                props,
            ).unwrap();
            w.write(&batch).await.unwrap();
            w.finish().await.unwrap()
        });
        proptest::prop_assert_eq!(written.rows, model.len() as u64);
        let rows: Vec<RawRow> = read_file(&dir.path().join("vm/part.parquet"))
            .iter()
            .flat_map(raw_rows)
            .collect();
        let tags: BTreeMap<String, String> = [("datacenter", "dc1"), ("vm", "vm-1"), ("x", extra_tag.as_str())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want: Vec<RawRow> = model
            .iter()
            .map(|(t, v)| (("vscope.vm.cpu.usage.perc".to_string(), tags.clone()), *t, *v))
            .collect();
        proptest::prop_assert_eq!(rows.len(), want.len());
        for (g, w) in rows.iter().zip(&want) {
            proptest::prop_assert_eq!(&g.0, &w.0);
            proptest::prop_assert_eq!(g.1, w.1);
            // Bit-exact, so -0.0 and 0.0 are told apart.
            proptest::prop_assert_eq!(g.2.map(f64::to_bits), w.2.map(f64::to_bits), "at {}", g.1);
        }
    }
}

/// Case 8: keys are read as milliseconds (the client always sends `msResolution: true`); a
/// server that answers in seconds anyway shows up as points outside the window, dropped and
/// counted, never stored at a wrong time. Values around 10^10 and 10^12 are both tested.
#[test]
fn second_keys_are_dropped_as_out_of_window() {
    use vscope_etl::extract::stream::decode_query_response;
    let (start, end) = (1_700_000_000_000i64, 1_700_000_060_000);
    let body = br#"[{"metric":"m","tags":{},"dps":{"1700000000":1,"1700000030":2,"9999999999":3,"1700000000123":4,"1700000059999":5,"1700000060000":6}}]"#;
    let (series, stats) = decode_query_response(body, start, end).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].ts, [1_700_000_000_123, 1_700_000_059_999]);
    assert_eq!(series[0].values, [4.0, 5.0]);
    assert_eq!(
        stats.out_of_window, 4,
        "three second keys and the end itself"
    );
    assert_eq!(stats.points, 2);
}

/// Case 14: one series of 10 M points in one window (one VM, a point every second for 116
/// days: about 250 MB of JSON in a single answer). Answers over `source.max_answer_size`
/// (16 MiB here) are cut off and the window split, each part written to its own files as it
/// comes, so the run's peak RSS stays under a fixed budget (taking the answer whole needs
/// more than twice the budget: the body alone is 250 MB). Every point is written, once, and
/// the throughput is logged. The simulator runs as its own process, so its memory is not
/// counted; the peak is the run's own `VmHWM` (its log line), not `wait4`'s, which also counts
/// the test process it was spawned from.
#[test]
fn case14_a_ten_million_point_series_stays_under_a_memory_cap() {
    const BUDGET_MB: f64 = 200.0;
    let window_ms = 116 * 86_400_000i64;
    let start = ms("2026-06-01T00:00:00Z").div_euclid(window_ms) * window_ms;
    let end = start + window_ms;
    let rfc = |t: i64| vscope_etl::semantics::time::format_rfc3339(t);
    let sim_args = [
        "--dialect",
        "opentsdb",
        "--datacenters",
        "1",
        "--hosts",
        "1",
        "--vms",
        "1",
        "--filers",
        "1",
        "--step",
        "1",
    ];
    let sim = SimProcess::start(&sim_args);
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"{}\"\ndialect = \"opentsdb\"\nrequests_per_second = 0\n\
         timeout = \"600s\"\nmax_answer_size = \"16MiB\"",
        sim.url
    );
    let table = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.cpu.usage.perc\"]\n";
    let p = write_pipeline(
        dir.path(),
        "huge",
        &source,
        &rfc(start),
        &rfc(end),
        "116d",
        table,
    );
    let out = bin()
        .args([
            "run",
            p.to_str().unwrap(),
            "--json",
            "--now",
            &rfc(end + 86_400_000),
        ])
        .env("RUST_LOG", "vscope_etl=info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let peak_mb = logged_peak_rss_mb(&out.stderr);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("run finished") && log.contains("points_per_s="),
        "throughput logged: {log}"
    );

    // Every point of the series, once, in order within each file.
    use arrow::array::AsArray;
    let cfg = vscope_etl::sim::SimConfig {
        dialect: vscope_etl::dialect::Dialect::Opentsdb,
        step_secs: 1,
        ..sim_config(1, 1, 1, 1)
    };
    let pcc = vscope_etl::sim::Pcc::new(&cfg);
    let index = pcc
        .series()
        .iter()
        .position(|s| s.metric == "vscope.vm.cpu.usage.perc")
        .unwrap();
    let want = pcc.points(index, start, end - 1);
    assert!(want.len() > 9_500_000, "{} points", want.len());
    let root = dir.path().join("out");
    let files = parquet_files(&root, "vm_metrics");
    let mut got: Vec<(i64, f64)> = Vec::with_capacity(want.len());
    for f in &files {
        let before = got.len();
        for batch in read_file(f) {
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
            let v = batch
                .column_by_name("value")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>();
            got.extend(ts.values().iter().copied().zip(v.values().iter().copied()));
        }
        assert!(
            got[before..].windows(2).all(|w| w[0].0 < w[1].0),
            "{f:?}: rows sorted by ts"
        );
    }
    got.sort_by_key(|p| p.0);
    assert_eq!(got.len(), want.len(), "every point once");
    assert!(got == want, "the points are the simulator's");
    let parts = files
        .iter()
        .filter(|f| f.to_string_lossy().contains("of"))
        .count();
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "case 14: {} points, {} files ({parts} parts of a split answer), {} splits, {} requests, peak RSS {peak_mb:.1} MiB",
        want.len(),
        files.len(),
        m["splits"],
        m["requests"]
    );
    assert!(parts >= 16, "the answer was split into parts: {files:?}");
    assert!(
        peak_mb < BUDGET_MB,
        "peak RSS {peak_mb:.1} MiB over the {BUDGET_MB} MiB budget"
    );
}
